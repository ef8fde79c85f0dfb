"""
Evaluate hierarchical decoders (and TF-IDF baselines) on a test file, side by side, under every published protocol.

```bash
python eval_hdlm.py \
    --model_name_or_path outputs/hdlm outputs/sft_at_k \
    --test_file data/dbpedia/test.jsonl \
    --baselines tfidf_leaf tfidf_per_level --train_file data/dbpedia/train.jsonl \
    --output_dir outputs/eval
```

Label levels are scored by the hierarchical metrics, free-text levels (a label then a reply, `level_kinds: [label,
text]`) by BLEU-2, ROUGE-L, Distinct-2 and the shares of empty and cut-off replies; the level kinds come from the
checkpoints' configs.

Label levels decoded under constraints carry probabilities: the metrics hold the ECE and Brier score of each level's
probability (given its parents, judged where they are right) and of the whole path's, drawn as
`reliability_diagram.png` and `coverage_accuracy.png` (the accuracy kept when abstaining below a path probability).
`--calibration_file dev.jsonl` first fits one temperature per label level on those held-out rows
(`hdlm.evaluation.calibration_fit`) and scores the test rows with and without them (the labels do not change,
their probabilities do; the metrics at temperature 1 are kept as `uncalibrated_*`; greedy decodes the rows once, as a
label's uncalibrated probability is `exp` of its score), and with `--save_calibration` stores the temperatures in the
checkpoint's `config.json`.

Writes, per model, `predictions.jsonl`, `metrics.json`, a per-level score PNG and, when level 1 is a label level, its
confusion matrix PNG under `output_dir/<model>/`, then `comparison.json` and `per_level_scores.png` for all models
together.
"""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig
from trl import TrlParser

from hdlm.checkpoints import check_hdlm_checkpoint
from hdlm.data import collect_taxonomy, load_hierarchical_dataset, sample_rows
from hdlm.evaluation.baselines import LeafSVMBaseline, PerLevelSVMBaseline
from hdlm.evaluation.calibration_fit import fit_level_temperatures
from hdlm.evaluation.report import (
    format_table,
    plot_per_level_scores,
    summary_keys,
    write_evaluation,
    write_json,
)
from hdlm.evaluation.runner import (
    confidence_curves,
    confidences,
    evaluate_model,
    score_paths,
    write_calibration_plots,
)
from hdlm.files import write_text_atomically
from hdlm.hardware import decoding_dtype
from hdlm.inference.arguments import DecodingArguments

BASELINES = {"tfidf_leaf": LeafSVMBaseline, "tfidf_per_level": PerLevelSVMBaseline}


@dataclass
class EvalArguments(DecodingArguments):
    """What to evaluate, on what, and how to decode (`DecodingArguments`)."""

    model_name_or_path: list[str] = field(
        default_factory=list, metadata={"help": "One or more HdLM checkpoints (directories or hub ids)."}
    )
    test_file: str = field(default="data/dbpedia/test.jsonl", metadata={"help": "Test file (JSONL/CSV/Parquet)."})
    text_field: str = field(default="text", metadata={"help": "Field holding the query."})
    labels_field: str = field(default="labels", metadata={"help": "Field holding the reference label path."})
    level_kinds: list[str] | None = field(
        default=None,
        metadata={"help": "`label` or `text` per level. Default: the checkpoints' (all `label` with baselines only)."},
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate N examples drawn at random (seed: `--seed`)."}
    )
    baselines: list[str] = field(
        default_factory=list, metadata={"help": f"Baselines to train and evaluate too: {sorted(BASELINES)}."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training file for the baselines."})
    calibration_file: str | None = field(
        default=None,
        metadata={
            "help": "Held-out rows (JSONL/CSV/Parquet, never the test rows) on which to fit one temperature per label "
            "level before decoding; the metrics and plots then show the probabilities before and after."
        },
    )
    save_calibration: bool = field(
        default=False,
        metadata={
            "help": "With `--calibration_file`: store the fitted temperatures in each local checkpoint's config."
        },
    )
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where results are written."})


def main(args: EvalArguments) -> None:
    if not args.model_name_or_path and not args.baselines:
        raise ValueError("Nothing to evaluate: pass `--model_name_or_path` and/or `--baselines`.")
    unknown = sorted(set(args.baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"Unknown `--baselines` {unknown}; choose from {sorted(BASELINES)}.")
    if args.baselines and args.train_file is None:
        raise ValueError("The baselines are trained first: pass `--train_file`.")

    configs = _checkpoint_configs(args)
    level_kinds = _level_kinds(configs, args.level_kinds)
    num_label_levels = None if level_kinds is None else level_kinds.count("label")
    if args.baselines and num_label_levels == 0:
        raise ValueError(f"The `--baselines` classify label levels; `level_kinds` {level_kinds} has none.")

    # a checkpoint trained on paths that stop early is scored on such paths
    partial = any(getattr(config, "allow_partial_paths", False) for config in configs.values())
    load = dict(
        text_field=args.text_field,
        labels_field=args.labels_field,
        level_kinds=level_kinds,
        allow_partial_paths=partial,
    )
    test = load_hierarchical_dataset(args.test_file, **load)
    test = sample_rows(test, args.max_samples, seed=args.seed)
    texts, references = test["text"], test["labels"]
    output_dir = Path(args.output_dir)
    results: dict[str, dict[str, float]] = {}

    dtype = decoding_dtype(args.dtype)
    for model_path in args.model_name_or_path:
        name = _unique_name(Path(model_path).name or model_path, results)
        model = AutoModel.from_pretrained(model_path, trust_remote_code=args.trust_remote_code, dtype=dtype).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=args.trust_remote_code)
        if args.calibration_file:
            records, metrics, curves = _evaluate_calibrated(args, model, tokenizer, texts, references)
        else:
            options = args.generation_config(model.device)
            records, metrics = evaluate_model(model, tokenizer, texts, references, options)
            curves = confidence_curves(records, model.config.num_label_levels)
        write_evaluation(output_dir / name, name, records, metrics)
        write_calibration_plots(output_dir / name, curves)
        results[name] = metrics

    if args.baselines:
        train = load_hierarchical_dataset(args.train_file, **load)
        depth = num_label_levels or len(references[0])  # the baselines predict the label levels only
        train_paths = [path[:depth] for path in train["labels"]]
        label_references = [path[:depth] for path in references]
        taxonomy = collect_taxonomy(train_paths)
        for baseline in args.baselines:
            start = time.perf_counter()
            predictions = BASELINES[baseline]().fit(train["text"], train_paths).predict(texts)
            seconds = time.perf_counter() - start
            metrics = score_paths(predictions, label_references, ["label"] * depth, taxonomy=taxonomy)
            metrics.update(eval_seconds=seconds, seconds_per_example=seconds / len(texts))
            records = [
                {"text": text, "reference": reference, "prediction": prediction}
                for text, reference, prediction in zip(texts, label_references, predictions)
            ]
            write_evaluation(output_dir / baseline, baseline, records, metrics)
            results[baseline] = metrics

    write_json(output_dir / "comparison.json", results)
    plot_per_level_scores(results, output_dir / "per_level_scores.png")
    print(format_table(results, summary_keys(next(iter(results.values())))))
    print(f"Predictions, metrics and plots in {output_dir}/")


def _evaluate_calibrated(args: EvalArguments, model, tokenizer, texts, references) -> tuple[list, dict, dict]:
    """
    Fit the label levels' temperatures on `--calibration_file`, decode the test rows with them, and return the
    records, the metrics with the calibration scores before (`uncalibrated_*`) and the temperatures
    (`level_{d}_temperature`), and the before/after curves; with `--save_calibration`, store them in the checkpoint.

    Greedy decoding takes the same labels at any temperature, and a label's uncalibrated probability is `exp` of its
    score: one decode gives both. `rank` and the beam (`--top_k_paths`) decode the rows before fitting too.
    """
    depth, kinds = model.config.num_label_levels, model.config.level_kinds
    model.config.level_temperatures = None  # "uncalibrated" is at temperature 1, whatever the checkpoint holds
    one_decode = args.strategy == "greedy" and args.top_k_paths == 1
    if not one_decode:
        uncalibrated, _ = evaluate_model(model, tokenizer, texts, references, args.generation_config(model.device))
    held_out = load_hierarchical_dataset(
        args.calibration_file, text_field=args.text_field, labels_field=args.labels_field, level_kinds=kinds
    )
    fit = fit_level_temperatures(
        model, tokenizer, held_out["text"], held_out["labels"], batch_size=args.batch_size, show_progress=True
    )
    records, calibrated = evaluate_model(model, tokenizer, texts, references, args.generation_config(model.device))
    if one_decode:
        uncalibrated = [
            {**record, "probabilities": [math.exp(s) for s, kind in zip(record["scores"], kinds) if kind == "label"]}
            if "probabilities" in record
            else record
            for record in records
        ]
    scores = score_paths(
        [record["prediction"] for record in uncalibrated], references, kinds, **confidences(uncalibrated)
    )
    before = {f"uncalibrated_{key}": value for key, value in scores.items() if key.endswith(("_ece", "_brier"))}
    temperatures = {f"level_{level + 1}_temperature": t for level, t in enumerate(fit["temperatures"])}
    curves = {
        **confidence_curves(uncalibrated, depth, suffix=", uncalibrated"),
        **confidence_curves(records, depth, suffix=", calibrated"),
    }
    checkpoint = Path(model.name_or_path) / "config.json"
    if args.save_calibration and checkpoint.is_file():
        config = json.loads(checkpoint.read_text())
        config["level_temperatures"] = fit["temperatures"]
        write_text_atomically(checkpoint, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return records, {**calibrated, **before, **temperatures}, curves


def _checkpoint_configs(args: EvalArguments) -> dict[str, PretrainedConfig]:
    """Each checkpoint's config, after checking that it is a whole HdLM checkpoint."""
    for path in args.model_name_or_path:
        check_hdlm_checkpoint(path)
    return {
        path: AutoConfig.from_pretrained(path, trust_remote_code=args.trust_remote_code)
        for path in args.model_name_or_path
    }


def _level_kinds(configs: dict[str, PretrainedConfig], level_kinds: list[str] | None) -> list[str] | None:
    """The level kinds shared by every checkpoint (and `--level_kinds` when given); None means all labels."""
    kinds_by_model = {path: config.level_kinds for path, config in configs.items()}
    if level_kinds is not None:
        kinds_by_model["--level_kinds"] = list(level_kinds)
    distinct = {tuple(kinds) for kinds in kinds_by_model.values()}
    if len(distinct) > 1:
        raise ValueError(
            f"The checkpoints disagree on `level_kinds`, so they cannot share a test file: {kinds_by_model}."
        )
    return list(distinct.pop()) if distinct else None


def _unique_name(name: str, taken: dict) -> str:
    candidate, index = name, 2
    while candidate in taken:
        candidate, index = f"{name}-{index}", index + 1
    return candidate


if __name__ == "__main__":
    main(*TrlParser((EvalArguments,)).parse_args_and_config())
