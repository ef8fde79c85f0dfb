"""Calibration of predicted probabilities: top-label expected calibration error and Brier score, overall and per level.

This module imports only numpy and its sibling metric modules: it is also a file of the standalone `evaluate` metric
(`metrics/hierarchical_f1/`, a link to this file), which loads without the `hdlm` package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LabelPath = tuple[str, ...]


def calibration_scores(confidences: Sequence[float], correct: Sequence[bool], num_bins: int = 15) -> dict[str, float]:
    """Top-label expected calibration error and Brier score of `confidences` against `correct`.

    - `ece` (Guo et al., 2017): the confidences are cut into `num_bins` equal-width bins `(k / B, (k + 1) / B]` (a
      confidence of 0 falls in the first); `ECE = Σ_k (n_k / N) |acc_k - conf_k|`, with `acc_k` the share of correct
      predictions and `conf_k` the mean confidence of bin `k` (empty bins add 0).
    - `brier`: `mean((confidence - correct)^2)`, the squared error of the confidence as a forecast of correctness
      (the top-label Brier score; 0 is perfect, always predicting 0.5 scores 0.25).

    Both lie in [0, 1] and are 0 for a perfect, perfectly confident predictor.

    Args:
        confidences: The probability each prediction was given, in [0, 1].
        correct: Whether each prediction was right (booleans, or 0 / 1).
        num_bins: The number of equal-width bins of the ECE.

    Raises:
        ValueError: On a confidence outside [0, 1] or not a number, a `correct` entry that is not a boolean,
            lengths that differ, no confidence at all, or `num_bins` not a positive integer.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"`num_bins` must be a positive integer, got {num_bins!r}.")
    confidence = _check_confidences(confidences, "confidences")
    if isinstance(correct, str) or not isinstance(correct, Sequence | np.ndarray):
        raise ValueError(f"`correct` must be a list of booleans, got {type(correct).__name__}.")
    if len(correct) != len(confidence):
        raise ValueError(f"`confidences` and `correct` differ in length: {len(confidence)} != {len(correct)}.")
    for index, flag in enumerate(correct):
        if not isinstance(flag, bool | np.bool_) and flag not in (0, 1):
            raise ValueError(f"`correct[{index}]` is not a boolean: {flag!r}.")
    if not len(confidence):
        raise ValueError("`confidences` is empty: there is nothing to score.")
    hits = np.asarray(correct, dtype=float)
    _, confidence_sums, hit_sums = reliability_bins(confidence, hits, num_bins)
    gaps = np.abs(hit_sums - confidence_sums)
    return {
        "ece": float(gaps.sum() / len(confidence)),
        "brier": float(np.mean((confidence - hits) ** 2)),
    }


def reliability_bins(
    confidences: np.ndarray, hits: np.ndarray, num_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin `(k / B, (k + 1) / B]` (0 in the first): the number of predictions, the sum of their
    confidences and the number of right ones; the inputs are checked arrays (see `calibration_scores`)."""
    bins = np.clip(np.ceil(confidences * num_bins).astype(int) - 1, 0, num_bins - 1)
    return (
        np.bincount(bins, minlength=num_bins),
        np.bincount(bins, confidences, num_bins),
        np.bincount(bins, hits, num_bins),
    )


def _check_confidences(values: object, name: str) -> np.ndarray:
    """`values` as a float array, checked: a list of numbers in [0, 1] (not booleans or strings)."""
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"`{name}` must be a list of probabilities, got {type(values).__name__}.")
    for index, value in enumerate(values):
        if isinstance(value, bool | str) or not isinstance(value, int | float | np.number) or not 0 <= value <= 1:
            raise ValueError(
                f"`{name}[{index}]` is not a probability in [0, 1]: {value!r}. Fix: pass the probability of each "
                "prediction (e.g. `HierarchicalLevel.probability`), not a log-probability or a score."
            )
    return np.asarray(values, dtype=float).reshape(-1)


def calibration_curves(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    level_confidences: Sequence[Sequence[float]] | None = None,
    path_confidences: Sequence[float] | None = None,
) -> dict[str, tuple[list[float], list[bool]]]:
    """The `(confidences, correct)` pairs that calibration is judged on, keyed `level_{d}` and `path`.

    `level_confidences[i]` holds one probability per label of `predictions[i]` (a path that stops early has fewer),
    each a label's probability given the labels above it (as `HierarchicalLevel.probability`): level `d` is judged on
    the documents whose prediction has a label at level `d` under the reference's labels above it (every document at
    level 1), and is right when the reference has that label there. A level no document reaches that way is left out.
    `path_confidences[i]` is the probability of the whole predicted path, right when the path equals the reference.
    """
    predictions = [tuple(path) for path in predictions]
    references = [tuple(path) for path in references]
    curves: dict[str, tuple[list[float], list[bool]]] = {}
    if level_confidences is not None:
        rows = _checked_rows(level_confidences, "level_confidences", len(predictions))
        for index, (row, prediction) in enumerate(zip(rows, predictions)):
            if len(row) != len(prediction):
                raise ValueError(
                    f"`level_confidences[{index}]` must hold one probability per label of `predictions[{index}]` "
                    f"({len(prediction)}: {list(prediction)!r}), got {len(row)}."
                )
        for level in range(1, max(map(len, predictions), default=0) + 1):
            scored = [
                i
                for i, (prediction, reference) in enumerate(zip(predictions, references))
                if len(prediction) >= level and prediction[: level - 1] == reference[: level - 1]
            ]
            if scored:
                curves[f"level_{level}"] = (
                    [float(rows[i][level - 1]) for i in scored],
                    [predictions[i][:level] == references[i][:level] for i in scored],
                )
    if path_confidences is not None:
        confidence = _check_confidences(path_confidences, "path_confidences")
        if len(confidence) != len(predictions):
            raise ValueError(
                f"`path_confidences` must hold one probability per prediction ({len(predictions)}), got "
                f"{len(confidence)}."
            )
        curves["path"] = (confidence.tolist(), [p == r for p, r in zip(predictions, references)])
    return curves


def confidence_scores(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    level_confidences: Sequence[Sequence[float]] | None = None,
    path_confidences: Sequence[float] | None = None,
    num_bins: int = 15,
) -> dict[str, float]:
    """ECE and Brier score (`calibration_scores`) of each curve of `calibration_curves`: `level_{d}_ece`,
    `level_{d}_brier` for every level judged, and `path_ece`, `path_brier`."""
    curves = calibration_curves(predictions, references, level_confidences, path_confidences)
    return {
        f"{name}_{key}": value
        for name, (confidences, correct) in curves.items()
        for key, value in calibration_scores(confidences, correct, num_bins).items()
    }


def _checked_rows(rows: object, name: str, expected: int) -> list[np.ndarray]:
    """One checked probability list per prediction."""
    if isinstance(rows, str) or not isinstance(rows, Sequence) or len(rows) != expected:
        size = len(rows) if isinstance(rows, Sequence) else "-"
        raise ValueError(
            f"`{name}` must hold one list of probabilities per prediction ({expected}), got {type(rows).__name__} "
            f"of length {size}."
        )
    return [_check_confidences(row, f"{name}[{index}]") for index, row in enumerate(rows)]
