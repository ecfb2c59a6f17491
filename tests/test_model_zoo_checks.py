# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The model-zoo's bundle checks that run on every bundle: the version/changelog rule of its ``ci/verify_bundle.py``
(``version`` is a key of ``changelog``; the model-zoo lists the changelog newest first) and
``python -m monai.bundle verify_net_in_out network_def`` run from the command line, the text input included (the
text-guided networks take the documented empty note when MONAI, which synthesises only the image, passes no text).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from test_bundles import BUNDLES, bundle_dir, bundle_overrides

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def semver(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    assert match, f"version {version!r} is not MAJOR.MINOR.PATCH"
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


@pytest.mark.parametrize("name", BUNDLES)
def test_version_is_the_newest_changelog_entry(name):
    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    version, changelog = meta["version"], meta["changelog"]
    assert version in changelog, f"{name}: version {version} has no changelog entry"
    keys = list(changelog)
    assert keys == sorted(keys, key=semver, reverse=True), f"{name}: changelog keys not newest first: {keys}"
    assert keys[0] == version, f"{name}: version {version} is not the newest changelog entry {keys[0]}"
    assert all(isinstance(v, str) and v.strip() for v in changelog.values()), f"{name}: empty changelog entry"


def test_changelog_order_check_catches_a_misordered_changelog():
    keys = ["0.2.0", "0.10.0", "0.1.0"]  # string order would accept this; version order must not
    assert keys != sorted(keys, key=semver, reverse=True)
    assert sorted(keys, key=semver, reverse=True) == ["0.10.0", "0.2.0", "0.1.0"]


def verify_command(name: str, image_size: int = 32) -> list[str]:
    """``python -m monai.bundle verify_net_in_out network_def`` for ``name`` at tiny sizes (the README's command plus
    the overrides of ``tests/bundle_test_overrides.json`` and a ``image_size`` x ``image_size`` image)."""
    b = bundle_dir(name)
    cmd = [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def"]
    cmd += ["--meta_file", str(b / "configs" / "metadata.json"), "--config_file", str(b / "configs" / "inference.json")]
    cmd += ["--bundle_root", str(b), "--device", "cpu", "--image_size", str(image_size)]
    cmd += ["--_meta_#network_data_format#inputs#image#spatial_shape", str([image_size, image_size])]
    for k, v in bundle_overrides(name).items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]  # python-fire reads Python literals
    return cmd


# Runs each command line ["python", "-m", "monai.bundle", ...] as `python -m` does (runpy with that argv) in one
# interpreter, so the six bundles pay for one start-up of torch and MONAI; each command's log is framed by
# "=== BEGIN name" / "=== END name rc" lines (rc 0: the command returned; 1: it raised or exited non-zero).
DRIVER = """
import json, runpy, sys, traceback
for name, argv in json.loads(sys.argv[1]).items():
    print("=== BEGIN " + name, flush=True)
    sys.argv, rc = argv[2:], 0
    try:
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    except SystemExit as err:
        rc = 0 if err.code in (0, None) else 1
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        rc = 1
    sys.stderr.flush()
    print("=== END %s %d" % (name, rc), flush=True)
"""


@pytest.fixture(scope="module")
def verify_logs(tmp_path_factory):
    """``{bundle: (rc, log)}`` of ``verify_net_in_out`` run from the command line for every bundle."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    commands = {name: verify_command(name) for name in BUNDLES}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(commands)],
        cwd=tmp_path_factory.mktemp("verify"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, so that each command's warnings stay inside its frame
        text=True,
        timeout=900,
    )
    out = {}
    for name in BUNDLES:
        begin, end = f"=== BEGIN {name}\n", f"=== END {name} "
        if begin not in proc.stdout or end not in proc.stdout:
            out[name] = (None, proc.stdout[-4000:])
            continue
        body = proc.stdout.split(begin, 1)[1]
        log, rest = body.split(end, 1)
        out[name] = (int(rest.split("\n", 1)[0]), log)
    return out


@pytest.mark.parametrize("name", BUNDLES)
def test_verify_net_in_out_from_the_command_line(name, verify_logs):
    rc, log = verify_logs[name]
    assert rc == 0, log[-4000:]
    assert "data shape of network is verified with no error" in log, log[-4000:]
    meta = json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())
    if len(meta["network_data_format"]["inputs"]) > 1:  # the text input went through the network's default
        assert "no text given; using the empty note" in log, log[-4000:]
