"""Checks of a local HdLM checkpoint folder before transformers reads it, so that a broken one is explained by the
file and the fix rather than by a Hub URL or a "Transformers is out of date" message."""

import json
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_imports

AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM")
RESAVE = "save the model again with `HdLMForCausalLM.save_pretrained(folder)` (train_hdlm.py does it)"


def remote_code_files(folder: str | Path, config: dict) -> list[str]:
    """
    The code files the checkpoint in `folder` needs beside its `config.json`: the modules its `auto_map` and
    `custom_pipelines` name, and every sibling those import, as the checkpoint's own code imports them (what
    `trust_remote_code=True` copies), so that a checkpoint saved by an older version asks for its own files only.
    """
    folder = Path(folder)
    references = list((config.get("auto_map") or {}).values())
    references += [info.get("impl", "") for info in (config.get("custom_pipelines") or {}).values()]
    pending = sorted({f"{ref.split('--')[-1].rsplit('.', 1)[0]}.py" for ref in references if isinstance(ref, str)})
    needed: set[str] = set()
    while pending:
        name = pending.pop()
        needed.add(name)
        if (folder / name).is_file():
            imported = {f"{module}.py" for module in get_relative_imports(str(folder / name))}
            pending.extend(sorted(imported - needed - set(pending)))
    return sorted(needed)


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
    for name in remote_code_files(folder, config):
        if not (folder / name).is_file():
            raise ValueError(
                f"{folder / name} is missing: the HdLM code that `trust_remote_code=True` loads lies beside "
                f"config.json. Copy it from the hdlm repository's root, or {RESAVE}."
            )
