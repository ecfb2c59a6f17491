# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Building blocks of CausalCLIPSeg (Chen et al., "CausalCLIPSeg: Unlocking CLIP's Potential in Referring Medical
Image Segmentation with Causal Intervention", MICCAI 2024; paper text in ``/work/shared/papers/causalclipseg.txt``),
assembled by :class:`common.networks.causalclipseg.CausalCLIPSeg`.

- :class:`CoordConv` and :class:`Masker`: the causal-intervention masker ``F`` of eq. 2 (section 2.3), with
  :func:`complementary_features` for ``F^c = M * F`` and ``F^s = (1 - M) * F``;
- :class:`SharedFusion` (with :class:`BranchBatchNorm2d`): the 1x1 fusion shared by the causal and the confounding
  branch, with separate BatchNorm statistics per branch;
- :class:`CARAFE`: content-aware upsampling (Wang et al., "CARAFE: Content-Aware ReAssembly of FEatures", ICCV 2019)
  that brings the stage-4 features to the common scale (section 2.3, "multi-scale");
- :class:`TextConditionedDecoder`: the cross-modal decoder of eq. 1 (section 2.2);
- :class:`GradientReversal`: identity forward, ``-lambda * grad`` backward, placed between the confounding features
  and their decoder to realise the min-max game of eq. 3-4 (see :class:`common.networks.causalclipseg.CausalCLIPSeg`).

Module structure and layer order follow the public reference code (``WUTCM-Lab/CausalCLIPSeg``, ``nets/masker.py``,
``nets/carafe.py``, ``nets/layers.py``; summary in ``/work/shared/reference/method_notes.md`` section 2.2); every
difference is stated in the class docstring. All modules are TorchScript-compatible (``torch.jit.script``).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

__all__ = [
    "conv_bn_relu",
    "CoordConv",
    "Masker",
    "complementary_features",
    "BranchBatchNorm2d",
    "SharedFusion",
    "CARAFE",
    "TextConditionedDecoder",
    "GradientReversal",
]


def _check_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")


def _check_odd(owner: str, name: str, value: int) -> None:
    _check_positive(owner, **{name: value})
    if value % 2 != 1:
        raise ValueError(f"{owner}: {name} must be odd (padding {name} // 2 keeps the size), got {value}.")


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> Convolution:
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU: the reference's ``conv_layer`` unit.

    Built with MONAI's :class:`monai.networks.blocks.Convolution` (``adn_ordering="NDA"``, no dropout), so the
    parameters are ``conv.weight``, ``adn.N.weight`` and ``adn.N.bias``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size; padding ``kernel_size // 2`` keeps the spatial size. Defaults to 3.

    Returns:
        The ``Convolution`` module.
    """
    return Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        act="RELU",
        norm="BATCH",
        bias=False,
        adn_ordering="NDA",
    )


class CoordConv(nn.Module):
    """Coordinate convolution: append x and y coordinate maps, then Conv (no bias) -> BatchNorm -> ReLU.

    The two appended channels hold ``x`` (varies along the width) then ``y`` (varies along the height), each
    ``linspace(-1, 1)`` over the map, the same for every sample (reference ``CoordConv.add_coord``; Liu et al.,
    "An intriguing failing of convolutional neural networks and the CoordConv solution", NeurIPS 2018). The paper
    (section 2.3) implements the masker with "a coordinate convolution and a convolution".

    Args:
        in_channels: channels of the input map (the convolution sees ``in_channels + 2``).
        out_channels: output channels.
        kernel_size: odd kernel size, "same" padding. Defaults to 3 (reference).

    Raises:
        ValueError: when a size is not a positive integer or ``kernel_size`` is even.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        _check_positive("CoordConv", in_channels=in_channels, out_channels=out_channels)
        _check_odd("CoordConv", "kernel_size", kernel_size)
        self.conv = conv_bn_relu(in_channels + 2, out_channels, kernel_size)

    @staticmethod
    def add_coordinates(x: torch.Tensor) -> torch.Tensor:
        """Return ``cat([x, xx, yy], dim=1)`` with the (B, 1, H, W) coordinate maps ``xx``, ``yy`` in [-1, 1]."""
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        xx = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        yy = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        return torch.cat([x, xx, yy], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in_channels, H, W) to (B, out_channels, H, W)."""
        return self.conv(self.add_coordinates(x))


class Masker(nn.Module):
    """The causal-intervention masker of eq. 2: ``M = sigmoid(F(x))``, a soft mask in (0, 1) of the input's shape.

    Layer order of the reference ``Masker`` (method_notes 2.2): CoordConv 3x3 (C + 2 -> C, no bias) + BN + ReLU,
    Conv 3x3 (no bias) + BN + ReLU, CoordConv 3x3 again, Conv 3x3 (with bias), BN, sigmoid. The mask is channel-wise
    and spatial (one value per feature element) and is never binarised (the reference's unused ``gumbel_softmax``
    is not built). Use :func:`complementary_features` for ``F^c = M * x`` and ``F^s = (1 - M) * x``.

    With ``channels=512`` the masker has 9,460,224 parameters (method_notes 2.4: 9.46 M).

    Args:
        channels: channels ``C`` of the features (and of the mask).

    Raises:
        ValueError: when ``channels`` is not a positive integer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        _check_positive("Masker", channels=channels)
        self.coord1 = CoordConv(channels, channels, 3)
        self.conv = conv_bn_relu(channels, channels, 3)
        self.coord2 = CoordConv(channels, channels, 3)
        self.out = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the causal mask ``M`` (B, C, H, W), values in (0, 1), for features ``x`` (B, C, H, W)."""
        x = self.coord2(self.conv(self.coord1(x)))
        return torch.sigmoid(self.norm(self.out(x)))


def complementary_features(features: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split ``features`` with the complementary masks of eq. 2: ``(M * F, (1 - M) * F)``.

    The two parts add up to ``features`` (up to floating-point rounding).

    Args:
        features: ``F_i`` (B, C, H, W).
        mask: ``M_i`` of the same shape, values in [0, 1] (output of :class:`Masker`).

    Returns:
        ``(F_i^c, F_i^s)``: the causal and the confounding features.
    """
    return mask * features, (1.0 - mask) * features


class BranchBatchNorm2d(nn.Module):
    """BatchNorm2d whose affine transform is shared by several branches, with separate running statistics per branch.

    ``forward(x, branch)`` normalises ``x`` exactly as :class:`torch.nn.BatchNorm2d` would (batch statistics in
    training mode, running statistics in evaluation mode; ``momentum`` and ``eps`` have the same meaning), but the
    running mean and variance read and updated are those of ``branch`` only; ``weight`` and ``bias`` are the same
    for every branch.

    Why (CausalCLIPSeg): the reference applies ONE ConvBNReLU (``aggr``) to the causal and to the confounding
    features (method_notes 2.2). A single BatchNorm then accumulates running statistics of both kinds of features in
    training, while at evaluation only the causal ones pass through it (section 2.3: inference uses ``D_c``), so
    the causal features would be normalised with statistics they do not have. Keeping the convolution and affine
    parameters shared (the reference's parameters, same count) and the statistics per branch removes that
    train/evaluation mismatch. This is the "split" BatchNorm used for inputs of different distributions, e.g. the
    auxiliary BatchNorm of adversarial training (Xie et al., "Adversarial Examples Improve Image Recognition",
    CVPR 2020); it is our change, not the paper's or the reference's.

    Args:
        num_features: channels ``C``.
        num_branches: number of separate statistics. Defaults to 2 (causal, confounding).
        eps: added to the variance. Defaults to 1e-5 (``nn.BatchNorm2d``).
        momentum: running-statistics momentum. Defaults to 0.1 (``nn.BatchNorm2d``).

    Buffers:
        running_mean, running_var: (num_branches, C), initialised to 0 and 1; num_batches_tracked: (num_branches,).

    Raises:
        ValueError: when a size is not a positive integer; (when called) when ``branch`` is out of range.
    """

    def __init__(self, num_features: int, num_branches: int = 2, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive("BranchBatchNorm2d", num_features=num_features, num_branches=num_branches)
        self.num_features = num_features
        self.num_branches = num_branches
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_branches, num_features))
        self.register_buffer("running_var", torch.ones(num_branches, num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(num_branches, dtype=torch.long))

    def forward(self, x: torch.Tensor, branch: int) -> torch.Tensor:
        """Normalise ``x`` (B, C, H, W) with the statistics of ``branch`` (0 <= branch < num_branches)."""
        if branch < 0 or branch >= self.num_branches:
            raise ValueError(f"BranchBatchNorm2d: branch must be in [0, {self.num_branches - 1}], got {branch}.")
        # the branch's statistics are updated on a copy and written back: independent of whether a backend updates
        # a view of the (num_branches, C) buffer in place
        mean = self.running_mean[branch].clone()
        var = self.running_var[branch].clone()
        out = F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)
        if self.training:
            with torch.no_grad():
                self.running_mean[branch].copy_(mean)
                self.running_var[branch].copy_(var)
                self.num_batches_tracked[branch] += 1
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_branches={self.num_branches}, eps={self.eps}, momentum={self.momentum}"


class SharedFusion(nn.Module):
    """1x1 Conv (no bias) -> BatchNorm -> ReLU shared by the branches, with per-branch BatchNorm statistics.

    The reference's ``aggr`` ConvBNReLU 1x1 (method_notes 2.2; paper section 2.3 "fused ... by a 1x1 convolution"),
    applied to ``cat[F_3^c, F_4^c, F_5^c]`` (branch 0) and to ``cat[F_3^s, F_4^s, F_5^s]`` (branch 1). The
    convolution and the BatchNorm's affine parameters are shared (the reference's parameters); the running
    statistics are separate (:class:`BranchBatchNorm2d`, which explains why).

    With 1536 input and 512 output channels the module has 787,456 parameters, as the reference's ``aggr``.

    Args:
        in_channels: input channels (the sum of the three scales' channels).
        out_channels: output channels.
        num_branches: number of separate BatchNorm statistics. Defaults to 2.

    Raises:
        ValueError: when a size is not a positive integer.
    """

    def __init__(self, in_channels: int, out_channels: int, num_branches: int = 2) -> None:
        super().__init__()
        _check_positive("SharedFusion", in_channels=in_channels, out_channels=out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.norm = BranchBatchNorm2d(out_channels, num_branches)

    def forward(self, x: torch.Tensor, branch: int) -> torch.Tensor:
        """Fuse ``x`` (B, in_channels, H, W) for ``branch`` (0: causal, 1: confounding) into (B, out, H, W)."""
        return F.relu(self.norm(self.conv(x), branch))


class CARAFE(nn.Module):
    """Content-aware reassembly of features (Wang et al., ICCV 2019), upsampling by an integer factor.

    1. Kernel prediction: channel compressor Conv 1x1 (C -> C_m, with bias), content encoder Conv
       ``encoder_kernel_size`` (C_m -> up^2 * k^2, with bias), pixel shuffle by ``up`` to (B, k^2, up H, up W), softmax
       over the k^2 weights of every output pixel.
    2. Reassembly: output pixel ``(i * up + a, j * up + b)`` is the kernel-weighted sum of the k x k neighbourhood
       (zero padding) of its source location ``(i, j)`` in the input; the k^2 positions are ordered row by row.
    3. Conv 1x1 (C -> out_channels, with bias), as in the reference.

    Differences from the original paper's defaults, following the CausalCLIPSeg reference ``CARAFE(512, 512)``
    (method_notes 2.2): reassembly kernel ``k_up = 3`` instead of 5, compressor width ``C / 4`` instead of 64; the
    reference also appends the 1x1 output convolution, which the original operator does not have. The content
    encoder kernel is 3 in both.

    With ``channels=512`` the module has 369,828 parameters (method_notes 2.4: 0.37 M).

    Args:
        channels: channels ``C`` of the input map.
        out_channels: channels of the output map; ``None`` (default) keeps ``channels``.
        kernel_size: reassembly kernel size ``k_up``, odd. Defaults to 3 (reference).
        up_factor: upsampling factor, >= 1. Defaults to 2.
        compressed_channels: compressor width ``C_m``; ``None`` (default) uses ``channels // 4`` (reference).
        encoder_kernel_size: content encoder kernel size ``k_encoder``, odd. Defaults to 3 (reference and paper).

    Raises:
        ValueError: when a size is not a positive integer (also ``channels // 4 == 0`` with the default compressor)
            or a kernel size is even.

    Examples::

        >>> up = CARAFE(64)
        >>> up(torch.rand(2, 64, 7, 9)).shape
        torch.Size([2, 64, 14, 18])
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        up_factor: int = 2,
        compressed_channels: int | None = None,
        encoder_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        if compressed_channels is None:
            _check_positive("CARAFE", channels=channels)
            compressed_channels = channels // 4
            if compressed_channels < 1:
                raise ValueError(
                    f"CARAFE: the default compressor width channels // 4 is 0 for channels={channels}; "
                    "pass compressed_channels."
                )
        _check_positive(
            "CARAFE",
            channels=channels,
            out_channels=out_channels,
            up_factor=up_factor,
            compressed_channels=compressed_channels,
        )
        _check_odd("CARAFE", "kernel_size", kernel_size)
        _check_odd("CARAFE", "encoder_kernel_size", encoder_kernel_size)
        self.kernel_size = kernel_size
        self.up_factor = up_factor
        self.compressor = nn.Conv2d(channels, compressed_channels, kernel_size=1)
        self.encoder = nn.Conv2d(
            compressed_channels,
            up_factor * up_factor * kernel_size * kernel_size,
            kernel_size=encoder_kernel_size,
            padding=encoder_kernel_size // 2,
        )
        self.out = nn.Conv2d(channels, out_channels, kernel_size=1)

    def predict_kernels(self, x: torch.Tensor) -> torch.Tensor:
        """Return the normalised reassembly kernels (B, k^2, up H, up W) for ``x`` (B, C, H, W); they sum to 1."""
        kernels = F.pixel_shuffle(self.encoder(self.compressor(x)), self.up_factor)
        return torch.softmax(kernels, dim=1)

    def reassemble(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Reassemble ``x`` (B, C, H, W) with ``kernels`` (B, k^2, up H, up W) into (B, C, up H, up W)."""
        b, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        k, up = self.kernel_size, self.up_factor
        neighbourhoods = F.unfold(x, kernel_size=k, padding=k // 2).view(b, c, k * k, h, w)
        weights = kernels.view(b, k * k, h, up, w, up)
        out = torch.einsum("bcnhw,bnhpwq->bchpwq", neighbourhoods, weights)
        return out.reshape(b, c, h * up, w * up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` (B, C, H, W) to (B, out_channels, up H, up W)."""
        return self.out(self.reassemble(x, self.predict_kernels(x)))


class TextConditionedDecoder(nn.Module):
    """Cross-modal decoder of eq. 1: ``S = W_tau * up(F) + b_tau``, one dynamic kernel per text (section 2.2).

    - ``up(F)``, "upsampled to the full resolution by interpolation and convolution", as in the reference
      ``Projector.vis`` (method_notes 2.2): bilinear x4 (``align_corners=False``), ConvBNReLU 3x3
      (in_channels -> hidden_channels), bilinear x4, ConvBNReLU 3x3 (hidden_channels -> channels), Conv 1x1
      (channels -> channels, with bias). The map grows 16 times: from stride 16 to the input resolution.
    - ``Linear(text_dim, channels * K * K + 1)`` maps the text feature ``tau`` to a kernel ``W_tau`` (1 output
      channel, ``channels`` input channels, K x K) and a scalar bias ``b_tau``; the split takes the first
      ``channels * K * K`` values (channel-major, then row, then column) as the kernel and the last as the bias.
    - Cross-correlation of each sample's map with its own kernel (``F.conv2d`` with ``groups=B``, "same" padding).

    With in_channels 512, text_dim 512, channels 256, K 3 the decoder has 4,788,737 parameters (method_notes 2.4:
    each Projector 4.79 M).

    Args:
        in_channels: channels of the stride-16 input features ``F``.
        text_dim: size ``T`` of the text feature ``tau``.
        channels: channels ``C`` of ``up(F)`` and of the dynamic kernel. Defaults to 256 (reference).
        kernel_size: dynamic kernel size ``K``, odd. Defaults to 3 (reference).
        hidden_channels: channels after the first upsampling convolution; ``None`` (default) uses ``in_channels``
            (reference: 512).

    Raises:
        ValueError: when a size is not a positive integer or ``kernel_size`` is even.

    Examples::

        >>> dec = TextConditionedDecoder(in_channels=32, text_dim=16, channels=8)
        >>> dec(torch.rand(2, 32, 4, 4), torch.rand(2, 16)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        in_channels: int,
        text_dim: int,
        channels: int = 256,
        kernel_size: int = 3,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        _check_positive(
            "TextConditionedDecoder",
            in_channels=in_channels,
            text_dim=text_dim,
            channels=channels,
            hidden_channels=hidden_channels,
        )
        _check_odd("TextConditionedDecoder", "kernel_size", kernel_size)
        self.channels = channels
        self.kernel_size = kernel_size
        self.text_dim = text_dim
        self.visual = nn.Sequential(
            nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False),
            conv_bn_relu(in_channels, hidden_channels, 3),
            nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False),
            conv_bn_relu(hidden_channels, channels, 3),
            nn.Conv2d(channels, channels, kernel_size=1),
        )
        self.text = nn.Linear(text_dim, channels * kernel_size * kernel_size + 1)

    def forward(self, features: torch.Tensor, text_feature: torch.Tensor) -> torch.Tensor:
        """Return the (B, 1, 16 H, 16 W) response map (logits) for ``features`` (B, in_channels, H, W) and
        ``text_feature`` (B, text_dim).

        Raises:
            ValueError: when ``text_feature`` is not (B, text_dim) with the batch size of ``features``.
        """
        if text_feature.dim() != 2 or text_feature.shape[1] != self.text_dim:
            raise ValueError(
                f"TextConditionedDecoder: text_feature must be (B, text_dim={self.text_dim}), "
                f"got shape {list(text_feature.shape)}."
            )
        if text_feature.shape[0] != features.shape[0]:
            raise ValueError(
                f"TextConditionedDecoder: batch sizes differ: {features.shape[0]} feature maps, "
                f"{text_feature.shape[0]} text features."
            )
        x = self.visual(features)
        b, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        params = self.text(text_feature)
        weight = params[:, :-1].reshape(b, c, self.kernel_size, self.kernel_size)
        bias = params[:, -1]
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, bias=bias, padding=self.kernel_size // 2, groups=b)
        return out.reshape(b, 1, h, w)


class _ReverseGradient(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``-lambd`` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return grad_output * (-ctx.lambd), None


class GradientReversal(nn.Module):
    """Gradient reversal layer (Ganin and Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015).

    Forward: identity. Backward: the gradient is multiplied by ``-lambd``. CausalCLIPSeg places it on BOTH inputs of
    the confounding decoder ``D_s``: between the confounding features ``F^s`` and ``D_s``, and between the sentence
    feature ``tau`` and ``D_s``, with ``lambd = 1`` (a sign flip); the loss weights ``L_s`` by the paper's
    ``lambda``. Minimising ``L_c + lambda * L_s`` then trains ``D_s`` to minimise ``L_s`` while the masker, the fusion
    and both encoders receive ``dL_c - lambda * dL_s``, i.e. maximise ``L_s`` as in eq. 3
    (``L = L_c - lambda * L_s``). This realisation of the min-max game is ours; the paper and the reference code do
    not say how eq. 3 is optimised (method_notes 2.2: the loss is not in the reference code).

    Modes:

    - evaluation mode: identity (no autograd node);
    - training mode, eager: a ``torch.autograd.Function`` whose forward returns the input values exactly;
    - training mode, TorchScript (autograd Functions cannot be scripted): ``x * (-lambd) + (x * (1 + lambd)).detach()``,
      whose gradient is exactly ``-lambd`` and whose value equals ``x`` up to floating-point rounding.

    Args:
        lambd: the reversal coefficient >= 0. Defaults to 1.0, a pure sign flip: in CausalCLIPSeg the paper's
            ``lambda = 0.05`` (section 3.2) is carried by the loss (:class:`common.losses.CausalMinMaxLoss` returns
            ``L_c + lambda * L_s``), so a coefficient of 0.05 here would apply it twice (``-lambda**2 * dL_s``).

    Raises:
        ValueError: when ``lambd`` is negative or not a number.
    """

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not lambd >= 0.0:
            raise ValueError(f"GradientReversal: lambd must be a number >= 0, got {lambd!r}.")
        self.lambd = float(lambd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` (values unchanged); in training mode its gradient is reversed and scaled by ``lambd``."""
        if not self.training:
            return x
        if torch.jit.is_scripting():
            return x * (-self.lambd) + (x * (1.0 + self.lambd)).detach()
        return self._reverse(x)

    @torch.jit.unused
    def _reverse(self, x: torch.Tensor) -> torch.Tensor:
        return _ReverseGradient.apply(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"
