# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Dictionary transforms MONAI lacks: text tokenisation, the mask binarisation rule, and data checks."""

from __future__ import annotations

__all__ = [
    "BinarizeMask",
    "BinarizeMaskd",
    "CheckSameSpatialShaped",
    "HFTextEmbedd",
    "HFTokenizer",
    "OpenCLIPTokenizer",
    "TextTokenizer",
    "TokenizeTextd",
    "TokenizerOutput",
    "WordVocabTokenizer",
    "build_text_tokenizer",
    "get_source_name",
    "load_text_tokenizer",
    "longest_token_count",
    "split_words",
]

from common.transforms.checks import CheckSameSpatialShaped, get_source_name
from common.transforms.mask import BinarizeMask, BinarizeMaskd
from common.transforms.text import (
    HFTokenizer,
    OpenCLIPTokenizer,
    TextTokenizer,
    TokenizerOutput,
    TokenizeTextd,
    WordVocabTokenizer,
    build_text_tokenizer,
    load_text_tokenizer,
    longest_token_count,
    split_words,
)
from common.transforms.text_embedding import HFTextEmbedd
from common.transforms import corruption  # noqa: E402,F401  (test-time corruptions, common/configs/corruption.json)
from common.transforms.class_map import BinaryFromClassIndexd, ClassIndexMapd, LesionProbabilityd  # noqa: E402,F401
from common.transforms import biclip  # noqa: E402,F401  (BiCLIP's in-network IAC augmentations)
