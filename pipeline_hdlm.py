"""The `hierarchical-text-classification` pipeline: a text in, its hierarchical path with probabilities out.

This file is copied beside every HdLM checkpoint (`modeling_hdlm` imports it, so `save_pretrained` copies it) and
named in the checkpoint's `config.json` under `custom_pipelines`, so that

    pipeline("hierarchical-text-classification", model=checkpoint, trust_remote_code=True)

loads it as transformers loads any custom pipeline. It imports only transformers and its sibling `generation_hdlm`.
"""

import dataclasses
from functools import cached_property
from typing import Any

from transformers import AutoModelForCausalLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

try:
    from .generation_hdlm import HierarchicalGenerationConfig, HierarchicalOutput
except ImportError:  # imported as a top-level module from a source checkout
    from generation_hdlm import HierarchicalGenerationConfig, HierarchicalOutput

TASK = "hierarchical-text-classification"
CUSTOM_PIPELINES = {
    TASK: {
        "impl": "pipeline_hdlm.HierarchicalTextClassificationPipeline",
        "pt": ["AutoModelForCausalLM"],
        "type": "text",
    }
}
"""What `config.json` holds under `custom_pipelines` (written by `HdLMForCausalLM.from_base`)."""


class HierarchicalTextClassificationPipeline(Pipeline):
    """
    Hierarchical text classification with an HdLM, in the style of the text-classification pipeline: each input text
    gives a dict with its `path` (coarsest label first), `score` (the path's probability: the product of its levels'
    probabilities) and `levels`, one dict per level: `{"level": name, "label": label, "score": probability}` for label
    levels (`probability` among the labels the taxonomy allows under the label above), with `"top_labels"` (the
    `top_k` best labels and their probabilities) when `top_k > 1`; `{"level": name, "text": text, "truncated": bool}`
    for free-text levels. With `top_k_paths=N`, `"top_paths"` lists the N best paths (`{"path", "score"}`, a beam over
    the taxonomy); with `abstain_threshold`, the path stops at the deepest level whose path probability reaches it and
    `"abstained"` lists the labels cut off (absent when none was).

    Example:

    ```python
    >>> from transformers import pipeline

    >>> classifier = pipeline("hierarchical-text-classification", model=checkpoint, trust_remote_code=True)
    >>> classifier("Josef Fuchs (born 1948) is a retired Swiss racing cyclist.")
    {'path': ['Agent', 'Athlete', 'Cyclist'], 'score': 0.97, 'levels': [{'level': 'category', 'label': 'Agent', ...}]}
    >>> classifier(texts, batch_size=16, top_k=3)  # the 3 best labels of each level, ranked exactly
    ```

    Call options (also accepted by `pipeline(...)`, which makes them the defaults): `batch_size` (inputs decoded
    together), `top_k` (with `top_k > 1` the levels are ranked with `strategy="rank"` unless `strategy` is given),
    `generation_config` (a [`HierarchicalGenerationConfig`]) and any of its fields (`strategy`, `constrained`,
    `max_new_tokens`, ...), which override it, as in `model.generate_hierarchical`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __call__(self, inputs: str | list[str], *args, **kwargs) -> dict[str, Any] | list[dict[str, Any]]:
        """
        Classify a text, a list of texts (answers in input order) or a stream of them (a generator or a dataset,
        answered lazily). A list is decoded in batches of prompts of similar length, as `generate_hierarchical`
        batches: the same batches, so the same answers, and the least padding.
        """
        if not isinstance(inputs, list) or len(inputs) < 2 or not all(isinstance(text, str) for text in inputs):
            return super().__call__(inputs, *args, **kwargs)
        lengths = [len(self.renderer.prompt_ids(text)) for text in inputs]
        order = sorted(range(len(inputs)), key=lengths.__getitem__)
        answers = super().__call__([inputs[index] for index in order], *args, **kwargs)
        by_input = [None] * len(inputs)
        for index, answer in zip(order, answers):
            by_input[index] = answer
        return by_input

    @cached_property
    def renderer(self):
        """The model's prompt renderer for this tokenizer, built once (it renders the taxonomy's labels)."""
        return self.model.get_renderer(self.tokenizer)

    def _sanitize_parameters(self, **kwargs) -> tuple[dict, dict, dict]:
        """Split the options: decoding options go to `_forward`, checked now against the options already set."""
        names = [option.name for option in dataclasses.fields(HierarchicalGenerationConfig)]
        allowed = {"generation_config", *names} - {"batch_size"}
        if unknown := sorted(set(kwargs) - allowed):
            raise TypeError(
                f"The {TASK} pipeline got unknown options {unknown}: it takes `batch_size`, `generation_config` and "
                f"the fields of `HierarchicalGenerationConfig` ({', '.join(sorted(allowed - {'generation_config'}))})."
            )
        forward_params = {**getattr(self, "_forward_params", {}), **kwargs}
        self._generation_config(forward_params, batch_size=1)  # bad options fail here, before any text is read
        return {}, kwargs, {}

    def _generation_config(self, options: dict[str, Any], batch_size: int) -> HierarchicalGenerationConfig:
        """The checked decoding options of one batch: `options` over `generation_config`, `rank` when `top_k > 1`."""
        options = dict(options)
        generation_config = options.pop("generation_config", None)
        top_k = options.get("top_k", getattr(generation_config, "top_k", 1))
        if "strategy" not in options and isinstance(top_k, int) and top_k > 1:
            options["strategy"] = "rank"
        config = HierarchicalGenerationConfig.from_options(generation_config, **options, batch_size=batch_size)
        config.check_model(self.model.config)
        return config

    def preprocess(self, inputs: str) -> dict[str, list[int]]:
        if not isinstance(inputs, str):
            raise TypeError(
                f"The {TASK} pipeline takes a text or a list of texts, got {type(inputs).__name__} ({inputs!r:.60})."
            )
        return {"prompt_ids": self.renderer.prompt_ids(inputs)}

    def _forward(self, model_inputs: dict[str, list], **options) -> dict[str, list[HierarchicalOutput]]:
        """Decode one batch: the prompts collated by the pipeline (one list of ids, or a list of them)."""
        prompts = model_inputs["prompt_ids"]
        prompts = prompts if prompts and isinstance(prompts[0], list) else [prompts]
        generation_config = self._generation_config(options, batch_size=len(prompts))
        return {"output": self.model.generate_hierarchical(prompts, self.tokenizer, generation_config)}

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, Any]:
        output = model_outputs["output"]
        if isinstance(output, list):  # a single input, not unrolled from a batch
            [output] = output
        result = {"path": output.path, "score": output.probability, "levels": []}
        for level in output.levels:
            if level.kind != "label":
                result["levels"].append({"level": level.name, "text": level.text, "truncated": level.truncated})
                continue
            entry = {"level": level.name, "label": level.label, "score": level.probability}
            if level.top_labels is not None:
                entry["top_labels"] = [{"label": label, "score": score} for label, score in level.top_labels]
            result["levels"].append(entry)
        if output.top_paths is not None:
            result["top_paths"] = [{"path": list(path), "score": score} for path, score in output.top_paths]
        if output.abstained:
            result["abstained"] = [level.label for level in output.abstained_levels]
        return result


if TASK not in PIPELINE_REGISTRY.get_supported_tasks():  # a second copy (the checkpoint's and the source's) keeps one
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=HierarchicalTextClassificationPipeline, pt_model=AutoModelForCausalLM, type="text"
    )

__all__ = ["CUSTOM_PIPELINES", "TASK", "HierarchicalTextClassificationPipeline"]
