"""
Calibration of a trained checkpoint: per-level temperatures fitted on a dev split, ECE and Brier score per level and
for whole paths on a test split, before and after.

    python bench/bench_calibration.py --model_name_or_path outputs/gemma-3-270m-dbpedia-hdlm

The checkpoint is loaded with this repository's `HdLMForCausalLM` (not the code saved beside it, which may predate
`level_temperatures`). The temperatures are fitted as `eval_hdlm.py --calibration_file` fits them, then the test
split is decoded once (constrained greedy): a greedy level's `score` is its log-probability among the allowed tokens
at temperature 1, so the same decode gives the probabilities before (`exp(score)`) and after (`probability`).
A level's confidence is its label's probability given the labels above, judged on the rows whose labels above are
right (`calibration_curves`); the path's is their product.
"""

import argparse
import json
import math
import time

import torch
from transformers import AutoTokenizer

from hdlm.data import load_hierarchical_dataset
from hdlm.evaluation.calibration_fit import fit_level_temperatures
from hdlm.evaluation.calibration_metrics import confidence_scores
from modeling_hdlm import HdLMForCausalLM


def scores(outputs, references, level_probabilities) -> dict[str, float]:
    """ECE and Brier of each label level's probability (`level_probabilities(output)`, given its parents, judged
    where they are right) and of the whole path's (their product), as `eval_hdlm.py` reports them."""
    levels = [level_probabilities(output) for output in outputs]
    paths = [output.path[: len(row)] for output, row in zip(outputs, levels)]
    return confidence_scores(paths, references, levels, [math.prod(row) for row in levels])


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
        "before": scores(outputs, test["labels"], lambda o: [math.exp(lv.score) for lv in o.levels[:depth]]),
        "after": scores(outputs, test["labels"], lambda o: [lv.probability for lv in o.levels[:depth]]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
