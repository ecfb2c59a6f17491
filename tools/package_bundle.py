# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Write a standalone, downloadable bundle archive: ``dist/NAME_v<version>.zip``.

Run from anywhere::

    python tools/package_bundle.py lvit                     # -> dist/lvit_v<version>.zip
    python tools/package_bundle.py unet_baseline --out /tmp/dist --include_models

The archive has one top folder ``NAME/``, as ``python -m monai.bundle download --name NAME --url <url> --bundle_dir D``
expects (MONAI's ``download`` extracts it with ``has_base=True``; the model-zoo names archives
``<name>_v<version>.zip``, the version being ``metadata.json``'s ``version``). It holds:

- the bundle's own files: ``LICENSE``, ``configs/``, ``docs/``, ``models/README.md`` and ``large_files.yml``
  (never the generated ``data/``, ``eval/``, ``runs/``, ``predictions/`` or ``text_cache/`` folders). With
  ``--include_models`` also the trained files in ``models/`` (``model.pt``, ``model.ts``, ``model.onnx`` and the
  ``*.json`` written beside them, such as LViT's ``text_tokenizer.json``) when they exist;
- the shared ``common`` package, vendored as ``NAME/common/``: the bundle folder itself is then the import root of
  ``common``, so the configs' ``$import common`` and ``common.networks.LViT``-style ``_target_`` names resolve
  unchanged wherever the bundle folder is on ``sys.path``. That is where MONAI puts it: ``ConfigWorkflow.run()``
  inserts the bundle root (the parent of ``configs/``), MONAI Label's bundle tasks insert the bundle folder, and the
  model-zoo CI prepends it; for ``python -m monai.bundle`` commands, whose config imports are resolved in
  ``initialize()`` before ``run()``, set ``PYTHONPATH=D/NAME`` (the model-zoo's own ``segmentation_template``
  ``docs/*.sh`` wrappers do the same) or run from inside ``D/NAME``. (Sources: ``monai/bundle/workflows.py``
  ``ConfigWorkflow.run`` of the installed MONAI 1.6.1; the project's notes on model-zoo CI and MONAI Label,
  ``shared/reference/monai_bundle_conventions.md`` sections 1.5, 3.2 and 5.1.)

Why vendoring rather than a pip-installable ``common`` named in ``required_packages_version``: the archive then
runs in an environment with only the pinned ``requirements.txt`` installed (no package of ours on any index, no
extra install step, no version of ``common`` that can drift from the bundle's configs), and every bundle carries
the exact code its configs and weights were made with.

The one change to the bundle's files: every config's top-level ``bundle_root`` (``"bundles/NAME"``, relative to a
repository checkout) becomes ``"."`` as in model-zoo bundles; pass ``--bundle_root D/NAME`` (the bundle README's
commands do). The archive is reproducible: entries are sorted and time-stamped 1980-01-01, so the same files give
the same bytes (and the same SHA-256, printed last).

Exit status 0 on success, 1 with a message naming the bundle or file when the bundle is unknown or its metadata has
no usable ``version``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

BUNDLE_FILES = ("LICENSE", "large_files.yml", "models/README.md")
"""Single files of a bundle folder that go into the archive (when present)."""

BUNDLE_FOLDERS = ("configs", "docs", "scripts")
"""Folders of a bundle folder that go into the archive whole (when present)."""

MODEL_PATTERNS = ("model.pt", "model.ts", "model.onnx", "*.json")
"""Files of ``models/`` added by ``--include_models`` (trained weights and what training writes beside them)."""

SKIPPED_PARTS = ("__pycache__", ".pytest_cache", ".ipynb_checkpoints")
"""Path components that are never archived."""

SKIPPED_SUFFIXES = (".pyc", ".pyo")
"""File suffixes that are never archived."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")


class PackageError(Exception):
    """A bundle cannot be packaged (unknown name, unreadable metadata, bad version)."""


def bundle_version(bundle_dir: Path) -> str:
    """The ``version`` of ``bundle_dir/configs/metadata.json``, checked to be usable in a file name.

    Args:
        bundle_dir: the bundle folder.

    Raises:
        PackageError: when the metadata file is missing or not JSON, or its ``version`` is missing or contains
            characters other than letters, digits and ``.+_-``.
    """
    meta_file = bundle_dir / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError as err:
        raise PackageError(f"{meta_file}: not found (is {bundle_dir.name!r} a bundle?).") from err
    except json.JSONDecodeError as err:
        raise PackageError(f"{meta_file}: not valid JSON ({err}).") from err
    version = meta.get("version") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not _VERSION.match(version):
        raise PackageError(f"{meta_file}: key 'version' must be a version string such as '0.2.0', got {version!r}.")
    return version


def _archived(path: Path) -> bool:
    return path.is_file() and not any(p in SKIPPED_PARTS for p in path.parts) and path.suffix not in SKIPPED_SUFFIXES


def package_files(bundle_dir: Path, common_dir: Path, include_models: bool = False) -> dict[str, Path]:
    """The archive's entries: ``{archive name: source file}``, sorted by archive name.

    Args:
        bundle_dir: the bundle folder (``bundles/NAME``); its name is the archive's top folder.
        common_dir: the shared ``common`` package folder to vendor as ``NAME/common/``.
        include_models: also archive the trained files of ``models/`` (:data:`MODEL_PATTERNS`).

    Raises:
        PackageError: when ``common_dir`` has no ``__init__.py``.
    """
    if not (common_dir / "__init__.py").is_file():
        raise PackageError(f"{common_dir}: not a Python package (no __init__.py); cannot vendor `common`.")
    name = bundle_dir.name
    files: dict[str, Path] = {}
    for rel in BUNDLE_FILES:
        if (bundle_dir / rel).is_file():
            files[f"{name}/{rel}"] = bundle_dir / rel
    for folder in BUNDLE_FOLDERS:
        for path in (bundle_dir / folder).rglob("*"):
            if _archived(path):
                files[f"{name}/{path.relative_to(bundle_dir).as_posix()}"] = path
    if include_models:
        for pattern in MODEL_PATTERNS:
            for path in (bundle_dir / "models").glob(pattern):
                if _archived(path):
                    files[f"{name}/models/{path.name}"] = path
    for path in common_dir.rglob("*"):
        if _archived(path):
            files[f"{name}/common/{path.relative_to(common_dir).as_posix()}"] = path
    return dict(sorted(files.items()))


def standalone_config(text: str) -> str:
    """A config file's text with its top-level ``bundle_root`` set to ``"."`` (key order and 4-space indent kept).

    Args:
        text: the JSON text of a bundle config; returned unchanged when it has no top-level string ``bundle_root``.
    """
    config = json.loads(text)
    if not isinstance(config, dict) or not isinstance(config.get("bundle_root"), str):
        return text
    config["bundle_root"] = "."
    return json.dumps(config, indent=4, ensure_ascii=False) + "\n"


def write_package(
    name: str, out_dir: Path, bundles_root: Path | None = None, common_dir: Path | None = None, **kwargs
) -> Path:
    """Write ``out_dir/NAME_v<version>.zip`` (see the module docstring) and return its path.

    Args:
        name: the bundle folder name under ``bundles_root``.
        out_dir: the folder to write the archive to (created if needed).
        bundles_root: the folder holding the bundles. Defaults to this repository's ``bundles/``.
        common_dir: the ``common`` package to vendor. Defaults to this repository's ``common/``.
        kwargs: passed to :func:`package_files` (``include_models``).

    Raises:
        PackageError: for an unknown bundle or unusable metadata (see :func:`bundle_version`).
    """
    bundles_root = Path(bundles_root) if bundles_root is not None else REPO_ROOT / "bundles"
    common_dir = Path(common_dir) if common_dir is not None else REPO_ROOT / "common"
    bundle_dir = bundles_root / name
    if not name or "/" in name or not (bundle_dir / "configs").is_dir():
        known = sorted(p.name for p in bundles_root.iterdir() if (p / "configs" / "metadata.json").is_file())
        raise PackageError(f"unknown bundle {name!r}: no {bundle_dir}/configs; bundles: {', '.join(known)}.")
    version = bundle_version(bundle_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}_v{version}.zip"
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in package_files(bundle_dir, common_dir, **kwargs).items():
            data = path.read_bytes()
            if arcname.startswith(f"{name}/configs/") and arcname.endswith(".json"):
                data = standalone_config(data.decode("utf-8")).encode("utf-8")
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    tmp.replace(target)
    return target


def sha256(path: Path) -> str:
    """The SHA-256 hex digest of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="bundle folder name under bundles/, e.g. lvit")
    parser.add_argument("--out", default=str(REPO_ROOT / "dist"), help="output folder (default: <repo>/dist)")
    parser.add_argument(
        "--include_models", action="store_true", help="also archive models/model.{pt,ts,onnx} and models/*.json"
    )
    args = parser.parse_args(argv)
    try:
        path = write_package(args.name, Path(args.out), include_models=args.include_models)
    except PackageError as err:
        print(f"package_bundle: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} (sha256 {sha256(path)})")
    print(
        f"download it with: python -m monai.bundle download --name {args.name} --url {path.resolve().as_uri()} "
        "--bundle_dir <folder>"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
