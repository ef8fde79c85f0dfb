"""
Calibration of a trained checkpoint: per-level temperatures fitted on a dev split, ECE and Brier score per level and
for whole paths on a test split, before and after.

    python bench/bench_calibration.py --model_name_or_path outputs/gemma-3-270m-dbpedia-hdlm

The checkpoint is loaded with this repository's `HdLMForCausalLM` (not the code saved beside it, which may predate
`level_temperatures`). The temperatures are fitted as `eval_hdlm.py --calibration_file` fits them, then the test
split is decoded once (constrained greedy): a greedy level's `score` is its log-probability among the allowed tokens
at temperature 1, so the same decode gives the probabilities before (`exp(score)`) and after (`probability`).
Level `d`'s confidence is the path's probability down to `d`, right when the reference agrees down to `d`.
"""

import argparse
import json
import math
import time

import torch
from transformers import AutoTokenizer

from hdlm.data import load_hierarchical_dataset
from hdlm.evaluation.calibration_fit import fit_level_temperatures
from hdlm.evaluation.calibration_metrics import calibration_scores
from modeling_hdlm import HdLMForCausalLM


def scores(outputs, references, depth: int, probability) -> dict[str, float]:
    """ECE and Brier of each level's path probability (`probability(output, d)`) and of the whole path's."""
    result = {}
    for level in range(1, depth + 1):
        confidences = [probability(output, level) for output in outputs]
        correct = [output.path[:level] == reference[:level] for output, reference in zip(outputs, references)]
        name = "path" if level == depth else f"level_{level}"
        result.update({f"{name}_{key}": value for key, value in calibration_scores(confidences, correct).items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--calibration_file", default="data/dbpedia/dev.jsonl")
    parser.add_argument("--test_file", default="data/dbpedia/test.jsonl")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    model = HdLMForCausalLM.from_pretrained(args.model_name_or_path, dtype=getattr(torch, args.dtype)).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=True)
    dev = load_hierarchical_dataset(args.calibration_file)
    test = load_hierarchical_dataset(args.test_file)
    start = time.perf_counter()
    fit = fit_level_temperatures(
        model, tokenizer, dev["text"], dev["labels"], batch_size=args.batch_size, show_progress=True
    )
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    outputs = model.generate_hierarchical(test["text"], tokenizer, batch_size=args.batch_size, show_progress=True)
    decode_seconds = time.perf_counter() - start
    depth = model.config.num_label_levels
    report = {
        **fit,
        "fit_seconds": fit_seconds,
        "decode_seconds": decode_seconds,
        "path_accuracy": sum(o.path == r for o, r in zip(outputs, test["labels"])) / len(outputs),
        "before": scores(outputs, test["labels"], depth, lambda o, d: math.exp(sum(lv.score for lv in o.levels[:d]))),
        "after": scores(outputs, test["labels"], depth, lambda o, d: math.prod(lv.probability for lv in o.levels[:d])),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
