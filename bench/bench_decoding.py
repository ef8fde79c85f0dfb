"""
Decoding wall time of HdLM's hierarchical decoding on one random-weight model of a real shape.

Compares, on the same model and the same inputs:

1. `generate_hierarchical(..., early_exit=True)`: level `d` runs only the first `k_d` layers, the deeper layers'
   cache is filled in one parallel pass before the next level (paper eq. 6-7);
2. `generate_hierarchical(..., early_exit=False)`: every step runs all `K` layers;
3. the authors' released scheme: for each level, re-encode the prompt and the levels decoded so far, prefill it
   through all `K` layers on a fresh cache, then greedy-decode the level at full depth, reading head `d` from the
   output of layer `k_d` (no early exit, no cache reuse across levels).

Workloads: (a) two free-text levels after a 128-token prompt; (b) two label levels (a 10 x 10 taxonomy) after a
256-token document, decoded greedily under constraints and by ranking. Run `python bench/bench_decoding.py -h`.
"""

import cProfile
import logging
import os
import platform
import pstats
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, HfArgumentParser
from transformers.cache_utils import DynamicCache

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from conftest import train_tokenizer  # noqa: E402
from shapes import SHAPES  # noqa: E402

from early_exit_hdlm import cache_view, running_layers  # noqa: E402
from modeling_hdlm import HdLMForCausalLM, HdLMRenderer  # noqa: E402

logger = logging.getLogger("bench_decoding")

# Words the benchmark tokenizer knows (it is trained on a small corpus): labels and documents are made of them.
WORDS = (
    "Science Physics Biology Chemistry Sports Tennis Football Arts Music Painting Quantum Optics Genetics Grand "
    "World League Jazz Question quick brown fox jumps lazy dog reply thank understand feel topic subtopic leaf "
    "answer strategy today mechanics cup slam"
).split()
TARGETS = {"text_vs_full": 1.2, "text_vs_authors": 1.3, "label_vs_authors": 1.8}
PAPER_HEAD_RATIO = 25 / 32  # the authors' WoS head: layer 25 of Llama-3-8B's 32


@dataclass
class BenchArguments:
    model_type: Literal["gemma3-270m", "qwen2-0.5b", "llama3.2-3b"] = field(
        default="gemma3-270m",
        metadata={
            "help": "gemma3-270m: the exact shape of Gemma 3 270M (18 layers, vocabulary 262,144); qwen2-0.5b: the "
            "Qwen2-0.5B shape (24 layers, hidden 896, vocabulary 151,936); llama3.2-3b: the Llama 3.2 3B shape (28 "
            "layers, hidden 3072, vocabulary 128,256; 13 GB in float32)."
        },
    )
    workloads: list[str] = field(
        default_factory=lambda: ["text", "label"], metadata={"help": "Which workloads to run: text (a), label (b)."}
    )
    repeats: int = field(default=5, metadata={"help": "Timed runs per method, after one warm-up run."})
    text_tokens: int = field(default=64, metadata={"help": "Tokens per free-text level (max_new_tokens)."})
    text_prompt_tokens: int = field(default=128, metadata={"help": "Prompt length of workload (a)."})
    label_prompt_tokens: int = field(default=256, metadata={"help": "Document length of workload (b)."})
    num_parents: int = field(default=10, metadata={"help": "Level-1 labels of the taxonomy of workload (b)."})
    num_children: int = field(default=10, metadata={"help": "Level-2 labels under each level-1 label."})
    step_repeats: int = field(default=10, metadata={"help": "Repetitions of each one-step cost measurement."})
    threads: int = field(default=2, metadata={"help": "torch.set_num_threads."})
    seed: int = field(default=0)


# -- model, tokenizer, inputs ------------------------------------------------------------------------------------


def token_ids(tokenizer, length: int, seed: int) -> list[int]:
    """`length` token ids of real text (random sentences of known words); they are valid ids of the model too."""
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < length:
        sentence = " ".join(rng.choice(WORDS).lower() for _ in range(12)).capitalize() + ". "
        ids += tokenizer(sentence, add_special_tokens=False)["input_ids"]
    return ids[:length]


def random_taxonomy(num_parents: int, num_children: int, seed: int) -> list[list[str]]:
    """`num_parents` x `num_children` label paths, every label two distinct real words, all labels distinct."""
    rng = random.Random(seed)
    used: set[str] = set()

    def new_label() -> str:
        while True:
            label = " ".join(rng.sample(WORDS, 2))
            if label not in used:
                used.add(label)
                return label

    parents = [new_label() for _ in range(num_parents)]
    return [[parent, new_label()] for parent in parents for _ in range(num_children)]


# -- the authors' scheme -------------------------------------------------------------------------------------------


@torch.no_grad()
def authors_decode(model: HdLMForCausalLM, renderer: HdLMRenderer, prompt: list[int], max_new_tokens: int):
    """
    The authors' inference: one full-depth greedy decode per level on the re-encoded prompt, nothing reused.

    For level `d`: re-encode the prompt, every earlier level (its header, then its answer re-tokenised from the
    label text; free-text answers are kept as token ids, since a random model's ids need not round-trip through
    text) and level `d`'s header, then decode the level with `authors_level`. Returns the token ids of each level.
    """
    levels: list[list[int]] = []
    labels: list[str | None] = []
    for level in range(model.config.num_levels):
        ids = list(prompt)
        for earlier, tokens in enumerate(levels):
            ids += renderer.header_ids(earlier, labels[:earlier])
            ids += tokens if labels[earlier] is None else renderer.answer_ids(earlier, labels[earlier])
        ids += renderer.header_ids(level, labels)
        tokens, label = authors_level(model, renderer, ids, level, labels, max_new_tokens)
        levels.append(tokens)
        labels.append(label)
    return levels


def authors_level(
    model: HdLMForCausalLM,
    renderer: HdLMRenderer,
    ids: list[int],
    level: int,
    path: list[str | None],
    max_new_tokens: int,
) -> tuple[list[int], str | None]:
    """
    Prefill `ids` through all `K` layers on a fresh cache, then greedy-decode level `level` token by token, every
    step through all `K` layers, reading head `level` from the hidden states after layer `k_d`
    (`output_hidden_states`, as `HdLMForCausalLM.head_logits` takes them). Label levels follow HdLM's own label trie
    below `path` (the labels decoded above), so the tokens are comparable. Returns the level's tokens and, for a
    label level, its label.
    """
    config = model.config
    base = model.model.base_model
    cache = DynamicCache(config=config.text_config)
    layer = config.level_layers[level]

    def forward(new_ids: list[int]) -> torch.Tensor:
        seen = cache.get_seq_length()
        outputs = base(
            input_ids=torch.tensor([new_ids]),
            attention_mask=torch.ones(1, seen + len(new_ids), dtype=torch.long),
            position_ids=torch.arange(seen, seen + len(new_ids))[None],
            past_key_values=cache,
            use_cache=True,
            output_hidden_states=[layer],
        )
        return outputs.hidden_states[layer][:, -1]

    constrained = config.level_kinds[level] == "label" and bool(config.taxonomy)
    node = model.label_trie(renderer).root(level, path) if constrained else None
    end_ids = renderer.end_ids(level)
    tokens: list[int] = []
    hidden = forward(ids)
    while True:
        logits = model.head_logits(level, hidden)
        if node is not None:
            allowed = torch.zeros_like(logits, dtype=torch.bool)
            allowed[:, list(node.children)] = True
            logits = logits.masked_fill(~allowed, float("-inf"))
        token = int(logits.argmax(-1))
        tokens.append(token)
        if node is not None:
            node = node.children[token]
            if node.label is not None:
                return tokens, node.label
        elif tokens[-len(end_ids) :] == end_ids or len(tokens) >= max_new_tokens:
            return tokens, None
        hidden = forward([token])


# -- timing ----------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Each timed run's wall-clock seconds, in round order, and the median CPU seconds of this process's threads."""

    walls: list[float]
    cpu: float

    @property
    def wall(self) -> float:
        """Median wall-clock seconds."""
        return statistics.median(self.walls)


def time_methods(
    methods: dict[str, Callable[[], list[list[int]]]],
    repeats: int,
    warmups: dict[str, Callable[[], object]] | None = None,
):
    """
    One warm-up run of each method (`warmups`, shorter variants of the methods, or the methods themselves), then
    `repeats` rounds running each method once, interleaved so that load from other jobs on the machine falls on
    every method alike. Returns the tokens of each method's first timed run and its `Timing`.
    """
    for warmup in (warmups or methods).values():
        warmup()
    outputs: dict[str, list[list[int]]] = {}
    walls: dict[str, list[float]] = {name: [] for name in methods}
    cpus: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(repeats):
        for name, run in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            tokens = run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            outputs.setdefault(name, tokens)
        logger.info("  round %d/%d: %s", round_ + 1, repeats, ", ".join(f"{n} {t[-1]:.2f}s" for n, t in walls.items()))
    timings = {name: Timing(walls[name], statistics.median(cpus[name])) for name in methods}
    return outputs, timings


def hdlm_method(model, tokenizer, prompt: list[int], **kwargs) -> Callable[[], list[list[int]]]:
    def run() -> list[list[int]]:
        (output,) = model.generate_hierarchical([prompt], tokenizer, batch_size=1, **kwargs)
        return [level.token_ids for level in output.levels]

    return run


@torch.no_grad()
def step_costs(model: HdLMForCausalLM, k1: int, context: int, repeats: int) -> dict[str, float]:
    """
    Median wall seconds of the prefill of `context` tokens through all `K` layers, and of the pieces of one
    decoding step at batch 1 after them: a language head alone (full vocabulary), the first `k1` layers alone, all
    `K` layers alone. The pieces are measured round by round, like the methods.
    """
    K = model.config.text_config.num_hidden_layers
    base = model.model.base_model
    text_config = model.config.text_config
    ids = torch.randint(3, 300, (1, context))
    hidden = torch.randn(1, 1, text_config.hidden_size)

    def prefill() -> DynamicCache:
        cache = DynamicCache(config=text_config)
        base(input_ids=ids, past_key_values=cache, use_cache=True)
        return cache

    def layers(stop: int) -> Callable[[], None]:
        cache = prefill()  # one cache per depth: layers past `stop` lag behind in it

        def run() -> None:
            position = cache.layers[0].get_seq_length()
            with running_layers(model.decoder_layers, 0, stop, []):
                base(
                    input_ids=torch.tensor([[5]]),
                    position_ids=torch.tensor([[position]]),
                    past_key_values=cache_view(cache, range(0, stop)),
                    use_cache=True,
                )

        return run

    pieces = {
        "prefill": prefill,
        "head": lambda: model.head_logits(0, hidden),
        "layers_k1": layers(k1),
        "layers_K": layers(K),
    }
    times: dict[str, list[float]] = {name: [] for name in pieces}
    for round_ in range(repeats + 1):
        for name, run in pieces.items():
            if name == "prefill" and (round_ - 1) % 3:
                continue  # a prefill costs ~15 steps: time it in rounds 1, 4, 7, ...
            start = time.perf_counter()
            run()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def python_shares(run: Callable[[], object]) -> tuple[float, float]:
    """
    Shares of one profiled run of `run` spent in HdLM's own Python (the `*_hdlm.py` files: hooks, cache views,
    bookkeeping, not counting what it calls) and in all Python outside torch's built-in operators (transformers'
    module calls included). cProfile slows Python down more than the operators, so both are upper bounds.
    """
    profiler = cProfile.Profile()
    profiler.runcall(run)
    stats = pstats.Stats(profiler)
    in_torch = sum(row[2] for (file, _, name), row in stats.stats.items() if file == "~" and "torch" in name)
    in_hdlm = sum(row[2] for (file, _, _), row in stats.stats.items() if Path(file).name.endswith("_hdlm.py"))
    return in_hdlm / stats.total_tt, 1 - in_torch / stats.total_tt


# -- workloads -------------------------------------------------------------------------------------------------------


def agreement(reference: list[list[int]], other: list[list[int]]) -> str:
    matched = sum(a == b for ref, oth in zip(reference, other) for a, b in zip(ref, oth))
    total = sum(len(ref) for ref in reference)
    same = "identical" if reference == other else "DIFFERENT"
    return f"{same} ({matched}/{total})"


def met(slower: Timing, faster: Timing, target: float) -> str:
    """
    How much faster `faster` ran than `slower`, against `target`: the median of the per-round ratios (the methods
    run side by side in each round, so load from other jobs largely cancels out), each round's ratio, and the ratio
    of the medians.
    """
    ratios = [slow / fast for slow, fast in zip(slower.walls, faster.walls)]
    value = statistics.median(ratios)
    rounds = " / ".join(f"{ratio:.2f}" for ratio in ratios)
    return (
        f"{value:.2f}x (rounds {rounds}; ratio of medians {slower.wall / faster.wall:.2f}x), target >= {target}x: "
        f"**{'met' if value >= target else 'MISSED'}**"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def text_workload(base, tokenizer, args: BenchArguments) -> list[str]:
    K = base.config.num_hidden_layers
    k1 = K // 2
    model = HdLMForCausalLM.from_base(
        base, {"level_layers": [k1, K], "level_names": ["rationale", "answer"], "level_kinds": ["text", "text"]}
    ).eval()
    renderer = model.get_renderer(tokenizer)
    prompt = token_ids(tokenizer, args.text_prompt_tokens, args.seed)
    n = args.text_tokens

    def methods(n: int) -> dict[str, Callable[[], list[list[int]]]]:
        return {
            "early exit": hdlm_method(model, tokenizer, prompt, early_exit=True, max_new_tokens=n),
            "full depth": hdlm_method(model, tokenizer, prompt, early_exit=False, max_new_tokens=n),
            "authors": lambda: authors_decode(model, renderer, prompt, n),
        }

    logger.info("workload (a): 2 text levels x %d tokens, k = [%d, %d], prompt %d tokens", n, k1, K, len(prompt))
    # The warm-up runs decode 4 tokens per level: every code path (prefill, steps, fill) at a fraction of the cost.
    outputs, timings = time_methods(methods(n), args.repeats, warmups=methods(min(n, 4)))
    logger.info("workload (a): measuring one-step costs")
    costs = step_costs(model, k1, len(prompt) + n, args.step_repeats)
    logger.info("workload (a): profiling one early-exit run")
    in_hdlm, outside_torch = python_shares(methods(n)["early exit"])

    counts = {name: [len(level) for level in out] for name, out in outputs.items()}
    L1, L2 = counts["early exit"]
    ee, full, authors = (timings[name] for name in ("early exit", "full depth", "authors"))
    bound = (L1 * K + L2 * K) / (L1 * k1 + L2 * K)
    step_K = costs["layers_K"] + costs["head"]
    step_k1 = costs["layers_k1"] + costs["head"]
    estimate = (L1 + L2) * step_K / (L1 * step_k1 + L2 * step_K)
    in_vocab = sum(token < len(tokenizer) for level in outputs["early exit"] for token in level)
    lines = [
        f"### (a) two free-text levels of {n} tokens, heads at layers [{k1}, {K}], prompt {len(prompt)} tokens, "
        "batch 1",
        "",
        "| method | wall s | CPU s | tokens per level | early exit faster by (wall) | tokens vs early exit |",
        "|---|---:|---:|---|---:|---|",
    ]
    for name, out in outputs.items():
        lines.append(
            f"| {name} | {timings[name].wall:.2f} | {timings[name].cpu:.2f} | {counts[name]} | "
            f"{timings[name].wall / ee.wall:.2f}x | {agreement(outputs['early exit'], out)} |"
        )
    lines += [
        "",
        f"- target (a) early exit vs full depth: {met(full, ee, TARGETS['text_vs_full'])} "
        f"(CPU time {full.cpu / ee.cpu:.2f}x); layer-count bound (L1*K + L2*K) / (L1*k1 + L2*K) = {bound:.2f}x; "
        f"bound with the head's cost, from the one-step costs below: {estimate:.2f}x",
        f"- target (a) early exit vs authors: {met(authors, ee, TARGETS['text_vs_authors'])} "
        f"(CPU time {authors.cpu / ee.cpu:.2f}x)",
        f"- early exit saved {full.wall - ee.wall:.2f} s (median wall time, full depth minus early exit); the layers "
        f"it skips cost {L1} x ({ms(costs['layers_K'])} - {ms(costs['layers_k1'])}) = "
        f"{L1 * (costs['layers_K'] - costs['layers_k1']):.2f} s by the one-step costs below, of which the fill pass "
        f"(the skipped layers over the {L1} level-1 tokens at once) gives some back",
        f"- one early-exit run under cProfile spends {in_hdlm:.1%} of its time in HdLM's own Python (hooks, cache "
        f"views, bookkeeping) and {outside_torch:.1%} in all Python outside torch's operators, transformers' module "
        "calls included (upper bounds: cProfile slows Python down most)",
        f"- one step at batch 1 after {len(prompt) + n} tokens: head {ms(costs['head'])}, first {k1} layers "
        f"{ms(costs['layers_k1'])}, all {K} layers {ms(costs['layers_K'])}: the head is {costs['head'] / step_K:.0%} "
        f"of a full-depth step and early exit saves {1 - step_k1 / step_K:.0%} of a level-1 step; prefill of "
        f"{len(prompt) + n} tokens {ms(costs['prefill'])} (the authors' scheme prefills the prompt once per level)",
        (
            f"- tokens per level {[L1, L2]}, the same for every method (no level ended on its end marker); "
            if (L1, L2) == (n, n) and len({str(c) for c in counts.values()}) == 1
            else f"- a level ended on its end marker before {n} tokens, or methods differ: {counts}; "
        )
        + f"{in_vocab} of {L1 + L2} decoded ids fall inside the {len(tokenizer)}-token tokenizer (random weights "
        "spread over the whole vocabulary; the rest decode to nothing)",
    ]
    return lines


def label_workload(base, tokenizer, args: BenchArguments) -> list[str]:
    K = base.config.num_hidden_layers
    taxonomy = random_taxonomy(args.num_parents, args.num_children, args.seed)
    document = token_ids(tokenizer, args.label_prompt_tokens, args.seed + 1)
    labels = [label for path in taxonomy for label in path]
    label_lengths = [len(tokenizer(" " + label, add_special_tokens=False)["input_ids"]) for label in labels]
    lines = [
        f"### (b) two label levels ({args.num_parents} x {args.num_children} taxonomy, two-word labels of "
        f"{statistics.mean(label_lengths):.1f} tokens on average + 1 end marker), document {len(document)} tokens, "
        "batch 1",
        "",
        "| k1 | method | wall s | CPU s | tokens per level | faster than authors by (wall) | tokens vs early exit "
        "of the same strategy |",
        "|---:|---|---:|---:|---|---:|---|",
    ]
    notes = []
    for k1 in sorted({K // 2, round(PAPER_HEAD_RATIO * K)}):
        options = dict(
            level_layers=[k1, K],
            level_names=["topic", "subtopic"],
            level_kinds=["label", "label"],
            taxonomy=taxonomy,
            label_head_vocabulary="full",  # the authors' heads, so that every method decodes with the same weights
        )
        model = HdLMForCausalLM.from_base(base, options).eval()
        renderer = model.get_renderer(tokenizer)
        methods = {
            "greedy, early exit": hdlm_method(model, tokenizer, document, early_exit=True),
            "greedy, full depth": hdlm_method(model, tokenizer, document, early_exit=False),
            "rank, early exit": hdlm_method(model, tokenizer, document, strategy="rank", early_exit=True),
            "rank, full depth": hdlm_method(model, tokenizer, document, strategy="rank", early_exit=False),
            "authors (greedy)": lambda model=model, renderer=renderer: authors_decode(model, renderer, document, 64),
        }
        logger.info("workload (b): k = [%d, %d]", k1, K)
        outputs, timings = time_methods(methods, args.repeats)
        logger.info("workload (b): measuring one-step costs")
        costs = step_costs(model, k1, len(document), args.step_repeats)
        del model, methods

        authors = timings["authors (greedy)"]
        for name, out in outputs.items():
            reference = outputs["rank, early exit" if name.startswith("rank") else "greedy, early exit"]
            lines.append(
                f"| {k1} | {name} | {timings[name].wall:.2f} | {timings[name].cpu:.2f} | "
                f"{[len(level) for level in out]} | {authors.wall / timings[name].wall:.2f}x | "
                f"{agreement(reference, out)} |"
            )
        greedy, full = timings["greedy, early exit"], timings["greedy, full depth"]
        rank = timings["rank, early exit"]
        n1, n2 = (len(level) for level in outputs["greedy, early exit"])
        step_K = costs["layers_K"] + costs["head"]
        prefill = costs["prefill"]
        estimate = (2 * prefill + (n1 + n2) * step_K) / (prefill + n1 * costs["layers_k1"] + n2 * costs["layers_K"])
        notes += [
            f"- k1 = {k1}: target (b) greedy early exit vs authors: "
            f"{met(authors, greedy, TARGETS['label_vs_authors'])} "
            f"(CPU time {authors.cpu / greedy.cpu:.2f}x); rank early exit vs authors {authors.wall / rank.wall:.2f}x; "
            f"greedy early exit vs full depth {full.wall / greedy.wall:.2f}x",
            f"- k1 = {k1}, cost breakdown: prefill of the {len(document)}-token document through all {K} layers "
            f"{ms(prefill)} (the authors pay it once per level, HdLM once); one step: full-vocabulary head "
            f"{ms(costs['head'])}, first {k1} layers {ms(costs['layers_k1'])}, all {K} layers "
            f"{ms(costs['layers_K'])}. HdLM's constrained greedy steps compute only the allowed tokens' logits, the "
            f"authors' every step a full head: estimate (2 prefills + {n1 + n2} full steps with head) / (1 prefill + "
            f"{n1} early-exit steps + {n2} full steps, no head) = {estimate:.2f}x. `rank` scores every candidate "
            "label exactly (full-vocabulary log-likelihood), so it pays the head on every label token",
        ]
    return lines + [""] + notes


def main() -> None:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    unknown = set(args.workloads) - {"text", "label"}
    if unknown:
        raise ValueError(f"Unknown workloads {sorted(unknown)}; choose from text, label.")

    tokenizer = train_tokenizer()
    config = SHAPES[args.model_type](tokenizer)
    torch.manual_seed(args.seed)
    base = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    layer_params = sum(p.numel() for p in base.model.layers.parameters())
    head_params = base.get_output_embeddings().weight.numel()
    load = os.getloadavg()[0]
    logger.info("model %s: %.0fM layer parameters, %.0fM head", args.model_type, layer_params / 1e6, head_params / 1e6)
    started = time.perf_counter()

    lines = [
        f"## Decoding speed: {args.model_type} shape ({type(config).__name__}), random weights, float32",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({platform.machine()}), torch "
        f"{'.'.join(torch.__version__.split('.')[:2])} CPU, torch.set_num_threads({args.threads}), shared with other "
        f"jobs (load average {load:.1f} at start). Wall s and CPU s are medians of {args.repeats} runs after one "
        "warm-up run of each method, the methods interleaved round by round; tokens are compared on the first run.",
        "",
        f"Model: {config.num_hidden_layers} layers, hidden {config.hidden_size}, vocabulary {config.vocab_size}: "
        f"{layer_params / 1e6:.0f}M parameters in all decoder layers together, {head_params / 1e6:.0f}M in one "
        f"language head ({head_params / layer_params:.2f}x the layers). Early exit skips layers, never the head: "
        "every decoded token still goes through a full-vocabulary head, so the larger the head's share of a step, "
        "the less early exit can save.",
        "",
    ]
    if "text" in args.workloads:
        lines += text_workload(base, tokenizer, args) + [""]
    if "label" in args.workloads:
        lines += label_workload(base, tokenizer, args) + [""]
    logger.info("done in %.0f s", time.perf_counter() - started)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
