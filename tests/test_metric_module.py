"""The `evaluate` module `metrics/hierarchical_f1` loads offline and returns what the plain function returns."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics

REPO_ROOT = Path(__file__).resolve().parent.parent

PREDICTIONS = [["A", "a1"], ["A", "b1"], ["B"], []]
REFERENCES = [["A", "a1"], ["B", "b1"], ["B", "b2"], ["A", "a2"]]
TAXONOMY = [["A", "a1"], ["A", "a2"], ["B", "b1"], ["B", "b2"], ["C", "c1"]]

SCRIPT = """
import json, sys
import evaluate

predictions, references, taxonomy, script_path = json.loads(sys.argv[1])
by_directory = evaluate.load("metrics/hierarchical_f1")
by_script = evaluate.load(script_path)
print(json.dumps([
    by_directory.compute(predictions=predictions, references=references),
    by_script.compute(predictions=predictions, references=references, taxonomy=taxonomy),
]))
"""


def test_evaluate_load_offline_matches_function(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path),  # fresh module and metric caches
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    script_path = str(REPO_ROOT / "metrics" / "hierarchical_f1" / "hierarchical_f1.py")
    arguments = json.dumps([PREDICTIONS, REFERENCES, TAXONOMY, script_path])
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, arguments], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    without_taxonomy, with_taxonomy = json.loads(completed.stdout.strip().splitlines()[-1])

    assert without_taxonomy == compute_hierarchical_metrics(PREDICTIONS, REFERENCES)
    assert with_taxonomy == compute_hierarchical_metrics(PREDICTIONS, REFERENCES, taxonomy=TAXONOMY)
    assert with_taxonomy["flat_macro_f1"] != without_taxonomy["flat_macro_f1"]
