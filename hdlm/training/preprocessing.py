"""Tokenisation of hierarchical examples into `input_ids`, `labels` and `level_ids`."""

import datasets
from transformers.utils import logging

from modeling_hdlm import HdLMRenderer

logger = logging.get_logger(__name__)

# Room left for the query's own tokenisation differing inside the prompt from alone.
QUERY_TOKEN_MARGIN = 8


def fit_query_budget(renderer: HdLMRenderer, dataset: datasets.Dataset, max_length: int | None) -> int | None:
    """
    The query token budget such that every example of `dataset` fits in `max_length` tokens.

    It is stored in the model config (`max_query_tokens`), so inference truncates queries exactly as training did.
    Labels are never truncated: an example whose answers alone exceed `max_length` is an error.
    """
    if max_length is None:
        return None
    overhead = 0
    for line, labels in enumerate(dataset["labels"], start=1):
        answers_length = len(renderer.encode_example("", labels)[0])
        if answers_length + 1 > max_length:
            raise ValueError(
                f"Example {line}: its prompt and answers alone take {answers_length} tokens, more than "
                f"`max_length={max_length}`; raise `max_length` (answers are never truncated)."
            )
        overhead = max(overhead, answers_length)
    return max(1, max_length - overhead - QUERY_TOKEN_MARGIN)


def tokenize_hierarchical(
    dataset: datasets.Dataset, renderer: HdLMRenderer, max_length: int | None = None, *, num_proc: int | None = None
) -> datasets.Dataset:
    """
    Render and tokenise every example with `renderer`, as `generate_hierarchical` renders queries.

    Each level is tokenised on its own, so its tokens carry exactly its level id; the prompt, headers and padding
    carry 0. `labels` equal `input_ids` on level tokens and -100 elsewhere. Queries longer than
    `renderer.config.max_query_tokens` are truncated and counted in the log.
    """

    def encode(example: dict) -> dict:
        _, truncated = renderer.truncate_query(example["text"])
        input_ids, level_ids = renderer.encode_example(example["text"], example["labels"])
        if max_length is not None and len(input_ids) > max_length:
            raise ValueError(
                f"An example takes {len(input_ids)} tokens after query truncation, more than `max_length="
                f"{max_length}`; lower `max_query_tokens` or raise `max_length`."
            )
        labels = [token if level else -100 for token, level in zip(input_ids, level_ids)]
        return {"input_ids": input_ids, "labels": labels, "level_ids": level_ids, "truncated": truncated}

    tokenized = dataset.map(
        encode, remove_columns=dataset.column_names, num_proc=num_proc, desc="Rendering and tokenising"
    )
    num_truncated = sum(tokenized["truncated"])
    if num_truncated:
        logger.warning(
            f"Truncated the query of {num_truncated} of {len(tokenized)} examples to "
            f"{renderer.config.max_query_tokens} tokens (answers are never truncated)."
        )
    return tokenized.remove_columns("truncated")
