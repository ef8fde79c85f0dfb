"""Calibration of a model's probabilities: ECE and Brier scores, the reliability diagram and the coverage-accuracy
curve of abstaining below a confidence threshold.

The scores are computed in `calibration_metrics` (which the standalone `evaluate` metric shares); this module adds
the plots. A curve is `(confidences, correct)`: one probability per prediction and whether that prediction was right,
as `calibration_curves` gives them for each level and for the path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .calibration_metrics import calibration_curves, calibration_scores, reliability_bins  # noqa: E402
from .report import save_figure  # noqa: E402

__all__ = [
    "calibration_curves",
    "calibration_scores",
    "coverage_accuracy",
    "plot_coverage_accuracy",
    "plot_reliability_diagram",
]

Curves = Mapping[str, tuple[Sequence[float], Sequence[bool]]]


def coverage_accuracy(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """The share of predictions kept and their accuracy as the confidence threshold falls: one point per distinct
    confidence, from the most confident predictions alone (coverage `1/N` or more) to all of them (coverage 1).

    Predictions of equal confidence are kept or dropped together, as a threshold would.
    """
    calibration_scores(confidences, correct)  # the same checks
    confidence = np.asarray(confidences, dtype=float)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=float)[order])
    kept = np.arange(1, len(order) + 1)
    last_of_ties = np.append(confidence[order][1:] != confidence[order][:-1], True)
    return kept[last_of_ties] / len(order), hits[last_of_ties] / kept[last_of_ties]


def plot_reliability_diagram(curves: Curves, path: str | Path, num_bins: int = 15) -> None:
    """The reliability diagram of each curve (a level, or the whole path): the accuracy of the predictions in each
    equal-width confidence bin against their mean confidence, with the diagonal of perfect calibration; the legend
    gives each curve's ECE. Empty bins have no point. Written atomically as a PNG."""
    _check_curves(curves)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, (confidences, correct) in curves.items():
        ece = calibration_scores(confidences, correct, num_bins)["ece"]
        counts, confidence_sums, hit_sums = reliability_bins(
            np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float), num_bins
        )
        filled = counts > 0
        axis.plot(
            confidence_sums[filled] / counts[filled],
            hit_sums[filled] / counts[filled],
            marker="o",
            label=f"{name} (ECE {100 * ece:.1f} %, n = {len(confidences)})",
        )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel(f"mean confidence in the bin ({num_bins} equal-width bins)")
    axis.set_ylabel("accuracy in the bin")
    axis.set_title("Reliability diagram")
    axis.legend(fontsize="small", loc="upper left")
    figure.tight_layout()
    save_figure(figure, path)


def plot_coverage_accuracy(curves: Curves, path: str | Path) -> None:
    """The accuracy of the predictions kept against the share kept, as the confidence threshold falls (abstaining
    on the rest), one line per curve; the right end of each line is the accuracy without abstention. Written
    atomically as a PNG."""
    _check_curves(curves)
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name, (confidences, correct) in curves.items():
        coverage, accuracy = coverage_accuracy(confidences, correct)
        axis.plot(100 * coverage, 100 * accuracy, label=name)
    axis.set_xlim(0, 100)
    axis.set_xlabel("coverage: predictions kept (%)")
    axis.set_ylabel("accuracy of the kept predictions (%)")
    axis.set_title("Coverage vs accuracy")
    axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def _check_curves(curves: Curves) -> None:
    """A non-empty mapping of names to `(confidences, correct)` pairs (their values are checked where used)."""
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(
            "`curves` must map at least one name to a pair (confidences, correct), e.g. {'level 1': ([0.9, 0.6], "
            f"[True, False])}}, got {curves!r}."
        )
    for name, curve in curves.items():
        if not isinstance(curve, Sequence) or isinstance(curve, str) or len(curve) != 2:
            raise ValueError(f"`curves[{name!r}]` must be a pair (confidences, correct), got {curve!r}.")
