# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Building blocks of MCDRL (Liang et al., "Multimodal Causality-Driven Representation Learning for Generalizable
Medical Image Segmentation", arXiv 2508.05008; text in ``/work/shared/papers/mcdrl.txt``; no public code exists).

- :class:`ViTDenseEncoder` / :class:`ResNetDenseEncoder` (:func:`clip_dense_encoder` picks one): CLIP's vision
  encoder as a dense feature map ``C`` in the joint image-text space (section 4.1) plus the image-level feature
  ``F_vis`` of eq. 12.
- :func:`region_similarity` and :func:`select_target_regions`: Multimodal Target Region Selection (MTRS,
  section 4.1, eq. 6, the max over classes and the top ``alpha * H * W`` locations).
- :class:`CausalInterventionLayer` / :class:`CausalInterventionNetwork`: the causal intervention ``A(F, Z)`` as
  cross-attention of the selected features over the confounder dictionary (section 4.2.2, eq. 7-8; depth: Table 5).
- :class:`MCDRLSegmentationHead`: the segmentation head ``H`` (section 4.2.2, "P = H(F_ca)"; the paper does not
  describe it, see the class docstring).
- :func:`encode_mcdrl_prompts`: the class prompts ``e_k`` (section 4.1), the confounder dictionary ``Z``
  (section 4.2.1) and the class-with-domain prompts ``t_{k,m}`` (eq. 11), encoded once by CLIP's text encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .clip_encoders import CLIPImageEncoder

__all__ = [
    "CLASS_PROMPT_TEMPLATE",
    "CONFOUNDER_PROMPT_TEMPLATE",
    "CLASS_CONFOUNDER_PROMPT_TEMPLATE",
    "DEFAULT_CONFOUNDERS",
    "CausalInterventionLayer",
    "CausalInterventionNetwork",
    "MCDRLSegmentationHead",
    "ResNetDenseEncoder",
    "ViTDenseEncoder",
    "clip_dense_encoder",
    "encode_mcdrl_prompts",
    "region_similarity",
    "select_target_regions",
]

CLASS_PROMPT_TEMPLATE = "A {} in an endoscopic image"
"""Class prompt of section 4.1 (``e_k``, MTRS and eq. 12): "A {class_k} in an endoscopic image"."""

CONFOUNDER_PROMPT_TEMPLATE = "An endoscopy image with {}"
"""Confounder prompt of section 4.2.1 (``z_m``): "An endoscopy image with {domain_n}"."""

CLASS_CONFOUNDER_PROMPT_TEMPLATE = "A {} with {}"
"""Class-with-domain prompt of eq. 11 (``t_{k,m}``): "A [class_k] with [domain_m]"."""

DEFAULT_CONFOUNDERS: tuple[str, ...] = (
    # one per category in turn, (i) view quality, (ii) illumination, (iii) imaging technique, (iv) distance,
    # (v) surface interference, so that the first M of the list (Table 4: M = 3 ... 15) spread over the categories
    "motion blur",
    "bright lighting",
    "narrow-band imaging",
    "a close-up view",
    "mucus",
    "imaging artifacts",
    "dim lighting",
    "white-light imaging",
    "a distant view",
    "blood",
    "uneven lighting",
    "specular reflection",
)
"""The M = 12 confounders of section 4.2.1, over its five categories. The paper names the categories and gives
examples for each ("blur, artifacts"; "bright, dim, uneven lighting"; "narrow-band imaging, white-light imaging";
"close-up, distant view"; "mucus, blood, reflection") but not its twelve prompts; these are exactly those twelve
examples (2 + 3 + 2 + 2 + 3), worded to complete the template, ordered round-robin over the categories."""


class ViTDenseEncoder(nn.Module):
    """
    A CLIP ViT image tower (open_clip ``VisionTransformer``) as a dense feature map in the joint space.

    The paper asks for a dense map ``C in R^{H x W x d}`` from CLIP's vision encoder (section 4.1) without saying how
    a ViT gives one. Here every patch token is treated as CLIP treats the class token: ``conv1`` patch embedding,
    the class token prepended, positional embedding added (its grid part resized bicubically when the input is not
    ``visual.image_size``), ``ln_pre``, the Transformer, then ``ln_post`` and ``@ proj`` applied to EVERY token. The
    patch tokens give ``C`` (``d = proj`` columns, the joint-space size, 512 for ViT-B/16); the class token gives the
    image-level feature ``F_vis`` of eq. 12, which is exactly CLIP's image embedding. (MaskCLIP instead takes the last
    block's value embeddings; the choice here keeps CLIP's forward pass unchanged.) Patch dropout is not applied.

    Args:
        visual: ``clip_model.visual`` of an open_clip CLIP model with a ``VisionTransformer`` tower (ViT-B/16,
            ViT-L/14, or a JSON config with ``vision_cfg.patch_size``), class-token pooling and a projection.

    Attributes:
        out_dim: ``d``, the joint-space size.
        stride: the patch size (input pixels per feature location along a side).

    Raises:
        TypeError: when ``visual`` is not an open_clip ``VisionTransformer`` with ``proj``, ``class_embedding`` and
            a learnable positional embedding.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise TypeError(f"ViTDenseEncoder needs an open_clip VisionTransformer, got {type(visual).__name__}.")
        if getattr(visual, "attn_pool", None) is not None or visual.proj is None:
            raise TypeError("ViTDenseEncoder needs a ViT with class-token pooling and a projection (CLIP's own).")
        if not isinstance(visual.positional_embedding, nn.Parameter):
            raise TypeError("ViTDenseEncoder needs a learnable positional embedding (CLIP's).")
        self.visual = visual
        self.grid_h = int(visual.grid_size[0])
        self.grid_w = int(visual.grid_size[1])
        self.stride = int(visual.patch_size[0])
        self.in_channels = int(visual.conv1.in_channels)
        self.out_dim = int(visual.proj.shape[1])

    def positional_embedding(self, height: int, width: int) -> torch.Tensor:
        """
        Args:
            height: token rows of the input.
            width: token columns of the input.

        Returns:
            (1 + height * width, width of the ViT): the class row, then the grid rows resized bicubically
            (``align_corners=False``) from the CLIP grid when it differs.
        """
        table = self.visual.positional_embedding
        if height == self.grid_h and width == self.grid_w:
            return table
        channels = table.shape[1]
        grid = table[1:].reshape(1, self.grid_h, self.grid_w, channels).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([table[:1], grid.reshape(channels, height * width).transpose(0, 1)], dim=0)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image: (B, 3, S_h, S_w) CLIP-normalised images, S_h and S_w multiples of the patch size.

        Returns:
            ``(C, F_vis)``: (B, d, S_h / patch, S_w / patch) and (B, d).

        Raises:
            ValueError: for a wrong channel count or a size that is not a multiple of the patch size.
        """
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {list(image.shape)}.")
        if image.shape[2] % self.stride != 0 or image.shape[3] % self.stride != 0:
            raise ValueError(
                f"image height and width must be multiples of the ViT patch size {self.stride}, got "
                f"{image.shape[2]} x {image.shape[3]}."
            )
        visual = self.visual
        x = visual.conv1(image)
        batch, width, height, cols = x.shape
        x = x.reshape(batch, width, height * cols).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(batch, 1, width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(height, cols).to(x.dtype)
        x = visual.ln_pre(x)
        x = visual.transformer(x)
        x = visual.ln_post(x) @ visual.proj  # every token into the joint space
        dense = x[:, 1:].transpose(1, 2).reshape(batch, self.out_dim, height, cols)
        return dense, x[:, 0]


class ResNetDenseEncoder(nn.Module):
    """
    A CLIP ModifiedResNet tower (RN50, RN101) as a dense joint-space map, through
    :class:`~common.networks.clip_encoders.CLIPImageEncoder`.

    ``C`` is :class:`CLIPImageEncoder`'s ``v5``: CLIP's attention pooling applied to every ``layer4`` position
    (stride 32, ``embed_dim`` channels, the joint space), with that encoder's ``connect`` residual and ReLU (the CRIS
    design the project already uses; the residual starts from random weights, so a pretrained ``C`` is CLIP's map
    plus a learnt correction). ``F_vis`` is CLIP's own image embedding, ``visual.attnpool(layer4)``.

    Args:
        visual: ``clip_model.visual`` of an open_clip CLIP model with a ``ModifiedResNet`` tower.

    Attributes:
        out_dim: ``d``, the joint-space size (1024 for RN50).
        stride: 32.

    Raises:
        TypeError: when ``visual`` is not a ``ModifiedResNet`` (raised by :class:`CLIPImageEncoder`).
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.encoder = CLIPImageEncoder(visual)
        self.out_dim = int(self.encoder.out_channels[2])
        self.stride = 32

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image: (B, 3, S_h, S_w) CLIP-normalised images, S_h and S_w multiples of 32.

        Returns:
            ``(C, F_vis)``: (B, d, S_h / 32, S_w / 32) and (B, d).
        """
        if image.dim() != 4 or image.shape[2] % 32 != 0 or image.shape[3] % 32 != 0:
            raise ValueError(f"expected images (B, 3, H, W) with H, W multiples of 32, got {list(image.shape)}.")
        visual = self.encoder.visual
        x = visual.layer3(visual.layer2(visual.layer1(visual.stem(image))))
        x = visual.layer4(x)
        return self.encoder.attention_map(x), visual.attnpool(x)


def clip_dense_encoder(visual: nn.Module) -> nn.Module:
    """
    The dense encoder for a CLIP image tower.

    Args:
        visual: ``clip_model.visual`` (open_clip ``VisionTransformer`` or ``ModifiedResNet``).

    Returns:
        a :class:`ViTDenseEncoder` or :class:`ResNetDenseEncoder`.

    Raises:
        TypeError: for any other tower.
    """
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return ViTDenseEncoder(visual)
    if isinstance(visual, ModifiedResNet):
        return ResNetDenseEncoder(visual)
    raise TypeError(f"MCDRL supports CLIP ViT and ModifiedResNet image towers, got {type(visual).__name__}.")


def region_similarity(tokens: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """
    The unified similarity map of MTRS (section 4.1): eq. 6, ``S[h, w, k] = C[h, w] . e_k / (|C[h, w]| |e_k|)``,
    then ``S_hat[h, w] = max_k S[h, w, k]``.

    Args:
        tokens: (B, L, d) the dense map ``C`` flattened over its L = H * W locations (row-major).
        class_embeddings: (K, d) the class prompt embeddings ``e_k``.

    Returns:
        (B, L) ``S_hat``.
    """
    similarity = F.normalize(tokens, dim=-1) @ F.normalize(class_embeddings, dim=-1).t()  # (B, L, K), eq. 6
    return similarity.max(dim=-1).values


def select_target_regions(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """
    The binary mask ``S^mask`` of MTRS (section 4.1) as indices: the ``N = alpha * H * W`` locations of highest
    ``S_hat``, rounded to the nearest integer and at least 1; ties are broken by ``torch.topk``.

    Args:
        scores: (B, L) ``S_hat`` from :func:`region_similarity`.
        alpha: the sparsity ``alpha`` in (0, 1].

    Returns:
        (B, N) int64 indices into L, in decreasing order of score.
    """
    length = int(scores.shape[1])  # a Python int also under tracing (ONNX export), where the size is a tensor
    count = min(length, max(1, int(round(alpha * length))))
    return torch.topk(scores, count, dim=1).indices


class CausalInterventionLayer(nn.Module):
    """
    One layer of the causal intervention network ``A(F, Z)`` (section 4.2.2, eq. 8: ``F_ca = Attn(F, Z)``).

    The paper specifies a cross-attention of the selected features F (queries) over the confounder dictionary Z
    (keys and values) and a stack of 1 to 5 such layers (Table 5), not the layer itself. This is the cross-attention
    block of a pre-norm Transformer decoder::

        F <- F + MHA(LN_q(F), LN_z(Z), LN_z(Z))        (eq. 8, the attention over the M confounders)
        F <- F + MLP(LN(F))                            (GELU MLP, hidden mlp_ratio * d)

    The residual is needed: without it every output would be a convex combination of the M projected dictionary
    entries, the same M vectors for every location, and no segmentation information would survive.

    Args:
        dim: feature size d (that of F and of Z).
        num_heads: attention heads (d must be divisible by it).
        mlp_ratio: hidden size of the MLP as a multiple of d.
        dropout: attention and MLP dropout.
    """

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"the feature size {dim} is not divisible by intervention_heads={num_heads}.")
        hidden = int(round(dim * mlp_ratio))
        self.norm_q = nn.LayerNorm(dim)
        self.norm_z = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, features: torch.Tensor, confounders: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: (B, N, d) the selected features F.
            confounders: (B, M, d) the confounder dictionary Z (the same for every image).

        Returns:
            (B, N, d).
        """
        z = self.norm_z(confounders)
        attended, _ = self.attn(self.norm_q(features), z, z, need_weights=False)
        features = features + attended
        return features + self.mlp(self.norm_mlp(features))


class CausalInterventionNetwork(nn.Module):
    """
    The causal intervention network ``A(., .)`` of eq. 7-8: ``do(F) ~ E_z[A(F, z)] ~ A(F, Z) = Attn(F, Z)``, a stack
    of ``num_layers`` :class:`CausalInterventionLayer` (Table 5: 1 to 5 layers, 3 by default) and a final LayerNorm.

    Args:
        dim: feature size d.
        num_layers: number of cross-attention layers (>= 1).
        num_heads: attention heads per layer.
        mlp_ratio: MLP hidden size as a multiple of d.
        dropout: attention and MLP dropout.
    """

    def __init__(
        self, dim: int, num_layers: int = 3, num_heads: int = 8, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"intervention_layers must be at least 1, got {num_layers}.")
        self.layers = nn.ModuleList(
            [CausalInterventionLayer(dim, num_heads, mlp_ratio, dropout) for _ in range(int(num_layers))]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, confounders: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: (B, N, d) the selected features F.
            confounders: (M, d) the dictionary Z.

        Returns:
            (B, N, d) ``F_ca``.
        """
        z = confounders.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            features = layer(features, z)
        return self.norm(features)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MCDRLSegmentationHead(nn.Module):
    """
    The segmentation head ``H`` (section 4.2.2: ``P = H(F_ca)``, ``P in [0, 1]^{H x W x K}``). The paper gives no
    architecture; this is a progressive-upsampling convolutional decoder (the SETR-PUP pattern): a 3x3
    ConvBNReLU to ``channels``, then ``floor(log2(stride))`` stages of (bilinear x2, 3x3 ConvBNReLU, channels halved
    down to at least 16), a 1x1 convolution to ``num_outputs`` logits, and a final bilinear resize to the input size
    (exact for any stride, e.g. 14 for ViT-L/14).

    Args:
        in_channels: d, the channels of the feature grid.
        num_outputs: output channels (K lesion classes + background).
        stride: input pixels per feature location along a side (the encoder's).
        channels: channels of the first stage.
    """

    def __init__(self, in_channels: int, num_outputs: int, stride: int, channels: int = 256) -> None:
        super().__init__()
        stages = [_conv_bn_relu(in_channels, channels)]
        width = channels
        for _ in range(max(0, int(math.floor(math.log2(max(1, stride)))))):
            out = max(16, width // 2)
            stages.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="bilinear"), _conv_bn_relu(width, out)))
            width = out
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Conv2d(width, num_outputs, 1)

    def forward(self, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """
        Args:
            grid: (B, d, h, w) the feature grid.
            height: output rows (the input image's).
            width: output columns.

        Returns:
            (B, num_outputs, height, width) logits.
        """
        logits = self.classifier(self.stages(grid))
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)


@torch.no_grad()
def encode_mcdrl_prompts(
    clip_model: nn.Module,
    class_names: Sequence[str],
    confounders: Sequence[str] = DEFAULT_CONFOUNDERS,
    num_confounders: int | None = None,
    class_template: str = CLASS_PROMPT_TEMPLATE,
    confounder_template: str = CONFOUNDER_PROMPT_TEMPLATE,
    class_confounder_template: str = CLASS_CONFOUNDER_PROMPT_TEMPLATE,
) -> Dict[str, torch.Tensor]:
    """
    Encode MCDRL's prompts ONCE with CLIP's text encoder (``clip_model.encode_text``, the projected end-of-text
    feature, not normalised); the network stores the results as buffers and never re-encodes them.

    Args:
        clip_model: an open_clip CLIP model (its text tower; the model is put back in its previous mode).
        class_names: the K lesion classes, e.g. ``("polyp", "tumor", "inflammation", "nodule", "cyst")``.
        confounders: the M domain phrases of the confounder dictionary (section 4.2.1; default
            :data:`DEFAULT_CONFOUNDERS`, M = 12).
        num_confounders: use the first M of ``confounders`` (Table 4 varies M from 3 to 15); ``None`` (default):
            all of them.
        class_template: template of ``e_k`` with one ``{}`` (default :data:`CLASS_PROMPT_TEMPLATE`).
        confounder_template: template of ``z_m`` with one ``{}`` (default :data:`CONFOUNDER_PROMPT_TEMPLATE`).
        class_confounder_template: template of ``t_{k,m}`` with two ``{}``, class then domain (default
            :data:`CLASS_CONFOUNDER_PROMPT_TEMPLATE`).

    Returns:
        ``{"class": (K, d) e_k, "confounder": (M, d) Z, "class_confounder": (K, M, d) t_{k,m}}`` (float32, CPU).

    Raises:
        ValueError: for an empty or duplicated class/confounder list, ``num_confounders`` outside
            [1, len(confounders)], or a template without the right ``{}``.
    """
    from common.transforms.text import OpenCLIPTokenizer

    names, domains = [str(c) for c in class_names], [str(c) for c in confounders]
    if num_confounders is not None:
        if not 1 <= int(num_confounders) <= len(domains):
            raise ValueError(
                f"`num_confounders` is {num_confounders}; it must be in [1, {len(domains)}] (the length of "
                "`confounders`; give a longer `confounders` list for more)."
            )
        domains = domains[: int(num_confounders)]
    for key, items in (("class_names", names), ("confounders", domains)):
        if not items or any(not s.strip() for s in items) or len(set(items)) != len(items):
            raise ValueError(f"`{key}` must be a non-empty list of distinct non-empty strings, got {items}.")
    for key, template, holes in (
        ("class_template", class_template, 1),
        ("confounder_template", confounder_template, 1),
        ("class_confounder_template", class_confounder_template, 2),
    ):
        if template.count("{}") != holes:
            raise ValueError(f"`{key}` must contain {holes} '{{}}' placeholder(s), got {template!r}.")
    tokenizer = OpenCLIPTokenizer(context_length=int(clip_model.positional_embedding.shape[0]))
    was_training = clip_model.training
    clip_model.eval()

    def encode(texts: list[str]) -> torch.Tensor:
        device = clip_model.positional_embedding.device
        return clip_model.encode_text(tokenizer(texts).ids.to(device)).float().cpu()

    out = {
        "class": encode([class_template.format(c) for c in names]),
        "confounder": encode([confounder_template.format(d) for d in domains]),
        "class_confounder": encode([class_confounder_template.format(c, d) for c in names for d in domains]),
    }
    out["class_confounder"] = out["class_confounder"].reshape(len(names), len(domains), -1)
    clip_model.train(was_training)
    return out
