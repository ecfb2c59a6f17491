# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Data side of semi-supervised LViT: the labeled/unlabeled split, the choice of a contrastive label for every unlabeled
image by text similarity (LViT section 3.3, eq. 13 / appendix D eq. 25) with a bag-of-words or an embedding-based text
featurizer, the sampler that keeps the unlabeled images out of a supervised warm-up, the check that keeps random
geometric transforms away from the unlabeled images, and a collate function for batches that mix labeled and
unlabeled items.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import InvertibleTransform, Randomizable
from monai.transforms.traits import LazyTrait, RandomizableTrait
from torch.utils.data import Sampler

from common.data.splits import split_by_fraction

__all__ = [
    "split_labeled",
    "assign_contrastive_labels",
    "bag_of_words_features",
    "MeanTokenFeaturizer",
    "WarmupSemiSupervisedSampler",
    "WarmupSemiSupervisedBatchSampler",
    "is_random_spatial",
    "require_no_random_spatial",
    "collate_semi_supervised",
]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")


def split_labeled(
    items: Sequence[Mapping[str, Any]], label_fraction: float, seed: int = 0, stratify_key: str | None = "site"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Split training items into labeled and unlabeled ones, deterministically (LViT appendix E: "the train set is
    divided into labeled and unlabeled train sets in a specific ratio", e.g. 1/4 or 1/2 of the labels, Table 1).

    ``floor(n * label_fraction + 0.5)`` items are drawn as labeled (at least 1 and at most ``n - 1`` when
    ``label_fraction < 1``), with :func:`common.data.splits.split_by_fraction`: stratified by ``stratify_key``
    (``site``) when any item carries it (items without it form their own group), shuffled with
    ``random.Random(seed)``. The same items in the same order with the same seed always give the same split, so pass
    the datalist's sorted training list. Both returned lists keep the input order. The input dicts are not modified.

    Every labeled item gets ``"unlabeled_index": -1``. Every unlabeled item gets ``"unlabeled_index": k`` (``k`` =
    0..U-1 in order, its slot in :class:`common.engines.PseudoLabelBank`) and its ``label`` key is REMOVED, so the
    mask is never loaded.

    Args:
        items: training items (dicts with at least ``label``; usually also ``image`` and ``text``).
        label_fraction: share of labeled items, in ``(0, 1]``; 1 keeps every item labeled (no unlabeled items).
        seed: random seed, default 0.
        stratify_key: item key to stratify on, default ``"site"``; ``None`` for no stratification.

    Returns:
        ``(labeled, unlabeled)``, new dicts.

    Raises:
        TypeError: when ``label_fraction`` is not a real number, or an item is not a mapping.
        ValueError: when ``items`` is empty, ``label_fraction`` is outside ``(0, 1]`` or not finite, an item has no
            ``label``, or the split would leave no labeled item (e.g. one item with ``label_fraction < 1``).

    Examples::

        labeled, unlabeled = split_labeled(load_datalist(datalist_file, "training"), label_fraction=0.25, seed=0)
        unlabeled[0]["unlabeled_index"]  # 0; "label" not in unlabeled[0]
    """
    if isinstance(label_fraction, bool) or not isinstance(label_fraction, (int, float)):
        raise TypeError(f"label_fraction must be a number in (0, 1], got {label_fraction!r}.")
    if not math.isfinite(label_fraction) or not 0.0 < float(label_fraction) <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1] (share of labeled training items), got {label_fraction}.")
    if len(items) == 0:
        raise ValueError("split_labeled: there are no training items to split.")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"split_labeled: item {i} is a {type(item).__name__}, expected a dict.")
        if "label" not in item:
            raise ValueError(f"split_labeled: item {i} ({item.get('image', '?')}) has no 'label' key.")
    if float(label_fraction) == 1.0:
        return [{**item, "unlabeled_index": -1} for item in items], []
    groups = None
    if stratify_key is not None and any(stratify_key in item for item in items):
        groups = [None if item.get(stratify_key) is None else str(item.get(stratify_key)) for item in items]
    _, drawn = split_by_fraction(list(range(len(items))), float(label_fraction), seed=seed, groups=groups)
    if not drawn:
        raise ValueError(
            f"split_labeled: label_fraction={label_fraction} of {len(items)} item(s) leaves no labeled item; "
            "use more items or label_fraction=1."
        )
    chosen = set(drawn)
    labeled: list[dict[str, Any]] = []
    unlabeled: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if i in chosen:
            labeled.append({**item, "unlabeled_index": -1})
        else:
            entry = {k: v for k, v in item.items() if k != "label"}
            entry["unlabeled_index"] = len(unlabeled)
            unlabeled.append(entry)
    return labeled, unlabeled


def bag_of_words_features(texts: Sequence[str]) -> np.ndarray:
    """
    Bag-of-words count vectors: the default, deterministic and offline text featurizer of
    :func:`assign_contrastive_labels`.

    Each text is lower-cased and split into words (runs of letters, digits and ``_``; punctuation is dropped). The
    vocabulary is the sorted set of all words of ``texts``, and row ``n`` counts the words of text ``n``.

    Args:
        texts: the texts.

    Returns:
        a float64 array ``(len(texts), vocabulary size)``.

    Raises:
        TypeError: when a text is not a string.

    Examples::

        >>> bag_of_words_features(["Lower left lung.", "left, LEFT"]).tolist()   # vocabulary: left, lower, lung
        [[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]
    """
    words = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"bag_of_words_features: text {i} is a {type(text).__name__}, expected a string.")
        words.append(_WORD.findall(text.lower()))
    vocabulary = {w: j for j, w in enumerate(sorted({w for ws in words for w in ws}))}
    features = np.zeros((len(words), len(vocabulary)), dtype=np.float64)
    for i, ws in enumerate(words):
        for w in ws:
            features[i, vocabulary[w]] += 1.0
    return features


class MeanTokenFeaturizer:
    """
    Text featurizer for :func:`assign_contrastive_labels` built on a text encoder's token vectors: the feature of a
    text is the mean of its non-zero token rows.

    LViT eq. 13 compares "text feature vectors"; the paper's text features are frozen BERT token vectors (section
    3.1), so when a bundle is configured with such vectors (``text_encoder: bert``, whose
    :class:`common.transforms.HFTextEmbedd` caches one ``(num_tokens, hidden)`` matrix per text, zero rows for
    padding) the contrastive label is chosen by the cosine of their means rather than by bag-of-words counts. Rows
    that are exactly zero (padding) are left out of the mean; a text whose rows are all zero gets a zero feature
    (similarity 0 with everything).

    Args:
        embed_fn: callable mapping a list of ``N`` texts to an array-like ``(N, T, D)`` of token vectors (e.g.
            ``HFTextEmbedd.embed_texts``) or ``(N, D)`` sentence vectors (returned unchanged).

    Raises:
        TypeError: when ``embed_fn`` is not callable.
        ValueError: (when called) when ``embed_fn`` does not return one row (or matrix) per text.

    Examples::

        featurizer = MeanTokenFeaturizer(HFTextEmbedd(keys="text", model_path="/models/bert-base-uncased").embed_texts)
        unlabeled = assign_contrastive_labels(unlabeled, labeled, featurizer=featurizer)
    """

    def __init__(self, embed_fn: Callable[[Sequence[str]], Any]) -> None:
        if not callable(embed_fn):
            raise TypeError(f"MeanTokenFeaturizer: embed_fn must be callable, got {type(embed_fn).__name__}.")
        self.embed_fn = embed_fn

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """
        Args:
            texts: the texts.

        Returns:
            a float64 array ``(len(texts), D)``.
        """
        emb = self.embed_fn(list(texts))
        emb = emb.detach().cpu().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb)
        emb = emb.astype(np.float64)
        if emb.ndim not in (2, 3) or emb.shape[0] != len(texts):
            raise ValueError(
                f"MeanTokenFeaturizer: embed_fn returned shape {emb.shape} for {len(texts)} texts; expected "
                "(texts, tokens, dim) or (texts, dim)."
            )
        if emb.ndim == 2:
            return emb
        used = np.abs(emb).sum(axis=2, keepdims=True) > 0  # (N, T, 1): non-padding rows
        count = used.sum(axis=1)  # (N, 1)
        total = (emb * used).sum(axis=1)  # (N, D)
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _texts(items: Sequence[Mapping[str, Any]], text_key: str, name: str) -> list[str]:
    texts = []
    for i, item in enumerate(items):
        text = item.get(text_key) if isinstance(item, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"assign_contrastive_labels: {name} item {i} has no non-empty string '{text_key}'.")
        texts.append(text)
    return texts


def assign_contrastive_labels(
    unlabeled: Sequence[Mapping[str, Any]],
    labeled: Sequence[Mapping[str, Any]],
    featurizer: Callable[[Sequence[str]], Any] | None = None,
    text_key: str = "text",
    label_key: str = "label",
    chunk_size: int = 1024,
    min_similarity: float = 0.0,
) -> list[dict[str, Any]]:
    """
    Give every unlabeled item the contrastive label of LViT's LV loss (section 3.3, appendix D): the mask of the
    labeled item whose text is most similar, by the cosine similarity of text feature vectors (eq. 13 / 25).

    Sets ``"contrastive_label"`` (the chosen item's ``label`` path), ``"contrastive_text"`` (its text) and
    ``"contrastive_similarity"`` (the cosine, a float) on a copy of each unlabeled item. Ties (exactly equal
    similarities) go to the lowest index of ``labeled``.

    No similar text: when the best similarity is ``<= min_similarity`` (by default: the text shares no feature with
    any labeled text, e.g. no word in common under bag-of-words) the item gets NO ``contrastive_label`` and no
    ``contrastive_text`` (only ``contrastive_similarity``): an arbitrary labeled mask would teach a wrong location.
    :func:`collate_semi_supervised` then fills an all-zero mask, which :class:`common.losses.LanguageVisionLoss`
    skips, so that image gets no LV term (it still gets the EPI pseudo-label term). Their number is logged as a
    warning (logger ``common.data.semi_supervised``) and can be recounted from the returned items
    (``"contrastive_label" not in item``). A zero feature vector has similarity 0 with everything.

    The paper uses the labeled masks directly for MoNuSeg and, for QaTa-COV19, masks drawn for structured template
    sentences (the reference repository's ``LV_loss/LV_loss.xlsx``, 14 sentences and masks, method_notes §1.3); pass
    such templates as ``labeled`` (dicts with ``text`` and ``label``) to follow that variant.

    Args:
        unlabeled: unlabeled items with a non-empty ``text``.
        labeled: candidate items with a non-empty ``text`` and a ``label`` (path or array), at least one.
        featurizer: callable mapping a list of texts to an ``(N, D)`` array-like; it is called ONCE with the labeled
            texts followed by the unlabeled texts (so a vocabulary is shared). Default :func:`bag_of_words_features`
            (for a trainable token table, which has no fixed text features); with frozen encoder vectors use
            :class:`MeanTokenFeaturizer`.
        text_key: item key of the text, default ``"text"``.
        label_key: key of the mask in ``labeled``, default ``"label"``.
        chunk_size: unlabeled rows per similarity block (bounds memory to ``chunk_size * len(labeled)``), default 1024.
        min_similarity: a best cosine ``<= min_similarity`` means "no similar labeled text" (no contrastive label),
            default 0.0. In ``[-1, 1)``; dense embeddings (BERT means) are rarely below 0.5, so raise it there to
            reject weak matches.

    Returns:
        the unlabeled items (new dicts, input order) with ``contrastive_similarity`` and, when matched,
        ``contrastive_label`` and ``contrastive_text``.

    Raises:
        ValueError: when ``labeled`` is empty, an item lacks a non-empty text or a labeled item lacks ``label``, the
            featurizer's output does not have one finite row per text, or ``min_similarity`` is outside ``[-1, 1)``.

    Examples::

        unlabeled = assign_contrastive_labels(unlabeled, labeled)
        unlabeled[0]["contrastive_label"]  # label path of the labeled item with the most similar description
    """
    if isinstance(min_similarity, bool) or not isinstance(min_similarity, (int, float)):
        raise ValueError(f"assign_contrastive_labels: min_similarity must be a number, got {min_similarity!r}.")
    if not (math.isfinite(min_similarity) and -1.0 <= float(min_similarity) < 1.0):
        raise ValueError(f"assign_contrastive_labels: min_similarity must be in [-1, 1), got {min_similarity}.")
    if len(labeled) == 0:
        raise ValueError("assign_contrastive_labels: there are no labeled items to take contrastive labels from.")
    labeled_texts = _texts(labeled, text_key, "labeled")
    unlabeled_texts = _texts(unlabeled, text_key, "unlabeled")
    for i, item in enumerate(labeled):
        if label_key not in item:
            raise ValueError(f"assign_contrastive_labels: labeled item {i} has no '{label_key}'.")
    if len(unlabeled) == 0:
        return []
    featurizer = bag_of_words_features if featurizer is None else featurizer
    all_texts = labeled_texts + unlabeled_texts
    features = np.asarray(featurizer(all_texts), dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != len(all_texts):
        raise ValueError(
            f"assign_contrastive_labels: the featurizer returned shape {features.shape} for {len(all_texts)} texts; "
            "expected (number of texts, feature size)."
        )
    if not np.isfinite(features).all():
        raise ValueError("assign_contrastive_labels: the featurizer returned non-finite values.")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    features = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
    lab, unl = features[: len(labeled)], features[len(labeled) :]
    best = np.empty(len(unlabeled), dtype=np.int64)
    best_sim = np.empty(len(unlabeled), dtype=np.float64)
    for start in range(0, len(unlabeled), max(int(chunk_size), 1)):
        sims = unl[start : start + chunk_size] @ lab.T
        best[start : start + chunk_size] = np.argmax(sims, axis=1)  # first maximum = lowest index on ties
        best_sim[start : start + chunk_size] = sims.max(axis=1)
    matched = best_sim > float(min_similarity)
    unmatched = int((~matched).sum())
    if unmatched:
        logger.warning(
            f"assign_contrastive_labels: {unmatched} of {len(unlabeled)} unlabeled texts have no similar labeled text "
            f"(best cosine <= min_similarity={min_similarity}); they get no contrastive label and no LV loss term."
        )
    out = []
    for item, j, sim, ok in zip(unlabeled, best.tolist(), best_sim.tolist(), matched.tolist()):
        entry = {k: v for k, v in item.items() if k not in ("contrastive_label", "contrastive_text")}
        entry["contrastive_similarity"] = float(sim)
        if ok:
            entry["contrastive_label"] = labeled[j][label_key]
            entry["contrastive_text"] = labeled[j][text_key]
        out.append(entry)
    return out


class WarmupSemiSupervisedSampler(Sampler):
    """
    Sampler over ``ConcatDataset([labeled, unlabeled])`` (labeled items at indices ``0 .. L-1``, unlabeled at
    ``L .. L+U-1``) that keeps the unlabeled images out of a supervised warm-up.

    Why: LViT's EPI (eq. 9) averages the model's own predictions, and the paper's argument for it (section 3.2,
    "the model weights will dither around the actual optimum in the last n generations") assumes a trained model;
    an EPI bank started from the first epoch of an untrained model keeps ``beta**t`` of that random guess (91 % after
    10 epochs at ``beta = 0.99``). So during the first ``warmup_epochs`` epochs only labeled items are drawn; from
    epoch ``warmup_epochs + 1`` every item is.

    Every epoch has the same ``epoch_length`` items (default ``L + U``), so the trainer's epoch length, the learning
    rate schedule, checkpoints and resume are unchanged: a warm-up epoch draws ``epoch_length`` labeled items
    (shuffled passes over the labeled items, the last one cut), a later epoch one shuffled pass over all items (then,
    if ``epoch_length`` is larger, further shuffled passes, cut). With ``U = 0`` every epoch is a warm-up epoch: the
    "labeled images only" baseline with the same number of iterations as the semi-supervised run.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run draws what the uninterrupted run would.
    The epoch is set by :meth:`set_epoch` (the bundle attaches :class:`common.engines.EPIWarmupHandler`, which calls
    it at every ``EPOCH_STARTED``); a sampler that is never told stays in epoch 1.

    Args:
        num_labeled: ``L`` >= 1.
        num_unlabeled: ``U`` >= 0.
        warmup_epochs: epochs (>= 0) that draw labeled items only. 0: unlabeled items from the first epoch.
        epoch_length: items per epoch (>= 1), default ``L + U``.
        seed: base seed, default 0.

    Raises:
        ValueError: when a count is out of range.

    Examples::

        sampler = WarmupSemiSupervisedSampler(len(labeled), len(unlabeled), warmup_epochs=3)
        loader = DataLoader(ConcatDataset([labeled_ds, unlabeled_ds]), batch_size=8, sampler=sampler,
                            collate_fn=collate_semi_supervised)
    """

    def __init__(
        self,
        num_labeled: int,
        num_unlabeled: int,
        warmup_epochs: int = 0,
        epoch_length: int | None = None,
        seed: int = 0,
    ) -> None:
        for name, value, low in (("num_labeled", num_labeled, 1), ("num_unlabeled", num_unlabeled, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"WarmupSemiSupervisedSampler: {name} must be an integer >= {low}, got {value!r}.")
        if isinstance(warmup_epochs, bool) or int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise ValueError(
                f"WarmupSemiSupervisedSampler: warmup_epochs (epi_warmup_epochs) must be an integer >= 0, "
                f"got {warmup_epochs!r}."
            )
        length = int(num_labeled) + int(num_unlabeled) if epoch_length is None else epoch_length
        if isinstance(length, bool) or int(length) != length or length < 1:
            raise ValueError(
                f"WarmupSemiSupervisedSampler: epoch_length must be an integer >= 1, got {epoch_length!r}."
            )
        self.num_labeled = int(num_labeled)
        self.num_unlabeled = int(num_unlabeled)
        self.warmup_epochs = int(warmup_epochs)
        self.epoch_length = int(length)
        self.seed = int(seed)
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """
        Args:
            epoch: the 1-based epoch whose order the next ``iter()`` draws.
        """
        self.epoch = int(epoch)

    def in_warmup(self, epoch: int | None = None) -> bool:
        """
        Args:
            epoch: 1-based epoch, default the current one.

        Returns:
            whether that epoch draws labeled items only.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        return self.num_unlabeled == 0 or epoch <= self.warmup_epochs

    def indices(self, epoch: int) -> list[int]:
        """
        Args:
            epoch: 1-based epoch.

        Returns:
            the ``epoch_length`` dataset indices of that epoch, in order.
        """
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
        pool = self.num_labeled if self.in_warmup(epoch) else self.num_labeled + self.num_unlabeled
        out: list[int] = []
        while len(out) < self.epoch_length:
            out.extend(torch.randperm(pool, generator=gen).tolist())
        return out[: self.epoch_length]

    def __iter__(self):
        return iter(self.indices(self.epoch))

    def __len__(self) -> int:
        return self.epoch_length


class WarmupSemiSupervisedBatchSampler(WarmupSemiSupervisedSampler):
    """
    Batch sampler (``DataLoader(batch_sampler=...)``) over ``ConcatDataset([labeled, unlabeled])`` with the warm-up
    of :class:`WarmupSemiSupervisedSampler` and, after it, optionally two streams per batch: ``batch_size`` labeled
    items PLUS ``unlabeled_per_batch`` unlabeled items.

    Why two streams: with one mixed stream at 1/4 labels a batch of 8 holds about 2 labeled images after the warm-up,
    so at equal iterations the semi-supervised run sees each labeled image 4 times less often than training on the
    labeled images alone, and in short runs that costs more than the pseudo labels give (measured in the bundle's
    README). Semi-supervised methods usually draw a fixed number of labeled and of unlabeled images per step (e.g.
    FixMatch, Sohn et al., NeurIPS 2020, section 3: ``B`` labeled and ``mu * B`` unlabeled images per batch; the
    ``TwoStreamBatchSampler`` of mean-teacher / UA-MT segmentation code). The LViT paper does not say how its
    batches are formed (the reference code does not train the semi-supervised variant). With ``unlabeled_per_batch
    > 0`` the labeled part of every batch is exactly the batch the labeled-only run (``num_unlabeled = 0``, same
    seed) draws in that epoch, so "labeled only" and "+ EPI" differ only by the unlabeled images added to each
    batch (a step then costs ``(batch_size + unlabeled_per_batch) / batch_size`` times more).

    Epoch layout (epoch ``e``, ``n = ceil(epoch_length / batch_size)`` batches, the last one possibly smaller):

    - warm-up epoch, or ``unlabeled_per_batch == 0``: :meth:`WarmupSemiSupervisedSampler.indices` cut into batches
      of ``batch_size`` (the single mixed stream, exactly what ``DataLoader(sampler=..., batch_size=...)`` gives);
    - later epochs with ``unlabeled_per_batch = m > 0``: batch ``i`` = the ``i``-th ``batch_size`` items of the
      labeled stream (shuffled passes over the ``L`` labeled items drawn with the generator of ``(seed, e)``, as in a
      warm-up epoch) followed by ``m`` items of the unlabeled stream (shuffled passes over the ``U`` unlabeled items,
      a second generator of ``(seed, e)``), so each unlabeled image is drawn about ``n * m / U`` times per epoch.

    Args:
        num_labeled: ``L`` >= 1.
        num_unlabeled: ``U`` >= 0.
        batch_size: labeled items per batch (>= 1), the bundle's ``batch_size``.
        warmup_epochs: epochs (>= 0) that draw labeled items only.
        unlabeled_per_batch: unlabeled items added to each batch after the warm-up (>= 0); 0 (default) keeps the
            single mixed stream.
        epoch_length: labeled-stream items per epoch (>= 1), default ``L + U``.
        seed: base seed, default 0.

    Raises:
        ValueError: when a count is out of range.

    Examples::

        sampler = WarmupSemiSupervisedBatchSampler(40, 120, batch_size=8, warmup_epochs=3, unlabeled_per_batch=8)
        loader = DataLoader(ConcatDataset([labeled_ds, unlabeled_ds]), batch_sampler=sampler,
                            collate_fn=collate_semi_supervised)
    """

    def __init__(
        self,
        num_labeled: int,
        num_unlabeled: int,
        batch_size: int,
        warmup_epochs: int = 0,
        unlabeled_per_batch: int = 0,
        epoch_length: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(num_labeled, num_unlabeled, warmup_epochs, epoch_length, seed)
        for name, value, low in (("batch_size", batch_size, 1), ("unlabeled_per_batch", unlabeled_per_batch, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(
                    f"WarmupSemiSupervisedBatchSampler: {name} must be an integer >= {low}, got {value!r}."
                )
        self.batch_size = int(batch_size)
        self.unlabeled_per_batch = int(unlabeled_per_batch)

    def batches(self, epoch: int) -> list[list[int]]:
        """
        Args:
            epoch: 1-based epoch.

        Returns:
            the epoch's batches of dataset indices (labeled ``0 .. L-1``, unlabeled ``L .. L+U-1``).
        """
        flat = self.indices(epoch)
        if self.in_warmup(epoch) or self.unlabeled_per_batch == 0:
            return [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))  # the warm-up's labeled stream
        labeled: list[int] = []
        while len(labeled) < self.epoch_length:
            labeled.extend(torch.randperm(self.num_labeled, generator=gen).tolist())
        labeled = labeled[: self.epoch_length]
        n_batches = len(self)
        gen_u = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch) + 7_919_000_000)
        unlabeled: list[int] = []
        while len(unlabeled) < n_batches * self.unlabeled_per_batch:
            unlabeled.extend((torch.randperm(self.num_unlabeled, generator=gen_u) + self.num_labeled).tolist())
        m = self.unlabeled_per_batch
        return [
            labeled[i * self.batch_size : (i + 1) * self.batch_size] + unlabeled[i * m : (i + 1) * m]
            for i in range(n_batches)
        ]

    def __iter__(self):
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        return -(-self.epoch_length // self.batch_size)


# MONAI transforms in these modules that are random but keep the pixel frame
_FRAME_PRESERVING = ("RandSimulateLowResolution", "RandSimulateLowResolutiond")
_SPATIAL_MODULES = ("monai.transforms.spatial", "monai.transforms.croppad")


def is_random_spatial(transform: Any) -> bool:
    """
    Whether a transform may move pixels at random (so that a stored pseudo label would no longer line up with the
    image): it is random (``monai.transforms.Randomizable`` / ``RandomizableTrait``) AND at least one of

    - it is a ``LazyTrait`` (MONAI marks every transform that changes the pixel grid as lazy-capable: affine, flip,
      rotate, zoom, crops), or an ``InvertibleTransform`` (MONAI records geometric changes to invert them; this also
      flags ``RandLambdad``, whose function is unknown);
    - its class lives in ``monai.transforms.spatial`` or ``monai.transforms.croppad`` (e.g. ``Rand2DElasticd``,
      ``RandGridDistortiond``, which are neither lazy nor invertible), except ``RandSimulateLowResolution(d)``,
      which zooms down and back up in the same frame.

    Intensity transforms (``RandAdjustContrastd``, ``RandGaussianNoised``, ``RandScaleIntensityd``, ...) are random
    but none of these, and deterministic spatial transforms (``Resized``) are not random. A custom transform that
    moves pixels without any of these marks is not recognised.

    Args:
        transform: a transform object.

    Returns:
        True for a random spatial transform.
    """
    if not isinstance(transform, (Randomizable, RandomizableTrait)):
        return False
    name = type(transform).__name__
    module = type(transform).__module__ or ""
    if name in _FRAME_PRESERVING and module.startswith("monai."):
        return False
    if isinstance(transform, (LazyTrait, InvertibleTransform)):
        return True
    return module.startswith(_SPATIAL_MODULES)


def _walk(transforms: Any, path: str):
    for i, t in enumerate(transforms):
        where = f"{path}[{i}]"
        yield where, t
        inner = getattr(t, "transforms", None)  # Compose, OneOf, SomeOf, RandomOrder
        if isinstance(inner, (list, tuple)):
            yield from _walk(inner, f"{where} ({type(t).__name__})")


def require_no_random_spatial(transforms: Sequence[Any], name: str = "transforms") -> list[Any]:
    """
    Check that no transform of a pipeline (nested ``Compose`` / ``OneOf`` / ``SomeOf`` / ``RandomOrder`` included)
    is a random spatial transform (:func:`is_random_spatial`), and return the pipeline unchanged.

    Used on the unlabeled images of semi-supervised LViT: their EPI pseudo label (eq. 9) is stored in the frame the
    network saw, so a random flip, rotation, affine or crop would average predictions of differently placed images.

    Args:
        transforms: the transforms (objects; ``None`` entries, e.g. disabled config items, are skipped).
        name: how the pipeline is named in the error, e.g. the config key ``"train#unlabeled_random_transforms"``.

    Returns:
        ``list(transforms)`` without ``None`` entries.

    Raises:
        TypeError: when ``transforms`` is not a list or tuple.
        ValueError: naming every random spatial transform found, with its position.

    Examples::

        Compose(require_no_random_spatial([RandAdjustContrastd("image"), RandGaussianNoised("image")], "unlabeled"))
    """
    if not isinstance(transforms, (list, tuple)):
        raise TypeError(f"{name}: expected a list of transforms, got {type(transforms).__name__}.")
    kept = [t for t in transforms if t is not None]
    bad = [f"{where} {type(t).__name__}" for where, t in _walk(kept, name) if is_random_spatial(t)]
    if bad:
        raise ValueError(
            f"{name}: random spatial transforms reach the unlabeled images: {', '.join(bad)}. Their EPI pseudo labels "
            "are stored in the frame the network saw, so only intensity transforms may be random there; remove them "
            "(labeled images may keep geometric augmentation in train#random_transforms)."
        )
    return kept


def _zero_mask(image: Any, template: Any) -> torch.Tensor:
    zeros = torch.zeros((1, *torch.as_tensor(image).shape[1:]), dtype=torch.float32)
    if isinstance(template, MetaTensor):  # MetaTensors only collate with MetaTensors whose meta has the same keys
        return MetaTensor(zeros, meta=copy.deepcopy(dict(template.meta)))
    return zeros


def collate_semi_supervised(
    batch: Sequence[Mapping[str, Any]],
    image_key: str = "image",
    mask_keys: Sequence[str] = ("label", "contrastive_label"),
    index_key: str = "unlabeled_index",
    text_keys: Sequence[str] = ("contrastive_text",),
    float_keys: Sequence[str] = ("contrastive_similarity",),
) -> dict[str, Any]:
    """
    ``collate_fn`` for a DataLoader over labeled AND unlabeled items. Default collation needs every item to have the
    same keys, while labeled items have ``label`` and unlabeled items ``contrastive_label``. This fills the keys an
    item lacks, then calls ``monai.data.list_data_collate``:

    - a missing mask key (``mask_keys``) gets float32 zeros shaped like the item's image with one channel; when the
      other items hold a ``MetaTensor`` there, the zeros are a ``MetaTensor`` with a copy of that meta data (MONAI
      collates MetaTensors only with MetaTensors of the same meta keys). They are placeholders:
      :class:`common.engines.PrepareBatchSemiSupervised` overwrites or ignores them;
    - a missing ``index_key`` gets ``-1`` (labeled);
    - a missing text key (``text_keys``) gets ``""``; a missing number key (``float_keys``) gets ``nan``;
    - when the batch holds an unlabeled item (``index_key`` >= 0), a mask key that NO item has is added to every
      item as zeros (e.g. a batch whose unlabeled items all lack a contrastive label because no labeled text is
      similar, see :func:`assign_contrastive_labels`: their LV term is then skipped).

    Args:
        batch: the items of one batch (dicts after the transforms).
        image_key: key of the image tensor ``(C, *spatial)``, default ``"image"``.
        mask_keys: keys filled with a zero mask, default ``("label", "contrastive_label")``.
        index_key: key filled with -1, default ``"unlabeled_index"``.
        text_keys: keys filled with an empty string, default ``("contrastive_text",)``.
        float_keys: keys filled with ``float("nan")``, default ``("contrastive_similarity",)`` (set on unlabeled
            items by :func:`assign_contrastive_labels`).

    Returns:
        the collated batch.

    Raises:
        KeyError: when an item lacks ``image_key`` or another key that some item of the batch has.

    Examples::

        DataLoader(ConcatDataset([labeled_ds, unlabeled_ds]), batch_size=4, shuffle=True,
                   collate_fn=collate_semi_supervised)
    """
    items = [dict(item) for item in batch]
    keys: list[str] = []
    for item in items:
        keys.extend(k for k in item if k not in keys)
    if any(int(torch.as_tensor(item.get(index_key, -1)).reshape(-1)[0]) >= 0 for item in items):
        keys.extend(k for k in mask_keys if k not in keys)
    for i, item in enumerate(items):
        for key in keys:
            if key in item:
                continue
            if key in mask_keys:
                if image_key not in item:
                    raise KeyError(f"collate_semi_supervised: batch item {i} has no '{image_key}'.")
                item[key] = _zero_mask(item[image_key], next((it[key] for it in items if key in it), None))
            elif key == index_key:
                item[key] = -1
            elif key in text_keys:
                item[key] = ""
            elif key in float_keys:
                item[key] = float("nan")
            else:
                raise KeyError(
                    f"collate_semi_supervised: batch item {i} lacks key '{key}' that other items of the batch have; "
                    "give every item the same keys (or add the key to mask_keys/text_keys/float_keys)."
                )
    return list_data_collate(items)
