"""HdLM model configuration.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only
`transformers` (and the standard library).
"""

import dataclasses
import difflib
import inspect
import math
import numbers
import operator
import string
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

LEVEL_KINDS = ("label", "text")
"""The kinds a level can have: a class of the taxonomy (`"label"`), or free text (`"text"`)."""
HEAD_INITS = ("copy", "random", "shared")
LABEL_HEAD_VOCABULARIES = ("labels", "full")
LABEL_LOSSES = ("constrained", "full")
TRUNCATION_SIDES = ("right", "left")


def default_level_names(num_levels: int) -> list[str]:
    """The level names used when none are given: `["level_1", ..., "level_<num_levels>"]`."""
    return [f"level_{level}" for level in range(1, num_levels + 1)]


def default_level_kinds(num_levels: int) -> list[str]:
    """The level kinds used when none are given: every level is a label."""
    return ["label"] * num_levels


def misplaced_label_level(level_kinds: Sequence[str]) -> int | None:
    """The 0-based index of the first label level that follows a text level (a label cannot follow free text), or
    `None` when label levels come first."""
    kinds = list(level_kinds)
    first_text = kinds.index("text") if "text" in kinds else len(kinds)
    return next((index for index in range(first_text, len(kinds)) if kinds[index] == "label"), None)


def taxonomy_path_problem(path: Sequence[Any], depth: int, allow_partial_paths: bool = False) -> str | None:
    """
    What is wrong with one taxonomy path, or `None`: it must hold `depth` non-empty string labels (coarsest first),
    or between 1 and `depth` of them with `allow_partial_paths`.

    A label is its path, not its name: the same name may appear under different parents ("Classical" under Physics
    and under Music), so names need no check across paths.
    """
    lengths = f"1 to {depth}" if allow_partial_paths else str(depth)
    if not (1 <= len(path) <= depth if allow_partial_paths else len(path) == depth):
        fix = "" if allow_partial_paths else " (a path that stops early needs `allow_partial_paths=True`)"
        return f"holds {len(path)} labels, expected {lengths} (one per label level){fix}"
    if not all(isinstance(label, str) and label.strip() for label in path):
        return "holds an empty or non-string label: every label must be a non-empty string"
    return None


class HdLMConfig(PreTrainedConfig):
    r"""
    Configuration of a hierarchical decoder ([`HdLMForCausalLM`]): a pretrained causal LM (`text_config`) whose
    intermediate layers each decode one level of a hierarchical answer through their own copy of the language head.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Configuration of the wrapped causal LM (any `AutoModelForCausalLM` architecture).
        level_layers (`list[int]`, *optional*):
            For each level, the decoder layer (1-based, in `1..K` with `K` the number of layers) whose output feeds
            that level's head. Strictly increasing and ending at `K`, except that several trailing levels may share
            layer `K`: they are all read by the base model's own head (with every level at `K`, this is the
            "sft@K" baseline). Defaults to a single level at `K`.
        level_names (`list[str]`, *optional*):
            A short name per level (e.g. `["topic", "subtopic"]`), used in prompts and outputs.
        level_kinds (`list[str]`, *optional*):
            `"label"` (a class of the taxonomy, decoded under constraints) or `"text"` (free text), per level.
            Label levels come first: a text level may only be followed by text levels.
        level_loss_weights (`list[float]`, *optional*):
            Weight `f_d >= 0` of each level's token-mean cross-entropy in the training loss.
        taxonomy (`list[list[str]]`, *optional*):
            The label paths of the label levels, e.g. `[["Science", "Physics"], ["Sports", "Tennis"]]`. Stored in
            `config.json`, so a published model is self-contained. A label is its path, not its name: the same name
            may appear under different parents (`["Music", "Classical"]` and `["Physics", "Classical"]`); a path may
            not be listed twice.
        allow_partial_paths (`bool`, *optional*, defaults to `False`):
            Let taxonomy paths stop before the last label level (`["Books", "Fiction"]` in a 3-level taxonomy): such
            a path is a leaf at its last level, and its label ends with the EOS token instead of `level_separator`,
            so the model learns to stop there. A path that is a strict prefix of another is a leaf only where it is
            listed on its own (a label can then both stop and go on). Needs label levels only, and a path of full
            depth. Off, every path has one label per label level.
        taxonomy_token_ids (`list[list[list[int]]]`, *optional*):
            For each path of `taxonomy`, the token ids of each of its labels as the model reads them (the answer and
            the level's end marker, as [`HdLMRenderer.answer_ids`] renders them). Set by
            [`HdLMForCausalLM.from_base`] from the tokenizer: label-vocabulary heads, the constrained loss and
            constrained decoding are built from it, without a tokenizer.
        head_init (`str`, *optional*, defaults to `"copy"`):
            How intermediate heads start: a `"copy"` of the final head (the paper), `"random"`, or `"shared"`: no
            head of their own, every level reads the final head (nothing extra to train or store).
        label_head_vocabulary (`str`, *optional*, defaults to `"labels"`):
            The rows of an intermediate label level's head: `"labels"`, only the tokens its labels and its end marker
            use (hundreds of rows instead of the whole vocabulary; decoded under constraints only), or `"full"`, a
            copy of the whole final head (the paper). Text levels always have full heads.
        label_loss (`str`, *optional*, defaults to `"constrained"`):
            The cross-entropy of a label token: `"constrained"`, among the tokens the taxonomy allows at its
            position given the gold labels and tokens before it (what constrained decoding chooses among), or
            `"full"`, over all rows of the level's head (the whole vocabulary for full heads: the paper).
        apply_final_norm (`bool`, *optional*, defaults to `True`):
            Apply the base model's final norm before intermediate heads. The authors' code reads raw hidden
            states; a copied head expects normalised ones.
        instruction (`str`, *optional*):
            The task instruction placed before the query. Defaults to one naming the levels.
        use_chat_template (`bool`, *optional*, defaults to `False`):
            Render the prompt through the tokenizer's chat template (a user turn, then the generation prompt).
        prompt_template (`str`, *optional*):
            The plain prompt used without a chat template; `{instruction}` and `{text}` are filled in.
        level_header_template (`str`, *optional*, defaults to `"{name}:"`):
            Text rendered before each level's answer; `{name}` is the level name. Never trained on.
        candidates_header_template (`str`, *optional*):
            The header used instead when `show_candidates` is on; `{candidates}` lists the valid labels.
        level_separator (`str`, *optional*, defaults to `"\n"`):
            Ends every level but the last, which ends with the EOS token. Trained on as part of the level.
        show_candidates (`bool`, *optional*, defaults to `False`):
            List the valid labels (children of the label chosen one level up) in each label level's header.
            Constrained decoding makes this unnecessary; it is kept so the two can be compared.
        max_query_tokens (`int`, *optional*):
            Queries longer than this many tokens are truncated, at training and at inference alike.
        query_truncation_side (`str`, *optional*, defaults to `"right"`):
            Where long queries are cut, as a tokenizer's `truncation_side`: `"right"` keeps their start, `"left"`
            their end (the latest turns of a dialogue).
        level_temperatures (`list[float]`, *optional*):
            Per label level, the temperature (fitted on held-out rows) dividing its logits before a label's
            probability is taken; it never changes the label chosen. None: 1.0.
    """

    model_type = "hdlm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    level_layers: list[int] | None = None
    level_names: list[str] | None = None
    level_kinds: list[str] | None = None
    level_loss_weights: list[float] | None = None
    taxonomy: list[list[str]] | None = None
    taxonomy_token_ids: list[list[list[int]]] | None = None
    allow_partial_paths: bool = False
    head_init: str = "copy"
    label_head_vocabulary: str = "labels"
    label_loss: str = "constrained"
    apply_final_norm: bool = True
    instruction: str | None = None
    use_chat_template: bool = False
    prompt_template: str = "{instruction}\n\n{text}\n\n"
    level_header_template: str = "{name}:"
    candidates_header_template: str = "{name} (one of: {candidates}):"
    level_separator: str = "\n"
    show_candidates: bool = False
    max_query_tokens: int | None = None
    query_truncation_side: str = "right"
    level_temperatures: list[float] | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        num_layers = self.text_config.num_hidden_layers
        if self.level_layers is None:
            self.level_layers = [num_layers]
        self.level_layers = [
            _integer("level_layers", layer) for layer in _as_list("`level_layers`", self.level_layers)
        ]
        num_levels = len(self.level_layers)
        if self.level_names is None:
            self.level_names = default_level_names(num_levels)
        if self.level_kinds is None:
            self.level_kinds = default_level_kinds(num_levels)
        if self.level_loss_weights is None:
            self.level_loss_weights = [1.0] * num_levels
        self.level_names = _as_list("`level_names`", self.level_names, '["topic", "subtopic"]')
        self.level_kinds = _as_list("`level_kinds`", self.level_kinds, '["label", "text"]')
        self.level_loss_weights = [_weight(w) for w in _as_list("`level_loss_weights`", self.level_loss_weights)]
        if self.max_query_tokens is not None:
            self.max_query_tokens = _integer("max_query_tokens", self.max_query_tokens)
        self._validate_levels(num_layers)
        if self.taxonomy is not None:
            paths = _as_list("`taxonomy`", self.taxonomy, '[["Science", "Physics"], ["Sports", "Tennis"]]')
            if not paths:
                raise ValueError("`taxonomy` is empty, which would turn the label constraints off: pass None instead.")
            self.taxonomy = [
                _as_list(f"`taxonomy[{i}]`", path, '["Science", "Physics"]') for i, path in enumerate(paths)
            ]
            self._validate_taxonomy()
        if self.taxonomy_token_ids is not None:
            self.taxonomy_token_ids = [
                [
                    _as_list(f"`taxonomy_token_ids[{i}]` entries", ids)
                    for ids in _as_list(f"`taxonomy_token_ids[{i}]`", path)
                ]
                for i, path in enumerate(_as_list("`taxonomy_token_ids`", self.taxonomy_token_ids))
            ]
            self._validate_taxonomy_token_ids()
            self.taxonomy_token_ids = [
                [[operator.index(t) for t in ids] for ids in path] for path in self.taxonomy_token_ids
            ]
        if self.instruction is None:
            self.instruction = "Answer with the " + ", then the ".join(self.level_names) + "."
        self._validate_rendering()
        if self.level_temperatures is not None:
            temperatures = _as_list("`level_temperatures`", self.level_temperatures, "[1.2, 1.0]")
            valid = all(isinstance(t, numbers.Real) and type(t) is not bool and 0 < t < math.inf for t in temperatures)
            if len(temperatures) != self.num_label_levels or not valid:
                raise ValueError(
                    f"`level_temperatures` must hold one finite number > 0 per label level ({self.num_label_levels}), "
                    f"got {temperatures!r}. Fit them (`eval_hdlm.py --calibration_file`) or pass None (1.0)."
                )
            self.level_temperatures = [float(t) for t in temperatures]

    @classmethod
    def from_options(
        cls, text_config: PreTrainedConfig, options: "HdLMConfig | Mapping[str, Any] | Any"
    ) -> "HdLMConfig":
        """A config on `text_config` with the HdLM options of `options`: another `HdLMConfig`, or its fields as a
        mapping or a dataclass (unknown names are a `TypeError` suggesting the close ones; sequences become lists)."""
        fields = sorted(set(inspect.get_annotations(cls)) - {"text_config"})
        if isinstance(options, PreTrainedConfig) and options.model_type == cls.model_type:
            options = {name: getattr(options, name) for name in fields}
        else:
            options = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
            if unknown := sorted(set(options) - set(fields)):
                close = {name: difflib.get_close_matches(name, fields, 1) for name in unknown}
                hints = [
                    f"{name!r} (did you mean {close[name][0]!r}?)" if close[name] else repr(name) for name in unknown
                ]
                raise TypeError(
                    f"Got unknown HdLM options {', '.join(hints)}: the options are the fields of `HdLMConfig`."
                )
        for name in ("level_layers", "level_names", "level_kinds", "level_loss_weights", "taxonomy"):
            if isinstance(options.get(name), Sequence):
                options[name] = [list(path) for path in options[name]] if name == "taxonomy" else list(options[name])
        return cls(text_config=text_config, **options)

    @property
    def num_levels(self) -> int:
        return len(self.level_layers)

    @property
    def num_label_levels(self) -> int:
        """Number of leading label levels (the depth of the taxonomy)."""
        return self.level_kinds.count("label")

    @property
    def head_levels(self) -> list[int]:
        """0-based indices of the levels with a head of their own: read before the last layer, not `shared`."""
        if self.head_init == "shared":
            return []
        return [d for d, layer in enumerate(self.level_layers) if layer < self.text_config.num_hidden_layers]

    def has_label_head(self, level: int) -> bool:
        """Whether `level` has a head of its own restricted to its labels' tokens (`label_head_vocabulary`)."""
        return (
            level in self.head_levels
            and self.level_kinds[level] == "label"
            and self.label_head_vocabulary == "labels"
            and self.taxonomy is not None
        )

    def _validate_levels(self, num_layers: int) -> None:
        layers = self.level_layers
        if not layers:
            raise ValueError(f"`level_layers` must be a non-empty list of integers, got {layers!r}.")
        if any(not 1 <= layer <= num_layers for layer in layers):
            raise ValueError(
                f"`level_layers` entries must lie in 1..{num_layers} (the base model has {num_layers} layers), "
                f"got {layers!r}."
            )
        if layers[-1] != num_layers:
            raise ValueError(
                f"`level_layers` must end with the last layer {num_layers} (the base model's own head), "
                f"got {layers!r}."
            )
        below_last = [layer for layer in layers if layer < num_layers]
        if any(b <= a for a, b in zip(below_last, below_last[1:])) or layers[: len(below_last)] != below_last:
            raise ValueError(
                f"`level_layers` must be strictly increasing (only trailing levels may share layer {num_layers}), "
                f"got {layers!r}."
            )
        for field in ("level_names", "level_kinds", "level_loss_weights"):
            values = getattr(self, field)
            if len(values) != len(layers):
                raise ValueError(
                    f"`{field}` must have one entry per level ({len(layers)}, as `level_layers`), got {values!r}."
                )
        names = self.level_names
        if not all(isinstance(name, str) and name.strip() for name in names) or len(set(names)) != len(names):
            raise ValueError(f"`level_names` must be distinct non-empty strings, got {names!r}.")
        if any(kind not in LEVEL_KINDS for kind in self.level_kinds):
            raise ValueError(f"`level_kinds` entries must be one of {LEVEL_KINDS}, got {self.level_kinds!r}.")
        if misplaced_label_level(self.level_kinds) is not None:
            raise ValueError(
                f"`level_kinds` must list label levels before text levels (a label cannot follow free text), "
                f"got {self.level_kinds!r}."
            )
        weights = self.level_loss_weights
        if any(not math.isfinite(weight) or weight < 0 for weight in weights) or not any(weights):
            raise ValueError(
                f"`level_loss_weights` entries must be finite and >= 0, and not all 0 (nothing would be trained), "
                f"got {weights!r}."
            )
        for field, allowed in (
            ("head_init", HEAD_INITS),
            ("label_head_vocabulary", LABEL_HEAD_VOCABULARIES),
            ("label_loss", LABEL_LOSSES),
        ):
            if getattr(self, field) not in allowed:
                raise ValueError(f"`{field}` must be one of {allowed}, got {getattr(self, field)!r}.")
        if self.max_query_tokens is not None and self.max_query_tokens < 1:
            raise ValueError(f"`max_query_tokens` must be a positive integer or None, got {self.max_query_tokens!r}.")
        if self.query_truncation_side not in TRUNCATION_SIDES:
            raise ValueError(
                f"`query_truncation_side` must be one of {TRUNCATION_SIDES}, got {self.query_truncation_side!r}."
            )

    def _validate_rendering(self) -> None:
        for field in ("apply_final_norm", "use_chat_template", "show_candidates"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` must be True or False, got {getattr(self, field)!r}.")
        for field in ("instruction", "level_separator"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise TypeError(f"`{field}` must be a string, got {type(value).__name__} {value!r}.")
        if not self.level_separator:
            raise ValueError("`level_separator` must not be empty: it ends every level but the last.")
        for field, placeholders, required in (
            ("prompt_template", ("instruction", "text"), "text"),
            ("level_header_template", ("name",), None),
            ("candidates_header_template", ("name", "candidates"), None),
        ):
            template = getattr(self, field)
            if not isinstance(template, str):
                raise TypeError(f"`{field}` must be a string, got {template!r}.")
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
            except ValueError as error:
                raise ValueError(
                    f"`{field}` is not a valid format string ({error}): {template!r}; write a literal brace as `{{{{` "
                    "or `}}}}`."
                ) from None
            unknown = [name for name in names if name not in placeholders]
            if unknown or (required is not None and required not in names):
                raise ValueError(
                    f"`{field}` may use only the placeholders {', '.join('{' + n + '}' for n in placeholders)}"
                    + (f" and must contain `{{{required}}}`" if required else "")
                    + f", got {template!r}"
                    + (f" (unknown: {', '.join('{' + n + '}' for n in unknown)})." if unknown else ".")
                )
            try:  # a conversion (`!x`) or a format spec (`:d`) that fails on text fails every rendering
                template.format(**{name: "text" for name in placeholders})
            except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
                raise ValueError(
                    f"`{field}` does not render text ({type(error).__name__}: {error}): {template!r}; write its "
                    f"placeholders plainly, e.g. {'{' + placeholders[-1] + '}'!r}, or with a string format spec."
                ) from None

    def _validate_taxonomy(self) -> None:
        depth = self.num_label_levels
        if depth == 0:
            raise ValueError("`taxonomy` was given but `level_kinds` has no label level; drop it or add one.")
        if not isinstance(self.allow_partial_paths, bool):
            raise TypeError(f"`allow_partial_paths` must be True or False, got {self.allow_partial_paths!r}.")
        if self.allow_partial_paths and depth != self.num_levels:
            raise ValueError(
                f"`allow_partial_paths=True` needs every level to be a label level, got `level_kinds` "
                f"{self.level_kinds!r}: a path that stops early ends the whole answer."
            )
        seen = set()
        for index, path in enumerate(self.taxonomy):
            if problem := taxonomy_path_problem(path, depth, self.allow_partial_paths):
                raise ValueError(f"`taxonomy` path {index} {path!r} {problem}.")
            if tuple(path) in seen:
                raise ValueError(f"`taxonomy` path {index} {path!r} is listed twice; list every path once.")
            seen.add(tuple(path))
        if max(len(path) for path in self.taxonomy) != depth:
            raise ValueError(
                f"No `taxonomy` path reaches the last label level ({depth}): drop that level, or give its labels."
            )

    def _validate_taxonomy_token_ids(self) -> None:
        token_ids = self.taxonomy_token_ids
        if self.taxonomy is None or len(token_ids) != len(self.taxonomy):
            raise ValueError(
                "`taxonomy_token_ids` must hold one entry per `taxonomy` path "
                f"({0 if self.taxonomy is None else len(self.taxonomy)}), got {len(token_ids)}."
            )
        vocab_size = self.text_config.vocab_size
        for path, ids in zip(self.taxonomy, token_ids):
            valid = all(
                level_ids and all(_is_integer(t) and 0 <= operator.index(t) < vocab_size for t in level_ids)
                for level_ids in ids
            )
            if len(ids) != len(path) or not valid:
                raise ValueError(
                    f"`taxonomy_token_ids` entry for {path!r} must hold, per label, a non-empty list of token ids in "
                    f"0..{vocab_size - 1}, got {ids!r}."
                )


def _as_list(name: str, value: Any, example: str = "[2, 4]") -> list:
    """`value` as a list: a list or tuple, or an array or tensor (`tolist()`); anything else (a string, a number) is a
    `TypeError` naming `name`."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list, e.g. {example}, got {type(value).__name__} {value!r}.")
    return list(value)


def _is_integer(value: Any) -> bool:
    """An integer, Python, NumPy or a one-element integer tensor, but not a bool."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool) and type(value).__name__ != "bool_"


def _integer(field: str, value: Any) -> int:
    if not _is_integer(value):
        raise TypeError(f"`{field}` entries must be integers, got {type(value).__name__} {value!r}.")
    return operator.index(value)


def _weight(value: Any) -> float:
    if hasattr(value, "item") and not isinstance(value, numbers.Real):  # a one-element tensor
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`level_loss_weights` entries must be numbers, got {type(value).__name__} {value!r}.")
    return float(value)


HdLMConfig.register_for_auto_class()

__all__ = [
    "LEVEL_KINDS",
    "HdLMConfig",
    "default_level_kinds",
    "default_level_names",
    "misplaced_label_level",
    "taxonomy_path_problem",
]
