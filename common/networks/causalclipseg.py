# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""CausalCLIPSeg (Chen et al., MICCAI 2024; paper text in ``/work/shared/papers/causalclipseg.txt``): CLIP encoders,
multi-scale causal intervention (eq. 2) and two text-conditioned decoders (eq. 1) trained as a min-max game (eq. 3-4).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .causal_modules import (
    CARAFE,
    GradientReversal,
    Masker,
    SharedFusion,
    TextConditionedDecoder,
    complementary_features,
    conv_bn_relu,
)

__all__ = ["CausalCLIPSeg"]

_TEXT_DIM_ATTRIBUTES = ("out_dim", "output_dim", "embed_dim")


def _infer_text_dim(text_encoder: nn.Module) -> int | None:
    """Size of the text feature from the encoder's attributes, or ``None`` when it does not say."""
    for name in _TEXT_DIM_ATTRIBUTES:
        value = getattr(text_encoder, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    projection = getattr(text_encoder, "text_projection", None)
    if isinstance(projection, torch.Tensor) and projection.dim() == 2:
        return int(projection.shape[1])
    return None


class CausalCLIPSeg(nn.Module):
    """CausalCLIPSeg: referring segmentation from an image and a text, with causal intervention.

    Pipeline (paper section 2, Fig. 1; module structure of the reference ``FPN_AD`` and ``Projector``,
    ``/work/shared/reference/method_notes.md`` section 2.2), for an S x S' input (S, S' multiples of 32):

    1. ``v3, v4, v5 = image_encoder(image)`` at strides 8, 16, 32 (CLIP ResNet stages 2-4, section 2.1) and
       ``tau = text_encoder(text)`` (B, T), the [EOS] feature.
    2. Common stride 16: ``F_3 = avg_pool2d(v3, 2)``; ``F_4 = ConvBNReLU3x3(ConvBNReLU3x3(v4))``
       (``fpn_in[1] -> fpn_out -> fpn_out``); ``F_5 = CARAFE(v5)`` (x2, ``fpn_in[2]`` channels kept).
    3. Eq. 2 per scale: ``M_i = Masker_i(F_i)``, ``F_i^c = M_i * F_i``, ``F_i^s = (1 - M_i) * F_i``.
    4. Fusion, one 1x1 ConvBNReLU SHARED by both branches (reference ``aggr``; section 2.3):
       ``F^c = fuse(cat[F_3^c, F_4^c, F_5^c])``, ``F^s = fuse(cat[F_3^s, F_4^s, F_5^s])``; the convolution and the
       BatchNorm's affine parameters are shared, the BatchNorm running statistics are kept per branch
       (:class:`~common.networks.causal_modules.SharedFusion`), so that evaluation (causal branch only) normalises
       with the causal features' own statistics.
    5. Decoders (eq. 1): ``D_c(tau, F^c)`` and ``D_s(GRL(tau), GRL(F^s))``, two identical
       :class:`~common.networks.causal_modules.TextConditionedDecoder` with separate weights; GRL is a
       :class:`~common.networks.causal_modules.GradientReversal` with ``grl_lambda``, on BOTH inputs of ``D_s``, so
       that every parameter upstream of ``D_s`` (image encoder, text encoder, maskers, fusion) receives eq. 3's
       ``dL_c - lambda * dL_s`` (see ``grl_lambda``).

    Outputs (logits, no sigmoid), at the input resolution:

    - training mode: (B, 2, H, W) = ``cat[D_c, D_s]`` for the min-max loss
      (:class:`common.losses.causal.CausalMinMaxLoss`);
    - evaluation mode: (B, 1, H, W) = ``D_c`` only; inference uses the causal branch (section 2.3); the fusion of
      the confounding features, the GRL and ``D_s`` are not run.
    - ``causal=False`` (paper Table 2, "without causal intervention"): no maskers, no ``D_s``, no GRL; the fused
      features ``fuse(cat[F_3, F_4, F_5])`` go to ``D_c``; (B, 1, H, W) in both modes.

    Differences from the reference code:

    - The paper masks each stage and then brings the scales together with CARAFE (section 2.3); the reference (and
      this class) first brings ``v3``, ``v4``, ``v5`` to stride 16 (average pooling, two 3x3 ConvBNReLU, CARAFE)
      and then masks once per scale at stride 16 (method_notes 2.2, ``FPN_AD.forward``).
    - The fusion's BatchNorm keeps separate running statistics for the two branches (reference: one BatchNorm for
      both; see :class:`~common.networks.causal_modules.BranchBatchNorm2d`). Same parameters and count.
    - Only modules used by ``forward`` are built: the reference ``FPN_AD`` also builds ``txt_proj``, ``f1_v_proj``,
      ``norm_layer``, ``f2_cat``, ``f3_v_proj``, ``f3_cat``, ``f4_proj5``, ``f4_proj3`` and ``coordconv``
      (15.23 M parameters at the reference widths) that its forward never calls.
    - The reference returns ``(pred, pred_ad)`` in every mode and contains no loss; here the mode decides the output
      (above) and the gradient reversal realises the min-max game (see ``GradientReversal``).
    - Widths are arguments (the reference hard-wires 512-channel maskers); at the defaults the modules and their
      sizes are the reference's: each Masker 9,460,224, CARAFE 369,828, the fusion 787,456, the stride-16
      projection of ``v4`` 7,079,936 and each decoder 4,788,737 parameters (method_notes 2.4: 9.46 M, 0.37 M,
      FPN_AD used parts 36.62 M, each Projector 4.79 M).
    - The image size is checked (multiples of 32) and the encoder outputs are checked against ``fpn_in`` and the
      expected strides, with errors naming the sizes.

    TorchScript: ``torch.jit.script(model.eval())`` works when both encoders are scriptable; its output equals the
    eager one. In training mode the scripted GRL uses a detach formulation (see ``GradientReversal``).

    Args:
        image_encoder: module mapping the image (B, C_in, H, W) to ``(v3, v4, v5)`` with ``fpn_in`` channels at
            strides 8, 16, 32, e.g. :class:`common.networks.clip_encoders.CLIPImageEncoder`. If it has an
            ``out_channels`` attribute, it must equal ``fpn_in``.
        text_encoder: module mapping token ids (B, L) to text features (B, T), e.g.
            :class:`common.networks.clip_encoders.CLIPTextEncoder`.
        fpn_in: channels of ``(v3, v4, v5)``. Defaults to (512, 1024, 512) (CLIP RN101 with the attention-pool
            ``v5``, method_notes 2.1-2.2).
        fpn_out: channels of ``F_4`` and of the fused features ``F^c``, ``F^s``. Defaults to 512 (reference).
        decoder_channels: channels ``C`` of each decoder's full-resolution map and dynamic kernel. Defaults to 256
            (reference ``Projector(in_dim=256)``).
        kernel_size: odd size ``K`` of the text-conditioned kernel. Defaults to 3 (reference).
        causal: build the causal intervention module (maskers, ``D_s``, GRL). Defaults to True.
        grl_lambda: gradient reversal coefficient >= 0, default 1.0: a pure sign flip. The paper's ``lambda``
            (section 3.2: 0.05) is applied ONCE, by the loss (:class:`common.losses.CausalMinMaxLoss` returns
            ``L_c + lam * L_s``), so the maskers, the fusion and both encoders receive ``dL_c - lam * dL_s``, eq. 3's
            gradient (the text encoder through the reversal on ``tau``, the image encoder through the one on
            ``F^s``), while ``D_s`` minimises ``lam * L_s``. Setting both to 0.05 would apply it twice
            (``-lam**2``). Ignored with ``causal=False``.
        text_dim: size ``T`` of the text feature; ``None`` (default) reads it from the text encoder's ``out_dim``,
            ``output_dim`` or ``embed_dim`` attribute (an int) or the second size of its ``text_projection``.

    Raises:
        ValueError: for a non-positive width, an even ``kernel_size``, ``fpn_in`` without exactly 3 positive
            integers, ``fpn_in`` differing from ``image_encoder.out_channels``, a negative ``grl_lambda``, or a text
            size that cannot be read from the text encoder when ``text_dim`` is ``None``.

    Examples::

        >>> from common.networks.clip_encoders import CLIPImageEncoder, CLIPTextEncoder, load_clip
        >>> clip = load_clip("RN101", weights="clip_rn101.pt", context_length=20)
        >>> net = CausalCLIPSeg(CLIPImageEncoder(clip.visual), CLIPTextEncoder(clip, context_length=20))
        >>> net.train()(torch.rand(2, 3, 224, 224), ids).shape  # ids: (2, 20) int64 token ids
        torch.Size([2, 2, 224, 224])
        >>> net.eval()(torch.rand(2, 3, 224, 224), ids).shape
        torch.Size([2, 1, 224, 224])
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        fpn_in: Sequence[int] = (512, 1024, 512),
        fpn_out: int = 512,
        decoder_channels: int = 256,
        kernel_size: int = 3,
        causal: bool = True,
        grl_lambda: float = 1.0,
        text_dim: int | None = None,
    ) -> None:
        super().__init__()
        fpn_in = tuple(fpn_in) if isinstance(fpn_in, Sequence) and not isinstance(fpn_in, str) else fpn_in
        if not isinstance(fpn_in, tuple) or len(fpn_in) != 3:
            raise ValueError(f"CausalCLIPSeg: fpn_in must be 3 channel counts (v3, v4, v5), got {fpn_in!r}.")
        for name, value in (
            ("fpn_in[0]", fpn_in[0]),
            ("fpn_in[1]", fpn_in[1]),
            ("fpn_in[2]", fpn_in[2]),
            ("fpn_out", fpn_out),
            ("decoder_channels", decoder_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CausalCLIPSeg: {name} must be a positive integer, got {value!r}.")
        if not isinstance(causal, bool):
            raise ValueError(f"CausalCLIPSeg: causal must be True or False, got {causal!r}.")
        encoder_channels = getattr(image_encoder, "out_channels", None)
        if encoder_channels is not None and tuple(encoder_channels) != fpn_in:
            raise ValueError(
                f"CausalCLIPSeg: fpn_in={list(fpn_in)} differs from image_encoder.out_channels="
                f"{list(encoder_channels)}; set fpn_in to the encoder's channels."
            )
        if text_dim is None:
            text_dim = _infer_text_dim(text_encoder)
            if text_dim is None:
                raise ValueError(
                    f"CausalCLIPSeg: cannot read the text feature size from {type(text_encoder).__name__} (no "
                    f"int attribute {' / '.join(_TEXT_DIM_ATTRIBUTES)} and no 2-D text_projection); pass text_dim."
                )
        if isinstance(text_dim, bool) or not isinstance(text_dim, int) or text_dim < 1:
            raise ValueError(f"CausalCLIPSeg: text_dim must be a positive integer, got {text_dim!r}.")

        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fpn_in = list(fpn_in)
        self.fpn_out = fpn_out
        self.text_dim = text_dim
        self.causal = causal
        # length of the documented default text (forward with text=None): the text encoder's context length
        self.empty_note_length = int(getattr(text_encoder, "context_length", 0))

        # stride-16 features F_3 (avg-pooled v3, no parameters), F_4, F_5
        self.project4 = nn.Sequential(conv_bn_relu(fpn_in[1], fpn_out, 3), conv_bn_relu(fpn_out, fpn_out, 3))
        self.upsample5 = CARAFE(fpn_in[2], fpn_in[2], kernel_size=3, up_factor=2)
        scale_channels = (fpn_in[0], fpn_out, fpn_in[2])
        self.maskers = nn.ModuleList([Masker(c) for c in scale_channels] if causal else [])
        self.fusion = SharedFusion(sum(scale_channels), fpn_out, num_branches=2 if causal else 1)
        self.decoder_c = TextConditionedDecoder(fpn_out, text_dim, decoder_channels, kernel_size)
        self.grl: Optional[GradientReversal] = GradientReversal(grl_lambda) if causal else None
        self.decoder_s: Optional[TextConditionedDecoder] = (
            TextConditionedDecoder(fpn_out, text_dim, decoder_channels, kernel_size) if causal else None
        )

    def _check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4:
            raise ValueError(f"CausalCLIPSeg: image must be (B, C, H, W), got shape {list(image.shape)}.")
        if not image.is_floating_point():
            raise ValueError(f"CausalCLIPSeg: image must be a floating-point tensor, got dtype {image.dtype}.")
        h, w = image.shape[2], image.shape[3]
        if h < 32 or w < 32 or h % 32 != 0 or w % 32 != 0:
            raise ValueError(
                f"CausalCLIPSeg: image height and width must be positive multiples of 32 (encoder stride 32), "
                f"got {h}x{w}."
            )

    def encode_text(self, text: torch.Tensor, batch: int) -> torch.Tensor:
        """Text feature ``tau`` (B, text_dim) of the token ids ``text`` (B, L), checked against the batch size.

        Raises:
            ValueError: when ``text`` is not 2-D, its batch differs from ``batch`` or the encoder's output is not
                (B, text_dim).
        """
        if text.dim() != 2:
            raise ValueError(f"CausalCLIPSeg: text must be token ids of shape (B, L), got shape {list(text.shape)}.")
        if text.shape[0] != batch:
            raise ValueError(f"CausalCLIPSeg: {batch} images but {text.shape[0]} texts; the batch sizes must match.")
        tau = self.text_encoder(text)
        if tau.dim() != 2 or tau.shape[0] != batch or tau.shape[1] != self.text_dim:
            raise ValueError(
                f"CausalCLIPSeg: text_encoder must return (B={batch}, text_dim={self.text_dim}), "
                f"returned shape {list(tau.shape)}."
            )
        return tau

    def multi_scale_features(self, image: torch.Tensor) -> List[torch.Tensor]:
        """The stride-16 features ``[F_3, F_4, F_5]`` of ``image`` (B, C_in, H, W), H and W multiples of 32.

        Raises:
            ValueError: when the image is not a 4-D float tensor with H, W multiples of 32, or an encoder output
                does not have ``fpn_in`` channels at its stride.
        """
        self._check_image(image)
        v3, v4, v5 = self.image_encoder(image)
        b, h, w = image.shape[0], image.shape[2], image.shape[3]
        names = ["v3", "v4", "v5"]
        strides = [8, 16, 32]
        maps = [v3, v4, v5]
        for i in range(3):
            v = maps[i]
            expected = [b, self.fpn_in[i], h // strides[i], w // strides[i]]
            if list(v.shape) != expected:
                raise ValueError(
                    f"CausalCLIPSeg: image_encoder output {names[i]} must be {expected} (fpn_in[{i}] channels at "
                    f"stride {strides[i]} of the {h}x{w} image), got {list(v.shape)}."
                )
        return [F.avg_pool2d(v3, 2), self.project4(v4), self.upsample5(v5)]

    def forward(self, image: torch.Tensor, text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Segment ``image`` guided by ``text``.

        Args:
            image: (B, C_in, H, W) float images, H and W multiples of 32 (what ``image_encoder`` expects).
            text: (B, L) token ids (what ``text_encoder`` expects, e.g. int64 CLIP BPE ids). ``None`` is the empty
                note, with a warning: ``context_length`` padding ids 0 (the text encoder's ``context_length``;
                what ``python -m monai.bundle verify_net_in_out`` runs, since MONAI synthesises only the image).

        Returns:
            Logits at the input resolution: (B, 2, H, W) = ``[D_c, D_s]`` in training mode with ``causal=True``,
            otherwise (B, 1, H, W) from ``D_c``.

        Raises:
            ValueError: for a wrong image shape, dtype or size, a text batch that differs from the image batch, or
                encoder outputs of unexpected shapes.
        """
        features = self.multi_scale_features(image)
        if text is None:
            if self.empty_note_length < 1:
                raise ValueError("CausalCLIPSeg: text is None and the text encoder has no context_length.")
            warnings.warn("CausalCLIPSeg: no text given; using the empty note (every token is padding).")
            text = torch.zeros(image.shape[0], self.empty_note_length, dtype=torch.long, device=image.device)
        tau = self.encode_text(text, image.shape[0])
        decoder_s = self.decoder_s
        grl = self.grl
        if decoder_s is None or grl is None:  # causal=False
            return self.decoder_c(self.fusion(torch.cat(features, dim=1), 0), tau)

        causal_parts: List[torch.Tensor] = []
        confounding_parts: List[torch.Tensor] = []
        for i, masker in enumerate(self.maskers):
            causal_part, confounding_part = complementary_features(features[i], masker(features[i]))
            causal_parts.append(causal_part)
            confounding_parts.append(confounding_part)
        out_c = self.decoder_c(self.fusion(torch.cat(causal_parts, dim=1), 0), tau)
        if not self.training:
            return out_c
        # eq. 3: upstream of D_s everything ascends L_s, through the image features AND through the sentence feature
        out_s = decoder_s(grl(self.fusion(torch.cat(confounding_parts, dim=1), 1)), grl(tau))
        return torch.cat([out_c, out_s], dim=1)
