# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Sanity checks that turn silent data problems into clear errors naming the files involved."""

from __future__ import annotations

__all__ = ["get_source_name", "CheckSameSpatialShaped"]

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform


def get_source_name(data: Mapping[Hashable, Any] | None, key: Hashable | None, default: str | None = None) -> str:
    """
    Describe where the value ``data[key]`` came from, for error messages.

    The file name is taken, in this order, from the ``filename_or_obj`` meta data of a MetaTensor (what
    ``monai.transforms.LoadImaged`` stores), from ``data["<key>_meta_dict"]["filename_or_obj"]``, or from the value
    itself when it is a string or path (a datalist entry before loading).

    Args:
        data: the dictionary holding the value; ``None`` gives ``default``.
        key: the key of the value; ``None`` gives ``default``.
        default: what to return when no file name can be found. Defaults to ``None``, meaning
            ``"<key '{key}'>"`` (or ``"<unnamed item>"`` when ``key`` is ``None``).

    Returns:
        the file name, or ``default``.
    """
    fallback = default if default is not None else ("<unnamed item>" if key is None else f"<key '{key}'>")
    if data is None or key is None or key not in data:
        return fallback
    value = data[key]
    if isinstance(value, MetaTensor):
        name = value.meta.get("filename_or_obj")
        if name:
            return str(name)
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    meta = data.get(f"{key}_meta_dict")
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return fallback


class CheckSameSpatialShaped(MapTransform):
    """
    Check that the items under ``keys`` (for example an image and its mask) have the same spatial shape.

    Place it right after ``LoadImaged`` and ``EnsureChannelFirstd``, before any resizing, so that a mask that does
    not belong to its image (a wrong pairing in the datalist, or a mask saved at another resolution) is reported
    instead of being silently resampled onto the image grid. The values are expected channel-first: the spatial
    shape is ``shape[1:]``. Note that MONAI's ``PILReader`` (used for PNG/JPEG) returns the spatial axes as (W, H)
    because of its default ``reverse_indexing=True``, so the shapes in the message are in that order.

    Args:
        keys: keys of the items to compare (at least two). Defaults to ``("image", "label")``.
        allow_missing_keys: do not raise when a key is missing; only the keys present are compared.
            Defaults to ``False``.

    Raises:
        ValueError: when fewer than two keys are given.

    Examples::

        from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

        check = Compose(
            [
                LoadImaged(keys=("image", "label")),
                EnsureChannelFirstd(keys=("image", "label")),
                CheckSameSpatialShaped(keys=("image", "label")),
            ]
        )
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) < 2:
            raise ValueError(f"CheckSameSpatialShaped needs at least two keys to compare, got {self.keys}.")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: dictionary whose ``keys`` hold channel-first arrays or tensors.

        Raises:
            ValueError: when a spatial shape differs from the first key's; the message names both files (or keys)
                and both shapes.
        """
        d = dict(data)
        ref_key: Hashable | None = None
        ref_shape: tuple[int, ...] = ()
        for key in self.key_iterator(d):
            shape = tuple(int(s) for s in d[key].shape[1:])
            if ref_key is None:
                ref_key, ref_shape = key, shape
                continue
            if shape != ref_shape:
                raise ValueError(
                    f"spatial shapes differ: '{ref_key}' {get_source_name(d, ref_key)} has spatial shape {ref_shape} "
                    f"but '{key}' {get_source_name(d, key)} has spatial shape {shape} (channel-first; PNG/JPEG read "
                    "by PILReader are (W, H)). The mask must have the same size as its image."
                )
        return d
