# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Text tokenisation for the text-guided bundles: tokenizer wrappers with one small interface and the dictionary
transform :py:class:`TokenizeTextd` that turns a datalist entry's ``text`` into fixed-length token ids and a mask.

Token budgets matter: real QaTa-COV19 sentences are about 15-25 CLIP BPE tokens including the start/end tokens
(/work/shared/reference/method_notes.md, section 2.3; on the first 111 rows of the public QaTa test text in
/work/shared/fixtures/qata_text_sample they are 15-22 tokens, 4 of them above 20). A 20-token limit such as
CausalCLIPSeg's therefore truncates some sentences, and CRIS's ``word_len=17`` truncates most; the laterality and
location words at the end of the sentence are the ones lost. Truncation is therefore never silent here.

For a trainable embedding table without pretrained weights (LViT's offline default), :py:class:`WordVocabTokenizer`
draws a word-level vocabulary of a few dozen tokens from the training notes. :func:`build_text_tokenizer` builds any
of the tokenizers with its token count taken from the longest training note, and writes what evaluation, inference
and export need to rebuild it (vocabulary and count) to a JSON file beside the model; :func:`load_text_tokenizer`
reads that file back.
"""

from __future__ import annotations

__all__ = [
    "TruncationReportMixin",
    "TokenizerOutput",
    "TextTokenizer",
    "OpenCLIPTokenizer",
    "HFTokenizer",
    "TokenizeTextd",
    "WordVocabTokenizer",
    "split_words",
    "longest_token_count",
    "build_text_tokenizer",
    "load_text_tokenizer",
    "save_tokenizer_config",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "TOKENIZER_KINDS",
]

import json
import logging
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple, ensure_tuple_rep, look_up_option

from common.transforms.checks import get_source_name

logger = logging.getLogger(__name__)

# files of which at least one is present in a saved Hugging Face tokenizer directory
_HF_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class TokenizerOutput(NamedTuple):
    """
    What a :py:class:`TextTokenizer` returns for ``N`` texts.

    Attributes:
        ids: token ids, int64 tensor of shape (N, context_length), padded with the tokenizer's ``pad_id``.
        attention_mask: int64 tensor of shape (N, context_length): 1 for real tokens (special tokens included),
            0 for padding.
        lengths: int64 tensor of shape (N,): the number of tokens each text needs *before* truncation, special
            tokens included. A text was truncated exactly when ``lengths[i] > context_length``.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor


class TextTokenizer(ABC):
    """
    The interface every tokenizer wrapper follows, so that bundles can swap tokenizers in their configs.

    Attributes:
        context_length: the fixed number of tokens per text (L).
        vocab_size: the number of token ids (an embedding table needs this many rows).
        pad_id: the id used for padding.
    """

    context_length: int
    vocab_size: int
    pad_id: int

    @abstractmethod
    def __call__(self, texts: str | Sequence[str]) -> TokenizerOutput:
        """
        Tokenize ``texts`` into a :py:class:`TokenizerOutput` of ``len(texts)`` rows (one row for a single string).
        """

    def _pack(self, rows: Sequence[Sequence[int]], lengths: Sequence[int]) -> TokenizerOutput:
        """
        Pad (with ``pad_id``) token-id rows that already fit ``context_length`` into a :py:class:`TokenizerOutput`.

        Args:
            rows: one list of token ids per text, each at most ``context_length`` long (truncated by the caller,
                which knows what a truncated row must end with).
            lengths: the number of tokens each text needs before truncation.
        """
        ids = torch.full((len(rows), self.context_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), self.context_length), dtype=torch.long)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = torch.tensor(list(tokens), dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return TokenizerOutput(ids, mask, torch.tensor(list(lengths), dtype=torch.long))


class OpenCLIPTokenizer(TextTokenizer):
    """
    CLIP's byte-pair-encoding tokenizer, through ``open_clip.tokenizer.SimpleTokenizer``.

    Each text becomes ``<start_of_text> + BPE tokens + <end_of_text>``, zero-padded to ``context_length``, which is
    the output of ``open_clip.tokenize`` (and of OpenAI CLIP's ``clip.tokenize``). The text is cleaned and
    lower-cased as open_clip does (its default ``clean="lower"``). The BPE vocabulary
    ``bpe_simple_vocab_16e6.txt.gz`` ships inside the open_clip package, so this works offline.

    When a text needs more than ``context_length`` tokens, the first ``context_length - 1`` are kept and the last
    position holds ``<end_of_text>``, as open_clip's own truncation does. The end token has the largest id in the
    vocabulary (49407), so ``ids.argmax(-1)`` still finds it: CLIP text encoders (and CausalCLIPSeg, a CRIS fork,
    method_notes.md section 2) take the sentence feature there. open_clip truncates silently; here the returned
    ``lengths`` report it (see :py:class:`TokenizeTextd`).

    Args:
        context_length: tokens per text, start and end tokens included (>= 2). Defaults to 77 (CLIP's length);
            CausalCLIPSeg uses 20.
        bpe_path: path of a BPE merges file. Defaults to ``None``: the file shipped with open_clip.

    Raises:
        ValueError: when ``context_length < 2``.
        FileNotFoundError: when ``bpe_path`` does not exist.

    Examples::

        tokenizer = OpenCLIPTokenizer(context_length=20)
        ids, mask, lengths = tokenizer(["Bilateral pulmonary infection, two infected areas."])
        eot_position = ids.argmax(dim=-1)
    """

    def __init__(self, context_length: int = 77, bpe_path: str | os.PathLike | None = None) -> None:
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}.")
        from open_clip.tokenizer import SimpleTokenizer, default_bpe

        path = default_bpe() if bpe_path is None else os.fspath(bpe_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CLIP BPE vocabulary file not found: {path}")
        self._tokenizer = SimpleTokenizer(bpe_path=path, context_length=context_length)
        self.context_length = int(context_length)
        self.vocab_size = int(self._tokenizer.vocab_size)
        self.pad_id = 0
        self.sot_id = int(self._tokenizer.sot_token_id)
        self.eot_id = int(self._tokenizer.eot_token_id)

    def __call__(self, texts: str | Sequence[str]) -> TokenizerOutput:
        """
        Args:
            texts: one string or a sequence of strings.

        Returns:
            a :py:class:`TokenizerOutput`; ``ids`` end with the end-of-text token even when truncated.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        size = self.context_length
        rows, lengths = [], []
        for text in texts:
            tokens = [self.sot_id, *self._tokenizer.encode(text), self.eot_id]
            lengths.append(len(tokens))
            rows.append(tokens if len(tokens) <= size else tokens[: size - 1] + [self.eot_id])
        return self._pack(rows, lengths)


class HFTokenizer(TextTokenizer):
    """
    A Hugging Face tokenizer (BERT family: BERT-base uncased, CXR-BERT, ...) loaded from a local directory.

    The directory is what ``tokenizer.save_pretrained(path)`` writes (``tokenizer.json`` and/or ``vocab.txt`` with
    ``tokenizer_config.json``); it is loaded with ``transformers.AutoTokenizer.from_pretrained(path,
    local_files_only=True)``, so nothing is downloaded. Texts are encoded with the tokenizer's special tokens
    (``[CLS] ... [SEP]`` for BERT), truncated to ``max_length`` (the tokenizer keeps the final ``[SEP]``) and padded
    to ``max_length`` on the tokenizer's padding side.

    Args:
        path: local directory of a saved tokenizer (or, only with ``local_files_only=False``, a hub id).
        max_length: tokens per text, special tokens included. Defaults to 32 (BiCLIP's CXR-BERT setting,
            method_notes.md section 4.3).
        local_files_only: forwarded to ``from_pretrained``; when ``True`` (default) ``path`` must be an existing
            directory with tokenizer files and the network is never used.
        add_special_tokens: add the tokenizer's special tokens. Defaults to ``True``.

    Raises:
        ValueError: when ``max_length < 1``, when the tokenizer has no padding token, or when transformers cannot
            build a tokenizer from the directory (the message names ``path``).
        FileNotFoundError: when ``local_files_only`` and ``path`` is not a directory or holds no tokenizer files.

    Examples::

        tokenizer = HFTokenizer("/models/bert-base-uncased", max_length=10)
        ids, mask, lengths = tokenizer(["Unilateral pulmonary infection, one infected area."])
    """

    def __init__(
        self,
        path: str | os.PathLike,
        max_length: int = 32,
        local_files_only: bool = True,
        add_special_tokens: bool = True,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}.")
        path = os.fspath(path)
        if local_files_only:
            if not os.path.isdir(path):
                from common.utils.large_files import find_large_file, missing_file_message

                # names the bundle's download_large_files command and the override that trains without it when the
                # folder is one that a bundle's large_files.yml lists
                message = missing_file_message(path, "Hugging Face tokenizer folder")
                if find_large_file(path) is None:
                    message += (
                        " To make one: `AutoTokenizer.from_pretrained(name).save_pretrained(path)` on a machine with "
                        "network access."
                    )
                raise FileNotFoundError(message)
            present = sorted(os.listdir(path))
            if not any(f in present for f in _HF_TOKENIZER_FILES):
                raise FileNotFoundError(
                    f"no tokenizer files in {path}: expected one of {list(_HF_TOKENIZER_FILES)}, found {present}."
                )
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"could not load a Hugging Face tokenizer from {path}: {e} (a directory with only vocab.txt also "
                "needs a tokenizer_config.json naming its tokenizer_class, e.g. BertTokenizer)."
            ) from e
        if tokenizer.pad_token_id is None:
            raise ValueError(f"the tokenizer in {path} has no padding token; fixed-length ids need one.")
        self.tokenizer = tokenizer
        self.path = path
        self.context_length = int(max_length)
        self.vocab_size = len(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id)
        self.add_special_tokens = add_special_tokens

    def __call__(self, texts: str | Sequence[str]) -> TokenizerOutput:
        """
        Args:
            texts: one string or a sequence of strings.

        Returns:
            a :py:class:`TokenizerOutput`.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        full = self.tokenizer(texts, add_special_tokens=self.add_special_tokens, truncation=False)["input_ids"]
        lengths = torch.tensor([len(t) for t in full], dtype=torch.long)
        enc = self.tokenizer(
            texts,
            add_special_tokens=self.add_special_tokens,
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return TokenizerOutput(enc["input_ids"].long(), enc["attention_mask"].long(), lengths)


class TruncationReportMixin:
    """
    Shared bookkeeping of text transforms that cut texts to a fixed length (``TokenizeTextd``, ``HFTextEmbedd``):
    ``on_truncate="warn"`` logs a warning naming the item at most once per distinct text, ``"error"`` raises,
    ``"ignore"`` only counts. ``num_truncated`` counts every truncated item, ``truncated_texts`` holds the distinct
    texts. Call :meth:`_init_truncation` in ``__init__``.
    """

    on_truncate: str
    num_truncated: int
    truncated_texts: set[str]
    name_key: str | None

    def _name(self, d: Mapping[Hashable, Any], key: Hashable) -> str:
        """The item named in messages: the ``name_key`` value (e.g. the image file), else a description."""
        if self.name_key is None:
            return f"<item with text key '{key}'>"
        return get_source_name(d, self.name_key, default=f"<item without '{self.name_key}'>")

    def _init_truncation(self, on_truncate: str) -> None:
        self.on_truncate = look_up_option(on_truncate, ("warn", "error", "ignore"))
        self.num_truncated = 0
        self.truncated_texts = set()

    def _count_truncation(self, text: str, message: str, fix: str, outcome: str, log: logging.Logger) -> None:
        """
        Args:
            text: the truncated text (the "once per distinct text" key).
            message: what was truncated, naming the item.
            fix: how to avoid the error, appended to the message when ``on_truncate="error"``.
            outcome: what happened to the text, appended to the warning.
            log: the logger of the calling module.

        Raises:
            ValueError: with ``on_truncate="error"``.
        """
        if self.on_truncate == "error":
            raise ValueError(f"{message}; {fix}")
        self.num_truncated += 1
        if text in self.truncated_texts:
            return
        self.truncated_texts.add(text)
        if self.on_truncate == "warn":
            log.warning("%s; %s (reported once per distinct text).", message, outcome)


class TokenizeTextd(TruncationReportMixin, MapTransform):
    """
    Turn the text string of a data dictionary into fixed-length token ids and an attention mask.

    For each key, ``data[ids_key]`` becomes an int64 tensor of shape (L,) and ``data[mask_key]`` an int64 tensor of
    shape (L,) (1 = real token), with L the tokenizer's ``context_length``; batching then gives (B, L), ready for
    ``monai.engines.PrepareBatchExtraInput(extra_keys=...)``. The text itself is kept.

    Bad text is an error naming the item (the file under ``name_key``, from its MetaTensor ``filename_or_obj`` meta
    data or its path string): a non-string raises ``TypeError``, an empty or whitespace-only string ``ValueError``.

    Truncation is never silent. Real QaTa sentences are about 15-25 CLIP BPE tokens
    (/work/shared/reference/method_notes.md section 2.3), so a 20-token limit truncates some of them. With
    ``on_truncate="warn"`` a warning is logged (``logging.getLogger("common.transforms.text")``) naming the item,
    the token count and the limit, at most once per distinct text; ``num_truncated`` counts every truncated item and
    ``truncated_texts`` holds the distinct texts. ``"error"`` raises instead, ``"ignore"`` only counts. With
    ``DataLoader`` worker processes each worker has its own counters (and warns on its own); with a
    ``CacheDataset`` the transform runs once per item at caching time.

    Args:
        keys: keys of the text strings. Defaults to ``"text"``.
        tokenizer: a :py:class:`TextTokenizer` (e.g. :py:class:`OpenCLIPTokenizer`, :py:class:`HFTokenizer`).
            Required, keyword-only.
        ids_key: where to store the ids, one per key. Defaults to ``"text_ids"``.
        mask_key: where to store the attention mask, one per key; ``None`` does not store it.
            Defaults to ``"text_mask"``.
        on_truncate: ``"warn"`` (default), ``"error"`` or ``"ignore"``.
        name_key: key of the value that names the item in messages (the image). Defaults to ``"image"``;
            ``None`` names items by their text key.
        allow_missing_keys: do not raise when a key is missing. Defaults to ``False``.

    Raises:
        ValueError: when ``on_truncate`` is not a valid option, when ``ids_key``/``mask_key`` do not give one
            distinct output key per text key, or when ``tokenizer`` lacks ``context_length``.

    Examples::

        tokenize = TokenizeTextd(keys="text", tokenizer=OpenCLIPTokenizer(context_length=20))
        item = tokenize({"image": "img/a.png", "text": "Unilateral pulmonary infection, one infected area."})
        item["text_ids"].shape  # torch.Size([20])
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        *,
        tokenizer: TextTokenizer,
        ids_key: str | Sequence[str] = "text_ids",
        mask_key: str | Sequence[str] | None = "text_mask",
        on_truncate: str = "warn",
        name_key: str | None = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not callable(tokenizer) or not hasattr(tokenizer, "context_length"):
            raise ValueError(f"tokenizer must be a TextTokenizer with a context_length, got {type(tokenizer)}.")
        self.tokenizer = tokenizer
        self._init_truncation(on_truncate)
        self.ids_keys = ensure_tuple_rep(ids_key, len(self.keys))
        self.mask_keys = ensure_tuple_rep(mask_key, len(self.keys))
        outputs = [k for k in (*self.ids_keys, *self.mask_keys) if k is not None]
        if len(set(outputs)) != len(outputs):
            raise ValueError(
                f"ids_key {ensure_tuple(ids_key)} and mask_key {ensure_tuple(mask_key)} must give distinct output "
                f"keys for the text keys {self.keys}."
            )
        self.name_key = name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Raises:
            TypeError: when the text is not a string; the message names the item.
            ValueError: when the text is empty or whitespace only, or when it is truncated and
                ``on_truncate="error"``; the message names the item.
        """
        d = dict(data)
        limit = int(self.tokenizer.context_length)
        for key, ids_key, mask_key in self.key_iterator(d, self.ids_keys, self.mask_keys):
            text = d[key]
            if not isinstance(text, str):
                raise TypeError(f"text '{key}' of {self._name(d, key)} must be a string, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(f"text '{key}' of {self._name(d, key)} is empty or whitespace only: {text!r}.")
            out = self.tokenizer([text])
            needed = int(out.lengths[0])
            if needed > limit:
                self._report_truncation(d, key, text, needed, limit)
            d[ids_key] = out.ids[0]
            if mask_key is not None:
                d[mask_key] = out.attention_mask[0]
        return d

    def _report_truncation(self, d: Mapping[Hashable, Any], key: Hashable, text: str, needed: int, limit: int) -> None:
        message = (
            f"text '{key}' of {self._name(d, key)} needs {needed} tokens but the tokenizer keeps {limit} "
            f"(context_length): {text!r}"
        )
        fix = "raise the limit, shorten the text, or set on_truncate='warn'."
        self._count_truncation(text, message, fix, "it was truncated", logger)


# special tokens of the word-level vocabulary, at fixed ids
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
_WORD_PATTERN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
TOKENIZER_FILE_FORMAT = 1
TOKENIZER_KINDS = ("words", "clip_bpe", "hf")


def split_words(text: str) -> list[str]:
    """
    The word-level tokens of a text: lower-cased runs of letters and digits, and every other non-space character
    (punctuation) as a token of its own. ``"One small,irregular-shaped polyp."`` gives
    ``['one', 'small', ',', 'irregular', '-', 'shaped', 'polyp', '.']``.

    Punctuation counts as a token as in the LViT reference's gluonnlp BERT word vectors
    (/work/shared/reference/method_notes.md section 1.2). Unicode letters outside ``a-z`` (after lower-casing) are
    single-character tokens.

    Args:
        text: the text.

    Returns:
        the tokens, in order.
    """
    return _WORD_PATTERN.findall(text.lower())


class WordVocabTokenizer(TextTokenizer):
    """
    A word-level tokenizer over a vocabulary drawn from the training notes: ``<pad>`` (id 0), ``<unk>`` (id 1), then
    every word of the notes (:func:`split_words`), sorted, so the vocabulary depends only on the SET of notes, not
    their order. No start/end tokens: LViT's text path reads token positions only (its CTBN block, eq. 3, maps the
    ``num_tokens`` positions to the patches), and the paper's BERT word vectors drop [CLS]/[SEP]
    (method_notes.md section 1.2).

    Why: the notes of a text-guided segmentation data set use a few dozen words (the QaTa-COV19 template of
    /work/shared/fixtures/qata_text_sample has 21 distinct words and punctuation marks in 111 notes, our synthetic
    chest X-ray notes 21 too, all MAdapter polyp CSVs 30), so a
    trainable embedding table over this vocabulary has a few dozen rows instead of CLIP's 49,408, each row is seen
    in many notes, and the optimizer updates a tiny table (Adam's update of the whole 49,408 x 768 table costs about
    11 % of LViT's training step, issue 11). A sentence is also shorter in words than in BPE pieces ("unilateral" is
    two CLIP BPE tokens).

    A word absent from the vocabulary (a typo, a new location word at inference) becomes ``<unk>``: never silently,
    each distinct unknown word is logged once as a warning (``logging.getLogger("common.transforms.text")``) and
    ``unknown_words`` counts every occurrence. With DataLoader worker processes each worker keeps its own counts.

    The vocabulary and the token count travel with the trained model: :meth:`save` writes them to a JSON file
    (``models/text_tokenizer.json`` in the LViT bundle) and :func:`load_text_tokenizer` reads it back.

    Args:
        tokens: the vocabulary, id -> token: ``tokens[0]`` must be ``"<pad>"``, ``tokens[1]`` ``"<unk>"``, all
            distinct and non-empty.
        context_length: tokens per text (L), >= 1. Longer texts keep their first ``context_length`` tokens; the
            returned ``lengths`` report the need (see :py:class:`TokenizeTextd`).
        warn_unknown: log each distinct unknown word once. Defaults to ``True``.

    Raises:
        ValueError: when ``context_length < 1`` or ``tokens`` is malformed (the message says what is wrong).

    Examples::

        tokenizer = WordVocabTokenizer.from_texts(["Unilateral pulmonary infection, one infected area, lower left lung."])
        tokenizer.context_length  # 12: the longest note, in word tokens
        ids, mask, lengths = tokenizer(["Unilateral pulmonary infection, one infected area, upper left lung."])
        tokenizer.unknown_words  # Counter({'upper': 1})
    """

    def __init__(self, tokens: Sequence[str], context_length: int, warn_unknown: bool = True) -> None:
        tokens = list(tokens)
        if int(context_length) != context_length or context_length < 1:
            raise ValueError(f"context_length must be a positive integer, got {context_length!r}.")
        if len(tokens) < 2 or tokens[0] != PAD_TOKEN or tokens[1] != UNK_TOKEN:
            raise ValueError(f"tokens must start with {PAD_TOKEN!r} (id 0) and {UNK_TOKEN!r} (id 1), got {tokens[:2]}.")
        bad = [t for t in tokens if not isinstance(t, str) or not t]
        if bad:
            raise ValueError(f"tokens must be non-empty strings, got {bad[:5]}.")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"tokens must be distinct, got duplicates {duplicates[:5]}.")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.context_length = int(context_length)
        self.vocab_size = len(tokens)
        self.pad_id = 0
        self.unk_id = 1
        self.warn_unknown = bool(warn_unknown)
        self.unknown_words: Counter[str] = Counter()

    @classmethod
    def from_texts(
        cls, texts: Sequence[str], context_length: int | None = None, min_count: int = 1, warn_unknown: bool = True
    ) -> WordVocabTokenizer:
        """
        Build the vocabulary from ``texts`` (the training notes).

        Args:
            texts: the notes, at least one non-empty string; duplicates and order do not change the result.
            context_length: tokens per text; ``None`` or ``0`` (default) take the longest note of ``texts`` in
                word tokens, so that no training note is truncated.
            min_count: keep a word only when at least this many distinct notes contain it (others become
                ``<unk>``). Defaults to 1 (every word).
            warn_unknown: see the class.

        Returns:
            the tokenizer.

        Raises:
            ValueError: when ``texts`` holds no non-empty string, a text is not a string, or ``min_count < 1``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        notes = _distinct_notes(texts)
        counts: Counter[str] = Counter()
        for note in notes:
            counts.update(set(split_words(note)))
        words = sorted(w for w, c in counts.items() if c >= min_count and w not in (PAD_TOKEN, UNK_TOKEN))
        if not context_length:
            context_length = max(len(split_words(note)) for note in notes)
        return cls([PAD_TOKEN, UNK_TOKEN, *words], context_length, warn_unknown)

    def __call__(self, texts: str | Sequence[str]) -> TokenizerOutput:
        """
        Args:
            texts: one string or a sequence of strings.

        Returns:
            a :py:class:`TokenizerOutput`; ``lengths`` counts the word tokens before truncation.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows, lengths = [], []
        for text in texts:
            words = split_words(text)
            lengths.append(len(words))
            row_ids = []
            for word in words:
                token = self.index.get(word)
                if token is None:
                    self._count_unknown(word, text)
                    token = self.unk_id
                row_ids.append(token)
            rows.append(row_ids[: self.context_length])
        return self._pack(rows, lengths)

    def _count_unknown(self, word: str, text: str) -> None:
        first = word not in self.unknown_words
        self.unknown_words[word] += 1
        if first and self.warn_unknown:
            logger.warning(
                "word %r is not in the vocabulary of the training notes (%d words); it is embedded as %s "
                "(reported once per distinct word): %r",
                word,
                self.vocab_size - 2,
                UNK_TOKEN,
                text,
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable description :func:`load_text_tokenizer` reads."""
        return {
            "format": TOKENIZER_FILE_FORMAT,
            "kind": "words",
            "context_length": self.context_length,
            "tokens": list(self.tokens),
        }

    def save(self, path: str | os.PathLike) -> str:
        """
        Write the vocabulary and the token count to a JSON file (atomically: a temporary file then a rename).

        Args:
            path: the file to write; its folder is created.

        Returns:
            ``path`` as a string.
        """
        return save_tokenizer_config(self.to_dict(), path)


def _distinct_notes(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of notes, got a single string.")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise ValueError(f"every note must be a string, got {type(bad[0]).__name__}: {bad[0]!r}.")
    notes = sorted({t for t in texts if t.strip()})
    if not notes:
        raise ValueError("no non-empty note to build the text vocabulary or token count from.")
    return notes


def save_tokenizer_config(config: Mapping[str, Any], path: str | os.PathLike) -> str:
    """
    Write a tokenizer description (``{"format", "kind", "context_length", ...}``) to a JSON file atomically.

    Args:
        config: the description, e.g. :meth:`WordVocabTokenizer.to_dict`.
        path: the file; its folder is created.

    Returns:
        ``path`` as a string.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".text_tokenizer_", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(config), f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def longest_token_count(tokenizer: TextTokenizer, texts: Sequence[str]) -> int:
    """
    The number of tokens the longest of ``texts`` needs with ``tokenizer`` (its ``lengths``, special tokens
    included), i.e. the smallest ``context_length`` that truncates none of them.

    Args:
        tokenizer: a :py:class:`TextTokenizer`.
        texts: the notes (at least one non-empty string).

    Returns:
        the count, >= 1.

    Raises:
        ValueError: when ``texts`` holds no non-empty string or a text is not a string.
    """
    return max(1, int(tokenizer(_distinct_notes(texts)).lengths.max()))


def build_text_tokenizer(
    kind: str,
    texts: Sequence[str],
    num_tokens: int = 0,
    save_path: str | os.PathLike | None = None,
    hf_path: str | os.PathLike | None = None,
    min_count: int = 1,
) -> TextTokenizer:
    """
    Build the tokenizer a training run uses, with its token count taken from the training notes when
    ``num_tokens`` is 0, and save its description beside the model so that evaluation, inference and export use the
    same vocabulary and count (:func:`load_text_tokenizer`).

    Args:
        kind: ``"words"`` (a :py:class:`WordVocabTokenizer` over the words of ``texts``), ``"clip_bpe"`` (open_clip's
            BPE, :py:class:`OpenCLIPTokenizer`, 49,408 ids, start/end tokens counted) or ``"hf"`` (the word pieces
            of the Hugging Face tokenizer in ``hf_path`` without [CLS]/[SEP], as :py:class:`HFTextEmbedd` embeds
            them; used for the count only).
        texts: the training notes.
        num_tokens: tokens per text; ``0`` (default) takes the longest note of ``texts``, so no training note is
            truncated. A positive value is used as given (e.g. the LViT paper's 10).
        save_path: JSON file to write the description to (``None``: do not write).
        hf_path: the local Hugging Face model folder, for ``kind="hf"``.
        min_count: see :py:meth:`WordVocabTokenizer.from_texts` (``kind="words"`` only).

    Returns:
        the tokenizer; its ``context_length`` is the token count.

    Raises:
        ValueError: for an unknown ``kind``, a negative ``num_tokens``, ``kind="hf"`` without ``hf_path``, or
            notes as in :py:meth:`WordVocabTokenizer.from_texts`.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown text tokenizer kind {kind!r} (text_vocabulary): expected one of {TOKENIZER_KINDS}.")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be 0 (from the training notes) or a positive integer, got {num_tokens!r}.")
    num_tokens = int(num_tokens)
    tokenizer: TextTokenizer
    if kind == "words":
        tokenizer = WordVocabTokenizer.from_texts(texts, context_length=num_tokens or None, min_count=min_count)
        config = tokenizer.to_dict()
    else:
        if kind == "clip_bpe":
            make = OpenCLIPTokenizer
        else:
            if not hf_path:
                raise ValueError("kind='hf' needs hf_path, the local Hugging Face model folder (text_encoder_path).")
            hf_path = os.fspath(hf_path)

            def make(context_length: int) -> TextTokenizer:
                return HFTokenizer(hf_path, max_length=context_length, add_special_tokens=False)

        if not num_tokens:
            num_tokens = longest_token_count(make(512), texts)
        tokenizer = make(num_tokens)
        config = {"format": TOKENIZER_FILE_FORMAT, "kind": kind, "context_length": num_tokens}
        if kind == "hf":
            config["model_path"] = hf_path
    if save_path is not None:
        save_tokenizer_config(config, save_path)
        logger.info(
            "text tokenizer (%s, %d tokens, %d ids) saved to %s",
            kind,
            tokenizer.context_length,
            tokenizer.vocab_size,
            save_path,
        )
    return tokenizer


def load_text_tokenizer(path: str | os.PathLike, hf_path: str | os.PathLike | None = None) -> TextTokenizer:
    """
    Load the tokenizer a model was trained with from the JSON file :func:`build_text_tokenizer` wrote.

    Args:
        path: the file (``models/text_tokenizer.json`` beside ``models/model.pt`` in the LViT bundle).
        hf_path: for ``kind="hf"``, the Hugging Face model folder to use instead of the recorded one (e.g. the
            same model moved to another machine). Defaults to ``None``: the recorded ``model_path``.

    Returns:
        a :py:class:`WordVocabTokenizer`, :py:class:`OpenCLIPTokenizer` or :py:class:`HFTokenizer` with the saved
        ``context_length``.

    Raises:
        FileNotFoundError: when ``path`` does not exist (the message says that training writes it).
        ValueError: when the file is not valid JSON or not a tokenizer description (the message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"text tokenizer file not found: {path}. Training writes it beside models/model.pt (the vocabulary and the "
            "token count the model was trained with); copy it together with model.pt."
        )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid JSON text tokenizer file ({e}).") from e
    if not isinstance(config, dict) or config.get("format") != TOKENIZER_FILE_FORMAT:
        raise ValueError(f"{path}: not a text tokenizer file of format {TOKENIZER_FILE_FORMAT} (no 'format': 1).")
    kind = config.get("kind")
    length = config.get("context_length")
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"{path}: 'kind' must be one of {TOKENIZER_KINDS}, got {kind!r}.")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"{path}: 'context_length' must be a positive integer, got {length!r}.")
    try:
        if kind == "words":
            return WordVocabTokenizer(config.get("tokens") or [], length)
        if kind == "clip_bpe":
            return OpenCLIPTokenizer(context_length=length)
        model_path = hf_path or config.get("model_path")
        if not model_path:
            raise ValueError("no 'model_path' recorded and no hf_path given")
        return HFTokenizer(model_path, max_length=length, add_special_tokens=False)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
