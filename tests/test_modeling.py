"""HdLMConfig / HdLMForCausalLM on tiny random models of several families, with a real tokenizer."""

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import (
    FAMILIES,
    TAXONOMY_2,
    TAXONOMY_3,
    HdLMConfig,
    HdLMForCausalLM,
    HdLMLabelHead,
    tiny_base,
    tiny_hdlm,
)
from datasets import Dataset
from torch.nn import functional as F

from decoding_hdlm import HierarchicalDecoder
from generation_hdlm import HierarchicalGenerationConfig, prompt_ids
from hdlm.training import tokenize_hierarchical
from taxonomy_hdlm import TaxonomyTrie

PROMPTS = [
    "a text about physics",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
    "tennis",
    "Answer with the topic: music and painting are arts, and jazz is music too.",
]
TAXONOMY_PATHS_2 = {tuple(path) for path in TAXONOMY_2}
TAXONOMY_PATHS_3 = {tuple(path) for path in TAXONOMY_3}


def decoded_tokens(outputs):
    return [[level.token_ids for level in output.levels] for output in outputs]


# -- configuration ------------------------------------------------------------------------------------------------

TEXT_CONFIG = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 32, "num_attention_heads": 2}


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"level_layers": [2, 3]}, "level_layers"),  # does not end at K
        ({"level_layers": [3, 2, 4]}, "level_layers"),  # not increasing
        ({"level_layers": [0, 4]}, "level_layers"),  # out of range
        ({"level_layers": [4, 2, 4]}, "level_layers"),  # K before an intermediate layer
        ({"level_layers": [2, 5]}, "level_layers"),
        ({"level_layers": []}, "level_layers"),
        ({"level_names": ["a"]}, "level_names"),
        ({"level_names": ["a", "a"]}, "level_names"),
        ({"level_kinds": ["label", "class"]}, "level_kinds"),
        ({"level_kinds": ["text", "label"]}, "level_kinds"),
        ({"level_loss_weights": [1.0, -1.0]}, "level_loss_weights"),
        ({"level_loss_weights": [1.0]}, "level_loss_weights"),
        ({"head_init": "zeros"}, "head_init"),
        ({"max_query_tokens": 0}, "max_query_tokens"),
        ({"query_truncation_side": "middle"}, "query_truncation_side"),
        ({"prompt_template": "{instruction}"}, "prompt_template"),
        ({"taxonomy": [["A"]]}, "taxonomy"),
        ({"taxonomy": [["A", "x"], ["A", "x"]]}, "taxonomy"),  # a path listed twice
        ({"taxonomy": [["A", ""]]}, "taxonomy"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    settings = {"text_config": TEXT_CONFIG, "level_layers": [2, 4], "level_names": ["a", "b"], **overrides}
    with pytest.raises(ValueError, match=f"`{field}`"):
        HdLMConfig(**settings)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"taxonomy": ["ab", "cd"]}, TypeError, r"`taxonomy\[0\]` must be a list, .* got str 'ab'"),
        ({"taxonomy": "ab"}, TypeError, r"`taxonomy` must be a list"),
        ({"taxonomy": []}, ValueError, r"`taxonomy` is empty, which would turn the label constraints off"),
        ({"level_loss_weights": [0, 0]}, ValueError, r"`level_loss_weights` .* not all 0"),
        ({"level_loss_weights": [float("nan"), 1]}, ValueError, r"`level_loss_weights` entries must be finite"),
        ({"level_loss_weights": [float("inf"), 1]}, ValueError, r"`level_loss_weights` entries must be finite"),
        ({"level_loss_weights": ["2", 1]}, TypeError, r"`level_loss_weights` entries must be numbers, got str"),
        ({"level_loss_weights": [True, 1]}, TypeError, r"`level_loss_weights` entries must be numbers, got bool"),
        ({"level_header_template": "{nam}:"}, ValueError, r"`level_header_template` may use only .*unknown: \{nam\}"),
        ({"prompt_template": "{text} {query}"}, ValueError, r"`prompt_template` .*unknown: \{query\}"),
        ({"candidates_header_template": "{name} ({0})"}, ValueError, r"`candidates_header_template`"),
        ({"level_header_template": "{name"}, ValueError, r"`level_header_template` is not a valid format string"),
        ({"prompt_template": "{text:d}"}, ValueError, r"`prompt_template` does not render text \(ValueError: Unknown"),
        ({"level_header_template": "{name!x}"}, ValueError, r"`level_header_template` does not render text"),
        ({"level_layers": [2.0, 4]}, TypeError, r"`level_layers` entries must be integers, got float 2.0"),
        ({"level_layers": [True, 4]}, TypeError, r"`level_layers` entries must be integers, got bool"),
        ({"level_layers": 4}, TypeError, r"`level_layers` must be a list"),
        ({"level_names": "ab"}, TypeError, r"`level_names` must be a list"),
        ({"max_query_tokens": 2.5}, TypeError, r"`max_query_tokens` entries must be integers"),
        ({"apply_final_norm": "no"}, TypeError, r"`apply_final_norm` must be True or False"),
        ({"level_separator": ""}, ValueError, r"`level_separator` must not be empty"),
        ({"instruction": 3}, TypeError, r"`instruction` must be a string"),
        ({"taxonomy": [["A", "x"]], "taxonomy_token_ids": [[[1], 2]]}, TypeError, r"`taxonomy_token_ids\[0\]`"),
    ],
)
def test_config_values_that_were_silently_wrong_are_errors(overrides, error, message):
    settings = {"text_config": TEXT_CONFIG, "level_layers": [2, 4], "level_names": ["a", "b"], **overrides}
    with pytest.raises(error, match=message):
        HdLMConfig(**settings)


def test_config_takes_numpy_and_torch_integers():
    import numpy as np

    config = HdLMConfig(
        text_config=TEXT_CONFIG,
        level_layers=[np.int64(2), torch.tensor(4)],
        level_loss_weights=np.array([2.0, 1.0]),
        max_query_tokens=np.int32(8),
        taxonomy=[("A", "x")],
        taxonomy_token_ids=[[np.array([5, 6]), [torch.tensor(7)]]],
    )
    assert config.level_layers == [2, 4] and all(type(layer) is int for layer in config.level_layers)
    assert config.level_loss_weights == [2.0, 1.0] and config.max_query_tokens == 8
    assert config.taxonomy == [["A", "x"]] and config.taxonomy_token_ids == [[[5, 6], [7]]]
    assert json.loads(config.to_json_string())["level_layers"] == [2, 4]  # plain JSON


def test_from_base_refuses_unknown_options(tokenizer):
    with pytest.raises(TypeError, match=r"unknown HdLM options 'level_layer' \(did you mean 'level_layers'\?\)"):
        HdLMForCausalLM.from_base(tiny_base("llama", tokenizer), {"level_layers": [2, 4], "level_layer": [3, 4]})
    with pytest.raises(TypeError, match=r"'max_query_token' \(did you mean 'max_query_tokens'\?\), 'zzz'"):
        HdLMForCausalLM.from_base(
            tiny_base("llama", tokenizer), {"level_layers": [2, 4], "max_query_token": 8, "zzz": 1}
        )


def test_from_base_takes_a_config_or_its_options(tokenizer):
    """An `HdLMConfig`, a dict and a dataclass of the same options build the same model."""

    @dataclasses.dataclass
    class Options:
        level_layers: tuple[int, ...] = (2, 4)
        level_names: tuple[str, ...] = ("topic", "subtopic")
        taxonomy: tuple[tuple[str, ...], ...] = tuple(map(tuple, TAXONOMY_2))

    base = tiny_base("llama", tokenizer)
    options = {"level_layers": [2, 4], "level_names": ["topic", "subtopic"], "taxonomy": TAXONOMY_2}
    configs = [
        HdLMForCausalLM.from_base(base, given, tokenizer=tokenizer).config.to_dict()
        for given in (options, Options(), HdLMConfig(text_config=base.config, **options))
    ]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0]["level_names"] == ["topic", "subtopic"] and configs[0]["taxonomy_token_ids"]


def test_config_defaults_and_roundtrip():
    config = HdLMConfig(text_config=TEXT_CONFIG, level_layers=[2, 4], taxonomy=TAXONOMY_2)
    assert config.level_names == ["level_1", "level_2"]
    assert config.level_kinds == ["label", "label"]
    assert config.level_loss_weights == [1.0, 1.0]
    assert config.head_levels == [0]
    assert config.get_text_config().num_hidden_layers == 4
    reloaded = HdLMConfig(**config.to_dict())
    assert reloaded.taxonomy == TAXONOMY_2 and reloaded.level_layers == [2, 4]
    # sft@K: every level read by the last layer, no extra head.
    assert HdLMConfig(text_config=TEXT_CONFIG, level_layers=[4, 4]).head_levels == []


# -- adaptation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("vocabulary", ["labels", "full"])
def test_from_base_copies_the_final_head_untied(family, vocabulary, tokenizer):
    model = tiny_hdlm(family, tokenizer, label_head_vocabulary=vocabulary)
    final_head = model.get_output_embeddings()
    head = model.level_heads["0"]
    if vocabulary == "labels":
        # The rows of the level's labels and end marker, as the renderer tokenises them, and only those.
        renderer = model.get_renderer(tokenizer)
        level_tokens = {token for label in {path[0] for path in TAXONOMY_2} for token in renderer.answer_ids(0, label)}
        assert isinstance(head, HdLMLabelHead)
        assert head.token_ids.tolist() == sorted(level_tokens)
        assert head.weight.shape == (len(level_tokens), final_head.in_features)
        expected = final_head.weight[head.token_ids]
    else:
        assert not isinstance(head, HdLMLabelHead)
        expected = final_head.weight
    torch.testing.assert_close(head.weight, expected, rtol=0, atol=0)
    assert head.weight.data_ptr() != final_head.weight.data_ptr()
    assert head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert model.config.auto_map["AutoModel"] == "modeling_hdlm.HdLMForCausalLM"
    assert model.config.auto_map["AutoModelForCausalLM"] == "modeling_hdlm.HdLMForCausalLM"
    assert model.config.auto_map["AutoConfig"] == "configuration_hdlm.HdLMConfig"


def test_random_head_init_differs_from_final_head(tokenizer):
    model = tiny_hdlm("llama", tokenizer, head_init="random", label_head_vocabulary="full")
    assert not torch.equal(model.level_heads["0"].weight, model.get_output_embeddings().weight)


def test_shared_heads_read_the_final_head(tokenizer):
    """`head_init="shared"`: no head of their own (nothing to store twice); each level reads the final head."""
    shared = tiny_hdlm("llama", tokenizer, head_init="shared")
    copied = tiny_hdlm("llama", tokenizer, label_head_vocabulary="full")
    assert len(shared.level_heads) == 0 and shared.config.head_levels == []
    assert sum(p.numel() for p in shared.parameters()) == sum(p.numel() for p in shared.model.parameters())
    decode = {name: m.generate_hierarchical(PROMPTS, tokenizer) for name, m in (("shared", shared), ("copy", copied))}
    assert decoded_tokens(decode["shared"]) == decoded_tokens(decode["copy"])


@pytest.mark.parametrize("family, vocabulary", [("llama", "labels"), ("qwen2", "full"), ("gpt2_untied", "full")])
def test_resize_token_embeddings_keeps_the_level_heads_in_step(family, vocabulary, tokenizer, tmp_path):
    """Full heads grow with the vocabulary (new rows: the final head's new rows), label heads keep their labels'
    rows, a tied base stays tied, decoding under constraints is unchanged, and the resized model saves and loads."""
    model = tiny_hdlm(family, tokenizer, label_head_vocabulary=vocabulary, label_loss="full")
    before = model.generate_hierarchical(PROMPTS, tokenizer)
    old_heads = {key: head.weight.detach().clone() for key, head in model.level_heads.items()}
    size = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(size + 8)
    final_head = model.get_output_embeddings()
    assert model.get_input_embeddings().num_embeddings == final_head.out_features == size + 8
    assert model.config.text_config.vocab_size == size + 8
    tied = FAMILIES[family]["tie_word_embeddings"]
    assert (final_head.weight is model.get_input_embeddings().weight) == tied
    for key, head in model.level_heads.items():
        if vocabulary == "labels":
            assert isinstance(head, HdLMLabelHead) and torch.equal(head.weight, old_heads[key])
        else:
            assert head.out_features == size + 8
            assert torch.equal(head.weight[:size], old_heads[key])
            assert torch.equal(head.weight[size:], final_head.weight[size:])
    assert decoded_tokens(model.generate_hierarchical(PROMPTS, tokenizer)) == decoded_tokens(before)
    # The new tokens can be trained on at every level (the full heads score them).
    if vocabulary == "full":
        ids = torch.tensor([[1, 5, size + 3, size + 5, 6, size + 7]])
        loss = model(input_ids=ids, level_ids=torch.tensor([[0, 0, 1, 1, 2, 2]])).loss
        assert torch.isfinite(loss)
    model.save_pretrained(tmp_path)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    assert {
        key: value.shape for key, value in HdLMForCausalLM.from_pretrained(tmp_path).state_dict().items()
    } == shapes
    with pytest.raises(ValueError, match=r"`new_num_tokens=\d+` would drop token \d+, which the taxonomy's labels"):
        model.resize_token_embeddings(3)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_without_level_ids_is_the_base_model(family, tokenizer):
    base = tiny_base(family, tokenizer)
    model = HdLMForCausalLM.from_base(
        tiny_base(family, tokenizer), {"level_layers": [2, 4], "taxonomy": TAXONOMY_2}, tokenizer=tokenizer
    )
    ids = torch.tensor([tokenizer(PROMPTS[1])["input_ids"]])
    out = model(input_ids=ids, labels=ids)
    expected = base(input_ids=ids, labels=ids)
    torch.testing.assert_close(out.logits, expected.logits)
    torch.testing.assert_close(out.loss, expected.loss)


@pytest.mark.parametrize("family", ["llama", "gpt2_tied"])
@pytest.mark.parametrize("apply_final_norm", [True, False])
def test_loss_is_the_weighted_sum_of_level_cross_entropies(family, apply_final_norm, tokenizer):
    """The paper's loss: full heads, each level's token-mean cross-entropy over the whole vocabulary."""
    model = tiny_hdlm(
        family,
        tokenizer,
        taxonomy=TAXONOMY_3,
        level_layers=[1, 3, 4],
        level_loss_weights=[3.0, 2.0, 0.5],
        apply_final_norm=apply_final_norm,
        label_head_vocabulary="full",
        label_loss="full",
    )
    renderer = model.get_renderer(tokenizer)
    rows = [
        renderer.encode_example(PROMPTS[0], ["Science", "Physics", "Optics"]),
        renderer.encode_example(PROMPTS[2], ["Sports", "Football", "World cup"]),
    ]
    length = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(ids)) + ids for ids, _ in rows])
    level_ids = torch.tensor([[0] * (length - len(lv)) + lv for _, lv in rows])
    attention_mask = torch.tensor([[0] * (length - len(ids)) + [1] * len(ids) for ids, _ in rows])
    out = model(input_ids=input_ids, attention_mask=attention_mask, level_ids=level_ids)

    # Independently: hidden states of every layer from the base model itself, the heads applied by hand.
    states = model.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    norm = model.model.base_model.norm if family == "llama" else model.model.base_model.ln_f
    heads = [model.level_heads["0"], model.level_heads["1"], model.model.get_output_embeddings()]
    sums, counts = [], []
    for level, (layer, head) in enumerate(zip([1, 3, 4], heads)):
        hidden = states[layer] if layer == 4 else (norm(states[layer]) if apply_final_norm else states[layer])
        logits = head(hidden)[:, :-1]
        mask = level_ids[:, 1:] == level + 1
        sums.append(F.cross_entropy(logits[mask], input_ids[:, 1:][mask], reduction="sum"))
        counts.append(mask.sum())
    expected = torch.stack(sums) / torch.stack(counts)
    torch.testing.assert_close(out.level_loss_sums, torch.stack(sums))
    assert out.level_token_counts.tolist() == [int(count) for count in counts]
    torch.testing.assert_close(out.level_losses, expected)
    torch.testing.assert_close(out.loss, 3.0 * expected[0] + 2.0 * expected[1] + 0.5 * expected[2])
    assert out.loss.requires_grad


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2_tied"])
def test_training_forward_returns_hidden_states_and_attentions_when_asked(family, tokenizer):
    """With `level_ids`, `output_hidden_states=True` / `output_attentions=True` return the base model's own (every
    layer, the last after the final norm), and change neither the loss nor the logits; without them, none."""
    model = tiny_hdlm(family, tokenizer, taxonomy=TAXONOMY_3)
    model.set_attn_implementation("eager")
    batch = batch_of(model, tokenizer, [(PROMPTS[0], TAXONOMY_3[0]), (PROMPTS[2], TAXONOMY_3[3])])
    plain = model(**batch)
    assert plain.hidden_states is None and plain.attentions is None
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    reference = model.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
        output_attentions=True,
    )
    assert len(out.hidden_states) == 5 and len(out.attentions) == 4
    for ours, theirs in zip(out.hidden_states + out.attentions, reference.hidden_states + reference.attentions):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(out.level_losses, plain.level_losses, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=0)
    # `head_logits` reads the hidden states as `output_hidden_states` gives them, at every level (the last layer's
    # already normed): the final level's logits are the base model's.
    last = model.head_logits(2, out.hidden_states[4])
    torch.testing.assert_close(last, reference.logits.to(last.dtype), rtol=0, atol=0)


def test_level_loss_sums_and_token_counts_make_the_level_means(tokenizer):
    """Each level's loss is its summed cross-entropy over its token count; a level without tokens counts 0 and
    adds no loss (a batch of rows whose leaf is outside the taxonomy's reach, say)."""
    model = tiny_hdlm("llama", tokenizer, level_loss_weights=[2.0, 1.0])
    ids, levels = model.get_renderer(tokenizer).encode_example(PROMPTS[0], ["Science", "Physics"])
    ids, levels = torch.tensor([ids]), torch.tensor([levels])
    out = model(input_ids=ids, level_ids=levels)
    assert out.level_token_counts.tolist() == [(levels[:, 1:] == d).sum().item() for d in (1, 2)]
    torch.testing.assert_close(out.level_losses, out.level_loss_sums / out.level_token_counts)
    torch.testing.assert_close(out.loss, 2.0 * out.level_losses[0] + out.level_losses[1])
    only_first = model(input_ids=ids, level_ids=levels.masked_fill(levels == 2, 0))
    assert only_first.level_token_counts[1] == 0 and only_first.level_loss_sums[1] == 0
    torch.testing.assert_close(only_first.loss, 2.0 * out.level_losses[0])


# Labels sharing their first tokens at every level (" Phy|sics" / " Phy|sic|al ...", " Quantum" /
# " Quantum| mechan|ics", " |Sports" / " |Sp|o|rt"): the taxonomy allows several tokens after a shared prefix, or one.
SHARED_PREFIXES = [
    ["Sports", "Physics", "Quantum"],
    ["Sports", "Physics", "Quantum mechanics"],
    ["Sports", "Physical chemistry", "Quantum optics"],
    ["Sport", "Tennis", "Grand slam"],
    ["Sport", "Tennis", "Optics"],
    ["Science", "Football", "Foot"],
]


def constrained_loss_by_hand(model, tokenizer, rows, weights):
    """Each level's token-mean cross-entropy among the tokens the taxonomy allows at each step, found by listing the
    candidate labels below the gold labels and keeping those that share the gold tokens so far."""
    renderer = model.get_renderer(tokenizer)
    states = {}
    losses = []
    for level, layer in enumerate(model.config.level_layers):
        total, count = 0.0, 0
        for text, path in rows:
            ids, levels = renderer.encode_example(text, path)
            key = (text, tuple(path))
            if key not in states:
                states[key] = model.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            hidden = states[key][layer]
            if layer < 4:
                hidden = model.final_norm(hidden)
            head = model.level_heads[str(level)] if str(level) in model.level_heads else model.get_output_embeddings()
            positions = [i for i, lv in enumerate(levels) if lv == level + 1]
            gold = [ids[i] for i in positions]
            candidates = [
                renderer.answer_ids(level, c[level])
                for c in {tuple(p[: level + 1]) for p in SHARED_PREFIXES}
                if list(c[:level]) == path[:level]
            ]
            for step, (position, token) in enumerate(zip(positions, gold)):
                allowed = sorted({c[step] for c in candidates if len(c) > step and c[:step] == gold[:step]})
                columns = model.head_columns(level, torch.tensor(allowed))
                logits = head(hidden[0, position - 1])[columns].double()
                total = total - logits.log_softmax(-1)[allowed.index(token)]
                count += 1
        losses.append(total / count)
    losses = torch.stack(losses)
    return losses, (torch.tensor(weights, dtype=losses.dtype) * losses).sum()


def batch_of(model, tokenizer, rows):
    renderer = model.get_renderer(tokenizer)
    encoded = [renderer.encode_example(text, path) for text, path in rows]
    length = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in encoded]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in encoded]),
        "level_ids": torch.tensor([lv + [0] * (length - len(lv)) for _, lv in encoded]),
    }


SHARED_ROWS = [(PROMPTS[i % 4], path) for i, path in enumerate(SHARED_PREFIXES)]


@pytest.mark.parametrize("family", ["llama", "gpt2_tied"])
@pytest.mark.parametrize("vocabulary", ["labels", "full"])
def test_constrained_loss_equals_a_reference_by_hand(family, vocabulary, tokenizer):
    weights = [3.0, 2.0, 0.5]
    model = tiny_hdlm(
        family, tokenizer, taxonomy=SHARED_PREFIXES, level_loss_weights=weights, label_head_vocabulary=vocabulary
    )
    out = model(**batch_of(model, tokenizer, SHARED_ROWS))
    level_losses, loss = constrained_loss_by_hand(model, tokenizer, SHARED_ROWS, weights)
    torch.testing.assert_close(out.level_losses, level_losses.to(out.level_losses.dtype))
    torch.testing.assert_close(out.loss, loss.to(out.loss.dtype))
    # The same weights in a full head or in a label head give the same constrained loss.
    other = tiny_hdlm(
        family,
        tokenizer,
        taxonomy=SHARED_PREFIXES,
        level_loss_weights=weights,
        label_head_vocabulary="full" if vocabulary == "labels" else "labels",
    )
    torch.testing.assert_close(other(**batch_of(other, tokenizer, SHARED_ROWS)).loss, out.loss)


def test_label_head_full_loss_is_over_the_heads_vocabulary(tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=SHARED_PREFIXES, label_loss="full")
    batch = batch_of(model, tokenizer, SHARED_ROWS)
    out = model(**batch)
    ids, levels = batch["input_ids"], batch["level_ids"]
    states = model.model(input_ids=ids, attention_mask=batch["attention_mask"], output_hidden_states=True)
    for level, layer in enumerate(model.config.level_layers[:2]):
        head = model.level_heads[str(level)]
        logits = head(model.final_norm(states.hidden_states[layer]))[:, :-1]
        mask = levels[:, 1:] == level + 1
        expected = F.cross_entropy(logits[mask], head.columns(ids[:, 1:][mask]))
        torch.testing.assert_close(out.level_losses[level], expected)


@pytest.mark.parametrize("label_loss", ["constrained", "full"])
def test_accumulated_micro_batches_equal_one_batch(label_loss, tokenizer):
    """2 micro-batches of 3 rows, each level's loss sum divided by the whole batch's token count, give the losses
    and the gradients of one batch of 6 (what gradient accumulation and data parallelism rely on)."""
    model = tiny_hdlm("llama", tokenizer, taxonomy=SHARED_PREFIXES, label_loss=label_loss)
    whole = batch_of(model, tokenizer, SHARED_ROWS)
    counts = torch.stack([(whole["level_ids"][:, 1:] == d).sum() for d in (1, 2, 3)])

    def gradients(batches):
        model.zero_grad()
        level_losses = 0
        for batch in batches:
            out = model(**batch)
            step_losses = out.level_loss_sums / counts
            (step_losses.new_tensor(model.config.level_loss_weights) * step_losses).sum().backward()
            level_losses = level_losses + step_losses.detach()
        return level_losses, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    one_losses, one_grads = gradients([whole])
    two_losses, two_grads = gradients(
        [batch_of(model, tokenizer, SHARED_ROWS[:3]), batch_of(model, tokenizer, SHARED_ROWS[3:])]
    )
    torch.testing.assert_close(two_losses, one_losses)
    assert len(one_grads) == len(two_grads) > 0
    for one, two in zip(one_grads, two_grads):
        torch.testing.assert_close(two, one)


# -- hierarchical decoding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "rank"])
def test_early_exit_is_exact_and_paths_are_valid(family, depth, strategy, tokenizer):
    taxonomy, valid = (TAXONOMY_2, TAXONOMY_PATHS_2) if depth == 2 else (TAXONOMY_3, TAXONOMY_PATHS_3)
    model = tiny_hdlm(family, tokenizer, taxonomy=taxonomy)
    batch = {
        early_exit: model.generate_hierarchical(
            PROMPTS, tokenizer, strategy=strategy, early_exit=early_exit, batch_size=4
        )
        for early_exit in (True, False)
    }
    singles = [model.generate_hierarchical(prompt, tokenizer, strategy=strategy)[0] for prompt in PROMPTS]
    assert decoded_tokens(batch[True]) == decoded_tokens(batch[False])
    # Padding is invisible, except to a sliding window, which counts cache slots (as in `generate`): there a
    # batch may decode other tokens than the same prompts one by one.
    if family != "gemma3_text":
        assert decoded_tokens(batch[True]) == decoded_tokens(singles)
    for output, full_depth, single in zip(batch[True], batch[False], singles):
        assert tuple(output.path) in valid
        assert [level.label for level in output.levels] == output.path
        for level, level_full_depth in zip(output.levels, full_depth.levels):
            assert level.score == pytest.approx(level_full_depth.score, abs=1e-9)
        if family != "gemma3_text":
            for level, level_single in zip(output.levels, single.levels):
                assert level.score == pytest.approx(level_single.score, abs=1e-9)


def test_a_call_runs_its_prompts_shared_prefix_once(tokenizer):
    """The tokens every prompt of a call starts with (the instruction) go through the model once; each batch starts
    from their cache (that this decodes as each prompt alone does: the test above)."""
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_2)
    renderer = model.get_renderer(tokenizer)
    decoder = HierarchicalDecoder(model, renderer, HierarchicalGenerationConfig())
    prompts = prompt_ids(PROMPTS, renderer)
    prefix = decoder._run_shared_prefix(prompts)
    shared = os.path.commonprefix(prompts)
    assert len(shared) > 5 and prefix.tokens == shared[: min(map(len, prompts)) - 1]
    assert prefix.cache.get_seq_length() == len(prefix.tokens) and prefix.attention_mask.shape == (1, len(shared))
    assert decoder._run_shared_prefix(prompts[:1]) is None  # one prompt: nothing to share
    assert decoder._run_shared_prefix([[5, 6], [7, 6]]) is None  # no common first token
    decoder.prefix = prefix
    pending = decoder.start(prompts[:2])
    assert pending == [prompt[len(shared) :] for prompt in prompts[:2]]
    assert decoder.cache.get_seq_length() == len(shared) and decoder.attention_mask.shape == (2, len(shared))
    assert prefix.cache.layers[0].keys.shape[0] == 1  # the batch has copies; the prefix's own cache is unchanged


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2_untied"])
@pytest.mark.parametrize("vocabulary", ["labels", "full"])
def test_rank_matches_brute_force_log_likelihood(family, vocabulary, tokenizer):
    """`rank` scores a label by its log-likelihood under the level's head, over the head's whole vocabulary: all
    tokens for full heads, the level's label tokens for label heads."""
    model = tiny_hdlm(family, tokenizer, taxonomy=TAXONOMY_3, level_layers=[1, 3, 4], label_head_vocabulary=vocabulary)
    renderer = model.get_renderer(tokenizer)
    output = model.generate_hierarchical(PROMPTS[1], tokenizer, strategy="rank", top_k=3)[0]
    norm = dict(model.model.base_model.named_children())["norm" if family != "gpt2_untied" else "ln_f"]
    heads = [model.level_heads["0"], model.level_heads["1"], model.model.get_output_embeddings()]
    prefix = tokenizer(model.config.prompt_template.format(instruction=model.config.instruction, text=PROMPTS[1]))[
        "input_ids"
    ]
    parent = None
    for level, layer in enumerate([1, 3, 4]):
        prefix = prefix + tokenizer(f"{model.config.level_names[level]}:", add_special_tokens=False)["input_ids"]
        candidates = sorted({path[level] for path in TAXONOMY_3 if level == 0 or path[level - 1] == parent})
        scores = {}
        for label in candidates:
            end = [tokenizer.eos_token_id] if level == 2 else tokenizer("\n", add_special_tokens=False)["input_ids"]
            answer = tokenizer(" " + label, add_special_tokens=False)["input_ids"] + end
            ids = torch.tensor([prefix + answer])
            hidden = model.model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
            hidden = hidden if layer == 4 else norm(hidden)
            log_probs = heads[level](hidden)[0, len(prefix) - 1 : -1].log_softmax(-1)
            columns = model.head_columns(level, torch.tensor(answer))
            scores[label] = log_probs.gather(-1, columns[:, None]).sum().item()
        best = max(scores, key=scores.get)
        decoded = output.levels[level]
        assert decoded.label == best
        assert decoded.score == pytest.approx(scores[best], abs=1e-6)
        probabilities = torch.tensor(list(scores.values())).softmax(0)
        expected_top = sorted(zip(scores, probabilities.tolist()), key=lambda item: -item[1])[:3]
        assert [label for label, _ in decoded.top_labels] == [label for label, _ in expected_top]
        assert [p for _, p in decoded.top_labels] == pytest.approx([p for _, p in expected_top], abs=1e-6)
        assert decoded.probability == pytest.approx(expected_top[0][1], abs=1e-6)
        prefix = prefix + renderer.answer_ids(level, best)
        parent = best


@pytest.mark.parametrize("constrained", [True, False])
def test_greedy_score_is_the_log_probability_of_its_tokens(constrained, tokenizer):
    """Constrained: each token's log-probability among the tokens the taxonomy allows at its step (the decoder
    computes only those logits; here they come from the full head). Free: over the whole vocabulary."""
    model = tiny_hdlm("qwen2", tokenizer, label_head_vocabulary="labels" if constrained else "full")
    renderer = model.get_renderer(tokenizer)
    level = model.generate_hierarchical(PROMPTS[0], tokenizer, constrained=constrained)[0].levels[0]
    prompt, header = renderer.prompt_ids(PROMPTS[0]), renderer.header_ids(0)
    hidden = model.model(input_ids=torch.tensor([prompt + header + level.token_ids]), output_hidden_states=True)
    start = len(prompt) + len(header) - 1
    norm = model.model.base_model.norm
    logits = model.level_heads["0"](norm(hidden.hidden_states[2]))[0, start : start + len(level.token_ids)]
    if constrained:
        labels = [renderer.answer_ids(0, label) for label in renderer.candidates(0)]
        expected = 0.0
        for step, token in enumerate(level.token_ids):
            allowed = sorted({ids[step] for ids in labels if ids[:step] == level.token_ids[:step]})
            columns = model.head_columns(0, torch.tensor(allowed))
            expected += logits[step, columns].log_softmax(-1)[allowed.index(token)].item()
    else:
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(level.token_ids)[:, None]).sum().item()
    assert level.score == pytest.approx(expected, abs=1e-5)
    assert level.probability == (pytest.approx(math.exp(expected), abs=1e-5) if constrained else None)


def test_greedy_label_probabilities_are_a_distribution_over_the_allowed_labels(tokenizer):
    """The probability greedy decoding gives a label (its tokens' probabilities among the tokens the taxonomy allows
    at each step) sums to 1 over the labels allowed there, and a path's probability is the product of its levels'."""
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3, level_layers=[1, 3, 4])
    renderer = model.get_renderer(tokenizer)
    output = model.generate_hierarchical(PROMPTS[2], tokenizer)[0]
    prefix = renderer.prompt_ids(PROMPTS[2])
    path: list[str] = []
    for level, layer in enumerate([1, 3, 4]):
        prefix = prefix + renderer.header_ids(level, path)
        total = 0.0
        for label in renderer.candidates(level, path):
            answer = renderer.answer_ids(level, label)
            nodes, _ = model.label_trie().walk(level, path, answer)
            hidden = model.model(input_ids=torch.tensor([prefix + answer]), output_hidden_states=True)
            states = hidden.hidden_states[layer][0, len(prefix) - 1 : -1]
            vocabulary = torch.tensor(model.label_trie().vocabularies[level])
            logits = model.head_logits(level, states, vocabulary)
            allowed = model.label_trie().allowed_mask(level)[torch.tensor(nodes)]
            log_probs = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
            columns = torch.searchsorted(vocabulary, torch.tensor(answer))
            probability = log_probs.gather(-1, columns[:, None]).sum().exp()
            total += probability.item()
            if label == output.levels[level].label:
                assert output.levels[level].probability == pytest.approx(probability.item(), abs=1e-5)
        assert total == pytest.approx(1.0, abs=1e-5)
        path.append(output.levels[level].label)
        prefix = prefix + renderer.answer_ids(level, path[-1])
    assert output.probability == pytest.approx(math.prod(level.probability for level in output.levels))


@pytest.mark.parametrize(
    "family, taxonomy, kinds",
    [
        ("llama", [["Question"], ["Reflection"]], ["label", "text"]),
        ("llama", TAXONOMY_2, ["label", "label", "text"]),  # e.g. emotion -> strategy -> reply
        ("gemma3_text", TAXONOMY_2, ["label", "label", "text"]),  # a sliding window shorter than the reply's context
    ],
    ids=["label-text", "label-label-text", "label-label-text-gemma3"],
)
def test_unconstrained_and_text_levels_stop_at_end_marker_or_limit(family, taxonomy, kinds, tokenizer):
    model = tiny_hdlm(family, tokenizer, taxonomy=taxonomy, kinds=kinds, label_head_vocabulary="full")
    outputs = {
        early_exit: model.generate_hierarchical(PROMPTS, tokenizer, max_new_tokens=5, early_exit=early_exit)
        for early_exit in (True, False)
    }
    assert decoded_tokens(outputs[True]) == decoded_tokens(outputs[False])
    for output, full_depth in zip(outputs[True], outputs[False]):
        *labels, reply = output.levels
        assert tuple(level.label for level in labels) in {tuple(path) for path in taxonomy}
        assert not any(level.truncated for level in labels)
        assert reply.label is None and reply.kind == "text"
        ended = reply.token_ids[-1] == tokenizer.eos_token_id
        assert ended != reply.truncated
        assert len(reply.token_ids) <= 5
        assert reply.score == pytest.approx(full_depth.levels[-1].score, abs=1e-9)
    unconstrained = model.generate_hierarchical(PROMPTS[:2], tokenizer, constrained=False, max_new_tokens=4)
    assert all(len(level.token_ids) <= 4 for output in unconstrained for level in output.levels)


def test_sampling_is_reproducible_with_a_seeded_generator(tokenizer):
    model = tiny_hdlm("gpt2_untied", tokenizer, taxonomy=[["Question"], ["Reflection"]], kinds=["label", "text"])

    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return model.generate_hierarchical(
            PROMPTS, tokenizer, do_sample=True, temperature=1.5, top_p=0.9, max_new_tokens=8, generator=generator
        )

    assert decoded_tokens(sample(0)) == decoded_tokens(sample(0))
    assert decoded_tokens(sample(0)) != decoded_tokens(sample(1))


@pytest.mark.parametrize(
    "options",
    [{"repetition_penalty": 1.8}, {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3}],
    ids=["greedy-penalty", "sampling"],
)
def test_a_text_level_decodes_as_generate_does(options, tokenizer):
    """A lone text level read by the last layer is plain generation: the tokens of `generate` under the same options,
    the repetition penalty counting the prompt, and the same random draws from the same seed."""
    model = tiny_hdlm("llama", tokenizer, taxonomy=None, kinds=["text"], level_layers=[4])
    renderer = model.get_renderer(tokenizer)
    for prompt in PROMPTS:
        ours = model.generate_hierarchical(
            prompt, tokenizer, max_new_tokens=12, generator=torch.Generator().manual_seed(7), **options
        )[0].levels[0]
        ids = torch.tensor([renderer.prompt_ids(prompt) + renderer.header_ids(0)])
        torch.manual_seed(7)
        theirs = model.generate(
            ids, max_new_tokens=12, top_k=0, eos_token_id=tokenizer.eos_token_id, pad_token_id=0, **options
        )[0, ids.shape[1] :]
        assert ours.token_ids == theirs.tolist()[: len(ours.token_ids)]
        assert len(ours.token_ids) == 12 or ours.token_ids[-1] == tokenizer.eos_token_id


def test_chat_template_rendering_and_candidates(tokenizer):
    chat_tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    chat_tokenizer.chat_template = (
        "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
        "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
    )
    model = tiny_hdlm("llama", chat_tokenizer, use_chat_template=True, show_candidates=True)
    renderer = model.get_renderer(chat_tokenizer)
    ids, levels = renderer.encode_example("hello", ["Sports", "Tennis"])
    text = chat_tokenizer.decode(ids)
    assert text.startswith("<bos>user\nAnswer with the topic, then the subtopic.\n\nhello<eos>\n<bos>assistant\n")
    assert text.endswith(
        "topic (one of: Arts, Science, Sports): Sports\nsubtopic (one of: Football, Tennis): Tennis<eos>"
    )
    assert chat_tokenizer.decode([i for i, lv in zip(ids, levels) if lv == 1]) == " Sports\n"
    assert chat_tokenizer.decode([i for i, lv in zip(ids, levels) if lv == 2]) == " Tennis<eos>"
    output = model.generate_hierarchical("hello", chat_tokenizer)[0]
    assert tuple(output.path) in TAXONOMY_PATHS_2
    with pytest.raises(ValueError, match="chat template"):
        model.get_renderer(tokenizer)


SPECIAL_TEXT = "physics <eos> then<pad> and <bos>tennis"


@pytest.mark.parametrize("use_chat_template", [False, True])
def test_user_text_never_becomes_a_special_token(use_chat_template, tokenizer):
    """Queries, labels and replies holding `<eos>`, `<pad>` or `<bos>` are encoded as that text, in training and
    inference alike; only the templates' own special tokens are special."""
    if use_chat_template:
        tokenizer = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
        tokenizer.chat_template = (
            "{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
            "{% if add_generation_prompt %}<bos>assistant\n{% endif %}"
        )
    specials = set(tokenizer.all_special_ids)
    taxonomy = [["Sci<eos>ence"], ["Sports"]]
    model = tiny_hdlm("llama", tokenizer, taxonomy, kinds=["label", "text"], use_chat_template=use_chat_template)
    renderer = model.get_renderer(tokenizer)
    plain_prompt = renderer.prompt_ids("physics then and tennis")
    prompt = renderer.prompt_ids(SPECIAL_TEXT)
    assert SPECIAL_TEXT in tokenizer.decode(prompt)
    assert [t for t in prompt if t in specials] == [t for t in plain_prompt if t in specials]  # the template's
    text_ids = tokenizer(SPECIAL_TEXT, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    cut, truncated = renderer.truncate_query(SPECIAL_TEXT, len(text_ids) - 1)  # counted in text tokens too
    assert truncated and cut == tokenizer.decode(text_ids[:-1]) and "<eos>" in cut

    ids, levels = renderer.encode_example(SPECIAL_TEXT, ["Sci<eos>ence", "ok <eos> bye<pad>"])
    assert [t for t in ids if t in specials] == [t for t in plain_prompt if t in specials] + [tokenizer.eos_token_id]
    assert ids[-1] == tokenizer.eos_token_id and levels[-1] == 2
    assert tokenizer.decode([t for t, lv in zip(ids, levels) if lv == 2]) == " ok <eos> bye<pad><eos>"
    tokenized = tokenize_hierarchical(
        Dataset.from_list([{"text": SPECIAL_TEXT, "labels": ["Sci<eos>ence", "x"]}]), renderer
    )
    assert [t for t in tokenized[0]["input_ids"] if t in specials] == [t for t in plain_prompt if t in specials] + [
        tokenizer.eos_token_id
    ]

    [output] = model.generate_hierarchical(SPECIAL_TEXT, tokenizer, max_new_tokens=4)
    [from_ids] = model.generate_hierarchical(prompt, tokenizer, max_new_tokens=4)
    assert decoded_tokens([output]) == decoded_tokens([from_ids]) and output.path[0] in ("Sci<eos>ence", "Sports")
    assert not set(model.config.taxonomy_token_ids[0][0]) & specials  # the label "Sci<eos>ence" and its separator


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", ["greedy", "rank"])
def test_label_heads_decode_as_full_heads_restricted_to_their_rows(family, strategy, tokenizer):
    """Under constraints a label head gives exactly the tokens and scores of the full head it was cut from:
    constrained decoding scores only allowed tokens, and those are all in the label head. `rank` normalises over
    the head's own rows, so its scores differ (and its ranking may)."""
    labels = tiny_hdlm(family, tokenizer, taxonomy=SHARED_PREFIXES, label_head_vocabulary="labels")
    full = tiny_hdlm(family, tokenizer, taxonomy=SHARED_PREFIXES, label_head_vocabulary="full")
    ours, theirs = (m.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy) for m in (labels, full))
    if strategy == "rank":
        # The full head's log-likelihood is lower: it spreads probability over the whole vocabulary.
        for output, reference in zip(ours, theirs):
            assert output.levels[0].score >= reference.levels[0].score
        return
    assert decoded_tokens(ours) == decoded_tokens(theirs)
    for output, reference in zip(ours, theirs):
        assert [level.score for level in output.levels] == pytest.approx([level.score for level in reference.levels])
    num_rows = sum(head.weight.shape[0] for head in labels.level_heads.values())
    assert num_rows < len(tokenizer)  # only the labels' tokens


def test_label_heads_refuse_free_decoding_and_a_foreign_tokenizer(tokenizer):
    model = tiny_hdlm("llama", tokenizer)
    with pytest.raises(ValueError, match="constrained=False.*label_head_vocabulary='full'"):
        model.generate_hierarchical(PROMPTS[0], tokenizer, constrained=False)
    with pytest.raises(ValueError, match="not in this label head's vocabulary"):
        model.head_logits(0, torch.zeros(1, 32, dtype=torch.float64), torch.tensor([0]))
    other = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    other.add_tokens([" Science", " Sports"])  # the same text, other token ids
    with pytest.raises(ValueError, match="renders the taxonomy's labels into other tokens"):
        model.generate_hierarchical(PROMPTS[0], other)


def test_label_heads_need_the_labels_token_ids(tokenizer):
    with pytest.raises(ValueError, match="from_base\\(\\.\\.\\., tokenizer=tokenizer\\)"):
        HdLMForCausalLM.from_base(tiny_base("llama", tokenizer), {"level_layers": [2, 4], "taxonomy": TAXONOMY_2})
    # Full heads need none: the decoder then renders the labels with the tokenizer it is given.
    model = HdLMForCausalLM.from_base(
        tiny_base("llama", tokenizer),
        {"level_layers": [2, 4], "taxonomy": TAXONOMY_2, "label_head_vocabulary": "full"},
    )
    assert model.config.taxonomy_token_ids is None
    [output] = model.generate_hierarchical(PROMPTS[0], tokenizer)
    assert tuple(output.path) in TAXONOMY_PATHS_2


def test_labels_with_the_same_tokens_are_refused():
    """A normalising tokenizer (lower case, say) can map two labels to the same tokens: decoding could not tell them
    apart."""
    with pytest.raises(ValueError, match="'Tennis' and 'tennis' at level 2 below \\['Sports'\\] have the same"):
        TaxonomyTrie([["Sports", "Tennis"], ["Sports", "tennis"]], [[[5, 1], [7, 8, 1]], [[5, 1], [7, 8, 1]]])


@pytest.mark.parametrize(
    "inputs, options, error, message",
    [
        ("x", {"strategy": "beam"}, ValueError, r"`strategy` must be one of \('greedy', 'rank'\), got 'beam'"),
        ("x", {"top_k": 3}, ValueError, r"`top_k=3` needs `strategy='rank'`"),
        ("x", {"top_k": 0, "strategy": "rank"}, ValueError, r"`top_k` must be >= 1, got 0"),
        ("x", {"top_k": 2.0, "strategy": "rank"}, TypeError, r"`top_k` must be an int, got 2.0 \(float\)"),
        ("x", {"batch_size": 1.5}, TypeError, r"`batch_size` must be an int, got 1.5 \(float\)"),
        ("x", {"batch_size": 0}, ValueError, r"`batch_size` must be >= 1, got 0"),
        ("x", {"max_new_tokens": True}, TypeError, r"`max_new_tokens` must be an int, got True \(bool\)"),
        (None, {}, TypeError, r"`inputs` must be a string, .* got NoneType"),
        (123, {}, TypeError, r"`inputs` must be a string, .* got int"),
        ([], {}, ValueError, r"`inputs` is empty: pass at least one query"),
        ([1.5], {}, TypeError, r"`inputs\[0\]` is a float"),
        (["x", None], {}, TypeError, r"`inputs\[1\]` is a NoneType"),
        (["x", [5]], {}, TypeError, r"kinds mixed, or a list empty"),
        ([[5], []], {}, TypeError, r"kinds mixed, or a list empty"),
        ([[5, 10**6]], {}, ValueError, r"`inputs\[0\]` holds token ids outside the vocabulary \(0\.\.\d+\): \[10+\]"),
        ([5, -1], {}, ValueError, r"`inputs\[0\]` holds token ids outside the vocabulary .*: \[-1\]"),
        # Found by tests/test_properties.py: bytes passed for token ids, flags and sampling options unchecked.
        (b"ab", {}, TypeError, r"`inputs` is bytes, not text: decode it first"),
        ("x", {"constrained": "no"}, TypeError, r"`constrained` must be True or False, got 'no' \(str\)"),
        ("x", {"early_exit": None}, TypeError, r"`early_exit` must be True or False"),
        ("x", {"do_sample": 1}, TypeError, r"`do_sample` must be True or False, got 1 \(int\)"),
        ("x", {"do_sample": True, "temperature": 0}, ValueError, r"`temperature` must be finite and > 0, got 0.0"),
        ("x", {"do_sample": True, "temperature": "hot"}, TypeError, r"`temperature` must be a number, got 'hot'"),
        ("x", {"do_sample": True, "top_p": float("nan")}, ValueError, r"`top_p` must be in \(0, 1\], got nan"),
        ("x", {"repetition_penalty": -1.0}, ValueError, r"`repetition_penalty` must be finite and > 0"),
        ("x", {"do_sample": True, "generator": 0}, TypeError, r"`generator` must be a `torch.Generator`"),
    ],
)  # fmt: skip
def test_bad_generation_arguments_are_rejected(inputs, options, error, message, tokenizer):
    """Each bad argument is named with what it must be, before any decoding (never an error from inside torch)."""
    model = tiny_hdlm("llama", tokenizer)
    with pytest.raises(error, match=message):
        model.generate_hierarchical(inputs, tokenizer, **options)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"strategy": "beam"}, ValueError, r"`strategy` must be one of \('greedy', 'rank'\), got 'beam'"),
        ({"top_k": 3}, ValueError, r"`top_k=3` needs `strategy='rank'`"),
        ({"batch_size": 0}, ValueError, r"`batch_size` must be >= 1, got 0"),
        ({"early_exit": None}, TypeError, r"`early_exit` must be True or False"),
        ({"do_sample": True, "top_p": 1.5}, ValueError, r"`top_p` must be in \(0, 1\], got 1.5"),
        ({"generator": 0}, TypeError, r"`generator` must be a `torch.Generator`"),
    ],
)
def test_generation_config_checks_its_options_when_made(options, error, message):
    with pytest.raises(error, match=message):
        HierarchicalGenerationConfig(**options)
    config = HierarchicalGenerationConfig(temperature=None, top_p=1, repetition_penalty=2)
    assert (config.temperature, config.top_p, config.repetition_penalty) == (1.0, 1.0, 2.0)
    assert all(type(value) is float for value in (config.temperature, config.top_p, config.repetition_penalty))


def test_generation_config_is_passed_whole_and_keyword_arguments_override_it(tokenizer):
    """`generate_hierarchical(inputs, tokenizer, config, **kwargs)` decodes as the same options given as keywords,
    keywords winning over the config's fields (as `generate` merges them), and leaves the config as it was."""
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3, level_layers=[1, 3, 4])
    config = HierarchicalGenerationConfig(strategy="rank", top_k=2, batch_size=3)
    whole = model.generate_hierarchical(PROMPTS, tokenizer, config)
    keywords = model.generate_hierarchical(PROMPTS, tokenizer, strategy="rank", top_k=2, batch_size=3)
    assert decoded_tokens(whole) == decoded_tokens(keywords)
    assert [o.levels[0].top_labels for o in whole] == [o.levels[0].top_labels for o in keywords]
    overridden = model.generate_hierarchical(PROMPTS, tokenizer, config, strategy="greedy", top_k=1)
    assert decoded_tokens(overridden) == decoded_tokens(model.generate_hierarchical(PROMPTS, tokenizer))
    assert overridden[0].levels[0].top_labels is None and (config.strategy, config.top_k) == ("rank", 2)
    with pytest.raises(TypeError, match=r"got unknown keyword arguments \['max_new_token'\]: it takes the fields"):
        model.generate_hierarchical(PROMPTS[0], tokenizer, max_new_token=4)
    with pytest.raises(TypeError, match=r"`generation_config` must be a `HierarchicalGenerationConfig`, got dict"):
        model.generate_hierarchical(PROMPTS[0], tokenizer, {"strategy": "rank"})
    with pytest.raises(ValueError, match=r"`top_k=2` needs `strategy='rank'`"):  # the merged options are checked
        model.generate_hierarchical(PROMPTS[0], tokenizer, config, strategy="greedy")


def test_sampling_options_take_ints_and_a_tiny_temperature_is_a_clear_error(tokenizer):
    """`temperature=1` (an int) samples as 1.0 does; a temperature so small that the probabilities overflow is an
    error naming it, not a crash inside `torch.multinomial`."""
    model = tiny_hdlm("llama", tokenizer, [["Science"]], kinds=["label", "text"])
    sample = dict(do_sample=True, max_new_tokens=4)
    as_int, as_float = (
        model.generate_hierarchical(PROMPTS, tokenizer, temperature=t, generator=torch.Generator().manual_seed(0),
                                    **sample)
        for t in (1, 1.0)
    )  # fmt: skip
    assert decoded_tokens(as_int) == decoded_tokens(as_float)
    with pytest.raises(ValueError, match=r"probabilities that are not finite: `temperature` is too small"):
        model.generate_hierarchical(PROMPTS, tokenizer, temperature=1e-320, **sample)


def test_token_id_inputs_equal_string_inputs(tokenizer):
    model = tiny_hdlm("llama", tokenizer)
    renderer = model.get_renderer(tokenizer)
    from_ids = model.generate_hierarchical([renderer.prompt_ids(p) for p in PROMPTS[:2]], tokenizer)
    assert decoded_tokens(from_ids) == decoded_tokens(model.generate_hierarchical(PROMPTS[:2], tokenizer))


def test_plain_generate_equals_the_base_model(tokenizer):
    base = tiny_base("llama", tokenizer)
    model = HdLMForCausalLM.from_base(tiny_base("llama", tokenizer), {"level_layers": [2, 4]})
    ids = torch.tensor([tokenizer(PROMPTS[0])["input_ids"]])
    expected = base.generate(ids, max_new_tokens=5, do_sample=False)
    torch.testing.assert_close(model.generate(ids, max_new_tokens=5, do_sample=False), expected)


# -- saving and remote loading ------------------------------------------------------------------------------------

REMOTE_LOAD = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    path, out = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    result = {}
    for name, auto in (("AutoModel", AutoModel), ("AutoModelForCausalLM", AutoModelForCausalLM)):
        model = auto.from_pretrained(path, trust_remote_code=True)
        remote = sys.modules[type(model).__module__]
        for cls in (type(model), type(model.get_renderer(tokenizer)), remote.HierarchicalGenerationConfig):
            assert cls.__module__.startswith("transformers_modules"), cls.__module__
        ids = torch.tensor([tokenizer("a text about physics")["input_ids"]])
        outputs = model.generate_hierarchical(["a text about physics", "tennis"])
        ranked = model.generate_hierarchical(
            ["tennis"], generation_config=remote.HierarchicalGenerationConfig(strategy="rank", top_k=2)
        )
        result[name] = {
            "logits": model(input_ids=ids).logits.tolist(),
            "tokens": [[level.token_ids for level in o.levels] for o in outputs],
            "paths": [o.path for o in outputs],
            "top_labels": [level.top_labels for level in ranked[0].levels],
        }
    # Every HdLM module came from the checkpoint's folder, none from a source checkout.
    result["top_level_modules"] = sorted(name for name in sys.modules if name.endswith("_hdlm") and "." not in name)
    json.dump(result, open(out, "w"))
    """
)


@pytest.mark.parametrize("family", ["llama", "gpt2_tied"])
def test_saved_model_loads_remotely_with_identical_outputs(family, tokenizer, tmp_path):
    model = tiny_hdlm(family, tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    files = {path.name for path in (tmp_path / "model").iterdir()}
    remote_code = {
        f"{name}_hdlm.py"
        for name in ("configuration", "modeling", "rendering", "generation", "decoding", "beam", "early_exit")
    }
    assert {"config.json", "model.safetensors", "taxonomy_hdlm.py", *remote_code} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    script = tmp_path / "load.py"
    script.write_text(REMOTE_LOAD)
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model"), str(tmp_path / "out.json")],
        cwd=tmp_path,
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    remote = json.loads((tmp_path / "out.json").read_text())
    assert remote["top_level_modules"] == []
    ids = torch.tensor([tokenizer("a text about physics")["input_ids"]])
    outputs = model.generate_hierarchical(["a text about physics", "tennis"], tokenizer)
    ranked = model.generate_hierarchical(["tennis"], tokenizer, strategy="rank", top_k=2)
    for name in ("AutoModel", "AutoModelForCausalLM"):
        torch.testing.assert_close(
            torch.tensor(remote[name]["logits"], dtype=torch.float64), model(input_ids=ids).logits
        )
        assert remote[name]["tokens"] == decoded_tokens(outputs)
        assert remote[name]["paths"] == [o.path for o in outputs]
        assert remote[name]["top_labels"] == [[list(top) for top in level.top_labels] for level in ranked[0].levels]


# -- the tokenizer a model finds by itself ------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Sockets refuse to resolve or connect; every attempt is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise OSError("the network is blocked in this test")

    for owner, name in [(socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo")]:
        monkeypatch.setattr(owner, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_default_tokenizer_is_read_where_the_model_was_loaded_even_after_a_chdir(
    tokenizer, tmp_path, monkeypatch, no_network
):
    """`outputs/model` is a relative path and a valid Hub id: after a `chdir` it must not become a download (of
    someone else's repository, with `trust_remote_code=True`)."""
    model = tiny_hdlm("llama", tokenizer)
    model.save_pretrained(tmp_path / "outputs" / "model")
    tokenizer.save_pretrained(tmp_path / "outputs" / "model")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    loaded = HdLMForCausalLM.from_pretrained("outputs/model").eval()
    monkeypatch.chdir(tmp_path / "elsewhere")
    outputs = loaded.generate_hierarchical(PROMPTS[:2])
    assert decoded_tokens(outputs) == decoded_tokens(model.generate_hierarchical(PROMPTS[:2], tokenizer))
    assert no_network == []
    shutil.rmtree(tmp_path / "outputs")
    with pytest.raises(ValueError, match=r"Pass `tokenizer=`: no tokenizer could be loaded from .*outputs/model"):
        loaded.generate_hierarchical(PROMPTS[0])
    assert no_network == []
    with pytest.raises(ValueError, match=r"Pass `tokenizer=`: this model was not loaded with `from_pretrained`"):
        model.generate_hierarchical(PROMPTS[0])


def test_default_tokenizer_of_a_hub_model_is_its_repository_at_the_loaded_commit(
    tokenizer, tmp_path, monkeypatch, no_network
):
    """A model loaded by Hub id reads its tokenizer from the same repository and commit (here from the cache)."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-hdlm"
    model = tiny_hdlm("llama", tokenizer)
    model.save_pretrained(repo / "snapshots" / commit)
    tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = HdLMForCausalLM.from_pretrained("someone/tiny-hdlm", cache_dir=tmp_path / "hub").eval()
    assert loaded._tokenizer_source == {
        "pretrained_model_name_or_path": "someone/tiny-hdlm",
        "revision": commit,
        "cache_dir": tmp_path / "hub",
    }
    outputs = loaded.generate_hierarchical(PROMPTS[:2])
    assert decoded_tokens(outputs) == decoded_tokens(model.generate_hierarchical(PROMPTS[:2], tokenizer))
    assert no_network == []


# -- the base model's position limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gpt2_untied", "llama"])
def test_inputs_past_the_position_limit_are_a_clear_error(family, tokenizer):
    """`from_base` sets no query budget: a long query must not crash deep in torch (GPT-2's position embedding)
    nor run silently past the limit (Llama's rotary positions)."""
    base = tiny_base(family, tokenizer)
    base.config.max_position_embeddings = 64  # GPT-2: `n_positions`
    options = dict(
        level_layers=[2, 4],
        level_names=["topic", "reply"],
        level_kinds=["label", "text"],
        taxonomy=[["Science"], ["Sports"]],
    )
    model = HdLMForCausalLM.from_base(base, options, tokenizer=tokenizer).eval()
    long_query = "the quick brown fox jumps over the lazy dog " * 30  # 1,320 characters
    with pytest.raises(
        ValueError, match=r"`inputs\[1\]` takes \d+ tokens, .* at most 64 positions .*max_query_tokens"
    ):
        model.generate_hierarchical(["tennis", long_query], tokenizer)
    prompt_length = len(model.get_renderer(tokenizer).prompt_ids("tennis"))
    model.config.text_config.max_position_embeddings = prompt_length + 4  # the prompt fits, its answers do not
    with pytest.raises(ValueError, match=rf"Decoding reached the model's position limit \({prompt_length + 4} "):
        model.generate_hierarchical("tennis", tokenizer)
    model.config.text_config.max_position_embeddings = 64
    ids = torch.tensor([tokenizer(long_query)["input_ids"]])
    with pytest.raises(ValueError, match=r"A sequence of \d+ tokens is longer than the model encodes \(64"):
        model(input_ids=ids, level_ids=torch.ones_like(ids))

    model.config.max_query_tokens = 16  # the documented way: queries cut at training and inference alike
    [output] = model.generate_hierarchical(long_query, tokenizer, max_new_tokens=8)
    assert output.path[0] in ("Science", "Sports")
