"""Building the model to train: HdLM options, adapting a causal LM (or continuing an HdLM), freezing, LoRA."""

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from peft import LoraConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import AutoConfig, PreTrainedTokenizerBase

from modeling_hdlm import HdLMForCausalLM

from ..checkpoints import check_hdlm_checkpoint

MODES = ("hdlm", "sft_at_k")


@dataclass
class HdLMArguments:
    """How the base model becomes a hierarchical decoder (the fields of `HdLMConfig` a run chooses, and `mode`)."""

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
    hdlm_args: HdLMArguments,
    *,
    tokenizer: PreTrainedTokenizerBase,
    num_levels: int,
    level_names: Sequence[str] | None,
    level_kinds: Sequence[str] | None,
    taxonomy: list[list[str]] | None,
    allow_partial_paths: bool = False,
    train_level_heads: bool = True,
    load_kwargs: dict | None = None,
) -> HdLMForCausalLM:
    """
    Adapt the causal LM at `model_name_or_path` into an HdLM, or load an HdLM checkpoint to continue training it.

    `mode="sft_at_k"` is the paper's baseline: identical data and rendering, every level read by the last layer.
    `tokenizer` renders the taxonomy's labels into the token ids the label heads and the constrained loss use, and
    decides `use_chat_template` when it is unset; `allow_partial_paths` lets the taxonomy's paths stop early. Level
    names and kinds left None take the config's defaults. With `train_level_heads=False`, copied heads are not
    stored at all: the levels read the final head (`shared`), which is what a frozen copy would hold.
    """
    if hdlm_args.mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {hdlm_args.mode!r}.")
    load_kwargs = load_kwargs or {}
    check_hdlm_checkpoint(model_name_or_path)
    config = AutoConfig.from_pretrained(model_name_or_path, **load_kwargs)
    if config.model_type == "hdlm":
        model = HdLMForCausalLM.from_pretrained(model_name_or_path, **load_kwargs)
        names_differ = level_names is not None and list(model.config.level_names) != list(level_names)
        if names_differ or model.config.taxonomy != taxonomy:
            raise ValueError(
                f"{model_name_or_path} is an HdLM for levels {model.config.level_names} and its own taxonomy; the "
                "data's levels or labels differ. Continue training on data of the same task, or adapt the base model."
            )
        return model
    num_layers = config.get_text_config().num_hidden_layers
    level_layers = hdlm_args.level_layers
    if hdlm_args.mode == "sft_at_k":
        level_layers = [num_layers] * num_levels
    elif level_layers is None:
        level_layers = default_level_layers(num_layers, num_levels)
    use_chat_template = hdlm_args.use_chat_template
    if use_chat_template is None:
        use_chat_template = tokenizer.chat_template is not None
    head_init = "shared" if not train_level_heads and hdlm_args.head_init == "copy" else hdlm_args.head_init
    options = {name: value for name, value in dataclasses.asdict(hdlm_args).items() if name != "mode"}
    if options["instruction"] is None:
        del options["instruction"]  # the config's default names the levels
    options.update(
        level_layers=level_layers,
        level_names=level_names,
        level_kinds=level_kinds,
        taxonomy=taxonomy,
        allow_partial_paths=allow_partial_paths,
        head_init=head_init,
        use_chat_template=use_chat_template,
    )
    return HdLMForCausalLM.from_base(model_name_or_path, options, tokenizer=tokenizer, base_kwargs=load_kwargs)


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


def complete_lora_config(
    peft_config: LoraConfig, model: HdLMForCausalLM, train_level_heads: bool = True
) -> LoraConfig:
    """
    A copy of TRL's LoRA settings, completed for HdLM: the level heads are trained in full and saved
    (`modules_to_save`) unless `train_level_heads=False`, and the adapted modules default to PEFT's choice for the
    base architecture (the wrapper's own type is unknown to PEFT).
    """
    peft_config = copy.deepcopy(peft_config)
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
