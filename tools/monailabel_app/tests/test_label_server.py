# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The MONAI Label app through a real server: ``monailabel start_server`` on 127.0.0.1 serving two tiny, randomly
initialised bundles (``lvit``, text-guided, and ``unet_baseline``, text-free), images and notes posted to
``/infer/<model>``.

Runs in the MONAI Label environment only (``.venv-label``; ``.ci/run`` runs it after the main suite, which does not
collect this folder): ``.venv-label/bin/python -m pytest tools/monailabel_app/tests -q``. No network: the bundles
are copies of the repository's with a ``models/model.pt`` written here, and nothing is downloaded. The server is
started in its own process group and killed in ``finally``; every wait is bounded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

APP_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = APP_DIR.parents[1]
for path in (str(REPO_ROOT), str(APP_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

#: tiny sizes for the served bundles (their models/model.pt is built with the same overrides)
OVERRIDES = {
    "lvit": {"image_size": 32, "base_channels": 8, "text_dim": 16, "num_heads": 2},
    "unet_baseline": {"image_size": 32, "channels": [4, 8, 16, 32], "strides": [2, 2, 2], "num_res_units": 1},
}
#: a non-square image, so that a transposed mask is caught: PIL size (width, height)
IMAGE_SIZE = (40, 56)
START_TIMEOUT_S = 240
REQUEST_TIMEOUT_S = 120
NOTE_A = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
NOTE_B = "Unilateral pulmonary infection, one infected area, lower left lung."


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_model(bundle: Path, overrides: dict) -> None:
    """``models/model.pt`` of the bundle's ``network_def`` (inference.json with ``overrides``), seeded random."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle), **overrides})
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    torch.save(network.state_dict(), bundle / "models" / "model.pt")


def _image(path: Path) -> None:
    rng = np.random.default_rng(0)
    width, height = IMAGE_SIZE
    yy, xx = np.mgrid[:height, :width]
    blob = ((yy - height / 3) ** 2 + (xx - width / 2) ** 2) < (width / 4) ** 2
    pixels = np.clip(60 + 120 * blob + rng.normal(0, 20, (height, width)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    bundles = root / "bundles"
    for name, overrides in OVERRIDES.items():
        source = REPO_ROOT / "bundles" / name
        target = bundles / name
        shutil.copytree(source / "configs", target / "configs")
        shutil.copytree(source / "models", target / "models", ignore=shutil.ignore_patterns("*.pt", "*.ts", "*.json"))
        if name == "lvit":  # what training writes beside model.pt: the vocabulary of the training notes
            from common.transforms import build_text_tokenizer

            notes = [NOTE_A, NOTE_B, "Unilateral pulmonary infection, one infected area, upper right lung."]
            build_text_tokenizer("words", notes, save_path=target / "models" / "text_tokenizer.json")
        _write_model(target, overrides)
    overrides_file = root / "overrides.json"
    overrides_file.write_text(json.dumps(OVERRIDES))
    studies = root / "studies"
    studies.mkdir()
    _image(studies / "case1.png")
    (studies / "case1.png.txt").write_text(NOTE_A)

    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(APP_DIR),
        "--studies",
        str(studies),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--conf",
        "models",
        "lvit,unet_baseline",
        "--conf",
        "bundles",
        str(bundles),
        "--conf",
        "overrides",
        str(overrides_file),
    ]
    log_path = root / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        info = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                response = requests.get(f"{url}/info/", timeout=5)
                if response.status_code == 200:
                    info = response.json()
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        if info is None:
            log.flush()
            pytest.fail(f"server did not start in {START_TIMEOUT_S} s:\n{log_path.read_text()[-6000:]}")
        yield {"url": url, "info": info, "image": studies / "case1.png", "log": log_path}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()


def _infer(server, model: str, params: dict | None = None, output: str = "all"):
    with open(server["image"], "rb") as f:
        response = requests.post(
            f"{server['url']}/infer/{model}",
            params={"output": output},
            files={"file": ("case1.png", f, "image/png")},
            data={"params": json.dumps(params or {})},
            timeout=REQUEST_TIMEOUT_S,
        )
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    if output == "json":
        return None, response.json()
    from requests_toolbelt.multipart.decoder import MultipartDecoder

    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers.get(b"Content-Disposition", b"").decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = part.content
    assert "image" in parts, f"no mask in the response: {list(parts)}"
    return parts["image"], json.loads(parts["params"])


def test_info_lists_both_models_with_their_text_default(server):
    models = server["info"]["models"]
    assert set(models) == {"lvit", "unet_baseline"}
    assert models["lvit"]["text_conditioned"] is True and models["unet_baseline"]["text_conditioned"] is False
    assert models["lvit"]["config"]["text"] == models["lvit"]["default_text"] != ""
    assert set(server["info"]["trainers"]) == {"lvit", "unet_baseline"}


@pytest.mark.parametrize("model", sorted(OVERRIDES))
def test_mask_has_the_image_size(server, model):
    mask_bytes, params = _infer(server, model, {"text": NOTE_A})
    mask = np.asarray(Image.open(io.BytesIO(mask_bytes)))
    width, height = IMAGE_SIZE
    assert mask.shape[:2] == (height, width), f"mask {mask.shape} for an image of {height} x {width}"
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert params["output_shape"][-2:] == [OVERRIDES[model]["image_size"]] * 2  # the network ran at its own size


def test_the_note_reaches_the_network(server):
    _, first = _infer(server, "lvit", {"text": NOTE_A}, output="json")
    _, again = _infer(server, "lvit", {"text": NOTE_A}, output="json")
    _, other = _infer(server, "lvit", {"text": NOTE_B}, output="json")
    assert first["text"] == NOTE_A and other["text"] == NOTE_B
    assert first["output_sha1"] == again["output_sha1"], "the same image and note must give the same output"
    assert first["output_sha1"] != other["output_sha1"], "another note must change the network output"
    _, default = _infer(server, "lvit", {}, output="json")
    assert default["text"] == server["info"]["models"]["lvit"]["default_text"]
    # the text-free bundle ignores the note
    _, plain_a = _infer(server, "unet_baseline", {"text": NOTE_A}, output="json")
    _, plain_b = _infer(server, "unet_baseline", {"text": NOTE_B}, output="json")
    assert plain_a["text"] is None and plain_a["output_sha1"] == plain_b["output_sha1"]


def test_train_task_reads_each_note_from_the_datastore(tmp_path):
    """The train task's datalist carries the note of every labelled image (sidecar file or datastore info)."""
    from lib.trainers.text_bundle import TextBundleTrainTask
    from monailabel.datastore.local import LocalDatastore

    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for i, note in enumerate([NOTE_A, NOTE_B, None]):
        _image(studies / f"case{i}.png")
        Image.fromarray(np.zeros(IMAGE_SIZE[::-1], np.uint8)).save(studies / "labels" / "final" / f"case{i}.png")
        if note == NOTE_A:
            (studies / f"case{i}.png.txt").write_text(f"  {note}\n")
        elif note == NOTE_B:
            (studies / f"case{i}.txt").write_text(note)
    datastore = LocalDatastore(str(studies), extensions=["*.png"])
    datastore.update_image_info("case2", {"text": "Unilateral pulmonary infection, one infected area."})
    task = TextBundleTrainTask(
        str(REPO_ROOT / "bundles" / "lvit"), {}, work_dir=str(tmp_path / "work"), text_conditioned=True
    )
    items = {Path(d["image"]).name: d for d in task._fetch_datalist({"model": "lvit"}, datastore)}
    assert items["case0.png"]["text"] == NOTE_A and items["case1.png"]["text"] == NOTE_B
    assert items["case2.png"]["text"] == "Unilateral pulmonary infection, one infected area."
    overrides = {
        "train#trainer#max_epochs": 3,
        "train#dataset#data": [items["case0.png"], items["case1.png"]],
        "validate#dataset#data": [items["case2.png"]],
    }
    task._update_overrides(overrides)
    written = json.loads(Path(overrides["datalist_file"]).read_text())
    assert [d["text"] for d in written["training"]] == [items["case0.png"]["text"], items["case1.png"]["text"]]
    assert written["validation"][0]["text"].startswith("Unilateral") and overrides["max_epochs"] == 3
    assert "train#dataset#data" not in overrides  # the bundle reads the datalist file instead
    # a text-guided bundle refuses an image without a note, naming it
    (studies / "case0.png.txt").unlink()
    with pytest.raises(ValueError, match="case0.png"):
        task._fetch_datalist({"model": "lvit"}, datastore)
