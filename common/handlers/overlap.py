# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Per-image Dice and IoU handlers with defined empty-mask cases.

MONAI's ``MeanDice`` and ``MeanIoUHandler`` always build their metric with ``ignore_empty=True``: an image with an
empty ground truth scores NaN and drops out of the mean, so a false positive on a lesion-free image is never
penalised. These handlers build the same MONAI metrics (``DiceMetric``, ``MeanIoU``) with ``ignore_empty=False``:

- ground truth empty and prediction empty: 1.0;
- ground truth empty, prediction not (or the reverse): 0.0.

Values are per image on the foreground channel, then averaged over images (not pooled over pixels). Inputs
must be binarised to {0, 1} first (MONAI counts only values equal to 1; see ``common.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler
from monai.metrics import DiceMetric, MeanIoU
from monai.utils import MetricReduction

__all__ = ["PerImageDiceHandler", "PerImageIoUHandler"]


class PerImageDiceHandler(IgniteMetricHandler):
    """
    Mean over images of the per-image foreground Dice, with empty cases scored (see the module docstring).

    Args:
        include_background: whether the first channel is included; keep ``True`` for single-channel binary
            predictions (the channel is the foreground), use ``False`` for one-hot (B, 2, ...) inputs.
        reduction: MONAI metric reduction, default ``"mean"`` (over images and channels).
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``.
        save_details: keep the per-image values in ``engine.state.metric_details`` (for ``MetricsSaver``).
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = DiceMetric(include_background=include_background, reduction=reduction, ignore_empty=False)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class PerImageIoUHandler(IgniteMetricHandler):
    """
    Mean over images of the per-image foreground IoU (Jaccard), with empty cases scored (see the module docstring).

    Args:
        include_background: whether the first channel is included; keep ``True`` for single-channel binary
            predictions, use ``False`` for one-hot (B, 2, ...) inputs.
        reduction: MONAI metric reduction, default ``"mean"``.
        output_transform: callable extracting ``(y_pred, y)`` from ``engine.state.output``.
        save_details: keep the per-image values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = MeanIoU(include_background=include_background, reduction=reduction, ignore_empty=False)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
