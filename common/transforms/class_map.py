# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Multi-class lesion labels from a binary mask and the datalist's ``class``, and the way back to the binary
lesion-vs-background masks every bundle is evaluated on.

MCDRL (arXiv 2508.05008, section 4, problem setting) segments K lesion classes; each image has one lesion type
(section 4.2.3), which the datalists give as the entry's ``class`` (:mod:`common.data.datalist`). The class-index map
is 0 for background and ``k + 1`` on the lesion pixels of an image of class k (``class_names[k]``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from common.transforms.checks import get_source_name

__all__ = ["ClassIndexMapd", "LesionProbabilityd", "BinaryFromClassIndexd"]


class ClassIndexMapd(MapTransform):
    """
    Turn a binary {0, 1} mask into a class-index map with the image's class: ``label * (k + 1)``, k the position of
    ``data[class_key]`` in ``class_names``. Run it after :class:`~common.transforms.mask.BinarizeMaskd` and before
    any spatial transform that interpolates (resize labels with ``mode="nearest"``).

    Args:
        keys: the binary mask key(s), usually ``"label"``.
        class_names: the K class names, in output-channel order (channel k + 1 of the network is class k).
        class_key: the datalist key holding the image's class name. Defaults to ``"class"``.
        default_class: class used for entries without ``class_key`` (e.g. a single-class real set such as
            Kvasir-SEG: ``"polyp"``); ``None`` (default) makes a missing class an error.
        allow_missing_keys: as MONAI's ``MapTransform``.

    Raises:
        ValueError: naming the file, when the class is missing (and no ``default_class``) or not one of
            ``class_names``, or the mask is not binary.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        class_key: str = "class",
        default_class: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_names = [str(c) for c in class_names]
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be a non-empty list of distinct names, got {self.class_names}.")
        if default_class is not None and default_class not in self.class_names:
            raise ValueError(f"default_class {default_class!r} is not one of class_names {self.class_names}.")
        self.class_key = class_key
        self.default_class = default_class

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """
        Args:
            data: a dictionary with the mask(s) and ``class_key``.

        Returns:
            a copy of ``data`` whose mask(s) hold class indices (same type and dtype).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            source = get_source_name(d, key)
            name = d.get(self.class_key, self.default_class)
            if name is None:
                raise ValueError(
                    f"{source}: the datalist entry has no '{self.class_key}' (the lesion class MCDRL needs); add it "
                    f"or set `default_class` to one of {self.class_names}."
                )
            if str(name) not in self.class_names:
                raise ValueError(f"{source}: class {name!r} is not one of the bundle's class_names {self.class_names}.")
            mask = d[key]
            values = torch.unique(torch.as_tensor(mask))
            if not bool(((values == 0) | (values == 1)).all()):
                raise ValueError(f"{source}: ClassIndexMapd needs a binary {{0, 1}} mask, found values {values[:6]}.")
            d[key] = mask * float(self.class_names.index(str(name)) + 1)
        return d


class LesionProbabilityd(MapTransform):
    """
    Lesion-vs-background probability from K + 1 class probabilities: ``P(lesion) = 1 - P(background)`` (channel 0),
    a (1, H, W) map, so that the binary Dice/IoU/HD95/ASSD of every bundle apply (threshold it at 0.5 with
    ``AsDiscreted``, the decision the lesion-logit output of :class:`common.networks.MCDRL` gives at inference).

    Args:
        keys: the probability key(s), usually ``"pred"`` (after ``Activationsd(softmax=True)``).
        classes_key: where to keep the (K + 1, H, W) class probabilities for per-class metrics (``None``: dropped).
            With several keys, ``"<key>_classes"``-style names are up to the caller: give one key.
        allow_missing_keys: as MONAI's ``MapTransform``.
    """

    def __init__(self, keys: KeysCollection, classes_key: str | None = "pred_classes", allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.classes_key = classes_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """
        Args:
            data: a dictionary with (K + 1, H, W) probabilities.

        Returns:
            a copy with (1, H, W) lesion probabilities (and the class probabilities under ``classes_key``).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            probs = d[key]
            if self.classes_key is not None:
                d[self.classes_key] = probs
            d[key] = 1.0 - probs[:1]
        return d


class BinaryFromClassIndexd(MapTransform):
    """
    Binary lesion mask from a class-index map: ``label > 0`` (float 0/1, same shape).

    Args:
        keys: the class-index map key(s), usually ``"label"``.
        classes_key: where to keep the class-index map for per-class metrics (``None``: dropped).
        allow_missing_keys: as MONAI's ``MapTransform``.
    """

    def __init__(self, keys: KeysCollection, classes_key: str | None = "label_classes", allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.classes_key = classes_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """
        Args:
            data: a dictionary with a class-index map.

        Returns:
            a copy with the binary mask (and the map under ``classes_key``).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if self.classes_key is not None:
                d[self.classes_key] = label
            d[key] = (label > 0).to(label.dtype) if isinstance(label, torch.Tensor) else (label > 0).astype("float32")
        return d
