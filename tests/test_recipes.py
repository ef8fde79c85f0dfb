"""Every YAML recipe would run: it parses with `train_hdlm.py`'s own parser, its data exists and has its levels, its
levels and layers make a valid HdLM of its base, and its schedule evaluates the model it ends with (no model
loaded)."""

from pathlib import Path

import pytest
import yaml
from transformers import LlamaConfig
from transformers.utils import is_torch_bf16_gpu_available

import train_hdlm
from configuration_hdlm import HdLMConfig
from hdlm.data import load_hierarchical_dataset
from hdlm.training import HdLMSFTConfig, default_level_layers

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
SHARED = REPO_ROOT.parent / "shared"
# Decoder layers of the bases the recipes name (what `level_layers` and `freeze_below_layer` are checked against).
BASE_LAYERS = {"builtin:gemma-3-270m": 18, "meta-llama/Meta-Llama-3-8B-Instruct": 32}
DATA_FIELDS = ("train_file", "eval_file", "test_file")


def parse(path: Path, *extra: str):
    """The recipe as `train_hdlm.py --config path` parses it. A GPU recipe (`bf16: true` without `use_cpu`) is
    parsed with `--use_cpu true` on a machine without a bf16 GPU, the only value not taken from the file."""
    raw = yaml.safe_load(path.read_text())
    if raw.get("bf16") is True and not raw.get("use_cpu") and not is_torch_bf16_gpu_available():
        extra = ("--use_cpu", "true", *extra)
    return train_hdlm.make_parser().parse_args_and_config(args=["--config", str(path), *extra])


def recipe_ids() -> list[str]:
    return [path.name for path in RECIPES]


def test_recipes_exist_and_write_to_their_own_output_dirs() -> None:
    assert any(path.name == "default.yaml" for path in RECIPES)
    output_dirs = [yaml.safe_load(path.read_text())["output_dir"] for path in RECIPES]
    assert len(set(output_dirs)) == len(output_dirs), output_dirs


@pytest.mark.parametrize("path", RECIPES, ids=recipe_ids())
def test_recipe_parses_and_every_key_reaches_a_field(path: Path) -> None:
    """A key the parser dropped or read differently would be a setting the run silently ignores."""
    script_args, training_args, model_args, hdlm_args = parse(path)
    assert isinstance(training_args, HdLMSFTConfig)
    parsed = {**vars(script_args), **vars(model_args), **vars(hdlm_args), **vars(training_args)}
    for key, value in yaml.safe_load(path.read_text()).items():
        got = parsed[key]
        got = getattr(got, "value", got)  # enums (lr_scheduler_type, save_strategy, ...)
        if key == "report_to":
            got = "none" if got in ([], ["none"], "none") else got
        assert got == value or str(got) == str(value), (key, got, value)


@pytest.mark.parametrize("path", RECIPES, ids=recipe_ids())
def test_recipe_levels_make_a_valid_hdlm_of_its_base(path: Path) -> None:
    """The levels, layers, weights and head options build a valid `HdLMConfig` on a base of the recipe's depth,
    with the layers `train_hdlm.py` would choose; the frozen layers and the query budget leave something to train
    and room for the answers."""
    script_args, training_args, model_args, hdlm_args = parse(path)
    num_layers = BASE_LAYERS[model_args.model_name_or_path]
    num_levels = len(script_args.level_names)
    level_layers = hdlm_args.level_layers or default_level_layers(num_layers, num_levels)
    if hdlm_args.mode == "sft_at_k":
        level_layers = [num_layers] * num_levels
    options = ("level_loss_weights", "head_init", "label_head_vocabulary", "label_loss", "max_query_tokens")
    config = HdLMConfig(
        text_config=LlamaConfig(
            num_hidden_layers=num_layers, hidden_size=8, intermediate_size=8, num_attention_heads=1
        ),
        level_layers=level_layers,
        level_names=script_args.level_names,
        level_kinds=script_args.level_kinds,
        query_truncation_side=hdlm_args.query_truncation_side,
        **{name: getattr(hdlm_args, name) for name in options},
    )
    assert config.num_levels == num_levels
    if training_args.freeze_below_layer is not None:
        assert 1 <= training_args.freeze_below_layer <= level_layers[0], "every level's head reads a trained layer"
    if hdlm_args.max_query_tokens is not None:
        assert hdlm_args.max_query_tokens < training_args.max_length


@pytest.mark.parametrize("path", RECIPES, ids=recipe_ids())
def test_recipe_schedule_evaluates_the_final_model(path: Path) -> None:
    """With step-wise evaluation or saving, the last step is one of them: the learning curve ends at the model
    that is saved and scored."""
    _, training_args, _, _ = parse(path)
    if training_args.max_steps > 0:
        assert training_args.logging_steps <= training_args.max_steps
        for strategy, steps in (("eval_strategy", "eval_steps"), ("save_strategy", "save_steps")):
            if getattr(training_args, strategy).value == "steps":
                assert training_args.max_steps % getattr(training_args, steps) == 0, (strategy, steps)


def data_file(path: Path, name: str) -> Path:
    """Where `name` (relative to the repository root, as train_hdlm.py reads it) lives, or a skip saying why it
    is absent here: files under ../shared, and those written from them by bench/make_splits.py, exist only where
    ../shared does; the full datasets of the paper's recipes are prepared by the user, as the recipe's header says."""
    file = REPO_ROOT / name
    if file.exists():
        return file
    if name.startswith("../shared/") or name.startswith("outputs/data/"):
        if not SHARED.is_dir():
            pytest.skip(f"{name}: ../shared is absent")
        if name.startswith("outputs/data/"):
            source = SHARED / "data" / Path(name).parent.name
            assert source.is_dir(), f"{name} is written by bench/make_splits.py from {source}, which is missing"
            assert "bench/make_splits.py" in path.read_text()
            pytest.skip(f"{name}: written by bench/make_splits.py, not run here")
    assert str(Path(name).parent) in path.read_text().split("train_file:")[0], f"{name}: no word on how to make it"
    pytest.skip(f"{name}: the full dataset, prepared by the user as {path.name} says")


@pytest.mark.parametrize("path", RECIPES, ids=recipe_ids())
@pytest.mark.parametrize("field", DATA_FIELDS)
def test_recipe_data_exists_and_has_its_levels(path: Path, field: str) -> None:
    script_args, *_ = parse(path)
    name = getattr(script_args, field)
    if name is None:
        pytest.skip(f"no {field}")
    assert not Path(name).is_absolute(), "recipes name files relative to the repository"
    dataset = load_hierarchical_dataset(str(data_file(path, name)), level_kinds=script_args.level_kinds)
    assert len(dataset) > 0 and len(dataset[0]["labels"]) == len(script_args.level_names)


def test_command_line_overrides_a_recipe() -> None:
    """Flags win over the file, the trainer's options (`--freeze_below_layer`) as well as the model's."""
    _, training_args, _, hdlm_args = parse(
        REPO_ROOT / "recipes" / "default.yaml",
        "--max_steps", "2", "--level_layers", "10", "14", "18", "--freeze_below_layer", "6",
    )  # fmt: skip
    assert training_args.max_steps == 2 and training_args.freeze_below_layer == 6
    assert hdlm_args.level_layers == [10, 14, 18]
