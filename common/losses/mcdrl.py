# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The loss of MCDRL (Liang et al., arXiv 2508.05008, section 4.2.3, eq. 9-12).

Source: the paper only (no public code exists); the weights lambda1 = 0.5, lambda2 = 0.1 and tau = 0.5 are the
paper's (section 4.2.3).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MCDRLLoss", "image_classes_from_label"]


def image_classes_from_label(label: torch.Tensor) -> torch.Tensor:
    """
    The class of each image from its class-index map ("the disease category k is derived from the ground truth
    label", section 4.2.3): the largest value of the map minus 1 (each image has a single disease type, so its
    lesion pixels all carry ``k + 1``), or -1 for an image without lesion pixels.

    Args:
        label: (B, 1, H, W) or (B, H, W) class-index map: 0 background, ``k + 1`` lesion of class k.

    Returns:
        (B,) int64 class indices, -1 where the map is all background.
    """
    return label.reshape(label.shape[0], -1).amax(dim=1).long() - 1


class MCDRLLoss(nn.Module):
    """
    MCDRL's training objective, eq. 9: ``L = L_seg + lambda1 * L_causal + lambda2 * L_contrast``.

    - ``L_seg`` (eq. 10): pixel-wise cross-entropy of the K + 1 softmax (background + the K classes) against the
      class-index map. Eq. 10 SUMS over the H x W pixels; this averages over pixels and images
      (``F.cross_entropy`` with ``reduction="mean"``), which only rescales the term by 1 / (H W) but keeps
      lambda1 and lambda2 meaningful at any image size (with the sum, L_seg at 224 px would be ~50,000 times the
      other terms).
    - ``L_causal`` (eq. 11): ``|| Pool(F_ca) - (1/M) sum_m t_{k,m} ||^2`` for the image's class k, averaged over
      the images of the batch that have a lesion. With ``causal_normalize=True`` (default) both vectors are
      L2-normalised first (so the term is ``2 - 2 cos``, in [0, 4]): the intervened visual feature and the text
      embedding live on different scales (CLIP compares them by cosine, as eq. 6 and 12 do), and an unnormalised
      squared distance of 512-dim vectors would outweigh L_seg by orders of magnitude at lambda1 = 0.5. Set
      ``causal_normalize=False`` for the literal eq. 11. The term is 0 while the intervention is off (progressive
      schedule, section 5.1.3: on after epoch 10) and with ``cdrl=False``.
    - ``L_contrast`` (eq. 12): ``-log softmax_k(sim(e_k, F_vis) / tau)`` at the image's class, ``sim`` the cosine,
      averaged over the images with a lesion.

    Images without lesion pixels have no class (the class comes from the label) and are left out of L_causal and
    L_contrast; a batch without any lesion gives 0 for both.

    Each weighted term of the last call is kept in :attr:`last_terms` (``seg``, ``causal``, ``contrast``) for
    :class:`common.handlers.LossTermsHandler`.

    Args:
        lambda1: weight of L_causal (paper: 0.5).
        lambda2: weight of L_contrast (paper: 0.1).
        tau: temperature of L_contrast (paper: 0.5).
        causal_normalize: L2-normalise both vectors of L_causal (see above).

    Raises:
        ValueError: when ``tau <= 0`` or a weight is negative.
    """

    def __init__(
        self, lambda1: float = 0.5, lambda2: float = 0.1, tau: float = 0.5, causal_normalize: bool = True
    ) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"contrast_tau must be positive, got {tau}.")
        if lambda1 < 0 or lambda2 < 0:
            raise ValueError(f"lambda1 and lambda2 must be >= 0, got {lambda1}, {lambda2}.")
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.tau = float(tau)
        self.causal_normalize = bool(causal_normalize)
        self.last_terms: dict[str, float] = {}

    def segmentation(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """
        Eq. 10 (mean over pixels).

        Args:
            logits: (B, K + 1, H, W).
            label: (B, 1, H, W) or (B, H, W) class-index map.

        Returns:
            scalar.
        """
        target = label.reshape(label.shape[0], *label.shape[-2:]).long()
        return F.cross_entropy(logits, target)

    def causal(self, pooled: torch.Tensor, causal_targets: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """
        Eq. 11.

        Args:
            pooled: (B, d) ``Pool(F_ca)``.
            causal_targets: (K, d) ``mean_m t_{k,m}``.
            classes: (B,) image classes, -1 for none.

        Returns:
            scalar, the mean over images with a class (0 with a gradient path when none has one).
        """
        valid = classes >= 0
        if not bool(valid.any()):
            return pooled.sum() * 0.0
        a, b = pooled[valid], causal_targets[classes[valid]]
        if self.causal_normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return ((a - b) ** 2).sum(dim=-1).mean()

    def contrast(self, class_similarity: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """
        Eq. 12.

        Args:
            class_similarity: (B, K) ``cos(e_k, F_vis)``.
            classes: (B,) image classes, -1 for none.

        Returns:
            scalar, the mean over images with a class (0 with a gradient path when none has one).
        """
        valid = classes >= 0
        if not bool(valid.any()):
            return class_similarity.sum() * 0.0
        return F.cross_entropy(class_similarity[valid] / self.tau, classes[valid])

    def forward(self, outputs: Mapping[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        """
        Args:
            outputs: the training-mode output of :class:`common.networks.MCDRL` (``logits``, ``pooled``,
                ``class_similarity``, ``causal_targets``, ``intervened``).
            label: (B, 1, H, W) class-index map (0 background, ``k + 1`` class k).

        Returns:
            the scalar eq. 9.

        Raises:
            TypeError: when ``outputs`` is not that dict (e.g. a network in eval mode).
        """
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            raise TypeError("MCDRLLoss needs the training-mode output dict of common.networks.MCDRL.")
        classes = image_classes_from_label(label)
        seg = self.segmentation(outputs["logits"], label)
        if bool(outputs["intervened"]):
            causal = self.lambda1 * self.causal(outputs["pooled"], outputs["causal_targets"], classes)
        else:
            causal = outputs["pooled"].sum() * 0.0
        contrast = self.lambda2 * self.contrast(outputs["class_similarity"], classes)
        self.last_terms = {
            "seg": float(seg.detach()),
            "causal": float(causal.detach()),
            "contrast": float(contrast.detach()),
        }
        return seg + causal + contrast
