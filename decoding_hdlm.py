"""Hierarchical decoding: level by level on one shared key/value cache, with early exit and label constraints.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only torch,
transformers and its sibling files `beam_hdlm`, `early_exit_hdlm`, `generation_hdlm`, `rendering_hdlm` and
`taxonomy_hdlm`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache

try:
    from .beam_hdlm import TaxonomyBeam, candidate_scores, select_rows
    from .early_exit_hdlm import cache_view, running_layers
    from .generation_hdlm import HierarchicalGenerationConfig, HierarchicalLevel, HierarchicalOutput, prompt_ids
    from .rendering_hdlm import HdLMRenderer
    from .taxonomy_hdlm import LabelNode
except ImportError:  # imported as a top-level module from a source checkout
    from beam_hdlm import TaxonomyBeam, candidate_scores, select_rows
    from early_exit_hdlm import cache_view, running_layers
    from generation_hdlm import HierarchicalGenerationConfig, HierarchicalLevel, HierarchicalOutput, prompt_ids
    from rendering_hdlm import HdLMRenderer
    from taxonomy_hdlm import LabelNode


# -- the decoder ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedPrefix:
    """The tokens every prompt of a `generate` call starts with, and the cache, mask and positions after them."""

    tokens: list[int]
    cache: Cache
    attention_mask: torch.Tensor
    positions: torch.Tensor


class HierarchicalDecoder:
    """
    Decodes batches of prompts level by level on one shared key/value cache.

    State per batch: the cache, and per column of it the attention mask and position id. With early exit, the
    tokens of level `d` go through the first `k_d` layers only; the deeper layers lag behind until `_fill` runs
    them over the level's tokens, from the saved outputs of layer `k_d`, in one parallel pass.

    `model` is an [`HdLMForCausalLM`]; `options` are checked against it here.
    """

    def __init__(self, model: PreTrainedModel, renderer: HdLMRenderer, options: HierarchicalGenerationConfig):
        self.model = model
        self.config = model.config
        self.renderer = renderer
        self.options = options
        if options.constrained and self.config.taxonomy_token_ids is not None:
            if renderer.taxonomy_token_ids() != self.config.taxonomy_token_ids:
                raise ValueError(
                    "This tokenizer renders the taxonomy's labels into other tokens than the model was built with "
                    "(`config.taxonomy_token_ids`): pass the model's own tokenizer."
                )
        self.trie = model.label_trie(renderer) if options.constrained and self.config.taxonomy else None
        self.processors = options.logits_processors()
        self.num_layers = self.config.text_config.num_hidden_layers
        tokenizer = renderer.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.device = model.get_input_embeddings().weight.device
        self.rank_chunk = 16
        self.temperatures = list(self.config.level_temperatures or [1.0] * self.config.num_label_levels)
        self.prefix: SharedPrefix | None = None

    def generate(
        self, inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
    ) -> list[HierarchicalOutput]:
        """The hierarchical answer of each input, in input order, decoded in batches of similar lengths."""
        prompts = prompt_ids(inputs, self.renderer)
        vocab_size = self.model.get_input_embeddings().num_embeddings
        limit = self.model.max_positions
        for index, prompt in enumerate(prompts):
            if outside := [token for token in prompt if not 0 <= token < vocab_size]:
                raise ValueError(
                    f"`inputs[{index}]` holds token ids outside the vocabulary (0..{vocab_size - 1}): {outside[:5]}. "
                    "Pass token ids made by the model's tokenizer, or the text itself."
                )
            if limit is not None and len(prompt) >= limit:
                raise ValueError(
                    f"`inputs[{index}]` takes {len(prompt)} tokens, and the model encodes at most {limit} positions "
                    "(`max_position_embeddings`): set `model.config.max_query_tokens` so that queries are cut "
                    "(train_hdlm.py sets it from `--max_length`), or shorten the input."
                )
        self.prefix = self._run_shared_prefix(prompts)
        # Batches of similar lengths waste little on padding; results come back in input order.
        order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
        results: list[HierarchicalOutput | None] = [None] * len(prompts)
        batch_size = self.options.batch_size
        decode = TaxonomyBeam(self, self.options.top_k_paths).decode if self.options.top_k_paths > 1 else self.decode
        with tqdm(total=len(prompts), desc="Decoding", unit="row", disable=not self.options.show_progress) as bar:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                for index, output in zip(indices, decode([prompts[index] for index in indices])):
                    if self.options.abstain_threshold is not None:
                        output.abstain(self.options.abstain_threshold)
                    results[index] = output
                bar.update(len(indices))
        return results

    def start(self, prompts: list[list[int]]) -> list[list[int]]:
        """
        Start a batch: the cache, attention mask and positions of the prompts' shared prefix (or empty ones), and
        each row's tokens so far (its prompt). Returns each prompt's tokens that the cache does not hold yet.
        """
        self.history = [list(prompt) for prompt in prompts]
        prefix = self.prefix
        if prefix is None or any(prompt[: len(prefix.tokens)] != prefix.tokens for prompt in prompts):
            self.cache = DynamicCache(config=self.config.text_config)
            self.attention_mask = torch.zeros(len(prompts), 0, dtype=torch.long, device=self.device)
            self.positions = torch.zeros(len(prompts), 0, dtype=torch.long, device=self.device)
            return [list(prompt) for prompt in prompts]
        self.cache, self.attention_mask, self.positions = prefix.cache, prefix.attention_mask, prefix.positions
        self.keep_rows([0] * len(prompts))  # new tensors: the prefix's own stay as they are
        return [list(prompt[len(prefix.tokens) :]) for prompt in prompts]

    def _run_shared_prefix(self, prompts: list[list[int]]) -> SharedPrefix | None:
        """
        Run the tokens that every prompt starts with (the instruction and the template's opening) through all layers
        once, for every batch to start from; None for a single prompt, or where the prompts share no token (at least
        one token of each prompt is left to the batch).
        """
        if len(prompts) < 2:
            return None
        first, length = prompts[0], min(len(prompt) for prompt in prompts) - 1
        for prompt in prompts[1:]:
            length = next((index for index in range(length) if prompt[index] != first[index]), length)
        if length < 1:
            return None
        self.prefix = None
        self.start([first[:length]])
        self._append([first[:length]], self.num_layers, None)
        return SharedPrefix(first[:length], self.cache, self.attention_mask, self.positions)

    def decode(self, prompts: list[list[int]]) -> list[HierarchicalOutput]:
        pending = self.start(prompts)
        outputs = [HierarchicalOutput() for _ in prompts]
        self.decode_levels(range(self.config.num_levels), outputs, pending)
        return outputs

    def decode_levels(self, levels: range, outputs: list[HierarchicalOutput], pending: list[list[int]]) -> None:
        """
        Decode `levels` of every row of the batch, appending them to `outputs` (which hold the levels above), from
        `pending`: the tokens of each row not yet fed to the cache. A row whose level ends with the stop marker (a
        partial path) leaves the batch there.
        """
        live = list(range(len(outputs)))  # the rows still decoding, in the order of the cache's rows
        paths = [list(output.path) for output in outputs]
        for level in levels:
            layer = self.config.level_layers[level]
            live_paths = [paths[row] for row in live]
            headers = [self.renderer.header_ids(level, path) for path in live_paths]
            pending = [row + header for row, header in zip(pending, headers)]
            for row, header in zip(self.history, headers):
                row.extend(header)
            hidden = self._append(pending, self.num_layers, layer)[:, -1]
            if self.config.level_kinds[level] == "label" and self.options.strategy == "rank":
                decoded = self._rank_level(level, live_paths, hidden)
                pending = [item.token_ids for item in decoded]
            else:
                decoded, pending = self._decode_level(level, live_paths, hidden)
            for row, item, history in zip(live, decoded, self.history):
                outputs[row].levels.append(item)
                history.extend(item.token_ids)
                paths[row].append(item.label if item.label is not None else item.text)
            going_on = [index for index, item in enumerate(decoded) if not self.renderer.stops(level, item.token_ids)]
            if not going_on:
                break
            if len(going_on) < len(live):  # the others leave the cache and the per-row state
                self.keep_rows(going_on)
                self.history = [self.history[index] for index in going_on]
                live, pending = [live[index] for index in going_on], [pending[index] for index in going_on]

    # -- the shared cache ---------------------------------------------------------------------------------------

    def keep_rows(self, rows: list[int]) -> None:
        """Make the cache, attention mask and positions hold `rows` of themselves, in that order (rows may repeat)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.cache = select_rows(self.cache, index)
        self.attention_mask, self.positions = self.attention_mask[index], self.positions[index]

    def _append(self, tokens: list[list[int]], stop: int, layer: int) -> torch.Tensor:
        """
        Feed one new segment per row, left-padded to a common length, through layers `[0, stop)`.

        Returns the hidden states after layer `layer` (as `_run`) at the segment's columns, `(batch, length, hidden)`.
        """
        length = max(len(row) for row in tokens)
        ids = torch.tensor([[self.pad_id] * (length - len(row)) + row for row in tokens], device=self.device)
        new_mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in tokens], device=self.device)
        next_position = self.attention_mask.sum(1, keepdim=True)
        new_positions = (next_position + new_mask.cumsum(1) - 1).clamp(min=0)
        self._check_positions(new_positions)
        self.attention_mask = torch.cat([self.attention_mask, new_mask], dim=1)
        self.positions = torch.cat([self.positions, new_positions], dim=1)
        return self._run(ids, 0, stop, layer, new_positions, self.cache)

    def _check_positions(self, positions: torch.Tensor) -> None:
        limit = self.model.max_positions
        if limit is not None and positions.numel() and int(positions.max()) >= limit:
            raise ValueError(
                f"Decoding reached the model's position limit ({limit} positions, `max_position_embeddings`): lower "
                "`max_new_tokens`, or set `model.config.max_query_tokens` so that queries are cut."
            )

    def _fill(self, start: int, hidden: torch.Tensor) -> None:
        """Run layers `[start, K)` over the last `hidden.shape[1]` columns, from layer `start - 1`'s `hidden`."""
        length = hidden.shape[1]
        ids = torch.full(hidden.shape[:2], self.pad_id, device=self.device)
        self._run(ids, start, self.num_layers, None, self.positions[:, -length:], self.cache, injected=hidden)

    def _run(
        self,
        ids: torch.Tensor,
        start: int,
        stop: int,
        layer: int | None,
        positions: torch.Tensor,
        cache: Cache,
        attention_mask: torch.Tensor | None = None,
        injected: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """
        One base forward through layers `[start, stop)`; returns the hidden states after layer `layer` (1-based) as
        `output_hidden_states` gives them (what `head_logits` reads): an intermediate layer's raw output (the input
        `_fill` needs), the final norm's output at the last layer.
        """
        hooked = [layer - 1] if layer is not None and layer < self.num_layers else []
        with running_layers(self.model.decoder_layers, start, stop, hooked, injected) as captured:
            outputs = self.model.model.base_model(
                input_ids=ids,
                attention_mask=self.attention_mask if attention_mask is None else attention_mask,
                position_ids=positions,
                past_key_values=cache_view(cache, range(start, stop)),
                use_cache=True,
            )
        if layer is None:
            return None
        return captured[layer - 1] if hooked else outputs.last_hidden_state

    # -- one level ----------------------------------------------------------------------------------------------

    def _decode_level(
        self, level: int, paths: list[list[str]], hidden: torch.Tensor
    ) -> tuple[list[HierarchicalLevel], list[list[int]]]:
        """
        Decode one level token by token from `hidden`, the hidden state after layer `k_d` at the last column.

        Label levels under constraints follow the prefix trie of the valid labels below each row's path; where the
        trie leaves a single token, it is taken without a step of its own (its probability among the allowed tokens
        is 1), so a label costs one step per real choice. Other levels stop at their end marker or after
        `max_new_tokens`. Returns the decoded levels and, per row, the tokens chosen but not yet fed to the cache
        (they open the next level's first segment).
        """
        layer = self.config.level_layers[level]
        stop = layer if self.options.early_exit else self.num_layers
        batch = len(paths)
        constrained = self.trie is not None and self.config.level_kinds[level] == "label"
        nodes = [self.trie.root(level, path) for path in paths] if constrained else None
        tokens: list[list[int]] = [[] for _ in range(batch)]
        scores = [0.0] * batch
        calibrated = [0.0] * batch  # with the level's temperature: what `probability` reports
        active = [True] * batch
        segment: list[torch.Tensor] = []
        while True:
            if nodes is not None:
                chosen, step_scores, step_calibrated = self._choose_allowed(level, hidden, nodes)
                step_calibrated = step_calibrated.tolist()
            else:
                logits = self.model.head_logits(level, hidden)
                chosen = self._choose(logits, tokens)
                step_scores = logits.log_softmax(-1).gather(-1, chosen[:, None]).squeeze(-1)
            chosen, step_scores = chosen.tolist(), step_scores.tolist()
            fed: list[list[int]] = [[] for _ in range(batch)]
            for row in range(batch):
                if not active[row]:
                    continue
                fed[row].append(chosen[row])
                scores[row] += step_scores[row]
                if nodes is not None:
                    calibrated[row] += step_calibrated[row]
                    node = nodes[row].children[chosen[row]]
                    while node.label is None and len(node.children) == 1:
                        [(forced, node)] = node.children.items()
                        fed[row].append(forced)
                    nodes[row] = node
                    tokens[row].extend(fed[row])
                    active[row] = node.label is None
                else:
                    tokens[row].extend(fed[row])
                    ended = self.renderer.level_end(level, tokens[row]) is not None
                    active[row] = not ended and len(tokens[row]) < self.options.max_new_tokens
            if not any(active):
                break
            hidden = self._append(fed, stop, layer)
            segment.append(hidden)
            hidden = hidden[:, -1]
        if stop < self.num_layers and segment and level < self.config.num_levels - 1:
            self._fill(stop, torch.cat(segment, dim=1))
        return self._decoded(level, tokens, scores, nodes, calibrated), fed

    def _choose_allowed(
        self, level: int, hidden: torch.Tensor, nodes: list[LabelNode]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        The best token each row's trie node allows, and its log-probability among the tokens allowed there, without
        and with the level's temperature (which leaves the best token as it is).

        Only the allowed tokens' logits are computed: every label step skips the full-vocabulary head. Rows whose
        label is complete allow nothing; their entries are meaningless and ignored.
        """
        allowed = sorted({token for node in nodes for token in node.children})
        column = {token: index for index, token in enumerate(allowed)}
        mask = torch.zeros(len(nodes), len(allowed), dtype=torch.bool, device=self.device)
        for row, node in enumerate(nodes):
            mask[row, [column[token] for token in node.children]] = True
        allowed_ids = torch.tensor(allowed, device=self.device)
        logits = self.model.head_logits(level, hidden, allowed_ids).masked_fill(~mask, float("-inf"))
        best = logits.argmax(-1)
        log_probs = [
            (logits / t).log_softmax(-1).gather(-1, best[:, None]).squeeze(-1) for t in (1.0, self.temperatures[level])
        ]
        return allowed_ids[best], *log_probs

    def _choose(self, logits: torch.Tensor, tokens: list[list[int]]) -> torch.Tensor:
        """The next token of each row of a free level: greedy, or sampled after the logits processors."""
        if self.processors:
            logits = self.processors(self._context_ids(tokens), logits)
        if self.options.do_sample:
            probabilities = logits.softmax(-1)
            if not torch.isfinite(probabilities).all():
                raise ValueError(
                    "Sampling met probabilities that are not finite: `temperature` is too small (or "
                    "`repetition_penalty` too large) for these logits. Raise `temperature`, or set `do_sample=False` "
                    "for greedy decoding."
                )
            return torch.multinomial(probabilities, 1, generator=self.options.generator).squeeze(-1)
        return logits.argmax(-1)

    def _context_ids(self, tokens: list[list[int]]) -> torch.Tensor:
        """
        What the logits processors see, as `generate` shows them: each row's prompt, earlier levels and tokens so far.

        Rows are left-padded with their own first token, a repeat that changes neither the repetition penalty nor
        the warpers.
        """
        rows = [history + row_tokens for history, row_tokens in zip(self.history, tokens)]
        length = max(len(row) for row in rows)
        return torch.tensor([[row[0]] * (length - len(row)) + row for row in rows], device=self.device)

    def _decoded(
        self,
        level: int,
        tokens: list[list[int]],
        scores: list[float],
        nodes: list[LabelNode] | None,
        calibrated: list[float],
    ) -> list[HierarchicalLevel]:
        name, kind = self.config.level_names[level], self.config.level_kinds[level]
        decoded = []
        for row, (row_tokens, score) in enumerate(zip(tokens, scores)):
            if nodes is not None:
                label, probability = nodes[row].label, math.exp(calibrated[row])
                decoded.append(
                    HierarchicalLevel(name, kind, label, row_tokens, score, label=label, probability=probability)
                )
                continue
            end_ids = self.renderer.level_end(level, row_tokens)
            ended = end_ids is not None
            answer = row_tokens[: -len(end_ids)] if ended else row_tokens
            text = self.renderer.tokenizer.decode(answer, skip_special_tokens=True).strip()
            label = text if kind == "label" else None
            decoded.append(HierarchicalLevel(name, kind, text, row_tokens, score, label=label, truncated=not ended))
        return decoded

    def _rank_level(self, level: int, paths: list[list[str]], hidden: torch.Tensor) -> list[HierarchicalLevel]:
        """
        Score every candidate label of each row exactly (the sum of its tokens' log-probabilities under the level's
        head, over the head's whole vocabulary) and keep the best.

        Candidates run batched on copies of the rows' cache, through the first `k_d` layers with early exit.
        """
        candidates, scores, _ = candidate_scores(self, level, paths, hidden)
        return [self._best_label(level, row, candidates, scores) for row in range(len(paths))]

    def _best_label(
        self, level: int, row: int, candidates: list[tuple[int, str, list[int]]], scores: list[float]
    ) -> HierarchicalLevel:
        """Row `row`'s best candidate label, with the `top_k` best and their probabilities among the candidates."""
        mine = [(score, label, ids) for (r, label, ids), score in zip(candidates, scores) if r == row]
        ranked = sorted(mine, reverse=True)
        scores = torch.tensor([score for score, _, _ in ranked])
        probabilities = (scores / self.temperatures[level]).softmax(0).tolist()
        best_score, best, best_ids = ranked[0]
        top = [(label, p) for (_, label, _), p in zip(ranked, probabilities)][: self.options.top_k]
        return HierarchicalLevel(
            self.config.level_names[level],
            "label",
            best,
            list(best_ids),
            best_score,
            label=best,
            top_labels=top if self.options.top_k > 1 else None,
            probability=probabilities[0],
        )


__all__ = ["HierarchicalDecoder"]
