# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""The progressive training schedule of MCDRL (arXiv 2508.05008, section 5.1.3)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from torch import nn

__all__ = ["InterventionScheduleHandler"]

logger = logging.getLogger(__name__)


class InterventionScheduleHandler:
    """
    "The causal intervention mechanism was activated after the tenth epoch" (section 5.1.3): at the start of every
    epoch ``e`` (1-based, ignite's ``engine.state.epoch``) the network's intervention, and with it L_causal
    (:class:`common.losses.MCDRLLoss` reads the ``intervened`` flag the network returns), is switched on iff
    ``e > start_epoch``. Epochs 1..10 train the encoder, MTRS and the head alone; epochs 11..50 add the intervention.

    Because the state is decided from the epoch number at every epoch start, a resumed run (ignite restores
    ``state.epoch``) continues with the right state, and validation after epoch ``e`` uses the state of epoch ``e``.

    Args:
        network: an :class:`common.networks.MCDRL` (or a wrapper with ``.module``, e.g. DistributedDataParallel).
        start_epoch: the last epoch WITHOUT intervention (paper: 10); 0 switches it on from the first epoch.

    Raises:
        TypeError: when the network has no ``set_intervention`` method.
        ValueError: when ``start_epoch`` is negative.
    """

    def __init__(self, network: nn.Module, start_epoch: int = 10) -> None:
        target = getattr(network, "module", network)
        if not hasattr(target, "set_intervention"):
            raise TypeError(f"InterventionScheduleHandler needs an MCDRL network, got {type(target).__name__}.")
        if int(start_epoch) < 0:
            raise ValueError(f"intervention_start_epoch must be >= 0, got {start_epoch}.")
        self.network = target
        self.start_epoch = int(start_epoch)

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer, at an epoch start.
        """
        active = engine.state.epoch > self.start_epoch
        if bool(self.network.intervention_on) != (active and self.network.cdrl):
            logger.info("epoch %d: causal intervention and L_causal %s", engine.state.epoch, "on" if active else "off")
        self.network.set_intervention(active)
