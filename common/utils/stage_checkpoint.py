# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Hand the visual encoder of a two-stage method from its pretraining checkpoint to the segmentation network.

C2Seg (``/work/shared/papers/c2seg.txt``, section 3 "Overview" and section 3.2) trains in two stages: stage I
pretrains the visual encoder with cluster-aware contrastive learning (CaCL), stage II builds the segmentation
network on that encoder and fine-tunes it. The bundle's ``configs/pretrain.json`` writes stage I's checkpoint;
``configs/train.json`` names it with the key ``pretrained_encoder`` (Table 3 rows e and f) or leaves it empty (rows
a-d, no stage I). :func:`check_stage_checkpoint` runs first in the bundle's ``initialize`` list, so a wrong path
stops the run before data are cached or networks built, with an error naming the key and the path; the weights
are then copied by ``common.networks.c2seg.load_c2seg_encoder``.
"""

from __future__ import annotations

import os

__all__ = ["check_stage_checkpoint"]


def check_stage_checkpoint(path: str | os.PathLike | None, key: str = "pretrained_encoder") -> str | None:
    """
    Check that a named stage I checkpoint exists.

    Args:
        path: the checkpoint file, or ``None``/``""`` (no stage I: nothing to check).
        key: the config key that holds ``path``, named in the error. Defaults to ``"pretrained_encoder"``.

    Returns:
        ``path`` as a string, or ``None`` when no checkpoint is named.

    Raises:
        FileNotFoundError: when ``path`` is named but is not a file; the message names ``key``, the path and the two
            ways on (run stage I first, or train without it).
    """
    if path is None or os.fspath(path) == "":
        return None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"config key `{key}` names a stage I checkpoint that does not exist: {os.path.abspath(path)}. Run stage I "
            "first (python -m monai.bundle run --config_file bundles/c2seg/configs/pretrain.json; it writes "
            f"<output_dir>/models/stage1_model.pt), point `{key}` at an existing stage I stage1_model.pt or "
            f"stage1_checkpoint_last.pt, or set `{key}` to None to train without stage I (Table 3 rows a-d)."
        )
    return path
