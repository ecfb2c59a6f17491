# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Bring channel-first images to the channel count a network expects (grayscale X-rays vs RGB endoscopy)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["channel_conversion_problem", "EnsureNumChannels", "EnsureNumChannelsd"]


def _name(img) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", "<unknown file>"))
    return "<array>"


def channel_conversion_problem(num_in: int, num_out: int) -> str | None:
    """
    Whether :class:`EnsureNumChannels` can turn ``num_in`` channels into ``num_out`` (its rules, in one place, so
    that the pre-flight check of a datalist, ``common.data.preflight``, applies exactly the same rule).

    Args:
        num_in: channels of the image as read (channel-first), e.g. 1 for grayscale PNG, 3 for RGB, 4 for RGBA.
        num_out: channels wanted.

    Returns:
        ``None`` when the conversion is defined, else a sentence saying why not.
    """
    c = 3 if num_in == 4 and num_out != 4 else num_in  # RGBA: the alpha channel is dropped first
    if c == num_out or c == 1 or (c == 3 and num_out == 1):
        return None
    return f"cannot convert an image with {num_in} channels to {num_out}"


class EnsureNumChannels(Transform):
    """
    Converts a channel-first image (C, H, W) to ``num_channels`` channels.

    Rules: equal counts pass through; 1 -> N repeats the channel (a grayscale X-ray fed to an RGB network, as
    LViT's ``cv2.imread`` does); RGBA (4) drops the alpha channel first; 3 -> 1 takes the channel mean (for masks
    stored as RGB PNG with identical channels this is exact). Any other combination raises.

    Args:
        num_channels: the channel count to produce (1 or 3 in practice).

    Raises:
        ValueError: naming the file when the conversion is not defined (e.g. 2 channels to 3).
    """

    def __init__(self, num_channels: int) -> None:
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}.")
        self.num_channels = num_channels

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """
        Args:
            img: channel-first image.
        """
        problem = channel_conversion_problem(int(img.shape[0]), self.num_channels)
        if problem is not None:
            raise ValueError(f"{_name(img)}: {problem}.")
        c = img.shape[0]
        if c == 4 and self.num_channels != 4:
            img, c = img[:3], 3
        if c == self.num_channels:
            return img
        if c == 1:
            return img.repeat(self.num_channels, *([1] * (img.ndim - 1)))
        return img.mean(dim=0, keepdim=True)  # 3 -> 1


class EnsureNumChannelsd(MapTransform):
    """
    Dictionary version of :class:`EnsureNumChannels`.

    Args:
        keys: keys of the items to convert.
        num_channels: the channel count to produce.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, num_channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = EnsureNumChannels(num_channels)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
