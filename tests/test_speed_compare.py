# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
``tools/speed_compare.py`` on two fake source trees built in ``tmp_path`` from this repository.

Both trees get a copy of ``common`` and two bundles: ``unet_baseline`` (the same in both, so the ratio is about 1 and
the outputs agree exactly) and ``unet_changed``, whose base copy gives its BatchNorm layers ``eps = 0.5`` instead of
1e-5: the same parameter names and shapes, so the weights load, but other logits, which the parity check must report
(``FAIL`` in the table, exit status 1). One run covers both, at 32 px and batch 1, with the three phases.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from conftest import REPO_ROOT


def _load_tool():
    spec = importlib.util.spec_from_file_location("tools_speed_compare", REPO_ROOT / "tools" / "speed_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_tree(root: Path, changed: bool) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "eval", "runs", "*.pt")
    shutil.copytree(REPO_ROOT / "common", root / "common", ignore=ignore)
    for name in ("unet_baseline", "unet_changed"):
        shutil.copytree(REPO_ROOT / "bundles" / "unet_baseline", root / "bundles" / name, ignore=ignore)
    if changed:
        config = root / "bundles" / "unet_changed" / "configs" / "inference.json"
        data = json.loads(config.read_text())
        data["network_def"]["norm"] = ["batch", {"eps": 0.5}]
        config.write_text(json.dumps(data, indent=4))
    return root


def test_speed_compare_table_ratio_and_parity(tmp_path, capsys):
    tool = _load_tool()
    base = _fake_tree(tmp_path / "base", changed=True)
    new = _fake_tree(tmp_path / "new", changed=False)
    out = tmp_path / "out" / "speed.json"
    argv = ["unet_baseline", "unet_changed", "--base", str(base), "--new", str(new), "--image_size", "32"]
    argv += ["--batch_sizes", "1", "--repeats", "2", "--warmup", "0", "--out", str(out)]
    argv += ["--phases", "inference", "train_step", "inference_onnx"]
    assert tool.main(argv) == 1  # unet_changed differs
    err = capsys.readouterr().err
    assert "unet_changed batch 1 inference: outputs differ" in err

    report = json.loads(out.read_text())
    rows = {(r["bundle"], r["phase"]): r for r in report["rows"]}
    phases = ("inference", "train_step", "inference_onnx")
    assert set(rows) == {(b, p) for b in ("unet_baseline", "unet_changed") for p in phases}
    # inference_onnx: the new side runs common.utils.OnnxRuntimeNetwork (the bundles' inference_backend
    # "onnxruntime"); its logits are checked against the base's eager logits
    onnx_row = rows[("unet_baseline", "inference_onnx")]
    assert onnx_row["parity"] and onnx_row["max_abs_diff"] < 1e-4 and len(onnx_row["times_ms"]["new"]) == 2
    (export,) = onnx_row["onnx_exports"]  # one graph, made by the bundles' backend, ran the timed calls
    assert export["exporter"] == "torchscript" and export["max_abs_diff"] < 1e-4
    assert not rows[("unet_changed", "inference_onnx")]["parity"]
    for phase in ("inference", "train_step"):
        same = rows[("unet_baseline", phase)]
        assert same["parity"] and same["max_abs_diff"] == 0.0 and same["logits_max_abs_diff"] == 0.0
        assert same["loss_base"] == same["loss_new"] and same["loss_after_step_base"] == same["loss_after_step_new"]
        assert 0.2 < same["ratio"] < 5.0  # the same code on both sides: about 1 (a loaded machine is noisy)
        assert len(same["times_ms"]["base"]) == len(same["times_ms"]["new"]) == 2
        assert same["ratio"] == same["base_ms"] / same["new_ms"]
        assert Path(same["common"]["base"]).is_relative_to(base) and Path(same["common"]["new"]).is_relative_to(new)
        changed = rows[("unet_changed", phase)]
        assert not changed["parity"] and changed["logits_max_abs_diff"] > 1e-3

    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0] == "| bundle | batch | phase | base ms | new ms | ratio | max abs diff |"
    body = [line.split("|")[1:-1] for line in table[2:]]
    assert len(body) == 6 and all(len(cells) == 7 for cells in body)
    by_name = {(c[0].strip(), c[2].strip()): c for c in body}
    assert by_name[("unet_baseline", "inference")][6].strip() == "0.0e+00"
    assert by_name[("unet_changed", "inference")][6].strip().endswith("FAIL")


def test_speed_compare_bad_tree_exits_1(tmp_path, capsys):
    tool = _load_tool()
    assert tool.main(["unet_baseline", "--base", str(tmp_path)]) == 1
    assert f"{tmp_path}: not a source tree" in capsys.readouterr().err
