# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The training data pipeline: the data-wait share (``common.handlers.DataWaitHandler``, ``tools/benchmark.py
--data_wait``) and the one caching key (``cache_mode``: memory | disk | none, ``common.data.make_dataset``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from PIL import Image

import common.handlers.data_wait as data_wait_module
from common.data import SafeCacheDataset, SafeDataset, SafePersistentDataset, make_dataset
from common.handlers import DataWaitHandler
from common.utils.errors import DataError
from conftest import REPO_ROOT
from test_bundles import tiny_overrides

UNET = REPO_ROOT / "bundles" / "unet_baseline"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("tools_benchmark_pipeline", REPO_ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------------
# DataWaitHandler: exact arithmetic on a fake clock
# ----------------------------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_data_wait_handler_shares_on_a_fake_clock(monkeypatch):
    """Batches cost 1, 2, 3, 4, 5 s to fetch, each step 3 s: after 2 warm-up iterations the wait is 3 + 4 + 5 of
    (3 + 4 + 5) + 3 * 3 seconds, and the engine stops after the 3 recorded iterations."""
    clock = _Clock()
    monkeypatch.setattr(data_wait_module, "time", clock)

    class Loader:
        def __iter__(self):
            for i in range(1, 9):
                clock.now += i
                yield i

    def step(engine, batch):
        clock.now += 3.0
        return batch

    engine = Engine(step)
    timer = DataWaitHandler(warmup=2, iterations=3)
    timer.attach(engine)
    engine.run(Loader(), max_epochs=1)
    summary = timer.summary()
    assert engine.state.iteration == 5
    assert summary["iterations"] == 3
    assert timer.wait_s == [3.0, 4.0, 5.0]
    assert timer.iteration_s == [6.0, 7.0, 8.0]
    assert summary["data_wait_share"] == pytest.approx(12.0 / 21.0)
    assert summary["data_wait_median_ms"] == pytest.approx(4000.0)
    assert summary["iteration_median_ms"] == pytest.approx(7000.0)


def test_data_wait_handler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup"):
        DataWaitHandler(warmup=-1)
    with pytest.raises(ValueError, match="iterations"):
        DataWaitHandler(iterations=0)


# ----------------------------------------------------------------------------------------------------------------------
# tools/benchmark.py --data_wait on the real unet_baseline pipeline, tiny
# ----------------------------------------------------------------------------------------------------------------------
def _override_args(over: dict) -> list[str]:
    args = []
    for key, value in over.items():
        args += ["--override", f"{key}={value!r}" if not isinstance(value, str) else f"{key}={value}"]
    return args


def test_benchmark_data_wait_unet_baseline(tmp_path, capsys):
    benchmark = _load_benchmark()
    over = tiny_overrides("unet_baseline", tmp_path / "data", tmp_path / "unused")
    for key in ("bundle_root", "output_dir", "image_size", "batch_size"):
        over.pop(key)
    out = tmp_path / "bench.json"
    argv = [str(UNET), "--device", "cpu", "--batch_sizes", "2", "--repeats", "1", "--warmup", "1", "--threads", "1"]
    argv += ["--image_size", "32", "--data_wait", "--data_wait_iters", "2", "--out", str(out), *_override_args(over)]
    assert benchmark.main(argv) == 0
    text = capsys.readouterr().out
    assert "| data wait | loader + step median ms | loader (cache_mode, workers) |" in text
    report = json.loads(out.read_text())
    assert report["settings"]["data_wait"] is True
    (row,) = report["results"]
    wait = row["data_wait"]
    assert wait["iterations"] == 2 and wait["batch_size"] == 2
    assert wait["cache_mode"] == "memory" and wait["num_workers"] == 0
    assert 0.0 <= wait["data_wait_share"] <= 1.0
    assert 0.0 < wait["data_wait_median_ms"] <= wait["iteration_median_ms"]
    assert wait["peak_memory"]["peak_mib"] > 0 and wait["prepare_s"] > 0
    assert "| cpu | fp32 | 2 |" in text and "| memory, 0 |" in text


def test_benchmark_bad_bundle_is_a_clear_error(tmp_path, capsys):
    benchmark = _load_benchmark()
    assert benchmark.main([str(tmp_path / "nope"), "--device", "cpu"]) == 1
    assert f"{tmp_path / 'nope'}: not a bundle" in capsys.readouterr().err
    assert benchmark.main(["--device", "cpu"]) == 1
    assert "--all" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# cache_mode: memory | disk | none
# ----------------------------------------------------------------------------------------------------------------------
def _unet_parser(tmp_path: Path, **extra) -> ConfigParser:
    """unet_baseline's train.json, tiny, without the random transforms and shuffling (batches comparable)."""
    parser = ConfigParser()
    parser.read_config(str(UNET / "configs" / "train.json"))
    parser.update(tiny_overrides("unet_baseline", tmp_path / "data", tmp_path / "out", **extra))
    parser["train#random_transforms"] = []
    parser["train#dataloader#shuffle"] = False
    return parser


def _first_batch(parser: ConfigParser) -> dict:
    return next(iter(parser.get_parsed_content("train#dataloader")))


def test_cache_mode_disk_writes_files_and_gives_the_memory_batch(tmp_path):
    cache_dir = tmp_path / "cache"
    memory = _unet_parser(tmp_path)
    assert isinstance(memory.get_parsed_content("train#dataset"), SafeCacheDataset)
    ref = _first_batch(memory)
    disk = _unet_parser(tmp_path, cache_mode="disk", cache_dir=str(cache_dir))
    dataset = disk.get_parsed_content("train#dataset")
    assert isinstance(dataset, SafePersistentDataset)
    assert not list(cache_dir.glob("*.pt")), "nothing is written before the first epoch"
    got = _first_batch(disk)
    n_items = len(dataset)
    assert len(list(cache_dir.glob("*.pt"))) == ref["image"].shape[0] == 4 <= n_items
    for key in ("image", "label"):
        assert torch.equal(got[key].as_tensor(), ref[key].as_tensor()), key
    assert got["image"].meta["filename_or_obj"] == ref["image"].meta["filename_or_obj"]  # evaluation reads these
    # a second run reads the files: the deterministic transforms are not run again
    again = _unet_parser(tmp_path, cache_mode="disk", cache_dir=str(cache_dir))
    again_ds = again.get_parsed_content("train#dataset")
    again_ds._pre_transform = lambda item: pytest.fail("cache miss: the deterministic transforms ran again")
    item = again_ds[0]
    assert torch.equal(item["image"].as_tensor(), ref["image"][0].as_tensor())
    # cache_mode none: every transform on access, same values
    none = _unet_parser(tmp_path, cache_mode="none")
    assert isinstance(none.get_parsed_content("train#dataset"), SafeDataset)
    assert torch.equal(_first_batch(none)["image"].as_tensor(), ref["image"].as_tensor())


def test_disk_cache_key_follows_transform_settings_and_file_content(tmp_path):
    """A changed ``image_size`` or an image rewritten in place must not reuse stale cache files."""
    cache_dir = tmp_path / "cache"
    first = _unet_parser(tmp_path, cache_mode="disk", cache_dir=str(cache_dir))
    item32 = first.get_parsed_content("train#dataset")[0]
    assert item32["image"].shape[-2:] == (32, 32) and len(list(cache_dir.glob("*.pt"))) == 1
    second = _unet_parser(tmp_path, cache_mode="disk", cache_dir=str(cache_dir), image_size=16)
    assert second.get_parsed_content("train#dataset")[0]["image"].shape[-2:] == (16, 16)
    assert len(list(cache_dir.glob("*.pt"))) == 2
    # rewrite the first training image in place (same name, new content): a new entry, the new pixels
    path = Path(item32["image"].meta["filename_or_obj"])
    size = Image.open(path).size
    Image.fromarray(np.full(size[::-1], 255, dtype=np.uint8)).save(path)
    third = _unet_parser(tmp_path, cache_mode="disk", cache_dir=str(cache_dir))
    item = third.get_parsed_content("train#dataset")[0]
    assert len(list(cache_dir.glob("*.pt"))) == 3
    assert float(item["image"].min()) == pytest.approx(1.0)


def test_make_dataset_errors_name_the_key_and_the_item(tmp_path):
    with pytest.raises(ValueError, match="cache_mode: expected one of"):
        make_dataset([], None, cache_mode="ram")
    with pytest.raises(ValueError, match="cache_dir: cache_mode 'disk' needs a cache folder"):
        make_dataset([], None, cache_mode="disk", cache_dir=None)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    from monai.transforms import Compose, LoadImaged

    transform = Compose([LoadImaged(keys="image", reader="PILReader", image_only=True)])
    for mode in ("disk", "none"):
        ds = make_dataset([{"image": str(bad)}], transform, cache_mode=mode, cache_dir=str(tmp_path / "c"))
        with pytest.raises(DataError, match=f"cannot prepare data item 0 \\(image '{bad}'\\)"):
            ds[0]


def test_benchmark_pipeline_epochs_disk_mode(tmp_path, capsys):
    """``--pipeline_epochs``: the data pipeline alone; in disk mode the first pass writes one file per item."""
    benchmark = _load_benchmark()
    over = tiny_overrides("unet_baseline", tmp_path / "data", tmp_path / "unused", cache_mode="disk")
    over["cache_dir"] = str(tmp_path / "cache")
    for key in ("bundle_root", "output_dir", "batch_size"):
        over.pop(key)
    out = tmp_path / "pipeline.json"
    argv = [str(UNET), "--pipeline_epochs", "2", "--batch_sizes", "4", "--out", str(out), *_override_args(over)]
    assert benchmark.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["items"] == 8 and report["cache_files"] == 8 and report["cache_mib"] > 0
    assert len(report["epoch_s"]) == 2 and report["settings"]["cache_mode"] == "disk"
    assert report["settings"]["batch_size"] == 4 and report["children_peak_rss_mib"] is None
    assert "| unet_baseline | 8 | disk | 0 | 4 |" in capsys.readouterr().out


_HASH_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from monai.bundle import ConfigParser
from monai.transforms.transform import RandomizableTrait, Transform
from common.data.cache import transform_hash
from test_bundles import tiny_overrides
parser = ConfigParser()
parser.read_config({config!r})
parser.update(tiny_overrides("unet_baseline", {data!r}, {out!r}))
cached = []
for t in parser.get_parsed_content("train#preprocessing").flatten().transforms:
    if isinstance(t, RandomizableTrait) or not isinstance(t, Transform):
        break
    cached.append(t)
print(len(cached), transform_hash(cached).decode())
"""


def test_transform_hash_is_the_same_in_another_process(tmp_path):
    """The disk cache is reused by later runs only if the transform hash does not depend on the process (object
    addresses, set order, string-hash randomisation): another interpreter (another PYTHONHASHSEED) gives this one's
    hash."""
    import os
    import subprocess
    import sys

    script = _HASH_SCRIPT.format(
        repo=str(REPO_ROOT),
        tests=str(REPO_ROOT / "tests"),
        config=str(UNET / "configs" / "train.json"),
        data=str(tmp_path / "data"),
        out=str(tmp_path / "out"),
    )
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    here: dict = {}
    exec(script, here)  # noqa: S102 - the same script in this process
    parser = here["parser"]
    assert parser is not None
    count, digest = proc.stdout.strip().splitlines()[-1].split()
    assert int(count) == len(here["cached"]) == 9  # unet_baseline's nine deterministic transforms
    assert digest == here["transform_hash"](here["cached"]).decode()
