# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The small modules of BiCLIP around its U-Net (Talaei et al., section 2.1, Fig. 1b; /work/shared/papers/biclip.txt).

Widths and layer types are those of the reference code (SeivanTalaie/BiCLIP
``utils/githubUNET/github_UNET_aug_text_gene.py``; /work/shared/reference/method_notes.md section 4.1), written here
with the sizes as arguments:

- :class:`TextProjection`: pooled text vector (768) -> compact text embedding ``t`` (784 = 28 x 28 at 224 px).
- :class:`ImageEmbedding`: the "lightweight convolutional encoder" giving the global image embedding ``i`` (256).
- :class:`BidirectionalFusion`: BMF, eq. 1: ``t' = t + g_BMF([t; i])``.
- :class:`PseudoImageGenerator`: ``t'`` reshaped to a (1, S/8, S/8) map and upsampled x8 to the pseudo image.
- :class:`ImageToTextHead`: ``h(.)`` of eq. 2, pseudo image -> ``t_hat``.
- :class:`IACProjection`: the IAC projection head of eq. 6: global pooling, linear, LayerNorm.
"""

from __future__ import annotations

__all__ = [
    "TextProjection",
    "ImageEmbedding",
    "BidirectionalFusion",
    "PseudoImageGenerator",
    "ImageToTextHead",
    "IACProjection",
]

from collections.abc import Sequence

import torch
from torch import nn


class TextProjection(nn.Module):
    """
    Project a pooled text vector to BiCLIP's compact text embedding ``t`` (section 2.1: "projected to a compact text
    embedding"): ``Linear(in_dim, dim) -> LayerNorm -> GELU -> Linear(dim, dim)`` (the reference's ``project_head``,
    768 -> 784 -> 784).

    Args:
        in_dim: width of the pooled text vector (768 for BERT-base / CXR-BERT).
        dim: width of ``t``; the pseudo-image generator needs ``dim = (image_size // 8) ** 2`` (784 at 224).
    """

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """
        Args:
            text: (B, in_dim).

        Returns:
            ``t``, (B, dim).
        """
        return self.mlp(text)


class ImageEmbedding(nn.Module):
    """
    The lightweight convolutional image encoder of section 2.1 giving the global visual embedding ``i``:
    ``Conv3x3(in, c0) -> ReLU -> Conv3x3(c0, c1) -> ReLU -> global average pooling`` (the reference's
    ``ImageFeatureExtractor``: 3 -> 64 -> 256, stride 1, on the raw image).

    Args:
        in_channels: image channels. Defaults to 3.
        channels: the two convolution widths; the last one is the embedding width. Defaults to (64, 256).
        stride: stride of both convolutions (1 in the reference; 2 divides the cost of the second convolution by 16
            at an unchanged parameter count). Defaults to 1.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (64, 256), stride: int = 1) -> None:
        super().__init__()
        c0, c1 = int(channels[0]), int(channels[1])
        self.out_dim = c1
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, stride=stride, padding=1),
            nn.ReLU(),
            nn.Conv2d(c0, c1, 3, stride=stride, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: (B, in_channels, H, W).

        Returns:
            ``i``, (B, channels[-1]).
        """
        return self.conv(image)


class BidirectionalFusion(nn.Module):
    """
    Bidirectional Multimodal Fusion (BMF), BiCLIP section 2.1, eq. 1::

        z = [t; i],   delta_t = g_BMF(z),   t' = t + delta_t

    with ``g_BMF = Linear(text_dim + image_dim, text_dim) -> LayerNorm -> GELU -> Linear(text_dim, text_dim)`` (the
    reference's ``TextRefiner``, 1040 -> 784 -> 784). The visual evidence refines the text embedding by a residual
    term, so the text's structure is kept.

    Args:
        text_dim: width of ``t``.
        image_dim: width of ``i``.
    """

    def __init__(self, text_dim: int, image_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(text_dim + image_dim, text_dim), nn.LayerNorm(text_dim), nn.GELU(), nn.Linear(text_dim, text_dim)
        )

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """
        Args:
            text: ``t``, (B, text_dim).
            image: ``i``, (B, image_dim).

        Returns:
            ``t'``, (B, text_dim).
        """
        return text + self.mlp(torch.cat([text, image], dim=1))


class PseudoImageGenerator(nn.Module):
    """
    The pseudo-image generator of section 2.1 / Fig. 1b: ``t'`` (B, s*s) reshaped to (B, 1, s, s), then three
    ``ConvTranspose2d(kernel 4, stride 2, padding 1)`` layers (each doubles the side) ``1 -> c0 -> c1 -> out`` with
    ReLU between and a sigmoid at the end: the pseudo image ``x_hat`` (B, out_channels, 8s, 8s) in [0, 1] (the
    reference: 1 -> 16 -> 8 -> 3, 28 x 28 -> 224 x 224).

    Args:
        seed_size: ``s``, the side of the reshaped embedding (image_size // 8).
        out_channels: pseudo-image channels (the image's, 3). Defaults to 3.
        channels: the two hidden widths. Defaults to (16, 8).

    Raises:
        ValueError: when ``seed_size`` is not positive.
    """

    def __init__(self, seed_size: int, out_channels: int = 3, channels: Sequence[int] = (16, 8)) -> None:
        super().__init__()
        if seed_size < 1:
            raise ValueError(f"seed_size must be positive, got {seed_size}.")
        self.seed_size = int(seed_size)
        c0, c1 = int(channels[0]), int(channels[1])
        self.net = nn.Sequential(
            nn.ConvTranspose2d(1, c0, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c0, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, out_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """
        Args:
            text: ``t'``, (B, seed_size ** 2).

        Returns:
            ``x_hat``, (B, out_channels, 8 * seed_size, 8 * seed_size).
        """
        return self.net(text.reshape(text.shape[0], 1, self.seed_size, self.seed_size))


class ImageToTextHead(nn.Module):
    """
    The image-to-text head ``h(.)`` of section 2.1 that closes the cycle of eq. 2: ``t_hat = h(x_hat)``, with
    ``Conv3x3(in, c0) -> ReLU -> Conv3x3(c0, c1) -> ReLU -> global average pooling -> Linear(c1, text_dim)`` (the
    reference's ``ImageToTextHead``: 3 -> 32 -> 64 -> 784).

    Args:
        in_channels: pseudo-image channels. Defaults to 3.
        text_dim: width of ``t``.
        channels: the two convolution widths. Defaults to (32, 64).
    """

    def __init__(self, in_channels: int, text_dim: int, channels: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        c0, c1 = int(channels[0]), int(channels[1])
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c0, c1, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        self.fc = nn.Linear(c1, text_dim)

    def forward(self, pseudo: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pseudo: ``x_hat``, (B, in_channels, H, W).

        Returns:
            ``t_hat``, (B, text_dim).
        """
        return self.fc(self.encoder(pseudo))


class IACProjection(nn.Module):
    """
    The IAC projection head of section 2.2 (before eq. 6): "global pooling followed by a linear transformation",
    ``p = LayerNorm(Linear(GAP(f)))`` on the last decoder feature map ``f`` (the reference's ``IAC_proj``: 64 -> 256,
    with a LayerNorm).

    Args:
        in_channels: channels of ``f``.
        dim: width of ``p``. Defaults to 256.
    """

    def __init__(self, in_channels: int, dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(in_channels, dim), nn.LayerNorm(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: ``f``, (B, in_channels, H, W).

        Returns:
            ``p``, (B, dim).
        """
        return self.net(features)
