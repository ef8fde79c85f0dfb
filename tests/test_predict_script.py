"""`predict_hdlm.py` on a saved tiny model: input and output formats, order and ids, probabilities, errors, a SIGKILL
then `--resume`, and two processes writing one file."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, free_port, run_offline, synthetic_rows, tiny_hdlm, write_jsonl

from hdlm.data import HierarchicalDataError
from hdlm.inference.predict import check_level_names
from predict_hdlm import PredictArguments, main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer) -> str:
    path = tmp_path_factory.mktemp("predict") / "model"
    model = tiny_hdlm("llama", tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def read_output(path) -> list[dict]:
    if str(path).endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_input(path, rows) -> str:
    if path.suffix == ".csv":
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "labels": json.dumps(row["labels"])} for row in rows)
        return str(path)
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist([{"text": row["text"], "labels": row["labels"]} for row in rows]), path)
        return str(path)
    return write_jsonl(path, rows)


@pytest.mark.parametrize("formats", [(".jsonl", ".jsonl"), (".csv", ".parquet"), (".parquet", ".jsonl")])
def test_predictions_keep_order_and_ids_with_generate_hierarchicals_probabilities(
    checkpoint, tokenizer, tmp_path, formats
):
    rows = synthetic_rows(13, seed=3)
    rows[4]["text"] = rows[4]["text"] + " and a much longer text " * 6  # sorted apart from its neighbours
    input_file = write_input(tmp_path / f"in{formats[0]}", rows)
    output_file = tmp_path / f"out{formats[1]}"
    main(
        PredictArguments(
            model_name_or_path=checkpoint,
            input_file=input_file,
            output_file=str(output_file),
            chunk_size=5,
            batch_size=2,
            dtype="checkpoint",
        )
    )
    predictions = read_output(output_file)
    expected_ids = list(range(13)) if formats[0] == ".parquet" else [row["id"] for row in rows]
    assert [prediction["id"] for prediction in predictions] == expected_ids
    assert not (tmp_path / f"out{formats[1]}.partial").exists()

    from modeling_hdlm import HdLMForCausalLM

    model = HdLMForCausalLM.from_pretrained(checkpoint).eval()
    outputs = model.generate_hierarchical([row["text"] for row in rows], tokenizer, batch_size=3)
    for prediction, output in zip(predictions, outputs):
        assert prediction["path"] == output.path
        assert [prediction["topic"], prediction["subtopic"]] == output.path
        for name, level in zip(["topic", "subtopic"], output.levels):
            assert 0 < prediction[f"{name}_probability"] <= 1
            assert prediction[f"{name}_probability"] == pytest.approx(level.probability, rel=1e-9)
        assert prediction["path_probability"] == pytest.approx(output.probability, rel=1e-9)
        assert prediction["path_probability"] == pytest.approx(
            math.prod(prediction[f"{name}_probability"] for name in ["topic", "subtopic"]), rel=1e-12
        )


def test_bad_input_and_output_are_named(checkpoint, tmp_path):
    arguments = dict(model_name_or_path=checkpoint, dtype="checkpoint", chunk_size=4)
    rows = synthetic_rows(6)
    rows[2] = {"id": "ex-2", "labels": ["Science", "Physics"]}
    rows[4]["text"] = "  "
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(HierarchicalDataError) as error:
        main(PredictArguments(**arguments, input_file=bad, output_file=str(tmp_path / "out.jsonl")))
    assert "2 problems" in str(error.value)
    assert "line 3, field 'text': is missing" in str(error.value) and "line 5, field 'text'" in str(error.value)
    partly = write_jsonl(tmp_path / "ids.jsonl", [{"text": "a goal", "id": 1}, {"text": "a lens"}])
    with pytest.raises(HierarchicalDataError, match=r"line 2, field 'id': is missing, though line 1 has one"):
        main(PredictArguments(**arguments, input_file=partly, output_file=str(tmp_path / "out.jsonl")))
    with pytest.raises(ValueError, match=r"unsupported extension '\.csv'; end it with \.jsonl or \.parquet"):
        PredictArguments(**arguments, input_file=bad, output_file=str(tmp_path / "out.csv"))

    good = write_jsonl(tmp_path / "good.jsonl", synthetic_rows(6))
    output_file = tmp_path / "out.jsonl"
    output_file.with_name("out.jsonl.partial").mkdir()
    with pytest.raises(FileExistsError, match=r"pass --resume to continue it, or remove .*out\.jsonl\.partial"):
        main(PredictArguments(**arguments, input_file=good, output_file=str(output_file)))
    main(PredictArguments(**arguments, input_file=good, output_file=str(output_file), resume=True))
    assert len(read_output(output_file)) == 6
    with pytest.raises(FileExistsError, match=r"out\.jsonl exists already: remove it, or choose another"):
        main(PredictArguments(**arguments, input_file=good, output_file=str(output_file)))
    with pytest.raises(ValueError, match=r"output uses for itself"):
        check_level_names(["id", "leaf"])


def script(checkpoint, input_file, output_file, *extra) -> list[str]:
    return [str(REPO_ROOT / "predict_hdlm.py"), "--model_name_or_path", checkpoint, "--input_file", input_file,
            "--output_file", str(output_file), "--chunk_size", "3", "--batch_size", "2", "--dtype", "checkpoint",
            *extra]  # fmt: skip


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = run_offline(command, env={"OMP_NUM_THREADS": "1"})  # one thread: the same sums in every process
    if not check:
        return result
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def uninterrupted(checkpoint, tmp_path_factory):
    """30 rows (10 chunks) predicted by one uninterrupted process."""
    root = tmp_path_factory.mktemp("predict_runs")
    input_file = write_jsonl(root / "in.jsonl", synthetic_rows(30, seed=5))
    run([sys.executable, *script(checkpoint, input_file, root / "whole.jsonl")])
    return input_file, (root / "whole.jsonl").read_bytes()


def test_sigkill_half_way_then_resume_is_identical_to_an_uninterrupted_run(checkpoint, uninterrupted, tmp_path):
    input_file, whole = uninterrupted
    output_file = tmp_path / "killed.jsonl"
    partial = tmp_path / "killed.jsonl.partial"
    command = [sys.executable, *script(checkpoint, input_file, output_file)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 300
    while len(list(partial.glob("chunk-*.jsonl"))) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(partial.glob("chunk-*.jsonl")))
    assert 5 <= written < 10 and not output_file.exists(), "the run ended before it was killed half way"

    mismatched = run([*command, "--resume", "--batch_size", "3"], check=False)
    assert mismatched.returncode != 0 and "batch_size: 2 then, 3 now" in mismatched.stderr
    run([*command, "--resume"])
    assert output_file.read_bytes() == whole
    assert [row["id"] for row in read_output(output_file)] == [f"ex-{index}" for index in range(30)]
    assert not partial.exists()


def test_two_processes_write_one_ordered_file(checkpoint, uninterrupted, tmp_path):
    input_file, whole = uninterrupted
    output_file = tmp_path / "parallel.jsonl"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--main_process_port", str(free_port())]  # fmt: skip
    result = run([*launcher, *script(checkpoint, input_file, output_file)])
    assert "30 predictions" in result.stdout and result.stdout.count("predictions in") == 1  # one writer
    assert output_file.read_bytes() == whole


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_top_k_paths_are_the_beams_paths(checkpoint, tokenizer, tmp_path, suffix):
    rows = synthetic_rows(7, seed=4)
    output_file = tmp_path / f"out{suffix}"
    arguments = dict(model_name_or_path=checkpoint, dtype="checkpoint", chunk_size=4, batch_size=3, top_k_paths=3)
    main(
        PredictArguments(
            **arguments, input_file=write_jsonl(tmp_path / "in.jsonl", rows), output_file=str(output_file)
        )
    )

    from modeling_hdlm import HdLMForCausalLM

    model = HdLMForCausalLM.from_pretrained(checkpoint).eval()
    outputs = model.generate_hierarchical([row["text"] for row in rows], tokenizer, top_k_paths=3)
    for prediction, output in zip(read_output(output_file), outputs, strict=True):
        top_paths = prediction["top_paths"]
        assert [entry["path"] for entry in top_paths] == [path for path, _ in output.top_paths]
        assert len(top_paths) == 3 and top_paths[0]["path"] == prediction["path"]
        probabilities = [entry["probability"] for entry in top_paths]
        assert probabilities == pytest.approx([probability for _, probability in output.top_paths], rel=1e-9)
        assert all(0 < p <= 1 for p in probabilities) and probabilities == sorted(probabilities, reverse=True)
        assert probabilities[0] == pytest.approx(prediction["path_probability"], rel=1e-9)


def test_a_path_that_stops_early_leaves_its_deeper_levels_null():
    from generation_hdlm import HierarchicalLevel, HierarchicalOutput
    from hdlm.inference.predict import prediction_row

    level = HierarchicalLevel("topic", "label", "Arts", [5], -0.1, label="Arts", probability=0.9)
    row = prediction_row("doc-1", HierarchicalOutput(levels=[level]), ["topic", "subtopic"])
    assert row == {"id": "doc-1", "path": ["Arts"], "topic": "Arts", "topic_probability": 0.9, "subtopic": None,
                   "subtopic_probability": None, "path_probability": 0.9}  # fmt: skip
