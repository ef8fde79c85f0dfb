"""
Wall time of one training step (forward + backward + AdamW step) of the HdLM loss, against plain SFT with TRL's own
`SFTTrainer` and against the authors' scheme, in one run, on the same random-weight model and the same batch.

Methods (every one through a real trainer's `training_step`, then the optimizer's `step()` and `zero_grad()`):

- `hdlm`: [`HdLMSFTTrainer`] (its `compute_loss` -> `HdLMForCausalLM.forward(..., labels, level_ids)`, each
  level's loss sum over the step's token count): each head is applied only at the positions of its own level's
  tokens. Its heads are full copies of the final head, trained, and each level's loss is over the whole vocabulary
  (the paper's setup).
- `hdlm_labels_3` / `hdlm_labels_3_bf16`: the same trainer with this package's defaults for label levels: label
  -vocabulary heads (the rows of the level's label tokens only, trained in full) and the constrained loss (each
  label token's cross-entropy among the tokens the taxonomy allows there), in float32 / under bf16 autocast.
- `trl_sft`: TRL's `SFTTrainer` on the base causal LM and a `datasets.Dataset` of the same pre-tokenised rows
  (`input_ids`, and `labels` = -100 outside the answer tokens); its `compute_loss` calls
  `model(**inputs, fused_lm_head=True)`.
- `authors`: the authors' released scheme: every head (each level head and the final head) computes
  full-vocabulary logits at every position, `(batch, length - 1, vocab)` each, from
  `output_hidden_states`, then cross-entropy over its level's positions (the final norm is applied before the
  level heads, as HdLM's `apply_final_norm=True`, so both compute the same loss; the authors' code reads raw hidden
  states, which costs the same). Logits are taken at positions `[:, :-1]` directly, which spares the
  `.contiguous()` copy of the shifted logits the authors' code makes: the speed-up measured here is a lower bound.
- `sft_label_positions` (reference, no target; `--methods ... sft_label_positions`): plain SFT whose single head is
  applied only at the label positions, which is what TRL's fused head does on CUDA / XPU (it scores only the valid
  positions when Triton is there); on CPU, TRL's fused head scores every position (`trl.kernels.chunked_logprob.
  _use_triton` is False there).

Same loss, different cost: the learning rate is 1e-30, so AdamW does all of its work but no weight moves (the
update is far below float32 resolution): every step of every method sees the same weights, and the losses of
`hdlm_D` and `authors_D` (in total and per level), and of `trl_sft` and `sft_label_positions`, must be equal.

The batch: DBpedia rows (the bundled `data/dbpedia/train.jsonl`) rendered by `HdLMRenderer` with three label
levels (category, subcategory, type) and the real byte-level BPE tokenizer of `tests/conftest.py`, the query cut so
that each row fills at most `--seq_len` tokens, then padded to exactly `batch x seq_len`. Every method reads the same
`input_ids`, `attention_mask` and `labels`; the 2-level HdLM reads them with levels 2 and 3 merged into its final
level (same target tokens, two heads instead of three).

Run `python bench/bench_training_step.py -h`.
"""

import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

import datasets  # noqa: E402
from conftest import train_tokenizer  # noqa: E402
from shapes import gemma3_270m_config  # noqa: E402
from transformers import AutoModelForCausalLM, HfArgumentParser, Trainer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from hdlm.training import (  # noqa: E402
    DataCollatorForHierarchicalLM,
    HdLMSFTConfig,
    HdLMSFTTrainer,
    default_level_layers,
)
from modeling_hdlm import HdLMForCausalLM  # noqa: E402

logger = logging.getLogger("bench_training_step")

LEVEL_NAMES = ["category", "subcategory", "type"]
TARGETS = {"hdlm_vs_trl": 1.10, "authors_vs_hdlm": 1.5, "labels_vs_full": 0.4}
METHODS = (
    "hdlm_2",
    "hdlm_3",
    "trl_sft",
    "authors_2",
    "authors_3",
    "sft_label_positions",
    "hdlm_labels_3",
    "hdlm_labels_3_bf16",
)
LEARNING_RATE = 1e-30  # AdamW works in full, the weights do not move: every step sees the same weights


@dataclass
class BenchArguments:
    data_file: str = field(
        default=str(REPO_ROOT / "data" / "dbpedia" / "train.jsonl"),
        metadata={"help": "DBpedia JSONL (text, 3 labels)."},
    )
    batch_size: int = field(default=8)
    seq_len: int = field(default=128, metadata={"help": "Tokens per row (padded to exactly this)."})
    repeats: int = field(
        default=1,
        metadata={
            "help": "Timed steps per method (medians are reported). One round of the five default methods takes "
            "about 7 minutes on 2 shared cores."
        },
    )
    warmup: int = field(
        default=0,
        metadata={
            "help": "Untimed steps per method before. Even with 0, an untimed forward runs first and the whole AdamW "
            "state is created before any timed step."
        },
    )
    methods: list[str] = field(
        default_factory=lambda: ["hdlm_2", "hdlm_3", "trl_sft", "authors_2", "authors_3"],
        metadata={
            "help": "Methods to time, interleaved (one step of each per round): hdlm_2, hdlm_3, trl_sft, authors_2, "
            "authors_3, sft_label_positions, hdlm_labels_3, hdlm_labels_3_bf16."
        },
    )
    profile: bool = field(default=False, metadata={"help": "Also print a torch.profiler table per method."})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads."})
    seed: int = field(default=0)


# -- model, data -------------------------------------------------------------------------------------------------


def render_rows(model: HdLMForCausalLM, tokenizer, path: str, count: int, seq_len: int) -> list[dict]:
    """
    `count` DBpedia examples rendered as 3-level HdLM training rows of at most `seq_len` tokens: the query is cut
    (at a token boundary) until the whole row fits, the answers never.
    """
    renderer = model.get_renderer(tokenizer)
    rows = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            example = json.loads(line)
            query = tokenizer(example["text"], add_special_tokens=False)["input_ids"]
            overhead = len(renderer.encode_example("", example["labels"])[0])
            for budget in range(min(len(query), seq_len - overhead), 0, -1):
                input_ids, level_ids = renderer.encode_example(tokenizer.decode(query[:budget]), example["labels"])
                if len(input_ids) <= seq_len:
                    break
            else:
                continue
            labels = [token if level else -100 for token, level in zip(input_ids, level_ids)]
            rows.append({"input_ids": input_ids, "labels": labels, "level_ids": level_ids, "path": example["labels"]})
            if len(rows) == count:
                return rows
    raise ValueError(f"{path} has fewer than {count} usable examples")


def merge_levels(level_ids: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Level ids of the same tokens read by a model with fewer levels: the deeper levels join the last one."""
    return level_ids.clamp(max=num_levels)


# -- the losses ----------------------------------------------------------------------------------------------------


def authors_scheme_loss(model: HdLMForCausalLM, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The authors' training loss: full-vocabulary logits of every head at every position, then each level's
    token-mean cross-entropy over its own positions, weighted. Returns the loss and the per-level losses.
    """
    config = model.config
    num_layers = config.text_config.num_hidden_layers
    outputs = model.model.base_model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        output_hidden_states=True,
        use_cache=False,
    )
    # hidden_states[l]: output of layer l (before the final norm); the last entry is the normed final state.
    hidden_states = outputs.hidden_states
    targets = inputs["labels"][:, 1:]
    level_of_target = inputs["level_ids"][:, 1:].masked_fill(targets == -100, 0)
    level_losses = []
    for level, layer in enumerate(config.level_layers):
        if layer == num_layers:
            logits = model.get_output_embeddings()(hidden_states[num_layers][:, :-1])
        else:
            logits = model.head_logits(level, hidden_states[layer][:, :-1])
        level_targets = targets.masked_fill(level_of_target != level + 1, -100)
        level_losses.append(F.cross_entropy(logits.flatten(0, 1), level_targets.flatten(), ignore_index=-100))
    level_losses = torch.stack(level_losses)
    loss = (level_losses.new_tensor(config.level_loss_weights) * level_losses).sum()
    return loss, level_losses


class AuthorsSchemeTrainer(HdLMSFTTrainer):
    """`HdLMSFTTrainer` with the authors' full-logits loss: the same training step around a different loss."""

    last_level_losses: list[float] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, level_losses = authors_scheme_loss(model, inputs)
        self.last_level_losses = level_losses.tolist()
        return loss


class LabelPositionsSFTTrainer(SFTTrainer):
    """Plain SFT with the head applied only at the label positions (what TRL's fused head does under Triton)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model.base_model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        )
        targets = inputs["labels"][:, 1:]
        selected = targets != -100
        logits = model.get_output_embeddings()(outputs.last_hidden_state[:, :-1][selected])
        count = selected.sum() if num_items_in_batch is None else num_items_in_batch
        return F.cross_entropy(logits, targets[selected], reduction="sum") / count


# -- timing ---------------------------------------------------------------------------------------------------------


@dataclass
class Method:
    name: str
    trainer: Trainer
    model: torch.nn.Module
    batch: dict[str, torch.Tensor]
    num_items_in_batch: torch.Tensor | int | None = None
    times: dict[str, list[float]] = field(
        default_factory=lambda: {"step": [], "forward": [], "backward": [], "optimizer": []}
    )
    losses: list[float] = field(default_factory=list)
    level_losses: list[list[float]] = field(default_factory=list)

    def __post_init__(self):
        # What the training loop computes before a step: the token counts (HdLM's trainer: per level too)
        self.trainer.current_gradient_accumulation_steps = 1
        _, self.num_items_in_batch = self.trainer.get_batch_samples(iter([self.batch]), 1, self.trainer.args.device)
        # Time the trainer's own `compute_loss` (forward and loss) inside its `training_step`
        compute_loss = self.trainer.compute_loss
        # HdLM's per-level losses come with its outputs (the authors' scheme keeps its own, `last_level_losses`)
        with_outputs = isinstance(self.trainer, HdLMSFTTrainer) and not isinstance(self.trainer, AuthorsSchemeTrainer)

        def timed_compute_loss(*args, **kwargs):
            start = time.perf_counter()
            result = compute_loss(*args, **kwargs, return_outputs=with_outputs)
            self.times["forward"].append(time.perf_counter() - start)
            if not with_outputs:
                return result
            loss, outputs = result
            self.level_losses.append(outputs.level_losses.tolist())
            return loss

        self.trainer.compute_loss = timed_compute_loss

    def step(self, optimizer: torch.optim.Optimizer, timed: bool = True) -> None:
        """One optimizer step exactly as `Trainer`'s loop makes it (single process, no accumulation)."""
        start = time.perf_counter()
        loss = self.trainer.training_step(self.model, dict(self.batch), self.num_items_in_batch)
        middle = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        forward = self.times["forward"].pop()
        if timed:
            self.times["forward"].append(forward)
            self.times["backward"].append(middle - start - forward)
            self.times["optimizer"].append(end - middle)
            self.times["step"].append(end - start)
        self.losses.append(float(loss))
        if isinstance(self.trainer, AuthorsSchemeTrainer):
            self.level_losses.append(self.trainer.last_level_losses)

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])


def profile_step(method: Method, optimizer: torch.optim.Optimizer) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        method.step(optimizer, timed=False)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def same_losses(first: Method, second: Method) -> tuple[bool, str]:
    """Whether two methods computed the same loss (and per-level losses) at every step."""
    worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(first.losses, second.losses))
    level_worst = max(
        (abs(a - b) for x, y in zip(first.level_losses, second.level_losses) for a, b in zip(x, y)), default=0.0
    )
    ok = worst <= 1e-4 and level_worst <= 1e-4
    levels = f", per level {[round(x, 5) for x in first.level_losses[0]]}" if first.level_losses else ""
    text = (
        f"- `{first.name}` loss {first.losses[0]:.6f}{levels}; `{second.name}` {second.losses[0]:.6f}: largest "
        f"relative difference over {len(first.losses)} steps {worst:.1e}, per level {level_worst:.1e}: {verdict(ok)}"
    )
    return ok, text


# -- report ---------------------------------------------------------------------------------------------------------


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    if set(args.methods) - set(METHODS):
        raise ValueError(f"Unknown methods {sorted(set(args.methods) - set(METHODS))}; choose from {METHODS}.")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()

    # One base model; the 2- and 3-level HdLMs wrap it (`from_base` keeps the base object) and share the first level
    # head module, so the run holds one base and two extra heads (memory) and every method trains the same weights.
    tokenizer = train_tokenizer()
    config = gemma3_270m_config(tokenizer)
    torch.manual_seed(args.seed)
    base = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    num_layers = config.num_hidden_layers
    layers = {depth: default_level_layers(num_layers, depth) for depth in (2, 3)}
    weights = {2: [2.0, 1.0], 3: [3.0, 2.0, 1.0]}  # the authors' WoS and DBpedia weights
    full_heads = dict(label_head_vocabulary="full", label_loss="full")  # the paper's heads and loss
    hdlm = {
        depth: HdLMForCausalLM.from_base(
            base,
            dict(
                level_layers=layers[depth],
                level_names=LEVEL_NAMES[:depth],
                level_loss_weights=weights[depth],
                **full_heads,
            ),
        )
        for depth in (3, 2)
    }
    hdlm[2].level_heads["0"] = hdlm[3].level_heads["0"]

    rows = render_rows(hdlm[3], tokenizer, args.data_file, args.batch_size, args.seq_len)
    hdlm_labels = HdLMForCausalLM.from_base(
        base,
        dict(
            level_layers=layers[3],
            level_names=LEVEL_NAMES,
            level_loss_weights=weights[3],
            taxonomy=sorted({tuple(row["path"]) for row in rows}),
        ),
        tokenizer=tokenizer,
    )
    prompt_lengths = [row["level_ids"].index(1) for row in rows]
    level_counts = [sum(row["level_ids"].count(level) for row in rows) for level in (1, 2, 3)]
    answer_lengths = [
        statistics.mean(
            len(tokenizer(" " + row["path"][level], add_special_tokens=False)["input_ids"]) for row in rows
        )
        for level in range(3)
    ]

    common = dict(
        output_dir=tempfile.mkdtemp(prefix="bench_training_step_"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        per_device_train_batch_size=args.batch_size,
        gradient_checkpointing=False,
        max_length=args.seq_len,
        pad_to_multiple_of=args.seq_len,
        learning_rate=LEARNING_RATE,
        weight_decay=0.0,
        save_strategy="no",
        seed=args.seed,
    )
    columns = ("input_ids", "labels", "level_ids")
    hdlm_dataset = datasets.Dataset.from_list([{key: row[key] for key in columns} for row in rows])
    sft_dataset = datasets.Dataset.from_list([{key: row[key] for key in columns[:2]} for row in rows])
    collator = DataCollatorForHierarchicalLM(tokenizer.pad_token_id, pad_to_multiple_of=args.seq_len)
    trainers: dict[str, Trainer] = {}
    for depth in (2, 3):
        for cls, prefix in ((HdLMSFTTrainer, "hdlm"), (AuthorsSchemeTrainer, "authors")):
            trainers[f"{prefix}_{depth}"] = cls(
                model=hdlm[depth],
                args=HdLMSFTConfig(**common),
                train_dataset=hdlm_dataset,
                processing_class=tokenizer,
                data_collator=collator,
            )
    # TRL's real path for pre-tokenised data: `input_ids` + `labels` columns, its own dataset preparation (it keeps
    # the labels, truncates to max_length, drops fully masked rows) and its own collator.
    for name, bf16 in (("hdlm_labels_3", False), ("hdlm_labels_3_bf16", True)):
        trainers[name] = HdLMSFTTrainer(
            model=hdlm_labels,
            args=HdLMSFTConfig(**{**common, "bf16": bf16}),
            train_dataset=hdlm_dataset,
            processing_class=tokenizer,
            data_collator=collator,
        )
    for name, cls in (("trl_sft", SFTTrainer), ("sft_label_positions", LabelPositionsSFTTrainer)):
        trainers[name] = cls(
            model=base, args=SFTConfig(**common), train_dataset=sft_dataset, processing_class=tokenizer
        )

    # The same batch for every method, each built by its trainer's own collator
    trl_trainer = trainers["trl_sft"]
    sft_batch = trl_trainer.data_collator([trl_trainer.train_dataset[i] for i in range(len(rows))])
    hdlm_batch = collator([hdlm_dataset[i] for i in range(len(rows))])
    for key in ("input_ids", "attention_mask", "labels"):
        if not torch.equal(sft_batch[key], hdlm_batch[key]):
            raise AssertionError(f"TRL's batch and HdLM's batch differ in {key!r}")
    batches = {
        "hdlm_2": {**hdlm_batch, "level_ids": merge_levels(hdlm_batch["level_ids"], 2)},
        "hdlm_3": hdlm_batch,
        "trl_sft": sft_batch,
        "sft_label_positions": sft_batch,
    }
    batches["authors_2"], batches["authors_3"] = batches["hdlm_2"], batches["hdlm_3"]
    batches["hdlm_labels_3"] = batches["hdlm_labels_3_bf16"] = hdlm_batch
    shape = tuple(hdlm_batch["input_ids"].shape)

    # One optimizer over every parameter (base + both heads), as `Trainer` builds it: AdamW only updates the
    # parameters that have a gradient, so each method pays for its own parameters. Its whole state is created now
    # (a step on zero gradients), so that no timed step pays for the first-time allocation.
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(trainers["hdlm_3"].args, hdlm[3])
    parameters = list({id(p): p for m in (hdlm[3], hdlm_labels) for p in m.parameters()}.values())
    optimizer = optimizer_cls(parameters, **optimizer_kwargs)
    for trainer in trainers.values():
        trainer.optimizer = optimizer
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # untimed warm-up of the backbone (first-call set-up)
        base.model(input_ids=hdlm_batch["input_ids"], attention_mask=hdlm_batch["attention_mask"])
    logger.info("set up in %.0f s; layers %s", time.perf_counter() - started, layers)

    methods = {name: Method(name, trainers[name], trainers[name].model, batches[name]) for name in args.methods}
    for round_index in range(args.warmup + args.repeats):
        for method in methods.values():
            timed = round_index >= args.warmup
            method.step(optimizer, timed=timed)
            logger.info(
                "round %d %s: %.2f s (loss %.4f)%s",
                round_index,
                method.name,
                method.times["step"][-1] if timed else float("nan"),
                method.losses[-1],
                "" if timed else " (warm-up)",
            )
    profiles = {name: profile_step(method, optimizer) for name, method in methods.items()} if args.profile else {}
    elapsed = time.perf_counter() - started

    # Apples to apples: the same loss, different cost
    checks = []
    for first, second in (
        ("hdlm_2", "authors_2"),
        ("hdlm_3", "authors_3"),
        ("trl_sft", "sft_label_positions"),
    ):
        if first in methods and second in methods:
            ok, text = same_losses(methods[first], methods[second])
            checks.append(text)
    for method in methods.values():
        if len(set(method.losses)) > 1:
            checks.append(f"- `{method.name}`: the loss changed between steps {method.losses}: the weights moved")

    # -- report ----------------------------------------------------------------------------------------------------
    medians = {name: {key: method.median(key) for key in method.times} for name, method in methods.items()}
    layer_params = sum(p.numel() for p in base.model.layers.parameters())
    head_params = base.get_output_embeddings().weight.numel()
    models = {"hdlm_2": hdlm[2], "hdlm_3": hdlm[3], "authors_2": hdlm[2], "authors_3": hdlm[3]}
    models["hdlm_labels_3"] = models["hdlm_labels_3_bf16"] = hdlm_labels
    trainable = {name: sum(p.numel() for p in models.get(name, base).parameters()) for name in methods}
    descriptions = {
        "hdlm_2": f"HdLM loss, 2 levels (head at layer {layers[2][0]}), `HdLMSFTTrainer`",
        "hdlm_3": f"HdLM loss, 3 levels (heads at layers {layers[3][0]}, {layers[3][1]}), `HdLMSFTTrainer`",
        "trl_sft": "plain SFT, TRL `SFTTrainer` (`fused_lm_head=True`)",
        "authors_2": "authors' scheme, 2 levels (full logits per head)",
        "authors_3": "authors' scheme, 3 levels (full logits per head)",
        "sft_label_positions": "reference: plain SFT, head at the label positions only",
        "hdlm_labels_3": "HdLM, 3 levels, label-vocabulary heads + constrained loss, float32",
        "hdlm_labels_3_bf16": "HdLM, 3 levels, label-vocabulary heads + constrained loss, bf16 autocast",
    }
    answer_text = ", ".join(f"{length:.1f}" for length in answer_lengths)
    lines = [
        "## Training step: Gemma 3 270M shape, random weights, float32",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",
        "",
        f"Machine: 2-core {platform.machine()} CPU, torch {'.'.join(torch.__version__.split('.')[:2])} CPU "
        f"({args.threads} threads; shared with other jobs: load average {load_start:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end; {elapsed / 60:.1f} min in all). One step = "
        "`trainer.training_step(model, batch, num_items_in_batch)` (forward + loss, backward) + `optimizer.step()` + "
        f"`zero_grad()`, with {optimizer_cls.__name__}"
        f"({', '.join(f'{k}={v}' for k, v in optimizer_kwargs.items() if k in ('fused', 'foreach'))}) as `Trainer` "
        "builds it; no gradient checkpointing; medians of "
        f"{args.repeats} step(s) per method after {args.warmup} warm-up step(s), an untimed forward and the creation "
        "of the whole AdamW state; methods interleaved.",
        "",
        f"Model: {num_layers} layers, hidden {config.hidden_size}, vocabulary {config.vocab_size}: "
        f"{layer_params / 1e6:.0f}M parameters in the decoder layers, {head_params / 1e6:.0f}M in one language head "
        "(tied to the embeddings in the base; every HdLM level head is an untied copy: "
        f"{head_params / 1e6:.0f}M more trainable parameters each).",
        "",
        f"Batch: {shape[0]} x {shape[1]} tokens: {len(rows)} DBpedia rows rendered by `HdLMRenderer` (prompt "
        f"{min(prompt_lengths)}-{max(prompt_lengths)} tokens; answers {answer_text} tokens on average per level + "
        "1 end marker each, with the small BPE tokenizer of tests/conftest.py); target tokens per level "
        f"{level_counts}, {sum(level_counts)} of {shape[0] * (shape[1] - 1)} positions. The 2-level runs read the "
        "same tokens with levels 2 and 3 merged.",
        "",
        "| method | step s | forward + loss s | backward s | AdamW s | trainable | vs TRL SFT | authors' / this |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    trl = medians.get("trl_sft", {}).get("step")
    for name, median in medians.items():
        authors = medians.get(f"authors_{name[-1]}", {}).get("step") if name.startswith("hdlm") else None
        lines.append(
            f"| {descriptions[name]} | {median['step']:.1f} | {median['forward']:.1f} | {median['backward']:.1f} | "
            f"{median['optimizer']:.1f} | {trainable[name] / 1e6:.0f}M | {ratio(median['step'], trl) if trl else '-'} "
            f"| {ratio(authors, median['step']) if authors else '-'} |"
        )
    lines += ["", "Targets:"]
    today = medians.get("hdlm_3", {}).get("step")
    for name in ("hdlm_labels_3", "hdlm_labels_3_bf16"):
        ours = medians.get(name, {}).get("step")
        if ours and today:
            lines.append(
                f"- `{name}` step <= {TARGETS['labels_vs_full']:.1f}x the paper's HdLM step (`hdlm_3`): "
                f"{ours / today:.2f}x: {verdict(ours / today <= TARGETS['labels_vs_full'])}"
            )
    for depth in (2, 3):
        ours = medians.get(f"hdlm_{depth}", {}).get("step")
        authors = medians.get(f"authors_{depth}", {}).get("step")
        if ours and trl:
            lines.append(
                f"- {depth} levels: HdLM step <= {TARGETS['hdlm_vs_trl']:.2f}x TRL's plain SFT step: "
                f"{ours / trl:.2f}x: {verdict(ours / trl <= TARGETS['hdlm_vs_trl'])}"
            )
        if ours and authors:
            lines.append(
                f"- {depth} levels: HdLM >= {TARGETS['authors_vs_hdlm']:.1f}x faster than the authors' scheme: "
                f"{authors / ours:.2f}x: {verdict(authors / ours >= TARGETS['authors_vs_hdlm'])}"
            )
    reference = medians.get("sft_label_positions")
    if reference:
        for depth in (2, 3):
            ours = medians.get(f"hdlm_{depth}")
            if ours:
                lines.append(
                    f"- reference, {depth} levels: HdLM vs plain SFT with the head at the label positions only "
                    f"(TRL's CUDA path): step {ratio(ours['step'], reference['step'])} (forward "
                    f"{ratio(ours['forward'], reference['forward'])}, backward "
                    f"{ratio(ours['backward'], reference['backward'])}, AdamW "
                    f"{ratio(ours['optimizer'], reference['optimizer'])})"
                )
    lines += [
        "",
        f"Same loss, different cost (learning rate {LEARNING_RATE:g}: AdamW runs in full but no weight moves, so "
        "every step of every method sees the same weights):",
        *(checks or ["- no pair of comparable methods was run"]),
    ]
    print("\n".join(lines))
    for name, table in profiles.items():
        print(f"\n### Profile of one `{name}` step (self CPU time)\n\n```\n{table}\n```")


if __name__ == "__main__":
    main()
