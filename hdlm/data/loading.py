"""Load and validate hierarchical data sets, before any tokenisation.

A hierarchical example is a query ``text`` and a path of responses ``labels = [r_1, ..., r_D]``, coarsest first.
Each level has a kind: ``"label"`` (a class from a taxonomy, e.g. topic > subtopic) or ``"text"`` (free text,
e.g. the reply in strategy -> reply). Every loader here returns a :class:`datasets.Dataset` with exactly the
columns ``text`` (str), ``labels`` (list[str]) and, when the source has one, ``id`` (str).

Normalisation: label levels are stripped of surrounding whitespace (``" Science "`` and ``"Science"`` are one
class, as the published WOS preprocessing does); the query text and free-text levels are kept exactly as written.

JSON (Lines or an array) and Parquet files are read by ``datasets``; CSV and TSV files by Python's ``csv`` module,
because pandas (which ``datasets`` reads CSV with) fills short rows, drops extra fields and infers a type per chunk
without a word. When a JSON file fails a check, or ``datasets`` cannot parse it (a broken line, a column of mixed
types), it is read again line by line, so that every message names its line.

Everything is validated before a data set is built. Problems raise :class:`HierarchicalDataError`, whose message
names the file, the 1-based line (or row), the field and the problem, and says how to fix it; problems of all rows
are collected (the first ten are shown, with a count of the rest) so a big file can be fixed in one pass.
Checked: a missing field, an unreadable JSON line, a label list of the wrong depth (the first row fixes it
unless ``num_levels`` or ``level_kinds`` is given; with ``allow_partial_paths`` a path may stop early, and the
longest row fixes it), a non-string or empty label / text, a bad or duplicate ``id``, an empty file and an
unsupported extension. A label is its path, not its name: the same name under two parents ("Classical" under
Music and under Physics) is two labels, not an error.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

from configuration_hdlm import LEVEL_KINDS, taxonomy_path_problem

from .line_readers import file_line_rows
from .validation import (
    MAX_REPORTED_PROBLEMS,
    HierarchicalDataError,
    RawRow,
    RowValidator,
    check_level_args,
    check_level_kinds,
    file_error,
    problem_message,
    short_repr,
)

__all__ = [
    "LEVEL_KINDS",
    "HierarchicalDataError",
    "check_level_kinds",
    "collect_taxonomy",
    "load_hierarchical_dataset",
    "sample_rows",
]

_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


def _file_kind(path: Path, source: str) -> str:
    """The format of a local file, chosen by its extension; the file must exist."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise file_error(
            source,
            f"unsupported file extension {path.suffix or '(none)'!r}",
            f"use one of {', '.join(sorted(_FORMATS))} (the format is chosen by extension)",
        )
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    return kind


@contextlib.contextmanager
def _datasets_quiet() -> Iterator[None]:
    """No progress bar, and no error log from the `datasets` readers: a file they cannot parse is read again."""
    readers = logging.getLogger("datasets.packaged_modules")
    level, bars = readers.level, datasets.is_progress_bar_enabled()
    readers.setLevel(logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        readers.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


_NULL_LINE = re.compile(rb"\n[ \t\r]*null[ \t\r]*(?:\n|$)")
_NULL_ELEMENT = re.compile(rb"null[ \t\r\n]*[,\]]")


def _may_hold_null_rows(path: Path) -> bool:
    """
    Whether a JSON file may hold a row that is `null` (a line, or an array element; a null inside a row may say yes
    too): pyarrow 26's JSON reader, which `datasets` uses, crashes the process on one that starts a block.
    """
    data = b"\n" + path.read_bytes().removeprefix(codecs.BOM_UTF8)
    return bool(_NULL_LINE.search(data) or (path.suffix.lower() == ".json" and _NULL_ELEMENT.search(data)))


_UNPARSED = (DatasetGenerationError, ValueError, FileNotFoundError)
"""What `datasets` raises on a file it cannot parse (or, for a hidden path, does not see)."""


def _read_with_datasets(path: Path, kind: str) -> datasets.Dataset:
    """
    A JSON or Parquet file read by `datasets`' packaged readers (`Dataset.from_json`: unlike `load_dataset("json")`,
    no Hub request). A JSON column of mixed types raises instead of being encoded as JSON strings. Nothing is cached:
    the table is built in a temporary cache folder and kept in memory, so a file rewritten within the same second is
    never answered from a stale cache.
    """
    with tempfile.TemporaryDirectory() as cache_dir, _datasets_quiet():
        if kind == "parquet":
            return datasets.Dataset.from_parquet(str(path), cache_dir=cache_dir, keep_in_memory=True)
        return datasets.Dataset.from_json(str(path), cache_dir=cache_dir, keep_in_memory=True, on_mixed_types=None)


def _dataset_rows(dataset: datasets.Dataset, columns: list[str] | None = None) -> Iterator[RawRow]:
    """The rows of a Dataset (only `columns`, when given), numbered from 1."""
    table = dataset if columns is None else dataset.select_columns(columns)
    return ((f"row {number}", record, None) for number, record in enumerate(table.to_list(), start=1))


def _validate(rows: Iterable[RawRow], options: dict[str, Any]) -> RowValidator:
    validator = RowValidator(**options)
    for where, record, problem in rows:
        validator.process(where, record, problem)
    return validator


def _checked_by_datasets(path: Path, kind: str, options: dict[str, Any]) -> RowValidator | None:
    """
    The rows of a JSON file read by `datasets` and checked; None when `datasets` cannot read the file or a row fails
    a check (the caller then reads the file line by line, so that every message names its line).
    """
    if _may_hold_null_rows(path):
        return None
    try:
        loaded = _read_with_datasets(path, kind)
    except _UNPARSED:
        return None
    read = [options["text_field"], *options["label_fields"]]
    if not all(name in loaded.column_names for name in read):
        return None
    columns = read + [name for name in ("id",) if name in loaded.column_names]
    validator = _validate(_dataset_rows(loaded, columns), options)
    return validator if validator.num_rows and not validator.num_problems else None


def _load_file(path: Path, options: dict[str, Any]) -> datasets.Dataset:
    """Read and validate a local file (see `load_hierarchical_dataset`)."""
    source = options["source"]
    kind = _file_kind(path, source)
    if kind == "parquet":
        try:
            loaded = _read_with_datasets(path, kind)
        except _UNPARSED as err:
            cause = err.__cause__ or err
            raise file_error(source, f"unreadable Parquet file ({cause})", "write it again as Parquet") from err
        return _validate(_dataset_rows(loaded), options).finish()
    if kind in ("json", "jsonl") and (validator := _checked_by_datasets(path, kind, options)) is not None:
        return validator.finish()
    rows = file_line_rows(path, source, kind)
    return _validate(rows, {**options, "labels_json_string": kind in ("csv", "tsv")}).finish()


def _load_named(name: str, config: str | None, split: str, options: dict[str, Any]) -> datasets.Dataset:
    """Load a data set by name with `datasets.load_dataset` and validate it (see `load_hierarchical_dataset`)."""
    source = options["source"]
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the Hub client raises many types (offline, not found, bad config or split)
        raise file_error(
            source,
            f"could not be loaded ({type(err).__name__}: {err})",
            "check the name, config and split and that the Hub is reachable (HF_HUB_OFFLINE unset), "
            "or download the data and pass path=",
        ) from err
    if not isinstance(loaded, datasets.Dataset):
        raise file_error(source, f"expected one split, got {type(loaded).__name__}", "pass split=")
    needed = [options["text_field"], *options["label_fields"]]
    missing = [column for column in needed if column not in loaded.column_names]
    if missing:
        raise file_error(
            source,
            f"no column {', '.join(map(repr, missing))} "
            f"(columns present: {', '.join(map(repr, loaded.column_names))})",
            "name the columns with text_field= / labels_field=",
        )
    keep = [column for column in loaded.column_names if column in needed or column == "id"]
    return _validate(_dataset_rows(loaded, keep), options).finish()


def _split_fields(labels_field: str) -> list[str]:
    fields = [name.strip() for name in labels_field.split(",")]
    if not all(fields):
        raise ValueError(f"labels_field must be a field name or comma-separated names, got {labels_field!r}")
    return fields


def load_hierarchical_dataset(
    path: str | Path | None = None,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    split: str = "train",
    text_field: str = "text",
    labels_field: str = "labels",
    num_levels: int | None = None,
    level_kinds: Sequence[str] | None = None,
    allow_partial_paths: bool = False,
) -> datasets.Dataset:
    """Load a hierarchical data set and validate every row; return columns ``text``, ``labels`` (+ ``id``).

    ``path`` is a local ``.jsonl``/``.ndjson``, ``.json`` (an array of objects, or JSON Lines), ``.csv``/``.tsv``
    (with a header) or ``.parquet`` file, chosen by extension. Otherwise ``dataset_name`` (with optional
    ``dataset_config`` and ``split``, used only then) goes to ``datasets.load_dataset``, which needs the Hub or
    a local dataset directory. ``labels_field`` names a field holding the label path as a list (in CSV/TSV, a
    JSON list such as ``["Science", "Physics"]``), or several comma-separated fields, one per level
    (``"l1,l2,l3"``). ``level_kinds`` gives each level's kind, ``"label"`` (default) or ``"text"``; text levels
    are kept unstripped. ``allow_partial_paths`` accepts label paths that stop before the deepest level (label
    levels only). Any other field (besides ``id``) is dropped.
    """
    kinds = check_level_args(num_levels, level_kinds)
    label_fields = _split_fields(labels_field)
    if (path is None) == (dataset_name is None):
        raise ValueError("pass exactly one of path= (a local file) and dataset_name= (a datasets name)")
    options = {
        "text_field": text_field,
        "label_fields": label_fields,
        "num_levels": num_levels,
        "level_kinds": kinds,
        "allow_partial_paths": allow_partial_paths,
    }
    if path is not None:
        return _load_file(Path(path), {"source": str(path), **options})
    assert dataset_name is not None
    details = ", ".join(
        part for part in (f"config {dataset_config!r}" if dataset_config else "", f"split {split!r}") if part
    )
    return _load_named(
        dataset_name, dataset_config, split, {"source": f"dataset {dataset_name!r} ({details})", **options}
    )


def sample_rows(dataset: datasets.Dataset, count: int | None, seed: int) -> datasets.Dataset:
    """
    At most `count` rows drawn at random (seeded), so that a subset of a file sorted by class still covers every
    class; the whole data set when `count` is None or not smaller.
    """
    if count is None or count >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(count)).flatten_indices()


def _label_paths(source: Any) -> Iterator[Sequence[str]]:
    """Label paths from a Dataset, a DatasetDict, or an iterable mixing those and label paths."""
    if isinstance(source, datasets.DatasetDict):
        for split in source.values():
            yield from split["labels"]
    elif isinstance(source, datasets.Dataset):
        yield from source["labels"]
    elif isinstance(source, str):
        raise TypeError(f"expected a Dataset or label paths (lists of strings), got the string {source!r}")
    else:
        for item in source:
            if isinstance(item, datasets.Dataset | datasets.DatasetDict):
                yield from _label_paths(item)
            elif isinstance(item, str) or not isinstance(item, Sequence):
                raise TypeError(f"expected a label path (a list of strings), got {short_repr(item)}")
            else:
                yield item


def collect_taxonomy(
    datasets_or_label_paths: datasets.Dataset | datasets.DatasetDict | Iterable[Any],
    level_kinds: Sequence[str] | None = None,
    allow_partial_paths: bool = False,
) -> list[list[str]]:
    """The sorted, de-duplicated label paths over the leading label levels: the taxonomy stored in a model config.

    Takes Datasets (their ``labels`` column), DatasetDicts, or label paths such as ``[["Science", "Physics"], ...]``.
    Paths are cut before the first ``"text"`` level of ``level_kinds`` (default: every level is a label) and their
    labels stripped. Raises :class:`HierarchicalDataError` on paths of different depths (with
    ``allow_partial_paths``, on paths longer than the depth: the longest path's, or ``level_kinds``') or on empty
    labels. A name repeated under two parents is two labels; a path shorter than the depth is a leaf there.
    """
    kinds = check_level_args(None, level_kinds)
    prefix = None if kinds is None else (kinds.index("text") if "text" in kinds else len(kinds))
    source = "taxonomy"
    paths: set[tuple[str, ...]] = set()
    problems: list[str] = []
    total = 0
    raws = [list(raw) for raw in _label_paths(datasets_or_label_paths)]
    depth = len(kinds) if kinds is not None else max(map(len, raws), default=0) if allow_partial_paths else None

    def report(what: str, fix: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_REPORTED_PROBLEMS:
            problems.append(problem_message(source, None, None, what, fix))

    for number, full in enumerate(raws, start=1):
        depth = len(full) if depth is None else depth
        if kinds is not None and not allow_partial_paths and len(full) not in (len(kinds), prefix):
            report(
                f"path {number} has {len(full)} levels, expected {len(kinds)} (or the {prefix} label levels): "
                f"{short_repr(full)}",
                "use one depth",
            )
            continue
        cut = full[:prefix] if prefix is not None and not allow_partial_paths else full
        if not cut and prefix == 0:
            continue
        if problem := taxonomy_path_problem(cut, prefix or depth, allow_partial_paths):
            report(f"path {number} {problem}: {short_repr(cut)}", "fill in every label, and use one depth")
            continue
        paths.add(tuple(label.strip() for label in cut))
    if total:
        raise HierarchicalDataError(source, problems, total)
    return [list(path) for path in sorted(paths)]
