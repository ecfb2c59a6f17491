# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""CausalMinMaxLoss (CausalCLIPSeg eq. 3-4): values, logged terms, and the min-max game on a tiny stand-in model
with its own gradient reversal (independent of common.networks). The literal eq. 3 run-away and the game on the real
network with Adam are in tests/test_causalclipseg_network.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from torch import nn

from common.handlers import LossTermsHandler
from common.losses import CausalMinMaxLoss

LAM = 0.05  # section 3.2


class _Reverse(torch.autograd.Function):
    """Identity forward, gradient times -1 backward (coefficient 1: the loss carries lambda)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class _TinyCausal(nn.Module):
    """features -> masker (sigmoid conv) -> F^c = M*F, F^s = (1-M)*F -> [D_c(F^c), D_s(GRL(F^s))] (eq. 2)."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(channels, channels, 1)
        self.masker = nn.Conv2d(channels, channels, 1)
        self.d_c = nn.Conv2d(channels, 1, 1)
        self.d_s = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor, reverse: bool = True, detach_causal: bool = False) -> torch.Tensor:
        f = torch.tanh(self.encoder(x))
        m = torch.sigmoid(self.masker(f))
        f_c = (m.detach() if detach_causal else m) * f
        f_s = (1 - m) * f
        return torch.cat([self.d_c(f_c), self.d_s(_Reverse.apply(f_s) if reverse else f_s)], 1)


def _toy_data(seed: int = 0, batch: int = 4, channels: int = 4, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
    x = 0.5 * torch.randn(batch, channels, size, size, generator=g)
    x[:, :1] += 2 * y - 1  # channel 0 carries the mask: F can predict Y
    return x, y


def _terms(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.binary_cross_entropy_with_logits(out[:, :1], y), F.binary_cross_entropy_with_logits(out[:, 1:], y)


def _best_constant_bce(y: torch.Tensor) -> float:
    p = float(y.mean())
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _sgd_step(params, loss: torch.Tensor, lr: float) -> None:
    params = list(params)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g


def test_values_and_last_terms_match_direct_bce():
    torch.manual_seed(0)
    logits, target = 3 * torch.randn(3, 2, 6, 5), torch.rand(3, 1, 6, 5) > 0.6
    loss = CausalMinMaxLoss(lam=0.3)
    value = loss(logits, target)
    y = target.float()
    l_c = F.binary_cross_entropy_with_logits(logits[:, :1], y)
    l_s = F.binary_cross_entropy_with_logits(logits[:, 1:], y)
    assert torch.allclose(value, l_c + 0.3 * l_s)
    assert set(loss.last_terms) == {"c", "s", "objective"}
    assert all(type(v) is float for v in loss.last_terms.values())
    assert loss.last_terms["c"] == pytest.approx(float(l_c))
    assert loss.last_terms["s"] == pytest.approx(float(l_s))
    assert loss.last_terms["objective"] == pytest.approx(float(l_c - 0.3 * l_s))  # eq. 3, not the returned value
    assert CausalMinMaxLoss().lam == 0.05


def test_optional_dice_term_matches_monai_dice_loss():
    """``dice_weight`` adds w * (1 - soft Dice) per image to each branch's BCE (MONAI's sigmoid DiceLoss per image)."""
    from monai.losses import DiceLoss

    torch.manual_seed(5)
    logits, y = 2 * torch.randn(3, 2, 6, 7), (torch.rand(3, 1, 6, 7) > 0.7).float()
    dice = DiceLoss(sigmoid=True, reduction="none")
    per_c = F.binary_cross_entropy_with_logits(logits[:, :1], y, reduction="none").mean((1, 2, 3))
    per_s = F.binary_cross_entropy_with_logits(logits[:, 1:], y, reduction="none").mean((1, 2, 3))
    per_c = per_c + 0.7 * dice(logits[:, :1], y).flatten()
    per_s = per_s + 0.7 * dice(logits[:, 1:], y).flatten()
    loss = CausalMinMaxLoss(lam=LAM, dice_weight=0.7)
    torch.testing.assert_close(loss(logits, y), (per_c + LAM * per_s).mean())
    assert loss.last_terms["c"] == pytest.approx(float(per_c.mean()), rel=1e-5)
    assert loss.last_terms["s"] == pytest.approx(float(per_s.mean()), rel=1e-5)
    one = CausalMinMaxLoss(dice_weight=0.7)
    torch.testing.assert_close(one(logits[:, :1], y), per_c.mean())
    assert CausalMinMaxLoss().dice_weight == 0.0
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match="dice_weight"):
            CausalMinMaxLoss(dice_weight=bad)


def test_reductions_sum_and_none():
    torch.manual_seed(1)
    logits, y = torch.randn(3, 2, 4, 7), (torch.rand(3, 1, 4, 7) > 0.5).float()
    per_c = F.binary_cross_entropy_with_logits(logits[:, :1], y, reduction="none").mean((1, 2, 3))
    per_s = F.binary_cross_entropy_with_logits(logits[:, 1:], y, reduction="none").mean((1, 2, 3))
    none = CausalMinMaxLoss(lam=LAM, reduction="none")
    out = none(logits, y)
    assert out.shape == (3,) and torch.allclose(out, per_c + LAM * per_s)
    assert none.last_terms["s"] == pytest.approx(float(per_s.mean()))
    total = CausalMinMaxLoss(lam=LAM, reduction="sum")
    assert torch.allclose(total(logits, y), per_c.sum() + LAM * per_s.sum())
    assert total.last_terms["c"] == pytest.approx(float(per_c.sum()))


def test_one_channel_input_is_plain_bce():
    torch.manual_seed(2)
    logits, y = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    loss = CausalMinMaxLoss(lam=0.5)
    value = loss(logits, y)
    assert torch.allclose(value, F.binary_cross_entropy_with_logits(logits, y))
    assert loss.last_terms == pytest.approx({"c": float(value), "objective": float(value)})


def test_terms_are_logged_per_epoch_by_loss_terms_handler():
    loss = CausalMinMaxLoss(lam=LAM)
    batches = iter([torch.full((1, 2, 2, 2), 2.0), torch.zeros(1, 2, 2, 2)])
    y = torch.ones(1, 1, 2, 2)
    engine = Engine(lambda e, b: float(loss(next(batches), y)))
    LossTermsHandler(loss).attach(engine)
    engine.run([0, 1], max_epochs=1)
    expected_c = 0.5 * (F.softplus(torch.tensor(-2.0)).item() + math.log(2))
    assert engine.state.metrics["loss_c"] == pytest.approx(expected_c)
    assert engine.state.metrics["loss_s"] == pytest.approx(expected_c)
    assert engine.state.metrics["loss_objective"] == pytest.approx((1 - LAM) * expected_c)


@pytest.mark.parametrize(
    "shape_in,shape_t,match",
    [
        ((2, 3, 4, 4), (2, 1, 4, 4), "3 channels"),
        ((2, 2, 4, 4), (2, 2, 4, 4), r"target shape \(2, 2, 4, 4\)"),
        ((2, 2, 4, 4), (2, 1, 4, 5), r"target shape \(2, 1, 4, 5\)"),
        ((2, 2, 4, 4), (1, 1, 4, 4), r"target shape \(1, 1, 4, 4\)"),
        ((2, 2), (2, 1), r"got shape \(2, 2\)"),
    ],
)
def test_bad_shapes_are_named(shape_in, shape_t, match):
    with pytest.raises(ValueError, match=match):
        CausalMinMaxLoss()(torch.zeros(shape_in), torch.zeros(shape_t))


def test_bad_values_and_arguments():
    with pytest.raises(ValueError, match=r"\[0, 1\].*max 255"):
        CausalMinMaxLoss()(torch.zeros(1, 2, 2, 2), torch.full((1, 1, 2, 2), 255.0))
    with pytest.raises(ValueError, match="floating-point"):
        CausalMinMaxLoss()(torch.zeros(1, 2, 2, 2, dtype=torch.long), torch.zeros(1, 1, 2, 2))
    for lam in (-0.05, float("nan")):
        with pytest.raises(ValueError, match="lam"):
            CausalMinMaxLoss(lam=lam)
    with pytest.raises(ValueError):
        CausalMinMaxLoss(reduction="max")


def test_gradient_split_through_reversal():
    """Upstream: dL_c - lam dL_s (eq. 3's gradient); D_s: +lam dL_s (minimises L_s); D_c: dL_c only."""
    torch.manual_seed(3)
    model, (x, y) = _TinyCausal(), _toy_data(3)
    loss = CausalMinMaxLoss(lam=LAM)
    out = model(x, reverse=True)
    assert torch.equal(out, model(x, reverse=False))  # the reversal is the identity forward
    groups = {"masker": list(model.masker.parameters()), "encoder": list(model.encoder.parameters())}
    groups.update(d_s=list(model.d_s.parameters()), d_c=list(model.d_c.parameters()))
    for name, params in groups.items():
        got = torch.autograd.grad(loss(model(x), y), params, allow_unused=True)
        l_c, l_s = _terms(model(x, reverse=False), y)  # plain forward: the ordinary gradients
        d_c = torch.autograd.grad(l_c, params, retain_graph=True, allow_unused=True)
        d_s = torch.autograd.grad(l_s, params, allow_unused=True)
        for g, gc, gs in zip(got, d_c, d_s):
            gc = torch.zeros_like(params[0]) if gc is None else gc
            gs = torch.zeros_like(gc) if gs is None else gs
            sign = 1.0 if name == "d_s" else -1.0
            expected = gc + sign * LAM * gs
            assert g is not None and torch.allclose(g, expected, atol=1e-7), name
        if name == "masker":
            assert all(gs.abs().sum() > 0 for gs in d_s)  # the reversed part is really there


def test_single_steps_move_each_player_in_its_direction():
    torch.manual_seed(4)
    x, y = _toy_data(4)
    base = _TinyCausal()
    loss = CausalMinMaxLoss(lam=LAM)

    def measure(model: nn.Module) -> tuple[float, float, float]:
        with torch.no_grad():
            l_c, l_s = _terms(model(x, reverse=False), y)
        return float(l_c), float(l_s), float(l_c - LAM * l_s)

    def stepped(part: str, lr: float, detach_causal: bool = False) -> nn.Module:
        model = _TinyCausal()
        model.load_state_dict(base.state_dict())
        params = [p for n, p in model.named_parameters() if n.split(".")[0] in part.split("+")]
        _sgd_step(params, loss(model(x, detach_causal=detach_causal), y), lr)
        return model

    c0, s0, obj0 = measure(base)
    # masker alone, L_c path detached: only the reversed -lam dL_s reaches it -> gradient ASCENT on L_s
    _, s1, _ = measure(stepped("masker", lr=20.0, detach_causal=True))
    assert s1 > s0 + 1e-4
    # D_s alone: +lam dL_s -> descent on L_s
    _, s2, _ = measure(stepped("d_s", lr=20.0))
    assert s2 < s0 - 1e-4
    # D_c alone: descent on L_c
    c3, _, _ = measure(stepped("d_c", lr=0.5))
    assert c3 < c0 - 1e-3
    # everything upstream of the reversal (encoder + masker): descent on eq. 3's objective L_c - lam L_s
    _, _, obj4 = measure(stepped("encoder+masker", lr=0.5))
    assert obj4 < obj0 - 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids the thread hand-off cost that dominates on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(lam: float, steps: int = 200, lr: float = 0.5, seed: int = 0):
    torch.manual_seed(seed)
    model, (x, y) = _TinyCausal(), _toy_data(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = CausalMinMaxLoss(lam=lam)
    history = []
    for _ in range(steps):
        value = loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
        history.append((loss.last_terms["c"], loss.last_terms["s"]))
    return _best_constant_bce(y), history


@pytest.mark.parametrize("lam", [LAM, 1.0])
def test_training_with_reversal_keeps_l_s_bounded_while_l_c_decreases(lam):
    h, history = _train(lam)
    l_c = [c for c, _ in history]
    l_s = [s for _, s in history]
    # bound: BCE of the best constant predictor H(p) + 0.25 (margin for the transient overshoot: D_s is never an
    # exact best response under simultaneous steps)
    assert max(l_s) < h + 0.25, (max(l_s), h)
    assert l_c[-1] < 0.3 * l_c[0] and l_c[-1] < 0.2
