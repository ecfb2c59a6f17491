# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
An evaluator handler that writes the predicted masks of chosen test images as PNG files, for the overlay figures of
``tools/report.py``.

Switched on by the config layer ``common/configs/save_predictions.json`` merged after ``evaluate.json``::

    python -m monai.bundle run --config_file "['B/configs/train.json','B/configs/evaluate.json',
        'common/configs/save_predictions.json']" --bundle_root B --output_dir OUT \\
        --prediction_cases "['case_000.png','case_001.png']"

which writes ``OUT/eval/predictions/case_000.png`` ... (a binary mask at the network's input size, 0 and 255, in
the image file's orientation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["SavePredictionsHandler", "prediction_file_name"]


def prediction_file_name(image_path: str) -> str:
    """The file name :class:`SavePredictionsHandler` gives the prediction of ``image_path``: its stem + ``.png``.

    Args:
        image_path: the image file of the case (absolute or not).
    """
    return os.path.splitext(os.path.basename(str(image_path)))[0] + ".png"


def _mask(pred: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, S1, S2) prediction as an (S1, S2) uint8 mask, 0/255: channel 0 > 0.5 for one channel, argmax > 0 for more."""
    p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"SavePredictionsHandler: expected a (C, S1, S2) prediction, got shape {tuple(p.shape)}.")
    lesion = p[0] > 0.5 if p.shape[0] == 1 else p.argmax(axis=0) > 0
    return lesion.astype(np.uint8) * 255


class SavePredictionsHandler:
    """
    Writes ``<save_dir>/<image stem>.png`` (uint8, lesion = 255) for each evaluated image whose file base name is in
    ``cases`` (every image when ``cases`` is empty), from the post-processed ``pred`` of each item of
    ``engine.state.output`` (MONAI's evaluators decollate the batch after post-processing, so the output is a list
    of per-image dicts). The image's file name is read from ``engine.state.batch[i][filename_key].meta``
    (``filename_or_obj``), as ``MetricsSaver`` reads it.

    Args:
        save_dir: folder of the PNG files (created).
        cases: image base names (e.g. ``"case_003.png"``) or paths whose prediction is written; empty (default):
            every image.
        pred_key: key of the prediction in each output item, default ``"pred"`` (a (1, H, W) thresholded map; with
            more channels the argmax > 0 is taken as lesion).
        filename_key: key of the batch item whose meta data holds the file name, default ``"image"``.
        spatial_order: the order of the two spatial axes of ``pred``: ``"wh"`` (default: MONAI's ``PILReader``, which
            every bundle here loads PNG/JPEG files with, returns (W, H) because of its default
            ``reverse_indexing=True``; the mask is transposed back so that the PNG has the image file's orientation,
            as ``PILWriter`` does for ``SaveImaged``) or ``"hw"`` (saved as it is).
    """

    def __init__(
        self,
        save_dir: str,
        cases: Sequence[str] = (),
        pred_key: str = "pred",
        filename_key: str = "image",
        spatial_order: str = "wh",
    ) -> None:
        if isinstance(cases, str):
            raise TypeError(f"SavePredictionsHandler: cases must be a list of file names, got the string {cases!r}.")
        if spatial_order not in ("wh", "hw"):
            raise ValueError(f"SavePredictionsHandler: spatial_order must be 'wh' or 'hw', got {spatial_order!r}.")
        self.spatial_order = spatial_order
        self.save_dir = str(save_dir)
        self.cases = {os.path.basename(str(c)) for c in cases}
        self.pred_key = pred_key
        self.filename_key = filename_key
        self.saved: list[str] = []

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the evaluator.
        """
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the evaluator after one iteration.

        Raises:
            KeyError: an output item without ``pred_key`` or a batch item without ``filename_key`` meta data.
        """
        outputs = engine.state.output
        batch = engine.state.batch
        if isinstance(outputs, dict) or isinstance(batch, dict):
            raise KeyError("SavePredictionsHandler needs the decollated output (a list of dicts, MONAI evaluators).")
        for item, data in zip(outputs, batch):
            if self.pred_key not in item:
                raise KeyError(f"SavePredictionsHandler: no {self.pred_key!r} in the evaluator output {list(item)}.")
            meta = getattr(data.get(self.filename_key), "meta", None) or {}
            name = meta.get("filename_or_obj")
            if name is None:
                raise KeyError(
                    f"SavePredictionsHandler: no 'filename_or_obj' in the meta data of {self.filename_key!r}."
                )
            if self.cases and os.path.basename(str(name)) not in self.cases:
                continue
            from PIL import Image

            os.makedirs(self.save_dir, exist_ok=True)
            path = os.path.join(self.save_dir, prediction_file_name(name))
            mask = _mask(item[self.pred_key])
            Image.fromarray(np.ascontiguousarray(mask.T if self.spatial_order == "wh" else mask)).save(path)
            self.saved.append(path)
