# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Test-time corruptions of the BiCLIP paper (section 3.4, Table 3): low-dose noise and directional motion blur.

Interface (used by every bundle, kept stable)
=============================================
- Config layer ``common/configs/corruption.json``, merged AFTER a bundle's ``train.json`` and ``evaluate.json``::

      python -m monai.bundle run --config_file "['bundles/B/configs/train.json','bundles/B/configs/evaluate.json',
          'common/configs/corruption.json']" --bundle_root bundles/B --corruption dose_140

  keys: ``corruption`` (one of :data:`CORRUPTIONS`, default ``"none"``), ``corruption_seed`` (default 0),
  ``corruption_after`` (the transform class name after which the corruption is inserted into the evaluation
  pipeline, default ``"Resized"``). The metrics go to ``<output_dir>/eval_<corruption>`` (``eval`` for
  ``"none"``), so the clean evaluation is not overwritten.
- Tool ``tools/corruption_eval.py``: trains each bundle once (or reuses its model), evaluates the test split clean
  and under each corruption through that layer, and writes one table (``corruption.md``/``.csv``/``.json``).
- Dictionary transforms: :class:`LowDoseNoised`, :class:`MotionBlurd`, and :class:`Corruptiond` (one transform
  selected by name); :func:`insert_after` puts a transform into an existing pipeline list.

Low-dose noise (Poisson, "dose level" d)
========================================
The paper names dose levels 140, 120 and 110 ("lower doses yield stronger noise") but neither the paper nor its
reference code (``/work/shared/reference/method_notes.md`` section 4 has no corruption code) gives the formula that
maps a dose level to photon counts. We use the shot-noise model of the ImageNet-C corruption benchmark
(Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations",
ICLR 2019, ``shot_noise``: ``clip(poisson(x * c) / c, 0, 1)`` with ``c`` photons per unit intensity) with the
dose level as the photon count ``c`` of a full-intensity pixel::

    N(p) ~ Poisson(d * x(p)),    x'(p) = clip(N(p) / d, 0, 1),

for an image ``x`` scaled to [0, 1]. The expected value is unchanged (``E[N/d] = x``) and the noise standard
deviation is ``sqrt(x / d)``: lower dose, stronger noise (dose 110 is ``sqrt(140/110) = 1.13`` times noisier than
140). This is OUR choice, documented in ``tools/protocols.md``: a projection-domain (sinogram) simulation is not
possible on 2D PNG images.

Directional motion blur (kernel size k)
=======================================
A ``k x k`` line kernel: a segment of length ``k`` through the kernel centre at angle ``theta`` (degrees,
counter-clockwise from the image's horizontal axis); each kernel cell weighs the length of the segment inside it
(midpoint rule on ``16k`` equal pieces; exact for horizontal and vertical lines, which give ``1/k`` on the ``k``
cells of the centre row or column, like OpenCV/albumentations line kernels), normalised to sum 1.
The image is convolved channel by channel with reflect padding, so a constant image stays
constant. ``theta`` is fixed (``angle``) or drawn uniformly in [0, 180) per image from the seed (default), as
albumentations' ``MotionBlur``, which the BiCLIP reference uses for its strong augmentation, draws a random line.

Determinism
===========
Every random draw uses ``numpy.random.default_rng`` seeded with ``sha256(f"{seed}:{name}")`` where ``name`` is the
image file's base name (``meta["filename_or_obj"]``), or, without file metadata, the SHA-256 of the image's bytes.
The same image gets the same corruption whatever its position in the data set, the batch size or the number of
workers.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = [
    "CORRUPTIONS",
    "DOSE_LEVELS",
    "BLUR_KERNEL_SIZES",
    "parse_corruption",
    "corruption_rng",
    "low_dose_noise",
    "motion_blur_kernel",
    "motion_blur",
    "LowDoseNoised",
    "MotionBlurd",
    "Corruptiond",
    "insert_after",
]

#: Dose levels of the BiCLIP paper, Table 3 (photon count of a full-intensity pixel, see the module docstring).
DOSE_LEVELS: tuple[int, ...] = (140, 120, 110)
#: Motion-blur kernel sizes of the BiCLIP paper, Table 3.
BLUR_KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
#: Corruption names accepted by :class:`Corruptiond` and the ``corruption`` key, clean first, in table order.
CORRUPTIONS: tuple[str, ...] = (
    "none",
    *(f"dose_{d}" for d in DOSE_LEVELS),
    *(f"blur_k{k}" for k in BLUR_KERNEL_SIZES),
)

_RANGE_TOLERANCE = 1e-4


def parse_corruption(name: str) -> tuple[str, float | int | None]:
    """
    Read a corruption name: ``"none"``, ``"dose_<d>"`` (any positive dose, e.g. ``dose_140``) or ``"blur_k<k>"``
    (any odd kernel size >= 1, e.g. ``blur_k7``).

    Args:
        name: the corruption name.

    Returns:
        ``("none", None)``, ``("dose", d)`` or ``("blur", k)``.

    Raises:
        ValueError: for any other name, listing the paper's names (:data:`CORRUPTIONS`).
    """
    text = str(name).strip()
    if text == "none":
        return "none", None
    try:
        if text.startswith("dose_"):
            dose = float(text[len("dose_") :])
            if dose > 0 and math.isfinite(dose):
                return "dose", int(dose) if dose.is_integer() else dose
        elif text.startswith("blur_k"):
            size = int(text[len("blur_k") :])
            if size >= 1 and size % 2 == 1:
                return "blur", size
    except ValueError:
        pass
    raise ValueError(
        f"corruption {name!r} is not valid: use 'none', 'dose_<d>' (d > 0) or 'blur_k<k>' (k odd >= 1); "
        f"the paper's are {list(CORRUPTIONS)}."
    )


def _image_name(img: Any) -> str | None:
    meta = getattr(img, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return os.path.basename(str(meta["filename_or_obj"]))
    return None


def corruption_rng(seed: int, img: Any, salt: str = "") -> np.random.Generator:
    """
    The per-image random generator (see "Determinism" in the module docstring).

    Args:
        seed: the corruption seed.
        img: the image (a ``MetaTensor`` with ``filename_or_obj``, or any array: then its bytes are hashed).
        salt: extra text mixed into the seed (e.g. the corruption name), default ``""``.
    """
    name = _image_name(img)
    if name is None:
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        name = "sha256:" + hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    digest = hashlib.sha256(f"{int(seed)}:{salt}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _check_unit_range(x: torch.Tensor, what: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{what}: intensities must be scaled to [0, 1] first (e.g. ScaleIntensityRanged), got [{lo:.4g}, "
            f"{hi:.4g}]; insert the corruption after the scaling (key 'corruption_after')."
        )


def low_dose_noise(img: torch.Tensor, dose: float, rng: np.random.Generator) -> torch.Tensor:
    """
    Poisson low-dose noise: ``clip(Poisson(dose * x) / dose, 0, 1)`` (module docstring, "Low-dose noise").

    Args:
        img: image with intensities in [0, 1], any shape.
        dose: dose level, the photon count of a full-intensity pixel (> 0).
        rng: the random generator (see :func:`corruption_rng`).

    Returns:
        a tensor of the same shape, dtype and device (metadata kept for a ``MetaTensor``).

    Raises:
        ValueError: when ``dose <= 0`` or the intensities are outside [0, 1].
    """
    if not dose > 0:
        raise ValueError(f"dose must be > 0, got {dose}.")
    _check_unit_range(img, "low-dose noise")
    x = img.detach().cpu().numpy().astype(np.float64)
    counts = rng.poisson(np.clip(x, 0.0, 1.0) * float(dose))
    noisy = np.clip(counts / float(dose), 0.0, 1.0)
    return _like(img, torch.as_tensor(noisy))


def motion_blur_kernel(size: int, angle: float) -> torch.Tensor:
    """
    The directional motion-blur kernel (module docstring, "Directional motion blur").

    Args:
        size: odd kernel size ``k >= 1`` (1 gives the identity kernel).
        angle: line direction in degrees, counter-clockwise from the horizontal axis (0: horizontal blur,
            90: vertical blur).

    Returns:
        a (k, k) float64 tensor with non-negative entries summing to 1, point-symmetric about its centre.

    Raises:
        ValueError: when ``size`` is not an odd integer >= 1.
    """
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"motion blur kernel size must be an odd integer >= 1, got {size}.")
    size = int(size)
    kernel = np.zeros((size, size), dtype=np.float64)
    c = (size - 1) / 2.0
    theta = math.radians(angle)
    samples = 16 * size
    t = -size / 2.0 + (np.arange(samples) + 0.5) * (size / samples)  # midpoints of equal pieces of the segment
    cols = np.floor(c + t * math.cos(theta) + 0.5).astype(int)
    rows = np.floor(c - t * math.sin(theta) + 0.5).astype(int)  # row index grows downwards
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    np.add.at(kernel, (rows[inside], cols[inside]), 1.0)
    return torch.as_tensor(kernel / kernel.sum())


def motion_blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """
    Convolve every channel of a channel-first 2D image with ``kernel`` (reflect padding, same size out).

    Args:
        img: (C, H, W) image.
        kernel: (k, k) kernel, ``k`` odd (e.g. :func:`motion_blur_kernel`).

    Returns:
        the blurred image, same shape, dtype and device (metadata kept for a ``MetaTensor``).

    Raises:
        ValueError: when ``img`` is not (C, H, W), or ``k // 2`` is not smaller than H and W (reflect padding).
    """
    if img.ndim != 3:
        raise ValueError(f"motion blur needs a channel-first 2D image (C, H, W), got shape {tuple(img.shape)}.")
    k = int(kernel.shape[-1])
    pad = k // 2
    if pad >= min(img.shape[-2:]):
        raise ValueError(f"motion blur kernel {k} is too large for an image of size {tuple(img.shape[-2:])}.")
    x = torch.as_tensor(img).detach().to(torch.float64).cpu().unsqueeze(0)  # (1, C, H, W)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    channels = x.shape[1]
    weight = kernel.to(torch.float64).flip(0, 1).expand(channels, 1, k, k)  # flip: a true convolution
    out = F.conv2d(x, weight, groups=channels)[0]
    return _like(img, out)


def _like(img: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    values = values.to(dtype=img.dtype if img.dtype.is_floating_point else torch.float32, device=img.device)
    if isinstance(img, MetaTensor):
        return MetaTensor(values, meta=dict(img.meta), applied_operations=list(img.applied_operations))
    return values


class LowDoseNoised(MapTransform):
    """
    Low-dose Poisson noise of the BiCLIP paper (section 3.4), deterministic per image (module docstring).

    Args:
        keys: keys of the images to corrupt (intensities in [0, 1]).
        dose: dose level (photon count of a full-intensity pixel), e.g. 140, 120, 110.
        seed: corruption seed, default 0.
        allow_missing_keys: do not raise for a missing key, default ``False``.
    """

    def __init__(self, keys: KeysCollection, dose: float, seed: int = 0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not dose > 0:
            raise ValueError(f"LowDoseNoised: dose must be > 0, got {dose}.")
        self.dose = float(dose)
        self.seed = int(seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            rng = corruption_rng(self.seed, d[key], salt=f"dose_{self.dose:g}:{key}")
            d[key] = low_dose_noise(
                torch.as_tensor(d[key]) if not isinstance(d[key], torch.Tensor) else d[key], self.dose, rng
            )
        return d


class MotionBlurd(MapTransform):
    """
    Directional motion blur of the BiCLIP paper (section 3.4), deterministic per image (module docstring).

    Args:
        keys: keys of the (C, H, W) images to blur.
        kernel_size: odd kernel size, e.g. 3, 5, 7.
        angle: blur direction in degrees; ``None`` (default) draws it uniformly in [0, 180) per image from the seed.
        seed: corruption seed, default 0.
        allow_missing_keys: do not raise for a missing key, default ``False``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        kernel_size: int,
        angle: float | None = None,
        seed: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        motion_blur_kernel(kernel_size, 0.0)  # validates the size
        self.kernel_size = int(kernel_size)
        self.angle = None if angle is None else float(angle)
        self.seed = int(seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key] if isinstance(d[key], torch.Tensor) else torch.as_tensor(d[key])
            angle = self.angle
            if angle is None:
                angle = float(corruption_rng(self.seed, img, salt=f"blur_k{self.kernel_size}:{key}").uniform(0, 180))
            d[key] = motion_blur(img, motion_blur_kernel(self.kernel_size, angle))
        return d


class Corruptiond(MapTransform):
    """
    One test-time corruption chosen by name (the ``corruption`` key of ``common/configs/corruption.json``).

    Args:
        keys: keys of the images to corrupt.
        corruption: ``"none"`` (identity), ``"dose_<d>"`` (:class:`LowDoseNoised`) or ``"blur_k<k>"``
            (:class:`MotionBlurd` with a per-image random angle); see :data:`CORRUPTIONS`.
        seed: corruption seed, default 0.
        allow_missing_keys: do not raise for a missing key, default ``False``.

    Raises:
        ValueError: for an unknown corruption name (naming the key ``corruption``).
    """

    def __init__(
        self, keys: KeysCollection, corruption: str = "none", seed: int = 0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        try:
            kind, value = parse_corruption(corruption)
        except ValueError as err:
            raise ValueError(f"key 'corruption': {err}") from err
        self.corruption = str(corruption)
        self.transform: MapTransform | None = None
        if kind == "dose":
            self.transform = LowDoseNoised(keys, dose=value, seed=seed, allow_missing_keys=allow_missing_keys)
        elif kind == "blur":
            self.transform = MotionBlurd(keys, kernel_size=value, seed=seed, allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return dict(data) if self.transform is None else self.transform(data)


def insert_after(transforms: Sequence[Any], transform: Any, after: str = "Resized") -> list[Any]:
    """
    A new list: ``transforms`` with ``transform`` inserted after the LAST transform whose class name is ``after``.

    Used by ``common/configs/corruption.json`` to corrupt the images once they are scaled to [0, 1] and resized to
    the network's input size, before any normalisation a bundle applies later (e.g. CLIP's mean/std).

    Args:
        transforms: the pipeline's transforms (instantiated objects; strings and other entries are kept).
        transform: the transform to insert.
        after: class name to insert after, default ``"Resized"``.

    Raises:
        ValueError: when no transform of that class is in the list (naming the key ``corruption_after``).
    """
    items = list(transforms)
    names = [type(t).__name__ for t in items]
    if after not in names:
        raise ValueError(
            f"key 'corruption_after': no {after!r} transform in the evaluation pipeline (found {names}); set "
            "corruption_after to a transform that runs after the intensities are scaled to [0, 1]."
        )
    index = len(names) - 1 - names[::-1].index(after)
    return items[: index + 1] + [transform] + items[index + 1 :]
