# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Tests of common/networks/kan.py: the B-spline basis, KANLinear and the tokenised KAN block."""

from __future__ import annotations

import math

import pytest
import torch

from common.networks.kan import (
    KANLinear,
    TokenizedKANBlock,
    b_spline_basis,
    cardinal_b_spline_coefficients,
    uniform_b_spline_basis,
    uniform_grid,
)


def cox_de_boor(m: int, k: int, x: float, t: list[float]) -> float:
    """B_{m,k}(x) on knots t by the textbook recursion, one basis at a time (0/0 terms are 0)."""
    if k == 0:
        return 1.0 if t[m] <= x < t[m + 1] else 0.0
    out = 0.0
    if t[m + k] != t[m]:
        out += (x - t[m]) / (t[m + k] - t[m]) * cox_de_boor(m, k - 1, x, t)
    if t[m + k + 1] != t[m + 1]:
        out += (t[m + k + 1] - x) / (t[m + k + 1] - t[m + 1]) * cox_de_boor(m + 1, k - 1, x, t)
    return out


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_basis_matches_cox_de_boor_on_a_non_uniform_grid(order):
    gen = torch.Generator().manual_seed(order)
    knots = torch.cumsum(torch.rand(10, generator=gen, dtype=torch.float64) + 0.1, 0) - 3.0
    x = torch.rand(7, 3, generator=gen, dtype=torch.float64) * 5.0 - 3.5  # some points outside the knots
    got = b_spline_basis(x, knots, order)
    assert got.shape == (7, 3, 10 - 1 - order)
    t = knots.tolist()
    for idx in range(7):
        for f in range(3):
            for m in range(10 - 1 - order):
                expected = cox_de_boor(m, order, float(x[idx, f]), t)
                assert got[idx, f, m].item() == pytest.approx(expected, abs=1e-12)


def test_basis_per_feature_grids_and_partition_of_unity():
    grid = torch.stack([uniform_grid(5, 3), uniform_grid(5, 3, (-2.0, 0.5))])  # two features, different knots
    x = torch.tensor([[0.3, -1.0], [-0.999, 0.2]])
    got = b_spline_basis(x, grid, 3)
    for f in range(2):
        for i in range(2):
            t = grid[f].tolist()
            expected = [cox_de_boor(m, 3, float(x[i, f]), t) for m in range(grid.shape[1] - 4)]
            assert got[i, f].tolist() == pytest.approx(expected, abs=1e-6)
    inside = b_spline_basis(torch.linspace(-1.0, 0.99, 9).unsqueeze(-1), uniform_grid(5, 3), 3)
    assert torch.allclose(inside.sum(-1), torch.ones(9, 1), atol=1e-6)  # cubic bases sum to 1 inside the range


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_uniform_basis_equals_cox_de_boor_values_and_gradients(order):
    """The non-zero-terms evaluation KANLinear uses (``uniform_b_spline_basis``) against the full recursion, on
    per-feature uniform grids, with points inside, outside, at the ends and between knots, and its gradient."""

    def exact(lo: float, hi: float) -> torch.Tensor:  # float64 knots (uniform_grid's float32 ones are uniform to 1e-7)
        h = (hi - lo) / 5
        return lo + (torch.arange(5 + 2 * order + 1, dtype=torch.float64) - order) * h

    grid = torch.stack([exact(-1.0, 1.0), exact(-2.0, 0.5)])  # (2, K): two spacings
    coefficients = cardinal_b_spline_coefficients(order)
    gen = torch.Generator().manual_seed(order)
    x = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 7.0 - 3.5  # also outside the extended grids
    x[0] = grid[:, 0]  # the first knot: inside (half-open interval)
    x[1] = grid[:, -1]  # the last knot: no basis
    x[2] = grid[:, 0] - 1e-3  # just outside on the left
    got = uniform_b_spline_basis(x, grid, coefficients)
    want = b_spline_basis(x, grid, order)
    assert got.shape == want.shape == (300, 2, grid.shape[1] - 1 - order)
    assert torch.allclose(got, want, atol=1e-9), (got - want).abs().max()
    assert float(got[1].abs().max()) < 1e-12 and float(got[2].abs().max()) == 0.0  # (t_K - t_0) / h may round below K
    if order > 0:  # order 0 is piecewise constant: no gradient to compare
        xr = x[3:].clone().requires_grad_()
        weights = torch.rand(got.shape[1:], generator=gen, dtype=torch.float64)
        (g1,) = torch.autograd.grad((uniform_b_spline_basis(xr, grid, coefficients) * weights).sum(), xr)
        (g2,) = torch.autograd.grad((b_spline_basis(xr, grid, order) * weights).sum(), xr)
        assert torch.allclose(g1, g2, atol=1e-9)
    shared = uniform_b_spline_basis(x, grid[1], coefficients)  # one (K,) grid for all features
    assert torch.allclose(shared, b_spline_basis(x, grid[1], order), atol=1e-9)
    with pytest.raises(ValueError, match="at least order \\+ 2 knots"):
        uniform_b_spline_basis(x, grid[:, : order + 1], coefficients)


def test_cardinal_coefficients_are_the_uniform_b_spline_matrices():
    """Order 1: the hat (1 - u, u); order 2: ((1 - u)^2, 1 + 2u - 2u^2, u^2) / 2; order 3: the uniform cubic B-spline
    matrix of computer graphics, [[1, -3, 3, -1], [4, 0, -6, 3], [1, 3, 3, -3], [0, 0, 0, 1]] / 6."""
    assert cardinal_b_spline_coefficients(0).tolist() == [[1.0]]
    assert cardinal_b_spline_coefficients(1).tolist() == [[1.0, -1.0], [0.0, 1.0]]
    assert (cardinal_b_spline_coefficients(2) * 2).tolist() == [[1.0, -2.0, 1.0], [1.0, 2.0, -2.0], [0.0, 0.0, 1.0]]
    cubic = [[1.0, -3.0, 3.0, -1.0], [4.0, 0.0, -6.0, 3.0], [1.0, 3.0, 3.0, -3.0], [0.0, 0.0, 0.0, 1.0]]
    assert torch.allclose(cardinal_b_spline_coefficients(3) * 6, torch.tensor(cubic, dtype=torch.float64))
    for order in range(5):  # partition of unity: the pieces sum to 1 for every u
        assert torch.allclose(
            cardinal_b_spline_coefficients(order).sum(0), torch.eye(order + 1, dtype=torch.float64)[0]
        )
    with pytest.raises(ValueError, match="spline order must be >= 0"):
        cardinal_b_spline_coefficients(-1)


def test_kan_linear_runs_the_uniform_basis_and_matches_the_full_recursion():
    torch.manual_seed(0)
    layer = KANLinear(6, 5)
    x = torch.randn(40, 6) * 1.5
    full = F_linear_reference(layer, x)
    assert torch.allclose(layer(x), full, atol=1e-5)
    scripted = torch.jit.script(layer)
    assert torch.allclose(scripted(x), layer(x), atol=1e-6)
    assert "spline_coefficients" not in layer.state_dict(), "checkpoints keep their keys"


def F_linear_reference(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    """KANLinear's output computed with the full Cox-de Boor basis (``b_spline_basis``)."""
    base = torch.nn.functional.linear(torch.nn.functional.silu(x), layer.base_weight)
    bases = b_spline_basis(x, layer.grid, layer.spline_order).reshape(x.shape[0], -1)
    return base + torch.nn.functional.linear(bases, layer.scaled_spline_weight().reshape(layer.out_features, -1))


def test_uniform_grid_is_u_kan_grid():
    grid = uniform_grid(5, 3, (-1.0, 1.0))
    assert grid.shape == (12,)
    assert torch.allclose(grid, torch.arange(-3, 9, dtype=torch.float32) * 0.4 - 1.0)
    assert grid[0].item() == pytest.approx(-2.2) and grid[-1].item() == pytest.approx(2.2)
    with pytest.raises(ValueError, match="grid_size"):
        uniform_grid(0, 3)


def test_kan_linear_output_by_hand():
    # order 1 on 2 intervals of [-1, 1]: knots -2, -1, 0, 1, 2 and three hat functions centred at -1, 0, 1
    layer = KANLinear(2, 1, grid_size=2, spline_order=1)
    assert torch.allclose(layer.grid[0], torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]))
    with torch.no_grad():
        layer.base_weight.copy_(torch.tensor([[2.0, -1.0]]))
        layer.spline_weight.copy_(torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]))
        layer.spline_scaler.copy_(torch.tensor([[0.5, 2.0]]))
    x = torch.tensor([[0.5, -0.25]])
    silu = lambda v: v / (1.0 + math.exp(-v))  # noqa: E731
    base = 2.0 * silu(0.5) - 1.0 * silu(-0.25)
    # x1 = 0.5: hats at 0 and 1 are 0.5 each -> 0.5 * (0.5 * 2 + 0.5 * 3); x2 = -0.25: hats at -1: 0.25, at 0: 0.75
    spline = 0.5 * (0.5 * 2.0 + 0.5 * 3.0) + 2.0 * (0.25 * 4.0 + 0.75 * 5.0)
    assert layer(x).item() == pytest.approx(base + spline, rel=1e-6)
    # outside the extended grid only the SiLU path is left
    far = torch.tensor([[3.0, -5.0]])
    assert layer(far).item() == pytest.approx(2.0 * silu(3.0) - 1.0 * silu(-5.0), rel=1e-6)


def test_kan_linear_shapes_count_and_script():
    torch.manual_seed(0)
    layer = KANLinear(6, 4)
    assert sum(p.numel() for p in layer.parameters()) == 10 * 6 * 4  # U-KAN: 10 * in * out at the defaults
    x = torch.randn(2, 5, 6)
    y = layer(x)
    assert y.shape == (2, 5, 4)
    assert torch.allclose(torch.jit.script(layer)(x), y)
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    with pytest.raises(ValueError, match="6 input features"):
        layer(torch.randn(3, 5))


def test_kan_linear_initial_spline_is_small_noise():
    torch.manual_seed(0)
    layer = KANLinear(3, 2, scale_noise=0.1)
    points = layer.grid[0, 3:-3].unsqueeze(-1).expand(-1, 3)  # the grid points of [-1, 1]
    bases = b_spline_basis(points, layer.grid, 3)  # (G+1, in, nb)
    spline_values = torch.einsum("sin,oin->sio", bases, layer.spline_weight)
    assert spline_values.abs().max().item() <= 0.1 / 5 / 2 + 1e-6  # least-squares fit of noise in +-0.01


def test_tokenized_kan_block_structure():
    torch.manual_seed(0)
    block = TokenizedKANBlock(8)
    x = torch.randn(2, 8, 5, 6)
    assert block(x).shape == x.shape
    expected = 3 * 10 * 8 * 8 + 3 * (8 * 9 + 8 + 2 * 8) + 2 * 8  # KANs + (DW conv + BN) x 3 + LayerNorm
    assert sum(p.numel() for p in block.parameters()) == expected
    # the residual: with the last BatchNorm's affine set to zero, the block is the identity
    with torch.no_grad():
        block.steps[-1].bn.weight.zero_()
        block.steps[-1].bn.bias.zero_()
    assert torch.allclose(block(x), x)
    linear = TokenizedKANBlock(8, use_kan=False)
    assert all(isinstance(s.fc, torch.nn.Linear) for s in linear.steps)
    scripted = torch.jit.script(TokenizedKANBlock(4).eval())
    assert scripted(torch.randn(1, 4, 3, 3)).shape == (1, 4, 3, 3)
