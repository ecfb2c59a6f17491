# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
``tools/package_bundle.py``: the archive's layout, and a downloaded archive running with no checkout of this
repository on the path (MONAI's ``download`` from a ``file://`` URL, then ``verify_metadata``, a one-epoch training,
evaluation and inference on a folder of images with a text prompt, with the commands the bundle README gives).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED
from test_bundles import GENERIC_TINY, PER_BUNDLE

sys.path.insert(0, str(REPO_ROOT / "tools"))
import package_bundle  # noqa: E402

SCHEMA = SHARED / "schema" / "meta_schema_20240725.json"
PROMPT = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."

# Runs each command line ["python", "-m", module, ...] as `python -m` does (runpy with that argv), in one
# interpreter, so that a test pays for one start-up of torch and MONAI instead of one per command; an entry
# {"copy": [pattern, folder, n]} copies the first n files matching pattern into folder (the user picking images).
# Prints where `common` was imported from.
DRIVER = """
import glob, json, runpy, shutil, sys
for argv in json.loads(sys.argv[1]):
    if isinstance(argv, dict):
        pattern, folder, n = argv["copy"]
        [shutil.copy(p, folder) for p in sorted(glob.glob(pattern))[:n]]
        continue
    sys.argv = argv[2:]
    print("+ python", " ".join(argv[1:]), flush=True)
    runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
import common
print("COMMON_FILE=" + common.__file__)
"""


def outside_env(pythonpath: str | None) -> dict:
    """The environment of a user with no checkout on the path: no PYTHONPATH but ``pythonpath``, one thread."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def cli_args(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        out += [f"--{k}", v if isinstance(v, str) else repr(v)]  # python-fire reads Python literals
    return out


def test_archive_layout_is_one_top_folder_with_common_and_reproducible(tmp_path):
    first = package_bundle.write_package("lvit", tmp_path / "a")
    second = package_bundle.write_package("lvit", tmp_path / "b")
    version = json.loads((REPO_ROOT / "bundles/lvit/configs/metadata.json").read_text())["version"]
    assert first.name == f"lvit_v{version}.zip"
    assert first.read_bytes() == second.read_bytes(), "the same files must give the same archive"
    names = zipfile.ZipFile(first).namelist()
    assert {n.split("/")[0] for n in names} == {"lvit"}, "MONAI's download needs exactly one top folder"
    for required in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md"):
        assert f"lvit/{required}" in names
    assert "lvit/common/__init__.py" in names and "lvit/common/networks/lvit.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pt")) or n.startswith("lvit/data/")]
    with zipfile.ZipFile(first) as archive:
        train = json.loads(archive.read("lvit/configs/train.json"))
        original = json.loads((REPO_ROOT / "bundles/lvit/configs/train.json").read_text())
    assert train["bundle_root"] == "." and list(train) == list(original)
    assert {k: v for k, v in train.items() if k != "bundle_root"} == {
        k: v for k, v in original.items() if k != "bundle_root"
    }


def test_include_models_adds_trained_files_only(tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO_ROOT / "bundles/unet_baseline/configs", bundles / "unet_baseline/configs")
    (bundles / "unet_baseline/models").mkdir()
    (bundles / "unet_baseline/models/model.pt").write_bytes(b"weights")
    (bundles / "unet_baseline/models/checkpoint_last.pt").write_bytes(b"resume state")
    (bundles / "unet_baseline/data").mkdir()
    (bundles / "unet_baseline/data/x.png").write_bytes(b"image")
    plain = package_bundle.write_package("unet_baseline", tmp_path / "plain", bundles_root=bundles)
    full = package_bundle.write_package("unet_baseline", tmp_path / "full", bundles_root=bundles, include_models=True)
    assert "unet_baseline/models/model.pt" not in zipfile.ZipFile(plain).namelist()
    names = zipfile.ZipFile(full).namelist()
    assert "unet_baseline/models/model.pt" in names
    assert "unet_baseline/models/checkpoint_last.pt" not in names and "unet_baseline/data/x.png" not in names


def test_bad_bundle_is_a_clear_error(tmp_path, capsys):
    assert package_bundle.main(["no_such_bundle", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown bundle 'no_such_bundle'" in err and "lvit" in err
    bundles = tmp_path / "bundles"
    (bundles / "broken/configs").mkdir(parents=True)
    (bundles / "broken/configs/metadata.json").write_text(json.dumps({"version": "1 0"}))
    with pytest.raises(package_bundle.PackageError, match="metadata.json: key 'version'"):
        package_bundle.write_package("broken", tmp_path / "out", bundles_root=bundles)


@pytest.mark.parametrize("name", ["unet_baseline", "lvit"])
def test_downloaded_package_runs_outside_the_repository(name, tmp_path):
    archive = package_bundle.write_package(name, tmp_path / "dist")
    work = tmp_path / "elsewhere"  # the user's working directory: no checkout, no repository on PYTHONPATH
    work.mkdir()
    bundle_dir = tmp_path / "downloaded"
    py = sys.executable
    download = [py, "-m", "monai.bundle", "download", "--name", name, "--url", archive.as_uri()]
    proc = subprocess.run(
        [*download, "--bundle_dir", str(bundle_dir)],
        cwd=work,
        env=outside_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    root = bundle_dir / name
    assert (root / "configs" / "metadata.json").is_file() and (root / "common" / "__init__.py").is_file()

    # tiny sizes, as the shared bundle tests use them; data is generated into the downloaded bundle
    tiny = {**GENERIC_TINY, **PER_BUNDLE.get(name, {}), "max_epochs": 1}
    assert not any("{repo_root}" in str(v) for v in tiny.values()), "choose bundles that need no repository file"
    configs = root / "configs"
    common = ["--bundle_root", str(root), *cli_args(tiny)]
    train = [py, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.json"), *common]
    evaluate = [py, "-m", "monai.bundle", "run", "--config_file"]
    evaluate += [str([str(configs / "train.json"), str(configs / "evaluate.json")]), *common]
    images = work / "images"
    images.mkdir()
    infer = [py, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"), *common]
    infer += ["--input_dir", str(images), "--output_dir", str(work / "masks")]
    inference_keys = json.loads((configs / "inference.json").read_text())
    if "text_prompt" in inference_keys:
        infer += ["--text_prompt", PROMPT]
    # the folder to segment: two images of the test split that the training run generates
    pick = {"copy": [str(root / "data" / "*" / "Test_Folder" / "img" / "*"), str(images), 2]}
    commands = [train, evaluate, pick, infer]
    if SCHEMA.is_file():  # offline: the schema is placed where --filepath points (online, MONAI downloads it)
        (root / "eval").mkdir(exist_ok=True)
        shutil.copy(SCHEMA, root / "eval" / "schema.json")
        verify = [py, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(configs / "metadata.json")]
        commands.insert(0, [*verify, "--filepath", str(root / "eval" / "schema.json")])
    proc = subprocess.run(
        [py, "-c", DRIVER, json.dumps(commands)],
        cwd=work,
        env=outside_env(str(root)),  # the README's `export PYTHONPATH=D/NAME`: the bundle's vendored `common`
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert len(list(images.iterdir())) == 2, "the training run wrote no test images"

    common_file = Path(log.split("COMMON_FILE=")[-1].splitlines()[0])
    assert common_file.is_relative_to(root), f"`common` came from {common_file}, not from the downloaded bundle"
    assert str(REPO_ROOT) not in log.split("COMMON_FILE=")[-1].splitlines()[0]
    assert (root / "models" / "model.pt").is_file(), "the one-epoch training wrote no model"
    assert (root / "eval" / "metrics.csv").is_file(), "evaluation wrote no metrics"
    masks = sorted(p.name for p in (work / "masks").glob("*.png"))
    assert masks == sorted(f"{p.stem}_mask.png" for p in images.iterdir())
    if SCHEMA.is_file():
        assert "Failed validating" not in log
