# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""A weighted sum of named loss terms that remembers the value of each term for logging."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["WeightedSumLoss"]


class WeightedSumLoss(nn.Module):
    """
    ``L = sum_k w_k * L_k(input, target)`` over named terms, recording every term.

    Every paper in this collection trains with a sum of several terms (LViT eq. 16-17: Dice + CE and the LV loss;
    CausalCLIPSeg eq. 3-4: L_c - lambda * L_s; BiCLIP: Dice-CE + L1 + cosine terms). A single scalar hides which
    term moves, so this module keeps the detached value of each weighted term of the last call in
    :attr:`last_terms` (plain floats), which :class:`common.handlers.LossTermsHandler` turns into per-epoch
    metrics (``loss_<name>``) for the StatsHandler and TensorBoard.

    Args:
        terms: mapping from a term name (used in the logs, e.g. ``"dice"``) to a loss module called as
            ``term(input, target)`` and returning a scalar tensor. Names must be non-empty identifiers.
        weights: mapping from term name to its weight ``w_k``; a term missing from ``weights`` has weight 1.0.
            Negative weights are allowed (the adversarial terms of CausalCLIPSeg). Keys that are not term names
            raise a ``KeyError``.

    Raises:
        ValueError: when ``terms`` is empty or a name is not an identifier.
        KeyError: when ``weights`` names a term that does not exist.

    Examples::

        from monai.losses import DiceLoss
        loss = WeightedSumLoss({"dice": DiceLoss(sigmoid=True), "bce": torch.nn.BCEWithLogitsLoss()},
                               weights={"dice": 0.5, "bce": 0.5})
        value = loss(logits, target)   # 0.5 * dice + 0.5 * bce
        loss.last_terms                # {"dice": 0.31, "bce": 0.12} (weighted values)
    """

    def __init__(self, terms: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSumLoss needs at least one term.")
        for name in terms:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"loss term name {name!r} must be a non-empty identifier (it names a log key).")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise KeyError(f"weights given for unknown loss terms {unknown}; terms are {sorted(terms)}.")
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights.get(name, 1.0)) for name in terms}
        self.last_terms: dict[str, float] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """
        Args:
            input: the network output passed to every term (e.g. logits of shape (B, 1, H, W)).
            target: the ground truth passed to every term (e.g. a binary mask of shape (B, 1, H, W)).

        Returns:
            the scalar weighted sum.
        """
        total: torch.Tensor | None = None
        last: dict[str, float] = {}
        for name, term in self.terms.items():
            value = self.weights[name] * term(input, target)
            last[name] = float(value.detach())
            total = value if total is None else total + value
        self.last_terms = last
        return total  # type: ignore[return-value]
