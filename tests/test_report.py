# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
``tools/report.py`` (one report for every bundle and protocol), its figures (``tools/report_figures.py``) and the
prediction switch it uses (``common/configs/save_predictions.json``, ``common.handlers.SavePredictionsHandler``).

The figures and ``report.md`` are built from small hand-made result folders (no training); one end-to-end test runs
the tool on the real ``bundles/unet_baseline`` at tiny sizes, in-process, and checks that a second call redoes
nothing.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from common.handlers import SavePredictionsHandler
from conftest import REPO_ROOT, load_tool

UNET = REPO_ROOT / "bundles" / "unet_baseline"


_tool = load_tool


report = _tool("report")
rf = _tool("report_figures")


# ------------------------------------------------------------------------------------------------ statistics
def test_mean_std_is_the_sample_std_over_seeds():
    mean, std, n = report.mean_std([0.5, 0.7, 0.9])
    assert (n, mean) == (3, pytest.approx(0.7))
    assert std == pytest.approx(0.2)  # sqrt(((-0.2)^2 + 0 + 0.2^2) / (3 - 1))
    assert report.mean_std([0.4, float("nan"), None]) == (pytest.approx(0.4), None, 1)
    assert report.mean_std([]) == (None, None, 0)
    assert report.format_cell(report.mean_std([0.5, 0.7, 0.9])) == "0.7000 ± 0.2000"
    assert report.format_cell(report.mean_std([0.25])) == "0.2500"
    assert report.format_cell(None) == "-"


def test_aggregate_groups_by_bundle_protocol_condition():
    records = [
        {"bundle": "a", "protocol": "clean", "condition": "clean", "seed": 0, "metrics": {"Dice": 0.2, "X": 1.0}},
        {"bundle": "a", "protocol": "clean", "condition": "clean", "seed": 1, "metrics": {"Dice": 0.4}},
        {"bundle": "a", "protocol": "low_data", "condition": "0.1", "seed": 0, "metrics": None},  # failed
    ]
    assert report.metric_columns(records) == ["Dice", "IoU", "HD95", "ASSD", "X"]
    cells = report.aggregate(records, ["Dice", "X"])
    assert cells[("a", "clean", "clean")]["Dice"][:2] == (pytest.approx(0.3), pytest.approx(math.sqrt(0.02)))
    assert cells[("a", "clean", "clean")]["X"] == (1.0, None, 1)
    assert cells[("a", "low_data", "0.1")]["Dice"] == (None, None, 0)


def test_choose_learning_rate_on_mean_validation_dice():
    # 3e-3 has the best single seed, 1e-3 the best mean
    assert report.choose_learning_rate({1e-3: [0.50, 0.50], 3e-3: [0.70, 0.20], 1e-2: [None, None]}) == 1e-3
    assert report.choose_learning_rate({1e-3: [0.4], 3e-3: [0.4]}) == 1e-3  # tie: first of the grid
    with pytest.raises(ValueError, match="no run recorded"):
        report.choose_learning_rate({1e-3: [None]})


def test_bundle_extra_and_text_guided():
    assert report.parse_bundle_extra(["lvit:base_channels=32", "lvit:x=[1, 2]"], ["lvit", "unet_baseline"]) == {
        "lvit": ["--base_channels", "32", "--x", "[1, 2]"],
        "unet_baseline": [],
    }
    with pytest.raises(ValueError, match="not one of the --bundles"):
        report.parse_bundle_extra(["biclip:a=1"], ["lvit"])
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
        report.parse_bundle_extra(["base_channels=32"], ["lvit"])
    guided = {b: report.is_text_guided(REPO_ROOT / "bundles" / b) for b in ("unet_baseline", "mcdrl", "lvit", "c2seg")}
    assert guided == {"unet_baseline": False, "mcdrl": False, "lvit": True, "c2seg": True}


# ------------------------------------------------------------------------------------------------ figures
def test_dice_per_bundle_figure(tmp_path):
    values = {"unet": {"clean test": (0.5, 0.1)}, "lvit": {"clean test": (0.7, None), "another note": (0.3, 0.05)}}
    fig = rf.plot_dice_per_bundle(values, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "Dice per bundle (test split)"
    assert len(fig.axes[0].containers) >= 2  # one bar container per condition (error bars add their own)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["unet", "lvit"]


def test_dice_vs_corruption_figure(tmp_path):
    v = {"none": (0.8, None), "dose_110": (0.5, None), "dose_140": (0.6, None), "blur_k3": (0.7, None)}
    fig = rf.plot_dice_vs_corruption({"a": v, "b": v}, tmp_path / "c.png")
    assert [ax.get_title() for ax in fig.axes] == ["Low-dose noise", "Motion blur"]
    dose = fig.axes[0]
    assert [t.get_text() for t in dose.get_xticklabels()] == ["clean", "140", "110"]  # noise grows to the right
    assert len(dose.get_lines()) >= 2 and [t.get_text() for t in dose.get_legend().get_texts()] == ["a", "b"]
    assert list(dose.get_lines()[0].get_ydata()) == [0.8, 0.6, 0.5]


def test_dice_vs_fraction_and_per_site_figures(tmp_path):
    fig = rf.plot_dice_vs_fraction({"a": {1.0: (0.8, 0.0), 0.1: (0.4, 0.1)}}, tmp_path / "f.png")
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0.1, 1.0]
    groups = {
        "test split, per site": {"a": {"s0": (0.5, None), "s1": (0.6, None)}},
        "held out": {"a": {"s0": (0.2, None)}},
    }
    fig = rf.plot_per_site(groups, tmp_path / "s.png")
    assert [ax.get_title() for ax in fig.axes] == ["test split, per site", "held out"]
    assert (tmp_path / "f.png").is_file() and (tmp_path / "s.png").is_file()


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _case(root: Path, i: int, text: str) -> dict:
    img = np.full((24, 24), 100, np.uint8)
    lab = np.zeros((24, 24), np.uint8)
    lab[4 + i : 12 + i, 6:14] = 255
    return {
        "name": f"case_{i}.png",
        "image": str(_png(root / "img" / f"case_{i}.png", img)),
        "label": str(_png(root / "lab" / f"case_{i}.png", lab)),
        "text": text,
    }


def test_overlay_grid_panels_titles_and_captions(tmp_path):
    cases = [_case(tmp_path, i, t) for i, t in enumerate(["Bilateral pulmonary infection, two infected areas.", ""])]
    small = np.zeros((12, 12), np.uint8)
    small[2:6, 3:7] = 255
    pred = _png(tmp_path / "pred" / "case_0.png", small)  # half size: resized to the image before outlining
    preds = {"unet": {"case_0.png": pred, "case_1.png": None}, "lvit": {"case_0.png": pred, "case_1.png": pred}}
    fig = rf.plot_overlays(cases, preds, tmp_path / "o.png", scores={"lvit": {"case_1.png": 0.5}}, wrap=20)
    assert len(fig.axes) == 4  # 2 bundles x 2 cases
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["unet", "unet (no prediction)", "lvit", "lvit (Dice 0.50)"]
    # the note is the caption of the bottom row (wrapped); a case without a note shows its file name
    assert fig.axes[2].get_xlabel().replace("\n", " ") == cases[0]["text"] and "\n" in fig.axes[2].get_xlabel()
    assert fig.axes[3].get_xlabel() == "case_1.png" and fig.axes[0].get_xlabel() == ""
    # image + ground-truth outline + prediction outline in a panel with a prediction
    assert len(fig.axes[2].images) == 1 and len(fig.axes[2].collections) == 2
    assert len(fig.axes[1].collections) == 1  # no prediction: the ground truth only
    assert (tmp_path / "o.png").is_file()


# ------------------------------------------------------------------------------------------------ report.md
def _result_folder(root: Path, bundle: str, seed: int, dice: float, cases: list[dict]) -> dict:
    """A hand-made evaluation folder (metrics.csv, per_case.csv with sites, predictions) and its record."""
    ev = root / bundle / f"seed{seed}" / "eval"
    ev.mkdir(parents=True)
    (ev / "metrics.csv").write_text(
        f"Dice,{dice}\nIoU,{dice / 2}\nHD95,{10 * dice}\nASSD,{dice}\nTextMaskConsistency,{1 - dice}\n"
    )
    with open(ev / "per_case.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "site", "Dice"])
        w.writerow([cases[0]["image"], "site_a", dice + 0.1])
        w.writerow([cases[1]["image"], "site_b", dice - 0.1])
    _png(ev / "predictions" / "case_0.png", np.asarray(Image.open(cases[0]["label"])))
    metrics = {"Dice": dice, "IoU": dice / 2, "HD95": 10 * dice, "ASSD": dice, "TextMaskConsistency": 1 - dice}
    return {"bundle": bundle, "seed": seed, "protocol": "clean", "condition": "clean", "run_dir": str(ev.parent),
            "eval_dir": str(ev), "metrics": metrics, "train_seconds": 30.0}  # fmt: skip


def test_write_report_from_hand_made_folders(tmp_path):
    cases = [_case(tmp_path / "data", i, f"note {i}") for i in range(2)]
    records = [_result_folder(tmp_path / "runs", b, s, d, cases) for b, s, d in [("unet", 0, 0.4), ("unet", 1, 0.6)]]
    records += [_result_folder(tmp_path / "runs", "lvit", 0, 0.7, cases)]
    extra = [
        ("lvit", "text_swap", "text_swap", 0, 0.5),
        ("unet", "corruption", "dose_110", 0, 0.3),
        ("unet", "corruption", "blur_k3", 0, 0.35),
        ("unet", "low_data", "0.1", 0, 0.2),
        ("unet", "low_data", "0.1", 1, 0.4),
        ("lvit", "low_data", "0.1", 0, None),  # a failed run
    ]
    for b, p, c, s, d in extra:
        m = None if d is None else {"Dice": d, "IoU": d / 2, "HD95": 1.0, "ASSD": 1.0}
        records.append({"bundle": b, "seed": s, "protocol": p, "condition": c, "run_dir": "", "eval_dir": "",
                        "metrics": m, "train_seconds": 1.0})  # fmt: skip
    rep = {
        "created": "now",
        "command": "python tools/report.py ...",
        "settings": {
            "datalist_file": "dl.json",
            "max_epochs": 1,
            "seeds": [0, 1],
            "protocols": ["clean", "text_swap", "corruption", "low_data", "loso"],
            "corruptions": ["dose_110", "blur_k3"],
            "fractions": [0.1],
            "ablation_seed": 0,
        },
        "records": records,
        "lr_grids": {
            "unet": {"key": "learning_rate", "val_dice": {0.001: [0.3, 0.5], 0.01: [0.2, 0.2]}, "chosen": 0.001}
        },
        "overlay_cases": cases,
        "loso": {"sites": [], "note": "skipped: not every entry of dl.json has a `site`."},
        "failures": ["lvit/seed0/frac_0.1 train: command failed"],
    }
    written = report.write_report(tmp_path / "out", rep)
    md = (tmp_path / "out" / "report.md").read_text()
    assert set(written["figures"]) == {"dice_per_bundle", "dice_vs_corruption", "dice_vs_fraction", "dice_per_site",
                                       "overlays"}  # fmt: skip
    assert all(p.is_file() for p in written["figures"].values())
    # every metrics.csv column, generic ones included; mean ± sample std over the two seeds
    assert "| bundle | seeds | Dice | IoU | HD95 | ASSD | TextMaskConsistency | train time |" in md
    assert "| unet | 2 | 0.5000 ± 0.1414 | 0.2500 ± 0.0707 | 5.00 ± 1.41 | 0.50 ± 0.14 | 0.5000 ± 0.1414 |" in md
    assert "| lvit | 0.7000 | 0.5000 | -0.2000 |" in md  # true note, other note, paired change
    assert "| 0.001 | 0.4000 ± 0.1414 | 0.3000 0.5000 | yes |" in md
    assert "| unet | 0.3000 ± 0.1414 | 0.5000 ± 0.1414 |" in md  # low data 0.1, then fraction 1 (clean)
    assert "| lvit | failed | 0.7000 |" in md
    assert "| unet | 0.5000 ± 0.1414 | 0.3000 | 0.3500 |" in md  # corruption Dice: clean first
    assert "| unet | 0.6000 ± 0.1414 | 0.4000 ± 0.1414 |" in md  # per site: a = dice + 0.1, b = dice - 0.1
    assert "skipped: not every entry" in md and "Failed runs" in md
    for name in written["figures"]:
        assert f"({name}.png)" in md
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert {"bundle": "unet", "protocol": "clean", "condition": "clean", "seed": "1", "metric": "Dice",
            "value": "0.6"} in rows  # fmt: skip


# ------------------------------------------------------------------------------------------------ predictions
def test_save_predictions_handler_writes_the_chosen_cases(tmp_path):
    def batch(names):
        return [{"image": MetaTensor(torch.zeros(1, 4, 3), meta={"filename_or_obj": f"/d/img/{n}"})} for n in names]

    preds = [torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)]  # (C, W, H), as PILReader loads a 4 x 3 (W x H) PNG
    preds[0][0, 1:3, 1:3] = 1.0
    preds[0][0, 3, 0] = 1.0  # x = 3, y = 0
    engine = Engine(lambda e, b: [{"pred": p} for p in preds])
    handler = SavePredictionsHandler(str(tmp_path / "pred"), cases=["a.png"])
    handler.attach(engine)
    engine.run([batch(["a.png", "b.png"])], max_epochs=1)
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.png"]
    mask = np.asarray(Image.open(tmp_path / "pred" / "a.png"))
    assert mask.shape == (3, 4) and mask.dtype == np.uint8  # back in the file's (H, W) orientation
    assert mask.sum() == 5 * 255 and mask[0, 3] == 255 and mask[1, 1] == 255 and mask[0, 0] == 0
    # several channels: argmax > 0 is lesion; "hw": saved as it is
    two = torch.zeros(2, 4, 3)
    two[1, 0, 2] = 1.0
    everything = SavePredictionsHandler(str(tmp_path / "all"), spatial_order="hw")
    engine = Engine(lambda e, b: [{"pred": two}])
    everything.attach(engine)
    engine.run([batch(["c.jpg"])], max_epochs=1)
    saved = np.asarray(Image.open(tmp_path / "all" / "c.png"))
    assert saved.shape == (4, 3) and saved.sum() == 255 and saved[0, 2] == 255
    with pytest.raises(TypeError, match="list of file names"):
        SavePredictionsHandler(str(tmp_path), cases="a.png")
    with pytest.raises(ValueError, match="spatial_order"):
        SavePredictionsHandler(str(tmp_path), spatial_order="xy")


def test_saved_prediction_of_a_loaded_mask_is_the_mask_file(tmp_path):
    """Orientation end to end: a non-square mask loaded as every bundle loads it comes back as the same PNG."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    lab = np.zeros((10, 16), np.uint8)
    lab[1:4, 9:15] = 255
    _png(tmp_path / "m.png", lab)
    load = Compose([LoadImaged(keys="image", reader="PILReader", image_only=True), EnsureChannelFirstd(keys="image")])
    item = load({"image": str(tmp_path / "m.png")})
    assert tuple(item["image"].shape) == (1, 16, 10)  # PILReader: (W, H)
    engine = Engine(lambda e, b: [{"pred": item["image"] / 255.0}])
    SavePredictionsHandler(str(tmp_path / "pred")).attach(engine)
    engine.run([[item]], max_epochs=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pred" / "m.png")), lab)


def test_save_predictions_layer_keeps_every_bundle_run():
    layer = json.loads((REPO_ROOT / "common" / "configs" / "save_predictions.json").read_text())
    assert layer["run"][-1] == "$@validate#evaluator.run()"
    for bundle in sorted((REPO_ROOT / "bundles").iterdir()):
        if (bundle / "configs" / "evaluate.json").is_file():
            run = json.loads((bundle / "configs" / "evaluate.json").read_text())["run"]
            # the layer replaces `run` with an attach + this same call: it must stay the bundle's whole run list
            assert run == layer["run"][1:], f"{bundle.name}: evaluate.json run changed; update the layer"


# ------------------------------------------------------------------------------------------------ end to end
def test_report_end_to_end_on_unet_baseline_is_resumable(tmp_path, monkeypatch):
    steps = sys.modules["protocol_steps"]
    real = steps.run_in_process
    calls: list[list[str]] = []

    def counted(cmd, log_file):
        calls.append(cmd)
        return real(cmd, log_file)

    monkeypatch.setattr(steps, "run_in_process", counted)
    monkeypatch.setattr(steps, "run_logged", None)  # no subprocess with --in_process
    sizes = {"image_size": 32, "batch_size": 4, "val_batch_size": 4, "num_workers": 0, "progress_bar": False,
             "synthetic_image_size": 64, "synthetic_num_train": 8, "synthetic_num_val": 2, "synthetic_num_test": 3,
             "channels": "[4,8,16]", "strides": "[2,2]", "num_res_units": 1}  # fmt: skip
    out = tmp_path / "out"
    argv = ["--bundles", str(UNET), "--dataset_dir", str(tmp_path / "data"), "--synthetic", "chest_xray"]
    argv += ["--max_epochs", "1", "--protocols", "clean,corruption", "--corruptions", "dose_110", "--out", str(out)]
    argv += ["--baseline_lr_grid", "1e-3", "1e-2", "--overlay_cases", "2", "--in_process"]
    for k, v in sizes.items():
        argv += ["--extra", f"{k}={v}"]
    assert report.main(argv) == 0
    assert len(calls) == 4  # two trainings (the learning-rate grid), clean + one corruption for the chosen rate
    rep = json.loads((out / "report.json").read_text())
    chosen = rep["lr_grids"]["unet_baseline"]["chosen"]
    run = out / "runs" / "unet_baseline" / "seed0" / f"full_lr{chosen:g}"
    assert sorted(p.name for p in (run / "eval" / "predictions").iterdir()) == [c["name"] for c in rep["overlay_cases"]]
    assert (run / ".train_done.json").is_file() and (run / "logs" / "eval_dose_110.log").is_file()
    md = (out / "report.md").read_text()
    assert "## Baseline learning rate (unet_baseline)" in md and "| unet_baseline | 1 |" in md
    assert "PixelAccuracy" in md and "dose_110" in md
    for name in ("dice_per_bundle", "dice_vs_corruption", "overlays", "dice_per_site"):
        assert (out / f"{name}.png").is_file()
    # the second invocation redoes nothing and writes the same tables
    assert report.main(argv) == 0 and len(calls) == 4
    assert (out / "report.md").read_text().split("## Baseline")[1] == md.split("## Baseline")[1]
    # a changed setting in the same folder is refused, not mixed in
    assert report.main([a if a != "1" else "2" for a in argv]) == 1
