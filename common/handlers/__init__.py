# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Ignite handlers the bundles use on top of MONAI's own."""

from .checkpoint import BestModelHandler, LastCheckpointHandler, ResumeHandler, atomic_save
from .loss_terms import LossTermsHandler
from .metrics import AverageSymmetricSurfaceDistanceHandler, HausdorffDistance95Handler
from .overlap import PerImageDiceHandler, PerImageIoUHandler
from .reports import write_per_case_table

__all__ = [
    "AverageSymmetricSurfaceDistanceHandler",
    "BestModelHandler",
    "HausdorffDistance95Handler",
    "LastCheckpointHandler",
    "LossTermsHandler",
    "PerImageDiceHandler",
    "PerImageIoUHandler",
    "ResumeHandler",
    "atomic_save",
    "write_per_case_table",
]

from .intervention_schedule import InterventionScheduleHandler  # noqa: E402

__all__ += ["InterventionScheduleHandler"]
from .classwise import PerClassDiceHandler, PixelAccuracyHandler  # noqa: E402,F401
from .predictions import SavePredictionsHandler  # noqa: E402,F401
from .text_consistency import TextConsistencyHandler, TextConsistencyMetric, note_records  # noqa: E402,F401
from .data_wait import DataWaitHandler  # noqa: E402,F401
