# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
ONNX export with both inputs (image and text), checked by onnxruntime: ``common/utils/onnx_export.py`` and
``tools/export_onnx.py`` on every bundle at tiny sizes. Where a bundle cannot export, the test checks that the
reason its README gives is still the reason, so the documentation stays right.
"""

from __future__ import annotations

import sys

import onnx
import pytest
import torch

from conftest import REPO_ROOT
from test_bundles import BUNDLES, GENERIC_TINY, bundle_dir, bundle_overrides

from common.utils.onnx_export import OnnxExportError, export_onnx, metadata_inputs
from common.utils.onnx_runtime import OnnxRuntimeNetwork, inference_network

sys.path.insert(0, str(REPO_ROOT / "tools"))
import export_onnx as export_tool  # noqa: E402

UNET = str(REPO_ROOT / "bundles" / "unet_baseline")

EXPORTER = {"causalclipseg": "dynamo"}
"""The exporter ``exporter="auto"`` ends with per bundle (default ``"torchscript"``); None: no exporter works."""

NOT_EXPORTABLE_BECAUSE: dict = {}
"""``{bundle: {exporter: reason}}`` for bundles no exporter handles (none since MCDRL's MTRS count uses Python ints)."""


STATIC_BATCH = {"causalclipseg"}
"""Bundles exported for one batch size (``--static_batch``): CausalCLIPSeg's text-conditioned decoder applies
per-sample dynamic kernels as one convolution with ``groups`` = the batch size, which ONNX fixes at export time."""

EXPORTER_REJECTED_BECAUSE = {
    # docs/README.md "ONNX" of the bundle: the TorchScript-based exporter writes the CoordConv coordinate maps in
    # float64, for which onnxruntime has no Conv kernel
    "causalclipseg": {"torchscript": "NOT_IMPLEMENTED"},
}


def tiny(name: str) -> dict:
    return {**GENERIC_TINY, **bundle_overrides(name)}


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_exports_with_all_inputs_or_fails_for_the_documented_reason(name, tmp_path):
    target = tmp_path / "model.onnx"
    expected = EXPORTER.get(name, "torchscript")
    if expected is None:
        with pytest.raises(OnnxExportError) as err:
            export_tool.export_bundle(bundle_dir(name), filepath=target, random_weights=True, overrides=tiny(name))
        for exporter, reason in NOT_EXPORTABLE_BECAUSE[name].items():
            assert reason in err.value.reasons[exporter], f"{name} {exporter}: {err.value.reasons[exporter]}"
        assert not target.exists(), "a failed export must not leave a graph behind"
        return
    static = name in STATIC_BATCH
    result = export_tool.export_bundle(
        bundle_dir(name), filepath=target, random_weights=True, overrides=tiny(name), static_batch=static, batch=1
    )
    assert result.exporter == expected, result.failed
    assert result.max_abs_diff < 1e-4
    for exporter, reason in EXPORTER_REJECTED_BECAUSE.get(name, {}).items():
        assert reason in result.failed[exporter], f"{name} {exporter}: {result.failed[exporter]}"
    if static:  # the reason for --static_batch still holds: a dynamic batch axis breaks the grouped convolution
        with pytest.raises(OnnxExportError, match="group"):
            export_tool.export_bundle(
                bundle_dir(name),
                filepath=tmp_path / "dyn.onnx",
                random_weights=True,
                overrides=tiny(name),
                exporter="torchscript",
            )
    model = onnx.load(str(target))
    inputs = [i.name for i in model.graph.input]
    import json

    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    assert inputs == list(meta["network_data_format"]["inputs"]), "every network input, in forward order"
    props = {p.key: p.value for p in model.metadata_props}
    batch = "1" if static else "dynamic"
    assert props == {"bundle": name, "version": meta["version"], "exporter": expected, "batch": batch}


class _SignBranch(torch.nn.Module):
    """A Python branch on the data: the trace keeps the branch of the example input only."""

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if bool(image.sum() > 0):
            return image * 2 + text.float().mean()
        return image - 1


def test_parity_check_rejects_a_graph_that_differs_from_pytorch(tmp_path):
    positive = {"image": torch.rand(2, 1, 4, 4), "text": torch.ones(2, 3, dtype=torch.long)}
    negative = {"image": -torch.rand(1, 1, 4, 4), "text": torch.ones(1, 3, dtype=torch.long)}
    ok = export_onnx(_SignBranch(), positive, tmp_path / "a.onnx", exporter="torchscript")
    assert ok.max_abs_diff < 1e-6 and ok.exporter == "torchscript"
    with pytest.raises(OnnxExportError, match="differs from PyTorch") as err:
        export_onnx(_SignBranch(), positive, tmp_path / "b.onnx", exporter="torchscript", check_inputs=[negative])
    assert set(err.value.reasons) == {"torchscript"}
    assert not (tmp_path / "b.onnx").exists()
    with pytest.raises(ValueError, match="exporter must be"):
        export_onnx(_SignBranch(), positive, tmp_path / "c.onnx", exporter="jit")


def test_metadata_inputs_follow_the_descriptors():
    fmt = {
        "image": {"num_channels": 3, "spatial_shape": [224, 224], "dtype": "float32", "value_range": [-2, 3]},
        "text": {"format": "sequence", "spatial_shape": [18], "dtype": "int64", "value_range": [0, 22]},
    }
    x = metadata_inputs(fmt, 2, image_size=32, num_tokens=6, high={"text": 4})
    assert list(x) == ["image", "text"]
    assert x["image"].shape == (2, 3, 32, 32) and x["image"].dtype == torch.float32
    assert -2 <= x["image"].min() and x["image"].max() <= 3 and x["image"].min() < 0
    assert x["text"].shape == (2, 6) and x["text"].dtype == torch.int64
    assert 0 <= x["text"].min() and x["text"].max() <= 4
    assert torch.equal(metadata_inputs(fmt, 2)["text"], metadata_inputs(fmt, 2)["text"])  # seeded
    assert metadata_inputs(fmt, 1)["text"].shape == (1, 18)
    with pytest.raises(ValueError, match="inputs.text: key 'dtype' missing"):
        metadata_inputs({"text": {"spatial_shape": [3]}}, 1)
    with pytest.raises(ValueError, match=r"inputs.text.value_range: \[low, high\] needed"):
        metadata_inputs({"text": {"spatial_shape": [3], "dtype": "int64"}}, 1)


def test_tool_errors_name_the_file_and_exit_1(tmp_path, capsys):
    missing = tmp_path / "none.pt"
    code = export_tool.main([UNET, "--ckpt_file", str(missing), "--filepath", str(tmp_path / "x")])
    assert code == 1
    assert f"{missing}: checkpoint not found" in capsys.readouterr().err
    assert export_tool.main([str(tmp_path), "--random_weights"]) == 1
    assert "inference.json: not found" in capsys.readouterr().err
    assert export_tool.main([UNET, "--random_weights", "--extra", "channels"]) == 1
    assert "expected key=value" in capsys.readouterr().err


def test_tool_loads_the_checkpoint_it_exports(tmp_path, capsys):
    """The exported graph carries the trained weights, not a fresh initialisation."""
    over = [f"--extra={k}={v!r}" for k, v in tiny("unet_baseline").items()]
    net, _ = export_tool.build_network(
        bundle_dir("unet_baseline"),
        bundle_dir("unet_baseline") / "configs" / "inference.json",
        bundle_dir("unet_baseline") / "configs" / "metadata.json",
        tiny("unet_baseline"),
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))  # trained-like weights: moved away from the initialisation
    torch.save(net.state_dict(), tmp_path / "model.pt")
    target = tmp_path / "model.onnx"
    code = export_tool.main([UNET, "--ckpt_file", str(tmp_path / "model.pt"), "--filepath", str(target), *over])
    assert code == 0, capsys.readouterr().err
    assert "exporter torchscript" in capsys.readouterr().out
    import onnxruntime

    image = torch.rand(1, 1, 32, 32)
    got = onnxruntime.InferenceSession(str(target)).run(None, {"image": image.numpy()})[0]
    with torch.no_grad():
        assert (torch.from_numpy(got) - net.eval()(image)).abs().max() < 1e-4


class _TextScaled(torch.nn.Module):
    """A convolution whose output depends on the note: enough to see weights and both inputs reach the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.table = torch.nn.Embedding(5, 1)

    def forward(self, image: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(image)
        return out if text is None else out * self.table(text).mean(dim=1)[:, :, None, None]


def test_onnxruntime_network_runs_the_current_weights_and_both_inputs():
    torch.manual_seed(0)
    net = _TextScaled().eval()
    ort = OnnxRuntimeNetwork(net).eval()
    assert list(ort.state_dict()) == list(net.state_dict()), "a checkpoint of the eager network loads unchanged"
    image, text = torch.rand(2, 1, 8, 8), torch.randint(0, 5, (2, 4))
    with torch.inference_mode():  # the evaluator's context; the export must still work
        got = ort(image, text)
    assert isinstance(got, torch.Tensor) and (got - net(image, text)).abs().max() < 1e-5
    other = torch.randint(0, 5, (2, 4))
    assert (ort(image, text=other) - net(image, other)).abs().max() < 1e-5, "the note is a graph input"
    assert len(ort.exports) == 1 and ort.exports[0]["max_abs_diff"] < 1e-4
    # new weights (a CheckpointLoader) drop the graph: the next call exports again, never a stale graph
    state = {k: v + 0.5 for k, v in net.state_dict().items()}
    ort.load_state_dict(state)
    assert torch.equal(net.conv.bias, state["conv.bias"])
    assert (ort(image, text) - net(image, text)).abs().max() < 1e-5
    assert len(ort.exports) == 2
    # a batch of another size (the last batch of a folder) gets its own graph
    assert ort(image[:1], text[:1]).shape == (1, 1, 8, 8) and len(ort.exports) == 3
    assert (ort(image[:1]) - net(image[:1])).abs().max() < 1e-5, "an input left at its default is not fed"


def test_onnxruntime_network_refuses_training_and_unknown_inputs():
    ort = OnnxRuntimeNetwork(_TextScaled())
    with pytest.raises(RuntimeError, match="inference-only"):
        ort.train()(torch.rand(1, 1, 4, 4))
    ort.eval()
    with pytest.raises(RuntimeError, match="unexpected or repeated input 'note'"):
        ort(torch.rand(1, 1, 4, 4), note=torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="takes 2 inputs"):
        ort(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1))
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        OnnxRuntimeNetwork(_TextScaled(), num_threads=-1)
    net = _TextScaled()
    assert inference_network(net, "torch") is net
    assert isinstance(inference_network(net, "onnxruntime", num_threads=1), OnnxRuntimeNetwork)
    with pytest.raises(ValueError, match="inference_backend: expected one of"):
        inference_network(net, "tensorrt")
