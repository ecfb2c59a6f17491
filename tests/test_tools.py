# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the measuring tools: ``common.utils.profiling``, ``tools/benchmark.py`` and ``tools/compare.py``.

The end-to-end tests run both tools as subprocesses on a toy bundle written into ``tmp_path`` (a 2-level MONAI UNet;
its "training" stores the datalist texts and its "evaluation" writes ``metrics.csv`` with Dice = fraction of test
items whose text is the one seen at training time, so a text ablation is visible in the numbers).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from monai.handlers import HausdorffDistance, MeanDice, MeanIoUHandler, MetricsSaver, SurfaceDistance, from_engine
from monai.handlers.utils import write_metrics_reports
from monai.networks.nets import UNet

from common.utils import count_forward_parameters, measure_latency, track_peak_memory
from conftest import REPO_ROOT


def _load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = _load_tool("benchmark")
compare = _load_tool("compare")


# ----------------------------------------------------------------------------------------------------------------------
# count_forward_parameters
# ----------------------------------------------------------------------------------------------------------------------
class _ToyNet(torch.nn.Module):
    """inp (4->8, 40) -> shared (8->8, 72) twice -> + pos_embed (8) -> head (8->2, 18); unused (8->1000, 9000)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(4, 8)
        self.shared = torch.nn.Linear(8, 8)
        self.block = torch.nn.Sequential(self.shared, torch.nn.ReLU(), self.shared)  # same module registered twice
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 8))  # read directly in this module's forward
        self.head = torch.nn.Linear(8, 2)
        self.unused = torch.nn.Linear(8, 1000)  # built, never called (as in the LViT / CausalCLIPSeg references)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.inp(x)) + self.pos_embed)


def test_count_forward_parameters_unused_and_shared() -> None:
    net = _ToyNet()
    c = count_forward_parameters(net, torch.rand(3, 4))
    assert c["forward"] == 40 + 72 + 8 + 18
    assert c["registered"] == 40 + 72 + 8 + 18 + 9000 == sum(p.numel() for p in net.parameters())
    assert c["unused"] == 9000
    assert c["unused_parameter_names"] == ["unused.bias", "unused.weight"]
    assert c["unused_modules"] == [{"name": "unused", "parameters": 9000}]
    assert c["by_executed_modules"] == c["forward"]  # every used parameter sits on an executed module here

    net.inp.requires_grad_(False)
    c = count_forward_parameters(net, torch.rand(3, 4))
    assert c["trainable"] == c["registered"] - 40
    assert c["forward_trainable"] == c["forward"] - 40


class _ReadsWeightWithoutCalling(torch.nn.Module):
    """Uses ``proj.weight`` through F.linear without calling ``proj`` (its bias, 5 elements, stays unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 5)
        self.attn = torch.nn.MultiheadAttention(embed_dim=4, num_heads=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x)  # calls F.multi_head_attention_forward with out_proj.weight, never out_proj()
        return F.linear(y, self.proj.weight)


def test_count_forward_parameters_sees_parameters_used_without_module_call() -> None:
    net = _ReadsWeightWithoutCalling()
    c = count_forward_parameters(net, torch.rand(2, 3, 4))
    attn = sum(p.numel() for p in net.attn.parameters())
    assert c["forward"] == attn + 20
    assert c["unused_parameter_names"] == ["proj.bias"]
    assert c["unused_modules"] == []  # proj's weight is used, so proj is not "never used"
    # the module hooks alone miss the weight read by F.linear and the never-called out_proj
    assert c["by_executed_modules"] == attn - sum(p.numel() for p in net.attn.out_proj.parameters())


class _TrainOnlyHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2))
        self.aux = torch.nn.Conv2d(2, 1, 1)  # deep-supervision style head: runs in training mode only
        self.tied = torch.nn.Embedding(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + self.tied.weight.sum()
        return y + self.aux(y) if self.training else y


def test_count_forward_parameters_modes_are_restored() -> None:
    net = _TrainOnlyHead().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 1, 8, 8) * 5
    c_eval = count_forward_parameters(net, x, training=False)
    c_train = count_forward_parameters(net, x, training=True)
    body, aux, tied = 20 + 4, 3, 6
    assert (c_eval["forward"], c_train["forward"]) == (body + tied, body + tied + aux)
    assert c_eval["unused_modules"] == [{"name": "aux", "parameters": 3}]
    assert c_train["training"] is True and net.training is False  # mode restored
    for k, v in net.state_dict().items():  # BatchNorm running stats untouched by the training-mode pass
        assert torch.equal(v, before[k]), k


def test_count_forward_parameters_rejects_non_module() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        count_forward_parameters(lambda x: x, torch.rand(1))


def test_measure_latency_and_peak_memory() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        time.sleep(0.003)

    r = measure_latency(fn, warmup=2, repeats=5)
    assert len(calls) == 7
    assert 3.0 <= r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
    assert r["repeats"] == 5 and r["warmup"] == 2 and r["synchronized"] is False
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(fn, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(fn, warmup=-1)

    with track_peak_memory("cpu") as mem:
        big = torch.ones(64, 1024, 1024, dtype=torch.uint8)  # 64 MiB, pages touched
        del big
    if not mem["reset"]:
        pytest.skip("peak RSS cannot be reset on this platform")
    assert mem["kind"] == "cpu_peak_rss"
    assert 60 <= mem["increase_mib"] <= 200
    assert mem["peak_mib"] >= mem["baseline_mib"] + 60


# ----------------------------------------------------------------------------------------------------------------------
# text ablation
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "texts",
    [
        [f"text {i}" for i in range(11)],
        ["a"] * 5 + ["b"] * 3 + ["c"] * 2,  # largest group = n / 2: every item can get a different text
        ["a"] * 7 + ["B  "] * 2 + ["b"],  # normalised duplicates; largest group > n / 2
        ["same"] * 4,
        ["x", "y"],
    ],
)
def test_derangement_no_item_keeps_its_text(texts: list[str]) -> None:
    src = compare.derangement_indices(texts, seed=5)
    assert sorted(src) == list(range(len(texts)))  # a permutation: every text used exactly once
    assert all(s != i for i, s in enumerate(src))  # no item keeps its own
    new = compare.derange_texts(texts, seed=5)
    assert new == [texts[s] for s in src]
    norm = [" ".join(t.lower().split()) for t in texts]
    largest = max(norm.count(t) for t in set(norm))
    same = sum(norm[i] == norm[s] for i, s in enumerate(src))
    assert same == max(0, 2 * largest - len(texts)) if largest < len(texts) else same == len(texts)


def test_derangement_is_seeded() -> None:
    texts = [f"t{i}" for i in range(20)]
    assert compare.derangement_indices(texts, 1) == compare.derangement_indices(texts, 1)
    assert compare.derangement_indices(texts, 1) != compare.derangement_indices(texts, 2)
    with pytest.raises(ValueError, match="at least 2"):
        compare.derangement_indices(["only one"], 0)


def _datalist() -> dict:
    def items(prefix: str, n: int) -> list[dict]:
        paths = [(f"{prefix}/img/{prefix}{i}.png", f"{prefix}/lab/{prefix}{i}.png") for i in range(n)]
        return [{"image": img, "label": lab, "text": f"{prefix} {i}"} for i, (img, lab) in enumerate(paths)]

    return {"name": "toy", "training": items("tr", 6), "validation": items("va", 3), "test": items("te", 4)}


def test_ablate_datalist_splits(tmp_path: Path) -> None:
    original = _datalist()
    snapshot = json.dumps(original)
    new, stats = compare.ablate_datalist(original, tmp_path, "test", seed=3, source="dl.json")
    assert json.dumps(original) == snapshot  # input not modified
    for split in ("training", "validation"):  # untouched texts, absolute paths
        assert [e["text"] for e in new[split]] == [e["text"] for e in original[split]]
        assert all(e["image"] == str(tmp_path.resolve() / o["image"]) for e, o in zip(new[split], original[split]))
    assert all(n["text"] != o["text"] for n, o in zip(new["test"], original["test"]))
    assert sorted(e["text"] for e in new["test"]) == sorted(e["text"] for e in original["test"])
    assert stats == {"test": {"items": 4, "same_text": 0}}
    assert new["text_ablation"] == {"source": "dl.json", "mode": "test", "seed": 3, "splits": ["test"]}
    assert compare.ablate_datalist(original, tmp_path, "test", seed=3)[0]["test"] == new["test"]

    new_all, stats_all = compare.ablate_datalist(original, tmp_path, "all", seed=3)
    assert set(stats_all) == {"training", "validation", "test"}
    for split in stats_all:
        assert all(n["text"] != o["text"] for n, o in zip(new_all[split], original[split]))

    with pytest.raises(ValueError, match="'test' list"):
        compare.ablate_datalist({"training": original["training"]}, tmp_path, "test")
    broken = _datalist()
    broken["test"][2]["text"] = " "
    with pytest.raises(ValueError, match="split 'test' entry 2"):
        compare.ablate_datalist(broken, tmp_path, "test")


# ----------------------------------------------------------------------------------------------------------------------
# metrics.csv
# ----------------------------------------------------------------------------------------------------------------------
def test_read_metrics_csv_written_by_metrics_saver(tmp_path: Path) -> None:
    pred = torch.zeros(2, 1, 16, 16)
    label = torch.zeros(2, 1, 16, 16)
    pred[0, 0, 4:10, 4:10] = 1
    label[0, 0, 5:12, 4:10] = 1
    pred[1, 0, 2:6, 2:6] = 1
    label[1, 0, 2:6, 3:8] = 1

    engine = Engine(lambda e, b: {"pred": pred, "label": label})
    transform = from_engine(["pred", "label"])
    MeanDice(output_transform=transform).attach(engine, "Dice")
    MeanIoUHandler(output_transform=transform).attach(engine, "IoU")
    HausdorffDistance(percentile=95, output_transform=transform).attach(engine, "HD95")
    SurfaceDistance(symmetric=True, output_transform=transform).attach(engine, "ASSD")
    MetricsSaver(save_dir=str(tmp_path / "eval"), metrics="*").attach(engine)
    engine.run([0], max_epochs=1)

    parsed = compare.read_metrics_csv(tmp_path / "eval" / "metrics.csv")
    assert list(parsed) == ["Dice", "IoU", "HD95", "ASSD"]
    for name, value in engine.state.metrics.items():
        assert parsed[name] == pytest.approx(float(value), rel=1e-6), name
    assert 0.0 < parsed["IoU"] < parsed["Dice"] < 1.0


def test_read_metrics_csv_formats_and_errors(tmp_path: Path) -> None:
    write_metrics_reports(
        tmp_path / "tab",
        None,
        {"Dice": torch.tensor(0.8125), "HD95": float("nan"), "ASSD": torch.tensor(1.5e-3, dtype=torch.float64)},
        None,
        None,
        deli="\t",
    )
    parsed = compare.read_metrics_csv(tmp_path / "tab" / "metrics.csv")
    assert parsed["Dice"] == 0.8125 and parsed["ASSD"] == pytest.approx(1.5e-3)
    assert parsed["HD95"] != parsed["HD95"]  # nan

    bad = tmp_path / "bad.csv"
    bad.write_text("Dice,tensor([0.5, 0.6])\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: metric 'Dice'"):
        compare.read_metrics_csv(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        compare.read_metrics_csv(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------------------------------------------------
# toy bundle, benchmark.py and compare.py end to end
# ----------------------------------------------------------------------------------------------------------------------
UNET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [4, 8], "strides": [2], "num_res_units": 1}
IMPORTS = ["$import os", "$import json", "$import torch", "$import monai"]


def _write_toy_bundle(root: Path) -> Path:
    """A bundle with the contract's files; train/evaluate do no learning, they only pass texts to metrics.csv."""
    (root / "configs").mkdir(parents=True)
    network_def = {"_target_": "monai.networks.nets.UNet", **UNET}
    inference = {"bundle_root": ".", "device": "$torch.device('cpu')", "network_def": network_def}
    tensor = {"type": "image", "num_channels": 1, "spatial_shape": [32, 32], "dtype": "float32", "value_range": [0, 1]}
    metadata = {
        "version": "0.1.0",
        "network_data_format": {
            "inputs": {"image": {**tensor, "format": "magnitude"}},
            "outputs": {"pred": {**tensor, "format": "segmentation"}},
        },
    }
    train = {
        "imports": IMPORTS,
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "dataset_dir": "/nonexistent",
        "output_dir": "$@bundle_root + '/runs'",
        "datalist_file": "$@dataset_dir + '/datalist.json'",
        "max_epochs": 1,
        "seed": 0,
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "monai.losses.DiceCELoss", "sigmoid": True},
        "optimizer": {"_target_": "torch.optim.AdamW", "params": "$@network.parameters()", "lr": 1e-3},
        "datalist": "$json.load(open(@datalist_file))",
        "texts": "${os.path.basename(d['image']): d['text'] for s in ('training', 'test') for d in @datalist[s]}",
        "run": [
            "$os.makedirs(os.path.join(@output_dir, 'models'), exist_ok=True)",
            "$torch.save({'texts': @texts, 'epochs': @max_epochs, 'seed': @seed}, "
            "os.path.join(@output_dir, 'models', 'model.pt'))",
        ],
    }
    evaluate = {
        "imports": IMPORTS,
        "ckpt": "$torch.load(os.path.join(@output_dir, 'models', 'model.pt'))",
        "hits": "$[@ckpt['texts'].get(os.path.basename(d['image'])) == d['text'] for d in @datalist['test']]",
        "run": [
            "$monai.handlers.utils.write_metrics_reports(os.path.join(@output_dir, 'eval'), None, "
            "{'Dice': sum(@hits) / len(@hits), 'IoU': 0.25, 'HD95': float(@ckpt['epochs']), "
            "'ASSD': float(@ckpt['seed'])}, None, None)"
        ],
    }
    for name, content in [("inference", inference), ("metadata", metadata), ("train", train), ("evaluate", evaluate)]:
        (root / "configs" / f"{name}.json").write_text(json.dumps(content, indent=4))
    return root


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_build_inputs_follows_metadata_order_and_ranges() -> None:
    desc = {
        "image": {"num_channels": 3, "spatial_shape": ["16*n", "16*n"], "dtype": "float32", "value_range": [-1, 1]},
        "text": {"num_channels": 1, "spatial_shape": [77], "dtype": "int64", "value_range": [5, 9]},
        "text_emb": {"num_channels": 768, "spatial_shape": [10], "dtype": "float32", "value_range": [0, 1]},
    }
    gen = torch.Generator().manual_seed(0)
    values, described = benchmark.build_inputs(desc, 2, image_size=48, generator=gen)
    assert [d["name"] for d in described] == ["image", "text", "text_emb"]
    assert [tuple(v.shape) for v in values] == [(2, 3, 48, 48), (2, 77), (2, 10, 768)]
    assert values[1].dtype == torch.int64 and int(values[1].min()) >= 5 and int(values[1].max()) <= 9
    assert set(values[1].unique().tolist()) == {5, 6, 7, 8, 9}  # inclusive range
    assert float(values[0].min()) >= -1 and float(values[0].min()) < -0.9  # scaled into value_range
    values, _ = benchmark.build_inputs(desc, 1, image_size=32, input_shapes={"text": [1, 77]})
    assert tuple(values[1].shape) == (1, 1, 77)
    with pytest.raises(ValueError, match="16\\*n"):
        benchmark.build_inputs(desc, 1)  # symbolic image size without --image_size
    with pytest.raises(ValueError, match="value_range"):
        benchmark.build_inputs({"image": desc["image"], "ids": {**desc["text"], "value_range": None}}, 1, 32)


def test_train_components_fallback_is_reported(tmp_path: Path) -> None:
    bundle = _write_toy_bundle(tmp_path / "toy")
    net = UNet(**UNET)
    loss, opt, info = benchmark.make_train_components(bundle, net, torch.device("cpu"))
    assert info["loss_source"] == "train.json#loss" and type(loss).__name__ == "DiceCELoss"
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["params"][0] is next(net.parameters())
    config = json.loads((bundle / "configs" / "train.json").read_text())
    del config["loss"]
    (bundle / "configs" / "train.json").write_text(json.dumps(config))
    loss, opt, info = benchmark.make_train_components(bundle, net, torch.device("cpu"))
    assert info["loss_source"] == "fallback" and "no 'loss' key" in info["loss_fallback_reason"]
    assert info["optimizer_source"] == "train.json#optimizer"
    # fallback = BCE-with-logits on the first output; a (B, 1) binary label becomes one-hot for a 2-channel output
    logits = torch.randn(2, 2, 4, 4)
    label = (torch.rand(2, 1, 4, 4) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits, torch.cat([1 - label, label], dim=1))
    assert torch.allclose(loss([logits, torch.randn(2, 2, 2, 2)], label), expected)


def test_benchmark_end_to_end(tmp_path: Path) -> None:
    bundle = _write_toy_bundle(tmp_path / "toy")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "tools/benchmark.py", str(bundle), "--device", "cpu", "--repeats", "2", "--warmup", "1"]
    proc = _run(cmd + ["--image_size", "32", "--threads", "1", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| cpu | fp32 | 8 |" in proc.stdout
    report = json.loads(out.read_text())
    n_params = sum(p.numel() for p in UNet(**UNET).parameters())
    p = report["parameters"]
    assert p["forward_eval"] == p["forward_train"] == p["registered"] == p["trainable"] == n_params
    assert report["inputs"] == [{"name": "image", "shape": ["B", 1, 32, 32], "dtype": "float32", "value_range": [0, 1]}]
    assert report["training_setup"]["loss_source"] == "train.json#loss"
    assert report["training_setup"]["optimizer"] == "AdamW"
    assert report["environment"]["torch_threads"] == 1
    assert [(r["device"], r["precision"], r["batch_size"]) for r in report["results"]] == [
        ("cpu", "fp32", 1),
        ("cpu", "fp32", 8),
    ]
    for row in report["results"]:
        for phase in ("inference", "train_step"):
            assert row[phase]["median_ms"] > 0 and row[phase]["repeats"] == 2
            assert row[phase]["peak_memory"]["peak_mib"] > 0


def _toy_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "datalist.json").write_text(json.dumps(_datalist()))
    return data


def test_compare_end_to_end(tmp_path: Path) -> None:
    """Real ``python -m monai.bundle run`` subprocesses (train, then train+evaluate) on the toy bundle."""
    bundle = _write_toy_bundle(tmp_path / "toy")
    data = _toy_data(tmp_path)
    out = tmp_path / "cmp"
    cmd = [sys.executable, "tools/compare.py", "--bundles", str(bundle), "--dataset_dir", str(data)]
    cmd += ["--datalist_file", str(data / "datalist.json"), "--max_epochs", "2", "--seed", "7", "--out", str(out)]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "compare.json").read_text())
    assert [r["condition"] for r in report["runs"]] == ["original"]
    run = report["runs"][0]
    # max_epochs and seed reached the bundle (the toy stores them and reports them as HD95 / ASSD)
    assert run["metrics"] == {"Dice": 1.0, "IoU": 0.25, "HD95": 2.0, "ASSD": 7.0}
    assert run["output_dir"] == str(out.resolve() / "toy") and run["train_seconds"] > 0
    table = (out / "compare.md").read_text()
    assert "| toy | original | 1.0000 | 0.2500 | 2.00 | 7.00 |" in table
    assert "| bundle | text condition | Dice | IoU | HD95 | ASSD | train time |" in proc.stdout
    # a second run refuses to overwrite results unless asked
    proc = _run(cmd)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


@pytest.mark.parametrize("mode", ["test", "all"])
def test_compare_text_ablation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Orchestration of the ablations with the subprocess replaced by an in-process imitation of the toy bundle.

    As in the toy bundle, "training" stores the texts it saw and "evaluation" scores Dice = fraction of test items
    whose text is the stored one: 0 when a model trained on original texts meets shuffled test texts (``test``),
    1 when training and evaluation both saw the same shuffled texts (``all``).
    """
    bundle = _write_toy_bundle(tmp_path / "toy")
    data = _toy_data(tmp_path)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], log_file: Path, cwd: Path = REPO_ROOT) -> float:
        calls.append(cmd)
        output_dir = Path(cmd[cmd.index("--output_dir") + 1])
        datalist = json.loads(Path(cmd[cmd.index("--datalist_file") + 1]).read_text())
        texts = {Path(d["image"]).name: d["text"] for d in datalist["test"]}
        if "evaluate.json" in cmd[cmd.index("--config_file") + 1]:
            seen = json.loads((output_dir / "models" / "texts.json").read_text())
            dice = sum(seen[k] == v for k, v in texts.items()) / len(texts)
            write_metrics_reports(output_dir / "eval", None, {"Dice": dice, "IoU": 0.4, "HD95": 3.0}, None, None)
        else:
            (output_dir / "models").mkdir(parents=True)
            (output_dir / "models" / "texts.json").write_text(json.dumps(texts))
        return 1.5

    monkeypatch.setattr(compare, "run_logged", fake_run)
    out = tmp_path / "o"
    argv = ["--bundles", str(bundle), "--dataset_dir", str(data), "--max_epochs", "1", "--out", str(out)]
    # no --datalist_file: the bundle's own datalist_file item is evaluated with --dataset_dir
    rc = compare.main(argv + ["--text_ablation", mode, "--extra", "train#dataloader#num_workers=0"])
    assert rc == 1  # ASSD missing from metrics.csv: reported after the outputs are written
    ablated_file = str((out / f"datalist_shuffled_{mode}.json").resolve())
    kinds = [("evaluate" if "evaluate.json" in c[c.index("--config_file") + 1] else "train") for c in calls]
    datalists = [c[c.index("--datalist_file") + 1] for c in calls]
    original_file = str(data / "datalist.json")
    if mode == "test":  # the original model is re-evaluated, not retrained
        assert kinds == ["train", "evaluate", "evaluate"]
        assert datalists == [original_file, original_file, ablated_file]
    else:
        assert kinds == ["train", "evaluate", "train", "evaluate"]
        assert datalists == [original_file] * 2 + [ablated_file] * 2
    assert all(c[-2:] == ["--train#dataloader#num_workers", "0"] for c in calls)
    assert calls[1][calls[1].index("--config_file") + 1] == repr(
        [str(bundle / "configs" / "train.json"), str(bundle / "configs" / "evaluate.json")]
    )
    assert Path(calls[-1][calls[-1].index("--output_dir") + 1]) == (out / "toy_ablated").resolve()
    report = json.loads((out / "compare.json").read_text())
    runs = {r["condition"]: r for r in report["runs"]}
    assert runs["original"]["metrics"]["Dice"] == 1.0
    ablated = runs[f"shuffled-{mode}"]
    assert ablated["metrics"]["Dice"] == (0.0 if mode == "test" else 1.0)
    assert ablated["train_reused_from"] == ("original" if mode == "test" else None)
    assert report["text_ablation_stats"]["test"] == {"items": 4, "same_text": 0}
    table = (out / "compare.md").read_text()
    suffix = "1.5 s (model of 'original')" if mode == "test" else "1.5 s"
    assert f"| toy | shuffled-{mode} | {ablated['metrics']['Dice']:.4f} | 0.4000 | 3.00 | missing | {suffix} |" in table


def test_run_logged_failure_shows_command_and_tail(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('line one'); print('boom', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(compare.SubprocessError) as info:
        compare.run_logged(cmd, tmp_path / "logs" / "x.log")
    message = str(info.value)
    assert "exit status 3" in message and shlex.join(cmd) in message  # the command line, copy-pasteable
    tail = message.split(f"lines of {tmp_path / 'logs' / 'x.log'}:")[1]
    assert "line one" in tail and "boom" in tail  # stdout and stderr both captured
