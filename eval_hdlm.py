"""
Evaluate hierarchical decoders (and TF-IDF baselines) on a test file, side by side, under every published protocol.

```bash
python eval_hdlm.py \
    --model_name_or_path outputs/hdlm outputs/sft_at_k \
    --test_file data/dbpedia/test.jsonl \
    --baselines tfidf_leaf tfidf_per_level --train_file data/dbpedia/train.jsonl \
    --output_dir outputs/eval
```

Writes, per model, `predictions.jsonl`, `metrics.json`, a per-level score PNG and a level-1 confusion matrix PNG
under `output_dir/<model>/`, then `comparison.json` and `per_level_scores.png` for all models together.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModel, AutoTokenizer
from trl import TrlParser

from hdlm.data import collect_taxonomy, load_hierarchical_dataset, sample_rows
from hdlm.evaluation.baselines import LeafSVMBaseline, PerLevelSVMBaseline
from hdlm.evaluation.report import format_table, plot_per_level_scores, summary_keys, write_evaluation, write_json
from hdlm.evaluation.runner import evaluate_model, score_paths

BASELINES = {"tfidf_leaf": LeafSVMBaseline, "tfidf_per_level": PerLevelSVMBaseline}


@dataclass
class EvalArguments:
    """What to evaluate, on what, and how to decode."""

    model_name_or_path: list[str] = field(
        default_factory=list, metadata={"help": "One or more HdLM checkpoints (directories or hub ids)."}
    )
    test_file: str = field(default="data/dbpedia/test.jsonl", metadata={"help": "Test file (JSONL/CSV/Parquet)."})
    text_field: str = field(default="text", metadata={"help": "Field holding the query."})
    labels_field: str = field(default="labels", metadata={"help": "Field holding the reference label path."})
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate N examples drawn at random (seed: `--seed`)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the `max_samples` draw."})
    strategy: str = field(default="greedy", metadata={"help": "`greedy` (token by token) or `rank` (exact)."})
    constrained: bool = field(default=True, metadata={"help": "Restrict label levels to the taxonomy."})
    early_exit: bool = field(default=True, metadata={"help": "Decode each level with its first layers only."})
    top_k: int = field(default=1, metadata={"help": "With `rank`, record the top-k labels of each level."})
    batch_size: int = field(default=16, metadata={"help": "Examples decoded together."})
    max_new_tokens: int = field(default=64, metadata={"help": "The most tokens a free-text level may take."})
    baselines: list[str] = field(
        default_factory=list, metadata={"help": f"Baselines to train and evaluate too: {sorted(BASELINES)}."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training file for the baselines."})
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where results are written."})
    trust_remote_code: bool = field(default=True, metadata={"help": "Load the checkpoints' own HdLM code."})


def main(args: EvalArguments) -> None:
    if not args.model_name_or_path and not args.baselines:
        raise ValueError("Nothing to evaluate: pass `--model_name_or_path` and/or `--baselines`.")
    unknown = sorted(set(args.baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"Unknown `--baselines` {unknown}; choose from {sorted(BASELINES)}.")
    if args.baselines and args.train_file is None:
        raise ValueError("The baselines are trained first: pass `--train_file`.")

    test = load_hierarchical_dataset(args.test_file, text_field=args.text_field, labels_field=args.labels_field)
    test = sample_rows(test, args.max_samples, seed=args.seed)
    texts, references = test["text"], test["labels"]
    output_dir = Path(args.output_dir)
    results: dict[str, dict[str, float]] = {}

    for model_path in args.model_name_or_path:
        name = _unique_name(Path(model_path).name or model_path, results)
        model = AutoModel.from_pretrained(model_path, trust_remote_code=args.trust_remote_code).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=args.trust_remote_code)
        records, metrics = evaluate_model(
            model,
            tokenizer,
            texts,
            references,
            strategy=args.strategy,
            constrained=args.constrained,
            early_exit=args.early_exit,
            top_k=args.top_k,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
        write_evaluation(output_dir / name, name, records, metrics)
        results[name] = metrics

    if args.baselines:
        train = load_hierarchical_dataset(args.train_file, text_field=args.text_field, labels_field=args.labels_field)
        taxonomy = collect_taxonomy(train)
        for baseline in args.baselines:
            start = time.perf_counter()
            predictions = BASELINES[baseline]().fit(train["text"], train["labels"]).predict(texts)
            seconds = time.perf_counter() - start
            metrics = score_paths(predictions, references, ["label"] * len(references[0]), taxonomy=taxonomy)
            metrics.update(eval_seconds=seconds, seconds_per_example=seconds / len(texts))
            records = [
                {"text": text, "reference": reference, "prediction": prediction}
                for text, reference, prediction in zip(texts, references, predictions)
            ]
            write_evaluation(output_dir / baseline, baseline, records, metrics)
            results[baseline] = metrics

    write_json(output_dir / "comparison.json", results)
    plot_per_level_scores(results, output_dir / "per_level_scores.png")
    print(format_table(results, summary_keys(next(iter(results.values())))))
    print(f"Predictions, metrics and plots in {output_dir}/")


def _unique_name(name: str, taken: dict) -> str:
    candidate, index = name, 2
    while candidate in taken:
        candidate, index = f"{name}-{index}", index + 1
    return candidate


if __name__ == "__main__":
    main(*TrlParser((EvalArguments,)).parse_args_and_config())
