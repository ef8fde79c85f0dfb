"""`HdLMSFTTrainer`: TRL's `SFTTrainer` with the weighted multi-level HdLM loss."""

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import is_torch_bf16_gpu_available
from trl import SFTConfig, SFTTrainer


@dataclass
class HdLMSFTConfig(SFTConfig):
    """
    `SFTConfig` with defaults for HdLM: examples arrive tokenised into levels (`tokenize_hierarchical`), so TRL's
    own dataset preparation is skipped, and `bf16` follows the hardware instead of failing on a CPU.
    """

    bf16: bool | None = field(
        default=None, metadata={"help": "Use bf16 mixed precision. Defaults to True where a GPU supports it."}
    )
    dataset_kwargs: dict[str, Any] | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Kept for TRL; HdLM datasets are tokenised beforehand."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = not self.use_cpu and is_torch_bf16_gpu_available()
        super().__post_init__()


def level_token_counts(batch: dict[str, torch.Tensor], num_levels: int) -> torch.Tensor:
    """Number of target tokens of each level in a batch (targets are shifted by one, as in the loss)."""
    levels = batch["level_ids"][:, 1:].masked_fill(batch["labels"][:, 1:] == -100, 0)
    return torch.stack([(levels == level).sum() for level in range(1, num_levels + 1)])


class HdLMSFTTrainer(SFTTrainer):
    """
    Trains an [`HdLMForCausalLM`] (or a PEFT model wrapping one) on the weighted sum of its levels' losses.

    `compute_loss` is replaced as a whole: TRL's own swaps in a fused lm-head forward that knows one head only.
    Under gradient accumulation and data parallelism each level's loss is averaged over all of its tokens in the
    optimizer step (`num_items_in_level`), and each level's loss is logged (`loss_<level name>`).

    With `push_to_hub`, the Trainer's own pushes (repository creation at init, every save, `save_model`) are turned
    off on the trainer's copy of the arguments: an HdLM is published once, after training, with its model card and
    results, by `hdlm.publishing.publish` (train_hdlm.py does it).
    """

    def __init__(self, model, args: HdLMSFTConfig | None = None, *positional, **kwargs):
        if args is not None and args.push_to_hub:
            args = copy.copy(args)
            args.push_to_hub = False
        super().__init__(model, args, *positional, **kwargs)
        self._num_items_in_level: torch.Tensor | None = None

    @property
    def hdlm_config(self):
        return self.accelerator.unwrap_model(self.model).config

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "attention_mask", "labels", "level_ids"]

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        num_levels = self.hdlm_config.num_levels
        counts = sum((level_token_counts(batch, num_levels) for batch in batch_samples), torch.zeros(num_levels))
        counts = counts.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(0)
        self._num_items_in_level = counts
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        config = self.hdlm_config
        num_items_in_level = self._num_items_in_level if mode == "train" and num_items_in_batch is not None else None
        outputs = model(**inputs, use_cache=False, logits_to_keep=1, num_items_in_level=num_items_in_level)
        loss = outputs.loss
        if self.args.average_tokens_across_devices and num_items_in_level is not None:
            # Each level is already averaged over every rank's tokens, and DDP averages the gradients.
            loss = loss * self.accelerator.num_processes

        local_counts = level_token_counts(inputs, config.num_levels).to(outputs.level_losses.dtype)
        denominators = local_counts.clamp(min=1) if num_items_in_level is None else num_items_in_level
        sums = self.accelerator.gather_for_metrics((outputs.level_losses.detach() * denominators)[None]).sum(0)
        counts = self.accelerator.gather_for_metrics(local_counts[None]).sum(0)
        for name, level_sum, count in zip(config.level_names, sums.tolist(), counts.tolist()):
            if count:
                self._metrics[mode][f"loss_{name}"].append(level_sum / count)
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
