"""Training with `train_hdlm.py`: rendering into levels, real training runs (label paths, and a label then free text),
data parallelism, resuming, bad data."""

import json
import re
import signal
import subprocess
import sys

import pytest
import torch
from conftest import (
    FILLER,
    REPO_ROOT,
    STRATEGIES,
    TAXONOMY_2,
    free_port,
    label_text_rows,
    run_offline,
    synthetic_rows,
    tiny_base,
    tiny_hdlm,
    train_args,
    write_jsonl,
)
from datasets import Dataset
from test_modeling import decoded_tokens
from transformers import AutoTokenizer

from hdlm.data import HierarchicalDataError
from hdlm.training import (
    DataCollatorForHierarchicalLM,
    HdLMSFTConfig,
    HdLMSFTTrainer,
    default_level_layers,
    resolve_resume_checkpoint,
    tokenize_hierarchical,
)
from hdlm.training.preprocessing import QUERY_TOKEN_MARGIN
from modeling_hdlm import HdLMForCausalLM
from train_hdlm import main, make_parser


@pytest.fixture(scope="module")
def task(tmp_path_factory, tokenizer):
    """A tiny random Llama saved as a base checkpoint, and a synthetic 2-level task."""
    root = tmp_path_factory.mktemp("task")
    base = tiny_base("llama", tokenizer).to(torch.float32)
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    return {
        "root": root,
        "base": str(root / "base"),
        "train": write_jsonl(root / "train.jsonl", synthetic_rows(96)),
        "rows": synthetic_rows(96),
    }


def run_script(args, *, launcher=(sys.executable,), env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python [launcher] train_hdlm.py args` in a new, offline process."""
    return run_offline([*launcher, str(REPO_ROOT / "train_hdlm.py"), *args], env=env, timeout=timeout)


def path_accuracy(output_dir, rows) -> float:
    model = HdLMForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir, trust_remote_code=True)
    outputs = model.generate_hierarchical([row["text"] for row in rows], tokenizer, batch_size=32)
    return sum(output.path == row["labels"] for output, row in zip(outputs, rows)) / len(rows)


# -- rendering and collation --------------------------------------------------------------------------------------


def test_every_level_token_carries_its_level_id(tokenizer):
    model = tiny_hdlm("llama", tokenizer)
    renderer = model.get_renderer(tokenizer)
    dataset = Dataset.from_list(synthetic_rows(4))
    tokenized = tokenize_hierarchical(dataset, renderer)
    for example, row in zip(tokenized, dataset):
        ids, levels, labels = example["input_ids"], example["level_ids"], example["labels"]
        prompt = renderer.prompt_ids(row["text"])
        assert ids[: len(prompt)] == prompt and set(levels[: len(prompt)]) == {0}
        for level, answer in enumerate(row["labels"]):
            # A level is its answer and its end marker; the header before it carries 0.
            assert [i for i, lv in zip(ids, levels) if lv == level + 1] == renderer.answer_ids(level, answer)
        headers = [i for i, lv in zip(ids[len(prompt) :], levels[len(prompt) :]) if lv == 0]
        assert headers == renderer.header_ids(0) + renderer.header_ids(1, row["labels"][:1])
        assert labels == [i if lv else -100 for i, lv in zip(ids, levels)]

    batch = DataCollatorForHierarchicalLM(tokenizer.pad_token_id)([tokenized[0], tokenized[1]])
    shorter = 0 if len(tokenized[0]["input_ids"]) < len(tokenized[1]["input_ids"]) else 1
    padding = batch["attention_mask"][shorter] == 0
    assert padding.any()
    assert (batch["level_ids"][shorter][padding] == 0).all()
    assert (batch["labels"][shorter][padding] == -100).all()
    assert (batch["input_ids"][shorter][padding] == tokenizer.pad_token_id).all()


def test_training_rendering_equals_generation_rendering(tokenizer):
    model = tiny_hdlm("gpt2_untied", tokenizer, max_query_tokens=5)
    renderer = model.get_renderer(tokenizer)
    row = synthetic_rows(1)[0]
    output = model.generate_hierarchical(row["text"], tokenizer)[0]
    tokenized = tokenize_hierarchical(Dataset.from_list([{**row, "labels": output.path}]), renderer)[0]
    generated = renderer.prompt_ids(row["text"])
    for level, decoded in enumerate(output.levels):
        generated += renderer.header_ids(level, output.path[:level]) + decoded.token_ids
    assert tokenized["input_ids"] == generated
    # The query was truncated to `max_query_tokens`, identically on both sides.
    assert renderer.truncate_query(row["text"])[1]


@pytest.mark.parametrize("side", ["right", "left"])
def test_query_truncation_side_keeps_the_start_or_the_end(side, tokenizer):
    model = tiny_hdlm("llama", tokenizer, max_query_tokens=4, query_truncation_side=side)
    renderer = model.get_renderer(tokenizer)
    words = "one two three four five six seven eight nine ten"
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    truncated, cut = renderer.truncate_query(words)
    assert cut and tokenizer(truncated, add_special_tokens=False)["input_ids"] == (
        ids[:4] if side == "right" else ids[-4:]
    )
    short = tokenizer.decode(ids[:4])
    assert renderer.truncate_query(short) == (short, False)


def test_long_answers_cut_their_query_further_in_training_only(tokenizer, caplog):
    """An explicit query budget holds for inference; a training example whose answers leave less room gets less."""
    model = tiny_hdlm("llama", tokenizer, [["Science"]], kinds=["label", "text"], max_query_tokens=12)
    renderer = model.get_renderer(tokenizer)
    query = " ".join(FILLER * 3)
    short, long = ["Science", "ok"], ["Science", "the quick brown fox jumps"]
    fixed_short, fixed_long = (len(renderer.encode_example("", answers)[0]) for answers in (short, long))
    assert 0 < fixed_long - fixed_short < 12  # the long answers leave room for some query, less than the budget
    max_length = fixed_short + 12 + QUERY_TOKEN_MARGIN
    rows = [{"text": query, "labels": short}] * 2 + [{"text": query, "labels": long}]
    tokenized = tokenize_hierarchical(Dataset.from_list(rows), renderer, max_length)
    lengths = [len(example["input_ids"]) for example in tokenized]
    assert max(lengths) <= max_length
    # The short-answer rows are rendered exactly as inference renders them; the long-answer row has a shorter query.
    assert tokenized[0]["input_ids"] == renderer.encode_example(query, short)[0]
    assert renderer.truncate_query(query)[1]
    assert len(tokenized[2]["input_ids"]) - fixed_long < len(tokenized[0]["input_ids"]) - fixed_short
    assert "1 of them have answers too long" in caplog.text
    # Answers that cannot fit at all are an error naming the example and the fix.
    with pytest.raises(ValueError, match=r"Example 1: .* raise `max_length`"):
        tokenize_hierarchical(Dataset.from_list([{"text": query, "labels": long}]), renderer, 8)


def test_labels_outside_the_taxonomy_carry_no_loss_from_there_on(tokenizer, caplog):
    """An eval example with a label unseen in training: the levels from that label on are not scored (the label
    heads and the constrained loss know the taxonomy's labels only); the loss of the levels above stays."""
    model = tiny_hdlm("llama", tokenizer)
    rows = [
        {"text": "a", "labels": ["Science", "Physics"]},
        {"text": "b", "labels": ["Science", "Astronomy"]},
        {"text": "c", "labels": ["Geography", "Physics"]},
    ]
    tokenized = tokenize_hierarchical(Dataset.from_list(rows), model.get_renderer(tokenizer), keep_examples=True)
    assert [sorted(set(example["level_ids"])) for example in tokenized] == [[0, 1, 2], [0, 1], [0]]
    for example in tokenized:
        assert example["labels"] == [t if lv else -100 for t, lv in zip(example["input_ids"], example["level_ids"])]
    assert "2 of 3 examples have a label path outside the model's taxonomy" in caplog.text
    assert tokenized["path"] == [row["labels"] for row in rows] and tokenized["text"] == ["a", "b", "c"]
    batch = DataCollatorForHierarchicalLM(tokenizer.pad_token_id)(list(tokenized))
    model(**{key: batch[key] for key in ("input_ids", "attention_mask", "labels", "level_ids")}).loss.backward()


def test_default_level_layers_rule():
    assert default_level_layers(32, 2) == [24, 32]
    assert default_level_layers(32, 3) == [21, 27, 32]
    assert default_level_layers(18, 3) == [12, 15, 18]
    assert default_level_layers(18, 1) == [18]
    # Small bases: rounding alone would give [3, 3, 4], which the config rejects as not increasing.
    assert default_level_layers(4, 3) == [2, 3, 4]
    assert default_level_layers(3, 3) == [1, 2, 3]
    for num_layers in range(1, 41):
        for num_levels in range(1, num_layers + 1):
            layers = default_level_layers(num_layers, num_levels)
            assert len(layers) == num_levels and layers[-1] == num_layers
            assert all(1 <= a < b for a, b in zip(layers, layers[1:])), (num_layers, num_levels, layers)
    with pytest.raises(ValueError, match=r"3 levels need 3 distinct decoder layers, and the base model has 2"):
        default_level_layers(2, 3)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--level_names", "topic", "subtopic"], r"`--level_names` gives 2 \(topic subtopic\)"),
        (["--level_names", "a", "b", "c", "--level_layers", "2", "4"], r"`--level_layers` gives 2 \(2 4\)"),
        (["--level_names", "a", "b", "c", "--level_loss_weights", "1", "1"], r"`--level_loss_weights` gives 2"),
    ],
)
def test_level_arguments_that_disagree_with_the_data_are_named(flags, match, task, tmp_path):
    """3-level rows with 2 level names: the error names `--level_names`, not a `level_kinds` never passed."""
    rows = [{"text": row["text"], "labels": [*row["labels"], row["labels"][1] + " leaf"]} for row in task["rows"]]
    output_dir = tmp_path / "out"
    args = train_args(task, output_dir, "--train_file", write_jsonl(tmp_path / "three.jsonl", rows), *flags)
    with pytest.raises(ValueError, match=rf"three\.jsonl has 3 levels per row, but {match}.*give one per level"):
        main(*make_parser().parse_args_and_config(args=args))
    assert not output_dir.exists()


def test_resume_true_picks_the_last_complete_checkpoint(tmp_path, caplog):
    state = json.dumps({"global_step": 5, "log_history": []})
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-10").mkdir()  # killed while saving the model: only the remote code was copied
    for name in ("configuration_hdlm.py", "modeling_hdlm.py"):
        (tmp_path / "checkpoint-10" / name).write_text("")
    (tmp_path / "checkpoint-15").mkdir()  # killed while writing the trainer state
    (tmp_path / "checkpoint-15" / "trainer_state.json").write_text(state[:10])
    (tmp_path / "checkpoint-final").mkdir()
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint("true", tmp_path) == str(tmp_path / "checkpoint-5")
    assert "checkpoint-15: its trainer_state.json does not parse" in caplog.text
    assert "checkpoint-10: it has no trainer_state.json" in caplog.text and "modeling_hdlm.py" in caplog.text
    assert resolve_resume_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-5")
    assert resolve_resume_checkpoint("False", tmp_path) is None and resolve_resume_checkpoint(None, tmp_path) is None
    assert resolve_resume_checkpoint(str(tmp_path / "checkpoint-5"), tmp_path) == str(tmp_path / "checkpoint-5")
    with pytest.raises(ValueError, match=r"checkpoint-10` cannot be resumed from: it has no trainer_state\.json"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-10"), tmp_path)
    with pytest.raises(ValueError, match=r"no such folder.*or `true` for the last complete checkpoint"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-99"), tmp_path)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint("true", tmp_path / "new") is None
    assert "holds no complete checkpoint yet; training starts from the beginning" in caplog.text


# -- bad data ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_row, match",
    [
        ({"text": "x", "labels": ["Science"]}, "expected 2 levels"),
        ({"text": "x", "labels": ["Science", " "]}, "empty label"),
        ({"text": "x", "labels": ["Science", 3]}, "must be a string"),
        ({"id": "ex-0", "text": "x", "labels": ["Sports", "Physics"]}, "duplicate id"),  # a new path: not an error
    ],
)
def test_bad_data_stops_before_anything_is_written(bad_row, match, task, tmp_path):
    rows = synthetic_rows(6) + [bad_row]
    train_file = write_jsonl(tmp_path / "bad.jsonl", rows)
    output_dir = tmp_path / "out"
    args = train_args(task, output_dir)
    args[args.index("--train_file") + 1] = train_file
    with pytest.raises(HierarchicalDataError, match=rf"bad\.jsonl, line {len(rows)}.*{match}"):
        main(*make_parser().parse_args_and_config(args=args))
    assert not output_dir.exists()


# -- the trainer's loss bookkeeping ------------------------------------------------------------------------------


def test_level_losses_are_logged_as_token_means_over_the_logging_window(tokenizer, tmp_path):
    """Two optimizer steps of 2 micro-batches of 3 raw rows, logged once (`logging_steps=2`): `loss_<level>` is the
    mean over all of the window's tokens of that level, computed here from each row alone, not a mean of
    micro-batch means (the rows hold different numbers of tokens). Learning rate 0 keeps the model fixed, and the
    window holds the whole epoch, so the order the rows are drawn in does not matter."""
    model = tiny_hdlm("llama", tokenizer)
    args = HdLMSFTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        per_device_train_batch_size=3, gradient_accumulation_steps=2, learning_rate=0.0, max_steps=2,
        logging_steps=2, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = HdLMSFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(synthetic_rows(12)), processing_class=tokenizer
    )
    assert model.config.max_query_tokens is not None  # fitted to `max_length` from the raw rows
    trainer.train()
    [logs] = [entry for entry in trainer.state.log_history if "loss_topic" in entry]

    rows = [
        {key: torch.tensor([row[key]]) for key in ("input_ids", "labels", "level_ids")}
        for row in trainer.train_dataset
    ]
    with torch.no_grad():
        outputs = [model.eval()(**row) for row in rows]
    sums = sum(output.level_loss_sums for output in outputs)
    counts = sum(output.level_token_counts for output in outputs)
    row_means = torch.stack([output.level_losses for output in outputs]).mean(0)
    for level, name in enumerate(["topic", "subtopic"]):
        token_mean = (sums[level] / counts[level]).item()
        assert logs[f"loss_{name}"] == pytest.approx(token_mean, rel=1e-9), name
        assert abs(row_means[level].item() - token_mean) > 1e-6, name  # the two means differ on these rows
    assert logs["num_tokens"] == sum(row["input_ids"].numel() for row in rows)


# -- real training runs -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode_args",
    [
        ["--mode", "hdlm", "--level_layers", "2", "4"],
        ["--mode", "sft_at_k"],
        ["--mode", "hdlm", "--level_layers", "2", "4", "--use_peft", "--lora_r", "16", "--lora_alpha", "32",
         "--lora_target_modules", "q_proj", "v_proj", "--lora_modules_to_save", "lm_head",
         "--learning_rate", "1e-2", "--lr_scheduler_type", "linear"],  # decayed: lr 1e-2 is noisy to the end
    ],
    ids=["hdlm", "sft_at_k", "hdlm_lora"],
)  # fmt: skip
def test_training_reaches_full_path_accuracy(mode_args, task, tmp_path):
    output_dir = tmp_path / "out"
    result = run_script(train_args(task, output_dir, "--num_train_epochs", "15", *mode_args))
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["level_layers"] == ([4, 4] if "sft_at_k" in mode_args else [2, 4])
    assert config["taxonomy"] == sorted(TAXONOMY_2)
    assert not (output_dir / "adapter_config.json").exists()  # LoRA merged: a plain HdLM checkpoint
    assert path_accuracy(output_dir, task["rows"]) == 1.0


def logged(output_dir, key: str) -> list[tuple[int, float]]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [(entry["step"], entry[key]) for entry in state["log_history"] if key in entry]


LEVEL_LOSSES = ("loss", "loss_topic", "loss_subtopic")


def losses(output_dir) -> dict[str, list[tuple[int, float]]]:
    """The logged total and per-level training losses, step by step."""
    return {key: logged(output_dir, key) for key in LEVEL_LOSSES}


def assert_same_losses(run, reference, rel: float = 1e-4) -> None:
    for key in LEVEL_LOSSES:
        assert [step for step, _ in run[key]] == [step for step, _ in reference[key]], key
        assert [value for _, value in run[key]] == pytest.approx([value for _, value in reference[key]], rel=rel), key


REPORTING_CHECKPOINTING = """
import runpy, sys
from transformers import Trainer

training_step = Trainer.training_step
reported = []


def reporting(self, model, *args, **kwargs):  # what the decoder layers run with in the first training step
    if not reported:
        layers = self.accelerator.unwrap_model(model).decoder_layers
        print(f"CHECKPOINTED_LAYERS={sum(layer.gradient_checkpointing for layer in layers)}")
        reported.append(True)
    return training_step(self, model, *args, **kwargs)


Trainer.training_step = reporting
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def checkpointed_layers(args) -> int:
    """Run `train_hdlm.py args`; how many of the trained model's decoder layers had gradient checkpointing on.
    (transformers 5 checkpoints a layer's `forward`, not its `__call__`, so module hooks cannot count the
    recomputations.)"""
    result = run_script(args, launcher=(sys.executable, "-c", REPORTING_CHECKPOINTING))
    assert result.returncode == 0, result.stderr[-3000:]
    [count] = [int(line.split("=")[1]) for line in result.stdout.splitlines() if line.startswith("CHECKPOINTED_")]
    return count


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode_args", [["--mode", "hdlm", "--level_layers", "2", "4"], ["--mode", "sft_at_k"]], ids=["hdlm", "sft_at_k"]
)
def test_gradient_checkpointing_logs_the_losses_of_a_run_without_it(mode_args, task, tmp_path):
    """TRL's default, `--gradient_checkpointing true`: the decoder layers are recomputed in the backward pass (the
    layer outputs the level heads read are captured by hooks, and must survive the recomputation), and training
    logs the same total and per-level losses as without it."""
    runs, layers = {}, {}
    for checkpointing in ("true", "false"):
        output_dir = tmp_path / checkpointing
        args = train_args(task, output_dir, "--max_steps", "6", *mode_args, "--gradient_checkpointing", checkpointing)
        layers[checkpointing] = checkpointed_layers(args)
        runs[checkpointing] = losses(output_dir)
    assert layers == {"true": 4, "false": 0}  # every decoder layer of the tiny base, or none
    assert len(runs["true"]["loss_subtopic"]) == 6
    assert_same_losses(runs["true"], runs["false"])


@pytest.mark.slow
def test_gradient_accumulation_logs_the_losses_of_one_large_batch(task, tmp_path):
    """Two micro-batches of 4 rows accumulated give the steps of one batch of 8: the same total loss and the same
    per-level losses, each a mean over all of the step's tokens of that level (micro-batches hold different numbers
    of them, so a mean of the micro-batches' means would differ)."""
    runs = {}
    for name, batch in (("accumulated", ["4", "--gradient_accumulation_steps", "2"]), ("large", ["8"])):
        output_dir = tmp_path / name
        args = train_args(task, output_dir, "--max_steps", "6", "--level_layers", "2", "4",
                          "--per_device_train_batch_size", *batch)  # fmt: skip
        result = run_script(args)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = losses(output_dir)
    assert len(runs["large"]["loss_topic"]) == 6
    assert_same_losses(runs["accumulated"], runs["large"])


def two_ranks(*options: str) -> tuple[str, ...]:
    """torch.distributed.run starting 2 ranks here, their rendezvous on a free port."""
    return (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            *options)  # fmt: skip


@pytest.mark.slow
def test_two_process_data_parallel_training(task, tmp_path):
    single_dir, parallel_dir = tmp_path / "single", tmp_path / "parallel"
    extra = ["--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--save_strategy", "steps",
             "--save_steps", "1000"]  # fmt: skip
    parallel = run_script(
        train_args(task, parallel_dir, *extra),
        launcher=two_ranks(),
        env={"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    single = run_script(train_args(task, single_dir, *extra, "--per_device_train_batch_size", "8"))
    assert single.returncode == 0, single.stderr[-3000:]
    # Both ranks took part: each step is over both ranks' batches of 4, as one process's batches of 8 (the same rows,
    # the same tokens gathered from both ranks, the same total and per-level losses).
    assert logged(single_dir, "loss")[-1][0] == logged(parallel_dir, "loss")[-1][0] == 96 // 8
    total_tokens = logged(single_dir, "num_tokens")[-1][1]
    assert logged(parallel_dir, "num_tokens")[-1][1] == total_tokens
    assert_same_losses(losses(parallel_dir), losses(single_dir))
    model = HdLMForCausalLM.from_pretrained(parallel_dir)
    assert model.config.taxonomy == sorted(TAXONOMY_2)


FSDP2_ON_CPUS = """
import runpy, sys
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from torch.distributed.tensor import DTensor
from transformers import Trainer

init, train = AcceleratorState.__init__, Trainer.train


def sharding_on_cpus(self, *args, fsdp_plugin=None, **kwargs):  # accelerate selects FSDP on accelerators only
    init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = PartialState().distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin


def reporting(self, *args, **kwargs):  # how many of the trained model's parameters are shards
    output = train(self, *args, **kwargs)
    sharded = sum(isinstance(parameter, DTensor) for parameter in self.model.parameters())
    sys.stdout.write(f"SHARDED={[sharded, len(list(self.model.parameters()))]}\\n")  # one write: ranks interleave
    sys.stdout.flush()
    return output


AcceleratorState.__init__, Trainer.train = sharding_on_cpus, reporting
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
FSDP2_ENV = {  # what `accelerate launch --config_file accelerate_configs/fsdp2.yaml` sets
    "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT", "FSDP_RESHARD_AFTER_FORWARD": "true",
}  # fmt: skip
REMOTE_LEVEL_LOSSES = """
import json, sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
batch = {key: torch.tensor(value) for key, value in json.loads(sys.argv[2]).items()}
print(json.dumps(model(**batch).level_losses.tolist()))
"""


@pytest.mark.slow
def test_fsdp2_on_two_cpu_processes_saves_the_gathered_model(task, tokenizer, tmp_path):
    """FSDP2 (`fully_shard`, every decoder layer its own unit) on 2 gloo processes: accelerate selects FSDP on
    accelerators only (on CPUs `HdLMSFTTrainer` stops), so the launcher lets it shard CPU processes. The
    sharded run logs the losses of one process's batches of 8, and `save_hdlm_model` writes the gathered weights as
    a plain HdLM checkpoint (not torch's FSDP class as its remote code) that loads in a fresh process."""
    fsdp_dir, single_dir = tmp_path / "fsdp", tmp_path / "single"
    extra = ["--max_steps", "6", "--level_layers", "2", "4", "--per_device_train_batch_size"]
    sharded = run_script(
        train_args(task, fsdp_dir, *extra, "4"),
        launcher=two_ranks("--no-python", sys.executable, "-c", FSDP2_ON_CPUS),
        env={"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", **FSDP2_ENV},
    )  # fmt: skip
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    counts = [json.loads(found) for found in re.findall(r"SHARDED=(\[\d+, \d+\])", sharded.stdout)]
    assert len(counts) == 2 and all(shards == total > 0 for shards, total in counts)
    single = run_script(train_args(task, single_dir, *extra, "8"))
    assert single.returncode == 0, single.stderr[-3000:]
    assert_same_losses(losses(fsdp_dir), losses(single_dir))

    files = {path.name for path in fsdp_dir.iterdir()}
    assert {"modeling_hdlm.py", "taxonomy_hdlm.py", "model.safetensors", "tokenizer.json"} <= files
    assert not any(name.startswith("_fsdp") for name in files) and "gathered" not in files
    config = json.loads((fsdp_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hdlm.HdLMForCausalLM"
    reference = HdLMForCausalLM.from_pretrained(single_dir)
    tokenized = tokenize_hierarchical(Dataset.from_list(task["rows"][:8]), reference.get_renderer(tokenizer))
    batch = DataCollatorForHierarchicalLM(tokenizer.pad_token_id)(list(tokenized))
    remote = run_offline(
        [sys.executable, "-c", REMOTE_LEVEL_LOSSES, str(fsdp_dir),
         json.dumps({key: batch[key].tolist() for key in ("input_ids", "attention_mask", "labels", "level_ids")})],
        cwd=tmp_path, env={"PYTHONPATH": ""}, timeout=300,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr[-3000:]
    with torch.no_grad():
        expected = reference(**batch).level_losses.tolist()
    assert json.loads(remote.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-4)
    gathered = HdLMForCausalLM.from_pretrained(fsdp_dir).state_dict()
    for name, weight in reference.state_dict().items():
        torch.testing.assert_close(gathered[name], weight, rtol=1e-3, atol=1e-5, msg=name)


KILLED_DURING_A_SAVE = """
import os, runpy, signal, sys
from transformers import Trainer

kill_at, script = int(sys.argv[1]), sys.argv[2]
save_rng_state = Trainer._save_rng_state


def killed_during_the_save(self, output_dir):  # the weights and optimizer state are written, the rest is not
    if self.state.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return save_rng_state(self, output_dir)


Trainer._save_rng_state = killed_during_the_save
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.slow
def test_resume_true_after_a_sigkill_during_a_save_matches_an_uninterrupted_run(task, tmp_path):
    """A SIGKILL in the middle of saving checkpoint-10 leaves it half-written; `--resume_from_checkpoint true` skips
    it with a warning, resumes from checkpoint-5 and logs the losses of a run never interrupted."""
    extra = ["--max_steps", "30", "--save_strategy", "steps", "--save_steps", "5"]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = run_script(train_args(task, reference_dir, *extra))
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed = run_offline(
        [sys.executable, "-c", KILLED_DURING_A_SAVE, "10", str(REPO_ROOT / "train_hdlm.py"),
         *train_args(task, killed_dir, *extra)]
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (killed_dir / "checkpoint-10" / "model.safetensors").exists()
    assert not (killed_dir / "checkpoint-10" / "trainer_state.json").exists()
    assert not (killed_dir / "config.json").exists() and not (killed_dir / "README.md").exists()

    resumed = run_script(train_args(task, killed_dir, *extra, "--resume_from_checkpoint", "true"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Skipping the incomplete checkpoint" in resumed.stderr and "checkpoint-10" in resumed.stderr
    assert f"Resuming from {killed_dir / 'checkpoint-5'}" in resumed.stderr
    resumed_losses = dict(logged(killed_dir, "loss"))
    reference_losses = dict(logged(reference_dir, "loss"))
    assert sorted(resumed_losses) == list(range(1, 31))
    assert [resumed_losses[step] for step in range(6, 31)] == pytest.approx(
        [reference_losses[step] for step in range(6, 31)], rel=1e-4
    )
    assert (killed_dir / "config.json").exists()
    card = (killed_dir / "README.md").read_text()
    assert "fine-tuned version of" not in card and "hdlm" in card  # the HdLM card, not the Trainer's draft


REMOTE_PATHS = """
import json, sys
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
outputs = model.generate_hierarchical(json.loads(sys.argv[2]), tokenizer)
print(json.dumps({"dtype": str(model.dtype), "paths": [output.path for output in outputs]}))
"""


@pytest.fixture(scope="module")
def bf16_run(task, tmp_path_factory):
    """The tiny base trained in bf16 autocast on the CPU, with decoded dev evaluations (a learning curve)."""
    output_dir = tmp_path_factory.mktemp("bf16") / "out"
    dev = write_jsonl(output_dir.parent / "dev.jsonl", synthetic_rows(24, seed=5))
    args = ["--num_train_epochs", "6", "--bf16", "true", "--level_layers", "2", "4", "--eval_file", dev,
            "--eval_strategy", "steps", "--eval_steps", "24",
            "--eval_decoding", "true", "--eval_loss", "false"]  # fmt: skip
    result = run_script(train_args(task, output_dir, *args))
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.mark.slow
def test_a_tiny_model_trains_and_decodes_in_bf16_on_the_cpu(bf16_run, task):
    config = json.loads((bf16_run / "config.json").read_text())
    assert config["dtype"] == "bfloat16"  # trained under bf16 autocast, saved in bf16
    assert config["label_head_vocabulary"] == "labels" and config["label_loss"] == "constrained"
    # fitted on the eval split after training (`--calibrate`, the default), saved with the checkpoint
    assert len(config["level_temperatures"]) == 2 and all(t > 0 for t in config["level_temperatures"])
    model = HdLMForCausalLM.from_pretrained(bf16_run)
    assert model.config.level_temperatures == config["level_temperatures"]
    assert model.dtype == torch.bfloat16 and model.level_heads["0"].weight.shape[0] < 20
    assert path_accuracy(bf16_run, task["rows"]) == 1.0
    curve = logged(bf16_run, "eval_path_accuracy")
    assert [step for step, _ in curve] == [24, 48, 72]
    assert curve[-1][1] == 1.0
    minutes = [minute for _, minute in logged(bf16_run, "train_minutes")]
    assert minutes == sorted(minutes) and minutes[-1] > 0


@pytest.mark.slow
def test_a_trained_label_head_checkpoint_loads_offline_in_a_fresh_process(bf16_run, task):
    """`AutoModel.from_pretrained(..., trust_remote_code=True)` in a new process without a network: the remote code
    (with `taxonomy_hdlm.py`) and the label heads' token ids travel with the checkpoint."""
    texts = [row["text"] for row in task["rows"][:12]]
    result = run_offline(
        [sys.executable, "-c", REMOTE_PATHS, str(bf16_run), json.dumps(texts)],
        cwd=bf16_run.parent,
        env={"PYTHONPATH": ""},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["dtype"] == "torch.bfloat16"
    model = HdLMForCausalLM.from_pretrained(bf16_run)
    tokenizer = AutoTokenizer.from_pretrained(bf16_run, trust_remote_code=True)
    assert remote["paths"] == [output.path for output in model.generate_hierarchical(texts, tokenizer)]
    assert {"taxonomy_hdlm.py", "modeling_hdlm.py", "configuration_hdlm.py"} <= {p.name for p in bf16_run.iterdir()}


# -- classification-guided generation: a label level, then a free-text level ----------------------------------------


@pytest.fixture(scope="module")
def label_text(task, tmp_path_factory):
    """The tiny base trained through `train_hdlm.py --level_kinds label text` until it has learnt the task."""
    root = tmp_path_factory.mktemp("label_text")
    train_rows, test_rows = label_text_rows(48), label_text_rows(12, seed=1)
    output_dir = root / "out"
    overrides = [  # later flags win over those of `train_args`
        "--train_file", write_jsonl(root / "train.jsonl", train_rows),
        "--test_file", write_jsonl(root / "test.jsonl", test_rows),
        "--level_names", "strategy", "reply", "--level_kinds", "label", "text", "--level_layers", "2", "4",
        "--num_train_epochs", "20", "--learning_rate", "1e-2", "--logging_steps", "10",
    ]  # fmt: skip
    result = run_script(train_args(task, output_dir, *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    model = HdLMForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    rows = train_rows + test_rows
    texts = [row["text"] for row in rows]
    return {"output_dir": output_dir, "model": model, "tokenizer": tokenizer, "rows": rows, "texts": texts}


@pytest.mark.slow
def test_label_then_text_task_trains(label_text):
    model, tokenizer, rows = label_text["model"], label_text["tokenizer"], label_text["rows"]
    assert model.config.level_kinds == ["label", "text"]
    assert model.config.taxonomy == [[strategy] for strategy in STRATEGIES]  # the replies are not classes
    outputs = model.generate_hierarchical(label_text["texts"], tokenizer, batch_size=64)
    for output, row in zip(outputs, rows):
        strategy, reply = output.levels
        assert strategy.label in STRATEGIES and not strategy.truncated
        assert output.path == row["labels"], row["text"]  # held-out rows too: the strategy and the reply
        assert reply.token_ids[-1] == tokenizer.eos_token_id and not reply.truncated

    # At the token limit the reply is cut, and says so; the strategy is unaffected.
    cut = model.generate_hierarchical(label_text["texts"], tokenizer, batch_size=64, max_new_tokens=3)
    for short, full in zip(cut, outputs):
        assert short.levels[0].token_ids == full.levels[0].token_ids
        assert short.levels[1].token_ids == full.levels[1].token_ids[:3] and short.levels[1].truncated

    # `train_hdlm.py --test_file` scored the trained model: strategy accuracy / F1 and the reply's text metrics.
    metrics = json.loads((label_text["output_dir"] / "eval" / "metrics.json").read_text())
    assert metrics["level_1_accuracy"] == metrics["level_1_macro_f1"] == 1.0
    assert metrics["level_2_bleu_2"] == pytest.approx(1.0) and metrics["level_2_rouge_l"] == pytest.approx(1.0)
    assert metrics["level_2_empty_rate"] == metrics["level_2_truncated_rate"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("repetition_penalty", [1.0, 1.3])
def test_label_then_text_early_exit_is_exact(label_text, repetition_penalty):
    model, tokenizer = label_text["model"], label_text["tokenizer"]
    outputs = [
        model.generate_hierarchical(
            label_text["texts"], tokenizer, batch_size=64, early_exit=early_exit, repetition_penalty=repetition_penalty
        )
        for early_exit in (True, False)
    ]
    assert decoded_tokens(outputs[0]) == decoded_tokens(outputs[1])
    for with_exit, full_depth in zip(*outputs):
        for level, level_full_depth in zip(with_exit.levels, full_depth.levels):
            assert level.score == pytest.approx(level_full_depth.score, abs=1e-5)


@pytest.mark.slow
def test_label_then_text_sampling_is_seeded(label_text):
    model, tokenizer, texts = label_text["model"], label_text["tokenizer"], label_text["texts"]

    def sample(temperature: float, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        return model.generate_hierarchical(
            texts, tokenizer, batch_size=64, do_sample=True, temperature=temperature, top_p=0.95, generator=generator
        )

    greedy = model.generate_hierarchical(texts, tokenizer, batch_size=64)
    hot = sample(5.0)
    assert decoded_tokens(hot) == decoded_tokens(sample(5.0))
    assert [output.path[1] for output in hot] != [output.path[1] for output in greedy]
    # Sampling is for free text: the strategy stays the constrained best label.
    assert [output.path[0] for output in hot] == [output.path[0] for output in greedy]
    assert decoded_tokens(sample(0.05)) == decoded_tokens(greedy)
