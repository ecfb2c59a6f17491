# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Tests of C2Seg's networks: common/networks/c2seg_blocks.py, common/networks/c2seg.py and the token-level CLIP
text encoder (common/networks/clip_encoders.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from common.networks.c2seg import (
    C2Seg,
    C2SegPretrainer,
    FrozenTextEncoder,
    HFTokenTextEncoder,
    c2seg_encoder_state,
    c2seg_parameter_groups,
    load_c2seg_encoder,
)
from common.networks.c2seg_blocks import (
    BCAM,
    C2SegEncoder,
    DualAttention,
    KGate,
    complementary_attention,
)
from common.networks.clip_encoders import CLIPTextEncoder, CLIPTokenTextEncoder, load_clip
from common.networks.kan import KANLinear

TINY_CLIP = Path(__file__).parent / "fixtures" / "tiny_clip_rn.json"
CHANNELS = (4, 8, 8, 12, 16)


class CountingTextEncoder(nn.Module):
    """A small token table standing in for CLIP: tokens = table(ids), sentence = mean; counts computed rows."""

    def __init__(self, vocab: int = 40, dim: int = 6) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, dim)
        self.token_dim = dim
        self.output_dim = dim
        self.rows = 0

    def forward(self, ids):
        self.rows += ids.shape[0]
        tokens = self.table(ids)
        return tokens, tokens.mean(dim=1)


def tiny_clip_text(context_length: int = 8) -> CLIPTokenTextEncoder:
    clip = load_clip(TINY_CLIP, allow_random_init=True, context_length=context_length)
    return CLIPTokenTextEncoder(clip, context_length=context_length)


def clip_ids(batch: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 400, (batch, length), generator=gen)
    ids[:, 0] = 49406
    ids[:, 5] = 49407  # end-of-text token, padding after it
    ids[:, 6:] = 0
    return ids


# ---------------------------------------------------------------- BCAM (eq. 4-6), DualA, K-Gate (eq. 7)


def _hand_paths(vk, vv, lk, lv, keep=None):
    """eq. 4-6 with explicit loops over pixels p, tokens n and channels c (one batch element)."""
    p_count, c_count = vk.shape
    n_count = lk.shape[0]
    tokens = [n for n in range(n_count) if keep is None or keep[n]]
    a = [
        [sum(vk[p, c] * lk[n, c] for c in range(c_count)) / math.sqrt(c_count) for n in range(n_count)]
        for p in range(p_count)
    ]
    f_v = torch.zeros(p_count, c_count, dtype=torch.float64)
    for p in range(p_count):
        z = sum(math.exp(a[p][n]) for n in tokens)
        for n in tokens:
            f_v[p] += math.exp(a[p][n]) / z * lv[n]
    weight = [0.0] * p_count
    for n in tokens:  # Softmax_P of row n of A^T, averaged over the (kept) tokens
        z = sum(math.exp(a[p][n]) for p in range(p_count))
        for p in range(p_count):
            weight[p] += math.exp(a[p][n]) / z / len(tokens)
    f_l = torch.stack([weight[p] * vv[p] for p in range(p_count)])
    return f_v, f_l, weight


def test_complementary_attention_normalisations_by_hand():
    gen = torch.Generator().manual_seed(0)
    b, p, n, c = 2, 5, 3, 4
    vk, vv = torch.randn(b, p, c, generator=gen, dtype=torch.float64), torch.randn(
        b, p, c, generator=gen, dtype=torch.float64
    )
    lk, lv = torch.randn(b, n, c, generator=gen, dtype=torch.float64), torch.randn(
        b, n, c, generator=gen, dtype=torch.float64
    )
    f_v, f_l = complementary_attention(vk, vv, lk, lv)
    for i in range(b):
        hv, hl, weight = _hand_paths(vk[i], vv[i], lk[i], lv[i])
        assert torch.allclose(f_v[i], hv, atol=1e-12)  # eq. 5: softmax over the N tokens
        assert torch.allclose(f_l[i], hl, atol=1e-12)  # eq. 6: softmax over the P pixels, mean over tokens
        assert sum(weight) == pytest.approx(1.0)
    _, scaled = complementary_attention(vk, vv, lk, lv, scale_language_path=True)
    assert torch.allclose(scaled, f_l * p)
    keep = torch.tensor([[True, False, True], [True, True, False]])
    m_v, m_l = complementary_attention(vk, vv, lk, lv, token_mask=keep)
    for i in range(b):
        hv, hl, _ = _hand_paths(vk[i], vv[i], lk[i], lv[i], keep=keep[i].tolist())
        assert torch.allclose(m_v[i], hv, atol=1e-12) and torch.allclose(m_l[i], hl, atol=1e-12)


def test_bcam_uses_its_kan_or_linear_projections():
    torch.manual_seed(0)
    visual, tokens = torch.randn(2, 6, 3, 4), torch.randn(2, 5, 6)
    for projection, kind in (("kan", KANLinear), ("linear", nn.Linear)):
        bcam = BCAM(6, projection=projection)
        assert all(isinstance(m, kind) for m in (bcam.v_key, bcam.v_value, bcam.l_key, bcam.l_value))
        f_v, f_l = bcam(visual, tokens)
        v = visual.flatten(2).transpose(1, 2)
        e_v, e_l = complementary_attention(bcam.v_key(v), bcam.v_value(v), bcam.l_key(tokens), bcam.l_value(tokens))
        assert torch.allclose(f_v, e_v.transpose(1, 2).reshape(2, 6, 3, 4), atol=1e-6)
        assert torch.allclose(f_l, e_l.transpose(1, 2).reshape(2, 6, 3, 4), atol=1e-6)


def test_duala_language_path_returns_through_vision_weights():
    torch.manual_seed(1)
    duala = DualAttention(4)
    visual, tokens = torch.randn(1, 4, 2, 3), torch.randn(1, 3, 4)
    f_v, f_l = duala(visual, tokens)
    v = visual.flatten(2).transpose(1, 2)[0]
    a = duala.v_key(v) @ duala.l_key(tokens[0]).t() / 2.0
    updated = torch.softmax(a, dim=0).t() @ duala.v_value(v)  # text tokens updated by the pixels (N, C)
    assert torch.allclose(f_v[0].flatten(1).t(), torch.softmax(a, 1) @ duala.l_value(tokens[0]), atol=1e-6)
    assert torch.allclose(f_l[0].flatten(1).t(), torch.softmax(a, 1) @ updated, atol=1e-6)


def test_kgate_eq7_and_variants():
    torch.manual_seed(2)
    f_v, f_l = torch.randn(2, 5, 3, 3), torch.randn(2, 5, 3, 3)
    gate = KGate(5, "kgate")
    assert isinstance(gate.vision_gate.layer1, KANLinear) and isinstance(gate.language_gate.layer2, KANLinear)

    def head(h, x):
        t = x.flatten(2).transpose(1, 2)
        g = torch.tanh(h.layer2(torch.relu(h.layer1(t))))
        return (t * g).transpose(1, 2).reshape(x.shape)

    expected = gate.mix(torch.cat([head(gate.vision_gate, f_v), head(gate.language_gate, f_l)], dim=1))
    assert torch.allclose(gate(f_v, f_l), expected, atol=1e-6)
    assert isinstance(KGate(5, "mlp").vision_gate.layer1, nn.Linear)
    plain = KGate(5, "none")
    assert torch.allclose(plain(f_v, f_l), plain.mix(torch.cat([f_v, f_l], 1)))
    with pytest.raises(ValueError, match="gate must be one of"):
        KGate(5, "attention")


# ---------------------------------------------------------------- encoder and full network


@pytest.mark.parametrize("kind", ["hybrid", "cnn", "kan"])
def test_encoder_features(kind):
    enc = C2SegEncoder(3, CHANNELS, kind)
    feats = enc(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 >> (i + 1), 64 >> (i + 1)) for i, c in enumerate(CHANNELS)]
    kinds = [type(s).__name__ for s in enc.stages]
    assert kinds.count("TokenizedKANStage") == {"hybrid": 2, "cnn": 0, "kan": 5}[kind]
    with pytest.raises(ValueError, match="multiples of 32"):
        enc(torch.rand(1, 3, 48, 64))


KEY_CASES = [  # every encoder, fusion and gate key at least once (the Table 3 and 4a rows)
    ("hybrid", "bcam", "kgate"),
    ("cnn", "bcam", "kgate"),
    ("kan", "bcam", "kgate"),
    ("hybrid", "bcam_linear", "kgate"),
    ("hybrid", "duala", "none"),
    ("hybrid", "bcam", "none"),
    ("hybrid", "bcam", "mlp"),
    ("hybrid", "none", "kgate"),
]


@pytest.mark.parametrize("encoder,fusion,gate", KEY_CASES)
def test_every_key_gives_logits(encoder, fusion, gate):
    torch.manual_seed(0)
    net = C2Seg(CountingTextEncoder(), channels=CHANNELS, encoder=encoder, fusion=fusion, gate=gate)
    ids = torch.randint(0, 40, (2, 7))
    out = net(torch.rand(2, 3, 32, 32), ids)
    assert out.shape == (2, 1, 32, 32)
    assert (net.text_encoder is None) == (fusion == "none")


def test_text_changes_output_and_unimodal_ignores_it():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32)
    ids_a, ids_b = torch.randint(0, 40, (2, 7)), torch.randint(0, 40, (2, 7))
    for fusion in ("bcam", "duala"):
        net = C2Seg(CountingTextEncoder(), channels=CHANNELS, fusion=fusion).eval()
        assert (net(image, ids_a) - net(image, ids_b)).abs().max() > 1e-6
    uni = C2Seg(None, channels=CHANNELS, fusion="none", gate="kgate").eval()
    assert torch.equal(uni(image, ids_a), uni(image, ids_b))
    assert torch.equal(uni(image, ids_a), uni(image))
    assert not any("text" in k for k in uni.state_dict())
    with pytest.raises(ValueError, match="needs a text_encoder"):
        C2Seg(None, channels=CHANNELS)
    # text_ids=None is the documented empty note (verify_net_in_out from the CLI): padding ids only, with a warning
    with torch.no_grad():
        with pytest.warns(UserWarning, match="no text given; using the empty note"):
            default = net(image)
        assert torch.equal(default, net(image, torch.zeros(2, 1, dtype=torch.long)))
    clip_net = C2Seg(tiny_clip_text(), channels=CHANNELS).eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="empty note"):
        assert torch.equal(clip_net(image), clip_net(image, torch.zeros(2, 8, dtype=torch.long)))
    with pytest.raises(ValueError, match="fusion_scales"):
        C2Seg(CountingTextEncoder(), channels=CHANNELS, fusion_scales=(2, 5))


def test_frozen_text_encoder_gets_no_gradient():
    torch.manual_seed(0)
    net = C2Seg(CountingTextEncoder(), channels=CHANNELS).train()
    assert not net.text_encoder.encoder.training
    text_params = list(net.text_encoder.parameters())
    assert text_params and not any(p.requires_grad for p in text_params)
    net(torch.rand(2, 3, 32, 32), torch.randint(0, 40, (2, 7))).sum().backward()
    assert all(p.grad is None for p in text_params)
    assert all(p.grad is not None for p in net.fusions.parameters())
    groups = c2seg_parameter_groups(net, lr=1e-3, encoder_lr=1e-4)
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.encoder.parameters()}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    assert not {id(p) for p in text_params} & trainable
    assert groups[0]["lr"] == 1e-4 and groups[1]["lr"] == 1e-3


def test_cache_computes_each_distinct_text_once():
    inner = CountingTextEncoder()
    cached = FrozenTextEncoder(inner, cache_size=10)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6], [1, 2, 3], [1, 2, 3]])
    tokens, sentence = cached(ids)
    assert inner.rows == 2 and cached.encoder_calls == 2  # two distinct rows in a batch of four
    ref_tokens, ref_sentence = inner(ids)
    inner.rows = 2
    assert torch.allclose(tokens, ref_tokens) and torch.allclose(sentence, ref_sentence)
    assert not tokens.requires_grad
    cached(ids[[1, 0]])  # both rows already cached: the encoder is not called again
    cached(torch.tensor([[7, 8, 9], [1, 2, 3]]))
    assert inner.rows == 3
    net = C2Seg(inner, channels=CHANNELS, text_cache_size=10)
    image = torch.rand(4, 3, 32, 32)
    for _ in range(3):  # three "epochs" over the same four notes
        net(image, ids)
    assert net.text_encoder.encoder_calls == 2
    net.load_state_dict(net.state_dict())  # new weights: the cache is emptied
    net(image, ids)
    assert net.text_encoder.encoder_calls == 4


def test_cache_is_bounded_and_can_be_disabled():
    inner = CountingTextEncoder()
    cached = FrozenTextEncoder(inner, cache_size=2)
    for row in ([1, 1], [2, 2], [3, 3]):
        cached(torch.tensor([row]))
    assert len(cached._cache) == 2
    cached(torch.tensor([[1, 1]]))  # evicted (least recently used): computed again
    assert inner.rows == 4
    off = FrozenTextEncoder(CountingTextEncoder(), cache_size=0)
    off(torch.tensor([[1, 1], [1, 1]]))
    off(torch.tensor([[1, 1]]))
    assert off.encoder_calls == 3


def test_clip_token_encoder_and_torchscript_export():
    torch.manual_seed(0)
    text = tiny_clip_text()
    ids = clip_ids(2)
    tokens, sentence = text(ids)
    assert tokens.shape == (2, 8, text.output_dim) and sentence.shape == (2, text.output_dim)
    assert torch.allclose(CLIPTextEncoder.forward(text, ids), sentence, atol=1e-6)  # the parent's feature
    assert torch.allclose(tokens[:, 5], sentence)
    net = C2Seg(text, channels=CHANNELS, token_mask="eot").eval()
    image = torch.rand(2, 3, 32, 32)
    eager = net(image, ids)
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(image, ids), eager, atol=1e-5)
    assert net.text_encoder.encoder_calls == 2  # eager only: the scripted module bypasses the cache
    # with the end-of-text mask, the padding positions do not matter
    other = ids.clone()
    other[:, 6:] = 7
    assert torch.allclose(net(image, other), eager, atol=1e-6)


def test_hf_token_encoder_pooling():
    class FakeHF(nn.Module):
        hidden_size = 3

        def forward(self, ids, attention_mask):
            return torch.stack([ids.float(), attention_mask.float(), ids.float() * 2], dim=-1)

    ids = torch.tensor([[101, 5, 7, 0, 0]])
    tokens, sentence = HFTokenTextEncoder(FakeHF(), pooling="mean")(ids)
    assert tokens.shape == (1, 5, 3)
    assert sentence[0].tolist() == pytest.approx([113 / 3, 1.0, 226 / 3])  # mean over the non-padding tokens
    assert HFTokenTextEncoder(FakeHF(), pooling="cls")(ids)[1].tolist() == [[101.0, 1.0, 202.0]]


# ---------------------------------------------------------------- stage I network and weight transfer


def test_pretrainer_outputs_and_encoder_transfer(tmp_path):
    torch.manual_seed(0)
    text = CountingTextEncoder()
    pre = C2SegPretrainer(C2SegEncoder(3, CHANNELS), text)
    image_emb, text_emb, source = pre(torch.rand(3, 3, 32, 32), torch.randint(0, 40, (3, 7)))
    assert image_emb.shape == text_emb.shape == source.shape == (3, 6)
    assert torch.allclose(image_emb.norm(dim=1), torch.ones(3)) and torch.allclose(text_emb.norm(dim=1), torch.ones(3))
    assert torch.allclose(text_emb, torch.nn.functional.normalize(source, dim=1))
    with pytest.raises(ValueError, match="must equal"):
        C2SegPretrainer(C2SegEncoder(3, CHANNELS), text, embed_dim=5)
    assert C2SegPretrainer(C2SegEncoder(3, CHANNELS), text, embed_dim=5, text_projection=True)(
        torch.rand(2, 3, 32, 32), torch.randint(0, 40, (2, 7))
    )[1].shape == (2, 5)

    ckpt = tmp_path / "model.pt"
    torch.save(pre.state_dict(), ckpt)
    net = C2Seg(CountingTextEncoder(), channels=CHANNELS)
    assert load_c2seg_encoder(net, ckpt) is net
    for key, value in pre.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value)
    wrapped = {"network": {"module." + k: v for k, v in pre.state_dict().items()}}
    assert c2seg_encoder_state(wrapped).keys() == pre.encoder.state_dict().keys()
    with pytest.raises(FileNotFoundError, match="Stage I checkpoint not found"):
        load_c2seg_encoder(net, tmp_path / "missing.pt")
    torch.save({"decoder.x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'encoder.\\*' weights"):
        load_c2seg_encoder(net, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_c2seg_encoder(C2Seg(CountingTextEncoder(), channels=(4, 8, 8, 12, 20)), ckpt)


def test_bert_text_encoder_from_a_local_folder(tmp_path):
    """Table 3 rows g, h: a BERT-family encoder (here a tiny random BERT saved to a folder) behind C2Seg."""
    from transformers import BertConfig, BertModel

    from common.networks.text_embedding import HFTextEncoder

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    BertModel(config).save_pretrained(str(tmp_path / "bert"))
    text = HFTokenTextEncoder(HFTextEncoder(tmp_path / "bert"))
    net = C2Seg(text, channels=CHANNELS, token_mask="nonzero", fusion_scales=(4,)).train()
    ids = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]])
    image = torch.rand(2, 3, 32, 32)
    out = net(image, ids)
    out.sum().backward()
    assert out.shape == (2, 1, 32, 32)
    assert not net.text_encoder.encoder.training and all(p.grad is None for p in net.text_encoder.parameters())
    traced = torch.jit.trace(net.eval(), (image, ids), check_trace=False)  # HF models are traced, not scripted
    assert torch.allclose(traced(image, ids), net(image, ids), atol=1e-5)
