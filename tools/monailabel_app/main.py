# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
MONAI Label app serving this repository's bundles with text prompts (see README.md beside this file).

Start it from the repository root, in the MONAI Label environment (``.venv-label``)::

    PATH=$PWD/.venv-label/bin:$PATH monailabel start_server --app tools/monailabel_app --studies /data/images \\
        --conf models lvit,unet_baseline

The bundles import the repository's shared package ``common``; MONAI Label adds only a bundle's own folder to
``sys.path`` (``BundleInferTask``), so this module puts the repository root (``--conf repo_root``, default two
folders above this file) on ``sys.path``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

APP_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(APP_DIR))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from lib.configs.bundles import bundle_configs  # noqa: E402
from lib.infers.text_bundle import TextBundleInferTask  # noqa: E402
from lib.trainers.text_bundle import TextBundleTrainTask  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferTask  # noqa: E402
from monailabel.interfaces.tasks.train import TrainTask  # noqa: E402
from monailabel.utils.others.generic import strtobool  # noqa: E402

logger = logging.getLogger(__name__)


class TextGuidedSegmentationApp(MONAILabelApp):
    """
    Serves every bundle of ``bundles/`` (or those of ``--conf models``): one infer task per bundle that carries the
    request's note to the network (:class:`lib.infers.text_bundle.TextBundleInferTask`) and one train task per
    bundle whose datalist carries each image's note (:class:`lib.trainers.text_bundle.TextBundleTrainTask`).

    Args:
        app_dir: this folder.
        studies: the folder of images (MONAI Label's local datastore) or a DICOMweb URL.
        conf: the ``--conf`` settings: ``models``, ``bundles``, ``overrides``, ``texts``, ``work_dir``,
            ``skip_trainers``, ``repo_root`` (``lib/configs/bundles.py`` documents them).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        repo_root = os.path.abspath(conf.get("repo_root", REPO_ROOT))
        if repo_root not in sys.path:
            sys.path.insert(0, repo_root)
        self.bundles = bundle_configs(conf, os.path.join(repo_root, "bundles"))
        self.work_dir = os.path.abspath(conf.get("work_dir") or os.path.join(studies, ".text_bundles"))
        self._text_conditioned: dict[str, bool] = {}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Text-guided segmentation bundles",
            description="Text-guided lesion segmentation: an image and a clinical note give a mask",
            version="1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for bundle in self.bundles:
            task = TextBundleInferTask(bundle.path, self.conf, bundle.default_text, overrides=bundle.overrides)
            if not task.is_valid():
                logger.warning(
                    "Bundle %s is not served: no models/model.pt (or model.ts) in %s", bundle.name, bundle.path
                )
                continue
            infers[bundle.name] = task
            self._text_conditioned[bundle.name] = task.text_conditioned
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers: dict[str, TrainTask] = {}
        for bundle in self.bundles:
            task = TextBundleTrainTask(
                bundle.path,
                self.conf,
                work_dir=os.path.join(self.work_dir, bundle.name),
                text_conditioned=self._text_conditioned.get(bundle.name, True),
                overrides=bundle.overrides,
            )
            if task.is_valid():
                trainers[bundle.name] = task
        return trainers

    def info(self) -> dict[str, Any]:
        """MONAI Label's app info plus, per model, whether it takes the note and its default note."""
        info = super().info()
        for bundle in self.bundles:
            model = info.get("models", {}).get(bundle.name)
            if isinstance(model, dict):
                model["text_conditioned"] = self._text_conditioned.get(bundle.name, False)
                model["default_text"] = bundle.default_text
        return info
