"""`HdLMSFTTrainer`: TRL's `SFTTrainer` with the weighted multi-level HdLM loss."""

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import SFTConfig, SFTTrainer

from ..evaluation.runner import score_paths
from ..hardware import bf16_supported


@dataclass
class HdLMSFTConfig(SFTConfig):
    """
    `SFTConfig` with defaults for HdLM: examples arrive tokenised into levels (`tokenize_hierarchical`), so TRL's
    own dataset preparation is skipped, and `bf16` follows the hardware: on where the GPU, or the CPU when training
    runs there, has bf16 matrix units (`hdlm.hardware.bf16_supported`), off elsewhere.
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
    dataset_kwargs: dict[str, Any] | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Kept for TRL; HdLM datasets are tokenised beforehand."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = bf16_supported("cpu" if self.use_cpu or not torch.cuda.is_available() else "cuda")
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
    optimizer step (`num_items_in_level`), and each level's loss is logged (`loss_<level name>`). Every log also
    carries `train_minutes`, the wall time of training so far without the evaluations (what learning curves are
    drawn against); with `eval_decoding`, evaluations decode the eval set (its `text` and `path` columns, kept by
    `tokenize_hierarchical(..., keep_examples=True)`) and log its hierarchical metrics.

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
        self._train_start: float | None = None
        self._eval_start: float | None = None
        self._eval_seconds = 0.0
        # Per mode and level: the summed cross-entropy and the token count since the last log.
        self._level_totals: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}

    def train(self, *args, **kwargs):
        self._train_start, self._eval_seconds = time.perf_counter(), 0.0
        return super().train(*args, **kwargs)

    def train_minutes(self) -> float:
        """Wall time since `train()` began, less the time spent evaluating (the clock stops during evaluations)."""
        if self._train_start is None:
            return 0.0
        now = time.perf_counter() if self._eval_start is None else self._eval_start
        return (now - self._train_start - self._eval_seconds) / 60

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Adds `train_minutes` and each level's loss, a mean over all of the level's tokens since the last log (not
        a mean of micro-batch means, which would weigh the tokens of a short micro-batch more)."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        level_losses = {}
        for name, (level_sum, count) in self._level_totals[mode].items():
            self._metrics[mode].pop(f"loss_{name}", None)
            level_losses[f"{prefix}loss_{name}"] = level_sum / count
        self._level_totals[mode].clear()
        super().log({**logs, **level_losses, "train_minutes": round(self.train_minutes(), 3)}, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        self._eval_start = time.perf_counter()
        try:
            dataset = self.eval_dataset if eval_dataset is None else eval_dataset
            decoding = self.args.eval_decoding and not isinstance(dataset, dict)  # a dict: one set at a time
            metrics = {}
            if self.args.eval_loss or not decoding:
                metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            if decoding:
                scores = self.decode_and_score(dataset)
                scores = {f"{metric_key_prefix}_{key}": value for key, value in scores.items()}
                self.log(scores)
                metrics.update(scores)
                if not self.args.eval_loss:
                    self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        finally:
            self._eval_seconds += time.perf_counter() - self._eval_start
            self._eval_start = None
        return metrics

    def decode_and_score(self, dataset) -> dict[str, float]:
        """Decode the examples of `dataset` (split across processes) and score their paths."""
        if "text" not in dataset.column_names or "path" not in dataset.column_names:
            raise ValueError(
                "`eval_decoding` needs the eval examples' `text` and label `path`: tokenise the eval set with "
                "`tokenize_hierarchical(..., keep_examples=True)`."
            )
        count = len(dataset) if self.args.eval_decoding_max_samples is None else self.args.eval_decoding_max_samples
        indices = list(range(min(count, len(dataset))))
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "get_base_model"):  # PEFT
            model = model.get_base_model()
        was_training = model.training
        model.eval()
        with self.accelerator.split_between_processes(indices) as mine, self.autocast_smart_context_manager():
            rows = dataset.select(mine)
            outputs = model.generate_hierarchical(
                rows["text"], self.processing_class, batch_size=self.args.per_device_eval_batch_size
            )
            pairs = gather_object([(index, output.path) for index, output in zip(mine, outputs)])
        model.train(was_training)
        predictions = dict(pairs)
        references = dataset.select(indices)["path"]
        config = model.config
        return score_paths(
            [predictions[index] for index in indices], references, config.level_kinds, taxonomy=config.taxonomy
        )

    def create_model_card(self, *args, **kwargs) -> None:
        """Writes nothing: an HdLM's card is written once, after training and evaluation (`build_model_card`).
        TRL's draft, written at every checkpoint, would be left in `output_dir` by a run that stops early."""

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
                self._metrics[mode][f"loss_{name}"].append(level_sum / count)  # this micro-batch's (bench/ reads it)
                totals = self._level_totals[mode].setdefault(name, [0.0, 0.0])
                totals[0] += level_sum
                totals[1] += count
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
