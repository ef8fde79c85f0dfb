"""Batching of tokenised hierarchical examples."""

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DataCollatorForHierarchicalLM:
    """
    Right-pads `input_ids`, `labels` and `level_ids` into tensors and builds the attention mask.

    Padding carries label -100 and level 0, so it never counts in any level's loss.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([list(e[key]) + [value] * (length - len(e[key])) for e in examples])

        return {
            "input_ids": pad("input_ids", self.pad_token_id),
            "attention_mask": torch.tensor(
                [[1] * len(e["input_ids"]) + [0] * (length - len(e["input_ids"])) for e in examples]
            ),
            "labels": pad("labels", -100),
            "level_ids": pad("level_ids", 0),
        }
