"""HdLM: a pretrained causal LM whose intermediate layers decode the levels of a hierarchical answer.

Implements "Making Language Model a Hierarchical Classifier" (arXiv 2507.12930) for any architecture that
`AutoModelForCausalLM` builds. This file is copied beside every HdLM checkpoint and loaded with
`trust_remote_code=True`, with the sibling files it imports (which `save_pretrained` copies with it):
`configuration_hdlm`, `rendering_hdlm` (the renderer), `generation_hdlm` (decoding options and outputs),
`decoding_hdlm` (the hierarchical decoder, with `beam_hdlm` and `early_exit_hdlm`), `taxonomy_hdlm` (label tries and
label heads) and `pipeline_hdlm` (the `hierarchical-text-classification` pipeline). They import only torch,
transformers and safetensors.
"""

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput, logging

try:
    from .configuration_hdlm import HdLMConfig
    from .decoding_hdlm import HierarchicalDecoder
    from .generation_hdlm import (
        HierarchicalGenerationConfig,
        HierarchicalOutput,
        check_weights_files,
        load_tokenizer,
        tokenizer_source,
    )
    from .pipeline_hdlm import CUSTOM_PIPELINES
    from .rendering_hdlm import HdLMRenderer
    from .taxonomy_hdlm import HdLMLabelHead, TaxonomyTrie
except ImportError:  # imported as a top-level module from a source checkout
    from configuration_hdlm import HdLMConfig
    from decoding_hdlm import HierarchicalDecoder
    from generation_hdlm import (
        HierarchicalGenerationConfig,
        HierarchicalOutput,
        check_weights_files,
        load_tokenizer,
        tokenizer_source,
    )
    from pipeline_hdlm import CUSTOM_PIPELINES
    from rendering_hdlm import HdLMRenderer
    from taxonomy_hdlm import HdLMLabelHead, TaxonomyTrie

logger = logging.get_logger(__name__)

AUTO_MAP = {
    "AutoConfig": "configuration_hdlm.HdLMConfig",
    "AutoModel": "modeling_hdlm.HdLMForCausalLM",
    "AutoModelForCausalLM": "modeling_hdlm.HdLMForCausalLM",
}


@dataclass
class HdLMOutput(ModelOutput):
    """
    Output of [`HdLMForCausalLM.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            With `level_ids`: `sum_d level_loss_weights[d] * level_losses[d]`, the loss of this batch alone; otherwise
            the plain causal LM loss.
        level_losses (`torch.FloatTensor` of shape `(num_levels,)`, *optional*):
            Token-mean cross-entropy of each level in this batch, `level_loss_sums / level_token_counts` (0 where
            the level has no token).
        level_loss_sums (`torch.FloatTensor`), level_token_counts (`torch.LongTensor`), of shape `(num_levels,)`:
            Each level's summed cross-entropy and number of target tokens in this batch. A trainer divides the sums by
            the counts of the whole optimizer step (gradient accumulation, every process) instead.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
            Logits of the final head (only the last `logits_to_keep` positions when that is set).
        past_key_values (`Cache`, *optional*):
            The key/value cache of the base model.
        hidden_states (`tuple[torch.FloatTensor]`, *optional*), attentions (`tuple[torch.FloatTensor]`, *optional*):
            The base model's, with `output_hidden_states=True` (the embeddings, then each layer's output, the last
            one after the final norm) and `output_attentions=True` (with an attention implementation that has them).
    """

    loss: torch.FloatTensor | None = None
    level_losses: torch.FloatTensor | None = None
    level_loss_sums: torch.FloatTensor | None = None
    level_token_counts: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


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
        check_weights_files(os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or ""))
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._tokenizer_source = tokenizer_source(pretrained_model_name_or_path, kwargs)
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
            if token_ids is None and renderer is None:
                raise ValueError(
                    "`config.taxonomy_token_ids` is not set, and label-vocabulary heads, the constrained loss and "
                    "constrained decoding are built from it: adapt the model with "
                    "`HdLMForCausalLM.from_base(..., tokenizer=tokenizer)`."
                )
            self._taxonomy_trie = TaxonomyTrie(self.config.taxonomy, token_ids or renderer.taxonomy_token_ids())
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
                    f"(`config.taxonomy_token_ids`): keep at least {used + 1} tokens, or adapt the base model again."
                )
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        vocab_size = embeddings.weight.shape[0]
        final_head = self.model.get_output_embeddings()
        for key, head in self.level_heads.items():
            if isinstance(head, HdLMLabelHead) or head.out_features == vocab_size:
                continue
            resized, kept = self._new_head(int(key), like=final_head), min(head.out_features, vocab_size)
            with torch.no_grad():
                resized.weight.copy_(torch.cat([head.weight[:kept], final_head.weight[kept:]]))
                if head.bias is not None:
                    resized.bias.copy_(torch.cat([head.bias[:kept], final_head.bias[kept:]]))
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
        if isinstance(base, str):
            base = AutoModelForCausalLM.from_pretrained(base, **(base_kwargs or {}))
        config = HdLMConfig.from_options(base.config, config)
        config.auto_map = dict(AUTO_MAP)
        config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
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
            model._tokenizer_source = tokenizer_source(base.name_or_path, base_kwargs or {})
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
        Logits of level `level`'s head, in float32 at least, for `hidden_states`: the hidden states after the level's
        layer as `output_hidden_states` gives them (`hidden_states[config.level_layers[level]]`), the raw output of
        an intermediate layer, the final norm's output at the last layer.

        Without `token_ids`, one logit per row of the head: the whole vocabulary, or for a label head
        ([`HdLMLabelHead`]) its labels' tokens (`head_columns` maps token ids to them). With `token_ids`, only those
        tokens' logits, in that order: a few rows of the head instead of all of it, which is what constrained
        decoding and the constrained loss need.
        """
        intermediate = self.config.level_layers[level] < self.config.text_config.num_hidden_layers
        if intermediate and (self.config.apply_final_norm or str(level) not in self.level_heads):
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
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "past_key_values": past_key_values,
            "inputs_embeds": inputs_embeds,
            "use_cache": use_cache,
            **kwargs,
        }
        if level_ids is None:
            outputs = self.model(**inputs, labels=labels, logits_to_keep=logits_to_keep)
            fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions")
            return HdLMOutput(**{name: outputs.get(name) for name in fields})

        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if self.max_positions is not None and length > self.max_positions:
            raise ValueError(
                f"A sequence of {length} tokens is longer than the model encodes ({self.max_positions} positions, "
                "`max_position_embeddings`): lower `max_length` (or `max_query_tokens`) to at most that."
            )
        output_hidden_states = inputs.pop("output_hidden_states", False)  # all of them; the level layers' anyway
        levels = sorted(set(self.config.level_layers))
        outputs = self.model.base_model(**inputs, output_hidden_states=True if output_hidden_states else levels)
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
            hidden = outputs.hidden_states[layer][:, :-1][selected]
            if self.config.level_kinds[level] == "label" and self.config.label_loss == "constrained":
                # Among the tokens the taxonomy allows below the gold labels above (what constrained decoding does)
                trie = self.label_trie()
                vocabulary = torch.tensor(trie.vocabularies[level], device=hidden.device)
                allowed = trie.allowed_at_targets(level, targets, selected, gold_paths)
                logits = self.head_logits(level, hidden, vocabulary).masked_fill(~allowed, float("-inf"))
                level_targets = torch.searchsorted(vocabulary, targets[selected])
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
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )

    def get_renderer(self, tokenizer: PreTrainedTokenizerBase) -> HdLMRenderer:
        return HdLMRenderer(self.config, tokenizer)

    @torch.no_grad()
    def generate_hierarchical(
        self,
        inputs: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        tokenizer: PreTrainedTokenizerBase | None = None,
        generation_config: HierarchicalGenerationConfig | None = None,
        **kwargs,
    ) -> list[HierarchicalOutput]:
        """
        Decode the hierarchical answer of each input, level by level.

        Args:
            inputs: a query, a list of queries, or already rendered prompt token ids (one list or a list of lists).
            tokenizer: the model's tokenizer. When omitted, the one beside the weights `from_pretrained` loaded: the
                same local directory (resolved at load time), or the same Hub repository and commit.
            generation_config: the decoding options ([`HierarchicalGenerationConfig`]; default: its defaults).
            kwargs: fields of `generation_config` to override (`strategy="rank"`, `max_new_tokens=8`, ...), as
                `generate` takes them.
        """
        generation_config = HierarchicalGenerationConfig.from_options(generation_config, **kwargs)
        generation_config.check_model(self.config)
        renderer = self.get_renderer(tokenizer if tokenizer is not None else load_tokenizer(self._tokenizer_source))
        return HierarchicalDecoder(self, renderer, generation_config).generate(inputs)


HdLMForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["HdLMForCausalLM", "HdLMOutput", "HdLMPreTrainedModel"]
