# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests for common.transforms.text: tokenizer wrappers and TokenizeTextd."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from monai.data import MetaTensor

from common.transforms import HFTokenizer, OpenCLIPTokenizer, TokenizeTextd

QATA_LIKE = [
    "Unilateral pulmonary infection, one infected area, lower left lung.",
    "Bilateral pulmonary infection, two infected areas, middle lower left lung and lower right lung.",
    "No infection.",
]
LONG_TEXT = (
    "Bilateral pulmonary infection, two infected areas, upper middle lower left lung and upper middle lower right lung."
)
OTHER_LONG_TEXT = "Unilateral pulmonary infection, three infected areas, upper middle lower right lung, see report."
LOGGER = "common.transforms.text"

# a tiny WordPiece vocabulary: ids are the list positions
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "bilateral", "unilateral", "pulmonary", "infection", ",", "one", "two", "infected", "area", "areas",
    "lower", "upper", "left", "right", "lung", ".", "##s",
]  # fmt: skip
V = {w: i for i, w in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def clip_tokenizer_8() -> OpenCLIPTokenizer:
    return OpenCLIPTokenizer(context_length=8)


@pytest.fixture()
def bert_dir(tmp_path, no_network):
    """Build and save a tiny BERT WordPiece tokenizer, as a user would save a real one."""
    from transformers import BertTokenizer

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    # transformers >= 5 takes `vocab=` (a file path or dict); the old `vocab_file=` keyword is silently ignored there
    tokenizer = BertTokenizer(vocab=str(vocab_file))
    assert len(tokenizer) == len(VOCAB)
    saved = tmp_path / "bert_tokenizer"
    tokenizer.save_pretrained(str(saved))
    return saved


def test_openclip_matches_open_clip_tokenize(no_network):
    import open_clip

    for length in (77, 24):
        tokenizer = OpenCLIPTokenizer(context_length=length)
        ids, mask, lengths = tokenizer(QATA_LIKE)
        expected = open_clip.tokenize(QATA_LIKE, context_length=length)
        assert ids.dtype == torch.long and ids.shape == (len(QATA_LIKE), length)
        assert torch.equal(ids, expected)
        assert torch.equal(lengths, (expected != 0).sum(dim=1))
        assert torch.equal(mask, (torch.arange(length)[None] < lengths[:, None]).long())
        assert torch.equal(ids.argmax(dim=-1), lengths - 1)  # EOT is the largest id
    assert (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.sot_id, tokenizer.eot_id) == (49408, 0, 49406, 49407)
    # one string is accepted too
    assert torch.equal(tokenizer(QATA_LIKE[0]).ids, ids[:1])


def test_openclip_truncation_keeps_eot(clip_tokenizer_8):
    import open_clip

    full = OpenCLIPTokenizer(context_length=77)([LONG_TEXT])
    needed = int(full.lengths[0])
    ids, mask, lengths = clip_tokenizer_8([LONG_TEXT])
    assert int(lengths[0]) == needed > 8
    assert int(ids[0, -1]) == clip_tokenizer_8.eot_id
    assert int(ids[0].argmax()) == 7
    assert torch.equal(ids[0, :7], full.ids[0, :7])  # the first 7 tokens (SOT + 6 BPE) are kept
    assert torch.equal(ids, open_clip.tokenize([LONG_TEXT], context_length=8))
    assert bool(mask.all())
    with pytest.raises(ValueError, match="context_length"):
        OpenCLIPTokenizer(context_length=1)


def test_tokenize_textd_warns_once_per_text(clip_tokenizer_8, caplog):
    transform = TokenizeTextd(keys="text", tokenizer=clip_tokenizer_8)
    items = [
        {"image": "/data/img/a.png", "text": LONG_TEXT},
        {"image": "/data/img/b.png", "text": LONG_TEXT},
        {"image": "/data/img/c.png", "text": OTHER_LONG_TEXT},
        {"image": "/data/img/d.png", "text": "No infection."},
    ]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        outputs = [transform(item) for item in items]
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 2
    needed = int(OpenCLIPTokenizer(context_length=77)([LONG_TEXT]).lengths[0])
    assert "/data/img/a.png" in records[0].getMessage()
    assert f"needs {needed} tokens" in records[0].getMessage() and "keeps 8" in records[0].getMessage()
    assert "/data/img/c.png" in records[1].getMessage()
    assert transform.num_truncated == 3
    assert transform.truncated_texts == {LONG_TEXT, OTHER_LONG_TEXT}
    out = outputs[0]
    assert out["text"] == LONG_TEXT and out["image"] == "/data/img/a.png"
    assert out["text_ids"].shape == (8,) and out["text_ids"].dtype == torch.long
    assert int(out["text_ids"][-1]) == clip_tokenizer_8.eot_id
    short = outputs[3]
    assert torch.equal(short["text_mask"], (short["text_ids"] != 0).long())
    assert int(short["text_mask"].sum()) == 5  # SOT no infection . EOT


def test_tokenize_textd_error_and_ignore(clip_tokenizer_8, caplog):
    item = {"image": "/data/img/a.png", "text": LONG_TEXT}
    with pytest.raises(ValueError, match=r"/data/img/a\.png.*needs \d+ tokens.*keeps 8"):
        TokenizeTextd(tokenizer=clip_tokenizer_8, on_truncate="error")(item)
    ignore = TokenizeTextd(tokenizer=clip_tokenizer_8, on_truncate="ignore", ids_key="ids", mask_key=None)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = ignore(item)
    assert not [r for r in caplog.records if r.name == LOGGER]
    assert ignore.num_truncated == 1 and "text_mask" not in out and out["ids"].shape == (8,)
    with pytest.raises(ValueError, match="on_truncate|truncate|silent"):
        TokenizeTextd(tokenizer=clip_tokenizer_8, on_truncate="silent")


def test_tokenize_textd_bad_text_names_item(clip_tokenizer_8):
    transform = TokenizeTextd(tokenizer=clip_tokenizer_8)
    for text in ("", "   \t\n"):
        with pytest.raises(ValueError, match=r"/data/img/empty\.png.*empty"):
            transform({"image": "/data/img/empty.png", "text": text})
    # after LoadImaged the image is a MetaTensor: its file name comes from the meta data
    image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/data/img/loaded.png"})
    with pytest.raises(ValueError, match=r"/data/img/loaded\.png"):
        transform({"image": image, "text": " "})
    with pytest.raises(TypeError, match=r"/data/img/nan\.png.*float"):
        transform({"image": "/data/img/nan.png", "text": float("nan")})


def test_hf_tokenizer_ids_padding_truncation(bert_dir):
    tokenizer = HFTokenizer(bert_dir, max_length=16)
    assert (tokenizer.context_length, tokenizer.vocab_size, tokenizer.pad_id) == (16, len(VOCAB), 0)
    text = "Unilateral pulmonary infection, one infected area, lower left lung."
    words = ["unilateral", "pulmonary", "infection", ",", "one", "infected", "area", ",", "lower", "left", "lung", "."]
    expected = [V["[CLS]"], *(V[w] for w in words), V["[SEP]"]]
    ids, mask, lengths = tokenizer([text, "Bilateral lung infections."])
    assert ids.shape == (2, 16) and ids.dtype == torch.long
    assert ids[0].tolist() == expected + [0, 0]
    assert mask[0].tolist() == [1] * 14 + [0, 0]
    # lower-casing and word pieces: "infections" -> "infection", "##s"
    short = [V["[CLS]"], V["bilateral"], V["lung"], V["infection"], V["##s"], V["."], V["[SEP]"]]
    assert ids[1].tolist() == short + [0] * 9
    assert lengths.tolist() == [14, 7]

    truncating = HFTokenizer(bert_dir, max_length=6)
    ids, mask, lengths = truncating([text])
    assert ids[0].tolist() == expected[:5] + [V["[SEP]"]]  # the tokenizer keeps [SEP] last
    assert bool(mask.all()) and int(lengths[0]) == 14
    with pytest.raises(ValueError, match=r"case_1\.png.*needs 14 tokens.*keeps 6"):
        TokenizeTextd(tokenizer=truncating, on_truncate="error")({"image": "case_1.png", "text": text})
    out = TokenizeTextd(tokenizer=tokenizer)({"image": "case_1.png", "text": text})
    assert out["text_ids"].tolist() == expected + [0, 0]


def test_hf_tokenizer_bad_directory(tmp_path, no_network):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(FileNotFoundError, match="no_such_tokenizer"):
        HFTokenizer(missing)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        HFTokenizer(empty)
    # a bare vocab.txt (no tokenizer_config.json) cannot be loaded by AutoTokenizer: a clear error naming the path
    bare = tmp_path / "bare_vocab"
    bare.mkdir()
    (bare / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    with pytest.raises(ValueError, match="bare_vocab"):
        HFTokenizer(bare)
    # with a config naming the class, the same folder loads
    (bare / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    assert HFTokenizer(bare, max_length=4)(["left lung"]).ids[0].tolist() == [2, V["left"], V["lung"], 3]
