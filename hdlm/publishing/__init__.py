"""Publishing HdLM checkpoints: the model card and the Hub upload."""

from .model_card import build_model_card

__all__ = ["build_model_card"]
