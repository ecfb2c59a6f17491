# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Boundary-distance metrics for binary lesion masks: HD95 and ASSD, in pixels (or physical units with ``spacing``).

Definitions follow the C2Seg paper, appendix A.5 ("Evaluation metrics"), which are those of medpy's
``medpy.metric.binary.hd95`` and ``medpy.metric.binary.assd``:

- the surface of a binary mask is the mask minus its binary erosion with the connectivity-1 (cross-shaped)
  structuring element (``scipy.ndimage.generate_binary_structure(ndim, 1)``), pixels outside the image count
  as background, so foreground pixels on the image border are surface pixels;
- ``d(x, S)`` is the Euclidean distance from pixel ``x`` to the nearest pixel of surface ``S``, computed with
  ``scipy.ndimage.distance_transform_edt`` of the complement of ``S`` (``sampling=spacing``);
- HD95 (``mode="pooled"``, the default) is the 95th percentile (numpy's linear interpolation) of the union of the
  directed distances ``{d(x, S_gt) | x in S_pred}`` and ``{d(y, S_pred) | y in S_gt}``;
  ``mode="max"`` is MONAI's ``HausdorffDistanceMetric(percentile=95)`` definition instead: the larger of the two
  directed 95th percentiles. The two agree when both directions give the same percentile and otherwise differ
  (``max`` is never smaller than ``pooled``);
- ASSD is the mean of the two directed mean surface distances, C2Seg eq. (10):
  ``(mean d(S_pred -> S_gt) + mean d(S_gt -> S_pred)) / 2``. MONAI's ``SurfaceDistanceMetric(symmetric=True)``
  instead averages the pooled distances, ``(sum_1 + sum_2) / (n_1 + n_2)``, which weights the direction with more
  surface pixels more and differs from ASSD whenever the two surfaces have different pixel counts.

Empty masks (medpy raises an error, MONAI returns NaN or inf): both masks empty gives ``0.0`` (perfect agreement on
a lesion-free image); exactly one empty gives ``empty_value``, by default the length of the image diagonal
``sqrt(sum((n_i * spacing_i) ** 2))``, which is larger than any distance two pixels of the image can have, so a
missed or hallucinated lesion is penalised with a finite worst case and never silently dropped from a mean.
``empty_value=float("nan")`` reproduces MONAI-like exclusion (NaN values are skipped by the metric reduction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from monai.config import NdarrayOrTensor
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, ignore_background, prepare_spacing
from monai.utils import MetricReduction, convert_to_numpy, look_up_option

__all__ = [
    "HD95_MODES",
    "mask_surface",
    "surface_distances",
    "image_diagonal",
    "hd95",
    "assd",
    "HausdorffDistance95Metric",
    "AverageSymmetricSurfaceDistanceMetric",
]

HD95_MODES = ("pooled", "max")

SpacingType = float | Sequence[float] | None


def _as_binary_mask(mask: NdarrayOrTensor, name: str) -> np.ndarray:
    """Convert ``mask`` to a boolean numpy array, refusing anything that is not binary ({0, 1} or bool)."""
    arr = convert_to_numpy(mask)
    if arr.dtype == np.bool_:
        return arr
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        values = np.unique(arr)
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise ValueError(
            f"{name} must be a binary mask with values in {{0, 1}}, got values [{shown}]; binarise it first "
            "(e.g. monai.transforms.AsDiscrete(threshold=0.5) for probabilities, value > 127 for 0/255 masks)."
        )
    return arr.astype(bool)


def _normalise_spacing(spacing: SpacingType, ndim: int) -> tuple[float, ...] | None:
    """Return ``spacing`` as one positive finite float per spatial axis, or None for unit spacing."""
    if spacing is None:
        return None
    if isinstance(spacing, Real) and not isinstance(spacing, bool):
        values = (float(spacing),) * ndim
    else:
        values = tuple(float(s) for s in np.asarray(spacing, dtype=float).ravel())
        if len(values) != ndim:
            raise ValueError(f"spacing must be a number or have one value per spatial axis ({ndim}), got {spacing}.")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing values must be positive and finite, got {spacing}.")
    return values


def _check_empty_value(empty_value: float | None) -> float | None:
    """Validate ``empty_value``: None, NaN, or a non-negative number (inf allowed)."""
    if empty_value is None:
        return None
    if isinstance(empty_value, bool) or not isinstance(empty_value, Real):
        raise ValueError(f"empty_value must be None or a float, got {empty_value!r}.")
    value = float(empty_value)
    if value < 0:
        raise ValueError(f"empty_value must be non-negative (a distance), NaN or None, got {empty_value}.")
    return value


def _check_mode(mode: str) -> str:
    if mode not in HD95_MODES:
        raise ValueError(f"mode must be one of {HD95_MODES}, got {mode!r}.")
    return mode


def image_diagonal(shape: Sequence[int], spacing: SpacingType = None) -> float:
    """
    Length of the diagonal of an image of the given spatial ``shape``: ``sqrt(sum((n_i * spacing_i) ** 2))``.

    It is strictly larger than the distance between any two pixel centres of the image (at most
    ``sqrt(sum(((n_i - 1) * spacing_i) ** 2))``), so it is a worst case for HD95 and ASSD.

    Args:
        shape: spatial shape, e.g. ``(H, W)`` or ``(H, W, D)``.
        spacing: pixel size per axis (one number for isotropic pixels, or one value per axis);
            ``None`` (default) means 1, i.e. the result is in pixels.

    Raises:
        ValueError: when ``spacing`` has the wrong length or non-positive values.
    """
    sizes = np.asarray(tuple(shape), dtype=float)
    sp = _normalise_spacing(spacing, len(sizes))
    if sp is not None:
        sizes = sizes * np.asarray(sp)
    return float(np.sqrt(np.sum(sizes**2)))


def mask_surface(mask: NdarrayOrTensor) -> np.ndarray:
    """
    Surface (boundary) pixels of a binary mask: the mask minus its erosion with the connectivity-1
    (cross-shaped) structuring element; pixels outside the image count as background (as in medpy).

    Args:
        mask: binary mask (bool or values in {0, 1}) of any number of spatial dimensions, no channel axis.

    Returns:
        boolean array of the same shape, True on surface pixels (empty when ``mask`` is empty).

    Raises:
        ValueError: when ``mask`` is not binary.
    """
    arr = _as_binary_mask(mask, "mask")
    if not arr.any():
        return np.zeros(arr.shape, dtype=bool)
    structure = ndimage.generate_binary_structure(arr.ndim, 1)
    eroded = ndimage.binary_erosion(arr, structure=structure, iterations=1, border_value=0)
    return arr & ~eroded


def _foreground_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by one pixel on each side, clipped to the image."""
    coords = np.argwhere(mask)
    lo = np.maximum(coords.min(axis=0) - 1, 0)
    hi = np.minimum(coords.max(axis=0) + 2, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def surface_distances(
    pred: NdarrayOrTensor, gt: NdarrayOrTensor, spacing: SpacingType = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    Directed surface distances between two non-empty binary masks, C2Seg appendix A.5 / medpy.

    The masks are cropped to the bounding box of their union grown by one background pixel before the surfaces
    are extracted, which changes no distance (every surface pixel lies in the box, and the added background
    ring plays the role of the outside of the image) but keeps large images fast.

    Args:
        pred: predicted binary mask (bool or {0, 1}), spatial dims only, e.g. (H, W) or (H, W, D).
        gt: ground-truth binary mask of the same shape.
        spacing: pixel size per axis (one number or one value per axis); ``None`` (default) means 1 (pixels).

    Returns:
        ``(d_pred_to_gt, d_gt_to_pred)``: float64 arrays with, for every surface pixel of ``pred`` (resp. ``gt``),
        the Euclidean distance to the nearest surface pixel of ``gt`` (resp. ``pred``).

    Raises:
        ValueError: when the shapes differ, a mask is not binary or is empty, or ``spacing`` is invalid.
    """
    p = _as_binary_mask(pred, "pred")
    g = _as_binary_mask(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}.")
    if not p.any() or not g.any():
        raise ValueError("surface_distances needs two non-empty masks; use hd95/assd for the empty cases.")
    sp = _normalise_spacing(spacing, p.ndim)
    box = _foreground_box(p | g)
    surf_p, surf_g = mask_surface(p[box]), mask_surface(g[box])
    # distance_transform_edt gives, for each non-zero pixel, the distance to the nearest zero pixel
    to_gt = ndimage.distance_transform_edt(~surf_g, sampling=sp)
    to_pred = ndimage.distance_transform_edt(~surf_p, sampling=sp)
    return np.asarray(to_gt[surf_p], dtype=np.float64), np.asarray(to_pred[surf_g], dtype=np.float64)


def _empty_case(p: np.ndarray, g: np.ndarray, empty_value: float | None, spacing: SpacingType) -> float | None:
    """Value for the empty cases (0.0 if both empty, empty_value/diagonal if one is), None if neither is empty."""
    p_any, g_any = bool(p.any()), bool(g.any())
    if p_any and g_any:
        return None
    if not p_any and not g_any:
        return 0.0
    return image_diagonal(p.shape, spacing) if empty_value is None else float(empty_value)


def _prepare_pair(pred: NdarrayOrTensor, gt: NdarrayOrTensor) -> tuple[np.ndarray, np.ndarray]:
    p = _as_binary_mask(pred, "pred")
    g = _as_binary_mask(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}.")
    return p, g


def hd95(
    pred: NdarrayOrTensor,
    gt: NdarrayOrTensor,
    mode: str = "pooled",
    empty_value: float | None = None,
    spacing: SpacingType = None,
) -> float:
    """
    95th-percentile Hausdorff distance between two binary masks (C2Seg appendix A.5, medpy ``hd95``).

    Args:
        pred: predicted binary mask (bool or {0, 1}), spatial dims only, e.g. (H, W) or (H, W, D).
        gt: ground-truth binary mask of the same shape.
        mode: ``"pooled"`` (default): 95th percentile of both directed distance sets concatenated (C2Seg paper,
            medpy). ``"max"``: the larger of the two directed 95th percentiles (MONAI
            ``HausdorffDistanceMetric(percentile=95)``). Percentiles use numpy's linear interpolation.
        empty_value: value when exactly one mask is empty. ``None`` (default) uses the image diagonal
            (see :func:`image_diagonal`); any non-negative float, ``inf`` or ``nan`` is returned as given.
            Both masks empty always gives ``0.0``.
        spacing: pixel size per axis (one number or one value per axis); ``None`` (default) means pixels.

    Returns:
        the distance as a Python float.

    Raises:
        ValueError: when the masks are not binary or differ in shape, or ``mode``, ``empty_value`` or ``spacing``
            is invalid.

    Examples::

        >>> a = np.zeros((16, 16)); a[5, 2] = 1; a[5, 12] = 1
        >>> b = np.zeros((16, 16)); b[5, 2] = 1
        >>> hd95(a, b), hd95(a, b, mode="max")
        (9.0, 9.5)
    """
    mode = _check_mode(mode)
    empty_value = _check_empty_value(empty_value)
    p, g = _prepare_pair(pred, gt)
    _normalise_spacing(spacing, p.ndim)
    special = _empty_case(p, g, empty_value, spacing)
    if special is not None:
        return special
    d_pg, d_gp = surface_distances(p, g, spacing)
    if mode == "pooled":
        return float(np.percentile(np.concatenate([d_pg, d_gp]), 95))
    return float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))


def assd(
    pred: NdarrayOrTensor, gt: NdarrayOrTensor, empty_value: float | None = None, spacing: SpacingType = None
) -> float:
    """
    Average symmetric surface distance, C2Seg eq. (10) / medpy ``assd``:
    ``(mean d(S_pred -> S_gt) + mean d(S_gt -> S_pred)) / 2``.

    Args:
        pred: predicted binary mask (bool or {0, 1}), spatial dims only, e.g. (H, W) or (H, W, D).
        gt: ground-truth binary mask of the same shape.
        empty_value: value when exactly one mask is empty. ``None`` (default) uses the image diagonal
            (see :func:`image_diagonal`); any non-negative float, ``inf`` or ``nan`` is returned as given.
            Both masks empty always gives ``0.0``.
        spacing: pixel size per axis (one number or one value per axis); ``None`` (default) means pixels.

    Returns:
        the distance as a Python float.

    Raises:
        ValueError: when the masks are not binary or differ in shape, or ``empty_value`` or ``spacing`` is invalid.

    Examples::

        >>> a = np.zeros((16, 16)); a[5, 2] = 1; a[5, 12] = 1
        >>> b = np.zeros((16, 16)); b[5, 2] = 1
        >>> assd(a, b)  # (mean([0, 10]) + mean([0])) / 2; MONAI's symmetric mean gives 10 / 3
        2.5
    """
    empty_value = _check_empty_value(empty_value)
    p, g = _prepare_pair(pred, gt)
    _normalise_spacing(spacing, p.ndim)
    special = _empty_case(p, g, empty_value, spacing)
    if special is not None:
        return special
    d_pg, d_gp = surface_distances(p, g, spacing)
    return float((d_pg.mean() + d_gp.mean()) / 2.0)


class _PerCaseSurfaceMetric(CumulativeIterationMetric):
    """
    Shared logic of the per-image boundary metrics: input checks, channel selection, per-(image, channel) loop
    and MONAI-style reduction. Subclasses implement :meth:`_case_value`.
    """

    def __init__(
        self,
        include_background: bool = False,
        empty_value: float | None = None,
        spacing: SpacingType | Sequence[Sequence[float]] = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.empty_value = _check_empty_value(empty_value)
        self.spacing = spacing
        self.reduction = look_up_option(reduction, MetricReduction)
        self.get_not_nans = get_not_nans

    def _case_value(self, pred: np.ndarray, gt: np.ndarray, spacing: Any) -> float:
        raise NotImplementedError(f"Subclass {self.__class__.__name__} must implement this method.")

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """
        Args:
            y_pred: binarised prediction, batch-first (B, C, spatial...), values in {0, 1} or bool.
            y: binarised ground truth of the same shape.
            kwargs: ``spacing`` overrides the constructor's ``spacing`` for this call (same formats).

        Returns:
            float32 tensor (B, C') of per-image, per-channel values on the device of ``y_pred``.

        Raises:
            ValueError: when ``y`` is missing, ``y_pred`` has fewer than 3 dims, the shapes differ or a value is
                not binary.
        """
        if y is None:
            raise ValueError(f"{self.__class__.__name__} needs the ground truth y.")
        if y_pred.ndim < 3:
            raise ValueError(f"y_pred should have at least 3 dimensions (batch, channel, spatial), got {y_pred.ndim}.")
        if y_pred.shape != y.shape:
            raise ValueError(
                f"y_pred and y should have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        pred_np = _as_binary_mask(y_pred, "y_pred")
        gt_np = _as_binary_mask(y, "y")
        batch_size, n_channels = pred_np.shape[:2]
        spacing = kwargs.get("spacing", self.spacing)
        spacing_list = prepare_spacing(spacing=spacing, batch_size=batch_size, img_dim=pred_np.ndim - 2)
        out = np.empty((batch_size, n_channels), dtype=np.float32)
        for b, c in np.ndindex(batch_size, n_channels):
            out[b, c] = self._case_value(pred_np[b, c], gt_np[b, c], spacing_list[b])
        return torch.as_tensor(out, device=y_pred.device)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Reduce the per-image values gathered so far (across iterations and, under DDP, across ranks).

        Args:
            reduction: override of the constructor's ``reduction`` (same values); NaN values are skipped.

        Raises:
            ValueError: when the buffer is not a tensor (nothing was computed yet).
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data)}.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


class HausdorffDistance95Metric(_PerCaseSurfaceMetric):
    """
    Per-image 95th-percentile Hausdorff distance (HD95) of binary masks, aggregated like MONAI metrics
    (across iterations, and across ranks under DDP, by :class:`monai.metrics.CumulativeIterationMetric`).

    ``y_pred`` and ``y`` are batch-first binarised tensors (B, 1, H, W[, D]) or one-hot (B, C, H, W[, D]), or lists
    of channel-first tensors; values must be in {0, 1} (or bool). The per-image values have shape (B, C') where C'
    is C, or C - 1 when the background channel is dropped. See :func:`hd95` for the definition, the difference
    between ``mode="pooled"`` (default, C2Seg appendix A.5 / medpy) and ``mode="max"`` (MONAI) and the empty cases.

    Args:
        include_background: whether to keep channel 0. ``False`` (default) drops it when there is more than one
            channel (MONAI's ``ignore_background``); a single-channel input is always kept, so the default works for
            both (B, 1, ...) foreground masks and (B, 2, ...) one-hot masks.
        mode: ``"pooled"`` (default) or ``"max"``, see :func:`hd95`.
        empty_value: value when exactly one of the two masks of an image is empty; ``None`` (default) uses the image
            diagonal, ``float("nan")`` excludes such images from the mean as MONAI does. Both empty gives ``0.0``.
        spacing: pixel size: ``None`` (default, pixels), one number, one value per spatial axis, or one such
            sequence per batch item (as ``monai.metrics.utils.prepare_spacing``). A ``spacing`` keyword given to
            ``__call__`` overrides it for that call.
        reduction: reduction over the (B, C') values, ``"mean"`` (default), ``"sum"``, ``"mean_batch"``,
            ``"sum_batch"``, ``"mean_channel"``, ``"sum_channel"`` or ``"none"``; NaN values are skipped.
        get_not_nans: whether ``aggregate()`` also returns the count of not-NaN values. Defaults to ``False``.

    Raises:
        ValueError: when ``mode``, ``empty_value`` or ``reduction`` is invalid.

    Examples::

        metric = HausdorffDistance95Metric()
        for batch in loader:
            metric(y_pred=binarised_pred, y=batch["label"])  # (B, 1) per-image values
        mean_hd95 = metric.aggregate().item()
        metric.reset()
    """

    def __init__(
        self,
        include_background: bool = False,
        mode: str = "pooled",
        empty_value: float | None = None,
        spacing: SpacingType | Sequence[Sequence[float]] = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            include_background=include_background,
            empty_value=empty_value,
            spacing=spacing,
            reduction=reduction,
            get_not_nans=get_not_nans,
        )
        self.mode = _check_mode(mode)

    def _case_value(self, pred: np.ndarray, gt: np.ndarray, spacing: Any) -> float:
        return hd95(pred, gt, mode=self.mode, empty_value=self.empty_value, spacing=spacing)


class AverageSymmetricSurfaceDistanceMetric(_PerCaseSurfaceMetric):
    """
    Per-image average symmetric surface distance (ASSD, C2Seg eq. (10) / medpy ``assd``) of binary masks,
    aggregated like MONAI metrics (across iterations, and across ranks under DDP).

    Differs from MONAI's ``SurfaceDistanceMetric(symmetric=True)``, which averages the pooled distances of both
    directions instead of averaging the two directed means; see :func:`assd` and the module docstring. Inputs,
    output shape and empty cases are as in :class:`HausdorffDistance95Metric`.

    Args:
        include_background: whether to keep channel 0. ``False`` (default) drops it when there is more than one
            channel; a single-channel input is always kept.
        empty_value: value when exactly one of the two masks of an image is empty; ``None`` (default) uses the image
            diagonal, ``float("nan")`` excludes such images from the mean. Both empty gives ``0.0``.
        spacing: pixel size: ``None`` (default, pixels), one number, one value per spatial axis, or one such
            sequence per batch item. A ``spacing`` keyword given to ``__call__`` overrides it for that call.
        reduction: reduction over the (B, C') values, ``"mean"`` (default), ``"sum"``, ``"mean_batch"``,
            ``"sum_batch"``, ``"mean_channel"``, ``"sum_channel"`` or ``"none"``; NaN values are skipped.
        get_not_nans: whether ``aggregate()`` also returns the count of not-NaN values. Defaults to ``False``.

    Raises:
        ValueError: when ``empty_value`` or ``reduction`` is invalid.
    """

    def _case_value(self, pred: np.ndarray, gt: np.ndarray, spacing: Any) -> float:
        return assd(pred, gt, empty_value=self.empty_value, spacing=spacing)
