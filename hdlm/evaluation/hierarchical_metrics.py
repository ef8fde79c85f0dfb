"""Metrics for hierarchical classification, computed from predicted and reference label paths.

A label path lists one label per level, coarsest first (`["Computer Science", "Machine learning"]`). Paths may have
different depths (a path may stop before the deepest level). A label is its path: the label of
`["Music", "Classical"]` at level 2 is `("Music", "Classical")`, a class of its own beside `("Physics", "Classical")`,
and the same name at two levels (an "Other" under level 1 and an "Other" under level 2) is two different labels.

Two published protocols disagree on what "Micro-F1" means for hierarchical text classification, and their numbers
are not comparable, so both are reported:

- the flattened all-label protocol of HiAGM, HGCLR and HPT (`flat_*`): a document's label set is the set of every
  label on its path, scored as multi-label classification;
- the joined-path protocol of the HdLM authors' code (`path_*`): the whole path is one class, so its micro-F1 is the
  exact path accuracy.

This module imports only numpy, scikit-learn and its sibling metric modules: it is also a file of the standalone
`evaluate` metric (`metrics/hierarchical_f1/`, a link to this file), which loads without the `hdlm` package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from .calibration_metrics import confidence_scores

LabelPath = tuple[str, ...]
Label = tuple[str, ...]  # a label is its path from the root: ("Music", "Classical")
Edge = tuple[Label, Label]

# Class id of "no label here": a prediction shorter than its reference, or a reference shorter than its prediction.
# It is never one of the classes that F1 averages over, so it only ever counts as a false negative or false positive.
_MISSING = -1


def check_label_paths(paths: Sequence[Sequence[str]], name: str, *, allow_empty: bool) -> list[LabelPath]:
    """Validate a list of label paths and return it as a list of tuples.

    Args:
        paths: The label paths, one per document, coarsest level first.
        name: The argument name used in error messages.
        allow_empty: Whether a path may hold no label at all (an empty prediction may; a reference may not).

    Raises:
        ValueError: If `paths` is not a list, or one of its paths is not a list of strings (the message names its
            index), or a path is empty while `allow_empty` is False.
    """
    if isinstance(paths, str) or not isinstance(paths, Sequence):
        raise ValueError(f"`{name}` must be a list of label paths, got {type(paths).__name__}.")
    checked = []
    for index, path in enumerate(paths):
        if isinstance(path, str) or not isinstance(path, Sequence):
            raise ValueError(
                f"`{name}[{index}]` is not a list of strings: {path!r}. Fix: give each document its path as a list "
                'of labels, coarsest first (e.g. ["Science", "Physics"]).'
            )
        bad = next(((position, label) for position, label in enumerate(path) if not isinstance(label, str)), None)
        if bad is not None:
            position, label = bad
            raise ValueError(
                f"`{name}[{index}]` is not a list of strings: {path!r} (`{name}[{index}][{position}]` is "
                f"{type(label).__name__} {label!r}). Fix: write every label as a string (e.g. {str(label)!r}), or map "
                "class ids to their names first."
            )
        if not path and not allow_empty:
            raise ValueError(f"`{name}[{index}]` is an empty label path.")
        checked.append(tuple(path))
    return checked


def path_labels(path: LabelPath) -> set[Label]:
    """Return the labels of a path, each keyed by its own path: `["A", "b"]` -> `{("A",), ("A", "b")}`."""
    return {tuple(path[:level]) for level in range(1, len(path) + 1)}


def path_edges(path: LabelPath) -> set[Edge]:
    """Return the parent -> child edges of a path: `["A", "b"]` -> `{(("A",), ("A", "b"))}`."""
    return {(tuple(path[:level]), tuple(path[: level + 1])) for level in range(1, len(path))}


def _union(sets: Iterable[set]) -> set:
    return set().union(*sets)


def _encode(path: LabelPath, level: int, vocabulary: dict[Label, int]) -> int:
    """Class id of the label of `path` at `level` (1-based, keyed by its path), or `_MISSING` when the path is
    shorter."""
    if len(path) < level:
        return _MISSING
    return vocabulary.setdefault(path[:level], len(vocabulary))


def _single_label_scores(y_true: list[int], y_pred: list[int], num_classes: int) -> tuple[float, float]:
    """Micro and macro F1 over the classes `0 .. num_classes - 1`; `_MISSING` is excluded from the class list."""
    classes = list(range(num_classes))
    micro = f1_score(y_true, y_pred, labels=classes, average="micro", zero_division=0)
    macro = f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    return float(micro), float(macro)


def _level_scores(predictions: list[LabelPath], references: list[LabelPath], level: int) -> dict[str, float]:
    vocabulary: dict[Label, int] = {}
    y_true, y_pred = [], []
    for prediction, reference in zip(predictions, references, strict=True):
        if len(reference) >= level or len(prediction) >= level:
            y_true.append(_encode(reference, level, vocabulary))
            y_pred.append(_encode(prediction, level, vocabulary))
    y_true_array, y_pred_array = np.array(y_true), np.array(y_pred)
    has_reference = y_true_array != _MISSING
    micro, macro = _single_label_scores(y_true, y_pred, len(vocabulary))
    return {
        f"level_{level}_accuracy": float(accuracy_score(y_true_array[has_reference], y_pred_array[has_reference])),
        f"level_{level}_micro_f1": micro,
        f"level_{level}_macro_f1": macro,
    }


def _path_scores(predictions: list[LabelPath], references: list[LabelPath]) -> dict[str, float]:
    vocabulary: dict[LabelPath, int] = {}
    y_true = [vocabulary.setdefault(reference, len(vocabulary)) for reference in references]
    y_pred = [
        vocabulary.setdefault(prediction, len(vocabulary)) if prediction else _MISSING for prediction in predictions
    ]
    micro, macro = _single_label_scores(y_true, y_pred, len(vocabulary))
    return {
        "path_accuracy": float(accuracy_score(y_true, y_pred)),
        "path_micro_f1": micro,
        "path_macro_f1": macro,
    }


def _checked_pairs(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> tuple[list[LabelPath], list[LabelPath]]:
    """The predicted and reference paths as tuples, checked: one prediction per reference, at least one reference."""
    predictions = check_label_paths(predictions, "predictions", allow_empty=True)
    references = check_label_paths(references, "references", allow_empty=False)
    if not references:
        raise ValueError("`references` is empty: there is nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"`predictions` and `references` differ in length: {len(predictions)} != {len(references)}.")
    return predictions, references


def _label_graph(
    references: list[LabelPath], taxonomy: Sequence[Sequence[str]] | None
) -> tuple[set[Label] | None, set[Edge]]:
    """The labels of `taxonomy` (None without one) and the parent -> child edges of the label graph: the taxonomy's,
    or without one the references'. Every reference must be a path of the taxonomy (or stop early on one)."""
    if taxonomy is None:
        return None, _union(path_edges(reference) for reference in references)
    taxonomy_paths = check_label_paths(taxonomy, "taxonomy", allow_empty=False)
    if not taxonomy_paths:
        raise ValueError("`taxonomy` is empty: pass None to derive the label graph from the references.")
    taxonomy_labels = _union(path_labels(path) for path in taxonomy_paths)
    graph_edges = _union(path_edges(path) for path in taxonomy_paths)
    for index, reference in enumerate(references):
        if not path_labels(reference) <= taxonomy_labels:
            raise ValueError(f"`references[{index}]` is not a path of the taxonomy: {list(reference)!r}.")
    return taxonomy_labels, graph_edges


class _LabelBinarizer:
    """Label sets as multi-label indicator rows over a fixed, sorted set of labels."""

    def __init__(self, labels: set[Label]) -> None:
        self.ids = {label: index for index, label in enumerate(sorted(labels))}
        self.binarizer = MultiLabelBinarizer(classes=list(range(len(self.ids)))).fit([])

    def __call__(self, label_sets: list[set[Label]]) -> np.ndarray:
        return self.binarizer.transform([[self.ids[label] for label in labels] for labels in label_sets])


def _flat_scores(
    binarize: _LabelBinarizer,
    true_sets: list[set[Label]],
    pred_sets: list[set[Label]],
    taxonomy_labels: set[Label] | None,
) -> dict[str, float]:
    """Micro F1 over all labels, and macro F1 over the taxonomy's labels (without one: every label seen)."""
    y_true, y_pred = binarize(true_sets), binarize(pred_sets)
    macro_labels = [binarize.ids[label] for label in (binarize.ids if taxonomy_labels is None else taxonomy_labels)]
    return {
        "flat_micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "flat_macro_f1": float(f1_score(y_true, y_pred, labels=macro_labels, average="macro", zero_division=0)),
    }


def _hierarchical_scores(
    binarize: _LabelBinarizer, true_sets: list[set[Label]], pred_sets: list[set[Label]]
) -> dict[str, float]:
    """Micro precision, recall and F1 over the label sets, which hold every ancestor already: a label is its path, so
    its ancestors are the labels of its path's prefixes."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        binarize(true_sets), binarize(pred_sets), average="micro", zero_division=0
    )
    return {
        "hierarchical_precision": float(precision),
        "hierarchical_recall": float(recall),
        "hierarchical_f1": float(f1),
    }


def compute_hierarchical_metrics(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    taxonomy: Sequence[Sequence[str]] | None = None,
    level_confidences: Sequence[Sequence[float]] | None = None,
    path_confidences: Sequence[float] | None = None,
) -> dict[str, float]:
    """Score predicted label paths against reference label paths under every common protocol.

    Notation: document `i` has reference path `r_i` and predicted path `p_i`; `L(x)` is the set of labels of path `x`,
    each label keyed by its path (`L(["A", "b"]) = {A, A/b}`: a name under two parents is two labels); `D` is the
    depth of the deepest reference. Scores lie in [0, 1]; a ratio with denominator 0 is 0 (as in HiAGM). A level a
    path lacks (it stops early) holds no label, as hiclass pads it with `""` and leaves it out of every label set.

    Per level `d = 1 .. D` (`level_{d}_accuracy`, `level_{d}_micro_f1`, `level_{d}_macro_f1`): the documents whose
    reference or prediction has a label at level `d`, each a single-label decision between level-`d` labels, so
    `p_i[d]` is right only under the right parents (`p_i[:d] = r_i[:d]`).

    - A prediction shorter than its reference at level `d` is a *missing label*: a false negative for the reference
      label and a false positive for no label. A prediction deeper than its reference adds a false positive only.
    - `accuracy = #{i : r_i has level d and p_i[:d] = r_i[:d]} / #{i : r_i has level d}`: documents whose reference
      stops before level `d` are left out of the level's accuracy (a missing prediction is wrong).
    - `micro_f1 = 2 TP / (2 TP + FP + FN)` summed over the level's labels; it equals the accuracy unless labels are
      missing or extra. `macro_f1` is the mean of the per-label F1 over the labels seen at that level in references or
      predictions.

    Flattened all-label protocol (HiAGM / HGCLR / HPT; `flat_micro_f1`, `flat_macro_f1`): multi-label classification
    of `L(p_i)` against `L(r_i)`. `flat_micro_f1 = 2 TP / (2 TP + FP + FN)` summed over all labels;
    `flat_macro_f1` is the mean per-label F1 over every label of `taxonomy` when it is given (labels absent from the
    test set score 0, as HiAGM's evaluation does), else over the labels seen in references or predictions.

    Joined-path protocol (the HdLM authors' code; `path_accuracy`, `path_micro_f1`, `path_macro_f1`): the whole path
    ("L1-L2-...") is one class. `path_accuracy = #{i : p_i = r_i} / N`. F1 is computed as per level, with the paths
    seen in references or predictions as classes and an empty predicted path as a missing label, so
    `path_micro_f1 = path_accuracy` whenever no predicted path is empty.

    Hierarchical precision, recall and F1 (Kiritchenko et al., 2005; `hierarchical_precision`,
    `hierarchical_recall`, `hierarchical_f1`): each label set augmented with its labels' ancestors, which `L(x)`
    already holds (a label's ancestors are its path's prefixes): `hP = Σ|L(p_i) ∩ L(r_i)| / Σ|L(p_i)|`,
    `hR = Σ|L(p_i) ∩ L(r_i)| / Σ|L(r_i)|`, `hF = 2 hP hR / (hP + hR)`; so `hierarchical_f1 = flat_micro_f1`. These
    equal `hiclass.metrics.precision / recall / f1` given each level's label as its path and `""` where a path stops
    (tested). An inconsistent prediction `[A, b]`, `b` under `B`, gets credit for `A` only: its level 2 is `A/b`.

    `inconsistency_rate = #{i : p_i has a parent -> child edge not in the label graph} / N` (a path that stops early
    is consistent), the graph being the edges of `taxonomy`, or without one the references' edges.

    Confidences add `level_{d}_ece`, `level_{d}_brier`, `path_ece`, `path_brier` (`calibration_curves` says on what).

    Args:
        predictions: Predicted label paths, one per document, coarsest level first. A path may be shorter or longer
            than its reference, or empty.
        references: Reference label paths, one per document, coarsest level first; none may be empty.
        taxonomy: Every label path of the taxonomy (its leaves' paths suffice); defines the valid labels per level and
            the valid parent -> child edges. Every reference must be a path of it, or stop early on one.
        level_confidences: Per document, the probability of each label of its predicted path given the labels above.
        path_confidences: Per document, the probability of its predicted path.

    Returns:
        A flat dict of the scores above, in that order (per level, flat, path, hierarchical, inconsistency, then
        calibration).

    Raises:
        ValueError: On a path that is not a list of strings, an empty reference, no references, lengths that differ,
            a reference outside `taxonomy`, or confidences that are not probabilities, one per predicted label.
    """
    predictions, references = _checked_pairs(predictions, references)
    taxonomy_labels, graph_edges = _label_graph(references, taxonomy)

    metrics: dict[str, float] = {}
    for level in range(1, max(len(reference) for reference in references) + 1):
        metrics.update(_level_scores(predictions, references, level))
    true_sets = [path_labels(reference) for reference in references]
    pred_sets = [path_labels(prediction) for prediction in predictions]
    binarize = _LabelBinarizer((taxonomy_labels or set()) | _union(true_sets + pred_sets))
    metrics.update(_flat_scores(binarize, true_sets, pred_sets, taxonomy_labels))
    metrics.update(_path_scores(predictions, references))
    metrics.update(_hierarchical_scores(binarize, true_sets, pred_sets))
    metrics["inconsistency_rate"] = float(np.mean([bool(path_edges(p) - graph_edges) for p in predictions]))
    metrics.update(confidence_scores(predictions, references, level_confidences, path_confidences))
    return metrics
