# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
ONNX Runtime as an inference backend of a bundle (``inference_backend: "onnxruntime"`` in ``inference.json``).

:class:`OnnxRuntimeNetwork` wraps the bundle's eager network. The bundle's ``CheckpointLoader`` loads the weights
through it (``state_dict`` / ``load_state_dict`` are the wrapped network's, so checkpoints and their keys are
unchanged); at the first forward call with a new input signature (shapes and dtypes of every input) it exports the
network with those weights and inputs by :func:`common.utils.onnx_export.export_onnx` (parity with eager PyTorch
checked on that batch, ``atol``), opens an ONNX Runtime session and from then on runs the graph. The graph is always
made from the weights in memory, never read from an older file, so it cannot be stale; loading other weights drops
the sessions. One graph per signature: a graph's batch size is fixed (CausalCLIPSeg's per-sample dynamic kernels
cannot have a dynamic batch axis), so a run with a last, smaller batch exports twice.

Why: on CPU, ONNX Runtime runs these networks 1.2-4x faster than eager PyTorch (``tools/speed_compare.py --phases
inference_onnx``; the numbers are in each bundle's README). It is inference-only: training mode is an error.
Requires ``onnxruntime`` (pinned in ``requirements.txt``), imported only when a session is opened.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["INFERENCE_BACKENDS", "OnnxRuntimeNetwork", "inference_network"]

INFERENCE_BACKENDS = ("torch", "onnxruntime")
"""The values of a bundle's ``inference_backend`` key."""


def _forward_names(network: torch.nn.Module) -> list[str]:
    """The names of ``network.forward``'s positional parameters, in order."""
    params = inspect.signature(network.forward).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


class OnnxRuntimeNetwork(torch.nn.Module):
    """Run ``network`` in ONNX Runtime (CPU) at inference, exported from its current weights at the first call.

    Args:
        network: the eager network. Its ``state_dict`` is this module's, so a ``CheckpointLoader`` given this module
            loads the checkpoint into it.
        export_dir: folder for the exported graphs (``model_<signature>.onnx``). Defaults to ``None``: a temporary
            folder, removed with this object.
        num_threads: ONNX Runtime intra-op threads; 0 (default) lets ONNX Runtime choose (one per physical core).
        exporter: ``"auto"`` (default), ``"torchscript"`` or ``"dynamo"``, as in
            :func:`common.utils.onnx_export.export_onnx`.
        atol: the largest max absolute difference to eager PyTorch accepted at export, on the first batch of each
            signature. Defaults to 1e-4.
        opset: ONNX opset of the export. Defaults to 18.

    Raises:
        RuntimeError: ``forward`` in training mode (inference only), or an input the network's ``forward`` has no
            parameter for.
        common.utils.onnx_export.OnnxExportError: when no exporter gives a graph within ``atol`` (each exporter's
            reason in the message); use ``inference_backend: "torch"`` for such a network.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        export_dir: str | Path | None = None,
        num_threads: int = 0,
        exporter: str = "auto",
        atol: float = 1e-4,
        opset: int = 18,
    ) -> None:
        super().__init__()
        if int(num_threads) < 0:
            raise ValueError(f"num_threads must be >= 0 (0: ONNX Runtime's default), got {num_threads}.")
        self.network = network
        self.input_names = _forward_names(network)
        self.num_threads = int(num_threads)
        self.exporter = exporter
        self.atol = float(atol)
        self.opset = int(opset)
        self._tmp = None if export_dir else tempfile.TemporaryDirectory(prefix="onnxruntime_")
        self.export_dir = Path(export_dir or self._tmp.name)
        self._sessions: dict[tuple, Any] = {}
        self.exports: list[dict[str, Any]] = []
        """One entry per exported graph: ``signature``, ``filepath``, ``exporter``, ``max_abs_diff``."""

    # the checkpoint is the wrapped network's: same keys, and new weights invalidate the graphs
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        self._sessions.clear()
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)

    def _named_inputs(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if len(args) > len(self.input_names):
            raise RuntimeError(
                f"{type(self.network).__name__}.forward takes {len(self.input_names)} inputs "
                f"({self.input_names}), got {len(args)}."
            )
        named = dict(zip(self.input_names, args))
        for key, value in kwargs.items():
            if key not in self.input_names or key in named:
                raise RuntimeError(f"{type(self.network).__name__}.forward: unexpected or repeated input {key!r}.")
            named[key] = value
        out = {}
        for name in self.input_names:  # forward order; inputs left at their default are not graph inputs
            if name not in named or named[name] is None:
                continue
            value = named[name]
            if not isinstance(value, torch.Tensor):
                raise RuntimeError(f"ONNX Runtime backend: input {name!r} is a {type(value).__name__}, not a tensor.")
            value = value.as_tensor() if hasattr(value, "as_tensor") else value  # MetaTensor -> plain tensor
            out[name] = value.detach()
        return out

    def _session(self, inputs: Mapping[str, torch.Tensor]):
        signature = tuple((n, tuple(t.shape), str(t.dtype)) for n, t in inputs.items())
        if signature in self._sessions:
            return self._sessions[signature]
        import copy

        import onnxruntime

        from .onnx_export import export_onnx

        net = self.network
        if any(p.device.type != "cpu" for p in net.parameters()):
            net = copy.deepcopy(net).cpu()  # the parity check runs eager PyTorch on the CPU inputs
        filepath = self.export_dir / f"model_{len(self.exports)}.onnx"
        # the evaluator calls forward under no_grad / inference_mode: export outside both, as tools/export_onnx.py
        # does (inference tensors cannot be traced, and without autograd nn.MultiheadAttention takes its fused fast
        # path, an operator the TorchScript-based exporter cannot write)
        with torch.inference_mode(False), torch.enable_grad():
            cpu_inputs = {n: t.cpu().clone() for n, t in inputs.items()}
            result = export_onnx(
                net.eval(),
                cpu_inputs,
                filepath,
                exporter=self.exporter,
                atol=self.atol,
                opset=self.opset,
                dynamic_batch=False,
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(filepath), options, providers=["CPUExecutionProvider"])
        self.exports.append(
            {
                "signature": signature,
                "filepath": str(filepath),
                "exporter": result.exporter,
                "max_abs_diff": result.max_abs_diff,
            }
        )
        self._sessions[signature] = session
        return session

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The first output of the ONNX graph for these inputs, as a float tensor on the first input's device."""
        if self.training:
            raise RuntimeError(
                "ONNX Runtime backend is inference-only; call eval() first, or train with inference_backend 'torch'."
            )
        inputs = self._named_inputs(args, kwargs)
        if not inputs:
            raise RuntimeError("ONNX Runtime backend: no tensor input given.")
        session = self._session(inputs)
        feed = {name: t.cpu().numpy() for name, t in inputs.items()}
        out = session.run(None, feed)[0]
        return torch.from_numpy(out).to(next(iter(inputs.values())).device)


def inference_network(network: torch.nn.Module, backend: str = "torch", **kwargs: Any) -> torch.nn.Module:
    """The bundle's inference network for ``inference_backend``: ``network`` itself, or its ONNX Runtime wrapper.

    Args:
        network: the eager network (``network_def`` on the device).
        backend: one of :data:`INFERENCE_BACKENDS`. Defaults to ``"torch"``.
        kwargs: passed to :class:`OnnxRuntimeNetwork` (``num_threads``, ``export_dir``, ...).

    Raises:
        ValueError: an unknown ``backend``, named with the key.
    """
    if backend not in INFERENCE_BACKENDS:
        raise ValueError(f"inference_backend: expected one of {list(INFERENCE_BACKENDS)}, got {backend!r}.")
    return network if backend == "torch" else OnnxRuntimeNetwork(network, **kwargs)
