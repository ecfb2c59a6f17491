# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""BiCLIP: each loss term against its equation (eq. 2, 6, 8, L_gen, Dice + CE on logits), BMF (eq. 1), the IAC
augmentations (the strong view never touches the pseudo-image channels or the mask geometry), one U-Net pass at
inference (eq. 7), the text pooling, and the bundle's frozen-BERT path with a tiny random BERT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandGaussianNoise, RandScaleIntensity

from common.losses.biclip import BiCLIPLoss, cycle_loss, generation_loss, iac_loss
from common.networks import BiCLIP, TokenEmbedding
from common.networks.biclip_blocks import BidirectionalFusion, PseudoImageGenerator
from common.transforms.biclip import (
    BatchChannelAugmentd,
    BatchRandFlipAffined,
    RandDirectionalMotionBlur,
    biclip_strong_augment,
)
from test_bundles import configs, tiny_overrides

SIZE = 32
VOCAB = 20


def tiny_net(**kwargs) -> BiCLIP:
    torch.manual_seed(0)
    args = dict(
        image_size=SIZE,
        text_dim=8,
        text_embedder=TokenEmbedding(VOCAB, 8, pad_id=0),
        unet_features=(4, 4, 8, 8, 16, 4),
        image_channels=(4, 8),
        generator_channels=(4, 4),
        cycle_channels=(4, 4),
        iac_dim=6,
        strong_augment=biclip_strong_augment(),
    )
    args.update(kwargs)
    return BiCLIP(**args)


def batch(n: int = 3):
    g = torch.Generator().manual_seed(1)
    image = torch.rand(n, 3, SIZE, SIZE, generator=g)
    ids = torch.randint(1, VOCAB, (n, 5), generator=g)
    ids[:, 3:] = 0  # padding
    label = torch.zeros(n, 1, SIZE, SIZE)
    label[:, :, 4:14, 6:20] = 1
    return image, ids, label


# ------------------------------------------------------------------------------------------------ loss terms
def test_cycle_loss_is_eq2_squared_distance_with_detached_text():
    t = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], requires_grad=True)
    t_hat = torch.tensor([[0.5, -1.0, 0.5], [2.0, 3.0, -1.0]], requires_grad=True)
    expected = np.mean((t.detach().numpy() - t_hat.detach().numpy()) ** 2)  # ||t - t_hat||^2 / D, batch mean
    value = cycle_loss(t, t_hat, "l2")
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert cycle_loss(t, t_hat, "l1").item() == pytest.approx(
        np.mean(np.abs(t.detach().numpy() - t_hat.detach().numpy()))
    )
    value.backward()
    assert t.grad is None, "the cycle target t is detached (reference: text_embed.detach())"
    np.testing.assert_allclose(t_hat.grad.numpy(), 2 * (t_hat - t).detach().numpy() / t.numel(), rtol=1e-6)


def test_iac_loss_is_eq6_cosine_distance():
    p_w = torch.tensor([[1.0, 0.0, 1.0], [0.2, -0.4, 0.9]], requires_grad=True)
    p_s = torch.tensor([[1.0, 1.0, 0.0], [0.2, -0.4, 0.9]], requires_grad=True)
    a, b = p_w.detach().numpy(), p_s.detach().numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    value = iac_loss(p_w, p_s, stop_gradient=True)
    assert value.item() == pytest.approx(np.mean(1 - cos), rel=1e-6)  # sample 0: 1 - 1/2, sample 1: 0
    value.backward()
    assert p_s.grad is None and p_w.grad is not None
    p_s2 = p_s.detach().clone().requires_grad_(True)
    iac_loss(p_w.detach(), p_s2, stop_gradient=False).backward()
    assert p_s2.grad.abs().sum() > 0, "without stop-gradient the strong view is trained too"


def test_generation_loss_is_l1_to_image_times_mask():
    image = torch.rand(2, 3, 4, 4)
    mask = (torch.rand(2, 1, 4, 4) > 0.5).float()
    pseudo = torch.rand(2, 3, 4, 4)
    target = image.numpy() * mask.numpy()  # the reference's generated_gt: background zeroed
    assert generation_loss(pseudo, image, mask).item() == pytest.approx(np.mean(np.abs(pseudo.numpy() - target)))


def _fake_output(n=2, size=6, strong=True):
    g = torch.Generator().manual_seed(3)
    out = {
        "pred": torch.randn(n, 1, size, size, generator=g),
        "image": torch.rand(n, 3, size, size, generator=g),
        "pseudo": torch.rand(n, 3, size, size, generator=g),
        "text": torch.randn(n, 5, generator=g),
        "text_cycle": torch.randn(n, 5, generator=g),
        "proj_weak": torch.randn(n, 4, generator=g),
        "label": (torch.rand(n, 1, size, size, generator=g) > 0.5).float(),
    }
    if strong:
        out["proj_strong"] = torch.randn(n, 4, generator=g)
    target = (torch.rand(n, 1, size, size, generator=g) > 0.5).float()
    return out, target


def test_total_loss_is_eq8_with_seg_on_logits_and_augmented_mask():
    out, target = _fake_output()
    loss = BiCLIPLoss(lambda_gen=0.1, lambda_iac=0.05, lambda_cycle=0.07)
    total = loss(out, target)
    z, y = out["pred"].double().numpy(), out["label"].double().numpy()  # L_seg against y_g, not the batch mask
    p = 1 / (1 + np.exp(-z))
    ce = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))  # BCE of sigmoid(logits): one sigmoid, not two
    s = 1e-5
    inter, denom = (p * y).sum(axis=(1, 2, 3)), p.sum(axis=(1, 2, 3)) + y.sum(axis=(1, 2, 3))
    dice = np.mean(1 - (2 * inter + s) / (denom + s))
    gen = np.mean(np.abs(out["pseudo"].numpy() - out["image"].numpy() * target.numpy()))  # un-augmented mask
    a, b = out["proj_weak"].numpy(), out["proj_strong"].numpy()
    iac = np.mean(1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    cyc = np.mean((out["text"].numpy() - out["text_cycle"].numpy()) ** 2)
    expected = {"seg_dice": dice, "seg_ce": ce, "gen": 0.1 * gen, "iac": 0.05 * iac, "cycle": 0.07 * cyc}
    assert set(loss.last_terms) == set(expected)
    for name, value in expected.items():
        assert loss.last_terms[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-5)
    # no strong view (use_iac False): the IAC term is zero; eval-mode output is refused with a clear message
    out2, _ = _fake_output(strong=False)
    loss(out2, target)
    assert loss.last_terms["iac"] == 0.0
    with pytest.raises(ValueError, match="training-mode output"):
        loss(out["pred"], target)
    with pytest.raises(ValueError, match="lambda_gen"):
        BiCLIPLoss(lambda_gen=-1)


# --------------------------------------------------------------------------------------------- components
def test_bmf_is_a_residual_refinement_eq1():
    torch.manual_seed(0)
    bmf = BidirectionalFusion(text_dim=6, image_dim=4)
    t, i = torch.randn(2, 6), torch.randn(2, 4)
    delta = bmf.mlp(torch.cat([t, i], 1))
    torch.testing.assert_close(bmf(t, i), t + delta)
    torch.nn.init.zeros_(bmf.mlp[-1].weight)
    torch.nn.init.zeros_(bmf.mlp[-1].bias)
    torch.testing.assert_close(bmf(t, i), t)  # g_BMF = 0 leaves the text unchanged
    gen = PseudoImageGenerator(seed_size=4, out_channels=3)
    x = gen(torch.randn(2, 16)).detach()
    assert x.shape == (2, 3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_text_mean_ignores_padding():
    net = tiny_net().eval()
    ids = torch.tensor([[3, 5, 7, 0, 0]])
    longer = torch.tensor([[3, 5, 7, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(net.encode_text(ids), net.encode_text(longer))
    vectors = net.text_embedder(ids)
    expected = net.text_projection(vectors[:, :3].mean(1))
    torch.testing.assert_close(net.encode_text(ids), expected)
    # frozen-encoder vectors: all-zero rows are padding (HFTextEmbedd zero-pads)
    float_net = tiny_net(text_embedder=None).eval()
    v = torch.randn(1, 3, 8)
    padded = torch.cat([v, torch.zeros(1, 4, 8)], 1)
    torch.testing.assert_close(float_net.encode_text(padded), float_net.text_projection(v.mean(1)))
    with pytest.raises(ValueError, match=r"\(B, L, 8\)"):
        float_net.encode_text(torch.randn(1, 3, 5))


# ---------------------------------------------------------------------------------------------- augmentations
def test_spatial_augmentation_is_joint_and_flips_exact():
    image, _, label = batch(4)
    x = torch.cat([label.expand(-1, 3, -1, -1), image], 1)
    aug = BatchRandFlipAffined(
        keys=["image", "label"], mode=["bilinear", "nearest"], generator=torch.Generator().manual_seed(0)
    )
    out = aug({"image": x, "label": label})
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}, "nearest keeps the mask binary"
    # the mask moved exactly like the first channels that equal it (up to bilinear edge pixels)
    assert (out["image"][:, :1] - out["label"]).abs().mean() < 0.02
    assert not torch.equal(out["label"], label), "a random geometry was applied"
    flip = BatchRandFlipAffined(
        keys=["image", "label"], mode=["bilinear", "nearest"], prob_hflip=1, prob_vflip=0, prob_affine=0
    )
    o = flip({"image": x, "label": label})
    assert torch.equal(o["label"], label.flip(3)) and torch.allclose(o["image"], x.flip(3), atol=1e-6)
    vflip = BatchRandFlipAffined(keys=["image"], prob_hflip=0, prob_vflip=1, prob_affine=0)
    assert torch.allclose(vflip({"image": x})["image"], x.flip(2), atol=1e-6)
    none = BatchRandFlipAffined(keys=["image"], prob_hflip=0, prob_vflip=0, prob_affine=0)
    assert torch.equal(none({"image": x})["image"], x)
    # differentiable with respect to the input (the seg loss reaches the pseudo-image generator)
    xg = x.clone().requires_grad_(True)
    aug({"image": xg, "label": label})["image"].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'label'"):
        aug({"image": x, "label": label[:2]})


def test_strong_view_touches_only_real_channels():
    image, _, _ = batch(2)
    pseudo = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    x = torch.cat([image, pseudo], 1)
    strong = BatchChannelAugmentd(
        "image", Compose([RandGaussianNoise(prob=1.0, std=0.5), RandScaleIntensity(1.0, prob=1.0)])
    )
    out = strong({"image": x})["image"]
    assert torch.equal(out[:, 3:], x[:, 3:]), "pseudo-image channels unchanged"
    assert not torch.allclose(out[:, :3], x[:, :3]), "real channels perturbed"
    out[:, 3:].sum().backward()
    assert torch.equal(pseudo.grad, torch.ones_like(pseudo)), "the pseudo channels keep their gradient path"
    blur = RandDirectionalMotionBlur(kernel_size=5, prob=1.0)
    const = torch.full((3, 16, 16), 0.3)
    torch.testing.assert_close(blur(const), const)  # a line kernel keeps a constant image


def test_training_views_share_pseudo_channels_and_mask_geometry():
    """Hook the U-Net's input: both training passes get identical pseudo-image channels, and the strong
    augmentation changes neither those nor the augmented mask (same seed with and without it)."""
    image, ids, label = batch(3)
    inputs = []

    def run(strong):
        net = tiny_net(strong_augment=strong).train()
        inputs.clear()
        handle = net.unet.conv_0.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach().clone()))
        torch.manual_seed(5)
        out = net(image, ids, label)
        handle.remove()
        return out, list(inputs)

    out, views = run(biclip_strong_augment(noise_std=0.2, prob_noise=1.0, prob_brightness=1.0))
    assert len(views) == 2, "training runs the U-Net on the weak and the strong view"
    weak, strong = views
    assert torch.equal(weak[:, 3:], strong[:, 3:]), "pseudo-image channels identical in both views"
    assert not torch.allclose(weak[:, :3], strong[:, :3]), "the real channels differ"
    plain_out, plain_views = run(None)
    assert torch.equal(out["label"], plain_out["label"]), "the strong augmentation never moves the mask"
    assert torch.equal(plain_views[0][:, 3:], weak[:, 3:])
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
    # the segmentation loss reaches the generator through the (augmented) pseudo image
    net = tiny_net().train()
    BiCLIPLoss()(net(image, ids, label), label).backward()
    assert net.generator.net[0].weight.grad.abs().sum() > 0


def test_inference_runs_one_unet_pass_eq7():
    image, ids, label = batch(2)
    net = tiny_net()
    calls = []
    net.unet.conv_0.register_forward_hook(lambda *a: calls.append(1))
    net.eval()
    with torch.no_grad():
        logits = net(image, ids)
    assert len(calls) == 1, "inference runs the U-Net once (the reference runs it twice)"
    assert logits.shape == (2, 1, SIZE, SIZE)
    # eq. 7 by hand: final 1x1 conv of the decoder map of [N_r(x); N_p(x_hat)]
    with torch.no_grad():
        _, _, pseudo = net.pseudo_image(image, ids)
        real = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]
        ).view(1, 3, 1, 1)
        x_w = torch.cat([real, (pseudo - 0.5) / 0.25], 1)
        torch.testing.assert_close(logits, net.unet.final_conv(net.decoder_features(x_w)))
    calls.clear()
    net.train()
    net(image, ids, label)
    assert len(calls) == 2
    calls.clear()
    no_iac = tiny_net(iac=False).train()
    no_iac.unet.conv_0.register_forward_hook(lambda *a: calls.append(1))
    out = no_iac(image, ids, label)
    assert len(calls) == 1 and "proj_strong" not in out and no_iac.iac_projection is None
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        net.eval()(torch.rand(1, 3, 48, 48), ids[:1])


# ------------------------------------------------------------------------------------------------- bundle
def test_bundle_frozen_bert_path_and_term_logging(tmp_path):
    """The paper's text path: a tiny random BERT saved to a folder and loaded through the bundle keys
    (``text_encoder: bert``); its vectors are cached and pooled in the network; every eq. 8 term is logged."""
    from monai.bundle import ConfigWorkflow
    from conftest import save_tiny_bert

    folder = save_tiny_bert(tmp_path / "tiny_bert", intermediate_size=32)
    over = tiny_overrides(
        "biclip",
        tmp_path / "data",
        tmp_path / "out",
        text_encoder="bert",
        text_encoder_path=str(folder),
        text_dim=16,
        max_epochs=1,
    )
    wf = ConfigWorkflow(config_file=configs("biclip", "train.json")[0], workflow_type="train", **over)
    wf.initialize()
    assert wf.parser.get_parsed_content("network_def").text_embedder is None
    wf.run()
    metrics = wf.parser.get_parsed_content("train#trainer").state.metrics
    assert {f"loss_{k}" for k in ("seg_dice", "seg_ce", "gen", "iac", "cycle")} <= set(metrics), metrics
    assert len(list((tmp_path / "out" / "text_cache").glob("*.pt"))) == 1
