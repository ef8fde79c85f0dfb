"""Load and validate hierarchical data sets, before any tokenisation.

A hierarchical example is a query ``text`` and a path of responses ``labels = [r_1, ..., r_D]``, coarsest first.
Each level has a kind: ``"label"`` (a class from a taxonomy, e.g. topic > subtopic) or ``"text"`` (free text,
e.g. the reply in strategy -> reply). Every loader here returns a :class:`datasets.Dataset` with exactly the
columns ``text`` (str), ``labels`` (list[str]) and, when the source has one, ``id`` (str).

Normalisation: label levels are stripped of surrounding whitespace (``" Science "`` and ``"Science"`` are one
class, as the published WOS preprocessing does); the query text and free-text levels are kept exactly as written.

Everything is validated before a data set is built. Problems raise :class:`HierarchicalDataError`, whose message
names the file, the 1-based line (or row), the field and the problem, and says how to fix it; problems of all rows
are collected (the first ten are shown, with a count of the rest) so a big file can be fixed in one pass.
Checked: a missing field, an unreadable JSON line, a label list of the wrong depth (the first row fixes it
unless ``num_levels`` or ``level_kinds`` is given), a non-string or empty label / text, a bad or duplicate ``id``,
an empty file, an unsupported extension, and taxonomy conflicts: a label at level d > 1 (with a label parent)
that appears under two different parents. Such a label would merge two classes in flattened per-label metrics
and make its parent ambiguous, so it is an error unless ``check_taxonomy=False``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

__all__ = [
    "LEVEL_KINDS",
    "HierarchicalDataError",
    "check_level_kinds",
    "collect_taxonomy",
    "load_dbpedia_csv",
    "load_hierarchical_dataset",
    "load_wos_data_txt",
    "sample_rows",
    "standard_wos_split",
]

LEVEL_KINDS = ("label", "text")
"""The kinds a level can have: a class from a taxonomy, or free text."""

MAX_REPORTED_PROBLEMS = 10
"""How many problems an error message lists in full (the rest are counted)."""

_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}

WOS_COLUMNS = ("Y1", "Y2", "Y", "Domain", "area", "keywords", "Abstract")
"""Header of the WOS-46985 ``Data.xlsx`` sheet and of its tab-separated export ``Data.txt`` (HDLTex)."""

# (where, record, problem): a parsed row, or a row that could not be parsed (record None, problem (field, what, fix)).
_Problem = tuple[str | None, str, str]
_RawRow = tuple[str, Any, _Problem | None]


class HierarchicalDataError(ValueError):
    """Invalid hierarchical data. ``problems`` holds the reported messages, ``num_problems`` counts all of them."""

    def __init__(self, source: str, problems: Sequence[str], num_problems: int | None = None) -> None:
        self.source = source
        self.problems = list(problems)
        self.num_problems = len(self.problems) if num_problems is None else num_problems
        super().__init__(_format_report(source, self.problems, self.num_problems))


def _format_report(source: str, problems: list[str], total: int) -> str:
    """One problem: its message. Several: a count, then one problem a line, then how many were not shown."""
    if total == 1 and len(problems) == 1:
        return problems[0]
    shown = f" (the first {len(problems)} shown)" if total > len(problems) else ""
    lines = [f"{source}: {total} problems found{shown}:"] + [f"  - {p}" for p in problems]
    if total > len(problems):
        lines.append(f"  ... and {total - len(problems)} more; fix these and load again to see the rest.")
    return "\n".join(lines)


def _message(source: str, where: str | None, field: str | None, what: str, fix: str) -> str:
    """``<file>, line 3, field 'labels' level 2: <problem>. Fix: <how>.``"""
    parts = [source] + ([where] if where else []) + ([f"field {field}"] if field else [])
    return f"{', '.join(parts)}: {what}. Fix: {fix}."


def _file_error(source: str, what: str, fix: str, where: str | None = None) -> HierarchicalDataError:
    return HierarchicalDataError(source, [_message(source, where, None, what, fix)])


def _type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(value: Any) -> str:
    """``null``, or a value's JSON type and (shortened) repr, for messages."""
    return "null" if value is None else f"{_type_name(value)} {_short(value)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_level_kinds(level_kinds: Sequence[str]) -> list[str]:
    """Validate `level_kinds`: a non-empty sequence (not a string) of `"label"` / `"text"`; returns it as a list."""
    if isinstance(level_kinds, str) or not isinstance(level_kinds, Sequence):
        raise ValueError(f"level_kinds must be a sequence such as ['label', 'text'], got {level_kinds!r}")
    kinds = list(level_kinds)
    if not kinds or any(kind not in LEVEL_KINDS for kind in kinds):
        raise ValueError(f"level_kinds must be a non-empty list of {LEVEL_KINDS}, got {kinds!r}")
    return kinds


def _check_level_args(num_levels: int | None, level_kinds: Sequence[str] | None) -> list[str] | None:
    """Validate the depth arguments (a usage error is a plain ValueError, not a data error)."""
    if num_levels is not None and (isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1):
        raise ValueError(f"num_levels must be a positive integer, got {num_levels!r}")
    if level_kinds is None:
        return None
    kinds = check_level_kinds(level_kinds)
    if num_levels is not None and num_levels != len(kinds):
        raise ValueError(f"num_levels={num_levels} disagrees with level_kinds={kinds!r} ({len(kinds)} levels)")
    return kinds


class _Validator:
    """Checks rows one by one, collects problems, and builds the Dataset when there are none."""

    def __init__(
        self,
        source: str,
        *,
        text_field: str,
        label_fields: list[str],
        labels_json_string: bool = False,
        num_levels: int | None = None,
        level_kinds: list[str] | None = None,
        check_taxonomy: bool = True,
    ) -> None:
        self.source = source
        self.text_field = text_field
        self.label_fields = label_fields
        self.multi_field = len(label_fields) > 1
        self.labels_json_string = labels_json_string
        self.check_taxonomy = check_taxonomy
        self.kinds = level_kinds
        self.depth: int | None = None
        self.depth_origin = ""
        if level_kinds is not None:
            self.depth, self.depth_origin = len(level_kinds), f"level_kinds={level_kinds!r}"
        elif num_levels is not None:
            self.depth, self.depth_origin = num_levels, f"num_levels={num_levels}"
        if self.multi_field:
            if self.depth is not None and self.depth != len(label_fields):
                raise ValueError(
                    f"{self.depth_origin} disagrees with the {len(label_fields)} label fields {label_fields}"
                )
            self.depth, self.depth_origin = len(label_fields), f"one field per level: {', '.join(label_fields)}"
        if self.depth is not None and self.kinds is None:
            self.kinds = ["label"] * self.depth
        self.problems: list[str] = []
        self.num_problems = 0
        self.num_rows = 0
        self.ids: list[str | None] = []
        self.texts: list[str] = []
        self.labels: list[list[str]] = []
        self.id_where: dict[str, str] = {}
        self.rows_without_id: list[tuple[str, list[str]]] = []
        self.parent_of: dict[tuple[int, str], tuple[str, str]] = {}
        self.reported_conflicts: set[tuple[int, str, str]] = set()

    # -- problems ---------------------------------------------------------------------------------------------
    def add(self, where: str | None, field: str | None, what: str, fix: str) -> None:
        self.num_problems += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(_message(self.source, where, field, what, fix))

    def _level_field(self, level: int) -> str:
        if self.multi_field:
            return f"{self.label_fields[level - 1]!r} (level {level})"
        return f"{self.label_fields[0]!r} level {level}"

    # -- rows -------------------------------------------------------------------------------------------------
    def process(self, where: str, record: Any, parse_problem: _Problem | None = None) -> None:
        """Check one row; keep it when it has no problem."""
        self.num_rows += 1
        if parse_problem is not None:
            self.add(where, *parse_problem)
            return
        if not isinstance(record, dict):
            self.add(
                where,
                None,
                f"expected an object with fields {self.text_field!r} and {self.label_fields[0]!r}, "
                f"got a {_type_name(record)}",
                'write one object per row, e.g. {"text": "...", "labels": ["Science", "Physics"]}',
            )
            return
        before = self.num_problems
        text = self._check_text(where, record)
        labels = self._check_labels(where, record)
        row_id = self._check_id(where, record)
        if self.num_problems != before or text is None or labels is None:
            return
        if row_id is None:
            self.rows_without_id.append((where, sorted(record)))
        self.ids.append(row_id)
        self.texts.append(text)
        self.labels.append(labels)
        if self.check_taxonomy:
            self._check_parents(where, labels)

    def _missing(self, where: str, record: dict[str, Any], names: list[str], option: str) -> None:
        present = ", ".join(repr(k) for k in record) or "none"
        quoted = ", ".join(repr(n) for n in names)
        self.add(
            where,
            quoted,
            f"missing field{'s' if len(names) > 1 else ''} (fields present: {present})",
            f"add the field to every row, or name the field that holds it with {option}=",
        )

    def _check_text(self, where: str, record: dict[str, Any]) -> str | None:
        field = self.text_field
        if field not in record:
            self._missing(where, record, [field], "text_field")
            return None
        value = record[field]
        if not isinstance(value, str):
            self.add(
                where,
                repr(field),
                f"text must be a string, got {_describe(value)}",
                "write the text as a string" if value is not None else "fill in the text, or drop the row",
            )
            return None
        if not value.strip():
            self.add(where, repr(field), "empty text", "fill in the text, or drop the row")
            return None
        return value

    def _raw_levels(self, where: str, record: dict[str, Any]) -> list[Any] | None:
        """The label path as given: one list field, a JSON-list string (CSV), or one field per level."""
        if self.multi_field:
            missing = [f for f in self.label_fields if f not in record]
            if missing:
                self._missing(where, record, missing, "labels_field")
                return None
            return [record[f] for f in self.label_fields]
        field = self.label_fields[0]
        if field not in record:
            self._missing(where, record, [field], "labels_field")
            return None
        value = record[field]
        example = '["Science", "Physics"]'
        if self.labels_json_string and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                self.add(
                    where,
                    repr(field),
                    f"not a JSON list ({err.msg}): {_short(value)}",
                    f"write the path as a JSON list such as {example}, or use one column per level "
                    "with labels_field='l1,l2,l3'",
                )
                return None
        if isinstance(value, str):
            self.add(
                where,
                repr(field),
                f"must be a list with one entry per level, got the string {_short(value)}",
                f"write the path as a list such as {example}",
            )
            return None
        if not isinstance(value, list | tuple):
            self.add(
                where,
                repr(field),
                f"must be a list with one entry per level, got {_describe(value)}",
                f"write the path as a list such as {example}",
            )
            return None
        return list(value)

    def _check_labels(self, where: str, record: dict[str, Any]) -> list[str] | None:
        levels = self._raw_levels(where, record)
        if levels is None:
            return None
        field = repr(self.label_fields[0])
        if self.depth is None:
            if not levels:
                self.add(where, field, "empty label list", "give the full path from the top level down")
                return None
            self.depth, self.depth_origin = len(levels), f"as on {where}"
            self.kinds = ["label"] * self.depth
        if len(levels) != self.depth:
            fixed_by_row = self.depth_origin.startswith("as on")
            self.add(
                where,
                field,
                f"expected {self.depth} levels ({self.depth_origin}), got {len(levels)}: {_short(levels)}",
                "give every row the full path from the top level down"
                + (", or pass num_levels= if that first row is the odd one" if fixed_by_row else ""),
            )
            return None
        assert self.kinds is not None
        out: list[str] = []
        for level, (value, kind) in enumerate(zip(levels, self.kinds, strict=True), start=1):
            if not isinstance(value, str):
                if value is None:
                    fix = f"fill in the missing {kind}, or drop the row"
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    fix = 'write it as a string (e.g. "3"), or map class ids to their names first'
                else:
                    fix = f"write the {kind} as a string"
                self.add(
                    where,
                    self._level_field(level),
                    f"{kind} must be a string, got {_describe(value)}",
                    fix,
                )
                continue
            if kind == "label":
                value = value.strip()
                if not value:
                    self.add(where, self._level_field(level), "empty label", "fill in the label, or drop the row")
                    continue
            elif not value.strip():
                self.add(
                    where,
                    self._level_field(level),
                    "empty text at a free-text level",
                    "fill in the response, or drop the row",
                )
                continue
            out.append(value)
        return out if len(out) == len(levels) else None

    def _check_id(self, where: str, record: dict[str, Any]) -> str | None:
        if "id" not in record:
            return None
        value = record["id"]
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.add(where, "'id'", f"must be a string or an integer, got {_type_name(value)}", "write ids as strings")
            return None
        row_id = str(value)
        first = self.id_where.get(row_id)
        if first is not None:
            self.add(where, "'id'", f"duplicate id {row_id!r} (also on {first})", "give every row a unique id")
            return None
        self.id_where[row_id] = where
        return row_id

    def _check_parents(self, where: str, labels: list[str]) -> None:
        assert self.kinds is not None
        for index in range(1, len(labels)):
            if self.kinds[index - 1] != "label" or self.kinds[index] != "label":
                continue
            label, parent = labels[index], labels[index - 1]
            first = self.parent_of.setdefault((index, label), (parent, where))
            if first[0] == parent or (index, label, parent) in self.reported_conflicts:
                continue
            self.reported_conflicts.add((index, label, parent))
            self.add(
                where,
                self._level_field(index + 1),
                f"taxonomy conflict: label {label!r} appears under two parents: {first[0]!r} ({first[1]}) "
                f"and {parent!r} ({where})",
                "a label must have one parent: correct the wrong parent, or rename one of the two "
                f"(e.g. {parent + ' / ' + label!r}); if level {index + 1} is free text, say so with level_kinds "
                "(e.g. ['label', 'text']); pass check_taxonomy=False if two classes sharing a name is intended",
            )

    # -- result -----------------------------------------------------------------------------------------------
    def finish(self) -> datasets.Dataset:
        """Raise on any problem; else build the Dataset (``id`` only when rows carry one)."""
        has_ids = bool(self.id_where)
        if has_ids:
            for where, present in self.rows_without_id:
                self.add(
                    where,
                    "'id'",
                    f"missing field (other rows have an id; fields present: {', '.join(map(repr, present))})",
                    "give every row an id, or none",
                )
        if self.num_problems:
            raise HierarchicalDataError(self.source, self.problems, self.num_problems)
        if self.num_rows == 0:
            raise _file_error(self.source, "the file is empty (no rows)", "point to the file that holds the data")
        columns: dict[str, list[Any]] = {}
        features: dict[str, Any] = {}
        if has_ids:
            columns["id"], features["id"] = self.ids, datasets.Value("string")
        columns["text"], features["text"] = self.texts, datasets.Value("string")
        columns["labels"], features["labels"] = self.labels, datasets.List(datasets.Value("string"))
        return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# -- readers --------------------------------------------------------------------------------------------------
def _read_text(path: Path, source: str, encoding: str = "utf-8") -> str:
    """The file's text (a UTF-8 byte-order mark is dropped); a decoding error names its line."""
    data = path.read_bytes()
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise _file_error(
            source,
            f"not valid {encoding} text ({err.reason} at byte {err.start})",
            f"save the file as {encoding}",
            where=f"line {line}",
        ) from err


def _json_lines(text: str) -> Iterator[_RawRow]:
    """One JSON value a line; blank lines are skipped but counted (splits on newline only, not U+2028)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problem = (
                None,
                f"not valid JSON ({err.msg}, column {err.colno})",
                "write one complete JSON object per line (no line breaks inside an object, double quotes only)",
            )
            yield f"line {number}", None, problem
            continue
        yield f"line {number}", record, None


def _json_array(text: str) -> Iterator[_RawRow]:
    """The elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    size = len(text)

    def skip(index: int) -> int:
        while index < size and text[index] in " \t\r\n":
            index += 1
        return index

    index = skip(skip(0) + 1)  # past "["
    line, counted = 1, 0
    if index < size and text[index] == "]":
        index = size
    while index < size:
        line += text.count("\n", counted, index)
        counted = index
        try:
            record, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as err:
            yield f"line {err.lineno}", None, (None, f"not valid JSON ({err.msg}, column {err.colno})", _JSON_FIX)
            return
        yield f"line {line}", record, None
        index = skip(end)
        if index < size and text[index] == ",":
            index = skip(index + 1)
        elif index < size and text[index] == "]":
            if skip(index + 1) != size:
                after = text.count("\n", 0, index) + 1
                yield f"line {after}", None, (None, "unexpected content after the closing ']'", _JSON_FIX)
            return
        else:
            after = text.count("\n", 0, index) + 1
            yield f"line {after}", None, (None, "expected ',' or ']' after an array element", _JSON_FIX)
            return


_JSON_FIX = "make the file one JSON array of objects, or JSON Lines (one object per line)"


def _csv_rows(text: str, source: str, delimiter: str) -> tuple[list[str], Iterator[_RawRow]]:
    """The header and the rows of a CSV/TSV text, each row with the line it starts on (header = line 1)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    old_limit = csv.field_size_limit(2**31 - 1)
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as err:
        raise _file_error(source, f"unreadable header ({err})", "fix the quoting of the header", "line 1") from err
    finally:
        csv.field_size_limit(old_limit)
    if not header:
        raise _file_error(
            source, "the file is empty (no header row)", "start the file with a header such as text,labels"
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise _file_error(source, f"duplicate column names {duplicates}", "give every column its own name", "line 1")

    def rows() -> Iterator[_RawRow]:
        old = csv.field_size_limit(2**31 - 1)
        try:
            end = reader.line_num
            while True:
                start = end + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    yield f"line {start}", None, (None, f"unreadable row ({err})", "fix the quoting of this row")
                    return
                end = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    problem = (
                        None,
                        f"has {len(row)} fields but the header has {len(header)} ({', '.join(header)})",
                        "quote fields that contain the delimiter, and give every row one value per column",
                    )
                    yield f"line {start}", None, problem
                    continue
                yield f"line {start}", dict(zip(header, row, strict=True)), None
        finally:
            csv.field_size_limit(old)

    return header, rows()


def _file_rows(path: Path, source: str) -> tuple[Iterator[_RawRow], bool]:
    """Rows of a local file chosen by extension; also whether labels may be a JSON-list string (CSV/TSV)."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise _file_error(
            source,
            f"unsupported file extension {path.suffix or '(none)'!r}",
            f"use one of {', '.join(sorted(_FORMATS))} (the format is chosen by extension)",
        )
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise _file_error(source, f"unreadable Parquet file ({err})", "write it again as Parquet") from err
        return ((f"row {number}", record, None) for number, record in enumerate(records, start=1)), False
    text = _read_text(path, source)
    if not text.strip():
        raise _file_error(source, "the file is empty", "point to the file that holds the data")
    if kind in ("csv", "tsv"):
        _, rows = _csv_rows(text, source, "," if kind == "csv" else "\t")
        return rows, True
    if kind == "json" and text.lstrip().startswith("["):
        return _json_array(text), False
    return _json_lines(text), False  # .jsonl, and .json files written as JSON Lines (Dataset.to_json does that)


def _hub_rows(dataset: datasets.Dataset, source: str, needed: list[str]) -> Iterator[_RawRow]:
    """Rows of a loaded Dataset, restricted to the fields the loader reads."""
    missing = [name for name in needed if name not in dataset.column_names]
    if missing:
        raise _file_error(
            source,
            f"no column {', '.join(map(repr, missing))} "
            f"(columns present: {', '.join(map(repr, dataset.column_names))})",
            "name the columns with text_field= / labels_field=",
        )
    keep = [name for name in dataset.column_names if name in needed or name == "id"]
    for number, record in enumerate(dataset.select_columns(keep), start=1):
        yield f"row {number}", record, None


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
    check_taxonomy: bool = True,
) -> datasets.Dataset:
    """Load a hierarchical data set and validate every row; return columns ``text``, ``labels`` (+ ``id``).

    ``path`` is a local ``.jsonl``/``.ndjson``, ``.json`` (an array of objects, or JSON Lines), ``.csv``/``.tsv``
    (with a header) or ``.parquet`` file, chosen by extension. Otherwise ``dataset_name`` (with optional
    ``dataset_config`` and ``split``, used only then) goes to ``datasets.load_dataset``, which needs the Hub or
    a local dataset directory. ``labels_field`` names a field holding the label path as a list (in CSV/TSV, a
    JSON list such as ``["Science", "Physics"]``), or several comma-separated fields, one per level
    (``"l1,l2,l3"``). ``level_kinds`` gives each level's kind, ``"label"`` (default) or ``"text"``; text levels
    are exempt from the taxonomy check and kept unstripped. Any other field (besides ``id``) is dropped.
    """
    kinds = _check_level_args(num_levels, level_kinds)
    label_fields = _split_fields(labels_field)
    if (path is None) == (dataset_name is None):
        raise ValueError("pass exactly one of path= (a local file) and dataset_name= (a datasets name)")
    if path is not None:
        file_path = Path(path)
        source = str(path)
        rows, json_strings = _file_rows(file_path, source)
    else:
        assert dataset_name is not None
        details = ", ".join(
            part for part in (f"config {dataset_config!r}" if dataset_config else "", f"split {split!r}") if part
        )
        source = f"dataset {dataset_name!r} ({details})"
        try:
            loaded = datasets.load_dataset(dataset_name, dataset_config, split=split)
        except Exception as err:  # the Hub client raises many types (offline, not found, bad config or split)
            raise _file_error(
                source,
                f"could not be loaded ({type(err).__name__}: {err})",
                "check the name, config and split and that the Hub is reachable (HF_HUB_OFFLINE unset), "
                "or download the data and pass path=",
            ) from err
        if not isinstance(loaded, datasets.Dataset):
            raise _file_error(source, f"expected one split, got {type(loaded).__name__}", "pass split=")
        rows, json_strings = _hub_rows(loaded, source, [text_field, *label_fields]), False
    validator = _Validator(
        source,
        text_field=text_field,
        label_fields=label_fields,
        labels_json_string=json_strings,
        num_levels=num_levels,
        level_kinds=kinds,
        check_taxonomy=check_taxonomy,
    )
    for where, record, problem in rows:
        validator.process(where, record, problem)
    return validator.finish()


# -- taxonomy -------------------------------------------------------------------------------------------------
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
                raise TypeError(f"expected a label path (a list of strings), got {_short(item)}")
            else:
                yield item


def collect_taxonomy(
    datasets_or_label_paths: datasets.Dataset | datasets.DatasetDict | Iterable[Any],
    level_kinds: Sequence[str] | None = None,
) -> list[list[str]]:
    """The sorted, de-duplicated label paths over the leading label levels: the taxonomy stored in a model config.

    Takes Datasets (their ``labels`` column), DatasetDicts, or label paths such as ``[["Science", "Physics"], ...]``.
    Paths are cut before the first ``"text"`` level of ``level_kinds`` (default: every level is a label) and their
    labels stripped. Raises :class:`HierarchicalDataError` on paths of different depths, empty labels, or a label
    under two parents across all the inputs (splits can each be valid yet conflict together).
    """
    kinds = _check_level_args(None, level_kinds)
    prefix = None if kinds is None else (kinds.index("text") if "text" in kinds else len(kinds))
    source = "taxonomy"
    paths: set[tuple[str, ...]] = set()
    problems: list[str] = []
    total = 0
    depth: int | None = None
    parent_of: dict[tuple[int, str], str] = {}

    def report(what: str, fix: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_REPORTED_PROBLEMS:
            problems.append(_message(source, None, None, what, fix))

    for number, raw in enumerate(_label_paths(datasets_or_label_paths), start=1):
        full = list(raw)
        if depth is None:
            depth = len(full)
        if (kinds is not None and len(full) not in (len(kinds), prefix)) or (kinds is None and len(full) != depth):
            expected = f"{len(kinds)} (or the {prefix} label levels)" if kinds is not None else depth
            report(f"path {number} has {len(full)} levels, expected {expected}: {_short(full)}", "use one depth")
            continue
        cut = full[:prefix] if prefix is not None else full
        if not cut:
            continue
        if not all(isinstance(label, str) and label.strip() for label in cut):
            report(f"path {number} has an empty or non-string label: {_short(cut)}", "fill in every label")
            continue
        path = tuple(label.strip() for label in cut)
        if path in paths:
            continue
        for index in range(1, len(path)):
            first = parent_of.setdefault((index, path[index]), path[index - 1])
            if first != path[index - 1]:
                report(
                    f"label {path[index]!r} at level {index + 1} appears under two parents: {first!r} and "
                    f"{path[index - 1]!r}",
                    "correct the wrong parent, or rename one of the two",
                )
        paths.add(path)
    if total:
        raise HierarchicalDataError(source, problems, total)
    return [list(path) for path in sorted(paths)]


# -- published formats ----------------------------------------------------------------------------------------
def standard_wos_split(num_rows: int) -> tuple[list[int], list[int], list[int]]:
    """Row indices of the standard WOS-46985 train / validation / test split (HGCLR, HPT): 30,070 / 7,518 / 9,397.

    A ``numpy.random.seed(7)`` shuffle of the row indices, then ``train_test_split(test_size=0.2,
    random_state=0)`` twice (train+validation vs test, then train vs validation). A private ``RandomState(7)``
    draws the same permutation without touching numpy's global random state.
    """
    from sklearn.model_selection import train_test_split

    if num_rows < 3:
        raise ValueError(f"the WOS split needs at least 3 rows, got {num_rows}")
    order = list(range(num_rows))
    np.random.RandomState(7).shuffle(order)
    permuted = np.array(order)
    train_val, test = train_test_split(permuted, test_size=0.2, random_state=0)
    train, val = train_test_split(train_val, test_size=0.2, random_state=0)
    return train.tolist(), val.tolist(), test.tolist()


def _wos_records(path: Path, source: str, encoding: str) -> list[_RawRow]:
    """Rows of ``Data.txt`` (tab-separated, header line 1) or ``Data.xlsx`` as dicts keyed by WOS_COLUMNS."""
    fix_header = f"the first line must be the header {' '.join(WOS_COLUMNS)} (tab-separated)"
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            import pandas as pd

            frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        except ImportError as err:
            raise _file_error(
                source, f"reading Excel needs openpyxl ({err})", "export the sheet as tab-separated Data.txt"
            ) from err
        header = [str(name).strip() for name in frame.columns]
        if [h.lower() for h in header] != [c.lower() for c in WOS_COLUMNS]:
            raise _file_error(source, f"unexpected columns {header}", fix_header, "sheet row 1")
        return [
            (f"sheet row {number}", dict(zip(WOS_COLUMNS, values, strict=True)), None)
            for number, values in enumerate(frame.itertuples(index=False, name=None), start=2)
        ]
    text = _read_text(path, source, encoding)
    lines = text.replace("\r\n", "\n").split("\n")
    header = [name.strip() for name in lines[0].split("\t")]
    if not text.strip():
        raise _file_error(source, "the file is empty", "point to WOS Data.txt")
    if [h.lower() for h in header] != [c.lower() for c in WOS_COLUMNS]:
        raise _file_error(source, f"unexpected header {header}", fix_header, "line 1")
    rows: list[_RawRow] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(WOS_COLUMNS):
            what = f"expected 7 tab-separated fields ({', '.join(WOS_COLUMNS)}), got {len(fields)}"
            rows.append((f"line {number}", None, (None, what, "remove tabs inside the abstract or keywords")))
            continue
        rows.append((f"line {number}", dict(zip(WOS_COLUMNS, fields, strict=True)), None))
    return rows


def _canonical_wos_areas(rows: list[_RawRow]) -> tuple[dict[tuple[int, int], str], list[_RawRow]]:
    """The most frequent area name of each (Y1, Y2) code; rows whose codes are not integers become problems.

    WOS-46985 spells a few of its 134 areas in several ways under one code (e.g. Medical 7 is both 'Atrial
    Fibrillation' and 'Depression', which is also a Psychology area). HGCLR / HPT map every name of a code to
    its most frequent one, which gives the 134 areas used by published results; on the full file this does the same.
    """
    counts: dict[tuple[int, int], dict[str, int]] = {}
    checked: list[_RawRow] = []
    for where, record, problem in rows:
        if record is not None:
            try:
                code = (int(str(record["Y1"]).strip()), int(str(record["Y2"]).strip()))
            except ValueError:
                problem = (
                    "'Y1' / 'Y2'",
                    f"area codes must be integers, got {_short(record['Y1'])} / {_short(record['Y2'])}",
                    "restore the Y1 and Y2 columns, or pass normalize_areas=False",
                )
                checked.append((where, None, problem))
                continue
            record["_code"] = code
            area = str(record["area"]).strip()
            names = counts.setdefault(code, {})
            names[area] = names.get(area, 0) + 1
        checked.append((where, record, problem))
    canonical = {code: max(names, key=lambda name: names[name]) for code, names in counts.items()}
    return canonical, checked


def load_wos_data_txt(
    path: str | Path,
    *,
    include_keywords: bool = False,
    normalize_areas: bool = True,
    check_taxonomy: bool = True,
    encoding: str = "utf-8",
) -> datasets.DatasetDict:
    """Load Web of Science WOS-46985 (HDLTex ``Data.txt``, or ``Data.xlsx`` with openpyxl) with the standard split.

    Returns ``train`` / ``validation`` / ``test`` (30,070 / 7,518 / 9,397 on the full file; see
    :func:`standard_wos_split`) with ``id`` = ``wos-<0-based data row>``, ``text`` = the abstract as written and
    ``labels`` = ``[Domain, area]`` stripped. ``normalize_areas`` maps each (Y1, Y2) code to one area name as
    HGCLR / HPT do (134 areas). ``include_keywords`` appends ``"\\nKeywords: ..."`` to the text: off by default,
    because the BERT baselines read the abstract only; the HdLM authors' prompts include the keywords, so their
    numbers are not comparable with those.
    """
    file_path = Path(path)
    source = str(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    rows = _wos_records(file_path, source, encoding)
    if normalize_areas:
        canonical, rows = _canonical_wos_areas(rows)
        for _, record, _ in rows:
            if record is not None:
                record["area"] = canonical[record.pop("_code")]
    validator = _Validator(
        source, text_field="Abstract", label_fields=["Domain", "area"], check_taxonomy=check_taxonomy
    )
    for number, (where, record, problem) in enumerate(rows):
        if record is not None:
            record = {"id": f"wos-{number}", "Abstract": record["Abstract"], "Domain": record["Domain"],
                      "area": record["area"], "keywords": record["keywords"]}  # fmt: skip
        validator.process(where, record, problem)
    dataset = validator.finish()
    if include_keywords:
        keywords = [str(record["keywords"]).strip() for _, record, _ in rows]
        texts = [f"{text}\nKeywords: {words}" if words else text for text, words in zip(dataset["text"], keywords)]
        dataset = dataset.remove_columns("text").add_column("text", texts).select_columns(["id", "text", "labels"])
    train, val, test = standard_wos_split(len(dataset))
    return datasets.DatasetDict(
        {"train": dataset.select(train), "validation": dataset.select(val), "test": dataset.select(test)}
    )


def load_dbpedia_csv(path: str | Path, *, id_prefix: str | None = None) -> datasets.Dataset:
    """Load a file of the Kaggle "DBpedia Classes" set (``DBPEDIA_train.csv`` etc., header ``text,l1,l2,l3``).

    Three label levels from the columns ``l1``, ``l2``, ``l3``, validated like any other file. Rows get the id
    ``<id_prefix>-<0-based row>`` (default prefix: the file name without extension) unless the file has ids.
    """
    dataset = load_hierarchical_dataset(path, labels_field="l1,l2,l3", num_levels=3)
    if "id" in dataset.column_names:
        return dataset
    prefix = Path(path).stem if id_prefix is None else id_prefix
    dataset = dataset.add_column("id", [f"{prefix}-{number}" for number in range(len(dataset))])
    return dataset.select_columns(["id", "text", "labels"])
