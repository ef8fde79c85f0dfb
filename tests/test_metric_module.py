"""The `evaluate` module `metrics/hierarchical_f1` loads offline and returns what the plain functions return, for label
paths and for paths that end in free text."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.runner import score_paths

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


def run_script(script: str, arguments: list, tmp_path) -> list:
    """Run `script` in a fresh offline process with `arguments` as JSON; return the JSON it prints last."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return run_offline_script(script, arguments, tmp_path, pythonpath=pythonpath, cwd=REPO_ROOT)


def run_offline_script(script: str, arguments: list, tmp_path, *, pythonpath: str, cwd) -> list:
    """Run `script` offline with fresh module and metric caches under `tmp_path`, `PYTHONPATH` set to `pythonpath`;
    return the JSON it prints last."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env["PYTHONPATH"] = pythonpath
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(arguments)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_evaluate_load_offline_matches_function(tmp_path):
    script_path = str(REPO_ROOT / "metrics" / "hierarchical_f1" / "hierarchical_f1.py")
    without_taxonomy, with_taxonomy = run_script(SCRIPT, [PREDICTIONS, REFERENCES, TAXONOMY, script_path], tmp_path)

    assert without_taxonomy == compute_hierarchical_metrics(PREDICTIONS, REFERENCES)
    assert with_taxonomy == compute_hierarchical_metrics(PREDICTIONS, REFERENCES, taxonomy=TAXONOMY)
    assert with_taxonomy["flat_macro_f1"] != without_taxonomy["flat_macro_f1"]


LABEL_TEXT_PREDICTIONS = [["Question", "How are you today?"], ["Question", "That sounds hard."], ["Reflection", ""]]
LABEL_TEXT_REFERENCES = [["Question", "How are you?"], ["Reflection", "That sounds very hard."], ["Reflection", "Hi"]]
LABEL_TEXT_TRUNCATED = [[False, False], [False, True], [False, False]]

LABEL_TEXT_SCRIPT = """
import json, sys
import evaluate

predictions, references, truncated = json.loads(sys.argv[1])
metric = evaluate.load("metrics/hierarchical_f1")
results = [metric.compute(predictions=predictions, references=references, level_kinds=["label", "text"])]
results.append(
    metric.compute(
        predictions=predictions,
        references=references,
        taxonomy=[["Question"], ["Reflection"], ["Other"]],
        level_kinds=["label", "text"],
        truncated=truncated,
    )
)
try:
    metric.compute(predictions=[["Question"]], references=[["Question", "Hi"]], level_kinds=["label", "text"])
except ValueError as error:
    results.append(str(error))
print(json.dumps(results))
"""


def test_evaluate_load_scores_text_levels(tmp_path):
    arguments = [LABEL_TEXT_PREDICTIONS, LABEL_TEXT_REFERENCES, LABEL_TEXT_TRUNCATED]
    plain, with_taxonomy, error = run_script(LABEL_TEXT_SCRIPT, arguments, tmp_path)

    assert plain == pytest.approx(score_paths(LABEL_TEXT_PREDICTIONS, LABEL_TEXT_REFERENCES, ["label", "text"]))
    assert plain["level_1_accuracy"] == pytest.approx(2 / 3)
    assert plain["level_2_empty_rate"] == pytest.approx(1 / 3)
    assert {"level_2_bleu_2", "level_2_rouge_l", "level_2_distinct_2"} <= set(plain)
    assert not any(key.startswith("level_2_") and key.endswith(("accuracy", "f1")) for key in plain)
    assert "level_2_truncated_rate" not in plain
    assert with_taxonomy["level_2_truncated_rate"] == pytest.approx(1 / 3)
    assert with_taxonomy["flat_macro_f1"] < plain["flat_macro_f1"]  # "Other" is never predicted
    assert "predictions[0]" in error and "one entry per level" in error


NON_STRING_SCRIPT = """
import json, sys
import evaluate

[paths] = json.loads(sys.argv[1])
metric = evaluate.load("metrics/hierarchical_f1")
errors = []
for predictions, references in (
    (paths[:2] + [["Arts", 7]], paths),
    (paths[:2] + [["Arts", True]], paths),
    (paths, paths[:2] + [[None, "Music"]]),
):
    try:
        metric.compute(predictions=predictions, references=references)
        errors.append(None)
    except ValueError as error:
        errors.append(str(error))
try:
    metric.add(prediction=["Arts", 1.5], reference=paths[2])
    errors.append(None)
except ValueError as error:
    errors.append(str(error))
print(json.dumps([errors, metric.compute(predictions=paths, references=paths)["level_1_accuracy"]]))
"""


def test_evaluate_load_refuses_non_string_labels(tmp_path):
    """`evaluate` casts every label to a string, so a number or a bool would silently score every level 0."""
    paths = [["Science", "Physics"], ["Sports", "Tennis"], ["Arts", "Music"]]
    errors, accuracy = run_script(NON_STRING_SCRIPT, [paths], tmp_path)
    assert accuracy == 1.0  # the metric still works after the refused calls
    int_label, bool_label, none_label, float_label = errors
    assert "`predictions[2][1]` is int 7" in int_label and "Fix: write every label as a string" in int_label
    assert "`predictions[2][1]` is bool True" in bool_label
    assert "`references[2][0]` is NoneType None" in none_label
    assert "`prediction[0][1]` is float 1.5" in float_label


# Makes `import hdlm` (and the checkpoint code beside it) fail in the process that imports it as `sitecustomize`.
HDLM_BLOCKER = """
import sys

BLOCKED = {"hdlm", "configuration_hdlm", "modeling_hdlm", "rendering_hdlm", "generation_hdlm", "decoding_hdlm",
           "beam_hdlm", "early_exit_hdlm", "taxonomy_hdlm", "pipeline_hdlm"}


class BlockHdlm:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the metric must work without the hdlm package")
        return None


sys.meta_path.insert(0, BlockHdlm())
"""

STANDALONE_SCRIPT = """
import json, sys

try:
    import hdlm
except ImportError as error:
    blocked = str(error)
else:
    raise SystemExit(f"hdlm imported from {hdlm.__file__}")
import evaluate

folders, calls = json.loads(sys.argv[1])
results = [evaluate.load(folder).compute(**call) for folder in folders for call in calls]
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "hdlm" or name.endswith("_hdlm"))
print(json.dumps([blocked, loaded, results]))
"""


def test_evaluate_load_works_without_hdlm(tmp_path):
    """The metric folder, and a copy of it with its links resolved (as the Hub serves it), load and score in a process
    where `import hdlm` fails, and give what `hdlm.evaluation` gives."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(HDLM_BLOCKER)
    folder = REPO_ROOT / "metrics" / "hierarchical_f1"
    copy = shutil.copytree(folder, tmp_path / "copy" / "hierarchical_f1")  # links copied as the files they point to
    assert not any(path.is_symlink() for path in Path(copy).iterdir())
    label_call = {
        "predictions": PREDICTIONS,
        "references": REFERENCES,
        "taxonomy": TAXONOMY,
        "level_confidences": [[0.9, 0.8], [0.7, 0.4], [0.6], []],
        "path_confidences": [0.72, 0.28, 0.6, 0.1],
    }
    text_call = {
        "predictions": LABEL_TEXT_PREDICTIONS,
        "references": LABEL_TEXT_REFERENCES,
        "level_kinds": ["label", "text"],
        "truncated": LABEL_TEXT_TRUNCATED,
        "level_confidences": [[0.9], [0.55], [0.8]],
    }
    arguments = [[str(folder), str(copy)], [label_call, text_call]]
    blocked, loaded, results = run_offline_script(
        STANDALONE_SCRIPT, arguments, tmp_path, pythonpath=str(blocker), cwd=tmp_path
    )
    assert "hdlm is blocked" in blocked and loaded == []
    expected_labels = compute_hierarchical_metrics(**label_call)
    expected_text = score_paths(**text_call)
    assert {"level_2_ece", "path_brier"} <= set(expected_labels) and "level_1_ece" in expected_text
    assert results == [pytest.approx(expected_labels), pytest.approx(expected_text)] * 2
