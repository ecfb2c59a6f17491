# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Exponential Pseudo-label Iteration (EPI) of semi-supervised LViT: the pseudo-label bank, the batch preparation that
packs real and pseudo labels for the loss, the handler that updates the bank after every iteration, and the handler
that drives the supervised warm-up before the bank starts.

Source: LViT paper (Li et al., "LViT: Language meets Vision Transformer in Medical Image Segmentation"), section 3.2
and eq. 9. The public reference code (HUANGLIZI/LViT) does not wire EPI into training (method_notes §1.3), so the
bookkeeping below (one slot per unlabeled image, first sighting initialises, soft probabilities kept) is ours.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents, PrepareBatch
from monai.utils import CommonKeys, ensure_tuple

__all__ = [
    "PseudoLabelBank",
    "PrepareBatchSemiSupervised",
    "EPIUpdateHandler",
    "EPIWarmupHandler",
    "PACKED_LABEL_CHANNELS",
]

PACKED_LABEL_CHANNELS: tuple[str, ...] = ("target", "contrastive", "is_unlabeled", "target_valid")
"""Channel order of the packed label built by :class:`PrepareBatchSemiSupervised` and read by
:class:`common.losses.LViTSemiSupervisedLoss`."""


def _fingerprint(item_ids: Sequence[str] | None) -> str:
    if item_ids is None:
        return ""
    return hashlib.sha1("\n".join(str(i) for i in item_ids).encode("utf-8")).hexdigest()


def _as_index_tensor(indices: Any, name: str) -> torch.Tensor:
    idx = torch.as_tensor(indices).reshape(-1)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.dtype.is_complex:
        raise TypeError(f"{name}: indices must be integers, got dtype {idx.dtype}.")
    return idx.to(device="cpu", dtype=torch.long)


class PseudoLabelBank:
    """
    One pseudo label per unlabeled training image, updated by the exponential moving average of LViT eq. 9::

        P_t = beta * P_{t-1} + (1 - beta) * p_t

    where ``p_t`` is the foreground probability the current model predicts for the image and ``P_{t-1}`` the stored
    pseudo label (paper section 3.2, ``beta = 0.99``). The first time an image is seen its slot is initialised with
    ``p_t`` itself (there is no ``P_0``); :meth:`get` reports which slots are initialised so the loss can ignore the
    supervised term of an image that has no pseudo label yet. ``t`` counts an image's sightings: with one sighting
    per image per epoch (a shuffling sampler without replacement) it counts epochs, the paper's model
    "generations"; :class:`common.data.semi_supervised.WarmupSemiSupervisedBatchSampler` with
    ``unlabeled_per_batch > 0`` draws each unlabeled image about ``batches * unlabeled_per_batch / U`` times per
    epoch.

    Probabilities are kept soft (not thresholded): the paper's ``P_t`` is "an N-dimensional prediction vector ...
    each dimension represents the prediction probability"; with one sigmoid output the background probability is
    ``1 - P`` and is not stored. (:class:`PrepareBatchSemiSupervised` can threshold them when they are read.)

    Start-up bias correction (``bias_correction=True``, not in the paper): eq. 9 started at the first prediction
    keeps ``beta**(t-1)`` of it after ``t`` sightings (92 % after 9 epochs at ``beta = 0.99``), so in a run much
    shorter than the paper's horizon ``1 / (1 - beta) = 100`` generations the pseudo label stays the first, weakest
    prediction. The correction of temporal ensembling (Laine & Aila, "Temporal Ensembling for Semi-Supervised
    Learning", ICLR 2017, section 2.2: the EMA is started at zero and divided by ``1 - beta**t``; the same
    correction as Adam's moments) stores ``P_t = Z_t / (1 - beta**t)`` with ``Z_t = beta Z_{t-1} + (1 - beta) p_t``,
    ``Z_0 = 0``, i.e.::

        P_t = (beta * (1 - beta**(t-1)) * P_{t-1} + (1 - beta) * p_t) / (1 - beta**t)

    where ``t`` counts the slot's updates. ``P_1 = p_1`` as without it; while ``t << 1 / (1 - beta)`` the pseudo label
    is close to the plain mean of the ``t`` predictions so far (weight ``(1 - beta) / (1 - beta**t) ~ 1/t`` for the
    newest), and for ``t >> 1 / (1 - beta)`` it becomes eq. 9 itself.

    Memory and precision: the bank is one CPU tensor of ``num_items * prod(spatial_size)`` values, i.e.
    ``U * H * W * 2`` bytes in the default ``float16`` (``U * H * W * 4`` in ``float32``), plus ``9 * U`` bytes of
    bookkeeping. For QaTa-COV19 with 1/4 of the 5716 training labels (U = 4287 unlabeled images) at 224 x 224 that is
    430 MB in float16. The update is computed in float32 and rounded to ``dtype`` when stored. float16 has 11
    significant bits: in [0.5, 1) its step is 2**-11, so an EMA step ``(1 - beta) * (p - P)`` smaller than half a step
    is rounded away; with ``beta = 0.99`` a stored value in [0.5, 1) stops moving once ``|p - P| < 0.0245`` (below
    0.5 the bound halves with every binade). A pseudo label therefore stays within about 0.025 of a constant
    prediction; pass ``dtype=torch.float32`` for exact EMA arithmetic at twice the memory.

    Frame: a slot holds the prediction in the pixel frame the network saw. Unlabeled images must therefore reach the
    network in the same frame every epoch: no random geometric transform (flip, rotation, affine, crop) on them,
    only intensity transforms; labeled images may be augmented freely. One bank per process: with several GPUs
    (``DistributedSampler``) each rank would update only the slots it sees, so the banks would diverge; train the
    semi-supervised variant on one device.

    Args:
        num_items: number of unlabeled images U (slots ``0 .. U - 1``, the ``unlabeled_index`` that
            :func:`common.data.semi_supervised.split_labeled` assigns). Must be >= 1.
        spatial_size: spatial shape of one pseudo label, the network output size, e.g. ``(224, 224)``.
        beta: EMA momentum in ``[0, 1)``, default 0.99 (paper section 3.2). ``0`` keeps only the latest prediction.
        dtype: storage dtype, ``torch.float16`` (default) or ``torch.float32`` / ``torch.bfloat16`` / ``torch.float64``.
        item_ids: optional identifiers of the U unlabeled images in slot order (e.g. their image paths). Their hash is
            saved with the state so :meth:`load_state_dict` can refuse a checkpoint written for another split.
        bias_correction: divide the EMA by ``1 - beta**t`` (see above), default ``False`` (eq. 9 as printed).

    Raises:
        ValueError: when ``num_items`` < 1, ``spatial_size`` has a non-positive entry, ``beta`` is outside
            ``[0, 1)``, ``dtype`` is not a floating dtype, or ``item_ids`` does not have ``num_items`` entries.

    Examples::

        bank = PseudoLabelBank(num_items=3, spatial_size=(224, 224))
        bank.update([2], torch.rand(1, 1, 224, 224))      # first sighting: slot 2 = prediction
        targets, initialised = bank.get([0, 2])           # (2, 1, 224, 224) float32, tensor([False, True])
    """

    def __init__(
        self,
        num_items: int,
        spatial_size: Sequence[int],
        beta: float = 0.99,
        dtype: torch.dtype = torch.float16,
        item_ids: Sequence[str] | None = None,
        bias_correction: bool = False,
    ) -> None:
        if isinstance(num_items, bool) or int(num_items) != num_items or num_items < 1:
            raise ValueError(f"PseudoLabelBank: num_items must be an integer >= 1, got {num_items!r}.")
        size = tuple(int(s) for s in ensure_tuple(spatial_size))
        if not size or any(s < 1 for s in size):
            raise ValueError(f"PseudoLabelBank: spatial_size must be positive integers, got {spatial_size!r}.")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and 0.0 <= float(beta) < 1.0):
            raise ValueError(f"PseudoLabelBank: beta must be in [0, 1), got {beta!r}.")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"PseudoLabelBank: dtype must be a floating torch dtype, got {dtype!r}.")
        if item_ids is not None and len(item_ids) != num_items:
            raise ValueError(f"PseudoLabelBank: item_ids has {len(item_ids)} entries for num_items={num_items}.")
        self.num_items = int(num_items)
        self.spatial_size = size
        self.beta = float(beta)
        self.bias_correction = bool(bias_correction)
        self.dtype = dtype
        self.fingerprint = _fingerprint(item_ids)
        self.values = torch.zeros((self.num_items, *size), dtype=dtype)
        self.initialised = torch.zeros(self.num_items, dtype=torch.bool)
        self.counts = torch.zeros(self.num_items, dtype=torch.int64)

    @property
    def nbytes(self) -> int:
        """Bytes held by the bank (pseudo labels plus the per-slot flags and counters)."""
        return sum(t.element_size() * t.numel() for t in (self.values, self.initialised, self.counts))

    def _check_indices(self, indices: Any, name: str) -> torch.Tensor:
        idx = _as_index_tensor(indices, name)
        bad = (idx < 0) | (idx >= self.num_items)
        if bool(bad.any()):
            raise IndexError(
                f"PseudoLabelBank.{name}: unlabeled_index {idx[bad].tolist()} out of range 0..{self.num_items - 1}; "
                "the bank must be built with the number of unlabeled items of the current split."
            )
        return idx

    def _squeeze(self, values: torch.Tensor, n: int, name: str) -> torch.Tensor:
        if values.ndim == len(self.spatial_size) + 2 and values.shape[1] == 1:
            values = values[:, 0]
        if tuple(values.shape) != (n, *self.spatial_size):
            size = ", ".join(map(str, self.spatial_size))
            raise ValueError(
                f"PseudoLabelBank.{name}: expected probabilities of shape ({n}, 1, {size}) or ({n}, {size}), "
                f"got {tuple(values.shape)}."
            )
        return values

    def get(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Read pseudo labels.

        Args:
            indices: slot numbers (ints, list or 1-D integer tensor), each in ``0 .. num_items - 1``.

        Returns:
            ``(targets, initialised)``: a new float32 CPU tensor ``(n, 1, *spatial_size)`` (zeros for slots not yet
            initialised) and a bool tensor ``(n,)``.

        Raises:
            IndexError: when an index is out of range.
            TypeError: when indices are not integers.
        """
        idx = self._check_indices(indices, "get")
        return self.values.index_select(0, idx).to(torch.float32).unsqueeze(1), self.initialised.index_select(0, idx)

    def update(self, indices: Any, probs: torch.Tensor) -> None:
        """
        Apply eq. 9 to the given slots, in order (a slot listed twice is updated twice).

        Args:
            indices: slot numbers, ``n`` of them.
            probs: foreground probabilities in [0, 1], shape ``(n, 1, *spatial_size)`` or ``(n, *spatial_size)``;
                detached and moved to the CPU here.

        Raises:
            IndexError: when an index is out of range.
            ValueError: when ``probs`` has the wrong shape, is not finite or leaves [0, 1] (e.g. logits passed).
        """
        idx = self._check_indices(indices, "update")
        if hasattr(probs, "as_tensor"):  # MetaTensor -> plain tensor
            probs = probs.as_tensor()
        probs = self._squeeze(torch.as_tensor(probs).detach().to(device="cpu", dtype=torch.float32), len(idx), "update")
        if probs.numel() and not (bool(torch.isfinite(probs).all()) and probs.min() >= 0.0 and probs.max() <= 1.0):
            raise ValueError(
                "PseudoLabelBank.update: probabilities must be finite and in [0, 1] "
                f"(got min {float(probs.min())}, max {float(probs.max())}); apply a sigmoid to logits first."
            )
        for row, slot in enumerate(idx.tolist()):
            if bool(self.initialised[slot]):
                old = self.values[slot].to(torch.float32)
                if self.bias_correction:  # t = this update's number; P_{t-1} holds Z_{t-1} / (1 - beta**(t-1))
                    t = int(self.counts[slot]) + 1
                    new = (self.beta * (1.0 - self.beta ** (t - 1)) * old + (1.0 - self.beta) * probs[row]) / (
                        1.0 - self.beta**t
                    )
                else:
                    new = self.beta * old + (1.0 - self.beta) * probs[row]
            else:
                new = probs[row]
                self.initialised[slot] = True
            self.values[slot] = new.to(self.dtype)
            self.counts[slot] += 1

    def state_dict(self) -> dict[str, Any]:
        """
        Returns:
            the bank's state (tensors, the momentum, the split fingerprint), loadable with ``torch.load(...,
            weights_only=True)`` as MONAI's ``CheckpointLoader`` does.
        """
        return {
            "values": self.values.clone(),
            "initialised": self.initialised.clone(),
            "counts": self.counts.clone(),
            "beta": self.beta,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """
        Restore a state written by :meth:`state_dict` (values are cast to this bank's ``dtype``; the momentum of
        this bank, set by its constructor, is kept).

        Args:
            state_dict: the saved state.

        Raises:
            KeyError: when an entry is missing.
            ValueError: when the saved bank has another shape (number of unlabeled items or spatial size) or was
                written for another split (different ``item_ids`` fingerprint, when both banks have one).
        """
        missing = [k for k in ("values", "initialised", "counts") if k not in state_dict]
        if missing:
            raise KeyError(f"PseudoLabelBank.load_state_dict: entries {missing} missing from the saved state.")
        values = torch.as_tensor(state_dict["values"])
        expected = (self.num_items, *self.spatial_size)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"PseudoLabelBank.load_state_dict: the checkpoint holds pseudo labels of shape {tuple(values.shape)} "
                f"(unlabeled items, *spatial size) but this bank is {expected}; the labeled/unlabeled split "
                "(label_fraction, seed, datalist) or the image size changed since the checkpoint was written."
            )
        initialised = torch.as_tensor(state_dict["initialised"]).to(torch.bool).reshape(-1)
        counts = torch.as_tensor(state_dict["counts"]).to(torch.int64).reshape(-1)
        if initialised.numel() != self.num_items or counts.numel() != self.num_items:
            raise ValueError(
                f"PseudoLabelBank.load_state_dict: 'initialised'/'counts' have {initialised.numel()}/{counts.numel()} "
                f"entries for {self.num_items} items."
            )
        saved_fp = str(state_dict.get("fingerprint", "") or "")
        if saved_fp and self.fingerprint and saved_fp != self.fingerprint:
            raise ValueError(
                "PseudoLabelBank.load_state_dict: the checkpoint was written for a different set of unlabeled items "
                "(item_ids fingerprint differs); the labeled/unlabeled split changed since it was written."
            )
        self.values = values.to(device="cpu", dtype=self.dtype).clone()
        self.initialised = initialised.clone()
        self.counts = counts.clone()


class PrepareBatchSemiSupervised(PrepareBatch):
    """
    ``prepare_batch`` for a ``SupervisedTrainer`` on a batch mixing labeled and unlabeled images.

    Like ``monai.engines.PrepareBatchExtraInput`` it returns ``(image, label, args, kwargs)`` with the ``extra_keys``
    passed to the network; the label is a packed float32 tensor ``(B, 4, *spatial)`` whose channels are
    :data:`PACKED_LABEL_CHANNELS`:

    0. ``target``: the real mask for a labeled image, the bank's pseudo label for an unlabeled one (zeros when its
       slot is not initialised yet);
    1. ``contrastive``: the contrastive mask of an unlabeled image (LViT section 3.3); zeros for labeled images;
    2. ``is_unlabeled``: 1 everywhere for an unlabeled image, else 0;
    3. ``target_valid``: 1 everywhere when ``target`` is usable (labeled, or unlabeled with an initialised slot).

    Labeled and unlabeled items are told apart by the batch key ``index_key`` (``-1`` for labeled items, the bank slot
    otherwise; :func:`common.data.semi_supervised.split_labeled` sets it). When the batch has no ``label_key`` at all
    (every item unlabeled) the labeled target is zeros. Channels 2-3 are constant maps so that the single ``target``
    tensor MONAI's trainer hands to the loss carries everything :class:`common.losses.LViTSemiSupervisedLoss` needs.

    Args:
        bank: the :class:`PseudoLabelBank` of the unlabeled images.
        extra_keys: batch keys passed to the network after the image, as in ``PrepareBatchExtraInput``: a string or
            sequence of strings gives positional arguments, a dict ``{kwarg: batch_key}`` keyword arguments. Default
            ``("text_ids",)``. ``None`` or ``()`` passes nothing.
        image_key: batch key of the image, default ``"image"``.
        label_key: batch key of the real mask ``(B, 1, *spatial)``, default ``"label"``.
        contrastive_key: batch key of the contrastive mask ``(B, 1, *spatial)``, default ``"contrastive_label"``;
            ``None`` leaves channel 1 zero (EPI without the LV loss, paper Table 2; use ``alpha=0`` in the loss).
        index_key: batch key of the bank slot, default ``"unlabeled_index"``.
        pseudo_label_threshold: ``None`` (default) hands the bank's soft pseudo label to the loss as it is (paper
            eq. 9 keeps probabilities); a number in (0, 1) hands the hard label ``P > threshold`` instead (the bundle's
            ``epi_hard_threshold``). Why: a soft target is the model's own uncertainty averaged over generations;
            Dice and CE against it teach the unlabeled images to stay uncertain, while the hard label of the same
            bank, as in classic pseudo-labelling (Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised
            Learning Method", ICML 2013 workshop), is a mask.
            The bank itself always keeps the soft EMA.

    Raises:
        KeyError: (when called) the batch lacks ``image_key`` or ``index_key``, lacks ``label_key`` while holding a
            labeled item, lacks ``contrastive_key`` while holding an unlabeled item, or lacks an extra key.
        ValueError: (when called) a mask is not one channel, its spatial shape differs from the bank's, or the index
            tensor does not have one entry per image.

    Examples::

        bank = PseudoLabelBank(len(unlabeled), (224, 224))
        trainer = SupervisedTrainer(..., prepare_batch=PrepareBatchSemiSupervised(bank, extra_keys="text_ids"),
                                    loss_function=LViTSemiSupervisedLoss(), train_handlers=[EPIUpdateHandler(bank)])
    """

    def __init__(
        self,
        bank: PseudoLabelBank,
        extra_keys: str | Sequence[str] | Mapping[str, str] | None = ("text_ids",),
        image_key: str = CommonKeys.IMAGE,
        label_key: str = CommonKeys.LABEL,
        contrastive_key: str | None = "contrastive_label",
        index_key: str = "unlabeled_index",
        pseudo_label_threshold: float | None = None,
    ) -> None:
        if not isinstance(bank, PseudoLabelBank):
            raise TypeError(f"PrepareBatchSemiSupervised: bank must be a PseudoLabelBank, got {type(bank).__name__}.")
        if pseudo_label_threshold is not None and not (
            isinstance(pseudo_label_threshold, (int, float))
            and not isinstance(pseudo_label_threshold, bool)
            and 0.0 < float(pseudo_label_threshold) < 1.0
        ):
            raise ValueError(
                "PrepareBatchSemiSupervised: pseudo_label_threshold (epi_hard_threshold) must be null or a number in "
                f"(0, 1), got {pseudo_label_threshold!r}."
            )
        self.pseudo_label_threshold = None if pseudo_label_threshold is None else float(pseudo_label_threshold)
        self.bank = bank
        self.extra_keys = extra_keys
        self.image_key = image_key
        self.label_key = label_key
        self.contrastive_key = contrastive_key
        self.index_key = index_key

    def _mask(self, batchdata: Mapping[str, Any], key: str, batch_size: int) -> torch.Tensor:
        mask = torch.as_tensor(batchdata[key])
        mask = mask.as_tensor() if hasattr(mask, "as_tensor") else mask
        expected = (batch_size, 1, *self.bank.spatial_size)
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"PrepareBatchSemiSupervised: batch key '{key}' has shape {tuple(mask.shape)}, expected {expected} "
                "(one channel at the pseudo-label bank's spatial size)."
            )
        return mask.to(device="cpu", dtype=torch.float32).clone()  # never modify the batch in place

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        """
        Args:
            batchdata: the collated batch (a dict).
            device: target device of the returned tensors.
            non_blocking: ``Tensor.to`` flag.
            kwargs: further ``Tensor.to`` arguments.

        Returns:
            ``(image, packed_label, args, kwargs)``.
        """
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"PrepareBatchSemiSupervised expects a dict batch, got {type(batchdata).__name__}.")
        for key in (self.image_key, self.index_key):
            if key not in batchdata:
                raise KeyError(
                    f"PrepareBatchSemiSupervised: batch has no '{key}' (keys: {sorted(map(str, batchdata))}); "
                    f"every training item needs '{self.index_key}' (-1 for labeled items)."
                )
        image = batchdata[self.image_key]
        batch_size = int(image.shape[0])
        idx = _as_index_tensor(batchdata[self.index_key], f"batch key '{self.index_key}'")
        if idx.numel() != batch_size:
            raise ValueError(
                f"PrepareBatchSemiSupervised: '{self.index_key}' has {idx.numel()} entries for {batch_size} images."
            )
        unlabeled = idx >= 0
        spatial = self.bank.spatial_size
        if self.label_key in batchdata:
            target = self._mask(batchdata, self.label_key, batch_size)
        elif bool(unlabeled.all()):
            target = torch.zeros((batch_size, 1, *spatial), dtype=torch.float32)
        else:
            raise KeyError(f"PrepareBatchSemiSupervised: batch has labeled items but no '{self.label_key}'.")
        valid = torch.ones(batch_size, dtype=torch.float32)
        contrastive = torch.zeros((batch_size, 1, *spatial), dtype=torch.float32)
        if bool(unlabeled.any()):
            pseudo, initialised = self.bank.get(idx[unlabeled])
            if self.pseudo_label_threshold is not None:
                pseudo = (pseudo > self.pseudo_label_threshold).to(torch.float32)
            pseudo[~initialised] = 0.0
            target[unlabeled] = pseudo
            valid[unlabeled] = initialised.to(torch.float32)
            if self.contrastive_key is not None:
                if self.contrastive_key not in batchdata:
                    raise KeyError(
                        f"PrepareBatchSemiSupervised: batch has unlabeled items but no '{self.contrastive_key}' "
                        "(set contrastive_key=None to train EPI without the LV loss)."
                    )
                contrastive[unlabeled] = self._mask(batchdata, self.contrastive_key, batch_size)[unlabeled]
        flags = torch.stack([unlabeled.to(torch.float32), valid], dim=1)  # (B, 2)
        flags = flags.reshape(batch_size, 2, *([1] * len(spatial))).expand(batch_size, 2, *spatial)
        packed = torch.cat([target, contrastive, flags], dim=1)

        def _to(data: Any) -> Any:
            if isinstance(data, torch.Tensor):
                return data.to(device=device, non_blocking=non_blocking, **kwargs)
            return data

        args: list[Any] = []
        kwargs_: dict[str, Any] = {}
        extra = self.extra_keys
        if isinstance(extra, Mapping):
            for name, key in extra.items():
                if key not in batchdata:
                    raise KeyError(f"PrepareBatchSemiSupervised: batch has no extra key '{key}'.")
                kwargs_[name] = _to(batchdata[key])
        elif extra is not None:
            for key in ensure_tuple(extra):
                if key not in batchdata:
                    raise KeyError(f"PrepareBatchSemiSupervised: batch has no extra key '{key}'.")
                args.append(_to(batchdata[key]))
        return _to(image), _to(packed.contiguous()), tuple(args), kwargs_


class EPIUpdateHandler:
    """
    Updates a :class:`PseudoLabelBank` with the predictions of the unlabeled images of every training iteration
    (LViT eq. 9): ``bank.update(unlabeled_index, sigmoid(logits))``, detached and on the CPU.

    Where the prediction is read: MONAI's trainers decollate ``engine.state.output`` into a list of dicts and run the
    trainer's ``postprocessing`` (typically ``Activationsd(sigmoid) + AsDiscreted(threshold)``) before
    ``ITERATION_COMPLETED``, so the ``pred`` seen there may already be thresholded. The handler therefore copies the
    raw logits of the unlabeled items at ``IterationEvents.FORWARD_COMPLETED`` (right after the forward pass, before
    the loss, the decollation and the post-processing) and applies the update at ``ITERATION_COMPLETED``. The
    pseudo labels used by this iteration's loss were read by :class:`PrepareBatchSemiSupervised` before the forward
    pass, so the update never leaks into the current target. On an engine without MONAI's iteration events (a plain
    ignite ``Engine``) it reads ``engine.state.output`` and ``engine.state.batch`` at ``ITERATION_COMPLETED`` instead
    (a dict, or MONAI's decollated list of dicts); ``pred`` must then still hold logits.

    Args:
        bank: the bank to update.
        index_key: batch key of the bank slot (``-1`` = labeled), default ``"unlabeled_index"``.
        pred_key: output key of the network logits, default ``"pred"``.
        start_epoch: first epoch (1-based) whose predictions enter the bank, default 1. The bundle sets it to
            ``epi_warmup_epochs + 1``: together with :class:`common.data.semi_supervised.WarmupSemiSupervisedSampler`
            (no unlabeled image is drawn before that epoch) the bank is first initialised by the warmed-up model's
            predictions, not by an untrained model's.

    Raises:
        ValueError: when ``start_epoch`` < 1.
    """

    def __init__(
        self,
        bank: PseudoLabelBank,
        index_key: str = "unlabeled_index",
        pred_key: str = CommonKeys.PRED,
        start_epoch: int = 1,
    ) -> None:
        if not isinstance(bank, PseudoLabelBank):
            raise TypeError(f"EPIUpdateHandler: bank must be a PseudoLabelBank, got {type(bank).__name__}.")
        if int(start_epoch) < 1:
            raise ValueError(f"EPIUpdateHandler: start_epoch must be >= 1, got {start_epoch}.")
        self.bank = bank
        self.index_key = index_key
        self.pred_key = pred_key
        self.start_epoch = int(start_epoch)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._captures = False

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer.
        """
        try:
            engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._capture)
            self._captures = True
        except ValueError:  # a plain ignite Engine without MONAI's iteration events
            self._captures = False
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _select(self, logits: torch.Tensor, indices: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        idx = _as_index_tensor(indices, f"batch key '{self.index_key}'")
        if idx.numel() != logits.shape[0]:
            raise ValueError(
                f"EPIUpdateHandler: {idx.numel()} '{self.index_key}' values for {logits.shape[0]} predictions."
            )
        unlabeled = idx >= 0
        if not bool(unlabeled.any()):
            return None
        rows = unlabeled.nonzero().reshape(-1)
        probs = torch.sigmoid(logits.detach().index_select(0, rows.to(logits.device)).float()).cpu()
        return idx[unlabeled], probs

    def _capture(self, engine: Engine) -> None:
        self._pending = None
        if engine.state.epoch < self.start_epoch:
            return
        batch, output = engine.state.batch, engine.state.output
        if not isinstance(batch, Mapping) or self.index_key not in batch:
            raise KeyError(f"EPIUpdateHandler: the batch has no '{self.index_key}' key.")
        pred = output[self.pred_key] if isinstance(output, Mapping) else None
        if not isinstance(pred, torch.Tensor):
            raise TypeError(f"EPIUpdateHandler: engine.state.output['{self.pred_key}'] is not a tensor of logits.")
        self._pending = self._select(pred, batch[self.index_key])

    def _from_state(self, engine: Engine) -> tuple[torch.Tensor, torch.Tensor] | None:
        batch, output = engine.state.batch, engine.state.output
        if isinstance(output, Sequence) and not isinstance(output, Mapping):
            preds = torch.stack([torch.as_tensor(o[self.pred_key]) for o in output])
        else:
            preds = torch.as_tensor(output[self.pred_key])
        if isinstance(batch, Sequence) and not isinstance(batch, Mapping):
            indices = [int(torch.as_tensor(b[self.index_key]).reshape(-1)[0]) for b in batch]
        else:
            indices = batch[self.index_key]
        return self._select(preds, indices)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer whose iteration just completed.
        """
        if engine.state.epoch < self.start_epoch:
            return
        pending = self._pending if self._captures else self._from_state(engine)
        self._pending = None
        if pending is not None:
            self.bank.update(*pending)


class EPIWarmupHandler:
    """
    Drives the supervised warm-up of semi-supervised LViT: at every ``EPOCH_STARTED`` it tells a
    :class:`common.data.semi_supervised.WarmupSemiSupervisedSampler` the trainer's epoch (``sampler.set_epoch``), so
    the epoch draws labeled images only while ``epoch <= warmup_epochs`` and every image afterwards, and it logs when
    the unlabeled images enter. ignite fires ``EPOCH_STARTED`` before it asks the DataLoader for the epoch's
    iterator, and a resumed trainer (``ResumeHandler``) starts with its restored epoch, so an interrupted run draws
    the same epochs as an uninterrupted one.

    Why a warm-up (paper section 3.2): the argument for EPI assumes "the model weights will dither around the actual
    optimum in the last n generations"; starting the bank from an untrained model breaks it (see the sampler).

    Args:
        sampler: the training DataLoader's sampler (anything with ``set_epoch(int)`` and ``in_warmup(int)``).
        logger_name: logger of the message, default ``"common.engines.epi"``.

    Raises:
        TypeError: when ``sampler`` has no ``set_epoch`` / ``in_warmup``.
    """

    def __init__(self, sampler: Any, logger_name: str = __name__) -> None:
        if not (callable(getattr(sampler, "set_epoch", None)) and callable(getattr(sampler, "in_warmup", None))):
            raise TypeError(
                f"EPIWarmupHandler: the sampler ({type(sampler).__name__}) needs set_epoch() and in_warmup(); use "
                "common.data.semi_supervised.WarmupSemiSupervisedSampler."
            )
        self.sampler = sampler
        self.logger = logging.getLogger(logger_name)

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: the trainer whose epoch starts.
        """
        epoch = int(engine.state.epoch)
        self.sampler.set_epoch(epoch)
        warm = self.sampler.in_warmup(epoch)
        if warm and epoch == 1:
            self.logger.info("EPI warm-up: epoch 1 trains on the labeled images only.")
        if not warm and (epoch == 1 or self.sampler.in_warmup(epoch - 1)):
            self.logger.info(
                f"EPI: unlabeled images (pseudo-label bank, LV loss) enter the training from epoch {epoch}."
            )
