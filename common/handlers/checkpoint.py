# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Atomic checkpoints: the best model for deployment and the last training state for resuming.

MONAI's ``CheckpointSaver`` writes with ``DiskSaver(atomic=False)`` and, with a fixed file name, removes the old
file before writing the new one, so a run killed at that moment loses its best model. These handlers write to a
temporary file in the same folder and ``os.replace`` it over the old one: a checkpoint on disk is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

__all__ = ["atomic_save", "LastCheckpointHandler", "ResumeHandler", "BestModelHandler"]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: str) -> None:
    """
    ``torch.save(obj, path)`` through a temporary file and ``os.replace``, so ``path`` is never half-written.

    Args:
        obj: anything ``torch.save`` accepts.
        path: destination file; its folder is created if needed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _state_dicts(save_dict: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, obj in save_dict.items():
        module = obj.module if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj
        out[key] = module.state_dict()
    return out


class LastCheckpointHandler:
    """
    Saves the whole training state (network, optimizer, scheduler, trainer counters, and any other stateful
    object such as an EMA of pseudo labels) to one fixed file after every ``interval`` epochs, atomically.
    MONAI's ``CheckpointLoader`` with the same ``load_dict`` resumes from it: the trainer restarts at the next
    epoch and the scheduler continues its schedule.

    The engine the handler is attached to is added to the saved objects as ``engine_key``, so a bundle config
    does not need to reference the trainer from inside its own handler list (a circular reference).

    Args:
        save_dir: folder of the checkpoint.
        save_dict: objects with ``state_dict()``, e.g. ``{"network": net, "optimizer": opt, "lr_scheduler": s}``.
            A ``DistributedDataParallel`` network is saved unwrapped.
        filename: file name, default ``"checkpoint_last.pt"``.
        interval: save every ``interval`` epochs (default 1); the final epoch is always saved.
        engine_key: key under which the attached engine's state (epoch, iteration) is saved, default
            ``"trainer"``; ``None`` saves no engine state.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        filename: str = "checkpoint_last.pt",
        interval: int = 1,
        engine_key: str | None = "trainer",
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.path = os.path.join(save_dir, filename)
        self.save_dict = dict(save_dict)
        self.interval = interval
        self.engine_key = engine_key

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer.
        """
        if self.engine_key is not None:
            self.save_dict[self.engine_key] = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer whose epoch just completed.
        """
        if engine.state.epoch % self.interval == 0 or engine.state.epoch >= (engine.state.max_epochs or 0):
            atomic_save(_state_dicts(self.save_dict), self.path)
            logger.info(f"epoch {engine.state.epoch}: saved training state to {self.path}")


class ResumeHandler(CheckpointLoader):
    """
    Restores a :class:`LastCheckpointHandler` file when training starts: network, optimizer, scheduler and the
    trainer's epoch and iteration, so training continues with the next epoch on the same schedule. MONAI's
    ``CheckpointLoader`` with the engine added to ``load_dict`` at ``attach`` time (as ``engine_key``), and a
    clear error when the file is missing.

    Args:
        load_path: the checkpoint written by :class:`LastCheckpointHandler`.
        load_dict: objects to restore, e.g. ``{"network": net, "optimizer": opt, "lr_scheduler": s}``; a
            ``DistributedDataParallel`` network is unwrapped by ignite.
        engine_key: key of the attached engine's state in the checkpoint, default ``"trainer"``.
        map_location: ``torch.load`` map location (e.g. the training device).

    Raises:
        FileNotFoundError: at the start of training when ``load_path`` does not exist.
    """

    def __init__(
        self, load_path: str, load_dict: Mapping[str, Any], engine_key: str = "trainer", map_location: Any = None
    ) -> None:
        super().__init__(load_path=load_path, load_dict=dict(load_dict), map_location=map_location)
        self.engine_key = engine_key

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer to resume.
        """
        self.load_dict[self.engine_key] = engine
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer, at its start.
        """
        if not os.path.isfile(self.load_path):
            raise FileNotFoundError(
                f"resume requested but there is no training state at {self.load_path}; "
                "train without `resume` first, or point `ckpt_dir` at the folder holding checkpoint_last.pt."
            )
        super().__call__(engine)


class BestModelHandler:
    """
    Saves the network weights (a flat ``state_dict``, the format ``ckpt_export`` and MONAI Label load) whenever
    the evaluator's key metric improves, atomically, with a JSON sidecar recording the metric, its value and the
    epoch. When a run resumes (``resume=True``) the best value so far is read back from the sidecar, so a worse
    model after resuming never overwrites the better one saved before the interruption.

    Args:
        save_dir: folder of the model.
        network: the network to save (a ``DistributedDataParallel`` wrapper is unwrapped).
        metric_name: the metric to track; default ``None`` uses the evaluator's key metric.
        filename: file name, default ``"model.pt"``.
        mode: ``"max"`` (default) or ``"min"``.
        resume: read the best value recorded by an earlier run in the sidecar ``<filename stem>.json``.

    The recorded epoch is the evaluator's, which MONAI's ``ValidationHandler`` sets to the trainer's epoch.
    """

    def __init__(
        self,
        save_dir: str,
        network: torch.nn.Module,
        metric_name: str | None = None,
        filename: str = "model.pt",
        mode: str = "max",
        resume: bool = False,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.path = os.path.join(save_dir, filename)
        self.sidecar = os.path.splitext(self.path)[0] + ".json"
        self.network = network
        self.metric_name = metric_name
        self.mode = mode
        self.best: float | None = None
        if resume and os.path.isfile(self.sidecar):
            with open(self.sidecar) as f:
                self.best = float(json.load(f)["value"])

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the evaluator.
        """
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the evaluator whose run just completed.
        """
        name = self.metric_name or getattr(engine.state, "key_metric_name", None)
        if name is None or name not in engine.state.metrics:
            raise KeyError(f"BestModelHandler: metric {name!r} not in evaluator metrics {list(engine.state.metrics)}.")
        value = float(engine.state.metrics[name])
        if value != value or not self._better(value):  # NaN never counts as better
            return
        self.best = value
        epoch = engine.state.epoch
        atomic_save(_state_dicts({"network": self.network})["network"], self.path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=os.path.dirname(self.path))
        with os.fdopen(fd, "w") as f:
            json.dump({"metric": name, "value": value, "epoch": epoch}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.sidecar)
        logger.info(f"epoch {epoch}: new best {name}={value:.4f}, saved {self.path}")
