# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
MCDRL (Liang et al., arXiv 2508.05008, ``/work/shared/papers/mcdrl.txt``): CLIP region selection (MTRS), a confounder
dictionary and a causal intervention network for domain-generalisable lesion segmentation. The network's input is
the image alone: its text (class prompts and confounder prompts) is built in and encoded once.
"""

from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from .mcdrl_blocks import CausalInterventionNetwork, MCDRLSegmentationHead, region_similarity, select_target_regions

__all__ = ["MCDRL"]

_UNSELECTED = ("features", "zeros")
_OUTPUTS = ("classes", "lesion")


class MCDRL(nn.Module):
    """
    MCDRL (paper section 4, Fig. 3) for an image of S_h x S_w pixels:

    1. ``C, F_vis = encoder(image)``: the dense CLIP map (B, d, h, w) in the joint space and the image-level feature
       (B, d) (section 4.1; :func:`~common.networks.mcdrl_blocks.clip_dense_encoder`).
    2. MTRS (section 4.1, eq. 6): ``S_hat = max_k cos(C[h, w], e_k)``, the top ``N = alpha * h * w`` locations, the
       selected features ``F`` (B, N, d). With ``mtrs=False`` (Table 3, "w/o MTRS") every location is selected.
    3. CDRL (section 4.2, eq. 7-8): ``F_ca = A(F, Z)``, cross-attention over the M confounder embeddings
       (:class:`~common.networks.mcdrl_blocks.CausalInterventionNetwork`). With ``cdrl=False`` (Table 3, "w/o
       CDRL"), and while the progressive schedule has not switched the intervention on (section 5.1.3, see
       :meth:`set_intervention` and :class:`common.handlers.InterventionScheduleHandler`), ``F_ca = F``.
    4. Back on the grid: the N rows of ``F_ca`` are written at their locations. The UNSELECTED locations carry
       their original CLIP features ``C[h, w]`` by default (``unselected="features"``): the head must also see the
       locations MTRS left out, because any lesion pixel outside the selection (early in training, or a lesion less
       similar to its prompt than some background) would otherwise be unrecoverable, and the boundary needs context.
       ``unselected="zeros"`` is the paper's literal ``C_tilde = C * S^mask`` (zeros elsewhere).
    5. ``H`` (:class:`~common.networks.mcdrl_blocks.MCDRLSegmentationHead`) decodes K + 1 logits at the input size:
       channel 0 is background, channel k + 1 is lesion class k (``class_names`` order). Softmax over the K + 1
       channels gives ``P`` of section 4.2.2 plus the background the paper's ``Y in R^{H x W x K}`` leaves implicit.

    Prompt embeddings (``e_k``, ``Z``, ``t_{k,m}``) are persistent buffers: encoded once before training
    (:func:`~common.networks.mcdrl_blocks.encode_mcdrl_prompts`), saved with the checkpoint, never re-encoded; the
    network holds no text encoder.

    Outputs: in training mode (eager) a dict for :class:`common.losses.MCDRLLoss`: ``logits`` (B, K + 1, S_h, S_w),
    ``pooled`` (B, d) = ``Pool(F_ca)`` (mean over the N selected rows, eq. 11), ``class_similarity`` (B, K) =
    ``cos(e_k, F_vis)`` (eq. 12), ``causal_targets`` (K, d) = ``mean_m t_{k,m}`` (eq. 11) and ``intervened``
    (a 0-dim bool tensor). In eval mode (and TorchScript) a tensor: ``output="classes"``: the (B, K + 1, S_h, S_w)
    logits; ``output="lesion"``: (B, 1, S_h, S_w) lesion-vs-background logit ``logsumexp(z_1..z_K) - z_0``, whose
    sigmoid is ``P(lesion) = 1 - P(background)`` (what the shared inference post-processing thresholds at 0.5).

    Args:
        encoder: a dense CLIP encoder returning ``(C, F_vis)``, with ``out_dim`` and ``stride`` attributes.
        class_embeddings: (K, d) ``e_k``.
        confounder_embeddings: (M, d) ``Z``.
        class_confounder_embeddings: (K, M, d) ``t_{k,m}``.
        alpha: MTRS sparsity in (0, 1] (section 4.1; the paper gives no value).
        mtrs: use MTRS (False: select all locations; Table 3).
        cdrl: use the causal intervention (False: Table 3 "w/o CDRL"; the intervention is never switched on).
        intervention_layers: layers of the intervention network, 1-5 in Table 5.
        intervention_heads: attention heads of each layer.
        intervention_mlp_ratio: MLP size of each layer as a multiple of d.
        head_channels: channels of the first head stage.
        unselected: what the unselected locations carry, ``"features"`` or ``"zeros"`` (see 4. above).
        output: eval-mode output, ``"classes"`` or ``"lesion"``.
        intervention_active: initial state of the progressive switch (the schedule handler sets it per epoch).

    Raises:
        ValueError: for inconsistent embedding shapes, ``alpha`` outside (0, 1], or an unknown option.
    """

    def __init__(
        self,
        encoder: nn.Module,
        class_embeddings: torch.Tensor,
        confounder_embeddings: torch.Tensor,
        class_confounder_embeddings: torch.Tensor,
        alpha: float = 0.5,
        mtrs: bool = True,
        cdrl: bool = True,
        intervention_layers: int = 3,
        intervention_heads: int = 8,
        intervention_mlp_ratio: float = 4.0,
        head_channels: int = 256,
        unselected: str = "features",
        output: str = "classes",
        intervention_active: bool = True,
    ) -> None:
        super().__init__()
        dim = int(encoder.out_dim)
        e, z, t = class_embeddings, confounder_embeddings, class_confounder_embeddings
        if e.dim() != 2 or z.dim() != 2 or t.dim() != 3 or e.shape[1] != dim or z.shape[1] != dim:
            raise ValueError(
                f"prompt embeddings must be (K, {dim}), (M, {dim}) and (K, M, {dim}) for an encoder of size {dim}; "
                f"got {list(e.shape)}, {list(z.shape)}, {list(t.shape)}."
            )
        if tuple(t.shape) != (e.shape[0], z.shape[0], dim):
            raise ValueError(
                f"class_confounder_embeddings must be {[e.shape[0], z.shape[0], dim]}, got {list(t.shape)}."
            )
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"alpha (MTRS sparsity) must be in (0, 1], got {alpha}.")
        if unselected not in _UNSELECTED:
            raise ValueError(f"unselected must be one of {_UNSELECTED}, got {unselected!r}.")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}.")
        self.encoder = encoder
        self.num_classes = int(e.shape[0])
        self.alpha = float(alpha)
        self.mtrs = bool(mtrs)
        self.cdrl = bool(cdrl)
        self.zero_unselected = unselected == "zeros"
        self.lesion_output = output == "lesion"
        self.register_buffer("class_embeddings", e.detach().clone().float())
        self.register_buffer("confounder_embeddings", z.detach().clone().float())
        self.register_buffer("class_confounder_embeddings", t.detach().clone().float())
        self.register_buffer("intervention_on", torch.tensor(bool(intervention_active) and self.cdrl))
        self.intervention = CausalInterventionNetwork(
            dim, intervention_layers, intervention_heads, intervention_mlp_ratio
        )
        self.head = MCDRLSegmentationHead(dim, self.num_classes + 1, int(encoder.stride), head_channels)

    @torch.jit.ignore
    def set_intervention(self, active: bool) -> None:
        """
        Switch the causal intervention (and with it L_causal) on or off (progressive schedule, section 5.1.3).
        Always off with ``cdrl=False``. The state is a buffer, so a checkpoint remembers it.

        Args:
            active: the new state.
        """
        self.intervention_on.fill_(bool(active) and self.cdrl)

    def _features(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        dense, image_feature = self.encoder(image)
        batch, dim, height, width = dense.shape
        tokens = dense.flatten(2).transpose(1, 2)  # (B, L, d), L = h * w row-major
        if self.mtrs:
            index = select_target_regions(region_similarity(tokens, self.class_embeddings), self.alpha)
        else:
            index = torch.arange(height * width, device=tokens.device).unsqueeze(0).expand(batch, -1)
        gather = index.unsqueeze(-1).expand(-1, -1, dim)
        selected = torch.gather(tokens, 1, gather)  # F, (B, N, d)
        intervened = bool(self.intervention_on)
        if intervened:
            selected = self.intervention(selected, self.confounder_embeddings)  # F_ca, eq. 8
        base = torch.zeros_like(tokens) if self.zero_unselected else tokens
        grid = base.scatter(1, gather, selected).transpose(1, 2).reshape(batch, dim, height, width)
        logits = self.head(grid, image.shape[2], image.shape[3])
        return {
            "logits": logits,
            "pooled": selected.mean(dim=1),
            "image_feature": image_feature,
            "intervened": self.intervention_on.clone(),
        }

    @torch.jit.unused
    def _training_outputs(self, out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        text = nn.functional.normalize(self.class_embeddings, dim=-1)
        out["class_similarity"] = nn.functional.normalize(out["image_feature"], dim=-1) @ text.t()
        out["causal_targets"] = self.class_confounder_embeddings.mean(dim=1)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: (B, 3, S_h, S_w) CLIP-normalised images, sides multiples of the encoder stride.

        Returns:
            see the class docstring (a dict in eager training mode, a tensor otherwise).
        """
        out = self._features(image)
        if not torch.jit.is_scripting():
            if self.training:
                return self._training_outputs(out)  # type: ignore[return-value]
        logits = out["logits"]
        if self.lesion_output:
            return torch.logsumexp(logits[:, 1:], dim=1, keepdim=True) - logits[:, :1]
        return logits
