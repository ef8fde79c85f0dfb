"""Loading and validating hierarchical data sets (before tokenisation)."""

from .formats import load_dbpedia_csv, load_wos_data_txt, standard_wos_split
from .loading import (
    LEVEL_KINDS,
    HierarchicalDataError,
    check_level_kinds,
    collect_taxonomy,
    load_hierarchical_dataset,
    sample_rows,
)

__all__ = [
    "LEVEL_KINDS",
    "HierarchicalDataError",
    "check_level_kinds",
    "collect_taxonomy",
    "load_dbpedia_csv",
    "load_hierarchical_dataset",
    "load_wos_data_txt",
    "sample_rows",
    "standard_wos_split",
]
