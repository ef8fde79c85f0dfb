"""What [`HdLMForCausalLM.generate_hierarchical`] takes and returns: its options (`HierarchicalGenerationConfig`), its
inputs as prompt token ids, the tokenizer beside the weights (and a check of the weights files), and the decoded
levels.

This file is copied beside every HdLM checkpoint and loaded with `trust_remote_code=True`: it imports only torch,
transformers, safetensors and its sibling file `rendering_hdlm`.
"""

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import CONFIG_NAME
from transformers.utils.hub import cached_file, extract_commit_hash

try:
    from .configuration_hdlm import HdLMConfig
    from .rendering_hdlm import HdLMRenderer
except ImportError:  # imported as a top-level module from a source checkout
    from configuration_hdlm import HdLMConfig
    from rendering_hdlm import HdLMRenderer

STRATEGIES = ("greedy", "rank")


@dataclass
class HierarchicalLevel:
    """
    One decoded level: its text, tokens and log-probability, and the label for label levels.

    `score` is the log-probability of the level's tokens: over the whole vocabulary for free levels and for
    `strategy="rank"` (the label's full log-likelihood); for constrained greedy levels, among the tokens the taxonomy
    allows at each step (as `compute_transition_scores(..., normalize_logits=True)` scores a constrained `generate`).

    `probability` (label levels decoded under constraints) is the label's probability among the labels the taxonomy
    allows below the path above it: `exp(score)` for greedy decoding (the allowed tokens' probabilities multiply to
    a distribution over the allowed labels), the softmax of the candidates' scores for `strategy="rank"`.
    """

    name: str
    kind: str
    text: str
    token_ids: list[int]
    score: float
    label: str | None = None
    top_labels: list[tuple[str, float]] | None = None
    """With `top_k > 1`: the `top_k` best labels and their probabilities among the candidates."""
    truncated: bool = False
    """The level hit `max_new_tokens` before its end marker."""
    probability: float | None = None


@dataclass
class HierarchicalOutput:
    """The hierarchical answer to one input, coarsest level first."""

    levels: list[HierarchicalLevel] = field(default_factory=list)
    top_paths: list[tuple[list[str], float]] | None = None
    """With `top_k_paths > 1`: the most probable label paths found by the beam, best first, each with its
    probability (the product of its levels' probabilities among the labels allowed under their parents)."""
    abstained_levels: list[HierarchicalLevel] = field(default_factory=list)
    """With `abstain_threshold`: the decoded levels cut off because the path's probability fell below the threshold
    there (empty when the whole path reached it)."""

    @property
    def abstained(self) -> bool:
        """Whether `abstain_threshold` cut the path short (`levels` then stops at the deepest confident level)."""
        return bool(self.abstained_levels)

    @property
    def path(self) -> list[str]:
        return [level.text for level in self.levels]

    @property
    def probability(self) -> float | None:
        """The path's probability: the product of its label levels' probabilities (None where a label level was
        decoded without constraints, or there is no label level)."""
        probabilities = [level.probability for level in self.levels if level.kind == "label"]
        if not probabilities or None in probabilities:
            return None
        return math.prod(probabilities)

    def abstain(self, threshold: float) -> None:
        """
        Cut `levels` after the deepest label level whose path probability (the product of the label probabilities
        down to it) reaches `threshold`; the levels below move to `abstained_levels`. Text levels are kept only
        after a whole label path, as they answer it.
        """
        kept, probability = 0, 1.0
        for level in self.levels:
            if level.kind != "label":
                kept = len(self.levels)
                break
            probability *= level.probability
            if probability < threshold:
                break
            kept += 1
        self.levels, self.abstained_levels = self.levels[:kept], self.levels[kept:] + self.abstained_levels


@dataclass
class HierarchicalGenerationConfig:
    """
    The options of [`HdLMForCausalLM.generate_hierarchical`], as [`~transformers.GenerationConfig`] holds those of
    `generate`: checked when made, and overridden by `generate_hierarchical`'s keyword arguments.

    Args:
        strategy (`str`, *optional*, defaults to `"greedy"`):
            `"greedy"` decodes every level token by token; `"rank"` scores every candidate label of a label level
            exactly (full log-likelihood) and keeps the best.
        constrained (`bool`, *optional*, defaults to `True`):
            Restrict label levels to the taxonomy's labels below the label chosen one level up.
        early_exit (`bool`, *optional*, defaults to `True`):
            Decode level `d` running only the first `level_layers[d]` layers, then fill the deeper layers' cache in
            one parallel pass. Exact: the tokens equal those of `early_exit=False`.
        max_new_tokens (`int`, *optional*, defaults to 64):
            The most tokens a level may take (its end marker included).
        top_k (`int`, *optional*, defaults to 1):
            With `strategy="rank"`, also report the `top_k` best labels of each label level.
        batch_size (`int`, *optional*, defaults to 8):
            Inputs decoded together.
        do_sample (`bool`, *optional*, defaults to `False`):
            Sample the tokens of text levels; `temperature`, `top_p`, `repetition_penalty` and `generator` act as in
            `generate`, the repetition penalty counting the prompt and the earlier levels too.
        temperature (`float`, *optional*, defaults to 1.0), top_p (`float`, *optional*, defaults to 1.0):
            Sampling warpers of text levels (None: 1.0), checked only with `do_sample`.
        repetition_penalty (`float`, *optional*, defaults to 1.0):
            Penalty of the tokens seen so far, greedy or sampled (None: 1.0).
        generator (`torch.Generator`, *optional*):
            The random source of sampling.
        show_progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar over batches.
        top_k_paths (`int`, *optional*, defaults to 1):
            With N > 1, a beam of width N over the taxonomy, level by level: `HierarchicalOutput.top_paths` holds the
            N most probable label paths found, and `levels` the best of them (text levels are decoded after it).
            With `strategy="greedy"` a label's probability is the product of its tokens' probabilities among the
            allowed tokens, with `"rank"` the softmax of the candidates' log-likelihoods, as for one path.
        abstain_threshold (`float`, *optional*):
            Stop at the deepest label level whose path probability (the product of the label probabilities down to
            it) reaches this value: `levels` is cut there, the rest is kept in `HierarchicalOutput.abstained_levels`
            (non-mandatory leaf prediction). None: always the whole path.
    """

    strategy: str = "greedy"
    constrained: bool = True
    early_exit: bool = True
    max_new_tokens: int = 64
    top_k: int = 1
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    generator: torch.Generator | None = None
    show_progress: bool = False
    top_k_paths: int = 1
    abstain_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {self.strategy!r}.")
        for name in ("top_k", "max_new_tokens", "batch_size", "top_k_paths"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int, got {value!r} ({type(value).__name__}).")
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        for name in ("constrained", "early_exit", "do_sample", "show_progress"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be True or False, got {value!r} ({type(value).__name__}).")
        self.temperature = _sampling_number("temperature", self.temperature, 1.0, check=self.do_sample)
        self.top_p = _sampling_number("top_p", self.top_p, 1.0, check=self.do_sample, at_most_one=True)
        self.repetition_penalty = _sampling_number("repetition_penalty", self.repetition_penalty, 1.0, check=True)
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a `torch.Generator` (e.g. `torch.Generator().manual_seed(0)`) or None, got "
                f"{type(self.generator).__name__}."
            )
        if self.abstain_threshold is not None:
            threshold = _sampling_number(
                "abstain_threshold", self.abstain_threshold, 1.0, check=True, at_most_one=True
            )
            self.abstain_threshold = threshold
        if self.top_k > 1 and self.strategy != "rank":
            raise ValueError(
                f"`top_k={self.top_k}` needs `strategy='rank'` (greedy decoding yields one label per level)."
            )

    @classmethod
    def from_options(
        cls, generation_config: "HierarchicalGenerationConfig | None" = None, **kwargs
    ) -> "HierarchicalGenerationConfig":
        """
        A checked copy of `generation_config` (default: the defaults) with `kwargs` overriding its fields, as
        `generate` merges its keyword arguments into its `generation_config`. The copy of this class that a
        checkpoint's own code defines is taken too.
        """
        names = [option.name for option in dataclasses.fields(cls)]
        if unknown := sorted(set(kwargs) - set(names)):
            raise TypeError(
                f"`generate_hierarchical` got unknown keyword arguments {unknown}: it takes the fields of "
                f"`HierarchicalGenerationConfig` ({', '.join(names)})."
            )
        if generation_config is None:
            return cls(**kwargs)
        if not dataclasses.is_dataclass(generation_config) or type(generation_config).__name__ != cls.__name__:
            raise TypeError(
                "`generation_config` must be a `HierarchicalGenerationConfig`, got "
                f"{type(generation_config).__name__}."
            )
        return cls(**{**{name: getattr(generation_config, name) for name in names}, **kwargs})

    def check_model(self, config: HdLMConfig) -> None:
        """Raise where a model of [`HdLMConfig`] `config` cannot decode with these options."""
        if self.strategy == "rank" and not (self.constrained and config.taxonomy):
            raise ValueError(
                "`strategy='rank'` ranks the taxonomy's labels: it needs `constrained=True` and a taxonomy."
            )
        for name in ("top_k_paths", "abstain_threshold"):
            if getattr(self, name) not in (1, None) and not (self.constrained and config.taxonomy):
                raise ValueError(
                    f"`{name}` needs the label levels' probabilities: decode with `constrained=True` a model with a "
                    "taxonomy."
                )
        if self.top_k_paths > 1 and config.allow_partial_paths:
            raise ValueError(
                "`top_k_paths` does not rank paths that stop early yet (`allow_partial_paths=True`): decode with "
                "`top_k_paths=1`, or `strategy='rank', top_k=...` for each level's best labels."
            )
        label_heads = [config.level_names[level] for level in config.head_levels if config.has_label_head(level)]
        if label_heads and not self.constrained:
            raise ValueError(
                f"`constrained=False` cannot decode levels {label_heads}: their heads hold only their labels' tokens "
                "(`label_head_vocabulary='labels'`). Decode under constraints, or train with "
                "`label_head_vocabulary='full'` to compare with free decoding."
            )

    def logits_processors(self) -> LogitsProcessorList:
        """The repetition penalty and, when sampling, the temperature and top-p warpers, as `generate` orders them."""
        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.do_sample:
            processors.extend([TemperatureLogitsWarper(self.temperature), TopPLogitsWarper(self.top_p)])
        return processors


def _sampling_number(name: str, value: object, default: float, check: bool, at_most_one: bool = False) -> float:
    """A decoding option as a float (None: `default`); with `check`, it must be finite and > 0 (and <= 1)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if check and not (math.isfinite(value) and value > 0 and (value <= 1 or not at_most_one)):
        bounds = "in (0, 1]" if at_most_one else "finite and > 0"
        raise ValueError(f"`{name}` must be {bounds}, got {value}.")
    return value


# -- inputs and tokenizer ---------------------------------------------------------------------------------------------


def prompt_ids(
    inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]], renderer: HdLMRenderer
) -> list[list[int]]:
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.tolist()
    if isinstance(inputs, str):
        return [renderer.prompt_ids(inputs)]
    if isinstance(inputs, (bytes, bytearray, memoryview)):  # a Sequence of ints, which would pass for token ids
        raise TypeError(
            f"`inputs` is {type(inputs).__name__}, not text: decode it first (e.g. `inputs.decode('utf-8')`), or pass "
            "token ids as a list of ints."
        )
    if not isinstance(inputs, Sequence):
        raise TypeError(
            f"`inputs` must be a string, a list of strings, a list of token ids or a list of such lists, got "
            f"{type(inputs).__name__}."
        )
    if not inputs:
        raise ValueError("`inputs` is empty: pass at least one query.")
    if all(_is_token_id(item) for item in inputs):
        return [list(inputs)]
    if all(isinstance(item, str) for item in inputs):
        return [renderer.prompt_ids(item) for item in inputs]
    if all(isinstance(item, (list, tuple)) and item and all(_is_token_id(t) for t in item) for item in inputs):
        return [list(item) for item in inputs]
    odd = next((index for index, item in enumerate(inputs) if not isinstance(item, (str, list, tuple, int))), None)
    where = f"`inputs[{odd}]` is a {type(inputs[odd]).__name__}" if odd is not None else "kinds mixed, or a list empty"
    raise TypeError(
        "`inputs` must be a string, a list of strings, a list of token ids or a list of non-empty lists of token ids "
        f"({where})."
    )


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def tokenizer_source(name_or_path: str | os.PathLike, load_kwargs: dict) -> dict:
    """
    The `AutoTokenizer.from_pretrained` arguments that reach the files a model was just loaded from: a local
    directory as an absolute path (local files only), else the Hub repository pinned to the commit in the cache.
    """
    subfolder = load_kwargs.get("subfolder") or ""
    local = os.path.join(str(name_or_path), subfolder)
    if os.path.isdir(local):
        return {"pretrained_model_name_or_path": os.path.abspath(local), "local_files_only": True}
    options = {key: load_kwargs[key] for key in ("cache_dir", "token") if load_kwargs.get(key) is not None}
    try:
        config_file = cached_file(
            str(name_or_path),
            CONFIG_NAME,
            subfolder=subfolder,
            revision=load_kwargs.get("revision"),
            cache_dir=load_kwargs.get("cache_dir"),
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
        )
    except (OSError, ValueError):  # not in the cache (the weights came another way): the revision asked for
        config_file = None
    revision = extract_commit_hash(config_file, None) or load_kwargs.get("revision")
    return {
        "pretrained_model_name_or_path": str(name_or_path),
        **({"subfolder": subfolder} if subfolder else {}),
        **({"revision": revision} if revision else {}),
        **options,
    }


def load_tokenizer(source: dict | None) -> PreTrainedTokenizerBase:
    """
    The tokenizer beside a model's weights, from its `tokenizer_source`: the absolute local directory, or the same
    Hub repository at the same commit. A relative path is never re-read after a `chdir`, nor taken for a Hub id.
    """
    if source is None:
        raise ValueError(
            "Pass `tokenizer=`: this model was not loaded with `from_pretrained` from a directory or repository "
            "holding its tokenizer."
        )
    try:
        # The model's own files, whose code is already trusted. AutoTokenizer reads config.json (an `hdlm` auto_map)
        # before the tokenizer's files, and without `trust_remote_code=True` would ask whether to run that code.
        return AutoTokenizer.from_pretrained(**source, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Pass `tokenizer=`: no tokenizer could be loaded from {source['pretrained_model_name_or_path']}, "
            f"where this model was loaded from ({error})."
        ) from error


def check_weights_files(folder: str | os.PathLike) -> None:
    """Raise `OSError` naming a local `.safetensors` file of `folder` that is cut short (an interrupted save or copy),
    before `from_pretrained` reads it; a folder that does not exist (a Hub id) is left to `from_pretrained`."""
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".safetensors"):
                _check_safetensors_file(os.path.join(folder, name))


def _check_safetensors_file(path: str) -> None:
    """Raise `OSError` naming `path` when `safetensors` cannot read its header, or the header does not describe the
    whole file: a file cut short by an interrupted save, copy or download."""
    try:
        with safe_open(path, framework="pt"):
            pass
    except SafetensorError as error:
        size = os.path.getsize(path)
        reason = str(error).removeprefix("Error while deserializing header: ")
        problem = f"its header does not match the file: {reason}"
        if size < 8:
            problem = f"it holds {size} bytes, less than its header"
        raise OSError(
            f"{path} is not a complete safetensors file ({problem}): it was cut short, by an interrupted save, copy "
            "or download. Save or download the checkpoint again."
        ) from error


__all__ = ["HierarchicalGenerationConfig", "HierarchicalLevel", "HierarchicalOutput"]
