# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The image and the text reach a network through MONAI's ignite engines, the way every text-guided bundle wires
them: ``TokenizeTextd`` in the preprocessing, ``PrepareBatchExtraInput(extra_keys=["text_ids"])`` as the
engines' ``prepare_batch``, ``WeightedSumLoss`` + ``LossTermsHandler`` for per-term logs.
"""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import PrepareBatchExtraInput, SupervisedEvaluator, SupervisedTrainer
from monai.handlers import from_engine
from monai.losses import DiceLoss

from common.handlers import LossTermsHandler, PerImageDiceHandler
from common.losses import WeightedSumLoss
from common.transforms import OpenCLIPTokenizer, TokenizeTextd


class TextConditionedToy(torch.nn.Module):
    """Predicts the image's left half when the text says "left", its right half otherwise, so only the text tells."""

    def __init__(self, left_id: int) -> None:
        super().__init__()
        self.left_id = left_id
        self.scale = torch.nn.Parameter(torch.tensor(5.0))
        self.calls: list[tuple] = []

    def forward(self, image: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(image.shape), tuple(text_ids.shape), text_ids.dtype))
        is_left = (text_ids == self.left_id).any(dim=1).float().view(-1, 1, 1, 1)
        w = image.shape[-1]
        cols = torch.arange(w, dtype=image.dtype).view(1, 1, 1, w)
        left_half = (cols < w / 2).to(image.dtype)
        target = is_left * left_half + (1 - is_left) * (1 - left_half)
        return self.scale * (2 * target - 1) * torch.ones_like(image[:, :1])


def _items(n: int = 4):
    items = []
    for i in range(n):
        left = i % 2 == 0
        label = torch.zeros(1, 8, 8)
        label[..., :4] = 1.0 if left else 0.0
        label[..., 4:] = 0.0 if left else 1.0
        items.append(
            {"image": torch.rand(1, 8, 8), "label": label, "text": f"lesion in the {'left' if left else 'right'} lung"}
        )
    return items


def test_text_reaches_network_through_trainer_and_evaluator():
    tokenizer = OpenCLIPTokenizer(context_length=12)
    left_id = int(tokenizer(["left"]).ids[0, 1])
    transform = TokenizeTextd(keys="text", tokenizer=tokenizer)
    loader = DataLoader(Dataset(_items(), transform=transform), batch_size=2)
    net = TextConditionedToy(left_id)
    loss = WeightedSumLoss(
        {"dice": DiceLoss(sigmoid=True), "bce": torch.nn.BCEWithLogitsLoss()}, {"dice": 0.5, "bce": 0.5}
    )
    prepare = PrepareBatchExtraInput(extra_keys=["text_ids"])

    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=loader,
        network=net,
        prepare_batch=prepare,
        postprocessing=lambda x: x,
        key_val_metric={
            "dice": PerImageDiceHandler(
                output_transform=lambda out: ([(o["pred"] > 0).float() for o in out], [o["label"] for o in out])
            )
        },
    )
    evaluator.run()
    assert evaluator.state.metrics["dice"] == pytest.approx(
        1.0
    ), "the text decides the half: perfect only if text arrived"
    assert net.calls[-1] == ((2, 1, 8, 8), (2, 12), torch.int64)

    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss,
        prepare_batch=prepare,
        train_handlers=[LossTermsHandler(loss)],
    )
    trainer.run()
    assert {"loss_dice", "loss_bce"} <= set(trainer.state.metrics)
    last_loss = from_engine(["loss"], first=True)(trainer.state.output)
    assert float(last_loss) == pytest.approx(loss.last_terms["dice"] + loss.last_terms["bce"], rel=1e-5)
    # swapping the texts flips the prediction: the network really used them
    swapped = [
        dict(d, text=d["text"].replace("left", "X").replace("right", "left").replace("X", "right")) for d in _items()
    ]
    evaluator2 = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(swapped, transform=transform), batch_size=2),
        network=net,
        prepare_batch=prepare,
        key_val_metric={
            "dice": PerImageDiceHandler(
                output_transform=lambda out: ([(o["pred"] > 0).float() for o in out], [o["label"] for o in out])
            )
        },
    )
    evaluator2.run()
    assert evaluator2.state.metrics["dice"] == pytest.approx(0.0)
