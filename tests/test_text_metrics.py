"""Hand-computed checks of `compute_text_metrics`."""

import math

import pytest

from hdlm.evaluation.runner import score_paths
from hdlm.evaluation.text_metrics import compute_text_metrics, distinct_n

PREDICTIONS = ["the cat sat on the mat", "a dog runs"]
REFERENCES = ["the cat is on the mat", "a dog runs fast"]


def test_bleu_2_by_hand():
    # Unigrams: "the" x2, cat, on, mat match (sat does not) -> 5 / 6; "a dog runs" -> 3 / 3. Pooled p1 = 8 / 9.
    # Bigrams: "the cat", "on the", "the mat" of 5 -> 3 / 5; "a dog", "dog runs" -> 2 / 2. Pooled p2 = 5 / 7.
    # Lengths: hypothesis 9, reference 10 -> BP = exp(1 - 10 / 9).
    expected = math.exp(1 - 10 / 9) * math.exp((math.log(8 / 9) + math.log(5 / 7)) / 2)
    metrics = compute_text_metrics(PREDICTIONS, REFERENCES)
    assert abs(metrics["bleu_2"] - expected) < 1e-6
    assert 0.0 <= metrics["bleu_2"] <= 1.0


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" = 5: P = R = 5 / 6, F = 5 / 6.
    # LCS("a dog runs", "a dog runs fast") = 3: P = 1, R = 3 / 4, F = 2 * 3/4 / (7/4) = 6 / 7.
    metrics = compute_text_metrics(PREDICTIONS, REFERENCES)
    assert metrics["rouge_l"] == pytest.approx((5 / 6 + 6 / 7) / 2)


def test_distinct_2_and_empty_and_truncated_rates():
    predictions = ["a b a b", "a b c", "  "]
    references = ["a b", "a b c", "c"]
    # Bigrams: (a b), (b a), (a b) | (a b), (b c) | none -> 3 distinct of 5.
    metrics = compute_text_metrics(predictions, references, truncated=[True, False, False])
    assert metrics["distinct_2"] == pytest.approx(3 / 5)
    assert metrics["empty_rate"] == pytest.approx(1 / 3)
    assert metrics["truncated_rate"] == pytest.approx(1 / 3)
    assert distinct_n(["", "one"], 2) == 0.0


def test_keys():
    assert list(compute_text_metrics(PREDICTIONS, REFERENCES)) == ["bleu_2", "rouge_l", "distinct_2", "empty_rate"]
    with_truncation = compute_text_metrics(PREDICTIONS, REFERENCES, truncated=[False, False])
    assert list(with_truncation)[-1] == "truncated_rate"
    assert with_truncation["truncated_rate"] == 0.0


def test_identical_texts_score_one():
    metrics = compute_text_metrics(REFERENCES, REFERENCES)
    assert metrics["bleu_2"] == pytest.approx(1.0)
    assert metrics["rouge_l"] == pytest.approx(1.0)
    assert metrics["empty_rate"] == 0.0


def test_bleu_2_of_identical_texts_is_at_most_one():
    """sacrebleu's percentage is 100.00000000000004 for these: a score must stay in [0, 1] (found by hypothesis)."""
    assert compute_text_metrics(["a b"], ["a b"])["bleu_2"] == 1.0


@pytest.mark.parametrize(
    ("predictions", "references", "truncated", "message"),
    [
        (["a"], ["a", "b"], None, r"differ in length: 1 != 2"),
        ([], [], None, r"`references` is empty"),
        (["a", 3], ["a", "b"], None, r"`predictions\[1\]` is not a string"),
        (["a"], [None], None, r"`references\[0\]` is not a string"),
        ("ab", ["a", "b"], None, r"`predictions` must be a list of strings"),
        (["a"], ["a"], [True, False], r"`truncated` and `predictions` differ in length: 2 != 1"),
        (["a"], ["a"], [1], r"`truncated\[0\]` is not a boolean"),
    ],
)
def test_invalid_inputs(predictions, references, truncated, message):
    with pytest.raises(ValueError, match=message):
        compute_text_metrics(predictions, references, truncated=truncated)


# -- the options of `score_paths` (the metric module's `level_kinds` and `truncated`) -----------------------------


@pytest.mark.parametrize(
    "predictions, references, kinds, truncated, message",
    [
        # `level_kinds` shorter than the paths: level 2 would not be scored, in silence.
        ([["A", "a1"]], [["A", "a1"]], ["label"], None, r"`predictions\[0\]` must hold one entry per level \(1"),
        # A path may stop early only where every level is a label (`allow_partial_paths`), not before a text level.
        ([["A"]], [["A", "hi"]], ["label", "text"], None, r"`predictions\[0\]` must hold one entry per level \(2"),
        ([["A", "hi"]], [["A"]], ["label", "text"], None, r"`references\[0\]` must hold one entry per level \(2"),
        (
            [["A", "hi"]],
            [["A", "hi"]],
            ["label", "text"],
            [[False, False], [True, True]],
            r"`truncated` must hold one",
        ),
        ([["A", "hi"]], [["A", "hi"]], ["label", "text"], [[False]], r"`truncated\[0\]` must hold one boolean per"),
        ([["A", "hi"]], [["A", "hi"]], ["label", "text"], [[False, "yes"]], r"`truncated\[0\]` must hold one"),
        ([["A", "hi"]], [["A", "hi"]], ["label", "text"], "no", r"`truncated` must hold one list of booleans"),
        ([["A", 3]], [["A", "hi"]], ["label", "text"], None, r"`predictions\[0\]\[1\]` is int 3"),
    ],
)
def test_score_paths_options_are_checked(predictions, references, kinds, truncated, message):
    with pytest.raises(ValueError, match=message):
        score_paths(predictions, references, kinds, truncated=truncated)


def test_score_paths_truncated_per_level():
    metrics = score_paths([["A", "hi"], ["B", "x"]], [["A", "hi"], ["A", "y"]], ["label", "text"],
                          truncated=[[False, False], [False, True]])  # fmt: skip
    assert metrics["level_2_truncated_rate"] == 0.5 and metrics["level_1_accuracy"] == 0.5


def test_score_paths_takes_label_paths_that_stop_early():
    """Where every level is a label, a path may stop early (`allow_partial_paths`): the levels it lacks hold no
    label, and a reference that stops leaves the deeper level's accuracy out for its row."""
    metrics = score_paths([["A"], ["A", "a1"]], [["A", "a1"], ["A"]], ["label", "label"])
    assert metrics["level_1_accuracy"] == 1.0
    assert metrics["level_2_accuracy"] == 0.0  # judged on the first row only, whose prediction stopped
    assert metrics["path_accuracy"] == 0.0
