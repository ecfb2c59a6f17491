# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Every bundle's ``large_files.yml`` (the pretrained encoders ``python -m monai.bundle download_large_files`` fetches
and SHA-256-checks) and the message of a run whose pretrained file is absent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

from common.utils import find_large_file, missing_file_message, read_large_files

BUNDLES = sorted(p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: config keys whose value is the path of a pretrained encoder file or folder
ENCODER_KEYS = ("clip_weights", "text_encoder_path", "hf_text_path")
#: what issue #12 says each bundle can use (its README and presets name them), as paths in its large_files.yml
EXPECTED = {
    "causalclipseg": ["models/RN101.pt", "models/RN50.pt"],
    "mcdrl": ["models/ViT-B-16.pt", "models/RN50.pt", "models/ViT-L-14.pt"],
    "c2seg": ["models/ViT-B-16.pt", "models/biobert-v1.1", "models/pubmedbert"],
    "lvit": ["models/bert-base-uncased"],
    "biclip": ["models/CXR-BERT-specialized"],
    "unet_baseline": [],
}
#: OpenAI's CLIP release files as open_clip names the architectures (open_clip/pretrained.py, tag "openai")
OPENAI_CLIP_FILES = {"RN50": "RN50.pt", "RN101": "RN101.pt", "ViT-B-16": "ViT-B-16.pt", "ViT-L-14": "ViT-L-14.pt"}


def _large_files(name: str) -> dict:
    return read_large_files(REPO_ROOT / "bundles" / name)


def _listed(name: str) -> list[str]:
    return [str(e["path"]) for e in _large_files(name)["large_files"]]


def _covers(listed: list[str], path: str) -> bool:
    """A file is listed itself; a folder is covered when files under it are listed."""
    return path in listed or any(p.startswith(path.rstrip("/") + "/") for p in listed)


def test_every_bundle_has_one_and_expected_bundles_are_checked():
    assert set(EXPECTED) == set(BUNDLES), "add the new bundle's pretrained encoders to EXPECTED"
    for name in BUNDLES:
        assert (REPO_ROOT / "bundles" / name / "large_files.yml").is_file(), name


@pytest.mark.parametrize("name", BUNDLES)
def test_entries_are_well_formed(name):
    content = _large_files(name)
    readme = (REPO_ROOT / "bundles" / name / "docs" / "README.md").read_text()
    paths = []
    for entry in content["large_files"]:
        assert set(entry) <= {"path", "url", "hash_val", "hash_type"}, f"{name}: unknown fields in {entry}"
        path, url = str(entry["path"]), str(entry["url"])
        assert path.startswith("models/") and ".." not in Path(path).parts, f"{name}: {path} is not under models/"
        assert url.startswith("https://"), f"{name}: {path} has no https URL"
        assert path not in paths, f"{name}: {path} listed twice"
        paths.append(path)
        if "hash_val" in entry or "hash_type" in entry:
            assert entry.get("hash_type") == "sha256", f"{name}: {path}: hash_type must be sha256"
            assert HEX64.match(str(entry.get("hash_val", ""))), f"{name}: {path}: hash_val is not 64 hex digits"
        else:
            # a file without a hash is one whose SHA-256 no citable source gives: the README must say so
            folder = "/".join(path.split("/")[:2])
            assert folder in readme and "hash" in readme, f"{name}: {path} has no hash and the README does not say why"
        if url.startswith("https://openaipublic.azureedge.net/clip/models/"):
            # OpenAI's release URL carries the file's SHA-256 as its last folder (openai/CLIP clip.py `_download`)
            assert url.split("/")[-2] == entry["hash_val"], f"{name}: {path}: hash differs from the release URL"
            assert url.split("/")[-1] == Path(path).name
    for hint_path, hint in content["if_missing"].items():
        assert hint.get("key") in ENCODER_KEYS and hint.get("without", "").startswith("--"), f"{name}: {hint_path}"
        assert _covers(paths, hint_path) or hint.get("made_from"), f"{name}: if_missing {hint_path} lists nothing"


def test_known_hashes_are_the_published_ones():
    """The SHA-256 values against their sources (openai/CLIP `_MODELS`; huggingface.js list-files test for BERT;
    for BioBERT the SRI values of SkyeAv/CinicalTrialsClassifierTwo nix/biobert.nix, cc12542, decoded here)."""
    published = {
        ("causalclipseg", "models/RN101.pt"): "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
        ("mcdrl", "models/RN50.pt"): "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
        ("mcdrl", "models/ViT-B-16.pt"): "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        ("mcdrl", "models/ViT-L-14.pt"): "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        ("lvit", "models/bert-base-uncased/pytorch_model.bin"): (
            "097417381d6c7230bd9e3557456d726de6e83245ec8b24f529f60198a67b203a"
        ),
    }
    biobert_sri = (
        {  # Nix fetchurl "sha256-<base64>" of https://huggingface.co/dmis-lab/biobert-v1.1/resolve/main/<file>
            "config.json": "1Qbo0M/VIjRyZ46JfLKU9nZdLkaV05RFpuSGz4U+Yug=",
            "pytorch_model.bin": "jofLJ9iJGGxEL+/yvqU/jM4sX8JNS8iL8IzNOCGxONw=",
            "vocab.txt": "7qqYdbI7BLTFTvdZ0D250boVVIOPj7JsXZb6VR35PQI=",
            "tokenizer_config.json": "D20T5vTab54k8iraa8O+VxEj2FjXwMBainzVWpwjwug=",
            "special_tokens_map.json": "MD30WgNgnk6tBLw9wVNtCrGbU1jbaFtvPaEj0F7CAOM=",
        }
    )
    for file, sri in biobert_sri.items():
        published[("c2seg", f"models/biobert-v1.1/{file}")] = base64.b64decode(sri).hex()
    for (name, path), digest in published.items():
        (entry,) = [e for e in _large_files(name)["large_files"] if e["path"] == path]
        assert entry["hash_val"] == digest, (name, path)


def _config_paths(name: str) -> set[str]:
    """``models/...`` paths that the encoder keys of the bundle's configs, and its README examples, point at."""
    found: set[str] = set()
    bundle = REPO_ROOT / "bundles" / name
    for config in sorted((bundle / "configs").glob("*.json")):
        content = json.loads(config.read_text())
        for key in ENCODER_KEYS:
            value = content.get(key)
            if isinstance(value, str):
                found.update(re.findall(r"models/[A-Za-z0-9_.\-]+", value))
        presets = content.get("presets", {})
        for preset in presets.values() if isinstance(presets, dict) else []:
            model = preset.get("clip_model") if isinstance(preset, dict) else None
            if preset.get("clip_pretrained") and model in OPENAI_CLIP_FILES:
                found.add(f"models/{OPENAI_CLIP_FILES[model]}")
    readme = (bundle / "docs" / "README.md").read_text()
    for key in ENCODER_KEYS:
        found.update(re.findall(rf"--{key}[ =]bundles/{name}/(models/[A-Za-z0-9_.\-]+)", readme))
    return found


@pytest.mark.parametrize("name", BUNDLES)
def test_every_encoder_a_config_can_use_is_listed(name):
    listed = _listed(name)
    hints = _large_files(name)["if_missing"]
    for path in EXPECTED[name]:
        assert _covers(listed, path), f"{name}: {path} (issue #12) is not in large_files.yml"
    for path in sorted(_config_paths(name)):
        assert _covers(listed, path) or path in hints, f"{name}: a config or README points at {path}, not listed"
    if name == "lvit":
        # the files transformers needs to load the folder offline are all there
        for file in ("config.json", "pytorch_model.bin", "vocab.txt"):
            assert f"models/bert-base-uncased/{file}" in listed


def test_download_verifies_the_sha256(tmp_path):
    """MONAI's download_large_files checks a listed hash after the download (a file:// URL: no network)."""
    from monai.apps.utils import HashCheckError
    from monai.bundle import download_large_files

    source = tmp_path / "weights.bin"
    source.write_bytes(b"pretend weights")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    for folder, value in (("good", digest), ("bad", "0" * 64)):
        bundle = tmp_path / folder
        bundle.mkdir()
        entry = {"path": "models/w.bin", "url": source.as_uri(), "hash_val": value, "hash_type": "sha256"}
        (bundle / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry], "if_missing": {}}))
    download_large_files(bundle_path=str(tmp_path / "good"))
    assert (tmp_path / "good" / "models" / "w.bin").read_bytes() == b"pretend weights"
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(tmp_path / "bad"))
    assert not (tmp_path / "bad" / "models" / "w.bin").exists()


def test_missing_file_message_names_file_command_and_key(tmp_path, monkeypatch):
    bundle = tmp_path / "bundles" / "toy"
    bundle.mkdir(parents=True)
    (bundle / "large_files.yml").write_text(
        yaml.safe_dump(
            {
                "large_files": [{"path": "models/enc/config.json", "url": "https://example.invalid/config.json"}],
                "if_missing": {
                    "models/enc": {"key": "text_encoder_path", "without": "--text_encoder embedding_table"},
                    "models/made": {"key": "text_encoder_path", "without": "--x y", "made_from": "models/enc"},
                },
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    hint = find_large_file("bundles/toy/models/enc")
    assert hint is not None and hint.listed == ["models/enc/config.json"] and hint.key == "text_encoder_path"
    message = missing_file_message(str(bundle / "models" / "enc"), "Hugging Face model folder")
    assert "python -m monai.bundle download_large_files --bundle_path bundles/toy" in message
    assert "`text_encoder_path`" in message and "--text_encoder embedding_table" in message
    made = missing_file_message("bundles/toy/models/made", "Hugging Face model folder")
    assert "made from models/enc" in made and "--bundle_path bundles/toy" in made
    # a path no bundle lists: the caller's key and override, and the generic command
    other = missing_file_message(tmp_path / "elsewhere.pt", "CLIP weights file", key="clip_weights", without="--a b")
    assert "elsewhere.pt" in other and "`clip_weights`" in other and "--a b" in other and "<bundle>" in other
    assert find_large_file(tmp_path / "elsewhere.pt") is None


def _tiny_cli(name: str, tmp_path: Path, **extra) -> list[str]:
    from test_bundles import tiny_overrides

    over = tiny_overrides(name, tmp_path / "data", tmp_path / "out", max_epochs=1, **extra)
    over.update(synthetic_num_train=2, synthetic_num_val=2, synthetic_num_test=1)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"bundles/{name}/configs/train.json"]
    for k, v in over.items():
        cmd += [f"--{k}", repr(v) if not isinstance(v, str) else v]  # python-fire reads Python literals
    return cmd


CASES = {
    # bundle: (overrides that switch the pretrained encoder on, the absent path, the override that trains without)
    "causalclipseg": ({"clip_pretrained": True}, "bundles/causalclipseg/models/RN101.pt", "--clip_pretrained False"),
    "lvit": (
        {"text_encoder": "bert", "text_encoder_path": "bundles/lvit/models/bert-base-uncased"},
        "bundles/lvit/models/bert-base-uncased",
        "--text_encoder embedding_table",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundle_run_without_the_file_stops_with_the_fetch_command(name, tmp_path):
    """The real bundle run (a subprocess, as a user types it) with the pretrained key on and the file absent."""
    overrides, absent, without = CASES[name]
    if (REPO_ROOT / absent).exists():
        pytest.skip(f"{absent} has been downloaded here; the test needs it absent")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        _tiny_cli(name, tmp_path, **overrides), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = "\n".join(proc.stderr.strip().splitlines()[-3:])
    assert absent in last, last
    assert f"python -m monai.bundle download_large_files --bundle_path bundles/{name}" in last, last
    assert without in last, last
    assert "Traceback" not in last and "Fatal" not in proc.stderr
