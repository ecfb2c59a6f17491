# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The augmentations of BiCLIP's Image Augmentation Consistency (IAC) module, applied to BATCHES inside the network.

Source: Talaei et al., "BiCLIP: Bidirectional and Consistent Language-Image Processing for Robust Medical Image
Segmentation", section 2.2, eq. 3-4 (/work/shared/papers/biclip.txt); the parameters are those of the reference code
(SeivanTalaie/BiCLIP ``utils/githubUNET/github_UNET_aug_text_gene.py``, summarised in
/work/shared/reference/method_notes.md section 4.1), which uses kornia; here they are torch and MONAI operations.

The pseudo image is produced by the network, so the two-part input ``x_cat = [x; x_hat]`` exists only inside the
forward pass: these transforms act on batched tensors (B, C, H, W) in a dictionary, drawing one random setting per
sample.

- :class:`BatchRandFlipAffined`: the spatial augmentation A_g of eq. 3, applied jointly to the two-part input and the
  mask: horizontal flip (p 0.5), vertical flip (p 0.5), and an affine map (p 0.7: rotation within +-20 degrees,
  translation within +-10 % of the side, isotropic scale in [0.8, 1.2]). It is differentiable with respect to the
  input (``torch.nn.functional.grid_sample``), so the segmentation loss reaches the pseudo-image generator through it,
  as it does through kornia in the reference.
- :class:`BatchChannelAugmentd`: a MONAI array transform (the weak A_w or strong A_s appearance augmentation of
  eq. 4) applied per sample to a slice of channels only (the real-image part); the other channels (the pseudo
  image) are returned unchanged, with their gradient.
- :func:`biclip_strong_augment` / :func:`biclip_weak_augment`: the reference's A_s and A_w as MONAI transforms.
"""

from __future__ import annotations

__all__ = [
    "BatchRandFlipAffined",
    "BatchChannelAugmentd",
    "biclip_strong_augment",
    "biclip_weak_augment",
    "RandDirectionalMotionBlur",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PSEUDO_MEAN",
    "PSEUDO_STD",
]

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrast,
    RandGaussianNoise,
    RandomizableTransform,
    RandScaleIntensity,
    RandShiftIntensity,
)
from monai.utils import ensure_tuple_rep

from common.transforms.corruption import motion_blur, motion_blur_kernel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean the reference subtracts from the real-image channels of both views (ImageNet statistics)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation the reference divides the real-image channels of both views by."""
PSEUDO_MEAN = 0.5
"""N_p of eq. 4: the reference normalises the pseudo-image channels (a sigmoid output) as ``(x - 0.5) / 0.25``."""
PSEUDO_STD = 0.25


def _draw(generator: torch.Generator | None, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


class BatchRandFlipAffined(MapTransform):
    """
    The joint spatial augmentation A_g of BiCLIP eq. 3 on a batch: ``(x_g, y_g) = A_g(x_cat, y)``.

    For each sample of the batch one geometry is drawn and applied to every key (the two-part input and the mask
    see exactly the same map): a horizontal flip with probability ``prob_hflip``, a vertical flip with probability
    ``prob_vflip``, then, with probability ``prob_affine``, a rotation by an angle uniform in
    ``[-rotate_degrees, rotate_degrees]``, an isotropic scale uniform in ``scale_range`` and a translation uniform in
    ``[-translate, translate]`` of the image side along each axis (the reference's kornia ``RandomHorizontalFlip(0.5)``,
    ``RandomVerticalFlip(0.5)``, ``RandomAffine(20, translate=0.1, scale=(0.8, 1.2), p=0.7)``). The map is one
    ``affine_grid`` per sample (normalised coordinates, ``align_corners=False``) sampled with ``grid_sample``, zeros
    outside the image; the mode is per key (``bilinear`` for images, ``nearest`` for masks, so a mask stays binary).
    A sample that draws no flip and no affine map is copied unchanged (exactly).

    Random numbers come from ``generator`` when given, else from torch's global generator, so
    ``monai.utils.set_determinism`` (which seeds torch) makes a run repeatable.

    Args:
        keys: keys of the batched tensors (B, C, H, W) to transform jointly; all must share B, H and W.
        mode: interpolation per key, ``"bilinear"`` or ``"nearest"`` (one value or one per key). Defaults to
            ``"bilinear"``.
        prob_hflip: probability of a horizontal (left-right) flip. Defaults to 0.5.
        prob_vflip: probability of a vertical (up-down) flip. Defaults to 0.5.
        prob_affine: probability of the affine map. Defaults to 0.7.
        rotate_degrees: largest rotation angle in degrees. Defaults to 20.
        translate: largest translation as a fraction of the side. Defaults to 0.1.
        scale_range: (low, high) isotropic scale. Defaults to (0.8, 1.2).
        generator: optional ``torch.Generator`` for the random draws.
        allow_missing_keys: do not raise when a key is missing (e.g. no mask). Defaults to ``False``.

    Raises:
        ValueError: when a probability is outside [0, 1], ``scale_range`` is not increasing and positive, a mode is
            unknown, or the tensors are not (B, C, H, W) with the same B, H, W (the message names the key).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mode: str | Sequence[str] = "bilinear",
        prob_hflip: float = 0.5,
        prob_vflip: float = 0.5,
        prob_affine: float = 0.7,
        rotate_degrees: float = 20.0,
        translate: float = 0.1,
        scale_range: Sequence[float] = (0.8, 1.2),
        generator: torch.Generator | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        for name, p in (("prob_hflip", prob_hflip), ("prob_vflip", prob_vflip), ("prob_affine", prob_affine)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}.")
        if len(scale_range) != 2 or not 0 < float(scale_range[0]) <= float(scale_range[1]):
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}.")
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        for m in self.mode:
            if m not in ("bilinear", "nearest"):
                raise ValueError(f"mode must be 'bilinear' or 'nearest', got {m!r}.")
        self.prob_hflip, self.prob_vflip, self.prob_affine = float(prob_hflip), float(prob_vflip), float(prob_affine)
        self.rotate_degrees, self.translate = float(rotate_degrees), float(translate)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.generator = generator
        self.last_theta: torch.Tensor | None = None
        """The (B, 2, 3) matrices of the last call (``affine_grid`` convention), for inspection and tests."""

    def draw_theta(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Draw the per-sample maps.

        Args:
            batch: the number of samples.

        Returns:
            ``(theta, changed)``: float32 (B, 2, 3) matrices mapping output to input normalised coordinates, and a
            bool (B,) mask of the samples whose map is not the identity.
        """
        g = self.generator
        hflip = torch.rand(batch, generator=g) < self.prob_hflip
        vflip = torch.rand(batch, generator=g) < self.prob_vflip
        affine = torch.rand(batch, generator=g) < self.prob_affine
        angle = _draw(g, batch, -self.rotate_degrees, self.rotate_degrees) * (math.pi / 180.0)
        scale = _draw(g, batch, *self.scale_range)
        shift = _draw(g, 2 * batch, -self.translate, self.translate).view(batch, 2) * 2.0  # normalised units
        angle, scale = torch.where(affine, angle, 0.0), torch.where(affine, scale, 1.0)
        shift = torch.where(affine[:, None], shift, 0.0)
        # output->input map: rotation and 1/scale (sampling at p/scale enlarges the content by scale)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        theta[:, :, 2] = -shift
        # flips act on the output grid first: x -> -x (horizontal), y -> -y (vertical)
        theta[:, :, 0] *= torch.where(hflip, -1.0, 1.0)[:, None]
        theta[:, :, 1] *= torch.where(vflip, -1.0, 1.0)[:, None]
        return theta, hflip | vflip | affine

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = [(k, m) for k, m in zip(self.keys, self.mode) if k in d or not self.allow_missing_keys]
        shape = None
        for key, _ in present:
            x = d[key]
            if not isinstance(x, torch.Tensor) or x.ndim != 4:
                raise ValueError(
                    f"BatchRandFlipAffined: '{key}' must be a (B, C, H, W) tensor, got {type(x).__name__}"
                    f" of shape {tuple(getattr(x, 'shape', ()))}."
                )
            if shape is None:
                shape = (x.shape[0], *x.shape[2:])
            elif (x.shape[0], *x.shape[2:]) != shape:
                raise ValueError(
                    f"BatchRandFlipAffined: '{key}' has shape {tuple(x.shape)}, expected batch and "
                    f"spatial size {shape} like the first key."
                )
        if shape is None:
            return d
        theta, changed = self.draw_theta(shape[0])
        self.last_theta = theta
        for key, mode in present:
            x = d[key]
            grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
            moved = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
            keep = (~changed).to(x.device).view(-1, 1, 1, 1)
            d[key] = torch.where(keep, x, moved)
        return d


class BatchChannelAugmentd(MapTransform):
    """
    Apply a MONAI array transform per sample to ``channels`` of a batched tensor, leaving every other channel as is.

    This is how BiCLIP eq. 4 perturbs only the real-image part ``x_g^r`` of the two-part input: with
    ``channels=slice(0, 3)`` the pseudo-image channels ``x_g^p`` (3..5) are passed through untouched (same values,
    same autograd history), and the geometry is not changed (the transform must be an intensity transform; a
    spatial one would misalign the views and the mask, which is why the bundle's strong augmentation lists only
    intensity transforms). The augmented channels carry no gradient (they are image data).

    Random numbers: before every batch the transform's MONAI random state is reseeded from torch's global generator
    (one ``torch.randint`` draw), so ``monai.utils.set_determinism`` makes a run repeatable.

    Args:
        keys: keys of the batched tensors (B, C, H, W).
        transform: a callable on one sample's selected channels (C', H, W), typically a ``monai.transforms.Compose``
            of intensity transforms; ``None`` or an empty ``Compose`` leaves the data unchanged.
        channels: the channels to augment, a ``slice`` or a (start, stop) pair. Defaults to the first three
            (``(0, 3)``).
        allow_missing_keys: do not raise when a key is missing. Defaults to ``False``.

    Raises:
        ValueError: when a tensor is not (B, C, H, W), or when the transform changes the shape of the channels.
    """

    def __init__(
        self,
        keys: KeysCollection,
        transform: Callable | None,
        channels: slice | Sequence[int] = (0, 3),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.channels = channels if isinstance(channels, slice) else slice(int(channels[0]), int(channels[1]))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.transform is None or (isinstance(self.transform, Compose) and not self.transform.transforms):
            return d
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,))))
        for key in self.key_iterator(d):
            x = d[key]
            if not isinstance(x, torch.Tensor) or x.ndim != 4:
                raise ValueError(
                    f"BatchChannelAugmentd: '{key}' must be a (B, C, H, W) tensor, got shape "
                    f"{tuple(getattr(x, 'shape', ()))}."
                )
            start, stop, _ = self.channels.indices(x.shape[1])
            with torch.no_grad():
                part = x[:, start:stop].detach()
                out = []
                for sample in part:
                    y = self.transform(sample)
                    y = y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)
                    if tuple(y.shape) != tuple(sample.shape):
                        raise ValueError(
                            f"BatchChannelAugmentd: the transform changed the shape of '{key}' channels "
                            f"{start}:{stop} from {tuple(sample.shape)} to {tuple(y.shape)}."
                        )
                    out.append(y.to(device=x.device, dtype=x.dtype))
            d[key] = torch.cat([x[:, :start], torch.stack(out), x[:, stop:]], dim=1)
        return d


class RandDirectionalMotionBlur(RandomizableTransform):
    """
    With probability ``prob``, blur a (C, H, W) image along a line through each pixel at a random angle uniform in
    ``[-max_angle, max_angle]`` degrees (the line kernel and the reflect-padded convolution of
    :py:mod:`common.transforms.corruption`, the test-time motion blur of BiCLIP section 3.4), as the reference's
    kornia ``RandomMotionBlur(5, 20.0, 0.5, p=0.2)`` does in its strong augmentation.

    Args:
        kernel_size: odd kernel size. Defaults to 5.
        max_angle: largest angle in degrees. Defaults to 20.
        prob: probability of blurring. Defaults to 0.2.
    """

    def __init__(self, kernel_size: int = 5, max_angle: float = 20.0, prob: float = 0.2) -> None:
        RandomizableTransform.__init__(self, prob)
        motion_blur_kernel(kernel_size, 0.0)  # validates the size
        self.kernel_size = int(kernel_size)
        self.max_angle = float(max_angle)
        self._angle = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._angle = float(self.R.uniform(-self.max_angle, self.max_angle))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """
        Args:
            img: (C, H, W).
            randomize: draw a new setting first. Defaults to ``True``.

        Returns:
            the (possibly) blurred image, same shape and dtype.
        """
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return motion_blur(img, motion_blur_kernel(self.kernel_size, self._angle)).to(img.dtype)


def biclip_strong_augment(
    gamma: Sequence[float] = (0.9, 1.1),
    noise_std: float = 0.01,
    prob_noise: float = 0.5,
    brightness: float = 0.3,
    prob_brightness: float = 0.5,
    contrast: float = 0.3,
    prob_contrast: float = 0.5,
    prob_blur: float = 0.2,
    blur_kernel_size: int = 5,
    blur_angle: float = 20.0,
) -> Compose:
    """
    The strong appearance augmentation A_s of BiCLIP eq. 4 with the reference code's settings, as MONAI transforms.

    The reference (kornia, method_notes.md section 4.1) applies, in this order: RandomGamma(0.9-1.1),
    GaussianNoise(std 0.01, p 0.5), Brightness(0.3, p 0.5), Contrast(0.3, p 0.5) and MotionBlur(kernel 5, 20 degrees,
    p 0.2). The MONAI counterparts used here:

    - gamma: ``RandAdjustContrast(prob=1, gamma=gamma)`` (MONAI's gamma acts on the min-max normalised intensities,
      so the range of the sample is kept);
    - noise: ``RandGaussianNoise(prob=prob_noise, std=noise_std, sample_std=False)``;
    - brightness: ``RandShiftIntensity(offsets=brightness, prob=prob_brightness)``, an additive shift uniform in
      ``[-brightness, brightness]`` (kornia's brightness adds ``factor - 1``);
    - contrast: ``RandScaleIntensity(factors=contrast, prob=prob_contrast)``, ``x * (1 + f)`` with ``f`` uniform in
      ``[-contrast, contrast]`` (kornia's contrast multiplies by a factor around 1);
    - motion blur: MONAI has no directional motion blur; :class:`RandDirectionalMotionBlur` (the line kernel of
      :py:func:`common.transforms.corruption.motion_blur_kernel`, kernel ``blur_kernel_size``, angle uniform in
      ``[-blur_angle, blur_angle]``, p ``prob_blur``). kornia's ``direction`` 0.5 (an asymmetric line weight) is not
      reproduced: the line weighs its cells by length only (stated in the bundle README).

    Args:
        gamma: gamma range. Defaults to (0.9, 1.1).
        noise_std: noise standard deviation. Defaults to 0.01.
        prob_noise: noise probability. Defaults to 0.5.
        brightness: largest additive brightness shift. Defaults to 0.3.
        prob_brightness: brightness probability. Defaults to 0.5.
        contrast: largest relative intensity scale. Defaults to 0.3.
        prob_contrast: contrast probability. Defaults to 0.5.
        prob_blur: motion-blur probability. Defaults to 0.2.
        blur_kernel_size: odd motion-blur kernel size. Defaults to 5.
        blur_angle: largest motion-blur angle in degrees from the horizontal. Defaults to 20.

    Returns:
        a ``monai.transforms.Compose`` of array transforms for one (C, H, W) sample.
    """
    return Compose(
        [
            RandAdjustContrast(prob=1.0, gamma=tuple(gamma)),
            RandGaussianNoise(prob=prob_noise, mean=0.0, std=noise_std, sample_std=False),
            RandShiftIntensity(offsets=brightness, prob=prob_brightness),
            RandScaleIntensity(factors=contrast, prob=prob_contrast),
            RandDirectionalMotionBlur(kernel_size=blur_kernel_size, max_angle=blur_angle, prob=prob_blur),
        ]
    )


def biclip_weak_augment() -> Compose:
    """
    The weak appearance augmentation A_w of BiCLIP eq. 4 as the reference code runs it: no appearance change (the
    weak view is the spatially augmented input with the real-image channels normalised, which the network does for
    both views). Pass a ``Compose`` of intensity transforms instead to perturb the weak view too.

    Returns:
        an empty ``monai.transforms.Compose``.
    """
    return Compose([])
