# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Pre-computed text embeddings from a frozen Hugging Face BERT-family encoder, cached in memory and on disk.

LViT feeds its network (B, 10, 768) BERT-base uncased vectors computed by a frozen BERT (paper section 3.1;
/work/shared/reference/method_notes.md section 1.2). Because the encoder is frozen, the vectors of a text never
change, so :py:class:`HFTextEmbedd` computes them once per distinct text and keeps them in a cache file.
"""

from __future__ import annotations

__all__ = ["HFTextEmbedd"]

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch

from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple, ensure_tuple_rep

from common.networks.text_embedding import HFTextEncoder, check_hf_model_dir
from common.transforms.text import HFTokenizer, TruncationReportMixin

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _text_digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class HFTextEmbedd(TruncationReportMixin, MapTransform):
    """
    Add ``num_tokens`` word-piece vectors of a frozen Hugging Face BERT-family model per text to a data dictionary.

    For each key, the text is tokenised with the model's own tokenizer (loaded by
    :py:class:`common.transforms.HFTokenizer` from ``model_path``), run through the frozen encoder
    (:py:class:`common.networks.HFTextEncoder`, hidden states of ``layer``) under ``torch.inference_mode``, the rows of
    the special tokens the tokenizer added (``[CLS]`` and ``[SEP]`` for BERT, found with the tokenizer's
    ``special_tokens_mask``, not by position) are dropped, and the remaining word-piece rows are truncated or
    zero-padded to ``num_tokens``. ``data[output_key]`` becomes a float32 tensor (num_tokens, hidden_size), e.g.
    (10, 768) for BERT-base; batching gives LViT's (B, 10, 768) text input. The text itself is kept. The encoder sees
    the whole text (up to the model's ``max_position_embeddings`` tokens); truncation to ``num_tokens`` happens
    afterwards, so the kept vectors are contextualised by the full sentence.

    Difference from the LViT reference code (method_notes.md section 1.2): the reference calls gluonnlp's
    ``bert_embedding`` (MXNet, BERT-base uncased, last layer, ``max_seq_length=25``), which returns one vector per
    *word*: word pieces are averaged back into words (``oov_way="avg"``), punctuation marks count as words,
    ``[CLS]``/``[SEP]`` are removed, and texts with fewer than 9 whitespace-separated words are first extended with
    ``" EOF XXX"`` words (which also changes the context of the real words) so that 10 rows always exist. Here each
    row is one *word piece* (a word split into k pieces takes k rows, punctuation marks are pieces too), the text is
    not extended, and missing rows are zeros. Both keep the first 10 rows, so both lose the end of a long sentence
    (often the laterality and location words of QaTa texts), and the word-piece version covers fewer words when words
    are split.

    Cache: vectors are kept in memory per distinct text (sha1 of its UTF-8 bytes). With ``cache_dir`` they are also
    kept in ONE file per (model, layer, num_tokens): ``<cache_dir>/hf_text_emb_<model folder name>_layer<k>_tokens<n>_
    <fingerprint>.pt``, where the fingerprint is a sha1 of the model folder's real path and of the name, size and
    modification time of every file in it (a replaced or edited model gets a new file; a copied model starts a new
    cache). The file is a ``torch.save`` dictionary readable with ``torch.load(..., weights_only=True)``::

        {"format": 1, "model_path": str, "fingerprint": str, "layer": int, "num_tokens": int, "hidden_size": int,
         "embeddings": {sha1(text): float32 tensor (num_tokens, hidden_size)},
         "num_pieces": {sha1(text): number of word pieces of the text before truncation}}

    It is loaded at construction. It is rewritten (merged with what is on disk, written to a temporary file in
    ``cache_dir``, then moved over the old file with ``os.replace``, so a reader never sees a half-written file) at
    the end of every :py:meth:`embed_texts` call that embedded new texts, on :py:meth:`save_cache`, and by
    ``__call__`` once ``save_every`` new texts have been embedded since the last write. Texts embedded after the last
    write of a process are not on disk (DataLoader worker processes end without a final write): call
    :py:meth:`embed_texts` on all the datalist's texts in the main process before building the DataLoader, then every
    worker only reads the cache. Two processes writing at the same time cannot corrupt the file; the later write may
    miss entries of the other, which are then computed again in a later run.

    The transform is picklable (for DataLoader worker processes): the model and tokenizer are not pickled but loaded
    again lazily, on the first text that is not in the cache; the in-memory cache travels with the transform.

    Bad text is an error naming the item (the file under ``name_key``): a non-string raises ``TypeError``, an empty or
    whitespace-only string (or one the tokenizer turns into no word pieces) ``ValueError``. Truncation is reported
    like :py:class:`common.transforms.TokenizeTextd` does: with ``on_truncate="warn"`` a warning is logged
    (``logging.getLogger("common.transforms.text_embedding")``) naming the item, the word-piece count and
    ``num_tokens``, at most once per distinct text (also when the vectors come from the cache); ``num_truncated``
    counts every truncated item and ``truncated_texts`` holds the distinct texts. ``"error"`` raises instead,
    ``"ignore"`` only counts.

    Args:
        keys: keys of the text strings. Defaults to ``"text"``.
        model_path: local folder holding the saved model and its tokenizer (``model.save_pretrained(path)`` and
            ``tokenizer.save_pretrained(path)``). Required, keyword-only.
        num_tokens: rows per text, >= 1. Defaults to 10 (LViT).
        output_key: where to store the vectors, one per key. Defaults to ``"text_emb"``.
        cache_dir: folder of the on-disk cache (created when missing; not the model folder itself, whose file list
            is part of the fingerprint); ``None`` (default) keeps the cache in memory only.
        device: device the encoder runs on, e.g. ``"cpu"`` (default) or ``"cuda"``; the stored vectors are on the CPU.
        name_key: key of the value that names the item in messages (the image). Defaults to ``"image"``; ``None``
            names items by their text key.
        on_truncate: ``"warn"`` (default), ``"error"`` or ``"ignore"``.
        layer: hidden states to use, as in :py:class:`common.networks.HFTextEncoder`. Defaults to -1 (last layer,
            as in LViT).
        batch_size: texts per encoder call in :py:meth:`embed_texts`, >= 1. Defaults to 32.
        save_every: with ``cache_dir``, ``__call__`` rewrites the cache file once this many new texts were embedded
            since the last write; 0 writes only in :py:meth:`embed_texts` and :py:meth:`save_cache`. Defaults to 16.
        allow_missing_keys: do not raise when a key is missing. Defaults to ``False``.

    Raises:
        FileNotFoundError: when ``model_path`` is not a folder, has no ``config.json`` or no tokenizer files.
        ValueError: when ``num_tokens``, ``batch_size``, ``save_every``, ``on_truncate`` or ``layer`` is invalid,
            when ``cache_dir`` is the model folder,
            when ``output_key`` does not give one distinct key per text key, when the model configuration or the
            tokenizer cannot be loaded, or when the cache file is unreadable or belongs to another setting (the
            message names the file).

    Examples::

        embed = HFTextEmbedd(keys="text", model_path="/models/bert-base-uncased", cache_dir="/data/qata/text_cache")
        embed.embed_texts([item["text"] for item in datalist])  # once, in the main process
        item = embed({"image": "img/a.png", "text": "Unilateral pulmonary infection, one infected area."})
        item["text_emb"].shape  # torch.Size([10, 768])
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        *,
        model_path: str | os.PathLike,
        num_tokens: int = 10,
        output_key: str | Sequence[str] = "text_emb",
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        name_key: str | None = "image",
        on_truncate: str = "warn",
        layer: int = -1,
        batch_size: int = 32,
        save_every: int = 16,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be positive, got {num_tokens}.")
        if batch_size < 1 or save_every < 0:
            raise ValueError(f"batch_size must be positive and save_every >= 0, got {batch_size} and {save_every}.")
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))
        if len(set(self.output_keys)) != len(self.output_keys):
            raise ValueError(f"output_key {ensure_tuple(output_key)} must give one distinct key per text key.")
        self.model_path = check_hf_model_dir(model_path)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"could not read the model configuration in {self.model_path}: {e}") from e
        num_layers = int(config.num_hidden_layers)
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"layer must index one of the {num_layers + 1} hidden states of the model in {self.model_path} "
                f"(-{num_layers + 1}..{num_layers}), got {layer}."
            )
        self.layer = layer % (num_layers + 1)
        self.hidden_size = int(config.hidden_size)
        self.max_length = int(getattr(config, "max_position_embeddings", 512))
        self.num_tokens = int(num_tokens)
        self.device = torch.device(device)
        self.name_key = name_key
        self._init_truncation(on_truncate)
        self.batch_size = int(batch_size)
        self.save_every = int(save_every)
        # the tokenizer is loaded now to report a bad folder early; both it and the encoder are reloaded lazily
        # after unpickling
        self._tokenizer: HFTokenizer | None = HFTokenizer(self.model_path, max_length=self.max_length)
        self._encoder: HFTextEncoder | None = None
        self._embeddings: dict[str, torch.Tensor] = {}
        self._num_pieces: dict[str, int] = {}
        self._unsaved = 0
        self.fingerprint = self._fingerprint()
        self.cache_file: str | None = None
        if cache_dir is not None:
            cache_dir = os.fspath(cache_dir)
            if os.path.realpath(cache_dir) == os.path.realpath(self.model_path):
                raise ValueError(f"cache_dir must not be the model folder {self.model_path}: use a separate folder.")
            os.makedirs(cache_dir, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(self.model_path))) or "model"
            name = f"hf_text_emb_{slug}_layer{self.layer}_tokens{self.num_tokens}_{self.fingerprint[:16]}.pt"
            self.cache_file = os.path.join(cache_dir, name)
            self._merge(self._read_cache_file())

    @property
    def num_cached(self) -> int:
        """The number of distinct texts whose vectors are in the (in-memory) cache."""
        return len(self._embeddings)

    # ----------------------------------------------------------------------------------------------------- cache
    def _fingerprint(self) -> str:
        real = os.path.realpath(self.model_path)
        files = []
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                files.append([entry.name, stat.st_size, stat.st_mtime_ns])
        return hashlib.sha1(json.dumps({"path": real, "files": files}).encode("utf-8")).hexdigest()

    def _read_cache_file(self) -> dict[str, Any] | None:
        if self.cache_file is None or not os.path.isfile(self.cache_file):
            return None
        try:
            content = torch.load(self.cache_file, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: unpickling errors have many types
            raise ValueError(
                f"cannot read the text-embedding cache {self.cache_file}: {e}; delete it to rebuild."
            ) from e
        expected = {
            "format": CACHE_FORMAT,
            "fingerprint": self.fingerprint,
            "layer": self.layer,
            "num_tokens": self.num_tokens,
            "hidden_size": self.hidden_size,
        }
        tables = ("embeddings", "num_pieces")
        if not isinstance(content, dict) or not all(isinstance(content.get(k), dict) for k in tables):
            raise ValueError(f"{self.cache_file} is not a text-embedding cache file; delete it to rebuild.")
        found = {k: content.get(k) for k in expected}
        if found != expected:
            raise ValueError(
                f"the text-embedding cache {self.cache_file} was written for {found}, expected {expected}; "
                "delete it to rebuild."
            )
        shape = (self.num_tokens, self.hidden_size)
        for digest, emb in content["embeddings"].items():
            if not isinstance(emb, torch.Tensor) or tuple(emb.shape) != shape or digest not in content["num_pieces"]:
                raise ValueError(
                    f"entry {digest} of the text-embedding cache {self.cache_file} is not a {shape} tensor with a "
                    "word-piece count; delete the file to rebuild."
                )
        return content

    def _merge(self, content: Mapping[str, Any] | None) -> None:
        if content is None:
            return
        for digest, emb in content["embeddings"].items():
            if digest not in self._embeddings:
                self._embeddings[digest] = emb.float()
                self._num_pieces[digest] = int(content["num_pieces"][digest])

    def save_cache(self) -> None:
        """
        Write the cache file now (merged with entries other processes wrote meanwhile); a no-op without
        ``cache_dir``. The file is replaced atomically: it is complete before and after, whatever happens during.

        Raises:
            OSError: when the file cannot be written; the old file is left as it was.
        """
        if self.cache_file is None:
            return
        self._merge(self._read_cache_file())
        content = {
            "format": CACHE_FORMAT,
            "model_path": os.path.realpath(self.model_path),
            "fingerprint": self.fingerprint,
            "layer": self.layer,
            "num_tokens": self.num_tokens,
            "hidden_size": self.hidden_size,
            "embeddings": dict(self._embeddings),
            "num_pieces": dict(self._num_pieces),
        }
        folder = os.path.dirname(self.cache_file)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_" + os.path.basename(self.cache_file), suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(content, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.cache_file)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        self._unsaved = 0

    # ----------------------------------------------------------------------------------------------- embedding
    def _load_models(self) -> tuple[HFTokenizer, HFTextEncoder]:
        if self._tokenizer is None:
            self._tokenizer = HFTokenizer(self.model_path, max_length=self.max_length)
        if self._encoder is None:
            self._encoder = HFTextEncoder(self.model_path, layer=self.layer, freeze=True).to(self.device)
        return self._tokenizer, self._encoder

    def _embed_new(self, texts: Sequence[str]) -> None:
        """Run the encoder on ``texts`` (distinct, not cached) and store the results in memory."""
        tokenizer, encoder = self._load_models()
        hf = tokenizer.tokenizer
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            # word pieces before any truncation: the count reported when a text is truncated
            full = hf(chunk, add_special_tokens=True, truncation=False, return_special_tokens_mask=True)
            enc = hf(
                chunk,
                add_special_tokens=True,
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            # `special_tokens_mask` of the encoding marks only the tokens the tokenizer added ([CLS], [SEP]) and
            # padding; `tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)` would also mark
            # [UNK] (and a literal "[MASK]"), dropping unknown words (transformers 5.23).
            keep = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
            with torch.inference_mode():
                hidden = encoder(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            hidden = hidden.float().cpu()
            for row, text in enumerate(chunk):
                pieces = hidden[row][keep[row]][: self.num_tokens]
                emb = torch.zeros(self.num_tokens, self.hidden_size, dtype=torch.float32)
                emb[: pieces.shape[0]] = pieces
                digest = _text_digest(text)
                self._embeddings[digest] = emb
                self._num_pieces[digest] = len(full["input_ids"][row]) - sum(full["special_tokens_mask"][row])
                self._unsaved += 1

    def embed_texts(self, texts: Iterable[str]) -> torch.Tensor:
        """
        Embed many texts at once (batches of ``batch_size``), e.g. every text of a datalist before training, and
        write the cache file when new texts were embedded. No truncation report is made here (it is made per item
        by ``__call__``, which names the item).

        Args:
            texts: strings; repeated texts are embedded once.

        Returns:
            float32 tensor (len(texts), num_tokens, hidden_size), a copy of the cached vectors.

        Raises:
            TypeError: when a text is not a string.
            ValueError: when a text is empty or whitespace only (the message shows its position).
        """
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} must be a string, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(f"text {i} is empty or whitespace only: {text!r}.")
        missing = list(dict.fromkeys(t for t in texts if _text_digest(t) not in self._embeddings))
        if missing:
            self._embed_new(missing)
            self.save_cache()
        if not texts:
            return torch.zeros(0, self.num_tokens, self.hidden_size)
        return torch.stack([self._embeddings[_text_digest(t)] for t in texts])

    # ------------------------------------------------------------------------------------------------ transform
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Raises:
            TypeError: when the text is not a string; the message names the item.
            ValueError: when the text is empty, whitespace only or has no word pieces, or when it is truncated and
                ``on_truncate="error"``; the message names the item.
        """
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            text = d[key]
            if not isinstance(text, str):
                raise TypeError(f"text '{key}' of {self._name(d, key)} must be a string, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(f"text '{key}' of {self._name(d, key)} is empty or whitespace only: {text!r}.")
            digest = _text_digest(text)
            if digest not in self._embeddings:
                self._embed_new([text])
                if self.cache_file is not None and self.save_every and self._unsaved >= self.save_every:
                    self.save_cache()
            pieces = self._num_pieces[digest]
            if pieces == 0:
                raise ValueError(f"text '{key}' of {self._name(d, key)} has no word pieces: {text!r}.")
            if pieces > self.num_tokens:
                self._report_truncation(d, key, text, pieces)
            d[out_key] = self._embeddings[digest].clone()
        return d

    def _report_truncation(self, d: Mapping[Hashable, Any], key: Hashable, text: str, pieces: int) -> None:
        message = (
            f"text '{key}' of {self._name(d, key)} has {pieces} word pieces but {self.num_tokens} vectors are kept "
            f"(num_tokens): {text!r}"
        )
        fix = "raise num_tokens, shorten the text, or set on_truncate='warn'."
        self._count_truncation(text, message, fix, "the rest was dropped", logger)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tokenizer"] = None  # reloaded lazily, e.g. in a DataLoader worker
        state["_encoder"] = None
        return state
