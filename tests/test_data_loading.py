"""Tests of hdlm.data: every file format, the real shared data, each validation error, published formats."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.model_selection import train_test_split

from hdlm.data import (
    HierarchicalDataError,
    collect_taxonomy,
    load_dbpedia_csv,
    load_hierarchical_dataset,
    load_wos_data_txt,
    sample_rows,
    standard_wos_split,
)

# The project's shared data beside the clone (`../shared/data`), or where HDLM_SHARED_DATA points. A fresh clone has
# none: its tests skip, naming the folder.
SHARED_DATA = Path(os.environ.get("HDLM_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"{SHARED_DATA} is absent (the project's shared data beside the clone; HDLM_SHARED_DATA points elsewhere)",
)

ROWS = [
    {"id": "a", "text": "  Quarks and leptons. ", "labels": ["Science", "Physics"], "extra": 1},
    {"id": "b", "text": "Cells divide.", "labels": [" Science ", "Biology"], "extra": 2},
    {"id": "c", "text": "Match point, Nadal.", "labels": ["Sports", "Tennis\t"], "extra": 3},
]
EXPECTED = {
    "id": ["a", "b", "c"],
    "text": ["  Quarks and leptons. ", "Cells divide.", "Match point, Nadal."],
    "labels": [["Science", "Physics"], ["Science", "Biology"], ["Sports", "Tennis"]],
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def as_columns(dataset: datasets.Dataset) -> dict[str, list]:
    return {name: list(dataset[name]) for name in dataset.column_names}


def error_of(path: Path, load=load_hierarchical_dataset, **kwargs) -> str:
    """The message of the `HierarchicalDataError` that `load(path, **kwargs)` raises."""
    with pytest.raises(HierarchicalDataError) as info:
        load(path, **kwargs)
    return str(info.value)


# -- formats ----------------------------------------------------------------------------------------------------
def test_jsonl(tmp_path: Path) -> None:
    dataset = load_hierarchical_dataset(write_jsonl(tmp_path / "d.jsonl", ROWS))
    assert dataset.column_names == ["id", "text", "labels"]
    assert as_columns(dataset) == EXPECTED  # labels stripped, text kept as is, "extra" dropped
    assert dataset.features["labels"] == datasets.List(datasets.Value("string"))


def test_json_array_and_json_lines_in_json(tmp_path: Path) -> None:
    array = tmp_path / "array.json"
    array.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    assert as_columns(load_hierarchical_dataset(array)) == EXPECTED
    lines = write_jsonl(tmp_path / "lines.json", ROWS)  # what Dataset.to_json writes
    assert as_columns(load_hierarchical_dataset(lines)) == EXPECTED


def test_csv_one_column_per_level(tmp_path: Path) -> None:
    rows = [[r["id"], r["text"], r["labels"][0], r["labels"][1], "x"] for r in ROWS]
    path = write_csv(tmp_path / "d.csv", ["id", "text", "l1", "l2", "other"], rows)
    assert as_columns(load_hierarchical_dataset(path, labels_field="l1, l2")) == EXPECTED


def test_csv_json_list_column_and_tsv(tmp_path: Path) -> None:
    rows = [[r["id"], r["text"], json.dumps(r["labels"])] for r in ROWS]
    path = write_csv(tmp_path / "d.csv", ["id", "body", "path"], rows)
    assert as_columns(load_hierarchical_dataset(path, text_field="body", labels_field="path")) == EXPECTED
    tsv = write_csv(tmp_path / "d.tsv", ["id", "text", "labels"], rows, delimiter="\t")
    assert as_columns(load_hierarchical_dataset(tsv)) == EXPECTED


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert as_columns(load_hierarchical_dataset(path)) == EXPECTED


def test_no_id_column_when_rows_have_none(tmp_path: Path) -> None:
    rows = [{"text": r["text"], "labels": r["labels"]} for r in ROWS]
    dataset = load_hierarchical_dataset(write_jsonl(tmp_path / "d.jsonl", rows), num_levels=2)
    assert dataset.column_names == ["text", "labels"]


def test_dataset_name_reads_a_local_dataset_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    write_jsonl((tmp_path / "repo").mkdir() or tmp_path / "repo" / "train.jsonl", ROWS)
    dataset = load_hierarchical_dataset(dataset_name=str(tmp_path / "repo"), split="train")
    assert as_columns(dataset) == EXPECTED


def test_dataset_name_error_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HierarchicalDataError, match=r"dataset 'no-such-user/no-such-set' \(split 'test'\).*Fix:"):
        load_hierarchical_dataset(dataset_name="no-such-user/no-such-set", split="test")
    with pytest.raises(ValueError, match="exactly one of"):
        load_hierarchical_dataset()


# -- the real shared data ---------------------------------------------------------------------------------------
def test_data_tests_skip_with_a_reason_without_the_project_data(tmp_path: Path) -> None:
    """A fresh clone has no `../shared/data`: its tests skip, saying which folder is absent; none fails."""
    absent = tmp_path / "no-shared-data"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__, "-k", "test_shared_"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "HDLM_SHARED_DATA": str(absent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b3 skipped\b", result.stdout) and "passed" not in result.stdout, result.stdout[-3000:]
    assert f"{absent} is absent" in result.stdout


@requires_shared_data
def test_shared_dbpedia_test() -> None:
    path = SHARED_DATA / "dbpedia" / "test.jsonl"
    dataset = load_hierarchical_dataset(path)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(dataset) == len(raw) == 500
    assert dataset.column_names == ["id", "text", "labels"]
    assert {len(labels) for labels in dataset["labels"]} == {3}
    assert dataset[0] == {"id": raw[0]["id"], "text": raw[0]["text"], "labels": raw[0]["labels"]}
    taxonomy = collect_taxonomy(dataset)
    assert taxonomy == sorted(taxonomy) and len({path[0] for path in taxonomy}) == 9


@requires_shared_data
def test_shared_esconv_test_label_then_text() -> None:
    path = SHARED_DATA / "esconv" / "test.jsonl"
    dataset = load_hierarchical_dataset(path, level_kinds=["label", "text"])
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(dataset) == len(raw) == 2295
    assert dataset.column_names == ["id", "text", "labels"]  # emotion, problem, situation dropped
    assert list(dataset["labels"]) == [[r["labels"][0].strip(), r["labels"][1]] for r in raw]  # replies verbatim
    assert len(collect_taxonomy(dataset, level_kinds=["label", "text"])) == 8
    # Read as two label levels, a reply shared by two strategies is two labels (a label is its path).
    assert len(load_hierarchical_dataset(path)) == 2295


@requires_shared_data
def test_shared_wos_sample_keeps_an_area_name_under_two_domains_apart() -> None:
    path = SHARED_DATA / "wos" / "sample.jsonl"
    taxonomy = collect_taxonomy(load_hierarchical_dataset(path))
    assert ["Psychology", "Depression"] in taxonomy and ["Medical", "Depression"] in taxonomy


# -- errors -----------------------------------------------------------------------------------------------------
def test_wrong_number_of_levels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "depth.jsonl", [ROWS[0], {"text": "t", "labels": ["A", "B", "C"]}])
    with pytest.raises(HierarchicalDataError, match=r"depth\.jsonl, line 2, field 'labels': expected 2 levels "):
        load_hierarchical_dataset(path)
    assert "(as on line 1), got 3" in error_of(path)
    assert "(num_levels=3), got 2" in error_of(path, num_levels=3)
    assert "line 1" in error_of(path, level_kinds=["label", "label", "label"])


def test_empty_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "empty.jsonl", [ROWS[0], {"text": "t", "labels": ["A", "  "]}])
    with pytest.raises(HierarchicalDataError, match=r"empty\.jsonl, line 2, field 'labels' level 2: empty label\."):
        load_hierarchical_dataset(path)


def test_non_string_label_and_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "types.jsonl", [{"text": "t", "labels": ["A", 3]}])
    with pytest.raises(HierarchicalDataError, match=r"types\.jsonl, line 1, field 'labels' level 2: label must be a "):
        load_hierarchical_dataset(path)
    assert "got number 3. Fix: write it as a string" in error_of(path)
    path = write_jsonl(tmp_path / "text.jsonl", [{"text": ["not", "text"], "labels": ["A", "B"]}])
    with pytest.raises(HierarchicalDataError, match=r"text\.jsonl, line 1, field 'text': text must be a string"):
        load_hierarchical_dataset(path)
    path = write_jsonl(tmp_path / "str.jsonl", [{"text": "t", "labels": "A/B"}])
    with pytest.raises(HierarchicalDataError, match=r"str\.jsonl, line 1, field 'labels': must be a list .*'A/B'"):
        load_hierarchical_dataset(path)


def test_missing_field_lists_present_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "missing.jsonl", [{"id": "1", "body": "t", "labels": ["A", "B"]}])
    pattern = r"missing\.jsonl, line 1, field 'text': missing field \(fields present: 'id', 'body', 'labels'\)"
    with pytest.raises(HierarchicalDataError, match=pattern + r".*text_field="):
        load_hierarchical_dataset(path)
    csv_path = write_csv(tmp_path / "cols.csv", ["text", "l1"], [["t", "A"]])
    with pytest.raises(HierarchicalDataError, match=r"cols\.csv, line 2, field 'l2': missing field"):
        load_hierarchical_dataset(csv_path, labels_field="l1,l2")


def test_unreadable_json_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{'text': 'single quotes'}\n", encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"broken\.jsonl, line 3: not valid JSON \(.*column 2\)\. Fix:"):
        load_hierarchical_dataset(path)
    array = tmp_path / "broken.json"
    array.write_text('[\n  {"text": "t", "labels": ["A"]},\n  {"text": "t" "labels": ["A"]}\n]', encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"broken\.json, line 3: not valid JSON"):
        load_hierarchical_dataset(array)


def test_unsupported_extension_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"data\.txt: unsupported file extension '\.txt'.*\.jsonl"):
        load_hierarchical_dataset(tmp_path / "data.txt")
    (tmp_path / "empty.jsonl").write_text("\n \n", encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"empty\.jsonl: the file is empty"):
        load_hierarchical_dataset(tmp_path / "empty.jsonl")
    (tmp_path / "empty.json").write_text("[ ]", encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"empty\.json: the file is empty \(no rows\)"):
        load_hierarchical_dataset(tmp_path / "empty.json")
    write_csv(tmp_path / "header_only.csv", ["text", "labels"], [])
    with pytest.raises(HierarchicalDataError, match=r"header_only\.csv: the file is empty \(no rows\)"):
        load_hierarchical_dataset(tmp_path / "header_only.csv")
    with pytest.raises(FileNotFoundError):
        load_hierarchical_dataset(tmp_path / "absent.jsonl")


def test_a_name_under_two_parents_is_two_labels(tmp_path: Path) -> None:
    rows = [
        {"text": "a", "labels": ["Psychology", "Depression"]},
        {"text": "b", "labels": ["CS", "Vision"]},
        {"text": "c", "labels": ["Medical", "Depression"]},
        {"text": "d", "labels": ["Medical", "Depression"]},
    ]
    dataset = load_hierarchical_dataset(write_jsonl(tmp_path / "tax.jsonl", rows))
    assert len(dataset) == 4
    assert collect_taxonomy(dataset) == [["CS", "Vision"], ["Medical", "Depression"], ["Psychology", "Depression"]]


def test_short_paths_are_the_wrong_depth_unless_partial_paths_are_allowed(tmp_path: Path) -> None:
    rows = [{"text": "a", "labels": ["Books"]}, {"text": "b", "labels": ["Books", "Fiction", "Crime"]}]
    rows += [{"text": "c", "labels": ["Books", "Fiction"]}]
    path = write_jsonl(tmp_path / "short.jsonl", rows)
    message = error_of(path, num_levels=3)
    assert f"{path}, line 1, field 'labels': expected 3 levels (num_levels=3), got 1" in message
    assert "or allow_partial_paths=True if paths may stop early" in message
    dataset = load_hierarchical_dataset(path, allow_partial_paths=True)
    assert dataset["labels"] == [["Books"], ["Books", "Fiction", "Crime"], ["Books", "Fiction"]]
    assert collect_taxonomy(dataset, allow_partial_paths=True) == sorted(r["labels"] for r in rows)
    with pytest.raises(HierarchicalDataError, match="path 2 holds 3 labels, expected 1 to 2"):
        collect_taxonomy(dataset, level_kinds=["label", "label"], allow_partial_paths=True)
    too_deep = error_of(path, num_levels=2, allow_partial_paths=True)
    assert f"{path}, line 2, field 'labels': expected at most 2 levels (num_levels=2), got 3" in too_deep
    with pytest.raises(ValueError, match="allow_partial_paths needs label levels only"):
        load_hierarchical_dataset(path, level_kinds=["label", "text"], allow_partial_paths=True)


def test_text_levels_exempt_from_taxonomy_but_must_be_non_empty(tmp_path: Path) -> None:
    rows = [{"text": "a", "labels": ["Question", " Hi! "]}, {"text": "b", "labels": ["Greeting", " Hi! "]}]
    dataset = load_hierarchical_dataset(write_jsonl(tmp_path / "ok.jsonl", rows), level_kinds=["label", "text"])
    assert list(dataset["labels"]) == [["Question", " Hi! "], ["Greeting", " Hi! "]]
    bad = write_jsonl(tmp_path / "gen.jsonl", [{"text": "a", "labels": ["Question", " \n"]}])
    with pytest.raises(HierarchicalDataError, match=r"gen\.jsonl, line 1, field 'labels' level 2: empty text at a "):
        load_hierarchical_dataset(bad, level_kinds=["label", "text"])


def test_csv_problems(tmp_path: Path) -> None:
    rows = [["first\nline", "A", "B"], ["t", "A", ""], ["t", "A"]]
    path = write_csv(tmp_path / "bad.csv", ["text", "l1", "l2"], rows)
    message = error_of(path, labels_field="l1,l2")
    assert "bad.csv: 2 problems found:" in message
    assert "bad.csv, line 4, field 'l2' (level 2): empty label" in message  # line 2-3 is one quoted record
    assert "bad.csv, line 5: has 2 fields but the header has 3" in message
    json_col = write_csv(tmp_path / "json.csv", ["text", "labels"], [["t", "A > B"]])
    with pytest.raises(HierarchicalDataError, match=r"json\.csv, line 2, field 'labels': not a JSON list .*l1,l2,l3"):
        load_hierarchical_dataset(json_col)


def test_ids_unique_and_all_or_none(tmp_path: Path) -> None:
    rows = [{"id": "x", "text": "a", "labels": ["A"]}, {"id": "x", "text": "b", "labels": ["B"]}]
    with pytest.raises(
        HierarchicalDataError, match=r"dup\.jsonl, line 2, field 'id': duplicate id 'x' \(also on line 1"
    ):
        load_hierarchical_dataset(write_jsonl(tmp_path / "dup.jsonl", rows))
    rows = [{"text": "a", "labels": ["A"]}, {"id": 7, "text": "b", "labels": ["B"]}]
    with pytest.raises(HierarchicalDataError, match=r"mixed\.jsonl, line 1, field 'id': missing field \(other rows"):
        load_hierarchical_dataset(write_jsonl(tmp_path / "mixed.jsonl", rows))


def test_several_problems_reported_together(tmp_path: Path) -> None:
    rows = [{"text": "ok", "labels": ["A", "B"]}]
    rows += [{"text": "t", "labels": ["A", ""]} for _ in range(12)]  # lines 2-13
    rows += [{"text": 5, "labels": ["A", "B"]}]  # line 14
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    with pytest.raises(HierarchicalDataError) as info:
        load_hierarchical_dataset(path)
    error = info.value
    assert error.num_problems == 13 and len(error.problems) == 10
    assert str(error).startswith(f"{path}: 13 problems found (the first 10 shown):\n  - {path}, line 2, field")
    assert "line 11, field 'labels' level 2: empty label" in str(error)
    assert "line 12," not in str(error)
    assert str(error).endswith("... and 3 more; fix these and load again to see the rest.")
    small = write_jsonl(tmp_path / "two.jsonl", [{"text": "", "labels": ["A"]}, {"text": "t", "labels": ["A", "B"]}])
    message = error_of(small)
    assert "two.jsonl: 2 problems found:" in message and "more" not in message
    assert re.search(r"line 1, field 'text': empty text.*\n.*line 2, field 'labels': expected 1 levels", message)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="level_kinds"):
        load_hierarchical_dataset("x.jsonl", level_kinds=["label", "class"])
    with pytest.raises(ValueError, match="disagrees"):
        load_hierarchical_dataset("x.jsonl", num_levels=3, level_kinds=["label", "text"])


# -- taxonomy ---------------------------------------------------------------------------------------------------
def test_collect_taxonomy() -> None:
    paths = [["Sports", "Tennis"], ["Science", "Physics"], [" Science", "Biology "], ["Science", "Physics"]]
    expected = [["Science", "Biology"], ["Science", "Physics"], ["Sports", "Tennis"]]
    assert collect_taxonomy(paths) == expected
    train = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": paths[:2]})
    test = datasets.Dataset.from_dict({"text": ["c", "d"], "labels": paths[2:]})
    assert collect_taxonomy(datasets.DatasetDict({"train": train, "test": test})) == expected
    assert collect_taxonomy([train, test]) == expected
    assert collect_taxonomy([["Ask", "Hi there"], ["Ask", "Hello"]], level_kinds=["label", "text"]) == [["Ask"]]
    assert collect_taxonomy([["Hi there", "Ask"]], level_kinds=["text", "label"]) == []
    assert ["Leisure", "Tennis"] in collect_taxonomy([train, ["Leisure", "Tennis"]])  # a label is its path
    with pytest.raises(HierarchicalDataError, match="path 2 holds 1 labels, expected 2 .*allow_partial_paths"):
        collect_taxonomy([["A", "B"], ["A"]])


# -- WOS-46985 (Data.txt) ---------------------------------------------------------------------------------------
WOS_HEADER = "Y1\tY2\tY\tDomain\tarea\tkeywords\tAbstract"
WOS_DOMAINS = [("CS ", ["Computer vision", "Machine learning  "]), ("Medical  ", ["Asthma", "Atrial Fibrillation"])]


def wos_lines(count: int) -> list[str]:
    lines = []
    for row in range(count):
        y1 = row % 2
        domain, areas = WOS_DOMAINS[y1]
        y2 = (row // 2) % 2
        lines.append(f"{y1}\t{y2}\t{y1 * 2 + y2}\t{domain}\t {areas[y2]} \tk{row}; kw\tAbstract number {row}. ")
    return lines


def write_wos(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([WOS_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def sklearn_sizes(count: int) -> tuple[int, int, int]:
    """Sizes from train_test_split's rule: the test part is ceil(0.2 * n), the rest is train."""
    test = math.ceil(0.2 * count)
    val = math.ceil(0.2 * (count - test))
    return count - test - val, val, test


def test_wos_split_sizes_follow_sklearn_rules() -> None:
    assert sklearn_sizes(46985) == (30070, 7518, 9397)
    for count in (3, 50, 46985):
        assert tuple(map(len, standard_wos_split(count))) == sklearn_sizes(count)


def test_wos_split_matches_the_published_procedure() -> None:
    state = np.random.get_state()
    try:
        np.random.seed(7)  # exactly as HGCLR / HPT data_wos.py
        order = list(range(50))
        np.random.shuffle(order)
        train_val, test = train_test_split(np.array(order), test_size=0.2, random_state=0)
        train, val = train_test_split(train_val, test_size=0.2, random_state=0)
    finally:
        np.random.set_state(state)
    before = np.random.get_state()[1].copy()
    assert standard_wos_split(50) == (train.tolist(), val.tolist(), test.tolist())
    assert (np.random.get_state()[1] == before).all()  # global random state untouched


def test_wos_data_txt(tmp_path: Path) -> None:
    path = write_wos(tmp_path / "Data.txt", wos_lines(50))
    splits = load_wos_data_txt(path)
    assert list(splits) == ["train", "validation", "test"]
    assert tuple(len(splits[name]) for name in splits) == sklearn_sizes(50) == (32, 8, 10)
    ids = [set(splits[name]["id"]) for name in splits]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {f"wos-{row}" for row in range(50)}
    train_idx, val_idx, test_idx = standard_wos_split(50)
    assert splits["test"]["id"] == [f"wos-{row}" for row in test_idx]
    first = splits["train"][0]
    row = train_idx[0]
    assert first["text"] == f"Abstract number {row}. "
    assert first["labels"] == [WOS_DOMAINS[row % 2][0].strip(), WOS_DOMAINS[row % 2][1][(row // 2) % 2].strip()]
    again = load_wos_data_txt(path)
    assert all(as_columns(again[name]) == as_columns(splits[name]) for name in splits)  # deterministic
    with_keywords = load_wos_data_txt(path, include_keywords=True)
    assert with_keywords["train"][0]["text"] == f"Abstract number {row}. \nKeywords: k{row}; kw"
    assert collect_taxonomy(splits) == [
        ["CS", "Computer vision"],
        ["CS", "Machine learning"],
        ["Medical", "Asthma"],
        ["Medical", "Atrial Fibrillation"],
    ]


def test_wos_area_names_normalised_per_code(tmp_path: Path) -> None:
    # As in WOS-46985: code Medical 1-1 is mostly 'Atrial Fibrillation' but sometimes named 'Depression',
    # which is also the name of a Psychology area.
    lines = wos_lines(20)
    lines.append("5\t7\t99\tPsychology\tDepression\tk\tA psychology abstract.")  # wos-20, line 22
    lines.append("1\t1\t3\tMedical\tDepression\tk\tA medical abstract.")  # wos-21, line 23
    path = write_wos(tmp_path / "Data.txt", lines)
    splits = load_wos_data_txt(path)
    labels = {row["id"]: row["labels"] for name in splits for row in splits[name]}
    assert labels["wos-21"] == ["Medical", "Atrial Fibrillation"]
    assert labels["wos-20"] == ["Psychology", "Depression"]
    raw = load_wos_data_txt(path, normalize_areas=False)
    assert ["Medical", "Depression"] in [row["labels"] for name in raw for row in raw[name]]


def test_wos_errors(tmp_path: Path) -> None:
    lines = wos_lines(10)
    lines[3] = lines[3].replace("\tAbstract", " Abstract")
    lines[5] = lines[5].replace("\tMedical  \t", "\t \t")
    message = error_of(write_wos(tmp_path / "Data.txt", lines), load_wos_data_txt)
    assert "Data.txt: 2 problems found:" in message
    assert "Data.txt, line 5: expected 7 tab-separated fields" in message
    assert "Data.txt, line 7, field 'Domain' (level 1): empty label" in message
    (tmp_path / "bad.txt").write_text("Domain\tAbstract\nCS\tx\n", encoding="utf-8")
    with pytest.raises(HierarchicalDataError, match=r"bad\.txt, line 1: unexpected header"):
        load_wos_data_txt(tmp_path / "bad.txt")


def test_wos_xlsx(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame([line.split("\t") for line in wos_lines(10)], columns=WOS_HEADER.split("\t"))
    path = tmp_path / "Data.xlsx"
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        path.write_bytes(b"PK")
        with pytest.raises(HierarchicalDataError, match=r"Data\.xlsx: reading Excel needs openpyxl"):
            load_wos_data_txt(path)
        return
    frame.to_excel(path, index=False)
    txt = load_wos_data_txt(write_wos(tmp_path / "Data.txt", wos_lines(10)))
    assert as_columns(load_wos_data_txt(path)["test"]) == as_columns(txt["test"])


# -- DBpedia Classes (Kaggle CSV) -------------------------------------------------------------------------------
def test_dbpedia_csv(tmp_path: Path) -> None:
    rows = [
        ['Bears FC, a club.\nFounded "1920".', "Agent", "SportsTeam", "SoccerClub"],
        ["Mont Blanc is a mountain.", "Place", "NaturalPlace", "Mountain"],
        ["The Hobbit is a novel.", "Work", "WrittenWork", "Novel "],
    ]
    path = write_csv(tmp_path / "DBPEDIA_val.csv", ["text", "l1", "l2", "l3"], rows)
    dataset = load_dbpedia_csv(path)
    assert dataset.column_names == ["id", "text", "labels"]
    assert dataset["id"] == ["DBPEDIA_val-0", "DBPEDIA_val-1", "DBPEDIA_val-2"]
    assert dataset["text"][0] == rows[0][0]
    assert dataset["labels"][2] == ["Work", "WrittenWork", "Novel"]
    assert load_dbpedia_csv(path, id_prefix="dbp")["id"][1] == "dbp-1"
    rows.append(["A fourth row.", "Place", "", "Mountain"])
    rows.append(["A fifth row.", "Agent", "Writer", "Mountain"])
    bad = write_csv(tmp_path / "DBPEDIA_bad.csv", ["text", "l1", "l2", "l3"], rows)
    message = error_of(bad, load_dbpedia_csv)
    assert "DBPEDIA_bad.csv, line 6, field 'l2' (level 2): empty label" in message
    assert "line 7" not in message  # 'Mountain' under 'Writer' too: another label (a label is its path)


def test_sample_rows_draws_a_seeded_random_subset_of_a_sorted_file() -> None:
    rows = datasets.Dataset.from_dict(
        {"text": [f"t{i}" for i in range(100)], "labels": [[str(i // 50)] for i in range(100)]}
    )
    first = sample_rows(rows, 10, seed=0)
    assert len(first) == 10 and first["text"] == sample_rows(rows, 10, seed=0)["text"]
    assert first["text"] != sample_rows(rows, 10, seed=1)["text"]
    assert {labels[0] for labels in first["labels"]} == {"0", "1"}, "a prefix of a sorted file would hold one class"
    assert len(set(first["text"])) == 10
    assert sample_rows(rows, None, seed=0) is rows and sample_rows(rows, 100, seed=0) is rows
