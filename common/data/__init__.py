# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Data: dataset readers (public layouts -> datalist), datalist loading/validation, and (in
``common.data.synthetic``, imported on demand) synthetic phantom generators.
"""

from __future__ import annotations

from common.data.cache import SafeCacheDataset
from common.data.datalist import (
    DATALIST_FILE_NAME,
    DATALIST_SPLITS,
    SYNTHETIC_KINDS,
    check_datalist_split,
    datalist_texts,
    ensure_datalist,
    load_datalist,
    read_datalist_json,
    write_datalist,
)
from common.data.preflight import DatalistError, PreflightRules, check_datalist, preflight_datalist
from common.data.readers import LVIT_SPLITS, read_folders, read_lvit_layout, read_madapter
from common.data.report import PROBLEM_KINDS, DataProblem, ReaderReport, report_path_for
from common.data.splits import num_to_draw, split_by_fraction
from common.data.tables import IMAGE_SUFFIXES, match_key, normalize_text, read_site_table, read_text_table

__all__ = [
    "SafeCacheDataset",
    "DatalistError",
    "PreflightRules",
    "check_datalist",
    "preflight_datalist",
    "check_datalist_split",
    "read_datalist_json",
    "DataProblem",
    "DATALIST_FILE_NAME",
    "DATALIST_SPLITS",
    "SYNTHETIC_KINDS",
    "datalist_texts",
    "ensure_datalist",
    "load_datalist",
    "write_datalist",
    "LVIT_SPLITS",
    "read_folders",
    "read_lvit_layout",
    "read_madapter",
    "PROBLEM_KINDS",
    "ReaderReport",
    "report_path_for",
    "num_to_draw",
    "split_by_fraction",
    "IMAGE_SUFFIXES",
    "match_key",
    "normalize_text",
    "read_site_table",
    "read_text_table",
]
from common.data.subsets import LOW_DATA_FRACTIONS, training_subset  # noqa: E402  (low-data regimes, train_fraction)
from common.data.cache import (  # noqa: E402  (cache_mode: memory | disk | none)
    CACHE_MODES,
    SafeDataset,
    SafePersistentDataset,
    make_dataset,
)
