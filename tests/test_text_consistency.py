# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Tests of the text-mask consistency metric (common.metrics.text_consistency), its handler, and the lung zone maps
of the synthetic chest generator."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from common.data import ensure_datalist, load_datalist
from common.data.synthetic import image_rng, render_chest_xray
from common.data.synthetic_cxr import CXR_SITES, LUNG_ZONE_LABELS, lung_zone_edges, lung_zone_map
from common.data.synthetic_text import describe_endoscopy_lesion, describe_lung_lesions
from common.handlers import TextConsistencyHandler
from common.metrics.text_consistency import (
    LungFields,
    NoteParseError,
    UnparsedNote,
    lung_fields_from_array,
    mask_attributes,
    parse_note,
    score_consistency,
    try_parse_note,
)
from conftest import SHARED

QATA = SHARED / "fixtures" / "qata_text_sample" / "Test_text_first_rows.csv"
MADAPTER = SHARED / "fixtures" / "polyp_text_madapter"


def _disk(mask: np.ndarray, row: float, col: float, radius: float) -> np.ndarray:
    rr, cc = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[(rr - row) ** 2 + (cc - col) ** 2 <= radius**2] = 1
    return mask


# ------------------------------------------------------------------------------------------------ note parser
@pytest.mark.parametrize(
    "sentence, count, lungs",
    [
        # the QaTa source's typos and quirks, as in shared/fixtures/qata_text_sample
        (
            "Bilateral pulmonary infection, two infected areas, upper midlle left lung and lower right lung.",
            2,
            {"left": ("upper", "middle"), "right": ("lower",)},
        ),
        (
            "Bilateral pulmonary infection, two infected areas,lower left lung and all right lung.",
            2,
            {"left": ("lower",), "right": ("upper", "middle", "lower")},
        ),
        (
            "Bilateral pulmonary infection, two infected areas,  middle lower left lung and lower right lung.",
            2,
            {"left": ("middle", "lower"), "right": ("lower",)},
        ),
        ("Unilateral pulmonary infection, oneinfected area, middle left lung.", 1, {"left": ("middle",)}),
        (
            "Bilateral pulmonary infection, two infected areas, middle upper left lung and all right lung.",
            2,
            {"left": ("upper", "middle"), "right": ("upper", "middle", "lower")},
        ),
        (
            "Bilateral pulmonary infection, three infected areas, middle left lung and upper lower right lung.",
            3,
            {"left": ("middle",), "right": ("upper", "lower")},
        ),
        ("unilateral pulmonary infection, 4 infected areas, lower right lung", 4, {"right": ("lower",)}),
    ],
)
def test_parse_qata_notes(sentence, count, lungs):
    note = parse_note(sentence)
    assert note.kind == "lung" and note.count_range == (count, count)
    assert dict(note.lung_zones) == lungs
    assert note.laterality == ("bilateral" if len(lungs) == 2 else "unilateral")


@pytest.mark.parametrize(
    "sentence, count_range, positions, sizes",
    [
        ("One large,irregular,ulcerated colonic polyp on the middle right.", (1, 1), ("middle right",), ("large",)),
        (
            "Two colonic polyps.One medium,irregular,smooth colonic polyp on the center.One small,elliptical,smooth "
            "colonic polyp on the top center.",
            (2, 2),
            ("center", "top middle"),  # MAdapter's "top center" is the synthetic "top middle" cell
            ("medium", "small"),
        ),
        ("One colonic polyp.One medium,circular,colonic polyp on the center.", (1, 1), ("center",), ("medium",)),
        ("Polyp middle left.", None, ("middle left",), ()),
        ("Two polyps.", (2, 2), (), ()),
        ("Many small colonic polyps.", (2, None), (), ("small",)),
        ("One small,circular,smooth submucosal nodule on the bottom middle.", (1, 1), ("bottom middle",), ("small",)),
    ],
)
def test_parse_madapter_notes(sentence, count_range, positions, sizes):
    note = parse_note(sentence)
    assert note.kind == "endoscopy" and note.count_range == count_range
    assert note.positions == positions and note.sizes == sizes


@pytest.mark.parametrize(
    "sentence",
    [
        "unknown",
        "",
        "Bilateral pulmonary infection, one infected area, upper left lung and lower right lung.",  # 1 area, 2 lungs
        "Unilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",  # says uni
        "Unilateral pulmonary infection, one infected area, upper spleen.",
        "One small colonic polyp on the far left.",
    ],
)
def test_unreadable_notes_are_named_never_scored(sentence):
    with pytest.raises(NoteParseError, match="note"):
        parse_note(sentence)
    result = try_parse_note(sentence)
    assert isinstance(result, UnparsedNote) and result.sentence == sentence and repr(sentence) in result.reason
    mask = _disk(np.zeros((32, 32)), 8, 8, 4)
    assert all(math.isnan(v) for v in score_consistency(result, mask_attributes(mask)).as_dict().values())


def test_synthetic_notes_parse_back_to_what_was_drawn():
    rng = np.random.default_rng(3)
    zones = ("upper", "middle", "lower")
    for _ in range(200):
        lesions = []
        for _ in range(int(rng.integers(1, 5))):
            chosen = tuple(z for z in zones if rng.random() < 0.5) or ("middle",)
            lesions.append((("left", "right")[int(rng.integers(0, 2))], chosen))
        note = parse_note(describe_lung_lesions(lesions))
        want = {}
        for lung, z in lesions:
            want.setdefault(lung, set()).update(z)
        assert note.count_range == (len(lesions), len(lesions))
        assert {k: set(v) for k, v in note.lung_zones.items()} == want
    for position in ("top left", "top middle", "center", "bottom right", "middle left"):
        note = parse_note(describe_endoscopy_lesion("medium", "irregular", "partially smooth", "cyst", position))
        assert note.positions == (position,) and note.sizes == ("medium",) and note.count_range == (1, 1)


@pytest.mark.skipif(not QATA.is_file() or not MADAPTER.is_dir(), reason="../shared fixtures absent")
def test_parse_every_fixture_row():
    """Every QaTa row and every MAdapter row parses, except MAdapter's one "unknown" (reported, not scored)."""
    with open(QATA, encoding="utf-8-sig", newline="") as f:
        qata = [row["Description"] for row in csv.DictReader(f)]
    assert len(qata) == 111
    assert [s for s in qata if isinstance(try_parse_note(s), UnparsedNote)] == []
    unparsed, total = [], 0
    for path in sorted(MADAPTER.glob("*.csv")):
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [row["Description"] for row in csv.DictReader(f)]
        total += len(rows)
        unparsed += [(path.name, s) for s in rows if isinstance(try_parse_note(s), UnparsedNote)]
    assert total == 2247 and unparsed == [("Kvasir_train.csv", "unknown")]


# ------------------------------------------------------------------------------------------------ mask attributes
def test_mask_components_sides_and_zones_geometric_rule():
    mask = np.zeros((60, 60), dtype=np.uint8)
    _disk(mask, 8, 12, 4)  # left (viewer's), rows 4-12: upper third (rows < 20)
    _disk(mask, 45, 45, 5)  # right, rows 40-50: lower third (rows >= 40)
    mask[28:31, 20:50] = 1  # a bar across the midline (column 30): 10 columns left, 20 right -> right; middle
    mask[55, 2] = 1  # a one-pixel speck: below the minimum area
    attrs = mask_attributes(mask * 255, LungFields.geometric(), min_area_fraction=0.002)
    assert attrs.count == 3
    got = sorted((c.lung, c.zones) for c in attrs.components)
    assert got == [("left", ("upper",)), ("right", ("lower",)), ("right", ("middle",))]
    assert attrs.lungs == {"left", "right"}
    assert mask_attributes(mask, min_area_fraction=0.0).count == 4  # the speck counts without a minimum area
    tilted = np.zeros((60, 60))
    tilted[28:31, 10:40] = 1  # 20 columns left of the midline, 10 right: a left lesion
    assert mask_attributes(tilted).components[0].lung == "left"
    # a component needs min_zone_fraction of its pixels in a zone: rows 17-22 straddle the upper/middle edge at 20
    straddle = np.zeros((60, 60))
    straddle[17:23, 5:15] = 1  # 3 rows upper, 3 rows middle
    assert mask_attributes(straddle).components[0].zones == ("upper", "middle")
    straddle[:] = 0
    straddle[20:40, 5:15] = 1  # 200 pixels in the middle zone
    straddle[17:20, 5] = 1  # and a 3-pixel tail into the upper zone (1.5 % < 5 %)
    assert mask_attributes(straddle).components[0].zones == ("middle",)
    assert mask_attributes(straddle, min_zone_fraction=0.0).components[0].zones == ("upper", "middle")


def test_zone_band_of_the_geometric_rule():
    fields = LungFields.geometric((0.1, 0.7))  # thirds of rows 0.1-0.7: edges at 0.3 and 0.5
    assert fields.zone_edges["left"] == pytest.approx((0.3, 0.5))
    mask = np.zeros((100, 100))
    mask[35:45, 10:20] = 1
    assert mask_attributes(mask, fields).components[0].zones == ("middle",)
    assert mask_attributes(mask).components[0].zones == ("middle",)
    mask2 = np.zeros((100, 100))
    mask2[52:60, 10:20] = 1
    assert mask_attributes(mask2, fields).components[0].zones == ("lower",)
    assert mask_attributes(mask2).components[0].zones == ("middle",)
    with pytest.raises(ValueError, match="zone_band"):
        LungFields.geometric((0.5, 0.2))


def test_lung_fields_from_zone_map_and_binary_mask():
    lungs = np.zeros((64, 64), dtype=bool)
    lungs[10:56, 6:28] = True
    lungs[12:54, 38:58] = True
    zone_map = lung_zone_map(lungs)
    fields = lung_fields_from_array(zone_map)
    edges = np.array(lung_zone_edges(64)) / 64
    assert fields.source == "zone_map"
    assert fields.zone_edges["left"] == pytest.approx(tuple(edges)) == fields.zone_edges["right"]
    assert fields.midline == pytest.approx((28 + 38) / 2 / 64)
    binary = lung_fields_from_array(lungs.astype(np.uint8) * 255)
    assert binary.source == "lung_mask"
    assert binary.zone_edges["left"] == pytest.approx((10 / 64 + 46 / 192, 10 / 64 + 92 / 192))  # thirds of 10-56
    assert binary.zone_edges["right"] == pytest.approx((12 / 64 + 42 / 192, 12 / 64 + 84 / 192))
    assert binary.midline == pytest.approx(33 / 64)
    with pytest.raises(ValueError, match="no lung pixel"):
        lung_fields_from_array(np.zeros((8, 8)))


# ------------------------------------------------------------------------------------------------ scores
NOTE_2 = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


def _lung_mask(*blobs: tuple[float, float]) -> np.ndarray:
    mask = np.zeros((60, 60))
    for row, col in blobs:
        _disk(mask, row, col, 4)
    return mask


@pytest.mark.parametrize(
    "blobs, expected",
    [
        # count, laterality, zone precision, zone recall, consistency
        (((8, 12), (50, 45)), (1.0, 1.0, 1.0, 1.0, 1.0)),  # the note exactly
        (((8, 12),), (0.0, 0.0, 1.0, 0.5, 0.0)),  # only the left upper lesion
        (((8, 12), (30, 12)), (1.0, 0.0, 0.5, 0.5, 0.0)),  # two lesions, both left: upper + middle
        (((8, 12), (50, 45), (30, 45)), (0.0, 1.0, 2 / 3, 1.0, 0.0)),  # an extra right middle lesion
        (((8, 12), (30, 45)), (1.0, 1.0, 0.5, 0.5, 0.0)),  # count and sides right, the right lesion a zone too high
        ((), (0.0, 0.0, 0.0, 0.0, 0.0)),  # empty mask
    ],
)
def test_lung_scores_known_answers(blobs, expected):
    scores = score_consistency(parse_note(NOTE_2), mask_attributes(_lung_mask(*blobs)))
    got = (scores.count, scores.laterality, scores.zone_precision, scores.zone_recall, scores.consistency)
    assert got == pytest.approx(expected)
    assert math.isnan(scores.position)


def test_endoscopy_scores_known_answers():
    note = parse_note("Two colonic polyps.One small,circular,smooth colonic polyp on the top left.One small,"
                      "circular,smooth colonic polyp on the center.")  # fmt: skip
    one = _disk(np.zeros((90, 90)), 15, 15, 5)  # top left only
    s = score_consistency(note, mask_attributes(one))
    assert (s.count, s.position, s.consistency) == (0.0, 0.5, 0.0)
    assert all(math.isnan(v) for v in (s.laterality, s.zone_precision, s.zone_recall))
    both = _disk(one.copy(), 45, 45, 5)
    s = score_consistency(note, mask_attributes(both))
    assert (s.count, s.position, s.consistency) == (1.0, 1.0, 1.0)
    three = _disk(both.copy(), 80, 80, 5)  # an extra bottom right polyp: 2 of max(2, 3) positions
    s = score_consistency(note, mask_attributes(three))
    assert (s.count, s.position, s.consistency) == pytest.approx((0.0, 2 / 3, 0.0))
    many = score_consistency(parse_note("Many small colonic polyps."), mask_attributes(three))
    assert (many.count, many.consistency) == (1.0, 1.0) and math.isnan(many.position)
    no_count = score_consistency(parse_note("Polyp center."), mask_attributes(both))
    assert math.isnan(no_count.count) and no_count.position == 0.5 and no_count.consistency == 0.0


# ------------------------------------------------------------------------------------------------ synthetic data
# sha256 (first 16 hex digits) of image + mask + sentence rendered BEFORE the lung zone maps were added
BEFORE = {(64, 0): "4983179e10c41b32", (64, 1): "c8ec51f8ceacbb78", (96, 3): "f060dbc4b3220e70"}


def test_same_seed_same_image_mask_text_as_before_and_zone_maps_agree():
    for (size, index), digest in BEFORE.items():
        s = render_chest_xray(image_rng(0, "chest_xray", "train", index), size, CXR_SITES[index % 4])
        assert hashlib.sha256(s.image.tobytes() + s.mask.tobytes() + s.sentence.encode()).hexdigest()[:16] == digest
    for index in range(12):
        s = render_chest_xray(image_rng(0, "chest_xray", "test", index), 64, CXR_SITES[index % 4])
        for lesion in s.lesions:  # every lesion pixel lies in the lungs, in the zones its sentence names
            labels = set(np.unique(s.lung_zones[lesion.mask]).tolist())
            assert labels == {LUNG_ZONE_LABELS[(lesion.lung, z)] for z in lesion.zones}
        fields = lung_fields_from_array(s.lung_zones)
        scores = score_consistency(parse_note(s.sentence), mask_attributes(s.mask, fields))
        assert scores.consistency == 1.0, (index, s.sentence)


def test_ensure_datalist_writes_lung_fields(tmp_path):
    path = ensure_datalist(tmp_path / "cxr", synthetic="chest_xray", num_train=2, num_val=1, num_test=2, image_size=32)
    raw = json.loads(Path(path).read_text())
    assert raw["test"][0]["lungs"] == "Test_Folder/lungs/cxr_test_00000.png"
    test = load_datalist(path, "test")
    zone_map = np.asarray(Image.open(test[0]["lungs"]))
    assert set(np.unique(zone_map).tolist()) == {0, 1, 2, 3, 4, 5, 6}
    # a split with the key in some entries only, or a missing file, is an error naming the key
    raw["test"][1].pop("lungs")
    Path(path).write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="'lungs' is in 1 entries of the split but not in 1"):
        load_datalist(path, "test")
    raw["test"][1]["lungs"] = "Test_Folder/lungs/absent.png"
    Path(path).write_text(json.dumps(raw))
    with pytest.raises(FileNotFoundError, match="key 'lungs' file .*absent.png"):
        load_datalist(path, "test")


# ------------------------------------------------------------------------------------------------ handler
def _run_handler(score: str, batches: list[list[dict]], preds: list[list[torch.Tensor]]):
    outputs = iter(preds)
    engine = Engine(lambda e, batch: [{"pred": p} for p in next(outputs)])
    TextConsistencyHandler(score=score).attach(engine, score)
    engine.run(batches, max_epochs=1)
    return engine


def test_handler_reads_notes_from_the_batch_and_names_unparsed(tmp_path, caplog):
    # a zone map whose zones are rows 30-39 / 40-49 / 50-59 (not the image thirds of the geometric rule)
    zone_map = np.zeros((60, 60), dtype=np.uint8)
    for k, (lo, hi) in enumerate(((30, 40), (40, 50), (50, 60))):
        zone_map[lo:hi, 4:26] = LUNG_ZONE_LABELS[("left", ("upper", "middle", "lower")[k])]
        zone_map[lo:hi, 34:56] = LUNG_ZONE_LABELS[("right", ("upper", "middle", "lower")[k])]
    Image.fromarray(zone_map).save(tmp_path / "lungs.png")
    good = torch.as_tensor(_lung_mask((8, 12), (50, 45)))[None]  # the note exactly, by image thirds
    batches = [
        [{"text": NOTE_2, "image": "a.png"}, {"text": NOTE_2, "image": "b.png", "lungs": str(tmp_path / "lungs.png")}],
        [{"text": "unknown", "image": "c.png"}],
    ]
    with caplog.at_level(logging.WARNING):
        engine = _run_handler("consistency", batches, [[good, good], [good]])
    # a: image thirds, consistent; b: its lung fields put the right lesion (rows 46-54) in the middle and lower
    # zones, so it is not; c: not parsed, skipped
    assert engine.state.metrics["consistency"] == pytest.approx(0.5)
    details = engine.state.metric_details["consistency"].flatten().tolist()
    assert details[:2] == [1.0, 0.0] and math.isnan(details[2])
    assert "c.png" in caplog.text and "'unknown'" in caplog.text
    engine = _run_handler("zone_precision", batches[:1], [[good, good]])
    assert engine.state.metrics["zone_precision"] == pytest.approx((1.0 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="score must be one of"):
        TextConsistencyHandler(score="dice")


# ------------------------------------------------------------------------------------------------ notes_from_masks
def _tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "notes_from_masks", Path(__file__).parents[1] / "tools/notes_from_masks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notes_from_masks_folder_datalist_and_check(tmp_path, capsys):
    tool = _tool()
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray((_lung_mask((8, 12), (50, 45)) * 255).astype(np.uint8)).save(masks / "a.png")
    Image.fromarray((_lung_mask((30, 12)) * 255).astype(np.uint8)).save(masks / "b.png")
    Image.fromarray(np.zeros((60, 60), np.uint8)).save(masks / "empty.png")
    assert tool.main(["--masks", str(masks), "--out", str(tmp_path / "notes.csv")]) == 0
    with open(tmp_path / "notes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"Image": "a.png", "Description": NOTE_2},
        {"Image": "b.png", "Description": "Unilateral pulmonary infection, one infected area, middle left lung."},
    ]
    assert "empty.png" in capsys.readouterr().err  # no lesion: no QaTa sentence, listed by name
    assert tool.main(["--masks", str(masks), "--out", str(tmp_path / "n.csv"), "--strict"]) == 1
    # a datalist without notes gets machine-written ones, which score 1 against their own masks
    datalist = {
        "test": [{"image": "masks/a.png", "label": "masks/a.png"}, {"image": "masks/b.png", "label": "masks/b.png"}]
    }
    (tmp_path / "plain.json").write_text(json.dumps(datalist))
    out = tmp_path / "noted.json"
    assert tool.main(["--datalist", str(tmp_path / "plain.json"), "--splits", "test", "--out", str(out)]) == 0
    noted = json.loads(out.read_text())
    assert [e["text"] for e in noted["test"]] == [r["Description"] for r in rows]
    capsys.readouterr()
    assert tool.main(["--datalist", str(out), "--check", "--splits", "test"]) == 0
    assert "| test | 2 | 0 | 1.0000 | 1.0000 | 1.0000 | 1.0000 | n/a | 1.0000 |" in capsys.readouterr().out
    # bad input: named, exit status 1
    assert tool.main(["--masks", str(tmp_path / "absent"), "--out", str(tmp_path / "x.csv")]) == 1
    assert "absent" in capsys.readouterr().err
    (masks / "broken.png").write_bytes(b"not a png")
    assert tool.main(["--masks", str(masks), "--out", str(tmp_path / "x.csv")]) == 1
    assert "broken.png" in capsys.readouterr().err


def test_summary_of_a_score_no_image_carries_is_nan_not_zero():
    """Chest X-ray notes carry no endoscopy position: TextPosition is NaN per image, and so must be its mean."""
    from common.handlers.text_consistency import TextConsistencyMetric

    mask = torch.zeros(1, 32, 32)
    mask[0, 20:26, 4:10] = 1
    note = "Unilateral pulmonary infection, one infected area, lower left lung."
    metric = TextConsistencyMetric(score="position")
    metric([mask, mask], [{"text": note, "name": "a"}, {"text": note, "name": "b"}])
    assert torch.isnan(metric.aggregate())
    metric = TextConsistencyMetric(score="count")
    metric([mask], [{"text": note, "name": "a"}])
    assert float(metric.aggregate()) == 1.0
