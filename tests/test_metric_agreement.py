"""Random taxonomies with repeated names and partial paths: the hierarchical scores equal hiclass's, the per-level
rule holds, and the `evaluate` module (its own copies of the scoring files) gives what `hdlm.evaluation` gives."""

import numpy as np
import pytest
from hiclass import metrics as hiclass_metrics
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.path_metrics import score_paths

CASES = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

# Few names, so that a name recurs under several parents and at several levels.
NAMES = ["Classical", "Other", "Music", "Physics"]


@st.composite
def labelled_case(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """A 3-level taxonomy of repeated names where about 20 % of the paths stop early, references drawn from it, and
    predictions that are taxonomy paths, cut-short paths or random (inconsistent) paths."""
    full = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=3, max_size=3), min_size=2, max_size=8))
    stops = [3 if draw(st.integers(0, 9)) >= 2 else draw(st.integers(1, 2)) for _ in full]  # about 20 % partial
    taxonomy = sorted({tuple(path[:stop]) for path, stop in zip(full, stops)})
    references = draw(st.lists(st.sampled_from(taxonomy).map(list), min_size=1, max_size=12))
    guesses = st.one_of(
        st.sampled_from(taxonomy).map(list),
        st.sampled_from(taxonomy).flatmap(lambda path: st.integers(0, len(path)).map(lambda stop: list(path[:stop]))),
        st.lists(st.sampled_from(NAMES), max_size=3),
    )
    predictions = [draw(guesses) for _ in references]
    return predictions, references, [list(path) for path in taxonomy]


def hiclass_labels(paths: list[list[str]]) -> list[list[str]]:
    """Each level's label as its path (hiclass's disambiguated labels), short paths left to hiclass to pad with ""."""
    return [["/".join(path[:level]) for level in range(1, len(path) + 1)] for path in paths]


@settings(CASES, max_examples=150)
@given(case=labelled_case())
def test_hierarchical_scores_equal_hiclass(case):
    predictions, references, taxonomy = case
    assume(any(predictions))  # hiclass divides by the number of predicted labels
    metrics = compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
    y_true, y_pred = hiclass_labels(references), hiclass_labels(predictions)
    assert metrics["hierarchical_precision"] == pytest.approx(hiclass_metrics.precision(y_true, y_pred))
    assert metrics["hierarchical_recall"] == pytest.approx(hiclass_metrics.recall(y_true, y_pred))
    assert metrics["hierarchical_f1"] == pytest.approx(hiclass_metrics.f1(y_true, y_pred, zero_division=0.0))


@settings(CASES, max_examples=100)
@given(case=labelled_case())
def test_per_level_accuracy_skips_references_that_stop_before_the_level(case):
    predictions, references, taxonomy = case
    metrics = compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
    for level in range(1, max(map(len, references)) + 1):
        scored = [(p, r) for p, r in zip(predictions, references) if len(r) >= level]
        expected = np.mean([p[:level] == r[:level] for p, r in scored])  # the label under the same parents
        assert metrics[f"level_{level}_accuracy"] == pytest.approx(expected)
    assert f"level_{max(map(len, references)) + 1}_accuracy" not in metrics


def test_a_repeated_name_under_another_parent_is_another_class():
    taxonomy = [["Physics", "Classical"], ["Music", "Classical"], ["Music"]]
    metrics = compute_hierarchical_metrics(
        [["Music", "Classical"], ["Music"]], [["Physics", "Classical"], ["Music"]], taxonomy=taxonomy
    )
    assert metrics["level_2_accuracy"] == 0.0  # Music/Classical is not Physics/Classical
    assert metrics["level_2_micro_f1"] == 0.0
    assert metrics["level_1_accuracy"] == 0.5
    assert metrics["path_accuracy"] == 0.5
    assert metrics["inconsistency_rate"] == 0.0  # both predictions are paths of the taxonomy, one stops early
    # Labels: predicted {Music, Music/Classical} + {Music}, true {Physics, Physics/Classical} + {Music}: TP 1.
    assert metrics["hierarchical_precision"] == pytest.approx(1 / 3)
    assert metrics["hierarchical_recall"] == pytest.approx(1 / 3)
    assert metrics["flat_micro_f1"] == pytest.approx(1 / 3)


def test_the_module_scores_with_its_own_copies(metric):
    import inspect

    module = inspect.getmodule(type(metric))
    assert module.compute_hierarchical_metrics is not compute_hierarchical_metrics
    assert module.compute_hierarchical_metrics.__module__.startswith("evaluate_modules.")
    assert module.score_paths.__module__.startswith("evaluate_modules.")


@settings(CASES, max_examples=40)
@given(case=labelled_case(), data=st.data())
def test_evaluate_module_equals_hdlm_evaluation(metric, case, data):
    predictions, references, taxonomy = case
    probability = st.floats(0, 1)
    kwargs = {
        "level_confidences": [data.draw(st.lists(probability, min_size=len(p), max_size=len(p))) for p in predictions],
        "path_confidences": data.draw(st.lists(probability, min_size=len(predictions), max_size=len(predictions))),
    }
    if data.draw(st.booleans()):
        kwargs["taxonomy"] = taxonomy
    expected = compute_hierarchical_metrics(predictions, references, **kwargs)
    assert {"path_ece", "path_brier"} <= set(expected)
    assert ("level_1_ece" in expected) == any(predictions)  # a level is calibrated where some prediction has it
    assert metric.compute(predictions=predictions, references=references, **kwargs) == pytest.approx(expected)

    # Full paths ending in a text level: the label levels of the taxonomy's full paths, then a reply.
    full = [path for path in references if len(path) == 3]
    assume(full)
    reply = st.sampled_from(["hi there", "so sorry", ""])
    replies = data.draw(st.lists(reply, min_size=len(full), max_size=len(full)))
    texts = [path[:2] + [reply] for path, reply in zip(full, replies)]
    text_kwargs = {"level_kinds": ["label", "label", "text"], "level_confidences": [[0.9, 0.5]] * len(full)}
    expected = score_paths(texts[::-1], texts, **text_kwargs)
    assert {"level_1_ece", "level_3_rouge_l"} <= set(expected)
    assert metric.compute(predictions=texts[::-1], references=texts, **text_kwargs) == pytest.approx(expected)
