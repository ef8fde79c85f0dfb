"""`evaluate` wrapper of `compute_hierarchical_metrics` and, for paths that end in free-text levels, of
`score_paths`.

The metric logic lives in the plain functions of the modules beside this file (links to the `hdlm.evaluation` modules
of the same names, which import only numpy, scikit-learn, rouge-score and sacrebleu), so the metric loads where
`evaluate` is installed and `hdlm` is not. `evaluate` copies only the modules this file imports itself, so each of them
is imported here. See README.md for the meaning of every output.
"""

import datasets
import evaluate

# No comment on these lines: `evaluate` would read it as the address to download the module from.
from .calibration_metrics import calibration_scores
from .hierarchical_metrics import check_label_paths, compute_hierarchical_metrics
from .path_metrics import score_paths
from .text_metrics import compute_text_metrics

# Every module is imported above so that `evaluate` copies it; the plain functions are exported for direct use.
__all__ = [
    "HierarchicalF1",
    "calibration_scores",
    "compute_hierarchical_metrics",
    "compute_text_metrics",
    "score_paths",
]

_DESCRIPTION = """\
Hierarchical classification metrics over label paths (coarsest level first): per-level accuracy and micro/macro F1,
flattened all-label micro/macro F1 (HiAGM / HGCLR / HPT protocol), joined-path micro/macro F1 and path accuracy (HdLM
authors' protocol), hierarchical precision/recall/F1 (Kiritchenko et al., 2005) and the rate of predicted paths with a
parent -> child edge outside the taxonomy. Paths may end in free-text levels (classification-guided generation, e.g.
a support strategy then a reply): those are scored by BLEU-2, ROUGE-L, Distinct-2 and the share of empty replies.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): predicted label paths, one per document, coarsest level first; may be shorter or
        longer than the reference, or empty.
    references (`list[list[str]]`): reference label paths, one per document, coarsest level first.
    taxonomy (`list[list[str]]`, *optional*): every label path of the taxonomy. It defines the valid parent -> child
        edges and the labels that `flat_macro_f1` averages over; without it both come from the references.
    level_kinds (`list[str]`, *optional*): `"label"` or `"text"` per level, label levels first (e.g. `["label",
        "text"]`). Without it every level is a label. With it, every path holds one entry per level, the taxonomy
        lists the label levels only, and references outside it are added to it (scored as errors) instead of raising.
    truncated (`list[list[bool]]`, *optional*): with `level_kinds`, per document and level whether the prediction was
        cut off at the generation limit; adds `level_{d}_truncated_rate` for text levels.
    level_confidences (`list[list[float]]`, *optional*): per document, the probability of each label of its predicted
        path (one per label level); adds `level_{d}_ece` and `level_{d}_brier`.
    path_confidences (`list[float]`, *optional*): per document, the probability of its predicted label path; adds
        `path_ece` and `path_brier`.

Returns:
    `dict[str, float]`, all in [0, 1]. Over the label levels: `level_{d}_accuracy`, `level_{d}_micro_f1`,
    `level_{d}_macro_f1` for every reference level `d`, `flat_micro_f1`, `flat_macro_f1`, `path_accuracy`,
    `path_micro_f1`, `path_macro_f1`, `hierarchical_precision`, `hierarchical_recall`, `hierarchical_f1`,
    `inconsistency_rate`. For every text level `d`: `level_{d}_bleu_2`, `level_{d}_rouge_l`, `level_{d}_distinct_2`,
    `level_{d}_empty_rate` (and `level_{d}_truncated_rate`). With confidences: `level_{d}_ece`, `level_{d}_brier`,
    `path_ece`, `path_brier` (top-label ECE over 15 equal-width bins, and Brier score).

Example:
    >>> metric = evaluate.load("metrics/hierarchical_f1")
    >>> results = metric.compute(predictions=[["A", "a1"], ["A", "b1"]], references=[["A", "a1"], ["B", "b1"]])
    >>> results["path_accuracy"], results["inconsistency_rate"]
    (0.5, 0.5)
    >>> results = metric.compute(
    ...     predictions=[["Question", "How are you?"]],
    ...     references=[["Question", "How are you today?"]],
    ...     level_kinds=["label", "text"],
    ... )
    >>> results["level_1_accuracy"], round(results["level_2_rouge_l"], 3)
    (1.0, 0.857)
"""

_CITATION = """\
@inproceedings{kiritchenko2005functional,
  title     = {Functional Annotation of Genes Using Hierarchical Text Categorization},
  author    = {Kiritchenko, Svetlana and Matwin, Stan and Famili, A. Fazel},
  booktitle = {Proceedings of the BioLINK SIG: Linking Literature, Information and Knowledge for Biology},
  year      = {2005}
}
"""


class HierarchicalF1(evaluate.Metric):
    """Hierarchical classification metrics over label paths."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2507.12930", "https://github.com/Alibaba-NLP/HiAGM"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Add a batch of label paths, checked first: `evaluate` casts every label to a string, so a number or a bool
        among them would otherwise become a label no reference has and score 0 in silence."""
        if predictions is not None:
            check_label_paths(predictions, "predictions", allow_empty=True)
        if references is not None:
            check_label_paths(references, "references", allow_empty=True)
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """Add one predicted and one reference label path, checked as in `add_batch`."""
        if prediction is not None:
            check_label_paths([prediction], "prediction", allow_empty=True)
        if reference is not None:
            check_label_paths([reference], "reference", allow_empty=True)
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(
        self,
        predictions: list[list[str]],
        references: list[list[str]],
        taxonomy: list[list[str]] | None = None,
        level_kinds: list[str] | None = None,
        truncated: list[list[bool]] | None = None,
        level_confidences: list[list[float]] | None = None,
        path_confidences: list[float] | None = None,
    ) -> dict[str, float]:
        confidences = {"level_confidences": level_confidences, "path_confidences": path_confidences}
        if level_kinds is None:
            if truncated is not None:
                raise ValueError("`truncated` scores free-text levels: pass `level_kinds` too.")
            return compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy, **confidences)
        return score_paths(predictions, references, level_kinds, taxonomy=taxonomy, truncated=truncated, **confidences)
