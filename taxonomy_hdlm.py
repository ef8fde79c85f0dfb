"""Prefix tries over the token ids of a taxonomy's labels.

What constrained decoding may choose at each step of a label, and the tokens the constrained loss normalises over,
come from the same tries. This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`:
it imports only torch.
"""

from collections.abc import Sequence

import torch
from torch import nn


class LabelNode:
    """A node of a label trie: the tokens allowed next, and the label completed here (if any)."""

    __slots__ = ("children", "label", "index")

    def __init__(self, index: int):
        self.children: dict[int, LabelNode] = {}
        self.label: str | None = None
        self.index = index


class TaxonomyTrie:
    """
    One prefix trie per label level and path above it, over the token ids of the labels allowed there.

    `taxonomy_token_ids[i][d]` are the tokens of label `taxonomy[i][d]` (its answer and end marker). The nodes of a
    level are numbered across all its tries, so that `allowed_mask(level)[node.index]` says which tokens of
    `vocabularies[level]` (the sorted union of the level's label tokens) the node allows. Tries are keyed by the
    whole path above, so a name repeated under two parents is two labels. A path may stop before the last level
    (partial paths): its last label ends with the stop marker, so a label that is both a leaf and a parent has two
    endings in its trie, and the decoder chooses between stopping and going on as between any two tokens.
    """

    def __init__(self, taxonomy: Sequence[Sequence[str]], taxonomy_token_ids: Sequence[Sequence[Sequence[int]]]):
        self.depth = max((len(path) for path in taxonomy), default=0)
        self.nodes: list[list[LabelNode]] = [[] for _ in range(self.depth)]
        self._roots: dict[tuple[int, tuple[str, ...]], LabelNode] = {}
        self._labels: dict[tuple[int, tuple[str, ...]], dict[tuple[int, ...], str]] = {}
        for path, path_ids in zip(taxonomy, taxonomy_token_ids):
            for level in range(len(path)):
                self._add(level, tuple(path[:level]), path[level], list(path_ids[level]))
        self.vocabularies = [
            sorted({token for path_ids in taxonomy_token_ids if len(path_ids) > level for token in path_ids[level]})
            for level in range(self.depth)
        ]
        self._masks: dict[int, torch.Tensor] = {}

    def _new_node(self, level: int) -> LabelNode:
        node = LabelNode(len(self.nodes[level]))
        self.nodes[level].append(node)
        return node

    def _add(self, level: int, prefix: tuple[str, ...], label: str, token_ids: list[int]) -> None:
        labels = self._labels.setdefault((level, prefix), {})
        if tuple(token_ids) in labels:
            if labels[tuple(token_ids)] == label:
                return
            raise ValueError(
                f"Labels {labels[tuple(token_ids)]!r} and {label!r} at level {level + 1} below {list(prefix)} have "
                f"the same tokens {token_ids}: constrained decoding could not tell them apart. Rename one of them."
            )
        labels[tuple(token_ids)] = label
        node = self._roots.get((level, prefix))
        if node is None:
            node = self._roots[level, prefix] = self._new_node(level)
        for token in token_ids:
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = self._new_node(level)
            node = child
        node.label = label

    def root(self, level: int, prefix: Sequence[str]) -> LabelNode:
        """The trie of the labels allowed at `level` below the labels `prefix` (empty at level 0)."""
        node = self._roots.get((level, tuple(prefix)))
        if node is None:
            raise ValueError(
                f"No valid label at level {level + 1} below {list(prefix)}: the taxonomy does not list it."
            )
        return node

    def labels(self, level: int, prefix: Sequence[str]) -> list[tuple[str, list[int]]]:
        """
        The labels allowed at `level` below `prefix` with their token ids, sorted: `(label, token_ids)` pairs, one
        per ending (a label that may both stop and go on, under partial paths, comes twice).
        """
        self.root(level, prefix)
        return sorted((label, list(ids)) for ids, label in self._labels[level, tuple(prefix)].items())

    def walk(self, level: int, prefix: Sequence[str], token_ids: Sequence[int]) -> tuple[list[int], str]:
        """
        Follow `token_ids` (a whole label and its end marker) from the root of `(level, prefix)`.

        Returns the index of the node each token was chosen at, and the label reached.
        """
        node = self.root(level, prefix)
        visited = []
        for token in token_ids:
            visited.append(node.index)
            child = node.children.get(token)
            if child is None:
                raise ValueError(
                    f"Tokens {list(token_ids)} at level {level + 1} below {list(prefix)} are not a label of the "
                    "taxonomy (the data's labels must be the model's: retrain, or check the tokenizer)."
                )
            node = child
        if node.label is None:
            raise ValueError(f"Tokens {list(token_ids)} at level {level + 1} below {list(prefix)} end inside a label.")
        return visited, node.label

    def allowed_at_targets(
        self, level: int, targets: torch.Tensor, selected: torch.Tensor, gold_paths: list[list[str]]
    ) -> torch.Tensor:
        """
        What the constrained loss normalises over: for each target token of `level` (`targets[selected]`, row by
        row), the tokens of `vocabularies[level]` allowed at its position, as `(num_targets, len(vocabulary))`
        booleans.

        Each row's targets (a whole label and its end marker) are walked below its gold labels of the levels above,
        `gold_paths[row]`, which is extended with the label reached.
        """
        visited: list[int] = []
        row_targets = targets.masked_select(selected).tolist()
        start = 0
        for row, count in enumerate(selected.sum(1).tolist()):
            if count:
                nodes, label = self.walk(level, gold_paths[row], row_targets[start : start + count])
                visited.extend(nodes)
                gold_paths[row].append(label)
                start += count
        return self.allowed_mask(level, targets.device)[torch.tensor(visited, dtype=torch.long, device=targets.device)]

    def allowed_mask(self, level: int, device: torch.device | str | None = None) -> torch.Tensor:
        """`(num_nodes, len(vocabularies[level]))` booleans: the tokens each node of the level allows."""
        mask = self._masks.get(level)
        if mask is None:
            column = {token: index for index, token in enumerate(self.vocabularies[level])}
            mask = torch.zeros(len(self.nodes[level]), len(column), dtype=torch.bool)
            for node in self.nodes[level]:
                mask[node.index, [column[token] for token in node.children]] = True
            self._masks[level] = mask
        return mask.to(device)


class HdLMLabelHead(nn.Linear):
    """
    A language head restricted to a label level's vocabulary: row `i` scores token `token_ids[i]`.

    The level's labels and end marker use a few hundred tokens; this head holds their rows only (initialised from
    the same rows of the final head), so it is cheap to train in full and to store. Its token ids are saved with it.
    """

    def __init__(
        self,
        in_features: int,
        token_ids: Sequence[int],
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_features, len(token_ids), bias=bias, device=device, dtype=dtype)
        self.register_buffer("token_ids", torch.tensor(list(token_ids), dtype=torch.long, device=device))

    def columns(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The rows of this head that score `token_ids` (which must all be in its vocabulary)."""
        columns = torch.searchsorted(self.token_ids, token_ids).clamp(max=len(self.token_ids) - 1)
        if not torch.equal(self.token_ids[columns], token_ids):
            missing = sorted(set(token_ids.flatten().tolist()) - set(self.token_ids.tolist()))
            raise ValueError(
                f"Tokens {missing[:10]} are not in this label head's vocabulary (its labels' tokens only): it scores "
                "labels of its taxonomy, under constraints."
            )
        return columns


__all__ = ["HdLMLabelHead", "LabelNode", "TaxonomyTrie"]
