# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""EnsureNumChannelsd (grayscale/RGB/RGBA adaptation) and the inference item list (folder or datalist)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from common.data.image_folder import inference_items, list_image_folder
from common.transforms.channels import EnsureNumChannels, EnsureNumChannelsd


def test_channel_rules():
    gray = torch.arange(4.0).view(1, 2, 2)
    rgb = EnsureNumChannels(3)(gray)
    assert rgb.shape == (3, 2, 2) and torch.equal(rgb[2], gray[0])
    assert torch.equal(EnsureNumChannels(1)(rgb), gray), "RGB -> 1 is the channel mean (exact for identical channels)"
    rgba = torch.cat([rgb, torch.full((1, 2, 2), 255.0)])
    assert torch.equal(EnsureNumChannels(3)(rgba), rgb), "alpha is dropped"
    assert EnsureNumChannels(1)(rgba).shape == (1, 2, 2)
    two = MetaTensor(torch.zeros(2, 2, 2), meta={"filename_or_obj": "odd.png"})
    with pytest.raises(ValueError, match="odd.png"):
        EnsureNumChannels(3)(two)
    with pytest.raises(ValueError):
        EnsureNumChannels(0)
    out = EnsureNumChannelsd(keys="image", num_channels=3)({"image": gray, "text": "t"})
    assert out["image"].shape == (3, 2, 2) and out["text"] == "t"


def test_inference_items_from_folder_and_datalist(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("b.png", "a.JPG", "notes.txt"):
        if name.endswith("txt"):
            (folder / name).write_text("x")
        else:
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(
                folder / name, format="PNG" if name.endswith("png") else "JPEG"
            )
    items = list_image_folder(str(folder))
    assert [p["image"].rsplit("/", 1)[1] for p in items] == ["a.JPG", "b.png"], "sorted, images only"
    assert inference_items(str(folder), None) == items
    with pytest.raises(FileNotFoundError, match="missing"):
        list_image_folder(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        list_image_folder(str(empty))
    with pytest.raises(ValueError, match="input_dir"):
        inference_items("", "")
    # a datalist split (labels and text kept for text-guided bundles)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.png")
    datalist = {"test": [{"image": "imgs/b.png", "label": "m.png", "text": "one lesion"}]}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    got = inference_items("", str(tmp_path / "datalist.json"), "test")
    assert got[0]["image"] == str(folder / "b.png") and got[0]["text"] == "one lesion"


def test_inference_items_text_prompt(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    assert inference_items(str(tmp_path), None, text="left lung")[0]["text"] == "left lung"
    with pytest.raises(ValueError, match="text_prompt"):
        inference_items(str(tmp_path), None, require_text=True)
