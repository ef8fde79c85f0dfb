"""Reading the texts (and ids) of unlabeled rows from JSONL / JSON / CSV / TSV / Parquet, every problem named by its
file, line (or row) and field."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.line_readers import file_line_rows
from ..data.loading import _file_kind, _read_with_datasets
from ..data.validation import MAX_REPORTED_PROBLEMS, HierarchicalDataError, RawRow, file_error, problem_message

__all__ = ["read_texts"]


def _raw_rows(path: Path, source: str) -> Iterable[RawRow]:
    kind = _file_kind(path, source)
    if kind != "parquet":
        return file_line_rows(path, source, kind)
    try:
        table = _read_with_datasets(path, kind)
    except (ValueError, FileNotFoundError) as err:
        raise file_error(source, f"unreadable Parquet file ({err.__cause__ or err})", "write it again") from err
    return ((f"row {number}", record, None) for number, record in enumerate(table.to_list(), start=1))


def read_texts(path: str | Path, text_field: str = "text", id_field: str = "id") -> tuple[list[str], list[str | int]]:
    """
    The texts of a file's rows and their ids, in file order: the `id_field` of every row where the file has one (a
    string or an integer), else the 0-based row index. Other fields (labels, ...) are ignored. A row without a
    non-empty string text, an unreadable line, or ids on some rows only raise `HierarchicalDataError` naming them.
    """
    source = str(path)
    texts: list[str] = []
    ids: list[str | int | None] = []
    problems: list[str] = []
    total = 0

    def report(where: str, field: str | None, what: str, fix: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_REPORTED_PROBLEMS:
            problems.append(problem_message(source, where, field, what, fix))

    first_with_id = first_without_id = None
    for where, record, problem in _raw_rows(Path(path), source):
        if problem is not None:
            report(where, problem[0], problem[1], problem[2])
            continue
        if not isinstance(record, dict):
            report(where, None, f"expected an object, got {type(record).__name__}", f"give every row a {text_field!r}")
            continue
        text = record.get(text_field)
        if not isinstance(text, str) or not text.strip():
            what = "is missing" if text_field not in record else f"must be a non-empty string, got {text!r}"[:200]
            report(where, repr(text_field), what, "give every row its text, or name the text field with --text_field")
            continue
        identifier = record.get(id_field)
        if identifier is None:
            first_without_id = first_without_id or where
        elif isinstance(identifier, bool) or not isinstance(identifier, str | int):
            report(where, repr(id_field), f"must be a string or an integer, got {identifier!r}"[:200], "fix the id")
            continue
        else:
            first_with_id = first_with_id or where
        texts.append(text)
        ids.append(identifier)
    if not total and not texts:
        raise file_error(source, "the file holds no rows", "point to the file that holds the texts")
    if first_with_id and first_without_id:
        report(
            first_without_id,
            repr(id_field),
            f"is missing, though {first_with_id} has one",
            "give every row an id, or none (rows are then numbered from 0)",
        )
    if total:
        raise HierarchicalDataError(source, problems, total)
    if first_without_id:
        return texts, list(range(len(texts)))
    if len({type(identifier) for identifier in ids}) > 1:  # one column type in Parquet
        return texts, [str(identifier) for identifier in ids]
    return texts, ids
