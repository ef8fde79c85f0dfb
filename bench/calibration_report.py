"""
Calibration of a decoded test split, read from the `predictions.jsonl` that `train_hdlm.py` / `eval_hdlm.py` write:
per label level and for the path, ECE and Brier score, a reliability diagram and a coverage-accuracy curve.

    python bench/calibration_report.py --predictions /work/ckpt/default/eval/predictions.jsonl \
        --output_dir outputs/calibration/default

A level's probability is `exp(score)`: under constrained greedy decoding (the default) a label level's score is the
log-probability of its label among the labels the taxonomy allows under its parent, so this is
`HierarchicalLevel.probability`; the path's probability is their product (`HierarchicalOutput.probability`). Records
decoded otherwise (`strategy="rank"`, free decoding) have other scores: pass those records' probabilities instead.
Prints the scores as JSON and writes `calibration.json`, `reliability.png` and `coverage_accuracy.png`.
"""

import argparse
import json
import math
from pathlib import Path

from hdlm.evaluation.calibration import calibration_curves, plot_coverage_accuracy, plot_reliability_diagram
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.report import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="a predictions.jsonl of label paths with their scores")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()

    records = [json.loads(line) for line in Path(args.predictions).read_text().splitlines() if line.strip()]
    predictions = [record["prediction"] for record in records]
    references = [record["reference"] for record in records]
    level_confidences = [[math.exp(score) for score in record["scores"]] for record in records]
    path_confidences = [math.prod(row) for row in level_confidences]
    metrics = compute_hierarchical_metrics(
        predictions, references, level_confidences=level_confidences, path_confidences=path_confidences
    )
    scores = {key: value for key, value in metrics.items() if key.endswith(("_ece", "_brier", "accuracy"))}
    print(json.dumps(scores, indent=2))

    curves = calibration_curves(predictions, references, level_confidences, path_confidences)
    output_dir = Path(args.output_dir)
    write_json(output_dir / "calibration.json", scores)
    plot_reliability_diagram(curves, output_dir / "reliability.png")
    plot_coverage_accuracy(curves, output_dir / "coverage_accuracy.png")


if __name__ == "__main__":
    main()
