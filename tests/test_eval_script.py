"""`eval_hdlm.py` end to end on saved tiny models, with the TF-IDF baselines side by side."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    STRATEGIES,
    TAXONOMY_2,
    HdLMForCausalLM,
    label_text_rows,
    synthetic_rows,
    tiny_base,
    tiny_hdlm,
    write_jsonl,
)

from eval_hdlm import EvalArguments, main
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.report import summary_keys, write_evaluation
from hdlm.evaluation.runner import score_paths
from hdlm.evaluation.text_metrics import compute_text_metrics

TEXT_METRICS = ["bleu_2", "rouge_l", "distinct_2", "empty_rate", "truncated_rate"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("eval")
    paths = []
    for name, layers in (("hdlm", [2, 4]), ("sft_at_k", [4, 4])):
        model = tiny_hdlm("llama", tokenizer, level_layers=layers)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths.append(str(root / name))
    return root, paths


def test_eval_writes_every_result_for_every_model(checkpoints, tmp_path, capsys):
    root, paths = checkpoints
    test_file = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(12, seed=1))
    train_file = write_jsonl(tmp_path / "train.jsonl", synthetic_rows(60))
    output_dir = tmp_path / "results"
    main(
        EvalArguments(
            model_name_or_path=paths,
            test_file=test_file,
            baselines=["tfidf_leaf", "tfidf_per_level"],
            train_file=train_file,
            output_dir=str(output_dir),
            batch_size=5,
        )
    )
    table = capsys.readouterr().out
    assert "hdlm" in table and "sft_at_k" in table and "tfidf_leaf" in table and "path_accuracy" in table
    comparison = json.loads((output_dir / "comparison.json").read_text())
    assert set(comparison) == {"hdlm", "sft_at_k", "tfidf_leaf", "tfidf_per_level"}
    assert (output_dir / "per_level_scores.png").stat().st_size > 0
    for name, metrics in comparison.items():
        directory = output_dir / name
        calibration_plots = (
            {"reliability_diagram.png", "coverage_accuracy.png"} if name in ("hdlm", "sft_at_k") else set()
        )
        assert {p.name for p in directory.iterdir()} == {
            "predictions.jsonl",
            "metrics.json",
            "per_level_scores.png",
            "confusion_level_1.png",
            *calibration_plots,
        }
        records = [json.loads(line) for line in (directory / "predictions.jsonl").read_text().splitlines()]
        assert len(records) == 12
        recomputed = compute_hierarchical_metrics(
            [r["prediction"] for r in records], [r["reference"] for r in records], taxonomy=TAXONOMY_2
        )
        for key, value in recomputed.items():
            assert metrics[key] == pytest.approx(value), key
        if name in ("hdlm", "sft_at_k"):  # constrained decoding: consistent by construction
            assert metrics["inconsistency_rate"] == 0.0
    assert comparison["tfidf_leaf"]["path_accuracy"] == 1.0


@pytest.fixture(scope="module")
def label_text_checkpoint(tmp_path_factory, tokenizer) -> str:
    """An untrained tiny label -> text model (strategy, then reply), saved with its tokenizer."""
    path = tmp_path_factory.mktemp("eval_label_text") / "strategy-reply"
    options = dict(
        level_layers=[2, 4],
        level_names=["strategy", "reply"],
        level_kinds=["label", "text"],
        taxonomy=[[strategy] for strategy in STRATEGIES],
    )
    model = HdLMForCausalLM.from_base(tiny_base("llama", tokenizer), options, tokenizer=tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_eval_scores_a_label_then_text_checkpoint(label_text_checkpoint, tmp_path, capsys):
    # The same reply under two strategies: free text, not a taxonomy conflict.
    rows = label_text_rows(10, seed=1) + [
        {"id": "same-1", "text": "hello", "labels": ["Question", "how are you today?"]},
        {"id": "same-2", "text": "hello again", "labels": ["Reflection", "how are you today?"]},
    ]
    test_file = write_jsonl(tmp_path / "test.jsonl", rows)
    train_file = write_jsonl(tmp_path / "train.jsonl", label_text_rows(30))
    arguments = dict(model_name_or_path=[label_text_checkpoint], test_file=test_file, batch_size=12, max_new_tokens=6)
    main(EvalArguments(**arguments, baselines=["tfidf_leaf"], train_file=train_file, output_dir=str(tmp_path / "a")))

    table = capsys.readouterr().out.splitlines()
    expected_rows = ["level_1_accuracy", "level_1_macro_f1", *(f"level_2_{score}" for score in TEXT_METRICS)]
    assert all(any(line.startswith(key + " ") for line in table) for key in expected_rows)
    directory = tmp_path / "a" / "strategy-reply"
    assert {p.name for p in directory.iterdir()} == {
        "predictions.jsonl",
        "metrics.json",
        "per_level_scores.png",
        "confusion_level_1.png",
        "reliability_diagram.png",  # the label level's probabilities (the text level has none)
        "coverage_accuracy.png",
    }
    metrics = json.loads((directory / "metrics.json").read_text())
    records = [json.loads(line) for line in (directory / "predictions.jsonl").read_text().splitlines()]
    assert [record["reference"] for record in records] == [row["labels"] for row in rows]
    assert all(record["prediction"][0] in STRATEGIES for record in records)
    assert metrics["level_1_accuracy"] == pytest.approx(
        sum(record["prediction"][0] == record["reference"][0] for record in records) / len(records)
    )
    recomputed = compute_text_metrics(
        [record["prediction"][1] for record in records],
        [record["reference"][1] for record in records],
        truncated=[record["truncated"][1] for record in records],
    )
    assert {key: metrics[f"level_2_{key}"] for key in TEXT_METRICS} == pytest.approx(recomputed)
    assert "level_2_accuracy" not in metrics

    # The baseline classifies the strategy only; the comparison shows "-" for its reply.
    comparison = json.loads((tmp_path / "a" / "comparison.json").read_text())
    assert "level_1_macro_f1" in comparison["tfidf_leaf"] and "level_2_bleu_2" not in comparison["tfidf_leaf"]
    baseline_records = (tmp_path / "a" / "tfidf_leaf" / "predictions.jsonl").read_text().splitlines()
    assert all(len(json.loads(line)["prediction"]) == 1 for line in baseline_records)

    # Sampled replies are reproducible with `--seed`; the strategy stays the constrained best label.
    for name in ("b", "c"):
        main(EvalArguments(**arguments, do_sample=True, temperature=2.0, seed=3, output_dir=str(tmp_path / name)))
    sampled = [(tmp_path / name / "strategy-reply" / "predictions.jsonl").read_text() for name in ("b", "c")]
    assert sampled[0] == sampled[1]
    sampled_records = [json.loads(line) for line in sampled[0].splitlines()]
    assert [r["prediction"][0] for r in sampled_records] == [r["prediction"][0] for r in records]
    assert [r["prediction"][1] for r in sampled_records] != [r["prediction"][1] for r in records]


def test_text_level_results_are_tabled_and_plotted_without_a_confusion_matrix(tmp_path):
    predictions, references = [["a reply"], [""]], [["a reply"], ["another reply"]]
    metrics = score_paths(predictions, references, ["text"], truncated=[[False], [True]])
    assert summary_keys(metrics) == [*(f"level_1_{score}" for score in TEXT_METRICS), "seconds_per_example"]
    records = [{"prediction": p, "reference": r} for p, r in zip(predictions, references)]
    write_evaluation(tmp_path, "text-only", records, metrics)
    assert {p.name for p in tmp_path.iterdir()} == {"predictions.jsonl", "metrics.json", "per_level_scores.png"}
    assert metrics["level_1_empty_rate"] == metrics["level_1_truncated_rate"] == 0.5


def test_eval_rejects_bad_arguments(checkpoints, label_text_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        main(EvalArguments(output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="disagree on `level_kinds`"):
        main(EvalArguments(model_name_or_path=[checkpoints[1][0], label_text_checkpoint], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="classify label levels"):
        main(EvalArguments(baselines=["tfidf_leaf"], train_file="x", level_kinds=["text"], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--baselines"):
        main(EvalArguments(baselines=["bert"], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--train_file"):
        main(EvalArguments(baselines=["tfidf_leaf"], output_dir=str(tmp_path)))


def broken_copy(checkpoint: str, tmp_path, name: str) -> str:
    target = tmp_path / name
    shutil.copytree(checkpoint, target)
    return str(target)


def test_eval_explains_broken_checkpoints(checkpoints, tmp_path):
    """A broken checkpoint is named with its file and the fix, not explained by a Hub URL, "Transformers is out of
    date" or a bare safetensors error."""
    test_file = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(4, seed=1))
    hdlm = checkpoints[1][0]

    def evaluate(path: str) -> None:
        main(EvalArguments(model_name_or_path=[path], test_file=test_file, output_dir=str(tmp_path / "out")))

    no_code = broken_copy(hdlm, tmp_path, "no_code")
    (Path(no_code) / "modeling_hdlm.py").unlink()
    with pytest.raises(ValueError, match=r"no_code/modeling_hdlm\.py is missing: .*Copy it from the hdlm repository"):
        evaluate(no_code)

    no_auto_map = broken_copy(hdlm, tmp_path, "no_auto_map")
    config = json.loads((Path(no_auto_map) / "config.json").read_text())
    del config["auto_map"]
    (Path(no_auto_map) / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json has no `auto_map` entry for AutoConfig, AutoModel"):
        evaluate(no_auto_map)

    truncated = broken_copy(hdlm, tmp_path, "truncated")
    weights = Path(truncated) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(OSError, match=r"truncated/model\.safetensors is not a complete safetensors file \(its header"):
        evaluate(truncated)
    weights.write_bytes(b"\x05")
    with pytest.raises(OSError, match=r"model\.safetensors is not a complete safetensors file \(it holds 1 bytes"):
        HdLMForCausalLM.from_pretrained(truncated)

    with pytest.raises(ValueError, match=r"no_model/config\.json is missing: .* is not a saved model"):
        evaluate(str((tmp_path / "no_model").mkdir() or tmp_path / "no_model"))
    assert not (tmp_path / "out").exists()


def test_test_labels_outside_the_taxonomy_are_counted(checkpoints, tmp_path, caplog):
    rows = synthetic_rows(4, seed=1) + [{"id": "new", "text": "x", "labels": ["Geography", "Rivers"]}]
    test_file = write_jsonl(tmp_path / "test.jsonl", rows)
    with caplog.at_level("WARNING", logger="hdlm.evaluation.runner"):
        main(EvalArguments(model_name_or_path=[checkpoints[1][0]], test_file=test_file, output_dir=str(tmp_path)))
    assert "1 of 5 references have a label path outside the model's taxonomy (e.g. ['Geography', 'Rivers'])" in (
        caplog.text
    )


@pytest.mark.parametrize("strategy", ["greedy", "rank"])  # greedy decodes the test rows once, rank before and after
def test_eval_fits_temperatures_on_held_out_rows_and_reports_calibration_before_and_after(
    checkpoints, tmp_path, strategy
):
    root, paths = checkpoints
    checkpoint = tmp_path / "hdlm"
    shutil.copytree(paths[0], checkpoint)
    test_file = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(10, seed=1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", synthetic_rows(12, seed=2))
    arguments = dict(model_name_or_path=[str(checkpoint)], test_file=test_file, batch_size=4, strategy=strategy)
    main(EvalArguments(**arguments, output_dir=str(tmp_path / "plain")))
    main(
        EvalArguments(
            **arguments, calibration_file=dev_file, save_calibration=True, output_dir=str(tmp_path / "calibrated")
        )
    )
    plain = json.loads((tmp_path / "plain" / "hdlm" / "metrics.json").read_text())
    calibrated = json.loads((tmp_path / "calibrated" / "hdlm" / "metrics.json").read_text())
    for key in ("level_1_ece", "level_2_brier", "path_ece", "path_brier"):
        assert calibrated[f"uncalibrated_{key}"] == pytest.approx(plain[key])
        assert 0 <= calibrated[key] <= 1
    assert calibrated["path_accuracy"] == plain["path_accuracy"]  # temperatures never change a label
    temperatures = [calibrated["level_1_temperature"], calibrated["level_2_temperature"]]
    assert json.loads((checkpoint / "config.json").read_text())["level_temperatures"] == pytest.approx(temperatures)
    assert HdLMForCausalLM.from_pretrained(checkpoint).config.level_temperatures == pytest.approx(temperatures)
    records = [json.loads(line) for line in (tmp_path / "calibrated" / "hdlm" / "predictions.jsonl").open()]
    assert all(len(record["probabilities"]) == 2 for record in records)
    for plot in ("reliability_diagram.png", "coverage_accuracy.png"):
        assert (tmp_path / "calibrated" / "hdlm" / plot).stat().st_size > 0
