"""Hand-computed checks of `compute_hierarchical_metrics`, cross-checked against scikit-learn where they coincide."""

import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics

# Taxonomy A -> {a1, a2}, B -> {b1, b2}, C -> {c1}, D -> {d1}; D never occurs in the data.
TAXONOMY = [["A", "a1"], ["A", "a2"], ["B", "b1"], ["B", "b2"], ["C", "c1"], ["D", "d1"]]
REFERENCES = [["A", "a1"], ["A", "a2"], ["B", "b1"], ["B", "b2"], ["C", "c1"]]
PREDICTIONS = [
    ["A", "a1"],  # right
    ["A", "a1"],  # right level 1, wrong level 2
    ["A", "b1"],  # wrong level 1, right level 2: inconsistent (A -> b1 is no edge)
    ["B"],  # right level 1, level 2 missing
    ["C", "c1"],  # right
]

# A label is its path: the level-2 label of [A, b1] is A/b1, not B/b1.
# Level 1: true A A B B C, predicted A A A B C -> 4 / 5 right, nothing missing.
#   A: TP 2, FP 1, FN 0 -> F1 = 4 / 5; B: TP 1, FN 1 -> 2 / 3; C: 1.  macro = (4/5 + 2/3 + 1) / 3 = 37 / 45.
# Level 2: true A/a1 A/a2 B/b1 B/b2 C/c1, predicted A/a1 A/a1 A/b1 - C/c1 -> 2 / 5 right.
#   micro: TP 2, FP 2 (A/a1 for A/a2, A/b1 for B/b1; the missing one is no FP), FN 3 (A/a2, B/b1, B/b2) -> 4 / 9.
#   A/a1: TP 1, FP 1 -> 2 / 3; C/c1: 1; A/a2, B/b1, B/b2, A/b1: 0.  macro = (2/3 + 1) / 6 = 5 / 18.
# Flat: true sets have 10 labels, predicted sets 9; TP = 2 + 1 + 0 + 1 + 2 = 6, FP 3, FN 4 -> 12 / 19.
#   per label: A 4/5, B 2/3, C 1, A/a1 2/3, C/c1 1, the others 0 -> sum 62 / 15.
#   macro over the 10 taxonomy labels (D, D/d1 score 0; A/b1 is none of them) = 62 / 150; over the 9 seen = 62 / 135.
# Path: 2 / 5 exact; classes (A,a1) 2/3, (A,a2) 0, (B,b1) 0, (B,b2) 0, (C,c1) 1, (A,b1) 0, (B) 0 -> macro 5 / 21.
# Hierarchical: the label sets hold their ancestors already -> the flat counts: hP = 6 / 9, hR = 6 / 10, hF = 12 / 19.
# Inconsistent: [A, b1] only -> 1 / 5.
EXPECTED = {
    "level_1_accuracy": 4 / 5,
    "level_1_micro_f1": 4 / 5,
    "level_1_macro_f1": 37 / 45,
    "level_2_accuracy": 2 / 5,
    "level_2_micro_f1": 4 / 9,
    "level_2_macro_f1": 5 / 18,
    "flat_micro_f1": 12 / 19,
    "flat_macro_f1": 62 / 150,
    "path_accuracy": 2 / 5,
    "path_micro_f1": 2 / 5,
    "path_macro_f1": 5 / 21,
    "hierarchical_precision": 6 / 9,
    "hierarchical_recall": 6 / 10,
    "hierarchical_f1": 12 / 19,
    "inconsistency_rate": 1 / 5,
}


def _flat_label_sets(paths):
    """Each path's labels, keyed by their paths as strings."""
    return [["/".join(path[:level]) for level in range(1, len(path) + 1)] for path in paths]


def test_every_output_by_hand():
    metrics = compute_hierarchical_metrics(PREDICTIONS, REFERENCES, taxonomy=TAXONOMY)
    assert list(metrics) == list(EXPECTED)
    assert metrics == pytest.approx(EXPECTED)
    assert all(isinstance(value, float) for value in metrics.values())


def test_without_taxonomy_macro_runs_over_seen_labels_and_edges_come_from_references():
    metrics = compute_hierarchical_metrics(PREDICTIONS, REFERENCES)
    assert metrics == pytest.approx({**EXPECTED, "flat_macro_f1": 62 / 135})


def test_cross_check_with_sklearn():
    metrics = compute_hierarchical_metrics(PREDICTIONS, REFERENCES)
    level_1_true = [path[0] for path in REFERENCES]
    level_1_pred = [path[0] for path in PREDICTIONS]
    assert metrics["level_1_micro_f1"] == pytest.approx(accuracy_score(level_1_true, level_1_pred))
    assert metrics["level_1_macro_f1"] == pytest.approx(f1_score(level_1_true, level_1_pred, average="macro"))

    binarizer = MultiLabelBinarizer().fit(_flat_label_sets(REFERENCES) + _flat_label_sets(PREDICTIONS))
    y_true = binarizer.transform(_flat_label_sets(REFERENCES))
    y_pred = binarizer.transform(_flat_label_sets(PREDICTIONS))
    assert metrics["flat_micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert metrics["flat_macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))

    # The HdLM authors' protocol: F1 over joined path strings.
    joined_true = ["-".join(path) for path in REFERENCES]
    joined_pred = ["-".join(path) for path in PREDICTIONS]
    assert metrics["path_micro_f1"] == pytest.approx(f1_score(joined_true, joined_pred, average="micro"))
    assert metrics["path_micro_f1"] == pytest.approx(accuracy_score(joined_true, joined_pred))
    assert metrics["path_macro_f1"] == pytest.approx(
        f1_score(joined_true, joined_pred, average="macro", zero_division=0)
    )


def test_same_name_at_two_levels_is_two_labels():
    taxonomy = [["Other", "X"], ["X", "Other"]]
    metrics = compute_hierarchical_metrics([["Other", "X"]], [["X", "Other"]], taxonomy=taxonomy)
    # Keyed by name alone, {Other, X} would match {X, Other} perfectly; keyed by (level, name) nothing matches.
    assert metrics["flat_micro_f1"] == 0.0
    assert metrics["hierarchical_f1"] == 0.0
    assert metrics["level_1_accuracy"] == 0.0
    assert metrics["level_2_accuracy"] == 0.0
    assert metrics["inconsistency_rate"] == 0.0

    right = compute_hierarchical_metrics([["Other", "Other"]], [["Other", "Other"]])
    assert right["flat_micro_f1"] == 1.0
    assert right["flat_macro_f1"] == 1.0  # (1, Other) and (2, Other): two labels, both right


def test_variable_depth():
    taxonomy = [["A", "a1", "x"], ["A", "a2"], ["B"]]
    references = [["A", "a1", "x"], ["A", "a2"], ["B"]]
    predictions = [["A", "a1", "x"], ["A", "a2", "x"], ["B"]]
    metrics = compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
    # Level 3 is scored on documents 0 (A/a1/x vs A/a1/x) and 1 (no reference, A/a2/x predicted): accuracy over
    # document 0 only, F1 with TP 1, FP 1 -> 2 / 3; macro over A/a1/x (1) and A/a2/x (0) -> 1 / 2.
    # Flat: 6 reference labels, 7 predicted, TP 6 -> 12 / 13; every taxonomy label has F1 1 (A/a2/x is not one) -> 1.
    # Path: 2 / 3 exact; classes (A,a1,x) 1, (A,a2) 0, (B) 1, (A,a2,x) 0 -> macro 1 / 2.
    # Hierarchical: TP 3 + 2 + 1 = 6, |pred| 7, |true| 6.  Inconsistent: A/a2 -> A/a2/x is no edge -> 1 / 3.
    assert metrics == pytest.approx(
        {
            "level_1_accuracy": 1.0,
            "level_1_micro_f1": 1.0,
            "level_1_macro_f1": 1.0,
            "level_2_accuracy": 1.0,
            "level_2_micro_f1": 1.0,
            "level_2_macro_f1": 1.0,
            "level_3_accuracy": 1.0,
            "level_3_micro_f1": 2 / 3,
            "level_3_macro_f1": 1 / 2,
            "flat_micro_f1": 12 / 13,
            "flat_macro_f1": 1.0,
            "path_accuracy": 2 / 3,
            "path_micro_f1": 2 / 3,
            "path_macro_f1": 1 / 2,
            "hierarchical_precision": 6 / 7,
            "hierarchical_recall": 1.0,
            "hierarchical_f1": 12 / 13,
            "inconsistency_rate": 1 / 3,
        }
    )


def test_empty_prediction_is_a_missing_label():
    metrics = compute_hierarchical_metrics([["A", "a1"], []], [["A", "a1"], ["B", "b1"]])
    # The empty path is wrong (accuracy 1 / 2) but no false positive: F1 = 2 TP / (2 TP + FN) = 2 / 3.
    assert metrics["path_accuracy"] == pytest.approx(1 / 2)
    assert metrics["path_micro_f1"] == pytest.approx(2 / 3)
    assert metrics["path_macro_f1"] == pytest.approx(1 / 2)
    assert metrics["level_1_accuracy"] == pytest.approx(1 / 2)
    assert metrics["level_1_micro_f1"] == pytest.approx(2 / 3)
    assert metrics["level_2_micro_f1"] == pytest.approx(2 / 3)
    assert metrics["flat_micro_f1"] == pytest.approx(2 / 3)
    assert metrics["hierarchical_precision"] == pytest.approx(1.0)
    assert metrics["hierarchical_recall"] == pytest.approx(1 / 2)
    assert metrics["inconsistency_rate"] == 0.0


@pytest.mark.parametrize(
    ("predictions", "references", "taxonomy", "message"),
    [
        ([["A"]], [["A"], ["B"]], None, r"differ in length: 1 != 2"),
        ([], [], None, r"`references` is empty"),
        ([["A"], "A-a1"], [["A"], ["A"]], None, r"`predictions\[1\]` is not a list of strings"),
        ([["A"]], [["A", 3]], None, r"`references\[0\]` is not a list of strings"),
        ([["A"], ["B"]], [["A"], []], None, r"`references\[1\]` is an empty label path"),
        ("A", [["A"]], None, r"`predictions` must be a list of label paths"),
        ([["A"]], [["A"]], [], r"`taxonomy` is empty"),
        ([["A"]], [["A"]], [["A", None]], r"`taxonomy\[0\]` is not a list of strings"),
        ([["A", "b"]], [["A", "b"]], [["A", "a"], ["B", "b"]], r"`references\[0\]` is not a path of the taxonomy"),
    ],
)
def test_invalid_inputs(predictions, references, taxonomy, message):
    with pytest.raises(ValueError, match=message):
        compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
