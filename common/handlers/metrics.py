# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Ignite handlers for the boundary metrics HD95 and ASSD (definitions in :mod:`common.metrics.surface_distance`).

Dice and IoU need no new handler: wrap ``monai.metrics.DiceMetric`` / ``monai.metrics.MeanIoU`` configured with
``ignore_empty=False`` in ``monai.handlers.IgniteMetricHandler`` (see :mod:`common.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from common.metrics.surface_distance import AverageSymmetricSurfaceDistanceMetric, HausdorffDistance95Metric

__all__ = ["HausdorffDistance95Handler", "AverageSymmetricSurfaceDistanceHandler"]


class HausdorffDistance95Handler(IgniteMetricHandler):
    """
    Computes the per-image 95th-percentile Hausdorff distance (HD95) from full size Tensors and collects the average
    over batch, class-channels and iterations; per-image values go to ``engine.state.metric_details``
    (for ``monai.handlers.MetricsSaver(metric_details=[...])``).
    """

    def __init__(
        self,
        include_background: bool = False,
        mode: str = "pooled",
        empty_value: float | None = None,
        spacing: float | Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        """

        Args:
            include_background: whether to keep channel 0 of the predicted output. ``False`` (default) drops it
                only when there is more than one channel, so (B, 1, ...) foreground masks and (B, 2, ...) one-hot
                masks both give the foreground HD95.
            mode: ``"pooled"`` (default): 95th percentile of the distances of both directions concatenated
                (C2Seg paper appendix A.5, medpy ``hd95``); ``"max"``: the larger of the two directed 95th
                percentiles (MONAI ``HausdorffDistanceMetric(percentile=95)``).
            empty_value: value for an image where exactly one of prediction and ground truth is empty. ``None``
                (default) uses the image diagonal length (a finite worst case); ``float("nan")`` excludes such
                images from the mean. Both empty always gives 0.0.
            spacing: pixel size, ``None`` (default) for distances in pixels, one number, or one value per spatial
                axis.
            reduction: define the mode to reduce metrics, will only execute reduction on `not-nan` values,
                available reduction modes: {``"none"``, ``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
                ``"mean_channel"``, ``"sum_channel"``}, default to ``"mean"``. if "none", will not do reduction.
            output_transform: callable to extract `y_pred` and `y` from `ignite.engine.state.output` then
                construct `(y_pred, y)` pair, where `y_pred` and `y` can be `batch-first` Tensors or
                lists of `channel-first` Tensors, binarised to {0, 1}. the form of `(y_pred, y)` is required by
                the `update()`. `engine.state` and `output_transform` inherit from the ignite concept:
                https://pytorch.org/ignite/concepts.html#state, explanation and usage example are in the tutorial:
                https://github.com/Project-MONAI/tutorials/blob/master/modules/batch_output_transform.ipynb.
            save_details: whether to save metric computation details per image, for example: HD95 of every image.
                default to True, will save to `engine.state.metric_details` dict with the metric name as key.

        Raises:
            ValueError: when ``mode``, ``empty_value`` or ``reduction`` is invalid.

        See also:
            :py:func:`common.metrics.surface_distance.hd95`
        """
        metric_fn = HausdorffDistance95Metric(
            include_background=include_background,
            mode=mode,
            empty_value=empty_value,
            spacing=spacing,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class AverageSymmetricSurfaceDistanceHandler(IgniteMetricHandler):
    """
    Computes the per-image average symmetric surface distance (ASSD) from full size Tensors and collects the average
    over batch, class-channels and iterations; per-image values go to ``engine.state.metric_details``
    (for ``monai.handlers.MetricsSaver(metric_details=[...])``).
    """

    def __init__(
        self,
        include_background: bool = False,
        empty_value: float | None = None,
        spacing: float | Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        """

        Args:
            include_background: whether to keep channel 0 of the predicted output. ``False`` (default) drops it
                only when there is more than one channel, so (B, 1, ...) foreground masks and (B, 2, ...) one-hot
                masks both give the foreground ASSD.
            empty_value: value for an image where exactly one of prediction and ground truth is empty. ``None``
                (default) uses the image diagonal length (a finite worst case); ``float("nan")`` excludes such
                images from the mean. Both empty always gives 0.0.
            spacing: pixel size, ``None`` (default) for distances in pixels, one number, or one value per spatial
                axis.
            reduction: define the mode to reduce metrics, will only execute reduction on `not-nan` values,
                available reduction modes: {``"none"``, ``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``,
                ``"mean_channel"``, ``"sum_channel"``}, default to ``"mean"``. if "none", will not do reduction.
            output_transform: callable to extract `y_pred` and `y` from `ignite.engine.state.output` then
                construct `(y_pred, y)` pair, where `y_pred` and `y` can be `batch-first` Tensors or
                lists of `channel-first` Tensors, binarised to {0, 1}. the form of `(y_pred, y)` is required by
                the `update()`. `engine.state` and `output_transform` inherit from the ignite concept:
                https://pytorch.org/ignite/concepts.html#state, explanation and usage example are in the tutorial:
                https://github.com/Project-MONAI/tutorials/blob/master/modules/batch_output_transform.ipynb.
            save_details: whether to save metric computation details per image, for example: ASSD of every image.
                default to True, will save to `engine.state.metric_details` dict with the metric name as key.

        Raises:
            ValueError: when ``empty_value`` or ``reduction`` is invalid.

        See also:
            :py:func:`common.metrics.surface_distance.assd`
        """
        metric_fn = AverageSymmetricSurfaceDistanceMetric(
            include_background=include_background,
            empty_value=empty_value,
            spacing=spacing,
            reduction=reduction,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
