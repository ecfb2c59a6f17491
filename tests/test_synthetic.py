# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Tests of the synthetic data generators (common.data.synthetic and its parts) and tools/make_synthetic.py.

Text/mask agreement is checked INDEPENDENTLY of the generator: zones, counts, sizes and positions are recomputed
here from the written masks (scipy.ndimage.label) with the documented numbers, and sentences are parsed with a
grammar written here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from common.data import synthetic as syn

REPO = Path(__file__).resolve().parents[1]
QATA_FIXTURE = REPO.parent / "shared" / "fixtures" / "qata_text_sample" / "Test_text_first_rows.csv"

CXR_KW = {"num_train": 6, "num_val": 2, "num_test": 4, "image_size": 48, "seed": 3}
ENDO_KW = {"num_train": 20, "num_test": 5, "image_size": 48, "seed": 3}
COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}
ZONES = ("upper", "middle", "lower")


# ----------------------------------------------------------------------------------------------- helpers
def _digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _expected_edges(size: int) -> tuple[int, int]:
    """Zone edges recomputed from the documented lung band (0.12, 0.88) cut in three."""
    third = (0.88 - 0.12) / 3.0
    return round(size * (0.12 + third)), round(size * (0.12 + 2 * third))


def _zones_from_mask(mask: np.ndarray) -> tuple[int, dict[str, set[str]]]:
    """Number of connected lesions and, per viewer-side lung, the zones their pixels touch."""
    labels, count = ndimage.label(mask > 0)
    _, count8 = ndimage.label(mask > 0, structure=np.ones((3, 3)))
    assert count == count8, "lesions must be separate under 4- and 8-connectivity"
    size = mask.shape[0]
    e1, e2 = _expected_edges(size)
    lungs: dict[str, set[str]] = {}
    for k in range(1, count + 1):
        rows, cols = np.nonzero(labels == k)
        assert cols.max() < size // 2 or cols.min() >= size // 2, "a lesion crosses the midline"
        lung = "left" if cols.max() < size // 2 else "right"
        touched = {ZONES[0] if r < e1 else ZONES[1] if r < e2 else ZONES[2] for r in rows}
        lungs.setdefault(lung, set()).update(touched)
    return count, lungs


def _parse_qata(sentence: str) -> tuple[str, int, dict[str, set[str]]]:
    match = re.fullmatch(r"(Unilateral|Bilateral) pulmonary infection, (\w+) infected (areas?), (.+)\.", sentence)
    assert match, f"not QaTa grammar: {sentence!r}"
    laterality, word, noun, places = match.groups()
    count = COUNT_WORDS[word]
    assert (noun == "area") == (count == 1), sentence
    lungs = {}
    for part in places.split(" and "):
        zone_match = re.fullmatch(r"(all|(?:upper|middle|lower)(?: (?:middle|lower))*) (left|right) lung", part)
        assert zone_match, f"bad location {part!r} in {sentence!r}"
        zones, lung = zone_match.groups()
        words = zones.split()
        if zones != "all":
            assert words == sorted(words, key=ZONES.index) and len(set(words)) == len(words), sentence
            assert len(words) < 3, "three zones must be written 'all'"
        assert lung not in lungs, sentence
        lungs[lung] = set(ZONES) if zones == "all" else set(words)
    assert list(lungs) == [lung for lung in ("left", "right") if lung in lungs], "left lung must come first"
    return laterality, count, lungs


def _check_cxr_agreement(mask: np.ndarray, sentence: str) -> tuple[int, dict[str, set[str]]]:
    count, lungs = _zones_from_mask(mask)
    laterality, said_count, said_lungs = _parse_qata(sentence)
    assert said_count == count, (sentence, count)
    assert said_lungs == lungs, (sentence, lungs)
    assert laterality == ("Bilateral" if len(lungs) == 2 else "Unilateral"), sentence
    return count, lungs


ENDO_RE = re.compile(
    r"One (small|medium|large),(circular|elliptical|irregular),(smooth|partially smooth|ulcerated|granular) "
    r"(colonic polyp|colonic tumor|inflammatory lesion|submucosal nodule|mucosal cyst) on the (.+)\."
)
NOUN_CLASS = {
    "colonic polyp": "polyp",
    "colonic tumor": "tumor",
    "inflammatory lesion": "inflammation",
    "submucosal nodule": "nodule",
    "mucosal cyst": "cyst",
}


def _check_endo_agreement(mask: np.ndarray, sentence: str) -> str:
    """Size and position words recomputed from the mask (documented thresholds 0.03 / 0.10, thirds)."""
    match = ENDO_RE.fullmatch(sentence)
    assert match, f"not MAdapter grammar: {sentence!r}"
    size_said, _, _, noun, position = match.groups()
    fg = mask > 0
    assert ndimage.label(fg)[1] == 1, "exactly one lesion"
    fraction = fg.mean()
    size = "small" if fraction < 0.03 else "medium" if fraction < 0.10 else "large"
    rows, cols = np.nonzero(fg)
    cy, cx = (rows.mean() + 0.5) / fg.shape[0], (cols.mean() + 0.5) / fg.shape[1]
    row = ("top", "middle", "bottom")[min(int(cy * 3), 2)]
    col = ("left", "middle", "right")[min(int(cx * 3), 2)]
    where = "center" if (row, col) == ("middle", "middle") else f"{row} {col}"
    assert size_said == size, (sentence, fraction)
    assert position == where, (sentence, cy, cx)
    return NOUN_CLASS[noun]


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cxr") / "set"
    summary = syn.generate_chest_xray_dataset(str(root), **CXR_KW)
    assert summary["generated"] is True and summary["counts"] == {"train": 6, "val": 2, "test": 4}
    return root


@pytest.fixture(scope="module")
def endo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("endo") / "set"
    summary = syn.generate_endoscopy_dataset(str(root), **ENDO_KW)
    assert summary["generated"] is True and summary["classes"] == {c: 5 for c in sorted(syn.LESION_CLASSES)}
    return root


# ----------------------------------------------------------------------------------------------- layouts
def test_chest_xray_layout(cxr_root: Path):
    folders = {"train": "Train_Folder", "val": "Val_Folder", "test": "Test_Folder"}
    names = {s: sorted(p.name for p in (cxr_root / f / "img").iterdir()) for s, f in folders.items()}
    assert names["train"] == [f"cxr_train_{i:05d}.png" for i in range(6)]
    assert len(names["val"]) == 2 and len(names["test"]) == 4
    for split, folder in folders.items():
        for name in names[split]:
            image = _load(cxr_root / folder / "img" / name)
            mask = _load(cxr_root / folder / "labelcol" / f"mask_{name}")
            assert image.dtype == np.uint8 and image.shape == (48, 48)
            assert mask.dtype == np.uint8 and mask.shape == (48, 48)
            assert set(np.unique(mask)) == {0, 255}
    assert not (cxr_root / "Val_Folder" / "Val_text.xlsx").exists()
    train_val = pd.read_excel(cxr_root / "Train_Folder" / "Train_Val_text.xlsx", sheet_name=None)
    test = pd.read_excel(cxr_root / "Test_Folder" / "Test_text.xlsx", sheet_name=None)
    assert list(train_val) == ["Sheet1"] and list(test) == ["Sheet1"]
    train_val, test = train_val["Sheet1"], test["Sheet1"]
    assert list(train_val.columns) == ["Image", "Description"] and list(test.columns) == ["Image", "Description"]
    expected = sorted(f"mask_{n}" for n in names["train"] + names["val"])
    assert train_val["Image"].tolist() == expected  # train AND val rows, keyed by mask name
    assert test["Image"].tolist() == [f"mask_{n}" for n in names["test"]]
    sites = pd.read_csv(cxr_root / "sites.csv")
    assert list(sites.columns) == ["Image", "site", "class"]
    assert sorted(sites["Image"]) == sorted(names["train"] + names["val"] + names["test"])
    assert set(sites["class"]) == {"covid"} and set(sites["site"]) == set(syn.CXR_SITES)
    marker = json.loads((cxr_root / syn.MARKER_FILE).read_text())
    assert marker["complete"] is True and marker["dataset"] == "chest_xray"
    assert marker["parameters"] == CXR_KW


def test_endoscopy_layout(endo_root: Path):
    for split, count in (("train", 20), ("test", 5)):
        raw = (endo_root / f"Synthetic_{split}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbfImage,Description\n"), "UTF-8 with BOM, MAdapter header"
        table = pd.read_csv(endo_root / f"Synthetic_{split}.csv", encoding="utf-8-sig")
        assert list(table.columns) == ["Image", "Description"]
        assert table["Image"].tolist() == [f"endo_{split}_{i:05d}.png" for i in range(count)]
        for name in table["Image"]:
            image, mask = _load(endo_root / "images" / name), _load(endo_root / "masks" / name)
            assert image.dtype == np.uint8 and image.shape == (48, 48, 3)
            assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 255}
    sites = pd.read_csv(endo_root / "sites.csv")
    assert list(sites.columns) == ["Image", "site", "class"] and len(sites) == 25
    assert set(sites["site"]) == set(syn.ENDOSCOPY_SITES)
    assert set(sites["class"]) == set(syn.LESION_CLASSES)
    train = sites[sites["Image"].str.startswith("endo_train_")]
    assert len(set(zip(train["site"], train["class"]))) == 20, "consecutive images give distinct (site, class) pairs"


# ----------------------------------------------------------------------------------------------- determinism
def test_determinism_same_seed_same_bytes(tmp_path: Path, cxr_root: Path, endo_root: Path):
    syn.generate_chest_xray_dataset(str(tmp_path / "cxr"), **CXR_KW)
    syn.generate_endoscopy_dataset(str(tmp_path / "endo"), **ENDO_KW)
    assert _digest(tmp_path / "cxr") == _digest(cxr_root)  # includes the xlsx files (fixed zip/document dates)
    assert _digest(tmp_path / "endo") == _digest(endo_root)
    # the xlsx carry no wall-clock time (two runs within one second would not show it)
    with zipfile.ZipFile(cxr_root / "Test_Folder" / "Test_text.xlsx") as archive:
        assert {info.date_time for info in archive.infolist()} == {(2026, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
        assert re.findall(r"<dcterms:(?:created|modified)[^>]*>([^<]*)<", core) == ["2026-01-01T00:00:00Z"] * 2


def test_different_seed_differs_and_counts_do_not_shift_images(tmp_path: Path, cxr_root: Path, endo_root: Path):
    syn.generate_chest_xray_dataset(str(tmp_path / "cxr"), **{**CXR_KW, "seed": 4})
    other = _digest(tmp_path / "cxr")
    same = _digest(cxr_root)
    images = [k for k in same if k.endswith(".png")]
    assert sum(other[k] != same[k] for k in images) == len(images)
    syn.generate_endoscopy_dataset(str(tmp_path / "endo"), **{**ENDO_KW, "num_train": 3, "num_test": 1})
    fewer = _digest(tmp_path / "endo")
    reference = _digest(endo_root)
    for name in ("endo_train_00000.png", "endo_train_00002.png", "endo_test_00000.png"):
        assert fewer[f"images/{name}"] == reference[f"images/{name}"]
        assert fewer[f"masks/{name}"] == reference[f"masks/{name}"]


def test_image_rng_depends_on_every_key():
    keys = [
        (0, "chest_xray", "train", 0),
        (1, "chest_xray", "train", 0),
        (0, "endoscopy", "train", 0),
        (0, "chest_xray", "val", 0),
        (0, "chest_xray", "train", 1),
    ]
    draws = {key: syn.image_rng(*key).integers(0, 2**62) for key in keys}
    assert len(set(draws.values())) == len(draws)
    assert syn.image_rng(0, "chest_xray", "train", 0).integers(0, 2**62) == draws[(0, "chest_xray", "train", 0)]
    with pytest.raises(ValueError, match="split"):
        syn.image_rng(0, "chest_xray", "validation", 0)


# ----------------------------------------------------------------------------------------------- chest X-ray text
def test_zone_geometry():
    for size in (32, 48, 256, 257):
        assert syn.lung_zone_edges(size) == _expected_edges(size)
    assert syn.lung_zone_edges(256) == (96, 160)
    component = np.zeros((256, 256), bool)
    component[100:150, 40:60] = True  # middle zone only, viewer's left
    assert syn.lesion_zones(component) == ("left", ("middle",))
    component[:] = False
    component[90:170, 200:210] = True  # rows 90..169 touch upper, middle and lower; viewer's right
    assert syn.lesion_zones(component) == ("right", ("upper", "middle", "lower"))
    component[:, 120:135] = True
    with pytest.raises(ValueError, match="midline"):
        syn.lesion_zones(component)
    with pytest.raises(ValueError, match="empty"):
        syn.lesion_zones(np.zeros((64, 64), bool))


# Sentences copied from the public QaTa-COV19 test text (shared/fixtures/qata_text_sample).
# fmt: off
QATA_CASES = [
    ([("left", ["middle", "lower"])], "Unilateral pulmonary infection, one infected area, middle lower left lung."),
    ([("right", ["lower"])], "Unilateral pulmonary infection, one infected area, lower right lung."),
    ([("left", ZONES)], "Unilateral pulmonary infection, one infected area, all left lung."),
    ([("right", ZONES), ("left", ZONES)],
     "Bilateral pulmonary infection, two infected areas, all left lung and all right lung."),
    ([("left", ["upper"]), ("right", ["lower"])],
     "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."),
    ([("left", ["middle"]), ("right", ["middle"]), ("right", ["lower"])],
     "Bilateral pulmonary infection, three infected areas, middle left lung and middle lower right lung."),
    ([("right", ["lower"]), ("left", ZONES), ("right", ["upper"])],
     "Bilateral pulmonary infection, three infected areas, all left lung and upper lower right lung."),
]
# fmt: on


@pytest.mark.parametrize("lesions,sentence", QATA_CASES)
def test_describe_lung_lesions_matches_qata(lesions, sentence):
    assert syn.describe_lung_lesions(lesions) == sentence
    if QATA_FIXTURE.is_file():  # the expected strings really occur in QaTa's published text
        assert sentence in QATA_FIXTURE.read_text(encoding="utf-8")


def test_describe_lung_lesions_counts_four_and_errors():
    two = [("left", ["upper", "middle"]), ("left", ["lower"])]  # zones are the union over a lung's lesions
    assert syn.describe_lung_lesions(two) == "Unilateral pulmonary infection, two infected areas, all left lung."
    four = [("left", ["upper"]), ("left", ["lower"]), ("right", ["upper"]), ("right", ["middle"])]
    assert syn.describe_lung_lesions(four) == (
        "Bilateral pulmonary infection, four infected areas, upper lower left lung and upper middle right lung."
    )
    bad_cases = (
        ([], "count"),
        ([("centre", ["upper"])], "lung"),
        ([("left", ["apex"])], "zones"),
        ([("left", [])], "zone"),
    )
    for bad, word in bad_cases:
        with pytest.raises(ValueError, match=word):
            syn.describe_lung_lesions(bad)


def test_chest_xray_files_text_agrees_with_masks(cxr_root: Path):
    tables = [
        (cxr_root / "Train_Folder" / "Train_Val_text.xlsx", ("Train_Folder", "Val_Folder")),
        (cxr_root / "Test_Folder" / "Test_text.xlsx", ("Test_Folder",)),
    ]
    for table, folders in tables:
        for key, sentence in pd.read_excel(table).itertuples(index=False):
            path = next(cxr_root / f / "labelcol" / key for f in folders if (cxr_root / f / "labelcol" / key).is_file())
            _check_cxr_agreement(_load(path), sentence)


def test_chest_xray_rendered_text_lesions_and_distractors():
    seen_counts, faint, distractors, all_left = set(), 0, 0, False
    for index in range(48):
        site = syn.CXR_SITES[index % 4]
        sample = syn.render_chest_xray(np.random.default_rng(1000 + index), 64, site)
        assert sample.site == site and sample.image.shape == (64, 64) and sample.image.dtype == np.uint8
        assert set(np.unique(sample.mask)) == {0, 255}
        count, lungs = _check_cxr_agreement(sample.mask, sample.sentence)
        assert count == len(sample.lesions) and 1 <= count <= 4
        seen_counts.add(count)
        faint += sum(les.faint for les in sample.lesions)
        all_left |= "all left lung" in sample.sentence
        e1, e2 = _expected_edges(64)
        for dis in sample.distractors:
            distractors += 1
            assert not (dis.mask & (sample.mask > 0)).any(), "a distractor overlaps the mask"
            rows, cols = np.nonzero(dis.mask)
            zones = {ZONES[0] if r < e1 else ZONES[1] if r < e2 else ZONES[2] for r in rows}
            assert zones == {dis.zone}, "a distractor lies in exactly one zone"
            assert (cols.max() < 32) == (dis.lung == "left") and (cols.min() >= 32) == (dis.lung == "right")
            assert dis.zone not in lungs.get(dis.lung, set()), "a distractor lies in a described zone"
    assert seen_counts == {1, 2, 3, 4}
    assert faint > 0 and distractors > 0 and all_left


def test_chest_xray_site_changes_appearance_only():
    samples = [syn.render_chest_xray(np.random.default_rng(7), 64, site) for site in syn.CXR_SITES]
    for other in samples[1:]:
        assert np.array_equal(other.mask, samples[0].mask) and other.sentence == samples[0].sentence
        assert not np.array_equal(other.image, samples[0].image)
    lung = samples[0].mask > 0
    assert samples[1].image.std() != samples[2].image.std()
    assert lung.any()


# ----------------------------------------------------------------------------------------------- endoscopy text
def test_endoscopy_word_rules():
    sizes = [syn.size_word(f) for f in (0.0, 0.0299, 0.03, 0.0999, 0.10, 1.0)]
    assert sizes == ["small", "small", "medium", "medium", "large", "large"]
    assert syn.shape_word(0.2, 0.99) == "circular" and syn.shape_word(0.7, 0.99) == "elliptical"
    assert syn.shape_word(0.2, 0.85) == "irregular"
    assert syn.position_word(0.1, 0.1) == "top left" and syn.position_word(0.5, 0.5) == "center"
    assert syn.position_word(0.5, 0.9) == "middle right" and syn.position_word(1.0, 0.5) == "bottom middle"
    assert syn.describe_endoscopy_lesion("medium", "irregular", "smooth", "polyp", "bottom left") == (
        "One medium,irregular,smooth colonic polyp on the bottom left."  # a Clinic_DB_train.csv sentence
    )
    with pytest.raises(ValueError, match="position"):
        syn.describe_endoscopy_lesion("medium", "irregular", "smooth", "polyp", "top centre")
    with pytest.raises(ValueError, match="area_fraction"):
        syn.size_word(1.5)


def test_measure_lesion_mask_shapes():
    yy, xx = np.mgrid[:96, :96]
    disk = (yy - 20.3) ** 2 + (xx - 50.2) ** 2 <= 12**2
    ellipse = ((yy - 70) / 6.0) ** 2 + ((xx - 30) / 15.0) ** 2 <= 1
    cross = (np.abs(yy - 48) <= 3) & (np.abs(xx - 48) <= 20) | (np.abs(xx - 48) <= 3) & (np.abs(yy - 48) <= 20)
    m_disk, m_ell, m_cross = (syn.measure_lesion_mask(m) for m in (disk, ellipse, cross))
    assert (m_disk.shape, m_ell.shape, m_cross.shape) == ("circular", "elliptical", "irregular")
    assert m_disk.solidity == 1.0 and m_ell.solidity == 1.0 and m_cross.solidity < 0.6
    assert abs(m_ell.eccentricity - np.sqrt(1 - (6 / 15) ** 2)) < 0.03
    assert m_disk.size == "medium" and abs(m_disk.area_fraction - disk.mean()) < 1e-12
    assert m_disk.position == "top middle" and m_ell.position == "bottom left"
    with pytest.raises(ValueError, match="empty"):
        syn.measure_lesion_mask(np.zeros((8, 8)))


def test_endoscopy_files_text_agrees_with_masks(endo_root: Path):
    classes = dict(pd.read_csv(endo_root / "sites.csv")[["Image", "class"]].itertuples(index=False))
    for split in ("train", "test"):
        table = pd.read_csv(endo_root / f"Synthetic_{split}.csv", encoding="utf-8-sig")
        for name, sentence in table.itertuples(index=False):
            assert _check_endo_agreement(_load(endo_root / "masks" / name), sentence) == classes[name]


def test_endoscopy_rendered_text_and_classes():
    words = {"size": set(), "shape": set(), "position": set()}
    colours = {}
    for index in range(40):
        site = syn.ENDOSCOPY_SITES[index % 5]
        lesion_class = syn.LESION_CLASSES[(index // 5) % 5]
        sample = syn.render_endoscopy(np.random.default_rng(500 + index), 48, site, lesion_class)
        assert sample.image.shape == (48, 48, 3) and set(np.unique(sample.mask)) == {0, 255}
        assert _check_endo_agreement(sample.mask, sample.sentence) == lesion_class
        measured = syn.measure_lesion_mask(sample.mask)
        assert f"{measured.size},{measured.shape}," in sample.sentence
        words["size"].add(measured.size)
        words["shape"].add(measured.shape)
        words["position"].add(measured.position)
    assert words["size"] == {"small", "medium", "large"} and words["shape"] == {"circular", "elliptical", "irregular"}
    assert len(words["position"]) >= 4
    # classes look different: mean colour inside the lesion, white-light site, averaged over three seeds
    for lesion_class in syn.LESION_CLASSES:
        pixels = [syn.render_endoscopy(np.random.default_rng(seed), 48, "site_0", lesion_class) for seed in range(3)]
        colours[lesion_class] = np.mean([s.image[s.mask > 0].astype(float).mean(0) for s in pixels], axis=0)
    redness = {c: v[0] / (v[1] + v[2]) for c, v in colours.items()}
    blueness = {c: v[2] / v[0] for c, v in colours.items()}
    assert max(redness, key=redness.get) == "inflammation"
    assert max(blueness, key=blueness.get) == "cyst"
    assert max(colours, key=lambda c: colours[c][1]) == "nodule"
    assert min(colours, key=lambda c: colours[c].sum()) == "tumor"


def test_endoscopy_sites_change_appearance_only():
    base = syn.render_endoscopy(np.random.default_rng(11), 48, "site_0", "polyp")
    for site in ("site_1", "site_3", "site_4"):  # site_2 crops to a circular field of view, which may clip
        other = syn.render_endoscopy(np.random.default_rng(11), 48, site, "polyp")
        assert np.array_equal(other.mask, base.mask) and other.sentence == base.sentence
        assert np.abs(other.image.astype(int) - base.image.astype(int)).mean() > 3
    nbi = syn.render_endoscopy(np.random.default_rng(11), 48, "site_1", "polyp").image.reshape(-1, 3).mean(0)
    white = base.image.reshape(-1, 3).mean(0)
    assert white[0] > white[2] and nbi[2] > nbi[0], "site_1 is the green-blue (NBI-like) site"
    dim = syn.render_endoscopy(np.random.default_rng(11), 48, "site_2", "polyp").image
    assert dim[0, 0].sum() == 0 and dim.mean() < base.image.mean(), "site_2 is dim with a circular field of view"


# ----------------------------------------------------------------------------------------------- errors, marker, CLI
@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"num_train": -1}, "num_train"),
        ({"num_val": -2}, "num_val"),
        ({"num_test": 1.5}, "num_test"),
        ({"image_size": 31}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"num_train": 0, "num_val": 0, "num_test": 0}, "at least one image"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        syn.generate_chest_xray_dataset(str(tmp_path / "x"), **{**CXR_KW, **kwargs})
    assert not (tmp_path / "x").exists(), "nothing is written for bad arguments"


def test_bad_roots_and_marker(tmp_path: Path):
    kw = {"num_train": 1, "num_test": 1, "image_size": 32, "seed": 0}
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        syn.generate_endoscopy_dataset(str(a_file), **kw)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=re.escape(str(busy))):
        syn.generate_endoscopy_dataset(str(busy), **kw)
    root = tmp_path / "endo"
    assert syn.generate_endoscopy_dataset(str(root), **kw)["generated"] is True
    before = _digest(root)
    (root / "datalist.json").write_text("{}")  # what a reader adds next to the set
    again = syn.generate_endoscopy_dataset(str(root), **kw)
    assert again["generated"] is False and again["counts"] == {"train": 1, "test": 1}
    assert {k: v for k, v in _digest(root).items() if k != "datalist.json"} == before
    with pytest.raises(ValueError, match="different synthetic data set"):
        syn.generate_endoscopy_dataset(str(root), **{**kw, "seed": 1})
    with pytest.raises(ValueError, match="different synthetic data set"):
        syn.generate_chest_xray_dataset(str(root), num_train=1, num_val=0, num_test=1, image_size=32)
    marker = json.loads((root / syn.MARKER_FILE).read_text())
    (root / syn.MARKER_FILE).write_text(json.dumps({**marker, "complete": False}))  # an interrupted run
    (root / "images" / "endo_train_00000.png").unlink()
    assert syn.generate_endoscopy_dataset(str(root), **kw)["generated"] is True
    assert {k: v for k, v in _digest(root).items() if k != "datalist.json"} == before
    (root / syn.MARKER_FILE).write_text("not json")
    with pytest.raises(ValueError, match="unreadable synthetic marker"):
        syn.generate_endoscopy_dataset(str(root), **kw)


def test_render_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="image_size"):
        syn.render_chest_xray(rng, 16)
    with pytest.raises(ValueError, match="site"):
        syn.render_chest_xray(rng, 64, "site_9")
    with pytest.raises(ValueError, match="lesion_class"):
        syn.render_endoscopy(rng, 64, "site_0", "ulcer")
    with pytest.raises(ValueError, match="site"):
        syn.render_endoscopy(rng, 64, "site_5", "polyp")


def test_cli(tmp_path: Path, capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic", REPO / "tools" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "cli"
    argv = ["chest_xray", str(root), "--num-train", "2", "--num-val", "1", "--num-test", "1", "--image-size", "32"]
    assert module.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"train": 2, "val": 1, "test": 1} and (root / "sites.csv").is_file()
    with pytest.raises(SystemExit) as error:
        module.main(["endoscopy", str(tmp_path / "e"), "--num-val", "3"])
    assert error.value.code == 2 and "--num-val" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["endoscopy", str(root), "--image-size", "32"])
    assert "different synthetic data set" in capsys.readouterr().err
