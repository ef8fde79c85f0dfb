"""Publishing HdLM checkpoints: the model card and the Hub upload."""

from .hub import publish, repo_files, require_hub_access
from .model_card import build_model_card

__all__ = ["build_model_card", "publish", "repo_files", "require_hub_access"]
