"""Files written whole or not at all: through a temporary file beside the target, flushed to disk, renamed onto it."""

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["TEMPORARY_SUFFIX", "write_atomically", "write_text_atomically"]

TEMPORARY_SUFFIX = ".tmp"  # `.<name>.<random>.tmp`: what a writer killed half way leaves beside `<name>`


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """
    Call `write(file)` on a temporary binary file beside `path` (parent folders created), flush it to disk and
    rename it onto `path`: a crash at any point leaves the old file or the new one, never part of one. The file gets
    the permissions of the one it replaces, or those `open()` gives a new file (the temporary file's are 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, delete=False
    ) as file:
        try:
            write(file)
            file.flush()
            os.fsync(file.fileno())
            os.chmod(file.name, stat.S_IMODE(path.stat().st_mode) if path.exists() else _new_file_mode())
        except BaseException:
            file.close()
            os.unlink(file.name)
            raise
    os.replace(file.name, path)


def write_text_atomically(path: str | Path, text: str) -> None:
    """`text` into `path` as UTF-8, atomically (`write_atomically`)."""
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _new_file_mode() -> int:
    """The permissions `open()` gives a new file under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
