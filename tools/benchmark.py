# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Benchmark bundles: parameters used in forward, inference latency, training-step time, peak memory, the share of
a training iteration spent waiting for data, and the data pipeline's memory and epoch time alone.

Run from the repository root (nothing needs installing; the repository root is put on ``sys.path``)::

    python tools/benchmark.py bundles/unet_baseline
    python tools/benchmark.py --all --device cpu --batch_sizes 1 8 --data_wait    # one table of every bundle
    python tools/benchmark.py bundles/lvit bundles/biclip --data_wait --table out/two.md
    python tools/benchmark.py bundles/lvit --pipeline_epochs 2 --batch_sizes 8 \
        --override dataset_dir=/data/QaTa-COV19 --override synthetic=None --override cache_mode=disk   # "Scale"
    python tools/benchmark.py bundles/unet_baseline --device all --amp --batch_sizes 1 8 --repeats 20 --warmup 3
    python tools/benchmark.py bundles/x --image_size 224 --input_shape text=77 --out out/x.json
    python tools/benchmark.py bundles/c2seg --network_config pretrain.json --train_config pretrain.json \
        --override clip_pretrained=False   # a second training stage (C2Seg stage I)

What is measured (same procedure for every bundle, so the numbers are comparable):

- The network is ``network_def`` of ``BUNDLE/configs/inference.json`` (parsed with ``monai.bundle.ConfigParser``,
  ``bundle_root`` set to BUNDLE), randomly initialised: no checkpoint is loaded. ``--network_config`` and
  ``--train_config`` name other config files of the bundle (e.g. the ``pretrain.json`` of a two-stage bundle) and
  ``--override KEY=VALUE`` sets keys in both (values read as Python literals, else kept as strings).
- Inputs are built from ``BUNDLE/configs/metadata.json`` ``network_data_format.inputs`` in their order, which is the
  forward call order (project contract, "Bundle contract"); see :func:`build_inputs` for the shape/value rules.
- Parameters: :func:`common.utils.count_forward_parameters` in eval mode and in training mode (batch of 2), next to
  the registered and trainable totals.
- Inference: ``network.eval()``, ``torch.inference_mode()``, one forward call per timed repeat.
- Training step: ``network.train()``, ``zero_grad`` + forward + loss + backward + optimizer step. Loss and optimizer
  are ``loss`` and ``optimizer`` of ``BUNDLE/configs/train.json`` parsed with ``network``/``network_def`` replaced
  by the benchmarked network and ``device`` by the benchmark device; when absent or unusable, ``BCEWithLogitsLoss``
  + ``Adam(lr=1e-4)``, and the output says so and why. The label is a random binary mask shaped
  ``(B, 1, *output spatial shape)`` (the layout the bundles' data pipelines produce).
- AMP (``--amp``, CUDA only): ``torch.autocast`` with ``--amp_dtype``; float16 training uses ``torch.amp.GradScaler``.
- Timing: :func:`common.utils.measure_latency` (median and p90 of ``--repeats`` calls after ``--warmup`` calls,
  CUDA synchronised). Peak memory: :func:`common.utils.track_peak_memory` (CPU: process peak RSS; CUDA:
  ``max_memory_allocated``).
- Data wait (``--data_wait``): the bundle's real training, i.e. ``train#trainer`` of ``train.json`` with its own
  ``DataLoader``, transforms, ``cache_mode``, ``num_workers``, ``prepare_batch``, loss and iteration handlers, at each
  batch size and precision (AMP through the bundle's ``amp`` key, i.e. MONAI's float16 autocast and scaler, so
  ``--amp_dtype`` does not apply), for ``--warmup`` + ``--data_wait_iters`` iterations: the share of the iteration
  time spent in ``next(loader)`` (:class:`common.handlers.DataWaitHandler`; :func:`measure_data_wait`). Validation,
  the pre-flight and the progress bar are off, CLIP weights are not downloaded (``clip_pretrained=False``); the data
  is the bundle's own (``--override dataset_dir=...`` for another set, ``--override num_workers=0`` on a busy CPU).
  ``--data_wait_only`` skips the bare-network timing.
- Several bundles (named, or ``--all``): one JSON per bundle and one Markdown table of all
  (:func:`format_summary_markdown`, ``--table``).
- Pipeline only (``--pipeline_epochs N``): no network; ``N`` passes over ``train#dataloader``, the time to build the
  dataset (a memory cache is filled there), each pass's time, the process's peak RSS, the largest DataLoader
  worker's peak RSS and the files of a ``cache_mode: disk`` cache (:func:`measure_pipeline`).

Bad input (a folder that is not a bundle, a malformed ``--override``) ends with a message naming it and status 1.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime
import gc
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from common.utils import count_forward_parameters, measure_latency, track_peak_memory  # noqa: E402

__all__ = [
    "build_inputs",
    "parse_dtype",
    "load_network",
    "make_train_components",
    "run_benchmark",
    "format_markdown",
    "format_summary_markdown",
    "format_pipeline_markdown",
    "measure_data_wait",
    "measure_pipeline",
    "parse_train_config",
    "main",
]

DEFAULT_TEXT = "Bilateral pulmonary infection, two infected areas, middle left lung and upper right lung."

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "long": torch.int64,
    "int32": torch.int32,
    "int": torch.int32,
    "int16": torch.int16,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "bool": torch.bool,
}


def parse_dtype(name: str, where: str = "dtype") -> torch.dtype:
    """Map a metadata ``dtype`` string (``"float32"``, ``"torch.int64"``, ``"long"``, ...) to a ``torch.dtype``.

    Args:
        name: the dtype string; a leading ``torch.`` or ``np.``/``numpy.`` is ignored, case-insensitive.
        where: where the string came from, used in the error message.

    Raises:
        ValueError: when the name is not one of the known dtypes.
    """
    key = str(name).strip().lower()
    for prefix in ("torch.", "numpy.", "np."):
        key = key[len(prefix) :] if key.startswith(prefix) else key
    if key not in _DTYPES:
        raise ValueError(f"{where}: unknown dtype {name!r}; expected one of {sorted(_DTYPES)}.")
    return _DTYPES[key]


def _resolve_dims(dims: Sequence[Any], where: str) -> list[int]:
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(
                f"{where}: spatial_shape entry {d!r} is not a positive integer; pass --image_size (image) or "
                "--input_shape NAME=D1,D2,... (other inputs)."
            )
        out.append(d)
    return out


def build_inputs(
    inputs_desc: dict[str, Any],
    batch_size: int,
    image_size: int | None = None,
    input_shapes: dict[str, Sequence[int]] | None = None,
    generator: torch.Generator | None = None,
    where: str = "metadata.json network_data_format.inputs",
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Build random forward inputs from ``network_data_format.inputs``, in the order the descriptors are listed.

    Shape rules (``B`` = ``batch_size``, ``C`` = ``num_channels``, ``S`` = ``spatial_shape``):

    - first input (the image, MONAI channel-first as in ``monai.bundle.verify_net_in_out``): ``(B, C, *S)`` with every
      spatial size replaced by ``image_size`` when given;
    - any further tensor input: ``--input_shape`` (``input_shapes[name]``, the per-sample shape) when given;
      otherwise a 1-D ``S = [N]`` (a token sequence or a sequence of embeddings, MONAI spec format ``sequence``)
      gives ``(B, N)`` when ``C == 1`` and ``(B, N, C)`` otherwise (the layout of tokenizers and text encoders);
      ``S = []`` gives ``(B,)`` or ``(B, C)``; any other ``S`` gives ``(B, C, *S)``.

    Values: floating dtypes are uniform in ``value_range`` (``[0, 1)`` without a usable range), integer dtypes are
    uniform integers in the inclusive ``value_range`` (required: e.g. token ids must stay inside the vocabulary),
    ``bool`` is random. A descriptor that is not a dict (a primitive, MONAI spec ``argument``) is passed as is; a
    descriptor with ``"type": "string"`` becomes a list of ``B`` copies of a sample clinical sentence.

    Args:
        inputs_desc: the ``inputs`` dict of ``network_data_format`` (insertion order = forward argument order).
        batch_size: ``B``, >= 1.
        image_size: replaces each spatial size of the first input; ``None`` (default) keeps the metadata shape.
        input_shapes: per-sample shapes (without batch) by input name; overrides the rules above. Default ``None``.
        generator: random generator for reproducible inputs; default ``None`` (global RNG).
        where: name of the source used in error messages.

    Returns:
        ``(values, descriptions)``: the forward arguments (CPU tensors) and, per input, ``{"name", "shape", "dtype",
        "value_range"}`` as used.

    Raises:
        ValueError: no inputs, non-integer spatial sizes without an override, an unknown dtype, or an integer input
            without a two-number ``value_range``.
    """
    if not isinstance(inputs_desc, dict) or not inputs_desc:
        raise ValueError(f"{where}: expected a non-empty dict of input descriptors, got {inputs_desc!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    input_shapes = input_shapes or {}
    values: list[Any] = []
    described: list[dict[str, Any]] = []
    for index, (name, desc) in enumerate(inputs_desc.items()):
        here = f"{where}#{name}"
        if not isinstance(desc, dict):
            values.append(desc)
            described.append({"name": name, "shape": None, "dtype": type(desc).__name__, "value_range": None})
            continue
        if str(desc.get("type", "tensor")).lower() == "string":
            values.append([DEFAULT_TEXT] * batch_size)
            described.append({"name": name, "shape": [batch_size], "dtype": "str", "value_range": None})
            continue
        for key in ("num_channels", "spatial_shape", "dtype"):
            if key not in desc:
                raise ValueError(f"{here}: missing key {key!r}.")
        dtype = parse_dtype(desc["dtype"], f"{here}#dtype")
        channels = int(desc["num_channels"])
        spatial = list(desc["spatial_shape"])
        if name in input_shapes:
            shape = [batch_size, *[int(d) for d in input_shapes[name]]]
        elif index == 0:
            dims = [image_size] * len(spatial) if image_size is not None else _resolve_dims(spatial, here)
            shape = [batch_size, channels, *dims]
        elif len(spatial) == 1:
            dims = _resolve_dims(spatial, here)
            shape = [batch_size, dims[0]] if channels == 1 else [batch_size, dims[0], channels]
        elif len(spatial) == 0:
            shape = [batch_size] if channels == 1 else [batch_size, channels]
        else:
            shape = [batch_size, channels, *_resolve_dims(spatial, here)]
        value_range = desc.get("value_range")
        has_range = (
            isinstance(value_range, (list, tuple))
            and len(value_range) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
            and value_range[0] <= value_range[1]
        )
        if dtype == torch.bool:
            tensor = torch.rand(shape, generator=generator) < 0.5
        elif dtype.is_floating_point:
            tensor = torch.rand(shape, generator=generator)
            if has_range:
                lo, hi = float(value_range[0]), float(value_range[1])
                tensor = tensor * (hi - lo) + lo
            tensor = tensor.to(dtype)
        else:
            if not has_range:
                raise ValueError(f"{here}: integer input needs value_range [low, high], got {value_range!r}.")
            lo, hi = int(value_range[0]), int(value_range[1])
            tensor = torch.randint(lo, hi + 1, shape, generator=generator, dtype=dtype)
        values.append(tensor)
        described.append(
            {"name": name, "shape": shape, "dtype": str(dtype).replace("torch.", ""), "value_range": value_range}
        )
    return values, described


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e}).") from e


def load_network(
    bundle_root: Path, config_name: str = "inference.json", overrides: dict[str, Any] | None = None
) -> torch.nn.Module:
    """Instantiate ``network_def`` of ``<bundle_root>/configs/<config_name>`` with ``bundle_root`` overridden.

    Args:
        bundle_root: the bundle folder.
        config_name: the config file under ``configs/``. Defaults to ``"inference.json"``.
        overrides: further ``{key: value}`` set in the config before parsing. Defaults to ``None``.

    Raises:
        FileNotFoundError: the config file is missing.
        ValueError: the config has no ``network_def`` or it is not a ``torch.nn.Module``.
    """
    from monai.bundle import ConfigParser

    config_file = bundle_root / "configs" / config_name
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found.")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    if "network_def" not in parser:
        raise ValueError(f"{config_file}: no 'network_def' key.")
    parser["bundle_root"] = str(bundle_root)
    for key, value in (overrides or {}).items():
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    if not isinstance(net, torch.nn.Module):
        raise ValueError(f"{config_file}: 'network_def' is a {type(net).__name__}, not a torch.nn.Module.")
    return net


def _first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300]


def _primary_output(out: Any) -> torch.Tensor:
    """The segmentation logits of a forward output: the tensor itself, the first of a list/tuple, ``pred`` of a dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out:
        return _primary_output(out[0])
    if isinstance(out, dict) and out:
        return _primary_output(out["pred"] if "pred" in out else next(iter(out.values())))
    raise ValueError(f"cannot find an output tensor in a forward result of type {type(out).__name__}.")


class _FallbackLoss(torch.nn.Module):
    """``BCEWithLogitsLoss`` on the primary output; the label is broadcast to one-hot when the output has C > 1."""

    def __init__(self) -> None:
        super().__init__()
        self.bce = torch.nn.BCEWithLogitsLoss()

    def forward(self, out: Any, label: torch.Tensor) -> torch.Tensor:
        logits = _primary_output(out)
        if logits.shape[1] > 1:
            label = torch.cat([1 - label, label] + [torch.zeros_like(label)] * (logits.shape[1] - 2), dim=1)
        return self.bce(logits.float(), label.float())


def make_train_components(
    bundle_root: Path,
    network: torch.nn.Module,
    device: torch.device,
    config_name: str = "train.json",
    overrides: dict[str, Any] | None = None,
) -> tuple[Callable, torch.optim.Optimizer, dict[str, str]]:
    """Loss and optimizer from ``train.json`` (``network``/``network_def``/``device`` substituted), else fallbacks.

    ``config_name`` names another config file under ``configs/`` (default ``"train.json"``); ``overrides`` are
    further keys set before parsing (default ``None``).

    Returns:
        ``(loss_fn, optimizer, info)`` where ``info`` has ``loss``, ``loss_source``, ``optimizer``,
        ``optimizer_source`` and, when a fallback was used, ``*_fallback_reason``.
    """
    info: dict[str, str] = {}
    loss_fn: Any = None
    optimizer: Any = None
    config_file = bundle_root / "configs" / config_name
    parser = None
    if config_file.is_file():
        try:
            from monai.bundle import ConfigParser

            parser = ConfigParser()
            parser.read_config(str(config_file))
            parser["bundle_root"] = str(bundle_root)
            parser["network"] = network
            parser["network_def"] = network
            parser["device"] = device
            for key, value in (overrides or {}).items():
                parser[key] = value
        except Exception as e:  # noqa: BLE001 - any parse problem means: use the fallback, and say why
            parser = None
            info["loss_fallback_reason"] = info["optimizer_fallback_reason"] = f"{config_file}: {_first_line(e)}"
    else:
        info["loss_fallback_reason"] = info["optimizer_fallback_reason"] = f"{config_file} not found"
    for key in ("loss", "optimizer"):
        if parser is None:
            continue
        if key not in parser:
            info[f"{key}_fallback_reason"] = f"{config_file}: no {key!r} key"
            continue
        try:
            obj = parser.get_parsed_content(key)
        except Exception as e:  # noqa: BLE001
            info[f"{key}_fallback_reason"] = f"{config_file}#{key}: {_first_line(e)}"
            continue
        if key == "loss":
            if callable(obj):
                loss_fn = obj
            else:
                info["loss_fallback_reason"] = f"{config_file}#loss is a {type(obj).__name__}, not callable"
        elif isinstance(obj, torch.optim.Optimizer):
            optimizer = obj
        else:
            info["optimizer_fallback_reason"] = f"{config_file}#optimizer is a {type(obj).__name__}, not an optimizer"
    if loss_fn is None:
        loss_fn = _FallbackLoss()
        info.update(loss="BCEWithLogitsLoss", loss_source="fallback")
    else:
        info.update(loss=type(loss_fn).__name__, loss_source=f"{config_name}#loss")
    if optimizer is None:
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
        info.update(optimizer="Adam(lr=1e-4)", optimizer_source="fallback")
    else:
        info.update(optimizer=type(optimizer).__name__, optimizer_source=f"{config_name}#optimizer")
    return loss_fn, optimizer, info


def _make_label(out: Any, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    logits = _primary_output(out)
    return (torch.rand((batch_size, 1, *logits.shape[2:]), generator=generator) > 0.5).float()


def _probe_train(
    bundle_root: Path, network: torch.nn.Module, values: list[Any], config_name: str = "train.json", overrides=None
) -> tuple[dict[str, str], torch.Tensor]:
    """Run one CPU training step with the train.json loss/optimizer; replace what fails by the fallbacks."""
    loss_fn, optimizer, info = make_train_components(bundle_root, network, torch.device("cpu"), config_name, overrides)
    network.train()
    out = network(*values)
    label = _make_label(out, _batch_of(values))
    if info["loss_source"] != "fallback":
        try:
            loss = loss_fn(out, label)
            if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
                raise ValueError(f"loss returned {type(loss).__name__} of shape {getattr(loss, 'shape', None)}")
            loss.backward()
            optimizer.step()
        except Exception as e:  # noqa: BLE001
            info.update(
                loss="BCEWithLogitsLoss",
                loss_source="fallback",
                loss_fallback_reason=f"train.json#loss failed on (output, label {list(label.shape)}): {_first_line(e)}",
            )
    network.zero_grad(set_to_none=True)
    return info, label


def _batch_of(values: list[Any]) -> int:
    first = values[0]
    return int(first.shape[0]) if isinstance(first, torch.Tensor) else len(first)


def _to_device(values: list[Any], device: torch.device) -> list[Any]:
    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def _time_inference(
    network: torch.nn.Module, values: list[Any], device: torch.device, amp_dtype: torch.dtype | None, args: Any
) -> dict[str, Any]:
    network.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    def forward() -> None:
        with torch.inference_mode(), autocast:
            network(*values)

    with track_peak_memory(device) as mem:
        timing = measure_latency(forward, warmup=args.warmup, repeats=args.repeats, device=device)
    return {**timing, "peak_memory": mem}


def _time_train_step(
    bundle_root: Path,
    network: torch.nn.Module,
    values: list[Any],
    label: torch.Tensor,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    use_fallback_loss: bool,
    args: Any,
) -> dict[str, Any]:
    loss_fn, optimizer, _ = make_train_components(bundle_root, network, device, args.train_config, args.overrides)
    if use_fallback_loss:
        loss_fn = _FallbackLoss()
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    network.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext():
            loss = loss_fn(network(*values), label)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    with track_peak_memory(device) as mem:
        timing = measure_latency(step, warmup=args.warmup, repeats=args.repeats, device=device)
    result = {**timing, "peak_memory": mem}
    return result


def _environment(threads: int) -> dict[str, Any]:
    import monai

    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "requested_threads": threads,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        env.update(
            gpu_name=torch.cuda.get_device_name(0), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
    return env


_DATA_WAIT_SETTINGS = {"progress_bar": False, "preflight": False, "resume": False, "val_interval": 10**9}
"""Keys set in ``train.json`` for the data-wait and pipeline measurements (no validation, no pre-flight, no bar)."""


def parse_train_config(
    bundle_root: Path,
    output_dir: Path,
    config_name: str = "train.json",
    settings: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
):
    """
    ``BUNDLE/configs/<config_name>`` as a ``monai.bundle.ConfigParser`` set up for a measurement run.

    Set, in this order: ``bundle_root``; ``output_dir`` (checkpoints, logs and a ``cache_mode: disk`` cache go
    there); :data:`_DATA_WAIT_SETTINGS`; ``clip_pretrained=False`` where the config has that key (random weights,
    as for the network timing: no download); ``settings``; then ``overrides`` (the user's ``--override``, applied
    last so that they win).

    Args:
        bundle_root: the bundle folder.
        output_dir: a scratch folder for what the run writes.
        config_name: the training config under ``configs/``; default ``"train.json"``.
        settings: keys the measurement sets (``device``, ``batch_size``, ``amp``, ``image_size``); default ``None``.
        overrides: the user's ``--override`` keys; default ``None``.

    Raises:
        FileNotFoundError: the config file is missing.
    """
    from monai.bundle import ConfigParser

    config_file = bundle_root / "configs" / config_name
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found.")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(bundle_root)
    parser["output_dir"] = str(output_dir)
    for key, value in _DATA_WAIT_SETTINGS.items():
        parser[key] = value
    if "clip_pretrained" in parser:
        parser["clip_pretrained"] = False
    for key, value in {**(settings or {}), **(overrides or {})}.items():
        parser[key] = value
    return parser


def _loader_settings(parser) -> dict[str, Any]:
    out = {}
    for key in ("cache_mode", "num_workers", "batch_size"):
        try:
            out[key] = parser.get_parsed_content(key)
        except Exception:  # noqa: BLE001 - an older bundle without the key
            out[key] = None
    return out


def measure_data_wait(
    bundle_root: Path,
    device: torch.device,
    batch_size: int,
    amp: bool,
    args: Any,
) -> dict[str, Any]:
    """
    The share of a training iteration spent waiting for data, on the bundle's own training pipeline.

    ``train#trainer`` of the training config (its ``DataLoader`` with the bundle's transforms, ``cache_mode``,
    ``num_workers``; its ``prepare_batch``, loss, optimizer and iteration handlers) is built with
    :func:`parse_train_config` (``batch_size``, ``device``, ``amp`` and ``image_size`` set, the ``initialize``
    steps run) and trained for ``--warmup`` + ``--data_wait_iters`` iterations, timed by
    :class:`common.handlers.DataWaitHandler`. Building the trainer (including filling a memory cache) is timed
    separately as ``prepare_s``.

    Args:
        bundle_root: the bundle folder.
        device: the training device.
        batch_size: the training batch size.
        amp: train with the bundle's ``amp`` switch on.
        args: the parsed command line (``train_config``, ``image_size``, ``warmup``, ``data_wait_iters``,
            ``overrides``).

    Returns:
        the :meth:`common.handlers.DataWaitHandler.summary` plus ``prepare_s``, ``peak_memory``, ``cache_mode``,
        ``num_workers`` and ``batch_size`` as run.
    """
    import tempfile
    import time

    from common.handlers import DataWaitHandler

    settings: dict[str, Any] = {"device": device, "batch_size": batch_size, "amp": bool(amp)}
    if args.image_size is not None:
        settings["image_size"] = args.image_size
    with tempfile.TemporaryDirectory(prefix="data_wait_") as scratch:
        parser = parse_train_config(bundle_root, Path(scratch), args.train_config, settings, args.overrides)
        with track_peak_memory(device) as mem:
            start = time.perf_counter()
            if "initialize" in parser:
                parser.get_parsed_content("initialize")
            trainer = parser.get_parsed_content("train#trainer")
            prepare_s = time.perf_counter() - start
            timer = DataWaitHandler(warmup=args.warmup, iterations=args.data_wait_iters, device=device)
            timer.attach(trainer)
            epoch_length = max(1, len(trainer.data_loader))
            trainer.state.max_epochs = (args.warmup + args.data_wait_iters) // epoch_length + 2
            trainer.run()
        result = {**timer.summary(), "prepare_s": prepare_s, "peak_memory": mem, **_loader_settings(parser)}
        del trainer, parser
        _release(device)
    return result


def measure_pipeline(args: argparse.Namespace, bundle_root: Path) -> dict[str, Any]:
    """
    Memory and epoch time of a bundle's training data pipeline alone (no network): ``--pipeline_epochs`` passes
    over ``train#dataloader`` of the training config (see :func:`parse_train_config`; ``--override`` sets
    ``cache_mode``, ``dataset_dir``, ``num_workers``, ...).

    Returns:
        ``{"bundle", "settings", "items", "prepare_s" (building the dataset: a memory cache is filled here),
        "epoch_s" (one value per pass), "peak_rss_mib" (this process), "children_peak_rss_mib" (the largest
        DataLoader worker, ``ru_maxrss`` of the waited-for children; ``None`` with ``num_workers`` 0),
        "cache_files", "cache_mib"}``.
    """
    import resource
    import tempfile
    import time

    settings: dict[str, Any] = {"device": torch.device("cpu")}
    if args.image_size is not None:
        settings["image_size"] = args.image_size
    if args.batch_sizes:
        settings["batch_size"] = args.batch_sizes[0]
    with tempfile.TemporaryDirectory(prefix="pipeline_") as scratch:
        parser = parse_train_config(bundle_root, Path(scratch), args.train_config, settings, args.overrides)
        with track_peak_memory("cpu") as mem:
            start = time.perf_counter()
            loader = parser.get_parsed_content("train#dataloader")
            prepare_s = time.perf_counter() - start
            epochs = []
            for _ in range(args.pipeline_epochs):
                start = time.perf_counter()
                for _batch in loader:
                    pass
                epochs.append(time.perf_counter() - start)
        cache_dir = Path(str(parser.get_parsed_content("cache_dir"))) if "cache_dir" in parser else None
        files = [p for p in cache_dir.rglob("*") if p.is_file()] if cache_dir and cache_dir.is_dir() else []
        items = len(loader.dataset)
        loader_settings = _loader_settings(parser)
        del loader, parser
        gc.collect()
        cache_mib = sum(p.stat().st_size for p in files) / 2**20
    # ru_maxrss of the waited-for children (KiB on Linux): the DataLoader workers, when there are any
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if loader_settings["num_workers"] else None
    return {
        "bundle": bundle_root.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": {**loader_settings, "overrides": args.overrides, "image_size": args.image_size},
        "items": items,
        "prepare_s": prepare_s,
        "epoch_s": epochs,
        "peak_rss_mib": mem["peak_mib"],
        "children_peak_rss_mib": children,
        "cache_files": len(files),
        "cache_mib": cache_mib,
    }


def _fmt_optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_pipeline_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """One Markdown table row per :func:`measure_pipeline` report."""
    lines = [
        "| bundle | items | cache_mode | num_workers | batch | prepare s | epoch s (each pass) | peak RSS MiB "
        "| worker peak RSS MiB | cache files (MiB) |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in reports:
        s = r["settings"]
        epochs = ", ".join(f"{e:.1f}" for e in r["epoch_s"])
        lines.append(
            f"| {r['bundle']} | {r['items']} | {s['cache_mode']} | {s['num_workers']} | {s['batch_size']} "
            f"| {r['prepare_s']:.1f} | {epochs} | {r['peak_rss_mib']:.0f} | {_fmt_optional(r['children_peak_rss_mib'])} "
            f"| {r['cache_files']} ({r['cache_mib']:.0f}) |"
        )
    return "\n".join(lines) + "\n"


def _parse_overrides(items: Sequence[str] | None, flag: str = "--override") -> dict[str, Any]:
    """``KEY=VALUE`` items of the option ``flag`` as a dict (values read as Python literals, else kept as strings);
    ``tools/speed_compare.py`` uses it for its three override options."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE.")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return overrides


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark described by the parsed command line; return the JSON-ready report."""
    bundle_root = Path(args.bundle).resolve()
    if not (bundle_root / "configs").is_dir():
        raise FileNotFoundError(f"{bundle_root}: not a bundle (no configs/ folder).")
    if str(bundle_root) not in sys.path:
        sys.path.insert(1, str(bundle_root))  # bundle-local `scripts` package, as monai.bundle run does
    meta_file = bundle_root / "configs" / "metadata.json"
    meta = _load_json(meta_file)
    inputs_desc = meta.get("network_data_format", {}).get("inputs")
    if not inputs_desc:
        raise ValueError(f"{meta_file}: missing network_data_format.inputs.")
    input_shapes = {}
    for item in args.input_shape or []:
        name, _, dims = item.partition("=")
        try:
            input_shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError as e:
            raise ValueError(f"--input_shape {item!r}: expected NAME=D1,D2,... with integers.") from e
        if name not in inputs_desc:
            raise ValueError(f"--input_shape {item!r}: {meta_file} has no input {name!r} (has {list(inputs_desc)}).")
    where = f"{meta_file} network_data_format.inputs"

    if args.device == "all":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False.")
    else:
        devices = [args.device]
    amp_dtype = parse_dtype(args.amp_dtype, "--amp_dtype")

    overrides = _parse_overrides(args.override)
    args.overrides = overrides
    torch.manual_seed(args.seed)
    base = load_network(bundle_root, args.network_config, overrides)
    gen = torch.Generator().manual_seed(args.seed)
    count_values, _ = build_inputs(inputs_desc, 2, args.image_size, input_shapes, gen, where)
    counts_eval = count_forward_parameters(base, *count_values, training=False)
    counts_train = count_forward_parameters(base, *count_values, training=True)
    if args.data_wait_only:
        skipped = "not run (--data_wait_only: the data-wait rows train with train.json's own loss and optimizer)"
        train_info = {"loss": "-", "loss_source": skipped, "optimizer": "-", "optimizer_source": skipped}
    else:
        train_info, _ = _probe_train(bundle_root, base, count_values, args.train_config, overrides)
    use_fallback_loss = train_info["loss_source"] == "fallback"

    results: list[dict[str, Any]] = []
    input_description: list[dict[str, Any]] = []
    for dev_name in devices:
        device = torch.device(dev_name)
        precisions: list[torch.dtype | None] = [None] + ([amp_dtype] if args.amp and device.type == "cuda" else [])
        for precision in precisions:
            label_precision = "fp32" if precision is None else f"amp-{str(precision).replace('torch.', '')}"
            for batch_size in args.batch_sizes:
                row: dict[str, Any] = {"device": dev_name, "precision": label_precision, "batch_size": batch_size}
                values, input_description = build_inputs(
                    inputs_desc, batch_size, args.image_size, input_shapes, gen, where
                )
                values = _to_device(values, device)
                network = copy.deepcopy(base).to(device)
                for phase in () if args.data_wait_only else ("inference", "train_step"):
                    try:
                        if phase == "inference":
                            row[phase] = _time_inference(network, values, device, precision, args)
                        else:
                            network.train()
                            with torch.no_grad():
                                label = _make_label(network(*values), batch_size, gen).to(device)
                            row[phase] = _time_train_step(
                                bundle_root, network, values, label, device, precision, use_fallback_loss, args
                            )
                    except (torch.OutOfMemoryError, RuntimeError) as e:
                        if not _is_oom(e):
                            raise
                        row[phase] = {"error": "out of memory"}
                    _release(device)
                del network, values
                _release(device)
                if args.data_wait:
                    try:
                        row["data_wait"] = measure_data_wait(
                            bundle_root, device, batch_size, precision is not None, args
                        )
                    except (torch.OutOfMemoryError, RuntimeError) as e:
                        if not _is_oom(e):
                            raise
                        row["data_wait"] = {"error": "out of memory"}
                    _release(device)
                results.append(row)
                print(_row_summary(row), flush=True)

    return {
        "bundle": bundle_root.name,
        "bundle_root": str(bundle_root),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "environment": _environment(args.threads),
        "settings": {
            "devices": devices,
            "image_size": args.image_size,
            "batch_sizes": list(args.batch_sizes),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "amp": bool(args.amp),
            "amp_dtype": str(amp_dtype).replace("torch.", ""),
            "seed": args.seed,
            "network_config": args.network_config,
            "train_config": args.train_config,
            "overrides": args.overrides,
            "data_wait": bool(args.data_wait),
            "data_wait_iters": args.data_wait_iters if args.data_wait else None,
        },
        "inputs": [{**d, "shape": ["B", *d["shape"][1:]] if d["shape"] else None} for d in input_description],
        "parameters": {
            "forward_eval": counts_eval["forward"],
            "forward_train": counts_train["forward"],
            "registered": counts_eval["registered"],
            "trainable": counts_eval["trainable"],
            "unused_eval": counts_eval["unused"],
            "unused_train": counts_train["unused"],
            "unused_modules_eval": counts_eval["unused_modules"],
            "unused_modules_train": counts_train["unused_modules"],
        },
        "training_setup": train_info,
        "memory_note": (
            "CPU: peak resident set size of the whole benchmark process while the block ran (includes interpreter "
            "and libraries; increase = peak minus RSS at block start). CUDA: torch.cuda.max_memory_allocated "
            "(live tensors incl. weights; increase = peak minus allocated at block start)."
        ),
        "results": results,
    }


def _fmt_ms(block: dict[str, Any] | None, key: str) -> str:
    if not block:
        return "-"
    if "error" in block:
        return block["error"]
    return f"{block[key]:.1f}"


def _fmt_mem(block: dict[str, Any] | None) -> str:
    if not block or "error" in block:
        return "-"
    mem = block["peak_memory"]
    return f"{mem['peak_mib']:.0f} (+{mem['increase_mib']:.0f})"


def _row_summary(row: dict[str, Any]) -> str:
    inf, trn = row.get("inference", {}), row.get("train_step", {})
    text = (
        f"[benchmark] {row['device']} {row['precision']} B={row['batch_size']}: "
        f"inference {_fmt_ms(inf, 'median_ms')} ms, train step {_fmt_ms(trn, 'median_ms')} ms"
    )
    if "data_wait" in row:
        text += f", data wait {_fmt_share(row['data_wait'])} of {_fmt_ms(row['data_wait'], 'iteration_median_ms')} ms"
    return text


def _fmt_share(block: dict[str, Any] | None) -> str:
    if not block:
        return "-"
    if "error" in block:
        return block["error"]
    share = block.get("data_wait_share")
    return "-" if share is None else f"{100 * share:.1f} %"


def format_markdown(report: dict[str, Any]) -> str:
    """Render the report as Markdown: a header list and one table row per device / precision / batch size."""
    p, env, ts = report["parameters"], report["environment"], report["training_setup"]
    wait = bool(report["settings"].get("data_wait"))

    def loss_line(key: str) -> str:
        reason = ts.get(f"{key}_fallback_reason")
        return f"{ts[key]} ({ts[f'{key}_source']}{'; ' + reason if reason else ''})"

    unused = ", ".join(f"{m['name']} ({m['parameters']:,})" for m in p["unused_modules_eval"][:5]) or "none"
    inputs = "; ".join(f"{d['name']}: {d['dtype']} {d['shape']}" for d in report["inputs"])
    lines = [
        f"## Benchmark: {report['bundle']}",
        "",
        f"- parameters used in forward: {p['forward_eval']:,} (eval), {p['forward_train']:,} (train); "
        f"registered {p['registered']:,}; trainable {p['trainable']:,}",
        f"- modules built but unused in eval forward: {unused}",
        f"- inputs: {inputs}",
        f"- loss: {loss_line('loss')}; optimizer: {loss_line('optimizer')}",
        f"- timing: median of {report['settings']['repeats']} runs after {report['settings']['warmup']} warm-up; "
        f"CPU threads {env['torch_threads']} (interop {env['torch_interop_threads']}); {env['cpu_model']}"
        + (f"; GPU {env['gpu_name']}" if env.get("gpu_name") else ""),
        f"- torch {env['torch']}, MONAI {env['monai']}, Python {env['python']}",
        "- peak memory MiB (increase over the start of the measured block in brackets): CPU = process peak RSS, "
        "CUDA = max_memory_allocated",
        "",
        "| device | precision | batch | inference median ms | inference p90 ms | images/s | inference peak MiB "
        "| train step median ms | train step p90 ms | train peak MiB |" + (_DATA_WAIT_HEADER if wait else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---|" if wait else ""),
    ]
    for r in report["results"]:
        inf, trn = r.get("inference"), r.get("train_step")
        ips = f"{r['batch_size'] / inf['median_ms'] * 1000:.1f}" if inf and "median_ms" in inf else "-"
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['batch_size']} | {_fmt_ms(inf, 'median_ms')} "
            f"| {_fmt_ms(inf, 'p90_ms')} | {ips} | {_fmt_mem(inf)} | {_fmt_ms(trn, 'median_ms')} "
            f"| {_fmt_ms(trn, 'p90_ms')} | {_fmt_mem(trn)} |" + (_data_wait_cells(r.get("data_wait")) if wait else "")
        )
    if wait:
        lines += ["", _DATA_WAIT_NOTE]
    return "\n".join(lines) + "\n"


_DATA_WAIT_HEADER = " data wait | loader + step median ms | loader (cache_mode, workers) |"
_DATA_WAIT_NOTE = (
    "Data wait: share of the bundle's own training iterations (train.json trainer, DataLoader, transforms, cache) "
    "spent in next(loader), after the warm-up iterations (common.handlers.DataWaitHandler)."
)


def _data_wait_cells(block: dict[str, Any] | None) -> str:
    if not block or "error" in block:
        return f" {_fmt_share(block)} | - | - |"
    return (
        f" {_fmt_share(block)} | {_fmt_ms(block, 'iteration_median_ms')} "
        f"| {block.get('cache_mode')}, {block.get('num_workers')} |"
    )


def format_summary_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """
    One table for several bundles (``--all`` or a list of bundles): one row per bundle, device, precision and
    batch size, with parameters, inference latency, training step time, training peak memory and, when measured,
    the data-wait share.

    Args:
        reports: :func:`run_benchmark` reports.
    """
    wait = any(r["settings"].get("data_wait") for r in reports)
    lines = [
        "| bundle | device | precision | batch | forward params (eval) | inference median ms | train step median ms "
        "| train peak MiB |" + (_DATA_WAIT_HEADER if wait else ""),
        "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|---|" if wait else ""),
    ]
    for report in reports:
        for r in report["results"]:
            inf, trn = r.get("inference"), r.get("train_step")
            lines.append(
                f"| {report['bundle']} | {r['device']} | {r['precision']} | {r['batch_size']} "
                f"| {report['parameters']['forward_eval']:,} | {_fmt_ms(inf, 'median_ms')} "
                f"| {_fmt_ms(trn, 'median_ms')} | {_fmt_mem(trn)} |"
                + (_data_wait_cells(r.get("data_wait")) if wait else "")
            )
    if wait:
        lines += ["", _DATA_WAIT_NOTE]
    return "\n".join(lines) + "\n"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``tools/benchmark.py`` (see the module docstring)."""
    default_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ap = argparse.ArgumentParser(
        description="Benchmark a bundle's network_def: parameters used in forward, latency, train step, peak memory."
    )
    ap.add_argument("bundle", nargs="*", help="bundle folder(s), e.g. bundles/unet_baseline bundles/lvit")
    ap.add_argument("--all", action="store_true", help="every bundle under <repo>/bundles (after any named ones)")
    ap.add_argument(
        "--device", choices=["cpu", "cuda", "all"], default="all", help="default all: cpu, plus cuda if available"
    )
    ap.add_argument(
        "--image_size", type=_positive_int, default=None, help="spatial size of the image input (default: metadata)"
    )
    ap.add_argument(
        "--input_shape", action="append", metavar="NAME=D1,D2", help="per-sample shape of a non-image input; repeatable"
    )
    ap.add_argument("--batch_sizes", type=_positive_int, nargs="+", default=[1, 8], help="default: 1 8")
    ap.add_argument("--repeats", type=_positive_int, default=20, help="timed runs (default 20)")
    ap.add_argument("--warmup", type=_non_negative_int, default=3, help="untimed warm-up runs (default 3)")
    ap.add_argument("--amp", action="store_true", help="on CUDA, also time torch.autocast mixed precision")
    ap.add_argument(
        "--amp_dtype", choices=["float16", "bfloat16"], default="float16", help="autocast dtype (default float16)"
    )
    ap.add_argument(
        "--threads",
        type=_positive_int,
        default=default_threads,
        help=f"torch CPU threads (default: all usable cores, here {default_threads})",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and random inputs (default 0)")
    ap.add_argument(
        "--network_config",
        default="inference.json",
        help="config file under configs/ with network_def (default inference.json)",
    )
    ap.add_argument(
        "--train_config",
        default="train.json",
        help="config file under configs/ with loss and optimizer (default train.json)",
    )
    ap.add_argument("--override", action="append", metavar="KEY=VALUE", help="set a key in both configs; repeatable")
    ap.add_argument(
        "--data_wait",
        action="store_true",
        help="also train the bundle's own train.json pipeline (DataLoader, transforms, cache) and report the share "
        "of each iteration spent waiting for data",
    )
    ap.add_argument(
        "--data_wait_only",
        action="store_true",
        help="with --data_wait: skip the inference and train-step timing of the bare network (parameters are "
        "still counted)",
    )
    ap.add_argument(
        "--data_wait_iters",
        type=_positive_int,
        default=10,
        help="timed training iterations of --data_wait, after --warmup (default 10)",
    )
    ap.add_argument(
        "--pipeline_epochs",
        type=_non_negative_int,
        default=0,
        help="N > 0: measure only the training data pipeline (no network): N passes over train#dataloader, "
        "peak RSS, cache size; first --batch_sizes value is the batch size (default 0: off)",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="JSON report path, one bundle only (default: <repo>/out/benchmark_<bundle>.json; "
        "--pipeline_epochs: <repo>/out/pipeline_<bundle>.json)",
    )
    ap.add_argument(
        "--table",
        default=None,
        help="Markdown table of every bundle, written when several are benchmarked (default: <repo>/out/"
        "benchmark_all.md; --pipeline_epochs: <repo>/out/pipeline_all.md)",
    )
    return ap


def _bundle_list(args: argparse.Namespace) -> list[Path]:
    """The bundle folders to benchmark: the named ones, then (``--all``) every bundle with configs/metadata.json."""
    named = [Path(b) for b in args.bundle]
    if args.all:
        found = sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
        named += [p for p in found if p.resolve() not in {n.resolve() for n in named}]
    if not named:
        raise ValueError("name at least one bundle folder, or pass --all.")
    for b in named:
        if not (b / "configs").is_dir():
            raise FileNotFoundError(f"{b}: not a bundle (no configs/ folder).")
    return named


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv``, run, print the Markdown table, write the JSON report; returns the exit code."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data_wait_only:
        args.data_wait = True
    try:
        bundles = _bundle_list(args)
        if args.out and len(bundles) > 1:
            raise ValueError("--out names one JSON file; with several bundles use --table (one JSON per bundle).")
        prefix = "pipeline" if args.pipeline_epochs else "benchmark"
        reports = []
        for bundle in bundles:
            args.bundle = str(bundle)
            if args.pipeline_epochs:
                args.overrides = _parse_overrides(args.override)
                report = measure_pipeline(args, Path(args.bundle).resolve())
                print(format_pipeline_markdown([report]))
            else:
                report = run_benchmark(args)
                print(format_markdown(report))
            out = Path(args.out) if args.out else REPO_ROOT / "out" / f"{prefix}_{report['bundle']}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
            print(f"JSON report: {out}")
            reports.append(report)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(reports) > 1:
        table = Path(args.table) if args.table else REPO_ROOT / "out" / f"{prefix}_all.md"
        table.parent.mkdir(parents=True, exist_ok=True)
        text = format_pipeline_markdown(reports) if args.pipeline_epochs else format_summary_markdown(reports)
        table.write_text(text, encoding="utf-8")
        print(text)
        print(f"Markdown table: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
