# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""LViT: Language meets Vision Transformer (Li et al., IEEE TMI 2023), the Double-U text-guided segmentation network.

Paper: ``/work/shared/papers/lvit.txt`` (section 3.1, appendix C). Module structure and data flow: the public
reference code ``HUANGLIZI/LViT`` (``nets/LViT.py``, ``nets/Vit.py``, ``nets/pixlevel.py``) as recorded in
``/work/shared/reference/method_notes.md`` section 1.1; blocks in :mod:`common.networks.lvit_blocks`.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn

from .lvit_blocks import (
    CNNViTInteraction,
    ConvTransBN,
    LViTDownBlock,
    LViTDownViT,
    LViTUpBlock,
    LViTUpViT,
    conv_bn_relu,
)

__all__ = ["LViT", "LVIT_SIZES", "build_lvit"]

#: Transformer layers per ViT module of each LViT size (paper section 4.4, "Ablation Study on Model Size").
LVIT_SIZES: dict[str, int] = {"T": 1, "S": 4, "M": 6, "L": 12}

_PATCH_SIZES = (16, 8, 4, 2)  # patch size of the DownViT at levels 1-4: always (image_size / 16) ** 2 patches


def _describe(t: torch.Tensor) -> str:
    """``"a floating-point tensor of shape [2, 10, 768]"``: same text eager and scripted (``str(dtype)`` is not)."""
    if t.is_floating_point():
        kind = "a floating-point"
    elif t.dtype == torch.bool:
        kind = "a boolean"
    elif t.is_complex():
        kind = "a complex"
    else:
        kind = "an integer"
    return kind + " tensor of shape " + str(list(t.shape))


class LViT(nn.Module):
    """LViT, a U-shaped CNN branch and a U-shaped ViT branch that merges the text (LViT section 3.1, Fig. 2).

    Data flow (``c = base_channels``; levels k = 1..4 have CNN maps ``x_k`` with ``c, 2c, 4c, 8c`` channels at
    ``S, S/2, S/4, S/8`` pixels for ``S = image_size``; every ViT level has ``N = (S / 16) ** 2`` tokens):

    1. CNN encoder (eq. 1-2): ``x_1 = ConvBNReLU(image)`` (a single Conv3x3-BN-ReLU), ``x_{k+1} = Down(x_k)`` with
       ``Down = MaxPool2d(2)`` + 2 x Conv3x3-BN-ReLU; ``x_5`` has ``8c`` channels at ``S/16``.
    2. Text (eq. 3), only with ``use_text=True``: the (B, L, text_dim) text features (or token ids embedded by
       ``text_embedder``) pass a chain of four ``Conv1d(k=3)`` over the tokens, ``text_dim -> 8c -> 4c -> 2c -> c``,
       then a CTBN block ``Conv1d(L -> N, k=3) + BN + ReLU`` that treats the ``L`` tokens as channels, giving
       (B, N, c), which is added to the level-1 patch embedding.
    3. Down ViT (eq. 3-7): ``y_1 = ViT(PatchEmb(x_1) + text)``; for k = 2..4
       ``y_k = cat[CTBN(ViT(PatchEmb(x_k))), y_{k-1}]`` where the CTBN halves ``d_k -> d_k / 2`` and the
       concatenation (feature axis) restores ``d_k``. Patch embedding (eq. 4): ``Conv2d(d, d, kernel=p, stride=p)``
       with ``p = 16, 8, 4, 2`` + learned position embedding + dropout. ViT (eq. 5-6): ``num_layers`` pre-LN
       Transformer layers (MHSA with ``num_heads`` heads, MLP ratio 4).
    4. Up ViT: ``y_4 = ViT(y_4)``; for k = 3..1 ``y_k = ViT(y_k) + CTBN(y_{k+1})`` with a ``2d -> d`` CTBN.
    5. CNN-ViT interaction (appendix C, Fig. 7): ``x_k = x_k + ReLU(BN(Conv1x1(UpsampleNearest(reshape(y_k)))))``.
    6. CNN decoder: ``x = Up(x_5, x_4)``, ..., ``Up(., x_1)``; each Up block upsamples (nearest x2), applies PLAM
       (eq. 8) to the skip features, concatenates ``[PLAM(skip), up]`` and applies 2 x Conv3x3-BN-ReLU
       (``8c -> 4c -> 2c -> c -> c`` channels); a final Conv1x1 gives the logits.

    Deviations from the reference code (method_notes section 1.1) and the paper:

    - Returns **logits**; the reference applies ``Sigmoid`` inside the model for one output class. Use a loss on
      logits (e.g. BCE-with-logits, ``DiceLoss(sigmoid=True)``) and ``sigmoid`` at inference.
    - Only modules used by ``forward`` are built. Not built (about 10 M parameters in the reference at base 64):
      ``pix_module1..4``, each PLAM's ``conv_sig``, each ViT's final ``norm`` and classification ``head``, the
      CTBN/CTBN2/CTBN3 blocks of the levels that never call them, the patch embeddings of the four up ViTs,
      ``last_activation`` and ``multi_activation``.
    - The text chain ``text_dim -> 8c -> 4c -> 2c -> c`` is built in full because every link is needed to compute
      the level-1 text features. The reference also passes the intermediate outputs (its ``text2..text4``) to the
      deeper ViTs, which ignore them; they are not passed anywhere here. As in the reference there is no
      activation between the four ``Conv1d`` layers (their composition is linear).
    - Generalised sizes: ``image_size`` (any multiple of 16), ``num_tokens``, ``text_dim``, ``base_channels`` and
      ``num_heads`` are arguments. The reference hard-wires 224 x 224 pixels, 10 x 768 text, 196 patches, ViT widths
      64..512 and the text widths 512..64; with the defaults this network has exactly the reference's used modules.
    - Optional ``text_embedder`` (token ids -> vectors). The reference consumes precomputed BERT word vectors.
    - The image is not cast with ``.float()`` as in the reference: a non-floating image raises ``ValueError``.
    - Multi-head attention uses ``torch.nn.functional.scaled_dot_product_attention`` (same function, fused kernel).
    - PLAM takes the channel maximum with ``amax``: same forward value as the reference's ``max``; on exact ties
      the gradient is shared between the maxima instead of going to one of them.
    - Eq. 7 as the reference implements it: the paper writes ``Y_{i+1} = ViT(Y_i + x_img,i+1)``; the reference (and
      this class) runs the level-(i+1) Transformer on ``x_img,i+1`` alone, halves its features with a CTBN block
      and CONCATENATES ``Y_i`` along the feature axis (the paper's "+" is a concatenation, applied after the ViT).
    - The Transformer MLP has GELU after ``fc2`` as well (reference; a standard ViT MLP has none, the paper does not
      say).
    - PLAM (eq. 8, Fig. 2b) as in the reference: its "GAP" and "GMP" branches are a per-pixel mean and maximum over
      the channels of ``ReLU(Conv1x1(x))`` (not spatial global pooling as in CBAM), and the attention map has no
      sigmoid (the paper's eq. 8 has none either).
    - Text is injected at level 1 whatever ``base_channels`` is (the reference selects the level by ``dim == 64``).
    - The up path of the ViT branch (adding ``CTBN(y_{k+1})``) and the single-conv stem are not described in the
      paper; both follow the reference.

    Size (224 px, 10 x 768 text, base 64; every registered parameter is used in forward, checked with
    :func:`common.utils.count_forward_parameters`): LViT-T 29.91 M (29,908,033, equal to the reference's
    used-in-forward count, method_notes section 1.4; 29.72 M without the 188,160 position-embedding parameters;
    paper Table 1: 29.7 M), LViT-TW 28.20 M (paper 28.0 M), S/SW 55.05/53.35 M (paper SW 53.1 M), M/MW 71.81/70.11 M
    (paper MW 69.8 M), L/LW 122.10/120.39 M (paper LW 120.1 M); the text path adds 1.70 M (paper: 1.7 M).
    With the reference's weights mapped onto this module structure, the output equals the reference's (after its
    sigmoid) to 6e-8 at 224 px in evaluation mode (checked once while writing this class). The test suite keeps
    that check: ``tests/lvit_reference_flow.py`` re-implements the reference forward with plain torch operations on
    the reference's parameter names, and ``tests/test_lvit_network.py`` compares it with this module (float64,
    evaluation and training mode).

    Args:
        in_channels: image channels. Defaults to 3.
        out_channels: output channels (logit maps). Defaults to 1.
        image_size: height = width of the input image; a positive multiple of 16. Defaults to 224 (paper).
        num_tokens: number of text tokens ``L`` per image, >= 1. Defaults to 10 (reference).
        text_dim: feature size of one text token, >= 1. Defaults to 768 (BERT-base, paper).
        base_channels: channels ``c`` of the first CNN level (levels have ``c, 2c, 4c, 8c, 8c``); a positive multiple
            of ``num_heads``. Defaults to 64 (reference).
        num_layers: Transformer layers per ViT module, >= 1: 1, 4, 6, 12 for LViT-T/S/M/L (see :data:`LVIT_SIZES`).
            Defaults to 1 (LViT-T).
        num_heads: attention heads of every ViT module, >= 1. Defaults to 8 (reference).
        use_text: build the text path. ``False`` gives LViT-xW ("without text", paper Table 1/3): no text module is
            built and ``text`` is ignored. Defaults to True.
        text_embedder: optional module mapping token ids (B, num_tokens) (int64) to (B, num_tokens, text_dim) float
            vectors, e.g. :class:`common.networks.text_embedding.TokenEmbedding`; it is called as
            ``text_embedder(ids)`` and must be TorchScript-compatible for ``torch.jit.script``/bundle export. If
            ``None`` (default), ``text`` is expected to be the (B, num_tokens, text_dim) float vectors.
        dropout: dropout probability after the position embeddings and in the Transformer MLPs, in [0, 1).
            Attention weights are not dropped. Defaults to 0.1 (reference).

    Raises:
        ValueError: when ``image_size`` is not a positive multiple of 16, ``base_channels`` is not a positive multiple
            of ``num_heads``, a count is below 1, ``dropout`` is outside [0, 1), or ``text_embedder`` is given with
            ``use_text=False``.

    Examples::

        >>> net = LViT(image_size=224, num_tokens=10, text_dim=768)  # LViT-T on precomputed BERT vectors
        >>> net(torch.rand(2, 3, 224, 224), torch.rand(2, 10, 768)).shape
        torch.Size([2, 1, 224, 224])
        >>> net_w = LViT(use_text=False, num_layers=LVIT_SIZES["S"])  # LViT-SW
        >>> net_w(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1, 224, 224])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        image_size: int = 224,
        num_tokens: int = 10,
        text_dim: int = 768,
        base_channels: int = 64,
        num_layers: int = 1,
        num_heads: int = 8,
        use_text: bool = True,
        text_embedder: nn.Module | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("num_tokens", num_tokens),
            ("text_dim", text_dim),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"LViT: {name} must be a positive integer, got {value!r}.")
        if int(image_size) != image_size or image_size < 16 or image_size % 16 != 0:
            raise ValueError(
                f"LViT: image_size must be a positive multiple of 16 (the level-1 patch size; the ViT grid is "
                f"image_size / 16), got {image_size!r}."
            )
        if int(base_channels) != base_channels or base_channels < 1 or base_channels % num_heads != 0:
            raise ValueError(
                f"LViT: base_channels must be a positive multiple of num_heads ({num_heads}) so every ViT width "
                f"(base_channels * 1, 2, 4, 8) splits into heads, got {base_channels!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LViT: dropout must be in [0, 1), got {dropout!r}.")
        if text_embedder is not None and not use_text:
            raise ValueError("LViT: text_embedder was given with use_text=False; LViT-xW builds no text module.")

        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.num_tokens = int(num_tokens)
        self.text_dim = int(text_dim)
        self.use_text = bool(use_text)
        grid = self.image_size // 16
        n_patches = grid * grid
        c = int(base_channels)
        dims = (c, 2 * c, 4 * c, 8 * c)

        # CNN encoder (eq. 1-2)
        self.inc = conv_bn_relu(2, in_channels, c)
        self.down1 = LViTDownBlock(dims[0], dims[1])
        self.down2 = LViTDownBlock(dims[1], dims[2])
        self.down3 = LViTDownBlock(dims[2], dims[3])
        self.down4 = LViTDownBlock(dims[3], dims[3])

        # text path (eq. 3)
        self.text_embedder = text_embedder
        self.text_projection = None
        self.text_to_patches = None
        if self.use_text:
            widths = (self.text_dim, dims[3], dims[2], dims[1], dims[0])
            self.text_projection = nn.Sequential(
                *[nn.Conv1d(widths[i], widths[i + 1], kernel_size=3, padding=1) for i in range(4)]
            )
            self.text_to_patches = ConvTransBN(self.num_tokens, n_patches)

        # ViT branch (eq. 3-7)
        vit = {"num_layers": int(num_layers), "num_heads": int(num_heads), "dropout": float(dropout)}
        sizes = [self.image_size // 2**k for k in range(4)]
        self.down_vit1 = LViTDownViT(dims[0], sizes[0], _PATCH_SIZES[0], merge_previous=False, **vit)
        self.down_vit2 = LViTDownViT(dims[1], sizes[1], _PATCH_SIZES[1], merge_previous=True, **vit)
        self.down_vit3 = LViTDownViT(dims[2], sizes[2], _PATCH_SIZES[2], merge_previous=True, **vit)
        self.down_vit4 = LViTDownViT(dims[3], sizes[3], _PATCH_SIZES[3], merge_previous=True, **vit)
        self.up_vit4 = LViTUpViT(dims[3], expand_deeper=False, **vit)
        self.up_vit3 = LViTUpViT(dims[2], expand_deeper=True, **vit)
        self.up_vit2 = LViTUpViT(dims[1], expand_deeper=True, **vit)
        self.up_vit1 = LViTUpViT(dims[0], expand_deeper=True, **vit)

        # CNN-ViT interaction (appendix C, Fig. 7)
        self.interaction1 = CNNViTInteraction(dims[0], grid)
        self.interaction2 = CNNViTInteraction(dims[1], grid)
        self.interaction3 = CNNViTInteraction(dims[2], grid)
        self.interaction4 = CNNViTInteraction(dims[3], grid)

        # CNN decoder with PLAM on every skip connection (eq. 8)
        self.up4 = LViTUpBlock(dims[3], dims[3], dims[2])
        self.up3 = LViTUpBlock(dims[2], dims[2], dims[1])
        self.up2 = LViTUpBlock(dims[1], dims[1], dims[0])
        self.up1 = LViTUpBlock(dims[0], dims[0], dims[0])
        self.out = nn.Conv2d(dims[0], out_channels, kernel_size=1)

    def _check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4:
            raise ValueError("LViT: image must be (B, C, H, W), got shape " + str(list(image.shape)) + ".")
        if not image.is_floating_point():
            raise ValueError("LViT: image must be a floating-point tensor, received " + _describe(image) + ".")
        if image.shape[1] != self.in_channels:
            raise ValueError(
                "LViT: expected "
                + str(self.in_channels)
                + " image channels, received "
                + str(image.shape[1])
                + " (shape "
                + str(list(image.shape))
                + ")."
            )
        if image.shape[2] != self.image_size or image.shape[3] != self.image_size:
            raise ValueError(
                "LViT: expected a "
                + str(self.image_size)
                + "x"
                + str(self.image_size)
                + " image (image_size), received "
                + str(image.shape[2])
                + "x"
                + str(image.shape[3])
                + "."
            )

    def _empty_note(self, image: torch.Tensor) -> torch.Tensor:
        """The documented default text (see :meth:`forward`): the empty note, every one of ``num_tokens`` positions
        padding (id 0), or zero vectors without a ``text_embedder``; warns, so that a forgotten note is seen."""
        warnings.warn("LViT: no text given; using the empty note (every token is padding).")
        if self.text_embedder is not None:
            return torch.zeros(image.shape[0], self.num_tokens, dtype=torch.long, device=image.device)
        return torch.zeros(image.shape[0], self.num_tokens, self.text_dim, dtype=image.dtype, device=image.device)

    def _text_features(self, text: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """Validate ``text`` and return the (B, num_tokens, text_dim) float text features."""
        if text is None:
            raise ValueError("LViT: built with use_text=True, so forward needs `text`; received None.")
        if self.text_embedder is not None:
            if text.dim() != 2 or text.is_floating_point():
                raise ValueError(
                    "LViT: with a text_embedder, text must be integer token ids of shape (B, num_tokens="
                    + str(self.num_tokens)
                    + "), received "
                    + _describe(text)
                    + "."
                )
        elif text.dim() != 3 or not text.is_floating_point():
            raise ValueError(
                "LViT: without a text_embedder, text must be float embeddings of shape (B, num_tokens="
                + str(self.num_tokens)
                + ", text_dim="
                + str(self.text_dim)
                + "), received "
                + _describe(text)
                + "."
            )
        if text.shape[1] != self.num_tokens:
            raise ValueError(
                "LViT: expected "
                + str(self.num_tokens)
                + " text tokens (num_tokens), received "
                + str(text.shape[1])
                + "."
            )
        if self.text_embedder is not None:
            text = self.text_embedder(text)
            if text.dim() != 3 or text.shape[2] != self.text_dim:
                raise ValueError(
                    "LViT: text_embedder must return (B, num_tokens, text_dim="
                    + str(self.text_dim)
                    + "), returned shape "
                    + str(list(text.shape))
                    + "."
                )
        elif text.shape[2] != self.text_dim:
            raise ValueError(
                "LViT: expected text features of size "
                + str(self.text_dim)
                + " (text_dim), received "
                + str(text.shape[2])
                + "."
            )
        if text.shape[0] != batch:
            raise ValueError(
                "LViT: image and text batch sizes differ: " + str(batch) + " images, " + str(text.shape[0]) + " texts."
            )
        return text

    def forward(self, image: torch.Tensor, text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Segment ``image`` guided by ``text``.

        Args:
            image: (B, in_channels, image_size, image_size) float images.
            text: with ``use_text=True``: token ids (B, num_tokens) (integer) when a ``text_embedder`` was given,
                otherwise float vectors (B, num_tokens, text_dim). Ignored (may be ``None``) with ``use_text=False``.
                ``None`` with ``use_text=True`` is the empty note, with a warning: ``num_tokens`` padding ids 0
                (the padding id of every tokenizer in :mod:`common.transforms.text`), or zero vectors without a
                ``text_embedder`` (what ``python -m monai.bundle verify_net_in_out`` runs, since MONAI synthesises
                only the image).

        Returns:
            (B, out_channels, image_size, image_size) logits (no sigmoid).

        Raises:
            ValueError: when the image or the text has the wrong shape, size, dtype or batch size.
        """
        self._check_image(image)
        x1 = self.inc(image)

        text_tokens: Optional[torch.Tensor] = None
        text_projection = self.text_projection
        text_to_patches = self.text_to_patches
        if text_projection is not None and text_to_patches is not None:
            if text is None:
                text = self._empty_note(image)
            features = self._text_features(text, image.shape[0])  # (B, L, text_dim)
            features = text_projection(features.transpose(1, 2))  # (B, c, L)
            text_tokens = text_to_patches(features.transpose(1, 2))  # (B, L, c) -> (B, N, c)

        y1 = self.down_vit1(x1, None, text_tokens)
        x2 = self.down1(x1)
        y2 = self.down_vit2(x2, y1)
        x3 = self.down2(x2)
        y3 = self.down_vit3(x3, y2)
        x4 = self.down3(x3)
        y4 = self.down_vit4(x4, y3)
        x5 = self.down4(x4)

        y4 = self.up_vit4(y4)
        y3 = self.up_vit3(y3, y4)
        y2 = self.up_vit2(y2, y3)
        y1 = self.up_vit1(y1, y2)

        x1 = self.interaction1(y1, x1)
        x2 = self.interaction2(y2, x2)
        x3 = self.interaction3(y3, x3)
        x4 = self.interaction4(y4, x4)

        x = self.up4(x5, x4)
        x = self.up3(x, x3)
        x = self.up2(x, x2)
        x = self.up1(x, x1)
        return self.out(x)


def build_lvit(variant: str = "T", **kwargs) -> LViT:
    """Build an LViT of a named size: ``"T"``, ``"S"``, ``"M"``, ``"L"`` (with text) or ``"TW"``, ``"SW"``, ``"MW"``,
    ``"LW"`` (without text), as in the paper's Table 3 (1/4/6/12 Transformer layers per ViT module).

    Args:
        variant: one of the eight names above (case-insensitive). Defaults to ``"T"``.
        kwargs: any other :class:`LViT` argument except ``num_layers`` and ``use_text``, which the variant sets.

    Returns:
        The :class:`LViT`.

    Raises:
        ValueError: for an unknown variant, or when ``kwargs`` sets ``num_layers`` or ``use_text``.

    Examples::

        >>> build_lvit("SW", image_size=64).use_text
        False
    """
    name = str(variant).upper()
    use_text = not name.endswith("W")
    size = name[:-1] if not use_text else name
    if size not in LVIT_SIZES:
        valid = sorted(LVIT_SIZES) + sorted(k + "W" for k in LVIT_SIZES)
        raise ValueError(f"build_lvit: unknown variant {variant!r}; valid variants are {valid}.")
    for key in ("num_layers", "use_text"):
        if key in kwargs:
            raise ValueError(f"build_lvit: {key!r} is set by the variant ({variant!r}); do not pass it.")
    return LViT(num_layers=LVIT_SIZES[size], use_text=use_text, **kwargs)
