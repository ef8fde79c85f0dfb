"""HdLM: a pretrained causal LM whose intermediate layers decode the levels of a hierarchical answer.

Implements "Making Language Model a Hierarchical Classifier" (arXiv 2507.12930) for any architecture that
`AutoModelForCausalLM` builds. This file is copied beside every HdLM checkpoint and loaded with
`trust_remote_code=True`: it imports only torch, transformers and its sibling files `configuration_hdlm` and
`taxonomy_hdlm`.
"""

import contextlib
import copy
import dataclasses
import difflib
import inspect
import json
import math
import numbers
import os
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import CONFIG_NAME, ModelOutput, logging
from transformers.utils.hub import cached_file, extract_commit_hash

try:
    from .configuration_hdlm import HdLMConfig
    from .taxonomy_hdlm import LabelNode, TaxonomyTrie
except ImportError:  # imported as a top-level module from a source checkout
    from configuration_hdlm import HdLMConfig
    from taxonomy_hdlm import LabelNode, TaxonomyTrie

logger = logging.get_logger(__name__)

AUTO_MAP = {
    "AutoConfig": "configuration_hdlm.HdLMConfig",
    "AutoModel": "modeling_hdlm.HdLMForCausalLM",
    "AutoModelForCausalLM": "modeling_hdlm.HdLMForCausalLM",
}
STRATEGIES = ("greedy", "rank")


@dataclass
class HdLMOutput(ModelOutput):
    """
    Output of [`HdLMForCausalLM.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            With `level_ids`: `sum_d level_loss_weights[d] * level_losses[d]`, the loss of this batch alone; otherwise
            the plain causal LM loss.
        level_losses (`torch.FloatTensor` of shape `(num_levels,)`, *optional*):
            Token-mean cross-entropy of each level over its own tokens in this batch (0 for a level absent from it):
            `level_loss_sums / level_token_counts`.
        level_loss_sums (`torch.FloatTensor` of shape `(num_levels,)`, *optional*):
            Summed cross-entropy of each level over its own tokens in this batch. A trainer divides it by the level's
            token count over the whole optimizer step (gradient accumulation, every process) instead.
        level_token_counts (`torch.LongTensor` of shape `(num_levels,)`, *optional*):
            Number of target tokens of each level in this batch.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
            Logits of the final head (only the last `logits_to_keep` positions when that is set).
        past_key_values (`Cache`, *optional*):
            The key/value cache of the base model.
    """

    loss: torch.FloatTensor | None = None
    level_losses: torch.FloatTensor | None = None
    level_loss_sums: torch.FloatTensor | None = None
    level_token_counts: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class HierarchicalLevel:
    """
    One decoded level: its text, tokens and log-probability, and the label for label levels.

    `score` is the log-probability of the level's tokens: over the whole vocabulary for free levels and for
    `strategy="rank"` (the label's full log-likelihood); for constrained greedy levels, among the tokens the taxonomy
    allows at each step (as `compute_transition_scores(..., normalize_logits=True)` scores a constrained `generate`).
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


@dataclass
class HierarchicalOutput:
    """The hierarchical answer to one input, coarsest level first."""

    levels: list[HierarchicalLevel] = field(default_factory=list)

    @property
    def path(self) -> list[str]:
        return [level.text for level in self.levels]


class HdLMRenderer:
    """
    Renders a query and its level answers to token ids, identically for training and for inference.

    A sequence is `prompt | header_1 | " " answer_1 separator | ... | header_D | " " answer_D eos`. Each part is
    tokenised on its own, so level boundaries never merge into one token. Headers are forced (never trained on);
    answers and their end markers are the tokens of their level.

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
        self.children = _taxonomy_children(config.taxonomy)
        special = [token for token in tokenizer.added_tokens_decoder.values() if token.special]
        self.special_texts = [token.content for token in special if token.content]
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
        plain = not any(special in text for special in self.special_texts)
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

    def candidates(self, level: int, parent: str | None) -> list[str]:
        """The valid labels of a label level given the label chosen one level up (all roots for level 0)."""
        return self.children.get((level, parent), [])

    def header_ids(self, level: int, parent: str | None) -> list[int]:
        name = self.config.level_names[level]
        if self.config.show_candidates and self.config.level_kinds[level] == "label" and self.children:
            header = self.config.candidates_header_template.format(
                name=name, candidates=", ".join(self.candidates(level, parent))
            )
        else:
            header = self.config.level_header_template.format(name=name)
        return self._encode_part(header)

    def end_ids(self, level: int) -> list[int]:
        return self.eos_ids if level == self.config.num_levels - 1 else self.separator_ids

    def answer_ids(self, level: int, answer: str) -> list[int]:
        """The tokens of one level: the answer, then the level's end marker."""
        encode = self._encode_part if self.config.level_kinds[level] == "label" else self._encode
        return encode(" " + answer) + self.end_ids(level)

    def taxonomy_token_ids(self) -> list[list[list[int]]]:
        """Each label's tokens on each taxonomy path, as `answer_ids` renders them (`config.taxonomy_token_ids`)."""
        return [[self.answer_ids(level, label) for level, label in enumerate(path)] for path in self.config.taxonomy]

    def encode_example(
        self, text: str, answers: Sequence[str], query_limit: int | None = None
    ) -> tuple[list[int], list[int]]:
        """Token ids of a full training sequence and their level ids (0 = no loss, d = level d)."""
        input_ids = self.prompt_ids(text, query_limit)
        level_ids = [0] * len(input_ids)
        parent = None
        for level, answer in enumerate(answers):
            header = self.header_ids(level, parent)
            answer_ids = self.answer_ids(level, answer)
            input_ids += header + answer_ids
            level_ids += [0] * len(header) + [level + 1] * len(answer_ids)
            parent = answer
        return input_ids, level_ids


def _taxonomy_children(taxonomy: list[list[str]] | None) -> dict[tuple[int, str | None], list[str]]:
    """Map `(level, parent label)` to the sorted labels allowed below it (`parent` is None at level 0)."""
    children: dict[tuple[int, str | None], set[str]] = {}
    for path in taxonomy or []:
        for level, label in enumerate(path):
            children.setdefault((level, path[level - 1] if level else None), set()).add(label)
    return {key: sorted(labels) for key, labels in children.items()}


class _SkippedLayer(nn.Module):
    """Stands in for a decoder layer outside the range being run; returns `replacement` or its input."""

    def __init__(self, replacement: torch.Tensor | None = None):
        super().__init__()
        self.replacement = replacement

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states if self.replacement is None else self.replacement


def _cache_view(cache: Cache, run: range) -> Cache:
    """
    A view of `cache` in which each layer outside `run` is replaced by a run layer of the same type.

    Layers outside the run are skipped and lag behind (or run ahead of) the others; the base model derives
    mask sizes and positions from its first layer of each type, so those must answer for the layers that run.
    Updates go to the shared layer objects, hence to `cache` itself.
    """
    view = copy.copy(cache)
    view.layers = list(cache.layers)
    representative = {}
    for index in run:
        representative.setdefault(type(cache.layers[index]), cache.layers[index])
    for index, layer in enumerate(cache.layers):
        if index not in run and type(layer) in representative:
            view.layers[index] = representative[type(layer)]
    return view


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


class HdLMPreTrainedModel(PreTrainedModel):
    config_class = HdLMConfig
    config: HdLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class HdLMForCausalLM(HdLMPreTrainedModel, GenerationMixin):
    """
    A causal LM with one extra language head per intermediate level.

    Level `d` is decoded from the output of decoder layer `config.level_layers[d]` through its own head (a copy of
    the final head); the last level through the base model's own head. Training is one causal forward over
    `[query; r_1; ...; r_D]`; inference decodes level `d` running only the first `level_layers[d]` layers.
    """

    def __init__(self, config: HdLMConfig):
        super().__init__(config)
        self.model = AutoModelForCausalLM.from_config(config.text_config)
        self._taxonomy_trie: TaxonomyTrie | None = None
        self.level_heads = nn.ModuleDict({str(level): self._new_head(level) for level in config.head_levels})
        self._layers_name = self._find_decoder_layers()
        self._tokenizer_source: dict | None = None
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """
        `PreTrainedModel.from_pretrained`, which also fixes where the tokenizer is, for `generate_hierarchical`, and
        names a local weights file cut short (an interrupted save or copy) before reading it.
        """
        folder = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if name.endswith(".safetensors"):
                    _check_safetensors_file(os.path.join(folder, name))
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._tokenizer_source = _tokenizer_source(pretrained_model_name_or_path, kwargs)
        return loaded

    def _new_head(self, level: int, like: nn.Module | None = None) -> nn.Linear:
        """An empty head for `level`: a label-vocabulary head or a full one, shaped and placed like the final head."""
        like = self.model.get_output_embeddings() if like is None else like
        options = dict(bias=like.bias is not None, device=like.weight.device, dtype=like.weight.dtype)
        if self.config.has_label_head(level):
            return HdLMLabelHead(like.in_features, self.label_trie().vocabularies[level], **options)
        return nn.Linear(like.in_features, like.out_features, **options)

    def label_trie(self, renderer: "HdLMRenderer | None" = None) -> TaxonomyTrie:
        """
        The prefix tries of the taxonomy's labels over their token ids (`config.taxonomy_token_ids`).

        A config without token ids (built without a tokenizer) takes them from `renderer`.
        """
        if self._taxonomy_trie is None:
            if self.config.taxonomy is None:
                raise ValueError("This HdLM has no taxonomy: its levels have no labels to constrain.")
            token_ids = self.config.taxonomy_token_ids
            if token_ids is None:
                if renderer is None:
                    raise ValueError(
                        "`config.taxonomy_token_ids` is not set, and label-vocabulary heads, the constrained loss and "
                        "constrained decoding are built from it: adapt the model with "
                        "`HdLMForCausalLM.from_base(..., tokenizer=tokenizer)`."
                    )
                token_ids = renderer.taxonomy_token_ids()
            self._taxonomy_trie = TaxonomyTrie(self.config.taxonomy, token_ids)
        return self._taxonomy_trie

    def _find_decoder_layers(self) -> str:
        num_layers = self.config.text_config.num_hidden_layers
        for name, module in self.model.base_model.named_children():
            if isinstance(module, nn.ModuleList) and len(module) == num_layers:
                return f"model.base_model.{name}"
        raise ValueError(
            f"Could not find the {num_layers} decoder layers of {type(self.model).__name__}: HdLM expects its base "
            "model to hold them in one `nn.ModuleList`."
        )

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.get_submodule(self._layers_name)

    @property
    def final_norm(self) -> nn.Module:
        """The base model's final norm: the first normalisation module registered after the decoder layers."""
        seen_layers = False
        for module in self.model.base_model.children():
            if module is self.decoder_layers:
                seen_layers = True
            elif seen_layers and "norm" in type(module).__name__.lower():
                return module
        raise ValueError(
            f"Could not find the final norm of {type(self.model).__name__}; set `apply_final_norm=False` to read "
            "raw hidden states."
        )

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.model.set_output_embeddings(value)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """
        `PreTrainedModel.resize_token_embeddings`, keeping the level heads in step with the vocabulary: full heads
        (copies of the final head) grow or shrink with it, their new rows copied from the final head's new rows;
        label-vocabulary heads hold their labels' tokens only and stay as they are. Shrinking the vocabulary below a
        token the taxonomy's labels use is refused.
        """
        if new_num_tokens is not None and self.config.taxonomy_token_ids is not None:
            used = max(token for path in self.config.taxonomy_token_ids for ids in path for token in ids)
            if new_num_tokens <= used:
                raise ValueError(
                    f"`new_num_tokens={new_num_tokens}` would drop token {used}, which the taxonomy's labels use "
                    "(`config.taxonomy_token_ids`): keep at least "
                    f"{used + 1} tokens, or adapt the base model again with `from_base`."
                )
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        vocab_size = embeddings.weight.shape[0]
        final_head = self.model.get_output_embeddings()
        for key, head in self.level_heads.items():
            if isinstance(head, HdLMLabelHead) or head.out_features == vocab_size:
                continue
            resized = nn.Linear(
                head.in_features,
                vocab_size,
                bias=head.bias is not None,
                device=head.weight.device,
                dtype=head.weight.dtype,
            )
            kept = min(head.out_features, vocab_size)
            with torch.no_grad():
                resized.weight[:kept] = head.weight[:kept]
                resized.weight[kept:] = final_head.weight[kept:vocab_size]
                if head.bias is not None:
                    resized.bias[:kept] = head.bias[:kept]
                    resized.bias[kept:] = final_head.bias[kept:vocab_size] if final_head.bias is not None else 0.0
            resized.requires_grad_(head.weight.requires_grad)
            self.level_heads[key] = resized
        return embeddings

    @classmethod
    def from_base(
        cls,
        base: str | PreTrainedModel,
        config: HdLMConfig | Mapping[str, object],
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        base_kwargs: dict | None = None,
    ) -> "HdLMForCausalLM":
        """
        Adapt a pretrained causal LM into an HdLM.

        Args:
            base: a loaded causal LM, or a path / hub id loaded with `AutoModelForCausalLM.from_pretrained`
                (`base_kwargs` are passed on, e.g. `dtype`).
            config: the HdLM options: an [`HdLMConfig`] (its `text_config` is replaced by the base model's), or its
                fields as a dict or a dataclass (`{"level_layers": [12, 18], "taxonomy": ...}`), from which one is
                built on the base model's config.
            tokenizer: the base model's tokenizer. With a taxonomy it renders the labels' token ids
                (`config.taxonomy_token_ids`), from which label-vocabulary heads and the constrained loss are built.
        """
        fields = sorted(set(inspect.get_annotations(HdLMConfig)) - {"text_config"})
        if isinstance(config, HdLMConfig):
            options = {name: getattr(config, name) for name in fields}
        else:
            options = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
            if unknown := sorted(set(options) - set(fields)):
                close = {name: difflib.get_close_matches(name, fields, 1) for name in unknown}
                hints = [
                    f"{name!r} (did you mean {close[name][0]!r}?)" if close[name] else repr(name) for name in unknown
                ]
                raise TypeError(
                    f"`from_base` got unknown HdLM options {', '.join(hints)}: it takes the fields of `HdLMConfig`."
                )
        for name in ("level_layers", "level_names", "level_kinds", "level_loss_weights", "taxonomy"):
            if isinstance(options.get(name), Sequence):  # tuples and other sequences, as `HdLMConfig` stores lists
                options[name] = [list(path) for path in options[name]] if name == "taxonomy" else list(options[name])
        if isinstance(base, str):
            base = AutoModelForCausalLM.from_pretrained(base, **(base_kwargs or {}))
        config = HdLMConfig(text_config=base.config, **options)
        config.auto_map = dict(AUTO_MAP)
        config.dtype = base.dtype
        if config.taxonomy is not None and tokenizer is not None:
            config.taxonomy_token_ids = HdLMRenderer(config, tokenizer).taxonomy_token_ids()
            config._validate_taxonomy_token_ids()
        with torch.device("meta"):
            model = cls(config)
        model.model = base
        final_head = base.get_output_embeddings()
        for level in config.head_levels:
            head = model._new_head(level, like=final_head)
            if config.head_init == "copy":
                rows = head.token_ids if isinstance(head, HdLMLabelHead) else slice(None)
                with torch.no_grad():
                    head.weight.copy_(final_head.weight[rows])
                    if head.bias is not None:
                        head.bias.copy_(final_head.bias[rows])
            else:
                model._init_weights(head)
            model.level_heads[str(level)] = head
        model.generation_config = copy.deepcopy(base.generation_config)
        model.name_or_path = base.name_or_path
        if base.name_or_path:
            model._tokenizer_source = _tokenizer_source(base.name_or_path, base_kwargs or {})
        return model

    @property
    def max_positions(self) -> int | None:
        """The most positions the base model encodes (`max_position_embeddings`), or None where it sets no limit."""
        return getattr(self.config.text_config, "max_position_embeddings", None)

    def level_head(self, level: int) -> nn.Module:
        """The head that decodes `level`: its own, or the base model's final head."""
        head = self.level_heads[str(level)] if str(level) in self.level_heads else None
        return self.model.get_output_embeddings() if head is None else head

    def head_columns(self, level: int, token_ids: torch.Tensor) -> torch.Tensor:
        """Where `token_ids` sit among the logits of `head_logits(level, ...)`: themselves, but for label heads."""
        head = self.level_head(level)  # with PEFT, a wrapper that forwards `columns` to the label head it holds
        return head.columns(token_ids) if hasattr(head, "columns") else token_ids

    def head_logits(
        self, level: int, hidden_states: torch.Tensor, token_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Logits of level `level`'s head for raw decoder-layer outputs `hidden_states`, in float32 at least.

        Without `token_ids`, one logit per row of the head: the whole vocabulary, or for a label head
        ([`HdLMLabelHead`]) its labels' tokens (`head_columns` maps token ids to them). With `token_ids`, only those
        tokens' logits, in that order: a few rows of the head instead of all of it, which is what constrained
        decoding and the constrained loss need.
        """
        is_final = str(level) not in self.level_heads
        if is_final or self.config.apply_final_norm:
            hidden_states = self.final_norm(hidden_states)
        head = self.level_head(level)
        if token_ids is None:
            logits = head(hidden_states)
        else:
            rows = self.head_columns(level, token_ids)
            bias = None if head.bias is None else head.bias[rows]
            logits = F.linear(hidden_states, head.weight[rows], bias)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        softcap = getattr(self.config.text_config, "final_logit_softcapping", None)
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    @contextlib.contextmanager
    def _running_layers(
        self, start: int, stop: int, capture: Sequence[int], injected: torch.Tensor | None = None
    ) -> Iterator[dict[int, torch.Tensor]]:
        """
        Run only decoder layers `[start, stop)` (0-based) in the base forwards made inside the block.

        The skipped layers before `start` hand over `injected` (the output of layer `start - 1`); those after
        `stop` pass their input through. Yields a dict filled with the outputs of the layers in `capture`.
        """
        layers = self.decoder_layers
        originals = list(layers)
        captured: dict[int, torch.Tensor] = {}

        def keep(index: int):
            def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
                captured[index] = output[0] if isinstance(output, tuple) else output

            return hook

        handles = [layers[index].register_forward_hook(keep(index)) for index in capture]
        try:
            for index in range(len(layers)):
                if not start <= index < stop:
                    layers[index] = _SkippedLayer(injected if index < start else None)
            yield captured
        finally:
            for handle in handles:
                handle.remove()
            for index, module in enumerate(originals):
                layers[index] = module

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        level_ids: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> HdLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Target token ids (-100 = ignored). With `level_ids`, they default to `input_ids`.
        level_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The level of each token: 0 for tokens without loss (prompt, headers, padding), `d` for the tokens of
            level `d`, which head `d` predicts from the previous position. Without it the model is the plain
            causal LM (the sft@K baseline).
        """
        if level_ids is None:
            outputs = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
            return HdLMOutput(
                loss=outputs.loss,
                logits=outputs.logits,
                past_key_values=outputs.past_key_values,
                hidden_states=outputs.hidden_states,
                attentions=outputs.attentions,
            )

        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if self.max_positions is not None and length > self.max_positions:
            raise ValueError(
                f"A sequence of {length} tokens is longer than the model encodes ({self.max_positions} positions, "
                "`max_position_embeddings`): lower `max_length` (or `max_query_tokens`) to at most that."
            )
        num_layers = self.config.text_config.num_hidden_layers
        capture = sorted({layer - 1 for layer in self.config.level_layers})
        with self._running_layers(0, num_layers, capture) as captured:
            outputs = self.model.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                use_cache=use_cache,
                **kwargs,
            )
        # The final head runs first: under FSDP2 its forward gathers the weight whose rows the losses below read.
        last_hidden = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        final_logits = self.model.get_output_embeddings()(last_hidden[:, slice_indices])
        targets = (input_ids if labels is None else labels)[:, 1:]
        level_of_target = level_ids[:, 1:].masked_fill(targets == -100, 0)
        gold_paths: list[list[str]] = [[] for _ in range(len(targets))]
        level_loss_sums, level_token_counts = [], []
        for level, layer in enumerate(self.config.level_layers):
            selected = level_of_target == level + 1
            hidden = captured[layer - 1][:, :-1][selected]
            if self.config.level_kinds[level] == "label" and self.config.label_loss == "constrained":
                logits, level_targets = self._constrained_logits(level, hidden, targets, selected, gold_paths)
            else:
                logits = self.head_logits(level, hidden)
                level_targets = self.head_columns(level, targets[selected])
            level_loss_sums.append(F.cross_entropy(logits, level_targets, reduction="sum"))
            level_token_counts.append(selected.sum())
        level_loss_sums, level_token_counts = torch.stack(level_loss_sums), torch.stack(level_token_counts)
        level_losses = level_loss_sums / level_token_counts.clamp(min=1)
        loss = (level_losses.new_tensor(self.config.level_loss_weights) * level_losses).sum()
        return HdLMOutput(
            loss=loss,
            level_losses=level_losses,
            level_loss_sums=level_loss_sums,
            level_token_counts=level_token_counts,
            logits=final_logits,
            past_key_values=outputs.past_key_values,
        )

    def _constrained_logits(
        self,
        level: int,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        selected: torch.Tensor,
        gold_paths: list[list[str]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Logits of a label level's target tokens over the tokens the taxonomy allows at each (the others `-inf`),
        and the targets as columns of them: the cross-entropy constrained greedy decoding optimises.

        Each row's gold tokens are walked through the label trie below its gold labels of the levels above
        (`gold_paths`, extended here with the label reached). Only the level's vocabulary rows are computed.
        """
        trie = self.label_trie()
        vocabulary = torch.tensor(trie.vocabularies[level], device=hidden.device)
        visited: list[int] = []
        rows_targets = targets.masked_select(selected).tolist()
        start = 0
        for row, count in enumerate(selected.sum(1).tolist()):
            if not count:
                continue
            nodes, label = trie.walk(level, gold_paths[row], rows_targets[start : start + count])
            visited.extend(nodes)
            gold_paths[row].append(label)
            start += count
        allowed = trie.allowed_mask(level, hidden.device)[
            torch.tensor(visited, dtype=torch.long, device=hidden.device)
        ]
        logits = self.head_logits(level, hidden, vocabulary).masked_fill(~allowed, float("-inf"))
        return logits, torch.searchsorted(vocabulary, targets[selected])

    def get_renderer(self, tokenizer: PreTrainedTokenizerBase) -> HdLMRenderer:
        return HdLMRenderer(self.config, tokenizer)

    @torch.no_grad()
    def generate_hierarchical(
        self,
        inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        strategy: str = "greedy",
        constrained: bool = True,
        early_exit: bool = True,
        max_new_tokens: int = 64,
        top_k: int = 1,
        batch_size: int = 8,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
        show_progress: bool = False,
    ) -> list[HierarchicalOutput]:
        """
        Decode the hierarchical answer of each input, level by level.

        Args:
            inputs: a query, a list of queries, or already rendered prompt token ids (one list or a list of lists).
            tokenizer: the model's tokenizer. When omitted, the one beside the weights `from_pretrained` loaded: the
                same local directory (resolved at load time), or the same Hub repository and commit.
            strategy: `"greedy"` decodes every level token by token; `"rank"` scores every candidate label of a
                label level exactly (full log-likelihood) and keeps the best.
            constrained: restrict label levels to the taxonomy's labels below the label chosen one level up.
            early_exit: decode level `d` running only the first `level_layers[d]` layers, then fill the deeper
                layers' cache in one parallel pass. Exact: the tokens equal those of `early_exit=False`.
            max_new_tokens: the most tokens a level may take (its end marker included).
            top_k: with `strategy="rank"`, also report the `top_k` best labels of each label level.
            batch_size: inputs decoded together.
            do_sample, temperature, top_p, repetition_penalty, generator: decoding options of text levels, as in
                `generate`: the repetition penalty counts the prompt and the earlier levels too.
            show_progress: show a progress bar over batches.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
        for name, value in (("top_k", top_k), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int, got {value!r} ({type(value).__name__}).")
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        for name, value in (
            ("constrained", constrained),
            ("early_exit", early_exit),
            ("do_sample", do_sample),
            ("show_progress", show_progress),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be True or False, got {value!r} ({type(value).__name__}).")
        temperature = _sampling_number("temperature", temperature, 1.0, check=do_sample)
        top_p = _sampling_number("top_p", top_p, 1.0, check=do_sample, at_most_one=True)
        repetition_penalty = _sampling_number("repetition_penalty", repetition_penalty, 1.0, check=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a `torch.Generator` (e.g. `torch.Generator().manual_seed(0)`) or None, got "
                f"{type(generator).__name__}."
            )
        if top_k > 1 and strategy != "rank":
            raise ValueError(f"`top_k={top_k}` needs `strategy='rank'` (greedy decoding yields one label per level).")
        if strategy == "rank" and not (constrained and self.config.taxonomy):
            raise ValueError(
                "`strategy='rank'` ranks the taxonomy's labels: it needs `constrained=True` and a taxonomy."
            )
        label_heads = [
            self.config.level_names[level] for level in self.config.head_levels if self.config.has_label_head(level)
        ]
        if label_heads and not constrained:
            raise ValueError(
                f"`constrained=False` cannot decode levels {label_heads}: their heads hold only their labels' tokens "
                "(`label_head_vocabulary='labels'`). Decode under constraints, or train with "
                "`label_head_vocabulary='full'` to compare with free decoding."
            )
        renderer = self.get_renderer(tokenizer if tokenizer is not None else self._default_tokenizer())
        if constrained and self.config.taxonomy_token_ids is not None:
            if renderer.taxonomy_token_ids() != self.config.taxonomy_token_ids:
                raise ValueError(
                    "This tokenizer renders the taxonomy's labels into other tokens than the model was built with "
                    "(`config.taxonomy_token_ids`): pass the model's own tokenizer."
                )
        prompts = _prompt_ids(inputs, renderer)
        vocab_size = self.get_input_embeddings().num_embeddings
        for index, prompt in enumerate(prompts):
            if outside := [token for token in prompt if not 0 <= token < vocab_size]:
                raise ValueError(
                    f"`inputs[{index}]` holds token ids outside the vocabulary (0..{vocab_size - 1}): {outside[:5]}. "
                    "Pass token ids made by the model's tokenizer, or the text itself."
                )
            if self.max_positions is not None and len(prompt) >= self.max_positions:
                raise ValueError(
                    f"`inputs[{index}]` takes {len(prompt)} tokens, and the model encodes at most "
                    f"{self.max_positions} positions (`max_position_embeddings`): set `model.config.max_query_tokens` "
                    "so that queries are cut (train_hdlm.py sets it from `--max_length`), or shorten the input."
                )
        processors = LogitsProcessorList()
        if repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        if do_sample:
            processors.extend([TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)])
        decoder = _HierarchicalDecoder(
            self,
            renderer,
            strategy=strategy,
            constrained=constrained,
            early_exit=early_exit,
            max_new_tokens=max_new_tokens,
            top_k=top_k,
            processors=processors,
            do_sample=do_sample,
            generator=generator,
        )
        # Batches of similar lengths waste little on padding; results come back in input order.
        order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
        results: list[HierarchicalOutput | None] = [None] * len(prompts)
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(prompts), desc="Decoding", unit="row")
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            for index, output in zip(indices, decoder.decode([prompts[index] for index in indices])):
                results[index] = output
            if progress is not None:
                progress.update(len(indices))
        if progress is not None:
            progress.close()
        return results

    def _default_tokenizer(self) -> PreTrainedTokenizerBase:
        """
        The tokenizer beside the model's weights, where `from_pretrained` found them: the absolute local directory,
        or the same Hub repository at the same commit. A relative path is never re-read after a `chdir`, nor taken
        for a Hub id.
        """
        source = self._tokenizer_source
        if source is None:
            raise ValueError(
                "Pass `tokenizer=`: this model was not loaded with `from_pretrained` from a directory or repository "
                "holding its tokenizer."
            )
        try:
            # The model's own files: its code is already trusted, and the tokenizer's config points at it.
            return AutoTokenizer.from_pretrained(**source, trust_remote_code=True)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Pass `tokenizer=`: no tokenizer could be loaded from {source['pretrained_model_name_or_path']}, "
                f"where this model was loaded from ({error})."
            ) from error


HdLMForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def _check_safetensors_file(path: str) -> None:
    """Raise `OSError` naming `path` when the file is shorter than its header says (safetensors: an 8-byte header
    length, the JSON header, then the tensors' bytes, the last ending at the file's end)."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        problem = None
        if size < 8 or 8 + header_length > size:
            problem = f"it holds {size} bytes, less than its header"
        else:
            try:
                header = json.loads(file.read(header_length))
                end = max(
                    (int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
                    default=0,
                )
            except (ValueError, TypeError, KeyError, AttributeError, IndexError):
                problem = "its header does not parse"
            else:
                if 8 + header_length + end != size:
                    problem = f"its header describes {8 + header_length + end} bytes, the file holds {size}"
    if problem is not None:
        raise OSError(
            f"{path} is not a complete safetensors file ({problem}): it was cut short, by an interrupted save, copy "
            "or download. Save or download the checkpoint again."
        )


def _tokenizer_source(name_or_path: str | os.PathLike, load_kwargs: dict) -> dict:
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


def _prompt_ids(
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


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _select_rows(cache: Cache, rows: torch.Tensor) -> Cache:
    """A new cache holding `rows` of `cache` (rows may repeat); `cache` itself is left as it is."""
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(rows)
    return selected


class _HierarchicalDecoder:
    """
    Decodes batches of prompts level by level on one shared key/value cache.

    State per batch: the cache, and per column of it the attention mask and position id. With early exit, the
    tokens of level `d` go through the first `k_d` layers only; the deeper layers lag behind until `_fill` runs
    them over the level's tokens, from the saved outputs of layer `k_d`, in one parallel pass.
    """

    def __init__(
        self,
        model: HdLMForCausalLM,
        renderer: HdLMRenderer,
        *,
        strategy: str,
        constrained: bool,
        early_exit: bool,
        max_new_tokens: int,
        top_k: int,
        processors: LogitsProcessorList,
        do_sample: bool,
        generator: torch.Generator | None,
    ):
        self.model = model
        self.config = model.config
        self.renderer = renderer
        self.strategy = strategy
        self.trie = model.label_trie(renderer) if constrained and self.config.taxonomy else None
        self.early_exit = early_exit
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.processors = processors
        self.do_sample = do_sample
        self.generator = generator
        self.num_layers = self.config.text_config.num_hidden_layers
        tokenizer = renderer.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.device = model.get_input_embeddings().weight.device
        self.rank_chunk = 16

    def decode(self, prompts: list[list[int]]) -> list[HierarchicalOutput]:
        batch = len(prompts)
        self.cache = DynamicCache(config=self.config.text_config)
        self.attention_mask = torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch, 0, dtype=torch.long, device=self.device)
        outputs = [HierarchicalOutput() for _ in range(batch)]
        paths: list[list[str]] = [[] for _ in range(batch)]
        parents: list[str | None] = [None] * batch
        pending = prompts
        self.history = [list(prompt) for prompt in prompts]
        for level, layer in enumerate(self.config.level_layers):
            headers = [self.renderer.header_ids(level, parent) for parent in parents]
            pending = [row + header for row, header in zip(pending, headers)]
            for row, header in zip(self.history, headers):
                row.extend(header)
            hidden = self._append(pending, self.num_layers, capture=layer - 1)[:, -1]
            if self.config.level_kinds[level] == "label" and self.strategy == "rank":
                decoded = self._rank_level(level, paths, hidden)
                pending = [item.token_ids for item in decoded]
            else:
                decoded, pending = self._decode_level(level, paths, hidden)
            for output, item, row, path in zip(outputs, decoded, self.history, paths):
                output.levels.append(item)
                row.extend(item.token_ids)
                path.append(item.label if item.label is not None else item.text)
            parents = [path[-1] for path in paths]
        return outputs

    # -- the shared cache ---------------------------------------------------------------------------------------

    def _append(self, tokens: list[list[int]], stop: int, capture: int) -> torch.Tensor:
        """
        Feed one new segment per row, left-padded to a common length, through layers `[0, stop)`.

        Returns the output of layer `capture` at the segment's columns, `(batch, length, hidden)`.
        """
        length = max(len(row) for row in tokens)
        ids = torch.tensor([[self.pad_id] * (length - len(row)) + row for row in tokens], device=self.device)
        new_mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in tokens], device=self.device)
        next_position = self.attention_mask.sum(1, keepdim=True)
        new_positions = (next_position + new_mask.cumsum(1) - 1).clamp(min=0)
        self._check_positions(new_positions)
        self.attention_mask = torch.cat([self.attention_mask, new_mask], dim=1)
        self.positions = torch.cat([self.positions, new_positions], dim=1)
        return self._run(ids, 0, stop, capture, new_positions, self.cache)

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
        capture: int | None,
        positions: torch.Tensor,
        cache: Cache,
        attention_mask: torch.Tensor | None = None,
        injected: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        capture_at = [] if capture is None else [capture]
        with self.model._running_layers(start, stop, capture_at, injected) as captured:
            self.model.model.base_model(
                input_ids=ids,
                attention_mask=self.attention_mask if attention_mask is None else attention_mask,
                position_ids=positions,
                past_key_values=_cache_view(cache, range(start, stop)),
                use_cache=True,
            )
        return None if capture is None else captured[capture]

    # -- one level ----------------------------------------------------------------------------------------------

    def _decode_level(
        self, level: int, paths: list[list[str]], hidden: torch.Tensor
    ) -> tuple[list[HierarchicalLevel], list[list[int]]]:
        """
        Decode one level token by token from `hidden`, the output of layer `k_d` at the last column.

        Label levels under constraints follow the prefix trie of the valid labels below each row's path; where the
        trie leaves a single token, it is taken without a step of its own (its probability among the allowed tokens
        is 1), so a label costs one step per real choice. Other levels stop at their end marker or after
        `max_new_tokens`. Returns the decoded levels and, per row, the tokens chosen but not yet fed to the cache
        (they open the next level's first segment).
        """
        layer = self.config.level_layers[level]
        stop = layer if self.early_exit else self.num_layers
        batch = len(paths)
        end_ids = self.renderer.end_ids(level)
        constrained = self.trie is not None and self.config.level_kinds[level] == "label"
        nodes = [self.trie.root(level, path) for path in paths] if constrained else None
        tokens: list[list[int]] = [[] for _ in range(batch)]
        scores = [0.0] * batch
        active = [True] * batch
        segment: list[torch.Tensor] = []
        while True:
            if nodes is not None:
                chosen, step_scores = self._choose_allowed(level, hidden, nodes)
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
                    node = nodes[row].children[chosen[row]]
                    while node.label is None and len(node.children) == 1:
                        [(forced, node)] = node.children.items()
                        fed[row].append(forced)
                    nodes[row] = node
                    tokens[row].extend(fed[row])
                    active[row] = node.label is None
                else:
                    tokens[row].extend(fed[row])
                    ended = tokens[row][-len(end_ids) :] == end_ids
                    active[row] = not ended and len(tokens[row]) < self.max_new_tokens
            if not any(active):
                break
            hidden = self._append(fed, stop, capture=layer - 1)
            segment.append(hidden)
            hidden = hidden[:, -1]
        if stop < self.num_layers and segment and level < self.config.num_levels - 1:
            self._fill(stop, torch.cat(segment, dim=1))
        return self._decoded(level, tokens, scores, nodes), fed

    def _choose_allowed(
        self, level: int, hidden: torch.Tensor, nodes: list[LabelNode]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The best token each row's trie node allows, and its log-probability among the tokens allowed there.

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
        return allowed_ids[best], logits.log_softmax(-1).gather(-1, best[:, None]).squeeze(-1)

    def _choose(self, logits: torch.Tensor, tokens: list[list[int]]) -> torch.Tensor:
        """The next token of each row of a free level: greedy, or sampled after the logits processors."""
        if self.processors:
            logits = self.processors(self._context_ids(tokens), logits)
        if self.do_sample:
            probabilities = logits.softmax(-1)
            if not torch.isfinite(probabilities).all():
                raise ValueError(
                    "Sampling met probabilities that are not finite: `temperature` is too small (or "
                    "`repetition_penalty` too large) for these logits. Raise `temperature`, or set `do_sample=False` "
                    "for greedy decoding."
                )
            return torch.multinomial(probabilities, 1, generator=self.generator).squeeze(-1)
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
        self, level: int, tokens: list[list[int]], scores: list[float], nodes: list[LabelNode] | None
    ) -> list[HierarchicalLevel]:
        name, kind = self.config.level_names[level], self.config.level_kinds[level]
        end_ids = self.renderer.end_ids(level)
        decoded = []
        for row, (row_tokens, score) in enumerate(zip(tokens, scores)):
            if nodes is not None:
                label = nodes[row].label
                decoded.append(HierarchicalLevel(name, kind, label, row_tokens, score, label=label))
                continue
            ended = row_tokens[-len(end_ids) :] == end_ids
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
        layer = self.config.level_layers[level]
        stop = layer if self.early_exit else self.num_layers
        candidates = [
            (row, label, ids) for row, path in enumerate(paths) for label, ids in self.trie.labels(level, path).items()
        ]
        scores: list[float] = []
        for start in range(0, len(candidates), self.rank_chunk):
            chunk = candidates[start : start + self.rank_chunk]
            rows = torch.tensor([row for row, _, _ in chunk], device=self.device)
            answers = [ids for _, _, ids in chunk]
            length = max(len(ids) for ids in answers)
            ids = torch.tensor([ids + [self.pad_id] * (length - len(ids)) for ids in answers], device=self.device)
            mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids in answers], device=self.device)
            history = self.attention_mask[rows]
            positions = history.sum(1, keepdim=True) + torch.arange(length, device=self.device)
            self._check_positions(positions)
            outputs = self._run(
                ids,
                0,
                stop,
                layer - 1,
                positions,
                _select_rows(self.cache, rows),
                attention_mask=torch.cat([history, mask], dim=1),
            )
            predicting = torch.cat([hidden[rows, None], outputs[:, :-1]], dim=1)
            logits = self.model.head_logits(level, predicting)
            answer_ids = torch.tensor(
                [ids + [ids[-1]] * (length - len(ids)) for ids in answers], device=self.device
            )  # padded with a token of the head's vocabulary; masked out below
            columns = self.model.head_columns(level, answer_ids)
            token_log_probs = logits.gather(-1, columns[..., None]).squeeze(-1) - logits.logsumexp(-1)
            scores.extend((token_log_probs * mask).sum(1).tolist())
        name = self.config.level_names[level]
        decoded = []
        for row in range(len(paths)):
            ranked = sorted(
                ((score, label, ids) for (r, label, ids), score in zip(candidates, scores) if r == row), reverse=True
            )
            probabilities = torch.tensor([score for score, _, _ in ranked]).softmax(0).tolist()
            best_score, best, best_ids = ranked[0]
            top = [(label, p) for (_, label, _), p in zip(ranked, probabilities)][: self.top_k]
            decoded.append(
                HierarchicalLevel(
                    name,
                    "label",
                    best,
                    list(best_ids),
                    best_score,
                    label=best,
                    top_labels=top if self.top_k > 1 else None,
                )
            )
        return decoded
