# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Cluster-aware Contrastive Learning (CaCL), C2Seg's stage I objective (paper section 3.2, eq. 1-3;
``/work/shared/papers/c2seg.txt``), and its soft targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cacl_soft_targets", "CaCLLoss"]


def cacl_soft_targets(
    text_features: torch.Tensor, tau: float = 0.07, rho: float = 0.8, debias: bool = True
) -> torch.Tensor:
    """
    CaCL's target distribution ``Y`` (paper section 3.2, "Soft Label Construction", eq. 1).

    1. ``M_ij = cos(l_i, l_j)``, the text-text cosine similarity of the batch's frozen sentence embeddings.
    2. Row-mean debiasing and clipping: ``M'_ij = max(M_ij - mu_i, 0)`` with ``mu_i = (1/B) sum_k M_ik``
       (``debias=False`` skips this step and uses ``M`` itself, an ablation switch; not in the paper).
    3. eq. 1: ``Y^_ij = exp(M'_ij / tau) / sum_k exp(M'_ik / tau)``.
    4. ``Y_ij = rho * Y^_ij + (1 - rho) * 1[i = j]``.

    Every row of ``Y`` sums to 1. Texts with identical embeddings get identical rows of ``Y^`` (equal target mass).

    Args:
        text_features: (B, D_t) sentence embeddings (normalised here, any scale accepted).
        tau: temperature of eq. 1, > 0. Defaults to 0.07 (paper section 4.1).
        rho: weight of the soft targets, in [0, 1]. Defaults to 0.8 (paper section 4.1). ``rho=0`` gives the
            identity (hard InfoNCE targets).
        debias: apply step 2. Defaults to True (paper).

    Returns:
        ``Y`` (B, B), no gradient.

    Raises:
        ValueError: for a non-2-D input, ``tau <= 0`` or ``rho`` outside [0, 1].
    """
    if text_features.dim() != 2:
        raise ValueError(f"text features must be (B, D), got shape {list(text_features.shape)}.")
    if not tau > 0 or not 0.0 <= rho <= 1.0:
        raise ValueError(f"tau must be > 0 and rho in [0, 1], got tau={tau}, rho={rho}.")
    with torch.no_grad():
        normed = F.normalize(text_features.detach().float(), dim=-1)
        sim = normed @ normed.t()
        if debias:
            sim = (sim - sim.mean(dim=1, keepdim=True)).clamp_min(0.0)
        soft = torch.softmax(sim / tau, dim=1)
        eye = torch.eye(sim.shape[0], device=sim.device, dtype=sim.dtype)
        return rho * soft + (1.0 - rho) * eye


class CaCLLoss(nn.Module):
    """
    CaCL's distribution-supervised symmetric InfoNCE (paper section 3.2, eq. 2), or the hard-label InfoNCE of
    Table 3 (e).

    With image embeddings ``v_i`` and text embeddings ``l_j`` (both L2-normalised by
    :class:`common.networks.C2SegPretrainer`), logits ``s_ij = v_i^T l_j``,
    ``P^{v->l}_ij = softmax_j(s_ij / tau)``, ``P^{l->v}_ij = softmax_i(s_ij / tau)`` and the targets ``Y`` of
    :func:`cacl_soft_targets` built from the frozen sentence embeddings (``text_sim_source``):

    ``L = -(1/B) sum_i sum_j [Y_ij log P^{v->l}_ij + Y_ji log P^{l->v}_ij]`` (eq. 2; the sum of both directions,
    not their mean, as written).

    Its gradient is ``dL/ds_ij = (1 / (B tau)) (P^{v->l}_ij - Y_ij + P^{l->v}_ij - Y_ji)``; the paper's eq. 3 writes
    it without the ``1/B`` of eq. 2's mean (a constant factor).

    ``hard=True``: ``Y`` is the identity (one positive per row and column), i.e. the CLIP-style symmetric InfoNCE
    (Table 3 e, "HardCL"); the text similarities are not used. The same result comes from ``rho=0`` (with or
    without debiasing), since ``Y = rho Y^ + (1 - rho) I``. ``rho=1`` is the other end, the pure soft targets
    ``Y = Y^`` (Table 4b's rho = 1.0 row), which are not the identity even for distinct texts (``Y^`` is a
    softmax of finite similarities).

    The targets depend on which samples share a batch, so gradient accumulation over small batches does not
    reproduce a large batch (each small batch has its own ``Y``).

    Called as ``loss(outputs, target)`` so that it plugs into MONAI's ``SupervisedTrainer``: ``outputs`` is the
    network's tuple ``(image_emb (B, D), text_emb (B, D), text_sim_source (B, D_t))``; ``target`` is ignored.
    :attr:`last_terms` records the two directions (``"v2l"``, ``"l2v"``) for
    :class:`common.handlers.LossTermsHandler`.

    Args:
        tau: temperature of the logits (eq. 2) and of the soft targets (eq. 1), > 0. Defaults to 0.07.
        rho: soft-target weight in [0, 1]. Defaults to 0.8.
        debias: row-mean debiasing and clipping of the similarity matrix. Defaults to True.
        hard: hard-label InfoNCE instead of CaCL. Defaults to False.
        target_tau: temperature of eq. 1 if it should differ from ``tau`` (the paper uses one ``tau``); None uses
            ``tau``. Defaults to None.

    Raises:
        ValueError: for ``tau <= 0`` or ``rho`` outside [0, 1]; at call time for outputs that are not three
            tensors of matching batch size and embedding size.
    """

    def __init__(
        self,
        tau: float = 0.07,
        rho: float = 0.8,
        debias: bool = True,
        hard: bool = False,
        target_tau: float | None = None,
    ) -> None:
        super().__init__()
        if not tau > 0 or not 0.0 <= rho <= 1.0:
            raise ValueError(f"tau must be > 0 and rho in [0, 1], got tau={tau}, rho={rho}.")
        if target_tau is not None and not target_tau > 0:
            raise ValueError(f"target_tau must be > 0, got {target_tau}.")
        self.tau = float(tau)
        self.rho = float(rho)
        self.debias = bool(debias)
        self.hard = bool(hard)
        self.target_tau = float(target_tau) if target_tau is not None else self.tau
        self.last_terms: dict[str, float] = {}

    def targets(self, text_sim_source: torch.Tensor) -> torch.Tensor:
        """The target matrix ``Y`` (B, B) for a batch of frozen sentence embeddings (identity when ``hard``).

        Args:
            text_sim_source: (B, D_t).
        """
        if self.hard:
            b = text_sim_source.shape[0]
            return torch.eye(b, device=text_sim_source.device, dtype=torch.float32)
        return cacl_soft_targets(text_sim_source, self.target_tau, self.rho, self.debias)

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            outputs: ``(image_emb (B, D), text_emb (B, D), text_sim_source (B, D_t))``.
            target: ignored (MONAI's trainer passes the batch label).

        Returns:
            the scalar loss of eq. 2.
        """
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 3:
            raise ValueError(
                "CaCLLoss expects the stage I network's outputs (image_emb, text_emb, text_sim_source), got "
                f"{type(outputs).__name__}{'' if not isinstance(outputs, (tuple, list)) else f' of {len(outputs)}'}."
            )
        image_emb, text_emb, source = outputs
        if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or source.shape[0] != image_emb.shape[0]:
            raise ValueError(
                f"CaCLLoss needs image_emb and text_emb of the same shape (B, D) and text_sim_source (B, D_t); got "
                f"{list(image_emb.shape)}, {list(text_emb.shape)}, {list(source.shape)}."
            )
        logits = (image_emb @ text_emb.t()).float() / self.tau  # s_ij / tau
        y = self.targets(source).to(logits.device)
        b = logits.shape[0]
        v2l = -(y * torch.log_softmax(logits, dim=1)).sum() / b  # sum_ij Y_ij log softmax_j
        l2v = -(y.t() * torch.log_softmax(logits, dim=0)).sum() / b  # sum_ij Y_ji log softmax_i
        self.last_terms = {"v2l": float(v2l.detach()), "l2v": float(l2v.detach())}
        return v2l + l2v
