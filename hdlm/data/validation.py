"""Checking hierarchical rows one by one, and the errors that name the file, the line, the field and the fix.

A row is a query ``text`` and a path of responses ``labels = [r_1, ..., r_D]``, coarsest first. Label levels are
stripped of surrounding whitespace; the query text and free-text levels are kept exactly as written. Problems of all
rows are collected (the first ten are shown, with a count of the rest) so a big file can be fixed in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import datasets

from configuration_hdlm import LEVEL_KINDS, default_level_kinds

MAX_REPORTED_PROBLEMS = 10
"""How many problems an error message lists in full (the rest are counted)."""

# (where, record, problem): a parsed row, or a row that could not be parsed (record None, problem (field, what, fix)).
Problem = tuple[str | None, str, str]
RawRow = tuple[str, Any, Problem | None]


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


def problem_message(source: str, where: str | None, field: str | None, what: str, fix: str) -> str:
    """``<file>, line 3, field 'labels' level 2: <problem>. Fix: <how>.``"""
    parts = [source] + ([where] if where else []) + ([f"field {field}"] if field else [])
    return f"{', '.join(parts)}: {what}. Fix: {fix}."


def file_error(source: str, what: str, fix: str, where: str | None = None) -> HierarchicalDataError:
    return HierarchicalDataError(source, [problem_message(source, where, None, what, fix)])


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
    return "null" if value is None else f"{_type_name(value)} {short_repr(value)}"


def short_repr(value: Any, limit: int = 60) -> str:
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


def check_level_args(num_levels: int | None, level_kinds: Sequence[str] | None) -> list[str] | None:
    """Validate the depth arguments (a usage error is a plain ValueError, not a data error)."""
    if num_levels is not None and (isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1):
        raise ValueError(f"num_levels must be a positive integer, got {num_levels!r}")
    if level_kinds is None:
        return None
    kinds = check_level_kinds(level_kinds)
    if num_levels is not None and num_levels != len(kinds):
        raise ValueError(f"num_levels={num_levels} disagrees with level_kinds={kinds!r} ({len(kinds)} levels)")
    return kinds


class RowValidator:
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
        allow_partial_paths: bool = False,
    ) -> None:
        self.source = source
        self.text_field = text_field
        self.label_fields = label_fields
        self.multi_field = len(label_fields) > 1
        self.labels_json_string = labels_json_string
        if allow_partial_paths and level_kinds is not None and "text" in level_kinds:
            raise ValueError(
                f"allow_partial_paths needs label levels only, got level_kinds={level_kinds!r}: a path that stops "
                "early ends the whole answer"
            )
        self.allow_partial_paths = allow_partial_paths
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
            self.kinds = default_level_kinds(self.depth)
        self.problems: list[str] = []
        self.num_problems = 0
        self.num_rows = 0
        self.ids: list[str | None] = []
        self.texts: list[str] = []
        self.labels: list[list[str]] = []
        self.id_where: dict[str, str] = {}
        self.rows_without_id: list[tuple[str, list[str]]] = []

    # -- problems ---------------------------------------------------------------------------------------------
    def add(self, where: str | None, field: str | None, what: str, fix: str) -> None:
        self.num_problems += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem_message(self.source, where, field, what, fix))

    def _level_field(self, level: int) -> str:
        if self.multi_field:
            return f"{self.label_fields[level - 1]!r} (level {level})"
        return f"{self.label_fields[0]!r} level {level}"

    # -- rows -------------------------------------------------------------------------------------------------
    def process(self, where: str, record: Any, parse_problem: Problem | None = None) -> None:
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
                    f"not a JSON list ({err.msg}): {short_repr(value)}",
                    f"write the path as a JSON list such as {example}, or use one column per level "
                    "with labels_field='l1,l2,l3'",
                )
                return None
        if isinstance(value, str):
            self.add(
                where,
                repr(field),
                f"must be a list with one entry per level, got the string {short_repr(value)}",
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
        if not levels:
            self.add(where, field, "empty label list", "give the full path from the top level down")
            return None
        if self.allow_partial_paths:  # a path of 1 to `depth` labels; the longest row fixes the depth if none is given
            if self.depth is not None and len(levels) > self.depth:
                self.add(
                    where,
                    field,
                    f"expected at most {self.depth} levels ({self.depth_origin}), got {len(levels)}: "
                    f"{short_repr(levels)}",
                    "give the path from the top level down, at most one label per level",
                )
                return None
            kinds = default_level_kinds(len(levels))
        else:
            if self.depth is None:
                self.depth, self.depth_origin = len(levels), f"as on {where}"
                self.kinds = default_level_kinds(self.depth)
            if len(levels) != self.depth:
                fixed_by_row = self.depth_origin.startswith("as on")
                self.add(
                    where,
                    field,
                    f"expected {self.depth} levels ({self.depth_origin}), got {len(levels)}: {short_repr(levels)}",
                    "give every row the full path from the top level down"
                    + (", or pass num_levels= if that first row is the odd one" if fixed_by_row else "")
                    + (", or allow_partial_paths=True if paths may stop early" if len(levels) < self.depth else ""),
                )
                return None
            kinds = self.kinds
        return self._checked_levels(where, levels, kinds)

    def _checked_levels(self, where: str, levels: list[Any], kinds: list[str]) -> list[str] | None:
        """The labels and texts of one row, stripped and checked level by level; None if one is bad."""
        out: list[str] = []
        for level, (value, kind) in enumerate(zip(levels, kinds, strict=True), start=1):
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
            raise file_error(self.source, "the file is empty (no rows)", "point to the file that holds the data")
        columns: dict[str, list[Any]] = {}
        features: dict[str, Any] = {}
        if has_ids:
            columns["id"], features["id"] = self.ids, datasets.Value("string")
        columns["text"], features["text"] = self.texts, datasets.Value("string")
        columns["labels"], features["labels"] = self.labels, datasets.List(datasets.Value("string"))
        return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
