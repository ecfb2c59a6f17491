# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Low-data regimes of the BiCLIP paper (section 3.3, Table 2): train on 25 %, 10 %, 5 % or 1 % of the training set.

Interface (used by every bundle, kept stable)
=============================================
One key in every bundle's ``train.json``: ``train_fraction`` (default ``1.0``: the whole training split), e.g.::

    python -m monai.bundle run --config_file bundles/B/configs/train.json --bundle_root bundles/B --train_fraction 0.1

Each bundle reads its training list through :func:`training_subset`::

    "$common.data.training_subset(common.data.load_datalist(@datalist_file, 'training'), @train_fraction, seed=@seed)"

``"train_fraction": 1.0`` is a shared block of ``tests/test_config_blocks.py``: every bundle must have it (a new
bundle copies the key and wraps its training list as above). Only the training split shrinks; validation and test stay whole (the paper keeps "all settings fixed"). In
``bundles/lvit`` the labelled/unlabelled split (``label_fraction``) is then drawn inside the subset.

The draw (deterministic, nested, stratified)
============================================
``k = floor(n * fraction + 0.5)`` items of ``n`` (at least 1), which reproduces the paper's ``#Images`` column
(QaTa-COV19: 5716 training images give 1429, 572, 286, 57; MosMedData+: 2183 give 546, 218, 109, 22).

The items are put in ONE seeded order and every fraction takes a prefix of it, so the subsets are nested for any
fractions (the 1 % set is inside the 5 % set, inside the 10 %, inside the 25 %) and the same seed gives the same
subsets in every bundle and process. With strata (``stratify_key``, default ``"site"`` when every item has one),
the order interleaves the strata: item ``j`` (0-based) of stratum ``g``'s own seeded order gets the rank key
``(j + u) / n_g`` with ``u`` uniform in [0, 1) per stratum, and the items are sorted by that key (a systematic
sample per stratum). A prefix ending at key ``t`` holds ``ceil(t * n_g - u)`` items of stratum ``g``, within one
item of ``t * n_g``, so any prefix of ``k`` items holds about ``k * n_g / n`` of them (proportional allocation, off
by less than two items in the tests), and small fractions do not lose a site by chance. ``stratify_key=None`` disables it.

The items are first sorted by their ``image`` path (then ``label``), so the result does not depend on the
datalist's order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

__all__ = ["LOW_DATA_FRACTIONS", "subset_size", "nested_order", "training_subset"]

#: The paper's low-data regimes (Table 2).
LOW_DATA_FRACTIONS: tuple[float, ...] = (0.25, 0.1, 0.05, 0.01)


def subset_size(n: int, fraction: float) -> int:
    """
    Items kept from ``n`` for ``fraction``: ``floor(n * fraction + 0.5)``, at least 1 when ``n >= 1``.

    Args:
        n: number of training items.
        fraction: share kept, in (0, 1].

    Raises:
        ValueError: when ``fraction`` is not in (0, 1] (naming the key ``train_fraction``).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"key 'train_fraction' must be a number in (0, 1], got {fraction!r}.")
    if n <= 0:
        return 0
    return min(n, max(1, int(math.floor(n * float(fraction) + 0.5))))


def _sort_key(item: Any) -> tuple[str, str]:
    if isinstance(item, dict):
        return str(item.get("image", "")), str(item.get("label", ""))
    return str(item), ""


def nested_order(items: Sequence[Any], seed: int = 0, groups: Sequence[Any] | None = None) -> list[int]:
    """
    The seeded order of which every low-data subset is a prefix (module docstring).

    Args:
        items: the items (dicts with ``image``/``label``, or any values with a stable ``str``).
        seed: random seed, default 0.
        groups: optional stratum label per item (same length); ``None``: no stratification.

    Returns:
        the item indices, in draw order.

    Raises:
        ValueError: when ``groups`` has the wrong length.
    """
    n = len(items)
    if groups is None:
        groups = [None] * n
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} labels for {n} items.")
    by_name = sorted(range(n), key=lambda i: _sort_key(items[i]))
    rng = random.Random(f"train_fraction:{int(seed)}")
    members: dict[str, list[int]] = {}
    for i in by_name:
        members.setdefault("" if groups[i] is None else str(groups[i]), []).append(i)
    keyed: list[tuple[float, float, int]] = []
    for g in sorted(members):
        idx = list(members[g])
        rng.shuffle(idx)
        u = rng.random()
        keyed.extend(((j + u) / len(idx), rng.random(), i) for j, i in enumerate(idx))
    keyed.sort()
    return [i for _, _, i in keyed]


def training_subset(
    items: Sequence[Any], fraction: float = 1.0, seed: int = 0, stratify_key: str | None = "site"
) -> list[Any]:
    """
    The low-data training subset: the first :func:`subset_size` items of :func:`nested_order`, in input order.

    Args:
        items: the training split (datalist entries).
        fraction: ``train_fraction`` in (0, 1]; 1.0 (default) returns all items unchanged.
        seed: random seed (the bundles pass ``@seed``), default 0.
        stratify_key: entry key to stratify by when EVERY entry has it (default ``"site"``); ``None``: never.

    Returns:
        a new list of the kept entries, in their input order.

    Raises:
        ValueError: when ``fraction`` is not in (0, 1].
    """
    k = subset_size(len(items), fraction)
    if k == len(items):
        return list(items)
    groups = None
    if stratify_key and items and all(isinstance(e, dict) and e.get(stratify_key) is not None for e in items):
        groups = [e[stratify_key] for e in items]
    keep = set(nested_order(items, seed=seed, groups=groups)[:k])
    return [e for i, e in enumerate(items) if i in keep]
