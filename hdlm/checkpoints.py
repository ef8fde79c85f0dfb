"""Checks of a local HdLM checkpoint folder before transformers reads it, so that a broken one is explained by the
file and the fix rather than by a Hub URL or a "Transformers is out of date" message."""

import json
from pathlib import Path

REMOTE_CODE_FILES = (
    "beam_hdlm.py",
    "configuration_hdlm.py",
    "decoding_hdlm.py",
    "generation_hdlm.py",
    "modeling_hdlm.py",
    "rendering_hdlm.py",
    "taxonomy_hdlm.py",
)
AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM")
RESAVE = "save the model again with `HdLMForCausalLM.save_pretrained(folder)` (train_hdlm.py does it)"


def remote_code_files(config: dict) -> list[str]:
    """
    The code files a checkpoint's `config.json` needs beside it: the model's, and the module of each pipeline it
    names under `custom_pipelines` (`pipeline_hdlm.py`; checkpoints saved before the pipeline existed name none).
    """
    pipelines = config.get("custom_pipelines") or {}
    modules = [f"{info['impl'].rsplit('.', 1)[0]}.py" for info in pipelines.values() if isinstance(info, dict)]
    return [*REMOTE_CODE_FILES, *sorted(set(modules) - set(REMOTE_CODE_FILES))]


def check_hdlm_checkpoint(path: str | Path) -> None:
    """
    Raise `ValueError` naming the file and the fix when the local folder `path` holds an HdLM checkpoint that
    `AutoModel.from_pretrained(path, trust_remote_code=True)` cannot load: no `config.json`, a config that does not
    parse, no `auto_map`, or a remote-code file missing. A path that is not a local folder (a Hub id) is left to
    transformers; truncated weights are named by `HdLMForCausalLM.from_pretrained` itself.
    """
    folder = Path(path)
    if not folder.is_dir():
        return
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{config_file} is missing: {folder} is not a saved model. Pass the `--output_dir` that train_hdlm.py "
            "wrote (or one of its `checkpoint-<step>` folders)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_file} is not valid JSON ({error}): {RESAVE}.") from None
    if not isinstance(config, dict) or config.get("model_type") != "hdlm":
        return
    auto_map = config.get("auto_map") or {}
    if absent := [name for name in AUTO_CLASSES if name not in auto_map]:
        raise ValueError(
            f"{config_file} has no `auto_map` entry for {', '.join(absent)}, so `trust_remote_code=True` cannot find "
            f"the HdLM classes beside it: {RESAVE}, which writes it."
        )
    for name in remote_code_files(config):
        if not (folder / name).is_file():
            raise ValueError(
                f"{folder / name} is missing: the HdLM code that `trust_remote_code=True` loads lies beside "
                f"config.json. Copy it from the hdlm repository's root, or {RESAVE}."
            )
