# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Measure how much of each training iteration is spent waiting for the data loader."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["DataWaitHandler"]


class DataWaitHandler:
    """
    Times every iteration of an ignite engine in two parts: the wait for the next batch (ignite's
    ``GET_BATCH_STARTED`` to ``GET_BATCH_COMPLETED``, i.e. the ``next(iter(data_loader))`` call) and the whole
    iteration (``GET_BATCH_STARTED`` to ``ITERATION_COMPLETED``: the wait plus the engine's iteration function, i.e.
    moving the batch to the device, forward, loss, backward, optimizer step, and every handler on
    ``ITERATION_COMPLETED`` attached before this one). Epoch-level work (validation, checkpoints) is outside both.
    On CUDA the device is synchronised at the end of each iteration, so the queued kernels are counted in the
    iteration that launched them.

    The first ``warmup`` iterations are not recorded (worker start-up, first-call allocations); after ``warmup +
    iterations`` recorded iterations the engine is terminated when ``terminate`` is set.

    Args:
        warmup: iterations to skip before recording, >= 0; default 2.
        iterations: iterations to record, >= 1, or ``None`` (default) to record until the engine stops.
        terminate: call ``engine.terminate()`` once ``iterations`` are recorded; default ``True``.
        device: a CUDA device to synchronise at the end of each iteration; default ``None`` (no synchronisation;
            set it when the engine runs on CUDA).

    Raises:
        ValueError: a negative ``warmup`` or an ``iterations`` below 1.

    Examples::

        timer = DataWaitHandler(warmup=2, iterations=10)
        timer.attach(trainer)
        trainer.run()
        timer.summary()["data_wait_share"]  # e.g. 0.04: 4 % of the iteration time is spent waiting for batches
    """

    def __init__(
        self,
        warmup: int = 2,
        iterations: int | None = None,
        terminate: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        if warmup < 0:
            raise ValueError(f"warmup: expected >= 0, got {warmup}.")
        if iterations is not None and iterations < 1:
            raise ValueError(f"iterations: expected >= 1 or None, got {iterations}.")
        self.warmup = int(warmup)
        self.iterations = iterations
        self.terminate = terminate
        self.device = torch.device(device) if device is not None else None
        self.wait_s: list[float] = []
        self.iteration_s: list[float] = []
        self._seen = 0
        self._start = 0.0
        self._wait = 0.0

    def attach(self, engine: Engine) -> None:
        """
        Register the timing callbacks on ``engine``.

        Args:
            engine: the ignite engine (e.g. a MONAI ``SupervisedTrainer``).
        """
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _batch_started(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def _batch_completed(self, engine: Engine) -> None:
        self._wait = time.perf_counter() - self._start

    def _iteration_completed(self, engine: Engine) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        total = time.perf_counter() - self._start
        self._seen += 1
        if self._seen <= self.warmup:
            return
        self.wait_s.append(self._wait)
        self.iteration_s.append(total)
        if self.terminate and self.iterations is not None and len(self.iteration_s) >= self.iterations:
            engine.terminate()

    def summary(self) -> dict[str, Any]:
        """
        The recorded iterations, summarised.

        Returns:
            ``{"iterations", "data_wait_share", "data_wait_median_ms", "iteration_median_ms", "data_wait_total_s",
            "iteration_total_s"}``; ``data_wait_share`` is the total wait over the total iteration time (in [0, 1]),
            ``None`` with no recorded iteration.
        """
        total = sum(self.iteration_s)
        wait = sum(self.wait_s)
        return {
            "iterations": len(self.iteration_s),
            "data_wait_share": (wait / total) if total > 0 else None,
            "data_wait_median_ms": statistics.median(self.wait_s) * 1000 if self.wait_s else None,
            "iteration_median_ms": statistics.median(self.iteration_s) * 1000 if self.iteration_s else None,
            "data_wait_total_s": wait,
            "iteration_total_s": total,
        }
