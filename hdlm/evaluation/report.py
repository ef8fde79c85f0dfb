"""Writing evaluation results: JSON and JSONL files written atomically, a side-by-side table, and plots."""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from hdlm.files import write_atomically, write_text_atomically  # noqa: E402

PER_LEVEL_SCORES = ("accuracy", "micro_f1", "macro_f1")
"""Scores of a label level (`level_{d}_<score>`), in the order they are shown."""
TEXT_LEVEL_SCORES = ("bleu_2", "rouge_l", "distinct_2", "empty_rate", "truncated_rate")
"""Scores of a free-text level (`level_{d}_<score>`), in the order they are shown."""
CALIBRATION_SCORES = ("ece", "brier")
"""Calibration scores of a label level (`level_{d}_<score>`) or of the path (`path_<score>`), when confidences are
scored; they are printed, not drawn as bars (lower is better)."""
TEXT_LEVEL_PLOTTED = ("bleu_2", "rouge_l", "distinct_2")
"""The text scores drawn as bars (higher is better); the empty and truncated rates are only printed."""
NO_LABEL = "(no label)"
"""The confusion-matrix column of a prediction that holds no label at the level."""
SUMMARY_KEYS = (
    "path_accuracy",
    "flat_micro_f1",
    "flat_macro_f1",
    "path_micro_f1",
    "path_macro_f1",
    "hierarchical_f1",
    "inconsistency_rate",
    "path_ece",
    "path_brier",
)


def write_json(path: str | Path, data: object) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping]) -> None:
    write_text_atomically(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def format_table(metrics_by_model: Mapping[str, Mapping[str, float]], keys: Sequence[str] | None = None) -> str:
    """A plain-text table, one column per model, one row per metric (percentages, seconds as they are)."""
    if keys is None:
        keys = [key for key in next(iter(metrics_by_model.values())) if key != "eval_seconds"]
    names = list(metrics_by_model)
    width = max(len(key) for key in keys) + 2
    columns = [max(len(name), 8) + 2 for name in names]
    lines = ["".ljust(width) + "".join(name.rjust(size) for name, size in zip(names, columns))]
    for key in keys:
        cells = []
        for name, size in zip(names, columns):
            value = metrics_by_model[name].get(key)
            text = "-" if value is None else f"{value:.3f}" if "second" in key else f"{100 * value:.2f}"
            cells.append(text.rjust(size))
        lines.append(key.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _levels(metrics_by_model: Iterable[Mapping[str, float]]) -> list[int]:
    """The levels with a score in any of `metrics_by_model`, in order."""
    return sorted(
        {int(key.split("_")[1]) for metrics in metrics_by_model for key in metrics if key.startswith("level_")}
    )


def level_keys(metrics: Mapping[str, float]) -> list[str]:
    """The per-level metric names present (a label level's scores, or a text level's), level by level."""
    return [
        f"level_{level}_{score}"
        for level in _levels([metrics])
        for score in PER_LEVEL_SCORES + CALIBRATION_SCORES + TEXT_LEVEL_SCORES
        if f"level_{level}_{score}" in metrics
    ]


def plot_per_level_scores(metrics_by_model: Mapping[str, Mapping[str, float]], path: str | Path) -> None:
    """
    Grouped bars of each level's scores, one colour per model: accuracy, micro-F1 and macro-F1 for label levels,
    BLEU-2, ROUGE-L and Distinct-2 for text levels. A model without a score (a baseline on a text level) has no bar.
    """
    groups = [
        (level, score)
        for level in _levels(metrics_by_model.values())
        for score in PER_LEVEL_SCORES + TEXT_LEVEL_PLOTTED
        if any(f"level_{level}_{score}" in metrics for metrics in metrics_by_model.values())
    ]
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(groups)), 4))
    width = 0.8 / len(metrics_by_model)
    for index, (name, metrics) in enumerate(metrics_by_model.items()):
        values = [100 * metrics.get(f"level_{level}_{score}", float("nan")) for level, score in groups]
        positions = [group + (index - (len(metrics_by_model) - 1) / 2) * width for group in range(len(groups))]
        axis.bar(positions, values, width, label=name)
    axis.set_xticks(range(len(groups)), [f"L{level} {score}" for level, score in groups], rotation=30, ha="right")
    axis.set_ylabel("%")
    axis.set_ylim(0, 100)
    axis.set_title("Per-level scores")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    save_figure(figure, path)


def plot_confusion(predictions: Sequence[str], references: Sequence[str], path: str | Path, title: str) -> None:
    """The confusion matrix of one label level (rows: reference, columns: prediction)."""
    labels = sorted(set(references) | set(predictions))
    size = max(5, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        references, predictions, labels=labels, ax=axis, xticks_rotation="vertical", colorbar=False
    )
    axis.set_title(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_loss_curves(log_history: Sequence[Mapping[str, float]], path: str | Path) -> None:
    """The training (and evaluation) loss of every level against the step, from a Trainer's `state.log_history`."""
    figure, axis = plt.subplots(figsize=(7, 4))
    keys = sorted({key for entry in log_history for key in entry if key.startswith(("loss", "eval_loss"))})
    for key in keys:
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        axis.plot(*zip(*points), marker="." if len(points) < 30 else None, label=key)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (levels: token mean; loss: their weighted sum)")
    axis.set_yscale("log")
    axis.set_title("Training losses per level")
    axis.legend(fontsize="small")
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    """`figure` as a PNG into `path`, atomically; the figure is closed."""
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120))
    plt.close(figure)


def write_evaluation(directory: str | Path, name: str, records: list[dict], metrics: Mapping[str, float]) -> None:
    """
    Everything about one model's evaluation: predictions, metrics, per-level scores and, when level 1 is a label
    level, its confusion matrix (a free-text level 1 has no classes to confuse; an empty prediction, e.g. one that
    abstained, is the column `NO_LABEL`). Level-1 labels are their own paths, so their names key the matrix.
    """
    directory = Path(directory)
    write_jsonl(directory / "predictions.jsonl", records)
    write_json(directory / "metrics.json", dict(metrics))
    plot_per_level_scores({name: metrics}, directory / "per_level_scores.png")
    if "level_1_accuracy" not in metrics:
        return
    plot_confusion(
        [record["prediction"][0] if record["prediction"] else NO_LABEL for record in records],
        [record["reference"][0] for record in records],
        directory / "confusion_level_1.png",
        title=f"{name}: level 1",
    )


def summary_keys(metrics: Mapping[str, float]) -> list[str]:
    """The rows of the printed table: per-level scores (label or text levels), protocol summaries, decoding time."""
    return [*level_keys(metrics), *(key for key in SUMMARY_KEYS if key in metrics), "seconds_per_example"]
