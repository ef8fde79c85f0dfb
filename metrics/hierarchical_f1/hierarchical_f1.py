"""`evaluate` wrapper of `hdlm.evaluation.hierarchical_metrics.compute_hierarchical_metrics`.

The metric logic lives in the plain function (the `evaluate` library is in maintenance mode); this module only gives
it the `evaluate.load("metrics/hierarchical_f1")` interface. See README.md for the meaning of every output.
"""

import datasets
import evaluate

from hdlm.evaluation.hierarchical_metrics import compute_hierarchical_metrics

_DESCRIPTION = """\
Hierarchical classification metrics over label paths (coarsest level first): per-level accuracy and micro/macro F1,
flattened all-label micro/macro F1 (HiAGM / HGCLR / HPT protocol), joined-path micro/macro F1 and path accuracy (HdLM
authors' protocol), hierarchical precision/recall/F1 (Kiritchenko et al., 2005) and the rate of predicted paths with a
parent -> child edge outside the taxonomy.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): predicted label paths, one per document, coarsest level first; may be shorter or
        longer than the reference, or empty.
    references (`list[list[str]]`): reference label paths, one per document, coarsest level first.
    taxonomy (`list[list[str]]`, *optional*): every label path of the taxonomy. It defines the valid parent -> child
        edges and the labels that `flat_macro_f1` averages over; without it both come from the references.

Returns:
    `dict[str, float]`: `level_{d}_accuracy`, `level_{d}_micro_f1`, `level_{d}_macro_f1` for every reference level `d`,
    `flat_micro_f1`, `flat_macro_f1`, `path_accuracy`, `path_micro_f1`, `path_macro_f1`, `hierarchical_precision`,
    `hierarchical_recall`, `hierarchical_f1`, `inconsistency_rate`; all in [0, 1].

Example:
    >>> metric = evaluate.load("metrics/hierarchical_f1")
    >>> results = metric.compute(predictions=[["A", "a1"], ["A", "b1"]], references=[["A", "a1"], ["B", "b1"]])
    >>> results["path_accuracy"], results["inconsistency_rate"]
    (0.5, 0.5)
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

    def _compute(
        self,
        predictions: list[list[str]],
        references: list[list[str]],
        taxonomy: list[list[str]] | None = None,
    ) -> dict[str, float]:
        return compute_hierarchical_metrics(predictions, references, taxonomy=taxonomy)
