# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the LViT network (common/networks/lvit.py, common/networks/lvit_blocks.py).

Tiny configurations (32-64 px images, 8 base channels, 4 text tokens of 16 features) except the parameter-count test,
which builds the paper's LViT-T/TW once (224 px, 10 x 768 text, base 64) and runs one forward pass at batch 1.

The multi-head attention, the Transformer layer and the whole forward pass are compared with the independent functional
re-implementation of the reference code in ``tests/lvit_reference_flow.py`` (weights renamed to the reference's
parameter names; no module of the model is called there).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from common.networks import LVIT_SIZES, LViT, TokenEmbedding, build_lvit
from common.networks.lvit_blocks import (
    CNNViTInteraction,
    MultiHeadSelfAttention,
    PixelLevelAttention,
    TransformerLayer,
    TransformerMLP,
)
from common.utils import count_forward_parameters

from lvit_reference_flow import (  # tests/lvit_reference_flow.py (pytest puts tests/ on sys.path)
    ReferenceWeights,
    reference_attention,
    reference_lvit_forward,
    reference_transformer_block,
    to_reference_state_dict,
)

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


def randomise_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Move every parameter and BatchNorm statistic away from its initial value (zero position embeddings, unit
    LayerNorm/BatchNorm scales, zero running means), so that a wrong use of any of them changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model


@pytest.mark.parametrize(
    "image_size, num_layers, use_text", [(SIZE, 1, True), (64, 2, True), (SIZE, 1, False)], ids=["32px", "64px-2l", "W"]
)
def test_forward_equals_independent_reference_flow(image_size, num_layers, use_text):
    """method_notes section 1.1, recomputed by tests/lvit_reference_flow.py from the weights alone (renamed to the
    reference code's names, no module forward called): text at level 1 only, concatenating DownViT, UpViT with
    CTBN2, Reconstruct added to the skips x1..x4, UpblockAttention with PLAM, outc."""
    # float64: the two computations round differently (float32 gives up to ~1e-5 apart at 64 px), not the formula
    model = randomise_(tiny(image_size=image_size, num_layers=num_layers, use_text=use_text)).double().eval()
    image = torch.randn(2, 3, image_size, image_size, dtype=torch.float64)
    text = torch.randn(2, TOKENS, TEXT_DIM, dtype=torch.float64) if use_text else None
    weights = to_reference_state_dict(model.state_dict())
    with torch.no_grad():
        got = model(image, text)
        expected = reference_lvit_forward(weights, image, text, num_heads=HEADS)
    assert got.shape == expected.shape == (2, 1, image_size, image_size)
    assert expected.std() > 1e-2  # a non-degenerate output
    assert (got - expected).abs().max().item() < 1e-10  # float64: measured about 3e-14 (float32: about 4e-6)


def test_train_mode_forward_equals_reference_flow_with_batch_statistics():
    """In training mode (dropout 0) every BatchNorm, including the CTBN ones over tokens, uses batch statistics."""
    model = randomise_(tiny(dropout=0.0)).double().train()
    image = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
    text = torch.randn(3, TOKENS, TEXT_DIM, dtype=torch.float64)
    weights = to_reference_state_dict(model.state_dict())
    got = model(image, text)
    expected = reference_lvit_forward(weights, image, text, num_heads=HEADS, training=True)
    assert (got - expected).abs().max().item() < 1e-10


def test_state_dict_maps_one_to_one_onto_reference_names():
    """Every LViT weight has exactly one reference counterpart (nets/LViT.py, nets/Vit.py, nets/pixlevel.py names)."""
    model = tiny()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = to_reference_state_dict(model.state_dict())
    assert len(weights) == len(state)
    for name in (
        "inc.norm.running_var",
        "down4.nConvs.1.conv.weight",
        "text_module4.weight",
        "downVit.CTBN3.norm.weight",
        "downVit.embeddings.position_embeddings",
        "downVit3.Encoder_blocks.0.attn.qkv.weight",
        "downVit1.CTBN.conv.weight",
        "upVit2.CTBN2.norm.bias",
        "reconstruct4.conv.weight",
        "up1.pixModule.bottleneck.2.bias",
        "outc.weight",
    ):
        assert name in weights, name
    assert weights["text_module4.weight"].shape == (8 * BASE, TEXT_DIM, 3)  # text_dim -> 8c first
    assert weights["downVit.CTBN3.conv.weight"].shape == (4, TOKENS, 3)  # L tokens -> N = 4 patches
    assert not any(k.startswith(("downVit.CTBN.", "upVit3.CTBN2.")) for k in weights)  # never used there
    with pytest.raises(KeyError, match="text_embedder.embedding.weight"):
        to_reference_state_dict(tiny(text_embedder=TokenEmbedding(VOCAB, TEXT_DIM)).state_dict())


def test_mhsa_matches_hand_formula_per_head():
    """Eq. 5's MHSA: softmax(Q_h K_h^T / sqrt(d_head)) V_h per head (d_head = 4 here, not dim = 12), heads
    concatenated in order, then the projection; q, k, v are rows 0:C, C:2C, 2C:3C of the qkv weight."""
    attn = MultiHeadSelfAttention(12, num_heads=3)
    x = 2.0 * torch.randn(2, 5, 12)
    with torch.no_grad():
        got = attn(x)
        expected = reference_attention(x, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, num_heads=3)
        one_head = reference_attention(x, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias, 1)
        sdpa = F.scaled_dot_product_attention(*attn.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4))
    assert (got - expected).abs().max().item() < 1e-5
    assert (one_head - expected).abs().max().item() > 1e-2  # the head split matters for these inputs
    torch.testing.assert_close(expected, attn.proj(sdpa.transpose(1, 2).reshape(2, 5, 12)))  # the formula is sdpa's
    # uniform attention when the queries are zero: every output token is proj(mean of the values)
    with torch.no_grad():
        attn.qkv.weight[:12].zero_()
        attn.qkv.bias[:12].zero_()
        mean_v = (x @ attn.qkv.weight[24:].t() + attn.qkv.bias[24:]).mean(dim=1, keepdim=True)
        torch.testing.assert_close(attn(x), attn.proj(mean_v).expand(2, 5, 12))
    with pytest.raises(ValueError, match=r"dim \(12\) must be divisible by num_heads \(5\)"):
        MultiHeadSelfAttention(12, num_heads=5)


def test_transformer_layer_is_pre_ln_with_two_residuals():
    """Eq. 5-6: x' = MHSA(LN(x)) + x, y = MLP(LN(x')) + x' with the reference MLP (GELU after fc1 and fc2)."""
    layer = TransformerLayer(12, num_heads=3, mlp_ratio=4, dropout=0.3).eval()  # eval: no dropout
    randomise_(layer, seed=3)
    x = 2.0 * torch.randn(2, 5, 12) + 1.0
    weights = ReferenceWeights({"block." + k: v for k, v in layer.state_dict().items()})
    with torch.no_grad():
        got = layer(x)
        expected = reference_transformer_block(weights, "block", x, num_heads=3)
    assert not weights.unused()
    assert (got - expected).abs().max().item() < 1e-5
    with torch.no_grad():  # the post-LN order would give a visibly different output for these weights
        post = F.layer_norm(x + layer.attn(x), (12,), layer.norm1.weight, layer.norm1.bias)
        post = F.layer_norm(post + layer.mlp(post), (12,), layer.norm2.weight, layer.norm2.bias)
    assert (post - expected).abs().max().item() > 1e-2


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


def test_missing_text_is_the_empty_note_with_a_warning():
    """``text=None`` is the documented default (what ``verify_net_in_out`` from the CLI runs): the empty note, i.e.
    padding id 0 at every position with a token table, zero vectors without one; eager and TorchScript agree."""
    image = torch.rand(2, 3, SIZE, SIZE)
    for embedder, empty in (
        (None, torch.zeros(2, TOKENS, TEXT_DIM)),
        (TokenEmbedding(VOCAB, TEXT_DIM, pad_id=0), torch.zeros(2, TOKENS, dtype=torch.long)),
    ):
        model = tiny(text_embedder=embedder).eval()
        with torch.no_grad():
            with pytest.warns(UserWarning, match="no text given; using the empty note"):
                default = model(image)
            assert torch.equal(default, model(image, empty))
            assert not torch.equal(default, model(image, empty + 1))  # the text still reaches the network
            assert torch.equal(script(model)(image), default)


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
