# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Measuring helpers shared by ``tools/benchmark.py`` and the tests: executed-parameter counting, latency, peak memory.

Three questions are answered here, each with a documented procedure so that numbers from different bundles are
comparable:

- :func:`count_forward_parameters`: how many parameters does one forward pass actually use, compared with how many
  the network registers?  Reference implementations of text-guided segmentation networks (LViT, CausalCLIPSeg)
  build sub-networks that their ``forward`` never calls; a parameter count from ``model.parameters()`` then
  overstates the model size.
- :func:`measure_latency`: wall-clock time of a callable, median and 90th percentile of repeated calls after warm-up,
  with CUDA synchronisation around each call so asynchronous kernel launches are not mistaken for finished work.
- :func:`track_peak_memory`: peak memory while a block runs; CUDA: the caching allocator's peak of allocated tensor
  memory; CPU: the peak resident set size (RSS) of the whole process.
"""

from __future__ import annotations

import ctypes
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

__all__ = [
    "count_forward_parameters",
    "measure_latency",
    "track_peak_memory",
    "read_proc_status_kib",
    "reset_peak_rss",
]

_MIB = 1024.0 * 1024.0


class _ParameterAccessMode(TorchFunctionMode):
    """Record which of the given parameters are passed to a torch function that returns a tensor.

    A parameter counts as *accessed* when it appears (at any nesting depth) in the arguments of a torch function or
    tensor method whose result contains a tensor, e.g. ``F.conv2d(x, w)``, ``x + self.pos_embed`` or ``self.w.T``.
    Metadata reads such as ``p.shape``, ``p.numel()`` or ``p.dtype`` return no tensor and do not count.

    Args:
        parameter_ids: ``id()`` of every parameter to watch.
    """

    def __init__(self, parameter_ids: set[int]) -> None:
        super().__init__()
        self.parameter_ids = parameter_ids
        self.accessed: set[int] = set()

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = {} if kwargs is None else kwargs
        result = func(*args, **kwargs)
        leaves = tree_leaves((args, kwargs))
        hits = [id(x) for x in leaves if isinstance(x, torch.Tensor) and id(x) in self.parameter_ids]
        if hits and any(isinstance(x, torch.Tensor) for x in tree_leaves(result)):
            self.accessed.update(hits)
        return result


def count_forward_parameters(
    model: torch.nn.Module, *inputs: Any, training: bool | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Count the parameters that one forward pass of ``model`` actually uses, next to the registered total.

    One forward pass ``model(*inputs, **kwargs)`` runs under ``torch.no_grad()`` with two recorders:

    1. a forward pre-hook on every sub-module records which modules execute; every parameter registered directly on
       an executed module counts as used (this includes parameters a module reads in its own ``forward``, such as a
       position embedding or a learned prompt registered on that module);
    2. a ``torch.overrides.TorchFunctionMode`` records every registered parameter passed to a torch operation that
       returns a tensor, which also catches parameters read from a module that is never called (``x @ head.weight.T``,
       tied embeddings).

    A parameter is *used in forward* if either recorder saw it. Each parameter object is counted once, however many
    names or modules share it (``model.parameters()`` semantics). Parameters are counted by ``numel()``.

    The forward pass is side-effect free for the model: the training/eval mode is restored and every buffer (e.g.
    BatchNorm running statistics) is copied back afterwards. Random number generators do advance (dropout).

    Args:
        model: the network. Modules called with ``module.forward(...)`` instead of ``module(...)`` are seen only
            through recorder 2; TorchScript modules are not supported (hooks do not fire).
        inputs: positional arguments of the forward call, e.g. ``image, text_ids``.
        training: mode for the counting pass: ``None`` (default) keeps the model's current mode, ``True`` counts in
            training mode (auxiliary/deep-supervision heads often run only there), ``False`` in eval mode.
        kwargs: keyword arguments of the forward call.

    Returns:
        A dict with:

        - ``"forward"``: number of parameter elements used in the forward pass;
        - ``"forward_trainable"``: the subset with ``requires_grad=True``;
        - ``"registered"``: all unique registered parameter elements (``sum(p.numel() for p in model.parameters())``);
        - ``"trainable"``: registered elements with ``requires_grad=True``;
        - ``"unused"``: ``registered - forward``;
        - ``"by_executed_modules"`` / ``"by_tensor_ops"``: what recorders 1 and 2 found on their own;
        - ``"unused_parameter_names"``: sorted names of the unused parameters (first name of a shared parameter);
        - ``"unused_modules"``: ``[{"name": str, "parameters": int}, ...]``, the top-most sub-modules that never ran
          and none of whose parameters were used, largest first (the "built but never used" parts);
        - ``"training"``: the mode the pass ran in.

    Raises:
        TypeError: when ``model`` is not a ``torch.nn.Module``.

    Examples::

        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = torch.nn.Linear(4, 2), torch.nn.Linear(4, 100)
        ...     def forward(self, x):
        ...         return self.a(x)
        >>> c = count_forward_parameters(Net(), torch.rand(1, 4))
        >>> c["forward"], c["registered"], c["unused_modules"]
        (10, 510, [{'name': 'b', 'parameters': 500}])
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"count_forward_parameters expects a torch.nn.Module, got {type(model).__name__}.")

    was_training = model.training
    saved_buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    executed: set[int] = set()

    def _pre_hook(module: torch.nn.Module, _args: Any) -> None:
        executed.add(id(module))

    handles = [m.register_forward_pre_hook(_pre_hook) for m in model.modules()]
    try:
        if training is not None:
            model.train(training)
        mode_used = model.training
        # parameters may be materialised lazily (torch.nn.Lazy* modules): collect the ids once before and after
        ids_before = {id(p) for p in model.parameters()}
        recorder = _ParameterAccessMode(ids_before)
        with torch.no_grad(), recorder:
            model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in saved_buffers and buf.shape == saved_buffers[name].shape:
                    buf.copy_(saved_buffers[name])

    named = list(model.named_parameters())  # unique parameters, first name wins
    params = {id(p): p for _, p in named}
    by_module: set[int] = set()
    for module in model.modules():
        if id(module) in executed:
            by_module.update(id(p) for p in module._parameters.values() if p is not None)
    by_module &= params.keys()
    by_ops = recorder.accessed & params.keys()
    used = by_module | by_ops

    def _numel(ids: set[int] | dict) -> int:
        return int(sum(params[i].numel() for i in ids))

    trainable_ids = {i for i, p in params.items() if p.requires_grad}

    # top-most modules that never executed and own only unused parameters
    unused_modules: list[dict[str, Any]] = []
    reported: list[str] = []
    for name, module in model.named_modules():
        if not name or id(module) in executed:
            continue
        if any(name.startswith(r + ".") for r in reported):
            continue
        sub_ids = {id(p) for p in module.parameters()}
        if sub_ids and not (sub_ids & used):
            reported.append(name)
            unused_modules.append({"name": name, "parameters": _numel(sub_ids)})
    unused_modules.sort(key=lambda d: (-d["parameters"], d["name"]))

    registered = _numel(params)
    forward = _numel(used)
    return {
        "forward": forward,
        "forward_trainable": _numel(used & trainable_ids),
        "registered": registered,
        "trainable": _numel(trainable_ids),
        "unused": registered - forward,
        "by_executed_modules": _numel(by_module),
        "by_tensor_ops": _numel(by_ops),
        "unused_parameter_names": sorted(n for n, p in named if id(p) not in used),
        "unused_modules": unused_modules,
        "training": mode_used,
    }


def _synchronize(device: torch.device | None) -> bool:
    """Wait for queued CUDA work on ``device``; return whether a synchronisation happened."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        return True
    return False


def measure_latency(
    fn: Callable[[], Any], warmup: int = 3, repeats: int = 20, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls with ``time.perf_counter``.

    Each timed call is bracketed by ``torch.cuda.synchronize(device)`` when ``device`` is a CUDA device, so the time
    covers the GPU work the call queued, not just the kernel launches (PyTorch docs, "CUDA semantics: asynchronous
    execution"). The median is the headline number because it is robust to occasional scheduler hiccups.

    Args:
        fn: the callable to time, called without arguments; its return value is discarded.
        warmup: untimed calls before timing (cuDNN autotuning, allocator growth, lazy initialisation), >= 0.
            Defaults to 3.
        repeats: timed calls, >= 1. Defaults to 20.
        device: where ``fn`` runs; a CUDA device (``"cuda"``, ``"cuda:0"``, ``torch.device``) enables the
            synchronisation, anything else (default ``None``: CPU) measures plain wall-clock time.

    Returns:
        ``{"median_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "repeats", "warmup", "synchronized"}``;
        ``p90_ms`` is ``numpy.percentile(times, 90)`` (linear interpolation), ``std_ms`` the population std.

    Raises:
        ValueError: when ``warmup < 0`` or ``repeats < 1``.
    """
    if warmup < 0:
        raise ValueError(f"measure_latency: warmup must be >= 0, got {warmup}.")
    if repeats < 1:
        raise ValueError(f"measure_latency: repeats must be >= 1, got {repeats}.")
    dev = torch.device(device) if device is not None else None
    for _ in range(warmup):
        fn()
    synchronized = _synchronize(dev)
    times = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        _synchronize(dev)
        start = time.perf_counter()
        fn()
        _synchronize(dev)
        times[i] = (time.perf_counter() - start) * 1000.0
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()),
        "std_ms": float(times.std()),
        "min_ms": float(times.min()),
        "max_ms": float(times.max()),
        "repeats": repeats,
        "warmup": warmup,
        "synchronized": synchronized,
    }


def read_proc_status_kib(key: str) -> int | None:
    """Read one memory field (``VmRSS``, ``VmHWM``, ...) of this process from ``/proc/self/status``, in KiB.

    Args:
        key: field name without the colon, e.g. ``"VmHWM"`` (peak RSS) or ``"VmRSS"`` (current RSS); see
            ``man 5 proc``.

    Returns:
        The value in KiB, or ``None`` where ``/proc`` is unavailable (non-Linux) or the field is absent.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trim_heap() -> None:
    """Ask glibc to return freed heap pages to the OS (``malloc_trim(0)``), so RSS reflects live memory; best effort."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS by writing ``5`` to ``/proc/self/clear_refs``.

    Linux >= 4.0 supports this (``man 5 proc``, ``/proc/[pid]/clear_refs``). Freed heap is first returned to the OS
    with ``malloc_trim(0)`` so the new baseline is the memory actually in use.

    Returns:
        ``True`` when the reset worked, ``False`` otherwise (the peak then covers the whole process lifetime).
    """
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_peak_kib() -> int:
    hwm = read_proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss // 1024) if sys.platform == "darwin" else int(maxrss)  # bytes on macOS, KiB on Linux


@contextmanager
def track_peak_memory(device: torch.device | str = "cpu") -> Iterator[dict[str, Any]]:
    """Measure peak memory while the ``with`` block runs; the yielded dict is filled when the block exits.

    What is measured:

    - CUDA device: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``: the peak of
      memory held by live tensors on that device (weights, activations, gradients, optimizer state), excluding the
      caching allocator's unused reserve (given separately as ``reserved_peak_mib``) and the CUDA context.
    - CPU: the peak resident set size of the WHOLE process (``VmHWM`` of ``/proc/self/status``), reset at entry with
      :func:`reset_peak_rss`; it includes the interpreter, loaded libraries and everything else alive in the process,
      so ``increase_mib`` (peak minus the RSS at entry) is the part due to the block. Where the reset is impossible
      (non-Linux) the peak is ``ru_maxrss`` over the process lifetime and ``"reset"`` is ``False``.

    Args:
        device: the device whose memory to track: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"`` or a
            ``torch.device``.

    Yields:
        A dict that receives ``{"kind", "device", "peak_mib", "baseline_mib", "increase_mib", "reset"}`` (plus
        ``"reserved_peak_mib"`` on CUDA) when the block exits normally.

    Examples::

        >>> with track_peak_memory("cpu") as mem:
        ...     x = torch.ones(1024, 1024, 64)
        >>> mem["increase_mib"] > 200
        True
    """
    dev = torch.device(device)
    result: dict[str, Any] = {"device": str(dev)}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        baseline = torch.cuda.memory_allocated(dev)
        yield result
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        result.update(
            kind="cuda_max_memory_allocated",
            peak_mib=peak / _MIB,
            baseline_mib=baseline / _MIB,
            increase_mib=(peak - baseline) / _MIB,
            reserved_peak_mib=torch.cuda.max_memory_reserved(dev) / _MIB,
            reset=True,
        )
        return
    was_reset = reset_peak_rss()
    baseline_kib = read_proc_status_kib("VmRSS")
    yield result
    peak_kib = _cpu_peak_kib()
    baseline_mib = baseline_kib / 1024.0 if baseline_kib is not None else math.nan
    result.update(
        kind="cpu_peak_rss" if was_reset else "cpu_peak_rss_lifetime",
        peak_mib=peak_kib / 1024.0,
        baseline_mib=baseline_mib,
        increase_mib=peak_kib / 1024.0 - baseline_mib,
        reset=was_reset,
    )
