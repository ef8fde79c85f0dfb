"""Loading and validating hierarchical data sets (before tokenisation)."""

from .loading import (
    LEVEL_KINDS,
    HierarchicalDataError,
    check_level_kinds,
    collect_taxonomy,
    load_dbpedia_csv,
    load_hierarchical_dataset,
    load_wos_data_txt,
    sample_rows,
    standard_wos_split,
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
