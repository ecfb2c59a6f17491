# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Checks every bundle under ``bundles/`` (parametrised, so a new bundle is covered the moment it appears):
metadata validity, config parsing and MONAI workflow properties, a tiny training run on tiny synthetic data,
evaluation with all four metrics, inference writing masks, TorchScript export with output parity,
``verify_net_in_out``, a 2-process gloo run of the multi-GPU config, resume after interruption and same-seed
determinism. Tiny sizes come from the generic overrides below plus ``tests/bundle_test_overrides.json``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from conftest import REPO_ROOT, SHARED

BUNDLES = sorted(p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
SCHEMA = SHARED / "schema" / "meta_schema_20240725.json"
PER_BUNDLE = json.loads((REPO_ROOT / "tests" / "bundle_test_overrides.json").read_text())

GENERIC_TINY = {
    "image_size": 32,
    "max_epochs": 2,
    "batch_size": 4,
    "val_batch_size": 4,
    "num_workers": 0,
    "cache_rate": 1.0,
    "progress_bar": False,
    "synthetic_num_train": 8,
    "synthetic_num_val": 4,
    "synthetic_num_test": 4,
    "synthetic_image_size": 64,
    "seed": 0,
}


def bundle_dir(name: str) -> Path:
    return REPO_ROOT / "bundles" / name


def configs(name: str, *files: str) -> list[str]:
    return [str(bundle_dir(name) / "configs" / f) for f in files]


def bundle_overrides(name: str) -> dict:
    """The bundle's entry of tests/bundle_test_overrides.json, with ``{repo_root}`` filled in."""
    return {
        k: v.replace("{repo_root}", str(REPO_ROOT)) if isinstance(v, str) else v
        for k, v in PER_BUNDLE.get(name, {}).items()
    }


def tiny_overrides(name: str, dataset_dir: Path, output_dir: Path, **extra) -> dict:
    out = {**GENERIC_TINY, **bundle_overrides(name)}
    out.update(bundle_root=str(bundle_dir(name)), dataset_dir=str(dataset_dir), output_dir=str(output_dir))
    out.update(extra)
    return out


def run_workflow(name: str, files: list[str], workflow_type: str, overrides: dict) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(bundle_dir(name) / "configs" / "metadata.json"),
        logging_file=str(bundle_dir(name) / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    wf.initialize()
    missing = wf.check_properties()
    assert not missing, f"{name}: missing workflow properties {missing}"
    wf.run()
    wf.finalize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train every bundle once (tiny), cached per module: ``{bundle: (dataset_dir, output_dir, workflow)}``."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            dataset_dir, output_dir = root / "data", root / "out"
            wf = run_workflow(name, configs(name, "train.json"), "train", tiny_overrides(name, dataset_dir, output_dir))
            cache[name] = (dataset_dir, output_dir, wf)
        return cache[name]

    return get


@pytest.mark.parametrize("name", BUNDLES)
def test_layout(name):
    b = bundle_dir(name)
    for rel in [
        "LICENSE",
        "docs/README.md",
        "configs/metadata.json",
        "configs/train.json",
        "configs/evaluate.json",
        "configs/inference.json",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
    ]:
        assert (b / rel).is_file(), f"{name}: {rel} missing"
    assert (b / "models").is_dir()
    readme = (b / "docs" / "README.md").read_text()
    train = json.loads((b / "configs" / "train.json").read_text())
    # every top-level constant a user may change is documented in the bundle README
    constants = [k for k, v in train.items() if not isinstance(v, (dict, list)) and k not in ("imports", "network")]
    undocumented = [k for k in constants if f"`{k}`" not in readme]
    assert not undocumented, f"{name}: keys not documented in docs/README.md: {undocumented}"


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_valid(name):
    if not SCHEMA.is_file():
        pytest.skip(f"schema not found at {SCHEMA}")
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(bundle_dir(name) / "configs" / "metadata.json"), filepath=str(SCHEMA))
    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    inputs = list(meta["network_data_format"]["inputs"])
    assert inputs[0] == "image", "the image must be the first network input (MONAI Label, verify_net_in_out)"
    assert list(meta["network_data_format"]["outputs"])[0] == "pred"
    assert meta["version"] in meta["changelog"]


@pytest.mark.parametrize("name", BUNDLES)
def test_configs_parse_and_properties(name, tmp_path):
    over = tiny_overrides(name, tmp_path / "data", tmp_path / "out")
    for files in (
        configs(name, "train.json"),
        configs(name, "train.json", "evaluate.json"),
        configs(name, "train.json", "multi_gpu_train.json"),
        configs(name, "inference.json"),
    ):
        parser = ConfigParser()
        parser.read_config(files)
        parser.update(over)
        net = parser.get_parsed_content("network_def")
        assert isinstance(net, torch.nn.Module), f"{name} {files}: network_def is not a torch module"
    # the infer workflow's properties are checked in test_train_evaluate_infer_export (it needs data on disk)


@pytest.mark.parametrize("name", BUNDLES)
def test_train_evaluate_infer_export(name, trained, tmp_path):
    dataset_dir, output_dir, wf = trained(name)
    trainer = wf.train_trainer if hasattr(wf, "train_trainer") else wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == GENERIC_TINY["max_epochs"]
    ckpt_dir = output_dir / "models"
    assert (ckpt_dir / "model.pt").is_file(), "best model not written"
    assert (ckpt_dir / "checkpoint_last.pt").is_file(), "resumable checkpoint not written"
    assert any((output_dir / "runs").iterdir()), "no TensorBoard events"
    # every loss term is logged separately
    assert any(k.startswith("loss_") for k in trainer.state.metrics), trainer.state.metrics

    # evaluation: the four metrics and a per-case table
    over = tiny_overrides(name, dataset_dir, output_dir)
    run_workflow(name, configs(name, "train.json", "evaluate.json"), "train", over)
    eval_dir = output_dir / "eval"
    summary = dict(row[:2] for row in csv.reader(open(eval_dir / "metrics.csv")) if row)
    for metric in ("Dice", "IoU", "HD95", "ASSD", "PixelAccuracy"):
        assert metric in summary, f"{metric} missing from metrics.csv: {summary}"
        assert np.isfinite(float(summary[metric]))
    assert 0.0 <= float(summary["Dice"]) <= 1.0
    rows = list(csv.DictReader(open(eval_dir / "per_case.csv")))
    assert len(rows) == GENERIC_TINY["synthetic_num_test"]
    # the datalist's site and class ride along (leave-one-site-out and per-lesion-type tables, tools/protocols.md)
    text_scores = {"TextCount", "TextLaterality", "TextZonePrecision", "TextZoneRecall", "TextPosition"}
    text_scores |= {"TextConsistency"}  # common.handlers.TextConsistencyHandler (tools/protocols.md)
    assert set(rows[0]) == {"filename", "site", "class", "Dice", "IoU", "HD95", "ASSD", "PixelAccuracy", *text_scores}
    for metric in text_scores:
        assert metric in summary, f"{metric} missing from metrics.csv: {summary}"
    assert 0.0 <= float(summary["TextCount"]) <= 1.0, "every synthetic note states a count"
    assert rows[0]["site"] and rows[0]["class"]

    # inference on the test split of the datalist: one PNG mask per image, at the image's own size
    pred_dir = tmp_path / "pred"
    inf_over = tiny_overrides(name, dataset_dir, output_dir)
    inf_over.update(output_dir=str(pred_dir), ckpt_path=str(ckpt_dir / "model.pt"))
    run_workflow(name, configs(name, "inference.json"), "infer", inf_over)
    masks = sorted(pred_dir.glob("*.png"))
    datalist = json.loads((dataset_dir / "datalist.json").read_text())
    assert len(masks) == len(datalist["test"])
    for m, item in zip(masks, sorted(datalist["test"], key=lambda d: Path(d["image"]).stem)):
        arr = np.asarray(Image.open(m))
        assert set(np.unique(arr)) <= {0, 255}
        assert arr.shape[:2] == np.asarray(Image.open(dataset_dir / item["image"])).shape[:2]

    # the same inference on ONNX Runtime (inference_backend key): the checkpoint's weights, the same masks
    ort_dir = tmp_path / "pred_onnxruntime"
    ort_wf = run_workflow(
        name,
        configs(name, "inference.json"),
        "infer",
        {**inf_over, "output_dir": str(ort_dir), "inference_backend": "onnxruntime", "onnxruntime_threads": 1},
    )
    exports = ort_wf.parser.get_parsed_content("network").exports
    assert exports and all(e["max_abs_diff"] < 1e-4 for e in exports), exports
    ort_masks = sorted(ort_dir.glob("*.png"))
    assert [m.name for m in ort_masks] == [m.name for m in masks]
    differ = sum(int((np.asarray(Image.open(a)) != np.asarray(Image.open(b))).sum()) for a, b in zip(masks, ort_masks))
    total = sum(np.asarray(Image.open(m)).size for m in masks)
    assert differ <= 1e-3 * total, f"ONNX Runtime masks differ from PyTorch's in {differ} of {total} pixels"

    # inference on a plain folder of images (the other input mode)
    folder = tmp_path / "folder"
    folder.mkdir()
    for item in datalist["test"][:2]:
        src = dataset_dir / item["image"]
        (folder / src.name).write_bytes(src.read_bytes())
    folder_out = tmp_path / "pred_folder"
    folder_over = {**inf_over, "input_dir": str(folder), "output_dir": str(folder_out)}
    inference_keys = json.loads((bundle_dir(name) / "configs" / "inference.json").read_text())
    if "text_prompt" in inference_keys:  # text-guided bundles: one prompt for every image of the folder
        folder_over["text_prompt"] = "Unilateral pulmonary infection, one infected area, lower left lung."
    run_workflow(name, configs(name, "inference.json"), "infer", folder_over)
    assert sorted(p.name for p in folder_out.glob("*.png")) == sorted(f"{p.stem}_mask.png" for p in folder.iterdir())

    # TorchScript export through MONAI's CLI and parity with eager
    diff = torchscript_parity(name, ckpt_dir / "model.pt", tmp_path / "model.ts", inf_over)
    assert diff < 1e-5, f"TorchScript output differs from eager by {diff}"


def torchscript_parity(name: str, ckpt_file: Path, ts_path: Path, overrides: dict, device: str = "cpu") -> float:
    """Export ``network_def`` of ``inference.json`` with MONAI's ``ckpt_export`` to ``ts_path`` and return the max
    abs difference between the TorchScript and the eager network (both loaded from ``ckpt_file``, on ``device``)
    on two examples built from metadata.json."""
    from monai.bundle import ckpt_export

    export_over = {k: v for k, v in overrides.items() if k not in ("bundle_root",)}
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(ckpt_file),
        meta_file=str(bundle_dir(name) / "configs" / "metadata.json"),
        config_file=str(bundle_dir(name) / "configs" / "inference.json"),
        bundle_root=str(bundle_dir(name)),
        args_file=None,
        **export_over,
    )
    parser = ConfigParser()
    parser.read_config(configs(name, "inference.json"))
    parser.update(export_over)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ckpt_file, map_location="cpu", weights_only=True))
    net = net.to(device).eval()
    ts = torch.jit.load(str(ts_path), map_location=device)
    inputs = [x.to(device) for x in example_inputs(name, 2, GENERIC_TINY["image_size"], overrides.get("num_tokens"))]
    with torch.no_grad():
        return (ts(*inputs) - net(*inputs)).abs().max().item()


def example_inputs(name: str, batch: int, image_size: int, num_tokens: int | None = None) -> list[torch.Tensor]:
    """Network inputs built from metadata.json alone, in call order (``num_tokens`` overrides a sequence length)."""
    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    out = []
    for key, desc in meta["network_data_format"]["inputs"].items():
        if key == "image":
            out.append(torch.rand(batch, desc["num_channels"], image_size, image_size))
            continue
        lo, hi = desc["value_range"]
        shape = [batch, *desc["spatial_shape"]]
        if num_tokens is not None and desc.get("format") == "sequence":
            shape[1] = num_tokens
        dtype = getattr(torch, desc["dtype"])
        if dtype.is_floating_point:
            out.append(torch.rand(shape) * (hi - lo) + lo)
        else:
            out.append(torch.randint(int(lo), int(hi) + 1, shape, dtype=dtype))
    return out


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out(name):
    from monai.bundle import verify_net_in_out

    over = {**GENERIC_TINY, **bundle_overrides(name)}
    over.pop("image_size")
    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    names = list(meta["network_data_format"]["inputs"])
    # MONAI synthesises only the image; further inputs (text) are built from the metadata, as a user would
    extra = dict(zip(names[1:], example_inputs(name, 1, 32, over.get("num_tokens"))[1:]))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle_dir(name) / "configs" / "metadata.json"),
        config_file=str(bundle_dir(name) / "configs" / "inference.json"),
        bundle_root=str(bundle_dir(name)),
        device="cpu",
        extra_forward_args=extra,
        **over,
    )


@pytest.mark.parametrize("name", BUNDLES)
def test_resume_continues_schedule(name, tmp_path):
    """Kill a 3-epoch run after epoch 2 (terminate), resume with the one documented key: it finishes epoch 3 with
    the learning rate an uninterrupted run has, and the same seed gives the same validation metric."""
    from ignite.engine import Events

    dataset_dir = tmp_path / "data"
    ref = tiny_overrides(name, dataset_dir, tmp_path / "ref", max_epochs=3)
    full = run_workflow(name, configs(name, "train.json"), "train", ref)
    full_trainer = full.parser.get_parsed_content("train#trainer")
    full_lr = full.parser.get_parsed_content("optimizer").param_groups[0]["lr"]
    full_metric = full_trainer.state.best_metric if hasattr(full_trainer.state, "best_metric") else None
    full_val = full.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]

    # same seed, second run: identical validation metric (CPU determinism)
    again = run_workflow(
        name, configs(name, "train.json"), "train", tiny_overrides(name, dataset_dir, tmp_path / "again", max_epochs=3)
    )
    again_val = again.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    assert again_val == pytest.approx(full_val, abs=1e-6)

    over = tiny_overrides(name, dataset_dir, tmp_path / "run", max_epochs=3)
    wf = ConfigWorkflow(config_file=configs(name, "train.json")[0], workflow_type="train", **over)
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: e.terminate())
    wf.run()
    assert trainer.state.epoch == 2
    ckpt = torch.load(tmp_path / "run" / "models" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert ckpt["trainer"]["iteration"] == 2 * ckpt["trainer"]["epoch_length"]

    resumed = ConfigWorkflow(config_file=configs(name, "train.json")[0], workflow_type="train", resume=True, **over)
    resumed.initialize()
    r_trainer = resumed.parser.get_parsed_content("train#trainer")
    epochs_run = []
    r_trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_run.append(e.state.epoch))
    resumed.run()
    assert epochs_run == [3], f"resumed run should only run epoch 3, ran {epochs_run}"
    assert r_trainer.state.epoch == 3
    r_lr = resumed.parser.get_parsed_content("optimizer").param_groups[0]["lr"]
    assert r_lr == pytest.approx(full_lr, rel=1e-9), "the learning-rate schedule did not continue"
    del full_metric


@pytest.mark.parametrize("name", BUNDLES)
def test_multi_gpu_config_two_processes_gloo(name, tmp_path):
    """Two ranks on gloo through torchrun, as a user launches them. ``--standalone`` binds the rendezvous store
    on port 0 (``localhost:0``), so the kernel picks a free port for every run and parallel runs cannot collide.
    A run must end with status 0 and without the interpreter-exit abort of threads left running."""
    over = tiny_overrides(name, tmp_path / "data", tmp_path / "out", max_epochs=1)
    # generate the data first so the two ranks only read it
    from common.data import ensure_datalist

    parser = ConfigParser()
    parser.read_config(configs(name, "train.json"))
    ensure_datalist(
        str(tmp_path / "data"),
        synthetic=parser.get("synthetic"),
        num_train=over["synthetic_num_train"],
        num_val=over["synthetic_num_val"],
        num_test=over["synthetic_num_test"],
        image_size=over["synthetic_image_size"],
        seed=0,
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs(name, "train.json", "multi_gpu_train.json")),
        "--meta_file",
        str(bundle_dir(name) / "configs" / "metadata.json"),
        "--logging_file",
        str(bundle_dir(name) / "configs" / "logging.conf"),
    ]
    for k, v in over.items():
        cmd += [f"--{k}", repr(v) if not isinstance(v, str) else v]  # python-fire reads Python literals
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-5000:]
    assert (tmp_path / "out" / "models" / "model.pt").is_file()
    assert (tmp_path / "out" / "models" / "checkpoint_last.pt").is_file()
    # rank-0-only logging: each summary line appears once, not once per rank
    log = proc.stdout + proc.stderr
    assert log.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 1, log[-3000:]
    assert log.count("Key metric: val_mean_dice best value") == 1, log[-3000:]


@pytest.mark.parametrize("name", BUNDLES)
def test_lowercase_boolean_override_is_an_error(name, tmp_path):
    """`--resume false` arrives as the string "false" (python-fire); it must stop, not silently resume."""
    over = tiny_overrides(name, tmp_path / "data", tmp_path / "out", resume="false")
    wf = ConfigWorkflow(config_file=configs(name, "train.json")[0], workflow_type="train", **over)
    with pytest.raises(Exception) as err:
        wf.initialize()
    assert "resume" in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize("name", BUNDLES)
def test_console_progress_bar_or_iteration_lines(name, tmp_path):
    """The training console shows a progress bar or one log line per iteration, never both; epoch summaries and
    the validation summary are logged either way (``progress_bar`` key)."""
    from ignite.handlers import ProgressBar
    from monai.handlers import StatsHandler

    raw = json.loads((bundle_dir(name) / "configs" / "train.json").read_text())
    console = [
        i
        for i, h in enumerate(raw["train"]["handlers"])
        if isinstance(h, dict) and h.get("_target_") in ("StatsHandler", "ignite.handlers.ProgressBar")
    ]
    for progress_bar in (True, False):
        parser = ConfigParser()
        parser.read_config(configs(name, "train.json"))
        parser.update(tiny_overrides(name, tmp_path / "data", tmp_path / "out", progress_bar=progress_bar))
        handlers = [parser.get_parsed_content(f"train#handlers#{i}") for i in console]
        stats = [h for h in handlers if isinstance(h, StatsHandler)]
        bars = [h for h in handlers if isinstance(h, ProgressBar)]
        assert len(stats) == 1, f"{name}: expected one training StatsHandler, found {len(stats)}"
        assert stats[0].epoch_log, f"{name}: epoch summaries must always be logged"
        assert bool(stats[0].iteration_log) is not progress_bar, (
            f"{name}: with progress_bar={progress_bar} the per-iteration log lines must be "
            f"{'off' if progress_bar else 'on'}, got iteration_log={stats[0].iteration_log!r}"
        )
        assert len(bars) == int(progress_bar), f"{name}: progress_bar={progress_bar} but {len(bars)} ProgressBar(s)"
        for i, h in enumerate(raw["validate"]["handlers"]):
            if isinstance(h, dict) and h.get("_target_") == "StatsHandler":
                val_stats = parser.get_parsed_content(f"validate#handlers#{i}")
                assert not val_stats.iteration_log, f"{name}: validation must not log every iteration"


def test_inference_bad_key_value_ends_with_the_key_and_status_1(tmp_path):
    """Every inference.json installs the error summary first, so a bad value (here ``inference_backend``) is named in
    the last lines a user sees, with exit status 1; checked from the command line on the U-Net baseline."""
    for name in BUNDLES:
        init = json.loads((bundle_dir(name) / "configs" / "inference.json").read_text())["initialize"]
        assert init[0] == "$common.utils.install_error_summary()", name
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs("unet_baseline", "inference.json")[0]]
    cmd += ["--bundle_root", str(bundle_dir("unet_baseline")), "--output_dir", str(tmp_path), "--inference_backend"]
    run = subprocess.run([*cmd, "tensorrt"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "inference_backend" in last and "'tensorrt'" in last and "onnxruntime" in last, last
