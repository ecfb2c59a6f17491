# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Ignite handler for the text-mask consistency scores (definitions in :mod:`common.metrics.text_consistency`).

Config use (``evaluate.json``, one entry per score; the note is the batch's ``text`` and the lung fields its
``lungs`` file when the datalist has one, both read from ``engine.state.batch``, where MONAI's evaluators keep the
datalist entry's keys)::

    "TextConsistency": {"_target_": "common.handlers.TextConsistencyHandler", "score": "consistency",
                        "min_area_fraction": "@consistency_min_area_fraction", "save_details": true}

Each image's score goes to ``engine.state.metric_details`` (``MetricsSaver`` writes ``<name>_raw.csv``, and
``write_per_case_table`` a column of ``per_case.csv``); the summary is the mean over the images where the score
applies (NaN skipped, e.g. zone scores of endoscopy notes). Notes that fit no grammar score NaN and are logged by
file name at the end of the run, never silently scored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from common.metrics.text_consistency import (
    DEFAULT_MIN_AREA_FRACTION,
    DEFAULT_MIN_ZONE_FRACTION,
    DEFAULT_ZONE_BAND,
    SCORE_NAMES,
    LungFields,
    UnparsedNote,
    load_lung_fields,
    mask_attributes,
    score_consistency,
    try_parse_note,
)

__all__ = ["TextConsistencyMetric", "TextConsistencyHandler", "note_records"]

logger = logging.getLogger(__name__)


def note_records(
    batch: Any, text_key: str = "text", lungs_key: str = "lungs", name_key: str = "image"
) -> list[dict[str, Any]]:
    """The note record of every item of an engine batch: its note, its lung field file and its name.

    MONAI's evaluators keep the datalist entry's keys in ``engine.state.batch`` (their output holds only the
    image, label and prediction), so the note is read there.

    Args:
        batch: ``engine.state.batch``: a list of per-item dicts (decollated) or one batch dict of lists.
        text_key: key of the note (a string).
        lungs_key: key of the lung field file path (optional).
        name_key: key whose ``filename_or_obj`` meta (or string value) names the item in messages.

    Returns:
        One ``{"text", "lungs", "name"}`` dict per item (``lungs`` None where absent).

    Raises:
        KeyError: when an item has no note (naming the item).
    """
    if isinstance(batch, Mapping):
        size = len(batch[name_key]) if name_key in batch else len(batch.get(text_key, []))
        items = [{k: v[i] if isinstance(v, (list, tuple)) else v for k, v in batch.items()} for i in range(size)]
        names = batch[name_key].meta.get("filename_or_obj") if hasattr(batch.get(name_key), "meta") else None
        for i, item in enumerate(items):
            if names is not None:
                item["_name"] = str(names[i])
    else:
        items = [dict(item) for item in batch]
    records = []
    for item in items:
        name = item.pop("_name", None)
        if name is None:
            value = item.get(name_key)
            meta = getattr(value, "meta", None)
            name = (
                str(meta["filename_or_obj"]) if isinstance(meta, Mapping) and "filename_or_obj" in meta else str(value)
            )
        if text_key not in item:
            raise KeyError(f"text-mask consistency: the batch has no {text_key!r} (the note) for {name}.")
        lungs = item.get(lungs_key)
        records.append({"text": item[text_key], "lungs": lungs if isinstance(lungs, str) else None, "name": name})
    return records


class TextConsistencyMetric(CumulativeIterationMetric):
    """
    One text-mask consistency score per image (a :data:`~common.metrics.text_consistency.SCORE_NAMES` entry),
    accumulated over iterations like MONAI's metrics.

    Args:
        score: ``"count"``, ``"laterality"``, ``"zone_precision"``, ``"zone_recall"``, ``"position"`` or
            ``"consistency"``.
        min_area_fraction: components smaller than this share of the image are ignored
            (:func:`~common.metrics.text_consistency.mask_attributes`).
        min_zone_fraction: share of a component's pixels a zone needs to count as involved.
        zone_band: row band cut into thirds where an item has no lung field file (the geometric rule).
        reduction: MONAI metric reduction (NaN skipped), default ``"mean"``.

    Raises:
        ValueError: when ``score`` is unknown or a fraction is invalid.
    """

    def __init__(
        self,
        score: str = "consistency",
        min_area_fraction: float = DEFAULT_MIN_AREA_FRACTION,
        min_zone_fraction: float = DEFAULT_MIN_ZONE_FRACTION,
        zone_band: Sequence[float] = DEFAULT_ZONE_BAND,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__()
        if score not in SCORE_NAMES:
            raise ValueError(f"score must be one of {SCORE_NAMES}, got {score!r}.")
        for key, value in (("min_area_fraction", min_area_fraction), ("min_zone_fraction", min_zone_fraction)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}.")
        self.score = score
        self.min_area_fraction = float(min_area_fraction)
        self.min_zone_fraction = float(min_zone_fraction)
        self.geometric = LungFields.geometric(zone_band)
        self.reduction = reduction
        self.unparsed: dict[str, str] = {}

    def reset(self) -> None:
        super().reset()
        self.unparsed = {}

    def _score(self, pred: torch.Tensor, record: Mapping) -> float:
        note = try_parse_note(record.get("text"))
        if isinstance(note, UnparsedNote):
            self.unparsed[record.get("name", "?")] = note.reason
        lungs = record.get("lungs")
        fields = load_lung_fields(lungs) if isinstance(lungs, str) and lungs else self.geometric
        array = torch.as_tensor(pred).detach().float().cpu().numpy()
        attrs = mask_attributes(array, fields, self.min_area_fraction, self.min_zone_fraction)
        return getattr(score_consistency(note, attrs), self.score)

    def __call__(self, y_pred: Sequence[torch.Tensor] | torch.Tensor, y: Sequence[Mapping]) -> torch.Tensor:
        """Score a batch.

        Args:
            y_pred: (B, C, H, W) tensor or a list of (C, H, W) predictions (binary, or class scores with C > 1).
            y: one record per image: ``{"text": note, "lungs": lung field file or None, "name": for logs}``.

        Returns:
            The (B, 1) scores of the batch (also accumulated).
        """
        preds = list(y_pred)
        if len(preds) != len(y):
            raise ValueError(f"text-mask consistency: {len(preds)} predictions but {len(y)} notes.")
        values = torch.tensor([[self._score(p, r)] for p, r in zip(preds, y)], dtype=torch.float32)
        self.extend(values)
        return values

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError("TextConsistencyMetric is called on (predictions, note records); see __call__.")

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        """The reduced score over every image seen since the last reset (NaN skipped; NaN when every image is NaN).

        Args:
            reduction: overrides the constructor's reduction.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data)}.")
        if self.unparsed:
            shown = "; ".join(f"{k}: {v}" for k, v in list(self.unparsed.items())[:10])
            more = f" ... and {len(self.unparsed) - 10} more" if len(self.unparsed) > 10 else ""
            logger.warning("text-mask consistency: %d note(s) not scored (NaN): %s%s", len(self.unparsed), shown, more)
        if data.numel() and torch.isnan(data).all():
            # no image carries this attribute (e.g. TextPosition on chest X-ray notes): NaN, not MONAI's empty mean 0
            return torch.tensor(float("nan"))
        f, _ = do_metric_reduction(data, reduction or self.reduction)
        return f


class TextConsistencyHandler(IgniteMetricHandler):
    """
    Computes one text-mask consistency score per image from the prediction and the item's note (and lung fields)
    and collects the mean over images and iterations; per-image values go to ``engine.state.metric_details``
    (for ``monai.handlers.MetricsSaver(metric_details=[...])`` and ``common.handlers.write_per_case_table``).
    """

    def __init__(
        self,
        score: str = "consistency",
        min_area_fraction: float = DEFAULT_MIN_AREA_FRACTION,
        min_zone_fraction: float = DEFAULT_MIN_ZONE_FRACTION,
        zone_band: Sequence[float] = DEFAULT_ZONE_BAND,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = from_engine(["pred"]),
        text_key: str = "text",
        lungs_key: str = "lungs",
        save_details: bool = True,
    ) -> None:
        """

        Args:
            score: which score: ``"count"``, ``"laterality"``, ``"zone_precision"``, ``"zone_recall"``,
                ``"position"`` or ``"consistency"`` (the consistency rate); definitions in
                :mod:`common.metrics.text_consistency`.
            min_area_fraction: components smaller than this share of the image are not lesions; default 0.001.
            min_zone_fraction: share of a component's pixels a zone needs to be involved; default 0.05.
            zone_band: ``(top, bottom)`` row fractions cut into thirds for items without a ``lungs`` file;
                default ``(0.0, 1.0)`` (image thirds).
            reduction: MONAI metric reduction over images (NaN skipped), default ``"mean"``.
            output_transform: callable mapping ``engine.state.output`` to the predictions (a batch-first tensor or
                a list of channel-first tensors); default ``monai.handlers.from_engine(["pred"])``.
            text_key: key of the note in ``engine.state.batch``; default ``"text"``.
            lungs_key: key of the lung field file in ``engine.state.batch`` (optional per datalist); default
                ``"lungs"``.
            save_details: keep the per-image values in ``engine.state.metric_details``; default True.

        Raises:
            ValueError: when ``score`` is unknown or a fraction or the band is invalid.
        """
        metric_fn = TextConsistencyMetric(score, min_area_fraction, min_zone_fraction, zone_band, reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.text_key = text_key
        self.lungs_key = lungs_key

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:
        """Score the iteration: predictions from ``engine.state.output``, notes from ``engine.state.batch``.

        Args:
            engine: the evaluator.
        """
        preds = self._output_transform(engine.state.output)
        self.update((preds, note_records(engine.state.batch, self.text_key, self.lungs_key)))
