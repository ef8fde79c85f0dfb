"""Every YAML recipe parses with `train_hdlm.py`'s own parser, and carries the settings it claims (no model loaded)."""

from pathlib import Path

import pytest
import yaml
from transformers.utils import is_torch_bf16_gpu_available

import train_hdlm
from hdlm.hardware import bf16_supported
from hdlm.training import HdLMSFTConfig
from hdlm.training.setup import default_level_layers

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Per recipe: the values it must parse to (as the authors' scripts for the paper's settings).
EXPECTED = {
    "default.yaml": dict(
        model_name_or_path="builtin:gemma-3-270m",
        train_file="data/dbpedia/train.jsonl",
        test_file="data/dbpedia/test.jsonl",
        level_names=["category", "subcategory", "type"],
        level_layers=None,  # the default rule: [12, 15, 18] on Gemma 3 270M
        level_loss_weights=[3.0, 2.0, 1.0],
        label_head_vocabulary="labels",
        label_loss="constrained",
        train_level_heads=True,
        freeze_below_layer=7,
        use_cpu=True,
        bf16=bf16_supported("cpu"),  # unset in the file: bf16 autocast where the CPU has bf16 units
        use_peft=False,
        max_steps=270,
        learning_rate=1e-4,
        output_dir="outputs/gemma-3-270m-dbpedia-hdlm",
    ),
    "dbpedia_cpu_30min.yaml": dict(
        model_name_or_path="builtin:gemma-3-270m",
        train_file="data/dbpedia/train.jsonl",
        level_names=["category", "subcategory", "type"],
        label_head_vocabulary="labels",
        label_loss="constrained",
        train_level_heads=True,
        bf16=bf16_supported("cpu"),
        max_steps=650,
        learning_rate=1e-4,
        output_dir="outputs/gemma-3-270m-dbpedia-30min",
    ),
    "20newsgroups_cpu_30min.yaml": dict(
        model_name_or_path="builtin:gemma-3-270m",
        train_file="outputs/data/20newsgroups/train.jsonl",
        eval_file="outputs/data/20newsgroups/dev.jsonl",
        max_test_samples=500,
        level_names=["topic", "newsgroup"],
        level_kinds=["label", "label"],
        label_loss="constrained",
        bf16=bf16_supported("cpu"),
        max_steps=650,
        eval_decoding=True,
        eval_loss=False,
        output_dir="outputs/gemma-3-270m-20newsgroups-30min",
    ),
    "wos_cpu_30min.yaml": dict(
        train_file="outputs/data/wos/train.jsonl",
        eval_file="outputs/data/wos/dev.jsonl",
        test_file="outputs/data/wos/test.jsonl",
        level_names=["domain", "area"],
        label_head_vocabulary="labels",
        label_loss="constrained",
        bf16=bf16_supported("cpu"),
        max_steps=195,
        eval_steps=65,
        output_dir="outputs/gemma-3-270m-wos-30min",
    ),
    "wos_llama3_8b.yaml": dict(
        model_name_or_path="meta-llama/Meta-Llama-3-8B-Instruct",
        level_names=["domain", "area"],
        level_layers=[25, 32],
        level_loss_weights=[2.0, 1.0],
        learning_rate=5e-6,
        num_train_epochs=4,
        bf16=True,
        use_peft=False,
        apply_final_norm=True,
        show_candidates=False,
        label_head_vocabulary="full",  # the authors' heads and loss
        label_loss="full",
    ),
    "dbpedia_llama3_8b.yaml": dict(
        model_name_or_path="meta-llama/Meta-Llama-3-8B-Instruct",
        level_names=["category", "subcategory", "type"],
        level_layers=[20, 30, 32],
        level_loss_weights=[3.0, 2.0, 1.0],
        learning_rate=5e-7,
        bf16=True,
        use_peft=False,
        label_head_vocabulary="full",
        label_loss="full",
    ),
    "esconv_gemma_270m.yaml": dict(
        model_name_or_path="builtin:gemma-3-270m",
        level_names=["strategy", "reply"],
        level_kinds=["label", "text"],
        level_layers=[14, 18],
        level_loss_weights=[1.0, 3.0],
        max_query_tokens=128,
        query_truncation_side="left",
        max_length=256,
        use_cpu=True,
        train_level_heads=False,  # the strategy level reads the final head: what was measured
        label_loss="full",
        output_dir="outputs/gemma-3-270m-esconv-hdlm",
    ),
    "esconv_label_text.yaml": dict(
        model_name_or_path="meta-llama/Meta-Llama-3-8B-Instruct",
        level_names=["strategy", "reply"],
        level_kinds=["label", "text"],
        level_layers=[20, 32],
        level_loss_weights=[1.0, 3.0],
        learning_rate=1e-6,
        bf16=True,
        label_head_vocabulary="full",
        label_loss="full",
    ),
}


def parse(path: Path, *extra: str):
    return train_hdlm.make_parser().parse_args_and_config(args=["--config", str(path), *extra])


def test_every_recipe_is_checked() -> None:
    assert sorted(path.name for path in RECIPES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_parses_to_its_settings(name: str) -> None:
    path = RECIPES / name
    raw = yaml.safe_load(path.read_text())
    # bf16 needs a GPU that supports it unless `use_cpu`: a GPU recipe is parsed here as it would be there, with
    # `--use_cpu true` added on a machine without one (the only change; every other value comes from the file).
    gpu_recipe = raw.get("bf16") is True and not raw.get("use_cpu")
    extra = ["--use_cpu", "true"] if gpu_recipe and not is_torch_bf16_gpu_available() else []
    script_args, training_args, model_args, hdlm_args = parse(path, *extra)
    assert isinstance(training_args, HdLMSFTConfig)
    parsed = {**vars(script_args), **vars(model_args), **vars(hdlm_args), **vars(training_args)}
    for key, value in EXPECTED[name].items():
        assert parsed[key] == pytest.approx(value) if isinstance(value, float) else parsed[key] == value, key
    # Every key of the file reached a dataclass field with its value (TrlParser rejects unknown keys).
    for key, value in raw.items():
        if key == "use_cpu" and extra:
            continue
        got = parsed[key]
        if hasattr(got, "value"):  # enums (lr_scheduler_type, save_strategy, ...)
            got = got.value
        if key == "report_to":
            got = "none" if got in ([], ["none"], "none") else got
        assert got == value or str(got) == str(value), (key, got, value)


def test_recipe_levels_are_consistent() -> None:
    """level_layers ends at the base's last layer and has one entry per level name, weight and kind."""
    num_layers = {"builtin:gemma-3-270m": 18, "meta-llama/Meta-Llama-3-8B-Instruct": 32}
    for name in EXPECTED:
        raw = yaml.safe_load((RECIPES / name).read_text())
        levels, layers = len(raw["level_names"]), num_layers[raw["model_name_or_path"]]
        level_layers = raw.get("level_layers") or default_level_layers(layers, levels)
        assert level_layers[-1] == layers and level_layers == sorted(set(level_layers)), name
        assert len(level_layers) == levels, name
        for key in ("level_loss_weights", "level_kinds"):
            assert len(raw[key]) == levels, (name, key)


def test_command_line_overrides_a_recipe() -> None:
    _, training_args, _, hdlm_args = parse(
        RECIPES / "default.yaml", "--max_steps", "2", "--level_layers", "10", "14", "18"
    )
    assert training_args.max_steps == 2
    assert hdlm_args.level_layers == [10, 14, 18]
