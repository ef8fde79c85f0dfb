"""
Publishing to the Hub without a network: the repository's files (contents, card metadata) and the upload through the
real huggingface_hub client against a fake Hub at the HTTP level (its transport is an `httpx2.MockTransport`; no
huggingface_hub function is replaced), down to loading what the Hub received in a fresh process. Real Hub uploads
are not exercised here.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import torch
from conftest import synthetic_rows, tiny_base, tiny_hdlm, train_args, write_jsonl
from huggingface_hub import ModelCard, constants
from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils._http import default_client_factory

import train_hdlm
from hdlm.evaluation.report import write_evaluation
from hdlm.evaluation.runner import evaluate_model
from hdlm.publishing import build_model_card, publish, repo_files
from publish_hdlm import PublishArguments, make_parser
from publish_hdlm import main as publish_main

TOKEN = "hf_fake_write_token"
TEXTS = ["optics lens the quick fox", "racket over lazy dog", "jazz song again", "cells genes brown"]
REFERENCES = [["Science", "Physics"], ["Sports", "Tennis"], ["Arts", "Music"], ["Science", "Biology"]]
TRAINER_LEFTOVERS = {
    "training_args.bin",
    "trainer_state.json",
    "pytorch_model.bin",
    "checkpoint-1/model.safetensors",
    "checkpoint-1/config.json",
    "checkpoint-1/optimizer.pt",
    "checkpoint-1/scheduler.pt",
    "checkpoint-1/rng_state.pth",
    "checkpoint-1/training_args.bin",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")


@dataclass
class Trained:
    output_dir: Path
    predictions: list[list]  # [path, token ids per level] per text, from the in-memory model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer) -> Trained:
    """A tiny HdLM written the way train_hdlm.py writes its output directory, Trainer leftovers included."""
    output_dir = tmp_path_factory.mktemp("publish") / "tiny-hdlm"
    model = tiny_hdlm("llama", tokenizer)
    outputs = model.generate_hierarchical(TEXTS, tokenizer)
    predictions = [[output.path, [level.token_ids for level in output.levels]] for output in outputs]
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    records, metrics = evaluate_model(model, tokenizer, TEXTS, REFERENCES)
    write_evaluation(output_dir / "eval", output_dir.name, records, metrics)
    card = build_model_card(
        model.config,
        repo_id="fake-user/tiny-hdlm",
        base_model="tiny-llama",
        metrics=metrics,
        dataset_name="synthetic",
        training_data="train.jsonl",
        training_details=["2 optimizer steps, full fine-tuning"],
        plot="eval/per_level_scores.png",
        example_text=TEXTS[0],
    )
    card.save(output_dir / "README.md")
    (output_dir / "checkpoint-1").mkdir()
    for name in TRAINER_LEFTOVERS:
        if name.startswith("checkpoint-1/") and name.endswith((".safetensors", ".json")):
            shutil.copy(output_dir / Path(name).name, output_dir / name)
        elif name.endswith(".json"):
            (output_dir / name).write_text(json.dumps({"global_step": 1}))
        else:
            torch.save({"step": 1, "weights": torch.zeros(3)}, output_dir / name)  # pickles
    return Trained(output_dir, predictions)


def snapshot(directory: Path) -> dict[str, str]:
    """Every entry under `directory`, with the sha256 of each file."""
    return {
        path.relative_to(directory).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<dir>"
        )
        for path in sorted(directory.rglob("*"))
    }


def files_under(directory: Path) -> set[str]:
    return {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}


# -- the repository's files ---------------------------------------------------------------------------------------


def test_repo_files_keep_what_a_model_repository_needs_and_no_pickle(trained):
    before = snapshot(trained.output_dir)
    files = repo_files(trained.output_dir)

    assert set(files) == files_under(trained.output_dir) - TRAINER_LEFTOVERS
    assert {
        "config.json",
        "configuration_hdlm.py",
        "modeling_hdlm.py",
        "pipeline_hdlm.py",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "eval/metrics.json",
        "eval/predictions.jsonl",
        "eval/per_level_scores.png",
        "eval/confusion_level_1.png",
    } <= set(files)
    assert not [name for name in files if name.endswith(PICKLE_SUFFIXES) or name.startswith("checkpoint-")]

    config = json.loads((trained.output_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    card = ModelCard.load(trained.output_dir / "README.md")
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    metrics = json.loads((trained.output_dir / "eval" / "metrics.json").read_text())
    assert results and results["path_accuracy"] == round(100 * metrics["path_accuracy"], 2)
    assert snapshot(trained.output_dir) == before


def _drop_auto_map(output_dir: Path) -> None:
    config = json.loads((output_dir / "config.json").read_text())
    del config["auto_map"]
    (output_dir / "config.json").write_text(json.dumps(config))


def _drop_tokenizer(output_dir: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (output_dir / name).unlink(missing_ok=True)


BREAKAGES = {
    "no config": (lambda d: (d / "config.json").unlink(), r"config\.json is missing"),
    "no auto_map": (_drop_auto_map, r"config\.json has no `auto_map` entry for AutoConfig"),
    "no modeling code": (lambda d: (d / "modeling_hdlm.py").unlink(), r"modeling_hdlm\.py is missing"),
    "no configuration code": (lambda d: (d / "configuration_hdlm.py").unlink(), r"configuration_hdlm\.py is missing"),
    "no pipeline code": (lambda d: (d / "pipeline_hdlm.py").unlink(), r"pipeline_hdlm\.py is missing"),
    # imported by decoding_hdlm.py (a checkpoint saved before the beam existed imports it nowhere, and needs it not)
    "no beam code": (lambda d: (d / "beam_hdlm.py").unlink(), r"beam_hdlm\.py is missing"),
    "pickle weights only": (lambda d: (d / "model.safetensors").unlink(), r"no \*\.safetensors weights"),
    "no tokenizer": (_drop_tokenizer, r"no tokenizer files"),
    "no card": (lambda d: (d / "README.md").unlink(), r"README\.md is missing"),
    "broken card metadata": (
        lambda d: (d / "README.md").write_text("---\nmodel-index: [unclosed\n---\n# Card\n"),
        r"README\.md has invalid YAML metadata",
    ),
    "card without metadata": (lambda d: (d / "README.md").write_text("# Card\n"), r"README\.md has no YAML metadata"),
}


# -- uploading through the real client against a fake Hub ---------------------------------------------------------

LFS_SUFFIXES = (".safetensors", ".png", ".bin", ".pt", ".pth", ".pkl")  # LFS by the Hub's default .gitattributes
REPO = r"(?P<repo>[^/]+/[^/]+)"


class FakeHub:
    """
    The Hub endpoints that `HfApi.create_repo`, `create_branch` and `create_commit` call, answered at the HTTP level:
    requests are recorded by endpoint, LFS uploads stored by oid, commit payloads (NDJSON) parsed.
    """

    def __init__(self) -> None:
        self.fail: str | None = None
        self.calls: list[str] = []
        self.authorizations: set[str | None] = set()
        self.created: list[dict] = []
        self.branches: list[tuple[str, str]] = []
        self.lfs_objects: dict[str, bytes] = {}
        self.commits: list[tuple[str, str, list[dict]]] = []
        self.routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", self.create_branch),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>[^/]+)", self.preupload),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/lfs-storage/(?P<oid>[0-9a-f]{64})", self.lfs_put),
            ("POST", rf"/api/models/{REPO}/commit/(?P<revision>[^/]+)", self.commit),
        ]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        if request.url.path == "/api/agent-harnesses" or request.url.path.startswith("/api/telemetry/"):
            return httpx2.Response(404, json={"error": "Not found"})  # best-effort telemetry of the libraries
        for method, pattern, endpoint in self.routes:
            match = re.fullmatch(pattern, request.url.path)
            if request.method == method and match:
                self.calls.append(endpoint.__name__)
                if endpoint.__name__ != "lfs_put":
                    self.authorizations.add(request.headers.get("authorization"))
                if endpoint.__name__ == self.fail:
                    return httpx2.Response(500, json={"error": "Internal Error - the fake Hub fails on purpose"})
                return endpoint(request, **match.groupdict())
        self.calls.append(f"unexpected {request.method} {request.url.path}")
        return httpx2.Response(404, json={"error": "Not found"})

    @staticmethod
    def base(request: httpx2.Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc.decode()}"

    def create_repo(self, request: httpx2.Request) -> httpx2.Response:
        payload = json.loads(request.content)
        self.created.append(payload)
        repo = f"{payload.get('organization') or 'fake-user'}/{payload['name']}"
        return httpx2.Response(200, json={"url": f"{self.base(request)}/{repo}"})

    def create_branch(self, request: httpx2.Request, repo: str, branch: str) -> httpx2.Response:
        self.branches.append((repo, branch))
        return httpx2.Response(200, json={})

    def validate_yaml(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def preupload(self, request: httpx2.Request, repo: str, revision: str) -> httpx2.Response:
        files = [
            {"path": file["path"], "uploadMode": "lfs" if file["path"].endswith(LFS_SUFFIXES) else "regular"}
            | {"shouldIgnore": False, "oid": None}
            for file in json.loads(request.content)["files"]
        ]
        return httpx2.Response(200, json={"files": files})

    def lfs_batch(self, request: httpx2.Request, repo: str) -> httpx2.Response:
        objects = [
            {
                "oid": item["oid"],
                "size": item["size"],
                "authenticated": True,
                "actions": {"upload": {"href": f"{self.base(request)}/lfs-storage/{item['oid']}"}},
            }
            for item in json.loads(request.content)["objects"]
        ]
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects})

    def lfs_put(self, request: httpx2.Request, oid: str) -> httpx2.Response:
        self.lfs_objects[oid] = request.content
        return httpx2.Response(200)

    def commit(self, request: httpx2.Request, repo: str, revision: str) -> httpx2.Response:
        lines = [json.loads(line) for line in request.content.decode().splitlines() if line]
        self.commits.append((repo, revision, lines))
        oid = hashlib.sha1(request.content).hexdigest()
        return httpx2.Response(200, json={"commitUrl": f"{self.base(request)}/{repo}/commit/{oid}", "commitOid": oid})


@pytest.fixture(autouse=True)
def no_stored_token(monkeypatch, tmp_path):
    """Tests never see a real token: none in the environment, none in the token file."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[FakeHub]:
    """huggingface_hub's own client, online, talking to a `FakeHub` through an `httpx2.MockTransport`."""
    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # hf_xet sends large files through its own (Rust) HTTP client, which no httpx transport sees: use the Hub's LFS
    # protocol, which huggingface_hub falls back to without hf_xet.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    try:
        yield hub
    finally:
        huggingface_hub.set_client_factory(default_client_factory)


def committed_files(hub: FakeHub) -> tuple[dict[str, bytes], list[dict]]:
    """The single commit's files with the bytes the Hub received (LFS objects included), and its operations."""
    [(_, _, lines)] = hub.commits
    header, operations = lines[0], lines[1:]
    assert header["key"] == "header"
    files = {}
    for op in operations:
        if op["key"] == "lfsFile":
            files[op["value"]["path"]] = hub.lfs_objects[op["value"]["oid"]]
            assert op["value"]["oid"] == hashlib.sha256(files[op["value"]["path"]]).hexdigest()
        else:
            assert op["key"] == "file"
            files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
    return files, operations


def check_commit(hub: FakeHub, output_dir: Path, expected: set[str]) -> list[dict]:
    """The single commit holds exactly the `expected` files, with the bytes of `output_dir`; returns its operations."""
    files, operations = committed_files(hub)
    assert set(files) == expected
    for path, content in files.items():
        assert content == (output_dir / path).read_bytes(), path
    return operations


def test_publish_uploads_the_repository_files_in_one_commit(trained, fake_hub):
    expected = set(repo_files(trained.output_dir))
    before, siblings = snapshot(trained.output_dir), sorted(trained.output_dir.parent.iterdir())
    url = publish(trained.output_dir, "fake-user/tiny-hdlm", revision="v1", token=TOKEN, commit_message="Release v1")

    assert url == f"{constants.ENDPOINT}/fake-user/tiny-hdlm/commit/" + url.rsplit("/", 1)[-1]
    uploads = Counter(fake_hub.calls).pop("lfs_put")
    steps = [call for call in fake_hub.calls if call != "lfs_put"]
    assert steps == ["create_repo", "create_branch", "validate_yaml", "preupload", "lfs_batch", "commit"]
    assert fake_hub.authorizations == {f"Bearer {TOKEN}"}
    assert [(repo["organization"], repo["name"], repo["visibility"]) for repo in fake_hub.created] == [
        ("fake-user", "tiny-hdlm", "public")
    ]
    assert fake_hub.branches == [("fake-user/tiny-hdlm", "v1")]
    assert [(repo, revision) for repo, revision, _ in fake_hub.commits] == [("fake-user/tiny-hdlm", "v1")]
    assert fake_hub.commits[0][2][0]["value"]["summary"] == "Release v1"
    operations = check_commit(fake_hub, trained.output_dir, expected)
    lfs = {op["value"]["path"] for op in operations if op["key"] == "lfsFile"}
    assert lfs == {name for name in expected if name.endswith((".safetensors", ".png"))} and uploads == len(lfs)
    assert snapshot(trained.output_dir) == before and sorted(trained.output_dir.parent.iterdir()) == siblings


def test_published_repository_loads_in_a_fresh_process_with_identical_predictions(trained, fake_hub, tmp_path):
    publish(trained.output_dir, "fake-user/tiny-hdlm", token=TOKEN)
    files, _ = committed_files(fake_hub)
    repository = tmp_path / "downloaded"
    for path, content in files.items():  # what a download of the repository would hold
        (repository / path).parent.mkdir(parents=True, exist_ok=True)
        (repository / path).write_bytes(content)
    script = (
        "import json, sys\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "assert type(model).__module__.startswith('transformers_modules'), type(model).__module__\n"
        "tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "outputs = model.generate_hierarchical(json.loads(sys.argv[2]), tokenizer)\n"
        "print(json.dumps([[o.path, [level.token_ids for level in o.levels]] for o in outputs]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(repository), json.dumps(TEXTS)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == trained.predictions


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_publish_names_the_missing_piece_and_sends_nothing(breakage, trained, fake_hub, tmp_path):
    output_dir = tmp_path / "tiny-hdlm"
    shutil.copytree(trained.output_dir, output_dir)
    damage, message = BREAKAGES[breakage]
    damage(output_dir)
    with pytest.raises(ValueError, match=message):
        repo_files(output_dir)
    with pytest.raises(ValueError, match=message):
        publish(output_dir, "fake-user/tiny-hdlm", token=TOKEN)
    assert fake_hub.calls == []


def test_failed_commit_names_the_repository_and_leaves_the_output_directory_alone(trained, fake_hub):
    before, siblings = snapshot(trained.output_dir), sorted(trained.output_dir.parent.iterdir())
    fake_hub.fail = "commit"
    with pytest.raises(RuntimeError, match=r"'fake-user/tiny-hdlm' failed while uploading \d+ files in one commit"):
        publish(trained.output_dir, "fake-user/tiny-hdlm", token=TOKEN)
    assert fake_hub.calls[-1] == "commit" and not fake_hub.commits
    assert snapshot(trained.output_dir) == before
    assert sorted(trained.output_dir.parent.iterdir()) == siblings


@pytest.mark.parametrize("case", ["HF_HUB_OFFLINE=1", "offline at import", "no token"])
def test_offline_or_missing_token_stops_before_any_request(case, fake_hub, monkeypatch, tmp_path):
    expected, message, token = OfflineModeIsEnabled, "offline mode is on", TOKEN
    if case == "no token":
        expected, message, token = LocalTokenNotFoundError, "hf auth login", None
    elif case == "HF_HUB_OFFLINE=1":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    elif case == "offline at import":
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # Checked first: an output directory that does not exist would otherwise be the error.
    with pytest.raises(expected, match=message):
        publish(tmp_path / "does-not-exist", "fake-user/tiny-hdlm", token=token)
    assert fake_hub.calls == []
    assert list(tmp_path.iterdir()) == []


def test_publish_script_parses_its_arguments_and_publishes(trained, fake_hub):
    [args] = make_parser().parse_args_and_config(
        args=["--output_dir", str(trained.output_dir), "--token", TOKEN, "--private", "true"]
    )
    assert args == PublishArguments(output_dir=str(trained.output_dir), token=TOKEN, private=True)
    url = publish_main(args)

    assert url.startswith(f"{constants.ENDPOINT}/fake-user/tiny-hdlm/commit/")  # the output directory's name
    assert fake_hub.created[0]["visibility"] == "private" and fake_hub.branches == []
    assert [(repo, revision) for repo, revision, _ in fake_hub.commits] == [("fake-user/tiny-hdlm", "main")]
    check_commit(fake_hub, trained.output_dir, set(repo_files(trained.output_dir)))


# -- train_hdlm.py --push_to_hub ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory, tokenizer) -> dict:
    root = tmp_path_factory.mktemp("push-task")
    tiny_base("llama", tokenizer).to(torch.float32).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    return {
        "base": str(root / "base"),
        "train": write_jsonl(root / "train.jsonl", synthetic_rows(32)),
        "test": write_jsonl(root / "test.jsonl", synthetic_rows(6, seed=1)),
    }


def test_train_with_push_to_hub_publishes_once_after_training(task, fake_hub, tmp_path, capsys):
    output_dir = tmp_path / "tiny-trained"
    args = train_args(task, output_dir, "--test_file", task["test"], "--max_steps", "2")
    args += ["--save_strategy", "steps", "--save_steps", "1"]  # checkpoints the Trainer would push
    args += ["--push_to_hub", "--hub_model_id", "fake-org/tiny-trained", "--hub_token", TOKEN]
    train_hdlm.main(*train_hdlm.make_parser().parse_args_and_config(args=args))

    assert (output_dir / "checkpoint-2" / "optimizer.pt").is_file()  # Trainer checkpoints, pickles included
    steps = [call for call in fake_hub.calls if call != "lfs_put"]
    assert steps == ["create_repo", "validate_yaml", "preupload", "lfs_batch", "commit"]
    assert [(repo, revision) for repo, revision, _ in fake_hub.commits] == [("fake-org/tiny-trained", "main")]
    operations = check_commit(fake_hub, output_dir, set(repo_files(output_dir)))
    paths = {op["value"]["path"] for op in operations}
    assert {"README.md", "model.safetensors", "modeling_hdlm.py", "eval/metrics.json"} <= paths
    assert not [path for path in paths if path.endswith(PICKLE_SUFFIXES) or path.startswith("checkpoint-")]
    assert "Published to https://" in capsys.readouterr().out


def test_train_with_push_to_hub_offline_fails_before_training(task, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = train_args(task, tmp_path / "never-written", "--push_to_hub", "--hub_token", TOKEN)
    with pytest.raises(OfflineModeIsEnabled):
        train_hdlm.main(*train_hdlm.make_parser().parse_args_and_config(args=args))
    assert not (tmp_path / "never-written").exists()
