"""Metrics for free-text levels, e.g. the reply of classification-guided generation (ESConv: strategy -> reply)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU


def check_texts(texts: Sequence[str], name: str) -> list[str]:
    """Validate a list of texts; `name` is the argument name used in error messages."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"`{name}` must be a list of strings, got {type(texts).__name__}.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"`{name}[{index}]` is not a string: {text!r}.")
    return list(texts)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / total n-grams, pooled over all texts.

    Tokens are whitespace-separated and case-sensitive; n-grams never cross text boundaries. Returns 0 when the texts
    hold no n-gram at all.
    """
    ngrams = [
        tuple(tokens[start : start + n])
        for tokens in (text.split() for text in texts)
        for start in range(len(tokens) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def compute_text_metrics(
    predictions: Sequence[str], references: Sequence[str], *, truncated: Sequence[bool] | None = None
) -> dict[str, float]:
    """Score generated texts against one reference text each.

    Every score lies in [0, 1]:

    - `bleu_2`: corpus BLEU with n-grams up to order 2, `BP * exp((log p_1 + log p_2) / 2)` with clipped n-gram
      precisions `p_n` pooled over the corpus and brevity penalty `BP = min(1, exp(1 - ref_len / hyp_len))`, computed
      by `sacrebleu.metrics.BLEU(max_ngram_order=2)` (its default `13a` tokenisation and `exp` smoothing) and divided
      by 100: multiply by 100 for the scale papers usually print.
    - `rouge_l`: mean over documents of the ROUGE-L F-measure `2 P R / (P + R)` with `P = LCS / len(prediction)` and
      `R = LCS / len(reference)`, by `rouge_score` (lower-cased alphanumeric tokens, no stemming).
    - `distinct_2`: distinct bigrams / total bigrams over all predictions (see `distinct_n`).
    - `empty_rate`: share of predictions that are empty after stripping whitespace.
    - `truncated_rate` (only when `truncated` is given): share of predictions cut off at the generation token limit.

    Args:
        predictions: Generated texts, one per document.
        references: Reference texts, one per document.
        truncated: Whether each prediction stopped at the token limit instead of an end-of-sequence token.

    Raises:
        ValueError: On an item that is not a string (the message names its index), no references at all, or
            `predictions`, `references` and `truncated` of different lengths.
    """
    predictions = check_texts(predictions, "predictions")
    references = check_texts(references, "references")
    if not references:
        raise ValueError("`references` is empty: there is nothing to evaluate.")
    if len(predictions) != len(references):
        raise ValueError(f"`predictions` and `references` differ in length: {len(predictions)} != {len(references)}.")
    if truncated is not None:
        if isinstance(truncated, str) or not isinstance(truncated, Sequence):
            raise ValueError(f"`truncated` must be a list of booleans, got {type(truncated).__name__}.")
        if len(truncated) != len(predictions):
            raise ValueError(
                f"`truncated` and `predictions` differ in length: {len(truncated)} != {len(predictions)}."
            )
        for index, flag in enumerate(truncated):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"`truncated[{index}]` is not a boolean: {flag!r}.")

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge_l = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]
    metrics = {
        # sacrebleu's score is a percentage computed in floating point: identical texts can give 100.00000000000004.
        "bleu_2": min(BLEU(max_ngram_order=2).corpus_score(predictions, [references]).score / 100, 1.0),
        "rouge_l": float(np.mean(rouge_l)),
        "distinct_2": distinct_n(predictions, 2),
        "empty_rate": float(np.mean([not prediction.strip() for prediction in predictions])),
    }
    if truncated is not None:
        metrics["truncated_rate"] = float(np.mean(truncated))
    return metrics
