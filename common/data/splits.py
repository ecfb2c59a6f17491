# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Deterministic, optionally stratified, hold-out splits (validation drawn from training, test from a pool)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["num_to_draw", "split_by_fraction"]

T = TypeVar("T")


def num_to_draw(n: int, fraction: float) -> int:
    """
    How many of ``n`` items a hold-out of ``fraction`` takes: ``floor(n * fraction + 0.5)`` (half rounds up),
    at least 1 and at most ``n - 1`` when ``n >= 2`` and ``fraction > 0``, so both sides keep an item;
    0 when ``fraction == 0`` or ``n < 2``.

    Args:
        n: number of items.
        fraction: the share to draw, in ``[0, 1)``.

    Raises:
        ValueError: when ``fraction`` is outside ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}.")
    if fraction == 0.0 or n < 2:
        return 0
    return min(max(int(math.floor(n * fraction + 0.5)), 1), n - 1)


def split_by_fraction(
    items: Sequence[T], fraction: float, seed: int = 0, groups: Sequence[str | None] | None = None
) -> tuple[list[T], list[T]]:
    """
    Split ``items`` into a kept part and a drawn part of :func:`num_to_draw` items, deterministically.

    With ``groups`` (e.g. the site of each item) the draw is stratified: each group gives a share proportional to
    its size, the total is kept exact by the largest-remainder rule (ties go to the group whose name sorts
    first; ``None`` is a group of its own and sorts first), then each group is shuffled with one
    ``random.Random(seed)`` visited in sorted group order. Both returned lists keep the input order, so sort
    ``items`` first for a result that does not depend on file-system order.

    Args:
        items: the items, in a deterministic order.
        fraction: the share to draw, in ``[0, 1)``.
        seed: the random seed, default 0.
        groups: optional group label per item (same length as ``items``); ``None`` for no stratification.

    Returns:
        ``(kept, drawn)``.

    Raises:
        ValueError: when ``fraction`` is out of range or ``groups`` has the wrong length.

    Examples::

        >>> kept, drawn = split_by_fraction(list(range(10)), 0.2, seed=0, groups=["a"] * 5 + ["b"] * 5)
        >>> len(drawn), sorted(x // 5 for x in drawn)
        (2, [0, 1])
    """
    n = len(items)
    total = num_to_draw(n, fraction)
    if groups is None:
        groups = [None] * n
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} labels for {n} items.")
    members: dict[str | None, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members, key=lambda g: (g is not None, "" if g is None else str(g)))
    quotas = {g: len(members[g]) * total / n for g in order} if n else {}
    take = {g: int(math.floor(quotas[g])) for g in order}
    left = total - sum(take.values())
    by_remainder = sorted(order, key=lambda g: -(quotas[g] - take[g]))  # stable sort keeps group order on ties
    for g in by_remainder[:left]:
        take[g] += 1
    rng = random.Random(seed)
    drawn_idx: set[int] = set()
    for g in order:
        idx = list(members[g])
        rng.shuffle(idx)
        drawn_idx.update(idx[: take[g]])
    kept = [x for i, x in enumerate(items) if i not in drawn_idx]
    drawn = [x for i, x in enumerate(items) if i in drawn_idx]
    return kept, drawn
