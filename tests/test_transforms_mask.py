# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests for common.transforms.mask (the mask binarisation rule) and common.transforms.checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from common.transforms import BinarizeMask, BinarizeMaskd, CheckSameSpatialShaped

FIXTURES = Path("/work/shared/fixtures")


def square(size: int = 32, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[8:24, 10:22] = value
    return mask


def as_meta(array: np.ndarray, filename: str) -> MetaTensor:
    return MetaTensor(torch.as_tensor(array[None], dtype=torch.float32), meta={"filename_or_obj": filename})


def test_halo_noise_gives_the_exact_square():
    clean = square()
    noisy = clean.copy()
    rows, cols = np.nonzero(clean)
    # JPEG-like halo: a ring of low values outside the square, high-but-not-255 values on its inner border,
    # and a few ambiguous values, well under 5% of the pixels
    noisy[7, 9:23] = [3, 20, 60, 100, 31, 8, 2, 1, 5, 90, 12, 17, 21, 4]
    noisy[24, 9:23] = 27
    noisy[8, 10:22] = [250, 240, 200, 160, 230, 251, 254, 129, 128, 224, 199, 252]
    out = BinarizeMask()(noisy)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == clean.shape
    np.testing.assert_array_equal(out, (clean > 0).astype(np.float32))
    assert out[rows, cols].all()


def test_zero_one_mask_uses_one_as_foreground():
    mask = (square() > 0).astype(np.uint8)
    out = BinarizeMask()(torch.as_tensor(mask))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert int(out.sum()) == int(mask.sum()) == 16 * 12
    empty = BinarizeMask()(np.zeros((8, 8), dtype=np.uint8))
    assert float(empty.sum()) == 0.0


def test_stray_values_and_threshold_boundary():
    mask = square()
    mask[0, 0:3] = [12, 17, 21]
    mask[30, 0] = 127  # not foreground: the rule is value > 127
    mask[30, 1] = 128
    out = BinarizeMask()(mask)
    expected = (square() > 0).astype(np.float32)
    expected[30, 1] = 1.0
    np.testing.assert_array_equal(out, expected)


def test_label_maps_are_errors_unless_allowed():
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[2:6, 2:6] = 1
    labels[9:14, 9:14] = 2
    with pytest.raises(ValueError, match=r"mask_case7\.png.*label map"):
        BinarizeMaskd(keys="label")({"label": as_meta(labels, "/data/labelcol/mask_case7.png")})
    out = BinarizeMaskd(keys="label", allow_label_maps=True)({"label": as_meta(labels, "x.png")})["label"]
    np.testing.assert_array_equal(out[0].numpy(), (labels > 0).astype(np.float32))
    # the label-map range ends at 127: a largest value of 127 is a label map, 128 is a normal 8-bit mask
    labels[0, 0] = 127
    with pytest.raises(ValueError, match="label map"):
        BinarizeMask()(labels, name="edge.png")
    labels[0, 0] = 128
    out = BinarizeMask()(labels, name="edge.png")
    assert float(out.sum()) == 1.0 and out[0, 0] == 1.0


def test_image_passed_as_mask_is_an_error():
    noise = np.random.default_rng(0).integers(0, 256, size=(32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"chest_001\.png.*ambiguous band"):
        BinarizeMaskd()({"label": as_meta(noise, "/data/img/chest_001.png")})


def test_ambiguous_fraction_boundary():
    # 400 pixels: 20 ambiguous pixels are exactly 5% (allowed), 21 are more than 5% (error)
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[:5, :] = 255
    mask[10, :] = 128  # 20 ambiguous pixels, foreground
    out = BinarizeMask()(mask)
    assert float(out.sum()) == 5 * 20 + 20
    mask[11, 0] = 33  # 21 ambiguous pixels
    with pytest.raises(ValueError, match=r"5\.2% .*ambiguous"):
        BinarizeMask()(mask)
    mask[11, 0] = 32  # 32 is outside (32, 223]
    BinarizeMask()(mask)


def test_values_outside_8bit_range_and_non_integers():
    mask = square().astype(np.int32)
    mask[0, 0] = 300
    with pytest.raises(ValueError, match=r"mask_big\.png.*\[0, 255\].*300"):
        BinarizeMaskd()({"label": as_meta(mask, "mask_big.png")})
    mask[0, 0] = -1
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        BinarizeMask()(mask)
    resized = square().astype(np.float32)
    resized[7, 10] = 127.5  # what a bilinear resize before binarisation produces
    with pytest.raises(ValueError, match=r"resized\.png.*non-integer"):
        BinarizeMask()(resized, name="resized.png")


def test_meta_is_kept():
    mask = as_meta(square(), "/data/masks/a.png")
    mask.affine = torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0]))
    out = BinarizeMaskd()({"label": mask, "text": "kept"})
    label = out["label"]
    assert isinstance(label, MetaTensor) and label.dtype == torch.float32 and label.shape == (1, 32, 32)
    assert label.meta["filename_or_obj"] == "/data/masks/a.png"
    assert torch.equal(label.affine, mask.affine)
    assert out["text"] == "kept"
    assert torch.equal(label.as_tensor(), torch.as_tensor(square() > 0, dtype=torch.float32)[None])


def raise_cause(compose: Compose, data: dict):
    """Run ``compose``; re-raise the transform's own error (Compose wraps it in RuntimeError, ``from`` the cause)."""
    try:
        return compose(data)
    except RuntimeError as e:
        if e.__cause__ is None:
            raise
        raise e.__cause__ from None


def load_mask(path: Path) -> MetaTensor:
    loader = Compose([LoadImaged(keys="label"), EnsureChannelFirstd(keys="label"), BinarizeMaskd(keys="label")])
    return raise_cause(loader, {"label": str(path)})["label"]


def test_png_and_jpeg_through_load_imaged(tmp_path):
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[9:27, 13:35] = 255
    Image.fromarray(mask).save(tmp_path / "mask_a.png")
    Image.fromarray(mask).save(tmp_path / "mask_a.jpg", quality=75)
    stored = np.asarray(Image.open(tmp_path / "mask_a.jpg"))
    assert len(np.unique(stored)) > 2 and ((stored > 0) != (mask > 0)).sum() > 0  # the JPEG has halos
    for name in ("mask_a.png", "mask_a.jpg"):
        out = load_mask(tmp_path / name)
        assert out.dtype == torch.float32 and out.meta["filename_or_obj"].endswith(name)
        # MONAI's PILReader has reverse_indexing=True: the array is (W, H), the transpose of PIL's (H, W)
        assert out.shape == (1, 48, 40)
        np.testing.assert_array_equal(out[0].numpy(), (mask.T > 0).astype(np.float32))

    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[4:8, 4:8] = 2
    Image.fromarray(labels).save(tmp_path / "labels_b.png")
    with pytest.raises(ValueError, match=r"labels_b\.png.*label map"):
        load_mask(tmp_path / "labels_b.png")
    photo = np.random.default_rng(1).integers(0, 256, size=(32, 32), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo_c.jpg")
    with pytest.raises(ValueError, match=r"photo_c\.jpg.*ambiguous"):
        load_mask(tmp_path / "photo_c.jpg")


@pytest.mark.skipif(not (FIXTURES / "kvasir_seg_layout").is_dir(), reason="shared fixtures not available")
def test_real_kvasir_jpeg_masks():
    for path in sorted((FIXTURES / "kvasir_seg_layout" / "masks").glob("*.jpg"))[:2]:
        stored = np.asarray(Image.open(path).convert("L"))
        out = load_mask(path)
        assert out.shape[0] == 3  # the JPEG masks are stored as RGB: binarised per channel
        assert float(out.sum()) > 0
        np.testing.assert_array_equal(out[0].numpy(), (np.asarray(Image.open(path))[..., 0].T > 127))
        assert (stored > 0).sum() > (stored > 127).sum()  # `> 0` would grow the mask by its halo


def test_same_spatial_shape_check(tmp_path):
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "img_a.png")
    Image.fromarray(square(32)).save(tmp_path / "mask_a.png")
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(tmp_path / "mask_b.png")
    keys = ("image", "label")
    check = Compose([LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys), CheckSameSpatialShaped(keys=keys)])
    out = raise_cause(check, {"image": str(tmp_path / "img_a.png"), "label": str(tmp_path / "mask_a.png")})
    assert out["label"].shape == (1, 32, 32)
    with pytest.raises(ValueError, match=r"img_a\.png.*\(32, 32\).*mask_b\.png.*\(32, 30\)"):
        raise_cause(check, {"image": str(tmp_path / "img_a.png"), "label": str(tmp_path / "mask_b.png")})
    with pytest.raises(ValueError, match="two keys"):
        CheckSameSpatialShaped(keys="image")
