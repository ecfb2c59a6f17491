# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Failures end cleanly: the datalist pre-flight check (every problem at once), the CacheDataset whose threads are
joined before an error leaves it, the error summary printed last, and subprocess runs of a bundle on broken data
that must end with exit status 1 and name the file in the last lines of stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, Lambda, LoadImaged
from PIL import Image

from common.data import DatalistError, SafeCacheDataset, check_datalist, preflight_datalist
from common.transforms.channels import EnsureNumChannelsd
from common.transforms.checks import CheckSameSpatialShaped
from common.transforms.mask import BinarizeMaskd
from common.utils.errors import DataError, error_summary, install_error_summary
from conftest import REPO_ROOT

SIZE = 16


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path.relative_to(path.parents[1]))


def _good_pair(root: Path, name: str) -> dict:
    rng = np.random.default_rng(len(name))
    image = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[4:9, 5:12] = 255
    return {
        "image": _png(root / "img" / f"{name}.png", image),
        "label": _png(root / "mask" / f"{name}.png", mask),
        "text": f"one lesion in {name}",
    }


#: the six broken entries of the issue, each with the words the report must contain
BROKEN = ["corrupt_png", "size_mismatch", "non_binary_mask", "rgb_photo_as_mask", "missing_file", "empty_note"]
EXPECTED = {
    "corrupt_png": ("key 'image'", "img/corrupt_png.png", "cannot be read"),
    "size_mismatch": ("key 'label'", "mask/size_mismatch.png", "spatial shape"),
    "non_binary_mask": ("key 'label'", "mask/non_binary_mask.png", "ambiguous band"),
    "rgb_photo_as_mask": ("key 'label'", "mask/rgb_photo_as_mask.png", "RGB photo given as a mask"),
    "missing_file": ("key 'label'", "mask/missing_file.png", "does not exist"),
    "empty_note": ("key 'text'", "img/empty_note.png", "non-empty string"),
}


def _break(root: Path, entry: dict, kind: str) -> dict:
    """Damage one good entry the way ``kind`` says (files under ``root``)."""
    entry = dict(entry)
    if kind == "corrupt_png":
        path = root / entry["image"]
        path.write_bytes(path.read_bytes()[:60])  # header kept, pixel data cut
    elif kind == "size_mismatch":
        _png(root / entry["label"], np.zeros((SIZE, SIZE + 4), dtype=np.uint8))
    elif kind == "non_binary_mask":
        _png(root / entry["label"], np.tile(np.linspace(0, 255, SIZE).astype(np.uint8), (SIZE, 1)))
    elif kind == "rgb_photo_as_mask":
        photo = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        _png(root / entry["label"], photo)
    elif kind == "missing_file":
        (root / entry["label"]).unlink()
    elif kind == "empty_note":
        entry["text"] = "  "
    else:
        raise ValueError(kind)
    return entry


def _datalist(root: Path, broken: list[str], num_good: int = 3) -> Path:
    """A datalist with ``num_good`` good training entries followed by one broken entry per kind in ``broken``,
    and two good validation entries."""
    training = [_good_pair(root, f"good_{i}") for i in range(num_good)]
    training += [_break(root, _good_pair(root, kind), kind) for kind in broken]
    validation = [_good_pair(root, f"val_{i}") for i in range(2)]
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": training, "validation": validation, "test": validation}))
    return path


def _bundle_transforms(in_channels: int = 1) -> list:
    return [
        LoadImaged(keys=("image", "label"), reader="PILReader", image_only=True),
        EnsureChannelFirstd(keys=("image", "label")),
        EnsureNumChannelsd(keys="image", num_channels=in_channels),
        EnsureNumChannelsd(keys="label", num_channels=1),
        CheckSameSpatialShaped(keys=("image", "label")),
        BinarizeMaskd(keys="label"),
    ]


# ---------------------------------------------------------------- pre-flight


def test_preflight_reports_every_problem_at_once(tmp_path):
    path = _datalist(tmp_path, BROKEN)
    with pytest.raises(DatalistError) as err:
        preflight_datalist(path, transforms=_bundle_transforms())
    message = str(err.value)
    assert f"{len(BROKEN)} problem(s) in {len(BROKEN)} of {3 + len(BROKEN) + 2} entries" in message
    lines = [line for line in message.splitlines() if line.startswith("  split ")]
    assert len(lines) == len(BROKEN), message
    for offset, kind in enumerate(BROKEN):
        index = 3 + offset
        line = next(line for line in lines if f"split 'training' entry {index} " in line)
        for word in EXPECTED[kind]:
            assert word in line, f"{kind}: {word!r} not in {line!r}"
    assert {(p.split, p.index) for p in err.value.problems} == {("training", 3 + i) for i in range(len(BROKEN))}


def test_preflight_passes_good_data_and_can_be_skipped(tmp_path, caplog):
    path = _datalist(tmp_path, [])
    summary = preflight_datalist(path, ["training", "validation", "test"], transforms=_bundle_transforms())
    assert summary["entries"] == 3 + 2 + 2 and summary["seconds"] >= 0
    broken = _datalist(tmp_path / "b", ["non_binary_mask"])
    assert preflight_datalist(broken, enabled=False) is None
    with pytest.raises(ValueError, match="`preflight` must be True or False"):
        preflight_datalist(broken, enabled="false")
    with pytest.raises(DatalistError, match="does not exist"):
        preflight_datalist(tmp_path / "absent.json")
    with pytest.raises(DatalistError, match=r"split 'other': .*has no split 'other'"):
        preflight_datalist(path, ["training", "other"])


def test_preflight_uses_the_configured_rules(tmp_path):
    """The rules come from the transform objects: a label map passes when BinarizeMaskd allows it, and an image
    channel count the network's EnsureNumChannelsd cannot produce is reported."""
    root = tmp_path
    entry = _good_pair(root, "labels")
    _png(root / entry["label"], np.where(np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 3 == 0, 2, 0).astype(np.uint8))
    two_channel = _good_pair(root, "la")
    la = np.stack([np.full((SIZE, SIZE), 100, np.uint8), np.full((SIZE, SIZE), 255, np.uint8)], -1)
    Image.fromarray(la, mode="LA").save(root / two_channel["image"])
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": [entry, two_channel]}))
    problems, n = check_datalist(path, ["training"], transforms=_bundle_transforms(in_channels=3))
    assert n == 2
    assert [(p.index, p.key) for p in problems] == [(0, "label"), (1, "image")]
    assert "label map" in problems[0].what
    assert "cannot convert an image with 2 channels to 3" in problems[1].what
    relaxed = _bundle_transforms(in_channels=3)
    relaxed[5] = BinarizeMaskd(keys="label", allow_label_maps=True)
    problems, _ = check_datalist(path, ["training"], transforms=relaxed)
    assert [(p.index, p.key) for p in problems] == [(1, "image")]


# ---------------------------------------------------------------- threads joined, errors summarised


def _slow_after_first(item):
    if item["i"] == 0:
        raise ValueError("bad item zero")
    time.sleep(0.5)
    return item


def test_safe_cache_dataset_joins_its_threads_and_names_the_item():
    """The worker still preparing item 1 when item 0 fails must have finished when the error arrives
    (``monai.data.CacheDataset`` leaves it running, and the interpreter then aborts at exit)."""
    before = set(threading.enumerate())
    data = [{"i": i, "image": f"/data/img_{i}.png"} for i in range(4)]
    with pytest.raises(DataError, match=r"data item 0 \(image '/data/img_0.png'\): ValueError: bad item zero"):
        SafeCacheDataset(data=data, transform=Compose([Lambda(_slow_after_first)]), num_workers=1, progress=False)
    alive = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not alive, f"threads still running after the error: {alive}"
    ds = SafeCacheDataset(data=data[1:], transform=Compose([Lambda(_slow_after_first)]), num_workers=2, progress=False)
    assert [d["i"] for d in ds] == [1, 2, 3]
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive()]
    # not cached: the failure happens while batches are loaded, and names the item as well
    lazy = SafeCacheDataset(data=data, transform=Compose([Lambda(_slow_after_first)]), cache_rate=0.0, progress=False)
    with pytest.raises(DataError, match=r"data item 0 \(image '/data/img_0.png'\): ValueError: bad item zero"):
        lazy[0]


def test_error_summary_names_the_data_error_under_wrappers(capsys):
    try:
        try:
            try:
                raise OSError("image file is truncated")
            except OSError as e:
                raise DataError("cannot prepare data item 3 (image '/d/a.png'): OSError: truncated") from e
        except DataError as e:
            raise RuntimeError("Failed to instantiate component 'CacheDataset'") from e
    except RuntimeError as e:
        wrapped = e
    assert error_summary(wrapped) == "DataError: cannot prepare data item 3 (image '/d/a.png'): OSError: truncated"
    try:
        try:
            raise FileNotFoundError("datalist '/d/x.json' does not exist.")
        except FileNotFoundError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression") from e
    except RuntimeError as e:
        assert error_summary(e) == "FileNotFoundError: datalist '/d/x.json' does not exist."
    previous = sys.excepthook
    try:
        hook = install_error_summary()
        assert install_error_summary() is hook, "installing twice must not stack hooks"
        hook(type(wrapped), wrapped, wrapped.__traceback__)
        err = capsys.readouterr().err.rstrip().splitlines()
        assert err[-1].startswith("DataError: cannot prepare data item 3") and "= error =" in err[-2]
    finally:
        sys.excepthook = previous


# ---------------------------------------------------------------- the bundle run on broken data, as a user would


def _run_bundle(dataset_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    bundle = REPO_ROOT / "bundles" / "unet_baseline"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json")]
    cmd += ["--meta_file", str(bundle / "configs" / "metadata.json")]
    cmd += ["--bundle_root", str(bundle), "--dataset_dir", str(dataset_dir), "--output_dir", str(output_dir)]
    cmd += ["--synthetic", "None", "--max_epochs", "1", "--image_size", "16", "--num_workers", "0"]
    cmd += ["--channels", "[4, 8]", "--strides", "[2]", "--num_res_units", "0", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _tail(proc: subprocess.CompletedProcess, lines: int = 12) -> str:
    return "\n".join(proc.stderr.rstrip().splitlines()[-lines:])


def test_bundle_run_on_broken_data_lists_every_problem_last(tmp_path):
    """Pre-flight on (the default): exit status 1, and the last lines list all six problems with their files."""
    path = _datalist(tmp_path / "data", BROKEN)
    proc = _run_bundle(path.parent, tmp_path / "out")
    tail = _tail(proc, len(BROKEN) + 4)
    assert proc.returncode == 1, f"exit status {proc.returncode}\n{proc.stderr[-4000:]}"
    assert "DatalistError: pre-flight check of datalist" in tail, tail
    for kind in BROKEN:
        for word in EXPECTED[kind]:
            assert word in tail, f"{kind}: {word!r} not in the last lines:\n{tail}"
    assert "terminate called" not in proc.stderr


@pytest.mark.parametrize("kind", BROKEN)
def test_bundle_run_without_preflight_ends_with_status_1_naming_the_file(tmp_path, kind):
    """Pre-flight off: the pipeline's own checks stop the run; exit status 1 (never the 134 abort of threads left
    running) and the last lines name the file and what is wrong."""
    path = _datalist(tmp_path / "data", [kind], num_good=1)
    proc = _run_bundle(path.parent, tmp_path / "out", "--preflight", "False")
    tail = _tail(proc, 4)
    assert proc.returncode == 1, f"exit status {proc.returncode}\n{proc.stderr[-4000:]}"
    assert "terminate called" not in proc.stderr
    file_word = EXPECTED[kind][1]
    assert file_word in tail, f"{file_word!r} not in the last lines:\n{tail}"
    what = {
        "corrupt_png": "cannot prepare data item 1",
        "size_mismatch": "spatial shape",
        "non_binary_mask": "ambiguous band",
        "rgb_photo_as_mask": "mask",
        "missing_file": "does not exist",
        "empty_note": "non-empty string",
    }[kind]
    assert what in tail, f"{what!r} not in the last lines:\n{tail}"


def _gloo_threads() -> list[str]:
    names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    return [n for n in names if "gloo" in n]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to list threads")
def test_end_process_group_joins_the_gloo_threads(tmp_path):
    """After ``finalize`` no gloo thread may be left for interpreter finalisation: destroy_process_group alone
    leaves them running while a DistributedDataParallel module holds the group."""
    import torch
    import torch.distributed as dist

    from common.utils import distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        distributed.end_process_group_at_exit()
        distributed.end_process_group_at_exit()
        assert distributed._registered
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))
        ddp(torch.ones(2, 3)).sum().backward()
        assert _gloo_threads(), "a gloo group runs threads"
        assert distributed.end_process_group(release=[ddp, torch.nn.Linear(1, 1)]) is True
        assert not dist.is_initialized()
        assert not _gloo_threads(), f"gloo threads still running: {_gloo_threads()}"
        assert distributed.end_process_group() is False, "nothing left to destroy"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
