# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""CausalCLIPSeg bundle specifics on top of the shared bundle tests: CLIP weights through the bundle's keys, the
missing-weights error, the Table 2 ablation switches and the download list."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from PIL import Image
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


def _large_file_entry() -> dict:
    entries = yaml.safe_load((bundle_dir(NAME) / "large_files.yml").read_text())["large_files"]
    (rn101,) = [e for e in entries if e["path"] == "models/RN101.pt"]
    return rn101


def _bundle_with_local_url(root, source, hash_val: str, hash_type: str):
    """A bundle folder whose large_files.yml lists ``models/RN101.pt`` from the local file ``source`` (file:// URL)."""
    root.mkdir()
    entry = {"path": "models/RN101.pt", "url": source.as_uri(), "hash_val": hash_val, "hash_type": hash_type}
    (root / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}))
    return root


def test_download_step_rejects_a_file_whose_sha256_differs(tmp_path):
    """``download_large_files`` with the shipped hash and hash type refuses a file of other content (no network:
    the URL is a local file://), and accepts it when the list carries that file's own hash."""
    import hashlib

    from monai.apps.utils import HashCheckError
    from monai.bundle import download_large_files

    shipped = _large_file_entry()
    assert shipped["url"].startswith("https://")
    source = tmp_path / "RN101.pt"
    source.write_bytes(b"not the OpenAI RN101 checkpoint")

    bad = _bundle_with_local_url(tmp_path / "bad", source, str(shipped["hash_val"]), shipped["hash_type"])
    with pytest.raises(HashCheckError, match="hash check of downloaded file failed"):
        download_large_files(bundle_path=str(bad))
    assert not (bad / "models" / "RN101.pt").exists()

    # control: the same download with the file's own digest (computed with the shipped hash type) goes through
    own = hashlib.new(shipped["hash_type"], source.read_bytes()).hexdigest()
    assert len(own) == len(str(shipped["hash_val"])) == 64  # a SHA-256 digest, as the shipped one
    good = _bundle_with_local_url(tmp_path / "good", source, own, shipped["hash_type"])
    download_large_files(bundle_path=str(good))
    assert (good / "models" / "RN101.pt").read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- a trained model.pt needs no CLIP weights


def _trained_checkpoint(tmp_path):
    """Save a 'trained' model.pt of a network built from a (tiny) CLIP weights file, then delete that file."""
    from common.networks import load_clip

    clip_config = tiny_overrides(NAME, tmp_path, tmp_path)["clip_model"]
    weights = tmp_path / "clip_weights.pt"
    torch.manual_seed(1)
    torch.save(load_clip(clip_config, allow_random_init=True).state_dict(), weights)
    net = _parser(tmp_path, clip_pretrained=True, clip_weights=str(weights)).get_parsed_content("network_def")
    torch.manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():  # differs from both the CLIP file and any fresh initialisation
            p.add_(0.01 * torch.randn_like(p))
    ckpt = tmp_path / "out" / "models" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(net.state_dict(), ckpt)
    weights.unlink()
    return net.state_dict(), ckpt, weights


def _refuse_load_clip(monkeypatch):
    import common.networks
    import common.networks.clip_encoders

    def refuse(*args, **kwargs):
        raise AssertionError("load_clip called: evaluation/inference must build CLIP without weights")

    monkeypatch.setattr(common.networks, "load_clip", refuse)
    monkeypatch.setattr(common.networks.clip_encoders, "load_clip", refuse)


class _Records(logging.Handler):
    """Collects the messages of the CLIP loader's own logger (the bundle's logging.conf replaces the root handlers,
    which pytest's caplog relies on)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def clip_log():
    log = logging.getLogger("common.networks.clip_encoders")
    handler, level = _Records(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


def _assert_weights(network, state):
    got = network.state_dict()
    assert set(got) == set(state)
    for key, value in state.items():
        assert torch.equal(got[key].cpu(), value), key


def test_evaluation_from_model_pt_needs_no_clip_weights(tmp_path, monkeypatch, clip_log):
    from test_bundles import configs, run_workflow

    state, _, weights = _trained_checkpoint(tmp_path)
    _refuse_load_clip(monkeypatch)
    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", clip_pretrained=True, clip_weights=str(weights))
    clip_log.messages.clear()  # the set-up above built a random CLIP on purpose
    wf = run_workflow(NAME, configs(NAME, "train.json", "evaluate.json"), "train", over)
    assert not weights.exists()
    text = "\n".join(clip_log.messages)
    assert "randomly initialised" not in text and "NOT pretrained" not in text
    assert "built without weights" in text
    _assert_weights(wf.parser.get_parsed_content("network"), state)
    assert (tmp_path / "out" / "eval" / "metrics.csv").is_file()


def test_inference_from_model_pt_needs_no_clip_weights(tmp_path, monkeypatch, clip_log):
    from test_bundles import configs, run_workflow

    state, ckpt, weights = _trained_checkpoint(tmp_path)
    _refuse_load_clip(monkeypatch)
    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "pred", ckpt_path=str(ckpt))
    over["text_prompt"] = "Unilateral pulmonary infection, one infected area, lower left lung."
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray((255 * torch.rand(40, 40).numpy()).astype("uint8")).save(folder / "a.png")
    over["input_dir"] = str(folder)
    clip_log.messages.clear()  # the set-up above built a random CLIP on purpose
    wf = run_workflow(NAME, configs(NAME, "inference.json"), "infer", over)
    text = "\n".join(clip_log.messages)
    assert "randomly initialised" not in text and "NOT pretrained" not in text
    assert "built without weights" in text
    _assert_weights(wf.parser.get_parsed_content("network"), state)
    assert (tmp_path / "pred" / "a_mask.png").is_file()


def _resolved_presets(file: str) -> dict:
    parser = ConfigParser()
    parser.read_config(configs(NAME, file))
    parser.update({"bundle_root": "B"})
    return parser.get_parsed_content("presets")


def test_presets_agree_between_training_and_inference():
    """inference.json builds the network alone: its presets must give the architecture training used."""
    train, infer = _resolved_presets("train.json"), _resolved_presets("inference.json")
    assert set(train) == set(infer) == {"paper", "offline_small"}
    for name, keys in infer.items():
        assert set(keys) == {"clip_model", "clip_quick_gelu", "fpn_out", "decoder_channels"}
        assert keys == {k: train[name][k] for k in keys}, name
    assert train["paper"]["clip_model"] == "RN101" and train["paper"]["clip_pretrained"] is True
    assert train["offline_small"]["clip_pretrained"] is False


def test_unknown_preset_is_named(tmp_path):
    from test_bundles import configs, run_workflow

    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", preset="offline-small")
    with pytest.raises(Exception) as err:
        run_workflow(NAME, configs(NAME, "train.json"), "train", over)
    text = str(err.value) + str(err.value.__cause__)
    assert "preset" in text and "offline-small" in text and "offline_small" in text


def test_offline_small_preset_builds_the_documented_network(tmp_path):
    """``--preset offline_small``: the shipped small open_clip config from scratch, the README's sizes and keys."""
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json"))
    parser.update({"bundle_root": str(bundle_dir(NAME)), "preset": "offline_small"})
    net = parser.get_parsed_content("network_def")
    assert net.fpn_in == [128, 256, 128] and net.fpn_out == 64
    assert sum(p.numel() for p in net.parameters()) == 9_956_382
    assert net.text_encoder.token_embedding.weight.numel() == 49_408 * 128
    assert parser.get_parsed_content("learning_rate") == 1e-3 and parser.get_parsed_content("loss").dice_weight == 1.0
    assert parser.get_parsed_content("clip_pretrained") is False
