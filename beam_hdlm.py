"""Whole candidate labels scored on copies of the shared key/value cache: `strategy="rank"`, and the beam over the
taxonomy's label paths behind `top_k_paths`.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only torch,
transformers and its sibling files `generation_hdlm` and `taxonomy_hdlm`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import Cache

try:
    from .generation_hdlm import HierarchicalLevel, HierarchicalOutput
except ImportError:  # imported as a top-level module from a source checkout
    from generation_hdlm import HierarchicalLevel, HierarchicalOutput

if TYPE_CHECKING:
    try:
        from .decoding_hdlm import HierarchicalDecoder
    except ImportError:
        from decoding_hdlm import HierarchicalDecoder


def select_rows(cache: Cache, rows: torch.Tensor) -> Cache:
    """A new cache holding `rows` of `cache` (rows may repeat); `cache` itself is left as it is."""
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(rows)
    return selected


def candidate_scores(
    decoder: HierarchicalDecoder,
    level: int,
    paths: Sequence[Sequence[str]],
    hidden: torch.Tensor,
    allowed_only: bool = False,
    temperature: float = 1.0,
) -> tuple[list[tuple[int, str, list[int]]], list[float], list[float]]:
    """
    Every label the taxonomy allows at `level` below each row's path, scored exactly from `hidden` (the hidden state
    after the level's layer at each row's last column of `decoder`'s cache).

    Returns the candidates `(row, label, token ids)`, the sum of each one's token log-probabilities, and the same sum
    with the logits divided by `temperature`. The log-probabilities are over the level head's rows, or with
    `allowed_only` among the tokens the label trie allows at each step (what constrained greedy decoding chooses
    among: the labels' probabilities then sum to 1 below each path). Candidates run batched on copies of their rows'
    cache, through the first `k_d` layers with early exit.
    """
    layer = decoder.config.level_layers[level]
    stop = layer if decoder.options.early_exit else decoder.num_layers
    trie, device = decoder.trie, decoder.device
    candidates = [(row, label, ids) for row, path in enumerate(paths) for label, ids in trie.labels(level, path)]
    vocabulary = torch.tensor(trie.vocabularies[level], device=device)
    scores: list[float] = []
    tempered: list[float] = []
    for start in range(0, len(candidates), decoder.rank_chunk):
        chunk = candidates[start : start + decoder.rank_chunk]
        rows = torch.tensor([row for row, _, _ in chunk], device=device)
        answers = [ids for _, _, ids in chunk]
        length = max(len(ids) for ids in answers)
        ids = torch.tensor([ids + [decoder.pad_id] * (length - len(ids)) for ids in answers], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids in answers], device=device)
        history = decoder.attention_mask[rows]
        positions = history.sum(1, keepdim=True) + torch.arange(length, device=device)
        decoder._check_positions(positions)
        outputs = decoder._run(
            ids, 0, stop, layer, positions, select_rows(decoder.cache, rows), torch.cat([history, mask], dim=1)
        )
        predicting = torch.cat([hidden[rows, None], outputs[:, :-1]], dim=1)
        # padded with each answer's last token (one of the head's vocabulary, allowed where it was chosen); masked out
        answer_ids = torch.tensor([ids + [ids[-1]] * (length - len(ids)) for ids in answers], device=device)
        if allowed_only:
            visited = [trie.walk(level, paths[row], ids)[0] for row, _, ids in chunk]
            nodes = torch.tensor([nodes + [nodes[-1]] * (length - len(nodes)) for nodes in visited], device=device)
            allowed = trie.allowed_mask(level, device)[nodes]
            logits = decoder.model.head_logits(level, predicting, vocabulary).masked_fill(~allowed, float("-inf"))
            columns = torch.searchsorted(vocabulary, answer_ids)
        else:
            logits = decoder.model.head_logits(level, predicting)
            columns = decoder.model.head_columns(level, answer_ids)
        for sums, scale in ((scores, 1.0), (tempered, temperature)):
            token_log_probs = (logits / scale).log_softmax(-1).gather(-1, columns[..., None]).squeeze(-1)
            sums.extend(torch.where(mask.bool(), token_log_probs, 0.0).sum(1).tolist())
    return candidates, scores, tempered


@dataclass
class _Hypothesis:
    """One path of the beam: the input it answers, its label levels, its log-probability and the tokens fed so far."""

    source: int
    levels: list[HierarchicalLevel] = field(default_factory=list)
    log_probability: float = 0.0
    history: list[int] = field(default_factory=list)

    @property
    def path(self) -> list[str]:
        return [level.label for level in self.levels]


class TaxonomyBeam:
    """
    A beam of width `top_k_paths` over the taxonomy, label level by label level, on `decoder`'s shared cache.

    Each hypothesis is a row of the cache. At each label level every label allowed below a hypothesis' path is
    scored exactly (`candidate_scores`); a label's probability among them is the product of its tokens'
    probabilities among the allowed tokens (greedy) or the softmax of the candidates' log-likelihoods (rank), both
    with the level's temperature. The `width` most probable extended paths of each input survive, and their rows of
    the cache are copied for the next level. Text levels are then decoded for each input's best path only.
    """

    def __init__(self, decoder: HierarchicalDecoder, width: int):
        self.decoder = decoder
        self.width = width

    def decode(self, prompts: list[list[int]]) -> list[HierarchicalOutput]:
        decoder = self.decoder
        pending = decoder.start(prompts)
        hypotheses = [_Hypothesis(index, history=list(prompt)) for index, prompt in enumerate(prompts)]
        for level in range(decoder.config.num_label_levels):
            headers = [decoder.renderer.header_ids(level, h.path) for h in hypotheses]
            segments = [row + header for row, header in zip(pending, headers)]
            for hypothesis, header in zip(hypotheses, headers):
                hypothesis.history.extend(header)
            hidden = decoder._append(segments, decoder.num_layers, decoder.config.level_layers[level])[:, -1]
            hypotheses = self._extend(level, hypotheses, hidden)
            pending = [list(h.levels[-1].token_ids) for h in hypotheses]
        best = [index for index, h in enumerate(hypotheses) if index == 0 or hypotheses[index - 1].source != h.source]
        outputs = []
        for start, stop in zip(best, best[1:] + [len(hypotheses)]):
            ranked = hypotheses[start:stop]
            top_paths = [(h.path, math.exp(h.log_probability)) for h in ranked]
            outputs.append(HierarchicalOutput(levels=list(ranked[0].levels), top_paths=top_paths))
        if decoder.config.num_label_levels < decoder.config.num_levels:
            decoder.keep_rows(best)
            decoder.history = [hypotheses[index].history + pending[index] for index in best]
            levels = range(decoder.config.num_label_levels, decoder.config.num_levels)
            decoder.decode_levels(levels, outputs, [pending[index] for index in best])
        return outputs

    def _extend(self, level: int, hypotheses: list[_Hypothesis], hidden: torch.Tensor) -> list[_Hypothesis]:
        """The `width` most probable one-label extensions of each input's hypotheses, best first, input by input."""
        decoder = self.decoder
        temperature = decoder.temperatures[level]
        greedy = decoder.options.strategy == "greedy"
        paths = [h.path for h in hypotheses]
        candidates, scores, tempered = candidate_scores(decoder, level, paths, hidden, greedy, temperature)
        if greedy:
            log_probabilities = tempered
        else:  # the softmax of each hypothesis' candidates' log-likelihoods
            log_probabilities = [0.0] * len(candidates)
            for row in range(len(hypotheses)):
                mine = [index for index, (r, _, _) in enumerate(candidates) if r == row]
                normalised = (torch.tensor([scores[index] for index in mine]) / temperature).log_softmax(0)
                for index, value in zip(mine, normalised.tolist()):
                    log_probabilities[index] = value
        by_source: dict[int, list[tuple[float, int]]] = {}
        for index, (row, _, _) in enumerate(candidates):
            total = hypotheses[row].log_probability + log_probabilities[index]
            by_source.setdefault(hypotheses[row].source, []).append((total, index))
        kept = [pair for source in sorted(by_source) for pair in sorted(by_source[source], reverse=True)[: self.width]]
        name = decoder.config.level_names[level]
        extended = []
        for total, index in kept:
            row, label, ids = candidates[index]
            parent = hypotheses[row]
            probability = math.exp(log_probabilities[index])
            item = HierarchicalLevel(
                name, "label", label, list(ids), scores[index], label=label, probability=probability
            )
            extended.append(_Hypothesis(parent.source, parent.levels + [item], total, list(parent.history)))
        decoder.keep_rows([candidates[index][0] for _, index in kept])
        return extended


__all__ = ["TaxonomyBeam", "candidate_scores", "select_rows"]
