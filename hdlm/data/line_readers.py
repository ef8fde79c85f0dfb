"""Reading the rows of a file together with the line each starts on, for line-numbered error messages."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from .validation import RawRow, file_error


def read_text(path: Path, source: str, encoding: str = "utf-8") -> str:
    """The file's text (a UTF-8 byte-order mark is dropped); a decoding error names its line."""
    data = path.read_bytes()
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise file_error(
            source,
            f"not valid {encoding} text ({err.reason} at byte {err.start})",
            f"save the file as {encoding}",
            where=f"line {line}",
        ) from err


def json_lines_rows(text: str) -> Iterator[RawRow]:
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


def json_array_rows(text: str) -> Iterator[RawRow]:
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
            yield f"line {err.lineno}", None, (None, f"not valid JSON ({err.msg}, column {err.colno})", JSON_FIX)
            return
        yield f"line {line}", record, None
        index = skip(end)
        if index < size and text[index] == ",":
            index = skip(index + 1)
        elif index < size and text[index] == "]":
            if skip(index + 1) != size:
                after = text.count("\n", 0, index) + 1
                yield f"line {after}", None, (None, "unexpected content after the closing ']'", JSON_FIX)
            return
        else:
            after = text.count("\n", 0, index) + 1
            yield f"line {after}", None, (None, "expected ',' or ']' after an array element", JSON_FIX)
            return


JSON_FIX = "make the file one JSON array of objects, or JSON Lines (one object per line)"


def csv_rows(text: str, source: str, delimiter: str) -> tuple[list[str], Iterator[RawRow]]:
    """The header and the rows of a CSV/TSV text, each row with the line it starts on (header = line 1)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    old_limit = csv.field_size_limit(2**31 - 1)
    try:
        header = [name.strip() for name in next(reader, [])]
    except csv.Error as err:
        raise file_error(source, f"unreadable header ({err})", "fix the quoting of the header", "line 1") from err
    finally:
        csv.field_size_limit(old_limit)
    if not header:
        raise file_error(
            source, "the file is empty (no header row)", "start the file with a header such as text,labels"
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise file_error(source, f"duplicate column names {duplicates}", "give every column its own name", "line 1")

    def rows() -> Iterator[RawRow]:
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


def file_line_rows(path: Path, source: str, kind: str) -> Iterator[RawRow]:
    """The rows of a JSON Lines, JSON or CSV / TSV file (`kind`: `"jsonl"`, `"json"`, `"csv"` or `"tsv"`)."""
    text = read_text(path, source)
    if not text.strip():
        raise file_error(source, "the file is empty", "point to the file that holds the data")
    if kind in ("csv", "tsv"):
        return csv_rows(text, source, "," if kind == "csv" else "\t")[1]
    if kind == "json" and text.lstrip().startswith("["):
        return json_array_rows(text)
    return json_lines_rows(text)  # .jsonl, and .json files written as JSON Lines (Dataset.to_json does that)
