"""
The resumable output of a prediction run: rows written chunk by chunk into `<output_file>.partial/`, then assembled
into the output file.

Protocol (it survives a SIGKILL at any point): the folder holds `run.json` (what the run was started with) and
`chunk-<index>.jsonl` files, each written to a temporary name, flushed to disk and renamed into place, so a chunk
file is either whole or absent. The output file is assembled from the chunks in order into a temporary file renamed
onto `output_file`, and only then is the folder removed: a kill before the rename leaves the chunks to resume from, a
kill after it an output that a resume assembles again, identical.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hdlm.files import TEMPORARY_SUFFIX, write_atomically, write_text_atomically

__all__ = ["ChunkStore", "RunMismatchError"]

RUN_FILE = "run.json"


class RunMismatchError(ValueError):
    """`--resume` was given other arguments than the interrupted run."""


class ChunkStore:
    """The chunks of one prediction run into `output_file`, keyed by chunk index; `run` identifies the run."""

    def __init__(self, output_file: str | Path, run: Mapping[str, Any]) -> None:
        self.output_file = Path(output_file)
        self.folder = self.output_file.with_name(self.output_file.name + ".partial")
        self.run = json.loads(json.dumps(run))  # as it reads back from run.json

    def check(self, resume: bool) -> None:
        """Raise where this run cannot start: an interrupted run without `resume`, or one started differently."""
        if not self.folder.exists():
            if self.output_file.exists():
                raise FileExistsError(
                    f"{self.output_file} exists already: remove it, or choose another --output_file."
                )
            return
        if not resume:
            raise FileExistsError(
                f"{self.folder} holds the chunks of an interrupted run into {self.output_file}: pass --resume to "
                f"continue it, or remove {self.folder} to start over."
            )
        run_file = self.folder / RUN_FILE
        if not run_file.is_file():
            return  # killed before the run was recorded: no chunk was written yet
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous != self.run:
            keys = previous.keys() | self.run.keys()
            changed = sorted(key for key in keys if previous.get(key) != self.run.get(key))
            details = "; ".join(f"{key}: {previous.get(key)!r} then, {self.run.get(key)!r} now" for key in changed)
            raise RunMismatchError(
                f"--resume continues the run recorded in {run_file}, which differs from this one ({details}). Rerun "
                f"with that run's arguments, or remove {self.folder} to start over."
            )

    def start(self) -> None:
        """Create the folder and record the run (once per run, by one process)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f".*{TEMPORARY_SUFFIX}"):  # a chunk whose writer was killed
            stale.unlink()
        run_file = self.folder / RUN_FILE
        if not run_file.is_file():
            write_text_atomically(run_file, json.dumps(self.run, indent=2))

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.jsonl"

    def done(self, index: int) -> bool:
        return self.path(index).is_file()

    def write(self, index: int, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write chunk `index` whole, or not at all."""
        write_text_atomically(self.path(index), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def rows(self, num_chunks: int) -> Iterator[list[dict[str, Any]]]:
        """The rows of chunks `0 .. num_chunks - 1`, one list a chunk."""
        for index in range(num_chunks):
            with open(self.path(index), encoding="utf-8") as file:
                yield [json.loads(line) for line in file]

    def assemble(self, num_chunks: int, write_output: Any) -> None:
        """`write_output(file, chunks)` into a temporary file renamed onto the output file; then remove the chunks."""
        if missing := [index for index in range(num_chunks) if not self.done(index)]:
            raise RuntimeError(f"{self.folder} lacks chunks {missing[:10]}: a process stopped before writing them.")
        write_atomically(self.output_file, lambda file: write_output(file, self.rows(num_chunks)))
        shutil.rmtree(self.folder)
