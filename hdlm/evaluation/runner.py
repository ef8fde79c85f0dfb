"""Decoding a test set with a hierarchical model and scoring it: label levels by the hierarchical metrics, text
levels by the text metrics (`score_paths`, defined in `path_metrics` and imported here, where callers find it)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .calibration import calibration_curves, plot_coverage_accuracy, plot_reliability_diagram
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

    Returns one record per text (prediction, reference, per-level scores and, where the label levels were decoded
    under constraints, their probabilities and the path's) and the metrics, which include `eval_seconds`,
    `seconds_per_example` and the ECE and Brier score of each label level's probability and of the whole path's
    (`level_{d}_ece`, `path_ece`, ...; see `calibration_curves`).
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
            **(
                {"probabilities": [level.probability for level in output.levels if level.kind == "label"]}
                if output.probability is not None
                else {}
            ),
            **({"top_paths": output.top_paths} if output.top_paths else {}),
        }
        for text, reference, output in zip(texts, references, outputs)
    ]
    metrics = score_paths(
        [record["prediction"] for record in records],
        references,
        model.config.level_kinds,
        taxonomy=model.config.taxonomy,
        truncated=[record["truncated"] for record in records],
        **confidences(records),
    )
    metrics.update(eval_seconds=seconds, seconds_per_example=seconds / max(len(texts), 1))
    return records, metrics


def confidences(records: Sequence[Mapping]) -> dict[str, list]:
    """
    `score_paths`' `level_confidences` (per record, each label level's probability given the labels above it) and
    `path_confidences` (their product), from the records' label probabilities; empty where a record has none
    (decoded without constraints).
    """
    if not records or any("probabilities" not in record for record in records):
        return {}
    levels = [record["probabilities"] for record in records]
    return {"level_confidences": levels, "path_confidences": [math.prod(row) for row in levels]}


def confidence_curves(records: Sequence[Mapping], depth: int, suffix: str = "") -> dict[str, tuple[list, list]]:
    """The `calibration_curves` of the records' label levels (the first `depth` of each path), named `level_{d}`
    and `path` followed by `suffix`, for the calibration plots; empty without probabilities."""
    scores = confidences(records)
    if not scores:
        return {}
    predictions = [record["prediction"][:depth] for record in records]
    levels = [row[:depth] for row in scores["level_confidences"]]
    curves = calibration_curves(
        predictions, [record["reference"] for record in records], levels, scores["path_confidences"]
    )
    return {name + suffix: curve for name, curve in curves.items()}


def write_calibration_plots(directory: str | Path, curves: Mapping[str, tuple[list, list]]) -> None:
    """`reliability_diagram.png` of `curves` and `coverage_accuracy.png` of their paths' (abstaining below a path
    probability) in `directory`; nothing without curves."""
    if not curves:
        return
    plot_reliability_diagram(curves, Path(directory) / "reliability_diagram.png")
    paths = {name: curve for name, curve in curves.items() if name.startswith("path")}
    plot_coverage_accuracy(paths, Path(directory) / "coverage_accuracy.png")
