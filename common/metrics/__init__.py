# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Segmentation metrics reported by every bundle: ``Dice``, ``IoU``, ``HD95`` and ``ASSD`` (C2Seg paper, appendix A.5).

All four are per-image foreground values averaged over images (never pooled over the data set), with every image
counted, including those with an empty ground truth or an empty prediction.

Dice and IoU: use MONAI as is
=============================
MONAI 1.6.1's ``monai.metrics.DiceMetric`` and ``monai.metrics.MeanIoU`` compute exactly this when configured as::

    DiceMetric(include_background=True, reduction="mean", get_not_nans=False, ignore_empty=False)
    MeanIoU(include_background=True, reduction="mean", get_not_nans=False, ignore_empty=False)

on single-channel binarised tensors ``y_pred``, ``y`` of shape (B, 1, H, W[, D]) with values in {0, 1}
(for one-hot (B, 2, H, W[, D]) inputs use ``include_background=False`` instead, otherwise the background
channel's Dice/IoU is averaged in). Behaviour, checked in the 1.6.1 source (``DiceHelper.compute_channel``,
``compute_iou``, ``do_metric_reduction``) and in ``tests/test_metrics.py``:

- per image: Dice = 2|P∩G| / (|P|+|G|), IoU = |P∩G| / |P∪G| (``reduction="none"`` gives the (B, 1) values);
- ground truth empty and prediction empty: 1.0 (both); ground truth empty and prediction not: 0.0;
  ground truth not empty and prediction empty: 0.0;
- ``reduction="mean"`` averages the per-image values over all images gathered since the last ``reset()``
  (across iterations and DDP ranks), e.g. two images with Dice 1.0 and 0.5 give 0.75.

Pitfalls of the MONAI defaults (why each argument above matters):

- ``ignore_empty`` defaults to ``True``: an empty ground truth then gives NaN, which the mean silently skips,
  so a false-positive prediction on a lesion-free image would not be penalised;
- the ignite handlers ``monai.handlers.MeanDice`` and ``monai.handlers.MeanIoUHandler`` do not expose
  ``ignore_empty`` (they always use ``True``); wrap the configured metric in
  ``monai.handlers.IgniteMetricHandler`` instead, e.g. in a bundle config::

      "Dice": {"_target_": "IgniteMetricHandler",
               "metric_fn": {"_target_": "DiceMetric", "include_background": true, "reduction": "mean",
                             "ignore_empty": false},
               "output_transform": "$monai.handlers.from_engine(['pred', 'label'])", "save_details": true},
      "IoU": {"_target_": "IgniteMetricHandler",
              "metric_fn": {"_target_": "MeanIoU", "include_background": true, "reduction": "mean",
                            "ignore_empty": false},
              "output_transform": "$monai.handlers.from_engine(['pred', 'label'])", "save_details": true}

- inputs must be binarised to {0, 1} first (e.g. ``AsDiscreted(keys="pred", threshold=0.5)`` after a sigmoid,
  and the project's mask binarisation for labels): on single-channel inputs ``DiceMetric`` counts only values
  equal to 1 (a 0/255 mask is read as empty, so two 0/255 masks give Dice 1.0 whatever they contain) while
  ``MeanIoU`` multiplies raw values (a 0/255 mask gives IoU values above 1, probabilities give a soft IoU).

HD95 and ASSD: written here
===========================
MONAI's ``HausdorffDistanceMetric(percentile=95)`` takes the larger of the two directed 95th percentiles, and its
``SurfaceDistanceMetric(symmetric=True)`` averages the pooled distances; both give NaN (HD95) or inf (ASSD,
plain HD) when one mask is empty and NaN when both are. The C2Seg paper (appendix A.5, eq. 10) and medpy pool the
two directions for HD95 and average the two directed means for ASSD, so :mod:`common.metrics.surface_distance`
provides :func:`hd95`, :func:`assd`, :class:`HausdorffDistance95Metric` and
:class:`AverageSymmetricSurfaceDistanceMetric` with documented, finite empty cases (both empty: 0.0; one empty:
the image diagonal by default). The ignite handlers are in :mod:`common.handlers.metrics`.
"""

from __future__ import annotations

from .surface_distance import (
    HD95_MODES,
    AverageSymmetricSurfaceDistanceMetric,
    HausdorffDistance95Metric,
    assd,
    hd95,
    image_diagonal,
    mask_surface,
    surface_distances,
)

__all__ = [
    "HD95_MODES",
    "AverageSymmetricSurfaceDistanceMetric",
    "HausdorffDistance95Metric",
    "assd",
    "hd95",
    "image_diagonal",
    "mask_surface",
    "surface_distances",
]
from .classwise import PerClassDiceMetric, PixelAccuracyMetric, class_index_map, lesion_mask  # noqa: E402,F401
from .text_consistency import (  # noqa: E402,F401
    LungFields,
    NoteAttributes,
    NoteParseError,
    mask_attributes,
    parse_note,
    score_consistency,
    try_parse_note,
)
