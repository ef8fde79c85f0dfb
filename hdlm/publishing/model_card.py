"""The model card of a trained HdLM: metadata with `model-index` results, and a README from `model_card/`."""

from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = Path(__file__).resolve().parents[2] / "model_card" / "template.md"
CARD_METRICS = {
    "path_accuracy": "Path accuracy",
    "flat_micro_f1": "Micro-F1 (all labels)",
    "flat_macro_f1": "Macro-F1 (all labels)",
    "path_micro_f1": "Micro-F1 (joined paths)",
    "path_macro_f1": "Macro-F1 (joined paths)",
    "hierarchical_f1": "Hierarchical F1",
}


def _taxonomy_summary(taxonomy: list[list[str]] | None) -> str | None:
    if not taxonomy:
        return None
    counts = [len({tuple(path[: level + 1]) for path in taxonomy}) for level in range(len(taxonomy[0]))]
    return " / ".join(str(count) for count in counts) + " labels per level"


def _results_table(metrics: Mapping[str, float], level_names: list[str]) -> str:
    rows = ["| metric | value |", "|---|---|"]
    for level, name in enumerate(level_names, start=1):
        for score in ("accuracy", "micro_f1", "macro_f1", "bleu_2", "rouge_l", "distinct_2"):
            if f"level_{level}_{score}" in metrics:
                rows.append(f"| {name} {score.replace('_', '-')} | {100 * metrics[f'level_{level}_{score}']:.2f} |")
    for key, label in CARD_METRICS.items():
        if key in metrics:
            rows.append(f"| {label} | {100 * metrics[key]:.2f} |")
    if "inconsistency_rate" in metrics:
        rows.append(f"| Inconsistent paths | {100 * metrics['inconsistency_rate']:.2f} |")
    return "\n".join(rows)


def _heads_summary(config) -> str:
    """How the levels read by intermediate layers are decoded, in words."""
    if not config.head_levels:
        return "none of their own (every level reads the final head)"
    label_heads = [config.level_names[level] for level in config.head_levels if config.has_label_head(level)]
    full = [config.level_names[level] for level in config.head_levels if not config.has_label_head(level)]
    parts = []
    if label_heads:
        parts.append(f"label-vocabulary heads (only their labels' tokens) for {', '.join(label_heads)}")
    if full:
        parts.append(f"full-vocabulary heads for {', '.join(full)}")
    origin = "copied from the final head" if config.head_init == "copy" else "randomly initialised"
    return f"{'; '.join(parts)}, {origin}"


def pipeline_tag(level_kinds: list[str]) -> str:
    """
    The Hub's `pipeline_tag` of a model whose levels have these kinds. The Hub has no hierarchical task among its
    pipeline types (huggingface.js `packages/tasks/src/pipelines.ts`, `PIPELINE_DATA`): a model that only classifies
    is `text-classification`, the type whose output is labels with scores, as the pipeline's is; one with a free-text
    level (classification-guided generation) writes text, so `text-generation`. The pipeline's own task name,
    `hierarchical-text-classification`, is what `pipeline(...)` takes, not a Hub type.
    """
    return "text-generation" if "text" in level_kinds else "text-classification"


def build_model_card(
    config,
    *,
    repo_id: str,
    base_model: str | None = None,
    mode: str = "hdlm",
    metrics: Mapping[str, float] | None = None,
    dataset_name: str | None = None,
    dataset_split: str = "test",
    training_data: str | None = None,
    recipe: str | None = None,
    training_details: list[str] | None = None,
    license: str | None = None,
    license_note: str = "Inherits the licences of the base model and of the training data.",
    plot: str | None = None,
    revision: str | None = None,
    example_text: str = "Your text here.",
) -> ModelCard:
    """
    Fill `model_card/template.md` from an HdLM config and its evaluation.

    `metrics` (from `eval_hdlm.py` / `hdlm.evaluation.runner.evaluate_model`) become `model-index` results, so the
    Hub shows them; `plot` is a path relative to the card (e.g. the per-level PNG).
    """
    eval_results = []
    if metrics and dataset_name:
        eval_results = [
            EvalResult(
                task_type="text-classification",
                task_name="Hierarchical text classification",
                dataset_type=dataset_name,
                dataset_name=dataset_name,
                dataset_split=dataset_split,
                metric_type=key,
                metric_name=label,
                metric_value=round(100 * metrics[key], 2),
            )
            for key, label in CARD_METRICS.items()
            if key in metrics
        ]
    card_data = ModelCardData(
        model_name=Path(repo_id).name,
        base_model=base_model,
        library_name="transformers",
        license=license,
        pipeline_tag=pipeline_tag(config.level_kinds),
        tags=["hdlm", "hierarchical-classification", "early-exit", "custom_code"],
        eval_results=eval_results or None,
    )
    levels = [
        {"index": index + 1, "name": name, "kind": kind, "layer": layer, "weight": weight}
        for index, (name, kind, layer, weight) in enumerate(
            zip(config.level_names, config.level_kinds, config.level_layers, config.level_loss_weights)
        )
    ]
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=Path(repo_id).name,
        repo_id=repo_id,
        revision=revision,
        base_model=base_model,
        base_model_url=f"https://huggingface.co/{base_model}" if base_model and "/" in base_model else "#",
        levels=levels,
        num_layers=config.text_config.num_hidden_layers,
        taxonomy_summary=_taxonomy_summary(config.taxonomy),
        example_text=example_text.replace('"', "'"),
        training_data=training_data,
        recipe=recipe,
        mode=mode,
        heads=_heads_summary(config),
        label_levels="label" in config.level_kinds,
        label_heads=any(config.has_label_head(level) for level in range(config.num_levels)),
        label_loss=config.label_loss,
        apply_final_norm=config.apply_final_norm,
        training_details=training_details or [],
        results_table=_results_table(metrics, config.level_names) if metrics else None,
        plot=plot,
        license_note=license_note,
    )
