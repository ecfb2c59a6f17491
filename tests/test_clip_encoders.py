# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of common.networks.clip_encoders on a tiny random open_clip CLIP (ModifiedResNet + small text Transformer)."""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from common.networks.clip_encoders import CLIPImageEncoder, CLIPTextEncoder, load_clip
from common.transforms import OpenCLIPTokenizer

WIDTH = 8  # ModifiedResNet width: v3 has 8 * WIDTH channels, v4 16 * WIDTH, layer4 32 * WIDTH
EMBED = 32
TINY = {
    "embed_dim": EMBED,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": WIDTH, "image_size": 64},  # 4 heads (256 / head_width 64)
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TEXTS = ["Bilateral pulmonary infection, two infected areas.", "Unilateral pulmonary infection, one infected area."]


pytestmark = pytest.mark.usefixtures("no_network")  # conftest.py: every socket connection fails


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model config JSON and a saved state dict of a random model built from it."""
    root = tmp_path_factory.mktemp("clip")
    config = root / "tiny_clip.json"
    config.write_text(json.dumps(TINY))
    torch.manual_seed(0)
    model = load_clip(str(config), allow_random_init=True)
    weights = root / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return {"root": root, "config": str(config), "weights": str(weights), "state": model.state_dict()}


@pytest.fixture(scope="module")
def clip_model(files):
    return load_clip(files["config"], weights=files["weights"]).eval()


def _assert_same_parameters(model, state):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


# ---------------------------------------------------------------------------------------------------- load_clip


def test_load_roundtrip_state_dict(files):
    torch.manual_seed(123)  # a different random init: equality below proves the file was loaded
    fresh = load_clip(files["config"], allow_random_init=True)
    assert not torch.equal(fresh.visual.conv1.weight, files["state"]["visual.conv1.weight"])
    _assert_same_parameters(load_clip(files["config"], weights=files["weights"]), files["state"])


def test_load_wrapped_checkpoint_and_open_clip_config_layout(files):
    root = files["root"]
    wrapped = root / "wrapped.pt"  # open_clip training checkpoints: {"epoch", "state_dict" (DDP "module." keys)}
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in files["state"].items()}}, wrapped)
    layout = root / "open_clip_config.json"  # the layout of open_clip_config.json files
    layout.write_text(json.dumps({"model_cfg": TINY, "preprocess_cfg": {}}))
    _assert_same_parameters(load_clip(str(layout), weights=str(wrapped)), files["state"])


def test_load_openai_torchscript_archive(files, caplog):
    """An OpenAI-style TorchScript file (fp16 weights) loads, cast to float32, with QuickGELU."""
    from open_clip.model import convert_weights_to_lp
    from open_clip.transformer import QuickGELU

    model = load_clip(files["config"], weights=files["weights"])
    convert_weights_to_lp(model)  # OpenAI archives hold fp16 convolution/linear/attention weights
    half_state = {k: v.clone() for k, v in model.state_dict().items()}
    archive = files["root"] / "RN_tiny_openai.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notices
        torch.jit.save(torch.jit.script(model), str(archive))
    with caplog.at_level(logging.INFO, logger="common.networks.clip_encoders"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = load_clip(files["config"], weights=str(archive))
    assert loaded.visual.conv1.weight.dtype == torch.float32
    _assert_same_parameters(loaded, half_state)
    assert isinstance(loaded.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert "QuickGELU" in caplog.text
    # a plain state dict keeps the config's activation unless quick_gelu is given
    assert not isinstance(
        load_clip(files["config"], weights=files["weights"]).transformer.resblocks[0].mlp.gelu, QuickGELU
    )
    forced = load_clip(files["config"], weights=files["weights"], quick_gelu=True)
    assert isinstance(forced.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_missing_weights_file_is_named(files):
    missing = str(files["root"] / "no_such_RN101.pt")
    with pytest.raises(FileNotFoundError, match="no_such_RN101.pt"):
        load_clip(files["config"], weights=missing)


def test_mismatching_weights_name_file_and_keys(files):
    root = files["root"]
    state = dict(files["state"])
    del state["visual.layer1.0.conv1.weight"]
    state["visual.extra.weight"] = torch.zeros(1)
    bad = root / "bad_keys.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match="bad_keys.pt") as info:
        load_clip(files["config"], weights=str(bad))
    assert "visual.layer1.0.conv1.weight" in str(info.value) and "visual.extra.weight" in str(info.value)

    wider = dict(TINY, vision_cfg=dict(TINY["vision_cfg"], width=16))
    wide_config = root / "wide.json"
    wide_config.write_text(json.dumps(wider))
    with pytest.raises(ValueError, match="shape mismatch") as info:
        load_clip(str(wide_config), weights=files["weights"])
    assert "tiny_clip.pt" in str(info.value) and "visual.conv1.weight" in str(info.value)

    not_a_state_dict = root / "tensor.pt"
    torch.save([torch.zeros(2)], not_a_state_dict)
    with pytest.raises(ValueError, match="tensor.pt"):
        load_clip(files["config"], weights=str(not_a_state_dict))


def test_no_weights_needs_allow_random_init(files, caplog):
    with pytest.raises(ValueError) as info:
        load_clip(files["config"])
    assert "clip_weights" in str(info.value) and "clip_pretrained" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="common.networks.clip_encoders"):
        load_clip(files["config"], allow_random_init=True)
    assert "NOT pretrained" in caplog.text


def test_build_clip_matches_load_clip_without_reading_weights(files, caplog):
    """The weight-less build of evaluation/inference: load_clip's architecture, quick_gelu as asked, no warning."""
    from open_clip.transformer import QuickGELU

    from common.networks import build_clip

    loaded = load_clip(files["config"], weights=files["weights"], context_length=20, quick_gelu=True)
    with caplog.at_level(logging.INFO, logger="common.networks.clip_encoders"):
        built = build_clip(files["config"], context_length=20, quick_gelu=True)
    assert "NOT pretrained" not in caplog.text and "built without weights" in caplog.text
    shapes = {k: v.shape for k, v in built.state_dict().items()}
    assert shapes == {k: v.shape for k, v in loaded.state_dict().items()}
    assert built.context_length == 20 and built.attn_mask.shape == (20, 20)
    assert any(isinstance(m, QuickGELU) for m in built.modules())
    assert not any(isinstance(m, QuickGELU) for m in build_clip(files["config"], quick_gelu=False).modules())
    built.load_state_dict(loaded.state_dict())  # a checkpoint of the loaded model fits exactly
    with pytest.raises(ValueError, match=r"context_length must be in \[1, 77\]"):
        build_clip(files["config"], context_length=78)


def test_model_name_resolution(files, tmp_path):
    from common.networks.clip_encoders import _model_config

    cfg, source = _model_config("RN101")  # a built-in name: open_clip's config, nothing built or fetched
    assert cfg["vision_cfg"]["layers"] == [3, 4, 23, 3] and cfg["vision_cfg"]["width"] == 64 and "RN101" in source
    with pytest.raises(ValueError, match="Unknown CLIP model 'RN999'"):
        load_clip("RN999", allow_random_init=True)
    with pytest.raises(ValueError, match="schema"):
        load_clip("hf-hub:timm/resnet101_clip.openai", allow_random_init=True)
    with pytest.raises(FileNotFoundError, match="missing_config.json"):
        load_clip(str(tmp_path / "missing_config.json"), allow_random_init=True)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}}))
    with pytest.raises(ValueError, match="text_cfg"):
        load_clip(str(partial), allow_random_init=True)
    with pytest.raises(ValueError, match=r"context_length must be in \[1, 77\]"):
        load_clip(files["config"], weights=files["weights"], context_length=78)


def test_load_with_shorter_context(files):
    """context_length=20 loads the 77-row checkpoint, then keeps the first 20 rows and a 20 x 20 causal mask."""
    full = load_clip(files["config"], weights=files["weights"]).eval()
    short = load_clip(files["config"], weights=files["weights"], context_length=20).eval()
    assert short.positional_embedding.shape == (20, 32) and short.context_length == 20
    assert torch.equal(short.positional_embedding, files["state"]["positional_embedding"][:20])
    assert torch.equal(short.attn_mask, torch.full((20, 20), float("-inf")).triu(1))
    ids = OpenCLIPTokenizer(context_length=20)(TEXTS).ids
    with torch.no_grad():
        expected = full.encode_text(F.pad(ids, (0, 57)))
        assert torch.allclose(short.encode_text(ids), expected, atol=1e-5)
        assert torch.allclose(CLIPTextEncoder(short, context_length=20).eval()(ids), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- image encoder


def _reference_v5(encoder: CLIPImageEncoder, x: torch.Tensor) -> torch.Tensor:
    """The modified attention pooling written out head by head (softmax(q k^T / sqrt(d)) v per head)."""
    pool = encoder.visual.attnpool
    batch, channels, height, width = x.shape
    grid = encoder.grid_size
    position = pool.positional_embedding[1:].reshape(grid, grid, channels)  # row 0 is CLIP's class token
    if (height, width) != (grid, grid):
        position = position.permute(2, 0, 1)[None]
        position = F.interpolate(position, size=(height, width), mode="bicubic", align_corners=False)[0]
        position = position.permute(1, 2, 0)
    tokens = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # row-major positions
    tokens = tokens + position.reshape(height * width, channels)
    heads = pool.num_heads
    dim = channels // heads

    def split(t):
        return t.reshape(batch, height * width, heads, dim).transpose(1, 2)  # (B, heads, N, dim)

    q, k, v = split(pool.q_proj(tokens)), split(pool.k_proj(tokens)), split(pool.v_proj(tokens))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim), dim=-1)
    attended = (weights @ v).transpose(1, 2).reshape(batch, height * width, channels)
    out = pool.c_proj(attended).transpose(1, 2).reshape(batch, -1, height, width)
    return torch.relu(out + encoder.connect(x))


def test_image_encoder_shapes_and_channels(clip_model):
    encoder = CLIPImageEncoder(clip_model.visual).eval()
    assert encoder.out_channels == (8 * WIDTH, 16 * WIDTH, EMBED)
    assert encoder.num_heads == clip_model.visual.attnpool.num_heads == 4 and encoder.grid_size == 2
    assert encoder.visual is clip_model.visual  # CLIP's own (loaded) modules, shared
    assert not any(k.startswith("connect") for k in clip_model.state_dict())  # connect is new, not in CLIP
    with torch.no_grad():
        v3, v4, v5 = encoder(torch.rand(2, 3, 64, 64))
        assert v3.shape == (2, 8 * WIDTH, 8, 8) and v4.shape == (2, 16 * WIDTH, 4, 4) and v5.shape == (2, EMBED, 2, 2)
        v3, v4, v5 = encoder(torch.rand(1, 3, 96, 128))  # a non-square size, other than CLIP's
        assert v3.shape == (1, 8 * WIDTH, 12, 16) and v4.shape == (1, 16 * WIDTH, 6, 8) and v5.shape == (1, EMBED, 3, 4)
    with pytest.raises(ValueError, match="multiples of 32"):
        encoder(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder(torch.rand(1, 1, 64, 64))
    with pytest.raises(TypeError, match="ModifiedResNet"):
        CLIPImageEncoder(clip_model.transformer)


@pytest.mark.parametrize("size", [(64, 64), (128, 96)])
def test_attention_without_pooling_matches_hand_computation(clip_model, size):
    torch.manual_seed(1)
    encoder = CLIPImageEncoder(clip_model.visual).eval()
    with torch.no_grad():
        encoder.connect[1].running_mean.normal_()  # non-trivial BatchNorm statistics for the residual branch
        encoder.connect[1].running_var.uniform_(0.5, 2.0)
        image = torch.randn(2, 3, *size)
        _, v4, v5 = encoder(image)
        x = clip_model.visual.layer4(v4)
        expected = _reference_v5(encoder, x)
        assert torch.allclose(v5, expected, atol=1e-5, rtol=1e-4)
        # the check is sensitive to the wiring: q and k exchanged gives another result
        swapped = copy.deepcopy(encoder)
        pool = swapped.visual.attnpool
        pool.q_proj, pool.k_proj = pool.k_proj, pool.q_proj
        assert not torch.allclose(swapped.attention_map(x), expected, atol=1e-4)


def test_image_encoder_scripts(clip_model):
    encoder = CLIPImageEncoder(clip_model.visual).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(encoder)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for eager, script in zip(encoder(image), scripted(image)):
            assert torch.allclose(eager, script, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- text encoder


def test_text_feature_matches_open_clip_at_the_end_token(clip_model):
    """With a causal mask, the 20-token feature equals open_clip's 77-token encode_text of the zero-padded ids."""
    tokenizer = OpenCLIPTokenizer(context_length=20)
    ids = tokenizer(TEXTS).ids
    encoder = CLIPTextEncoder(clip_model, context_length=20).eval()
    with torch.no_grad():
        feature = encoder(ids)
        expected = clip_model.encode_text(F.pad(ids, (0, 77 - 20)))
        full = CLIPTextEncoder(clip_model, context_length=77).eval()(F.pad(ids, (0, 57)))
    assert feature.shape == (2, EMBED) and encoder.output_dim == EMBED
    assert torch.allclose(feature, expected, atol=1e-5)
    assert torch.allclose(full, expected, atol=1e-5)
    assert not torch.allclose(feature[0], feature[1], atol=1e-3)


def test_text_feature_is_the_row_at_argmax(clip_model):
    encoder = CLIPTextEncoder(clip_model, context_length=20).eval()
    ids = torch.zeros(2, 20, dtype=torch.long)
    ids[:, 0] = 49406
    ids[0, 1:6] = torch.tensor([320, 1125, 539, 1049, 269])
    ids[0, 6] = 49407  # end token at position 6
    ids[1, 1:12] = torch.arange(400, 411)
    ids[1, 12] = 49407  # end token at position 12
    with torch.no_grad():
        x = encoder.token_embedding(ids) + encoder.positional_embedding
        hidden = encoder.ln_final(encoder.transformer(x, attn_mask=encoder.attn_mask))
        rows = torch.stack([hidden[0, 6], hidden[1, 12]]) @ encoder.text_projection
        feature = encoder(ids)
        assert torch.allclose(feature, rows, atol=1e-6)
        assert not torch.allclose(feature, hidden[:, -1] @ encoder.text_projection, atol=1e-3)

        after = ids.clone()
        after[0, 9] = 1234  # after the end token (padding): no effect through the causal mask
        after[1, 19] = 999
        assert torch.allclose(encoder(after), feature, atol=1e-6)
        before = ids.clone()
        before[0, 3] = 1234  # before the end token
        changed = encoder(before)
        assert not torch.allclose(changed[0], feature[0], atol=1e-4)
        assert torch.allclose(changed[1], feature[1], atol=1e-6)


def test_text_encoder_checks_and_sharing(clip_model):
    encoder = CLIPTextEncoder(clip_model, context_length=20)
    assert encoder.transformer is clip_model.transformer and encoder.text_projection is clip_model.text_projection
    assert torch.equal(encoder.positional_embedding, clip_model.positional_embedding[:20])
    assert encoder.positional_embedding.shape == (20, 32)
    assert torch.equal(encoder.attn_mask, torch.full((20, 20), float("-inf")).triu(1))
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        encoder(torch.zeros(2, 77, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 20\)"):
        encoder(torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="context_length"):
        CLIPTextEncoder(clip_model, context_length=78)
    with pytest.raises(TypeError, match="token_embedding"):
        CLIPTextEncoder(clip_model.visual)


def test_text_encoder_scripts(clip_model):
    encoder = CLIPTextEncoder(clip_model, context_length=20).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(encoder)
    ids = OpenCLIPTokenizer(context_length=20)(TEXTS).ids
    with torch.no_grad():
        assert torch.allclose(scripted(ids), encoder(ids), atol=1e-6)
    with pytest.raises(torch.jit.Error, match="context_length"):
        scripted(torch.zeros(1, 5, dtype=torch.long))
