# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
BiCLIP's training objective, eq. 8 (Talaei et al., section 2.2 "Overall Loss Function"; /work/shared/papers/biclip.txt):

    L_total = L_seg + lambda_gen * L_gen + lambda_IAC * L_IAC + lambda_cycle * L_cycle

- ``L_seg``: Dice + cross-entropy between the weak-view prediction of eq. 7 and the spatially augmented mask
  ``y_g``, computed from the LOGITS (``monai.losses.DiceLoss(sigmoid=True)`` + ``torch.nn.BCEWithLogitsLoss``, i.e.
  ``monai.losses.DiceCELoss(sigmoid=True)`` with both weights 1, split into two logged terms). The reference
  (``engine/wrapper.py``, method_notes.md 4.2) feeds sigmoid PROBABILITIES into ``DiceCELoss()``, whose
  one-channel CE term is ``BCEWithLogits`` in MONAI >= 1.3, so its CE applies a second sigmoid; that is not copied.
- ``L_gen`` (:func:`generation_loss`): the L1 distance between the pseudo image ``x_hat`` and its supervision signal,
  which the reference builds as the image masked by the ground truth, ``x * y`` (background zeroed); mean over
  pixels and channels.
- ``L_IAC`` (:func:`iac_loss`), eq. 6: ``1 - p_w . p_s / (|p_w| |p_s|)``, averaged over the batch; with
  ``iac_stop_gradient`` (default, the reference) ``p_s`` is detached, so the strong view is a target.
- ``L_cycle`` (:func:`cycle_loss`), eq. 2: ``||t - t_hat||_2^2``, here averaged over the embedding width and the batch
  (``"l2"``, the paper's squared distance; the sum over the width would only rescale lambda_cycle by the width);
  ``"l1"`` is the reference's ``L1Loss``. The target ``t`` is detached (the reference's ``text_embed.detach()``):
  otherwise the cycle term could shrink it towards whatever the generator reproduces, with no other term holding
  it.

Default weights are the reference's: lambda_gen 0.1, lambda_IAC 0.05, lambda_cycle 0.07 (the paper gives none).
"""

from __future__ import annotations

__all__ = ["BiCLIPLoss", "cycle_loss", "generation_loss", "iac_loss", "CYCLE_DISTANCES"]

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.utils import look_up_option
from torch import nn

CYCLE_DISTANCES = ("l2", "l1")
"""Values of ``cycle_distance``: the paper's squared L2 (eq. 2) or the reference's L1."""


def cycle_loss(text: torch.Tensor, text_cycle: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """
    Eq. 2, ``L_cycle = ||t - t_hat||_2^2`` with ``t`` detached, averaged over the width and the batch.

    Args:
        text: ``t``, (B, D).
        text_cycle: ``t_hat``, (B, D).
        distance: ``"l2"`` (squared difference, eq. 2) or ``"l1"`` (absolute difference, the reference).

    Returns:
        scalar tensor.
    """
    diff = text_cycle - text.detach()
    return diff.abs().mean() if look_up_option(distance, CYCLE_DISTANCES) == "l1" else diff.pow(2).mean()


def iac_loss(proj_weak: torch.Tensor, proj_strong: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """
    Eq. 6, ``L_IAC = 1 - p_w^T p_s / (||p_w||_2 ||p_s||_2)``, averaged over the batch.

    Args:
        proj_weak: ``p_w``, (B, K).
        proj_strong: ``p_s``, (B, K).
        stop_gradient: detach ``p_s`` (the reference). Defaults to ``True``.

    Returns:
        scalar tensor in [0, 2].
    """
    target = proj_strong.detach() if stop_gradient else proj_strong
    return (1.0 - F.cosine_similarity(proj_weak, target, dim=1, eps=1e-8)).mean()


def generation_loss(pseudo: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """
    ``L_gen``: L1 between the pseudo image and the generated target ``image * mask`` (the reference's
    ``generated_gt``: the image with the background zeroed), mean over all elements.

    Args:
        pseudo: ``x_hat``, (B, C, H, W).
        image: the un-augmented input ``x`` (B, C, H, W), in [0, 1].
        mask: the un-augmented binary mask (B, 1, H, W).

    Returns:
        scalar tensor.
    """
    return (pseudo - image * mask).abs().mean()


class BiCLIPLoss(nn.Module):
    """
    BiCLIP's total loss, eq. 8, on the training-mode output of :py:class:`common.networks.BiCLIP`; see the module
    notes for each term.

    The weighted terms of the last call are kept in :attr:`last_terms` (``seg_dice``, ``seg_ce``, ``gen``, ``iac``,
    ``cycle``, plain floats; their sum is the returned loss) for :py:class:`common.handlers.LossTermsHandler`, which
    logs them as ``loss_<term>``.

    Args:
        lambda_gen: weight of ``L_gen``. Defaults to 0.1.
        lambda_iac: weight of ``L_IAC``. Defaults to 0.05.
        lambda_cycle: weight of ``L_cycle``. Defaults to 0.07.
        dice_weight: weight of the Dice part of ``L_seg``. Defaults to 1.0.
        ce_weight: weight of the cross-entropy part of ``L_seg``. Defaults to 1.0.
        cycle_distance: ``"l2"`` (eq. 2, default) or ``"l1"`` (the reference).
        iac_stop_gradient: detach ``p_s`` in eq. 6 (the reference). Defaults to ``True``.

    Raises:
        ValueError: when a weight is negative or ``cycle_distance`` is unknown; in forward, when the output is not
            the network's training dictionary (e.g. the network was in evaluation mode) or shapes disagree.

    Examples::

        loss = BiCLIPLoss()
        out = network.train()(image, text_ids, label)   # dict
        value = loss(out, label)
        loss.last_terms   # {"seg_dice": ..., "seg_ce": ..., "gen": ..., "iac": ..., "cycle": ...}
    """

    def __init__(
        self,
        lambda_gen: float = 0.1,
        lambda_iac: float = 0.05,
        lambda_cycle: float = 0.07,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        cycle_distance: str = "l2",
        iac_stop_gradient: bool = True,
    ) -> None:
        super().__init__()
        weights = {
            "lambda_gen": lambda_gen,
            "lambda_iac": lambda_iac,
            "lambda_cycle": lambda_cycle,
            "dice_weight": dice_weight,
            "ce_weight": ce_weight,
        }
        for name, w in weights.items():
            if float(w) < 0:
                raise ValueError(f"BiCLIPLoss: {name} must be >= 0, got {w}.")
        self.weights = {
            "seg_dice": float(dice_weight),
            "seg_ce": float(ce_weight),
            "gen": float(lambda_gen),
            "iac": float(lambda_iac),
            "cycle": float(lambda_cycle),
        }
        self.cycle_distance = look_up_option(cycle_distance, CYCLE_DISTANCES)
        self.iac_stop_gradient = bool(iac_stop_gradient)
        self.dice = DiceLoss(sigmoid=True)
        self.last_terms: dict[str, float] = {}

    def forward(self, output: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            output: the network's training dictionary (``pred``, ``image``, ``pseudo``, ``text``, ``text_cycle``,
                optional ``label``, and ``proj_weak`` with ``proj_strong``: without them the IAC term is 0).
            target: the un-augmented mask (B, 1, H, W) from the batch. ``L_seg`` uses ``output["label"]`` (the mask
                after the joint spatial augmentation) when present, else ``target``; ``L_gen`` always uses
                ``target`` (the pseudo image is generated before the augmentation).

        Returns:
            the scalar total of eq. 8.
        """
        if not isinstance(output, Mapping) or "pred" not in output:
            raise ValueError(
                "BiCLIPLoss needs the training-mode output dictionary of common.networks.BiCLIP (keys pred, image, "
                f"pseudo, text, text_cycle, proj_weak, ...), got {type(output).__name__}; is the network in eval mode?"
            )
        logits = output["pred"]
        seg_target = output["label"] if output.get("label") is not None else target
        if tuple(seg_target.shape) != (logits.shape[0], 1, *logits.shape[2:]):
            raise ValueError(
                f"BiCLIPLoss: mask shape {tuple(seg_target.shape)} does not match logits " f"{tuple(logits.shape)}."
            )
        seg_target = seg_target.to(logits.dtype)
        raw = {
            "seg_dice": self.dice(logits, seg_target),
            "seg_ce": F.binary_cross_entropy_with_logits(logits, seg_target),
            "gen": generation_loss(output["pseudo"], output["image"], target.to(logits.dtype)),
            "cycle": cycle_loss(output["text"], output["text_cycle"], self.cycle_distance),
        }
        if output.get("proj_strong") is not None:
            raw["iac"] = iac_loss(output["proj_weak"], output["proj_strong"], self.iac_stop_gradient)
        else:
            raw["iac"] = logits.new_zeros(())
        total = logits.new_zeros(())
        last = {}
        for name in ("seg_dice", "seg_ce", "gen", "iac", "cycle"):
            value = self.weights[name] * raw[name]
            last[name] = float(value.detach())
            total = total + value
        self.last_terms = last
        return total
