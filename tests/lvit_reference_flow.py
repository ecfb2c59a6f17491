# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""An independent, purely functional re-implementation of the reference LViT forward pass, for the tests.

It follows ``/work/shared/reference/method_notes.md`` section 1.1 (the data flow of ``HUANGLIZI/LViT``,
``nets/LViT.py``, ``nets/Vit.py``, ``nets/pixlevel.py``) and the paper's eq. 1-8 (``/work/shared/papers/lvit.txt``)
step by step, with plain tensor operations and ``torch.nn.functional`` calls on a dictionary of weights. It never
calls a module: :func:`to_reference_state_dict` renames the state dict of :class:`common.networks.LViT` to the
reference code's parameter names (``inc.norm.weight``, ``downVit1.Encoder_blocks.0.attn.qkv.weight``,
``reconstruct2.conv.weight``, ``up3.pixModule.bottleneck.0.weight``, ...), and :func:`reference_lvit_forward` reads
only those names. Every mapped weight must be used, and every name the forward reads must exist, so a module added
to or dropped from ``LViT`` without a counterpart in the reference makes the comparison fail.

The multi-head attention is the hand formula ``softmax(Q_h K_h^T / sqrt(d_head)) V_h`` per head (a loop over the
heads, not :func:`torch.nn.functional.scaled_dot_product_attention`), so it also pins
:class:`common.networks.lvit_blocks.MultiHeadSelfAttention`.

Differences from the reference that are deliberate: the output is the logits (the reference applies ``Sigmoid`` for
one class, ``LViT`` returns logits), and ``text=None`` skips the text injection (LViT-xW, which the reference code
does not have; the paper's Table 1/3 "without text" rows).
"""

from __future__ import annotations

import math
import re
from typing import Dict, Mapping, Optional

import torch
import torch.nn.functional as F

__all__ = [
    "to_reference_state_dict",
    "ReferenceWeights",
    "reference_attention",
    "reference_transformer_block",
    "reference_lvit_forward",
]

_BN_EPS = 1e-5  # nn.BatchNorm1d/2d default, used by every reference ConvBatchNorm / ConvTransBN / Reconstruct
_LN_EPS = 1e-5  # nn.LayerNorm default, the reference Block's norm_layer
_DOWN_VIT = ("downVit", "downVit1", "downVit2", "downVit3")  # reference names of the DownViT of levels 1..4
_UP_VIT = ("upVit", "upVit1", "upVit2", "upVit3")  # reference names of the UpViT of levels 1..4

# (pattern on a common.networks.LViT key, replacement giving the reference key); applied in order, first match wins.
_RENAMES = (
    (r"^inc\.conv\.", "inc.conv."),
    (r"^inc\.adn\.N\.", "inc.norm."),
    (r"^down([1-4])\.([12])\.conv\.", lambda m: f"down{m[1]}.nConvs.{int(m[2]) - 1}.conv."),
    (r"^down([1-4])\.([12])\.adn\.N\.", lambda m: f"down{m[1]}.nConvs.{int(m[2]) - 1}.norm."),
    (r"^text_projection\.([0-3])\.", lambda m: f"text_module{4 - int(m[1])}."),
    (r"^text_to_patches\.block\.conv\.", "downVit.CTBN3.conv."),
    (r"^text_to_patches\.block\.adn\.N\.", "downVit.CTBN3.norm."),
    (r"^down_vit([1-4])\.embedding\.", lambda m: f"{_DOWN_VIT[int(m[1]) - 1]}.embeddings."),
    (r"^down_vit([1-4])\.layers\.", lambda m: f"{_DOWN_VIT[int(m[1]) - 1]}.Encoder_blocks."),
    (r"^down_vit([1-4])\.reduce\.block\.conv\.", lambda m: f"{_DOWN_VIT[int(m[1]) - 1]}.CTBN.conv."),
    (r"^down_vit([1-4])\.reduce\.block\.adn\.N\.", lambda m: f"{_DOWN_VIT[int(m[1]) - 1]}.CTBN.norm."),
    (r"^up_vit([1-4])\.layers\.", lambda m: f"{_UP_VIT[int(m[1]) - 1]}.Encoder_blocks."),
    (r"^up_vit([1-4])\.from_deeper\.block\.conv\.", lambda m: f"{_UP_VIT[int(m[1]) - 1]}.CTBN2.conv."),
    (r"^up_vit([1-4])\.from_deeper\.block\.adn\.N\.", lambda m: f"{_UP_VIT[int(m[1]) - 1]}.CTBN2.norm."),
    (r"^interaction([1-4])\.proj\.conv\.", lambda m: f"reconstruct{m[1]}.conv."),
    (r"^interaction([1-4])\.proj\.adn\.N\.", lambda m: f"reconstruct{m[1]}.norm."),
    (r"^up([1-4])\.plam\.conv_(avg|max)\.", lambda m: f"up{m[1]}.pixModule.conv_{m[2]}."),
    (r"^up([1-4])\.plam\.mlp\.([02])\.", lambda m: f"up{m[1]}.pixModule.bottleneck.{m[2]}."),
    (r"^up([1-4])\.convs\.([01])\.conv\.", lambda m: f"up{m[1]}.nConvs.{m[2]}.conv."),
    (r"^up([1-4])\.convs\.([01])\.adn\.N\.", lambda m: f"up{m[1]}.nConvs.{m[2]}.norm."),
    (r"^out\.", "outc."),
)


def to_reference_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a :class:`common.networks.LViT` state dict to the reference code's parameter names.

    ``num_batches_tracked`` buffers are dropped (the functional forward does not use them). The tensors are detached
    clones, so the functional forward cannot change the model.

    Args:
        state: ``LViT.state_dict()`` (built without a ``text_embedder``).

    Returns:
        ``{reference name: tensor}``.

    Raises:
        KeyError: naming the key when a key has no reference counterpart.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for pattern, replacement in _RENAMES:
            new, count = re.subn(pattern, replacement, key, count=1)
            if count:
                break
        else:
            raise KeyError(f"to_reference_state_dict: {key!r} has no counterpart in the reference LViT")
        if new in out:
            raise KeyError(f"to_reference_state_dict: two keys map to {new!r}")
        out[new] = value.detach().clone()
    return out


class ReferenceWeights:
    """Read-only access to reference-named weights that records which were read.

    Args:
        weights: ``{reference name: tensor}`` from :func:`to_reference_state_dict`.
    """

    def __init__(self, weights: Mapping[str, torch.Tensor]) -> None:
        self._weights = dict(weights)
        self.used: set[str] = set()

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self._weights:
            raise KeyError(f"reference LViT needs {name!r}, which the mapped state dict does not have")
        self.used.add(name)
        return self._weights[name]

    def has(self, name: str) -> bool:
        return name in self._weights

    def unused(self) -> list[str]:
        return sorted(set(self._weights) - self.used)


def _conv_bn_relu(w: ReferenceWeights, prefix: str, x: torch.Tensor, padding: int, training: bool) -> torch.Tensor:
    """Reference ``ConvBatchNorm`` / ``ConvTransBN`` / ``Reconstruct`` tail: conv (with bias) -> BatchNorm -> ReLU."""
    conv = F.conv2d if x.dim() == 4 else F.conv1d
    y = conv(x, w(prefix + ".conv.weight"), w(prefix + ".conv.bias"), padding=padding)
    y = F.batch_norm(
        y,
        w(prefix + ".norm.running_mean").clone(),  # clones: training mode updates the statistics in place
        w(prefix + ".norm.running_var").clone(),
        w(prefix + ".norm.weight"),
        w(prefix + ".norm.bias"),
        training=training,
        momentum=0.1,
        eps=_BN_EPS,
    )
    return torch.relu(y)


def reference_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: Optional[torch.Tensor],
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """Multi-head self-attention of the reference ``Attention`` (paper eq. 5's MHSA), by the hand formula.

    ``qkv_weight`` (3C, C) stacks ``W_q``, ``W_k``, ``W_v`` (rows ``0:C``, ``C:2C``, ``2C:3C``); head ``h`` uses the
    feature slice ``h*d_head:(h+1)*d_head`` of each. Per head ``A_h = softmax(Q_h K_h^T / sqrt(d_head))`` over the
    keys, ``O_h = A_h V_h``; the heads are concatenated in order and projected by ``proj``.

    Args:
        x: (B, N, C) tokens.
        qkv_weight: (3C, C) weight of the query/key/value projection.
        qkv_bias: (3C,) bias or ``None``.
        proj_weight: (C, C) weight of the output projection.
        proj_bias: (C,) bias of the output projection.
        num_heads: number of heads; must divide C.

    Returns:
        (B, N, C) tensor.
    """
    c = x.shape[-1]
    d_head = c // num_heads
    assert d_head * num_heads == c, (c, num_heads)
    qkv = x @ qkv_weight.t()
    if qkv_bias is not None:
        qkv = qkv + qkv_bias
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    heads = []
    for h in range(num_heads):
        sl = slice(h * d_head, (h + 1) * d_head)
        scores = (q[..., sl] @ k[..., sl].transpose(-1, -2)) / math.sqrt(d_head)  # (B, N, N)
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        weights = weights / weights.sum(dim=-1, keepdim=True)  # softmax over the keys
        heads.append(weights @ v[..., sl])
    return torch.cat(heads, dim=-1) @ proj_weight.t() + proj_bias


def reference_transformer_block(w: ReferenceWeights, prefix: str, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reference ``Block`` (paper eq. 5-6) without dropout: pre-LN attention and MLP, each with a residual.

    ``x' = x + MHSA(LN_1(x))``, ``y = x' + GELU(fc2(GELU(fc1(LN_2(x')))))`` (the reference's MLP has a GELU after
    ``fc2`` too; ``nn.GELU``'s exact erf form).

    Args:
        w: reference-named weights.
        prefix: the block's name, e.g. ``"downVit1.Encoder_blocks.0"``.
        x: (B, N, C) tokens.
        num_heads: attention heads.

    Returns:
        (B, N, C) tokens.
    """
    c = x.shape[-1]
    h = F.layer_norm(x, (c,), w(prefix + ".norm1.weight"), w(prefix + ".norm1.bias"), eps=_LN_EPS)
    qkv_bias = w(prefix + ".attn.qkv.bias") if w.has(prefix + ".attn.qkv.bias") else None
    x = x + reference_attention(
        h,
        w(prefix + ".attn.qkv.weight"),
        qkv_bias,
        w(prefix + ".attn.proj.weight"),
        w(prefix + ".attn.proj.bias"),
        num_heads,
    )
    h = F.layer_norm(x, (c,), w(prefix + ".norm2.weight"), w(prefix + ".norm2.bias"), eps=_LN_EPS)
    h = F.gelu(F.linear(h, w(prefix + ".mlp.fc1.weight"), w(prefix + ".mlp.fc1.bias")))
    h = F.gelu(F.linear(h, w(prefix + ".mlp.fc2.weight"), w(prefix + ".mlp.fc2.bias")))
    return x + h


def _encoder_blocks(w: ReferenceWeights, vit: str, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The reference ``VisionTransformer.Encoder_blocks``: its ``Block`` s in order (depth read from the names)."""
    depth = 0
    while w.has(f"{vit}.Encoder_blocks.{depth}.norm1.weight"):
        x = reference_transformer_block(w, f"{vit}.Encoder_blocks.{depth}", x, num_heads)
        depth += 1
    assert depth >= 1, f"{vit} has no Encoder_blocks"
    return x


def _ctbn_tokens(w: ReferenceWeights, prefix: str, tokens: torch.Tensor, training: bool) -> torch.Tensor:
    """Reference ``ConvTransBN`` applied to (B, N, d) tokens over the token axis: transpose, Conv1d-BN-ReLU, back."""
    return _conv_bn_relu(w, prefix, tokens.transpose(1, 2), 1, training).transpose(1, 2)


def _pix_level_module(w: ReferenceWeights, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """Reference ``PixLevelModule`` (PLAM, eq. 8): ``bottleneck([avg, max, avg + max]) * x`` per pixel, no sigmoid."""
    avg = torch.relu(F.conv2d(x, w(prefix + ".conv_avg.weight"))).mean(dim=1, keepdim=True)
    mx = torch.relu(F.conv2d(x, w(prefix + ".conv_max.weight"))).max(dim=1, keepdim=True).values
    feats = torch.cat([avg, mx, avg + mx], dim=1).permute(0, 2, 3, 1)  # (B, H, W, 3)
    hidden = torch.relu(F.linear(feats, w(prefix + ".bottleneck.0.weight"), w(prefix + ".bottleneck.0.bias")))
    att = F.linear(hidden, w(prefix + ".bottleneck.2.weight"), w(prefix + ".bottleneck.2.bias"))  # (B, H, W, 1)
    return att.permute(0, 3, 1, 2) * x


def reference_lvit_forward(
    weights: Mapping[str, torch.Tensor],
    image: torch.Tensor,
    text: Optional[torch.Tensor],
    num_heads: int,
    training: bool = False,
) -> torch.Tensor:
    """The reference LViT forward (method_notes section 1.1), from reference-named weights, without dropout.

    Steps: CNN encoder ``x1 = inc(image)``, ``x_{k+1} = down_k(x_k)`` (MaxPool 2 + 2 x Conv3x3-BN-ReLU, eq. 1-2);
    text ``text4..text1`` by the four ``Conv1d(k=3)`` ``text_module4..1`` over the tokens, injected at level 1 only as
    ``emb(x1) + CTBN3(text1)`` (eq. 3); DownViT ``y1 = Blocks(emb(x1) + text)``, ``y_k = cat[CTBN(Blocks(emb(x_k))),
    y_{k-1}]`` (eq. 4-7; ``emb`` = Conv2d(k = stride = 16, 8, 4, 2) + position embedding); UpViT ``y4 = Blocks(y4)``,
    ``y_k = Blocks(y_k) + CTBN2(y_{k+1})``; ``Reconstruct`` (reshape to the patch grid, nearest upsampling by 16, 8,
    4, 2, Conv1x1-BN-ReLU) ADDED to ``x1..x4``; decoder ``up4(x5, x4)`` .. ``up1(., x1)`` with
    ``UpblockAttention`` = nearest x2 upsampling, PLAM on the skip, ``cat[PLAM(skip), up]``, 2 x Conv3x3-BN-ReLU;
    ``outc`` Conv1x1 (logits, no sigmoid).

    Args:
        weights: ``{reference name: tensor}`` from :func:`to_reference_state_dict`.
        image: (B, C, S, S) float image.
        text: (B, L, text_dim) float text features, or ``None`` to skip the text injection (LViT-xW).
        num_heads: attention heads of every ViT block.
        training: BatchNorm with batch statistics (the model's ``train()`` with dropout 0) instead of running ones.

    Returns:
        (B, out_channels, S, S) logits.

    Raises:
        AssertionError: when a mapped weight was never used (a module without a reference counterpart) or a weight
            has a shape that contradicts the reference architecture.
    """
    w = ReferenceWeights(weights)
    size = image.shape[-1]
    grid = size // 16  # every level has (S / 16) ** 2 patches

    # CNN encoder (eq. 1-2)
    x = [_conv_bn_relu(w, "inc", image, 1, training)]
    for k in range(1, 5):
        h = F.max_pool2d(x[-1], 2)
        h = _conv_bn_relu(w, f"down{k}.nConvs.0", h, 1, training)
        x.append(_conv_bn_relu(w, f"down{k}.nConvs.1", h, 1, training))
    x1, x2, x3, x4, x5 = x

    # text path (eq. 3): text_module4 (text_dim -> 8c) .. text_module1 (2c -> c), no activation in between
    text_patches = None
    if text is not None:
        t = text.transpose(1, 2)  # (B, text_dim, L): Conv1d over the token axis
        for k in (4, 3, 2, 1):
            t = F.conv1d(t, w(f"text_module{k}.weight"), w(f"text_module{k}.bias"), padding=1)
        text_patches = _conv_bn_relu(w, "downVit.CTBN3", t.transpose(1, 2), 1, training)  # tokens as channels
        assert text_patches.shape[1] == grid * grid, text_patches.shape

    def embed(vit: str, feat: torch.Tensor, level: int) -> torch.Tensor:
        patch = 16 // 2 ** (level - 1)
        kernel = w(f"{vit}.embeddings.patch_embeddings.weight")
        assert kernel.shape[-2:] == (patch, patch), (vit, kernel.shape)
        e = F.conv2d(feat, kernel, w(f"{vit}.embeddings.patch_embeddings.bias"), stride=patch)  # (B, d, g, g)
        return e.flatten(2).transpose(1, 2) + w(f"{vit}.embeddings.position_embeddings")  # (B, N, d)

    # DownViT (eq. 3-7): concatenation of CTBN(ViT(emb(x_k))) and y_{k-1} along the features
    tokens = embed("downVit", x1, 1)
    if text_patches is not None:
        tokens = tokens + text_patches
    y = [_encoder_blocks(w, "downVit", tokens, num_heads)]
    for level, feat in ((2, x2), (3, x3), (4, x4)):
        vit = _DOWN_VIT[level - 1]
        tokens = _encoder_blocks(w, vit, embed(vit, feat, level), num_heads)
        y.append(torch.cat([_ctbn_tokens(w, f"{vit}.CTBN", tokens, training), y[-1]], dim=2))

    # UpViT: y4 = ViT(y4); y_k = ViT(y_k) + CTBN2(y_{k+1})
    up = [None, None, None, _encoder_blocks(w, "upVit3", y[3], num_heads)]
    for level in (3, 2, 1):
        vit = _UP_VIT[level - 1]
        up[level - 1] = _encoder_blocks(w, vit, y[level - 1], num_heads) + _ctbn_tokens(
            w, f"{vit}.CTBN2", up[level], training
        )

    # Reconstruct, added to the CNN skips
    skips = []
    for level, (tok, feat) in enumerate(zip(up, (x1, x2, x3, x4)), start=1):
        b, n, d = tok.shape
        assert n == grid * grid, (level, tok.shape)
        g = tok.permute(0, 2, 1).reshape(b, d, grid, grid)
        g = F.interpolate(g, scale_factor=16 // 2 ** (level - 1), mode="nearest")
        skips.append(_conv_bn_relu(w, f"reconstruct{level}", g, 0, training) + feat)

    # CNN decoder with PLAM on the skips
    out = x5
    for level in (4, 3, 2, 1):
        deep = F.interpolate(out, scale_factor=2, mode="nearest")
        h = torch.cat([_pix_level_module(w, f"up{level}.pixModule", skips[level - 1]), deep], dim=1)
        h = _conv_bn_relu(w, f"up{level}.nConvs.0", h, 1, training)
        out = _conv_bn_relu(w, f"up{level}.nConvs.1", h, 1, training)
    logits = F.conv2d(out, w("outc.weight"), w("outc.bias"))

    assert not w.unused(), f"weights without a use in the reference forward: {w.unused()}"
    return logits
