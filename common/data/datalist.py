# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
The project datalist: writing it atomically, loading one split with absolute, validated paths, and
:func:`ensure_datalist`, the entry point bundles call to get a datalist (generating the synthetic set if asked).

Format (MONAI Decathlon-style datalist JSON, see ``monai.data.load_decathlon_datalist``)::

    {"name": "qata_cov19", "layout": "lvit", "root": "<absolute root at preparation time>",
     "training": [{"image": "Train_Folder/img/a.png", "label": "Train_Folder/labelcol/mask_a.png",
                   "text": "Unilateral pulmonary infection, one infected area, lower left lung.",
                   "site": "site_0", "class": "covid"}],
     "validation": [...], "test": [...]}

``image`` and ``label`` are relative to the folder holding the datalist; ``site``/``class`` appear only where known.
Optional path keys (:data:`OPTIONAL_PATH_KEYS`), resolved and checked like ``image``/``label`` when present:
``lungs``, a lung field file (a zone map as the synthetic chest set writes, or a binary lung mask) that the
text-mask consistency metric (:mod:`common.metrics.text_consistency`) uses for the lung side and zones; a split
has it in every entry or in none (batches collate the same keys).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from common.data.fileio import atomic_write_json
from common.data.readers import read_lvit_layout, read_madapter
from common.data.report import DataProblem, ReaderReport, report_path_for

__all__ = [
    "DATALIST_FILE_NAME",
    "DATALIST_SPLITS",
    "OPTIONAL_PATH_KEYS",
    "SYNTHETIC_KINDS",
    "write_datalist",
    "load_datalist",
    "read_datalist_json",
    "check_datalist_split",
    "ensure_datalist",
    "datalist_texts",
]

#: Default datalist file name inside a dataset folder.
DATALIST_FILE_NAME = "datalist.json"
#: The split lists a datalist written by this project has; labels are required in the first two.
DATALIST_SPLITS: tuple[str, ...] = ("training", "validation", "test")
#: Entry keys that are paths when present (resolved and checked like ``image``/``label``); see the module docstring.
OPTIONAL_PATH_KEYS: tuple[str, ...] = ("lungs",)
#: ``synthetic`` values accepted by :func:`ensure_datalist`.
SYNTHETIC_KINDS: tuple[str, ...] = ("chest_xray", "endoscopy")

_MAX_LISTED = 20


def write_datalist(datalist: dict, path: str | os.PathLike, report: ReaderReport | None = None) -> str:
    """
    Write a datalist JSON atomically (temporary file in the same folder, then :func:`os.replace`), and the
    reader report next to it (``<stem>_report.json``, i.e. ``datalist_report.json`` for ``datalist.json``).

    Args:
        datalist: the datalist dict, with at least one of ``training``, ``validation``, ``test`` as lists.
        path: the JSON file to write; its folder is created when missing. Entry paths must already be relative
            to this folder (the readers' ``out_dir``).
        report: the reader report to save alongside; default ``None`` (no report written).

    Returns:
        ``str(path)``.

    Raises:
        ValueError: when ``datalist`` is not a dict or has no split list.
    """
    if not isinstance(datalist, dict):
        raise ValueError(f"datalist must be a dict, got {type(datalist).__name__}.")
    if not any(isinstance(datalist.get(s), list) for s in DATALIST_SPLITS):
        raise ValueError(f"datalist for {os.fspath(path)!r} has none of the split lists {DATALIST_SPLITS}.")
    atomic_write_json(path, datalist)
    if report is not None:
        report.save(report_path_for(path))
    return os.fspath(path)


def _listing(errors: list[str]) -> str:
    shown = "\n".join(f"  {e}" for e in errors[:_MAX_LISTED])
    more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
    return shown + more


def load_datalist(
    datalist_file: str | os.PathLike,
    split: str = "training",
    check_files: bool = True,
    base_dir: str | os.PathLike | None = None,
    require_label: bool | None = None,
) -> list[dict]:
    """
    Load one split of a datalist with absolute ``image``/``label`` paths, validated.

    Paths are resolved as ``monai.data.load_decathlon_datalist`` does for ``image`` and ``label``
    (``os.path.normpath(os.path.join(base_dir, path))``, ``base_dir`` defaulting to the datalist's folder;
    absolute paths stay as they are). Unlike that function, no other key is path-resolved, so a ``text`` that
    happens to equal a file name is never rewritten. A bare string entry (Decathlon ``test`` style) is read as
    ``{"image": <string>}`` and then fails the ``text`` check. Other keys are returned unchanged.

    Checks, all collected before raising: the split exists and is a list; every entry is a dict with a
    non-empty string ``image``; a non-empty string ``label`` unless the split is an inference list; a
    non-empty string ``text``; ``site``/``class`` strings when present; and (``check_files``) the files exist.

    Args:
        datalist_file: the datalist JSON.
        split: the list to read, e.g. ``"training"``, ``"validation"``, ``"test"``; default ``"training"``.
        check_files: check that every ``image``/``label`` file exists; default ``True``.
        base_dir: folder the relative paths are relative to; default ``None`` (the datalist's folder).
        require_label: ``True``/``False`` to require or not a ``label``; default ``None``: required in
            ``training`` and ``validation``, and in any other split unless none of its entries has a label
            (an inference list).

    Returns:
        a list of new dicts (an empty split gives ``[]``).

    Raises:
        FileNotFoundError: when ``datalist_file`` does not exist, or (only file problems found) listed files
            are missing; the message names the datalist, split, entry index, key and path.
        ValueError: when the JSON cannot be parsed, the split is absent or not a list, or entries are malformed
            (message names the datalist, split, entry index and key).

    Examples::

        train_files = load_datalist("data/qata/datalist.json", "training")
        # [{"image": "/abs/data/qata/Train_Folder/img/a.png", "label": ..., "text": "..."}, ...]
    """
    indexed, problems = check_datalist_split(datalist_file, split, check_files, base_dir, require_label)
    where = f"datalist {os.path.abspath(os.fspath(datalist_file))!r} split {split!r}"
    errors = [p.line(where) for p in problems if not p.missing_file]
    missing = [p.line(where) for p in problems if p.missing_file]
    if errors:
        raise ValueError(f"{len(errors) + len(missing)} problem(s) in {where}:\n{_listing(errors + missing)}")
    if missing:
        raise FileNotFoundError(f"{len(missing)} missing file(s) in {where}:\n{_listing(missing)}")
    return [item for _, item in indexed]


def read_datalist_json(datalist_file: str | os.PathLike) -> dict:
    """
    Read a datalist JSON file as a dict.

    Args:
        datalist_file: the datalist JSON.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not valid JSON or does not hold an object; the message names the file.
    """
    datalist_file = os.path.abspath(os.fspath(datalist_file))
    if not os.path.isfile(datalist_file):
        raise FileNotFoundError(f"datalist {datalist_file!r} does not exist.")
    try:
        with open(datalist_file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"datalist {datalist_file!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"datalist {datalist_file!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def check_datalist_split(
    datalist_file: str | os.PathLike,
    split: str = "training",
    check_files: bool = True,
    base_dir: str | os.PathLike | None = None,
    require_label: bool | None = None,
    data: dict | None = None,
) -> tuple[list[tuple[int, dict]], list[DataProblem]]:
    """
    The checks of :func:`load_datalist`, returning every problem of one split instead of raising on entries.

    Args:
        datalist_file: the datalist JSON.
        split: the list to read; default ``"training"``.
        check_files: check that every ``image``/``label`` file exists; default ``True``.
        base_dir: folder the relative paths are relative to; default ``None`` (the datalist's folder).
        require_label: as in :func:`load_datalist`; default ``None``.
        data: the datalist already read with :func:`read_datalist_json` (to read the file once for several
            splits); default ``None``: read ``datalist_file``.

    Returns:
        ``(indexed_items, problems)``: ``(index, entry)`` pairs, the entries with absolute paths (entries that are
        not objects left out), and a :class:`DataProblem` per problem: first the malformed entries, then the
        missing files (flagged ``missing_file``), each in entry order.

    Raises:
        FileNotFoundError: when ``datalist_file`` does not exist.
        ValueError: when the JSON cannot be parsed, or the split is absent or not a list.
    """
    datalist_file = os.path.abspath(os.fspath(datalist_file))
    if data is None:
        data = read_datalist_json(datalist_file)
    if split not in data:
        available = [k for k, v in data.items() if isinstance(v, list)]
        raise ValueError(f"datalist {datalist_file!r} has no split {split!r}; its split lists are {available}.")
    entries = data[split]
    if not isinstance(entries, list):
        raise ValueError(f"datalist {datalist_file!r} split {split!r} must be a list, got {type(entries).__name__}.")
    base = os.path.abspath(os.fspath(base_dir)) if base_dir is not None else os.path.dirname(datalist_file)
    if require_label is None:
        require_label = split in ("training", "validation") or any(
            isinstance(e, dict) and "label" in e for e in entries
        )
    problems: list[DataProblem] = []
    missing: list[DataProblem] = []
    out: list[tuple[int, dict]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict):
            problems.append(DataProblem(split, i, None, f"must be an object, got {type(entry).__name__}"))
            continue
        item = dict(entry)
        for key in ("image", "label", *OPTIONAL_PATH_KEYS):
            if key not in item:
                if key == "image" or (key == "label" and require_label):
                    problems.append(DataProblem(split, i, key, f"missing key {key!r}"))
                continue
            value = item[key]
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    DataProblem(split, i, key, f"key {key!r} must be a non-empty path string, got {value!r}")
                )
                continue
            path = os.path.normpath(os.path.join(base, value))
            item[key] = path
            if check_files and not os.path.isfile(path):
                missing.append(
                    DataProblem(split, i, key, f"key {key!r} file {path!r} does not exist", missing_file=True)
                )
        text = item.get("text")
        image = str(item.get("image", "?"))
        if "text" not in item:
            problems.append(DataProblem(split, i, "text", "missing key 'text'", file=image))
        elif not isinstance(text, str) or not text.strip():
            problems.append(
                DataProblem(split, i, "text", f"key 'text' must be a non-empty string, got {text!r}", file=image)
            )
        for key in ("site", "class"):
            if key in item and not isinstance(item[key], str):
                problems.append(DataProblem(split, i, key, f"key {key!r} must be a string, got {item[key]!r}"))
        out.append((i, item))
    for key in OPTIONAL_PATH_KEYS:
        having = [i for i, item in out if key in item]
        if having and len(having) < len(out):
            lacking = [i for i, item in out if key not in item]
            problems.append(
                DataProblem(
                    split,
                    lacking[0],
                    key,
                    f"key {key!r} is in {len(having)} entries of the split but not in {len(lacking)} (first: entry "
                    f"{lacking[0]}); give it to every entry or to none",
                )
            )
    return out, problems + missing


def _lock_is_stale(lock: Path) -> bool:
    """True when the lock names a process of this host that no longer runs."""
    try:
        pid_text, host = lock.read_text().split()[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # being written, or unreadable: let the timeout decide
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _generate_synthetic(
    dataset_dir: Path, synthetic: str, num_train: int, num_val: int, num_test: int, image_size: int, seed: int
) -> None:
    """Generate into a hidden sibling folder, read it, write the datalist, then rename it to ``dataset_dir``."""
    # common.data.synthetic is imported only here (it is not needed to read real data)
    synth = importlib.import_module("common.data.synthetic")

    tmp = dataset_dir.parent / f".{dataset_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        site_table = None
        if synthetic == "chest_xray":
            synth.generate_chest_xray_dataset(str(tmp), num_train, num_val, num_test, image_size, seed)
            site_table = tmp / "sites.csv" if (tmp / "sites.csv").is_file() else None
            datalist, report = read_lvit_layout(tmp, site_table=site_table, name="synthetic_chest_xray", strict=True)
        else:
            # the endoscopy generator has no validation part: generate num_train + num_val training images and
            # draw num_val of them as validation
            synth.generate_endoscopy_dataset(str(tmp), num_train + num_val, num_test, image_size, seed)
            site_table = tmp / "sites.csv" if (tmp / "sites.csv").is_file() else None
            datalist, report = read_madapter(
                tmp,
                "Synthetic_train.csv",
                "Synthetic_test.csv",
                site_table=site_table,
                val_fraction=num_val / (num_train + num_val) if num_val > 0 else 0.0,
                seed=seed,
                name="synthetic_endoscopy",
                strict=True,
            )
        if synthetic == "chest_xray":
            _attach_lung_fields(datalist, tmp)
        datalist["root"] = report.root = str(dataset_dir)
        write_datalist(datalist, tmp / DATALIST_FILE_NAME, report)
        if dataset_dir.exists():
            dataset_dir.rmdir()  # empty (checked by the caller under the lock)
        os.rename(tmp, dataset_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _attach_lung_fields(datalist: dict, root: Path) -> None:
    """Add ``lungs`` (``<Split>_Folder/lungs/<image file name>``, relative) to the entries whose file exists."""
    for split in DATALIST_SPLITS:
        for entry in datalist.get(split) or []:
            image = Path(entry["image"])
            lungs = image.parent.parent / "lungs" / image.name
            if (root / lungs).is_file():
                entry["lungs"] = lungs.as_posix()


def ensure_datalist(
    dataset_dir: str | os.PathLike,
    synthetic: str | None = None,
    num_train: int = 32,
    num_val: int = 8,
    num_test: int = 8,
    image_size: int = 256,
    seed: int = 0,
    timeout: float = 600.0,
    poll_interval: float = 0.5,
) -> str:
    """
    Return ``<dataset_dir>/datalist.json``, generating the synthetic dataset first when asked and needed.

    - If the file exists it is returned as is (nothing is checked or regenerated).
    - Else, with ``synthetic`` set and ``dataset_dir`` absent or empty, the synthetic set is generated by
      ``common.data.synthetic.generate_chest_xray_dataset(root, num_train, num_val, num_test, image_size, seed)``
      (LViT/QaTa layout, read with :func:`~common.data.readers.read_lvit_layout` and ``sites.csv``) or
      ``generate_endoscopy_dataset(root, num_train + num_val, num_test, image_size, seed)`` (MAdapter layout
      with ``Synthetic_train.csv``/``Synthetic_test.csv``, read with :func:`~common.data.readers.read_madapter`,
      ``num_val`` drawn from training), in ``strict`` mode, and the datalist and its report are written.
    - Otherwise FileNotFoundError.

    Concurrency (e.g. every DDP rank calls this at start-up): generation runs under an exclusive lock file
    ``<parent>/.<dataset_dir name>.lock`` created with ``os.open(O_CREAT | O_EXCL)`` and holding
    ``"<pid> <host>"``. The process that creates it generates into a hidden sibling folder and renames that
    folder to ``dataset_dir`` when the datalist is written, so ``dataset_dir`` is either absent/empty or
    complete. The other processes poll every ``poll_interval`` seconds until the datalist appears. A lock left
    by a dead process of the same host is removed; otherwise waiting ends with TimeoutError after ``timeout``
    seconds. When the generating process fails, it removes its lock and hidden folder, and a waiting process
    then tries itself (normally failing the same way, so every rank reports the error). ``O_EXCL`` is atomic
    on local file systems and on NFS v3 and later.

    Args:
        dataset_dir: the dataset folder.
        synthetic: ``"chest_xray"``, ``"endoscopy"`` or ``None`` (real data only). Default ``None``.
        num_train: synthetic training images, default 32.
        num_val: synthetic validation images, default 8.
        num_test: synthetic test images, default 8.
        image_size: synthetic image side in pixels, default 256.
        seed: synthetic generation (and endoscopy validation draw) seed, default 0.
        timeout: seconds to wait for another process holding the lock, default 600.
        poll_interval: seconds between checks while waiting, default 0.5.

    Returns:
        the datalist path as a string.

    Raises:
        FileNotFoundError: when there is no datalist and ``synthetic`` is ``None``, or ``dataset_dir`` holds
            other files (never overwritten).
        ValueError: when ``synthetic`` is not one of :data:`SYNTHETIC_KINDS`, or the generated set has problems.
        TimeoutError: when another process holds the lock longer than ``timeout``.
    """
    dataset_dir = Path(os.path.abspath(os.fspath(dataset_dir)))
    datalist_path = dataset_dir / DATALIST_FILE_NAME
    if datalist_path.is_file():
        return str(datalist_path)
    if synthetic is None:
        raise FileNotFoundError(
            f"no datalist at {str(datalist_path)!r}; prepare real data with `python tools/prepare_dataset.py "
            f"<lvit|madapter|folders> --root <dataset root> --out {datalist_path}` or set `synthetic` "
            f"({' or '.join(SYNTHETIC_KINDS)})."
        )
    if synthetic not in SYNTHETIC_KINDS:
        raise ValueError(f"synthetic must be one of {SYNTHETIC_KINDS} or None, got {synthetic!r}.")

    def _refuse_if_not_empty() -> None:
        # listing first, then the datalist: another process renames a complete folder in at once, so a
        # non-empty folder without a datalist seen in this order is never a set being generated here
        if dataset_dir.is_dir() and any(dataset_dir.iterdir()) and not datalist_path.is_file():
            raise FileNotFoundError(
                f"no datalist at {str(datalist_path)!r} and {str(dataset_dir)!r} is not empty, so synthetic data is "
                f"not written there; prepare its data with `python tools/prepare_dataset.py ...`, or empty the folder "
                f"or choose another dataset_dir for synthetic data."
            )

    _refuse_if_not_empty()
    if datalist_path.is_file():
        return str(datalist_path)
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = dataset_dir.parent / f".{dataset_dir.name}.lock"
    start = time.monotonic()
    while True:
        if datalist_path.is_file():
            return str(datalist_path)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(lock):
                lock.unlink(missing_ok=True)
                continue
            if time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"waited {timeout:.0f} s for {str(datalist_path)!r} while lock {str(lock)!r} is held; remove the "
                    f"lock file if no other process is preparing the dataset."
                ) from None
            time.sleep(poll_interval)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            if not datalist_path.is_file():
                _refuse_if_not_empty()
                _generate_synthetic(dataset_dir, synthetic, num_train, num_val, num_test, image_size, seed)
        finally:
            lock.unlink(missing_ok=True)
        return str(datalist_path)


def datalist_texts(datalist_file: str, splits: Sequence[str] = DATALIST_SPLITS) -> list[str]:
    """
    The distinct texts of the given splits of a datalist, sorted: what a frozen text encoder must embed once
    (e.g. ``HFTextEmbedd.embed_texts``) before training, so its on-disk cache is complete and reused.

    Args:
        datalist_file: the datalist JSON.
        splits: the splits to read; a split the datalist lacks is skipped.

    Raises:
        ValueError: as :func:`load_datalist` for malformed entries.
    """
    with open(datalist_file) as f:
        present = set(json.load(f))
    texts = {item["text"] for split in splits if split in present for item in load_datalist(datalist_file, split)}
    return sorted(texts)
