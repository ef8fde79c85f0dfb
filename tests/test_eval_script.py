"""`eval_hdlm.py` end to end on saved tiny models, with the TF-IDF baselines side by side."""

import json

import pytest
from conftest import TAXONOMY_2, tiny_hdlm
from test_training import synthetic_rows, write_jsonl

from eval_hdlm import EvalArguments, main
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics


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
        assert {p.name for p in directory.iterdir()} == {
            "predictions.jsonl",
            "metrics.json",
            "per_level_scores.png",
            "confusion_level_1.png",
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


def test_eval_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        main(EvalArguments(output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--baselines"):
        main(EvalArguments(baselines=["bert"], output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="--train_file"):
        main(EvalArguments(baselines=["tfidf_leaf"], output_dir=str(tmp_path)))
