# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of common.data.datalist: write_datalist, load_datalist and ensure_datalist."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from common.data import ReaderReport, ensure_datalist, load_datalist, write_datalist


def _img(path: Path, size: int = 8, value: int = 0, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value).save(path)


def _dataset(tmp_path: Path) -> Path:
    """Two image/mask pairs and a datalist.json next to them."""
    for stem in ("a", "b"):
        _img(tmp_path / "images" / f"{stem}.png")
        _img(tmp_path / "masks" / f"{stem}.png", value=255)
    data = {
        "name": "toy",
        "layout": "folders",
        "root": str(tmp_path),
        "training": [
            {"image": "images/a.png", "label": "masks/a.png", "text": "lesion a", "site": "s0", "class": "c"},
            {"image": "images/b.png", "label": "masks/b.png", "text": "lesion b"},
        ],
        "validation": [],
        "test": [{"image": "images/b.png", "text": "lesion b"}],
    }
    return Path(write_datalist(data, tmp_path / "datalist.json"))


# ---------------------------------------------------------------- write / load


def test_write_and_load_roundtrip(tmp_path):
    report = ReaderReport(layout="folders", root=str(tmp_path), counts={"training": 2})
    path = _dataset(tmp_path)
    write_datalist(json.loads(path.read_text()), path, report)  # replaces the file, adds the report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datalist.json", "datalist_report.json", "images", "masks"]
    assert json.loads((tmp_path / "datalist_report.json").read_text())["counts"] == {"training": 2}
    entries = load_datalist(path, "training")
    assert entries[0] == {
        "image": str(tmp_path / "images" / "a.png"),
        "label": str(tmp_path / "masks" / "a.png"),
        "text": "lesion a",
        "site": "s0",
        "class": "c",
    }
    assert all(os.path.isabs(e["image"]) and os.path.isabs(e["label"]) for e in entries)
    assert load_datalist(path, "validation") == []
    # the "test" list here is an inference list (no label anywhere): allowed unless a label is required
    assert load_datalist(path, "test") == [{"image": str(tmp_path / "images" / "b.png"), "text": "lesion b"}]
    with pytest.raises(ValueError, match=r"split 'test'.*entry 0.*missing key 'label'"):
        load_datalist(path, "test", require_label=True)
    # base_dir overrides the datalist folder
    other = tmp_path / "copy"
    other.mkdir()
    (other / "dl.json").write_text(path.read_text())
    assert load_datalist(other / "dl.json", "training", base_dir=tmp_path)[1]["label"] == str(tmp_path / "masks/b.png")
    with pytest.raises(ValueError, match="none of the split lists"):
        write_datalist({"name": "x"}, tmp_path / "bad.json")


def test_text_equal_to_a_file_name_is_not_rewritten(tmp_path):
    path = _dataset(tmp_path)
    (tmp_path / "lesion a").write_text("a file named like the text")
    assert load_datalist(path, "training")[0]["text"] == "lesion a"


def _write_raw(tmp_path: Path, training) -> Path:
    _dataset(tmp_path)
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({"training": training, "other": {}}))
    return path


GOOD = {"image": "images/a.png", "label": "masks/a.png", "text": "t"}


@pytest.mark.parametrize(
    "entry, pattern",
    [
        ({"label": "masks/a.png", "text": "t"}, r"entry 1: missing key 'image'"),
        ({"image": "images/a.png", "text": "t"}, r"entry 1: missing key 'label'"),
        ({"image": "images/a.png", "label": "masks/a.png"}, r"entry 1 \(.*a.png\): missing key 'text'"),
        ({**GOOD, "text": "  "}, r"entry 1 .*key 'text' must be a non-empty string, got '  '"),
        ({**GOOD, "text": 3}, r"entry 1 .*key 'text' must be a non-empty string, got 3"),
        ({**GOOD, "image": ""}, r"entry 1: key 'image' must be a non-empty path string"),
        ({**GOOD, "label": ["masks/a.png"]}, r"entry 1: key 'label' must be a non-empty path string"),
        ({**GOOD, "site": 0}, r"entry 1: key 'site' must be a string, got 0"),
        ("images/a.png", r"entry 1 .*missing key 'text'"),
        (["images/a.png"], r"entry 1: must be an object, got list"),
    ],
)
def test_load_datalist_bad_entries(tmp_path, entry, pattern):
    path = _write_raw(tmp_path, [GOOD, entry])
    with pytest.raises(ValueError, match=pattern) as err:
        load_datalist(path, "training")
    assert str(path) in str(err.value) and "split 'training'" in str(err.value)


def test_load_datalist_missing_files_and_bad_files(tmp_path):
    path = _write_raw(tmp_path, [GOOD, {**GOOD, "label": "masks/zz.png"}, {**GOOD, "image": "images/yy.png"}])
    with pytest.raises(FileNotFoundError) as err:
        load_datalist(path, "training")
    msg = str(err.value)
    assert "2 missing file(s)" in msg and str(path) in msg
    assert f"entry 1: key 'label' file {str(tmp_path / 'masks/zz.png')!r} does not exist" in msg
    assert f"entry 2: key 'image' file {str(tmp_path / 'images/yy.png')!r} does not exist" in msg
    assert len(load_datalist(path, "training", check_files=False)) == 3
    with pytest.raises(ValueError, match=r"has no split 'validation'; its split lists are \['training'\]"):
        load_datalist(path, "validation")
    with pytest.raises(ValueError, match="split 'other' must be a list"):
        load_datalist(path, "other")
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_datalist(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        load_datalist(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_datalist(tmp_path / "list.json")


def test_load_datalist_lists_every_problem_truncated(tmp_path):
    path = _write_raw(tmp_path, [{"image": "images/a.png", "label": "masks/a.png"}] * 25)
    with pytest.raises(ValueError) as err:
        load_datalist(path, "training")
    assert "25 problem(s)" in str(err.value) and "... and 5 more" in str(err.value)


# ---------------------------------------------------------------- ensure_datalist


def _fake_synthetic(calls: list, delay: float = 0.0, fail: bool = False) -> types.ModuleType:
    """A stand-in for common.data.synthetic writing the contract layouts (tiny images)."""

    def chest(root, num_train, num_val, num_test, image_size, seed):
        calls.append(("chest_xray", num_train, num_val, num_test, image_size, seed))
        time.sleep(delay)
        if fail:
            raise RuntimeError("generator failed")
        root = Path(root)
        sites, text_rows = [], {"Train": [], "Test": []}
        for folder, n in (("Train", num_train), ("Val", num_val), ("Test", num_test)):
            for i in range(n):
                name = f"{folder.lower()}_{i}.png"
                _img(root / f"{folder}_Folder/img/{name}", image_size, 80)
                _img(root / f"{folder}_Folder/labelcol/mask_{name}", image_size, 255)
                table = "Test" if folder == "Test" else "Train"
                text_rows[table].append((f"mask_{name}", f"Unilateral pulmonary infection, {folder} {i}."))
                sites.append((name, f"site_{i % 2}", "covid"))
        pd.DataFrame(text_rows["Train"], columns=["Image", "Description"]).to_excel(
            root / "Train_Folder/Train_Val_text.xlsx", index=False
        )
        pd.DataFrame(text_rows["Test"], columns=["Image", "Description"]).to_excel(
            root / "Test_Folder/Test_text.xlsx", index=False
        )
        pd.DataFrame(sites, columns=["Image", "site", "class"]).to_csv(root / "sites.csv", index=False)

    def endoscopy(root, num_train, num_test, image_size, seed):
        calls.append(("endoscopy", num_train, num_test, image_size, seed))
        root = Path(root)
        sites = []
        for part, n in (("train", num_train), ("test", num_test)):
            rows = []
            for i in range(n):
                name = f"{part}_{i}.png"
                _img(root / "images" / name, image_size, 120, "RGB")
                _img(root / "masks" / name, image_size, 255)
                rows.append((name, f"One small polyp {part} {i}."))
                sites.append((name, f"centre_{i % 2}", "polyp"))
            with open(root / f"Synthetic_{part}.csv", "w", encoding="utf-8-sig", newline="") as f:
                csv.writer(f).writerows([("Image", "Description"), *rows])
        pd.DataFrame(sites, columns=["Image", "site", "class"]).to_csv(root / "sites.csv", index=False)

    module = types.ModuleType("common.data.synthetic")
    module.generate_chest_xray_dataset = chest
    module.generate_endoscopy_dataset = endoscopy
    return module


def test_ensure_datalist_missing_and_existing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no datalist at .*tools/prepare_dataset.py.*synthetic"):
        ensure_datalist(tmp_path / "real")
    path = _dataset(tmp_path / "ready")
    assert ensure_datalist(tmp_path / "ready", synthetic="chest_xray") == str(path)  # existing: returned as is
    with pytest.raises(ValueError, match="synthetic must be one of"):
        ensure_datalist(tmp_path / "x", synthetic="mri")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "scan.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is not empty"):
        ensure_datalist(tmp_path / "occupied", synthetic="chest_xray")
    assert os.listdir(tmp_path / "occupied") == ["scan.png"]  # never written into


def test_ensure_datalist_chest_xray(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "common.data.synthetic", _fake_synthetic(calls))
    target = tmp_path / "sets" / "cxr"
    path = ensure_datalist(target, synthetic="chest_xray", num_train=4, num_val=2, num_test=3, image_size=16, seed=5)
    assert path == str(target / "datalist.json")
    assert calls == [("chest_xray", 4, 2, 3, 16, 5)]
    data = json.loads(Path(path).read_text())
    assert data["layout"] == "lvit" and data["root"] == str(target)
    assert [len(data[s]) for s in ("training", "validation", "test")] == [4, 2, 3]
    train = load_datalist(path, "training")
    assert train[0]["image"] == str(target / "Train_Folder/img/train_0.png")
    assert train[0]["label"] == str(target / "Train_Folder/labelcol/mask_train_0.png")
    assert train[0]["site"] == "site_0" and train[0]["class"] == "covid"
    assert load_datalist(path, "validation")[1]["text"] == "Unilateral pulmonary infection, Val 1."
    assert json.loads((target / "datalist_report.json").read_text())["num_problems"] == 0
    assert sorted(os.listdir(tmp_path / "sets")) == ["cxr"]  # no temporary folder or lock left
    assert ensure_datalist(target, synthetic="chest_xray") == path and len(calls) == 1  # not regenerated


def test_ensure_datalist_endoscopy(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "common.data.synthetic", _fake_synthetic(calls))
    (tmp_path / "endo").mkdir()  # an empty folder is fine
    path = ensure_datalist(tmp_path / "endo", synthetic="endoscopy", num_train=6, num_val=2, num_test=2, image_size=16)
    assert calls == [("endoscopy", 8, 2, 16, 0)]  # train + val generated, val drawn from them
    data = json.loads(Path(path).read_text())
    assert [len(data[s]) for s in ("training", "validation", "test")] == [6, 2, 2]
    assert {e["site"] for e in data["validation"]} == {"centre_0", "centre_1"}  # stratified by site
    assert load_datalist(path, "test")[0]["text"] == "One small polyp test 0."


def test_ensure_datalist_concurrent_calls_generate_once(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "common.data.synthetic", _fake_synthetic(calls, delay=0.5))
    results, errors = [], []

    def worker():
        try:
            results.append(
                ensure_datalist(
                    tmp_path / "shared",
                    synthetic="chest_xray",
                    num_train=2,
                    num_val=1,
                    num_test=1,
                    image_size=8,
                    poll_interval=0.05,
                )
            )
        except Exception as e:  # pragma: no cover - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1
    assert sorted(os.listdir(tmp_path)) == ["shared"]


def test_ensure_datalist_locks(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "common.data.synthetic", _fake_synthetic(calls))
    # a lock held by a live process (this one): waiting ends with TimeoutError naming the lock
    lock = tmp_path / ".busy.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")
    with pytest.raises(TimeoutError, match=r"\.busy\.lock"):
        ensure_datalist(tmp_path / "busy", synthetic="chest_xray", timeout=0.3, poll_interval=0.05)
    assert calls == []
    # a lock left by a dead process of this host is removed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".stale.lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()}\n")
    ensure_datalist(tmp_path / "stale", synthetic="chest_xray", num_train=2, num_val=1, num_test=1, image_size=8)
    assert (tmp_path / "stale" / "datalist.json").is_file() and not (tmp_path / ".stale.lock").exists()


def test_ensure_datalist_generator_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "common.data.synthetic", _fake_synthetic([], fail=True))
    with pytest.raises(RuntimeError, match="generator failed"):
        ensure_datalist(tmp_path / "cxr", synthetic="chest_xray")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(
    importlib.util.find_spec("common.data.synthetic") is None, reason="common.data.synthetic not written yet"
)
@pytest.mark.parametrize("kind", ["chest_xray", "endoscopy"])
def test_ensure_datalist_real_generators(tmp_path, kind):
    path = ensure_datalist(tmp_path / kind, synthetic=kind, num_train=4, num_val=2, num_test=2, image_size=32, seed=1)
    for split, n in (("training", 4), ("validation", 2), ("test", 2)):
        entries = load_datalist(path, split)
        assert len(entries) == n
        assert all(e["text"].strip() and Image.open(e["image"]).size == (32, 32) for e in entries)


def test_check_datalist_split_returns_every_problem_with_index_and_key(tmp_path):
    """The checks of load_datalist, as data: what the pre-flight step lists (split, entry index, key)."""
    from common.data import check_datalist_split

    path = _write_raw(tmp_path, [GOOD, {**GOOD, "text": ""}, "x", {**GOOD, "label": "masks/zz.png"}, 7])
    indexed, problems = check_datalist_split(path, "training")
    assert [i for i, _ in indexed] == [0, 1, 2, 3]
    assert [(p.index, p.key, p.missing_file) for p in problems] == [
        (1, "text", False),
        (2, "label", False),  # a bare string is an image-only entry
        (2, "text", False),
        (4, None, False),
        (2, "image", True),  # missing files come last
        (3, "label", True),
    ]
    assert (
        problems[0].line(with_key=True).startswith(f"split 'training' entry 1 key 'text' ({tmp_path / 'images/a.png'})")
    )
    with pytest.raises(ValueError, match="has no split 'validation'"):
        check_datalist_split(path, "validation")
