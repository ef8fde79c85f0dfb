"""Path probabilities you can trust: the beam over the taxonomy (`top_k_paths`), per-level temperatures fitted on
held-out rows, and abstention, on tiny random models checked against brute force by teacher forcing."""

import math

import pytest
import torch
from conftest import TAXONOMY_2, TAXONOMY_3, HdLMConfig, tiny_hdlm

from generation_hdlm import HierarchicalGenerationConfig
from hdlm.evaluation.calibration_fit import fit_level_temperatures, gold_label_logits

PROMPTS = [
    "a text about physics",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up.",
    "tennis",
]


def rank_label_log_probabilities(model, tokenizer, text, taxonomy, temperature):
    """Per path of `taxonomy` and label level: the label's log-probability among its siblings, as rank defines it
    (softmax of the siblings' full-head log-likelihoods divided by the level's temperature), by teacher forcing."""
    renderer = model.get_renderer(tokenizer)
    likelihood = {}
    for path in taxonomy:
        ids, level_ids = renderer.encode_example(text, path)
        hidden = model.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for level, layer in enumerate(model.config.level_layers):
            columns = [index for index, value in enumerate(level_ids) if value == level + 1]
            logits = model.head_logits(level, hidden[layer][0, [c - 1 for c in columns]])
            targets = model.head_columns(level, torch.tensor([ids[c] for c in columns]))
            likelihood[tuple(path[: level + 1])] = logits.log_softmax(-1).gather(-1, targets[:, None]).sum().item()
    result = []
    for path in taxonomy:
        levels = []
        for level in range(len(path)):
            siblings = [key for key in likelihood if len(key) == level + 1 and key[:level] == tuple(path[:level])]
            scores = torch.tensor([likelihood[key] for key in siblings]) / temperature[level]
            levels.append(scores.log_softmax(0)[siblings.index(tuple(path[: level + 1]))].item())
        result.append(levels)
    return result


def brute_force_paths(model, tokenizer, text, strategy, temperature=(1.0, 1.0, 1.0)):
    """Every path of the model's taxonomy with its probability, most probable first, scored by teacher forcing."""
    taxonomy = model.config.taxonomy
    if strategy == "greedy":
        levels = gold_label_logits(model, tokenizer, [text] * len(taxonomy), taxonomy)
        per_level = [level.label_log_probabilities(t).tolist() for level, t in zip(levels, temperature)]
        log_probs = [sum(values) for values in zip(*per_level)]
    else:
        log_probs = [
            sum(levels) for levels in rank_label_log_probabilities(model, tokenizer, text, taxonomy, temperature)
        ]
    return sorted(((math.exp(lp), list(path)) for lp, path in zip(log_probs, taxonomy)), reverse=True)


@pytest.mark.parametrize("strategy", ["greedy", "rank"])
def test_beam_as_wide_as_the_taxonomy_returns_exactly_the_best_paths(strategy, tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3, label_head_vocabulary="full")
    outputs = model.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy, top_k_paths=len(TAXONOMY_3))
    for text, output in zip(PROMPTS, outputs):
        expected = brute_force_paths(model, tokenizer, text, strategy)
        assert [path for path, _ in output.top_paths] == [path for _, path in expected]
        assert [p for _, p in output.top_paths] == pytest.approx([p for p, _ in expected], rel=1e-6)
        assert sum(p for _, p in output.top_paths) == pytest.approx(1.0)
        assert output.path == output.top_paths[0][0]
        assert output.probability == pytest.approx(output.top_paths[0][1])


@pytest.mark.parametrize("strategy", ["greedy", "rank"])
def test_narrow_beam_paths_carry_their_true_probability_and_beat_one_path(strategy, tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3)
    single = model.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy)
    beam = model.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy, top_k_paths=2, batch_size=2)
    for text, one, two in zip(PROMPTS, single, beam):
        truth = {tuple(path): p for p, path in brute_force_paths(model, tokenizer, text, strategy)}
        assert len(two.top_paths) == 2 and two.top_paths[0][1] >= two.top_paths[1][1]
        for path, probability in two.top_paths:
            assert probability == pytest.approx(truth[tuple(path)], rel=1e-6)
        assert two.top_paths[0][1] >= one.probability * (1 - 1e-6)
        assert one.top_paths is None


def test_beam_decodes_text_levels_for_the_best_path(tokenizer):
    model = tiny_hdlm(
        "llama", tokenizer, taxonomy=TAXONOMY_2, kinds=["label", "label", "text"], level_layers=[1, 3, 4]
    )
    outputs = model.generate_hierarchical(PROMPTS, tokenizer, top_k_paths=3, max_new_tokens=4)
    for text, output in zip(PROMPTS, outputs):
        labels, reply = output.levels[:2], output.levels[2]
        assert [level.label for level in labels] == output.top_paths[0][0]
        # the reply continues the best path exactly as one-path decoding continues the same labels
        forced = model.generate_hierarchical(text, tokenizer, max_new_tokens=4)[0]
        if forced.path[:2] == output.path[:2]:
            assert forced.levels[2].token_ids == reply.token_ids


@pytest.mark.parametrize("strategy", ["greedy", "rank"])
def test_temperatures_change_probabilities_not_labels(strategy, tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3, label_head_vocabulary="full")
    plain = model.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy, top_k=2 if strategy == "rank" else 1)
    temperatures = [0.5, 2.0, 3.0]
    model.config.level_temperatures = temperatures
    hot = model.generate_hierarchical(PROMPTS, tokenizer, strategy=strategy, top_k=2 if strategy == "rank" else 1)
    for text, before, after in zip(PROMPTS, plain, hot):
        assert [level.token_ids for level in before.levels] == [level.token_ids for level in after.levels]
        assert [level.score for level in before.levels] == pytest.approx([level.score for level in after.levels])
        truth = {tuple(path): p for p, path in brute_force_paths(model, tokenizer, text, strategy, temperatures)}
        assert after.probability == pytest.approx(truth[tuple(after.path)], rel=1e-5)
        assert after.probability != pytest.approx(before.probability, rel=1e-3)


def test_fitted_temperatures_minimise_the_held_out_nll_and_travel_with_the_config(tokenizer, tmp_path):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3)
    texts = [f"{prompt} {index}" for index in range(3) for prompt in PROMPTS]
    paths = [TAXONOMY_3[index % len(TAXONOMY_3)] for index in range(len(texts))] + [["Nowhere", "At", "All"]]
    report = fit_level_temperatures(model, tokenizer, texts + ["unknown path"], paths, batch_size=4)
    temperatures = report["temperatures"]
    assert model.config.level_temperatures == temperatures and len(temperatures) == 3
    levels = gold_label_logits(model, tokenizer, texts, paths[: len(texts)])
    for level, temperature, before, after in zip(levels, temperatures, report["nll_before"], report["nll_after"]):
        assert after <= before + 1e-9
        grid = [math.exp(x / 10) for x in range(-29, 30)]  # within the search's bounds, [1/20, 20]
        assert level.nll(temperature) <= min(level.nll(t) for t in grid) + 1e-6
    model.config.save_pretrained(tmp_path)
    assert HdLMConfig.from_pretrained(tmp_path).level_temperatures == pytest.approx(temperatures)


@pytest.mark.parametrize("temperatures", [[1.0, 1.0], [1.0, 0.0, 1.0], [1.0, float("nan"), 1.0], "1.0"])
def test_bad_level_temperatures_name_the_field(temperatures, tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3)
    config = model.config.to_dict()
    with pytest.raises((ValueError, TypeError), match="level_temperatures"):
        HdLMConfig(**{**config, "level_temperatures": temperatures})


def test_abstention_stops_at_the_deepest_confident_level(tokenizer):
    model = tiny_hdlm("llama", tokenizer, taxonomy=TAXONOMY_3)
    full = model.generate_hierarchical(PROMPTS, tokenizer)
    probabilities = sorted(
        {math.prod(level.probability for level in o.levels[: d + 1]) for o in full for d in range(3)}
    )
    for threshold in [probabilities[0], probabilities[len(probabilities) // 2], 1.0]:
        cut = model.generate_hierarchical(PROMPTS, tokenizer, abstain_threshold=threshold)
        for whole, output in zip(full, cut):
            depth = len(output.levels)
            assert output.levels + output.abstained_levels == whole.levels
            assert output.abstained == (depth < 3)
            reached = [math.prod(level.probability for level in whole.levels[: d + 1]) for d in range(3)]
            assert all(p >= threshold for p in reached[:depth])
            assert depth == 3 or reached[depth] < threshold


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(top_k_paths=0), "top_k_paths"),
        (dict(abstain_threshold=0.0), "abstain_threshold"),
        (dict(abstain_threshold=1.5), "abstain_threshold"),
    ],
)
def test_bad_probability_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalGenerationConfig(**options)
