"""What the `hierarchical-text-classification` pipeline costs over calling `generate_hierarchical` directly.

Loads a checkpoint through `pipeline(..., trust_remote_code=True)`, then decodes the same test rows with the same
batch size both ways, side by side in each round (the pipeline's model and tokenizer for both), and prints a
markdown section for BENCHMARKS.md: rows/s of each, the ratio, and whether paths and probabilities agree.

    python bench/bench_pipeline.py --model_name_or_path outputs/gemma-3-270m-dbpedia-hdlm
        --test_file data/dbpedia/test.jsonl
"""

import argparse
import json
import platform
import statistics
import time

from transformers import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--test_file", default="data/dbpedia/test.jsonl")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with open(args.test_file, encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line, _ in zip(handle, range(args.rows))]
    classifier = pipeline("hierarchical-text-classification", model=args.model_name_or_path, trust_remote_code=True)
    model, tokenizer = classifier.model, classifier.tokenizer
    methods = {
        "pipeline": lambda: classifier(texts, batch_size=args.batch_size),
        "generate_hierarchical": lambda: model.generate_hierarchical(texts, tokenizer, batch_size=args.batch_size),
    }
    classifier(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up, untimed: first calls run slower
    model.generate_hierarchical(texts[: args.batch_size], tokenizer, batch_size=args.batch_size)
    timings, results = {name: [] for name in methods}, {}
    for round_index in range(args.rounds):
        for name in sorted(methods, reverse=round_index % 2 == 1):  # alternate which goes first
            start = time.perf_counter()
            results[name] = methods[name]()
            timings[name].append(time.perf_counter() - start)
    answers, outputs = results["pipeline"], results["generate_hierarchical"]
    same_paths = sum(answer["path"] == output.path for answer, output in zip(answers, outputs))
    gap = max(abs(answer["score"] - output.probability) for answer, output in zip(answers, outputs))
    rates = {name: len(texts) / statistics.median(seconds) for name, seconds in timings.items()}
    print(f"### Pipeline against `generate_hierarchical`: {args.model_name_or_path}, {model.dtype}\n")
    print(f"{len(texts)} rows of `{args.test_file}`, batch {args.batch_size}, median of {args.rounds} rounds after ")
    print("a warm-up batch, ")
    print(f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}.\n")
    print("| method | rows/s |\n|---|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.2f} |")
    ratios = [direct / piped for piped, direct in zip(timings["pipeline"], timings["generate_hierarchical"])]
    print(f"\nPer-round speed ratios (pipeline / direct): {', '.join(f'{ratio:.3f}' for ratio in ratios)}.")
    print(f"\nPipeline / direct: {rates['pipeline'] / rates['generate_hierarchical']:.3f}x; same path on "
          f"{same_paths}/{len(texts)} rows; largest path-probability difference {gap:.2e}.")  # fmt: skip


if __name__ == "__main__":
    main()
