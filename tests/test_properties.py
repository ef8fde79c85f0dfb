"""Property-based tests (hypothesis) of the four entry points a user feeds values to: `generate_hierarchical`,
`HdLMConfig`, the data loader and the metric. Each either gives a valid answer, cross-checked against the input, or
raises `ValueError` / `TypeError` with a message: never another exception, a hang or a silent wrong value.

Runs are derandomized (the same cases in CI as here) and keep no example database."""

import json
import math
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TAXONOMY_2, TAXONOMY_3, HdLMConfig, tiny_hdlm, train_tokenizer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hdlm.data import HierarchicalDataError, collect_taxonomy, load_hierarchical_dataset
from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics
from hdlm.evaluation.runner import score_paths

CASES = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_TIMEOUT_S = 30.0
"""A call taking longer than this is a hang (a tiny model decodes a few tokens in milliseconds)."""


@contextmanager
def no_hang(seconds: float = CALL_TIMEOUT_S) -> Iterator[None]:
    """Fail the example with `TimeoutError` when the block runs longer than `seconds` (SIGALRM, main thread)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"the call ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clear_error(error: Exception) -> None:
    """Only `ValueError` / `TypeError`, with a message that names what was wrong (a `backticked` argument)."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    assert len(str(error)) > 10, repr(error)
    event(f"refused: {type(error).__name__}")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and the CI machine has two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- generate_hierarchical ----------------------------------------------------------------------------------------

TOKENIZER = train_tokenizer()
VOCAB_SIZE = len(TOKENIZER)
SPECIAL_TEXTS = ["<eos>", "<bos>", "<pad>", "topic:", "\n", "{text}", "{", "}"]


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    """Label-vocabulary heads (Llama), full heads that also decode freely (GPT-2, 256 positions), a label then text."""
    return {
        "labels": tiny_hdlm("llama", TOKENIZER),
        "full": tiny_hdlm("gpt2_untied", TOKENIZER, label_head_vocabulary="full"),
        "label_text": tiny_hdlm("llama", TOKENIZER, [["Science"], ["Sports"]], kinds=["label", "text"]),
    }


texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(SPECIAL_TEXTS + ["Science", "Tennis", "x", " ", "é", "日本"]), max_size=8).map("".join),
    st.just("word " * 300),  # past GPT-2's 256 positions
)
token_ids = st.integers(min_value=-3, max_value=VOCAB_SIZE + 3)
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.integers(),
    st.binary(max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
inputs_strategy = st.one_of(
    texts,
    st.lists(texts, max_size=5),
    st.tuples(texts, texts),
    st.lists(token_ids, max_size=12),
    st.lists(st.lists(token_ids, max_size=8), max_size=4),
    st.lists(st.one_of(texts, token_ids, st.lists(token_ids, max_size=3), odd_values), max_size=4),
    st.lists(st.lists(st.lists(token_ids, max_size=2), max_size=2), max_size=2),
    odd_values,
    st.integers(0, VOCAB_SIZE - 1).map(lambda i: torch.tensor([[i, i]])),
    st.integers(0, VOCAB_SIZE - 1).map(lambda i: np.array([i, 3])),
)


def expected_count(inputs: object) -> int:
    """How many answers a call that succeeds must return: one per query."""
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], int)):
        return 1
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        return 1 if inputs.ndim == 1 else len(inputs)
    return len(inputs)


def check_outputs(model, inputs: object, outputs: list, constrained: bool, max_new_tokens: int) -> None:
    """One `HierarchicalOutput` per input, one level per model level; constrained label paths are taxonomy paths."""
    config = model.config
    assert len(outputs) == expected_count(inputs)
    labels = config.num_label_levels
    valid = {tuple(path) for path in config.taxonomy}
    for output in outputs:
        assert [level.name for level in output.levels] == config.level_names
        assert all(math.isfinite(level.score) or level.score == -math.inf for level in output.levels)
        if constrained:
            assert tuple(output.path[:labels]) in valid, output.path
        for level in output.levels:
            if level.kind == "text" or not constrained:
                assert 1 <= len(level.token_ids) <= max_new_tokens


OPTIONS = {
    "strategy": st.one_of(st.sampled_from(["greedy", "rank", "beam", "", "RANK"]), odd_values),
    "top_k": st.one_of(st.integers(-2, 4), odd_values),
    "batch_size": st.one_of(st.integers(-1, 5), odd_values),
    "max_new_tokens": st.one_of(st.integers(-1, 4), st.sampled_from([1.5, 2.0, None, True, "3"])),
    "constrained": st.one_of(st.booleans(), st.sampled_from([0, 1, None, "no"])),
    "early_exit": st.one_of(st.booleans(), st.sampled_from([0, 1, None, "no"])),
    "do_sample": st.one_of(st.booleans(), st.sampled_from([0, 1, None, "true"])),
    "temperature": st.one_of(st.floats(allow_nan=True), st.sampled_from([1, 0, -1, 1e-300, 1e300, None, "hot", True])),
    "top_p": st.one_of(st.floats(allow_nan=True), st.sampled_from([1, 0, 0.5, None, "0.5", "x", True])),
    "repetition_penalty": st.one_of(st.floats(allow_nan=True), st.sampled_from([1, 2, 0, -1.0, None, "2", True])),
    "generator": st.sampled_from([None, 0, "seed"]),
}


@st.composite
def some_of(draw: st.DrawFn, strategies: dict[str, st.SearchStrategy], most: int) -> dict[str, object]:
    """Up to `most` of the keys of `strategies`, each with a value of its strategy: the others keep their defaults,
    so that a case often has every value valid, or exactly one wrong."""
    keys = draw(st.lists(st.sampled_from(sorted(strategies)), max_size=most, unique=True))
    return {key: draw(strategies[key]) for key in keys}


def mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy, odds: int = 4) -> st.SearchStrategy:
    """`valid` `odds` times out of `odds + 1`, else `invalid`: most cases then reach the code past the checks."""
    return st.integers(0, odds).flatmap(lambda draw: invalid if draw == 0 else valid)


def call_generate(model, inputs: object, options: dict) -> None:
    """Decode and check the answer, or check that the error is a clear one."""
    try:
        with no_hang():
            outputs = model.generate_hierarchical(inputs, TOKENIZER, **options)
    except (ValueError, TypeError) as error:
        assert_clear_error(error)
        return
    check_outputs(model, inputs, outputs, bool(options.get("constrained", True)), options.get("max_new_tokens", 64))
    event("decoded")


@settings(CASES, max_examples=600)
@given(name=st.sampled_from(["labels", "full", "label_text"]), inputs=inputs_strategy)
def test_generate_hierarchical_inputs(models, name, inputs):
    call_generate(models[name], inputs, {"max_new_tokens": 3})


@settings(CASES, max_examples=600)
@given(
    name=st.sampled_from(["labels", "full", "label_text"]),
    inputs=st.one_of(texts, st.lists(texts, min_size=1, max_size=4)),
    options=some_of(OPTIONS, 4),
)
def test_generate_hierarchical_options(models, name, inputs, options):
    options.setdefault("max_new_tokens", 3)
    if options.get("generator") == 0:
        options["generator"] = torch.Generator().manual_seed(0)
    call_generate(models[name], inputs, options)


# -- HdLMConfig -------------------------------------------------------------------------------------------------------

NUM_LAYERS = 4
TEXT_CONFIG = {"model_type": "llama", "num_hidden_layers": NUM_LAYERS, "vocab_size": VOCAB_SIZE, "hidden_size": 8,
               "intermediate_size": 16, "num_attention_heads": 2}  # fmt: skip
label_texts = st.one_of(st.sampled_from(["A", "B", "a1", "b1", " A ", "", " ", "{x}"]), st.text(max_size=6))
integers_like = st.one_of(
    st.integers(-1, NUM_LAYERS + 1),
    st.integers(0, NUM_LAYERS).map(np.int64),
    st.integers(0, NUM_LAYERS).map(torch.tensor),
    st.sampled_from([2.0, True, None, "2"]),
)
weights = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1, 3),
    st.sampled_from([True, None, "1", np.float32(1.5), torch.tensor(2.0), 1j]),
)
TEMPLATE_PARTS = (
    "{text} {instruction} {name} {candidates} {text!r} {text:d} {name!x} {text:>{instruction}} {0} {} { } \
{{ }} x : {text[0]} {name.upper} {name:^9}".split()
    + [" "]
)
templates = st.one_of(
    st.lists(
        st.sampled_from(TEMPLATE_PARTS),
        max_size=5,
    ).map("".join),
    st.text(max_size=8),
    odd_values,
)
CONFIG_FIELDS = {
    "level_layers": st.one_of(st.lists(integers_like, max_size=4), integers_like, st.just((2, 4))),
    "level_names": st.one_of(st.lists(st.one_of(label_texts, odd_values), max_size=4), label_texts),
    "level_kinds": st.one_of(st.lists(st.sampled_from(["label", "text", "Label", ""]), max_size=4), label_texts),
    "level_loss_weights": st.one_of(st.lists(weights, max_size=4), weights),
    "taxonomy": st.one_of(
        st.lists(st.lists(label_texts, max_size=3), max_size=4),
        st.lists(label_texts, max_size=3),
        st.just([list(path) for path in TAXONOMY_2]),
        odd_values,
    ),
    "taxonomy_token_ids": st.one_of(
        st.lists(st.lists(st.lists(st.one_of(token_ids, odd_values), max_size=3), max_size=3), max_size=3),
        odd_values,
    ),
    "head_init": st.one_of(st.sampled_from(["copy", "random", "shared", "zeros"]), odd_values),
    "label_head_vocabulary": st.one_of(st.sampled_from(["labels", "full", "none"]), odd_values),
    "label_loss": st.one_of(st.sampled_from(["constrained", "full", "mean"]), odd_values),
    "apply_final_norm": st.one_of(st.booleans(), odd_values),
    "instruction": st.one_of(st.none(), st.text(max_size=10), odd_values),
    "use_chat_template": st.one_of(st.booleans(), odd_values),
    "prompt_template": templates,
    "level_header_template": templates,
    "candidates_header_template": templates,
    "level_separator": st.one_of(st.sampled_from(["\n", "", " | "]), odd_values),
    "show_candidates": st.one_of(st.booleans(), odd_values),
    "max_query_tokens": st.one_of(st.none(), integers_like, st.integers(-5, 500)),
    "query_truncation_side": st.one_of(st.sampled_from(["left", "right", "middle"]), odd_values),
}


def check_config(config: HdLMConfig) -> None:
    """Every field of an accepted config is usable: levels line up, weights train, templates render, paths fit."""
    levels = config.num_levels
    assert levels >= 1 and config.level_layers[-1] == NUM_LAYERS
    assert all(type(layer) is int and 1 <= layer <= NUM_LAYERS for layer in config.level_layers)
    assert len(config.level_names) == len(config.level_kinds) == len(config.level_loss_weights) == levels
    assert all(isinstance(name, str) and name.strip() for name in config.level_names)
    assert len(set(config.level_names)) == levels
    assert all(type(weight) is float and math.isfinite(weight) and weight >= 0 for weight in config.level_loss_weights)
    assert any(config.level_loss_weights)
    assert config.head_levels == [d for d, k in enumerate(config.level_layers) if k < NUM_LAYERS] or (
        config.head_init == "shared" and config.head_levels == []
    )
    if config.taxonomy is not None:
        assert config.taxonomy and all(len(path) == config.num_label_levels for path in config.taxonomy)
        assert all(isinstance(label, str) and label.strip() for path in config.taxonomy for label in path)
    assert isinstance(config.instruction, str) and isinstance(config.level_separator, str) and config.level_separator
    # Rendering never fails later with a bare KeyError / IndexError / ValueError.
    config.prompt_template.format(instruction=config.instruction, text="a query")
    for name in config.level_names:
        config.level_header_template.format(name=name)
        config.candidates_header_template.format(name=name, candidates="A, B")
    # A saved config loads the same.
    reloaded = HdLMConfig.from_dict(config.to_dict())
    for field in ("level_layers", "level_names", "level_kinds", "level_loss_weights", "taxonomy", "taxonomy_token_ids",
                  "prompt_template", "level_header_template", "max_query_tokens"):  # fmt: skip
        assert getattr(reloaded, field) == getattr(config, field), field


@st.composite
def valid_config_fields(draw: st.DrawFn) -> dict[str, object]:
    """Fields of a config that must be accepted: levels that line up, a taxonomy of the label levels' depth."""
    levels = draw(st.integers(1, 3))
    layers = sorted(draw(st.lists(st.integers(1, NUM_LAYERS - 1), min_size=levels - 1, max_size=levels - 1,
                                  unique=True))) + [NUM_LAYERS]  # fmt: skip
    labels = draw(st.integers(0 if levels > 1 else 1, levels))
    fields = {
        "level_layers": layers,
        "level_names": draw(
            st.lists(st.text(min_size=1, max_size=5).filter(str.strip), min_size=levels, max_size=levels, unique=True)
        ),  # fmt: skip
        "level_kinds": ["label"] * labels + ["text"] * (levels - labels),
        "level_loss_weights": draw(st.lists(st.floats(0.1, 10), min_size=levels, max_size=levels)),
        "prompt_template": draw(
            st.sampled_from(
                ["{instruction}\n\n{text}\n\n", "{text}", "Q: {text!s} A:", "{text:>3} {{x}}", "{instruction}|{text}"]
            )
        ),  # fmt: skip
        "level_header_template": draw(st.sampled_from(["{name}:", "[{name!s}]", "{name:<8}", "x"])),
    }
    if labels:
        fields["taxonomy"] = draw(st.lists(st.sampled_from([path[:labels] for path in TAXONOMY_3]), min_size=1,
                                           unique_by=tuple))  # fmt: skip
    return fields


@settings(CASES, max_examples=1200)
@given(fields=valid_config_fields(), wild=some_of(CONFIG_FIELDS, 2))
def test_config_fields(fields, wild):
    fields = {**fields, **wild}
    try:
        config = HdLMConfig(text_config=TEXT_CONFIG, **fields)
    except (ValueError, TypeError) as error:
        assert_clear_error(error)
        return
    check_config(config)
    event("valid config")


# -- the data loader ----------------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=5))
WILD_LABELS = st.one_of(
    st.lists(st.one_of(label_texts, json_scalars), max_size=3),
    st.lists(st.lists(st.text(max_size=2), max_size=2), max_size=2),
    json_scalars,
)


@st.composite
def data_rows(draw: st.DrawFn) -> list[object]:
    """Rows of one depth whose labels form a tree (padded with spaces the loader strips), a few of them broken: a
    wild label path or text, a missing field, a duplicate or odd id, a row that is not an object."""
    depth = draw(st.integers(1, 3))
    with_ids = draw(st.booleans())
    rows = []
    for index in range(draw(st.integers(0, 6))):
        path = draw(st.sampled_from(TAXONOMY_3))[:depth]
        labels = [draw(st.sampled_from(["", " ", "  "])) + label + draw(st.sampled_from(["", " "])) for label in path]
        row = {"text": draw(st.text(min_size=1, max_size=12).filter(str.strip)), "labels": labels}
        if with_ids:
            row["id"] = f"row-{index}"
        rows.append(row)
    broken = st.one_of(
        st.fixed_dictionaries({"text": st.one_of(st.text(max_size=3), json_scalars), "labels": WILD_LABELS},
                              optional={"id": json_scalars, "extra": json_scalars}),
        st.fixed_dictionaries({}, optional={"text": st.text(max_size=5), "labels": WILD_LABELS}),
        st.lists(st.text(max_size=3), max_size=2),
        json_scalars,
    )  # fmt: skip
    for _ in range(draw(st.integers(0, 2).flatmap(lambda n: st.just(0) if n < 2 else st.integers(1, 2)))):
        rows.insert(draw(st.integers(0, len(rows))), draw(broken))
    return rows


GARBAGE_LINES = ["{", "not json", "[1,", '{"text": "a", "labels": ["A"]']


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@settings(CASES, max_examples=1100)
@given(
    rows=data_rows(),
    garbage=mostly(st.lists(st.sampled_from(["", "   "])), st.lists(st.sampled_from(GARBAGE_LINES), max_size=2)),
    layout=st.sampled_from(["jsonl", "json"]),
    num_levels=mostly(st.none(), st.one_of(st.integers(-1, 4), st.sampled_from([True, 2.0, "2"]))),
    level_kinds=mostly(
        st.none(), st.one_of(st.lists(st.sampled_from(["label", "text", "other"]), max_size=3), label_texts), odds=2
    ),
    allow_partial_paths=st.booleans(),
)
def test_data_loader_rows(data_dir, rows, garbage, layout, num_levels, level_kinds, allow_partial_paths):
    path = data_dir / f"rows.{layout}"
    if layout == "jsonl":
        lines = [json.dumps(row) for row in rows] + garbage
        path.write_text("\n".join(lines) + "\n")
        garbage = [line for line in garbage if line.strip()]
    else:
        path.write_text(json.dumps(rows, indent=1))
        garbage = []
    try:
        dataset = load_hierarchical_dataset(
            path, num_levels=num_levels, level_kinds=level_kinds, allow_partial_paths=allow_partial_paths
        )
    except (ValueError, TypeError) as error:
        assert_clear_error(error)
        if isinstance(error, HierarchicalDataError):
            assert str(path) in str(error) and error.num_problems >= len(error.problems) >= 1
        return
    event("loaded")
    # Every row was valid, and came back as written (labels stripped; text levels kept as written).
    assert not garbage and len(dataset) == len(rows) >= 1
    kinds = list(level_kinds) if level_kinds is not None else ["label"] * max(len(row["labels"]) for row in rows)
    assert dataset["text"] == [row["text"] for row in rows]
    assert dataset["labels"] == [
        [label.strip() if kind == "label" else label for label, kind in zip(row["labels"], kinds)] for row in rows
    ]
    if "id" in dataset.column_names:
        assert dataset["id"] == [str(row["id"]) for row in rows]
    taxonomy = collect_taxonomy(dataset, level_kinds, allow_partial_paths)  # what the loader took, it takes
    label_levels = kinds.index("text") if "text" in kinds else len(kinds)
    assert taxonomy == [
        list(path) for path in sorted({tuple(labels[:label_levels]) for labels in dataset["labels"]}) if path
    ]


# -- the metric -----------------------------------------------------------------------------------------------------

metric_labels = st.one_of(st.sampled_from(["A", "B", "a1", "a2", "b1", " ", ""]), st.text(max_size=3))
metric_paths = st.lists(st.lists(metric_labels, max_size=3), min_size=0, max_size=6)
bad_paths = st.one_of(
    st.lists(st.lists(st.one_of(metric_labels, json_scalars), max_size=3), max_size=4),
    st.lists(st.one_of(metric_labels, json_scalars), max_size=3),
    json_scalars,
)


@st.composite
def metric_case(draw: st.DrawFn) -> tuple[object, object, dict[str, object]]:
    """Predictions, references and options that should score: paths of one depth from a tree (predictions also
    from random labels, or cut short), the tree as the taxonomy, the level kinds and truncation flags of that depth;
    then now and then one of them replaced by a wild value."""
    depth = draw(st.integers(1, 3))
    paths = sorted({tuple(path[:depth]) for path in TAXONOMY_3})
    references = draw(st.lists(st.sampled_from(paths).map(list), min_size=1, max_size=6))
    guesses = st.one_of(st.sampled_from(paths).map(list), st.lists(metric_labels, max_size=depth))
    predictions = [draw(guesses) for _ in references]
    kwargs: dict[str, object] = {}
    if draw(st.booleans()):
        kwargs["taxonomy"] = [list(path) for path in paths]
    if draw(st.booleans()):
        labels = draw(st.integers(0, depth))
        kwargs["level_kinds"] = ["label"] * labels + ["text"] * (depth - labels)
        predictions = [(path + [""] * depth)[:depth] for path in predictions]  # every level, as generation gives
        if draw(st.booleans()):
            kwargs["truncated"] = [draw(st.lists(st.booleans(), min_size=depth, max_size=depth)) for _ in references]
    wild = draw(
        st.sampled_from([None, None, None, "predictions", "references", "taxonomy", "level_kinds", "truncated"])
    )
    if wild == "predictions":
        predictions = draw(st.one_of(metric_paths, bad_paths))
    elif wild == "references":
        references = draw(st.one_of(metric_paths, bad_paths))
    elif wild == "taxonomy":
        kwargs["taxonomy"] = draw(st.one_of(metric_paths, bad_paths))
    elif wild == "level_kinds":
        kwargs["level_kinds"] = draw(
            st.one_of(st.lists(st.sampled_from(["label", "text", "x"]), max_size=3), label_texts)
        )
    elif wild == "truncated":
        kwargs["truncated"] = draw(st.one_of(st.lists(st.lists(st.booleans(), max_size=3), max_size=6), bad_paths))
    return predictions, references, kwargs


def check_scores(scores: object) -> None:
    assert isinstance(scores, dict) and scores
    for key, value in scores.items():
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)


def check_perfect(scores: dict, kinds: list[str] | None) -> None:
    """Predictions equal to the references score 1 on every label measure, and are never inconsistent."""
    for key, value in scores.items():
        level = int(key.split("_")[1]) if key.startswith("level_") else None
        label_key = level is None or kinds is None or kinds[level - 1] == "label"
        if label_key and key.endswith(("accuracy", "f1", "precision", "recall")) and not key.startswith("flat_macro"):
            assert value == 1.0, (key, value)
    assert scores.get("inconsistency_rate", 0.0) == 0.0


def score(function, predictions, references, kwargs: dict) -> dict | None:
    """The scores, checked; None where the call raised a clear error."""
    try:
        with no_hang():
            scores = function(predictions=predictions, references=references, **kwargs)
    except (ValueError, TypeError) as error:
        assert_clear_error(error)
        return None
    check_scores(scores)
    event("scored")
    return scores


def plain_metric(predictions, references, taxonomy=None, level_kinds=None, truncated=None) -> dict:
    """The function the `evaluate` module wraps, called as the module calls it."""
    if level_kinds is None:
        if truncated is not None:
            raise ValueError("`truncated` scores free-text levels: pass `level_kinds` too.")
        return compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
    return score_paths(predictions, references, level_kinds, taxonomy=taxonomy, truncated=truncated)


@settings(CASES, max_examples=900)
@given(case=metric_case(), same=st.booleans())
def test_metric_function_inputs(case, same):
    predictions, references, kwargs = case
    if same:
        predictions = references
    scores = score(plain_metric, predictions, references, kwargs)
    if scores is not None and same:
        check_perfect(scores, kwargs.get("level_kinds"))
    if scores is not None and len(references) > 1 and kwargs.get("truncated") is None:
        # The order of the documents does not matter.
        assert score(plain_metric, predictions[::-1], references[::-1], kwargs) == pytest.approx(scores)


@settings(CASES, max_examples=200)
@given(case=metric_case(), same=st.booleans())
def test_evaluate_module_inputs(metric, case, same):
    predictions, references, kwargs = case
    if same:
        predictions = references
    scores = score(metric.compute, predictions, references, kwargs)
    if scores is None:
        return
    assert scores == pytest.approx(plain_metric(predictions, references, **kwargs))
    if same:
        check_perfect(scores, kwargs.get("level_kinds"))
