# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
MONAI Label infer task for the text-guided bundles: the note of the request reaches the network.

MONAI Label's stock ``BundleInferTask`` (monailabel 0.8.5, ``monailabel/tasks/infer/bundle.py``) runs the bundle's
``preprocessing`` on the request dictionary and then calls ``inferer(image, network)`` with the image only
(``BasicInferTask.run_inferer``). Our bundles tokenise the note in their ``preprocessing`` (key ``text`` ->
``text_ids`` or ``text_emb``) and feed it to the network through the evaluator's
``monai.engines.PrepareBatchExtraInput(extra_keys=[...])``; this task reads those ``extra_keys`` from the bundle's
``evaluator#prepare_batch`` and passes the same items to ``inferer(image, network, *extra)``, exactly as the
bundle's own evaluator does. A bundle without such a ``prepare_batch`` (text-free, e.g. ``unet_baseline``) runs as
with the stock task.

The note is the request parameter ``text`` (``params={"text": "..."}`` of ``POST /infer/<model>``). Its default is
``displayable_configs#text``: MONAI Label copies ``displayable_configs`` into the task's config (request defaults
and the options panel of Slicer/OHIF, ``BundleInferTask.__init__``). When the bundle's ``inference.json`` has no
``displayable_configs#text``, the task adds it with the default the app passes (see ``lib/configs``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monailabel.tasks.infer.bundle import BundleInferTask

logger = logging.getLogger(__name__)

#: the request parameter that carries the note, and the ``displayable_configs`` entry that gives its default
TEXT_KEY = "text"
#: 2D image formats read with MONAI's ``PILReader`` by the bundles; their masks are written back with ``PILWriter``
NATURAL_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def apply_overrides(parser: ConfigParser, overrides: Mapping[str, Any]) -> None:
    """
    Set config items of a parsed bundle config, as ``--key value`` does on the ``monai.bundle run`` command line.

    Args:
        parser: the bundle's ``ConfigParser`` (its config read, not yet resolved).
        overrides: ``{id: value}``; an id may be nested (``"a#b"``).
    """
    for key, value in overrides.items():
        parser[key] = value


class TextBundleInferTask(BundleInferTask):
    """
    ``BundleInferTask`` that feeds the request's note to the network and reports what the network saw.

    Besides the mask, the result JSON (``params`` of the response) holds ``text`` (the note the network was given,
    or ``None`` for a text-free bundle), ``text_conditioned`` (whether the network takes the note),
    ``output_shape`` (the network output before post-processing, batch dimension removed), ``output_sha1`` (SHA-1
    of that float32 tensor's bytes: equal outputs give equal digests) and ``foreground_mean`` (the mean sigmoid
    probability of the output channels): a client can check that another note changes the network output
    without access to the server.

    Args:
        path: the bundle folder (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).
        conf: the app's ``--conf`` settings.
        default_text: the note used when a request has none, unless the bundle's ``displayable_configs#text``
            gives one.
        overrides: bundle config items to set before anything is built, e.g. the sizes a checkpoint was trained
            with (``{"base_channels": 32}``). Defaults to ``None``.
        kwargs: passed to ``BundleInferTask`` (e.g. ``load_strict``).

    Attributes:
        extra_keys: the data keys given to the network after the image (from ``evaluator#prepare_batch``); a list
            for positional arguments or a mapping ``{argument: key}`` for keyword arguments; empty when the network
            takes the image only.
    """

    def __init__(
        self,
        path: str,
        conf: dict[str, str],
        default_text: str,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._overrides = dict(overrides or {})
        self._default_text = str(default_text)
        self.extra_keys: list[str] | dict[str, str] = []
        super().__init__(path, conf, **kwargs)
        if self.valid:
            self.extra_keys = self._read_extra_keys()
            logger.info("Model %s: network inputs after the image: %s", path, self.extra_keys or "none")

    @property
    def text_conditioned(self) -> bool:
        """Whether the network takes inputs besides the image (the note, tokenised or embedded)."""
        return bool(self.extra_keys)

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        parser = super()._load_bundle_config(path, config)
        apply_overrides(parser, self._overrides)
        shown = parser.config.get("displayable_configs") or {}
        if TEXT_KEY not in shown:
            parser["displayable_configs"] = {**shown, TEXT_KEY: self._default_text}
        return parser

    def _read_extra_keys(self) -> list[str] | dict[str, str]:
        if self.bundle_config.get("evaluator#prepare_batch") is None:
            return []
        prepare = self.bundle_config.get_parsed_content("evaluator#prepare_batch", instantiate=True)
        keys = getattr(prepare, "extra_keys", None)
        if keys is None:
            return []
        if isinstance(keys, str):
            return [keys]
        if isinstance(keys, Mapping):
            return {str(k): str(v) for k, v in keys.items()}
        return [str(k) for k in keys]

    @staticmethod
    def _batched(data: dict[str, Any], key: str, device: torch.device) -> Any:
        if key not in data:
            raise KeyError(
                f"the network input '{key}' is not in the pre-processed request; the bundle's preprocessing makes it "
                f'from the request parameter \'{TEXT_KEY}\' (params={{"{TEXT_KEY}": "..."}}).'
            )
        value = data[key]
        return value[None].to(device) if torch.is_tensor(value) else value

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        """
        Run the bundle's inferer on the image and the note items, then record what the network saw.

        Args:
            data: the pre-processed request.
            convert_to_batch: add (and remove) the batch dimension. Defaults to ``True``.
            device: where the network runs. Defaults to ``"cuda"`` (MONAI Label passes the request's device).

        Returns:
            ``data`` with the network output under ``pred`` and the summary under ``result``.
        """
        if not self.extra_keys:
            data = super().run_inferer(data, convert_to_batch=convert_to_batch, device=device)
        else:
            inferer = self.inferer(data)
            network = self._get_network(device, data)
            target = torch.device(device)
            image = data[self.input_key]
            image = image if torch.is_tensor(image) else torch.as_tensor(image)
            image = (image[None] if convert_to_batch else image).to(target)
            if isinstance(self.extra_keys, Mapping):
                args: Sequence[Any] = ()
                kwargs = {name: self._batched(data, key, target) for name, key in self.extra_keys.items()}
            else:
                args, kwargs = [self._batched(data, key, target) for key in self.extra_keys], {}
            with torch.no_grad():
                outputs = inferer(image, network, *args, **kwargs)
            data[self.output_label_key] = outputs[0] if convert_to_batch else outputs
        output = torch.as_tensor(data[self.output_label_key]).detach().float().cpu()
        summary = {
            "text": data.get(TEXT_KEY) if self.text_conditioned else None,
            "text_conditioned": self.text_conditioned,
            "output_shape": list(output.shape),
            "output_sha1": hashlib.sha1(output.contiguous().numpy().tobytes()).hexdigest(),
            "foreground_mean": round(float(torch.sigmoid(output).mean()), 6),
        }
        result = data.get(self.output_json_key)
        data[self.output_json_key] = {**(result if isinstance(result, dict) else {}), **summary}
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """
        Write the mask: a PNG for a 2D natural image (PNG, JPEG, ...), else MONAI Label's writer (NIfTI, ...).

        MONAI Label's ``Writer`` hands a 2D mask to ITK as it is: a float array, which ITK's PNG writer refuses, in
        the (width, height) axis order of MONAI's ``PILReader`` (``reverse_indexing=True``, what the bundles read
        with), which ITK would write transposed. Here a 2D mask is written with MONAI's ``PILWriter``, the writer
        of the bundles' own ``SaveImaged`` (same ``reverse_indexing``), as an 8-bit PNG of label indices (0
        background, 1 lesion; the channel argmax for a multi-channel output), so it has the image's width and
        height. A JPEG input gets a PNG mask (JPEG compression would change label values).

        Args:
            data: the post-processed request (``pred`` on the image's grid after ``Restored``).
            extension: the result extension, as for ``BasicInferTask.writer``. Defaults to ``None`` (the image's).
            dtype: the result dtype for non-2D formats, as for ``BasicInferTask.writer``. Defaults to ``None``.

        Returns:
            ``(mask file, result JSON)``.
        """
        path = data.get("image_path") or ""
        ext = (data.get("result_extension") or extension or os.path.splitext(str(path))[1]).lower()
        if ext not in NATURAL_IMAGE_EXTENSIONS:
            return super().writer(data, extension=extension, dtype=dtype)
        from monai.data import PILWriter

        mask = torch.as_tensor(data[self.output_label_key]).detach().cpu()
        if mask.dim() == 3 and mask.shape[0] > 1:
            mask = mask.argmax(dim=0, keepdim=True)
        if mask.dim() == 2:
            mask = mask[None]
        if mask.dim() != 3:
            raise ValueError(f"a 2D image needs a (C, W, H) mask, got shape {list(mask.shape)}.")
        output = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
        writer = PILWriter(output_dtype=np.uint8, scale=None)
        writer.set_data_array(mask.numpy().round().astype(np.uint8), channel_dim=0, squeeze_end_dims=True)
        writer.write(output, format="PNG")
        result = data.get(self.output_json_key)
        return output, result if isinstance(result, dict) else {}
