# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
CLIP encoders of CausalCLIPSeg (Chen et al., MICCAI 2024), built on the open_clip implementation of CLIP.

CausalCLIPSeg encodes the text with CLIP's text Transformer (the activation at the end-of-text token, projected) and
the image with CLIP's ResNet-101, taking multi-scale features from stages 2 to 4 (paper section 2.1; ResNet-101 and
CLIP initialisation: section 3.2). The public reference code (``WUTCM-Lab/CausalCLIPSeg``, a fork of CRIS) modifies
CLIP's attention pooling so that it returns a feature map instead of one pooled vector
(``/work/shared/reference/method_notes.md`` section 2.2); :py:class:`CLIPImageEncoder` follows that reference.

Parameter counts (counted once by hand from a randomly initialised full-size open_clip ``RN101``; the weights do
not change the counts):

- :py:class:`CLIPImageEncoder` of RN101: 57,309,536 = the open_clip visual tower (56,259,936, all of it registered,
  including the attention pooling's positional-embedding row of the class token, which the feature map does not
  read: 2,048) + the new ``connect`` branch (Conv1x1 2048 x 512 = 1,048,576 + BatchNorm 1,024 = 1,049,600).
  method_notes section 2.4: 57.31 M (original visual 56.26 M).
- :py:class:`CLIPTextEncoder` of RN101 with ``context_length=20``: 63,398,912 (token table 25,296,896; positional
  embedding 20 x 512 = 10,240; 12 Transformer blocks 37,828,608; final LayerNorm 1,024; projection 262,144). The
  reference keeps all 77 positional rows (63,428,096 = 63.43 M, method_notes section 2.4) although it reads only
  the first ``word_len``; here only the rows the encoder reads are kept.
"""

from __future__ import annotations

__all__ = ["CLIPImageEncoder", "CLIPTextEncoder", "CLIPTokenTextEncoder", "build_clip", "load_clip"]

import copy
import json
import logging
import math
import os
import warnings
import zipfile
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: entries of OpenAI's TorchScript CLIP archives (and of open_clip's causal-mask buffer) that are not parameters
_NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


class CLIPImageEncoder(nn.Module):
    """
    Multi-scale features of a CLIP ModifiedResNet (RN50/RN101) with the attention pooling applied to every position.

    Following the CausalCLIPSeg reference code (a CRIS fork; ``/work/shared/reference/method_notes.md`` section 2.2),
    for an image of S x S pixels (S a multiple of 32) and a ``visual`` of width ``w`` (64 for RN101):

    - ``v3`` = output of ``layer2``: ``8w`` channels (512) at S/8;
    - ``v4`` = output of ``layer3``: ``16w`` channels (1024) at S/16;
    - ``v5`` = CLIP's attention pooling WITHOUT pooling, on the ``layer4`` map ``x`` (``32w`` channels, 2048, at S/32):
      every one of the H x W positions is a query, key and value token (no mean/class token is prepended); the
      spatial part of the pooling's positional embedding (its rows 1..grid^2, row 0 belongs to the class token) is
      resized bicubically (``align_corners=False``, no anti-aliasing, as the reference) from the CLIP grid
      (image_size / 32, 7 x 7 for 224) to H x W and added to the tokens; multi-head attention with the pooling's
      own ``q_proj``, ``k_proj``, ``v_proj``, head count (32 for RN101) and ``c_proj`` (2048 -> embed_dim, 512 for
      RN101); plus a residual ``connect(x)`` = Conv1x1 (no bias) + BatchNorm; then ReLU. ``embed_dim`` channels at
      S/32.

    The stem (three 3x3 convolutions and an average pool) and the anti-aliased strided blocks (an average pool
    before each stride-2 convolution) are open_clip's own ``ModifiedResNet`` modules, which carry CLIP's weights;
    ``visual`` is registered as a sub-module, so its parameters are shared with the CLIP model it came from.

    The ``connect`` branch is NEW: it is not part of CLIP and no CLIP checkpoint has weights for it. It is
    initialised with PyTorch's defaults (Kaiming-uniform convolution, BatchNorm weight 1 and bias 0), as in the
    reference, whose CLIP loading is non-strict and leaves it at its initial values.

    Args:
        visual: the ``visual`` tower of an open_clip CLIP model built with a ModifiedResNet image tower (a
            ``open_clip.modified_resnet.ModifiedResNet``, e.g. ``load_clip("RN101", ...).visual``).

    Attributes:
        out_channels: channels of ``(v3, v4, v5)``, ``(512, 1024, 512)`` for RN101.
        num_heads: attention heads, those of ``visual.attnpool`` (32 for RN101).
        grid_size: side of the CLIP positional-embedding grid (``image_size // 32``, 7 for RN101).

    Raises:
        TypeError: when ``visual`` is not an open_clip ``ModifiedResNet`` (e.g. a ViT image tower).

    Examples::

        clip_model = load_clip("RN101", weights="/data/clip/RN101.pt")
        image_encoder = CLIPImageEncoder(clip_model.visual)
        v3, v4, v5 = image_encoder(torch.rand(2, 3, 224, 224))  # (2, 512, 28, 28), (2, 1024, 14, 14), (2, 512, 7, 7)
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        from open_clip.modified_resnet import ModifiedResNet

        if not isinstance(visual, ModifiedResNet):
            raise TypeError(
                "CLIPImageEncoder needs the ModifiedResNet image tower of an open_clip CLIP model (RN50, RN101, ...), "
                f"got {type(visual).__name__}."
            )
        self.visual = visual
        pool = visual.attnpool
        feature_channels = int(pool.c_proj.in_features)  # 32 * width, the layer4 channels
        output_dim = int(pool.c_proj.out_features)
        self.num_heads = int(pool.num_heads)
        self.grid_size = int(round(math.sqrt(pool.positional_embedding.shape[0] - 1)))
        self.in_channels = int(visual.conv1.in_channels)
        self.connect = nn.Sequential(
            nn.Conv2d(feature_channels, output_dim, kernel_size=1, bias=False), nn.BatchNorm2d(output_dim)
        )
        self.out_channels: tuple[int, int, int] = (
            int(visual.layer2[-1].bn3.num_features),
            int(visual.layer3[-1].bn3.num_features),
            output_dim,
        )

    def spatial_positional_embedding(self, height: int, width: int) -> torch.Tensor:
        """
        The attention pooling's positional embedding for an ``height`` x ``width`` token map.

        Args:
            height: rows of the ``layer4`` map (S/32).
            width: columns of the ``layer4`` map.

        Returns:
            tensor of shape (height * width, 32 * visual width), row-major over the map: the grid part of the
            embedding (the class-token row 0 dropped) resized bicubically (``align_corners=False``).
        """
        table = self.visual.attnpool.positional_embedding
        channels = table.shape[1]
        grid = table[1:].reshape(1, self.grid_size, self.grid_size, channels).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.reshape(channels, height * width).transpose(0, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """
        CLIP's attention pooling applied to every position of a ``layer4`` map, plus ``connect``, then ReLU.

        Args:
            x: ``layer4`` output of shape (B, 32 * visual width, H, W).

        Returns:
            tensor of shape (B, embed_dim, H, W).
        """
        pool = self.visual.attnpool
        batch, channels, height, width = x.shape
        residual = self.connect(x)
        position = self.spatial_positional_embedding(height, width).to(x.dtype)  # (HW, C)
        tokens = x.reshape(batch, channels, height * width).permute(2, 0, 1) + position.unsqueeze(1)  # (HW, B, C)
        out, _ = F.multi_head_attention_forward(
            query=tokens,
            key=tokens,
            value=tokens,
            embed_dim_to_check=channels,
            num_heads=self.num_heads,
            in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias,
            training=self.training,
            need_weights=False,
            use_separate_proj_weight=True,
            q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight,
        )
        out = out.permute(1, 2, 0).reshape(batch, -1, height, width)  # (HW, B, D) -> (B, D, H, W)
        return F.relu(out + residual)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            image: float tensor of shape (B, 3, S_h, S_w) (the channels of ``visual.conv1``), normalised as the
                CLIP weights expect; S_h and S_w multiples of 32.

        Returns:
            ``(v3, v4, v5)`` of shapes (B, 8w, S/8), (B, 16w, S/16), (B, embed_dim, S/32) (spatial sizes per side).

        Raises:
            ValueError: when ``image`` is not 4-D with ``in_channels`` channels, or its height or width is not a
                multiple of 32 (``torch.jit.Error`` with the same message when scripted).
        """
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"CLIPImageEncoder expects images of shape (B, {self.in_channels}, H, W), got shape "
                f"{list(image.shape)}."
            )
        if image.shape[2] % 32 != 0 or image.shape[3] % 32 != 0:
            raise ValueError(
                f"CLIPImageEncoder needs height and width that are multiples of 32 (the ResNet stride), got "
                f"{image.shape[2]} x {image.shape[3]}."
            )
        x = self.visual.stem(image)
        x = self.visual.layer1(x)
        v3 = self.visual.layer2(x)
        v4 = self.visual.layer3(v3)
        v5 = self.attention_map(self.visual.layer4(v4))
        return v3, v4, v5


class CLIPTextEncoder(nn.Module):
    """
    CLIP's text Transformer with a causal mask of ``context_length`` tokens; the feature at the end-of-text token.

    For token ids (B, L) with ``L == context_length`` (paper section 3.2: 20 tokens): token embedding + the first
    ``context_length`` rows of CLIP's positional embedding -> the CLIP Transformer with a causal (upper-triangular
    ``-inf``) attention mask of size ``context_length`` -> final LayerNorm -> the row at the end-of-text token,
    found as ``ids.argmax(-1)`` (the end token 49407 has the largest id of CLIP's vocabulary) -> ``@ text_projection``
    (paper section 2.1: "activations of its highest layer at the [EOS] token"; reference: CRIS ``encode_text``,
    method_notes section 2.2). Because the mask is causal, tokens after the end token (padding) do not change the
    feature. open_clip builds its mask for the model's own context length (77); this encoder builds its own.

    The token table, Transformer, LayerNorm and projection are the modules of ``clip_model`` (shared, so loaded CLIP
    weights are used and trained in place). The positional embedding is a new parameter holding a copy of the first
    ``context_length`` rows of ``clip_model.positional_embedding`` (the other rows are never read), so build the
    encoder after the CLIP weights are loaded (:py:func:`load_clip` returns a loaded model).

    Args:
        clip_model: an open_clip ``CLIP`` model (``open_clip.model.CLIP``, e.g. from :py:func:`load_clip`) with the
            standard text tower: argmax pooling, a causal mask and a matrix ``text_projection``.
        context_length: tokens per text, 1 <= context_length <= the model's context length (77). Defaults to 20
            (CausalCLIPSeg, paper section 3.2).

    Attributes:
        output_dim: size of the text feature (``text_projection`` columns; 512 for RN101).

    Raises:
        TypeError: when ``clip_model`` lacks CLIP's text modules (e.g. a ``CustomTextCLIP`` with a Hugging Face
            text tower).
        ValueError: when ``context_length`` is out of range, or the text tower pools otherwise than at the argmax,
            is not causal, or has no matrix projection.

    Examples::

        clip_model = load_clip("RN101", weights="/data/clip/RN101.pt")
        text_encoder = CLIPTextEncoder(clip_model, context_length=20)
        ids = OpenCLIPTokenizer(context_length=20)(["Bilateral pulmonary infection, two infected areas."]).ids
        tau = text_encoder(ids)  # (1, 512)
    """

    def __init__(self, clip_model: nn.Module, context_length: int = 20) -> None:
        super().__init__()
        for name in ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection"):
            if not hasattr(clip_model, name):
                raise TypeError(
                    f"CLIPTextEncoder needs an open_clip CLIP model with a standard text tower; "
                    f"{type(clip_model).__name__} has no '{name}'."
                )
        table = clip_model.positional_embedding
        if not 1 <= int(context_length) <= table.shape[0]:
            raise ValueError(
                f"context_length must be in [1, {table.shape[0]}] (the CLIP model's context length), "
                f"got {context_length}."
            )
        pool_type = getattr(clip_model, "text_pool_type", "argmax")
        if pool_type != "argmax":
            raise ValueError(
                f"CLIPTextEncoder takes the feature at ids.argmax(-1); the model pools with '{pool_type}'."
            )
        if getattr(clip_model, "attn_mask", None) is None:
            raise ValueError("The CLIP model's text tower is not causal (no_causal_mask); CLIP text towers are.")
        if not isinstance(clip_model.text_projection, nn.Parameter):
            raise ValueError(
                "CLIPTextEncoder needs a matrix text_projection (CLIP's); got "
                f"{type(clip_model.text_projection).__name__} (proj_bias / proj_type configs are not supported)."
            )
        self.context_length = int(context_length)
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = nn.Parameter(table.detach()[: self.context_length].clone())
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.output_dim = int(self.text_projection.shape[1])
        mask = torch.full((self.context_length, self.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """
        Args:
            ids: integer token ids of shape (B, context_length), each row ``<start> tokens <end> 0 ... 0`` as
                :py:class:`common.transforms.OpenCLIPTokenizer` (or ``open_clip.tokenize``) returns them.

        Returns:
            float tensor of shape (B, output_dim): the projected end-of-text feature.

        Raises:
            ValueError: when ``ids`` is not 2-D with ``context_length`` columns (``torch.jit.Error`` with the same
                message when scripted).
        """
        if ids.dim() != 2 or ids.shape[1] != self.context_length:
            raise ValueError(
                f"CLIPTextEncoder expects token ids of shape (B, {self.context_length}) (context_length), got shape "
                f"{list(ids.shape)}; tokenize with the same context_length."
            )
        x = self.token_states(ids)
        eot = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        return eot @ self.text_projection

    def token_states(self, ids: torch.Tensor) -> torch.Tensor:
        """
        The final-LayerNorm output at every position (before ``text_projection``).

        Args:
            ids: integer token ids of shape (B, context_length).

        Returns:
            float tensor of shape (B, context_length, width) (the text Transformer width).
        """
        x = self.token_embedding(ids)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)  # (B, L, width): open_clip's Transformer takes NLD
        return self.ln_final(x)


class CLIPTokenTextEncoder(CLIPTextEncoder):
    """
    :class:`CLIPTextEncoder` returning the projected feature of EVERY token as well as the end-of-text feature.

    C2Seg (paper section 3.1) needs "position-aware token embeddings L (N x d_t) and a sentence embedding l (d_t)"
    from the frozen CLIP text encoder. Here both are in CLIP's joint embedding space: ``L = ln_final(x) @
    text_projection`` at all ``context_length`` positions and ``l = L[eot]``, the row at the end-of-text token
    (``ids.argmax(-1)``), which is exactly :class:`CLIPTextEncoder`'s output; so ``d_t`` = ``output_dim`` (512 for
    RN101 and ViT-B). Positions after the end token hold features of the padding (the causal mask keeps them
    from changing the earlier ones).

    Args:
        clip_model: as :class:`CLIPTextEncoder`.
        context_length: as :class:`CLIPTextEncoder`. Defaults to 20.

    Attributes:
        output_dim: ``d_t``, the size of both outputs.
        token_dim: ``d_t`` (same as ``output_dim``).

    Examples::

        text_encoder = CLIPTokenTextEncoder(load_clip("RN101", weights="/data/clip/RN101.pt"), context_length=20)
        tokens, sentence = text_encoder(ids)  # (B, 20, 512), (B, 512)
    """

    def __init__(self, clip_model: nn.Module, context_length: int = 20) -> None:
        super().__init__(clip_model, context_length)
        self.token_dim = self.output_dim

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """
        Args:
            ids: integer token ids of shape (B, context_length).

        Returns:
            ``(L, l)``: token features (B, context_length, output_dim) and end-of-text features (B, output_dim).

        Raises:
            ValueError: when ``ids`` is not 2-D with ``context_length`` columns.
        """
        if ids.dim() != 2 or ids.shape[1] != self.context_length:
            raise ValueError(
                f"CLIPTokenTextEncoder expects token ids of shape (B, {self.context_length}) (context_length), got "
                f"shape {list(ids.shape)}; tokenize with the same context_length."
            )
        tokens = self.token_states(ids) @ self.text_projection
        sentence = tokens[torch.arange(tokens.shape[0], device=tokens.device), ids.argmax(dim=-1)]
        return tokens, sentence


def _model_config(model_name: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The open_clip model config of a built-in name or a JSON file, and a description of its source."""
    from open_clip import get_model_config, list_models

    name = os.fspath(model_name)
    if name.endswith(".json") or os.path.isfile(name):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"CLIP model config file not found: {name}")
        try:
            with open(name, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"Could not read the CLIP model config {name}: {e}") from e
        if isinstance(cfg, dict) and isinstance(cfg.get("model_cfg"), dict):
            cfg = cfg["model_cfg"]  # open_clip_config.json layout: {"model_cfg": ..., "preprocess_cfg": ...}
        source = f"config file {name}"
    else:
        if ":" in name:  # 'hf-hub:...' / 'local-dir:...' schemas would fetch configs and weights
            raise ValueError(
                f"clip_model '{name}' has a schema prefix; give a built-in open_clip model name (e.g. 'RN101') "
                "or the path of a model-config JSON file."
            )
        cfg = get_model_config(name)
        if cfg is None:
            resnets = [m for m in list_models() if m.startswith("RN")]
            raise ValueError(
                f"Unknown CLIP model '{name}': not a built-in open_clip model name (ModifiedResNet ones: {resnets}) "
                "and not an existing model-config JSON file."
            )
        source = f"open_clip built-in config '{name}'"
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ValueError(f"CLIP model config ({source}) lacks {missing}; open_clip configs have all three.")
    text_cfg = cfg["text_cfg"]
    if cfg.get("custom_text") or text_cfg.get("hf_model_name") or cfg["vision_cfg"].get("timm_model_name"):
        raise ValueError(
            f"CLIP model config ({source}) uses a custom/Hugging Face text tower or a timm image tower; only "
            "open_clip's standard CLIP (ModifiedResNet or ViT image tower, CLIP text Transformer) is supported."
        )
    return copy.deepcopy(cfg), source


def _is_torchscript_archive(path: str) -> bool:
    """True for a TorchScript zip archive (OpenAI's CLIP releases): it holds ``constants.pkl`` and ``code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in archive.namelist())


def _read_state_dict(path: str, torchscript: bool) -> dict[str, torch.Tensor]:
    """Parameters of a CLIP checkpoint file, keys as open_clip's ``CLIP`` names them."""
    if torchscript:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice, not about the file
            state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        from open_clip.factory import load_state_dict

        # handles {"state_dict": ...} (open_clip training checkpoints), a "module." prefix and .safetensors
        state = load_state_dict(path, device="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"CLIP weights file {path} does not hold a state dict of tensors.")
    dropped = [k for k in _NON_PARAMETER_KEYS if k in state]
    if dropped:
        logger.info("CLIP weights %s: ignoring non-parameter entries %s.", path, dropped)
    return {k: v for k, v in state.items() if k not in _NON_PARAMETER_KEYS}


def _check_match(model: nn.Module, state: dict[str, torch.Tensor], path: str, source: str) -> None:
    """Raise a ValueError naming the file and a few differing keys when ``state`` does not fit ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {items[:5]}{more}")
        raise ValueError(
            f"CLIP weights file {path} does not match the {source}: " + "; ".join(parts) + ". Check that "
            "`clip_model` names the architecture the checkpoint was trained with."
        )


def _shorten_context(model: nn.Module, context_length: int | None) -> nn.Module:
    """Keep the first ``context_length`` text positions of a CLIP model: positional rows, causal mask, attribute."""
    if context_length is None or int(context_length) == model.positional_embedding.shape[0]:
        return model
    length = int(context_length)
    model.positional_embedding = nn.Parameter(model.positional_embedding.detach()[:length].clone())
    if model.attn_mask is not None:
        model.attn_mask = torch.full((length, length), float("-inf")).triu_(1)  # a registered buffer: replaced
    model.context_length = length
    return model


def _build(cfg: dict[str, Any], source: str, quick_gelu: bool | None) -> nn.Module:
    from open_clip.model import CLIP

    if quick_gelu is not None:
        cfg["quick_gelu"] = bool(quick_gelu)
    try:
        return CLIP(**cfg)
    except (TypeError, ValueError, AssertionError) as e:
        raise ValueError(f"Could not build a CLIP model from the {source}: {e}") from e


def _check_context(context_length: int | None, cfg: dict[str, Any], source: str) -> None:
    full_length = int(cfg["text_cfg"].get("context_length", 77))
    if context_length is not None and not 1 <= int(context_length) <= full_length:
        raise ValueError(
            f"context_length must be in [1, {full_length}] (the context length of the {source}), got {context_length}."
        )


def build_clip(
    model_name: str | os.PathLike = "RN101",
    context_length: int | None = None,
    quick_gelu: bool | None = None,
) -> nn.Module:
    """
    Build the architecture of an open_clip CLIP model WITHOUT loading any weights, for a network whose weights all
    come from a trained checkpoint (a bundle's ``models/model.pt``, loaded by evaluation and inference).

    The model is what :py:func:`load_clip` builds for the same arguments (same modules, parameter names and shapes,
    same ``context_length`` cut), but no CLIP weights file is read or needed and nothing is logged about random
    initialisation: the values are placeholders that the checkpoint overwrites. Use :py:func:`load_clip` to train.

    ``quick_gelu`` must be what the training run used, since it changes the computation but not the parameters:
    OpenAI's CLIP weights (e.g. ``RN101.pt``) need QuickGELU, which :py:func:`load_clip` switches on by itself for an
    OpenAI TorchScript file; without the file this function cannot tell, so the bundles pass it explicitly
    (``clip_quick_gelu``).

    Args:
        model_name: built-in open_clip model name or path of a model-config JSON file (see :py:func:`load_clip`).
            Defaults to ``"RN101"``.
        context_length: text length, as in :py:func:`load_clip`; ``None`` keeps the config's. Defaults to ``None``.
        quick_gelu: ``True``/``False`` forces QuickGELU/GELU; ``None`` keeps the config's setting. Defaults to
            ``None``.

    Returns:
        the ``open_clip.model.CLIP`` model (float32, CPU, training mode), open_clip's initial values.

    Raises:
        FileNotFoundError: when a model-config JSON path does not exist.
        ValueError: for an unknown model name or an invalid config, or ``context_length`` out of range.
    """
    cfg, source = _model_config(model_name)
    _check_context(context_length, cfg, source)
    model = _build(cfg, source, quick_gelu)
    logger.info(
        "CLIP architecture %s built without weights (quick_gelu=%s): the trained checkpoint supplies them.",
        os.fspath(model_name),
        bool(cfg.get("quick_gelu", False)),
    )
    return _shorten_context(model, context_length)


def load_clip(
    model_name: str | os.PathLike = "RN101",
    weights: str | os.PathLike | None = None,
    allow_random_init: bool = False,
    context_length: int | None = None,
    quick_gelu: bool | None = None,
) -> nn.Module:
    """
    Build an open_clip CLIP model offline and load its weights from a local file.

    The architecture comes from ``model_name``: a built-in open_clip model name (``"RN101"``, ``"RN50"``,
    ``"RN101-quickgelu"``, ...; open_clip's ``model_configs/*.json``) or the path of a model-config JSON file in
    open_clip's format (``{"embed_dim": 32, "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}``, or an
    ``open_clip_config.json`` with a ``model_cfg`` entry). The model is ``open_clip.model.CLIP(**config)``, exactly
    what ``open_clip.create_model(model_name, pretrained=None)`` builds for a built-in name; nothing is downloaded.

    ``weights`` is read from the local file only:

    - an OpenAI TorchScript archive (e.g. ``RN101.pt``, from the URL ``open_clip.get_pretrained_url("RN101",
      "openai")``; open_clip caches it as ``~/.cache/clip/RN101.pt``): its ``state_dict()`` is loaded; OpenAI's
      CLIP models were trained with QuickGELU (open_clip ``pretrained.py`` marks them ``quick_gelu=True``), so
      ``quick_gelu`` defaults to True for such a file (a GELU model would load the weights but compute other
      features);
    - an open_clip checkpoint: a state dict or ``{"state_dict": ...}`` (``torch.load`` with ``weights_only=True``,
      a ``module.`` prefix removed; ``.safetensors`` too), through ``open_clip.factory.load_state_dict``. For
      OpenAI weights stored this way (e.g. the Hugging Face ``timm/resnet101_clip.openai`` files) use
      ``model_name="RN101-quickgelu"`` or ``quick_gelu=True``.

    The file must match the architecture exactly (strict loading, no silent resizing); fp16 tensors are cast to
    the model's float32.

    Args:
        model_name: built-in open_clip model name or path of a model-config JSON file. Defaults to ``"RN101"``
            (CausalCLIPSeg, paper section 3.2). Schema names (``hf-hub:``, ``local-dir:``) are refused (they download).
        weights: path of a local CLIP checkpoint file, or ``None`` (no weights; see ``allow_random_init``).
            Defaults to ``None``.
        allow_random_init: with ``weights=None``: ``True`` returns the randomly initialised model (open_clip's
            initialisation) and logs a warning that it is NOT pretrained (the "without CLIP pretraining" ablation,
            paper Table 2 rows 1-2); ``False`` raises. Ignored when ``weights`` is given. Defaults to ``False``.
        context_length: text length the returned model is used with, ``1 <= context_length <=`` the config's
            context length (77 for every CLIP model), or ``None`` to keep the config's. The model is built and the
            weights are loaded at the config's length (CLIP checkpoints have 77 positional rows); then the text
            positional embedding is cut to its first ``context_length`` rows and the causal mask rebuilt, so that
            ``model.encode_text`` takes ids of that length, as CRIS's ``build_model(state_dict, word_len)`` (the
            reference's loader) does. :py:class:`CLIPTextEncoder` works either way (it reads the first rows it
            needs). Defaults to ``None``.
        quick_gelu: ``True``/``False`` forces QuickGELU/GELU in the Transformers; ``None`` keeps the config's
            setting, except for an OpenAI TorchScript file (True). Defaults to ``None``.

    Returns:
        the ``open_clip.model.CLIP`` model (float32, CPU, training mode).

    Raises:
        FileNotFoundError: when ``weights`` or a model-config JSON path does not exist.
        ValueError: for an unknown model name or invalid config; for ``context_length`` out of range; when ``weights`` does not hold a state dict or does
            not match the architecture (the message names the file and a few missing, unexpected or mis-shaped
            keys); when ``weights`` is ``None`` and ``allow_random_init`` is ``False`` (the message names both ways
            to proceed: set ``clip_weights`` to a local checkpoint, or set ``clip_pretrained: False``).

    Examples::

        clip_model = load_clip("RN101", weights="/data/clip/RN101.pt")  # OpenAI's TorchScript file
        scratch = load_clip("RN101", allow_random_init=True)  # no CLIP pretraining
        tiny = load_clip("tests/tiny_clip.json", weights="/tmp/tiny_clip.pt")
    """
    cfg, source = _model_config(model_name)
    path = None if weights is None else os.fspath(weights)
    if path is None and not allow_random_init:
        raise ValueError(
            f"No CLIP weights given for '{os.fspath(model_name)}' (weights=None, allow_random_init=False). Either set "
            "`clip_weights` to a local CLIP checkpoint file (for RN101: OpenAI's RN101.pt, fetched beforehand by "
            "the bundle's download step, or open_clip's cached copy ~/.cache/clip/RN101.pt; the URL is "
            "open_clip.get_pretrained_url('RN101', 'openai')), or set `clip_pretrained: False` to train the "
            "encoders from random initialisation (the 'without CLIP pretraining' ablation)."
        )
    if path is not None and not os.path.isfile(path):
        from common.utils.large_files import missing_file_message

        # names the file, the bundle's download_large_files command when its large_files.yml lists the file, and
        # the override that trains without it (the paper's ablation without CLIP pretraining)
        raise FileNotFoundError(
            missing_file_message(path, "CLIP weights file", key="clip_weights", without="--clip_pretrained False")
        )
    torchscript = path is not None and _is_torchscript_archive(path)
    if quick_gelu is None and torchscript and not cfg.get("quick_gelu", False):
        logger.info("CLIP weights %s are an OpenAI TorchScript archive: building the model with QuickGELU.", path)
        quick_gelu = True
    _check_context(context_length, cfg, source)
    model = _build(cfg, source, quick_gelu)
    if path is None:
        logger.warning(
            "CLIP model %s is randomly initialised: it is NOT pretrained (allow_random_init=True).", model_name
        )
        return _shorten_context(model, context_length)
    try:
        state = _read_state_dict(path, torchscript)
    except ValueError:
        raise
    except Exception as e:  # unreadable / not a torch file / unsafe pickle content
        raise ValueError(f"Could not read the CLIP weights file {path}: {e}") from e
    _check_match(model, state, path, source)
    model.load_state_dict(state, strict=True)
    logger.info("Loaded CLIP weights from %s into the %s.", path, source)
    return _shorten_context(model, context_length)
