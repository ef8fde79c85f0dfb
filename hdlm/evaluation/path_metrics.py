"""Scores of paths whose levels are labels, then free text (classification-guided generation: a support strategy,
then a reply): the hierarchical metrics over the label levels, the text metrics over each text level.

This module imports only numpy, scikit-learn and its sibling metric modules: it is also a file of the standalone
`evaluate` metric (`metrics/hierarchical_f1/`, a link to this file), which loads without the `hdlm` package.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .hierarchical_metrics import check_label_paths, compute_hierarchical_metrics
from .text_metrics import compute_text_metrics

logger = logging.getLogger(__name__)


def _check_level_kinds(level_kinds: Sequence[str]) -> list[str]:
    """`level_kinds` as a list, checked: a non-empty list of "label" / "text", label levels first."""
    kinds = [] if isinstance(level_kinds, str) or not isinstance(level_kinds, Sequence) else list(level_kinds)
    first_text = kinds.index("text") if "text" in kinds else len(kinds)
    if not kinds or any(kind not in ("label", "text") for kind in kinds) or "label" in kinds[first_text:]:
        raise ValueError(
            f'`level_kinds` must be a non-empty list of "label" and "text", label levels first (e.g. ["label", '
            f'"text"]), got {level_kinds!r}.'
        )
    return kinds


def _check_truncated(truncated: Sequence[Sequence[bool]], path_lengths: Sequence[int]) -> None:
    """`truncated` holds one list of booleans per path, one boolean per level of the path."""
    num_paths = len(path_lengths)
    if isinstance(truncated, str) or not isinstance(truncated, Sequence) or len(truncated) != num_paths:
        raise ValueError(
            f"`truncated` must hold one list of booleans per prediction ({num_paths}), got "
            f"{type(truncated).__name__} of length {len(truncated) if isinstance(truncated, Sequence) else '-'}."
        )
    for index, (flags, num_levels) in enumerate(zip(truncated, path_lengths)):
        if (
            isinstance(flags, str)
            or not isinstance(flags, Sequence)
            or len(flags) != num_levels
            or not all(isinstance(flag, (bool, np.bool_)) for flag in flags)
        ):
            raise ValueError(
                f"`truncated[{index}]` must hold one boolean per level of its prediction ({num_levels}), "
                f"got {flags!r}."
            )


def score_paths(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    level_kinds: Sequence[str],
    taxonomy: Sequence[Sequence[str]] | None = None,
    truncated: Sequence[Sequence[bool]] | None = None,
    level_confidences: Sequence[Sequence[float]] | None = None,
    path_confidences: Sequence[float] | None = None,
) -> dict[str, float]:
    """
    Hierarchical metrics over the leading label levels and text metrics over each text level (`level_{d}_bleu_2`,
    `level_{d}_rouge_l`, `level_{d}_distinct_2`, `level_{d}_empty_rate` and, with `truncated`,
    `level_{d}_truncated_rate`).

    Every prediction and reference must hold one entry per level, as the data loader requires of every row (label
    paths may stop early where every level is a label: `allow_partial_paths`), and `truncated`, when given, one
    boolean per level of its prediction. References whose path the taxonomy does not hold (labels unseen
    in training) are added to it: they are scored as errors the model could not avoid, not rejected.

    `level_confidences` (per document, one probability per label level) and `path_confidences` (per document, the
    probability of its label levels' path) add `level_{d}_ece`, `level_{d}_brier`, `path_ece` and `path_brier` over
    the label levels, as in `compute_hierarchical_metrics`.
    """
    level_kinds = _check_level_kinds(level_kinds)
    num_labels = level_kinds.count("label")
    metrics: dict[str, float] = {}
    for name, paths in (("predictions", predictions), ("references", references)):
        for index, path in enumerate(check_label_paths(paths, name, allow_empty=True)):
            partial = num_labels == len(level_kinds) and 1 <= len(path) < num_labels  # a label path that stops early
            if len(path) != len(level_kinds) and not partial:
                raise ValueError(
                    f"`{name}[{index}]` must hold one entry per level ({len(level_kinds)}, as `level_kinds` "
                    f"{level_kinds}), got {list(path)!r}. Fix: give every path all its levels, or pass the "
                    "`level_kinds` of the paths."
                )
    if truncated is not None:
        _check_truncated(truncated, [len(path) for path in predictions])
    if num_labels:
        label_references = [tuple(path[:num_labels]) for path in references]
        full_taxonomy = None
        if taxonomy:
            known = {tuple(path) for path in taxonomy}
            if unknown := [path for path in label_references if path not in known]:
                logger.warning(
                    f"{len(unknown)} of {len(label_references)} references have a label path outside the model's "
                    f"taxonomy (e.g. {list(unknown[0])}): they are scored as errors the model cannot avoid. Check "
                    "that the test file matches the training data."
                )
            full_taxonomy = sorted(known | set(label_references))
        metrics.update(
            compute_hierarchical_metrics(
                [list(path[:num_labels]) for path in predictions],
                [list(path) for path in label_references],
                taxonomy=full_taxonomy,
                level_confidences=level_confidences,
                path_confidences=path_confidences,
            )
        )
    elif level_confidences is not None or path_confidences is not None:
        raise ValueError("`level_confidences` and `path_confidences` score label levels: `level_kinds` has none.")
    for level in range(num_labels, len(level_kinds)):
        text_scores = compute_text_metrics(
            [path[level] for path in predictions],
            [path[level] for path in references],
            truncated=None if truncated is None else [flags[level] for flags in truncated],
        )
        metrics.update({f"level_{level + 1}_{key}": value for key, value in text_scores.items()})
    return metrics
