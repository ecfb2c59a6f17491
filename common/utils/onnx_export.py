# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
ONNX export of a bundle network with all of its inputs (image and text), checked against eager PyTorch with
onnxruntime.

MONAI's ``python -m monai.bundle onnx_export`` builds a single random image input (``inputs_ = [torch.rand(
input_shape_)]`` in ``monai/bundle/scripts.py``, overwriting any ``converter_kwargs["inputs"]``), so it cannot export
a network whose ``forward`` also takes the note. This module exports with every input listed in the bundle's
``metadata.json`` ``network_data_format.inputs`` (in that order, which is the ``forward`` argument order), with a
dynamic batch axis, then runs the ONNX graph with onnxruntime on fresh inputs of other batch sizes and compares
with the eager network (max absolute difference).

Two exporters are tried (``exporter="auto"``), the first whose graph onnxruntime runs within the tolerance wins:

- ``"torchscript"``: ``torch.onnx.export(..., dynamo=False)``, the TorchScript-trace-based exporter (fast);
- ``"dynamo"``: ``torch.onnx.export(..., dynamo=True)``, the ``torch.export``-based exporter (needs ``onnxscript``;
  slower, but it keeps dtypes the trace exporter loses, e.g. CausalCLIPSeg's ``torch.linspace`` coordinate maps).

Requires ``onnx``, ``onnxscript`` and ``onnxruntime`` (pinned in ``requirements.txt``); imported only when used.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["EXPORTERS", "OnnxExportError", "OnnxExportResult", "metadata_inputs", "onnx_max_abs_diff", "export_onnx"]

EXPORTERS = ("torchscript", "dynamo")
"""The exporters :func:`export_onnx` can use, in the order ``exporter="auto"`` tries them."""


class OnnxExportError(RuntimeError):
    """No exporter produced an ONNX graph that onnxruntime runs within the tolerance; ``reasons`` says why."""

    def __init__(self, message: str, reasons: Mapping[str, str]) -> None:
        super().__init__(message)
        self.reasons = dict(reasons)


@dataclass
class OnnxExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        filepath: the ONNX file.
        exporter: the exporter that produced it (one of :data:`EXPORTERS`).
        max_abs_diff: the largest absolute difference between onnxruntime and eager PyTorch over the check batches.
        failed: ``{exporter: reason}`` of the exporters tried before it.
    """

    filepath: str
    exporter: str
    max_abs_diff: float
    failed: dict = field(default_factory=dict)


def metadata_inputs(
    inputs_format: Mapping[str, Mapping],
    batch: int,
    image_size: int | Sequence[int] | None = None,
    num_tokens: int | None = None,
    high: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random network inputs described by a bundle's ``metadata.json`` ``network_data_format.inputs``.

    Args:
        inputs_format: ``{name: descriptor}`` in ``forward`` order; a descriptor gives ``num_channels``,
            ``spatial_shape``, ``dtype`` and ``value_range`` (MONAI bundle specification). ``"image"`` inputs get
            ``(batch, num_channels, *spatial)``; other inputs ``(batch, *spatial_shape)``.
        batch: batch size.
        image_size: the image's spatial size (one int for a square image, or a sequence) instead of the descriptor's
            ``spatial_shape`` (a bundle built at another ``image_size``).
        num_tokens: the length of every ``"format": "sequence"`` input instead of its ``spatial_shape`` (a bundle
            whose ``num_tokens`` differs from the metadata's).
        high: ``{name: upper bound}`` replacing ``value_range[1]`` of integer inputs (e.g. a smaller vocabulary).
        seed: seed of the generator, so that the same call gives the same tensors.

    Returns:
        ``{name: tensor}`` in the order of ``inputs_format``: floats uniform in ``value_range``, integers uniform in
        ``[value_range[0], value_range[1]]``.

    Raises:
        ValueError: when a descriptor lacks ``spatial_shape``, ``dtype`` or a two-value ``value_range`` (an integer
            input needs one; a float input without it is uniform in [0, 1)).
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, desc in inputs_format.items():
        for key in ("spatial_shape", "dtype"):
            if key not in desc:
                raise ValueError(f"network_data_format.inputs.{name}: key {key!r} missing.")
        dtype = getattr(torch, str(desc["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"network_data_format.inputs.{name}.dtype: unknown torch dtype {desc['dtype']!r}.")
        value_range = list(desc.get("value_range") or [])
        if name == "image":
            spatial = list(desc["spatial_shape"])
            if image_size is not None:
                spatial = [int(image_size)] * len(spatial) if isinstance(image_size, int) else list(image_size)
            shape = [batch, int(desc.get("num_channels", 1)), *[int(s) for s in spatial]]
        else:
            shape = [batch, *[int(s) for s in desc["spatial_shape"]]]
            if num_tokens is not None and desc.get("format") == "sequence":
                shape[1] = int(num_tokens)
        if dtype.is_floating_point:
            lo, hi = (float(value_range[0]), float(value_range[1])) if len(value_range) == 2 else (0.0, 1.0)
            out[name] = torch.rand(shape, generator=gen) * (hi - lo) + lo
            out[name] = out[name].to(dtype)
            continue
        if len(value_range) != 2:
            raise ValueError(f"network_data_format.inputs.{name}.value_range: [low, high] needed, got {value_range}.")
        lo, hi = int(value_range[0]), int((high or {}).get(name, value_range[1]))
        out[name] = torch.randint(lo, hi + 1, shape, generator=gen, dtype=dtype)
    return out


def onnx_max_abs_diff(filepath: str, net: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> float:
    """Max absolute difference between onnxruntime (CPU) running ``filepath`` and ``net(*inputs.values())``.

    Args:
        filepath: the ONNX file; its graph inputs are fed by name from ``inputs``.
        net: the eager network, in evaluation mode.
        inputs: ``{graph input name: tensor}`` in ``forward`` order.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(filepath), providers=["CPUExecutionProvider"])
    fed = {i.name: inputs[i.name].cpu().numpy() for i in session.get_inputs()}
    got = session.run(None, fed)[0]
    with torch.no_grad():
        ref = net(*inputs.values())
    if tuple(got.shape) != tuple(ref.shape):
        return float("inf")
    return float((torch.from_numpy(got) - ref.cpu()).abs().max())


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


def _describe(err: BaseException) -> str:
    """The exception's first line, and that of its root cause (torch.export wraps the failing operation)."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    return _first_line(err) + ("" if root is err else f" (caused by {_first_line(root)})")


def _export_one(net, inputs, filepath, exporter, opset, output_name, dynamic_batch):
    names = list(inputs)
    axes = {n: {0: "batch"} for n in [*names, output_name]} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings on every export
        torch.onnx.export(
            net,
            tuple(inputs.values()),
            str(filepath),
            input_names=names,
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=exporter == "dynamo",
        )


def export_onnx(
    net: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    filepath: str | Path,
    exporter: str = "auto",
    check_inputs: Sequence[Mapping[str, torch.Tensor]] = (),
    atol: float = 1e-4,
    opset: int = 18,
    output_name: str = "pred",
    dynamic_batch: bool = True,
) -> OnnxExportResult:
    """Export ``net`` with all of ``inputs`` to ONNX and check it with onnxruntime.

    Args:
        net: the network; put in evaluation mode here.
        inputs: ``{name: example tensor}`` in ``forward`` order (:func:`metadata_inputs`); the names become the
            graph's input names.
        filepath: the ONNX file to write (its folder is created).
        exporter: ``"auto"`` (try :data:`EXPORTERS` in order), ``"torchscript"`` or ``"dynamo"``.
        check_inputs: further input dictionaries the exported graph must reproduce too (e.g. other batch sizes,
            which checks the dynamic batch axis); ``inputs`` itself is always checked.
        atol: the largest accepted max absolute difference to eager PyTorch (1e-4 for fp32).
        opset: ONNX opset version.
        output_name: the graph's output name (the metadata's first output, ``"pred"``).
        dynamic_batch: export the batch axis of every input and of the output as dynamic.

    Returns:
        an :class:`OnnxExportResult`.

    Raises:
        ValueError: for an unknown ``exporter``.
        OnnxExportError: when no exporter gives a graph that onnxruntime runs within ``atol``; ``reasons`` holds
            each exporter's failure (its exception, or the difference it reached).
    """
    if exporter != "auto" and exporter not in EXPORTERS:
        raise ValueError(f"exporter must be 'auto' or one of {list(EXPORTERS)}, got {exporter!r}.")
    filepath = Path(filepath)
    filepath.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    reasons: dict[str, str] = {}
    for name in EXPORTERS if exporter == "auto" else (exporter,):
        try:
            _export_one(net, inputs, filepath, name, opset, output_name, dynamic_batch)
            diff = max(onnx_max_abs_diff(str(filepath), net, x) for x in [inputs, *check_inputs])
        except Exception as err:  # any exporter or onnxruntime failure: record it and try the next exporter
            reasons[name] = _describe(err)
            continue
        if diff <= atol:
            return OnnxExportResult(str(filepath), name, diff, reasons)
        reasons[name] = f"onnxruntime output differs from PyTorch by {diff:.3g} (> atol {atol:g})"
    if filepath.exists():
        filepath.unlink()  # never leave a graph behind that failed its check
    detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    raise OnnxExportError(f"ONNX export of {type(net).__name__} failed ({detail}).", reasons)
