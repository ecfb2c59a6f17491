# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""WeightedSumLoss, LossTermsHandler, the atomic checkpoint handlers and the per-case table."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch
from ignite.engine import Engine, Events
from monai.losses import DiceLoss

from common.handlers import BestModelHandler, LastCheckpointHandler, LossTermsHandler, atomic_save, write_per_case_table
from common.losses import WeightedSumLoss


def test_weighted_sum_loss_matches_formula_and_records_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    dice, bce = DiceLoss(sigmoid=True), torch.nn.BCEWithLogitsLoss()
    loss = WeightedSumLoss({"dice": dice, "bce": bce}, weights={"dice": 0.5, "bce": 0.5})
    value = loss(logits, target)
    expected = 0.5 * dice(logits, target) + 0.5 * bce(logits, target)  # LViT eq. 16: (Dice + CE) / 2
    assert torch.allclose(value, expected)
    assert loss.last_terms["dice"] == pytest.approx(0.5 * float(dice(logits, target)))
    assert loss.last_terms["bce"] == pytest.approx(0.5 * float(bce(logits, target)))
    # negative weights (CausalCLIPSeg's L_c - lambda L_s) and default weight 1
    adv = WeightedSumLoss({"c": bce, "s": bce}, weights={"s": -0.05})
    assert torch.allclose(adv(logits, target), 0.95 * bce(logits, target))
    value.backward() if value.requires_grad else None


@pytest.mark.parametrize(
    "terms,weights,err",
    [
        ({}, None, ValueError),
        ({"bad name": torch.nn.L1Loss()}, None, ValueError),
        ({"a": torch.nn.L1Loss()}, {"b": 1}, KeyError),
    ],
)
def test_weighted_sum_loss_bad_arguments(terms, weights, err):
    with pytest.raises(err):
        WeightedSumLoss(terms, weights)


def test_loss_terms_handler_epoch_means():
    loss = WeightedSumLoss({"a": torch.nn.L1Loss(), "b": torch.nn.MSELoss()})
    values = iter([(1.0, 2.0), (3.0, 4.0)])

    def step(engine, batch):
        x, y = next(values)
        return loss(torch.tensor([x]), torch.tensor([0.0])) + 0 * y

    engine = Engine(step)
    LossTermsHandler(loss).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.metrics["loss_a"] == pytest.approx(2.0)  # mean of |1| and |3|
    assert engine.state.metrics["loss_b"] == pytest.approx(5.0)  # mean of 1 and 9
    with pytest.raises(TypeError, match="last_terms"):
        LossTermsHandler(torch.nn.L1Loss())


def test_atomic_save_never_leaves_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.ones(2)}, str(path))

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError):
        atomic_save({"w": torch.zeros(2)}, str(path))
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["w"], torch.ones(2)), "the earlier checkpoint must survive a failed write"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "no temporary file is left behind"


def _evaluator_with_scores(scores):
    it = iter(scores)
    ev = Engine(lambda e, b: None)

    @ev.on(Events.EPOCH_COMPLETED)
    def _set(engine):
        engine.state.metrics["val_mean_dice"] = next(it)

    return ev


def test_best_model_handler_keeps_best_and_survives_resume(tmp_path):
    net = torch.nn.Linear(2, 1)
    handler = BestModelHandler(str(tmp_path), net, metric_name="val_mean_dice")
    ev = _evaluator_with_scores([0.5, 0.7, 0.6])
    # handler attached after the metric setter, as MONAI metric handlers run before val handlers
    handler.attach(ev)
    for expected_best in (0.5, 0.7, 0.7):
        with torch.no_grad():
            net.weight.add_(1.0)
        ev.run([0], max_epochs=1)
        assert json.loads((tmp_path / "model.json").read_text())["value"] == pytest.approx(expected_best)
    saved = torch.load(tmp_path / "model.pt")
    assert set(saved) == {"weight", "bias"}, "model.pt is a flat state_dict (ckpt_export / MONAI Label format)"
    # a resumed run knows the best so far: 0.65 must not overwrite 0.7
    resumed = BestModelHandler(str(tmp_path), net, metric_name="val_mean_dice", resume=True)
    assert resumed.best == pytest.approx(0.7)
    ev2 = _evaluator_with_scores([0.65])
    resumed.attach(ev2)
    ev2.run([0], max_epochs=1)
    assert json.loads((tmp_path / "model.json").read_text())["value"] == pytest.approx(0.7)
    # a fresh run (resume=False) starts from scratch
    assert BestModelHandler(str(tmp_path), net, metric_name="val_mean_dice").best is None


def test_best_model_handler_missing_metric_is_an_error(tmp_path):
    ev = Engine(lambda e, b: None)
    BestModelHandler(str(tmp_path), torch.nn.Linear(1, 1), metric_name="nope").attach(ev)
    with pytest.raises(KeyError, match="nope"):
        ev.run([0], max_epochs=1)


def test_last_checkpoint_handler_interval_and_final(tmp_path):
    net = torch.nn.Linear(2, 1)
    trainer = Engine(lambda e, b: None)
    saved_epochs = []
    handler = LastCheckpointHandler(str(tmp_path), {"network": net}, interval=2)
    handler.attach(trainer)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _record(engine):
        if os.path.exists(handler.path):
            saved_epochs.append(
                torch.load(handler.path, weights_only=False)["trainer"]["iteration"]
            )  # 1 iteration/epoch

    trainer.run([0], max_epochs=3)
    assert saved_epochs == [2, 3], "saved every 2 epochs and at the final epoch"
    with pytest.raises(ValueError):
        LastCheckpointHandler(str(tmp_path), {}, interval=0)


def test_write_per_case_table(tmp_path):
    for name, vals in {"Dice": ["0.5", "1.0"], "HD95": ["3.0", "0.0"]}.items():
        (tmp_path / f"{name}_raw.csv").write_text(
            "filename,class0\n" + "".join(f"case{i},{v}\n" for i, v in enumerate(vals))
        )
    out = write_per_case_table(str(tmp_path), ["Dice", "HD95"])
    rows = list(csv.reader(open(out)))
    assert rows == [["filename", "Dice", "HD95"], ["case0", "0.5", "3.0"], ["case1", "1.0", "0.0"]]
    with pytest.raises(FileNotFoundError, match="IoU_raw.csv"):
        write_per_case_table(str(tmp_path), ["Dice", "IoU"])


def test_per_image_dice_iou_handlers_score_empty_cases_and_average_per_image():
    from monai.handlers import from_engine

    from common.handlers import PerImageDiceHandler, PerImageIoUHandler

    def mask(*cells):
        m = torch.zeros(1, 4, 4)
        for r, c in cells:
            m[0, r, c] = 1
        return m

    # image 1: Dice 2*1/(1+2)=2/3, IoU 1/2; image 2: both empty -> 1, 1; image 3: false positive on empty GT -> 0, 0
    preds = [mask((0, 0)), mask(), mask((1, 1))]
    labels = [mask((0, 0), (0, 1)), mask(), mask()]
    batches = [[{"pred": p, "label": y}] for p, y in zip(preds, labels)]
    engine = Engine(lambda e, b: b)
    PerImageDiceHandler(output_transform=from_engine(["pred", "label"])).attach(engine, "dice")
    PerImageIoUHandler(output_transform=from_engine(["pred", "label"])).attach(engine, "iou")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["dice"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert engine.state.metrics["iou"] == pytest.approx((0.5 + 1 + 0) / 3)
