"""`HdLMSFTTrainer`: TRL's `SFTTrainer` with the weighted multi-level HdLM loss."""

import copy
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import datasets
import torch
from accelerate.utils import gather_object
from peft import PeftConfig
from transformers import PreTrainedTokenizerBase
from trl import SFTTrainer

from modeling_hdlm import HdLMForCausalLM

from ..evaluation.runner import score_paths
from .collator import DataCollatorForHierarchicalLM
from .config import HdLMSFTConfig
from .model_building import complete_lora_config, freeze_parameters
from .preprocessing import fit_query_budget, tokenize_hierarchical

GATHERED_DIR = "gathered"  # where the ranks' gathered weights are written, before the final save


def level_token_counts(batch: dict[str, torch.Tensor], num_levels: int) -> torch.Tensor:
    """Number of target tokens of each level in a batch (targets are shifted by one, as in the loss)."""
    levels = batch["level_ids"][:, 1:].masked_fill(batch["labels"][:, 1:] == -100, 0)
    return torch.stack([(levels == level).sum() for level in range(1, num_levels + 1)])


@dataclass
class LevelLossWindow:
    """Per mode (`train`, `eval`): each level's summed cross-entropy and token count since the last log, and
    whether any batch was seen."""

    totals: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"train": {}, "eval": {}})
    seen: set[str] = field(default_factory=set)

    def add(self, mode: str, names: list[str], sums: list[float], counts: list[float]) -> None:
        self.seen.add(mode)
        for name, level_sum, count in zip(names, sums, counts):
            if count:
                totals = self.totals[mode].setdefault(name, [0.0, 0.0])
                totals[0] += level_sum
                totals[1] += count

    def pop(self, mode: str) -> tuple[dict[str, float], bool]:
        """Each level's token-mean loss over the window (levels without tokens left out), and whether the window
        saw a batch; the window restarts."""
        means = {name: level_sum / count for name, (level_sum, count) in self.totals[mode].items()}
        seen = mode in self.seen
        self.totals[mode].clear()
        self.seen.discard(mode)
        return means, seen


@dataclass
class TrainingClock:
    """Wall time of training without the evaluations (the clock stops while one runs)."""

    start: float | None = None
    eval_start: float | None = None
    eval_seconds: float = 0.0

    def minutes(self) -> float:
        if self.start is None:
            return 0.0
        now = time.perf_counter() if self.eval_start is None else self.eval_start
        return (now - self.start - self.eval_seconds) / 60


class HdLMSFTTrainer(SFTTrainer):
    """
    Trains an [`HdLMForCausalLM`] (or a PEFT model wrapping one) on the weighted sum of its levels' losses.

    It takes the hierarchical datasets as `hdlm.data.load_hierarchical_dataset` returns them (`text` and `labels`
    columns) and renders and tokenises them itself with the model's renderer (`tokenize_hierarchical`); without
    `max_query_tokens` in the model's config, it first sets the largest query budget with which every training
    example fits `max_length`. Datasets already tokenised (`input_ids`, `labels`, `level_ids`) are used as they are.
    Before training it freezes what `args` leaves untrained (`train_level_heads`, `freeze_below_layer`) and
    completes a LoRA `peft_config` for the level heads; `save_hdlm_model` writes what `AutoModel` loads.

    `compute_loss` is replaced as a whole: TRL's own swaps in a fused lm-head forward that knows one head only. The
    model returns each level's loss sum and token count; under gradient accumulation and data parallelism each
    level's sum is divided by the level's token count over the whole optimizer step and every process. Each level's
    loss is logged (`loss_<level name>`) as its mean over all of its tokens since the last log. Every log also
    carries `train_minutes`, the wall time of training so far without the evaluations (what learning curves are
    drawn against); with `eval_decoding`, evaluations decode the eval set and log its hierarchical metrics.

    With `push_to_hub`, the Trainer's own pushes (repository creation at init, every save, `save_model`) are turned
    off on the trainer's copy of the arguments: an HdLM is published once, after training, with its model card and
    results, by `hdlm.publishing.publish` (train_hdlm.py does it).
    """

    def __init__(
        self,
        model: HdLMForCausalLM,
        args: HdLMSFTConfig | None = None,
        data_collator=None,
        train_dataset: datasets.Dataset | None = None,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | None = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        *,
        peft_config: PeftConfig | None = None,
        **kwargs,
    ):
        args = HdLMSFTConfig("hdlm-sft") if args is None else args
        if args.push_to_hub:
            args = copy.copy(args)
            args.push_to_hub = False
        hdlm_model = model.get_base_model() if hasattr(model, "get_base_model") else model
        if processing_class is not None:
            train_dataset, eval_dataset = self.prepare_datasets(
                hdlm_model, processing_class, args, train_dataset, eval_dataset
            )
            if data_collator is None:
                pad = processing_class.pad_token_id
                pad = processing_class.eos_token_id if pad is None else pad
                data_collator = DataCollatorForHierarchicalLM(pad, args.pad_to_multiple_of)
        freeze_parameters(
            hdlm_model, train_level_heads=args.train_level_heads, freeze_below_layer=args.freeze_below_layer
        )
        if peft_config is not None:
            peft_config = complete_lora_config(peft_config, hdlm_model, train_level_heads=args.train_level_heads)
        super().__init__(
            model,
            args,
            data_collator,
            train_dataset,
            eval_dataset,
            processing_class,
            peft_config=peft_config,
            **kwargs,
        )
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not self.is_fsdp_enabled:
            raise ValueError(
                "FSDP was asked for (`ACCELERATE_USE_FSDP=true`), but accelerate runs "
                f"{self.accelerator.distributed_type} here: it shards only on GPUs and other accelerators, not on "
                "CPUs. On CPUs, use data parallelism (`ACCELERATE_USE_CPU=true torchrun --nproc_per_node N "
                "train_hdlm.py ...`)."
            )
        if peft_config is not None and (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            raise ValueError(
                "LoRA (`--use_peft`) under FSDP or DeepSpeed is not supported by train_hdlm.py: the adapters "
                "could not be merged into a plain HdLM checkpoint. Use data parallelism "
                "(accelerate_configs/multi_gpu.yaml) for LoRA, or full fine-tuning under FSDP / ZeRO-3."
            )
        self.step_level_token_counts: torch.Tensor | None = None
        self.level_loss_window = LevelLossWindow()
        self.num_train_tokens = 0
        self.clock = TrainingClock()

    @staticmethod
    def prepare_datasets(
        model: HdLMForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        args: HdLMSFTConfig,
        train_dataset: datasets.Dataset | None,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | None,
    ) -> tuple[datasets.Dataset | None, datasets.Dataset | dict[str, datasets.Dataset] | None]:
        """
        Render and tokenise the raw hierarchical datasets (those without `input_ids`) with the model's renderer,
        after setting `model.config.max_query_tokens` from the training set where it is unset. The eval examples keep
        their `text` and label `path` with `eval_decoding`.
        """

        def is_raw(dataset) -> bool:
            return dataset is not None and "input_ids" not in dataset.column_names

        renderer = model.get_renderer(tokenizer)
        if is_raw(train_dataset):
            if model.config.max_query_tokens is None:
                model.config.max_query_tokens = fit_query_budget(renderer, train_dataset, args.max_length)
            train_dataset = tokenize_hierarchical(train_dataset, renderer, args.max_length)

        def prepare_eval(dataset: datasets.Dataset) -> datasets.Dataset:
            if not is_raw(dataset):
                return dataset
            return tokenize_hierarchical(dataset, renderer, args.max_length, keep_examples=args.eval_decoding)

        if isinstance(eval_dataset, dict):
            return train_dataset, {name: prepare_eval(dataset) for name, dataset in eval_dataset.items()}
        return train_dataset, None if eval_dataset is None else prepare_eval(eval_dataset)

    def train(self, *args, **kwargs):
        self.clock = TrainingClock(start=time.perf_counter())
        return super().train(*args, **kwargs)

    def train_minutes(self) -> float:
        """Wall time since `train()` began, less the time spent evaluating (the clock stops during evaluations)."""
        return self.clock.minutes()

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Adds each level's loss, a mean over all of the level's tokens since the last log (not a mean of
        micro-batch means, which would weigh the tokens of a short micro-batch more), the number of training tokens
        seen (`num_tokens`) and `train_minutes`."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        level_means, seen = self.level_loss_window.pop(mode)
        extra = {f"{prefix}loss_{name}": mean for name, mean in level_means.items()}
        if seen:
            extra[f"{prefix}num_tokens"] = float(self.num_train_tokens)
        super().log({**logs, **extra, "train_minutes": round(self.train_minutes(), 3)}, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        self.clock.eval_start = time.perf_counter()
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
            self.clock.eval_seconds += time.perf_counter() - self.clock.eval_start
            self.clock.eval_start = None
        return metrics

    def decode_and_score(self, dataset) -> dict[str, float]:
        """Decode the examples of `dataset` (split across processes) and score their paths."""
        if "text" not in dataset.column_names or "path" not in dataset.column_names:
            raise ValueError(
                "`eval_decoding` needs the eval examples' `text` and label `path`: pass the raw eval set (the trainer "
                "keeps them), or tokenise it with `tokenize_hierarchical(..., keep_examples=True)`."
            )
        count = len(dataset) if self.args.eval_decoding_max_samples is None else self.args.eval_decoding_max_samples
        indices = list(range(min(count, len(dataset))))
        model = self.hdlm_model
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
    def hdlm_model(self) -> HdLMForCausalLM:
        """The trained [`HdLMForCausalLM`], without its accelerate or PEFT wrappers."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    @property
    def hdlm_config(self):
        return self.accelerator.unwrap_model(self.model).config

    def save_hdlm_model(self, output_dir: str | os.PathLike | None = None) -> torch.nn.Module | None:
        """
        Save the trained model (default: in `args.output_dir`) so that `AutoModel.from_pretrained(output_dir,
        trust_remote_code=True)` needs nothing else. Call it on every process; returns the full model on the main
        process (in `args.save_dtype`), None elsewhere.

        A PEFT model is merged into a plain HdLM checkpoint unless `args.merge_adapters=False` (then only the adapter
        is saved). Under FSDP or DeepSpeed the sharded weights are gathered (every rank takes part) into
        `output_dir/gathered`, and the main process reloads them as a plain HdLM and saves that (FSDP2 changes the
        model's class, which a save of the trained model would record as its remote code). With a `save_dtype`, the
        weights are cast to it first (bfloat16 halves the checkpoint, and `AutoModel.from_pretrained` then loads it in
        bfloat16).
        """
        output_dir = str(self.args.output_dir if output_dir is None else output_dir)
        dtype = self.args.resolved_save_dtype
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            gathered = os.path.join(output_dir, GATHERED_DIR)
            self.save_model(gathered)
            self.accelerator.wait_for_everyone()
            if not self.accelerator.is_main_process:
                return None
            model = HdLMForCausalLM.from_pretrained(gathered, dtype=dtype or "auto")
            model.save_pretrained(output_dir)
            self.processing_class.save_pretrained(output_dir)
            shutil.rmtree(gathered)
            return model
        if not self.accelerator.is_main_process:
            return None
        model = self.model
        if self.args.merge_adapters and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        if dtype is not None:
            model = model.to(dtype)
        os.makedirs(output_dir, exist_ok=True)
        model.save_pretrained(output_dir)
        self.processing_class.save_pretrained(output_dir)
        return model

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | int | None]:
        """Also counts each level's tokens over the optimizer step's micro-batches, on every process."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        num_levels = self.hdlm_config.num_levels
        counts = sum((level_token_counts(batch, num_levels) for batch in batch_samples), torch.zeros(num_levels))
        counts = counts.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(0)
        self.step_level_token_counts = counts
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        config = self.hdlm_config
        outputs = model(**inputs, use_cache=False, logits_to_keep=1)
        loss = outputs.loss  # this batch's own token means: evaluation, or a step of one micro-batch
        if mode == "train" and num_items_in_batch is not None:
            # Each level over all of its tokens in the optimizer step, on every process
            level_losses = outputs.level_loss_sums / self.step_level_token_counts.clamp(min=1)
            loss = (level_losses.new_tensor(config.level_loss_weights) * level_losses).sum()
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients over the processes

        sums = self.accelerator.gather_for_metrics(outputs.level_loss_sums.detach()[None]).sum(0)
        counts = self.accelerator.gather_for_metrics(outputs.level_token_counts[None]).sum(0)
        self.level_loss_window.add(mode, config.level_names, sums.tolist(), counts.tolist())
        if mode == "train":
            self.num_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        return (loss, outputs) if return_outputs else loss
