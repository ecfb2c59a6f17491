# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Pixel accuracy and per-class Dice, for binary (lesion vs background) and K-class outputs alike.

Interface (used by every bundle, kept stable)
=============================================
- ``PixelAccuracy`` in every bundle's ``evaluate.json`` (``validate#additional_metrics``):
  :class:`common.handlers.PixelAccuracyHandler` on ``from_engine(['pred', 'label'])``; the per-image values go to
  ``PixelAccuracy_raw.csv`` and a ``PixelAccuracy`` column of ``per_case.csv``.
  Both are shared blocks of ``tests/test_config_blocks.py`` (``validate#additional_metrics`` and ``finalize`` of
  ``evaluate.json``): a new bundle copies them from ``bundles/unet_baseline/configs/evaluate.json``, where
  ``finalize`` calls ``write_per_case_table(@eval_dir, ['Dice', 'IoU', 'HD95', 'ASSD', 'PixelAccuracy'],
  datalist_file=@datalist_file, split=@eval_split)`` so ``per_case.csv`` carries each case's ``site``/``class``.
- A K-class bundle (e.g. ``bundles/mcdrl``: channel 0 background, channel k + 1 lesion class k) reports the binary
  lesion-vs-background ``Dice``/``IoU``/``HD95``/``ASSD`` like every other bundle (collapse the classes with
  :func:`lesion_mask`) and, beside them, :class:`common.handlers.PerClassDiceHandler` on its class maps.

Label formats accepted (``y_pred`` and ``y``, batch first, channel second)
==========================================================================
:func:`class_index_map` reads both arguments the same way:

- one channel (B, 1, H, W): a class-index map (values 0..K, 0 = background; a binary mask is the case K = 1);
  values are rounded to the nearest integer;
- C > 1 channels (B, C, H, W): one-hot or per-class scores/probabilities; the class is the ``argmax`` over
  channels, channel 0 = background.

Definitions (per image, then averaged over images as the other metrics; ``common.metrics`` module docstring)
=============================================================================================================
- Pixel accuracy (the ``Acc`` of MCDRL's Table 1): ``#{p : pred(p) = gt(p)} / #pixels`` on the class-index maps;
  for binary masks, the share of pixels whose lesion/background label is right.
- Per-class Dice of class k (for K-class outputs; MCDRL's Table 2 reports Dice per lesion type): ``2|P_k ∩ G_k| / (|P_k| + |G_k|)`` with
  ``P_k = {pred = k}``, ``G_k = {gt = k}``, for k = 1..K. An image where class k is absent from both prediction and
  ground truth gives NaN for k (not counted in k's mean): with one lesion class per image, scoring such images 1.0
  would fill every class's mean with images that never showed it. Present in exactly one of the two: 0.0.
- Lesion-vs-background Dice of a K-class output: the ordinary binary Dice of :func:`lesion_mask` (class > 0).
"""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = [
    "class_index_map",
    "lesion_mask",
    "pixel_accuracy",
    "per_class_dice",
    "PixelAccuracyMetric",
    "PerClassDiceMetric",
]


def class_index_map(y: torch.Tensor) -> torch.Tensor:
    """
    The (B, 1, *spatial) integer class map of a batch (see "Label formats accepted" in the module docstring).

    Args:
        y: (B, C, *spatial) tensor, ``C == 1`` an index map or binary mask, ``C > 1`` one-hot or scores.

    Raises:
        ValueError: when ``y`` has fewer than 3 dimensions (no batch, channel and spatial axes).
    """
    y = torch.as_tensor(y)
    if y.ndim < 3:
        raise ValueError(f"expected a (B, C, *spatial) tensor, got shape {tuple(y.shape)}.")
    if y.shape[1] == 1:
        return torch.round(y.float()).long()
    return torch.argmax(y, dim=1, keepdim=True)


def lesion_mask(y: torch.Tensor) -> torch.Tensor:
    """
    The binary (B, 1, *spatial) float mask ``class > 0`` (any lesion class vs background) of a batch.

    Args:
        y: (B, C, *spatial) tensor in one of the accepted formats (module docstring).
    """
    return (class_index_map(y) > 0).float()


def _check_pair(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = class_index_map(y_pred), class_index_map(y)
    if p.shape[0] != g.shape[0] or p.shape[2:] != g.shape[2:]:
        raise ValueError(f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)}: batch or spatial sizes differ.")
    return p, g


def pixel_accuracy(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """
    Per-image pixel accuracy (module docstring), shape (B, 1).

    Args:
        y_pred: (B, C, *spatial) prediction, binarised or one-hot/scores.
        y: (B, C', *spatial) ground truth, same batch and spatial sizes.

    Raises:
        ValueError: when the batch or spatial sizes differ.
    """
    p, g = _check_pair(y_pred, y)
    return (p == g).flatten(1).float().mean(dim=1, keepdim=True)


def per_class_dice(y_pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """
    Per-image, per-class Dice for classes 1..K (module docstring), shape (B, K), NaN where class k is absent from
    both prediction and ground truth.

    Args:
        y_pred: (B, C, *spatial) prediction (index map or one-hot/scores with channel 0 = background).
        y: (B, C', *spatial) ground truth, same batch and spatial sizes.
        num_classes: K, the number of lesion classes (background not counted).

    Raises:
        ValueError: when ``num_classes < 1``, the sizes differ, or a map holds a class index outside 0..K.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    p, g = _check_pair(y_pred, y)
    for name, m in (("y_pred", p), ("y", g)):
        if m.numel() and (int(m.min()) < 0 or int(m.max()) > num_classes):
            raise ValueError(f"{name} holds class indices {int(m.min())}..{int(m.max())}, expected 0..{num_classes}.")
    classes = torch.arange(1, num_classes + 1, device=p.device).view(1, -1, *([1] * (p.ndim - 2)))
    pk, gk = (p == classes).flatten(2).float(), (g == classes).flatten(2).float()  # (B, K, N)
    inter = (pk * gk).sum(-1)
    total = pk.sum(-1) + gk.sum(-1)
    dice = 2.0 * inter / total.clamp(min=1.0)
    return torch.where(total > 0, dice, torch.full_like(dice, float("nan")))


class PixelAccuracyMetric(CumulativeIterationMetric):
    """
    Per-image pixel accuracy (module docstring), accumulated over iterations (and DDP ranks) and reduced.

    Args:
        reduction: MONAI reduction over the (N, 1) per-image values, default ``"mean"``.
        get_not_nans: also return the count of non-NaN values, default ``False``.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore
        if y is None:
            raise ValueError("PixelAccuracyMetric needs the ground truth y.")
        return pixel_accuracy(y_pred, y)

    def aggregate(self, reduction: MetricReduction | str | None = None):  # type: ignore[override]
        """Reduce the per-image values gathered so far (``reduction`` overrides the constructor's)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class PerClassDiceMetric(CumulativeIterationMetric):
    """
    Per-image, per-class Dice for K-class outputs (module docstring), accumulated and reduced; NaN entries (class
    absent from both maps) are skipped by the reduction.

    Args:
        num_classes: K, the number of lesion classes (background not counted).
        reduction: MONAI reduction over the (N, K) values, default ``"mean"`` (one number: the mean of every defined
            image-class value); ``"mean_batch"`` gives the (K,) per-class means (MONAI reports 0.0 for a class
            with no defined value: use ``get_not_nans=True`` to tell it from a real 0).
        get_not_nans: also return the count of non-NaN values, default ``False``.
    """

    def __init__(
        self, num_classes: int, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore
        if y is None:
            raise ValueError("PerClassDiceMetric needs the ground truth y.")
        return per_class_dice(y_pred, y, self.num_classes)

    def aggregate(self, reduction: MetricReduction | str | None = None):  # type: ignore[override]
        """Reduce the per-image, per-class values gathered so far (``reduction`` overrides the constructor's)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
