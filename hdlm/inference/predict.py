"""
Classifying unlabeled rows at scale: decode them chunk by chunk (the decoder sorts each chunk's rows by length into
batches), write every chunk as soon as it is done, and assemble one ordered output file (JSONL or Parquet).

One output row per input row, in input order:

- `id`: the input row's id, or its 0-based index where the file has no ids;
- `path`: the decoded labels (and texts), coarsest first;
- `<level name>` and `<level name>_probability` for every level: its label (or text) and, for label levels decoded
  under constraints, its probability among the labels allowed under its parent (else null); both null below the
  end of a path that stops early (`allow_partial_paths`);
- `path_probability`: the product of the label levels' probabilities (`HierarchicalOutput.probability`);
- `top_paths` (with `top_k_paths > 1`): the most probable label paths, best first, as `{"path", "probability"}`
  records (`HierarchicalOutput.top_paths`).

Flat columns read as well in JSONL as in Parquet (one column a field, no nested records to unpack).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from tqdm.auto import tqdm

from generation_hdlm import HierarchicalGenerationConfig, HierarchicalOutput

from .chunks import ChunkStore

__all__ = ["OUTPUT_FORMATS", "check_output_file", "file_digest", "output_writer", "predict_chunks", "prediction_row"]

OUTPUT_FORMATS = (".jsonl", ".parquet")
RESERVED_COLUMNS = ("id", "path", "path_probability", "top_paths")
BATCHES_A_CALL = 8
"""Batches decoded by one `generate_hierarchical` call: the progress bar moves by that many."""


def check_output_file(path: str | Path) -> str:
    """The output format (`.jsonl` or `.parquet`) chosen by the extension of `path`; another one is an error."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(
            f"--output_file {path}: unsupported extension {suffix or '(none)'!r}; end it with .jsonl or .parquet "
            "(the format is chosen by extension)."
        )
    return suffix


def check_level_names(level_names: Sequence[str]) -> None:
    """The output's per-level columns must not take the names of its other columns."""
    columns = [*level_names, *(f"{name}_probability" for name in level_names)]
    if clash := sorted(set(columns) & set(RESERVED_COLUMNS)):
        raise ValueError(
            f"The model's level names {list(level_names)} give output columns {clash} that the output uses for "
            f"itself ({', '.join(RESERVED_COLUMNS)}): rename the levels in the checkpoint's config.json "
            "(`level_names`)."
        )


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes: what identifies an input file across an interruption."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def prediction_row(identifier: str | int, output: HierarchicalOutput, level_names: Sequence[str]) -> dict[str, Any]:
    """One output row (see the module's docstring) of a decoded input."""
    row: dict[str, Any] = {"id": identifier, "path": output.path}
    for index, name in enumerate(level_names):  # a partial path (or an abstention) leaves its deeper levels null
        level = output.levels[index] if index < len(output.levels) else None
        row[name] = None if level is None else level.label if level.label is not None else level.text
        row[f"{name}_probability"] = None if level is None else level.probability
    row["path_probability"] = output.probability
    if output.top_paths is not None:
        row["top_paths"] = [{"path": path, "probability": probability} for path, probability in output.top_paths]
    return row


def _chunk_options(options: HierarchicalGenerationConfig, seed: int, index: int) -> HierarchicalGenerationConfig:
    """The options of chunk `index`: a sampling generator seeded by the chunk, so that a chunk decodes alike whether
    it comes first, after a resume, or in another process."""
    if options.generator is None:
        return options
    generator = torch.Generator(device=options.generator.device).manual_seed(seed + index)
    return dataclasses.replace(options, generator=generator)


def predict_chunks(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    ids: Sequence[str | int],
    store: ChunkStore,
    options: HierarchicalGenerationConfig,
    *,
    chunk_size: int,
    seed: int = 0,
    process_index: int = 0,
    num_processes: int = 1,
    autocast_dtype: torch.dtype | None = None,
    show_progress: bool = True,
) -> int:
    """
    Decode the chunks of `chunk_size` rows that belong to this process (every `num_processes`-th, from
    `process_index`) and that `store` lacks, writing each into `store` when done. Returns the number of chunks of
    the whole run.
    """
    level_names = model.config.level_names
    num_chunks = math.ceil(len(texts) / chunk_size)
    mine = range(process_index, num_chunks, num_processes)
    bounds = {index: (index * chunk_size, min(len(texts), (index + 1) * chunk_size)) for index in mine}
    todo = [index for index in mine if not store.done(index)]
    total = sum(end - start for start, end in bounds.values())
    left = sum(bounds[index][1] - bounds[index][0] for index in todo)
    device = model.get_input_embeddings().weight.device
    autocast = (
        functools.partial(torch.autocast, device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext
    )
    renderer = model.get_renderer(tokenizer)
    with tqdm(total=total, initial=total - left, desc="Predicting", unit="row", disable=not show_progress) as bar:
        for index in todo:
            start, end = bounds[index]
            chunk_options = _chunk_options(options, seed, index)
            prompts = [renderer.prompt_ids(text) for text in texts[start:end]]
            outputs: list[HierarchicalOutput | None] = [None] * len(prompts)
            # Batches of similar lengths waste little on padding. The decoder sorts each call's rows alike; a call
            # takes several batches, as a call has a fixed cost (about 0.1 s: it checks the taxonomy's tokens).
            order = sorted(range(len(prompts)), key=lambda row: len(prompts[row]))
            step = options.batch_size * BATCHES_A_CALL
            for first in range(0, len(order), step):
                batch = order[first : first + step]
                with torch.inference_mode(), autocast():
                    decoded = model.generate_hierarchical(
                        [prompts[row] for row in batch], tokenizer, generation_config=chunk_options
                    )
                for row, output in zip(batch, decoded, strict=True):
                    outputs[row] = output
                bar.update(len(batch))
            store.write(index, [prediction_row(*item, level_names) for item in zip(ids[start:end], outputs)])
    return num_chunks


def _write_jsonl(file: IO[bytes], chunks: Iterable[list[dict[str, Any]]]) -> None:
    for rows in chunks:
        file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))


def _parquet_schema(level_names: Sequence[str], ids: Sequence[str | int], top_paths: bool) -> Any:
    import pyarrow as pa

    columns = [("id", pa.int64() if isinstance(ids[0], int) else pa.string()), ("path", pa.list_(pa.string()))]
    for name in level_names:
        columns += [(name, pa.string()), (f"{name}_probability", pa.float64())]
    columns.append(("path_probability", pa.float64()))
    if top_paths:
        entry = pa.struct([("path", pa.list_(pa.string())), ("probability", pa.float64())])
        columns.append(("top_paths", pa.list_(entry)))
    return pa.schema(columns)


def output_writer(
    path: str | Path, level_names: Sequence[str], ids: Sequence[str | int], top_paths: bool = False
) -> Any:
    """
    `writer(file, chunks)`: the rows of `chunks` (lists of rows, in order) written in the format of `path`; with
    `top_paths`, the rows hold the `top_paths` column.
    """
    if check_output_file(path) == ".jsonl":
        return _write_jsonl
    schema = _parquet_schema(level_names, ids, top_paths)

    def write_parquet(file: IO[bytes], chunks: Iterable[list[Mapping[str, Any]]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with pq.ParquetWriter(file, schema) as writer:
            for rows in chunks:
                writer.write_table(pa.Table.from_pylist(list(rows), schema=schema))

    return write_parquet
