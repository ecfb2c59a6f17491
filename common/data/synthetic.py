# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Deterministic synthetic data sets for running every bundle offline, written in real on-disk layouts.

Two generators write image/mask/text sets that the real-data readers accept unchanged:

* :func:`generate_chest_xray_dataset` -- chest X-ray phantoms (:mod:`common.data.synthetic_cxr`) in the LViT
  code release layout for **QaTa-COV19**: ``{Train,Val,Test}_Folder/img/<name>.png`` (8-bit grayscale),
  ``{Train,Val,Test}_Folder/labelcol/mask_<name>.png`` (0/255), ONE ``Train_Folder/Train_Val_text.xlsx`` holding
  the train AND val rows (the file LViT's QaTa branch of ``train_model.py`` reads) and
  ``Test_Folder/Test_text.xlsx``; sheet ``Sheet1``, columns ``Image`` (the MASK file name ``mask_<name>.png``,
  QaTa's key) and ``Description`` (a QaTa-grammar sentence, see :mod:`common.data.synthetic_text`).
  Beside them, ``{Train,Val,Test}_Folder/lungs/<name>.png`` is the lung zone map of the drawn lungs
  (:func:`common.data.synthetic_cxr.lung_zone_map`: 0 outside the lungs, 1-3 the left lung's upper/middle/lower
  zone, 4-6 the right lung's, viewer's side), which :func:`common.data.ensure_datalist` puts in each entry's
  ``lungs`` key for the text-mask consistency metric (:mod:`common.metrics.text_consistency`).
* :func:`generate_endoscopy_dataset` -- RGB endoscopy phantoms (:mod:`common.data.synthetic_endoscopy`) in the
  layout of the **MAdapter (MICCAI 2024) polyp text annotations**: ``images/<name>.png``, ``masks/<name>.png``
  (0/255), ``Synthetic_train.csv`` and ``Synthetic_test.csv`` written UTF-8 WITH a byte-order mark like
  MAdapter's ``Kvasir_train.csv`` (columns ``Image``, ``Description``; the description always double-quoted).

Both also write ``<root>/sites.csv`` (``Image`` = image file name, ``site``, ``class``; plain UTF-8) and the
marker ``<root>/synthetic.json`` (generator, version, parameters, ``complete``). Calling a generator again on a
folder whose marker has the same generator, version and parameters is a no-op; any other non-empty folder is
refused with a ValueError. An interrupted run (marker with ``"complete": false``) is regenerated.

Determinism: every image has its own generator seeded from ``(seed, data set, split, index)`` (:func:`image_rng`),
so the same seed gives byte-identical files (PNG, CSV, and xlsx, whose zip timestamps and document dates are
fixed), and changing a count never changes the images already written at lower indices. Sites (and endoscopy
lesion classes) are assigned round-robin from the index: chest X-ray ``site = CXR_SITES[index % 4]``;
endoscopy ``site = ENDOSCOPY_SITES[index % 5]`` and ``class = LESION_CLASSES[(index + index // 5) % 5]``, so any
25 consecutive endoscopy images hold every (site, class) pair once.

Speed (measured with ``OPENBLAS_NUM_THREADS=1 taskset -c 0``, i.e. on ONE core of the 2-core development machine
while other jobs loaded it, PNG/xlsx/CSV writing included): 1,000 chest X-ray images of 256x256 in 24.7 s
(24.2 s CPU) and 1,000 endoscopy images of 256x256 in 38.6 s (37.9 s CPU). Images are written with PNG
compression level 1: the noisy phantoms compress barely better at higher levels, which cost a third more time.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .synthetic_cxr import (
    CXR_SITES,
    LUNG_BAND,
    ChestXraySample,
    LungDistractor,
    LungLesion,
    lesion_zones,
    lung_zone_edges,
    render_chest_xray,
)
from .synthetic_endoscopy import (
    ENDOSCOPY_SITES,
    EndoscopySample,
    LesionMeasurement,
    measure_lesion_mask,
    render_endoscopy,
)
from .synthetic_text import (
    LESION_CLASSES,
    describe_endoscopy_lesion,
    describe_lung_lesions,
    position_word,
    shape_word,
    size_word,
)

__all__ = [
    "GENERATOR_VERSION",
    "MARKER_FILE",
    "generate_chest_xray_dataset",
    "generate_endoscopy_dataset",
    "image_rng",
    "read_marker",
    # re-exported lower-level API
    "CXR_SITES",
    "ENDOSCOPY_SITES",
    "LESION_CLASSES",
    "LUNG_BAND",
    "ChestXraySample",
    "EndoscopySample",
    "LesionMeasurement",
    "LungDistractor",
    "LungLesion",
    "describe_endoscopy_lesion",
    "describe_lung_lesions",
    "lesion_zones",
    "lung_zone_edges",
    "measure_lesion_mask",
    "position_word",
    "render_chest_xray",
    "render_endoscopy",
    "shape_word",
    "size_word",
]

GENERATOR_VERSION: int = 2
"""Bumped whenever the drawing or the files written change, so an old synthetic folder is not mistaken for a current
one. 2: the chest X-ray set also writes the lung zone maps (``<Split>_Folder/lungs/``); images, masks and text are
byte-identical to version 1."""

MARKER_FILE: str = "synthetic.json"
"""Name of the marker file written at the root of every synthetic data set."""

_DATASET_CODES = {"chest_xray": 0, "endoscopy": 1}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
_FIXED_DOC_TIME = "2026-01-01T00:00:00Z"


def image_rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    """The random generator of one synthetic image.

    Args:
        seed: data set seed, a non-negative integer.
        dataset: ``"chest_xray"`` or ``"endoscopy"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        index: position of the image in its split, a non-negative integer.

    Returns:
        A ``numpy.random.Generator`` (PCG64) seeded from ``SeedSequence([seed, dataset code, split code, index])``;
        it depends on nothing else, so counts can change without changing earlier images.

    Raises:
        ValueError: when an argument is not one of its listed values.
    """
    if dataset not in _DATASET_CODES:
        raise ValueError(f"dataset must be one of {tuple(_DATASET_CODES)}, got {dataset!r}.")
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {tuple(_SPLIT_CODES)}, got {split!r}.")
    _check_int("seed", seed, 0)
    _check_int("index", index, 0)
    sequence = np.random.SeedSequence([int(seed), _DATASET_CODES[dataset], _SPLIT_CODES[split], int(index)])
    return np.random.Generator(np.random.PCG64(sequence))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def read_marker(root: str | os.PathLike) -> dict | None:
    """Read the synthetic-set marker of a folder.

    Args:
        root: data set folder.

    Returns:
        The marker's content (keys ``generator``, ``dataset``, ``version``, ``parameters``, ``complete``), or
        ``None`` when ``<root>/synthetic.json`` does not exist.

    Raises:
        ValueError: when the marker exists but is not a JSON object with those keys.
    """
    path = Path(root) / MARKER_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable synthetic marker ({error}).") from error
    required = {"generator", "dataset", "version", "parameters", "complete"}
    if not isinstance(content, dict) or not required.issubset(content):
        raise ValueError(f"{path}: a synthetic marker must be a JSON object with keys {sorted(required)}.")
    return content


def _marker(dataset: str, parameters: dict, complete: bool) -> dict:
    return {
        "generator": f"common.data.synthetic.generate_{dataset}_dataset",
        "dataset": dataset,
        "version": GENERATOR_VERSION,
        "parameters": parameters,
        "complete": complete,
    }


def _write_marker(root: Path, marker: dict) -> None:
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _prepare_root(root: str | os.PathLike, dataset: str, parameters: dict) -> tuple[Path, bool]:
    """Check the output folder; return it (absolute) and whether the data set must be generated."""
    if not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise ValueError(f"root must be a non-empty path, got {root!r}.")
    path = Path(root).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"root {path} exists and is not a folder.")
    if not path.exists() or not any(path.iterdir()):
        return path, True
    existing = read_marker(path)
    if existing is None:
        raise ValueError(
            f"root {path} is a non-empty folder without a synthetic marker ({MARKER_FILE}); "
            "choose an empty or new folder."
        )
    wanted = _marker(dataset, parameters, True)
    keys = ("generator", "version", "parameters")
    if any(existing.get(k) != wanted[k] for k in keys):
        found = {k: existing.get(k) for k in keys}
        raise ValueError(
            f"root {path} holds a different synthetic data set ({found}); requested {({k: wanted[k] for k in keys})}."
            " Use another folder or delete this one."
        )
    return path, existing.get("complete") is not True


def _save_png(array: np.ndarray, path: Path) -> None:
    # level 1: the noisy phantoms barely compress better at higher levels, and writing is a third of the time
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _deterministic_zip(data: bytes) -> bytes:
    """Rewrite a zip archive (xlsx) with fixed member timestamps and fixed document dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = content.decode("utf-8")
                pattern = r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)"
                text = re.sub(pattern, rf"\g<1>{_FIXED_DOC_TIME}\g<3>", text)
                content = text.encode("utf-8")
            member = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            target.writestr(member, content)
    return out.getvalue()


def _write_xlsx(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write an LViT text table: sheet ``Sheet1``, columns ``Image``, ``Description``, byte-deterministic."""
    frame = pd.DataFrame(sorted(rows), columns=["Image", "Description"])
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name="Sheet1", index=False)
    path.write_bytes(_deterministic_zip(buffer.getvalue()))


def _write_madapter_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write a MAdapter text table: UTF-8 with BOM, ``Image,Description``, descriptions always double-quoted."""
    lines = ["Image,Description"]
    for image, description in sorted(rows):
        lines.append(f'{image},"{description.replace(chr(34), chr(34) * 2)}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig", newline="\n")


def _write_sites(path: Path, rows: list[tuple[str, str, str]]) -> None:
    frame = pd.DataFrame(sorted(rows), columns=["Image", "site", "class"])
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


def _cxr_site(index: int) -> str:
    return CXR_SITES[index % len(CXR_SITES)]


def _endoscopy_site_class(index: int) -> tuple[str, str]:
    return ENDOSCOPY_SITES[index % len(ENDOSCOPY_SITES)], LESION_CLASSES[(index + index // 5) % len(LESION_CLASSES)]


def _check_common(counts: dict[str, Any], image_size: Any, seed: Any) -> None:
    for name, value in counts.items():
        _check_int(name, value, 0)
    if sum(counts.values()) == 0:
        raise ValueError(f"{', '.join(counts)}: at least one image must be requested, got all zero.")
    _check_int("image_size", image_size, 32)
    _check_int("seed", seed, 0)


def generate_chest_xray_dataset(
    root: str,
    num_train: int = 160,
    num_val: int = 40,
    num_test: int = 40,
    image_size: int = 256,
    seed: int = 0,
) -> dict:
    """Write a synthetic chest X-ray data set in the LViT QaTa-COV19 layout.

    Layout (``<name>`` is ``cxr_<split>_<index:05d>``)::

        <root>/Train_Folder/img/<name>.png            8-bit grayscale
        <root>/Train_Folder/labelcol/mask_<name>.png  0/255
        <root>/Train_Folder/lungs/<name>.png          lung zone map (0 outside, 1-3 left, 4-6 right lung zones)
        <root>/Train_Folder/Train_Val_text.xlsx       train AND val rows: Image = mask_<name>.png, Description
        <root>/Val_Folder/{img,labelcol,lungs}/...
        <root>/Test_Folder/{img,labelcol,lungs}/...
        <root>/Test_Folder/Test_text.xlsx
        <root>/sites.csv                               Image = <name>.png, site (site_0..site_3), class = covid
        <root>/synthetic.json                          marker

    Each image is :func:`common.data.synthetic_cxr.render_chest_xray` with the generator of :func:`image_rng`
    and the site ``CXR_SITES[index % 4]``. Text rows and ``sites.csv`` rows are sorted by file name.

    Args:
        root: output folder; created if absent. It must be absent, empty, or a complete or interrupted synthetic
            chest X-ray set made with the same parameters (then nothing is rewritten, or the run is redone).
        num_train: number of training images, >= 0. Defaults to 160.
        num_val: number of validation images, >= 0. Defaults to 40.
        num_test: number of test images, >= 0. Defaults to 40.
        image_size: height and width in pixels, >= 32. Defaults to 256.
        seed: non-negative data set seed. Defaults to 0.

    Returns:
        A summary: ``{"dataset": "chest_xray", "root": absolute root, "generated": False when the folder already
        held this set, "counts": {"train", "val", "test"}, "sites": {site: count}, "image_size", "seed"}``.

    Raises:
        ValueError: when a count is negative or all are zero, ``image_size < 32``, ``seed < 0`` (non-integers
            too), ``root`` is a file, or ``root`` is a non-empty folder that is not this synthetic set.

    Examples::

        >>> summary = generate_chest_xray_dataset("/tmp/cxr", num_train=8, num_val=2, num_test=2, image_size=64)
        >>> summary["counts"]
        {'train': 8, 'val': 2, 'test': 2}
    """
    counts = {"num_train": num_train, "num_val": num_val, "num_test": num_test}
    _check_common(counts, image_size, seed)
    parameters = {**counts, "image_size": int(image_size), "seed": int(seed)}
    path, needed = _prepare_root(root, "chest_xray", parameters)
    splits = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
    folders = {"train": "Train_Folder", "val": "Val_Folder", "test": "Test_Folder"}
    if needed:
        path.mkdir(parents=True, exist_ok=True)
        _write_marker(path, _marker("chest_xray", parameters, False))
        text_rows: dict[str, list[tuple[str, str]]] = {"train_val": [], "test": []}
        site_rows = []
        for split, count in splits.items():
            img_dir, mask_dir = path / folders[split] / "img", path / folders[split] / "labelcol"
            lung_dir = path / folders[split] / "lungs"
            for folder in (img_dir, mask_dir, lung_dir):
                folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                name = f"cxr_{split}_{index:05d}"
                rng = image_rng(seed, "chest_xray", split, index)
                sample = render_chest_xray(rng, int(image_size), _cxr_site(index))
                _save_png(sample.image, img_dir / f"{name}.png")
                _save_png(sample.mask, mask_dir / f"mask_{name}.png")
                _save_png(sample.lung_zones, lung_dir / f"{name}.png")
                text_rows["test" if split == "test" else "train_val"].append((f"mask_{name}.png", sample.sentence))
                site_rows.append((f"{name}.png", sample.site, "covid"))
        _write_xlsx(path / "Train_Folder" / "Train_Val_text.xlsx", text_rows["train_val"])
        _write_xlsx(path / "Test_Folder" / "Test_text.xlsx", text_rows["test"])
        _write_sites(path / "sites.csv", site_rows)
        _write_marker(path, _marker("chest_xray", parameters, True))
    sites = Counter(_cxr_site(i) for count in splits.values() for i in range(count))
    return {
        "dataset": "chest_xray",
        "root": str(path),
        "generated": needed,
        "counts": splits,
        "sites": dict(sorted(sites.items())),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def generate_endoscopy_dataset(
    root: str,
    num_train: int = 200,
    num_test: int = 50,
    image_size: int = 256,
    seed: int = 0,
) -> dict:
    """Write a synthetic endoscopy data set in the MAdapter polyp-text layout.

    Layout (``<name>`` is ``endo_<split>_<index:05d>``)::

        <root>/images/<name>.png       RGB
        <root>/masks/<name>.png        0/255, one lesion
        <root>/Synthetic_train.csv     UTF-8 with BOM: Image = <name>.png, Description (MAdapter grammar)
        <root>/Synthetic_test.csv
        <root>/sites.csv               Image = <name>.png, site (site_0..site_4), class (lesion class)
        <root>/synthetic.json          marker

    Each image is :func:`common.data.synthetic_endoscopy.render_endoscopy` with the generator of
    :func:`image_rng`, site ``ENDOSCOPY_SITES[index % 5]`` and class ``LESION_CLASSES[(index + index // 5) % 5]``.
    Rows are sorted by file name. There is no validation split, as in MAdapter's files; readers draw one.

    Args:
        root: output folder; created if absent. It must be absent, empty, or a complete or interrupted synthetic
            endoscopy set made with the same parameters (then nothing is rewritten, or the run is redone).
        num_train: number of training images, >= 0. Defaults to 200.
        num_test: number of test images, >= 0. Defaults to 50.
        image_size: height and width in pixels, >= 32. Defaults to 256.
        seed: non-negative data set seed. Defaults to 0.

    Returns:
        A summary: ``{"dataset": "endoscopy", "root", "generated", "counts": {"train", "test"},
        "sites": {site: count}, "classes": {class: count}, "image_size", "seed"}``.

    Raises:
        ValueError: when a count is negative or both are zero, ``image_size < 32``, ``seed < 0`` (non-integers
            too), ``root`` is a file, or ``root`` is a non-empty folder that is not this synthetic set.

    Examples::

        >>> summary = generate_endoscopy_dataset("/tmp/endo", num_train=10, num_test=5, image_size=64)
        >>> summary["classes"]["cyst"]
        3
    """
    counts = {"num_train": num_train, "num_test": num_test}
    _check_common(counts, image_size, seed)
    parameters = {**counts, "image_size": int(image_size), "seed": int(seed)}
    path, needed = _prepare_root(root, "endoscopy", parameters)
    splits = {"train": int(num_train), "test": int(num_test)}
    if needed:
        path.mkdir(parents=True, exist_ok=True)
        _write_marker(path, _marker("endoscopy", parameters, False))
        (path / "images").mkdir(exist_ok=True)
        (path / "masks").mkdir(exist_ok=True)
        text_rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
        site_rows = []
        for split, count in splits.items():
            for index in range(count):
                name = f"endo_{split}_{index:05d}.png"
                site, lesion_class = _endoscopy_site_class(index)
                rng = image_rng(seed, "endoscopy", split, index)
                sample = render_endoscopy(rng, int(image_size), site, lesion_class)
                _save_png(sample.image, path / "images" / name)
                _save_png(sample.mask, path / "masks" / name)
                text_rows[split].append((name, sample.sentence))
                site_rows.append((name, site, lesion_class))
        _write_madapter_csv(path / "Synthetic_train.csv", text_rows["train"])
        _write_madapter_csv(path / "Synthetic_test.csv", text_rows["test"])
        _write_sites(path / "sites.csv", site_rows)
        _write_marker(path, _marker("endoscopy", parameters, True))
    pairs = [_endoscopy_site_class(i) for count in splits.values() for i in range(count)]
    return {
        "dataset": "endoscopy",
        "root": str(path),
        "generated": needed,
        "counts": splits,
        "sites": dict(sorted(Counter(site for site, _ in pairs).items())),
        "classes": dict(sorted(Counter(cls for _, cls in pairs).items())),
        "image_size": int(image_size),
        "seed": int(seed),
    }
