"""Calibration scores by hand and by their properties, their inputs' checks, and the two calibration plots."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdlm.evaluation.calibration import (
    calibration_scores,
    coverage_accuracy,
    plot_coverage_accuracy,
    plot_reliability_diagram,
)
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.runner import score_paths

CASES = settings(deadline=None, derandomize=True, database=None, max_examples=200)


def test_scores_by_hand():
    # 5 bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]: {.95, .9} right 1 of 2 -> |.5 - .925| = .425 (weight 2/5);
    # {.55} right -> .45; {.3} wrong -> .3; {.05} wrong -> .05. ECE = (2 * .425 + .45 + .3 + .05) / 5 = .33.
    # Brier = (.05^2 + .9^2 + .45^2 + .3^2 + .05^2) / 5 = 1.1075 / 5.
    scores = calibration_scores([0.95, 0.9, 0.55, 0.3, 0.05], [True, False, True, False, False], num_bins=5)
    assert scores == pytest.approx({"ece": 0.33, "brier": 1.1075 / 5})


def test_bins_are_closed_on_the_right():
    # .4 falls in (.2, .4] and .41 in (.4, .6]: two bins, |1 - .4| and |0 - .41|; one bin would give |.5 - .405|.
    assert calibration_scores([0.4, 0.41], [1, 0], num_bins=5)["ece"] == pytest.approx((0.6 + 0.41) / 2)
    # 0 and .2 share the first bin [0, .2]: |.5 - .1|.
    assert calibration_scores([0.0, 0.2], [0, 1], num_bins=5)["ece"] == pytest.approx(0.4)


probabilities = st.floats(0, 1)


@st.composite
def forecasts(draw: st.DrawFn) -> tuple[list[float], list[bool]]:
    size = draw(st.integers(1, 40))
    return (
        draw(st.lists(probabilities, min_size=size, max_size=size)),
        draw(st.lists(st.booleans(), min_size=size, max_size=size)),
    )


@CASES
@given(case=forecasts(), num_bins=st.integers(1, 30))
def test_score_properties(case, num_bins):
    confidences, correct = case
    scores = calibration_scores(confidences, correct, num_bins)
    gaps = np.abs(np.array(confidences) - np.array(correct, dtype=float))
    assert 0 <= scores["ece"] <= gaps.mean() + 1e-12  # binning can only average gaps away
    assert scores["brier"] == pytest.approx(np.mean(gaps**2))
    one_bin = calibration_scores(confidences, correct, num_bins=1)["ece"]
    assert one_bin == pytest.approx(abs(np.mean(confidences) - np.mean(correct)))
    assert calibration_scores(confidences[::-1], correct[::-1], num_bins) == pytest.approx(scores)
    certain = [float(flag) for flag in correct]
    assert calibration_scores(certain, correct, num_bins) == {"ece": 0.0, "brier": 0.0}


@pytest.mark.parametrize(
    ("confidences", "correct", "num_bins", "message"),
    [
        ([1.2], [True], 15, r"`confidences\[0\]` is not a probability in \[0, 1\]: 1.2"),
        ([0.5, -0.1], [True, True], 15, r"`confidences\[1\]` is not a probability"),
        ([math.nan], [True], 15, r"`confidences\[0\]` is not a probability"),
        ([True], [True], 15, r"`confidences\[0\]` is not a probability"),
        (["0.5"], [True], 15, r"`confidences\[0\]` is not a probability"),
        (0.5, [True], 15, r"`confidences` must be a list of probabilities"),
        ([0.5], [True, False], 15, r"differ in length: 1 != 2"),
        ([0.5], [2], 15, r"`correct\[0\]` is not a boolean: 2"),
        ([], [], 15, r"`confidences` is empty"),
        ([0.5], [True], 0, r"`num_bins` must be a positive integer"),
    ],
)
def test_invalid_scores_inputs(confidences, correct, num_bins, message):
    with pytest.raises(ValueError, match=message):
        calibration_scores(confidences, correct, num_bins)


def test_metrics_add_level_and_path_calibration():
    predictions = [["A", "a1"], ["A", "a2"], ["B"], []]
    references = [["A", "a1"], ["B", "b1"], ["B", "b1"], ["A"]]
    metrics = compute_hierarchical_metrics(
        predictions, references, level_confidences=[[0.9, 0.8], [0.6, 0.5], [0.7], []], path_confidences=[0.7] * 4
    )
    # Level 1 on the 3 predictions with a level 1: A right (.9), A wrong (.6), B right (.7), all in separate bins.
    assert metrics["level_1_ece"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    # Level 2 on the predictions with a level 2 under the right level 1: A/a1 right (.8); [A, a2] is left out (its
    # reference is [B, b1]: a probability given the parent A says nothing about a document of B).
    assert metrics["level_2_brier"] == pytest.approx(0.2**2)
    # Paths: 1 of 4 right, all at .7 -> one bin, |.25 - .7|.
    assert metrics["path_ece"] == pytest.approx(0.45)
    assert "level_3_ece" not in metrics


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level_confidences": [[0.9, 0.8]]}, r"one list of probabilities per prediction \(2\)"),
        ({"level_confidences": [[0.9], [0.8]]}, r"`level_confidences\[0\]` must hold one probability per label"),
        ({"level_confidences": [[0.9, 2.0], [0.8]]}, r"`level_confidences\[0\]\[1\]` is not a probability"),
        ({"path_confidences": [0.5]}, r"one probability per prediction \(2\), got 1"),
        ({"path_confidences": [0.5, -1]}, r"`path_confidences\[1\]` is not a probability"),
    ],
)
def test_invalid_confidences(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_hierarchical_metrics([["A", "a"], ["B"]], [["A", "a"], ["B", "b"]], **kwargs)


def test_score_paths_calibrates_label_levels_only():
    paths = [["Question", "How are you?"], ["Reflection", "I see."]]
    metrics = score_paths(paths, paths, ["label", "text"], level_confidences=[[1.0], [1.0]], path_confidences=[1, 1])
    assert metrics["level_1_ece"] == metrics["path_brier"] == 0.0
    assert "level_2_ece" not in metrics
    with pytest.raises(ValueError, match="score label levels: `level_kinds` has none"):
        score_paths([["Hi"]], [["Hello"]], ["text"], path_confidences=[0.5])


def test_coverage_accuracy_keeps_ties_together():
    coverage, accuracy = coverage_accuracy([0.9, 0.6, 0.6, 0.3], [True, False, True, False])
    assert coverage.tolist() == [0.25, 0.75, 1.0]
    assert accuracy == pytest.approx([1.0, 2 / 3, 0.5])


def test_plots_are_written_atomically(tmp_path):
    curves = {
        "level 1": ([0.95, 0.9, 0.55, 0.3], [True, False, True, False]),
        "path": ([0.8, 0.5, 0.5, 0.1], [True, False, True, False]),
    }
    plot_reliability_diagram(curves, tmp_path / "plots" / "reliability.png")
    plot_coverage_accuracy(curves, tmp_path / "plots" / "coverage.png")
    files = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert files == ["coverage.png", "reliability.png"]  # no temporary file left behind
    assert all((tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG") for name in files)
    with pytest.raises(ValueError, match="`curves` must map at least one name"):
        plot_reliability_diagram({}, tmp_path / "empty.png")
    with pytest.raises(ValueError, match=r"`curves\['path'\]` must be a pair"):
        plot_coverage_accuracy({"path": [0.5]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"`confidences\[0\]` is not a probability"):
        plot_coverage_accuracy({"path": ([1.5], [True])}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_evaluation_report_shows_calibration_and_empty_predictions(tmp_path):
    from hdlm.evaluation.report import format_table, summary_keys, write_evaluation

    predictions, references = [["A", "a"], [], ["B"]], [["A", "a"], ["B", "b"], ["B", "b"]]  # one abstained
    metrics = compute_hierarchical_metrics(
        predictions, references, level_confidences=[[0.9, 0.8], [], [0.4]], path_confidences=[0.72, 0.2, 0.4]
    )
    keys = summary_keys(metrics)
    assert keys.index("level_1_ece") < keys.index("level_2_accuracy") and "path_brier" in keys
    assert "level_2_ece" in format_table({"model": metrics}, [key for key in keys if key in metrics])
    records = [{"prediction": p, "reference": r} for p, r in zip(predictions, references)]
    write_evaluation(tmp_path, "model", records, metrics)
    assert (tmp_path / "confusion_level_1.png").read_bytes().startswith(b"\x89PNG")
