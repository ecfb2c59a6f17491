# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The adversarial min-max loss of CausalCLIPSeg (Chen et al., MICCAI 2024, section 2.3 "Adversarial Training",
eq. 3-4), made a bounded game with a gradient reversal layer in the network.

Source: the paper, section 2.3 (eq. 3-4) and section 3.2 (lambda = 0.05). The public reference code has no loss
(/work/shared/reference/method_notes.md section 2.3: "The paper's min-max loss must be written by us").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

__all__ = ["CausalMinMaxLoss"]

_DICE_EPS = 1e-5  # smoothing of the optional Dice term, monai.losses.DiceLoss's smooth_nr = smooth_dr


class CausalMinMaxLoss(nn.Module):
    """
    CausalCLIPSeg's loss (section 2.3, eq. 3-4)::

        L   = L_c - lambda * L_s                                            (eq. 3)
        L_c = l_ce(D_c(tau, F^c), Y),   L_s = l_ce(D_s(tau, F^s), Y)       (eq. 4)

    ``D_c`` and ``D_s`` are the two identical decoders of the causal features ``F^c = M * F`` and the confounding
    features ``F^s = (1 - M) * F`` (eq. 2). For the one-channel logits of eq. 1, ``l_ce`` is the binary
    cross-entropy with logits, averaged over the pixels of an image and then over the images (with all images of a
    batch of one size this is ``F.binary_cross_entropy_with_logits(logits, Y)``, ``reduction="mean"``). The paper
    "minimises L_c and maximises L_s, i.e. minimises L" with lambda = 0.05 (section 3.2).

    **Why eq. 3 is not minimised as written.** Minimising ``L_c - lambda * L_s`` jointly over ALL parameters
    includes D_s's own parameters, and D_s can raise L_s by itself, without the features changing at all: it only
    has to predict confidently wrong. The BCE of a logit ``z`` with the wrong sign is about ``|z|``, so for any
    features ``sup_{D_s} L_s = +inf`` (scale D_s's last layer) and L is unbounded below. The gradient of
    ``-lambda * L_s`` with respect to D_s's logits is ``-lambda * (sigmoid(z) - Y) / N``, which tends to
    ``+-lambda / N`` and never vanishes, so D_s's weights drift without end and L_s grows without bound (for
    a linear last layer on fixed features, linearly in the number of SGD steps); the ``-lambda * L_s`` term then
    dominates the total, and what the masker receives is the gradient of a D_s that is being made worse on
    purpose, not a signal about what F^s encodes.
    Adam (the paper's optimiser) does not slow this down at a small lambda: its step is about the learning rate
    whatever the gradient's scale. Measured on the project's network (stand-in encoders) at the paper's
    lambda = 0.05 with Adam (``tests/test_causalclipseg_network.py``,
    ``test_reversal_keeps_l_s_bounded_where_literal_eq3_runs_away_with_adam``): L_s rises from 0.89 to 10 in 50
    steps and to 976 in 200 at lr 1e-3, and from 0.89 to 1.59 in 200 steps, still rising, at the paper's 3e-5;
    with the reversal it stays at or below its initial value.

    **What is optimised instead (gradient reversal, Ganin & Lempitsky, ICML 2015).** The network puts a gradient
    reversal on both inputs of D_s, F^s and the sentence feature tau (identity forward, gradient times -1
    backward), and this module returns::

        returned = L_c + lambda * L_s

    so that, per parameter group (``d`` = the ordinary gradient, as if there were no reversal):

    - D_c: ``dL_c`` (minimises L_c, as eq. 3);
    - D_s: ``+lambda * dL_s`` (MINIMISES L_s: D_s is the best predictor of Y it can make from F^s);
    - everything upstream of the reversals (maskers, shared fusion, image encoder through F^s, text encoder
      through tau): ``dL_c - lambda * dL_s`` (descends L_c, ASCENDS L_s), exactly the gradient of eq. 3 for these
      parameters.

    Only D_s's direction differs from eq. 3: eq. 3's "maximise L_s" is read as ``max over the feature extractor
    and masker of min over D_s``, the usual adversarial game. **Coefficient of the reversal:** the lambda is in the
    returned value, so the network's reversal must be a pure sign flip (coefficient 1). A reversal that also
    scales by lambda gives the upstream ``-lambda**2 * dL_s``. The alternative split (reversal coefficient lambda,
    weight 1 on L_s in the loss) gives the same upstream gradient and a 1/lambda larger D_s gradient, which Adam
    (the paper's optimiser, section 3.2) almost cancels with its per-parameter scaling; this module implements the
    first split.

    **What the reversal guarantees, and what it does not.** Let ``p = mean(Y)`` be the foreground fraction of the
    batch and ``H(p) = -p ln p - (1 - p) ln(1 - p)`` (<= ln 2 = 0.693) the BCE of the best CONSTANT predictor
    ``logit(p)``, which ignores its input. If D_s can output a constant (eq. 1 can: kernel ``W_tau = 0`` and a
    constant ``b_tau`` through the bias of the text projection), then for ANY features F^s::

        0 <= V(F^s) := min_{D_s} L_s(D_s, F^s) <= H(p)

    so the quantity the upstream parameters maximise is bounded; it equals H(p) exactly when F^s tells D_s nothing
    about Y beyond ``p``. L_s cannot run away through D_s, because D_s descends L_s. NOT guaranteed: (1) the bound
    holds for the game's value, not for every step: with simultaneous gradient steps D_s is never an exact best
    response, so the observed L_s can exceed H(p) for a while after an upstream update moves F^s against the
    current D_s, until D_s catches up; (2) gradient descent-ascent need not converge (it can oscillate); (3) D_s
    reaches a local, approximate minimum, so the observed L_s may also sit below the true ``V``; (4) the game is
    also won by the trivial masker ``M = 1`` (``F^s = 0``, ``F^c = F``): eq. 3-4 bound L_s but do not force a
    meaningful causal/confounding split (true of the paper's formulation as well). L_c is an ordinary BCE and keeps
    its usual guarantees.

    **Sign conventions.** ``lambda >= 0``; ``L_c, L_s >= 0`` are BCE values (lower = better prediction).
    ``"objective"`` = ``L_c - lambda * L_s`` is eq. 3's number (it can be negative); the returned tensor is
    ``L_c + lambda * L_s`` (what ``backward`` is called on; the trainer's ``loss`` output shows this number). A
    well-behaved run shows ``c`` falling and ``s`` rising towards, and hovering around, H(p).

    **Logged terms.** :attr:`last_terms` = ``{"c": L_c, "s": L_s, "objective": L_c - lambda * L_s}`` (plain
    floats, unweighted L_c and L_s), which :class:`common.handlers.LossTermsHandler` logs per epoch as
    ``loss_c``, ``loss_s`` and ``loss_objective``. Unlike :class:`common.losses.WeightedSumLoss`, the sum of these
    terms is NOT the returned value (it is ``2 L_c + (1 - lambda) L_s``); read them separately.

    **Causal module off** (``causal=False``, Table 2 ablation): the network returns one channel ``(B, 1, ...)``
    and the loss is the plain BCE ``L_c``; ``last_terms`` = ``{"c": L_c, "objective": L_c}`` (no ``"s"``: there
    is no D_s).

    **Optional Dice term (not in the paper).** With ``dice_weight = w > 0`` every branch loss becomes
    ``l(z, Y) = BCE(z, Y) + w * (1 - Dice(sigmoid(z), Y))``, per image, with the soft Dice
    ``(2 sum(p Y) + eps) / (sum(p) + sum(Y) + eps)``, ``eps = 1e-5`` (``monai.losses.DiceLoss``'s smoothing), and
    ``L_c``, ``L_s`` are this loss of D_c and of D_s. The paper's eq. 4 is ``w = 0`` (the default). The Dice part lies
    in [0, 1], so the bound of the game's value becomes ``H(p) + w``. Reason (the bundle's ``offline_small`` preset
    sets ``w = 1``, the U-Net and LViT bundles' Dice + BCE): with BCE alone a network trained from scratch on small
    lesions (2.6% foreground in the synthetic chest X-rays) predicted background everywhere for the first 4 epochs
    of the documented CPU budget (validation Dice 0.000), so neither the text nor the causal module could show.

    Args:
        lam: the adversarial coefficient lambda of eq. 3, default 0.05 (section 3.2); must be finite and >= 0
            (0 trains D_c only; L_s is still computed and logged but D_s gets no gradient).
        dice_weight: weight ``w`` >= 0 of the optional soft-Dice term added to the BCE of each branch (above).
            Defaults to 0.0 (the paper's eq. 4: cross-entropy only).
        reduction: how the per-image losses (BCE averaged over the pixels of each image) are reduced over the
            batch: ``"mean"`` (default; equals the BCE averaged over all pixels of the batch), ``"sum"``, or
            ``"none"`` (the returned tensor has shape ``(B,)``; :attr:`last_terms` then holds batch means).

    Raises:
        ValueError: when ``lam`` or ``dice_weight`` is negative or not finite, or ``reduction`` is not one of the
            three values;
            (when called) when ``input`` does not have 1 or 2 channels, is not floating point, or has fewer than
            3 dimensions; when ``target`` is not ``(B, 1, *spatial)`` with the input's batch and spatial sizes; when
            ``target`` has values outside [0, 1].

    Examples::

        loss = CausalMinMaxLoss(lam=0.05)
        logits = net(image, text_ids)          # training mode: (B, 2, H, W) = [D_c, D_s]
        value = loss(logits, label)            # L_c + 0.05 * L_s; backward through the reversal
        loss.last_terms                        # {"c": 0.21, "s": 0.66, "objective": 0.177}
    """

    def __init__(self, lam: float = 0.05, reduction: str = "mean", dice_weight: float = 0.0) -> None:
        super().__init__()
        lam = float(lam)
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"CausalMinMaxLoss: lam must be a finite number >= 0, got {lam}.")
        dice_weight = float(dice_weight)
        if not math.isfinite(dice_weight) or dice_weight < 0:
            raise ValueError(f"CausalMinMaxLoss: dice_weight must be a finite number >= 0, got {dice_weight}.")
        self.lam = lam
        self.dice_weight = dice_weight
        self.reduction = look_up_option(reduction, ("mean", "sum", "none"))
        self.last_terms: dict[str, float] = {}

    def _check(self, input: torch.Tensor, target: torch.Tensor) -> None:  # noqa: A002
        name = type(self).__name__
        if input.ndim < 3 or input.shape[1] not in (1, 2):
            raise ValueError(
                f"{name}: input must be logits of shape (B, 2, *spatial) [D_c, D_s] (causal module on) or "
                f"(B, 1, *spatial) (causal module off), got shape {tuple(input.shape)} "
                f"({input.shape[1] if input.ndim > 1 else 'no'} channels)."
            )
        if not input.is_floating_point():
            raise ValueError(f"{name}: input must be floating-point logits, got dtype {input.dtype}.")
        expected = (input.shape[0], 1, *input.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"{name}: target must be a one-channel mask of shape (B, 1, *spatial) = {expected} to match input "
                f"{tuple(input.shape)}, got target shape {tuple(target.shape)}."
            )
        if target.numel() and (bool((target < 0).any()) or bool((target > 1).any())):
            raise ValueError(
                f"{name}: target values must lie in [0, 1] (a binary mask), got min {float(target.min())} "
                f"and max {float(target.max())}."
            )

    def _bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-branch loss: BCE averaged over each image's pixels (+ ``dice_weight`` * soft-Dice loss), reduced."""
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per_image = per_pixel.flatten(1).mean(1)
        if self.dice_weight > 0:
            p, y = torch.sigmoid(logits).flatten(1), target.flatten(1)
            dice = (2.0 * (p * y).sum(1) + _DICE_EPS) / (p.sum(1) + y.sum(1) + _DICE_EPS)
            per_image = per_image + self.dice_weight * (1.0 - dice)
        if self.reduction == "mean":
            return per_image.mean()
        if self.reduction == "sum":
            return per_image.sum()
        return per_image

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """
        Args:
            input: ``(B, 2, *spatial)`` logits, channel 0 from D_c (causal features), channel 1 from D_s
                (confounding features, behind the network's gradient reversal); or ``(B, 1, *spatial)`` logits of
                D_c alone when the causal module is off.
            target: ``(B, 1, *spatial)`` binary ground-truth mask (bool, integer or float with values in [0, 1]).

        Returns:
            ``L_c + lam * L_s`` (``L_c`` for one-channel input), a scalar, or shape ``(B,)`` with
            ``reduction="none"``. This is NOT eq. 3's value, which is in ``last_terms["objective"]``.
        """
        self._check(input, target)
        logits = input.float()
        y = target.to(device=logits.device, dtype=logits.dtype)
        loss_c = self._bce(logits[:, :1], y)
        c_value = float(loss_c.detach().mean())
        if input.shape[1] == 1:
            self.last_terms = {"c": c_value, "objective": c_value}
            return loss_c
        loss_s = self._bce(logits[:, 1:], y)
        s_value = float(loss_s.detach().mean())
        self.last_terms = {"c": c_value, "s": s_value, "objective": c_value - self.lam * s_value}
        return loss_c + self.lam * loss_s
