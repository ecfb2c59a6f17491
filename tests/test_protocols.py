# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Protocols every bundle can use (tools/protocols.md): test-time corruptions (BiCLIP section 3.4), low-data regimes
(section 3.3), leave-one-site-out (MCDRL section 5.1) and the metrics they tabulate (pixel accuracy, per-class Dice,
per-case site/class).

The tool tests run ``tools/corruption_eval.py`` and ``tools/leave_one_site_out.py`` on the real
``bundles/unet_baseline`` at tiny sizes with ``--in_process`` (each ``python -m monai.bundle run`` command runs as
``monai.bundle.run`` with the same arguments in this process), so the orchestration, the config layer, the bundle's
workflows and the tables are all exercised without interpreter start-ups.
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
from monai.handlers import from_engine

from common.data import training_subset
from common.data.subsets import LOW_DATA_FRACTIONS, nested_order, subset_size
from common.handlers import PerClassDiceHandler, PixelAccuracyHandler, write_per_case_table
from common.metrics.classwise import class_index_map, lesion_mask, per_class_dice, pixel_accuracy
from common.transforms.corruption import (
    CORRUPTIONS,
    Corruptiond,
    LowDoseNoised,
    MotionBlurd,
    corruption_rng,
    insert_after,
    low_dose_noise,
    motion_blur,
    motion_blur_kernel,
    parse_corruption,
)
from conftest import REPO_ROOT, load_tool

UNET = REPO_ROOT / "bundles" / "unet_baseline"
TINY = {
    "image_size": 32,
    "batch_size": 4,
    "val_batch_size": 4,
    "num_workers": 0,
    "progress_bar": False,
    "synthetic_image_size": 64,
    "channels": [4, 8, 16],
    "strides": [2, 2],
    "num_res_units": 1,
}


_tool = load_tool


# ----------------------------------------------------------------------------------------------- corruptions
def test_corruption_names():
    assert CORRUPTIONS == ("none", "dose_140", "dose_120", "dose_110", "blur_k3", "blur_k5", "blur_k7")
    assert parse_corruption("dose_140") == ("dose", 140) and parse_corruption("blur_k7") == ("blur", 7)
    for bad in ("dose_0", "blur_k4", "gauss", "dose_x"):
        with pytest.raises(ValueError, match="not valid"):
            parse_corruption(bad)
    with pytest.raises(ValueError, match="key 'corruption'"):
        Corruptiond("image", "blur_k2")


def test_low_dose_noise_is_poisson_of_dose_times_intensity():
    x = torch.full((1, 200, 200), 0.5)
    x[:, :100] = 0.2
    for dose in (140, 110):
        # the exact formula: clip(Poisson(dose * x) / dose, 0, 1) with the same generator
        out = low_dose_noise(x, dose, np.random.default_rng(3))
        expected = np.clip(np.random.default_rng(3).poisson(x.numpy() * dose) / dose, 0, 1)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
        # its moments: unbiased, variance x / dose (Poisson: variance = mean)
        for rows, level in ((slice(0, 100), 0.2), (slice(100, 200), 0.5)):
            region = out[0, rows].double()
            assert abs(region.mean().item() - level) < 0.01
            assert region.var().item() == pytest.approx(level / dose, rel=0.05)
    # lower dose, stronger noise
    std = {d: (low_dose_noise(x, d, np.random.default_rng(0)) - x).std().item() for d in (140, 120, 110)}
    assert std[140] < std[120] < std[110]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        low_dose_noise(x * 255, 140, np.random.default_rng(0))


def test_motion_blur_kernel_is_a_normalised_line():
    k5 = motion_blur_kernel(5, 0.0)
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[2] = 0.2
    torch.testing.assert_close(k5, expected)
    vertical = torch.zeros(3, 3, dtype=torch.float64)
    vertical[:, 1] = 1 / 3
    torch.testing.assert_close(motion_blur_kernel(3, 90.0), vertical)
    for size in (3, 5, 7):
        for angle in (0.0, 30.0, 45.0, 117.0):
            k = motion_blur_kernel(size, angle)
            assert k.shape == (size, size) and k.min() >= 0 and k.sum().item() == pytest.approx(1.0)
            torch.testing.assert_close(k, k.flip(0, 1))  # point-symmetric about the centre
    k45 = motion_blur_kernel(5, 45.0)  # counter-clockwise: from bottom-left to top-right (anti-diagonal)
    off = [(i, j) for i in range(5) for j in range(5) if i + j != 4]
    assert all(k45[i, j] == 0 for i, j in off) and all(k45[i, 4 - i] > 0 for i in range(5))
    with pytest.raises(ValueError, match="odd"):
        motion_blur_kernel(4, 0.0)


def test_motion_blur_convolves_and_keeps_constants():
    img = torch.zeros(1, 9, 9)
    img[0, 4, 4] = 1.0
    k = motion_blur_kernel(5, 30.0)
    out = motion_blur(img, k)
    torch.testing.assert_close(out[0, 2:7, 2:7].double(), k.flip(0, 1), atol=1e-6, rtol=0)  # impulse response
    const = torch.full((2, 8, 8), 0.3)
    torch.testing.assert_close(motion_blur(const, motion_blur_kernel(7, 10.0)), const)
    # a horizontal blur leaves a horizontal stripe alone and smears a vertical one over k columns
    stripes = torch.zeros(1, 16, 16)
    stripes[0, 8, :] = 1.0
    torch.testing.assert_close(motion_blur(stripes, motion_blur_kernel(5, 0.0)), stripes)
    stripes = stripes.transpose(1, 2).contiguous()
    blurred = motion_blur(stripes, motion_blur_kernel(5, 0.0))
    torch.testing.assert_close(blurred[0, 0, 6:11], torch.full((5,), 0.2))


def _meta_image(name: str, seed: int = 0) -> MetaTensor:
    g = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.rand(1, 24, 24, generator=g), meta={"filename_or_obj": f"/data/{name}"})


@pytest.mark.parametrize("name", ["dose_110", "blur_k5"])
def test_corruptions_are_deterministic_per_image(name):
    a, b = _meta_image("a.png", 0), _meta_image("b.png", 1)
    t = Corruptiond("image", name, seed=0)
    first = [t({"image": x})["image"] for x in (a, b)]
    again = [Corruptiond("image", name, seed=0)({"image": x})["image"] for x in (b, a)]  # other order, new object
    torch.testing.assert_close(first[0], again[1])
    torch.testing.assert_close(first[1], again[0])
    assert isinstance(first[0], MetaTensor) and first[0].meta["filename_or_obj"] == "/data/a.png"
    other_seed = Corruptiond("image", name, seed=1)({"image": a})["image"]
    assert not torch.allclose(first[0], other_seed)
    renamed = MetaTensor(a.as_tensor(), meta={"filename_or_obj": "/elsewhere/c.png"})
    assert not torch.allclose(first[0], t({"image": renamed})["image"])  # the name seeds the draw
    moved = MetaTensor(a.as_tensor(), meta={"filename_or_obj": "/elsewhere/a.png"})
    torch.testing.assert_close(first[0], t({"image": moved})["image"])  # the folder does not
    plain = a.as_tensor()  # no metadata: the bytes seed the draw
    torch.testing.assert_close(t({"image": plain})["image"], t({"image": plain.clone()})["image"])
    assert Corruptiond("image", "none")({"image": a})["image"] is a


def test_corruption_transforms_match_their_functions():
    a = _meta_image("x.png")
    out = LowDoseNoised("image", dose=120, seed=5)({"image": a})["image"]
    expected = low_dose_noise(a, 120, corruption_rng(5, a, salt="dose_120:image"))
    torch.testing.assert_close(out, expected)
    out = MotionBlurd("image", kernel_size=3, angle=60.0)({"image": a})["image"]
    torch.testing.assert_close(out, motion_blur(a, motion_blur_kernel(3, 60.0)))


def test_insert_after():
    class Resized:  # noqa: D401 - a stand-in with the right class name
        pass

    r1, r2, c = Resized(), Resized(), object()
    items = ["a", r1, "b", r2, "c"]
    assert insert_after(items, c, "Resized") == ["a", r1, "b", r2, c, "c"]
    assert items == ["a", r1, "b", r2, "c"]
    with pytest.raises(ValueError, match="corruption_after"):
        insert_after(["a"], c, "Resized")


def test_corruption_layer_changes_only_the_evaluation_images(tmp_path):
    from monai.bundle import ConfigParser

    def parsed(corruption: str) -> ConfigParser:
        p = ConfigParser()
        p.read_config(
            [str(UNET / "configs" / f) for f in ("train.json", "evaluate.json")]
            + [str(REPO_ROOT / "common/configs/corruption.json")]
        )
        overrides = {
            **TINY,
            "bundle_root": str(UNET),
            "dataset_dir": str(tmp_path / "d"),
            "output_dir": str(tmp_path / "o"),
        }
        overrides.update(synthetic_num_train=4, synthetic_num_val=2, synthetic_num_test=2, corruption=corruption)
        for k, v in overrides.items():
            p[k] = v
        return p

    clean, noisy = parsed("none"), parsed("dose_110")
    assert clean.get_parsed_content("eval_dir") == str(tmp_path / "o") + "/eval"
    assert noisy.get_parsed_content("eval_dir") == str(tmp_path / "o") + "/eval_dose_110"
    names = [type(t).__name__ for t in noisy.get_parsed_content("validate#preprocessing").transforms]
    assert names.index("Corruptiond") == names.index("Resized") + 1
    item_clean = clean.get_parsed_content("validate#dataset")[0]
    item_noisy, item_again = (
        noisy.get_parsed_content("validate#dataset")[0],
        parsed("dose_110").get_parsed_content("validate#dataset")[0],
    )
    torch.testing.assert_close(item_clean["label"], item_noisy["label"])  # masks untouched
    assert not torch.allclose(item_clean["image"], item_noisy["image"])
    torch.testing.assert_close(item_noisy["image"], item_again["image"])  # deterministic across parses
    assert item_noisy["image"].shape == (1, 32, 32)
    train_names = [type(t).__name__ for t in noisy.get_parsed_content("train#preprocessing").transforms]
    assert "Corruptiond" not in train_names


def test_per_class_dice_layer_adds_the_handler():
    from monai.bundle import ConfigParser

    mcdrl = REPO_ROOT / "bundles" / "mcdrl"
    bundle = mcdrl if (mcdrl / "configs" / "metadata.json").is_file() else UNET
    layer = str(REPO_ROOT / "common" / "configs" / "per_class_dice.json")
    p = ConfigParser()
    p.read_config([str(bundle / "configs" / f) for f in ("train.json", "evaluate.json")] + [layer])
    p["bundle_root"] = str(bundle)
    metrics = p.get_parsed_content("validate#additional_metrics")
    assert isinstance(metrics["ClassDice"], PerClassDiceHandler) and metrics["ClassDice"].metric_fn.num_classes == 5
    assert set(metrics) >= {"IoU", "HD95", "ASSD", "PixelAccuracy"}  # the shared metrics stay


# ------------------------------------------------------------------------------------------------ low data
def _items(n: int, sites: int = 5) -> list[dict]:
    return [{"image": f"/x/img_{i:04d}.png", "label": f"/x/m_{i:04d}.png", "site": f"s{i % sites}"} for i in range(n)]


def test_subset_sizes_match_the_paper():
    # BiCLIP Table 2 #Images: QaTa-COV19 (5716 training images) and MosMedData+ (2183)
    assert [subset_size(5716, f) for f in LOW_DATA_FRACTIONS] == [1429, 572, 286, 57]
    assert [subset_size(2183, f) for f in LOW_DATA_FRACTIONS] == [546, 218, 109, 22]
    assert subset_size(10, 0.01) == 1 and subset_size(10, 1.0) == 10
    for bad in (0.0, 1.5, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="train_fraction"):
            subset_size(10, bad)


@pytest.mark.parametrize("stratify", ["site", None])
def test_low_data_subsets_are_nested_and_deterministic(stratify):
    items = _items(403)
    subsets = {f: training_subset(items, f, seed=3, stratify_key=stratify) for f in (1.0, *LOW_DATA_FRACTIONS)}
    names = {f: [e["image"] for e in s] for f, s in subsets.items()}
    fractions = (1.0, *LOW_DATA_FRACTIONS)
    for big, small in zip(fractions, fractions[1:]):
        assert set(names[small]) < set(names[big]), (big, small)
    assert [len(names[f]) for f in fractions] == [403, 101, 40, 20, 4]
    # same seed, any input order: the same subset (kept in input order)
    shuffled = list(reversed(items))
    assert sorted(e["image"] for e in training_subset(shuffled, 0.1, seed=3, stratify_key=stratify)) == sorted(
        names[0.1]
    )
    assert [e["image"] for e in training_subset(items, 0.1, seed=3, stratify_key=stratify)] == names[0.1]
    assert names[0.1] == sorted(names[0.1])
    assert set(e["image"] for e in training_subset(items, 0.1, seed=4, stratify_key=stratify)) != set(names[0.1])


def test_low_data_subsets_are_stratified_by_site():
    items = _items(500, sites=5)[:470]  # sites of sizes 94 each
    items += [{"image": f"/y/{i}.png", "label": f"/y/m{i}.png", "site": "small"} for i in range(30)]  # 6 %
    for f in (0.25, 0.1, 0.05):
        for seed in range(5):
            subset = training_subset(items, f, seed=seed)
            k = len(subset)
            for site in {e["site"] for e in items}:
                n_site = sum(e["site"] == site for e in items)
                got = sum(e["site"] == site for e in subset)
                assert abs(got - k * n_site / len(items)) < 2.0, (f, seed, site, got)
    # without all sites known, no stratification (and no error)
    items[0] = {k: v for k, v in items[0].items() if k != "site"}
    assert len(training_subset(items, 0.1)) == 50
    with pytest.raises(ValueError, match="groups"):
        nested_order(items, groups=["a"])


def test_train_fraction_key_in_every_bundle(tmp_path):
    from monai.bundle import ConfigParser

    for bundle in ("unet_baseline", "lvit", "causalclipseg"):
        train = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "train.json").read_text())
        assert train["train_fraction"] == 1.0
        assert (
            "common.data.training_subset(common.data.load_datalist(@datalist_file, 'training'), @train_fraction, seed=@seed)"
            in json.dumps(train["train"])
        )
    p = ConfigParser()
    p.read_config(str(UNET / "configs" / "train.json"))
    for k, v in {
        **TINY,
        "bundle_root": str(UNET),
        "dataset_dir": str(tmp_path / "d"),
        "synthetic_num_train": 20,
        "synthetic_num_val": 2,
        "synthetic_num_test": 2,
        "train_fraction": 0.25,
        "seed": 1,
    }.items():
        p[k] = v
    data = p.get_parsed_content("train#dataset#data")
    full = p.get_parsed_content("datalist_file")
    from common.data import load_datalist

    expected = training_subset(load_datalist(full, "training"), 0.25, seed=1)
    assert len(data) == 5 and [e["image"] for e in data] == [e["image"] for e in expected]


# ------------------------------------------------------------------------------------------------- metrics
def test_pixel_accuracy_binary_and_multiclass():
    pred = torch.zeros(2, 1, 4, 4)
    gt = torch.zeros(2, 1, 4, 4)
    gt[0, 0, :2] = 1  # 8 lesion pixels
    pred[0, 0, :1] = 1  # 4 of them found
    torch.testing.assert_close(pixel_accuracy(pred, gt), torch.tensor([[0.75], [1.0]]))
    # K classes: one-hot prediction vs index label; a right mask with the wrong class is wrong
    idx = torch.zeros(1, 1, 2, 2)
    idx[0, 0, 0] = 2
    onehot = torch.zeros(1, 3, 2, 2)
    onehot[0, 1, 0] = 1
    onehot[0, 0, 1] = 1
    torch.testing.assert_close(pixel_accuracy(onehot, idx), torch.tensor([[0.5]]))
    torch.testing.assert_close(lesion_mask(onehot), (idx > 0).float())
    assert class_index_map(onehot).tolist() == [[[[1, 1], [0, 0]]]]


def test_per_class_dice_definition():
    gt = torch.zeros(2, 1, 4, 4)
    pred = torch.zeros(2, 1, 4, 4)
    gt[0, 0, :1] = 2  # image 0: class 2, 4 pixels
    pred[0, 0, :2] = 2  # predicted 8 pixels of class 2 -> Dice 2*4/12
    pred[0, 0, 3, 0] = 1  # a false class-1 pixel -> class 1 Dice 0 (present in one map only)
    gt[1, 0, 2:] = 3  # image 1: class 3, predicted as class 1
    pred[1, 0, 2:] = 1
    d = per_class_dice(pred, gt, num_classes=3)
    assert d[0, 0].item() == 0.0 and d[0, 1].item() == pytest.approx(2 / 3) and math.isnan(d[0, 2].item())
    assert d[1, 0].item() == 0.0 and math.isnan(d[1, 1].item()) and d[1, 2].item() == 0.0
    # one-hot input gives the same values
    onehot = torch.nn.functional.one_hot(pred[:, 0].long(), 4).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(per_class_dice(onehot, gt, 3), d, equal_nan=True)
    with pytest.raises(ValueError, match="0..2"):
        per_class_dice(pred, gt, num_classes=2)


def test_classwise_handlers_in_an_engine():
    batches = []
    for v in (0.0, 1.0):
        pred = torch.zeros(1, 3, 4, 4)
        pred[:, 0] = 1
        label = torch.zeros(1, 1, 4, 4)
        label[0, 0, :2] = 1 + v  # class 1 then class 2, half the image
        pred[0, 0, :2] = 0
        pred[0, int(1 + v), :2] = 1  # right
        batches.append({"pred": pred, "label": label})
    batches[1]["pred"][0, 2, 0] = 0  # image 1: one row predicted background
    batches[1]["pred"][0, 0, 0] = 1

    engine = Engine(lambda e, b: b)
    PixelAccuracyHandler(output_transform=from_engine(["pred", "label"])).attach(engine, "PixelAccuracy")
    PerClassDiceHandler(num_classes=2, output_transform=from_engine(["pred", "label"])).attach(engine, "ClassDice")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["PixelAccuracy"] == pytest.approx((1.0 + 12 / 16) / 2)
    assert engine.state.metrics["ClassDice"] == pytest.approx((1.0 + 2 * 4 / 12) / 2)  # NaN entries skipped
    details = engine.state.metric_details["ClassDice"]
    assert details.shape == (2, 2) and math.isnan(details[0, 1].item()) and math.isnan(details[1, 0].item())


def test_per_case_table_carries_site_and_class(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    datalist = {
        "training": [],
        "test": [
            {"image": "img/a.png", "label": "m/a.png", "text": "t", "site": "s1", "class": "polyp"},
            {"image": "img/b.png", "label": "m/b.png", "text": "t", "site": "s2"},
        ],
    }
    (data / "datalist.json").write_text(json.dumps(datalist))
    ev = tmp_path / "eval"
    ev.mkdir()
    a, b = str(data / "img" / "a.png"), str(data / "img" / "b.png")
    (ev / "Dice_raw.csv").write_text(f"filename,class0\n{a},0.5\n{b},1.0\n")
    (ev / "PixelAccuracy_raw.csv").write_text(f"filename,class0\n{a},0.9\n{b},0.8\n")
    out = write_per_case_table(
        str(ev), ["Dice", "PixelAccuracy"], datalist_file=str(data / "datalist.json"), split="test"
    )
    rows = list(csv.reader(open(out)))
    assert rows == [
        ["filename", "site", "class", "Dice", "PixelAccuracy"],
        [a, "s1", "polyp", "0.5", "0.9"],
        [b, "s2", "", "1.0", "0.8"],
    ]
    with pytest.raises(ValueError, match="split"):
        write_per_case_table(str(ev), ["Dice"], datalist_file=str(data / "datalist.json"))


# --------------------------------------------------------------------------------------------------- tools
def _counting_in_process(calls: list[list[str]]):
    """``protocol_steps.run_in_process`` (the tools' ``--in_process`` runner), recording each command."""
    steps = sys.modules["protocol_steps"]
    real = steps.run_in_process

    def counted(cmd: list[str], log_file: Path) -> float:
        calls.append(cmd)
        return real(cmd, log_file)

    return counted


def _extra(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        out += ["--extra", f"{k}={json.dumps(v) if isinstance(v, list) else v}"]
    return out


def test_corruption_eval_table_for_unet_baseline(tmp_path, monkeypatch):
    tool = _tool("corruption_eval")
    steps = sys.modules["protocol_steps"]
    calls: list[list[str]] = []
    monkeypatch.setattr(steps, "run_in_process", _counting_in_process(calls))
    monkeypatch.setattr(steps, "run_logged", None)  # no subprocess with --in_process
    sizes = {**TINY, "synthetic_num_train": 8, "synthetic_num_val": 2, "synthetic_num_test": 3}
    argv = ["--bundles", str(UNET), "--dataset_dir", str(tmp_path / "data"), "--synthetic", "chest_xray"]
    argv += ["--max_epochs", "1", "--out", str(tmp_path / "out"), "--corruptions", "none", "dose_110", "blur_k7"]
    argv += [*_extra(sizes), "--in_process"]
    assert tool.main(argv) == 0
    assert len(calls) == 4  # one training, three evaluations
    assert calls[1][5].endswith("corruption.json']") and "--corruption" in calls[2]
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "corruption.csv")))
    assert [r["corruption"] for r in rows] == ["none", "dose_110", "blur_k7"]
    assert all(r["bundle"] == "unet_baseline" and 0.0 <= float(r["PixelAccuracy"]) <= 1.0 for r in rows)
    for name in ("eval", "eval_dose_110", "eval_blur_k7"):
        header = next(csv.reader(open(out / "unet_baseline" / name / "per_case.csv")))
        assert header[:8] == ["filename", "site", "class", "Dice", "IoU", "HD95", "ASSD", "PixelAccuracy"]
        assert "TextConsistency" in header  # the text-mask consistency scores follow the overlap metrics
    md = (out / "corruption.md").read_text()
    assert "| unet_baseline | dose_110 |" in md and "Motion blur" in md
    # resumable: the same command reruns nothing
    assert tool.main(argv) == 0 and len(calls) == 4
    # another setting in the same folder is refused, not mixed in
    assert tool.main([a if a != "1" else "2" for a in argv]) == 1


def test_loso_folds(tmp_path):
    tool = _tool("leave_one_site_out")
    entry = lambda i, site, split: {
        "image": f"{split}_{i}.png",
        "label": f"m_{i}.png",
        "text": "t",
        "site": site,
    }  # noqa: E731
    datalist = {
        "training": [entry(i, f"s{i % 3}", "tr") for i in range(9)],
        "validation": [entry(i, f"s{i % 3}", "va") for i in range(3)],
        "test": [entry(i, f"s{i % 3}", "te") for i in range(6)],
    }
    folds = tool.fold_datalists(datalist, tmp_path)
    assert list(folds) == ["s0", "s1", "s2"]
    f0 = folds["s0"]
    assert {e["site"] for e in f0["training"] + f0["validation"]} == {"s1", "s2"}
    assert len(f0["test"]) == 3 + 1 + 2 and {e["site"] for e in f0["test"]} == {"s0"}
    assert f0["training"][0]["image"] == str(tmp_path / "tr_1.png")
    assert len(tool.fold_datalists(datalist, tmp_path, heldout_from="test")["s0"]["test"]) == 2
    assert list(tool.fold_datalists(datalist, tmp_path, sites=["s2"])) == ["s2"]
    with pytest.raises(ValueError, match="not in"):
        tool.fold_datalists(datalist, tmp_path, sites=["s9"])
    datalist["test"][0].pop("site")
    with pytest.raises(ValueError, match="no 'site'"):
        tool.fold_datalists(datalist, tmp_path)
    one = {"training": [entry(0, "a", "tr")], "validation": [entry(1, "a", "va")], "test": [entry(2, "a", "te")]}
    with pytest.raises(ValueError, match="at least 2 sites"):
        tool.fold_datalists(one, tmp_path)
    # one datalist per site
    for site in ("cvc", "kvasir"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "datalist.json").write_text(
            json.dumps({"training": [entry(0, "x", "tr")], "test": [entry(1, "x", "te")]})
        )
    merged = tool.merge_site_datalists({s: tmp_path / s / "datalist.json" for s in ("cvc", "kvasir")})
    assert [e["site"] for e in merged["training"]] == ["cvc", "kvasir"]
    assert merged["test"][1]["image"] == str(tmp_path / "kvasir" / "te_1.png")


def test_lesion_type_table_pools_folds():
    tool = _tool("leave_one_site_out")
    rows = [
        {"class": "polyp", "Dice": 0.5},
        {"class": "polyp", "Dice": 1.0},
        {"class": "cyst", "Dice": 0.2},
        {"class": "cyst", "Dice": float("nan")},
    ]
    table = tool.lesion_type_table(rows)
    assert table == pytest.approx({"cyst": 0.2, "polyp": 0.75, "Average": 0.475})
    with pytest.raises(ValueError, match="class"):
        tool.lesion_type_table([{"Dice": 1.0}])


def test_leave_one_site_out_on_synthetic_endoscopy(tmp_path, monkeypatch):
    tool = _tool("leave_one_site_out")
    steps = sys.modules["protocol_steps"]
    calls: list[list[str]] = []
    monkeypatch.setattr(steps, "run_in_process", _counting_in_process(calls))
    monkeypatch.setattr(steps, "run_logged", None)  # no subprocess with --in_process
    sizes = {**TINY, "synthetic_num_train": 10, "synthetic_num_val": 5, "synthetic_num_test": 5}
    argv = ["--bundles", str(UNET), "--dataset_dir", str(tmp_path / "data"), "--max_epochs", "1"]
    argv += ["--out", str(tmp_path / "out"), "--sites", "site_0", "site_3", *_extra(sizes), "--in_process"]
    assert tool.main(argv) == 0
    assert len(calls) == 4
    report = json.loads((tmp_path / "out" / "loso.json").read_text())
    per_site = report["per_site"]["unet_baseline"]
    assert list(per_site) == ["site_0", "site_3", "Average"]
    for m in ("Dice", "IoU", "PixelAccuracy"):
        assert per_site["Average"][m] == pytest.approx((per_site["site_0"][m] + per_site["site_3"][m]) / 2)
    fold = json.loads((tmp_path / "out" / "folds" / "site_0" / "datalist.json").read_text())
    assert {e["site"] for e in fold["training"]} == {"site_1", "site_2", "site_3", "site_4"}
    assert {e["site"] for e in fold["test"]} == {"site_0"} and len(fold["test"]) == 4  # 20 images, 5 sites
    types = report["per_lesion_type"]["unet_baseline"]
    pooled = []
    for site in ("site_0", "site_3"):
        pooled += list(csv.DictReader(open(tmp_path / "out" / "unet_baseline" / site / "eval" / "per_case.csv")))
    for c in {r["class"] for r in pooled}:
        vals = [float(r["Dice"]) for r in pooled if r["class"] == c]
        assert types[c] == pytest.approx(sum(vals) / len(vals))
    md = (tmp_path / "out" / "loso.md").read_text()
    assert "site_0 Dice | site_0 IoU | site_0 Acc" in md and "Dice per lesion type" in md
    assert tool.main(argv) == 0 and len(calls) == 4  # resumed: nothing redone


def test_in_process_failure_names_the_command(tmp_path):
    _tool("corruption_eval")
    steps = sys.modules["protocol_steps"]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(tmp_path / "missing.json")]
    with pytest.raises(steps.SubprocessError, match="missing.json"):
        steps.run_in_process(cmd, tmp_path / "log.txt")
    assert "missing.json" in (tmp_path / "log.txt").read_text()
    with pytest.raises(ValueError, match="monai.bundle run"):
        steps.run_in_process([sys.executable, "x.py"], tmp_path / "log.txt")
