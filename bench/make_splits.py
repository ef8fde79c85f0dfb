"""
Write the dev splits the learning curves are chosen on (never the test splits).

    python bench/make_splits.py --data_dir ../shared/data --output_dir outputs/data

- `20newsgroups/`: `dev.jsonl`, 500 rows drawn (seed 0) from the bydate training file, and `train.jsonl`, the other
  10,814; the test split stays the bydate `test.jsonl` (scored on 500 rows drawn with seed 42).
- `wos/`: the 800-row sample shuffled (seed 0) into `train.jsonl` / `dev.jsonl` / `test.jsonl` of 560 / 120 / 120.
  An area named under two domains (WoS has "Depression" under Psychology and under Medical) is renamed
  "Depression (Medical)" under each, so that labels form a tree.

DBpedia needs nothing: `data/dbpedia` has its own `dev.jsonl`.
"""

import argparse
import json
import random
from pathlib import Path

from hdlm.evaluation.report import write_jsonl


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def shuffled(rows: list[dict], seed: int) -> list[dict]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def qualify_repeated_names(rows: list[dict]) -> list[dict]:
    """Level-2 labels found under several level-1 labels become `name (parent)`."""
    parents: dict[str, set[str]] = {}
    for row in rows:
        parents.setdefault(row["labels"][1], set()).add(row["labels"][0])
    renamed = []
    for row in rows:
        top, area = row["labels"]
        if len(parents[area]) > 1:
            row = {**row, "labels": [top, f"{area} ({top})"]}
        renamed.append(row)
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--output_dir", default="outputs/data")
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output_dir)

    newsgroups = shuffled(read_jsonl(data / "20newsgroups" / "train.jsonl"), seed=0)
    write_jsonl(out / "20newsgroups" / "dev.jsonl", newsgroups[:500])
    write_jsonl(out / "20newsgroups" / "train.jsonl", newsgroups[500:])
    (out / "20newsgroups" / "test.jsonl").write_text((data / "20newsgroups" / "test.jsonl").read_text())

    wos = qualify_repeated_names(shuffled(read_jsonl(data / "wos" / "sample.jsonl"), seed=0))
    for name, rows in (("train", wos[:560]), ("dev", wos[560:680]), ("test", wos[680:])):
        write_jsonl(out / "wos" / f"{name}.jsonl", rows)
    for path in sorted(out.glob("*/*.jsonl")):
        print(path, sum(1 for _ in path.open()))


if __name__ == "__main__":
    main()
