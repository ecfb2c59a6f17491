# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Data side of semi-supervised LViT: the labeled/unlabeled split, the choice of a contrastive label for every unlabeled
image by text similarity (LViT section 3.3, eq. 13 / appendix D eq. 25), a default offline text featurizer, and a
collate function for batches that mix labeled and unlabeled items.
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

from common.data.splits import split_by_fraction

__all__ = ["split_labeled", "assign_contrastive_labels", "bag_of_words_features", "collate_semi_supervised"]

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
) -> list[dict[str, Any]]:
    """
    Give every unlabeled item the contrastive label of LViT's LV loss (section 3.3, appendix D): the mask of the
    labeled item whose text is most similar, by the cosine similarity of text feature vectors (eq. 13 / 25).

    Sets ``"contrastive_label"`` (the chosen item's ``label`` path) and ``"contrastive_text"`` (its text) on a copy of
    each unlabeled item. Ties (exactly equal similarities) go to the lowest index of ``labeled``; in particular, a
    text sharing no feature with any labeled text (every similarity 0) gets ``labeled[0]``, and the number of such
    items is logged as a warning. A zero feature vector has similarity 0 with everything.

    The paper uses the labeled masks directly for MoNuSeg and, for QaTa-COV19, masks drawn for structured template
    sentences (the reference repository's ``LV_loss/LV_loss.xlsx``, 14 sentences and masks, method_notes §1.3); pass
    such templates as ``labeled`` (dicts with ``text`` and ``label``) to follow that variant.

    Args:
        unlabeled: unlabeled items with a non-empty ``text``.
        labeled: candidate items with a non-empty ``text`` and a ``label`` (path or array), at least one.
        featurizer: callable mapping a list of texts to an ``(N, D)`` array-like; it is called ONCE with the labeled
            texts followed by the unlabeled texts (so a vocabulary is shared). Default :func:`bag_of_words_features`.
            Any other text embedding works, e.g. mean BERT token vectors.
        text_key: item key of the text, default ``"text"``.
        label_key: key of the mask in ``labeled``, default ``"label"``.
        chunk_size: unlabeled rows per similarity block (bounds memory to ``chunk_size * len(labeled)``), default 1024.

    Returns:
        the unlabeled items (new dicts, input order) with ``contrastive_label`` and ``contrastive_text``.

    Raises:
        ValueError: when ``labeled`` is empty, an item lacks a non-empty text or a labeled item lacks ``label``, or the
            featurizer's output does not have one finite row per text.

    Examples::

        unlabeled = assign_contrastive_labels(unlabeled, labeled)
        unlabeled[0]["contrastive_label"]  # label path of the labeled item with the most similar description
    """
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
    unmatched = int((best_sim <= 0).sum())
    if unmatched:
        logger.warning(
            f"assign_contrastive_labels: {unmatched} of {len(unlabeled)} unlabeled texts share no feature with any "
            "labeled text; they get the first labeled item's mask as contrastive label."
        )
    out = []
    for item, j in zip(unlabeled, best.tolist()):
        out.append({**item, "contrastive_label": labeled[j][label_key], "contrastive_text": labeled[j][text_key]})
    return out


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
    - a missing text key (``text_keys``) gets ``""``.

    Args:
        batch: the items of one batch (dicts after the transforms).
        image_key: key of the image tensor ``(C, *spatial)``, default ``"image"``.
        mask_keys: keys filled with a zero mask, default ``("label", "contrastive_label")``.
        index_key: key filled with -1, default ``"unlabeled_index"``.
        text_keys: keys filled with an empty string, default ``("contrastive_text",)``.

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
    for i, item in enumerate(items):
        for key in keys:
            if key in item:
                continue
            if key in mask_keys:
                if image_key not in item:
                    raise KeyError(f"collate_semi_supervised: batch item {i} has no '{image_key}'.")
                item[key] = _zero_mask(item[image_key], next(it[key] for it in items if key in it))
            elif key == index_key:
                item[key] = -1
            elif key in text_keys:
                item[key] = ""
            else:
                raise KeyError(
                    f"collate_semi_supervised: batch item {i} lacks key '{key}' that other items of the batch have; "
                    "give every item the same keys (or add the key to mask_keys/text_keys)."
                )
    return list_data_collate(items)
