# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Building blocks of LViT (Li et al., "LViT: Language meets Vision Transformer in Medical Image Segmentation",
IEEE TMI 2023; paper text in ``/work/shared/papers/lvit.txt``), assembled by :class:`common.networks.lvit.LViT`.

Every block is written from the paper's equations and the module structure recorded from the public reference code
(``HUANGLIZI/LViT``, ``nets/LViT.py``, ``nets/Vit.py``, ``nets/pixlevel.py``; summary in
``/work/shared/reference/method_notes.md`` section 1.1). Where the two disagree, the block follows the reference
code and its docstring says so. All blocks are TorchScript-compatible (``torch.jit.script``).

Shapes use ``B`` batch, ``C``/``d`` channels (= token feature size), ``H, W`` spatial size, ``N`` number of patches
(tokens of the ViT branch) and ``L`` number of text tokens.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution, PatchEmbeddingBlock

__all__ = [
    "conv_bn_relu",
    "LViTDownBlock",
    "PixelLevelAttention",
    "LViTUpBlock",
    "ConvTransBN",
    "MultiHeadSelfAttention",
    "TransformerMLP",
    "TransformerLayer",
    "LViTDownViT",
    "LViTUpViT",
    "CNNViTInteraction",
]


def conv_bn_relu(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> Convolution:
    """Conv (with bias, "same" padding) -> BatchNorm -> ReLU, the unit of every LViT CNN module (eq. 1).

    Built with MONAI's :class:`monai.networks.blocks.Convolution` (``adn_ordering="NDA"``: norm, then activation;
    no dropout), so its parameters are ``conv.weight``, ``conv.bias``, ``adn.N.weight``, ``adn.N.bias``.

    Args:
        spatial_dims: 1 (``Conv1d`` + ``BatchNorm1d``, the CTBN blocks) or 2 (``Conv2d`` + ``BatchNorm2d``).
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size; padding is ``kernel_size // 2`` so the length/size is kept. Defaults to 3.

    Returns:
        The ``Convolution`` module.
    """
    return Convolution(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        act="RELU",
        norm="BATCH",
        adn_ordering="NDA",
    )


class LViTDownBlock(nn.Sequential):
    """DownCNN module of the U-shaped CNN branch: ``MaxPool2d(2)`` then two Conv3x3-BN-ReLU (eq. 1-2).

    The paper's eq. 2 writes the max-pooling after DownCNN_i; pooling first and then convolving (as the reference's
    ``DownBlock`` does) gives the same chain of operations, only the block boundary differs.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of the output map (half the input's spatial size).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.MaxPool2d(2),
            conv_bn_relu(2, in_channels, out_channels),
            conv_bn_relu(2, out_channels, out_channels),
        )


class PixelLevelAttention(nn.Module):
    """Pixel-Level Attention Module (PLAM), LViT section 3.1, eq. 8 and Fig. 2(b).

    ``Y = MLP(x_cat) * x`` with

    - ``a = mean_c(ReLU(W_avg x))`` and ``m = max_c(ReLU(W_max x))``, where ``W_avg``, ``W_max`` are 1x1 convolutions
      without bias (the paper's parallel "GAP" and "GMP" branches are poolings over the channel axis, per pixel);
    - ``x_cat = [a, m, a + m]`` (the paper's "concat and add"), shape (B, 3, H, W);
    - ``MLP = Linear(3, 6) -> ReLU -> Linear(6, 1)`` applied at every pixel, giving a (B, 1, H, W) map that
      multiplies every channel of ``x``.

    As in the reference code there is no sigmoid on the attention map (the reference also builds a ``conv_sig``
    1x1-conv + sigmoid that its forward never calls; it is not built here).

    Args:
        channels: channels of ``x`` (the skip connection).
        hidden_ratio: width of the MLP's hidden layer relative to its 3 inputs. Defaults to 2 (``Linear(3, 6)``, the
            reference's ``middle_layer_size_ratio``).

    Examples::

        >>> plam = PixelLevelAttention(16)
        >>> plam(torch.rand(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels: int, hidden_ratio: int = 2) -> None:
        super().__init__()
        self.conv_avg = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.conv_max = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.mlp = nn.Sequential(nn.Linear(3, 3 * hidden_ratio), nn.ReLU(), nn.Linear(3 * hidden_ratio, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = torch.relu(self.conv_avg(x)).mean(dim=1, keepdim=True)
        mx = torch.relu(self.conv_max(x)).amax(dim=1, keepdim=True)
        x_cat = torch.cat([avg, mx, avg + mx], dim=1)  # (B, 3, H, W)
        weight = self.mlp(x_cat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # per-pixel MLP -> (B, 1, H, W)
        return weight * x


class LViTUpBlock(nn.Module):
    """UpCNN module: nearest x2 upsampling of the deeper map, PLAM on the skip, concatenation, two Conv-BN-ReLU.

    Section 3.1 ("Concatenate operation is performed between each UpCNN module"; PLAM at the skip connection,
    eq. 8); the order ``cat([PLAM(skip), up(deep)])`` and the nearest-neighbour upsampling follow the reference's
    ``UpblockAttention``.

    Args:
        deep_channels: channels of the deeper (coarser) input map.
        skip_channels: channels of the skip connection (twice the deeper map's spatial size).
        out_channels: output channels.
    """

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.plam = PixelLevelAttention(skip_channels)
        self.convs = nn.Sequential(
            conv_bn_relu(2, skip_channels + deep_channels, out_channels),
            conv_bn_relu(2, out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.convs(torch.cat([self.plam(skip), up], dim=1))


class ConvTransBN(nn.Module):
    """CTBN block of LViT (section 3.1, eq. 3): ``Conv1d(k=3, padding=1) -> BatchNorm1d -> ReLU``.

    The input is (B, C_in, length) and the output (B, C_out, length): the convolution mixes the ``C_in`` channels of
    neighbouring positions. LViT uses it in three ways (method_notes section 1.1), the caller arranges the axes:

    - text to patches (``CTBN3`` in the reference): channels = the ``L`` text tokens, length = the token features;
      maps ``L`` tokens to ``N`` patch tokens;
    - feature reduction on the down path (``CTBN``): channels = token features ``d`` -> ``d / 2``, length = ``N``;
    - feature reduction on the up path (``CTBN2``): ``2d -> d`` over the ``N`` tokens.

    Args:
        in_channels: channels of the input sequence.
        out_channels: channels of the output sequence.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = conv_bn_relu(1, in_channels, out_channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (MHSA of eq. 5), ``softmax(Q K^T / sqrt(d_head)) V`` per head, then a projection.

    Query, key and value come from one ``Linear(dim, 3 * dim)`` with bias (the reference's ``qkv_bias=True``); no
    dropout on the attention weights or the projection (the reference's ``attn_drop = proj_drop = 0``). The product
    is computed with :func:`torch.nn.functional.scaled_dot_product_attention` (same value, fused kernels).

    Args:
        dim: token feature size ``d``; must be divisible by ``num_heads``.
        num_heads: attention heads. Defaults to 8 (reference).
        qkv_bias: bias in the query/key/value projection. Defaults to True (reference).

    Raises:
        ValueError: when ``dim`` is not divisible by ``num_heads``.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"MultiHeadSelfAttention: dim ({dim}) must be divisible by num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, d_head)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TransformerMLP(nn.Module):
    """MLP of the Transformer layer (eq. 6): ``fc1 -> GELU -> Dropout -> fc2 -> GELU -> Dropout``.

    Follows the reference code, which applies GELU after ``fc2`` as well (a standard ViT MLP has no activation after
    the second linear layer; the paper does not specify). Weights are initialised with Xavier-uniform and biases with
    ``normal(std=1e-6)`` as in the reference.

    Args:
        dim: input and output size.
        hidden_dim: hidden size (``mlp_ratio * dim``).
        dropout: dropout probability after each activation, in [0, 1). Defaults to 0.1 (reference).
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(F.gelu(self.fc1(x)))
        return self.drop(F.gelu(self.fc2(x)))


class TransformerLayer(nn.Module):
    """Pre-LayerNorm Transformer encoder layer (eq. 5-6): ``x' = MHSA(LN(x)) + x``, ``y = MLP(LN(x')) + x'``.

    Args:
        dim: token feature size; must be divisible by ``num_heads``.
        num_heads: attention heads. Defaults to 8.
        mlp_ratio: MLP hidden size relative to ``dim``. Defaults to 4.
        dropout: MLP dropout probability in [0, 1). Defaults to 0.1.
    """

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TransformerMLP(dim, mlp_ratio * dim, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LViTDownViT(nn.Module):
    """DownViT module of the U-shaped ViT branch at one level (eq. 3, 4, 7).

    ``tokens = Transformer(PatchEmbedding(x_k) [+ text])`` where the patch embedding (eq. 4) is a ``Conv2d(d, d,
    kernel=p, stride=p)`` plus a learned position embedding (initialised to zeros, as in the reference) and dropout
    (MONAI's :class:`~monai.networks.blocks.PatchEmbeddingBlock`), and ``text`` (level 1 only, already projected to
    (B, N, d) by the text CTBN of eq. 3) is added to the patch embedding.

    With ``merge_previous=True`` (levels 2-4) the output is ``cat([CTBN(tokens), previous], dim=-1)``: a CTBN block
    halves the feature size ``d -> d/2`` and the previous level's tokens (B, N, d/2) are concatenated along the
    feature axis, giving (B, N, d). This is how the reference implements eq. 7 (``Y_{i+1} = ViT(Y_i + x_img,i+1)``):
    the paper's "+" is a concatenation, and it happens AFTER the Transformer of level i+1 rather than before it.

    Args:
        dim: channels of the CNN map ``x_k`` = token feature size ``d``.
        map_size: spatial size (height = width) of ``x_k``.
        patch_size: patch size ``p``; ``map_size`` must be a multiple of it.
        num_layers: Transformer layers (1/4/6/12 for LViT-T/S/M/L).
        num_heads: attention heads; ``dim`` must be divisible by it.
        dropout: dropout after the position embedding and in the MLPs, in [0, 1).
        merge_previous: reduce to ``d/2`` and concatenate the previous level's tokens (levels 2-4). Defaults to False.

    Raises:
        ValueError: when ``merge_previous`` is set and ``dim`` is odd.
    """

    def __init__(
        self,
        dim: int,
        map_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
        merge_previous: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = PatchEmbeddingBlock(
            in_channels=dim,
            img_size=map_size,
            patch_size=patch_size,
            hidden_size=dim,
            num_heads=num_heads,
            proj_type="conv",
            pos_embed_type="learnable",
            dropout_rate=dropout,
            spatial_dims=2,
        )
        with torch.no_grad():
            self.embedding.position_embeddings.zero_()  # reference initialises the position embedding to zeros
        self.layers = nn.Sequential(*[TransformerLayer(dim, num_heads, 4, dropout) for _ in range(num_layers)])
        if merge_previous and dim % 2 != 0:
            raise ValueError(f"LViTDownViT: dim must be even to merge the previous level's tokens, got {dim}.")
        self.reduce = ConvTransBN(dim, dim // 2) if merge_previous else None

    def forward(
        self, x: torch.Tensor, previous: Optional[torch.Tensor] = None, text: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        tokens = self.embedding(x)  # (B, N, d)
        if text is not None:
            tokens = tokens + text
        tokens = self.layers(tokens)
        reduce = self.reduce
        if reduce is not None:
            if previous is None:
                raise ValueError("LViTDownViT: this level merges the previous level's tokens, but none were given.")
            tokens = reduce(tokens.transpose(1, 2)).transpose(1, 2)  # (B, N, d/2)
            tokens = torch.cat([tokens, previous], dim=2)
        return tokens


class LViTUpViT(nn.Module):
    """UpViT module of the U-shaped ViT branch at one level (section 3.1, Fig. 2a; data flow of the reference).

    ``y_k = Transformer(y_k) + CTBN(y_{k+1})`` where the CTBN block (``Conv1d(2d -> d)`` over the ``N`` tokens) maps
    the deeper level's (B, N, 2d) tokens to (B, N, d); the deepest level has no deeper input (``expand_deeper=False``)
    and is just ``Transformer(y_4)``. The up modules take tokens, not images: the reference builds a patch embedding in
    each of them that it never calls, which is not built here.

    Args:
        dim: token feature size ``d`` at this level.
        num_layers: Transformer layers.
        num_heads: attention heads; ``dim`` must be divisible by it.
        dropout: MLP dropout probability in [0, 1).
        expand_deeper: add ``CTBN(deeper)`` with a ``2d -> d`` CTBN (levels 1-3). Defaults to True.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, dropout: float, expand_deeper: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[TransformerLayer(dim, num_heads, 4, dropout) for _ in range(num_layers)])
        self.from_deeper = ConvTransBN(2 * dim, dim) if expand_deeper else None

    def forward(self, tokens: torch.Tensor, deeper: Optional[torch.Tensor] = None) -> torch.Tensor:
        tokens = self.layers(tokens)
        from_deeper = self.from_deeper
        if from_deeper is not None:
            if deeper is None:
                raise ValueError("LViTUpViT: this level adds the deeper level's tokens, but none were given.")
            tokens = tokens + from_deeper(deeper.transpose(1, 2)).transpose(1, 2)
        return tokens


class CNNViTInteraction(nn.Module):
    """CNN-ViT interaction module (LViT appendix C, Fig. 7): ``Y = X_CNN + ReLU(BN(Conv1x1(Up(Reshape(X_ViT)))))``.

    The (B, N, C) tokens are reshaped to the (B, C, g, g) patch grid (``g = sqrt(N)``), upsampled with nearest
    neighbour interpolation to the CNN map's spatial size, passed through Conv1x1 (with bias) + BatchNorm + ReLU and
    added to the CNN features (the residual connection of section 3.1).

    Args:
        channels: ``C``, shared by the tokens and the CNN map.
        grid_size: ``g``, the side of the patch grid (``N = g * g``).
    """

    def __init__(self, channels: int, grid_size: int) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.proj = conv_bn_relu(2, channels, channels, kernel_size=1)

    def forward(self, tokens: torch.Tensor, cnn_features: torch.Tensor) -> torch.Tensor:
        b, _, c = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, c, self.grid_size, self.grid_size)
        size: List[int] = [cnn_features.shape[2], cnn_features.shape[3]]
        return cnn_features + self.proj(F.interpolate(grid, size=size, mode="nearest"))
