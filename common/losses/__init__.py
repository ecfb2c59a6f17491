# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Losses shared by the bundles. Multi-term losses record each term so it can be logged separately."""

from .causal import CausalMinMaxLoss
from .composite import WeightedSumLoss
from .lvit import LanguageVisionLoss, LViTDiceCELoss, LViTSemiSupervisedLoss

__all__ = ["CausalMinMaxLoss", "WeightedSumLoss", "LanguageVisionLoss", "LViTDiceCELoss", "LViTSemiSupervisedLoss"]

from .mcdrl import MCDRLLoss  # noqa: E402

__all__ += ["MCDRLLoss"]

from .biclip import BiCLIPLoss  # noqa: E402

__all__ += ["BiCLIPLoss"]

from .cacl import CaCLLoss, cacl_soft_targets  # noqa: E402

__all__ += ["CaCLLoss", "cacl_soft_targets"]
