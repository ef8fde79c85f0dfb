"""`HdLMSFTConfig`: TRL's `SFTConfig` with HdLM's defaults and the options of an HdLM training run."""

from dataclasses import dataclass, field
from typing import Any

import torch
from trl import SFTConfig

from ..hardware import bf16_supported


def resolve_save_dtype(name: str, trained_in_bf16: bool) -> torch.dtype | None:
    """The dtype to save weights in: `auto` is bfloat16 after bf16 training (None: as trained), else `name`."""
    if name == "auto":
        return torch.bfloat16 if trained_in_bf16 else None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`save_dtype` must be `auto` or a floating dtype (`float32`, `bfloat16`), got {name!r}.")
    return dtype


@dataclass
class HdLMSFTConfig(SFTConfig):
    """
    `SFTConfig` with defaults for HdLM: [`HdLMSFTTrainer`] renders and tokenises the hierarchical examples itself, so
    TRL's own dataset preparation is skipped and every column the collator needs is kept; `bf16` follows the
    hardware: on where the GPU, or the CPU when training runs there, has bf16 matrix units
    (`hdlm.hardware.bf16_supported`), off elsewhere. What to train (`train_level_heads`, `freeze_below_layer`) and
    how the result is saved (`merge_adapters`, `save_dtype`) are set here too.
    """

    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision (autocast, float32 master weights). Defaults to on where the device "
            "training runs on has bf16 matrix units: a GPU with bf16, a CPU with AVX-512 BF16 or AMX."
        },
    )
    eval_decoding: bool = field(
        default=False,
        metadata={
            "help": "At each evaluation, also decode the eval set (constrained greedy, early exit) and log its "
            "hierarchical metrics (`eval_path_accuracy`, `eval_level_1_accuracy`, ...): learning curves on a dev "
            "split."
        },
    )
    eval_decoding_max_samples: int | None = field(
        default=None, metadata={"help": "Decode only the first N eval examples at each evaluation."}
    )
    eval_loss: bool = field(
        default=True,
        metadata={
            "help": "Compute the eval loss at each evaluation. `false` with `eval_decoding`: only the decoded metrics "
            "(the loss pass over the eval set costs about as much as decoding it)."
        },
    )
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "After training, fit one temperature per label level on the eval split (`--eval_file`) and save "
            "them with the checkpoint (`level_temperatures`), so that decoded label probabilities are calibrated."
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
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept off: the collator reads `level_ids`, which TRL's column filter would drop."},
    )
    dataset_kwargs: dict[str, Any] | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Kept for TRL; `HdLMSFTTrainer` prepares its datasets itself."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bf16_supported("cpu" if self.use_cpu or not torch.cuda.is_available() else "cuda")
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns=True` would drop the `level_ids` column HdLM's loss needs: leave it False "
                "(the collator takes only the columns it uses)."
            )
        super().__post_init__()
        resolve_save_dtype(self.save_dtype, trained_in_bf16=self.bf16)  # a bad name stops here, not after training

    @property
    def resolved_save_dtype(self) -> torch.dtype | None:
        """The dtype `save_dtype` names for this run (`auto`: bfloat16 after bf16 training, None: as trained)."""
        return resolve_save_dtype(self.save_dtype, trained_in_bf16=self.bf16)
