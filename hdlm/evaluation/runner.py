"""Decoding a test set with a hierarchical model and scoring it: label levels by the hierarchical metrics, text
levels by the text metrics (`score_paths`, defined in `path_metrics` and imported here, where callers find it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .path_metrics import score_paths

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from generation_hdlm import HierarchicalGenerationConfig


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
