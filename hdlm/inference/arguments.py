"""The decoding options every decoding script takes (`eval_hdlm.py`, `predict_hdlm.py`), parsed by `TrlParser`."""

import dataclasses
from dataclasses import dataclass, field

import torch

from generation_hdlm import HierarchicalGenerationConfig


@dataclass
class DecodingArguments:
    """How to load a checkpoint and decode with it: the fields shared with `HierarchicalGenerationConfig`, the
    weights' dtype and the sampling seed."""

    strategy: str = field(default="greedy", metadata={"help": "`greedy` (token by token) or `rank` (exact)."})
    constrained: bool = field(default=True, metadata={"help": "Restrict label levels to the taxonomy."})
    early_exit: bool = field(default=True, metadata={"help": "Decode each level with its first layers only."})
    top_k: int = field(default=1, metadata={"help": "With `rank`, record the top-k labels of each level."})
    top_k_paths: int = field(
        default=1, metadata={"help": "Record the N most probable label paths (a beam over the taxonomy) per row."}
    )
    batch_size: int = field(default=16, metadata={"help": "Examples decoded together."})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights' dtype while decoding: `auto` is bfloat16 where the device has bf16 matrix units (a GPU "
            "with bf16, a CPU with AVX-512 BF16 or AMX) and float32 elsewhere; or `float32`, `bfloat16`, `checkpoint` "
            "(as saved)."
        },
    )
    max_new_tokens: int = field(default=64, metadata={"help": "The most tokens a free-text level may take."})
    do_sample: bool = field(default=False, metadata={"help": "Sample free-text levels (seeded by `--seed`)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of free-text levels."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold of free-text levels."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty of free-text levels."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling (and of any random draw of rows)."})
    trust_remote_code: bool = field(default=True, metadata={"help": "Load the checkpoints' own HdLM code."})

    def generation_config(self, device: torch.device) -> HierarchicalGenerationConfig:
        """
        The decoding options: the fields these arguments share with `HierarchicalGenerationConfig`, and a sampling
        generator on `device` seeded by `seed` when sampling.
        """
        options = {option.name for option in dataclasses.fields(HierarchicalGenerationConfig)}
        shared = {name: getattr(self, name) for name in options & {option.name for option in dataclasses.fields(self)}}
        generator = torch.Generator(device=device).manual_seed(self.seed) if self.do_sample else None
        return HierarchicalGenerationConfig(**shared, generator=generator)
