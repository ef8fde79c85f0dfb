"""Training HdLM models with TRL: building the model, tokenisation into levels, collation, the multi-level loss
trainer, resuming."""

from .collator import DataCollatorForHierarchicalLM
from .config import HdLMSFTConfig
from .model_building import HdLMArguments, default_level_layers, load_hdlm_model
from .preprocessing import tokenize_hierarchical
from .resume import resolve_resume_checkpoint
from .trainer import HdLMSFTTrainer

__all__ = [
    "DataCollatorForHierarchicalLM",
    "HdLMArguments",
    "HdLMSFTConfig",
    "HdLMSFTTrainer",
    "default_level_layers",
    "load_hdlm_model",
    "resolve_resume_checkpoint",
    "tokenize_hierarchical",
]
