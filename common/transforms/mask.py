# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""The project's single mask binarisation rule, as an array transform and a dictionary transform."""

from __future__ import annotations

__all__ = ["BinarizeMask", "BinarizeMaskd"]

from collections.abc import Hashable, Mapping

import torch

from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from common.transforms.checks import get_source_name


class BinarizeMask(Transform):
    """
    Turn a mask, read as stored (8-bit values), into a float32 {0, 1} foreground mask with one documented rule.

    The rule (project contract, "Mask binarisation rule"):

    1. values outside [0, 255] are an error (not an 8-bit mask, e.g. a 16-bit label image);
    2. if every value is in {0, 1}, 1 is foreground;
    3. otherwise a mask whose largest value is in 2..``threshold`` (2..127 by default) is a *label map*, which would
       otherwise become silently empty: an error, unless ``allow_label_maps``;
    4. more than ``max_ambiguous_fraction`` (5%) of the pixels in the ambiguous band (32, 223] means the input is not
       a binary mask (for example an image passed as a mask): an error;
    5. foreground is ``value > threshold`` (127, half of the 8-bit range). Never ``> 0``: JPEG masks carry
       compression halos (Kvasir-SEG masks are JPEG, see /work/shared/fixtures/README.md) and some sets carry stray
       values such as 12/17/21, which must stay background.

    One precondition is checked as well, because the rule is only meaningful for values as stored: non-integer
    values (a mask that was resized or normalised before binarisation) and non-finite values are an error. Run this
    transform right after loading, before any spatial or intensity transform.

    The output has the input's shape and type (numpy array, tensor, or MetaTensor with its meta data kept), dtype
    float32. Multi-channel masks (an RGB mask read without conversion) are binarised per channel.

    Args:
        threshold: foreground is ``value > threshold``; also the top of the label-map range. Defaults to 127.
        max_ambiguous_fraction: largest allowed fraction (0..1) of pixels in ``ambiguous_band``; more raises.
            Defaults to 0.05.
        ambiguous_band: ``(low, high)``; a pixel is ambiguous when ``low < value <= high``. Defaults to (32, 223).
        allow_label_maps: if ``True``, a mask whose largest value is in 2..``threshold`` is taken as a label map and
            every non-zero label becomes foreground (the union of the labels); the ambiguous-band check is skipped for
            it. Defaults to ``False`` (such a mask raises).

    Raises:
        ValueError: on invalid arguments.

    Examples::

        import numpy as np

        mask = np.array([[0, 12, 255], [250, 3, 130]], dtype=np.uint8)
        BinarizeMask()(mask, name="mask_a.png")  # [[0, 0, 1], [1, 0, 1]] as float32
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        threshold: float = 127,
        max_ambiguous_fraction: float = 0.05,
        ambiguous_band: tuple[float, float] = (32, 223),
        allow_label_maps: bool = False,
    ) -> None:
        if not 0.0 <= max_ambiguous_fraction <= 1.0:
            raise ValueError(f"max_ambiguous_fraction must be in [0, 1], got {max_ambiguous_fraction}.")
        if len(ambiguous_band) != 2 or not ambiguous_band[0] < ambiguous_band[1]:
            raise ValueError(f"ambiguous_band must be (low, high) with low < high, got {ambiguous_band}.")
        if not 1 <= threshold < 255:
            raise ValueError(f"threshold must be in [1, 255), got {threshold}.")
        self.threshold = threshold
        self.max_ambiguous_fraction = max_ambiguous_fraction
        self.ambiguous_band = (float(ambiguous_band[0]), float(ambiguous_band[1]))
        self.allow_label_maps = allow_label_maps

    def __call__(self, img: NdarrayOrTensor, name: str | None = None) -> NdarrayOrTensor:
        """
        Args:
            img: the mask as stored (any shape; numpy array, tensor or MetaTensor).
            name: how to name the mask in error messages. Defaults to ``None``: the MetaTensor's
                ``filename_or_obj`` meta data, else ``"<mask>"``.

        Raises:
            ValueError: for non-finite, negative, non-integer or > 255 values, a label map (unless
                ``allow_label_maps``), or too many pixels in the ambiguous band; the message names the file.
        """
        if name is None:
            name = str(img.meta.get("filename_or_obj") or "<mask>") if isinstance(img, MetaTensor) else "<mask>"
        values = convert_data_type(img, torch.Tensor, dtype=torch.float64)[0]
        if isinstance(values, MetaTensor):
            values = values.as_tensor()
        if values.numel() == 0:
            raise ValueError(f"mask {name}: it is empty (shape {tuple(values.shape)}).")
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"mask {name}: it contains NaN or infinite values.")
        vmin, vmax = float(values.min()), float(values.max())
        if vmin < 0 or vmax > 255:
            raise ValueError(
                f"mask {name}: values must be in [0, 255] (8-bit), found range [{vmin:g}, {vmax:g}]. "
                "16-bit or signed masks are not supported; convert them to 0/255 or 0/1."
            )
        if not bool((values == values.round()).all()):
            raise ValueError(
                f"mask {name}: it has non-integer values (range [{vmin:g}, {vmax:g}]); binarise masks as stored "
                "(8-bit), before resizing or intensity scaling."
            )
        if bool(((values == 0) | (values == 1)).all()):
            foreground = values == 1
        elif 2 <= vmax <= self.threshold:
            if not self.allow_label_maps:
                raise ValueError(
                    f"mask {name}: largest value is {vmax:g}, in 2..{self.threshold:g}: this looks like a label map "
                    f"(values {self._some_values(values)}), which would become empty with foreground = value > "
                    f"{self.threshold:g}. Convert it to 0/255 or 0/1, or set allow_label_maps=True to take every "
                    "non-zero label as foreground."
                )
            foreground = values > 0
        else:
            low, high = self.ambiguous_band
            fraction = float(((values > low) & (values <= high)).double().mean())
            if fraction > self.max_ambiguous_fraction:
                raise ValueError(
                    f"mask {name}: {fraction:.1%} of the pixels are in the ambiguous band ({low:g}, {high:g}] "
                    f"(at most {self.max_ambiguous_fraction:.1%} allowed): this is not a binary mask "
                    "(an image passed as a mask?)."
                )
            foreground = values > self.threshold
        return convert_to_dst_type(foreground, img, dtype=torch.float32)[0]

    @staticmethod
    def _some_values(values: torch.Tensor, limit: int = 8) -> str:
        uniques = [f"{v:g}" for v in torch.unique(values)[:limit].tolist()]
        return "{" + ", ".join(uniques) + (", ...}" if torch.unique(values).numel() > limit else "}")


class BinarizeMaskd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`BinarizeMask`: the project's mask binarisation rule.

    Errors name the file, taken from the MetaTensor ``filename_or_obj`` meta data written by ``LoadImaged``
    (see :py:func:`common.transforms.checks.get_source_name`), and the key.

    Args:
        keys: keys of the masks to binarise. Defaults to ``"label"``.
        threshold: foreground is ``value > threshold``; also the top of the label-map range. Defaults to 127.
        max_ambiguous_fraction: largest allowed fraction (0..1) of pixels in ``ambiguous_band``. Defaults to 0.05.
        ambiguous_band: ``(low, high)``; a pixel is ambiguous when ``low < value <= high``. Defaults to (32, 223).
        allow_label_maps: take a mask whose largest value is in 2..``threshold`` as a label map (every non-zero label
            is foreground) instead of raising. Defaults to ``False``.
        allow_missing_keys: do not raise when a key is missing. Defaults to ``False``.

    Raises:
        ValueError: on invalid arguments (see :py:class:`BinarizeMask`).

    Examples::

        from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

        load = Compose(
            [
                LoadImaged(keys=("image", "label")),
                EnsureChannelFirstd(keys=("image", "label")),
                BinarizeMaskd(keys="label"),
            ]
        )
    """

    backend = BinarizeMask.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        threshold: float = 127,
        max_ambiguous_fraction: float = 0.05,
        ambiguous_band: tuple[float, float] = (32, 223),
        allow_label_maps: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarizer = BinarizeMask(
            threshold=threshold,
            max_ambiguous_fraction=max_ambiguous_fraction,
            ambiguous_band=ambiguous_band,
            allow_label_maps=allow_label_maps,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """
        Raises:
            ValueError: when a mask breaks the rule (see :py:class:`BinarizeMask`); the message names the file
                and the key.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            name = f"{get_source_name(d, key, default='<unknown file>')} (key '{key}')"
            d[key] = self.binarizer(d[key], name=name)
        return d
