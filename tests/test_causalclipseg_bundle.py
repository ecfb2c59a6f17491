# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""CausalCLIPSeg bundle specifics on top of the shared bundle tests: CLIP weights through the bundle's keys, the
missing-weights error, the Table 2 ablation switches and the download list."""

from __future__ import annotations

import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from test_bundles import bundle_dir, configs, tiny_overrides

NAME = "causalclipseg"


def _parser(tmp_path, **extra):
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json"))
    parser.update(tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", **extra))
    return parser


def test_clip_weights_load_through_bundle_keys(tmp_path):
    from common.networks import load_clip

    config = tiny_overrides(NAME, tmp_path, tmp_path)["clip_model"]
    torch.manual_seed(1)
    saved = load_clip(config, allow_random_init=True)
    torch.save(saved.state_dict(), tmp_path / "tiny_clip.pt")
    net = _parser(tmp_path, clip_pretrained=True, clip_weights=str(tmp_path / "tiny_clip.pt")).get_parsed_content(
        "network_def"
    )
    assert torch.equal(net.image_encoder.visual.conv1.weight, saved.visual.conv1.weight)
    assert torch.equal(net.text_encoder.text_projection, saved.text_projection)


def test_missing_clip_weights_names_both_ways(tmp_path):
    with pytest.raises(Exception) as err:
        _parser(tmp_path, clip_pretrained=True, clip_weights=str(tmp_path / "absent.pt")).get_parsed_content(
            "network_def"
        )
    text = str(err.value) + str(err.value.__cause__)
    assert "absent.pt" in text


def test_default_without_weights_tells_how_to_proceed(tmp_path):
    """The default config expects the downloaded OpenAI RN101 file; without it the run stops naming both ways."""
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json"))
    parser.update({"bundle_root": str(tmp_path), "clip_model": tiny_overrides(NAME, tmp_path, tmp_path)["clip_model"]})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("network_def")
    text = str(err.value) + str(err.value.__cause__) + str(getattr(err.value.__cause__, "__cause__", ""))
    assert "RN101.pt" in text and "download_large_files" in text and "clip_pretrained" in text


def test_ablation_without_causal_module(tmp_path):
    net = _parser(tmp_path, causal=False).get_parsed_content("network_def")
    assert len(net.maskers) == 0 and net.decoder_s is None
    net.train()
    out = net(torch.rand(2, 3, 32, 32), torch.randint(0, 49407, (2, 20)))
    assert out.shape == (2, 1, 32, 32)
    with_causal = _parser(tmp_path).get_parsed_content("network_def").train()
    assert with_causal(torch.rand(2, 3, 32, 32), torch.randint(0, 49407, (2, 20))).shape == (2, 2, 32, 32)
    assert with_causal.eval()(torch.rand(1, 3, 32, 32), torch.randint(0, 49407, (1, 20))).shape == (1, 1, 32, 32)


def test_large_files_lists_the_openai_checkpoint():
    entries = yaml.safe_load((bundle_dir(NAME) / "large_files.yml").read_text())["large_files"]
    (rn101,) = [e for e in entries if e["path"] == "models/RN101.pt"]
    # OpenAI names each checkpoint's folder by the file's SHA-256
    assert rn101["hash_type"] == "sha256" and rn101["hash_val"] in rn101["url"]
