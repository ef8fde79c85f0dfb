"""Real taxonomies: a label is its path (names repeat under different parents), and paths may stop early
(`allow_partial_paths`): configuration, rendering, label tries, the constrained loss, decoding and a training run."""

import json

import pytest
import torch
from conftest import (
    PARTIAL_LEAVES,
    TAXONOMY_PARTIAL,
    partial_path_rows,
    tiny_base,
    tiny_hdlm,
    write_jsonl,
)
from test_modeling import TEXT_CONFIG, decoded_tokens
from test_training import run_script
from transformers import AutoModel

from configuration_hdlm import HdLMConfig
from modeling_hdlm import HdLMForCausalLM

LEVELS = dict(level_layers=[2, 3, 4], level_names=["topic", "subtopic", "leaf"])
VALID = set(PARTIAL_LEAVES)  # the full paths and the partial ones listed on their own


def partial_model(family, tokenizer, **kwargs) -> HdLMForCausalLM:
    return tiny_hdlm(
        family, tokenizer, taxonomy=TAXONOMY_PARTIAL, allow_partial_paths=True, kinds=["label"] * 3, **kwargs
    )


# -- configuration ------------------------------------------------------------------------------------------------


def test_config_takes_repeated_names_and_partial_paths_only_when_asked():
    config = HdLMConfig(text_config=TEXT_CONFIG, **LEVELS, taxonomy=TAXONOMY_PARTIAL, allow_partial_paths=True)
    assert HdLMConfig.from_dict(config.to_dict()).taxonomy == TAXONOMY_PARTIAL
    assert HdLMConfig.from_dict(config.to_dict()).allow_partial_paths is True
    full = [path for path in TAXONOMY_PARTIAL if len(path) == 3]
    saved_before = HdLMConfig(text_config=TEXT_CONFIG, **LEVELS, taxonomy=full).to_dict()
    del saved_before["allow_partial_paths"]  # a checkpoint saved before the option existed
    assert HdLMConfig.from_dict(saved_before).allow_partial_paths is False
    cases = [
        ({"taxonomy": TAXONOMY_PARTIAL}, r"`taxonomy` path \d+ \['Arts', 'Music'\] holds 2 labels, expected 3 .*"
         r"needs `allow_partial_paths=True`"),
        ({"taxonomy": full + full[:1]}, r"is listed twice"),
        ({"taxonomy": [["A"], ["B", "C"]], "allow_partial_paths": True}, r"No `taxonomy` path reaches the last label"),
        ({"taxonomy": [["A", "B", "C", "D"]], "allow_partial_paths": True}, r"holds 4 labels, expected 1 to 3"),
        ({"taxonomy": [["A", "B"], ["A"]], "allow_partial_paths": True, "level_kinds": ["label", "label", "text"]},
         r"`allow_partial_paths=True` needs every level to be a label level"),
        ({"taxonomy": full, "allow_partial_paths": "yes"}, r"`allow_partial_paths` must be True or False"),
    ]  # fmt: skip
    for overrides, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            HdLMConfig(text_config=TEXT_CONFIG, **{**LEVELS, **overrides})


# -- rendering and the label tries --------------------------------------------------------------------------------


def test_candidates_and_endings_are_keyed_by_the_path_above(tokenizer):
    model = partial_model("llama", tokenizer, show_candidates=True)
    renderer = model.get_renderer(tokenizer)
    assert renderer.candidates(2, ["Science", "Physics"]) == ["Classical", "Quantum"]
    assert renderer.candidates(2, ["Arts", "Music"]) == ["Classical", "Jazz"]
    assert renderer.candidates(2, ["Shop", "Games"]) == ["Accessories"]
    assert tokenizer.decode(renderer.header_ids(2, ["Shop", "Books"])) == "leaf (one of: Accessories, Fiction):"
    with pytest.raises(TypeError, match="as a list"):
        renderer.candidates(1, "Arts")
    eos, separator = [tokenizer.eos_token_id], renderer.separator_ids
    # A partial path ends its last level with EOS; a label that is a leaf and a parent has both endings.
    ids, levels = renderer.encode_example("a melody", ["Arts", "Music"])
    assert set(levels) == {0, 1, 2} and [i for i, lv in zip(ids, levels) if lv == 2][-1:] == eos
    trie = model.label_trie()
    music = [ids for label, ids in trie.labels(1, ["Arts"]) if label == "Music"]
    assert sorted(ids[-1:] for ids in music) == sorted([eos, separator])
    assert [ids[-1:] for label, ids in trie.labels(0, []) if label == "Sports"] == [eos]
    assert [ids[-1:] for _, ids in trie.labels(1, ["Science"])] == [separator, separator]  # no leaf at level 2 there
    assert eos[0] in trie.vocabularies[0] and eos[0] in trie.vocabularies[1]  # label heads hold the EOS row
    assert eos[0] in model.level_heads["0"].token_ids.tolist()
    no_flag = tiny_hdlm("llama", tokenizer, taxonomy=[p for p in TAXONOMY_PARTIAL if len(p) == 3])
    with pytest.raises(ValueError, match="Got 2 answers for 3 levels.*allow_partial_paths=True"):
        no_flag.get_renderer(tokenizer).encode_example("a melody", ["Arts", "Music"])


def test_the_constrained_loss_offers_stop_exactly_where_the_taxonomy_has_a_leaf(tokenizer):
    model = partial_model("llama", tokenizer)
    renderer = model.get_renderer(tokenizer)
    rows = [("a melody", ["Arts", "Music"]), ("symphony", ["Arts", "Music", "Classical"]), ("racket", ["Sports"])]
    encoded = [renderer.encode_example(text, path) for text, path in rows]
    length = max(len(ids) for ids, _ in encoded)
    input_ids = torch.tensor([[0] * (length - len(ids)) + ids for ids, _ in encoded])
    level_ids = torch.tensor([[0] * (length - len(lv)) + lv for _, lv in encoded])
    attention_mask = torch.arange(length)[None] >= torch.tensor([length - len(ids) for ids, _ in encoded])[:, None]
    output = model(input_ids=input_ids, attention_mask=attention_mask.long(), level_ids=level_ids)
    assert output.level_token_counts.tolist() == [int((level_ids == d).sum()) for d in (1, 2, 3)]
    assert torch.isfinite(output.loss)
    # At the end of "Music" (row 0: stops, row 1: goes on), the loss normalises over EOS and the separator alone.
    targets, selected = input_ids[:, 1:], level_ids[:, 1:] == 2
    gold = [["Arts"], ["Arts"], []]
    allowed = model.label_trie().allowed_at_targets(1, targets, selected, gold)
    vocabulary = model.label_trie().vocabularies[1]
    counts = selected.sum(1).tolist()
    last_of_row_0, last_of_row_1 = counts[0] - 1, counts[0] + counts[1] - 1
    for index in (last_of_row_0, last_of_row_1):
        assert sorted(vocabulary[c] for c in allowed[index].nonzero().flatten().tolist()) == sorted(
            [tokenizer.eos_token_id, *renderer.separator_ids]
        )
    assert gold == [["Arts", "Music"], ["Arts", "Music"], []]


# -- decoding -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2_untied"])
def test_rows_that_stop_leave_the_batch_and_decoding_stays_exact(family, tokenizer):
    model = partial_model(family, tokenizer)
    prompts = [row["text"] for row in partial_path_rows(10)]
    lengths = set()
    for strategy in ("greedy", "rank"):
        batch = {
            early_exit: model.generate_hierarchical(
                prompts, tokenizer, strategy=strategy, early_exit=early_exit, batch_size=4
            )
            for early_exit in (True, False)
        }
        assert decoded_tokens(batch[True]) == decoded_tokens(batch[False])
        if family != "gemma3_text":  # a sliding window counts padded cache slots (see test_modeling)
            singles = [model.generate_hierarchical(prompt, tokenizer, strategy=strategy)[0] for prompt in prompts]
            assert decoded_tokens(batch[True]) == decoded_tokens(singles)
        for output, full_depth in zip(batch[True], batch[False]):
            assert tuple(output.path) in VALID
            assert [level.label for level in output.levels] == output.path
            for level, level_full_depth in zip(output.levels, full_depth.levels):
                assert level.score == pytest.approx(level_full_depth.score, abs=1e-9)
            lengths.add(len(output.path))
    assert len(lengths) > 1  # rows stopped early while others went on
    assert all(0 < output.probability <= 1 for output in batch[True])
    with pytest.raises(ValueError, match="`top_k_paths` does not rank paths that stop early"):
        model.generate_hierarchical(prompts[:1], tokenizer, top_k_paths=2)


# -- the target: a taxonomy with repeated names and 20 % partial paths trains and decodes with 0 % invalid paths ----


@pytest.fixture(scope="module")
def partial_task(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("partial")
    tiny_base("llama", tokenizer).to(torch.float32).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    rows = partial_path_rows(100)
    return {"root": root, "base": str(root / "base"), "train": write_jsonl(root / "train.jsonl", rows), "rows": rows}


def partial_args(task, output_dir, *extra) -> list[str]:
    return [
        "--model_name_or_path", task["base"], "--train_file", task["train"], "--output_dir", str(output_dir),
        "--level_names", "topic", "subtopic", "leaf",
        "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false", "--per_device_train_batch_size", "10",
        "--learning_rate", "3e-3", "--lr_scheduler_type", "constant", "--report_to", "none", "--save_strategy", "no",
        "--logging_steps", "5", "--seed", "0", *extra,
    ]  # fmt: skip


def test_short_rows_without_the_flag_are_the_wrong_depth_error(partial_task, tmp_path):
    result = run_script(partial_args(partial_task, tmp_path / "out", "--max_steps", "1"))
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert "expected 3 levels (as on line 1), got 2" in result.stderr
    assert "allow_partial_paths=True if paths may stop early" in result.stderr


def test_a_taxonomy_with_repeated_names_and_partial_paths_trains_and_decodes_only_its_paths(partial_task, tmp_path):
    output_dir = tmp_path / "out"
    result = run_script(
        partial_args(partial_task, output_dir, "--num_train_epochs", "12", "--allow_partial_paths", "true")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["allow_partial_paths"] is True and config["taxonomy"] == TAXONOMY_PARTIAL
    test_rows = partial_path_rows(60, seed=1)
    model = AutoModel.from_pretrained(output_dir, trust_remote_code=True)
    texts, references = [row["text"] for row in test_rows], [row["labels"] for row in test_rows]
    for strategy in ("greedy", "rank"):
        paths = [output.path for output in model.generate_hierarchical(texts, strategy=strategy, batch_size=16)]
        invalid = [path for path in paths if tuple(path) not in VALID]
        assert not invalid, (strategy, invalid)  # 0 % invalid paths
        correct = [path == reference for path, reference in zip(paths, references)]
        partial = [ok for ok, reference in zip(correct, references) if len(reference) < 3]
        accuracy, partial_accuracy = sum(correct) / len(correct), sum(partial) / len(partial)
        print(f"{strategy}: path accuracy {accuracy:.3f}, on partial rows {partial_accuracy:.3f}")
        assert partial_accuracy >= 0.9, strategy  # the model learnt where to stop
