"""Shared fixtures: a real byte-level BPE tokenizer trained here, and tiny random base models built from configs."""

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from configuration_hdlm import HdLMConfig  # noqa: E402
from hdlm.default_base import DEFAULT_BASE_MODEL, resolve_model_name_or_path  # noqa: E402
from modeling_hdlm import HdLMForCausalLM, HdLMLabelHead  # noqa: E402

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]
CORPUS = [
    "Answer with the topic, then the subtopic, then the leaf.",
    "topic: Science\nsubtopic: Physics\nleaf: Optics",
    "Sports Tennis Football Arts Music Painting Biology Chemistry Quantum mechanics",
    "The quick brown fox jumps over the lazy dog. A reply: thank you, I understand how you feel.",
    "strategy: Question\nreply: Hi, how are you today?",
] * 20

TAXONOMY_2 = [
    ["Science", "Physics"],
    ["Science", "Biology"],
    ["Science", "Chemistry"],
    ["Sports", "Tennis"],
    ["Sports", "Football"],
    ["Arts", "Music"],
]
TAXONOMY_3 = [
    ["Science", "Physics", "Optics"],
    ["Science", "Physics", "Quantum mechanics"],
    ["Science", "Biology", "Genetics"],
    ["Sports", "Tennis", "Grand slam"],
    ["Sports", "Football", "World cup"],
    ["Sports", "Football", "League"],
    ["Arts", "Music", "Jazz"],
]

FAMILIES = {
    "llama": dict(model_type="llama", num_key_value_heads=2, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", num_key_value_heads=2, tie_word_embeddings=True),
    "gemma3_text": dict(
        model_type="gemma3_text",
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        tie_word_embeddings=True,
    ),
    "gpt2_tied": dict(model_type="gpt2", tie_word_embeddings=True),
    "gpt2_untied": dict(model_type="gpt2", tie_word_embeddings=False),
}


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer trained on a small corpus (no hub needed)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", padding_side="left"
    )


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer()


def tiny_base(family: str, tokenizer: PreTrainedTokenizerFast, num_layers: int = 4, seed: int = 0):
    """A tiny random causal LM of `family` whose vocabulary matches `tokenizer`."""
    from transformers import AutoConfig

    settings = dict(FAMILIES[family])
    model_type = settings.pop("model_type")
    sizes = (
        dict(n_embd=32, n_layer=num_layers, n_head=2, n_positions=256)
        if model_type == "gpt2"
        else dict(hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers, num_attention_heads=2)
    )
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
        **settings,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()


def tiny_hdlm(family: str, tokenizer, taxonomy=TAXONOMY_2, level_layers=None, kinds=None, **kwargs) -> HdLMForCausalLM:
    depth = len(taxonomy[0]) if kinds is None else len(kinds)
    names = ["topic", "subtopic", "leaf"][:depth]
    level_layers = level_layers or ([2, 4] if depth == 2 else [1, 3, 4])
    options = dict(level_layers=level_layers, level_names=names, level_kinds=kinds, taxonomy=taxonomy, **kwargs)
    return HdLMForCausalLM.from_base(tiny_base(family, tokenizer), options, tokenizer=tokenizer).eval()


__all__ = ["HdLMConfig", "HdLMForCausalLM", "HdLMLabelHead", "tiny_base", "tiny_hdlm", "train_tokenizer"]


@dataclass
class Converted:
    hf_home: Path
    path: Path
    seconds: float
    messages: list[str]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converted]:
    """
    The real first-use conversion of the default base, in a temporary HF_HOME, with its log records (deleted after
    the session): shared by the default-base and the default-job tests.
    """
    hf_home = tmp_path_factory.mktemp("hf_home")
    handler = _Collect()
    log = logging.getLogger("hdlm.default_base")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HOME", str(hf_home))
            start = time.perf_counter()
            path = resolve_model_name_or_path(DEFAULT_BASE_MODEL)
            seconds = time.perf_counter() - start
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    yield Converted(hf_home, Path(path), seconds, [r.getMessage() for r in handler.records])
    shutil.rmtree(hf_home, ignore_errors=True)  # 1.1 GB; pytest would keep it for three runs


def free_port() -> int:
    """
    A local TCP port free now. Multi-process runs rendezvous there, not on the launchers' default 29500, so that no
    run can join another's store (another job's on a shared CI host, or a rank a timed-out test left behind).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_offline(command: list[str], *, cwd=REPO_ROOT, env: dict | None = None, timeout: int = 600):
    """
    Run `command` with the Hub offline; stdout and stderr captured, never raising on its exit status. Past `timeout`,
    the process and all of its descendants (a launcher's ranks, which torch.distributed.run starts in sessions of
    their own) print their Python stacks (SIGABRT, faulthandler on) and are killed, and the test fails with those
    stacks: a hang says where it hangs, and no rank is left running into the next test.
    """
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(signal.SIGABRT)
        psutil.wait_procs(tree, timeout=30)
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{command[:4]}... ran past {timeout} s; the stacks of its processes:\n{stderr[-12000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


# -- synthetic tasks and training arguments shared by the test modules --------------------------------------------

KEYWORDS = {
    "Physics": "optics lens",
    "Biology": "cells genes",
    "Chemistry": "acids",
    "Tennis": "racket",
    "Football": "goal ball",
    "Music": "jazz song",
}
FILLER = "the quick brown fox jumps over lazy dog again and".split()


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    """Documents whose leaf label is named by a keyword among filler words."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        top, leaf = TAXONOMY_2[index % len(TAXONOMY_2)]
        words = rng.sample(FILLER, 4) + [KEYWORDS[leaf]]
        rng.shuffle(words)
        rows.append({"id": f"ex-{index}", "text": " ".join(words), "labels": [top, leaf]})
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def train_args(task, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path", task["base"],
        "--train_file", task["train"],
        "--level_names", "topic", "subtopic",
        "--output_dir", str(output_dir),
        "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false",
        "--per_device_train_batch_size", "8",
        "--learning_rate", "3e-3", "--lr_scheduler_type", "constant",
        "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--seed", "0",
        *extra,
    ]  # fmt: skip


CUES = {  # the cue word ending a query -> (strategy, reply): the reply is a function of the strategy and the query
    "Physics": ("Question", "how are you today?"),
    "Optics": ("Question", "how do you feel?"),
    "Tennis": ("Reflection", "I understand how you feel."),
    "Football": ("Reflection", "I understand, the dog is lazy."),
    "Painting": ("Suggestion", "thank you, try Music."),
    "Jazz": ("Suggestion", "thank you, try Tennis."),
}
STRATEGIES = sorted({strategy for strategy, _ in CUES.values()})


def label_text_rows(count: int, seed: int = 0) -> list[dict]:
    """Two filler words and a cue word; the labels are the cue's strategy, then its reply."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        cue = list(CUES)[index % len(CUES)]
        strategy, reply = CUES[cue]
        text = " ".join([*rng.sample(FILLER, 2), cue])
        rows.append({"id": f"ex-{index}", "text": text, "labels": [strategy, reply]})
    return rows


@pytest.fixture(scope="module")
def metric(tmp_path_factory) -> Iterator[object]:
    """The `evaluate` module `metrics/hierarchical_f1`, loaded offline from the repository with fresh caches."""
    import evaluate  # slow to import: only for the tests that use the module

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_MODULES_CACHE", str(tmp_path_factory.mktemp("modules")))
        yield evaluate.load(str(REPO_ROOT / "metrics" / "hierarchical_f1"))


# A 3-level taxonomy where names repeat under different parents ("Classical", "Accessories") and 2 of 10 leaves stop
# early: "Music" is both a leaf and a parent, "Sports" a leaf at level 1.
PARTIAL_LEAVES = {
    ("Science", "Physics", "Classical"): "pendulum orbit",
    ("Science", "Physics", "Quantum"): "photon spin",
    ("Science", "Biology", "Genetics"): "cells genes",
    ("Arts", "Music", "Classical"): "symphony",
    ("Arts", "Music", "Jazz"): "jazz song",
    ("Arts", "Music"): "melody",
    ("Shop", "Books", "Accessories"): "bookmark",
    ("Shop", "Books", "Fiction"): "novel",
    ("Shop", "Games", "Accessories"): "joystick",
    ("Sports",): "racket",
}
TAXONOMY_PARTIAL = sorted(list(path) for path in PARTIAL_LEAVES)


def partial_path_rows(count: int, seed: int = 0) -> list[dict]:
    """Documents whose label path (one of `PARTIAL_LEAVES`, 20 % of them stopping early) is named by a keyword."""
    rng = random.Random(seed)
    leaves = list(PARTIAL_LEAVES)
    rows = []
    for index in range(count):
        path = leaves[index % len(leaves)]
        words = rng.sample(FILLER, 4) + [PARTIAL_LEAVES[path]]
        rng.shuffle(words)
        rows.append({"id": f"ex-{index}", "text": " ".join(words), "labels": list(path)})
    return rows
