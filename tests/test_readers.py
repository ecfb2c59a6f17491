# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the dataset readers (common.data.readers), the table rules and tools/prepare_dataset.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from common.data import (
    load_datalist,
    match_key,
    normalize_text,
    read_folders,
    read_lvit_layout,
    read_madapter,
    split_by_fraction,
    write_datalist,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared fixtures absent ({FIXTURES})")
MONUSEG = FIXTURES / "monuseg_lvit_layout"
POLYP_TEXT = FIXTURES / "polyp_text_madapter"
KVASIR = FIXTURES / "kvasir_seg_layout"
QATA_CSV = FIXTURES / "qata_text_sample" / "Test_text_first_rows.csv"


def _img(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def _csv(path: Path, rows: list[tuple[str, str]], header=("Image", "Description"), bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _by_image(entries: list[dict]) -> dict[str, dict]:
    return {Path(e["image"]).name: e for e in entries}


# ---------------------------------------------------------------- matching and text rules


def test_match_key_rules():
    assert match_key("mask_covid_1.png") == match_key("covid_1.png") == "covid_1"  # QaTa mask-name keys
    assert match_key("TCGA-2Z-A9J9-01A-01-TS1.png") == match_key("TCGA-2Z-A9J9-01A-01-TS1.tif")  # MoNuSeg test
    assert match_key("cju0qkwl35piu0993l0dewei2.png") == match_key("cju0qkwl35piu0993l0dewei2.jpg")  # Kvasir
    assert match_key("001.png") == match_key("1.png") == "1"  # ClinicDB zero padding
    assert match_key("100.png") == "100" and match_key("0.png") == "0"
    assert match_key("a01.png") == "a01"  # only all-digit stems lose leading zeros
    assert match_key("Images\\covid_1.png") == "covid_1"  # Windows-style path in a table cell
    assert match_key("1.2.840.113619") == "1.2.840.113619"  # only image extensions are removed
    assert match_key("x.PNG") == "x"


def test_normalize_text_collapses_spaces_keeps_typos():
    raw = "  Bilateral pulmonary infection, two infected areas,  middle lower  left lung.\n"
    assert normalize_text(raw) == "Bilateral pulmonary infection, two infected areas, middle lower left lung."
    assert normalize_text("upper midlle left lung, areas,lower, oneinfected") == (
        "upper midlle left lung, areas,lower, oneinfected"
    )
    assert normalize_text(float("nan")) == "" and normalize_text(None) == ""


def test_split_by_fraction_stratified_and_deterministic():
    items = list(range(20))
    groups = ["a"] * 10 + ["b"] * 6 + ["c"] * 4
    kept, drawn = split_by_fraction(items, 0.25, seed=3, groups=groups)
    assert len(drawn) == 5 and sorted(kept + drawn) == items
    per_group = Counter(groups[i] for i in drawn)
    # quotas 2.5 / 1.5 / 1.0 -> floors 2/1/1, the remaining one goes to "a" (tie with "b", "a" sorts first)
    assert per_group == {"a": 3, "b": 1, "c": 1}
    assert split_by_fraction(items, 0.25, seed=3, groups=groups) == (kept, drawn)
    assert split_by_fraction(list(range(3)), 0.2)[1] != []  # at least one item drawn
    assert split_by_fraction([1], 0.5) == ([1], [])  # never empties the kept side
    with pytest.raises(ValueError, match="fraction"):
        split_by_fraction(items, 1.0)


# ---------------------------------------------------------------- LViT layout: MoNuSeg fixture


@needs_fixtures
def test_lvit_monuseg_fixture(tmp_path):
    datalist, report = read_lvit_layout(MONUSEG, out_dir=tmp_path)
    assert report.counts == {"training": 2, "validation": 1, "test": 1}
    test = datalist["test"][0]
    # the Test xlsx names *.png while the image is *.tif: matched on the stem
    assert test["image"].endswith("Test_Folder/img/TCGA-2Z-A9J9-01A-01-TS1.tif")
    assert test["label"].endswith("Test_Folder/labelcol/TCGA-2Z-A9J9-01A-01-TS1.png")
    assert test["text"] == "The nuclei are sparsely distributed."
    train = _by_image(datalist["training"])
    assert train["TCGA-21-5786-01Z-00-DX1.png"]["text"] == "The nuclei density in the upper right is high."
    assert datalist["validation"][0]["text"] == "The nuclei density in the left is high."
    assert [e["image"] for e in datalist["training"]] == sorted(e["image"] for e in datalist["training"])
    # every xlsx row whose image is absent is reported: 24-2 + 6-1 + 14-1
    missing = report.text_without_image
    assert len(missing) == 22 + 5 + 13
    assert sum("Train_text.xlsx" in m for m in missing) == 22
    assert sum("Val_text.xlsx" in m for m in missing) == 5
    assert sum("Test_text.xlsx" in m for m in missing) == 13
    assert "Train_Folder/Train_text.xlsx row 4: TCGA-38-6178-01Z-00-DX1.png" in missing
    assert any(m.endswith("TCGA-44-2665-01B-06-BS6.png") for m in missing)
    assert report.num_problems == 40 and not report.image_without_text
    # paths are relative to out_dir (not to root) and resolve
    for split in ("training", "validation", "test"):
        for entry in load_datalist(write_datalist(datalist, tmp_path / "datalist.json"), split):
            assert Path(entry["image"]).is_file() and Path(entry["label"]).is_file()
    assert datalist["root"] == str(MONUSEG)


@needs_fixtures
def test_lvit_monuseg_strict_lists_names(tmp_path):
    with pytest.raises(ValueError) as err:
        read_lvit_layout(MONUSEG, out_dir=tmp_path, strict=True)
    msg = str(err.value)
    assert "40 problem(s)" in msg and "text_without_image (40" in msg
    assert "TCGA-38-6178-01Z-00-DX1.png" in msg
    assert "... and 20 more" in msg  # 20 names displayed, the rest counted


@needs_fixtures
def test_lvit_text_file_override(tmp_path):
    # one table for all splits: rows of Train_text.xlsx only; Val/Test images are then without text
    datalist, report = read_lvit_layout(MONUSEG, out_dir=tmp_path, text_files=MONUSEG / "Train_Folder/Train_text.xlsx")
    assert sorted(report.image_without_text) == [
        "Test_Folder/img/TCGA-2Z-A9J9-01A-01-TS1.tif",
        "Val_Folder/img/TCGA-18-5592-01Z-00-DX1.png",
    ]
    # Val_Folder gave no usable item, so validation is drawn from training (and noted)
    assert report.counts == {"training": 1, "validation": 1, "test": 0}
    assert any(n.startswith("validation split drawn from training: 1 of 2") for n in report.notes)
    assert len(report.text_without_image) == 22  # only the one table's rows are checked
    with pytest.raises(ValueError, match="not a split"):
        read_lvit_layout(MONUSEG, text_files={"dev": "x.csv"})


# ---------------------------------------------------------------- LViT layout: QaTa-style, real sentences


def _qata_rows() -> list[tuple[str, str]]:
    with open(QATA_CSV, encoding="utf-8-sig", newline="") as f:
        return [(r["Image"], r["Description"]) for r in csv.DictReader(f)]


def _make_qata(root: Path, train: list, val: list, test: list, extra_rows: list | None = None) -> None:
    for folder, rows in (("Train_Folder", train), ("Val_Folder", val), ("Test_Folder", test)):
        for mask_name, _ in rows:
            image_name = mask_name[len("mask_") :]
            _img(root / folder / "img" / image_name, (12, 10), value=90)
            _img(root / folder / "labelcol" / mask_name, (12, 10), value=255)
    frame = pd.DataFrame(train + val + (extra_rows or []), columns=["Image", "Description"])
    frame.to_excel(root / "Train_Folder" / "Train_Val_text.xlsx", index=False)
    _csv(root / "Test_Folder" / "Test_text.csv", test, bom=True)


@needs_fixtures
def test_lvit_qata_style_train_val_text(tmp_path):
    rows = _qata_rows()
    double_space = next(r for r in rows if "  " in r[1])
    typo_midlle = next(r for r in rows if "midlle" in r[1])
    typo_comma = next(r for r in rows if "areas,lower" in r[1])
    plain = [r for r in rows if r not in (double_space, typo_midlle, typo_comma)]
    train, val, test = [double_space, typo_midlle, plain[0]], [typo_comma, plain[1]], plain[2:5]
    orphan = plain[10]  # a Train_Val row whose image is nowhere
    root = tmp_path / "qata"
    _make_qata(root, train, val, test, extra_rows=[orphan])
    datalist, report = read_lvit_layout(root, name="qata_cov19")
    assert report.counts == {"training": 3, "validation": 2, "test": 3}
    assert datalist["name"] == "qata_cov19"
    # Val_Folder has no Val_text.*: Train_Folder/Train_Val_text.xlsx serves both
    assert "Val_Folder: text from Train_Folder/Train_Val_text.xlsx" in report.notes
    by_name = {Path(e["image"]).name: e for s in ("training", "validation", "test") for e in datalist[s]}
    key = double_space[0][len("mask_") :]
    assert "  " not in by_name[key]["text"] and by_name[key]["text"] == " ".join(double_space[1].split())
    assert by_name[typo_midlle[0][len("mask_") :]]["text"] == typo_midlle[1]  # typo kept
    assert by_name[typo_comma[0][len("mask_") :]]["text"] == typo_comma[1]  # "areas,lower" kept
    assert by_name[key]["label"] == f"Train_Folder/labelcol/{double_space[0]}"  # mask_<image>.png masks
    assert report.text_without_image == [
        f"Train_Folder/Train_Val_text.xlsx row {len(train) + len(val) + 2}: {orphan[0]}"
    ]
    assert report.num_problems == 1


def test_lvit_without_val_folder_draws_validation(tmp_path):
    root = tmp_path / "mos"
    names = [f"case_{i:02d}.png" for i in range(10)]
    rows = [(f"mask_{n}", f"Lesion in slice {i}.") for i, n in enumerate(names)]
    for n in names:
        _img(root / "Train_Folder/img" / n)
        _img(root / "Train_Folder/labelcol" / f"mask_{n}", value=255)
    _csv(root / "Train_Folder/Train_text.csv", rows)
    datalist, report = read_lvit_layout(root, val_fraction=0.3, seed=1)
    assert report.counts == {"training": 7, "validation": 3, "test": 0}
    assert any("validation split drawn from training: 3 of 10" in n for n in report.notes)
    assert "Val_Folder is absent" in report.notes and "Test_Folder is absent" in report.notes
    again, _ = read_lvit_layout(root, val_fraction=0.3, seed=1)
    assert again == datalist
    images = {e["image"] for s in ("training", "validation") for e in datalist[s]}
    assert len(images) == 10  # nothing lost, nothing duplicated


def test_lvit_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_lvit_layout(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not an LViT layout"):
        read_lvit_layout(tmp_path)
    (tmp_path / "Train_Folder").mkdir()
    with pytest.raises(FileNotFoundError, match="nope.xlsx"):
        read_lvit_layout(tmp_path, text_files="nope.xlsx")
    _csv(tmp_path / "Train_Folder/Train_text.csv", [("a.png", "x")], header=("Image", "Text"))
    with pytest.raises(ValueError, match=r"Train_text.csv.*'Description'"):
        read_lvit_layout(tmp_path)


# ---------------------------------------------------------------- MAdapter layout


@needs_fixtures
def test_madapter_kvasir_fixture(tmp_path):
    datalist, report = read_madapter(
        KVASIR, POLYP_TEXT / "Kvasir_train.csv", POLYP_TEXT / "Kvasir_test.csv", out_dir=tmp_path
    )
    assert report.counts == {"training": 2, "validation": 1, "test": 0}
    entries = _by_image(datalist["training"] + datalist["validation"])
    # CSV says .png, the files are .jpg; the CSV starts with a byte-order mark
    first = entries["cju0qkwl35piu0993l0dewei2.jpg"]
    assert first["text"] == "One large,irregular,ulcerated colonic polyp on the top middle."
    assert first["label"].endswith("masks/cju0qkwl35piu0993l0dewei2.jpg")  # JPEG masks paired by stem
    assert entries["cju0qoxqj9q6s0835b43399p4.jpg"]["text"] == (
        "One large,irregular,smooth colonic polyp on the bottom middle."
    )
    assert len(report.text_without_image) == 897 + 100
    # tables outside the root are named by absolute path; the row number counts the header as row 1
    csv_name = (POLYP_TEXT / "Kvasir_train.csv").resolve().as_posix()
    assert report.unknown_text == [f"{csv_name} row 401: cju414lf2l1lt0801rl3hjllj.png ('unknown', kept)"]
    for split in ("training", "validation"):
        for e in load_datalist(write_datalist(datalist, tmp_path / "datalist.json"), split):
            assert Path(e["image"]).is_file()


@needs_fixtures
def test_madapter_clinicdb_zero_padding(tmp_path):
    root = tmp_path / "clinicdb"
    for n in ("1", "2", "14", "100"):
        _img(root / "images" / f"{n}.png", mode="RGB")
        _img(root / "masks" / f"{n}.png", value=255)
    datalist, report = read_madapter(
        root, POLYP_TEXT / "Clinic_DB_train.csv", POLYP_TEXT / "Clinic_DB_test.csv", val_fraction=0.0
    )
    train, test = _by_image(datalist["training"]), _by_image(datalist["test"])
    assert set(train) == {"1.png", "2.png"} and set(test) == {"14.png", "100.png"}
    # "001.png" in the train CSV is the file 1.png; the test CSV is not zero-padded and uses the terse style
    assert train["1.png"]["text"] == "One colonic polyp.One medium,irregular,smooth colonic polyp on the bottom left."
    assert test["100.png"]["text"] == "Polyp middle left."
    assert len(report.text_without_image) == (550 - 2) + (62 - 2)
    assert not report.image_without_text


@needs_fixtures
def test_madapter_unknown_kept_and_multi_polyp(tmp_path):
    root = tmp_path / "kvasir"
    for stem in ("cju414lf2l1lt0801rl3hjllj", "cju0roawvklrq0799vmjorwfv", "not_in_csv"):
        _img(root / "images" / f"{stem}.jpg", mode="RGB")
        _img(root / "masks" / f"{stem}.jpg", value=255)
    shutil.copy(POLYP_TEXT / "Kvasir_train.csv", root / "Kvasir_train.csv")
    datalist, report = read_madapter(root, "Kvasir_train.csv", None, val_fraction=0.0)
    entries = _by_image(datalist["training"])
    assert entries["cju414lf2l1lt0801rl3hjllj.jpg"]["text"] == "unknown"  # kept ...
    assert report.unknown_text and "cju414lf2l1lt0801rl3hjllj.png" in report.unknown_text[0]  # ... and reported
    assert entries["cju0roawvklrq0799vmjorwfv.jpg"]["text"] == (
        "Two colonic polyps.One small,elliptical,smooth colonic polyp on the top middle."
        "One medium,irregular,ulcerated colonic polyp on the top right."
    )
    assert report.image_without_text == ["images/not_in_csv.jpg"]
    assert report.text_without_image[0].startswith("Kvasir_train.csv row ")  # relative to root when inside


def test_madapter_key_in_both_csvs_goes_to_test(tmp_path):
    for stem in ("a", "b"):
        _img(tmp_path / "images" / f"{stem}.png")
        _img(tmp_path / "masks" / f"{stem}.png", value=255)
    _csv(tmp_path / "tr.csv", [("a.png", "train a"), ("b.png", "train b")], bom=True)
    _csv(tmp_path / "te.csv", [("b.png", "test b")], bom=True)
    datalist, report = read_madapter(tmp_path, "tr.csv", "te.csv", val_fraction=0.0)
    assert [e["text"] for e in datalist["test"]] == ["test b"]
    assert [e["text"] for e in datalist["training"]] == ["train a"]
    assert report.duplicate_keys == ["images/b.png is listed in te.csv, tr.csv; kept in test only"]
    with pytest.raises(ValueError, match="train_csv, test_csv"):
        read_madapter(tmp_path)


# ---------------------------------------------------------------- problems (plain folders)


def _problem_set(root: Path) -> None:
    for stem in ("good", "unknown_one", "wrong_size", "bad_image", "bad_mask", "empty", "no_text", "no_mask"):
        _img(root / "images" / f"{stem}.png", (16, 16))
        if stem != "no_mask":
            _img(root / "masks" / f"{stem}.png", (16, 12) if stem == "wrong_size" else (16, 16), value=255)
    (root / "images" / "bad_image.png").write_bytes(b"this is not a png")
    (root / "masks" / "bad_mask.png").write_bytes(b"\x89PNG garbage")
    _img(root / "masks" / "orphan_mask.png")
    _img(root / "images" / "twin.png")
    _img(root / "images" / "twin.jpg")
    _img(root / "masks" / "twin.png")
    _img(root / "images" / "conflict.png")
    _img(root / "masks" / "conflict.png")
    (root / "images" / "notes.txt").write_text("not an image")
    rows = [
        ("good.png", " A  small lesion. "),
        ("unknown_one.png", "unknown"),
        ("wrong_size.png", "x"),
        ("bad_image.png", "x"),
        ("bad_mask.png", "x"),
        ("empty.png", "   "),
        ("no_mask.png", "x"),
        ("twin.png", "x"),
        ("conflict.png", "first"),
        ("conflict.png", "second"),
        ("ghost.png", "an image that is not there"),
    ]
    _csv(root / "text.csv", rows)


def test_folders_problems_listed_by_name(tmp_path):
    _problem_set(tmp_path)
    datalist, report = read_folders(tmp_path, "text.csv", val_fraction=0.0, test_fraction=0.0)
    kept = _by_image(datalist["training"])
    assert set(kept) == {"good.png", "unknown_one.png"}
    assert kept["good.png"]["text"] == "A small lesion."
    assert report.text_without_image == ["text.csv row 12: ghost.png"]
    assert report.image_without_text == ["images/no_text.png"]
    assert report.image_without_mask == ["images/no_mask.png"]
    assert report.mask_without_image == ["masks/orphan_mask.png"]
    assert report.size_mismatch == ["images/wrong_size.png (16x16) vs masks/wrong_size.png (16x12)"]
    assert [u.split(" (")[0] for u in report.unreadable] == ["images/bad_image.png", "masks/bad_mask.png"]
    assert report.empty_text == ["text.csv row 7: empty.png"]
    assert report.unknown_text == ["text.csv row 3: unknown_one.png ('unknown', kept)"]
    assert report.duplicate_keys == [
        "text.csv rows 10, 11: conflict.png, conflict.png (different descriptions; image left out)",
        "images/twin.jpg, images/twin.png (same name after matching rules; left out)",
    ]
    assert report.ignored_files == ["images/notes.txt"]
    assert report.num_problems == 11
    # strict mode raises and names every problem
    with pytest.raises(ValueError) as err:
        read_folders(tmp_path, "text.csv", strict=True)
    for name in (
        "ghost.png",
        "no_text.png",
        "no_mask.png",
        "orphan_mask.png",
        "wrong_size.png",
        "bad_image.png",
        "bad_mask.png",
        "empty.png",
        "unknown_one.png",
        "conflict.png",
        "twin.jpg",
    ):
        assert name in str(err.value), name


def test_folders_sites_and_splits(tmp_path):
    root = tmp_path / "multi"
    rows, sites = [], []
    for site in ("A", "B"):
        for i in range(10):
            stem = f"{site}{i:02d}"
            _img(root / "images" / f"{stem}.png")
            _img(root / "masks" / f"{stem}.png", value=255)
            rows.append((f"{stem}.png", f"lesion {stem}"))
            if stem != "B09":
                sites.append((stem, f"site_{site}", "tumour"))
    sites.append(("Z99.png", "site_Z", "tumour"))
    _csv(root / "text.csv", rows)
    _csv(root / "sites.csv", sites, header=("Image", "site", "class"))
    datalist, report = read_folders(root, "text.csv", "sites.csv", test_fraction=0.2, val_fraction=0.25, seed=7)
    assert report.counts == {"training": 12, "validation": 4, "test": 4}
    all_images = [e["image"] for s in ("training", "validation", "test") for e in datalist[s]]
    assert sorted(all_images) == sorted(f"images/{r[0]}" for r in rows)  # every item exactly once
    test_sites = Counter(e.get("site") for e in datalist["test"])
    # stratified: B09 (no site) is a group of its own, so site_A and site_B give 2 each
    assert test_sites == {"site_A": 2, "site_B": 2}
    assert Counter(e.get("site") for e in datalist["validation"]) == {"site_A": 2, "site_B": 2}
    entry = next(
        e for e in datalist["training"] + datalist["validation"] + datalist["test"] if e["image"].endswith("A00.png")
    )
    assert entry["site"] == "site_A" and entry["class"] == "tumour"
    b09 = next(e for s in ("training", "validation", "test") for e in datalist[s] if e["image"].endswith("B09.png"))
    assert "site" not in b09 and "class" not in b09
    assert report.image_without_site == ["images/B09.png"]
    assert report.site_without_image == ["sites.csv row 21: Z99.png"]
    for split in ("training", "validation", "test"):
        assert [e["image"] for e in datalist[split]] == sorted(e["image"] for e in datalist[split])
    again, _ = read_folders(root, "text.csv", "sites.csv", test_fraction=0.2, val_fraction=0.25, seed=7)
    assert again == datalist


def test_folders_default_text(tmp_path):
    _img(tmp_path / "images/a.png")
    _img(tmp_path / "masks/a.png", value=255)
    datalist, report = read_folders(tmp_path, default_text="  polyp ", test_fraction=0.0, val_fraction=0.0)
    assert datalist["training"] == [{"image": "images/a.png", "label": "masks/a.png", "text": "polyp"}]
    with pytest.raises(ValueError, match="default_text"):
        read_folders(tmp_path)


def test_relative_paths_survive_moving_the_folder(tmp_path):
    src = tmp_path / "prepared"
    for stem in ("a", "b", "c"):
        _img(src / "images" / f"{stem}.png")
        _img(src / "masks" / f"{stem}.png", value=255)
    _csv(src / "text.csv", [(f"{s}.png", f"text {s}") for s in "abc"])
    datalist, _ = read_folders(src, "text.csv", test_fraction=0.0, val_fraction=0.0)
    write_datalist(datalist, src / "datalist.json")
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(str(src), str(moved))
    entries = load_datalist(moved / "datalist.json", "training")
    assert [Path(e["image"]) for e in entries] == [moved / "images" / f"{s}.png" for s in "abc"]
    # out_dir different from root: paths climb out of the datalist folder and still resolve
    datalist, _ = read_folders(moved, "text.csv", out_dir=tmp_path / "lists", test_fraction=0.0, val_fraction=0.0)
    assert datalist["training"][0]["image"] == "../elsewhere/moved/images/a.png"
    entries = load_datalist(write_datalist(datalist, tmp_path / "lists" / "dl.json"), "training")
    assert all(Path(e["label"]).is_file() for e in entries)


# ---------------------------------------------------------------- command line


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "prepare_dataset.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_fixtures
def test_cli_monuseg_end_to_end(tmp_path):
    out = tmp_path / "monuseg" / "datalist.json"
    res = _run_cli("lvit", "--root", str(MONUSEG), "--out", str(out), "--name", "monuseg", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "training: 2, validation: 1, test: 1" in res.stdout
    assert "TCGA-38-6178-01Z-00-DX1.png" in res.stdout and "... and 20 more" in res.stdout
    data = json.loads(out.read_text())
    assert data["name"] == "monuseg" and len(data["training"]) == 2
    report = json.loads((out.parent / "datalist_report.json").read_text())
    assert report["counts"]["test"] == 1 and len(report["problems"]["text_without_image"]) == 40
    assert Path(load_datalist(out, "test")[0]["image"]).suffix == ".tif"

    strict_out = tmp_path / "strict" / "datalist.json"
    res = _run_cli("lvit", "--root", str(MONUSEG), "--out", str(strict_out), "--strict", cwd=tmp_path)
    assert res.returncode == 1 and "--strict" in res.stderr
    assert not strict_out.exists() and (strict_out.parent / "datalist_report.json").is_file()

    res = _run_cli("lvit", "--root", str(tmp_path / "absent"), cwd=tmp_path)
    assert res.returncode == 1 and "is not a folder" in res.stderr


def test_cli_folders_and_empty_result(tmp_path):
    _img(tmp_path / "d/images/a.png")
    _img(tmp_path / "d/masks/a.png", value=255)
    res = _run_cli("folders", "--root", "d", "--default_text", "lesion", "--test_fraction", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert load_datalist(tmp_path / "d/datalist.json", "training")[0]["text"] == "lesion"
    _img(tmp_path / "e/images/a.png")
    res = _run_cli("folders", "--root", "e", "--default_text", "lesion", cwd=tmp_path)
    assert res.returncode == 1 and "no complete" in res.stderr and "images/a.png" in res.stdout


def _cli_module():
    spec = importlib.util.spec_from_file_location("prepare_dataset", REPO / "tools" / "prepare_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_fixtures
def test_cli_in_process_madapter_and_text_file(tmp_path, capsys):
    cli = _cli_module()
    out = tmp_path / "kvasir" / "datalist.json"
    argv = ["madapter", "--root", str(KVASIR), "--out", str(out), "--val_fraction", "0"]
    argv += ["--train_csv", str(POLYP_TEXT / "Kvasir_train.csv"), "--test_csv", str(POLYP_TEXT / "Kvasir_test.csv")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "training: 3, validation: 0, test: 0" in printed and "unknown_text (1" in printed
    assert len(load_datalist(out, "training")) == 3
    # --text_file SPLIT=PATH, PATH relative to the root when it does not exist from the current folder
    out = tmp_path / "monuseg" / "datalist.json"
    argv = ["lvit", "--root", str(MONUSEG), "--out", str(out), "--text_file", "Test=Train_Folder/Train_text.xlsx"]
    assert cli.main(argv) == 0
    assert "Test_Folder: text from Train_Folder/Train_text.xlsx" in capsys.readouterr().out
    assert json.loads(out.read_text())["test"] == []
    bad = ["lvit", "--root", str(MONUSEG), "--out", str(out), "--text_file", "a.csv", "--text_file", "Val=b.csv"]
    assert cli.main(bad) == 1
    assert "not both" in capsys.readouterr().err
