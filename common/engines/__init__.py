# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Training-loop pieces on top of MONAI's engines: batch preparation and stateful per-iteration updates."""

from __future__ import annotations

from .epi import (
    PACKED_LABEL_CHANNELS,
    EPIUpdateHandler,
    EPIWarmupHandler,
    PrepareBatchSemiSupervised,
    PseudoLabelBank,
)

__all__ = [
    "PACKED_LABEL_CHANNELS",
    "EPIUpdateHandler",
    "EPIWarmupHandler",
    "PrepareBatchSemiSupervised",
    "PseudoLabelBank",
]
