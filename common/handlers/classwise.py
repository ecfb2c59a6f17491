# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Ignite handlers for pixel accuracy and per-class Dice (definitions in :mod:`common.metrics.classwise`).

Config use (``evaluate.json``)::

    "PixelAccuracy": {"_target_": "common.handlers.PixelAccuracyHandler", "save_details": true,
                      "output_transform": "$monai.handlers.from_engine(['pred', 'label'])"}
    "ClassDice": {"_target_": "common.handlers.PerClassDiceHandler", "num_classes": 5, "save_details": true,
                  "output_transform": "$monai.handlers.from_engine(['pred_classes', 'label_classes'])"}
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from common.metrics.classwise import PerClassDiceMetric, PixelAccuracyMetric

__all__ = ["PixelAccuracyHandler", "PerClassDiceHandler"]


class PixelAccuracyHandler(IgniteMetricHandler):
    """
    Mean over images of the per-image pixel accuracy (binary masks or K-class maps alike).

    Args:
        reduction: MONAI metric reduction, default ``"mean"``.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: keep the per-image values in ``engine.state.metric_details`` (for ``MetricsSaver``).
    """

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=PixelAccuracyMetric(reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class PerClassDiceHandler(IgniteMetricHandler):
    """
    Per-class Dice of K-class outputs: the summary is the mean of every defined (image, class) value (one number,
    so ``metrics.csv`` stays one number per line); the per-image (N, K) values (NaN where a class is absent from
    both maps) go to ``engine.state.metric_details`` and, through ``MetricsSaver``, to ``<name>_raw.csv`` with one
    column per class, whose ``nanmean`` per column (``<name>_summary.csv``) is the per-class Dice.

    Args:
        num_classes: K, the number of lesion classes (background not counted).
        output_transform: callable extracting ``(y_pred, y)`` (class maps or one-hot, channel 0 background).
        save_details: keep the per-image values in ``engine.state.metric_details``.
    """

    def __init__(self, num_classes: int, output_transform: Callable = lambda x: x, save_details: bool = True) -> None:
        super().__init__(
            metric_fn=PerClassDiceMetric(num_classes=num_classes, reduction=MetricReduction.MEAN),
            output_transform=output_transform,
            save_details=save_details,
        )
