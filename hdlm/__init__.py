"""Training, evaluation, data and publishing tools for HdLM models (never needed to load a model)."""
