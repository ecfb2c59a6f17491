# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Dataset readers: turn the public on-disk layouts into the project's datalist (see ``common.data.datalist``).

Every reader is a pure function returning ``(datalist, report)``. The datalist holds only complete items
(image + mask + non-empty text, readable, same size); everything else is listed by file name in the
:class:`~common.data.report.ReaderReport`, and ``strict=True`` turns any listed problem into a ``ValueError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from common.data.report import ReaderReport
from common.data.splits import split_by_fraction
from common.data.tables import (
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    Table,
    TextRow,
    match_key,
    read_site_table,
    read_text_table,
)

__all__ = ["LVIT_SPLITS", "read_lvit_layout", "read_madapter", "read_folders"]

logger = logging.getLogger(__name__)

#: LViT folder prefix -> datalist split (``<prefix>_Folder``; LViT README and ``train_model.py``).
LVIT_SPLITS: dict[str, str] = {"Train": "training", "Val": "validation", "Test": "test"}
_SPLIT_ALIASES = {"train": "Train", "training": "Train", "val": "Val", "validation": "Val", "test": "Test"}

PathLike = str | os.PathLike


@dataclass
class _Item:
    key: str
    image: Path
    label: Path
    text: str
    site: str | None = None
    cls: str | None = None


class _Context:
    """State shared by one reader call: the root, the report, and the image keys seen in every folder."""

    def __init__(self, layout: str, root: PathLike) -> None:
        root = Path(os.path.abspath(os.fspath(root)))
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {str(root)!r} is not a folder.")
        self.root = root
        self.report = ReaderReport(layout=layout, root=str(root))
        self.seen_keys: set[str] = set()

    def rel(self, path: Path) -> str:
        """``path`` relative to the root (POSIX separators), or absolute when it lies outside."""
        rel = os.path.relpath(os.path.abspath(path), self.root)
        return Path(path).resolve().as_posix() if rel.startswith("..") else Path(rel).as_posix()

    def table_path(self, path: PathLike) -> Path:
        """A table path given by the caller: absolute as given, relative ones taken from the root."""
        path = Path(os.fspath(path)).expanduser()
        return path if path.is_absolute() else self.root / path


class _TextLookup:
    """One text table with its duplicate analysis and the record of which rows matched a file."""

    def __init__(self, ctx: _Context, table: Table) -> None:
        self.display = ctx.rel(table.path)
        self.rows_by_key: dict[str, list[TextRow]] = {}
        self.used: set[str] = set()
        self.nameless: list[TextRow] = []
        report = ctx.report
        if table.blank_rows:
            report.notes.append(f"{self.display}: {table.blank_rows} blank row(s) skipped")
        for row in table.rows:
            if not row.key:
                self.nameless.append(row)
                report.add("text_without_image", f"{self.display} row {row.row}: (empty Image cell)")
                continue
            self.rows_by_key.setdefault(row.key, []).append(row)
            if not row.text:
                report.add("empty_text", f"{self.display} row {row.row}: {row.name}")
            elif row.text.lower() == "unknown":
                report.add("unknown_text", f"{self.display} row {row.row}: {row.name} ({row.text!r}, kept)")
        self.conflicts: set[str] = set()
        for key, rows in self.rows_by_key.items():
            if len(rows) < 2:
                continue
            texts = {r.text for r in rows}
            where = f"{self.display} rows {', '.join(str(r.row) for r in rows)}: {', '.join(r.name for r in rows)}"
            if len(texts) > 1:
                self.conflicts.add(key)
                report.add("duplicate_keys", f"{where} (different descriptions; image left out)")
            else:
                report.add("duplicate_keys", f"{where} (same description; kept once)")

    def lookup(self, key: str) -> tuple[str, str]:
        """``(status, text)``: status is ``"ok"``, ``"missing"``, ``"empty"`` or ``"conflict"``."""
        rows = self.rows_by_key.get(key)
        if not rows:
            return "missing", ""
        self.used.add(key)
        if key in self.conflicts:
            return "conflict", ""
        if not rows[0].text:
            return "empty", ""
        return "ok", rows[0].text

    def report_unused(self, report: ReaderReport) -> None:
        for key, rows in self.rows_by_key.items():
            if key not in self.used:
                for r in rows:
                    report.add("text_without_image", f"{self.display} row {r.row}: {r.name}")


def _load_lookup(ctx: _Context, path: Path, cache: dict[Path, _TextLookup]) -> _TextLookup:
    key = Path(os.path.abspath(path))
    if key not in cache:
        cache[key] = _TextLookup(ctx, read_text_table(path))
    return cache[key]


def _scan_folder(ctx: _Context, folder: Path, what: str) -> tuple[dict[str, Path], set[str]]:
    """Image files of ``folder`` by match key, and the keys that match more than one file (reported)."""
    if not folder.is_dir():
        ctx.report.notes.append(f"{what} folder {ctx.rel(folder)} is absent")
        return {}, set()
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(match_key(entry.name), []).append(entry)
        else:
            ctx.report.ignored_files.append(ctx.rel(entry) + ("/" if entry.is_dir() else ""))
    unique, ambiguous = {}, set()
    for key, paths in found.items():
        if len(paths) == 1:
            unique[key] = paths[0]
        else:
            ambiguous.add(key)
            names = ", ".join(ctx.rel(p) for p in paths)
            ctx.report.add("duplicate_keys", f"{names} (same name after matching rules; left out)")
    return unique, ambiguous


def _image_size(ctx: _Context, path: Path) -> tuple[int, int] | None:
    """Width and height from the file header (cheap); ``None`` (reported) when PIL cannot open the file."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError, DecompressionBombError
        ctx.report.add("unreadable", f"{ctx.rel(path)} ({type(e).__name__}: {e})")
        return None


def _pair(
    ctx: _Context,
    image_dir: Path,
    mask_dir: Path,
    lookups: list[tuple[str, _TextLookup | None]],
    default_text: str | None = None,
) -> dict[str, list[_Item]]:
    """
    Match images, masks and text rows of one image folder. ``lookups`` are ``(split, table)`` pairs tried in
    order; an image goes to the split of the first table that has its key (a table ``None`` means none).
    """
    images, ambiguous_images = _scan_folder(ctx, image_dir, "image")
    masks, ambiguous_masks = _scan_folder(ctx, mask_dir, "mask")
    report = ctx.report
    out: dict[str, list[_Item]] = {split: [] for split, _ in lookups}
    for key in ambiguous_images:  # the rows of ambiguous images are not "text without image"
        for _, lk in lookups:
            if lk is not None:
                lk.lookup(key)
    ctx.seen_keys.update(images)
    ctx.seen_keys.update(ambiguous_images)
    for key, image in sorted(images.items(), key=lambda kv: kv[1].name):
        name = ctx.rel(image)
        hits = []
        for split, lk in lookups:
            if lk is None:
                continue
            status, text = lk.lookup(key)
            if status != "missing":
                hits.append((split, lk, status, text))
        ok = True
        if not hits:
            if default_text is None:
                report.add("image_without_text", name)
                ok = False
            else:
                split, text = lookups[0][0], default_text
        else:
            split, lk, status, text = hits[0]
            if len(hits) > 1:
                tables = ", ".join(h[1].display for h in hits)
                report.add("duplicate_keys", f"{name} is listed in {tables}; kept in {split} only")
            if status != "ok":
                ok = False  # empty and conflicting rows were reported when the table was read
        mask = masks.get(key)
        if mask is None:
            if key not in ambiguous_masks:
                report.add("image_without_mask", name)
            ok = False
        image_size = _image_size(ctx, image)
        mask_size = _image_size(ctx, mask) if mask is not None else None
        if image_size is None or (mask is not None and mask_size is None):
            ok = False
        elif mask_size is not None and image_size != mask_size:
            report.add(
                "size_mismatch",
                f"{name} ({image_size[0]}x{image_size[1]}) vs {ctx.rel(mask)} ({mask_size[0]}x{mask_size[1]})",
            )
            ok = False
        if ok:
            out[split].append(_Item(key=key, image=image, label=mask, text=text))
    for key in sorted(set(masks) - set(images) - ambiguous_images):
        report.add("mask_without_image", ctx.rel(masks[key]))
    return out


def _apply_sites(ctx: _Context, items: list[_Item], site_table: PathLike | None) -> None:
    """Attach ``site``/``class`` from the site table; report missing and unmatched rows."""
    if site_table is None:
        return
    path = ctx.table_path(site_table)
    table = read_site_table(path)
    display = ctx.rel(path)
    report = ctx.report
    if table.blank_rows:
        report.notes.append(f"{display}: {table.blank_rows} blank row(s) skipped")
    rows_by_key: dict[str, list] = {}
    for row in table.rows:
        if not row.key:
            report.add("site_without_image", f"{display} row {row.row}: (empty Image cell)")
            continue
        rows_by_key.setdefault(row.key, []).append(row)
    values: dict[str, tuple[str | None, str | None]] = {}
    for key, rows in rows_by_key.items():
        distinct = {(r.site, r.cls) for r in rows}
        if len(rows) > 1:
            where = f"{display} rows {', '.join(str(r.row) for r in rows)}: {', '.join(r.name for r in rows)}"
            verdict = "same values; kept once" if len(distinct) == 1 else "different values; site/class not set"
            report.add("duplicate_keys", f"{where} ({verdict})")
        if len(distinct) == 1:
            values[key] = rows[0].site, rows[0].cls
    for item in items:
        if item.key in values:
            item.site, item.cls = values[item.key]
        elif item.key not in rows_by_key:
            report.add("image_without_site", ctx.rel(item.image))
    for key, rows in rows_by_key.items():
        if key not in ctx.seen_keys:
            for r in rows:
                report.add("site_without_image", f"{display} row {r.row}: {r.name}")


def _draw(
    ctx: _Context, items: list[_Item], fraction: float, seed: int, what: str, source: str
) -> tuple[list[_Item], list[_Item]]:
    """Draw a hold-out split from ``items`` (sorted by image path), stratified by site when sites are known."""
    items = sorted(items, key=lambda it: str(it.image))
    sites = [it.site for it in items]
    stratified = any(s is not None for s in sites)
    kept, drawn = split_by_fraction(items, fraction, seed=seed, groups=sites if stratified else None)
    how = "stratified by site" if stratified else "not stratified (no sites known)"
    ctx.report.notes.append(
        f"{what} split drawn from {source}: {len(drawn)} of {len(items)} items "
        f"(fraction {fraction}, seed {seed}, {how})"
    )
    return kept, drawn


def _check_cross_split(ctx: _Context, splits: dict[str, list[_Item]]) -> None:
    """Report image keys that occur in more than one split (possible leakage between splits)."""
    where: dict[str, list[str]] = {}
    for items in splits.values():
        for it in items:
            where.setdefault(it.key, []).append(ctx.rel(it.image))
    for key in sorted(where):
        if len(where[key]) > 1:
            ctx.report.add("duplicate_keys", f"{', '.join(where[key])} (same name in several splits; all kept)")


def _finish(
    ctx: _Context, splits: dict[str, list[_Item]], name: str | None, out_dir: PathLike | None, strict: bool
) -> tuple[dict, ReaderReport]:
    """Build the datalist dict (paths relative to ``out_dir``, lists sorted by image path) and the report."""
    out = Path(os.path.abspath(os.fspath(out_dir))) if out_dir is not None else ctx.root
    datalist: dict = {"name": name or ctx.root.name, "layout": ctx.report.layout, "root": str(ctx.root)}
    for split in ("training", "validation", "test"):
        entries = []
        for it in splits.get(split, []):
            entry = {
                "image": Path(os.path.relpath(it.image, out)).as_posix(),
                "label": Path(os.path.relpath(it.label, out)).as_posix(),
                "text": it.text,
            }
            if it.site is not None:
                entry["site"] = it.site
            if it.cls is not None:
                entry["class"] = it.cls
            entries.append(entry)
        datalist[split] = sorted(entries, key=lambda e: e["image"])
        ctx.report.counts[split] = len(entries)
    if ctx.report.num_problems:
        logger.warning(
            "%s dataset at %s: %d problem(s) (%s); see the reader report.",
            ctx.report.layout,
            ctx.root,
            ctx.report.num_problems,
            ", ".join(f"{k}: {len(v)}" for k, v in ctx.report.problems().items()),
        )
    if strict:
        ctx.report.raise_if_problems()
    return datalist, ctx.report


def _find_table(folder: Path, stem: str) -> Path | None:
    for suffix in TABLE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _lvit_text_tables(root: Path, text_files: PathLike | Mapping[str, PathLike] | None) -> dict[str, Path | None]:
    """The text table of each LViT split folder prefix (``Train``, ``Val``, ``Test``)."""
    if text_files is not None and not isinstance(text_files, Mapping):
        return {prefix: Path(os.fspath(text_files)) for prefix in LVIT_SPLITS}
    given: dict[str, Path] = {}
    for k, v in (text_files or {}).items():
        prefix = _SPLIT_ALIASES.get(str(k).lower())
        if prefix is None:
            raise ValueError(f"text_files key {k!r} is not a split; use one of Train, Val, Test.")
        given[prefix] = Path(os.fspath(v))
    train_val = _find_table(root / "Train_Folder", "Train_Val_text")
    val_own = _find_table(root / "Val_Folder", "Val_text")
    found: dict[str, Path | None] = {
        # QaTa-COV19: one Train_Folder/Train_Val_text.xlsx covers train and val (LViT train_model.py)
        "Train": (train_val if val_own is None and train_val is not None else None)
        or _find_table(root / "Train_Folder", "Train_text")
        or train_val,
        "Val": val_own or train_val,
        "Test": _find_table(root / "Test_Folder", "Test_text"),
    }
    found.update(given)
    return found


def read_lvit_layout(
    root: PathLike,
    out_dir: PathLike | None = None,
    text_files: PathLike | Mapping[str, PathLike] | None = None,
    site_table: PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    name: str | None = None,
) -> tuple[dict, ReaderReport]:
    """
    Read the LViT layout used for QaTa-COV19, MosMedData+ and MoNuSeg (LViT README; method_notes.md 1.2, 1.5):
    ``<root>/{Train,Val,Test}_Folder/{img,labelcol}/`` with text tables ``<root>/<S>_Folder/<S>_text.{xlsx,csv}``
    (columns ``Image``, ``Description``; xlsx: first sheet).

    Text tables: QaTa's ``Train_Folder/Train_Val_text.*`` serves both Train and Val when ``Val_Folder`` has no
    ``Val_text.*``; otherwise ``Train_text.*`` (falling back to ``Train_Val_text.*``) serves Train.
    Matching uses :func:`common.data.tables.match_key`, so table keys may be mask names (``mask_<image>.png``,
    QaTa) or image names with another extension (MoNuSeg Test says ``.png`` for ``.tif`` files), and masks in
    ``labelcol/`` may be ``<stem>.png`` or ``mask_<stem>.png``. Descriptions go through
    :func:`common.data.tables.normalize_text`; typos are kept as in the source. When the layout yields no
    validation item (no ``Val_Folder``, or none of its images is complete), validation is drawn from training
    (``val_fraction``, ``seed``; stratified by site when known; noted in the report). An absent ``Test_Folder``
    gives an empty test list (noted in the report).

    Args:
        root: the dataset folder holding ``Train_Folder`` etc.
        out_dir: the folder the datalist will be written to; entry paths are relative to it. Default: ``root``.
        text_files: override the text tables: one path for all splits, or a mapping ``{"Train"|"Val"|"Test"
            (or "training"/"validation"/"test"): path}`` replacing the discovered table of those splits.
            Relative paths are taken from ``root``. Default ``None`` (discover).
        site_table: optional site/class table (``Image`` + ``site`` and/or ``class``); relative to ``root``
            when relative. Default ``None``.
        val_fraction: share of training drawn as validation when the layout has none, in ``[0, 1)``;
            default 0.2.
        seed: seed of that draw, default 0.
        strict: raise instead of returning when any problem is found. Default ``False``.
        name: the datalist ``name``; default the root folder name.

    Returns:
        ``(datalist, report)``: the datalist dict (``name``, ``layout``, ``root``, ``training``,
        ``validation``, ``test``) and a :class:`~common.data.report.ReaderReport`.

    Raises:
        FileNotFoundError: when ``root`` is not a folder, holds none of the ``*_Folder`` folders, or a given
            table does not exist.
        ValueError: when a table cannot be parsed or lacks a column, a ``text_files`` key is unknown, or
            (``strict=True``) any problem is found; the message lists the problems by file name.

    Examples::

        datalist, report = read_lvit_layout("/data/QaTa-COV19", site_table=None)
        write_datalist(datalist, "/data/QaTa-COV19/datalist.json", report)
    """
    ctx = _Context("lvit", root)
    root = ctx.root
    present = [p for p in LVIT_SPLITS if (root / f"{p}_Folder").is_dir()]
    if not present:
        raise FileNotFoundError(
            f"{str(root)!r} is not an LViT layout: none of {', '.join(p + '_Folder' for p in LVIT_SPLITS)} exists."
        )
    tables = _lvit_text_tables(root, text_files)
    cache: dict[Path, _TextLookup] = {}
    splits: dict[str, list[_Item]] = {s: [] for s in LVIT_SPLITS.values()}
    for prefix, split in LVIT_SPLITS.items():
        folder = root / f"{prefix}_Folder"
        if not folder.is_dir():
            ctx.report.notes.append(f"{prefix}_Folder is absent")
            continue
        table_path = tables[prefix]
        lookup = None
        if table_path is None:
            ctx.report.notes.append(f"{prefix}_Folder: no text table found ({prefix}_text.xlsx/.csv)")
        else:
            table_path = ctx.table_path(table_path)
            lookup = _load_lookup(ctx, table_path, cache)
            ctx.report.notes.append(f"{prefix}_Folder: text from {lookup.display}")
        found = _pair(ctx, folder / "img", folder / "labelcol", [(split, lookup)])
        splits[split].extend(found[split])
    for lookup in cache.values():
        lookup.report_unused(ctx.report)
    _apply_sites(ctx, [it for items in splits.values() for it in items], site_table)
    if not splits["validation"] and splits["training"] and val_fraction > 0:
        splits["training"], splits["validation"] = _draw(
            ctx, splits["training"], val_fraction, seed, "validation", "training"
        )
    _check_cross_split(ctx, splits)
    return _finish(ctx, splits, name, out_dir, strict)


def read_madapter(
    root: PathLike,
    train_csv: PathLike | None = None,
    test_csv: PathLike | None = None,
    out_dir: PathLike | None = None,
    site_table: PathLike | None = None,
    image_dir: str = "images",
    mask_dir: str = "masks",
    test_image_dir: str | None = None,
    test_mask_dir: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    name: str | None = None,
) -> tuple[dict, ReaderReport]:
    """
    Read a polyp set with the MAdapter text annotations (MICCAI 2024; method_notes.md 6.1): images in
    ``<root>/images/``, masks in ``<root>/masks/`` and CSV tables (UTF-8 with BOM, columns ``Image``,
    ``Description``) such as ``Kvasir_train.csv``/``Kvasir_test.csv``.

    Matching is by :func:`common.data.tables.match_key`: CSV names end in ``.png`` while Kvasir-SEG files are
    ``.jpg``, and ClinicDB train names are zero-padded (``001.png``) while files may be ``1.png``. A description
    that reads "unknown" (one Kvasir train row) is kept and reported. An image whose key is in both CSVs goes
    to test (reported). Validation is drawn from training (``val_fraction``, ``seed``; stratified by site when
    known). Test-only sets (ColonDB, ETIS, CVC-300) pass only ``test_csv``.

    Args:
        root: the dataset folder.
        train_csv: the training text CSV (absolute, or relative to ``root``), or ``None`` for no training part.
        test_csv: the test text CSV (absolute or relative to ``root``), or ``None`` for no test part.
        out_dir: the folder the datalist will be written to; entry paths are relative to it. Default ``root``.
        site_table: optional site/class table (relative to ``root`` when relative). Default ``None``.
        image_dir: image folder under ``root``, default ``"images"``.
        mask_dir: mask folder under ``root``, default ``"masks"``.
        test_image_dir: image folder of the test part when it differs (PraNet's ``TestDataset/<set>/images``);
            default ``None`` (same as ``image_dir``).
        test_mask_dir: mask folder of the test part, default ``None`` (same as ``mask_dir``).
        val_fraction: share of training drawn as validation, in ``[0, 1)``; default 0.2.
        seed: seed of that draw, default 0.
        strict: raise instead of returning when any problem is found. Default ``False``.
        name: the datalist ``name``; default the root folder name.

    Returns:
        ``(datalist, report)`` as :func:`read_lvit_layout`.

    Raises:
        FileNotFoundError: when ``root`` is not a folder or a given CSV/table does not exist.
        ValueError: when neither CSV is given, a table cannot be parsed or lacks a column, or (``strict=True``)
            any problem is found.

    Examples::

        datalist, report = read_madapter("/data/Kvasir-SEG", "Kvasir_train.csv", "Kvasir_test.csv")
    """
    if train_csv is None and test_csv is None:
        raise ValueError("read_madapter needs train_csv, test_csv or both.")
    ctx = _Context("madapter", root)
    cache: dict[Path, _TextLookup] = {}
    train_lk = _load_lookup(ctx, ctx.table_path(train_csv), cache) if train_csv is not None else None
    test_lk = _load_lookup(ctx, ctx.table_path(test_csv), cache) if test_csv is not None else None
    splits: dict[str, list[_Item]] = {"training": [], "validation": [], "test": []}
    separate = (test_image_dir or image_dir) != image_dir or (test_mask_dir or mask_dir) != mask_dir
    if separate:
        parts = [
            (image_dir, mask_dir, [("training", train_lk)]),
            (test_image_dir or image_dir, test_mask_dir or mask_dir, [("test", test_lk)]),
        ]
    else:
        parts = [(image_dir, mask_dir, [("test", test_lk), ("training", train_lk)])]
    for images, masks, lookups in parts:
        found = _pair(ctx, ctx.root / images, ctx.root / masks, lookups)
        for split, items in found.items():
            splits[split].extend(items)
    for lookup in cache.values():
        lookup.report_unused(ctx.report)
    _apply_sites(ctx, [it for items in splits.values() for it in items], site_table)
    if splits["training"] and val_fraction > 0:
        splits["training"], splits["validation"] = _draw(
            ctx, splits["training"], val_fraction, seed, "validation", "training"
        )
    _check_cross_split(ctx, splits)
    return _finish(ctx, splits, name, out_dir, strict)


def read_folders(
    root: PathLike,
    text_table: PathLike | None = None,
    site_table: PathLike | None = None,
    out_dir: PathLike | None = None,
    default_text: str | None = None,
    image_dir: str = "images",
    mask_dir: str = "masks",
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    name: str | None = None,
) -> tuple[dict, ReaderReport]:
    """
    Read plain ``<root>/images/`` + ``<root>/masks/`` folders (multi-site sets, or any set without a published
    split), with an optional text table (``Image``, ``Description``) and an optional site/class table.

    The test split is drawn first from all complete items (``test_fraction``), then validation from the rest
    (``val_fraction`` of what is left); both draws use ``seed`` and are stratified by site when sites are known.

    Args:
        root: the dataset folder.
        text_table: text table (absolute or relative to ``root``), or ``None`` to use ``default_text``.
        site_table: optional site/class table (relative to ``root`` when relative). Default ``None``.
        out_dir: the folder the datalist will be written to; entry paths are relative to it. Default ``root``.
        default_text: the description given to every image when ``text_table`` is ``None`` (e.g.
            ``"polyp"``); ignored when a text table is given (images missing from it are reported and left
            out). Default ``None``.
        image_dir: image folder under ``root``, default ``"images"``.
        mask_dir: mask folder under ``root``, default ``"masks"``.
        val_fraction: share of the non-test items drawn as validation, in ``[0, 1)``; default 0.2.
        test_fraction: share of all items drawn as test, in ``[0, 1)``; default 0.2.
        seed: seed of the draws, default 0.
        strict: raise instead of returning when any problem is found. Default ``False``.
        name: the datalist ``name``; default the root folder name.

    Returns:
        ``(datalist, report)`` as :func:`read_lvit_layout`.

    Raises:
        FileNotFoundError: when ``root`` is not a folder or a given table does not exist.
        ValueError: when neither ``text_table`` nor a non-empty ``default_text`` is given, a table cannot be
            parsed, or (``strict=True``) any problem is found.
    """
    if text_table is None and not (default_text or "").strip():
        raise ValueError("read_folders needs text_table (Image, Description) or a non-empty default_text.")
    ctx = _Context("folders", root)
    lookup = None
    if text_table is not None:
        lookup = _load_lookup(ctx, ctx.table_path(text_table), {})
        default_text = None
    else:
        default_text = " ".join(str(default_text).split())
        ctx.report.notes.append(f"no text table: every image gets the default text {default_text!r}")
    found = _pair(ctx, ctx.root / image_dir, ctx.root / mask_dir, [("pool", lookup)], default_text=default_text)
    if lookup is not None:
        lookup.report_unused(ctx.report)
    pool = found["pool"]
    _apply_sites(ctx, pool, site_table)
    rest, test = _draw(ctx, pool, test_fraction, seed, "test", "all items")
    training, validation = _draw(ctx, rest, val_fraction, seed, "validation", "the non-test items")
    splits = {"training": training, "validation": validation, "test": test}
    return _finish(ctx, splits, name, out_dir, strict)
