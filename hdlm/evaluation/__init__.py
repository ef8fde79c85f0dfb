"""Evaluation of hierarchical predictions: label-path metrics, free-text metrics and TF-IDF baselines."""
