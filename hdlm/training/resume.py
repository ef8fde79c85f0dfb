"""Resuming training: finding the last complete `checkpoint-<step>` folder, refusing an incomplete one."""

import json
import os
import re
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging

logger = logging.get_logger(__name__)

TRAINER_STATE = "trainer_state.json"  # the last file `Trainer._save_checkpoint` writes


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """
    Why the Trainer checkpoint `folder` cannot be resumed from, or None when it is complete.

    The Trainer writes a checkpoint's trainer state last, after the weights, optimizer, scheduler and RNG states: a
    save cut short (a kill, a full disk) leaves a folder without it, or with it truncated.
    """
    state_file = Path(folder) / TRAINER_STATE
    if not state_file.is_file():
        present = sorted(path.name for path in Path(folder).iterdir()) if Path(folder).is_dir() else []
        return f"it has no {TRAINER_STATE}, so its save was interrupted (it holds {present or 'nothing'})"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"its {TRAINER_STATE} does not parse ({error}), so its save was interrupted"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"its {TRAINER_STATE} holds no `global_step`"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The complete `checkpoint-<step>` folder of `output_dir` with the highest step; incomplete ones are skipped
    with a warning. None when there is none."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    folders = [path for path in Path(output_dir).iterdir() if path.is_dir()] if Path(output_dir).is_dir() else []
    steps = {int(match.group(1)): path for path in folders if (match := pattern.match(path.name))}
    for step in sorted(steps, reverse=True):
        problem = checkpoint_problem(steps[step])
        if problem is None:
            return str(steps[step])
        logger.warning(f"Skipping the incomplete checkpoint {steps[step]}: {problem}.")
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    The checkpoint `--resume_from_checkpoint` names: `true` is the last complete checkpoint in `output_dir` (none
    yet: training starts from the beginning, with a warning), `false` or None is none, anything else is a
    checkpoint folder, which must be complete.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).strip().lower() == "true":
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(
                f"`--resume_from_checkpoint true`: {output_dir} holds no complete checkpoint yet; training starts "
                "from the beginning."
            )
        else:
            logger.warning(f"Resuming from {checkpoint}, the last complete checkpoint in {output_dir}.")
        return checkpoint
    if str(resume_from_checkpoint).strip().lower() == "false":
        return None
    folder = Path(resume_from_checkpoint)
    if not folder.is_dir():
        raise ValueError(
            f"`--resume_from_checkpoint {resume_from_checkpoint}`: no such folder. Pass a `checkpoint-<step>` folder, "
            f"or `true` for the last complete checkpoint in `--output_dir` ({output_dir})."
        )
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise ValueError(
            f"`--resume_from_checkpoint {resume_from_checkpoint}` cannot be resumed from: {problem}. Pass an earlier "
            f"checkpoint, or `true` for the last complete one in `--output_dir` ({output_dir})."
        )
    return str(folder)
