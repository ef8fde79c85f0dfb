"""Fitting one temperature per label level on held-out rows, so that the label probabilities decoding reports are
calibrated (`HdLMConfig.level_temperatures`).

A label's probability under constrained decoding is the product of its tokens' probabilities among the tokens the
taxonomy allows at each step. Dividing the level's logits by a temperature `T` changes those probabilities and never
the chosen token. The fit is teacher-forced: one forward per row over `[query; gold path]` collects, at every gold
label token, the logits of the allowed tokens; `T` then minimises the gold labels' negative log-likelihood.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

# log T is searched in [log 1/20, log 20]: wider than any fitted temperature we have seen, and bounded so that a
# level the model always gets right (NLL falling as T -> 0) stops at a finite value.
LOG_TEMPERATURE_BOUND = math.log(20.0)


@dataclass
class GoldLabelLogits:
    """One label level's teacher-forced logits: per gold label token, the allowed tokens' logits (others `-inf`)."""

    logits: torch.Tensor
    """`(tokens, level vocabulary)` float32 logits, `-inf` where the taxonomy forbids the token."""
    targets: torch.Tensor
    """`(tokens,)` the column of each gold token."""
    labels: torch.Tensor
    """`(tokens,)` which gold label (0 .. `num_labels - 1`) each token belongs to."""
    num_labels: int

    def label_log_probabilities(self, temperature: float = 1.0) -> torch.Tensor:
        """Each gold label's log-probability among the allowed labels at `temperature`: `(num_labels,)`."""
        token_log_probs = (self.logits / temperature).log_softmax(-1).gather(-1, self.targets[:, None]).squeeze(-1)
        return torch.zeros(self.num_labels, dtype=token_log_probs.dtype).index_add_(0, self.labels, token_log_probs)

    def nll(self, temperature: float = 1.0) -> float:
        """The mean negative log-likelihood of the gold labels at `temperature`."""
        return -self.label_log_probabilities(temperature).mean().item()


@torch.no_grad()
def gold_label_logits(
    model,
    tokenizer,
    texts: Sequence[str],
    paths: Sequence[Sequence[str]],
    batch_size: int = 8,
    show_progress: bool = False,
) -> list[GoldLabelLogits]:
    """
    Teacher-forced logits of every label level of `model` (an [`HdLMForCausalLM`] with a taxonomy) at the gold label
    tokens of `paths`, rendered after `texts` as training renders them. Rows whose path the taxonomy does not hold
    are skipped (logged): decoding could never give their labels a probability.
    """
    config = model.config
    if not config.taxonomy:
        raise ValueError("Calibration fits the label levels' probabilities: the model has no taxonomy.")
    depth = config.num_label_levels
    known = {tuple(path[: level + 1]) for path in config.taxonomy for level in range(depth)}
    rows = [(text, list(path[:depth])) for text, path in zip(texts, paths) if tuple(path[:depth]) in known]
    if len(rows) < len(texts):
        logger.warning(f"{len(texts) - len(rows)} of {len(texts)} calibration rows have a path outside the taxonomy.")
    if not rows:
        raise ValueError(
            "No calibration row has a label path of the model's taxonomy: pass held-out rows of its data."
        )
    renderer = model.get_renderer(tokenizer)
    trie = model.label_trie(renderer)
    device = model.get_input_embeddings().weight.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    layers = sorted(set(config.level_layers[:depth]))
    collected = [{"hidden": [], "nodes": [], "tokens": [], "labels": []} for _ in range(depth)]
    label_counts = [0] * depth
    for start in tqdm(range(0, len(rows), batch_size), desc="Calibration rows", disable=not show_progress):
        chunk = rows[start : start + batch_size]
        encoded = [renderer.encode_example(text, path) for text, path in chunk]
        length = max(len(ids) for ids, _ in encoded)
        input_ids = torch.tensor([ids + [pad_id] * (length - len(ids)) for ids, _ in encoded], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in encoded], device=device)
        hidden_states = model.model.base_model(
            input_ids=input_ids, attention_mask=mask, output_hidden_states=layers
        ).hidden_states
        for row, ((ids, level_ids), (_, path)) in enumerate(zip(encoded, chunk)):
            for level in range(len(path)):  # a partial path (allow_partial_paths) has fewer levels
                columns = [index for index, value in enumerate(level_ids) if value == level + 1]
                tokens = [ids[index] for index in columns]
                nodes, _ = trie.walk(level, path[:level], tokens)
                store = collected[level]
                store["hidden"].append(hidden_states[config.level_layers[level]][row, [c - 1 for c in columns]])
                store["nodes"].extend(nodes)
                store["tokens"].extend(tokens)
                store["labels"].extend([label_counts[level]] * len(tokens))
                label_counts[level] += 1
    levels = []
    for level, store in enumerate(collected):
        vocabulary = torch.tensor(trie.vocabularies[level], device=device)
        allowed = trie.allowed_mask(level, device)[torch.tensor(store["nodes"], device=device)]
        logits = model.head_logits(level, torch.cat(store["hidden"]), vocabulary).masked_fill(~allowed, float("-inf"))
        targets = torch.searchsorted(vocabulary, torch.tensor(store["tokens"], device=device))
        levels.append(
            GoldLabelLogits(logits.float().cpu(), targets.cpu(), torch.tensor(store["labels"]), label_counts[level])
        )
    return levels


def fit_temperature(level: GoldLabelLogits) -> float:
    """The temperature that minimises `level`'s gold-label NLL (a bounded 1-D search over log T)."""
    result = minimize_scalar(
        lambda log_t: level.nll(math.exp(log_t)),
        bounds=(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return math.exp(result.x) if result.fun <= level.nll(1.0) else 1.0


def fit_level_temperatures(
    model, tokenizer, texts: Sequence[str], paths: Sequence[Sequence[str]], **options
) -> dict[str, list[float]]:
    """
    One temperature per label level, fitted on the held-out `texts` and gold `paths` (`options`: `gold_label_logits`'
    `batch_size` and `show_progress`); sets `model.config.level_temperatures` (saved with the model) and returns
    `temperatures`, `nll_before` (at the temperatures the model had) and `nll_after` per level.
    """
    levels = gold_label_logits(model, tokenizer, texts, paths, **options)
    before = list(model.config.level_temperatures or [1.0] * len(levels))
    temperatures = [fit_temperature(level) for level in levels]
    model.config.level_temperatures = temperatures
    return {
        "temperatures": temperatures,
        "nll_before": [level.nll(t) for level, t in zip(levels, before)],
        "nll_after": [level.nll(t) for level, t in zip(levels, temperatures)],
    }


__all__ = ["GoldLabelLogits", "fit_level_temperatures", "fit_temperature", "gold_label_logits"]
