"""Decoding a test set with a hierarchical model and scoring it: label levels by the hierarchical metrics, text
levels by the text metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from configuration_hdlm import misplaced_label_level

from ..data import check_level_kinds
from .hierarchical_metrics import check_label_paths, compute_hierarchical_metrics
from .text_metrics import compute_text_metrics

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from generation_hdlm import HierarchicalGenerationConfig

logger = logging.getLogger(__name__)


def score_paths(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    level_kinds: Sequence[str],
    taxonomy: Sequence[Sequence[str]] | None = None,
    truncated: Sequence[Sequence[bool]] | None = None,
) -> dict[str, float]:
    """
    Hierarchical metrics over the leading label levels and text metrics over each text level (`level_{d}_bleu_2`,
    `level_{d}_rouge_l`, `level_{d}_distinct_2`, `level_{d}_empty_rate` and, with `truncated`,
    `level_{d}_truncated_rate`).

    Every prediction and reference must hold one entry per level, as the data loader requires of every row (and
    `truncated`, when given, one boolean per level). References whose path the taxonomy does not hold (labels unseen
    in training) are added to it: they are scored as errors the model could not avoid, not rejected.
    """
    level_kinds = check_level_kinds(level_kinds)
    if misplaced_label_level(level_kinds) is not None:
        raise ValueError(f"`level_kinds` must list label levels before text levels, got {level_kinds!r}.")
    num_labels = level_kinds.count("label")
    metrics: dict[str, float] = {}
    for name, paths in (("predictions", predictions), ("references", references)):
        for index, path in enumerate(check_label_paths(paths, name, allow_empty=True)):
            if len(path) != len(level_kinds):
                raise ValueError(
                    f"`{name}[{index}]` must hold one entry per level ({len(level_kinds)}, as `level_kinds` "
                    f"{level_kinds}), got {list(path)!r}. Fix: give every path all its levels, or pass the "
                    "`level_kinds` of the paths."
                )
    if truncated is not None:
        if isinstance(truncated, str) or not isinstance(truncated, Sequence) or len(truncated) != len(predictions):
            raise ValueError(
                f"`truncated` must hold one list of booleans per prediction ({len(predictions)}), got "
                f"{type(truncated).__name__} of length {len(truncated) if isinstance(truncated, Sequence) else '-'}."
            )
        for index, flags in enumerate(truncated):
            if (
                isinstance(flags, str)
                or not isinstance(flags, Sequence)
                or len(flags) != len(level_kinds)
                or not all(isinstance(flag, (bool, np.bool_)) for flag in flags)
            ):
                raise ValueError(
                    f"`truncated[{index}]` must hold one boolean per level ({len(level_kinds)}, as `level_kinds`), "
                    f"got {flags!r}."
                )
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
            )
        )
    for level in range(num_labels, len(level_kinds)):
        text_scores = compute_text_metrics(
            [path[level] for path in predictions],
            [path[level] for path in references],
            truncated=None if truncated is None else [flags[level] for flags in truncated],
        )
        metrics.update({f"level_{level + 1}_{key}": value for key, value in text_scores.items()})
    return metrics


def evaluate_model(
    model,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    references: Sequence[Sequence[str]],
    generation_config: HierarchicalGenerationConfig | None = None,
    **generation_kwargs,
) -> tuple[list[dict], dict[str, float]]:
    """
    Decode `texts` with `model.generate_hierarchical` (under `generation_config`, its fields overridden by
    `generation_kwargs`, with a progress bar) and score the paths against `references`.

    Returns one record per text (prediction, reference, per-level scores) and the metrics, which include
    `eval_seconds` and `seconds_per_example`.
    """
    start = time.perf_counter()
    outputs = model.generate_hierarchical(
        list(texts), tokenizer, generation_config, show_progress=True, **generation_kwargs
    )
    seconds = time.perf_counter() - start
    records = [
        {
            "text": text,
            "reference": list(reference),
            "prediction": output.path,
            "scores": [level.score for level in output.levels],
            "truncated": [level.truncated for level in output.levels],
            **({"top_labels": [level.top_labels for level in output.levels]} if output.levels[0].top_labels else {}),
        }
        for text, reference, output in zip(texts, references, outputs)
    ]
    metrics = score_paths(
        [record["prediction"] for record in records],
        references,
        model.config.level_kinds,
        taxonomy=model.config.taxonomy,
        truncated=[record["truncated"] for record in records],
    )
    metrics.update(eval_seconds=seconds, seconds_per_example=seconds / max(len(texts), 1))
    return records, metrics
