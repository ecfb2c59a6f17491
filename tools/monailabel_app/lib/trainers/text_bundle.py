# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
MONAI Label train task for the text-guided bundles: each image's note comes from the datastore.

MONAI Label's stock ``BundleTrainTask`` (monailabel 0.8.5, ``monailabel/tasks/train/bundle.py``) keeps only
``{"image", "label"}`` of each datastore item (``_fetch_datalist``) and overrides ``train#dataset#data`` and
``validate#dataset#data`` with those lists. Our bundles need the note of every training image (``text``) and read
the whole datalist through ``datalist_file`` (the text vocabulary of the training notes, the pre-flight check, the
semi-supervised split of LViT), so this task:

1. adds ``text`` to every item: the datastore's image info ``text`` (set with ``PUT /datastore/image/info`` or at
   upload) or else a sidecar file next to the image: ``<image file>.txt`` (``case1.png.txt``) or
   ``<image stem>.txt`` (``case1.txt``), UTF-8, surrounding white space removed. A text-conditioned bundle stops
   with an error naming every image without a note; a text-free bundle does not need them;
2. writes MONAI's datalist JSON (``training``/``validation`` lists of ``{"image", "label", "text"}``, absolute
   paths) into ``work_dir`` and points the bundle's ``datalist_file`` (and ``dataset_dir``) at it, instead of
   overriding the dataset lists, so every part of the bundle sees the same data with its notes;
3. sets the bundle's top-level ``max_epochs`` as well as ``train#trainer#max_epochs`` (schedulers read the former).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from monai.bundle import ConfigParser
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from lib.infers.text_bundle import TEXT_KEY, apply_overrides

logger = logging.getLogger(__name__)


def read_note(image_path: str, info: Mapping[str, Any] | None = None) -> str | None:
    """
    The note of one datastore image: ``info["text"]``, else ``<image file>.txt``, else ``<image stem>.txt``.

    Args:
        image_path: the image file.
        info: the datastore's image info (``Datastore.get_image_info``), or ``None``.

    Returns:
        the note with surrounding white space removed, or ``None`` when there is none (or it is empty).
    """
    text = (info or {}).get(TEXT_KEY)
    if isinstance(text, str) and text.strip():
        return text.strip()
    stem = image_path
    for suffix in (".nii.gz", *[os.path.splitext(image_path)[1]]):
        if suffix and image_path.endswith(suffix):
            stem = image_path[: -len(suffix)]
            break
    for sidecar in (image_path + ".txt", stem + ".txt"):
        if os.path.isfile(sidecar):
            with open(sidecar, encoding="utf-8") as f:
                text = f.read().strip()
            if text:
                return text
    return None


class TextBundleTrainTask(BundleTrainTask):
    """
    ``BundleTrainTask`` whose datalist carries each image's note and reaches the bundle as its ``datalist_file``.

    Args:
        path: the bundle folder (``configs/train.json``, ``configs/metadata.json``).
        conf: the app's ``--conf`` settings.
        work_dir: where the datalist JSON of a training request is written (created when missing).
        text_conditioned: whether the bundle's network takes the note (then every image needs one).
        overrides: bundle config items to set for training (the same as for inference, e.g. sizes). Defaults to
            ``None``.
        kwargs: passed to ``BundleTrainTask``.
    """

    def __init__(
        self,
        path: str,
        conf: dict[str, str],
        work_dir: str,
        text_conditioned: bool,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._overrides = dict(overrides or {})
        self.work_dir = work_dir
        self.text_conditioned = bool(text_conditioned)
        super().__init__(path, conf, **kwargs)

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        parser = super()._load_bundle_config(path, config)
        apply_overrides(parser, self._overrides)
        return parser

    def _fetch_datalist(self, request: dict, datastore: Datastore) -> list[dict[str, Any]]:
        """
        The datastore's labelled images with their notes.

        Args:
            request: the train request.
            datastore: the app's datastore.

        Returns:
            ``[{"image", "label", "text"}, ...]`` (``text`` left out for a text-free bundle without notes).

        Raises:
            ValueError: for a text-conditioned bundle, when images have no note (the message lists them and where a
                note is read from).
        """
        info_by_path = {}
        for image_id in datastore.list_images():
            uri = datastore.get_image_uri(image_id)
            if uri:
                info_by_path[os.path.realpath(uri)] = datastore.get_image_info(image_id)
        items, missing = [], []
        for entry in datastore.datalist():
            if not entry:
                continue
            image = entry["image"]
            note = read_note(image, info_by_path.get(os.path.realpath(image)))
            item = {"image": image, "label": entry["label"]}
            if note is not None:
                item[TEXT_KEY] = note
            elif self.text_conditioned:
                missing.append(image)
            items.append(item)
        if missing:
            raise ValueError(
                f"{len(missing)} labelled image(s) have no note, which this text-guided bundle trains with: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}. Give each a note in the datastore's image info "
                f"'{TEXT_KEY}' or a UTF-8 sidecar file <image>.txt (or <image stem>.txt) next to it."
            )
        return items

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        train = overrides.pop(self.const.key_train_dataset_data(), [])
        validation = overrides.pop(self.const.key_validate_dataset_data(), None) or []
        os.makedirs(self.work_dir, exist_ok=True)
        datalist_file = os.path.join(self.work_dir, "datalist.json")
        with open(datalist_file, "w", encoding="utf-8") as f:
            json.dump({"training": list(train), "validation": list(validation), "test": []}, f, indent=2)
        logger.info("Datalist of %d training and %d validation items: %s", len(train), len(validation), datalist_file)
        overrides["datalist_file"] = datalist_file
        overrides["dataset_dir"] = self.work_dir
        overrides["max_epochs"] = overrides[self.const.key_train_trainer_max_epochs()]
        overrides.update(self._overrides)
        return overrides
