"""Decoding with trained checkpoints: the shared decoding options, and predicting on unlabeled rows at scale."""
