# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Tests of common/losses/cacl.py (C2Seg's CaCL, paper section 3.2, eq. 1-3) and of the stage II loss (eq. 11-13)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from common.losses import CaCLLoss, WeightedSumLoss, cacl_soft_targets


def test_soft_targets_by_hand():
    # three texts: 0 and 1 at 60 degrees, 2 orthogonal to both (cosines 0.5, 0, 0)
    text = torch.tensor([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0], [0.0, 0.0, 2.0]])
    tau, rho = 0.5, 0.8
    m = [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]
    y = cacl_soft_targets(text, tau=tau, rho=rho)
    for i in range(3):
        mu = sum(m[i]) / 3
        clipped = [max(v - mu, 0.0) for v in m[i]]
        z = sum(math.exp(c / tau) for c in clipped)
        for j in range(3):
            expected = rho * math.exp(clipped[j] / tau) / z + (1 - rho) * (i == j)
            assert y[i, j].item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(y.sum(1), torch.ones(3))
    # without debiasing the raw cosines go into the softmax
    y_raw = cacl_soft_targets(text, tau=tau, rho=1.0, debias=False)
    assert y_raw[0].tolist() == pytest.approx(torch.softmax(torch.tensor(m[0]) / tau, 0).tolist(), rel=1e-5)


def test_identical_texts_receive_equal_target_mass():
    gen = torch.Generator().manual_seed(0)
    text = torch.randn(6, 8, generator=gen)
    text[4] = text[1] * 3.0  # the same text as sample 1 (scale does not matter: cosine)
    y = CaCLLoss(tau=0.07, rho=0.8).targets(text)
    soft = (y - 0.2 * torch.eye(6)) / 0.8  # Y^
    assert soft[1, 4].item() == pytest.approx(soft[1, 1].item(), rel=1e-5)  # the twin gets the self mass of Y^
    assert soft[4, 1].item() == pytest.approx(soft[4, 4].item(), rel=1e-5)
    for k in (0, 2, 3, 5):  # every other sample gives the two twins the same mass
        assert y[k, 1].item() == pytest.approx(y[k, 4].item(), rel=1e-5)
    assert torch.allclose(y[1, [0, 2, 3, 5]], y[4, [0, 2, 3, 5]])


def test_gradient_matches_eq3():
    # image_emb = S and text_emb = I make the logits s_ij = S_ij, so d loss / d image_emb = d loss / d s
    gen = torch.Generator().manual_seed(1)
    b, tau, rho = 5, 0.1, 0.7
    s = torch.randn(b, b, generator=gen, dtype=torch.float64).requires_grad_(True)
    text = torch.randn(b, 4, generator=gen, dtype=torch.float64)
    loss_fn = CaCLLoss(tau=tau, rho=rho)
    loss = loss_fn((s, torch.eye(b, dtype=torch.float64), text), None)
    loss.backward()
    y = loss_fn.targets(text).double()
    p_v2l = torch.softmax(s.detach() / tau, dim=1)
    p_l2v = torch.softmax(s.detach() / tau, dim=0)
    analytic = (p_v2l - y + p_l2v - y.t()) / (b * tau)  # eq. 3 with eq. 2's 1/B
    assert torch.allclose(s.grad, analytic, atol=1e-10)


def test_rho_zero_and_hard_are_clip_infonce():
    gen = torch.Generator().manual_seed(2)
    image = F.normalize(torch.randn(7, 6, generator=gen), dim=-1)
    text = F.normalize(torch.randn(7, 6, generator=gen), dim=-1)
    source = torch.randn(7, 10, generator=gen)
    source[3] = source[0]  # duplicated text: CaCL would spread mass, the hard loss must not
    logits = image @ text.t() / 0.07
    labels = torch.arange(7)
    clip = F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
    hard = CaCLLoss(hard=True)((image, text, source), None)
    rho0 = CaCLLoss(rho=0.0, debias=False)((image, text, source), None)
    assert hard.item() == pytest.approx(clip.item(), rel=1e-5)
    assert rho0.item() == pytest.approx(clip.item(), rel=1e-5)
    soft_targets = CaCLLoss().targets(source)  # CaCL gives the duplicate a large share: Y_03 = 0.8 * Y^_00
    assert soft_targets[0, 3].item() > 0.3 and hard.item() != CaCLLoss()((image, text, source), None).item()


def test_loss_terms_and_errors():
    loss_fn = CaCLLoss()
    image = F.normalize(torch.randn(4, 3), dim=-1)
    out = loss_fn((image, image, torch.randn(4, 5)), torch.zeros(4))
    assert set(loss_fn.last_terms) == {"v2l", "l2v"}
    assert out.item() == pytest.approx(sum(loss_fn.last_terms.values()), rel=1e-5)
    with pytest.raises(ValueError, match="image_emb, text_emb, text_sim_source"):
        loss_fn(image, None)
    with pytest.raises(ValueError, match="same shape"):
        loss_fn((image, image[:, :2], torch.randn(4, 5)), None)
    with pytest.raises(ValueError, match="rho"):
        CaCLLoss(rho=1.5)


def test_stage2_loss_is_half_bce_half_dice():
    """Appendix A.6, eq. 11-13: 0.5 BCE + 0.5 (1 - 2 sum p y / (sum p + sum y + eps)), per image, batch mean."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    target = (torch.rand(3, 1, 8, 8, generator=gen) > 0.6).float()
    eps = 1e-5
    loss_fn = WeightedSumLoss(
        {
            "bce": torch.nn.BCEWithLogitsLoss(),
            "dice": DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=eps),
        },
        weights={"bce": 0.5, "dice": 0.5},
    )
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    dice = torch.stack(
        [1 - 2 * (p[i] * target[i]).sum() / (p[i].sum() + target[i].sum() + eps) for i in range(3)]
    ).mean()
    assert loss_fn(logits, target).item() == pytest.approx((0.5 * bce + 0.5 * dice).item(), rel=1e-5)
