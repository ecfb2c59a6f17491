# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests for common.networks.text_embedding (TokenEmbedding, HFTextEncoder) and common.transforms.HFTextEmbedd."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil

import pytest
import torch
from monai.data import MetaTensor

from common.networks.text_embedding import HFTextEncoder, TokenEmbedding
from common.transforms import HFTextEmbedd

LOGGER = "common.transforms.text_embedding"
HIDDEN = 32
# a tiny WordPiece vocabulary: ids are the list positions
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "bilateral", "unilateral", "pulmonary", "infection", ",", "one", "two", "infected", "area", "areas",
    "lower", "upper", "left", "right", "lung", ".", "##s",
]  # fmt: skip
TEXT = "Unilateral pulmonary infection, one infected area, lower left lung."  # 12 word pieces
OTHER = "Bilateral pulmonary infection, two infected areas."  # 8 word pieces
SHORT = "Bilateral lung infections."  # bilateral lung infection ##s . -> 5 word pieces
UNKNOWN = "Zebra lung."  # [UNK] lung . -> 3 word pieces


pytestmark = pytest.mark.usefixtures("no_network")  # conftest.py: every socket connection fails


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny random BERT and its tokenizer, saved to one folder as a user saves a real model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("hf")
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file))  # transformers >= 5: `vocab=`, not `vocab_file=`
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    folder = root / "tiny_bert"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder, model, tokenizer


@pytest.fixture()
def encoder_calls(monkeypatch):
    """Count HFTextEncoder forward calls (one per batch of new texts)."""
    calls = []
    original = HFTextEncoder.forward

    def counting(self, ids, attention_mask=None):
        calls.append(ids.shape[0])
        return original(self, ids, attention_mask)

    monkeypatch.setattr(HFTextEncoder, "forward", counting)
    return calls


def reference_rows(bert, text: str) -> torch.Tensor:
    """Last hidden states of the word pieces of ``text``, from a direct BertModel call ([CLS] first, [SEP] last)."""
    _, model, tokenizer = bert
    enc = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
    return hidden[1:-1]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_token_embedding_script_grad_and_range():
    torch.manual_seed(0)
    embed = TokenEmbedding(vocab_size=30, dim=8, pad_id=0)
    ids = torch.tensor([[5, 7, 0, 0], [29, 1, 5, 0]])
    out = embed(ids)
    assert out.shape == (2, 4, 8) and out.dtype == torch.float32
    assert torch.equal(out[0, 0], embed.embedding.weight[5]) and torch.equal(out[1, 0], embed.embedding.weight[29])
    assert torch.count_nonzero(out[0, 2:]) == 0  # the padding row is zero
    scripted = torch.jit.script(embed)
    torch.testing.assert_close(scripted(ids), out, rtol=0, atol=0)
    (out * torch.arange(8.0)).sum().backward()
    grad = embed.embedding.weight.grad
    used = {1, 5, 7, 29}
    for row in range(30):
        assert (torch.count_nonzero(grad[row]) > 0) == (row in used), row  # pad row 0 and unused rows get none
    torch.testing.assert_close(grad[5], 2 * torch.arange(8.0))  # id 5 appears twice
    for bad in (30, -1):
        with pytest.raises(ValueError, match=rf"token id {bad} is outside \[0, 30\)"):
            embed(torch.tensor([[1, bad]]))
        with pytest.raises(torch.jit.Error, match=rf"token id {bad} is outside"):
            scripted(torch.tensor([[1, bad]]))
    with pytest.raises(ValueError, match="integer token ids"):
        embed(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        embed(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="pad_id"):
        TokenEmbedding(vocab_size=30, pad_id=30)
    with pytest.raises(ValueError, match="vocab_size"):
        TokenEmbedding(vocab_size=0)
    no_pad = TokenEmbedding(vocab_size=4, pad_id=None)
    assert no_pad.dim == 768 and no_pad.embedding.padding_idx is None
    assert torch.count_nonzero(no_pad(torch.tensor([[0]]))) > 0


def test_hf_text_encoder_frozen_and_equal_to_bert(bert):
    folder, model, tokenizer = bert
    encoder = HFTextEncoder(folder)
    params = list(encoder.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in model.parameters())
    encoder.train()
    assert not encoder.training and not encoder.model.training  # dropout stays off
    assert (encoder.hidden_size, encoder.num_layers, encoder.layer) == (HIDDEN, 2, 2)
    enc = tokenizer([TEXT, SHORT], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        out = encoder(enc["input_ids"], enc["attention_mask"])
        assert out.shape == (2, enc["input_ids"].shape[1], HIDDEN)
        torch.testing.assert_close(out, expected.last_hidden_state, rtol=0, atol=1e-6)
        for layer, index in ((1, 1), (-3, 0)):
            mid = HFTextEncoder(folder, layer=layer)
            torch.testing.assert_close(mid(enc["input_ids"], enc["attention_mask"]), expected.hidden_states[index])
    with pytest.raises(ValueError, match=r"tiny_bert.*got 3"):
        HFTextEncoder(folder, layer=3)
    trainable = HFTextEncoder(folder, freeze=False)
    trainable.train()
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())
    trainable(enc["input_ids"], enc["attention_mask"]).sum().backward()
    assert trainable.model.embeddings.word_embeddings.weight.grad is not None


def test_bad_model_folders_name_the_path(bert, tmp_path):
    folder = bert[0]
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        HFTextEncoder(missing)
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        HFTextEmbedd(model_path=missing)
    tokenizer_only = tmp_path / "tokenizer_only"
    tokenizer_only.mkdir()
    shutil.copy(folder / "tokenizer.json", tokenizer_only)
    with pytest.raises(FileNotFoundError, match=r"tokenizer_only.*config\.json"):
        HFTextEncoder(tokenizer_only)
    no_weights = tmp_path / "config_without_weights"
    no_weights.mkdir()
    shutil.copy(folder / "config.json", no_weights)
    with pytest.raises(ValueError, match="config_without_weights"):
        HFTextEncoder(no_weights)
    broken = tmp_path / "broken_config"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken_config"):
        HFTextEncoder(broken)
    with pytest.raises(ValueError, match="broken_config"):
        HFTextEmbedd(model_path=broken)
    no_tokenizer = tmp_path / "model_without_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(folder / name, no_tokenizer)
    assert HFTextEncoder(no_tokenizer).hidden_size == HIDDEN
    with pytest.raises(FileNotFoundError, match="model_without_tokenizer"):
        HFTextEmbedd(model_path=no_tokenizer)


def test_embedd_drops_special_tokens_and_zero_pads(bert, encoder_calls):
    transform = HFTextEmbedd(model_path=bert[0], num_tokens=8)
    out = transform({"image": "/data/img/a.png", "text": SHORT})
    emb = out["text_emb"]
    assert emb.shape == (8, HIDDEN) and emb.dtype == torch.float32 and out["text"] == SHORT
    full = reference_rows(bert, SHORT)
    assert full.shape[0] == 5
    torch.testing.assert_close(emb[:5], full, rtol=0, atol=1e-5)  # the first row is the first word piece, not [CLS]
    assert torch.count_nonzero(emb[5:]) == 0  # padding rows are zero
    # an unknown word is a real token: its [UNK] row is kept (get_special_tokens_mask would drop it)
    emb = transform({"image": "/data/img/b.png", "text": UNKNOWN})["text_emb"]
    torch.testing.assert_close(emb[:3], reference_rows(bert, UNKNOWN), rtol=0, atol=1e-5)
    assert torch.count_nonzero(emb[3:]) == 0
    # the encoder runs once per distinct text; the output is a copy (changing it does not change the cache)
    again = transform({"image": "/data/img/c.png", "text": SHORT})["text_emb"]
    assert encoder_calls == [1, 1]
    again.zero_()
    assert torch.count_nonzero(transform({"image": "/data/img/d.png", "text": SHORT})["text_emb"]) > 0
    # batches of new texts give the same vectors as single texts
    batch = transform.embed_texts([TEXT, SHORT, TEXT, OTHER])
    assert encoder_calls == [1, 1, 2]  # TEXT and OTHER only, in one batch
    torch.testing.assert_close(batch[1], transform({"text": SHORT})["text_emb"], rtol=0, atol=0)
    torch.testing.assert_close(batch[0, :8], reference_rows(bert, TEXT)[:8], rtol=0, atol=1e-5)
    torch.testing.assert_close(batch[3], reference_rows(bert, OTHER), rtol=0, atol=1e-5)
    assert torch.equal(batch[0], batch[2]) and transform.num_cached == 4


def test_embedd_truncation_once_per_text(bert, caplog):
    transform = HFTextEmbedd(model_path=bert[0], num_tokens=6)
    items = [
        {"image": "/data/img/a.png", "text": TEXT},
        {"image": "/data/img/b.png", "text": TEXT},
        {"image": "/data/img/c.png", "text": OTHER},
        {"image": "/data/img/d.png", "text": SHORT},
    ]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        outputs = [transform(item) for item in items]
    records = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(records) == 2
    assert "/data/img/a.png" in records[0] and "12 word pieces" in records[0] and "6 vectors" in records[0]
    assert "/data/img/c.png" in records[1] and "8 word pieces" in records[1]
    assert transform.num_truncated == 3 and transform.truncated_texts == {TEXT, OTHER}
    # the first 6 pieces are kept, encoded with the WHOLE sentence as context
    torch.testing.assert_close(outputs[0]["text_emb"], reference_rows(bert, TEXT)[:6], rtol=0, atol=1e-5)
    assert torch.count_nonzero(outputs[3]["text_emb"][5]) == 0
    with pytest.raises(ValueError, match=r"/data/img/a\.png.*12 word pieces.*6 vectors"):
        HFTextEmbedd(model_path=bert[0], num_tokens=6, on_truncate="error")(items[0])


def test_embedd_bad_text_names_item(bert):
    transform = HFTextEmbedd(model_path=bert[0], num_tokens=4)
    for text in ("", "  \t\n"):
        with pytest.raises(ValueError, match=r"/data/img/empty\.png.*empty"):
            transform({"image": "/data/img/empty.png", "text": text})
    image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/img/loaded.png"})
    with pytest.raises(ValueError, match=r"/data/img/loaded\.png"):
        transform({"image": image, "text": " "})
    with pytest.raises(ValueError, match=r"/data/img/control\.png.*no word pieces"):
        transform({"image": "/data/img/control.png", "text": "\x00\x01"})  # BERT's text cleaning removes these
    with pytest.raises(TypeError, match=r"/data/img/nan\.png.*float"):
        transform({"image": "/data/img/nan.png", "text": float("nan")})
    with pytest.raises(ValueError, match="empty"):
        transform.embed_texts([SHORT, ""])
    bad_settings = ({"num_tokens": 0}, {"on_truncate": "silent"}, {"layer": 5}, {"output_key": ("a", "a")})
    for kwargs in (*bad_settings, {"cache_dir": bert[0]}):
        with pytest.raises(ValueError):
            HFTextEmbedd(keys=("text", "text2") if "output_key" in kwargs else "text", model_path=bert[0], **kwargs)


def test_disk_cache_written_and_reused_without_encoder(bert, tmp_path, monkeypatch, encoder_calls, caplog):
    cache = tmp_path / "cache"
    first = HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache, save_every=2)
    a = first({"image": "a.png", "text": TEXT})["text_emb"]
    assert list(cache.iterdir()) == []  # 1 new text < save_every
    b = first({"image": "b.png", "text": SHORT})["text_emb"]
    files = sorted(cache.iterdir())
    assert [f.name for f in files] == [os.path.basename(first.cache_file)]
    assert files[0].name.startswith("hf_text_emb_tiny_bert_layer2_tokens6_")
    content = torch.load(files[0], weights_only=True)
    digest = {t: hashlib.sha1(t.encode("utf-8")).hexdigest() for t in (TEXT, SHORT, UNKNOWN)}
    assert set(content["embeddings"]) == {digest[TEXT], digest[SHORT]}
    assert content["num_pieces"] == {digest[TEXT]: 12, digest[SHORT]: 5}
    assert (content["format"], content["layer"], content["num_tokens"], content["hidden_size"]) == (1, 2, 6, HIDDEN)
    assert torch.equal(content["embeddings"][digest[TEXT]], a) and torch.equal(content["embeddings"][digest[SHORT]], b)
    first({"image": "c.png", "text": UNKNOWN})
    assert len(torch.load(files[0], weights_only=True)["embeddings"]) == 2  # not yet flushed
    first.save_cache()
    assert len(torch.load(files[0], weights_only=True)["embeddings"]) == 3
    assert len(encoder_calls) == 3

    # a new instance (a new run) reads the file: the encoder is neither loaded nor called
    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder must not be loaded when every text is cached")

    monkeypatch.setattr(HFTextEncoder, "__init__", no_encoder)
    second = HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache, layer=2)  # layer 2 == -1 here
    assert second.cache_file == first.cache_file and second.num_cached == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = second({"image": "x.png", "text": TEXT})
    assert torch.equal(out["text_emb"], a)
    records = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and "x.png" in records[0] and "12 word pieces" in records[0]  # still reported
    assert torch.equal(second.embed_texts([SHORT, TEXT])[0], b)
    assert len(encoder_calls) == 3
    monkeypatch.undo()  # (also restores the counting forward: the other settings below get their own file)
    other = HFTextEmbedd(model_path=bert[0], num_tokens=4, cache_dir=cache)
    assert other.cache_file != first.cache_file and other.num_cached == 0


def test_disk_cache_never_half_written(bert, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    transform = HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache, save_every=0)
    transform.embed_texts([SHORT])
    name = os.path.basename(transform.cache_file)
    before = (cache / name).read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])  # a crash in the middle of writing
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", failing_save)
        with pytest.raises(OSError, match="disk full"):
            transform.embed_texts([TEXT])
    assert sorted(os.listdir(cache)) == [name]  # no temporary file left behind
    assert (cache / name).read_bytes() == before
    assert HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache).num_cached == 1
    transform.save_cache()  # the next write succeeds and holds both texts
    assert HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache).num_cached == 2

    # a damaged or foreign file is an error naming it, never silently replaced
    content = torch.load(cache / name, weights_only=True)
    content["num_tokens"] = 7
    torch.save(content, cache / name)
    with pytest.raises(ValueError, match=rf"{name}.*written for"):
        HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache)
    (cache / name).write_bytes(before[:100])
    with pytest.raises(ValueError, match=rf"cannot read .*{name}"):
        HFTextEmbedd(model_path=bert[0], num_tokens=6, cache_dir=cache)


def test_embedd_pickles_without_model(bert, encoder_calls):
    transform = HFTextEmbedd(model_path=bert[0], num_tokens=6)
    expected = transform({"image": "a.png", "text": SHORT})["text_emb"]
    assert transform._encoder is not None
    blob = pickle.dumps(transform)
    model_bytes = sum(p.numel() * p.element_size() for p in transform._encoder.parameters())
    assert len(blob) < model_bytes / 4  # the model and tokenizer stay behind
    worker = pickle.loads(blob)
    assert worker._encoder is None and worker._tokenizer is None
    assert torch.equal(worker({"image": "a.png", "text": SHORT})["text_emb"], expected)  # from the cache
    assert encoder_calls == [1]
    out = worker({"image": "b.png", "text": TEXT})["text_emb"]  # loads the model lazily
    torch.testing.assert_close(out, reference_rows(bert, TEXT)[:6], rtol=0, atol=1e-5)
    assert encoder_calls == [1, 1]
