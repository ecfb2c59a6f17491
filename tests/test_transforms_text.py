# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests for common.transforms.text: tokenizer wrappers and TokenizeTextd."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

from common.transforms import (
    HFTokenizer,
    OpenCLIPTokenizer,
    TokenizeTextd,
    WordVocabTokenizer,
    build_text_tokenizer,
    load_text_tokenizer,
    longest_token_count,
    split_words,
)

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


# ---------------------------------------------------------------------------------------------------------------------
# word-level vocabulary drawn from the training notes (the LViT offline default)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
QATA_WORDS = ["<pad>", "<unk>", ",", ".", "and", "area", "areas", "bilateral", "infected", "infection", "left", "lower"]
QATA_WORDS += ["lung", "middle", "no", "one", "pulmonary", "right", "two", "unilateral"]


def _csv_notes(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:  # the MAdapter CSVs start with a byte-order mark
        return [row["Description"] for row in csv.DictReader(f)]


def test_split_words_lowercases_and_splits_punctuation():
    assert split_words("One small,irregular-shaped polyp.Two") == [
        "one", "small", ",", "irregular", "-", "shaped", "polyp", ".", "two",
    ]  # fmt: skip
    assert split_words("  Lower   LEFT lung ") == ["lower", "left", "lung"]


def test_word_vocabulary_is_deterministic_and_ids_exact():
    tokenizer = WordVocabTokenizer.from_texts(QATA_LIKE)
    assert tokenizer.tokens == QATA_WORDS  # <pad>, <unk>, then the words sorted
    assert (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.unk_id) == (len(QATA_WORDS), 0, 1)
    # the vocabulary depends on the set of notes only: order and duplicates do not change it
    again = WordVocabTokenizer.from_texts([QATA_LIKE[2], QATA_LIKE[1], QATA_LIKE[0], QATA_LIKE[1], " "])
    assert again.tokens == tokenizer.tokens and again.context_length == tokenizer.context_length
    # the token count is the longest note, in word tokens: no training note is truncated
    assert tokenizer.context_length == len(split_words(QATA_LIKE[1])) == 17
    ids, mask, lengths = tokenizer(QATA_LIKE)
    index = {w: i for i, w in enumerate(QATA_WORDS)}
    words = ["unilateral", "pulmonary", "infection", ",", "one", "infected", "area", ",", "lower", "left", "lung", "."]
    assert ids[0].tolist() == [index[w] for w in words] + [0] * 5
    assert mask[0].tolist() == [1] * 12 + [0] * 5
    assert lengths.tolist() == [12, 17, 3]
    assert ids.dtype == torch.long and ids.shape == (3, 17)
    assert tokenizer.unknown_words == {}
    # min_count drops words of fewer notes ("no" is in one note only)
    assert "no" not in WordVocabTokenizer.from_texts(QATA_LIKE, min_count=2).tokens


def test_unknown_word_becomes_unk_and_is_reported_once(caplog):
    tokenizer = WordVocabTokenizer.from_texts(QATA_LIKE[:2])
    text = "Unilateral pulmonary infection, one infected area, upper left lung."
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ids = tokenizer([text, text, "Upper right lung."]).ids
    assert int(ids[0, 8]) == tokenizer.unk_id and int(ids[2, 0]) == tokenizer.unk_id
    assert int((ids == tokenizer.unk_id).sum()) == 3
    assert tokenizer.unknown_words == {"upper": 3}
    records = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and "'upper'" in records[0] and "<unk>" in records[0], records
    quiet = WordVocabTokenizer(tokenizer.tokens, 4, warn_unknown=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        quiet(["upper"])
    assert not caplog.records and quiet.unknown_words == {"upper": 1}


def test_word_tokenizer_bad_arguments():
    with pytest.raises(ValueError, match="<pad>"):
        WordVocabTokenizer(["lung", "<unk>"], 4)
    with pytest.raises(ValueError, match="distinct.*lung"):
        WordVocabTokenizer(["<pad>", "<unk>", "lung", "lung"], 4)
    with pytest.raises(ValueError, match="context_length"):
        WordVocabTokenizer(["<pad>", "<unk>"], 0)
    with pytest.raises(ValueError, match="no non-empty note"):
        WordVocabTokenizer.from_texts(["", "  "])
    with pytest.raises(ValueError, match="string"):
        WordVocabTokenizer.from_texts(["left lung", 3])
    with pytest.raises(ValueError, match="text_vocabulary"):
        build_text_tokenizer("letters", QATA_LIKE)
    with pytest.raises(ValueError, match="num_tokens"):
        build_text_tokenizer("words", QATA_LIKE, num_tokens=-1)


def test_saved_tokenizer_round_trip(tmp_path):
    path = tmp_path / "models" / "text_tokenizer.json"
    built = build_text_tokenizer("words", QATA_LIKE, save_path=path)
    loaded = load_text_tokenizer(path)
    assert isinstance(loaded, WordVocabTokenizer)
    assert loaded.tokens == built.tokens and loaded.context_length == built.context_length == 17
    probe = [*QATA_LIKE, "Upper left lung."]  # "upper" is unknown to both
    assert torch.equal(loaded(probe).ids, built(probe).ids)
    assert json.loads(path.read_text())["kind"] == "words"
    assert [p.name for p in path.parent.iterdir()] == ["text_tokenizer.json"]  # no temporary file left
    # the paper's reproduction setting: 10 tokens, kept as given, saved and loaded with the same count
    paper = build_text_tokenizer("words", QATA_LIKE, num_tokens=10, save_path=path)
    assert paper.context_length == load_text_tokenizer(path).context_length == 10
    # open_clip BPE: the count from the data (start and end tokens included) travels too
    bpe = build_text_tokenizer("clip_bpe", QATA_LIKE, save_path=path)
    assert bpe.context_length == int(OpenCLIPTokenizer(context_length=77)(QATA_LIKE).lengths.max())
    reloaded = load_text_tokenizer(path)
    assert isinstance(reloaded, OpenCLIPTokenizer) and reloaded.context_length == bpe.context_length
    assert reloaded.vocab_size == 49408


def test_load_tokenizer_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json.*model\.pt"):
        load_text_tokenizer(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        load_text_tokenizer(broken)
    for bad, what in (
        ({"format": 2, "kind": "words", "context_length": 4}, "format"),
        ({"format": 1, "kind": "bpe", "context_length": 4}, "kind"),
        ({"format": 1, "kind": "words", "context_length": 0}, "context_length"),
        ({"format": 1, "kind": "words", "context_length": 4, "tokens": ["a", "b"]}, "<pad>"),
    ):
        broken.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=rf"broken\.json.*{what}"):
            load_text_tokenizer(broken)


def test_paper_ten_tokens_truncation_is_reported(caplog):
    """The paper's 10 tokens cut a QaTa note (here after "lower left": a bilateral note loses its right lung); the
    report names the item and both counts."""
    text = QATA_LIKE[0]
    tokenizer = build_text_tokenizer("words", QATA_LIKE, num_tokens=10)
    transform = TokenizeTextd(tokenizer=tokenizer)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        out = transform({"image": "/data/img/a.png", "text": text})
    kept = [tokenizer.tokens[i] for i in out["text_ids"].tolist()]
    assert kept == split_words(text)[:10] and kept[-2:] == ["lower", "left"]
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 1 and "/data/img/a.png" in messages[0] and "needs 12 tokens" in messages[0]
    assert "keeps 10" in messages[0] and transform.num_truncated == 1


@pytest.mark.parametrize(
    "fixture", ["qata_text_sample/Test_text_first_rows.csv", "polyp_text_madapter/Kvasir_train.csv"]
)
def test_default_token_count_keeps_every_shipped_note_whole(fixture):
    """The default (num_tokens 0: the longest training note) truncates no note of the formats we read."""
    path = FIXTURES / fixture
    if not path.is_file():
        pytest.skip(f"fixture not found: {path}")
    notes = _csv_notes(path)
    for kind in ("words", "clip_bpe"):
        tokenizer = build_text_tokenizer(kind, notes)
        transform = TokenizeTextd(tokenizer=tokenizer, on_truncate="error")
        for note in notes:
            transform({"image": "x.png", "text": note})
        assert tokenizer.context_length == longest_token_count(tokenizer, notes)
    words = build_text_tokenizer("words", notes)
    assert words.vocab_size < 40 and words.unknown_words == {}
