# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
BiCLIP: Bidirectional and Consistent Language-Image Processing (Talaei et al.; /work/shared/papers/biclip.txt).

The network of Fig. 1a: a text embedding (frozen CXR-BERT vectors, or the offline trainable table) is refined by the
image (BMF, eq. 1), turned into a pseudo image that is mapped back to the text space (cycle, eq. 2), concatenated with
the image and segmented by one U-Net; in training, two views of the two-part input (IAC, eq. 3-5) go through the same
U-Net and the prediction comes from the weak one (eq. 7). Structure and widths follow the reference code
(SeivanTalaie/BiCLIP ``utils/githubUNET/github_UNET_aug_text_gene.py``; /work/shared/reference/method_notes.md
section 4.1); the U-Net is MONAI's ``BasicUNet``.
"""

from __future__ import annotations

__all__ = ["BiCLIP"]

import warnings
from collections.abc import Callable, Sequence
from typing import Dict, Optional

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from common.networks.biclip_blocks import (
    BidirectionalFusion,
    IACProjection,
    ImageEmbedding,
    ImageToTextHead,
    PseudoImageGenerator,
    TextProjection,
)
from common.transforms.biclip import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PSEUDO_MEAN,
    PSEUDO_STD,
    BatchChannelAugmentd,
    BatchRandFlipAffined,
)


class BiCLIP(nn.Module):
    """
    BiCLIP (Talaei et al.), a text-guided segmentation network whose text reaches the U-Net as a pseudo image.

    Forward, in order (B images of side S, S a multiple of 16; ``D = (S // 8) ** 2``, 784 at 224):

    1. Text: token vectors (B, L, text_dim), from the trainable ``text_embedder`` applied to token ids (B, L), or
       given directly as frozen encoder vectors (``text_embedder=None``: e.g. CXR-BERT vectors from
       :py:class:`common.transforms.HFTextEmbedd`, padding rows zero) or as one pooled vector (B, text_dim). They are
       averaged over the real tokens (padding ids / all-zero rows left out), then :class:`TextProjection` gives ``t``
       (B, D) (section 2.1).
    2. :class:`ImageEmbedding` of the raw image gives ``i``; BMF, eq. 1: ``t' = t + g_BMF([t; i])``.
    3. :class:`PseudoImageGenerator`: ``x_hat = G(t')`` (B, in_channels, S, S) in [0, 1]; :class:`ImageToTextHead`:
       ``t_hat = h(x_hat)`` (eq. 2).
    4. ``x_cat = [x; x_hat]`` (2 * in_channels channels).

       - Evaluation (eq. 7, ONE U-Net pass): ``x_w = [N_r(x); N_p(x_hat)]`` with ``N_r`` the ImageNet normalisation
         of the real channels and ``N_p(v) = (v - 0.5) / 0.25``; the output is the logits
         ``Conv1x1(F(x_w))`` (B, out_channels, S, S). The reference runs the U-Net a second time on the same input
         at evaluation (method_notes.md 4.1); its result is discarded, so this network does not.
       - Training (eq. 3-5, two U-Net passes): ``(x_g, y_g) = A_g(x_cat, y)`` (``spatial_augment``, applied to the
         mask ``label`` too when it is passed); ``x_w = [N_r(A_w(x_g^r)); N_p(x_g^p)]``,
         ``x_s = [N_r(A_s(x_g^r)); N_p(x_g^p)]`` (``weak_augment`` / ``strong_augment`` touch the real channels
         only); ``f_w = F(x_w)``, ``f_s = F(x_s)``, ``p_w``, ``p_s`` from :class:`IACProjection`; the logits of eq. 7
         come from ``f_w``. Without ``label`` no spatial augmentation is applied (nothing could keep the mask
         aligned), so a caller that only times the network (``tools/benchmark.py``) still gets a consistent target.

    ``F`` is the last decoder map of MONAI's ``BasicUNet`` (the output of ``upcat_1``, ``unet_features[5]`` channels)
    and ``Conv1x1`` its ``final_conv``.

    Training-mode output: a dictionary (what :py:class:`common.losses.BiCLIPLoss` reads):
    ``pred`` weak-view logits (in the augmented frame), ``label`` ``y_g`` (only when ``label`` was given),
    ``image`` the un-augmented input ``x``, ``pseudo`` ``x_hat`` (un-augmented), ``text`` ``t``, ``text_cycle``
    ``t_hat``, and, with ``iac=True``, ``proj_weak`` ``p_w`` and ``proj_strong`` ``p_s``. Evaluation-mode output: the
    logits tensor. TorchScript: ``torch.jit.script(model.eval())`` scripts the evaluation path (the training path
    is ``@torch.jit.unused``; a scripted model in training mode raises).

    Args:
        in_channels: image channels. Defaults to 3.
        out_channels: output logit channels. Defaults to 1.
        image_size: S, the input side, a positive multiple of 16. Defaults to 224.
        text_dim: width of the token vectors (768 for CXR-BERT, or the table's width). Defaults to 768.
        text_embedder: module mapping token ids (B, L) to vectors (B, L, text_dim) (e.g.
            :py:class:`common.networks.TokenEmbedding`), or ``None`` when the text arrives as float vectors.
        pad_id: the padding token id left out of the text mean (with ``text_embedder``). Defaults to 0.
        unet_features: the six ``BasicUNet`` widths (reference: 64, 128, 256, 512, 1024, 64). Defaults to those.
        unet_norm: ``BasicUNet`` normalisation (the reference's U-Net uses batch norm). Defaults to ``"batch"``.
        image_channels: :class:`ImageEmbedding` widths. Defaults to (64, 256).
        image_stride: :class:`ImageEmbedding` stride. Defaults to 1 (the reference).
        generator_channels: :class:`PseudoImageGenerator` hidden widths. Defaults to (16, 8).
        cycle_channels: :class:`ImageToTextHead` widths. Defaults to (32, 64).
        iac_dim: width of ``p_w``/``p_s``. Defaults to 256.
        iac: run the strong view and return ``proj_weak``/``proj_strong`` in training (False: one pass, no IAC
            projection head is built, the "w/o IAC" ablation; ``inference.json`` needs the same ``use_iac`` to load
            such a checkpoint). Defaults to ``True``.
        spatial_augment: A_g, a callable on ``{"image": x_cat, "label": y}`` batches returning the same keys
            (default :py:class:`common.transforms.biclip.BatchRandFlipAffined` with the reference's settings);
            ``None`` keeps the default, pass ``False`` for no spatial augmentation.
        weak_augment: A_w, a callable on one sample's real channels (C, H, W) (e.g. a MONAI ``Compose``); ``None``
            (default) is the reference's: no appearance change.
        strong_augment: A_s, likewise (default ``None``: none; the bundle passes
            :py:func:`common.transforms.biclip.biclip_strong_augment`).

    Raises:
        ValueError: at construction for a bad ``image_size`` or ``unet_features``; in forward when the image is not
            (B, in_channels, S, S) or the text shape does not fit (the message gives the expected shape).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        image_size: int = 224,
        text_dim: int = 768,
        text_embedder: nn.Module | None = None,
        pad_id: int = 0,
        unet_features: Sequence[int] = (64, 128, 256, 512, 1024, 64),
        unet_norm: str = "batch",
        image_channels: Sequence[int] = (64, 256),
        image_stride: int = 1,
        generator_channels: Sequence[int] = (16, 8),
        cycle_channels: Sequence[int] = (32, 64),
        iac_dim: int = 256,
        iac: bool = True,
        spatial_augment: Callable | bool | None = None,
        weak_augment: Callable | None = None,
        strong_augment: Callable | None = None,
    ) -> None:
        super().__init__()
        if image_size < 16 or image_size % 16:
            raise ValueError(
                f"image_size must be a positive multiple of 16 (U-Net depth 4, generator x8), got {image_size}."
            )
        if len(unet_features) != 6:
            raise ValueError(f"unet_features must have 6 widths (BasicUNet), got {list(unet_features)}.")
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.text_dim = int(text_dim)
        self.pad_id = int(pad_id)
        self.embed_dim = (self.image_size // 8) ** 2
        self.text_embedder = text_embedder
        self.has_embedder = text_embedder is not None
        self.text_projection = TextProjection(self.text_dim, self.embed_dim)
        self.image_embedding = ImageEmbedding(self.in_channels, image_channels, image_stride)
        self.fusion = BidirectionalFusion(self.embed_dim, self.image_embedding.out_dim)
        self.generator = PseudoImageGenerator(self.image_size // 8, self.in_channels, generator_channels)
        self.image_to_text = ImageToTextHead(self.in_channels, self.embed_dim, cycle_channels)
        self.unet = BasicUNet(
            spatial_dims=2,
            in_channels=2 * self.in_channels,
            out_channels=out_channels,
            features=tuple(int(f) for f in unet_features),
            norm=unet_norm,
            upsample="deconv",
        )
        self.iac = bool(iac)
        # without IAC the heads are not built: a parameter without gradient would stop DistributedDataParallel
        self.iac_projection = IACProjection(int(unet_features[5]), iac_dim) if self.iac else None
        mean = torch.tensor(IMAGENET_MEAN[: self.in_channels] if self.in_channels == 3 else [0.5] * self.in_channels)
        std = torch.tensor(IMAGENET_STD[: self.in_channels] if self.in_channels == 3 else [0.25] * self.in_channels)
        self.register_buffer("real_mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("real_std", std.view(1, -1, 1, 1), persistent=False)
        self.pseudo_mean, self.pseudo_std = float(PSEUDO_MEAN), float(PSEUDO_STD)
        if spatial_augment is None:
            spatial_augment = BatchRandFlipAffined(
                keys=["image", "label"], mode=["bilinear", "nearest"], allow_missing_keys=True
            )
        self.spatial_augment = spatial_augment if spatial_augment is not False else None
        channels = (0, self.in_channels)
        self.weak_augment = BatchChannelAugmentd("image", weak_augment, channels) if weak_augment else None
        self.strong_augment = BatchChannelAugmentd("image", strong_augment, channels) if strong_augment else None

    # ----------------------------------------------------------------------------------------------- pieces
    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """
        The compact text embedding ``t`` of section 2.1: the mean of the real token vectors, then
        :class:`TextProjection`.

        Args:
            text: token ids (B, L) with a ``text_embedder``; otherwise float vectors (B, L, text_dim) whose all-zero
                rows are padding, or one pooled vector per text (B, text_dim).

        Returns:
            ``t``, (B, (image_size // 8) ** 2).
        """
        if self.text_embedder is not None:
            if text.dim() != 2:
                raise ValueError(f"BiCLIP expects token ids of shape (B, L), got {list(text.shape)}.")
            vectors = self.text_embedder(text)
            mask = (text != self.pad_id).to(vectors.dtype)
        else:
            if text.dim() == 2:
                if text.shape[1] != self.text_dim:
                    raise ValueError(
                        f"BiCLIP expects a text vector of shape (B, {self.text_dim}), got {list(text.shape)}."
                    )
                return self.text_projection(text.float())
            if text.dim() != 3 or text.shape[2] != self.text_dim:
                raise ValueError(
                    f"BiCLIP expects text vectors of shape (B, L, {self.text_dim}), got {list(text.shape)}."
                )
            vectors = text.float()
            mask = (vectors.abs().sum(dim=2) > 0).to(vectors.dtype)
        pooled = (vectors * mask.unsqueeze(2)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.text_projection(pooled)

    def normalize_input(self, real: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        """
        ``[N_r(real); N_p(pseudo)]`` of eq. 4: the ImageNet normalisation of the real channels (the reference's for
        both views; mean 0.5, std 0.25 per channel when ``in_channels`` is not 3) and ``(pseudo - 0.5) / 0.25``.

        Args:
            real: (B, in_channels, H, W) in [0, 1].
            pseudo: (B, in_channels, H, W).

        Returns:
            (B, 2 * in_channels, H, W).
        """
        return torch.cat(
            [(real - self.real_mean) / self.real_std, (pseudo - self.pseudo_mean) / self.pseudo_std], dim=1
        )

    def decoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """
        ``F(.)`` of eq. 5: one U-Net pass up to the last upsampling stage (``BasicUNet.upcat_1``).

        Args:
            x: the two-part input (B, 2 * in_channels, H, W).

        Returns:
            (B, unet_features[5], H, W).
        """
        u = self.unet
        x0 = u.conv_0(x)
        x1 = u.down_1(x0)
        x2 = u.down_2(x1)
        x3 = u.down_3(x2)
        x4 = u.down_4(x3)
        return u.upcat_1(u.upcat_2(u.upcat_3(u.upcat_4(x4, x3), x2), x1), x0)

    def _check_image(self, image: torch.Tensor) -> None:
        if (
            image.dim() != 4
            or image.shape[1] != self.in_channels
            or image.shape[2] != self.image_size
            or (image.shape[3] != self.image_size)
        ):
            raise ValueError(
                f"BiCLIP expects images of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}) "
                f"(image_size fixes the pseudo-image size), got {list(image.shape)}."
            )

    def pseudo_image(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Section 2.1: ``t``, then BMF (eq. 1) and the generator.

        Args:
            image: (B, in_channels, S, S) in [0, 1].
            text: as in :meth:`encode_text`.

        Returns:
            ``(t, t', x_hat)``.
        """
        t = self.encode_text(text)
        if t.shape[0] != image.shape[0]:
            raise ValueError(f"BiCLIP got {image.shape[0]} images but {t.shape[0]} texts.")
        refined = self.fusion(t, self.image_embedding(image))
        return t, refined, self.generator(refined)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(
        self, image: torch.Tensor, text: Optional[torch.Tensor] = None, label: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Args:
            image: (B, in_channels, S, S), intensities in [0, 1].
            text: token ids (B, L) or text vectors (B, L, text_dim) / (B, text_dim); see :meth:`encode_text`.
                ``None`` is the empty note, with a warning: one padding id per image with a ``text_embedder``, a
                zero vector (B, text_dim) without one (what ``python -m monai.bundle verify_net_in_out`` runs,
                since MONAI synthesises only the image).
            label: the mask (B, 1, S, S), training only: spatially augmented together with the input (eq. 3).

        Returns:
            evaluation: logits (B, out_channels, S, S) from one U-Net pass (eq. 7); training: the dictionary
            described in the class docstring.
        """
        if text is None:
            text = self._empty_note(image)
        if self.training and not torch.jit.is_scripting():
            return self._forward_train(image, text, label)
        self._check_image(image)
        _, _, pseudo = self.pseudo_image(image, text)
        return self.unet.final_conv(self.decoder_features(self.normalize_input(image, pseudo)))

    def _empty_note(self, image: torch.Tensor) -> torch.Tensor:
        """The documented default text of :meth:`forward`: the empty note (its pooled embedding is zero)."""
        warnings.warn("BiCLIP: no text given; using the empty note (every token is padding).")
        if self.text_embedder is not None:
            return torch.full((image.shape[0], 1), self.pad_id, dtype=torch.long, device=image.device)
        return torch.zeros(image.shape[0], self.text_dim, dtype=image.dtype, device=image.device)

    @torch.jit.unused
    def _forward_train(self, image: torch.Tensor, text: torch.Tensor, label: Optional[torch.Tensor]):
        self._check_image(image)
        t, _, pseudo = self.pseudo_image(image, text)
        out: Dict[str, torch.Tensor] = {"image": image, "pseudo": pseudo, "text": t}
        out["text_cycle"] = self.image_to_text(pseudo)
        views = {"image": torch.cat([image, pseudo], dim=1)}
        if label is not None:
            if tuple(label.shape[2:]) != tuple(image.shape[2:]) or label.shape[0] != image.shape[0]:
                raise ValueError(f"BiCLIP: label shape {list(label.shape)} does not match image {list(image.shape)}.")
            views["label"] = label.float()
            if self.spatial_augment is not None:
                views = self.spatial_augment(views)
            out["label"] = views["label"]
        n = self.in_channels
        x_g = views["image"]
        real, pseudo_g = x_g[:, :n], x_g[:, n:]
        weak = self.weak_augment({"image": real})["image"] if self.weak_augment is not None else real
        f_w = self.decoder_features(self.normalize_input(weak, pseudo_g))
        out["pred"] = self.unet.final_conv(f_w)
        if self.iac_projection is not None:
            out["proj_weak"] = self.iac_projection(f_w)
            strong = self.strong_augment({"image": real})["image"] if self.strong_augment is not None else real
            out["proj_strong"] = self.iac_projection(self.decoder_features(self.normalize_input(strong, pseudo_g)))
        return out
