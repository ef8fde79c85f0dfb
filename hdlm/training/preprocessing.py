"""Tokenisation of hierarchical examples into `input_ids`, `labels` and `level_ids`."""

import copy

import datasets
from transformers.utils import logging

from modeling_hdlm import HdLMRenderer

logger = logging.get_logger(__name__)

# Room left for the query's own tokenisation differing inside the prompt from alone.
QUERY_TOKEN_MARGIN = 8


def query_room(renderer: HdLMRenderer, labels: list[str], max_length: int, example: int) -> int:
    """The most query tokens with which `example` (1-based) still fits in `max_length` tokens."""
    answers_length = len(renderer.encode_example("", labels)[0])
    if answers_length + 1 > max_length:
        raise ValueError(
            f"Example {example}: its prompt and answers alone take {answers_length} tokens, more than "
            f"`max_length={max_length}`; raise `max_length` (answers are never truncated)."
        )
    return max(1, max_length - answers_length - QUERY_TOKEN_MARGIN)


def fit_query_budget(renderer: HdLMRenderer, dataset: datasets.Dataset, max_length: int | None) -> int | None:
    """
    The query token budget such that every example of `dataset` fits in `max_length` tokens.

    It is stored in the model config (`max_query_tokens`), so inference truncates queries exactly as training did.
    Labels are never truncated: an example whose answers alone exceed `max_length` is an error.
    """
    if max_length is None:
        return None
    return min(
        query_room(renderer, labels, max_length, example) for example, labels in enumerate(dataset["labels"], start=1)
    )


def tokenize_hierarchical(
    dataset: datasets.Dataset,
    renderer: HdLMRenderer,
    max_length: int | None = None,
    *,
    keep_examples: bool = False,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """
    Render and tokenise every example with `renderer`, as `generate_hierarchical` renders queries.

    Each level is tokenised on its own, so its tokens carry exactly its level id; the prompt, headers and padding
    carry 0. `labels` equal `input_ids` on level tokens and -100 elsewhere. Queries longer than
    `renderer.config.max_query_tokens` are truncated; an example whose answers are too long to fit `max_length`
    with that budget has its query cut further (inference, not knowing the answers, cuts at the budget). Both are
    counted in the log. With `keep_examples`, each example's `text` and its label path (as `path`) stay beside the
    tokens (the trainer's `eval_decoding` decodes them).

    A label path the model's taxonomy does not hold (an evaluation example with a label unseen in training) carries
    no loss from its first unknown label on: the label heads and the constrained loss know only the taxonomy's
    labels. Such examples are counted in the log.
    """
    budget = renderer.config.max_query_tokens
    label_levels = renderer.config.num_label_levels
    known = {tuple(path[: level + 1]) for path in renderer.config.taxonomy or [] for level in range(len(path))}
    leaves = {tuple(path) for path in renderer.config.taxonomy or []}
    # Renders a query already cut to its limit as it is: each query is tokenised once to be cut, then in its prompt.
    uncut_config = copy.copy(renderer.config)
    uncut_config.max_query_tokens = None
    uncut = HdLMRenderer(uncut_config, renderer.tokenizer)

    def encode(example: dict, index: int) -> dict:
        limit = budget
        if max_length is not None:
            room = query_room(renderer, example["labels"], max_length, index + 1)
            limit = room if budget is None else min(budget, room)
        text, truncated = renderer.truncate_query(example["text"], limit)
        input_ids, level_ids = uncut.encode_example(text, example["labels"])
        if max_length is not None and len(input_ids) > max_length:
            raise ValueError(
                f"Example {index + 1} takes {len(input_ids)} tokens after query truncation, more than `max_length="
                f"{max_length}`; lower `max_query_tokens` or raise `max_length`."
            )
        unknown = _first_unknown_level(example["labels"][:label_levels], known, leaves, label_levels)
        if unknown is not None:
            level_ids = [0 if unknown < level <= label_levels else level for level in level_ids]
        labels = [token if level else -100 for token, level in zip(input_ids, level_ids)]
        shortened = truncated and budget is not None and limit < budget
        return {
            "input_ids": input_ids,
            "labels": labels,
            "level_ids": level_ids,
            "truncated": truncated,
            "shortened": shortened,
            "unknown": unknown is not None,
            **({"path": list(example["labels"])} if keep_examples else {}),
        }

    tokenized = dataset.map(
        encode,
        with_indices=True,
        remove_columns=[column for column in dataset.column_names if not (keep_examples and column == "text")],
        num_proc=num_proc,
        desc="Rendering and tokenising",
    )
    log_cuts(tokenized, budget, max_length)
    return tokenized.remove_columns(["truncated", "shortened", "unknown"])


def _first_unknown_level(
    path: list[str], known: set[tuple[str, ...]], leaves: set[tuple[str, ...]], depth: int
) -> int | None:
    """The first level (0-based) of a label path that the taxonomy lacks (`known` prefixes; a path stopping before
    `depth` must be one of the `leaves`), or None: the whole path is the model's, or there is no taxonomy."""
    if not known:
        return None
    level = next((level for level in range(len(path)) if tuple(path[: level + 1]) not in known), None)
    if level is None and len(path) < depth and tuple(path) not in leaves:
        return len(path) - 1  # the taxonomy goes on below it: it cannot stop there
    return level


def log_cuts(tokenized: datasets.Dataset, budget: int | None, max_length: int | None) -> None:
    """Warn of the examples `tokenize_hierarchical` cut or left without loss (its `truncated`, `shortened` and
    `unknown` columns)."""
    num_truncated, num_shortened = sum(tokenized["truncated"]), sum(tokenized["shortened"])
    if num_unknown := sum(tokenized["unknown"]):
        logger.warning(
            f"{num_unknown} of {len(tokenized)} examples have a label path outside the model's taxonomy: their loss "
            "stops before the first unknown label (decoding can only score them as errors)."
        )
    if num_truncated:
        target = f"{budget} tokens" if budget is not None else f"fit `max_length={max_length}`"
        logger.warning(
            f"Truncated the query of {num_truncated} of {len(tokenized)} examples to {target} (answers are never "
            f"truncated)."
        )
    if num_shortened:
        logger.warning(
            f"{num_shortened} of them have answers too long for `max_length={max_length}` with that budget: their "
            f"query was cut further. Raise `max_length` or lower `max_query_tokens` to keep them whole."
        )
