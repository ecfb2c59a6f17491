# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Building blocks of C2Seg ("Towards text-mask consistency in medical image segmentation", ICLR 2026 submission;
paper text in ``/work/shared/papers/c2seg.txt``), assembled by :class:`common.networks.c2seg.C2Seg`.

No code of C2Seg is public (``/work/shared/reference/method_notes.md`` section 3); the visual encoder and the decoder
follow U-KAN (Li et al., AAAI 2025; method_notes sections 3.2-3.3), which the paper names as the basis of its
encoder (section 3.1). Every block is written from the paper's equations; where the paper leaves a detail open,
the docstring says what is done here and why.

- :class:`C2SegEncoder`: the visual encoder of section 3.1 and Table 4a (``"hybrid"``: three convolutional stages
  then two tokenised-KAN stages; ``"cnn"``: five convolutional stages; ``"kan"``: five tokenised-KAN stages),
  features ``V_0 .. V_4`` at strides 2, 4, 8, 16, 32.
- :func:`complementary_attention` / :class:`BCAM`: the Bidirectional Complementary Attention Module (section 3.3,
  eq. 4-6) with KAN keys and values (``projection="kan"``) or linear ones (Table 4a, "BCAM (Linear)").
- :class:`DualAttention`: the DualA baseline of Table 3 (b).
- :class:`KGate`: the KAN-based attention gating (section 3.4, eq. 7), its MLP variant (Table 4a, "K-Gate (MLP)")
  and the plain concatenation + 1x1 convolution used when there is no gate (Table 3 rows b, c).
- :class:`C2SegFusion`: one scale's fusion, attention then gate, added to the visual feature.
- :class:`C2SegDecoder`: U-KAN's decoder (skip connections, bilinear upsampling, Tok-KAN blocks at strides 16, 8).

Shapes: ``B`` batch, ``C`` channels, ``H x W = P`` pixels of a scale, ``N`` text tokens. All blocks are
TorchScript-compatible (``torch.jit.script``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kan import KANLinear, TokenizedKANBlock

__all__ = [
    "ENCODER_KINDS",
    "FUSION_KINDS",
    "GATE_KINDS",
    "ChannelLayerNorm",
    "ConvStage",
    "TokenizedKANStage",
    "C2SegEncoder",
    "complementary_attention",
    "BCAM",
    "DualAttention",
    "KGate",
    "C2SegFusion",
    "C2SegDecoder",
]

#: visual encoders of Table 4a: the stage types of the five levels V_0 .. V_4
ENCODER_KINDS = {
    "hybrid": ("conv", "conv", "conv", "kan", "kan"),
    "cnn": ("conv", "conv", "conv", "conv", "conv"),
    "kan": ("kan", "kan", "kan", "kan", "kan"),
}
#: fusion modules: BCAM with KAN (paper) or linear keys/values (Table 4a), DualA (Table 3 b), none (Table 3 a)
FUSION_KINDS = ("bcam", "bcam_linear", "duala", "none")
#: gates: K-Gate (eq. 7), its MLP variant (Table 4a), none (concatenation + 1x1 convolution only; Table 3 b, c)
GATE_KINDS = ("kgate", "mlp", "none")


def _check_kind(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")
    return value


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every position of a (B, C, H, W) map (U-KAN's token LayerNorm).

    Args:
        dim: channels C.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


class ConvStage(nn.Module):
    """U-KAN's ``ConvLayer`` stage: 2 x (Conv3x3 with bias + BatchNorm + ReLU), then 2x2 max pooling (stride 2).

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(in_channels, out_channels), _conv_bn_relu(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.convs(x), 2)


class TokenizedKANStage(nn.Module):
    """U-KAN's tokenised-KAN encoder stage: ``PatchEmbed`` (Conv3x3 stride 2, LayerNorm) -> Tok-KAN block ->
    LayerNorm (method_notes section 3.3, ``patch_embed3``/``block1``/``norm3``).

    Args:
        in_channels: input channels.
        out_channels: output channels (token size).
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.
    """

    def __init__(self, in_channels: int, out_channels: int, grid_size: int = 5, spline_order: int = 3) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.embed_norm = ChannelLayerNorm(out_channels)
        self.block = TokenizedKANBlock(out_channels, grid_size=grid_size, spline_order=spline_order)
        self.norm = ChannelLayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.block(self.embed_norm(self.embed(x))))


class C2SegEncoder(nn.Module):
    """
    C2Seg's visual encoder (paper section 3.1; Table 4a): five stages, features ``V_0 .. V_4``.

    ``encoder="hybrid"`` (the paper's): three convolutional stages (:class:`ConvStage`) then two tokenised-KAN
    stages (:class:`TokenizedKANStage`), i.e. U-KAN's encoder (method_notes section 3.3); ``"cnn"``: five
    convolutional stages ("CNN encoder"); ``"kan"``: five tokenised-KAN stages ("KAN encoder"). Each stage halves
    the resolution, so ``V_l`` has ``channels[l]`` channels at stride ``2^(l+1)`` and the input size must be a
    multiple of 32. The global image vector ``v = W_v GAP(V_4)`` is computed by the stage I network
    (:class:`common.networks.c2seg.C2SegPretrainer`, which owns ``W_v``), so that stage II's network holds no
    parameter its forward does not use; :meth:`global_features` gives ``GAP(V_4)``.

    Args:
        in_channels: image channels. Defaults to 3.
        channels: ``(C_0, .., C_4)``. Defaults to (16, 32, 128, 160, 256), U-KAN's encoder with
            ``embed_dims = [128, 160, 256]`` (method_notes section 3.3; U-KAN's 6.36 M setting).
        encoder: ``"hybrid"``, ``"cnn"`` or ``"kan"``. Defaults to ``"hybrid"``.
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.

    Attributes:
        out_channels: ``channels`` as a tuple.

    Raises:
        ValueError: for an unknown ``encoder`` or ``channels`` that are not five positive integers.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 128, 160, 256),
        encoder: str = "hybrid",
        grid_size: int = 5,
        spline_order: int = 3,
    ) -> None:
        super().__init__()
        kinds = ENCODER_KINDS[_check_kind(encoder, tuple(ENCODER_KINDS), "encoder")]
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5 or min(channels) < 1:
            raise ValueError(f"channels must be five positive integers (C_0 .. C_4), got {list(channels)}.")
        self.kind = encoder
        self.in_channels = int(in_channels)
        self.out_channels = channels
        stages = []
        previous = self.in_channels
        for kind, width in zip(kinds, channels):
            if kind == "conv":
                stages.append(ConvStage(previous, width))
            else:
                stages.append(TokenizedKANStage(previous, width, grid_size, spline_order))
            previous = width
        self.stages = nn.ModuleList(stages)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        """
        Args:
            image: (B, in_channels, H, W) with H and W multiples of 32.

        Returns:
            ``[V_0, .., V_4]``, ``V_l`` of shape (B, channels[l], H / 2^(l+1), W / 2^(l+1)).

        Raises:
            ValueError: for a wrong channel count or a size that is not a multiple of 32.
        """
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"C2SegEncoder expects images of shape (B, {self.in_channels}, H, W), got {list(image.shape)}."
            )
        if image.shape[2] % 32 != 0 or image.shape[3] % 32 != 0:
            raise ValueError(
                f"C2SegEncoder needs height and width that are multiples of 32 (five stride-2 stages), got "
                f"{image.shape[2]} x {image.shape[3]}."
            )
        features: List[torch.Tensor] = []
        x = image
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def global_features(self, image: torch.Tensor) -> torch.Tensor:
        """``GAP(V_4)`` of section 3.1, shape (B, channels[4]).

        Args:
            image: (B, in_channels, H, W), H and W multiples of 32.
        """
        return self.forward(image)[-1].mean(dim=(2, 3))


def complementary_attention(
    v_key: torch.Tensor,
    v_value: torch.Tensor,
    l_key: torch.Tensor,
    l_value: torch.Tensor,
    token_mask: Optional[torch.Tensor] = None,
    scale_language_path: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The two paths of BCAM (paper section 3.3, eq. 4-6) from keys and values.

    - eq. 4: ``A = V_key L_key^T / sqrt(d)`` of shape (B, P, N), ``d = C``.
    - eq. 5, vision-dominant path: ``F_v = Softmax_N(A) L_value`` (B, P, C): every pixel gathers token values.
    - eq. 6, language-dominant path: ``F_l[p] = (1/N) sum_n Softmax_P(A^T[n, :])[p] * V_value[p]`` (B, P, C): every
      token spreads a distribution over the pixels; the token-averaged distribution ``w[p]`` reweights each
      pixel's value (broadcast over channels), so the output stays on the pixel grid.

    ``w`` sums to 1 over the P pixels, so eq. 6 taken literally scales ``F_l`` by about ``1/P`` (1/49 at stride 32
    of a 224 image, 1/784 at stride 8): ``scale_language_path=True`` multiplies ``F_l`` by ``P`` (weights averaging
    1 per pixel), a deviation from the paper offered as an option; the default is the paper's eq. 6.

    ``token_mask`` (an addition; the paper attends to all N tokens): tokens whose mask is False take no part, i.e.
    they get ``-inf`` in the softmax over N and are left out of the average over tokens (the ``1/N`` becomes one
    over the number of kept tokens). Every row must keep at least one token.

    Args:
        v_key: (B, P, C).
        v_value: (B, P, C).
        l_key: (B, N, C).
        l_value: (B, N, C).
        token_mask: optional bool (B, N), True for the tokens to use. Defaults to None (all tokens).
        scale_language_path: multiply ``F_l`` by P. Defaults to False (eq. 6).

    Returns:
        ``(F_v, F_l)``, each (B, P, C).
    """
    scores = torch.bmm(v_key, l_key.transpose(1, 2)) / math.sqrt(float(v_key.shape[-1]))  # (B, P, N), eq. 4
    spatial = torch.softmax(scores, dim=1)  # Softmax_P of every token's row of A^T: (B, P, N)
    if token_mask is not None:
        keep = token_mask.to(torch.bool).unsqueeze(1)  # (B, 1, N)
        f_v = torch.bmm(torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=2), l_value)  # eq. 5
        weights = keep.to(spatial.dtype)
        pixel_weight = (spatial * weights).sum(dim=2, keepdim=True) / weights.sum(dim=2, keepdim=True)
    else:
        f_v = torch.bmm(torch.softmax(scores, dim=2), l_value)  # eq. 5
        pixel_weight = spatial.mean(dim=2, keepdim=True)  # (1/N) sum_n, (B, P, 1)
    if scale_language_path:
        pixel_weight = pixel_weight * float(v_value.shape[1])
    f_l = pixel_weight * v_value  # eq. 6, broadcast over the channels
    return f_v, f_l


def _projection(dim: int, kind: str, grid_size: int, spline_order: int) -> nn.Module:
    if kind == "kan":
        return KANLinear(dim, dim, grid_size=grid_size, spline_order=spline_order)
    return nn.Linear(dim, dim)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)


def _map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


class BCAM(nn.Module):
    """
    Bidirectional Complementary Attention Module (paper section 3.3, eq. 4-6; Fig. 3c).

    Keys and values come from four separate layers: ``V_key = KAN(V)``, ``V_value = KAN(V)``, ``L_key = KAN(L)``,
    ``L_value = KAN(L)`` (:class:`common.networks.kan.KANLinear`, C -> C, applied to every pixel / token), or
    ``nn.Linear`` with ``projection="linear"`` (Table 4a, "BCAM (Linear)"). The two paths are
    :func:`complementary_attention`: ``F_v`` (vision-dominant, eq. 5) and ``F_l`` (language-dominant, eq. 6), both
    on the pixel grid. Single head, ``d = C`` (the paper gives no head count).

    Args:
        dim: channels C of the visual map and of the (projected) tokens.
        projection: ``"kan"`` (paper) or ``"linear"``. Defaults to ``"kan"``.
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.
        scale_language_path: see :func:`complementary_attention`. Defaults to False (eq. 6 as written).
    """

    def __init__(
        self,
        dim: int,
        projection: str = "kan",
        grid_size: int = 5,
        spline_order: int = 3,
        scale_language_path: bool = False,
    ) -> None:
        super().__init__()
        _check_kind(projection, ("kan", "linear"), "projection")
        self.dim = int(dim)
        self.scale_language_path = bool(scale_language_path)
        self.v_key = _projection(self.dim, projection, grid_size, spline_order)
        self.v_value = _projection(self.dim, projection, grid_size, spline_order)
        self.l_key = _projection(self.dim, projection, grid_size, spline_order)
        self.l_value = _projection(self.dim, projection, grid_size, spline_order)

    def forward(
        self, visual: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            visual: V, (B, C, H, W).
            tokens: L_l, (B, N, C).
            token_mask: optional bool (B, N), True for tokens to use.

        Returns:
            ``(F_v, F_l)``, each (B, C, H, W).
        """
        height, width = visual.shape[2], visual.shape[3]
        v = _tokens(visual)
        f_v, f_l = complementary_attention(
            self.v_key(v),
            self.v_value(v),
            self.l_key(tokens),
            self.l_value(tokens),
            token_mask,
            self.scale_language_path,
        )
        return _map(f_v, height, width), _map(f_l, height, width)


class DualAttention(nn.Module):
    """
    DualA, the dual-path vision-language attention baseline of Table 3 (b) (paper section 1 and 3.3, Fig. 3b).

    The paper gives no equations for DualA; it describes it as a bidirectional attention whose language-dominant
    branch "only updates the text tokens", so that text reaches the pixels only through the vision path's
    attention weights. This class realises that description with linear keys and values (the generic attention of
    Fig. 3a) and the same scores as eq. 4, ``A = V_key L_key^T / sqrt(C)``:

    - vision path: ``F_v = Softmax_N(A) L_value`` (as eq. 5);
    - language path: updated tokens ``L' = Softmax_P(A^T) V_value`` (N, C), brought back to the pixels through the
      vision path's weights: ``F_l = Softmax_N(A) L'``.

    Args:
        dim: channels C.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        self.v_key = nn.Linear(self.dim, self.dim)
        self.v_value = nn.Linear(self.dim, self.dim)
        self.l_key = nn.Linear(self.dim, self.dim)
        self.l_value = nn.Linear(self.dim, self.dim)

    def forward(
        self, visual: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            visual: V, (B, C, H, W).
            tokens: L_l, (B, N, C).
            token_mask: optional bool (B, N), True for tokens to use.

        Returns:
            ``(F_v, F_l)``, each (B, C, H, W).
        """
        height, width = visual.shape[2], visual.shape[3]
        v = _tokens(visual)
        v_key, v_value = self.v_key(v), self.v_value(v)
        scores = torch.bmm(v_key, self.l_key(tokens).transpose(1, 2)) / math.sqrt(float(self.dim))  # (B, P, N)
        updated = torch.bmm(torch.softmax(scores, dim=1).transpose(1, 2), v_value)  # L' (B, N, C)
        if token_mask is not None:
            scores = scores.masked_fill(~token_mask.to(torch.bool).unsqueeze(1), float("-inf"))
        to_tokens = torch.softmax(scores, dim=2)  # masked tokens get weight 0, so their L' rows are unused
        f_v = torch.bmm(to_tokens, self.l_value(tokens))
        f_l = torch.bmm(to_tokens, updated)
        return _map(f_v, height, width), _map(f_l, height, width)


class _GateHead(nn.Module):
    """``tanh(layer2(ReLU(layer1(x))))`` on every pixel (eq. 7), with KAN or linear layers."""

    def __init__(self, dim: int, kind: str, grid_size: int, spline_order: int) -> None:
        super().__init__()
        layer = "kan" if kind == "kgate" else "linear"
        self.layer1 = _projection(dim, layer, grid_size, spline_order)
        self.layer2 = _projection(dim, layer, grid_size, spline_order)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer2(F.relu(self.layer1(tokens))))


class KGate(nn.Module):
    """
    KAN-based attention gating, K-Gate (paper section 3.4, eq. 7), and its variants.

    ``g_v = tanh(KAN_v2(ReLU(KAN_v1(F_v))))``, ``g_l = tanh(KAN_l2(ReLU(KAN_l1(F_l))))`` (eq. 7; two independent
    heads, KAN layers C -> C on every pixel; the paper does not give the hidden width, C is used), then
    ``F_out = Conv1x1([F_v * g_v || F_l * g_l])`` (2C -> C, with bias).

    - ``kind="kgate"``: the paper's K-Gate.
    - ``kind="mlp"``: the heads use ``nn.Linear`` layers (Table 4a, "K-Gate (MLP)").
    - ``kind="none"``: no gating, ``F_out = Conv1x1([F_v || F_l])`` (Table 3 rows b and c, which have no K-Gate;
      the concatenation and channel mixing are kept so the fused map still has C channels).

    Args:
        dim: channels C.
        kind: ``"kgate"``, ``"mlp"`` or ``"none"``. Defaults to ``"kgate"``.
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.
    """

    def __init__(self, dim: int, kind: str = "kgate", grid_size: int = 5, spline_order: int = 3) -> None:
        super().__init__()
        _check_kind(kind, GATE_KINDS, "gate")
        self.dim = int(dim)
        self.gated = kind != "none"
        self.vision_gate = _GateHead(self.dim, kind, grid_size, spline_order) if self.gated else nn.Identity()
        self.language_gate = _GateHead(self.dim, kind, grid_size, spline_order) if self.gated else nn.Identity()
        self.mix = nn.Conv2d(2 * self.dim, self.dim, kernel_size=1)

    def forward(self, f_v: torch.Tensor, f_l: torch.Tensor) -> torch.Tensor:
        """
        Args:
            f_v: vision-dominant map (B, C, H, W).
            f_l: language-dominant map (B, C, H, W).

        Returns:
            F_out, (B, C, H, W).
        """
        if self.gated:
            height, width = f_v.shape[2], f_v.shape[3]
            v, lang = _tokens(f_v), _tokens(f_l)
            f_v = _map(v * self.vision_gate(v), height, width)
            f_l = _map(lang * self.language_gate(lang), height, width)
        return self.mix(torch.cat([f_v, f_l], dim=1))


class C2SegFusion(nn.Module):
    """
    One scale's language-vision fusion: attention (BCAM / BCAM-linear / DualA) -> gate -> ``V + F_out``.

    The paper does not say whether the fused map ``F_out`` replaces ``V_l`` or is added to it. ``F_v`` is built
    from token values only and ``F_l`` is ``V_value`` scaled by pixel weights of about ``1/P`` (eq. 6), so without
    a residual the visual content reaching the decoder would be scaled down by ``P``; the residual ``V + F_out``
    (``residual=True``, the default) keeps it. ``residual=False`` returns ``F_out`` alone.

    Args:
        dim: channels C.
        fusion: ``"bcam"``, ``"bcam_linear"`` or ``"duala"``.
        gate: ``"kgate"``, ``"mlp"`` or ``"none"``.
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.
        residual: add the visual map to the fused one. Defaults to True.
        scale_language_path: see :func:`complementary_attention` (BCAM only). Defaults to False.
    """

    def __init__(
        self,
        dim: int,
        fusion: str = "bcam",
        gate: str = "kgate",
        grid_size: int = 5,
        spline_order: int = 3,
        residual: bool = True,
        scale_language_path: bool = False,
    ) -> None:
        super().__init__()
        _check_kind(fusion, ("bcam", "bcam_linear", "duala"), "fusion")
        if fusion == "duala":
            self.attention = DualAttention(dim)
        else:
            projection = "kan" if fusion == "bcam" else "linear"
            self.attention = BCAM(dim, projection, grid_size, spline_order, scale_language_path)
        self.gate = KGate(dim, gate, grid_size, spline_order)
        self.residual = bool(residual)

    def forward(
        self, visual: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Args:
            visual: V_l, (B, C, H, W).
            tokens: L_l, (B, N, C).
            token_mask: optional bool (B, N).

        Returns:
            the fused map (B, C, H, W).
        """
        f_v, f_l = self.attention(visual, tokens, token_mask)
        out = self.gate(f_v, f_l)
        return visual + out if self.residual else out


class _DecoderConv(nn.Module):
    """U-KAN's ``D_ConvLayer``: Conv3x3 (i -> i) + BN + ReLU, Conv3x3 (i -> o) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(in_channels, in_channels), _conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class _DecoderStage(nn.Module):
    """``D_ConvLayer`` -> ReLU(bilinear x2) -> + skip -> [Tok-KAN block -> LayerNorm] (U-KAN's decoder step)."""

    def __init__(self, in_channels: int, out_channels: int, kan: bool, grid_size: int, spline_order: int) -> None:
        super().__init__()
        self.conv = _DecoderConv(in_channels, out_channels)
        self.kan = bool(kan)
        self.block = (
            TokenizedKANBlock(out_channels, grid_size=grid_size, spline_order=spline_order) if kan else nn.Identity()
        )
        self.norm = ChannelLayerNorm(out_channels) if kan else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.interpolate(self.conv(x), size=[skip.shape[2], skip.shape[3]], mode="bilinear"))
        return self.norm(self.block(x + skip))


class C2SegDecoder(nn.Module):
    """
    The decoder: skip connections and upsampling back to the input size (paper section 3, "Overview"), as U-KAN's
    decoder (method_notes section 3.3).

    From ``V_4``: for ``l = 4 .. 1``: ``D_ConvLayer(C_l -> C_{l-1})`` -> ReLU(bilinear x2) -> ``+ V_{l-1}`` and, at
    the levels in ``kan_levels`` (U-KAN: 3 and 2, strides 16 and 8), a Tok-KAN block and LayerNorm; then
    ``D_ConvLayer(C_0 -> C_0)`` -> ReLU(bilinear x2) -> Conv1x1 (C_0 -> out_channels): logits at the input size.
    The skips given to :meth:`forward` are the fused maps where fusion ran.

    Args:
        channels: ``(C_0, .., C_4)``.
        out_channels: output channels (logits).
        kan_levels: levels whose decoder step ends with a Tok-KAN block. Defaults to (3, 2) (U-KAN).
        grid_size: KAN grid size. Defaults to 5.
        spline_order: KAN spline order. Defaults to 3.
    """

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 1,
        kan_levels: Sequence[int] = (3, 2),
        grid_size: int = 5,
        spline_order: int = 3,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 5:
            raise ValueError(f"channels must be five positive integers (C_0 .. C_4), got {channels}.")
        levels = {int(k) for k in kan_levels}
        self.stages = nn.ModuleList(
            [
                _DecoderStage(channels[level], channels[level - 1], level - 1 in levels, grid_size, spline_order)
                for level in range(4, 0, -1)
            ]
        )
        self.head_conv = _DecoderConv(channels[0], channels[0])
        self.final = nn.Conv2d(channels[0], int(out_channels), kernel_size=1)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            features: ``[V_0, .., V_4]`` (fused where fusion ran).

        Returns:
            logits (B, out_channels, 2 H_0, 2 W_0).
        """
        x = features[4]
        for i, stage in enumerate(self.stages):
            x = stage(x, features[3 - i])
        x = F.relu(F.interpolate(self.head_conv(x), scale_factor=2.0, mode="bilinear"))
        return self.final(x)
