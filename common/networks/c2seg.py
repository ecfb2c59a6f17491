# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
C2Seg (paper: "Towards text-mask consistency in medical image segmentation", ICLR 2026 submission; text in
``/work/shared/papers/c2seg.txt``; no public code): the stage II segmentation network, the stage I (CaCL) network,
the frozen text-encoder wrappers and the stage I -> stage II weight transfer.

Interface (used by ``bundles/c2seg``):

- :class:`C2Seg` ``(text_encoder, in_channels=3, out_channels=1, channels=(16, 32, 128, 160, 256),
  encoder="hybrid", fusion="bcam", gate="kgate", fusion_scales=(2, 3, 4), grid_size=5, spline_order=3,
  embed_dim=None, token_mask="none", residual=True, scale_language_path=False, text_cache_size=4096)``;
  ``forward(image, text_ids) -> logits (B, out_channels, H, W)``. Submodules: ``encoder`` (the visual encoder,
  :class:`~common.networks.c2seg_blocks.C2SegEncoder`), ``text_encoder`` (a :class:`FrozenTextEncoder`, every
  parameter ``requires_grad=False``; ``None`` with ``fusion="none"``), ``fusions``, ``decoder``.
- :class:`C2SegPretrainer` ``(encoder, text_encoder, embed_dim=None, text_projection=False,
  text_cache_size=4096)``; ``forward(image, text_ids) -> (image_emb (B, D), text_emb (B, D), text_sim_source (B,
  D_t))``, the input of :class:`common.losses.CaCLLoss`.
- :func:`c2seg_encoder_state` ``(state) -> dict``: the ``encoder.*`` weights of a stage I checkpoint, prefix
  removed; :func:`load_c2seg_encoder` ``(network, checkpoint) -> network`` loads them into ``network.encoder``
  from a file (a clear ``FileNotFoundError`` when it does not exist).
- :func:`c2seg_parameter_groups` ``(network, lr, encoder_lr)``: optimiser groups, the visual encoder at the smaller
  learning rate (paper section 3, "Overview": the visual encoder is fine-tuned with a small learning rate).
- Text encoders, each mapping token ids (B, N) to ``(L (B, N, D_t), l (B, D_t))``:
  :class:`common.networks.clip_encoders.CLIPTokenTextEncoder` (frozen CLIP, the paper's) and
  :class:`HFTokenTextEncoder` (BioBERT / PubMedBERT from a local folder, Table 3 rows g, h). :class:`FrozenTextEncoder`
  freezes one and caches its outputs.
"""

from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .c2seg_blocks import ENCODER_KINDS, FUSION_KINDS, GATE_KINDS, C2SegDecoder, C2SegEncoder, C2SegFusion

__all__ = [
    "FrozenTextEncoder",
    "HFTokenTextEncoder",
    "C2Seg",
    "C2SegPretrainer",
    "c2seg_encoder_state",
    "load_c2seg_encoder",
    "c2seg_parameter_groups",
    "TOKEN_MASKS",
]

#: which text positions BCAM attends to: all N (paper), up to the end-of-text token (CLIP ids), non-padding (BERT)
TOKEN_MASKS = ("none", "eot", "nonzero")


def _int_attribute(module: nn.Module, names: Sequence[str]) -> Optional[int]:
    for name in names:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class FrozenTextEncoder(nn.Module):
    """
    A frozen text encoder whose outputs are memoised per distinct token-id row.

    The paper keeps the language encoder frozen (section 3, "Overview"; Table 3 "without updating the language
    encoder"), so its output for a given text never changes; clinical notes are highly templated (about 300
    distinct texts for 7,000 QaTa images, section 1), so recomputing them every epoch is wasted work. This wrapper:

    - freezes the wrapped encoder (``requires_grad_(False)``) and keeps it in evaluation mode whatever the parent's
      mode (:meth:`train`), so its outputs are deterministic;
    - runs it under ``torch.no_grad()`` only for the rows of ``ids`` not yet cached (each distinct row once, even
      when it occurs several times in a batch), stores the detached outputs per row and assembles the batch from
      the cache; the cached tensors stay on the device they were computed on and are moved to ``ids.device`` when
      read;
    - keeps at most ``cache_size`` rows, evicting the least recently used (``cache_size=0`` disables caching); the
      memory is ``cache_size * (N * D_t + D_t)`` floats (4096 rows x 21 x 512 float32 = 176 MB at most; the
      synthetic and QaTa note sets have far fewer distinct texts);
    - clears the cache when weights are loaded into it (``load_state_dict``) or :meth:`clear_cache` is called;
    - is bypassed under TorchScript scripting or tracing (the cache is Python state), so ``ckpt_export`` exports the
      plain encoder call, which gives the same values.

    The cache is per process (each DDP rank has its own) and is not part of the state dict.

    Args:
        encoder: module mapping token ids (B, N) to ``(tokens (B, N, D_t), sentence (B, D_t))``, e.g.
            :class:`common.networks.clip_encoders.CLIPTokenTextEncoder` or :class:`HFTokenTextEncoder`.
        cache_size: maximum number of cached rows (>= 0). Defaults to 4096.

    Attributes:
        token_dim: ``D_t`` of the token features (from the encoder's ``token_dim`` / ``output_dim`` /
            ``hidden_size`` attribute; None when it has none).
        output_dim: ``D_t`` of the sentence feature (from ``output_dim`` / ``token_dim`` / ``hidden_size``).
        encoder_calls: number of rows the wrapped encoder has computed (a counter for logging and tests).
    """

    def __init__(self, encoder: nn.Module, cache_size: int = 4096) -> None:
        super().__init__()
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}.")
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.cache_size = int(cache_size)
        self.token_dim = _int_attribute(encoder, ("token_dim", "output_dim", "hidden_size"))
        self.output_dim = _int_attribute(encoder, ("output_dim", "token_dim", "hidden_size"))
        self.encoder_calls = 0
        self._cache = collections.OrderedDict()  # bytes of an id row -> (tokens, sentence)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        """Set this module's mode; the wrapped encoder always stays in evaluation mode.

        Args:
            mode: training mode of the wrapper. Defaults to True.

        Returns:
            this module.
        """
        self.training = mode
        self.encoder.train(False)
        return self

    def clear_cache(self) -> None:
        """Forget every cached output."""
        self._cache.clear()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.clear_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def __getstate__(self) -> Dict[str, Any]:  # deepcopy / pickling: do not copy the cached tensors
        state = self.__dict__.copy()
        state["_cache"] = collections.OrderedDict()
        return state

    def forward(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            ids: integer token ids (B, N).

        Returns:
            ``(tokens (B, N, D_t), sentence (B, D_t))``, without gradient history.
        """
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return self.encoder(ids)
        return self._cached_forward(ids)

    @torch.jit.unused
    def _cached_forward(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.cache_size == 0:
            with torch.no_grad():
                self.encoder_calls += int(ids.shape[0])
                tokens, sentence = self.encoder(ids)
            return tokens.detach(), sentence.detach()
        if ids.dim() != 2:
            raise ValueError(f"FrozenTextEncoder expects token ids of shape (B, N), got shape {list(ids.shape)}.")
        host = ids.detach().to("cpu", torch.int64)
        keys = [row.numpy().tobytes() for row in host]  # int64 bytes: the length is part of the key
        missing: Dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._cache and key not in missing:
                missing[key] = i
        if missing:
            rows = torch.tensor(list(missing.values()), device=ids.device)
            with torch.no_grad():
                tokens, sentence = self.encoder(ids.index_select(0, rows))
            self.encoder_calls += len(missing)
            for j, key in enumerate(missing):
                self._cache[key] = (tokens[j].detach(), sentence[j].detach())
        outputs = []
        for key in keys:
            self._cache.move_to_end(key)
            outputs.append(self._cache[key])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        tokens = torch.stack([o[0] for o in outputs]).to(ids.device)
        sentence = torch.stack([o[1] for o in outputs]).to(ids.device)
        return tokens, sentence


class HFTokenTextEncoder(nn.Module):
    """
    A Hugging Face BERT-family encoder (BioBERT, PubMedBERT; paper Table 3 rows g, h) giving ``(L, l)`` from ids.

    ``L`` is the hidden state of every token (:class:`common.networks.HFTextEncoder`, any layer); the attention mask
    is ``ids != pad_id`` (BERT tokenizers pad with id 0). The paper does not say how the sentence embedding ``l`` of
    a BERT encoder is formed: ``pooling="mean"`` (default) averages ``L`` over the non-padding tokens,
    ``pooling="cls"`` takes the first ([CLS]) token. Scripting is not supported (Hugging Face models are not
    scriptable); export such a network by tracing.

    Args:
        encoder: a :class:`common.networks.HFTextEncoder` (or any module ``encoder(ids, attention_mask) -> (B, N,
            D_t)`` with a ``hidden_size`` attribute).
        pooling: ``"mean"`` or ``"cls"``. Defaults to ``"mean"``.
        pad_id: padding id of the tokenizer. Defaults to 0.

    Attributes:
        token_dim: ``D_t`` (the encoder's ``hidden_size``).
        output_dim: ``D_t``.
    """

    def __init__(self, encoder: nn.Module, pooling: str = "mean", pad_id: int = 0) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}.")
        size = _int_attribute(encoder, ("hidden_size", "output_dim", "token_dim"))
        if size is None:
            raise ValueError(f"{type(encoder).__name__} has no integer hidden_size / output_dim attribute.")
        self.encoder = encoder
        self.pooling = pooling
        self.pad_id = int(pad_id)
        self.token_dim = size
        self.output_dim = size

    def forward(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            ids: token ids (B, N) of the model's tokenizer.

        Returns:
            ``(L (B, N, D_t), l (B, D_t))``.
        """
        mask = ids != self.pad_id
        tokens = self.encoder(ids, mask.to(torch.long))
        if self.pooling == "cls":
            return tokens, tokens[:, 0]
        weights = mask.to(tokens.dtype).unsqueeze(-1)
        return tokens, (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class _ScaleFusion(nn.Module):
    """The per-scale token projection ``L_l = L W_l`` (section 3.1) followed by the fusion at level ``level``."""

    def __init__(self, level: int, text_dim: int, dim: int, fusion: nn.Module) -> None:
        super().__init__()
        self.level = int(level)
        self.text_projection = nn.Linear(text_dim, dim, bias=False)
        self.fusion = fusion

    def forward(self, visual: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.fusion(visual, self.text_projection(tokens), token_mask)


def _as_text_encoder(text_encoder: nn.Module, cache_size: int) -> FrozenTextEncoder:
    if isinstance(text_encoder, FrozenTextEncoder):
        return text_encoder
    return FrozenTextEncoder(text_encoder, cache_size=cache_size)


class C2Seg(nn.Module):
    """
    C2Seg's stage II segmentation network (paper section 3, Fig. 2).

    1. Visual encoder (section 3.1, :class:`~common.networks.c2seg_blocks.C2SegEncoder`, submodule ``encoder``):
       ``V_0 .. V_4`` at strides 2 .. 32 (``encoder="hybrid"``: three CNN stages + two tokenised-KAN stages; the
       ``"cnn"`` and ``"kan"`` encoders of Table 4a). Stage II initialises it from stage I
       (:func:`load_c2seg_encoder`) and fine-tunes it with a smaller learning rate (:func:`c2seg_parameter_groups`).
    2. Frozen text encoder (section 3.1, submodule ``text_encoder``, a :class:`FrozenTextEncoder`: no gradient,
       evaluation mode, outputs cached): token features ``L`` (B, N, D_t). The sentence feature ``l`` is not used
       by stage II (eq. 4-7 use only ``L``; ``l`` serves CaCL in stage I).
    3. At each level ``l`` in ``fusion_scales``: ``L_l = L W_l`` (a learnable 1x1 mapping D_t -> C_l, no bias),
       then BCAM (section 3.3, eq. 4-6) or DualA (Table 3 b), then K-Gate (section 3.4, eq. 7) or a variant, and
       ``V_l <- V_l + F_out`` (:class:`~common.networks.c2seg_blocks.C2SegFusion`).
    4. Decoder (:class:`~common.networks.c2seg_blocks.C2SegDecoder`): U-KAN's, with skip connections from the
       (fused) ``V_0 .. V_3``, logits at the input size.

    Where BCAM runs (``fusion_scales``): the paper projects the tokens "at each visual scale" but does not list the
    scales that get a BCAM. The default (2, 3, 4) fuses at strides 8, 16 and 32 (C = 128, 160, 256): the three
    levels whose features carry semantics (the two KAN stages and the last CNN stage), where a pixel-token score
    is meaningful and the P x N attention is cheap (784 + 196 + 49 positions at 224 px). The two shallow levels
    (16 and 32 channels at strides 2 and 4, 12,544 and 3,136 positions) hold edges and texture, too narrow for a
    C-dimensional token projection to carry the note, and their skip connections mainly restore boundaries. With
    these scales and U-KAN's widths, C2Seg has 15,452,401 trainable parameters (paper, Table 1: 18.92 M; the paper
    gives neither widths nor scales) plus the frozen CLIP RN101 text encoder (63,398,912 at 20 tokens); without
    fusion (``fusion="none"``) it is exactly U-KAN's network, 6,356,689 (U-KAN's 6.36 M, method_notes 3.3).
    Any subset of 0..4 can be given.

    ``fusion="none"`` is Table 3 row (a), the unimodal baseline: no text encoder (``text_encoder`` may be None and
    is not kept), no fusion; ``text_ids`` is accepted and ignored; ``gate`` is ignored.

    Table rows as keys: (a) ``fusion="none"``; (b) ``fusion="duala", gate="none"``; (c) ``fusion="bcam",
    gate="none"``; (d) ``fusion="bcam", gate="kgate"`` (stage II alone); (e, f) as (d) after stage I with hard /
    CaCL targets; Table 4a ``encoder="cnn"|"kan"``, ``fusion="bcam_linear"``, ``gate="mlp"``.

    TorchScript: ``torch.jit.script(model)`` works with the CLIP text encoder (the cache is bypassed).

    Args:
        text_encoder: module mapping token ids (B, N) to ``(L (B, N, D_t), l (B, D_t))`` (e.g.
            :class:`common.networks.clip_encoders.CLIPTokenTextEncoder`), wrapped in a :class:`FrozenTextEncoder`
            unless it is one; or None with ``fusion="none"``.
        in_channels: image channels. Defaults to 3.
        out_channels: output channels (logits). Defaults to 1.
        channels: encoder widths ``(C_0 .. C_4)``. Defaults to (16, 32, 128, 160, 256) (U-KAN, method_notes 3.3).
        encoder: ``"hybrid"``, ``"cnn"`` or ``"kan"``. Defaults to ``"hybrid"``.
        fusion: ``"bcam"``, ``"bcam_linear"``, ``"duala"`` or ``"none"``. Defaults to ``"bcam"``.
        gate: ``"kgate"``, ``"mlp"`` or ``"none"``. Defaults to ``"kgate"``.
        fusion_scales: levels (0..4) that get a fusion block. Defaults to (2, 3, 4).
        grid_size: KAN grid size, everywhere. Defaults to 5.
        spline_order: KAN spline order, everywhere. Defaults to 3.
        embed_dim: ``D_t``, the size of the token features; None reads the text encoder's ``token_dim`` (or
            ``output_dim`` / ``hidden_size``). Defaults to None.
        token_mask: ``"none"`` (attend to all N tokens, the paper), ``"eot"`` (positions up to the end-of-text
            token ``ids.argmax(-1)``, for CLIP ids) or ``"nonzero"`` (ids != 0, for BERT ids). Defaults to
            ``"none"``.
        residual: ``V_l + F_out`` (True) or ``F_out`` (False); see
            :class:`~common.networks.c2seg_blocks.C2SegFusion`. Defaults to True.
        scale_language_path: multiply eq. 6's output by P; see
            :func:`~common.networks.c2seg_blocks.complementary_attention`. Defaults to False (the paper's eq. 6).
        text_cache_size: rows cached by the :class:`FrozenTextEncoder`. Defaults to 4096.

    Raises:
        ValueError: for an unknown key, a scale outside 0..4 or repeated, a missing text encoder with fusion, or a
            token size that cannot be read.

    Examples::

        clip = load_clip("RN101", weights="/data/clip/RN101.pt", context_length=20)
        net = C2Seg(CLIPTokenTextEncoder(clip, context_length=20))
        logits = net(torch.rand(2, 3, 224, 224), ids)  # ids (2, 20) -> (2, 1, 224, 224)
    """

    def __init__(
        self,
        text_encoder: Optional[nn.Module],
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 128, 160, 256),
        encoder: str = "hybrid",
        fusion: str = "bcam",
        gate: str = "kgate",
        fusion_scales: Sequence[int] = (2, 3, 4),
        grid_size: int = 5,
        spline_order: int = 3,
        embed_dim: Optional[int] = None,
        token_mask: str = "none",
        residual: bool = True,
        scale_language_path: bool = False,
        text_cache_size: int = 4096,
    ) -> None:
        super().__init__()
        if encoder not in ENCODER_KINDS:
            raise ValueError(f"encoder must be one of {list(ENCODER_KINDS)}, got {encoder!r}.")
        if fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {list(FUSION_KINDS)}, got {fusion!r}.")
        if gate not in GATE_KINDS:
            raise ValueError(f"gate must be one of {list(GATE_KINDS)}, got {gate!r}.")
        if token_mask not in TOKEN_MASKS:
            raise ValueError(f"token_mask must be one of {list(TOKEN_MASKS)}, got {token_mask!r}.")
        scales = [int(s) for s in fusion_scales]
        if any(not 0 <= s <= 4 for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"fusion_scales must be distinct levels in 0..4, got {list(fusion_scales)}.")
        self.encoder = C2SegEncoder(in_channels, channels, encoder, grid_size, spline_order)
        widths = self.encoder.out_channels
        self.fusion = fusion
        self.gate = gate if fusion != "none" else "none"
        self.token_mask = token_mask
        self.fusion_scales = tuple(sorted(scales)) if fusion != "none" else ()
        self.text_encoder = None
        self.empty_note_length, self.empty_note_id = 0, 0  # the documented default text (forward, text_ids=None)
        fusions = []
        if fusion != "none":
            if text_encoder is None:
                raise ValueError(f"fusion={fusion!r} needs a text_encoder; only fusion='none' runs without text.")
            self.text_encoder = _as_text_encoder(text_encoder, text_cache_size)
            text_dim = embed_dim if embed_dim is not None else self.text_encoder.token_dim
            if text_dim is None:
                raise ValueError(
                    f"Cannot read the token size of {type(text_encoder).__name__} (no token_dim / output_dim / "
                    "hidden_size attribute); give embed_dim."
                )
            self.embed_dim = int(text_dim)
            tokens = self.text_encoder.encoder  # CLIP: a fixed context length, padding 0; HF: any length, its pad id
            self.empty_note_length = int(getattr(tokens, "context_length", 1))
            self.empty_note_id = int(getattr(tokens, "pad_id", 0))
            for level in self.fusion_scales:
                block = C2SegFusion(widths[level], fusion, gate, grid_size, spline_order, residual, scale_language_path)
                fusions.append(_ScaleFusion(level, self.embed_dim, widths[level], block))
        else:
            self.embed_dim = 0
        self.fusions = nn.ModuleList(fusions)
        self.decoder = C2SegDecoder(widths, out_channels, (3, 2), grid_size, spline_order)

    def _token_mask(self, ids: torch.Tensor) -> Optional[torch.Tensor]:
        if self.token_mask == "eot":
            positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
            return positions <= ids.argmax(dim=1, keepdim=True)
        if self.token_mask == "nonzero":
            return ids != 0
        return None

    def forward(self, image: torch.Tensor, text_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            image: (B, in_channels, H, W), H and W multiples of 32.
            text_ids: integer token ids (B, N) of the text encoder's tokenizer; ignored (may be None) with
                ``fusion="none"``. ``None`` with fusion is the empty note, with a warning: padding ids only
                (``context_length`` zeros for a CLIP text encoder, one ``pad_id`` for a Hugging Face one; what
                ``python -m monai.bundle verify_net_in_out`` runs, since MONAI synthesises only the image).

        Returns:
            logits (B, out_channels, H, W).

        Raises:
            ValueError: when the image size is not a multiple of 32.
        """
        features = self.encoder(image)
        text_encoder = self.text_encoder
        if text_encoder is not None:
            if text_ids is None:
                warnings.warn("C2Seg: no text given; using the empty note (every token is padding).")
                shape = (image.shape[0], self.empty_note_length)
                text_ids = torch.full(shape, self.empty_note_id, dtype=torch.long, device=image.device)
            tokens, _ = text_encoder(text_ids)
            mask = self._token_mask(text_ids)
            for block in self.fusions:
                features[block.level] = block(features[block.level], tokens.to(image.dtype), mask)
        return self.decoder(features)


class C2SegPretrainer(nn.Module):
    """
    C2Seg's stage I network for Cluster-aware Contrastive Learning (paper section 3.2), trained with
    :class:`common.losses.CaCLLoss`.

    - image embedding: ``v = W_v GAP(V_4)`` (section 3.1; ``W_v`` = ``image_projection``, a learnable linear map
      C_4 -> D without bias), L2-normalised;
    - text embedding: the frozen sentence embedding ``l`` (B, D_t) of the text encoder, L2-normalised (section
      3.2: "image embeddings v_i and sentence embeddings l_i are L2-normalized"; ``s_ij = v_i^T l_j`` needs
      D = D_t). With ``text_projection=True`` a learnable linear map D_t -> D is applied to ``l`` first (not in the
      paper, which keeps the text side as a fixed anchor), for a joint size other than D_t;
    - the text-similarity source: ``l`` itself, unnormalised and frozen (the loss builds ``M_ij = cos(l_i, l_j)``).

    Only ``encoder`` (and ``image_projection``, ``text_projection``) are trained; stage II loads the
    ``encoder.*`` weights (:func:`load_c2seg_encoder`). Build ``encoder`` with the same arguments as stage II's
    (channels, kind, grid): ``C2SegEncoder(in_channels, channels, encoder, grid_size, spline_order)``.

    Args:
        encoder: the visual encoder, a :class:`~common.networks.c2seg_blocks.C2SegEncoder`.
        text_encoder: module mapping ids (B, N) to ``(L, l)``; wrapped in a :class:`FrozenTextEncoder`.
        embed_dim: joint size D; None uses the text encoder's ``output_dim``. Without ``text_projection`` it must
            equal that size. Defaults to None.
        text_projection: learn a projection of ``l``. Defaults to False (the paper).
        text_cache_size: rows cached by the :class:`FrozenTextEncoder`. Defaults to 4096.

    Raises:
        ValueError: when the sentence size cannot be read, or ``embed_dim`` differs from it without
            ``text_projection``.
    """

    def __init__(
        self,
        encoder: C2SegEncoder,
        text_encoder: nn.Module,
        embed_dim: Optional[int] = None,
        text_projection: bool = False,
        text_cache_size: int = 4096,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.text_encoder = _as_text_encoder(text_encoder, text_cache_size)
        text_dim = self.text_encoder.output_dim
        if text_dim is None:
            raise ValueError(f"Cannot read the sentence size of {type(text_encoder).__name__} (no output_dim).")
        dim = int(embed_dim) if embed_dim is not None else int(text_dim)
        if not text_projection and dim != text_dim:
            raise ValueError(
                f"embed_dim ({dim}) must equal the text encoder's sentence size ({text_dim}) unless "
                "text_projection=True: the paper compares v with the frozen l directly (s_ij = v_i^T l_j)."
            )
        self.embed_dim = dim
        self.image_projection = nn.Linear(int(encoder.out_channels[-1]), dim, bias=False)
        self.text_projection = nn.Linear(int(text_dim), dim, bias=False) if text_projection else None

    def forward(self, image: torch.Tensor, text_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            image: (B, C, H, W), H and W multiples of 32.
            text_ids: token ids (B, N).

        Returns:
            ``(image_emb (B, D), text_emb (B, D), text_sim_source (B, D_t))``: the normalised ``W_v GAP(V_4)``,
            the normalised (optionally projected) ``l``, and the raw frozen ``l``.
        """
        pooled = self.encoder(image)[-1].mean(dim=(2, 3))
        image_emb = F.normalize(self.image_projection(pooled), dim=-1)
        _, sentence = self.text_encoder(text_ids)
        sentence = sentence.to(image_emb.dtype)
        projection = self.text_projection
        text = projection(sentence) if projection is not None else sentence
        return image_emb, F.normalize(text, dim=-1), sentence


def c2seg_encoder_state(state: Mapping[str, Any], prefix: str = "encoder.") -> Dict[str, torch.Tensor]:
    """
    The visual-encoder weights of a stage I checkpoint, with ``prefix`` removed, for ``network.encoder``.

    Accepts a plain state dict of :class:`C2SegPretrainer` (``models/model.pt`` as MONAI's ``CheckpointSaver``
    writes it with ``save_dict={"model": network}`` and ``save_final``/``save_key_metric``) or a dict holding one
    under ``"network"``, ``"model"`` or ``"state_dict"``; a DDP ``module.`` prefix is removed.

    Args:
        state: the loaded checkpoint.
        prefix: prefix of the encoder keys. Defaults to ``"encoder."``.

    Returns:
        dict from the encoder's own parameter/buffer names to tensors.

    Raises:
        ValueError: when no key starts with ``prefix`` (the message lists a few keys found).
    """
    for key in ("network", "model", "state_dict"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and not isinstance(inner, torch.Tensor):
            state = inner
            break
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if name.startswith(prefix) and isinstance(value, torch.Tensor):
            out[name[len(prefix) :]] = value
    if not out:
        raise ValueError(
            f"The stage I checkpoint holds no '{prefix}*' weights (found e.g. {sorted(state)[:5]}); it must be a "
            "C2SegPretrainer state dict (bundles/c2seg configs/pretrain.json writes one)."
        )
    return out


def load_c2seg_encoder(network: nn.Module, checkpoint: str | os.PathLike, strict: bool = True) -> nn.Module:
    """
    Load the visual encoder of a stage I (CaCL) checkpoint file into ``network.encoder`` (paper section 3.2 ->
    3.3: stage II starts from stage I's encoder).

    Args:
        network: a :class:`C2Seg` (anything with an ``encoder`` submodule).
        checkpoint: path of the stage I checkpoint (e.g. ``models/pretrain/model.pt``).
        strict: passed to ``load_state_dict``: the encoders must match exactly (same channels, kind, grid).
            Defaults to True.

    Returns:
        ``network`` (for use in a config expression).

    Raises:
        FileNotFoundError: when ``checkpoint`` does not exist (the message names it).
        ValueError: when the file is unreadable, holds no encoder weights, or they do not fit ``network.encoder``.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Stage I checkpoint not found: {path}. Run stage I first (configs/pretrain.json) or point the stage I "
            "checkpoint setting at an existing file; leave it empty/null to train stage II without stage I."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, unsafe content
        raise ValueError(f"Could not read the stage I checkpoint {path}: {e}") from e
    if not isinstance(state, Mapping):
        raise ValueError(f"The stage I checkpoint {path} does not hold a state dict (got {type(state).__name__}).")
    try:
        weights = c2seg_encoder_state(state)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    try:
        network.encoder.load_state_dict(weights, strict=strict)
    except RuntimeError as e:
        raise ValueError(
            f"The encoder weights in {path} do not fit the stage II encoder (same channels, encoder kind, "
            f"grid_size and spline_order as stage I are needed): {e}"
        ) from e
    return network


def c2seg_parameter_groups(network: nn.Module, lr: float, encoder_lr: float) -> List[Dict[str, Any]]:
    """
    Optimiser parameter groups for stage II: the visual encoder at ``encoder_lr``, the rest at ``lr``; frozen
    parameters (the text encoder) are left out.

    Args:
        network: a :class:`C2Seg`.
        lr: learning rate of the fusion blocks and the decoder.
        encoder_lr: learning rate of ``network.encoder`` (the paper fine-tunes it "with a small learning rate").

    Returns:
        ``[{"params": [...], "lr": encoder_lr}, {"params": [...], "lr": lr}]`` for ``torch.optim.Adam``.
    """
    encoder_ids = {id(p) for p in network.encoder.parameters()}
    encoder_params = [p for p in network.encoder.parameters() if p.requires_grad]
    other = [p for p in network.parameters() if p.requires_grad and id(p) not in encoder_ids]
    return [{"params": encoder_params, "lr": float(encoder_lr)}, {"params": other, "lr": float(lr)}]
