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
