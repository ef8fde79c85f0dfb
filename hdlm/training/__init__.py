"""Training HdLM models with TRL: tokenisation into levels, collation, the multi-level loss trainer."""

from .collator import DataCollatorForHierarchicalLM
from .preprocessing import tokenize_hierarchical
from .trainer import HdLMSFTConfig, HdLMSFTTrainer

__all__ = ["DataCollatorForHierarchicalLM", "HdLMSFTConfig", "HdLMSFTTrainer", "tokenize_hierarchical"]
