"""
Publishing a trained HdLM to the Hugging Face Hub: the checkpoint, its remote code, the model card and the evaluation
results, checked and uploaded in a single commit.

`PreTrainedModel.push_to_hub` writes its own model card over ours, and the Trainer's pushes upload whatever lies in
`output_dir` (pickled optimizer states included), so neither is used.
"""

import json
import logging
import os
from pathlib import Path

import httpx2
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

from ..checkpoints import AUTO_CLASSES, remote_code_files

logger = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
# What a model repository holds, as patterns relative to the output directory; nothing else is ever uploaded (no
# pickles: training_args.bin, optimizer / scheduler / RNG states, checkpoint-* folders stay local).
REPO_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.py",
    *TOKENIZER_FILES,
    "README.md",
    "eval/metrics.json",
    "eval/predictions.jsonl",
    "eval/*.png",
)
DEFAULT_COMMIT_MESSAGE = "Upload HdLM checkpoint, remote code, model card and evaluation results"


def is_offline() -> bool:
    """Whether huggingface_hub is in offline mode, as set at import or in the environment now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or value.upper() in constants.ENV_VARS_TRUE_VALUES


def require_hub_access(token: str | None = None) -> str:
    """
    The token to publish with. Raises before any work is done when offline mode is on or no token is available, so
    that a training run asked to publish fails at its start rather than after training.
    """
    if is_offline():
        raise OfflineModeIsEnabled(
            "Cannot publish to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). "
            "Unset it, or train without `--push_to_hub` and run `publish_hdlm.py` later from a connected machine."
        )
    token = token or get_token()
    if not token:
        raise LocalTokenNotFoundError(
            "Cannot publish to the Hugging Face Hub: no token found. Run `hf auth login`, set HF_TOKEN, or pass a "
            "token with write access (`--hub_token` / `--token`)."
        )
    return token


def _missing(path: Path, fix: str) -> ValueError:
    return ValueError(f"{path} is missing: {fix}")


def _existing_dir(output_dir: str | Path) -> Path:
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ValueError(f"{output_dir} is not a directory: pass the `--output_dir` that train_hdlm.py wrote.")
    return output_dir


def repo_files(output_dir: str | Path) -> list[str]:
    """
    The files of `output_dir` that belong in its model repository (paths relative to it, sorted), after checking that
    they make a complete one: config with `auto_map`, remote code, safetensors weights, tokenizer and a model card
    whose YAML metadata parses. Raises `ValueError` naming the file and the fix otherwise.
    """
    output_dir = _existing_dir(output_dir)
    resave = "save the model with `HdLMForCausalLM.save_pretrained(output_dir)` (train_hdlm.py does it)."

    config_path = output_dir / "config.json"
    if not config_path.is_file():
        raise _missing(config_path, f"{resave} With LoRA, keep `--merge_adapters true`.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    auto_map = config.get("auto_map") or {}
    absent = [name for name in AUTO_CLASSES if name not in auto_map]
    if absent:
        raise ValueError(
            f"{config_path} has no `auto_map` entry for {', '.join(absent)}: the repository would not load with "
            f"`trust_remote_code=True`; {resave}"
        )
    for name in remote_code_files(output_dir, config):
        if not (output_dir / name).is_file():
            raise _missing(output_dir / name, f"the remote code is copied beside config.json when you {resave}")

    weights = sorted(output_dir.glob("*.safetensors"))
    if not weights:
        raise ValueError(
            f"{output_dir} has no *.safetensors weights (pickled *.bin / *.pt weights are never published): {resave}"
        )
    for index_path in output_dir.glob("*.safetensors.index.json"):
        shards = set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values())
        absent = sorted(shards - {path.name for path in weights})
        if absent:
            raise _missing(output_dir / absent[0], f"{index_path.name} lists it; {resave}")

    if not any((output_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"{output_dir} has no tokenizer files (tokenizer_config.json, tokenizer.json, ...): save the tokenizer "
            "beside the model with `tokenizer.save_pretrained(output_dir)`."
        )

    card_path = output_dir / "README.md"
    if not card_path.is_file():
        raise _missing(card_path, "write the model card with `build_model_card(...).save(output_dir / 'README.md')`.")
    try:
        card_data = ModelCard(card_path.read_text(encoding="utf-8")).data.to_dict()
    except (yaml.YAMLError, ValueError) as err:  # ValueError: metadata not a mapping, or invalid `model-index`
        raise ValueError(f"{card_path} has invalid YAML metadata ({err}): build it with `build_model_card`.") from err
    if not card_data:
        raise ValueError(f"{card_path} has no YAML metadata block: build the card with `build_model_card`.")

    files = {path for pattern in REPO_PATTERNS for path in output_dir.glob(pattern) if path.is_file()}
    return sorted(path.relative_to(output_dir).as_posix() for path in files)


def publish(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """
    Publish the trained HdLM in `output_dir` to the model repository `repo_id` (created if needed; a name without a
    namespace goes to the token's user) in one commit, on branch `revision` (created if needed) or `main`.

    Offline mode and a missing token are reported before anything else is done. The files of `repo_files` are
    uploaded from where they lie; `output_dir` is never modified. Returns the commit URL.
    """
    token = require_hub_access(token)
    output_dir = _existing_dir(output_dir)
    files = repo_files(output_dir)
    api = HfApi(token=token)
    operations = [CommitOperationAdd(name, path_or_fileobj=output_dir / name) for name in files]
    step = "creating the repository"
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None and revision != constants.DEFAULT_REVISION:
            step = f"creating the branch {revision!r}"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        step = f"uploading {len(files)} files in one commit"
        # `create_commit`, not `upload_folder`: with hf_xet installed the latter may split a folder into several
        # commits, and a repository must never show a checkpoint without its card.
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            revision=revision,
        )
    except (HfHubHTTPError, httpx2.TransportError) as err:
        raise RuntimeError(
            f"Publishing {output_dir} to the Hub repository {repo_id!r} failed while {step}: {err}\n"
            f"Nothing in {output_dir} was changed; fix the cause and run `publish_hdlm.py` again."
        ) from err
    logger.info(f"Published {output_dir} to {repo_id}: {commit.commit_url}")
    return commit.commit_url
