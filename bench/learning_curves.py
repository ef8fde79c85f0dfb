"""
Learning curves: dev-split path accuracy against training minutes, read from training runs, with the TF-IDF + linear
SVM baseline on the same training rows as a line.

    python bench/learning_curves.py \
        --run "label heads + constrained loss=outputs/curves/dbp-C" --run "sft@K=outputs/curves/dbp-D" \
        --train_file data/dbpedia/train.jsonl --dev_file data/dbpedia/dev.jsonl \
        --title "DBpedia (3,000 training rows)" --output outputs/curves/dbpedia.png

A run is the `output_dir` of `train_hdlm.py --eval_file DEV --eval_decoding true` (its `trainer_state.json`, or its
`checkpoint-*/trainer_state.json` while it trains): every evaluation logs `eval_path_accuracy` and friends, and
every log `train_minutes` (training wall time without the evaluations). Prints a markdown table (one row per
evaluation) and writes the PNG.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from configuration_hdlm import default_level_kinds  # noqa: E402
from hdlm.data import load_hierarchical_dataset  # noqa: E402
from hdlm.evaluation.baselines import LeafSVMBaseline  # noqa: E402
from hdlm.evaluation.runner import score_paths  # noqa: E402

COLUMNS = ("path_accuracy", "level_1_accuracy", "level_1_macro_f1", "level_2_accuracy", "hierarchical_f1")


def evaluations(run_dir: Path) -> list[dict[str, float]]:
    """The evaluation entries of a run's log history, each with the training minutes and step it was made at."""
    states = [run_dir / "trainer_state.json", *sorted(run_dir.glob("checkpoint-*/trainer_state.json"))]
    state = next((path for path in states if path.exists()), None)
    if state is None:
        raise FileNotFoundError(f"{run_dir} holds no trainer_state.json: is it a train_hdlm.py output_dir?")
    history = json.loads(state.read_text())["log_history"]
    points = []
    for entry in history:
        if "eval_path_accuracy" in entry:
            points.append({"step": entry["step"], "minutes": entry["train_minutes"], **entry})
    if not points:
        raise ValueError(f"{run_dir} logged no `eval_path_accuracy`: train with `--eval_decoding true`.")
    return points


def tfidf_scores(train_file: str, dev_file: str) -> dict[str, float]:
    train = load_hierarchical_dataset(train_file)
    dev = load_hierarchical_dataset(dev_file, num_levels=len(train[0]["labels"]))
    predictions = LeafSVMBaseline().fit(train["text"], train["labels"]).predict(dev["text"])
    depth = len(train[0]["labels"])
    return score_paths(predictions, dev["labels"], default_level_kinds(depth), taxonomy=train["labels"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=OUTPUT_DIR of a training run")
    parser.add_argument("--train_file", help="training rows of the TF-IDF baseline (the runs' training file)")
    parser.add_argument("--dev_file", help="the dev split the runs were evaluated on")
    parser.add_argument("--title", default="Learning curves")
    parser.add_argument("--output", required=True, help="PNG to write")
    args = parser.parse_args()

    figure, axis = plt.subplots(figsize=(7, 4.5))
    print("| run | step | train min | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---:|" + "---:|" * len(COLUMNS))
    for run in args.run:
        name, _, directory = run.partition("=")
        points = evaluations(Path(directory))
        axis.plot(
            [p["minutes"] for p in points], [100 * p["eval_path_accuracy"] for p in points], marker="o", label=name
        )
        for point in points:
            cells = " | ".join(f"{100 * point.get(f'eval_{key}', float('nan')):.1f}" for key in COLUMNS)
            print(f"| {name} | {point['step']} | {point['minutes']:.1f} | {cells} |")
    if args.train_file and args.dev_file:
        scores = tfidf_scores(args.train_file, args.dev_file)
        cells = " | ".join(f"{100 * scores[key]:.1f}" for key in COLUMNS)
        print(f"| TF-IDF + linear SVM (leaf) | - | - | {cells} |")
        axis.axhline(100 * scores["path_accuracy"], color="grey", linestyle="--", label="TF-IDF + linear SVM")
    axis.set_xlabel("training minutes (2-core CPU, evaluations excluded)")
    axis.set_ylabel("dev path accuracy (%)")
    axis.set_title(args.title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=120)
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
