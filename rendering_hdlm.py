"""The renderer of HdLM sequences: a query and its level answers as token ids, identical in training and inference.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only
transformers and its sibling file `configuration_hdlm`.
"""

import string
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

try:
    from .configuration_hdlm import HdLMConfig
except ImportError:  # imported as a top-level module from a source checkout
    from configuration_hdlm import HdLMConfig


class HdLMRenderer:
    """
    Renders a query and its level answers to token ids, identically for training and for inference.

    A sequence is `prompt | header_1 | " " answer_1 separator | ... | header_D | " " answer_D eos`. Each part is
    tokenised on its own, so level boundaries never merge into one token. Headers are forced (never trained on);
    answers and their end markers are the tokens of their level. With `config.allow_partial_paths`, a path that
    stops at level `d < D` ends that level with eos (the stop marker) instead of the separator.

    Text from users and data (the query, labels, replies, headers) never becomes a special token: a query holding
    the text `<eos>` is encoded as that text. Only the prompt or chat template and `level_separator` may hold them.
    """

    def __init__(self, config: HdLMConfig, tokenizer: PreTrainedTokenizerBase):
        if tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no `eos_token_id`; HdLM ends the last level with EOS. Set one.")
        if config.use_chat_template and tokenizer.chat_template is None:
            raise ValueError(
                "`config.use_chat_template` is True but the tokenizer has no chat template; pass the tokenizer the "
                "model was trained with."
            )
        self.config = config
        self.tokenizer = tokenizer
        self._parts: dict[str, list[int]] = {}
        self.separator_ids = self._encode(config.level_separator, split_special_tokens=False)
        self.eos_ids = [tokenizer.eos_token_id]
        if config.allow_partial_paths and self.separator_ids == self.eos_ids:
            raise ValueError(
                "`level_separator` renders as the EOS token, which ends a partial path: with `allow_partial_paths` "
                "the two must differ (keep the default `\\n`)."
            )
        self.children = _taxonomy_children(config.taxonomy)
        special = [token for token in tokenizer.added_tokens_decoder.values() if token.special]
        self.special_texts: dict[str, list[str]] = {}  # by first character: most texts hold none of those
        for token in special:
            if token.content:
                self.special_texts.setdefault(token.content[0], []).append(token.content)
        self.special_ids = {index for index, token in tokenizer.added_tokens_decoder.items() if token.special}

    def _encode(self, text: str, split_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` alone; with `split_special_tokens`, special tokens' text in it stays plain text."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special_tokens)["input_ids"]

    def _encode_part(self, text: str) -> list[int]:
        """`_encode`, memoised: headers and labels recur in every row (free-text answers do not, and are not kept)."""
        if text not in self._parts:
            self._parts[text] = self._encode(text)
        return list(self._parts[text])

    def truncate_query(self, text: str, limit: int | None = None) -> tuple[str, bool]:
        """
        Cut the query to `limit` tokens (default: `config.max_query_tokens`) on `config.query_truncation_side`;
        says whether it was cut.
        """
        limit = self.config.max_query_tokens if limit is None else limit
        if limit is None:
            return text, False
        ids = self._encode(text)
        if len(ids) <= limit:
            return text, False
        kept = ids[-limit:] if self.config.query_truncation_side == "left" else ids[:limit]
        return self.tokenizer.decode(kept), True

    def prompt_ids(self, text: str, query_limit: int | None = None) -> list[int]:
        text, _ = self.truncate_query(text, query_limit)
        plain = not any(
            special in text for first, specials in self.special_texts.items() if first in text for special in specials
        )
        if self.config.use_chat_template:
            message = {"role": "user", "content": f"{self.config.instruction}\n\n{text}"}
            if plain:
                return list(
                    self.tokenizer.apply_chat_template([message], add_generation_prompt=True, tokenize=True)[
                        "input_ids"
                    ]
                )
            prompt = self.tokenizer.apply_chat_template([message], add_generation_prompt=True, tokenize=False)
            start = prompt.rfind(text)
            if start < 0:
                raise ValueError(
                    "The chat template changes the query, so its special tokens' text could not be kept as text: "
                    "remove them from the query, or set `use_chat_template=False`."
                )
            return self._encode_prompt(prompt, [(start, start + len(text))], add_special_tokens=False)
        if plain:
            prompt = self.config.prompt_template.format(instruction=self.config.instruction, text=text)
            return self.tokenizer(prompt)["input_ids"]
        prompt, spans, formatter = "", [], string.Formatter()
        for literal, name, spec, conversion in formatter.parse(self.config.prompt_template):
            prompt += literal
            if name is not None:
                value = {"instruction": self.config.instruction, "text": text}[name]
                value = formatter.format_field(formatter.convert_field(value, conversion), spec or "")
                spans += [(len(prompt), len(prompt) + len(value))] if name == "text" else []
                prompt += value
        return self._encode_prompt(prompt, spans, add_special_tokens=True)

    def _encode_prompt(self, prompt: str, spans: list[tuple[int, int]], add_special_tokens: bool) -> list[int]:
        """
        `prompt` tokenised as a whole, except that the special tokens found inside `spans` (the query's characters)
        are re-encoded as the plain text they were typed as.
        """
        if not self.tokenizer.is_fast:
            raise ValueError(
                "This query holds the text of a special token, which HdLM keeps as text: that needs the offsets of a "
                "fast tokenizer (`use_fast=True`), or remove it from the query."
            )
        encoding = self.tokenizer(prompt, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        ids = []
        for token, (start, stop) in zip(encoding["input_ids"], encoding["offset_mapping"]):
            typed = token in self.special_ids and stop > start and any(a <= start and stop <= b for a, b in spans)
            ids += self._encode(prompt[start:stop]) if typed else [token]
        return ids

    def candidates(self, level: int, prefix: Sequence[str] | None = None) -> list[str]:
        """The valid labels of a label level below the labels `prefix` chosen above (all roots for level 0)."""
        return self.children.get((level, _path_key(prefix)), [])

    def header_ids(self, level: int, prefix: Sequence[str] | None = None) -> list[int]:
        """The header of `level`, below the labels `prefix` chosen above (they pick its candidates, if shown)."""
        name = self.config.level_names[level]
        if self.config.show_candidates and self.config.level_kinds[level] == "label" and self.children:
            header = self.config.candidates_header_template.format(
                name=name, candidates=", ".join(self.candidates(level, prefix))
            )
        else:
            header = self.config.level_header_template.format(name=name)
        return self._encode_part(header)

    def end_ids(self, level: int, stop: bool = False) -> list[int]:
        """The end marker of `level`: eos at the last level or where a partial path stops (`stop`), else the
        separator."""
        return self.eos_ids if stop or level == self.config.num_levels - 1 else self.separator_ids

    def level_end(self, level: int, token_ids: Sequence[int]) -> list[int] | None:
        """The end marker that a level's `token_ids` end with (the stop marker too, under partial paths), or None."""
        ends = [self.end_ids(level)] + ([self.eos_ids] if self.config.allow_partial_paths else [])
        return next((end for end in ends if list(token_ids[-len(end) :]) == end), None)

    def stops(self, level: int, token_ids: Sequence[int]) -> bool:
        """Whether a level decoded as `token_ids` ends the answer: the last level, or a partial path's stop marker."""
        return level == self.config.num_levels - 1 or self.level_end(level, token_ids) == self.eos_ids

    def answer_ids(self, level: int, answer: str, stop: bool = False) -> list[int]:
        """The tokens of one level: the answer, then the level's end marker (`end_ids(level, stop)`)."""
        encode = self._encode_part if self.config.level_kinds[level] == "label" else self._encode
        return encode(" " + answer) + self.end_ids(level, stop)

    def taxonomy_token_ids(self) -> list[list[list[int]]]:
        """Each label's tokens on each taxonomy path, as `answer_ids` renders them (`config.taxonomy_token_ids`); a
        partial path's last label ends with the stop marker."""
        partial = self.config.allow_partial_paths
        return [
            [
                self.answer_ids(level, label, stop=partial and level == len(path) - 1)
                for level, label in enumerate(path)
            ]
            for path in self.config.taxonomy
        ]

    def encode_example(
        self, text: str, answers: Sequence[str], query_limit: int | None = None
    ) -> tuple[list[int], list[int]]:
        """
        Token ids of a full training sequence and their level ids (0 = no loss, d = level d). A path shorter than
        the levels (`config.allow_partial_paths`) stops at its last answer.
        """
        if len(answers) != self.config.num_levels and not (
            self.config.allow_partial_paths and 1 <= len(answers) < self.config.num_levels
        ):
            raise ValueError(
                f"Got {len(answers)} answers for {self.config.num_levels} levels: give one per level, or set "
                "`allow_partial_paths=True` for label paths that stop early."
            )
        input_ids = self.prompt_ids(text, query_limit)
        level_ids = [0] * len(input_ids)
        for level, answer in enumerate(answers):
            header = self.header_ids(level, answers[:level])
            answer_ids = self.answer_ids(level, answer, stop=level == len(answers) - 1)
            input_ids += header + answer_ids
            level_ids += [0] * len(header) + [level + 1] * len(answer_ids)
        return input_ids, level_ids


def _path_key(prefix: Sequence[str] | None) -> tuple[str, ...]:
    """The labels above a level as a key; a lone string is refused (it would read as one label per character)."""
    if isinstance(prefix, str):
        raise TypeError(f"Pass the labels above the level as a list (the path), e.g. [{prefix!r}], not a string.")
    return tuple(prefix or ())


def _taxonomy_children(taxonomy: list[list[str]] | None) -> dict[tuple[int, tuple[str, ...]], list[str]]:
    """Map `(level, path above)` to the sorted labels allowed below it (the path above is empty at level 0)."""
    children: dict[tuple[int, tuple[str, ...]], set[str]] = {}
    for path in taxonomy or []:
        for level, label in enumerate(path):
            children.setdefault((level, tuple(path[:level])), set()).add(label)
    return {key: sorted(labels) for key, labels in children.items()}


__all__ = ["HdLMRenderer"]
