"""Building the model to train: adapting a causal LM (or continuing an HdLM), PEFT settings, the final save."""

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import AutoConfig, PreTrainedTokenizerBase, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging
from trl import ModelConfig, get_peft_config

from modeling_hdlm import HdLMForCausalLM

from ..checkpoints import check_hdlm_checkpoint

logger = logging.get_logger(__name__)

MODES = ("hdlm", "sft_at_k")
TRAINER_STATE = "trainer_state.json"  # the last file `Trainer._save_checkpoint` writes
GATHERED_DIR = "gathered"  # where the trainer writes the weights it gathers from the ranks, before the final save


def default_level_layers(num_layers: int, num_levels: int) -> list[int]:
    """
    Heads spread over the upper half of the network: level `d` of `D` reads layer `round(K * (1/2 + d / (2D)))`.

    Two levels on 32 layers give `[24, 32]` (the paper uses 25); three give `[21, 27, 32]` (the paper: 20, 30). On a
    small base, where rounding would give two levels one layer (`[3, 3, 4]` for 3 levels on 4 layers), the layers are
    moved apart, downwards from `K`: `[2, 3, 4]`.
    """
    layers = [round(num_layers * (0.5 + level / (2 * num_levels))) for level in range(1, num_levels)]
    for index in range(1, len(layers)):
        layers[index] = max(layers[index], layers[index - 1] + 1)
    ceiling = num_layers
    for index in reversed(range(len(layers))):
        layers[index] = ceiling = min(layers[index], ceiling - 1)
    if layers and layers[0] < 1:
        raise ValueError(
            f"{num_levels} levels need {num_levels} distinct decoder layers, and the base model has {num_layers}: "
            "use a deeper base, or `--mode sft_at_k` (every level read by the last layer)."
        )
    return [*layers, num_layers]


def check_level_arguments(num_levels: int, data_source: str, **arguments: Sequence | None) -> None:
    """Each per-level command-line argument given (`level_names=...`) must have one entry per level of the data."""
    for name, values in arguments.items():
        if values is not None and len(values) != num_levels:
            raise ValueError(
                f"{data_source} has {num_levels} levels per row, but `--{name}` gives {len(values)} "
                f"({' '.join(map(str, values))}): give one per level, or drop it for the default."
            )


def load_hdlm_model(
    model_name_or_path: str,
    *,
    tokenizer: PreTrainedTokenizerBase,
    mode: str,
    level_names: Sequence[str],
    level_kinds: Sequence[str],
    taxonomy: list[list[str]] | None,
    level_layers: Sequence[int] | None = None,
    level_loss_weights: Sequence[float] | None = None,
    head_init: str = "copy",
    apply_final_norm: bool = True,
    load_kwargs: dict | None = None,
    **config_kwargs,
) -> HdLMForCausalLM:
    """
    Adapt the causal LM at `model_name_or_path` into an HdLM, or load an HdLM checkpoint to continue training it.

    `mode="sft_at_k"` is the paper's baseline: identical data and rendering, every level read by the last layer.
    `tokenizer` renders the taxonomy's labels into the token ids the label heads and the constrained loss use.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    load_kwargs = load_kwargs or {}
    check_hdlm_checkpoint(model_name_or_path)
    config = AutoConfig.from_pretrained(model_name_or_path, **load_kwargs)
    if config.model_type == "hdlm":
        model = HdLMForCausalLM.from_pretrained(model_name_or_path, **load_kwargs)
        if list(model.config.level_names) != list(level_names) or model.config.taxonomy != taxonomy:
            raise ValueError(
                f"{model_name_or_path} is an HdLM for levels {model.config.level_names} and its own taxonomy; the "
                "data's levels or labels differ. Continue training on data of the same task, or adapt the base model."
            )
        return model
    num_layers = config.get_text_config().num_hidden_layers
    if mode == "sft_at_k":
        level_layers = [num_layers] * len(level_names)
    elif level_layers is None:
        level_layers = default_level_layers(num_layers, len(level_names))
    return HdLMForCausalLM.from_base(
        model_name_or_path,
        level_layers=level_layers,
        level_names=level_names,
        level_kinds=level_kinds,
        level_loss_weights=level_loss_weights,
        taxonomy=taxonomy,
        head_init=head_init,
        apply_final_norm=apply_final_norm,
        tokenizer=tokenizer,
        base_kwargs=load_kwargs,
        **config_kwargs,
    )


def freeze_parameters(model: HdLMForCausalLM, *, train_level_heads: bool, freeze_below_layer: int | None) -> None:
    """
    Freeze what full fine-tuning leaves alone: the intermediate heads (they stay copies of the final head) and/or
    the embeddings and the decoder layers below `freeze_below_layer` (1-based). With tied embeddings, freezing the
    embeddings freezes the final head too.
    """
    if not train_level_heads:
        model.level_heads.requires_grad_(False)
    if freeze_below_layer is not None:
        num_layers = model.config.text_config.num_hidden_layers
        if not 1 <= freeze_below_layer <= num_layers:
            raise ValueError(f"`freeze_below_layer` must lie in 1..{num_layers}, got {freeze_below_layer}.")
        model.get_input_embeddings().requires_grad_(False)
        for layer in model.decoder_layers[: freeze_below_layer - 1]:
            layer.requires_grad_(False)


def hdlm_peft_config(
    model_args: ModelConfig, model: HdLMForCausalLM, train_level_heads: bool = True
) -> LoraConfig | None:
    """
    TRL's LoRA settings, completed for HdLM: the level heads are trained in full and saved (`modules_to_save`)
    unless `train_level_heads=False`, and the adapted modules default to PEFT's choice for the base architecture
    (the wrapper's own type is unknown to PEFT).
    """
    peft_config = get_peft_config(model_args)
    if peft_config is None:
        return None
    heads = [f"level_heads.{level}" for level in model.config.head_levels] if train_level_heads else []
    peft_config.modules_to_save = list(peft_config.modules_to_save or []) + heads
    if peft_config.target_modules is None:
        base_type = model.config.text_config.model_type
        peft_config.target_modules = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(base_type)
        if peft_config.target_modules is None:
            raise ValueError(
                f"PEFT has no default LoRA targets for {base_type!r}: pass `--lora_target_modules` "
                "(e.g. q_proj v_proj)."
            )
    return peft_config


def check_distributed_support(trainer: Trainer, use_peft: bool) -> None:
    """
    Stop before training on a combination that would not do what was asked: FSDP on CPUs (accelerate shards on GPUs
    and other accelerators only, and otherwise trains unsharded copies), or LoRA with sharded weights (its final
    save is not supported).
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not trainer.is_fsdp_enabled:
        raise ValueError(
            "FSDP was asked for (`ACCELERATE_USE_FSDP=true`), but accelerate runs "
            f"{trainer.accelerator.distributed_type} here: it shards only on GPUs and other accelerators, not on "
            "CPUs. On CPUs, use data parallelism (`ACCELERATE_USE_CPU=true torchrun --nproc_per_node N train_hdlm.py "
            "...`)."
        )
    if use_peft and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ValueError(
            "LoRA (`--use_peft`) under FSDP or DeepSpeed is not supported by train_hdlm.py: the adapters could not be "
            "merged into a plain HdLM checkpoint. Use data parallelism (accelerate_configs/multi_gpu.yaml) for LoRA, "
            "or full fine-tuning under FSDP / ZeRO-3."
        )


def save_dtype(name: str, trained_in_bf16: bool) -> torch.dtype | None:
    """The dtype to save weights in: `auto` is bfloat16 after bf16 training (None: as trained), else `name`."""
    if name == "auto":
        return torch.bfloat16 if trained_in_bf16 else None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`save_dtype` must be `auto` or a floating dtype (`float32`, `bfloat16`), got {name!r}.")
    return dtype


def save_hdlm_model(
    trainer: Trainer, output_dir: str, merge: bool, dtype: torch.dtype | None = None
) -> torch.nn.Module | None:
    """
    Save the trained model so that `AutoModel.from_pretrained(output_dir, trust_remote_code=True)` needs nothing else.
    Call it on every process; returns the full model on the main process (in `dtype`), None elsewhere.

    A PEFT model is merged into a plain HdLM checkpoint unless `merge=False` (then only the adapter is saved). Under
    FSDP or DeepSpeed the trainer gathers the sharded weights (every rank takes part) into `output_dir/gathered`,
    and the main process reloads them as a plain HdLM and saves that (FSDP2 changes the model's class, which a
    save of the trained model would record as its remote code). With `dtype`, the weights are cast to it first
    (bfloat16 halves the checkpoint, and `AutoModel.from_pretrained` then loads it in bfloat16).
    """
    accelerator = trainer.accelerator
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        gathered = os.path.join(output_dir, GATHERED_DIR)
        trainer.save_model(gathered)
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return None
        model = HdLMForCausalLM.from_pretrained(gathered, dtype=dtype or "auto")
        model.save_pretrained(output_dir)
        trainer.processing_class.save_pretrained(output_dir)
        shutil.rmtree(gathered)
        return model
    if not accelerator.is_main_process:
        return None
    model = trainer.model
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if dtype is not None:
        model = model.to(dtype)
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    trainer.processing_class.save_pretrained(output_dir)
    return model


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """
    Why the Trainer checkpoint `folder` cannot be resumed from, or None when it is complete.

    The Trainer writes a checkpoint's trainer state last, after the weights, optimizer, scheduler and RNG states: a
    save cut short (a kill, a full disk) leaves a folder without it, or with it truncated.
    """
    state_file = Path(folder) / TRAINER_STATE
    if not state_file.is_file():
        present = sorted(path.name for path in Path(folder).iterdir()) if Path(folder).is_dir() else []
        return f"it has no {TRAINER_STATE}, so its save was interrupted (it holds {present or 'nothing'})"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"its {TRAINER_STATE} does not parse ({error}), so its save was interrupted"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"its {TRAINER_STATE} holds no `global_step`"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The complete `checkpoint-<step>` folder of `output_dir` with the highest step; incomplete ones are skipped
    with a warning. None when there is none."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    folders = [path for path in Path(output_dir).iterdir() if path.is_dir()] if Path(output_dir).is_dir() else []
    steps = {int(match.group(1)): path for path in folders if (match := pattern.match(path.name))}
    for step in sorted(steps, reverse=True):
        problem = checkpoint_problem(steps[step])
        if problem is None:
            return str(steps[step])
        logger.warning(f"Skipping the incomplete checkpoint {steps[step]}: {problem}.")
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    The checkpoint `--resume_from_checkpoint` names: `true` is the last complete checkpoint in `output_dir` (none
    yet: training starts from the beginning, with a warning), `false` or None is none, anything else is a
    checkpoint folder, which must be complete.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).strip().lower() == "true":
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(
                f"`--resume_from_checkpoint true`: {output_dir} holds no complete checkpoint yet; training starts "
                "from the beginning."
            )
        else:
            logger.warning(f"Resuming from {checkpoint}, the last complete checkpoint in {output_dir}.")
        return checkpoint
    if str(resume_from_checkpoint).strip().lower() == "false":
        return None
    folder = Path(resume_from_checkpoint)
    if not folder.is_dir():
        raise ValueError(
            f"`--resume_from_checkpoint {resume_from_checkpoint}`: no such folder. Pass a `checkpoint-<step>` folder, "
            f"or `true` for the last complete checkpoint in `--output_dir` ({output_dir})."
        )
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise ValueError(
            f"`--resume_from_checkpoint {resume_from_checkpoint}` cannot be resumed from: {problem}. Pass an earlier "
            f"checkpoint, or `true` for the last complete one in `--output_dir` ({output_dir})."
        )
    return str(folder)
