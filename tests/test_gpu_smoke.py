# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
GPU smoke test of every bundle (issue 11, section 3): on CUDA with AMP (the bundles' ``amp`` key), one epoch of
training on tiny synthetic data (the sizes of ``tests/bundle_test_overrides.json``), evaluation, TorchScript export
(``monai.bundle.ckpt_export``) with eager parity, and the AMP speed-up of ``tools/benchmark.py`` (the bundle's own
network at 224 px, batch 8, with and without AMP, plus the data-wait share of its training pipeline).

Skipped without CUDA. Environment:

- ``GPU_SMOKE_DEVICE``: ``cuda`` (default) or ``cpu``: ``cpu`` runs the same code path on the CPU without AMP and
  with a tiny benchmark (32 px, batch 2), so the test itself is checked on a machine without a GPU.
- ``GPU_SMOKE_OUT``: a JSON file that receives one entry per bundle (device, AMP, training epoch time, Dice,
  export difference, benchmark medians, AMP speed-ups, data-wait shares); entries of other bundles already in the
  file are kept. Unset: nothing is written.

Run::

    python -m pytest tests/test_gpu_smoke.py -q -s                        # on a GPU machine
    GPU_SMOKE_DEVICE=cpu GPU_SMOKE_OUT=/tmp/smoke.json python -m pytest tests/test_gpu_smoke.py -q   # code path on CPU
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import REPO_ROOT
from test_bundles import BUNDLES, bundle_dir, configs, run_workflow, tiny_overrides, torchscript_parity

DEVICE = os.environ.get("GPU_SMOKE_DEVICE", "cuda").strip().lower()
OUT = os.environ.get("GPU_SMOKE_OUT")
ON_CUDA = DEVICE == "cuda"

pytestmark = [
    pytest.mark.skipif(DEVICE not in ("cuda", "cpu"), reason=f"GPU_SMOKE_DEVICE must be cuda or cpu, got {DEVICE!r}"),
    pytest.mark.skipif(
        ON_CUDA and not torch.cuda.is_available(),
        reason="needs CUDA (GPU_SMOKE_DEVICE=cpu runs the same code path on the CPU, without AMP)",
    ),
]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("tools_benchmark_smoke", REPO_ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _override_args(over: dict) -> list[str]:
    args = []
    for key, value in over.items():
        args += ["--override", f"{key}={value}" if isinstance(value, str) else f"{key}={value!r}"]
    return args


def _record(name: str, entry: dict) -> None:
    """Merge ``{name: entry}`` into the JSON file named by ``GPU_SMOKE_OUT`` (no-op when unset)."""
    if not OUT:
        return
    path = Path(OUT)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _training_tokenizer(name: str, tmp_path: Path, dataset_dir: str) -> dict:
    """For a bundle whose ``inference.json`` reads the vocabulary that training writes (``tokenizer_file``: LViT,
    BiCLIP), write it for the default configuration from the training notes of ``dataset_dir`` (generating the
    synthetic set there) and return the override that points to it; ``{}`` for the other bundles."""
    parser = ConfigParser()
    parser.read_config(configs(name, "train.json"))
    if "tokenizer_file" not in parser:
        return {}
    tokenizer_file = str(tmp_path / "tokenizer" / "text_tokenizer.json")
    Path(tokenizer_file).parent.mkdir(parents=True, exist_ok=True)
    parser.update({"bundle_root": str(bundle_dir(name)), "dataset_dir": dataset_dir, "tokenizer_file": tokenizer_file})
    parser.get_parsed_content("tokenizer")
    assert Path(tokenizer_file).is_file(), tokenizer_file
    return {"tokenizer_file": tokenizer_file}


def _benchmark(name: str, dataset_dir: Path, tmp_path: Path, capsys) -> dict:
    """``tools/benchmark.py`` on the bundle: on CUDA its default network at 224 px, batch 8, fp32 and AMP, and
    the data-wait share of its own training pipeline on its default synthetic set (written to ``tmp_path``); on the
    CPU the tiny network at 32 px, batch 2, on the tiny set in ``dataset_dir``."""
    out = tmp_path / "benchmark.json"
    if ON_CUDA:
        argv = [str(bundle_dir(name)), "--device", "cuda", "--amp", "--batch_sizes", "8", "--image_size", "224"]
        argv += ["--repeats", "10", "--warmup", "3", "--data_wait", "--data_wait_iters", "10"]
        bench_over = {"dataset_dir": str(tmp_path / "benchmark_data")}  # the default synthetic set
        bench_over.update(_training_tokenizer(name, tmp_path, bench_over["dataset_dir"]))
        argv += _override_args(bench_over)
    else:
        over = tiny_overrides(name, dataset_dir, tmp_path / "unused")
        for key in ("bundle_root", "output_dir", "batch_size"):
            over.pop(key)  # image_size stays: BiCLIP's network is built for one image size
        argv = [str(bundle_dir(name)), "--device", "cpu", "--batch_sizes", "2", "--image_size", "32"]
        argv += ["--repeats", "1", "--warmup", "1", "--threads", "1", "--data_wait", "--data_wait_iters", "2"]
        argv += _override_args(over)
        if "num_tokens" in over:  # the tiny text length, for the sequence inputs that metadata.json describes
            meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
            for key, desc in meta["network_data_format"]["inputs"].items():
                if desc.get("format") == "sequence":
                    argv += ["--input_shape", f"{key}={over['num_tokens']}"]
    assert _benchmark_module().main(argv + ["--out", str(out)]) == 0
    print(capsys.readouterr().out)
    report = json.loads(out.read_text())
    rows = {r["precision"]: r for r in report["results"]}
    assert "fp32" in rows and (not ON_CUDA or len(rows) == 2), rows.keys()
    summary: dict = {"settings": report["settings"], "environment": report["environment"], "rows": {}}
    for precision, row in rows.items():
        for phase in ("inference", "train_step"):
            assert "median_ms" in row[phase], f"{name} {precision} {phase}: {row[phase]}"
        share = row["data_wait"]["data_wait_share"]
        assert 0.0 <= share <= 1.0
        summary["rows"][precision] = {
            "inference_ms": row["inference"]["median_ms"],
            "train_step_ms": row["train_step"]["median_ms"],
            "train_peak_mib": row["train_step"]["peak_memory"]["peak_mib"],
            "data_wait_share": share,
            "loader_plus_step_ms": row["data_wait"]["iteration_median_ms"],
            "cache_mode": row["data_wait"]["cache_mode"],
            "num_workers": row["data_wait"]["num_workers"],
        }
    amp = next((r for p, r in summary["rows"].items() if p != "fp32"), None)
    fp32 = summary["rows"]["fp32"]
    summary["amp_speedup"] = (
        None
        if amp is None
        else {
            "inference": fp32["inference_ms"] / amp["inference_ms"],
            "train_step": fp32["train_step_ms"] / amp["train_step_ms"],
            "loader_plus_step": fp32["loader_plus_step_ms"] / amp["loader_plus_step_ms"],
        }
    )
    return summary


@pytest.mark.parametrize("name", BUNDLES)
def test_train_evaluate_export_and_amp_speedup(name, tmp_path, capsys):
    dataset_dir, output_dir = tmp_path / "data", tmp_path / "out"
    device = "$torch.device('cuda:0')" if ON_CUDA else "$torch.device('cpu')"
    over = tiny_overrides(name, dataset_dir, output_dir, max_epochs=1, amp=ON_CUDA, device=device)

    # one epoch of training with AMP
    start = time.perf_counter()
    wf = run_workflow(name, configs(name, "train.json"), "train", over)
    train_s = time.perf_counter() - start
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 1 and trainer.amp is ON_CUDA
    assert next(wf.parser.get_parsed_content("network").parameters()).device.type == DEVICE
    assert (output_dir / "models" / "model.pt").is_file()

    # evaluation (same AMP switch)
    run_workflow(name, configs(name, "train.json", "evaluate.json"), "train", over)
    summary = dict(row[:2] for row in csv.reader(open(output_dir / "eval" / "metrics.csv")) if row)
    dice = float(summary["Dice"])
    assert 0.0 <= dice <= 1.0

    # TorchScript export, loaded on the device, equal to eager
    diff = torchscript_parity(name, output_dir / "models" / "model.pt", tmp_path / "model.ts", over, DEVICE)
    assert diff < (1e-3 if ON_CUDA else 1e-5), f"TorchScript output differs from eager by {diff}"

    bench = _benchmark(name, dataset_dir, tmp_path, capsys)
    _record(
        name,
        {
            "device": DEVICE,
            "gpu": torch.cuda.get_device_name(0) if ON_CUDA else None,
            "amp": ON_CUDA,
            "torch": torch.__version__,
            "train_one_epoch_s": train_s,
            "eval_dice": dice,
            "export_max_abs_diff": diff,
            **bench,
        },
    )
