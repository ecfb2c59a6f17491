# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Log every term of a multi-term loss separately."""

from __future__ import annotations

from collections import defaultdict

from ignite.engine import Engine, Events

__all__ = ["LossTermsHandler"]


class LossTermsHandler:
    """
    Averages the per-term values a loss records (``loss.last_terms``, see :class:`common.losses.WeightedSumLoss`)
    over each epoch and stores them in ``engine.state.metrics`` as ``<prefix><term>``, where MONAI's
    ``StatsHandler`` and ``TensorBoardStatsHandler`` log them next to the total loss. The latest per-iteration
    values are also kept in ``engine.state.loss_terms`` for handlers that log every iteration.

    Args:
        loss: the loss module; it must expose a ``last_terms`` mapping ``{name: float}`` refreshed on every call.
        prefix: prefix of the metric names, default ``"loss_"`` (giving e.g. ``loss_dice``, ``loss_bce``).

    Raises:
        TypeError: when ``loss`` has no ``last_terms`` attribute.

    Examples::

        trainer = SupervisedTrainer(..., loss_function=loss, train_handlers=[LossTermsHandler(loss), StatsHandler()])
    """

    def __init__(self, loss, prefix: str = "loss_") -> None:
        if not hasattr(loss, "last_terms"):
            raise TypeError(
                f"LossTermsHandler needs a loss exposing `last_terms` (e.g. common.losses.WeightedSumLoss), "
                f"got {type(loss).__name__}."
            )
        self.loss = loss
        self.prefix = prefix
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer to attach to.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._publish)

    def _reset(self, engine: Engine) -> None:
        self._sums.clear()
        self._count = 0

    def _accumulate(self, engine: Engine) -> None:
        terms = dict(self.loss.last_terms)
        engine.state.loss_terms = terms
        for name, value in terms.items():
            self._sums[name] += value
        self._count += 1

    def _publish(self, engine: Engine) -> None:
        if self._count == 0:
            return
        for name, total in self._sums.items():
            engine.state.metrics[f"{self.prefix}{name}"] = total / self._count
