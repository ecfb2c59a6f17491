# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Measures that make LViT's EPI pseudo labels usable in short runs (start-up bias correction of the bank, hard
pseudo labels, the unlabeled-loss ramp-up) and the pseudo-label quality tool (``tools/pseudo_label_quality.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.semi_supervised import split_labeled
from common.engines import PrepareBatchSemiSupervised, PseudoLabelBank

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import pseudo_label_quality as plq  # noqa: E402

# ------------------------------------------------------------------------------------- bank: start-up bias correction


def test_bias_corrected_bank_equals_zero_started_ema_divided_by_one_minus_beta_power():
    beta = 0.9
    preds = [0.2, 0.8, 0.5, 1.0]
    bank = PseudoLabelBank(1, (1, 1), beta=beta, dtype=torch.float64, bias_correction=True)
    plain = PseudoLabelBank(1, (1, 1), beta=beta, dtype=torch.float64)
    z = 0.0
    for t, p in enumerate(preds, start=1):
        bank.update([0], torch.full((1, 1, 1), p))
        plain.update([0], torch.full((1, 1, 1), p))
        z = beta * z + (1 - beta) * p  # Laine & Aila 2017: Z started at 0, divided by (1 - beta**t)
        assert float(bank.values[0, 0, 0]) == pytest.approx(z / (1 - beta**t), abs=1e-6)
    # after two sightings the corrected label is the weighted mean (beta * p1 + p2) / (1 + beta), not ~p1
    two = PseudoLabelBank(1, (1, 1), beta=0.99, dtype=torch.float64, bias_correction=True)
    two.update([0], torch.zeros(1, 1, 1))
    two.update([0], torch.ones(1, 1, 1))
    assert float(two.values[0, 0, 0]) == pytest.approx(1 / 1.99, abs=1e-6)
    # eq. 9 as printed keeps 0.99 of the first prediction
    assert float(plain.values[0, 0, 0]) != pytest.approx(float(bank.values[0, 0, 0]), abs=1e-3)
    # beta = 0 keeps the latest prediction with or without the correction
    last = PseudoLabelBank(1, (1, 1), beta=0.0, dtype=torch.float64, bias_correction=True)
    for p in preds:
        last.update([0], torch.full((1, 1, 1), p))
    assert float(last.values[0, 0, 0]) == 1.0


def test_bias_correction_survives_a_resume():
    a = PseudoLabelBank(1, (1, 1), beta=0.9, dtype=torch.float64, bias_correction=True)
    for p in (0.1, 0.7):
        a.update([0], torch.full((1, 1, 1), p))
    b = PseudoLabelBank(1, (1, 1), beta=0.9, dtype=torch.float64, bias_correction=True)
    b.load_state_dict(a.state_dict())  # the update count t travels in the state
    a.update([0], torch.full((1, 1, 1), 0.4))
    b.update([0], torch.full((1, 1, 1), 0.4))
    assert float(a.values[0, 0, 0]) == float(b.values[0, 0, 0])


# ------------------------------------------------------------------------------------------------ hard pseudo labels


def test_prepare_batch_hard_threshold_gives_a_mask_and_keeps_the_bank_soft():
    bank = PseudoLabelBank(2, (2, 2), dtype=torch.float32)
    bank.update([0], torch.tensor([[[[0.25, 0.5], [0.75, 1.0]]]]))
    batch = {
        "image": torch.rand(3, 1, 2, 2),
        "label": torch.ones(3, 1, 2, 2),
        "contrastive_label": torch.zeros(3, 1, 2, 2),
        "unlabeled_index": torch.tensor([-1, 0, 1]),
    }
    _, packed, _, _ = PrepareBatchSemiSupervised(bank, extra_keys=None, pseudo_label_threshold=0.5)(batch)
    assert packed[1, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]  # P > 0.5 (0.5 itself is background)
    assert packed[2, 0].tolist() == [[0.0, 0.0], [0.0, 0.0]] and packed[2, 3].max() == 0  # not initialised
    assert packed[0, 0].tolist() == [[1.0, 1.0], [1.0, 1.0]]  # labeled mask untouched
    assert bank.get([0])[0][0, 0].tolist() == [[0.25, 0.5], [0.75, 1.0]]
    _, soft, _, _ = PrepareBatchSemiSupervised(bank, extra_keys=None)(batch)
    assert soft[1, 0].tolist() == [[0.25, 0.5], [0.75, 1.0]]
    for bad in (0.0, 1.0, True, "0.5"):
        with pytest.raises(ValueError, match="epi_hard_threshold"):
            PrepareBatchSemiSupervised(bank, pseudo_label_threshold=bad)


# ------------------------------------------------------------------------------------ tools/pseudo_label_quality.py


def _png(path: Path, mask: np.ndarray) -> str:
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture()
def small_run(tmp_path):
    """A 6-image training list (2 labeled at 1/3) with known masks, and a checkpoint whose bank is known."""
    size = 8
    items = []
    masks = []
    for i in range(6):
        m = np.zeros((size, size), dtype=np.uint8)
        m[i : i + 3, 1:4] = 1  # 9 pixels, at a different row per image
        masks.append(m)
        img = _png(tmp_path / f"img{i}.png", np.full((size, size), 0.5))
        lab = _png(tmp_path / f"lab{i}.png", m)
        items.append({"image": img, "label": lab, "text": f"one lesion in zone {i % 2}."})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": items, "validation": items[:1]}))
    from common.data import load_datalist

    labeled, unlabeled = split_labeled(load_datalist(datalist, "training"), 1 / 3, seed=0)
    truth = {it["image"]: m for it, m in zip(load_datalist(datalist, "training"), masks)}
    bank = PseudoLabelBank(len(unlabeled), (size, size), dtype=torch.float32, item_ids=[u["image"] for u in unlabeled])
    # slot 0: exact mask transposed (PILReader frame) at 0.9 -> Dice 1; slot 1: the mask at 0.4 -> below threshold,
    # empty prediction -> Dice 0; slot 2: top half of the rows of the mask -> Dice 2*6/(6+9); slot 3 never seen
    t0 = truth[unlabeled[0]["image"]].T.astype(np.float32)
    t1 = truth[unlabeled[1]["image"]].T.astype(np.float32)
    t2 = truth[unlabeled[2]["image"]].T.astype(np.float32).copy()
    t2[3, :] = 0  # (transposed frame: the mask's 3 columns 1..3 become rows 1..3) drop one of the 3 rows
    bank.update([0, 1, 2], torch.from_numpy(np.stack([0.9 * t0, 0.4 * t1, 0.9 * t2])))
    ckpt = tmp_path / "checkpoint_last.pt"
    torch.save({"epi_bank": bank.state_dict(), "trainer": {"epoch_length": 4, "iteration": 12, "max_epochs": 5}}, ckpt)
    return {"datalist": str(datalist), "ckpt": str(ckpt), "labeled": labeled, "unlabeled": unlabeled}


def test_pseudo_label_quality_scores_the_bank_per_image(small_run, tmp_path, capsys):
    out = tmp_path / "q.json"
    argv = ["--checkpoint", small_run["ckpt"], "--datalist_file", small_run["datalist"], "--label_fraction", "0.3333"]
    assert plq.main(argv + ["--out_json", str(out), "--per_image", "--contrastive"]) == 0
    res = json.loads(out.read_text())
    assert res["num_labeled"] == 2 and res["num_unlabeled"] == 4
    row = res["banks"][0]
    assert row["epoch"] == 3 and row["initialised"] == 3 and row["num_items"] == 4
    assert row["per_image"][:3] == pytest.approx([1.0, 0.0, 12 / 15]) and row["per_image"][3] is None
    assert row["dice"] == pytest.approx((1.0 + 0.0 + 0.8) / 3)
    # soft Dice of slot 0: 2 * 0.9 * 9 / (0.9 * 9 + 9); confidence |2P - 1| averaged over the 64 pixels
    assert row["soft_dice"] == pytest.approx((2 * 0.9 / 1.9 + 2 * 0.4 / 1.4 + 2 * 0.9 * 6 / (0.9 * 6 + 9)) / 3)
    conf0 = (9 * 0.8 + 55 * 1.0) / 64
    conf1 = (9 * 0.2 + 55 * 1.0) / 64
    conf2 = (6 * 0.8 + 58 * 1.0) / 64
    assert row["confidence"] == pytest.approx((conf0 + conf1 + conf2) / 3)
    # contrastive labels: the mask of the labeled image with the same note (bag-of-words), scored like the bank
    c = res["contrastive"]
    assert c["matched"] == 4 and len(c["per_image"]) == 4 and 0.0 <= c["dice"] <= 1.0
    printed = capsys.readouterr().out
    assert "| 3 | 0.6000 |" in printed and "slot\timage\tpseudo_dice" in printed


def test_pseudo_label_quality_errors_exit_1(small_run, tmp_path, capsys):
    base = ["--datalist_file", small_run["datalist"]]
    # another split (the bank's fingerprint or size does not match)
    assert plq.main(["--checkpoint", small_run["ckpt"], *base, "--label_fraction", "0.5"]) == 1
    assert "does not match the split" in capsys.readouterr().err
    assert plq.main(["--checkpoint", small_run["ckpt"], *base, "--label_fraction", "0.3333", "--seed", "5"]) == 1
    assert "does not match the split" in capsys.readouterr().err
    # a checkpoint without a bank (fully supervised run) and a missing file
    no_bank = tmp_path / "sup.pt"
    torch.save({"network": {}}, no_bank)
    assert plq.main(["--checkpoint", str(no_bank), *base, "--label_fraction", "0.3333"]) == 1
    assert "no 'epi_bank' entry" in capsys.readouterr().err
    assert plq.main(["--checkpoint", str(tmp_path / "nope.pt"), *base, "--label_fraction", "0.3333"]) == 1
    assert "nope.pt" in capsys.readouterr().err
    assert plq.main(["--checkpoint", small_run["ckpt"], *base, "--label_fraction", "1.0"]) == 1
    assert "no unlabeled image" in capsys.readouterr().err


# ------------------------------------------------------------------------ two streams: labeled + unlabeled per batch


def test_two_stream_batches_keep_the_labeled_only_batches_and_add_unlabeled_ones():
    from common.data.semi_supervised import WarmupSemiSupervisedBatchSampler, WarmupSemiSupervisedSampler

    L, U, B, M = 5, 7, 4, 3
    semi = WarmupSemiSupervisedBatchSampler(L, U, batch_size=B, warmup_epochs=1, unlabeled_per_batch=M, seed=3)
    only = WarmupSemiSupervisedBatchSampler(L, 0, batch_size=B, warmup_epochs=0, epoch_length=L + U, seed=3)
    assert len(semi) == len(only) == 3  # ceil(12 / 4)
    for epoch in (1, 2, 3):
        semi.set_epoch(epoch)
        only.set_epoch(epoch)
        got, ref = list(semi), list(only)
        assert len(got) == 3 and all(len(b) == B for b in ref)
        # labeled part of every batch == the labeled-only run's batch of that epoch
        assert [[i for i in b if i < L] for b in got] == ref
        if epoch == 1:  # warm-up: labeled only
            assert got == ref
        else:
            unl = [[i for i in b if i >= L] for b in got]
            assert all(len(u) == M for u in unl)
            flat = [i for u in unl for i in u]
            assert sorted(flat[:U]) == list(range(L, L + U))  # shuffled passes over the unlabeled items
            assert sorted(set(flat)) == list(range(L, L + U))
    # unlabeled_per_batch = 0: exactly the mixed-stream sampler's order, cut into batches
    mixed = WarmupSemiSupervisedBatchSampler(L, U, batch_size=B, warmup_epochs=1, seed=3)
    flat_sampler = WarmupSemiSupervisedSampler(L, U, warmup_epochs=1, seed=3)
    for epoch in (1, 2):
        mixed.set_epoch(epoch)
        order = flat_sampler.indices(epoch)
        assert list(mixed) == [order[i : i + B] for i in range(0, len(order), B)]
    # the (seed, epoch) pair decides the order
    again = WarmupSemiSupervisedBatchSampler(L, U, batch_size=B, warmup_epochs=1, unlabeled_per_batch=M, seed=3)
    assert again.batches(2) == semi.batches(2) and again.batches(2) != again.batches(3)
    for kwargs in ({"batch_size": 0}, {"unlabeled_per_batch": -1}, {"batch_size": 2.5}, {"unlabeled_per_batch": True}):
        with pytest.raises(ValueError, match="WarmupSemiSupervisedBatchSampler"):
            WarmupSemiSupervisedBatchSampler(**{"num_labeled": 3, "num_unlabeled": 2, "batch_size": 2, **kwargs})


def test_bundle_two_streams_hard_labels_and_bias_correction_reach_the_trainer(tmp_path):
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from test_bundles import configs, tiny_overrides

    over = tiny_overrides(
        "lvit",
        tmp_path / "data",
        tmp_path / "out",
        label_fraction=0.5,
        max_epochs=2,
        epi_warmup_epochs=1,
        unlabeled_per_batch=3,
        epi_hard_threshold=0.5,
        epi_bias_correction=True,
    )
    wf = ConfigWorkflow(config_file=configs("lvit", "train.json")[0], workflow_type="train", **over)
    wf.initialize()
    bank = wf.parser.get_parsed_content("epi_bank")
    assert bank.bias_correction is True
    assert wf.parser.get_parsed_content("train#prepare_batch").pseudo_label_threshold == 0.5
    trainer = wf.parser.get_parsed_content("train#trainer")
    drawn: dict[int, list[list[int]]] = {1: [], 2: []}
    trainer.add_event_handler(
        Events.ITERATION_STARTED, lambda e: drawn[e.state.epoch].append(e.state.batch["unlabeled_index"].tolist())
    )
    wf.run()
    # 8 training items, 4 labeled: epoch length 8 labeled-stream items = 2 batches of batch_size 4
    assert [len(b) for b in drawn[1]] == [4, 4] and all(i == -1 for b in drawn[1] for i in b)
    for b in drawn[2]:  # after the warm-up: 4 labeled + 3 unlabeled per batch
        assert len(b) == 7 and b[:4] == [-1] * 4 and all(i >= 0 for i in b[4:])
    assert int(bank.counts.sum()) == 6 and bool(bank.initialised.all())


# ------------------------------------------------------------------------------------------ unlabeled-loss weight


def test_unlabeled_weight_scales_only_the_unlabeled_group():
    from common.losses import LViTSemiSupervisedLoss

    torch.manual_seed(0)
    logits = torch.randn(4, 1, 6, 6)
    target = torch.zeros(4, 4, 6, 6)
    target[:, 0] = (torch.rand(4, 6, 6) > 0.5).float()
    target[2:, 1, :3] = 1.0  # contrastive masks of the unlabeled images
    target[2:, 2] = 1.0  # images 2, 3 unlabeled
    target[:, 3] = 1.0  # all targets usable
    full = LViTSemiSupervisedLoss(alpha=0.1)
    full(logits, target)
    t1 = dict(full.last_terms)
    lab = LViTSemiSupervisedLoss(alpha=0.1, unlabeled_weight=0.0)
    lab(logits, target)
    t0 = dict(lab.last_terms)
    half = LViTSemiSupervisedLoss(alpha=0.1, unlabeled_weight=0.25)
    value = half(logits, target)
    # w = 0: only the labeled group; w = 0.25: labeled + 0.25 * (unlabeled group)
    assert t0["lv"] == 0.0
    for k in ("dice", "ce", "lv"):
        assert half.last_terms[k] == pytest.approx(t0[k] + 0.25 * (t1[k] - t0[k]), abs=1e-6)
    assert float(value) == pytest.approx(sum(half.last_terms.values()), abs=1e-6)
    with pytest.raises(ValueError, match="unlabeled_weight"):
        LViTSemiSupervisedLoss(unlabeled_weight=-1.0)
    with pytest.raises(ValueError, match="reduction='group'"):
        LViTSemiSupervisedLoss(unlabeled_weight=0.5, reduction="batch")
