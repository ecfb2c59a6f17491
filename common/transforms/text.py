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
"""

from __future__ import annotations

__all__ = [
    "TruncationReportMixin",
    "TokenizerOutput",
    "TextTokenizer",
    "OpenCLIPTokenizer",
    "HFTokenizer",
    "TokenizeTextd",
]

import logging
import os
from abc import ABC, abstractmethod
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
        ids = torch.full((len(texts), size), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), size), dtype=torch.long)
        lengths = torch.zeros(len(texts), dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.sot_id, *self._tokenizer.encode(text), self.eot_id]
            lengths[row] = len(tokens)
            if len(tokens) > size:
                tokens = tokens[: size - 1] + [self.eot_id]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return TokenizerOutput(ids, mask, lengths)


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
                raise FileNotFoundError(
                    f"Hugging Face tokenizer directory not found: {path} (save one with "
                    "`AutoTokenizer.from_pretrained(name).save_pretrained(path)` on a machine with network access)."
                )
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
