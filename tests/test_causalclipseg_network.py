# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the CausalCLIPSeg modules and network (common/networks/causal_modules.py, common/networks/causalclipseg.py).

The CLIP encoders are replaced by tiny scriptable stand-ins (strided convolutions giving maps at strides 8, 16, 32;
an embedding averaged over the tokens), so these tests do not depend on open_clip. Widths 8-16, images 32-64 px.
"""

from __future__ import annotations

import math
import warnings
from typing import Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.networks import CARAFE, CausalCLIPSeg, CoordConv, GradientReversal, Masker, TextConditionedDecoder
from common.networks.causal_modules import complementary_features
from common.utils import count_forward_parameters

FPN_IN, FPN_OUT, DEC, TEXT_DIM, VOCAB, TOKENS, LAM = (8, 16, 12), 16, 8, 10, 30, 5, 0.05


class StandInImageEncoder(nn.Module):
    """Maps (B, 3, H, W) to three maps at strides 8, 16, 32 with ``channels`` channels."""

    def __init__(self, channels: Tuple[int, int, int] = FPN_IN) -> None:
        super().__init__()
        self.out_channels = tuple(channels)
        self.s8 = nn.Conv2d(3, channels[0], 8, stride=8)
        self.s16 = nn.Conv2d(channels[0], channels[1], 2, stride=2)
        self.s32 = nn.Conv2d(channels[1], channels[2], 2, stride=2)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v3 = torch.relu(self.s8(image))
        v4 = torch.relu(self.s16(v3))
        return v3, v4, self.s32(v4)


class StandInTextEncoder(nn.Module):
    """Maps token ids (B, L) to (B, out_dim): mean of the token embeddings, then a linear map."""

    def __init__(self, out_dim: int = TEXT_DIM) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(VOCAB, out_dim)
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embedding(ids).mean(dim=1))


def tiny(**kwargs) -> CausalCLIPSeg:
    args = dict(fpn_in=FPN_IN, fpn_out=FPN_OUT, decoder_channels=DEC, grl_lambda=LAM)
    args.update(kwargs)
    return CausalCLIPSeg(StandInImageEncoder(args["fpn_in"]), StandInTextEncoder(), **args)


def ids(batch: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, TOKENS))


def script(model: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in recent PyTorch
        return torch.jit.script(model)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- building blocks


def naive_reassembly(x: torch.Tensor, kernels: torch.Tensor, k: int, up: int) -> torch.Tensor:
    """Loop definition of CARAFE's reassembly: out[:, :, y, x] = sum_k w_k(y, x) * x_pad[:, :, y // up + dy, ...]."""
    b, c, h, w = x.shape
    padded = F.pad(x, (k // 2,) * 4)
    out = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    for yy in range(h * up):
        for xx in range(w * up):
            i, j = yy // up, xx // up
            for dy in range(k):
                for dx in range(k):
                    out[:, :, yy, xx] += kernels[:, dy * k + dx, yy, xx, None] * padded[:, :, i + dy, j + dx]
    return out


@pytest.mark.parametrize("k, up", [(3, 2), (5, 3)])
def test_carafe_reassembly_matches_naive_loop(k, up):
    module = CARAFE(8, out_channels=6, kernel_size=k, up_factor=up)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    module = module.double()
    kernels = module.predict_kernels(x)
    assert kernels.shape == (2, k * k, 3 * up, 4 * up)
    torch.testing.assert_close(kernels.sum(1), torch.ones(2, 3 * up, 4 * up, dtype=torch.float64))
    expected = naive_reassembly(x, kernels, k, up)
    torch.testing.assert_close(module.reassemble(x, kernels), expected)
    torch.testing.assert_close(module(x), module.out(expected))
    # a kernel with all its weight on the centre reproduces nearest-neighbour upsampling
    centre = torch.zeros_like(kernels)
    centre[:, (k * k) // 2] = 1.0
    torch.testing.assert_close(module.reassemble(x, centre), F.interpolate(x, scale_factor=up, mode="nearest"))


def test_carafe_sizes_and_errors():
    module = CARAFE(16)
    assert module.compressor.out_channels == 4 and module.encoder.out_channels == 4 * 9
    assert module.encoder.kernel_size == (3, 3) and module(torch.rand(1, 16, 2, 3)).shape == (1, 16, 4, 6)
    with pytest.raises(ValueError, match="compressed_channels"):
        CARAFE(3)
    assert CARAFE(3, compressed_channels=2)(torch.rand(1, 3, 2, 2)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        CARAFE(16, kernel_size=4)


def test_coordconv_appends_x_then_y_coordinates():
    module = CoordConv(4, 6).eval()
    x = torch.randn(2, 4, 3, 5)
    with_coords = module.add_coordinates(x)
    assert with_coords.shape == (2, 6, 3, 5)
    torch.testing.assert_close(with_coords[:, :4], x)
    torch.testing.assert_close(with_coords[0, 4, 1], torch.linspace(-1, 1, 5))  # x varies along the width
    torch.testing.assert_close(with_coords[1, 5, :, 2], torch.linspace(-1, 1, 3))  # y varies along the height
    conv, norm = module.conv.conv, module.conv.adn.N
    assert conv.bias is None and conv.in_channels == 6
    expected = torch.relu(norm(F.conv2d(with_coords, conv.weight, padding=1)))
    torch.testing.assert_close(module(x), expected)
    # a constant input gives a position-dependent output (a plain convolution would give a constant interior)
    out = module(torch.ones(1, 4, 5, 5))
    assert not torch.allclose(out[..., 1:4, 1], out[..., 1:4, 2])


def test_masker_range_order_and_complementary_features():
    masker = Masker(8)
    x = torch.randn(2, 8, 4, 4)
    mask = masker(x)  # training-mode BN
    assert mask.shape == x.shape and bool((mask > 0).all()) and bool((mask < 1).all())
    assert mask.std() > 0.05  # a real, input-dependent mask
    masker.eval()
    by_hand = masker.coord2(masker.conv(masker.coord1(x)))
    by_hand = torch.sigmoid(masker.norm(F.conv2d(by_hand, masker.out.weight, masker.out.bias, padding=1)))
    torch.testing.assert_close(masker(x), by_hand)
    mask = masker(x)
    causal, confounding = complementary_features(x, mask)
    torch.testing.assert_close(causal, mask * x)
    torch.testing.assert_close(confounding, (1 - mask) * x)
    torch.testing.assert_close(causal + confounding, x)  # eq. 2: the complementary masks split F
    assert sum(p.numel() for p in Masker(512).parameters()) == 9_460_224  # method_notes 2.4: 9.46 M


def test_decoder_equals_hand_computed_dynamic_convolution():
    decoder = TextConditionedDecoder(in_channels=12, text_dim=TEXT_DIM, channels=DEC, kernel_size=3).eval()
    features = torch.randn(2, 12, 2, 3)
    texts = torch.randn(2, TEXT_DIM)
    out = decoder(features, texts)
    assert out.shape == (2, 1, 32, 48)
    up = decoder.visual(features)
    assert up.shape == (2, DEC, 32, 48)
    for b in range(2):
        params = texts[b] @ decoder.text.weight.T + decoder.text.bias  # Linear(T -> C*K*K + 1)
        kernel = params[:-1].view(1, DEC, 3, 3)
        expected = F.conv2d(up[b : b + 1], kernel, padding=1) + params[-1]
        torch.testing.assert_close(out[b : b + 1], expected, rtol=1e-4, atol=1e-5)
    # the two samples' texts give different kernels: swapping the texts changes each output
    swapped = decoder(features, texts.flip(0))
    assert not torch.allclose(swapped, out, atol=1e-4)
    with pytest.raises(ValueError, match="text_dim=10"):
        decoder(features, torch.randn(2, 7))
    with pytest.raises(ValueError, match="batch sizes differ"):
        decoder(features, torch.randn(3, TEXT_DIM))


def test_decoder_upsampling_is_bilinear_x4_twice():
    decoder = TextConditionedDecoder(in_channels=4, text_dim=3, channels=4, hidden_channels=6)
    up1, conv1, up2, conv2, last = decoder.visual
    assert isinstance(up1, nn.Upsample) and up1.scale_factor == 4.0 and up1.mode == "bilinear"
    assert isinstance(up2, nn.Upsample) and up2.scale_factor == 4.0 and not up2.align_corners
    assert (conv1.conv.in_channels, conv1.conv.out_channels, conv2.conv.out_channels) == (4, 6, 4)
    assert last.kernel_size == (1, 1) and decoder.text.out_features == 4 * 9 + 1


def test_gradient_reversal_forward_identity_backward_minus_lambda():
    grl = GradientReversal(0.3)
    x = torch.randn(3, 4, requires_grad=True)
    y = grl(x)
    assert torch.equal(y, x)
    upstream = torch.randn(3, 4)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.3 * upstream)
    # evaluation mode: plain identity, gradient passes unchanged
    x.grad = None
    grl.eval()(x).backward(upstream)
    torch.testing.assert_close(x.grad, upstream)
    # scripted training mode: same gradient, same value up to rounding
    scripted = script(GradientReversal(0.3).train())
    x.grad = None
    y = scripted(x)
    torch.testing.assert_close(y, x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.3 * upstream)
    for bad in (-0.1, "0.05", True):
        with pytest.raises(ValueError, match="lambd must be a number >= 0"):
            GradientReversal(bad)
    # default: a pure sign flip (the loss carries the paper's lambda)
    x.grad = None
    GradientReversal().train()(x).backward(upstream)
    torch.testing.assert_close(x.grad, -upstream)


# ---------------------------------------------------------------- network


def test_train_and_eval_outputs_and_causal_false():
    model = tiny()
    image, text = torch.rand(2, 3, 64, 32), ids(2)
    assert model.train()(image, text).shape == (2, 2, 64, 32)
    assert model.eval()(image, text).shape == (2, 1, 64, 32)
    plain = tiny(causal=False)
    assert len(plain.maskers) == 0 and plain.decoder_s is None and plain.grl is None
    assert plain.train()(image, text).shape == (2, 1, 64, 32)
    assert plain.eval()(image, text).shape == (2, 1, 64, 32)


def test_network_follows_eq2_shared_fusion_and_two_decoders():
    model = tiny().train()
    image, text = torch.rand(2, 3, 32, 64), ids(2)
    out = model(image, text)
    f3, f4, f5 = model.multi_scale_features(image)
    v3, v4, v5 = model.image_encoder(image)
    torch.testing.assert_close(f3, F.avg_pool2d(v3, 2))
    torch.testing.assert_close(f4, model.project4(v4))
    torch.testing.assert_close(f5, model.upsample5(v5))
    assert f3.shape[1:] == (8, 2, 4) and f4.shape[1:] == (16, 2, 4) and f5.shape[1:] == (12, 2, 4)
    masks = [m(f) for m, f in zip(model.maskers, (f3, f4, f5))]
    causal = model.fusion(torch.cat([m * f for m, f in zip(masks, (f3, f4, f5))], 1), 0)
    confounding = model.fusion(torch.cat([(1 - m) * f for m, f in zip(masks, (f3, f4, f5))], 1), 1)
    tau = model.text_encoder(text)
    torch.testing.assert_close(out[:, :1], model.decoder_c(causal, tau))
    torch.testing.assert_close(out[:, 1:], model.decoder_s(confounding, tau))
    assert not torch.allclose(out[:, :1], out[:, 1:])
    # evaluation mode: D_c on the causal features only
    model.eval()
    with torch.no_grad():
        f = model.multi_scale_features(image)
        causal = model.fusion(torch.cat([mk(x) * x for mk, x in zip(model.maskers, f)], 1), 0)
        torch.testing.assert_close(model(image, text), model.decoder_c(causal, tau))


def test_gradient_reversal_sits_between_confounding_features_and_d_s():
    model = tiny().train()
    image, text = torch.rand(2, 3, 32, 32), ids(2)
    fusion_weight = model.fusion.conv.weight
    # reference gradients without reversal: L_s of D_s on the hand-computed confounding features
    f = model.multi_scale_features(image)
    confounding = model.fusion(torch.cat([(1 - mk(x)) * x for mk, x in zip(model.maskers, f)], 1), 1)
    model.decoder_s(confounding, model.text_encoder(text)).sum().backward()
    plain_fusion = fusion_weight.grad.clone()
    plain_decoder = model.decoder_s.text.weight.grad.clone()
    plain_text = model.text_encoder.proj.weight.grad.clone()
    model.zero_grad()
    model(image, text)[:, 1].sum().backward()
    torch.testing.assert_close(model.decoder_s.text.weight.grad, plain_decoder)  # D_s itself: not reversed
    torch.testing.assert_close(fusion_weight.grad, -LAM * plain_fusion)  # upstream of the GRL: -lambda * grad
    torch.testing.assert_close(model.text_encoder.proj.weight.grad, -LAM * plain_text)  # the sentence feature too
    assert model.grl.lambd == LAM


def test_text_changes_the_output():
    model = tiny().eval()
    image = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = model(image, torch.stack([ids(1)[0], ids(1)[0]]))
    assert not torch.allclose(out[0], out[1], atol=1e-5)
    with torch.no_grad():
        same = model(image, ids(1).expand(2, -1))
    torch.testing.assert_close(same[0], same[1])


@pytest.mark.parametrize("causal", [True, False])
def test_scripted_eval_output_matches_eager(causal):
    model = tiny(causal=causal)
    model.train()(torch.rand(4, 3, 32, 32), ids(4))  # non-trivial BN running statistics
    model.eval()
    image, text = torch.rand(2, 3, 64, 32), ids(2)
    scripted = script(model)
    with torch.no_grad():
        diff = (scripted(image, text) - model(image, text)).abs().max().item()
    assert diff < 1e-5, diff
    # the scripted model also runs in training mode (GRL detach formulation)
    assert scripted.train()(image, text).shape == (2, 2 if causal else 1, 64, 32)


def test_every_registered_parameter_is_used():
    image, text = torch.rand(2, 3, 32, 32), ids(2)
    counts = count_forward_parameters(tiny(causal=True), image, text, training=True)
    assert counts["forward"] == counts["registered"] and counts["unused_modules"] == [], counts["unused_modules"]
    counts = count_forward_parameters(tiny(causal=False), image, text, training=False)
    assert counts["forward"] == counts["registered"] and counts["unused_modules"] == [], counts["unused_modules"]
    # evaluation mode of the causal model skips exactly D_s
    model = tiny(causal=True)
    counts = count_forward_parameters(model, image, text, training=False)
    d_s = sum(p.numel() for p in model.decoder_s.parameters())
    assert counts["unused_modules"] == [{"name": "decoder_s", "parameters": d_s}]


def test_reference_widths_parameter_counts():
    # method_notes 2.4: each Masker 9.46 M, CARAFE 0.37 M, FPN_AD used parts 36.62 M, each Projector 4.79 M
    def n(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    model = CausalCLIPSeg(nn.Identity(), nn.Identity(), text_dim=512)  # reference widths (512, 1024, 512) / 512 / 256
    assert [n(m) for m in model.maskers] == [9_460_224] * 3
    assert n(model.upsample5) == 369_828 and n(model.fusion) == 787_456 and n(model.project4) == 7_079_936
    assert n(model.decoder_c) == n(model.decoder_s) == 4_788_737
    fpn_used = n(model.maskers) + n(model.upsample5) + n(model.fusion) + n(model.project4)
    assert round(fpn_used / 1e6, 2) == 36.62
    assert n(model) == fpn_used + 2 * 4_788_737


def test_clear_errors():
    model = tiny().eval()
    with pytest.raises(ValueError, match="multiples of 32.*48x64"):
        model(torch.rand(1, 3, 48, 64), ids(1))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ids(1))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(3, 32, 32), ids(1))
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        model(torch.rand(2, 3, 32, 32), ids(3))
    with pytest.raises(ValueError, match=r"text must be token ids of shape \(B, L\)"):
        model(torch.rand(2, 3, 32, 32), ids(2)[:, 0])
    with pytest.raises(ValueError, match=r"fpn_in=\[8, 16, 16\] differs from image_encoder.out_channels"):
        CausalCLIPSeg(StandInImageEncoder(), StandInTextEncoder(), fpn_in=(8, 16, 16))
    with pytest.raises(ValueError, match="pass text_dim"):
        CausalCLIPSeg(StandInImageEncoder(), nn.Identity(), fpn_in=FPN_IN)
    with pytest.raises(ValueError, match="fpn_out must be a positive integer"):
        tiny(fpn_out=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        tiny(kernel_size=2)
    with pytest.raises(ValueError, match="lambd must be a number >= 0"):
        tiny(grl_lambda=-1.0)
    # encoder outputs are checked against fpn_in and the strides
    wrong = CausalCLIPSeg(StandInImageEncoder((8, 16, 12)), StandInTextEncoder(), fpn_in=(8, 16, 12))
    wrong.image_encoder.s32 = nn.Conv2d(16, 12, 1)  # stride 16 instead of 32
    with pytest.raises(ValueError, match=r"v5 must be \[1, 12, 1, 1\].*got \[1, 12, 2, 2\]"):
        wrong.eval()(torch.rand(1, 3, 32, 32), ids(1))
    # a text encoder returning the wrong size
    bad_text = CausalCLIPSeg(StandInImageEncoder(), StandInTextEncoder(7), fpn_in=FPN_IN, text_dim=TEXT_DIM)
    with pytest.raises(ValueError, match=r"text_encoder must return \(B=1, text_dim=10\)"):
        bad_text.eval()(torch.rand(1, 3, 32, 32), ids(1))


# ---------------------------------------------------------------- eq. 3 gradients on the real encoders


def _tiny_clip_network(lam_grl: float = 1.0) -> CausalCLIPSeg:
    from pathlib import Path

    from common.networks import CLIPImageEncoder, CLIPTextEncoder, load_clip

    config = Path(__file__).parent / "fixtures" / "tiny_clip_rn.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clip = load_clip(config, allow_random_init=True)
    image_encoder = CLIPImageEncoder(clip.visual)
    return CausalCLIPSeg(
        image_encoder,
        CLIPTextEncoder(clip, context_length=TOKENS),
        fpn_in=image_encoder.out_channels,
        fpn_out=8,
        decoder_channels=4,
        grl_lambda=lam_grl,
    )


def test_every_parameter_group_gets_the_gradient_of_eq3():
    """Per group, the gradient of the returned ``L_c + lam L_s`` through the reversals equals eq. 3's: upstream of
    D_s (image encoder, text encoder, CARAFE / projection, maskers, fusion) ``dL_c - lam dL_s``, D_c ``dL_c``,
    D_s ``+lam dL_s``; the reference gradients come from separate backward passes of L_c and L_s without reversal."""
    from common.losses import CausalMinMaxLoss

    model = _tiny_clip_network().train()
    image = torch.randn(2, 3, 64, 64)
    text = torch.randint(1, 49406, (2, TOKENS))
    text[:, -1] = 49407  # end-of-text token: the row the CLIP text encoder reads
    label = (torch.rand(2, 1, 64, 64) > 0.7).float()
    loss = CausalMinMaxLoss(lam=LAM)
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]

    got = torch.autograd.grad(loss(model(image, text), label), params, allow_unused=True)
    reversal = model.grl
    model.grl = nn.Identity()  # the same network without the reversals: ordinary gradients of L_c and L_s
    out = model(image, text)
    model.grl = reversal
    d_c = torch.autograd.grad(loss(out[:, :1], label), params, retain_graph=True, allow_unused=True)
    d_s = torch.autograd.grad(loss(out[:, 1:], label), params, allow_unused=True)

    checks = {}  # group -> [(name, got, expected)]
    reversed_share = {}
    for name, g, gc, gs in zip(names, got, d_c, d_s):
        group = name.split(".")[0]
        gc = torch.zeros_like(g) if gc is None else gc
        gs = torch.zeros_like(g) if gs is None else gs
        if group == "decoder_c":
            assert not gs.any(), name
            expected = gc
        elif group == "decoder_s":
            assert not gc.any(), name
            expected = LAM * gs
        else:
            expected = gc - LAM * gs
            reversed_share[group] = reversed_share.get(group, 0.0) + float((LAM * gs).abs().sum())
        checks.setdefault(group, []).append((name, g, expected))
    groups = ["image_encoder", "text_encoder", "project4", "upsample5", "maskers", "fusion", "decoder_c", "decoder_s"]
    assert sorted(checks) == sorted(groups)
    for group, items in checks.items():
        # tolerance relative to the group's largest gradient (some entries, e.g. the attention key biases, are 0 in
        # exact arithmetic and only rounding noise here)
        scale = max(float(expected.abs().max()) for _, _, expected in items)
        for name, g, expected in items:
            torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")
    # the reversed part is really there in every upstream group (else the check above could not tell the signs apart)
    assert all(v > 1e-6 for v in reversed_share.values()), reversed_share
    text_gs = [gs for n, gs in zip(names, d_s) if n.startswith("text_encoder.") and gs is not None]
    assert sum(float(gs.abs().sum()) for gs in text_gs) > 0  # L_s reaches the text encoder through D_s


# ---------------------------------------------------------------- fusion BatchNorm statistics per branch


def test_branch_batchnorm_equals_one_batchnorm_per_branch():
    from common.networks.causal_modules import BranchBatchNorm2d

    norm = BranchBatchNorm2d(3, num_branches=2, momentum=0.3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    references = [nn.BatchNorm2d(3, momentum=0.3) for _ in range(2)]
    for ref in references:
        ref.load_state_dict({"weight": norm.weight.detach(), "bias": norm.bias.detach()}, strict=False)
    x = [torch.randn(4, 3, 5, 5) * 2 + 1, torch.randn(4, 3, 5, 5) * 0.5 - 3]
    for _ in range(2):
        for branch in (0, 1):
            torch.testing.assert_close(norm(x[branch], branch), references[branch](x[branch]))
    for branch in (0, 1):
        torch.testing.assert_close(norm.running_mean[branch], references[branch].running_mean)
        torch.testing.assert_close(norm.running_var[branch], references[branch].running_var)
        assert int(norm.num_batches_tracked[branch]) == 2
    norm.eval()
    for ref in references:
        ref.eval()
    for branch in (0, 1):
        torch.testing.assert_close(norm(x[1 - branch], branch), references[branch](x[1 - branch]))
    with pytest.raises(ValueError, match=r"branch must be in \[0, 1\], got 2"):
        norm(x[0], 2)


def test_fusion_statistics_are_kept_per_branch_in_the_network():
    """Training updates the causal statistics (branch 0) with the causal features only and the confounding ones
    (branch 1) with the confounding features only; evaluation normalises the causal features with branch 0."""
    image, text = torch.rand(4, 3, 32, 32), ids(4)
    torch.manual_seed(0)
    model = tiny().train()
    torch.manual_seed(0)
    check = tiny().train()  # same weights: computes the fusion inputs by hand
    with torch.no_grad():
        f = check.multi_scale_features(image)
        masks = [mk(x) for mk, x in zip(check.maskers, f)]
        causal = check.fusion.conv(torch.cat([m * x for m, x in zip(masks, f)], 1))
        confounding = check.fusion.conv(torch.cat([(1 - m) * x for m, x in zip(masks, f)], 1))
        model(image, text)  # one training step's forward: statistics move from their initial values (0, 1)
    momentum = model.fusion.norm.momentum
    stats = model.fusion.norm
    n = causal.numel() / causal.shape[1]
    for branch, feats in ((0, causal), (1, confounding)):
        mean = feats.mean((0, 2, 3))
        var = feats.var((0, 2, 3), unbiased=False) * n / (n - 1)
        torch.testing.assert_close(stats.running_mean[branch], momentum * mean)
        torch.testing.assert_close(stats.running_var[branch], (1 - momentum) + momentum * var)
    assert not torch.allclose(stats.running_mean[0], stats.running_mean[1])
    # evaluation: D_c sees the causal features normalised with the causal statistics only
    model.eval()
    with torch.no_grad():
        f = model.multi_scale_features(image)  # evaluation mode: the maskers' BatchNorms use running statistics too
        causal = model.fusion.conv(torch.cat([mk(x) * x for mk, x in zip(model.maskers, f)], 1))
        expected = model.decoder_c(
            F.relu(
                F.batch_norm(
                    causal, stats.running_mean[0], stats.running_var[0], stats.weight, stats.bias, False, 0.0, stats.eps
                )
            ),
            model.text_encoder(text),
        )
        torch.testing.assert_close(model(image, text), expected)
    assert tiny(causal=False).fusion.norm.num_branches == 1


# ---------------------------------------------------------------- literal eq. 3 vs the reversal, lambda 0.05, Adam


def _adam_game(literal: bool, steps: int = 60, lr: float = 1e-3):
    """Train the network (stand-in encoders) with Adam at lambda = 0.05 (section 3.2) on one fixed batch.

    ``literal``: no reversal, ``L_c - lam L_s`` minimised over every parameter (eq. 3 as written); otherwise the
    project's reversal and :class:`CausalMinMaxLoss`. Returns ``H(p)`` and the (L_c, L_s) history."""
    from common.losses import CausalMinMaxLoss

    torch.manual_seed(0)
    model = tiny(grl_lambda=1.0).train()
    g = torch.Generator().manual_seed(0)
    image, text = torch.rand(4, 3, 32, 32, generator=g), torch.randint(0, VOCAB, (4, TOKENS), generator=g)
    label = torch.zeros(4, 1, 32, 32)
    label[:, :, 8:20, 6:18] = 1
    loss = CausalMinMaxLoss(lam=LAM)
    if literal:
        model.grl = nn.Identity()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        out = model(image, text)
        value = loss(out[:, :1], label) - LAM * loss(out[:, 1:], label) if literal else loss(out, label)
        loss(out.detach(), label)  # the logged terms
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        history.append((loss.last_terms["c"], loss.last_terms["s"]))
    p = float(label.mean())
    return -(p * math.log(p) + (1 - p) * math.log(1 - p)), history


def test_reversal_keeps_l_s_bounded_where_literal_eq3_runs_away_with_adam():
    """At the paper's lambda = 0.05 with Adam, minimising eq. 3 literally lets D_s drive L_s up without bound (Adam's
    step does not shrink with lambda), while the project's reversal + loss keep L_s bounded and L_c falls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate on a busy machine
    try:
        h, literal = _adam_game(literal=True)
        _, game = _adam_game(literal=False)
    finally:
        torch.set_num_threads(threads)
    l_s = [s for _, s in literal]
    assert l_s[-1] > 10 * max(l_s[0], h), (l_s[0], l_s[-1])
    assert l_s[-1] > l_s[44] > l_s[29] > l_s[14]  # still growing
    l_c, l_s = [c for c, _ in game], [s for _, s in game]
    assert max(l_s) <= max(l_s[0], h) + 0.1, (max(l_s), l_s[0], h)
    assert l_c[-1] < 0.2 * l_c[0]
