# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the LViT network (common/networks/lvit.py, common/networks/lvit_blocks.py).

Tiny configurations (32-64 px images, 8 base channels, 4 text tokens of 16 features) except the parameter-count test,
which builds the paper's LViT-T/TW once (224 px, 10 x 768 text, base 64) and runs one forward pass at batch 1.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from common.networks import LVIT_SIZES, LViT, TokenEmbedding, build_lvit
from common.networks.lvit_blocks import CNNViTInteraction, PixelLevelAttention, TransformerMLP
from common.utils import count_forward_parameters

SIZE, TOKENS, TEXT_DIM, BASE, HEADS = 32, 4, 16, 8, 2
VOCAB = 50


def tiny(**kwargs) -> LViT:
    args = dict(image_size=SIZE, num_tokens=TOKENS, text_dim=TEXT_DIM, base_channels=BASE, num_heads=HEADS)
    args.update(kwargs)
    return LViT(**args)


def script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in recent PyTorch
        return torch.jit.script(model)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("variant", sorted(LVIT_SIZES) + sorted(k + "W" for k in LVIT_SIZES))
def test_variants_shapes_layers_and_no_unused_parameters(variant):
    model = build_lvit(
        variant,
        image_size=SIZE,
        num_tokens=TOKENS,
        text_dim=TEXT_DIM,
        base_channels=BASE,
        num_heads=HEADS,
        out_channels=2,
    ).eval()
    with_text = not variant.endswith("W")
    image = torch.rand(2, 3, SIZE, SIZE)
    text = torch.rand(2, TOKENS, TEXT_DIM) if with_text else None
    assert model(image, text).shape == (2, 2, SIZE, SIZE)
    layers = LVIT_SIZES[variant.rstrip("W")]
    for name in ("down_vit1", "down_vit2", "down_vit3", "down_vit4", "up_vit1", "up_vit2", "up_vit3", "up_vit4"):
        assert len(getattr(model, name).layers) == layers
    assert (model.text_projection is not None) == with_text and (model.text_to_patches is not None) == with_text
    counts = count_forward_parameters(model, image, text)
    assert counts["unused"] == 0 and counts["forward"] == counts["registered"], counts["unused_modules"]


def test_image_size_64_has_16_patches_per_level_and_embedder_variant():
    model = tiny(image_size=64, text_embedder=TokenEmbedding(VOCAB, TEXT_DIM)).eval()
    ids = torch.randint(1, VOCAB, (1, TOKENS))
    assert model(torch.rand(1, 3, 64, 64), ids).shape == (1, 1, 64, 64)
    for k, vit in enumerate((model.down_vit1, model.down_vit2, model.down_vit3, model.down_vit4)):
        assert vit.embedding.position_embeddings.shape == (1, 16, BASE * 2**k)
        assert vit.embedding.patch_embeddings.kernel_size == (16 // 2**k, 16 // 2**k)
    assert model.text_to_patches.block.conv.in_channels == TOKENS
    assert model.text_to_patches.block.conv.out_channels == 16
    counts = count_forward_parameters(model, torch.rand(1, 3, 64, 64), ids)
    assert counts["unused"] == 0


def test_text_changes_output_only_with_text():
    image = torch.rand(2, 3, SIZE, SIZE)
    text_a, text_b = torch.rand(2, TOKENS, TEXT_DIM), torch.rand(2, TOKENS, TEXT_DIM)
    model = tiny().eval()
    with torch.no_grad():
        diff = (model(image, text_a) - model(image, text_b)).abs().max()
    assert diff > 1e-4
    model_w = tiny(use_text=False).eval()
    with torch.no_grad():
        ref = model_w(image, None)
        assert torch.equal(ref, model_w(image, text_a)) and torch.equal(ref, model_w(image, text_b))


def test_text_enters_only_at_level_one_through_ctbn():
    """Eq. 3: level-1 Transformer input = PatchEmbedding(x_1) + CTBN(Conv1d chain(text)); deeper levels get no text."""
    model = tiny().eval()
    image, text = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, TOKENS, TEXT_DIM)
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for k in range(1, 5):
        vit = getattr(model, f"down_vit{k}")
        hooks.append(vit.embedding.register_forward_hook(lambda m, a, out, k=k: captured.__setitem__(f"emb{k}", out)))
        hooks.append(vit.layers.register_forward_pre_hook(lambda m, a, k=k: captured.__setitem__(f"in{k}", a[0])))
    with torch.no_grad():
        model(image, text)
        chain = model.text_projection(text.transpose(1, 2))  # (B, c, L): Conv1d over the tokens
        assert chain.shape == (2, BASE, TOKENS)
        expected_text = model.text_to_patches(chain.transpose(1, 2))  # tokens as channels -> (B, N, c)
    for h in hooks:
        h.remove()
    n = (SIZE // 16) ** 2
    assert expected_text.shape == (2, n, BASE) and expected_text.abs().max() > 1e-3
    torch.testing.assert_close(captured["in1"], captured["emb1"] + expected_text)
    for k in range(2, 5):
        torch.testing.assert_close(captured[f"in{k}"], captured[f"emb{k}"])


def test_zero_ctbn_text_output_equals_model_without_text():
    """With the text CTBN's output forced to zero, LViT equals LViT-W with the same weights: no other text path."""
    model = tiny().eval()
    model_w = tiny(use_text=False).eval()
    missing, unexpected = model_w.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith(("text_projection.", "text_to_patches.")) for k in unexpected)
    image, text = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, TOKENS, TEXT_DIM)
    with torch.no_grad():
        assert (model(image, text) - model_w(image)).abs().max() > 1e-4  # the text matters ...
        bn = model.text_to_patches.block.adn.N
        bn.weight.zero_()
        bn.bias.zero_()  # ReLU(BN(.)) == 0 in eval mode
        torch.testing.assert_close(model(image, text), model_w(image), rtol=0, atol=1e-6)  # ... only through CTBN


def test_down_vit_concatenates_reduced_tokens_before_previous_level():
    """Eq. 7 as the reference implements it: y_k = cat[CTBN(ViT(emb(x_k))), y_{k-1}] along the feature axis."""
    model = tiny().eval()
    x2 = torch.rand(2, 2 * BASE, SIZE // 2, SIZE // 2)
    previous = torch.rand(2, (SIZE // 16) ** 2, BASE)
    with torch.no_grad():
        y2 = model.down_vit2(x2, previous)
        reduced = model.down_vit2.reduce(model.down_vit2.layers(model.down_vit2.embedding(x2)).transpose(1, 2))
    assert y2.shape == (2, (SIZE // 16) ** 2, 2 * BASE)
    torch.testing.assert_close(y2[..., :BASE], reduced.transpose(1, 2))
    torch.testing.assert_close(y2[..., BASE:], previous)


def test_forward_follows_the_reference_data_flow():
    """method_notes section 1.1, step by step from the sub-modules: text at level 1, concatenating down path, adding
    up path, interaction added to the CNN skips x1..x4, decoder up4(x5, x4) .. up1(., x1)."""
    model = tiny().eval()
    image, text = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, TOKENS, TEXT_DIM)
    m = model
    with torch.no_grad():
        x1 = m.inc(image)
        t = m.text_to_patches(m.text_projection(text.transpose(1, 2)).transpose(1, 2))
        y1 = m.down_vit1.layers(m.down_vit1.embedding(x1) + t)
        x2 = m.down1(x1)
        y2 = torch.cat([m.down_vit2.reduce(m.down_vit2.layers(m.down_vit2.embedding(x2)).transpose(1, 2)).mT, y1], 2)
        x3 = m.down2(x2)
        y3 = torch.cat([m.down_vit3.reduce(m.down_vit3.layers(m.down_vit3.embedding(x3)).transpose(1, 2)).mT, y2], 2)
        x4 = m.down3(x3)
        y4 = torch.cat([m.down_vit4.reduce(m.down_vit4.layers(m.down_vit4.embedding(x4)).transpose(1, 2)).mT, y3], 2)
        x5 = m.down4(x4)
        y4 = m.up_vit4.layers(y4)
        y3 = m.up_vit3.layers(y3) + m.up_vit3.from_deeper(y4.mT).mT
        y2 = m.up_vit2.layers(y2) + m.up_vit2.from_deeper(y3.mT).mT
        y1 = m.up_vit1.layers(y1) + m.up_vit1.from_deeper(y2.mT).mT
        g = SIZE // 16
        skips = []
        for k, (y, x) in enumerate(((y1, x1), (y2, x2), (y3, x3), (y4, x4)), start=1):
            grid = (
                y.mT.reshape(2, -1, g, g)
                .repeat_interleave(16 // 2 ** (k - 1), 2)
                .repeat_interleave(16 // 2 ** (k - 1), 3)
            )
            skips.append(x + getattr(m, f"interaction{k}").proj(grid))
        out = m.up4(x5, skips[3])
        out = m.up3(out, skips[2])
        out = m.up2(out, skips[1])
        expected = m.out(m.up1(out, skips[0]))
        torch.testing.assert_close(model(image, text), expected)


def test_transformer_mlp_has_gelu_after_fc2():
    """Reference MLP: fc1 -> GELU -> drop -> fc2 -> GELU -> drop (a plain ViT MLP would end with fc2)."""
    mlp = TransformerMLP(4, 8, dropout=0.0)
    x = torch.rand(3, 4)
    with torch.no_grad():
        mlp.fc2.bias.fill_(-10.0)
        torch.testing.assert_close(mlp(x), torch.nn.functional.gelu(mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x)))))
        assert mlp(x).min() > -0.2  # GELU's lower bound; without the second GELU the outputs would be near -10


def test_plam_matches_hand_computed_eq8():
    plam = PixelLevelAttention(2)
    w_avg = [[1.0, -1.0], [0.5, 2.0]]
    w_max = [[2.0, 0.0], [-1.0, 1.0]]
    w1 = [[0.1 * (i + 1), -0.2 * (i - 2), 0.3 if i % 2 else -0.1] for i in range(6)]  # Linear(3, 6)
    b1 = [0.05 * i - 0.1 for i in range(6)]
    w2 = [0.5, -0.4, 0.3, 0.2, -0.1, 0.6]  # Linear(6, 1)
    b2 = 0.25
    with torch.no_grad():
        plam.conv_avg.weight.copy_(torch.tensor(w_avg).view(2, 2, 1, 1))
        plam.conv_max.weight.copy_(torch.tensor(w_max).view(2, 2, 1, 1))
        plam.mlp[0].weight.copy_(torch.tensor(w1))
        plam.mlp[0].bias.copy_(torch.tensor(b1))
        plam.mlp[2].weight.copy_(torch.tensor([w2]))
        plam.mlp[2].bias.fill_(b2)
    pixels = [[1.0, 3.0], [-2.0, 0.5], [0.4, -0.3]]  # 3 pixels x 2 channels
    x = torch.tensor(pixels).t().reshape(1, 2, 1, 3)
    with torch.no_grad():
        y = plam(x)

    def relu(v):
        return max(v, 0.0)

    for p, (c0, c1) in enumerate(pixels):
        avg = sum(relu(w[0] * c0 + w[1] * c1) for w in w_avg) / 2  # channel mean of ReLU(conv_avg x)
        mx = max(relu(w[0] * c0 + w[1] * c1) for w in w_max)  # channel max of ReLU(conv_max x)
        cat = [avg, mx, avg + mx]
        hidden = [relu(sum(wi * ci for wi, ci in zip(w1[j], cat)) + b1[j]) for j in range(6)]
        att = sum(w2[j] * hidden[j] for j in range(6)) + b2  # no sigmoid
        for c, value in enumerate((c0, c1)):
            assert y[0, c, 0, p].item() == pytest.approx(att * value, abs=1e-6)


def test_cnn_vit_interaction_reshapes_row_major_and_upsamples_nearest():
    block = CNNViTInteraction(channels=1, grid_size=2).eval()
    with torch.no_grad():
        block.proj.conv.weight.fill_(1.0)
        block.proj.conv.bias.zero_()
    tokens = torch.tensor([[[1.0], [-2.0], [3.0], [4.0]]])  # (B=1, N=4, C=1): grid [[1, -2], [3, 4]]
    cnn = torch.full((1, 1, 4, 4), 10.0)
    with torch.no_grad():
        out = block(tokens, cnn)
    scale = 1.0 / (1.0 + 1e-5) ** 0.5  # BatchNorm in eval mode with default running statistics
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]])
    torch.testing.assert_close(out[0, 0], 10.0 + expected * scale)


@pytest.mark.parametrize("variant", ["embeddings", "embedder", "without_text"])
def test_torchscript_matches_eager(variant):
    image = torch.rand(2, 3, SIZE, SIZE)
    if variant == "embeddings":
        model, text = tiny(), torch.rand(2, TOKENS, TEXT_DIM)
    elif variant == "embedder":
        model, text = tiny(text_embedder=TokenEmbedding(VOCAB, TEXT_DIM)), torch.randint(1, VOCAB, (2, TOKENS))
    else:
        model, text = tiny(use_text=False), None
    model.eval()
    scripted = script(model)
    with torch.no_grad():
        eager_out, scripted_out = model(image, text), scripted(image, text)
    assert (eager_out - scripted_out).abs().max().item() < 1e-5
    if variant != "without_text":
        with pytest.raises(Exception, match="expected 4 text tokens"):
            scripted(image, text[:, :3])


def test_gradients_reach_the_text_embedding_table():
    embedder = TokenEmbedding(VOCAB, TEXT_DIM)
    model = tiny(text_embedder=embedder).train()
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])  # 0 is the padding id
    model(torch.rand(2, 3, SIZE, SIZE), ids).square().mean().backward()
    grad = embedder.embedding.weight.grad
    assert grad is not None
    used = [1, 2, 3, 4, 5]
    assert all(grad[i].abs().sum() > 0 for i in used)
    assert grad[0].abs().sum() == 0 and grad[6:].abs().sum() == 0  # padding row and unused ids get no gradient


def test_construction_errors():
    with pytest.raises(ValueError, match="multiple of 16.*got 40"):
        tiny(image_size=40)
    with pytest.raises(ValueError, match="multiple of 16.*got 8"):
        tiny(image_size=8)
    with pytest.raises(ValueError, match=r"multiple of num_heads \(8\).*got 12"):
        tiny(base_channels=12, num_heads=8)
    with pytest.raises(ValueError, match="num_tokens must be a positive integer"):
        tiny(num_tokens=0)
    with pytest.raises(ValueError, match="dropout"):
        tiny(dropout=1.0)
    with pytest.raises(ValueError, match="use_text=False"):
        tiny(use_text=False, text_embedder=TokenEmbedding(VOCAB, TEXT_DIM))
    with pytest.raises(ValueError, match="unknown variant 'X'"):
        build_lvit("X")
    with pytest.raises(ValueError, match="num_layers"):
        build_lvit("T", num_layers=2)


def test_forward_errors_name_expected_and_received():
    model = tiny().eval()
    image, text = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, TOKENS, TEXT_DIM)
    cases = [
        ((torch.rand(1, 3, 64, 64), text), "expected a 32x32 image .*received 64x64"),
        ((torch.rand(1, 3, 32, 48), text), "expected a 32x32 image .*received 32x48"),
        ((torch.rand(1, 1, SIZE, SIZE), text), "expected 3 image channels, received 1"),
        ((torch.randint(0, 255, (1, 3, SIZE, SIZE)), text), "floating-point tensor, received an integer tensor"),
        ((image, torch.rand(1, 6, TEXT_DIM)), "expected 4 text tokens .*received 6"),
        ((image, torch.rand(1, TOKENS, 8)), "expected text features of size 16 .*received 8"),
        ((image, torch.randint(0, VOCAB, (1, TOKENS))), "float embeddings of shape .*received an integer tensor"),
        ((image, None), "needs `text`; received None"),
        ((image, torch.rand(2, TOKENS, TEXT_DIM)), "1 images, 2 texts"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            model(*args)
    with_embedder = tiny(text_embedder=TokenEmbedding(VOCAB, TEXT_DIM)).eval()
    with pytest.raises(ValueError, match=r"integer token ids of shape \(B, num_tokens=4\), received a floating-point"):
        with_embedder(image, text)
    with pytest.raises(ValueError, match="expected 4 text tokens .*received 5"):
        with_embedder(image, torch.randint(1, VOCAB, (1, 5)))
    with pytest.raises(ValueError, match="text_embedder must return .*text_dim=16"):
        tiny(text_embedder=TokenEmbedding(VOCAB, 8))(image, torch.randint(1, VOCAB, (1, TOKENS)))


@pytest.mark.parametrize("use_text, paper_millions", [(True, 29.7), (False, 28.0)])
def test_full_size_parameter_count_matches_paper(use_text, paper_millions):
    """Paper Table 1/3: LViT-T 29.7 M, LViT-TW 28.0 M (thop, executed modules); reference used-in-forward: 29.91 M."""
    model = LViT(use_text=use_text).eval()  # 224 px, 10 x 768 text, base 64, 1 layer
    text = torch.rand(1, 10, 768) if use_text else None
    counts = count_forward_parameters(model, torch.rand(1, 3, 224, 224), text)
    assert counts["forward"] == counts["registered"], counts["unused_modules"]
    assert abs(counts["forward"] / 1e6 - paper_millions) / paper_millions < 0.03
    if use_text:
        assert counts["forward"] == 29_908_033  # the reference's used-in-forward count (method_notes section 1.4)
