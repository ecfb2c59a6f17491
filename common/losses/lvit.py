# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
LViT losses: the supervised Dice + CE loss (paper eq. 16 / appendix F eq. 28-30), the Language-Vision (LV) loss
(eq. 14-15 / appendix D eq. 26-27) and the semi-supervised combination (eq. 17 / eq. 31).

Source: Li et al., "LViT: Language meets Vision Transformer in Medical Image Segmentation", sections 3.3 and 4.1,
appendices D and F. All losses take the network's LOGITS (one foreground channel); the sigmoid is applied here.

How eq. 28-29 (C = 2 categories) map onto one sigmoid output. The network predicts one logit ``z`` per pixel; the
two category probabilities are ``p_i,fg = sigmoid(z_i)`` and ``p_i,bg = 1 - sigmoid(z_i)``, the one-hot target is
``y_i,fg = y_i`` and ``y_i,bg = 1 - y_i`` (``y_i`` may be soft, e.g. a pseudo label). Then, per image of N pixels:

- eq. 29, ``L_CE = -(1/N) sum_i sum_j y_ij log p_ij`` = the mean over pixels of
  ``-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]``, i.e. exactly ``BCEWithLogitsLoss`` (computed from the
  logits for numerical stability). Averaged over the images of a batch (all of one size) it equals
  ``torch.nn.BCEWithLogitsLoss()`` on the batch.
- eq. 28 is printed as ``1 - sum_i sum_j 1/(NC) * 2|p_ij ∩ y_ij| / (|p_ij| + |y_ij|)``. Read literally (a ratio per
  pixel, then averaged) a perfect prediction scores ``1 - 1/C = 0.5`` (the ratio is 1 for the true category and 0
  or 0/0 for the other), and eq. 32 (``Dice = 1 - L_Dice``) would not be the Dice score. We therefore read ``|.|``
  as sums over the N pixels of the image, the standard soft Dice per category, averaged over the C = 2 categories::

      D_j = (2 sum_i p_ij y_ij + s) / (sum_i p_ij + sum_i y_ij + s),   L_Dice = 1 - (D_fg + D_bg) / 2

  with ``s = smooth`` (default 1e-5, the reference code's constant, method_notes §1.3) so that an all-empty
  category gives ``D = 1`` instead of 0/0. This is per image, then averaged over images.

Difference from ``monai.losses.DiceLoss(sigmoid=True) + torch.nn.BCEWithLogitsLoss()``: the CE part is identical;
MONAI's Dice on a one-channel sigmoid output is the FOREGROUND Dice only, whereas eq. 28 also averages in the
background category. Our Dice equals ``DiceLoss(smooth_nr=s, smooth_dr=s)`` applied to the two-channel maps
``[1 - p, p]`` and ``[1 - y, y]`` (``include_background=True``, no activation). For small lesions the background
Dice is close to 1, so our Dice term is about half of MONAI's and its gradient also penalises false positives
through the background category.

The reference code's loss (``WeightedDiceBCE(dice_weight=0.5, BCE_weight=0.5)`` in HUANGLIZI/LViT ``utils.py``, the
loss ``train_model.py`` trains with, so the loss behind the paper's numbers; method_notes §1.3) differs from both and
is offered as ``sup_loss="reference"`` (:func:`reference_dice_bce_terms`), on the same logits:

- ``WeightedDiceLoss([0.5, 0.5])``: per image, with the constant pixel weight ``w = 0.5`` applied to both maps,
  ``1 - (2 w^2 sum p y + s) / (w^2 (sum p^2 + sum y^2) + s)``, ``s = 1e-5``: a FOREGROUND-only Dice with squared
  denominators, averaged over the images;
- ``WeightedBCE([0.5, 0.5])``: ``0.5 * sum_{y > 0.5} bce / n_pos + 0.5 * sum_{y < 0.5} bce / n_neg``, the positive
  and negative pixels counted over the WHOLE batch (``+1e-12``), i.e. a class-balanced BCE (pixels with
  ``y == 0.5`` exactly drop out). The reference computes the BCE from probabilities (``F.binary_cross_entropy``,
  log clamped at -100); we use the logits (equal up to that clamp).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

__all__ = [
    "LanguageVisionLoss",
    "LViTDiceCELoss",
    "LViTSemiSupervisedLoss",
    "dice_ce_per_image",
    "reference_dice_bce_terms",
    "SUP_LOSSES",
]

SUP_LOSSES = ("paper", "reference")
"""Values of ``sup_loss``: the paper's eq. 28-29 form, or the reference code's ``WeightedDiceBCE``."""


def _check_pair(input: torch.Tensor, target: torch.Tensor, target_channels: int, name: str) -> None:  # noqa: A002
    if input.ndim < 3 or input.shape[1] != 1:
        raise ValueError(f"{name}: input must be logits of shape (B, 1, *spatial), got {tuple(input.shape)}.")
    expected = (input.shape[0], target_channels, *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: target must have shape {expected}, got {tuple(target.shape)}.")


def dice_ce_per_image(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> tuple[torch.Tensor, ...]:
    """
    Per-image Dice loss (eq. 28, two categories) and CE loss (eq. 29) of one-channel logits; see the module notes.

    Args:
        logits: ``(B, 1, *spatial)`` logits.
        target: ``(B, 1, *spatial)`` foreground targets in [0, 1] (binary masks or soft pseudo labels).
        smooth: ``s`` added to numerator and denominator of each category's Dice, default 1e-5, must be >= 0.

    Returns:
        ``(dice, ce)``, two float32 tensors of shape ``(B,)``.
    """
    z = logits.float().contiguous()  # one memory layout -> the same reduction order for views and copies
    y = target.float().contiguous()
    dims = tuple(range(1, z.ndim))
    p = torch.sigmoid(z)
    fg = (2.0 * (p * y).sum(dims) + smooth) / (p.sum(dims) + y.sum(dims) + smooth)
    q, r = 1.0 - p, 1.0 - y
    bg = (2.0 * (q * r).sum(dims) + smooth) / (q.sum(dims) + r.sum(dims) + smooth)
    dice = 1.0 - 0.5 * (fg + bg)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(dims)
    return dice, ce


def reference_dice_bce_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    smooth: float = 1e-5,
    pixel_weight: float = 0.5,
    pos_neg_weights: tuple[float, float] = (0.5, 0.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The reference code's ``WeightedDiceLoss`` and ``WeightedBCE`` (HUANGLIZI/LViT ``utils.py``; module notes), with
    per-image weights so that images without a usable target (unlabeled, no pseudo label yet) drop out.

    Args:
        logits: ``(B, 1, *spatial)`` logits.
        target: ``(B, 1, *spatial)`` targets in [0, 1].
        weight: ``(B,)`` per-image weights in {0, 1} (default all 1). Dice: ``mean_b(weight_b * dice_b)`` over all B
            images. BCE: the positive/negative pixel sums and counts run over the images with ``weight_b > 0``, and
            the result is scaled by ``sum(weight) / B`` (so a batch of labeled images gives exactly the reference
            value, and in a mixed batch the supervised images carry their share, as in the paper form).
        smooth: the Dice ``s``, default 1e-5 (reference).
        pixel_weight: the reference's constant pixel weight ``w`` of the Dice (its ``weights=[0.5, 0.5]`` make
            ``w = 0.5 + y * (0.5 - 0.5) = 0.5``), default 0.5.
        pos_neg_weights: weights of the positive and negative BCE means, default ``(0.5, 0.5)``.

    Returns:
        ``(dice, bce)``: two scalars, unweighted by the loss's ``dice_weight`` / ``ce_weight``.
    """
    z = logits.float().flatten(1)
    y = target.float().flatten(1)
    b = z.shape[0]
    w_img = torch.ones(b, device=z.device) if weight is None else weight.float().to(z.device)
    p = torch.sigmoid(z)
    wp, wy = pixel_weight * p, pixel_weight * y
    dice = 1.0 - (2.0 * (wp * wy).sum(1) + smooth) / ((wp * wp).sum(1) + (wy * wy).sum(1) + smooth)
    dice_term = (w_img * dice).mean()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    use = (w_img > 0).to(z.dtype)[:, None]
    pos = (y > 0.5).to(z.dtype) * use
    neg = (y < 0.5).to(z.dtype) * use
    n_pos, n_neg = pos.sum().detach() + 1e-12, neg.sum().detach() + 1e-12
    bce_term = (pos_neg_weights[0] * pos * bce / n_pos + pos_neg_weights[1] * neg * bce / n_neg).sum()
    return dice_term, bce_term * (w_img.sum() / b)


class LanguageVisionLoss(nn.Module):
    """
    LV (Language-Vision) loss, LViT eq. 14-15 (appendix D eq. 26-27): for each image,
    ``L_LV = 1 - cos(flatten(p), flatten(c))``, the cosine similarity between the predicted foreground probability
    map ``p`` and the contrastive mask ``c`` (the mask of the labeled text most similar to the image's text, see
    :func:`common.data.semi_supervised.assign_contrastive_labels`), then reduced over the images.

    Empty maps: an all-zero contrastive mask carries no location (and the cosine is 0/0), so such an image is
    SKIPPED: its per-image value is 0 and it is left out of the ``"mean"``. A batch with no usable image gives 0
    (still attached to the graph). An all-zero prediction (only possible with ``sigmoid=False``) has cosine 0 and
    loss 1 (the denominator is clamped at ``eps``).

    Args:
        sigmoid: apply a sigmoid to ``input`` (logits, default ``True``); ``False`` when ``input`` already holds
            probabilities.
        reduction: ``"mean"`` (default; over images with a non-empty contrastive mask), ``"sum"`` or ``"none"``
            (shape ``(B,)``).
        eps: lower clamp of ``|p| * |c|``, default 1e-8.

    Raises:
        ValueError: when ``reduction`` is not one of the three values; (when called) when shapes differ.

    Examples::

        lv = LanguageVisionLoss(sigmoid=False)
        lv(torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
        # 1 - 1/sqrt(2) = 0.2929
    """

    def __init__(self, sigmoid: bool = True, reduction: str = "mean", eps: float = 1e-8) -> None:
        super().__init__()
        self.sigmoid = bool(sigmoid)
        self.reduction = look_up_option(reduction, ("mean", "sum", "none"))
        self.eps = float(eps)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """
        Args:
            input: ``(B, C, *spatial)`` logits (or probabilities with ``sigmoid=False``).
            target: the contrastive masks, same shape as ``input``.

        Returns:
            the reduced loss (a scalar) or, with ``reduction="none"``, one value per image.
        """
        if input.shape != target.shape or input.ndim < 2:
            raise ValueError(
                f"LanguageVisionLoss: input {tuple(input.shape)} and contrastive mask {tuple(target.shape)} must have "
                "the same (B, C, *spatial) shape."
            )
        p = input.float().flatten(1)
        if self.sigmoid:
            p = torch.sigmoid(p)
        c = target.float().flatten(1)
        cos = (p * c).sum(1) / (p.norm(dim=1) * c.norm(dim=1)).clamp_min(self.eps)
        usable = c.abs().sum(1) > 0
        per_image = torch.where(usable, 1.0 - cos, torch.zeros_like(cos))
        if self.reduction == "none":
            return per_image
        if self.reduction == "sum":
            return per_image.sum()
        if not bool(usable.any()):
            return per_image.sum() * 0.0
        return per_image.sum() / usable.sum()


class LViTDiceCELoss(nn.Module):
    """
    The supervised LViT loss, eq. 16 / eq. 30: ``L_sup = dice_weight * L_Dice + ce_weight * L_CE``. With
    ``sup_loss="paper"`` (default) the Dice is the two-category Dice of eq. 28 and the CE that of eq. 29 (see the
    module notes for how they map onto one sigmoid output), each computed per image and averaged over the batch;
    with ``sup_loss="reference"`` they are the reference code's foreground Dice with squared denominators and
    class-balanced BCE (:func:`reference_dice_bce_terms`). Records ``last_terms`` (``"dice"``, ``"ce"``, weighted
    values) like :class:`common.losses.WeightedSumLoss`, for :class:`common.handlers.LossTermsHandler`.

    Args:
        dice_weight: weight of the Dice term, default 0.5 (``(L_Dice + L_CE) / 2``, eq. 16).
        ce_weight: weight of the CE term, default 0.5.
        smooth: Dice smoothing ``s`` (>= 0), default 1e-5.
        sup_loss: ``"paper"`` (eq. 28-29, default) or ``"reference"`` (``WeightedDiceBCE`` of the reference code).

    Raises:
        ValueError: when ``smooth`` < 0 or ``sup_loss`` is unknown; (when called) when ``input`` is not
            ``(B, 1, *spatial)`` or ``target`` has another shape.
    """

    def __init__(
        self, dice_weight: float = 0.5, ce_weight: float = 0.5, smooth: float = 1e-5, sup_loss: str = "paper"
    ) -> None:
        super().__init__()
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}.")
        if sup_loss not in SUP_LOSSES:
            raise ValueError(f"sup_loss must be one of {list(SUP_LOSSES)}, got {sup_loss!r}.")
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.smooth = float(smooth)
        self.sup_loss = sup_loss
        self.last_terms: dict[str, float] = {}

    def supervised_terms(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor  # noqa: A002
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            input: ``(B, 1, *spatial)`` logits.
            target: ``(B, 1, *spatial)`` targets in [0, 1].
            weight: ``(B,)`` per-image weights (1 = supervised, 0 = no supervised term).

        Returns:
            ``(dice_term, ce_term)``: ``dice_weight * mean_b(weight_b * dice_b)`` and the same for CE (the mean is
            over all B images); for ``sup_loss="reference"`` see :func:`reference_dice_bce_terms`.
        """
        if self.sup_loss == "reference":
            dice_t, bce_t = reference_dice_bce_terms(input, target, weight, smooth=self.smooth)
            return self.dice_weight * dice_t, self.ce_weight * bce_t
        dice, ce = dice_ce_per_image(input, target, self.smooth)
        return self.dice_weight * (weight * dice).mean(), self.ce_weight * (weight * ce).mean()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """
        Args:
            input: ``(B, 1, *spatial)`` logits.
            target: ``(B, 1, *spatial)`` binary (or soft) masks.

        Returns:
            the scalar loss.
        """
        _check_pair(input, target, 1, type(self).__name__)
        ones = torch.ones(input.shape[0], device=input.device)
        dice_term, ce_term = self.supervised_terms(input, target, ones)
        self.last_terms = {"dice": float(dice_term.detach()), "ce": float(ce_term.detach())}
        return dice_term + ce_term


class LViTSemiSupervisedLoss(LViTDiceCELoss):
    """
    Semi-supervised LViT loss on a batch mixing labeled and unlabeled images (eq. 16-17 / eq. 30-31). Per image b::

        l_b = v_b * (dice_weight * L_Dice,b + ce_weight * L_CE,b) + u_b * alpha * L_LV,b

    where ``u_b`` is 1 for an unlabeled image, ``v_b`` is 1 when image b has a usable target (always for labeled
    images; for an unlabeled one, once its EPI pseudo label exists), Dice and CE are computed against channel 0 of
    the packed label (the mask, or the EPI pseudo label, soft) and ``L_LV`` against channel 1 (the contrastive mask,
    :class:`LanguageVisionLoss`; an empty mask, e.g. an unlabeled image whose text matched no labeled text, is
    skipped: ``L_LV,b = 0``). A labeled image therefore gets eq. 16, an unlabeled image with a pseudo label eq. 17,
    and an unlabeled image before its first pseudo label only ``alpha * L_LV``. The batch value is, by ``reduction``:

    - ``"group"`` (default): ``mean_{b labeled} l_b + mean_{b unlabeled} l_b`` (a missing group contributes 0): eq. 16
      is the loss of the labeled data and eq. 17 that of the unlabeled data, each averaged over its own images, so
      the labeled term keeps its scale however many unlabeled images share the batch (with 1/4 labels a batch holds
      about 3 unlabeled images per labeled one, and a plain batch mean would scale the labeled term by about 1/4);
    - ``"batch"``: ``(1/B) sum_b l_b``, one mean over all B images.

    The paper defines eq. 16 and eq. 17 per data kind and does not say how a mixed batch combines them (the reference
    code does not train the semi-supervised variant, method_notes §1.3). With no unlabeled image in the batch both
    reductions equal :class:`LViTDiceCELoss` exactly.

    ``last_terms`` holds the three weighted terms ``{"dice", "ce", "lv"}`` of the last call (their sum is the loss),
    for :class:`common.handlers.LossTermsHandler`.

    Args:
        alpha: weight of the LV loss for unlabeled images, default 0.1 (paper section 4.1); 0 disables it.
        dice_weight: weight of the Dice term, default 0.5.
        ce_weight: weight of the CE term, default 0.5.
        smooth: Dice smoothing (>= 0), default 1e-5.
        lv_eps: clamp of the LV cosine denominator, default 1e-8.
        sup_loss: ``"paper"`` (eq. 28-29, default) or ``"reference"``, see :class:`LViTDiceCELoss`; applies to the
            labeled and the pseudo-label terms.
        reduction: ``"group"`` (default) or ``"batch"``, see above.
        unlabeled_weight: factor ``w`` >= 0 of the unlabeled group's loss (eq. 17, pseudo-label and LV terms), default
            1 (eq. 16 and eq. 17 weighted alike, as the paper writes them). With ``"group"`` the batch value is
            ``mean_{labeled} l_b + w * mean_{unlabeled} l_b``; ``w = 0`` trains on the labeled images of the batch
            only. The paper gives no such weight; semi-supervised methods usually weight the unlabeled loss
            (FixMatch's ``lambda_u``, the mean-teacher consistency weight). Only with ``reduction="group"``.

    Raises:
        ValueError: when ``smooth`` < 0, ``alpha`` < 0, ``unlabeled_weight`` < 0 (or not 1 with ``"batch"``),
            ``sup_loss`` or ``reduction`` is unknown; (when called) when
            the target is not the 4-channel packed label of :class:`common.engines.PrepareBatchSemiSupervised` with
            the input's batch and spatial size.

    Examples::

        loss = LViTSemiSupervisedLoss(alpha=0.1)
        value = loss(logits, packed_label)   # packed_label: (B, 4, H, W) [target, contrastive, is_unlabeled, valid]
        loss.last_terms                      # {"dice": ..., "ce": ..., "lv": ...}
    """

    def __init__(
        self,
        alpha: float = 0.1,
        dice_weight: float = 0.5,
        ce_weight: float = 0.5,
        smooth: float = 1e-5,
        lv_eps: float = 1e-8,
        sup_loss: str = "paper",
        reduction: str = "group",
        unlabeled_weight: float = 1.0,
    ) -> None:
        super().__init__(dice_weight=dice_weight, ce_weight=ce_weight, smooth=smooth, sup_loss=sup_loss)
        if not (
            isinstance(unlabeled_weight, (int, float)) and math.isfinite(unlabeled_weight) and unlabeled_weight >= 0
        ):
            raise ValueError(f"unlabeled_weight must be a finite number >= 0, got {unlabeled_weight!r}.")
        if reduction == "batch" and float(unlabeled_weight) != 1.0:
            raise ValueError(
                f"unlabeled_weight (unlabeled_loss_weight) {unlabeled_weight} needs reduction='group'; with "
                "semi_loss_reduction: batch set unlabeled_loss_weight: 1."
            )
        self.unlabeled_weight = float(unlabeled_weight)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}.")
        if reduction not in ("group", "batch"):
            raise ValueError(f"reduction must be 'group' or 'batch', got {reduction!r}.")
        self.alpha = float(alpha)
        self.reduction = reduction
        self.lv = LanguageVisionLoss(sigmoid=True, reduction="none", eps=lv_eps)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """
        Args:
            input: ``(B, 1, *spatial)`` logits.
            target: ``(B, 4, *spatial)`` packed label ``[target, contrastive, is_unlabeled, target_valid]``, or a
                plain ``(B, 1, *spatial)`` mask meaning every image is labeled (the fully supervised case; used by
                ``tools/benchmark.py`` and any caller without the semi-supervised batch preparation).

        Returns:
            the scalar loss.
        """
        if target.ndim == input.ndim and target.shape[1] == 1:
            ones = torch.ones_like(target)
            target = torch.cat([target, torch.zeros_like(target), torch.zeros_like(target), ones], dim=1)
        _check_pair(input, target, 4, type(self).__name__)
        batch = input.shape[0]
        flags = target[:, 2:4].reshape(batch, 2, -1)[:, :, 0].float()
        unlabeled, valid = flags[:, 0], flags[:, 1]
        lv_per_image = unlabeled * self.lv(input, target[:, 1:2])
        if self.reduction == "batch":
            dice_term, ce_term = self.supervised_terms(input, target[:, 0:1], valid)
            lv_term = self.alpha * lv_per_image.mean()
        else:
            # supervised_terms averages over all B images; rescale each group's share to a mean over that group
            labeled = 1.0 - unlabeled
            dice_term = ce_term = lv_term = input.sum() * 0.0
            for group, factor in ((labeled, 1.0), (unlabeled, self.unlabeled_weight)):
                count = float(group.sum())
                if count == 0:
                    continue
                d, c = self.supervised_terms(input, target[:, 0:1], valid * group)
                dice_term = dice_term + d * (factor * batch / count)
                ce_term = ce_term + c * (factor * batch / count)
            n_unlabeled = float(unlabeled.sum())
            if n_unlabeled > 0:
                lv_term = self.unlabeled_weight * self.alpha * lv_per_image.sum() / n_unlabeled
        self.last_terms = {
            "dice": float(dice_term.detach()),
            "ce": float(ce_term.detach()),
            "lv": float(lv_term.detach()),
        }
        return dice_term + ce_term + lv_term
