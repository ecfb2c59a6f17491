# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Networks of the text-guided segmentation bundles: LViT and the text embedders it (and later networks) use."""

from __future__ import annotations

from .lvit import LVIT_SIZES, LViT, build_lvit
from .text_embedding import HFTextEncoder, TokenEmbedding

__all__ = ["LViT", "LVIT_SIZES", "build_lvit", "TokenEmbedding", "HFTextEncoder"]

from .causal_modules import CARAFE, CoordConv, GradientReversal, Masker, TextConditionedDecoder  # noqa: E402
from .causalclipseg import CausalCLIPSeg  # noqa: E402

__all__ += ["CausalCLIPSeg", "CARAFE", "CoordConv", "GradientReversal", "Masker", "TextConditionedDecoder"]

from .clip_encoders import CLIPImageEncoder, CLIPTextEncoder, build_clip, load_clip  # noqa: E402

__all__ += ["CLIPImageEncoder", "CLIPTextEncoder", "build_clip", "load_clip"]

from .mcdrl import MCDRL  # noqa: E402
from .mcdrl_blocks import clip_dense_encoder, encode_mcdrl_prompts  # noqa: E402

__all__ += ["MCDRL", "clip_dense_encoder", "encode_mcdrl_prompts"]

from .biclip import BiCLIP  # noqa: E402

__all__ += ["BiCLIP"]

from .clip_encoders import CLIPTokenTextEncoder  # noqa: E402
from .kan import (  # noqa: E402
    KANLinear,
    TokenizedKANBlock,
    b_spline_basis,
    cardinal_b_spline_coefficients,
    uniform_b_spline_basis,
)
from .c2seg_blocks import BCAM, C2SegDecoder, C2SegEncoder, C2SegFusion, DualAttention, KGate  # noqa: E402
from .c2seg import (  # noqa: E402
    C2Seg,
    C2SegPretrainer,
    FrozenTextEncoder,
    HFTokenTextEncoder,
    c2seg_encoder_state,
    c2seg_parameter_groups,
    load_c2seg_encoder,
)

__all__ += [
    "CLIPTokenTextEncoder",
    "KANLinear",
    "TokenizedKANBlock",
    "b_spline_basis",
    "cardinal_b_spline_coefficients",
    "uniform_b_spline_basis",
    "BCAM",
    "C2SegDecoder",
]
__all__ += ["C2SegEncoder", "C2SegFusion", "DualAttention", "KGate", "C2Seg", "C2SegPretrainer", "FrozenTextEncoder"]
__all__ += ["HFTokenTextEncoder", "c2seg_encoder_state", "c2seg_parameter_groups", "load_c2seg_encoder"]
