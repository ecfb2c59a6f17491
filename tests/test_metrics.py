# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the segmentation metrics (Dice and IoU through MONAI, HD95 and ASSD from common.metrics) and handlers."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from scipy import ndimage
from scipy.spatial.distance import cdist

from monai.handlers import IgniteMetricHandler, MetricsSaver, from_engine
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU, SurfaceDistanceMetric

from common.handlers.metrics import AverageSymmetricSurfaceDistanceHandler, HausdorffDistance95Handler
from common.metrics import (
    AverageSymmetricSurfaceDistanceMetric,
    HausdorffDistance95Metric,
    assd,
    hd95,
    image_diagonal,
    mask_surface,
    surface_distances,
)

# ---------------------------------------------------------------------------------------------------------------
# independent reference implementation: boundary by explicit neighbour test, distances by brute-force cdist


def _brute_boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with at least one axis neighbour (2 * ndim of them) that is background or off-image."""
    mask = mask.astype(bool)
    padded = np.pad(mask, 1, constant_values=False)
    centre = tuple(slice(1, -1) for _ in range(mask.ndim))
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            interior &= np.roll(padded, shift, axis=axis)[centre]
    return mask & ~interior


def _brute_directed(pred: np.ndarray, gt: np.ndarray, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    scale = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, dtype=float)
    bp = np.argwhere(_brute_boundary(pred)) * scale
    bg = np.argwhere(_brute_boundary(gt)) * scale
    d = cdist(bp, bg)
    return d.min(axis=1), d.min(axis=0)


def _brute_hd95_pooled(pred, gt, spacing=None) -> float:
    d1, d2 = _brute_directed(pred, gt, spacing)
    return float(np.percentile(np.concatenate([d1, d2]), 95))


def _brute_hd95_max(pred, gt, spacing=None) -> float:
    d1, d2 = _brute_directed(pred, gt, spacing)
    return float(max(np.percentile(d1, 95), np.percentile(d2, 95)))


def _brute_assd(pred, gt, spacing=None) -> float:
    d1, d2 = _brute_directed(pred, gt, spacing)
    return float((d1.mean() + d2.mean()) / 2)


def _blob(rng: np.random.Generator, shape, sigma: float = 2.5, frac: float = 0.15) -> np.ndarray:
    """Random smooth blob mask (possibly several components) covering about ``frac`` of the image."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1 - frac)


def _two_point_case() -> tuple[np.ndarray, np.ndarray]:
    """pred: pixels (5, 2) and (5, 12); gt: pixel (5, 2). Directed distances: pred->gt [0, 10], gt->pred [0]."""
    pred = np.zeros((16, 16), dtype=np.uint8)
    pred[5, 2] = pred[5, 12] = 1
    gt = np.zeros((16, 16), dtype=np.uint8)
    gt[5, 2] = 1
    return pred, gt


def _t(*masks: np.ndarray) -> torch.Tensor:
    """Stack spatial masks into a batch-first single-channel float tensor (B, 1, ...)."""
    return torch.as_tensor(np.stack([m.astype(np.float32) for m in masks])[:, None])


# ---------------------------------------------------------------------------------------------------------------
# surfaces and distances


def test_mask_surface_known_shapes():
    square = np.zeros((9, 9), dtype=bool)
    square[2:7, 2:7] = True
    surf = mask_surface(square)
    ring = square.copy()
    ring[3:6, 3:6] = False
    np.testing.assert_array_equal(surf, ring)  # 5x5 square -> its 16-pixel ring
    dot = np.zeros((5, 5), dtype=bool)
    dot[2, 2] = True
    np.testing.assert_array_equal(mask_surface(dot), dot)
    full = np.ones((4, 5), dtype=bool)  # touching the image border: outside counts as background
    expected = np.ones((4, 5), dtype=bool)
    expected[1:3, 1:4] = False
    np.testing.assert_array_equal(mask_surface(full), expected)
    assert not mask_surface(np.zeros((4, 4))).any()


@pytest.mark.parametrize("shape", [(40, 48), (14, 16, 12)])
def test_mask_surface_matches_independent_boundary(shape):
    rng = np.random.default_rng(3)
    for _ in range(3):
        mask = _blob(rng, shape, frac=0.3)
        np.testing.assert_array_equal(mask_surface(mask), _brute_boundary(mask))


def test_surface_distances_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(np.zeros((4, 4)), np.ones((4, 4)))


# ---------------------------------------------------------------------------------------------------------------
# hand-made masks with known answers


@pytest.mark.parametrize("k", [1, 3, 6])
def test_parallel_lines_offset_by_k(k):
    # one-pixel-thick lines are all surface; each point's nearest partner is straight across, at distance k
    pred = np.zeros((16, 16), dtype=np.uint8)
    gt = np.zeros((16, 16), dtype=np.uint8)
    gt[4, 2:12] = 1
    pred[4 + k, 2:12] = 1
    for mode in ("pooled", "max"):
        assert hd95(pred, gt, mode=mode) == pytest.approx(k)
    assert assd(pred, gt) == pytest.approx(k)
    # anisotropic spacing: rows are 2 units apart, columns 1
    assert hd95(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(2 * k)
    assert assd(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(2 * k)


def test_single_pixel_masks():
    pred = np.zeros((12, 20), dtype=bool)
    gt = np.zeros((12, 20), dtype=bool)
    pred[2, 3] = True
    gt[7, 15] = True
    assert hd95(pred, gt) == pytest.approx(13.0)  # sqrt(5**2 + 12**2)
    assert hd95(pred, gt, mode="max") == pytest.approx(13.0)
    assert assd(pred, gt) == pytest.approx(13.0)
    assert hd95(pred, pred) == 0.0 and assd(pred, pred) == 0.0


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside MONAI 1.6.1 itself
def test_pooled_and_max_differ_on_known_case_and_monai_matches_max():
    pred, gt = _two_point_case()
    # pooled distances [0, 10, 0]: linear 95th percentile at index 1.9 -> 0.9 * 10 = 9.0
    assert hd95(pred, gt, mode="pooled") == pytest.approx(9.0)
    # directed 95th percentiles: [0, 10] -> 9.5, [0] -> 0; max 9.5
    assert hd95(pred, gt, mode="max") == pytest.approx(9.5)
    assert hd95(pred, gt, mode="pooled") != pytest.approx(hd95(pred, gt, mode="max"))
    # ASSD = (mean([0, 10]) + mean([0])) / 2 = 2.5, while the pooled mean (MONAI symmetric) is 10 / 3
    assert assd(pred, gt) == pytest.approx(2.5)
    monai_hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(_t(pred), _t(gt))
    assert monai_hd.item() == pytest.approx(9.5)
    monai_sd = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(_t(pred), _t(gt))
    assert monai_sd.item() == pytest.approx(10 / 3)


def test_hd95_is_symmetric_in_its_arguments():
    pred, gt = _two_point_case()
    assert hd95(gt, pred) == pytest.approx(hd95(pred, gt))
    assert assd(gt, pred) == pytest.approx(assd(pred, gt))


# ---------------------------------------------------------------------------------------------------------------
# random blobs against the brute-force reference


@pytest.mark.parametrize("spacing", [None, (1.5, 0.7)])
def test_random_blobs_match_bruteforce_2d(spacing):
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(6):
        pred, gt = _blob(rng, (40, 48)), _blob(rng, (40, 48))
        pooled, mx = hd95(pred, gt, spacing=spacing), hd95(pred, gt, mode="max", spacing=spacing)
        assert pooled == pytest.approx(_brute_hd95_pooled(pred, gt, spacing), rel=1e-9, abs=1e-9)
        assert mx == pytest.approx(_brute_hd95_max(pred, gt, spacing), rel=1e-9, abs=1e-9)
        assert assd(pred, gt, spacing=spacing) == pytest.approx(_brute_assd(pred, gt, spacing), rel=1e-9, abs=1e-9)
        differ += not math.isclose(pooled, mx)
    assert differ > 0  # the two HD95 definitions disagree on generic masks


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside MONAI 1.6.1 itself
def test_random_blobs_max_mode_matches_monai():
    rng = np.random.default_rng(1)
    preds = [_blob(rng, (40, 48)) for _ in range(4)]
    gts = [_blob(rng, (40, 48)) for _ in range(4)]
    monai_hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(_t(*preds), _t(*gts))
    ours = HausdorffDistance95Metric(mode="max", reduction="none")(_t(*preds), _t(*gts))
    np.testing.assert_allclose(ours.numpy(), monai_hd.numpy(), rtol=1e-5)


def test_random_blobs_match_bruteforce_3d():
    rng = np.random.default_rng(2)
    for spacing in (None, (2.0, 1.0, 0.5)):
        pred, gt = _blob(rng, (14, 16, 12), sigma=2.0), _blob(rng, (14, 16, 12), sigma=2.0)
        assert hd95(pred, gt, spacing=spacing) == pytest.approx(_brute_hd95_pooled(pred, gt, spacing))
        assert hd95(pred, gt, mode="max", spacing=spacing) == pytest.approx(_brute_hd95_max(pred, gt, spacing))
        assert assd(pred, gt, spacing=spacing) == pytest.approx(_brute_assd(pred, gt, spacing))
    a = np.zeros((6, 6, 6), dtype=bool)
    b = np.zeros((6, 6, 6), dtype=bool)
    a[1, 1, 1] = True
    b[2, 3, 3] = True
    assert hd95(a, b) == pytest.approx(3.0) and assd(a, b) == pytest.approx(3.0)  # sqrt(1 + 4 + 4)
    metric = HausdorffDistance95Metric(reduction="none")
    assert metric(_t(a), _t(b)).item() == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------------------------
# empty cases


def test_empty_cases_functions():
    empty = np.zeros((16, 16), dtype=np.uint8)
    lesion = np.zeros((16, 16), dtype=np.uint8)
    lesion[3:6, 3:6] = 1
    diag = math.sqrt(16**2 + 16**2)
    assert image_diagonal((16, 16)) == pytest.approx(diag)
    for fn in (hd95, assd):
        assert fn(empty, empty) == 0.0  # both empty: perfect agreement
        assert fn(lesion, empty) == pytest.approx(diag)  # false positive on a lesion-free image
        assert fn(empty, lesion) == pytest.approx(diag)  # missed lesion
        assert fn(empty, lesion, empty_value=7.5) == 7.5
        assert fn(empty, empty, empty_value=7.5) == 0.0
        assert math.isnan(fn(empty, lesion, empty_value=float("nan")))
        assert fn(empty, lesion, spacing=(2.0, 1.0)) == pytest.approx(math.sqrt(32**2 + 16**2))
    assert hd95(empty, lesion, mode="max") == pytest.approx(diag)
    # the diagonal exceeds the largest distance two pixels of the image can have
    far_a = np.zeros((16, 16), dtype=bool)
    far_b = np.zeros((16, 16), dtype=bool)
    far_a[0, 0] = far_b[15, 15] = True
    assert hd95(far_a, far_b) == pytest.approx(math.sqrt(2 * 15**2)) and hd95(far_a, far_b) < diag


def test_empty_cases_metric_classes_and_nan_exclusion():
    empty = np.zeros((16, 16), dtype=np.uint8)
    lesion = np.zeros((16, 16), dtype=np.uint8)
    lesion[4, 2:12] = 1  # a one-pixel line: all surface
    shifted = np.roll(lesion, 2, axis=0)  # the same line 2 rows lower: HD95 = ASSD = 2
    y_pred = _t(empty, lesion, empty, shifted)
    y = _t(empty, empty, lesion, lesion)
    diag = math.sqrt(512)
    for cls in (HausdorffDistance95Metric, AverageSymmetricSurfaceDistanceMetric):
        per_image = cls(reduction="none")(y_pred, y)
        np.testing.assert_allclose(per_image.numpy()[:, 0], [0.0, diag, diag, 2.0], rtol=1e-6)
        metric = cls()
        metric(y_pred, y)
        assert metric.aggregate().item() == pytest.approx((0 + diag + diag + 2) / 4, rel=1e-6)
        # NaN for one-empty images: excluded from the mean, as MONAI does
        metric = cls(empty_value=float("nan"), get_not_nans=True)
        metric(y_pred, y)
        value, not_nans = metric.aggregate()
        assert value.item() == pytest.approx(1.0) and not_nans.item() == 2  # mean of 0.0 and 2.0


# ---------------------------------------------------------------------------------------------------------------
# metric classes: formats, aggregation, spacing, errors


def test_metric_one_hot_and_list_inputs():
    rng = np.random.default_rng(4)
    preds = [_blob(rng, (32, 32)) for _ in range(2)]
    gts = [_blob(rng, (32, 32)) for _ in range(2)]
    expected = [hd95(p, g) for p, g in zip(preds, gts)]
    single = HausdorffDistance95Metric(reduction="none")(_t(*preds), _t(*gts))
    np.testing.assert_allclose(single.numpy()[:, 0], expected, rtol=1e-6)
    one_hot_p = torch.cat([1 - _t(*preds), _t(*preds)], dim=1)
    one_hot_y = torch.cat([1 - _t(*gts), _t(*gts)], dim=1)
    fg_only = HausdorffDistance95Metric(reduction="none")(one_hot_p, one_hot_y)
    assert fg_only.shape == (2, 1)
    np.testing.assert_allclose(fg_only.numpy()[:, 0], expected, rtol=1e-6)
    both = HausdorffDistance95Metric(include_background=True, reduction="none")(one_hot_p, one_hot_y)
    assert both.shape == (2, 2)
    np.testing.assert_allclose(both.numpy()[:, 0], [hd95(~p, ~g) for p, g in zip(preds, gts)], rtol=1e-6)
    as_list = AverageSymmetricSurfaceDistanceMetric(reduction="none")(list(_t(*preds)), list(_t(*gts)))
    np.testing.assert_allclose(as_list.numpy()[:, 0], [assd(p, g) for p, g in zip(preds, gts)], rtol=1e-6)


def test_metric_aggregates_across_iterations_per_image():
    rng = np.random.default_rng(5)
    preds = [_blob(rng, (32, 32)) for _ in range(3)]
    gts = [_blob(rng, (32, 32)) for _ in range(3)]
    for cls, fn in ((HausdorffDistance95Metric, hd95), (AverageSymmetricSurfaceDistanceMetric, assd)):
        metric = cls()
        metric(_t(preds[0]), _t(gts[0]))  # iteration 1: one image
        metric(_t(preds[1], preds[2]), _t(gts[1], gts[2]))  # iteration 2: two images
        assert metric.get_buffer().shape == (3, 1)
        expected = np.mean([fn(p, g) for p, g in zip(preds, gts)])  # mean over images, not over iterations
        assert metric.aggregate().item() == pytest.approx(expected, rel=1e-6)
        metric.reset()
        metric(_t(preds[0]), _t(gts[0]))
        assert metric.aggregate().item() == pytest.approx(fn(preds[0], gts[0]), rel=1e-6)


def test_metric_spacing_constructor_and_call_override():
    pred = np.zeros((16, 16), dtype=np.uint8)
    gt = np.zeros((16, 16), dtype=np.uint8)
    gt[4, 2:12] = 1
    pred[7, 2:12] = 1
    assert HausdorffDistance95Metric(spacing=(2.0, 1.0))(_t(pred), _t(gt)).item() == pytest.approx(6.0)
    metric = AverageSymmetricSurfaceDistanceMetric(spacing=0.5)
    assert metric(_t(pred), _t(gt)).item() == pytest.approx(1.5)
    assert metric(_t(pred), _t(gt), spacing=(3.0, 1.0)).item() == pytest.approx(9.0)
    per_item = HausdorffDistance95Metric(reduction="none")(_t(pred, pred), _t(gt, gt), spacing=[(1.0, 1.0), (2.0, 1.0)])
    np.testing.assert_allclose(per_item.numpy()[:, 0], [3.0, 6.0])


def test_invalid_inputs_raise():
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    with pytest.raises(ValueError, match="pred must be a binary mask"):
        hd95(mask * 255, mask)
    with pytest.raises(ValueError, match="gt must be a binary mask"):
        assd(mask, mask * 0.7)
    with pytest.raises(ValueError, match="same shape"):
        hd95(mask, mask[:4])
    with pytest.raises(ValueError, match="mode"):
        hd95(mask, mask, mode="mean")
    with pytest.raises(ValueError, match="mode"):
        HausdorffDistance95Metric(mode="medpy")
    with pytest.raises(ValueError, match="empty_value"):
        assd(mask, mask, empty_value=-1.0)
    with pytest.raises(ValueError, match="empty_value"):
        AverageSymmetricSurfaceDistanceMetric(empty_value="diagonal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spacing"):
        hd95(mask, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        assd(mask, mask, spacing=0.0)
    with pytest.raises(ValueError):
        HausdorffDistance95Metric(reduction="median")
    with pytest.raises(ValueError, match="y_pred must be a binary mask"):
        HausdorffDistance95Metric()(_t(mask) * 255, _t(mask))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        HausdorffDistance95Metric()(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="same shape"):
        AverageSymmetricSurfaceDistanceMetric()(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 6))


# ---------------------------------------------------------------------------------------------------------------
# Dice and IoU: MONAI's metrics with the configuration recommended in common/metrics/__init__.py


def _dice_metric(**kwargs) -> DiceMetric:
    return DiceMetric(include_background=True, reduction="mean", get_not_nans=False, ignore_empty=False, **kwargs)


def _iou_metric() -> MeanIoU:
    return MeanIoU(include_background=True, reduction="mean", get_not_nans=False, ignore_empty=False)


def _dice_iou_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Image 1: tiny, perfect (Dice 1, IoU 1). Image 2: large, half overlap (Dice 0.5, IoU 1/3)."""
    p1 = np.zeros((16, 16), dtype=np.uint8)
    p1[2, 2:4] = 1
    g1 = p1.copy()
    g2 = np.zeros((16, 16), dtype=np.uint8)
    g2[4:8, 0:8] = 1  # 32 pixels
    p2 = np.roll(g2, 4, axis=1)  # 32 pixels, 16 shared
    return _t(p1, p2), _t(g1, g2)


def test_dice_iou_per_image_then_averaged_not_pooled():
    y_pred, y = _dice_iou_pair()
    dice, iou = _dice_metric(), _iou_metric()
    np.testing.assert_allclose(dice(y_pred, y).numpy()[:, 0], [1.0, 0.5])
    np.testing.assert_allclose(iou(y_pred, y).numpy()[:, 0], [1.0, 1 / 3], rtol=1e-6)
    assert dice.aggregate().item() == pytest.approx(0.75)
    assert iou.aggregate().item() == pytest.approx(2 / 3)
    pooled_dice = 2 * (2 + 16) / (4 + 64)  # what a data-set-level (pooled) Dice would give
    pooled_iou = (2 + 16) / (2 + 48)
    assert dice.aggregate().item() != pytest.approx(pooled_dice)
    assert iou.aggregate().item() != pytest.approx(pooled_iou)


def test_dice_iou_aggregate_across_iterations():
    y_pred, y = _dice_iou_pair()
    dice, iou = _dice_metric(), _iou_metric()
    for metric in (dice, iou):
        metric(y_pred[:1], y[:1])
        metric(y_pred[1:], y[1:])
    assert dice.aggregate().item() == pytest.approx(0.75)
    assert iou.aggregate().item() == pytest.approx(2 / 3)


def test_dice_iou_empty_cases():
    empty = np.zeros((8, 8), dtype=np.uint8)
    lesion = np.zeros((8, 8), dtype=np.uint8)
    lesion[2:5, 2:5] = 1
    # (gt empty, pred empty), (gt empty, pred not), (gt not, pred empty), (perfect)
    y_pred = _t(empty, lesion, empty, lesion)
    y = _t(empty, empty, lesion, lesion)
    for metric in (_dice_metric(), _iou_metric()):
        np.testing.assert_allclose(metric(y_pred, y).numpy()[:, 0], [1.0, 0.0, 0.0, 1.0])
        assert metric.aggregate().item() == pytest.approx(0.5)  # every image counts
    # one-hot (B, 2, ...) inputs need include_background=False to stay foreground-only
    one_hot_p, one_hot_y = torch.cat([1 - y_pred, y_pred], 1), torch.cat([1 - y, y], 1)
    dice_fg = DiceMetric(include_background=False, reduction="none", ignore_empty=False)(one_hot_p, one_hot_y)
    iou_fg = MeanIoU(include_background=False, reduction="none", ignore_empty=False)(one_hot_p, one_hot_y)
    np.testing.assert_allclose(dice_fg.numpy()[:, 0], [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(iou_fg.numpy()[:, 0], [1.0, 0.0, 0.0, 1.0])


def test_monai_defaults_pitfalls_documented_in_common_metrics():
    """Pins the MONAI 1.6.1 behaviours the recommended configuration guards against."""
    empty = np.zeros((8, 8), dtype=np.uint8)
    lesion = np.zeros((8, 8), dtype=np.uint8)
    lesion[2:5, 2:5] = 1
    default_dice = DiceMetric(reduction="none")(_t(lesion), _t(empty))  # ignore_empty=True by default
    assert torch.isnan(default_dice).all()  # a false positive on an empty image would be skipped
    other = np.zeros((8, 8), dtype=np.uint8)
    other[6:8, 6:8] = 1
    dice_255 = _dice_metric()(_t(lesion) * 255, _t(other) * 255)
    assert dice_255.item() == 1.0  # 0/255 masks read as empty: disjoint masks score 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns about the empty masks
        monai_hd95 = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
        assert torch.isnan(monai_hd95(_t(empty), _t(lesion))).all()  # one empty: NaN, dropped from the mean
        monai_sd = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")
        assert torch.isinf(monai_sd(_t(empty), _t(lesion))).all()


# ---------------------------------------------------------------------------------------------------------------
# ignite handlers


def test_handlers_on_engine_with_metrics_saver(tmp_path):
    rng = np.random.default_rng(6)
    preds = [_blob(rng, (32, 32)) for _ in range(3)] + [np.zeros((32, 32), dtype=bool)]
    gts = [_blob(rng, (32, 32)) for _ in range(4)]
    names = [f"case_{i}.png" for i in range(4)]
    batches = [
        {"pred": _t(*preds[:2]), "label": _t(*gts[:2]), "name": names[:2]},
        {"pred": _t(*preds[2:]), "label": _t(*gts[2:]), "name": names[2:]},
    ]
    engine = Engine(lambda eng, batch: batch)
    transform = from_engine(["pred", "label"])
    HausdorffDistance95Handler(output_transform=transform).attach(engine, "HD95")
    HausdorffDistance95Handler(mode="max", output_transform=transform).attach(engine, "HD95_max")
    AverageSymmetricSurfaceDistanceHandler(output_transform=transform).attach(engine, "ASSD")
    dice = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    IgniteMetricHandler(metric_fn=dice, output_transform=transform, save_details=True).attach(engine, "Dice")
    saver = MetricsSaver(
        save_dir=str(tmp_path),
        metrics="*",
        metric_details=["HD95", "ASSD"],
        batch_transform=lambda batch: [{"filename_or_obj": n} for n in batch["name"]],
    )
    saver.attach(engine)
    engine.run(batches, max_epochs=1)

    expected_hd = [hd95(p, g) for p, g in zip(preds, gts)]
    expected_hd_max = [hd95(p, g, mode="max") for p, g in zip(preds, gts)]
    expected_assd = [assd(p, g) for p, g in zip(preds, gts)]
    assert expected_hd[3] == pytest.approx(image_diagonal((32, 32)))  # empty prediction -> worst case
    assert engine.state.metrics["HD95"] == pytest.approx(np.mean(expected_hd), rel=1e-6)
    assert engine.state.metrics["HD95_max"] == pytest.approx(np.mean(expected_hd_max), rel=1e-6)
    assert engine.state.metrics["ASSD"] == pytest.approx(np.mean(expected_assd), rel=1e-6)
    np.testing.assert_allclose(engine.state.metric_details["HD95"].numpy()[:, 0], expected_hd, rtol=1e-6)
    np.testing.assert_allclose(engine.state.metric_details["ASSD"].numpy()[:, 0], expected_assd, rtol=1e-6)
    expected_dice = [2 * (p & g).sum() / (p.sum() + g.sum()) for p, g in zip(preds, gts)]
    assert engine.state.metrics["Dice"] == pytest.approx(np.mean(expected_dice), rel=1e-6)

    with open(tmp_path / "HD95_raw.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == names
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], expected_hd, rtol=1e-4)
    summary = (tmp_path / "metrics.csv").read_text()
    assert "HD95" in summary and "ASSD" in summary and "Dice" in summary
