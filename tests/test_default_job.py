"""
The embedded default job end to end, as the README runs it: `python train_hdlm.py` with no arguments but the
reduced-run flags the README names (real Gemma 3 270M, real bundled data, real training and evaluation), then its
output loaded in a fresh process with `trust_remote_code=True` and nothing else.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Converted, run_offline

REPO_ROOT = Path(__file__).resolve().parents[1]
REDUCED_RUN = ["--max_steps", "5", "--max_test_samples", "16"]  # the README's quick check of the default job

pytestmark = pytest.mark.slow

LOAD_AND_DECODE = """
import json, sys
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
texts = [json.loads(line)["text"] for line in open("data/dbpedia/test.jsonl")][:4]
print(json.dumps([output.path for output in model.generate_hierarchical(texts, tokenizer)]))
"""


def run_default_job(launcher: list[str], output_dir: Path, converted: Converted) -> subprocess.CompletedProcess:
    command = [*launcher, "train_hdlm.py", *REDUCED_RUN, "--output_dir", str(output_dir)]
    return run_offline(command, env={"HF_HOME": str(converted.hf_home)}, timeout=1200)


def bundled_taxonomy() -> set[tuple[str, ...]]:
    rows = (json.loads(line) for line in (REPO_ROOT / "data/dbpedia/train.jsonl").read_text().splitlines())
    return {tuple(row["labels"]) for row in rows}


@pytest.mark.parametrize(
    "launcher",
    [[sys.executable], [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu"]],
    ids=["python", "accelerate-launch"],
)
def test_no_argument_job_trains_evaluates_and_publishes(launcher: list[str], converted: Converted, tmp_path: Path):
    output_dir = tmp_path / "default-job"
    result = run_default_job(launcher, output_dir, converted)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Converting the packaged" not in result.stderr, "the cached base must be reused, not converted again"

    # The checkpoint, its card and the evaluation of the bundled test split
    for name in ("config.json", "model.safetensors", "configuration_hdlm.py", "modeling_hdlm.py", "tokenizer.json"):
        assert (output_dir / name).is_file(), name
    assert not list(output_dir.glob("*.bin")) and not list(output_dir.glob("*.pt")), "no pickle weights"
    # Label-vocabulary heads and bf16 weights: the checkpoint weighs no more than the base (issue target: <= 1.2x).
    base_size = (converted.path / "model.safetensors").stat().st_size
    assert (output_dir / "model.safetensors").stat().st_size <= 1.2 * base_size
    assert "generate_hierarchical" in (output_dir / "README.md").read_text()
    metrics = json.loads((output_dir / "eval" / "metrics.json").read_text())
    assert metrics["inconsistency_rate"] == 0.0
    assert len((output_dir / "eval" / "predictions.jsonl").read_text().splitlines()) == 16
    assert (output_dir / "eval" / "per_level_scores.png").stat().st_size > 0
    assert (output_dir / "loss_curves.png").stat().st_size > 0
    assert "path_accuracy" in result.stdout and f"AutoModel.from_pretrained('{output_dir}'" in result.stdout

    # A fresh process loads it through AutoModel alone and predicts paths of the bundled taxonomy
    loaded = run_offline([sys.executable, "-c", LOAD_AND_DECODE, str(output_dir)])
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    paths = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert len(paths) == 4
    assert all(tuple(path) in bundled_taxonomy() for path in paths), paths
