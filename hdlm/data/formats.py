"""Readers of published hierarchical data sets: Web of Science WOS-46985 (HDLTex) and Kaggle's DBpedia Classes."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from .line_readers import read_text
from .loading import load_hierarchical_dataset
from .validation import RawRow, RowValidator, file_error, short_repr

__all__ = ["WOS_COLUMNS", "load_dbpedia_csv", "load_wos_data_txt", "standard_wos_split"]

WOS_COLUMNS = ("Y1", "Y2", "Y", "Domain", "area", "keywords", "Abstract")
"""Header of the WOS-46985 ``Data.xlsx`` sheet and of its tab-separated export ``Data.txt`` (HDLTex)."""


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


def _wos_records(path: Path, source: str, encoding: str) -> list[RawRow]:
    """Rows of ``Data.txt`` (tab-separated, header line 1) or ``Data.xlsx`` as dicts keyed by WOS_COLUMNS."""
    fix_header = f"the first line must be the header {' '.join(WOS_COLUMNS)} (tab-separated)"
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            import pandas as pd

            frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        except ImportError as err:
            raise file_error(
                source, f"reading Excel needs openpyxl ({err})", "export the sheet as tab-separated Data.txt"
            ) from err
        header = [str(name).strip() for name in frame.columns]
        if [h.lower() for h in header] != [c.lower() for c in WOS_COLUMNS]:
            raise file_error(source, f"unexpected columns {header}", fix_header, "sheet row 1")
        return [
            (f"sheet row {number}", dict(zip(WOS_COLUMNS, values, strict=True)), None)
            for number, values in enumerate(frame.itertuples(index=False, name=None), start=2)
        ]
    text = read_text(path, source, encoding)
    lines = text.replace("\r\n", "\n").split("\n")
    header = [name.strip() for name in lines[0].split("\t")]
    if not text.strip():
        raise file_error(source, "the file is empty", "point to WOS Data.txt")
    if [h.lower() for h in header] != [c.lower() for c in WOS_COLUMNS]:
        raise file_error(source, f"unexpected header {header}", fix_header, "line 1")
    rows: list[RawRow] = []
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


def _canonical_wos_areas(rows: list[RawRow]) -> tuple[dict[tuple[int, int], str], list[RawRow]]:
    """The most frequent area name of each (Y1, Y2) code; rows whose codes are not integers become problems.

    WOS-46985 spells a few of its 134 areas in several ways under one code (e.g. Medical 7 is both 'Atrial
    Fibrillation' and 'Depression', which is also a Psychology area). HGCLR / HPT map every name of a code to
    its most frequent one, which gives the 134 areas used by published results; on the full file this does the same.
    """
    counts: dict[tuple[int, int], dict[str, int]] = {}
    checked: list[RawRow] = []
    for where, record, problem in rows:
        if record is not None:
            try:
                code = (int(str(record["Y1"]).strip()), int(str(record["Y2"]).strip()))
            except ValueError:
                problem = (
                    "'Y1' / 'Y2'",
                    f"area codes must be integers, got {short_repr(record['Y1'])} / {short_repr(record['Y2'])}",
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
    validator = RowValidator(source, text_field="Abstract", label_fields=["Domain", "area"])
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
