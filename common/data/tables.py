# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Reading the tables that come with the public datasets: text tables (``Image``, ``Description``) and site/class
tables (``Image``, ``site``, ``class``), plus the rules that match a table row to a file.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "normalize_text",
    "match_key",
    "TextRow",
    "SiteRow",
    "Table",
    "read_text_table",
    "read_site_table",
]

#: File name endings taken as images (case-insensitive); other files in image/mask folders are listed as ignored.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Table formats read: Excel (first sheet, as LViT's ``utils.read_text`` does) and comma-separated text.
TABLE_SUFFIXES: tuple[str, ...] = (".xlsx", ".xlsm", ".csv")


def normalize_text(value: object) -> str:
    """
    Normalise one description: strip it and collapse every internal run of white space to one space
    (the QaTa-COV19 text has double spaces). ``None`` and NaN (an empty spreadsheet cell) give ``""``.

    Spelling and punctuation are kept exactly as in the source: the public QaTa text has typos such as
    "upper midlle", "areas,lower" or "oneinfected", and MAdapter joins sentences with "." and no space
    ("Two colonic polyps.One small, ..."); a model trained on the published text sees the same strings.

    Args:
        value: the cell value.

    Examples::

        >>> normalize_text("  two infected areas,  middle lower left lung. ")
        'two infected areas, middle lower left lung.'
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split())


def match_key(name: str) -> str:
    """
    The key used to match a table row, an image and a mask to each other.

    It is the base name (after the last ``/`` or ``\\``) without an image extension (:data:`IMAGE_SUFFIXES`,
    case-insensitive), without a leading ``mask_``, and with leading zeros removed when the rest is all ASCII
    digits. This covers the published quirks: QaTa text keys are mask names ``mask_<image>.png`` (LViT
    ``train_model.py``), the MoNuSeg test xlsx says ``.png`` while the file is ``.tif``, MAdapter CSVs say
    ``.png`` for Kvasir-SEG ``.jpg`` files, and the MAdapter ClinicDB train CSV says ``001.png`` for ``1.png``
    (see /work/shared/fixtures/README.md and method_notes.md sections 1.2, 1.5, 6.1).

    Args:
        name: a file name, a path, or a table cell.

    Examples::

        >>> match_key("mask_covid_1.png"), match_key("TCGA-2Z.tif"), match_key("001.png")
        ('covid_1', 'TCGA-2Z', '1')
    """
    base = re.split(r"[\\/]", str(name).strip())[-1]
    stem, ext = os.path.splitext(base)
    if ext.lower() not in IMAGE_SUFFIXES:
        stem = base
    if stem.startswith("mask_"):
        stem = stem[len("mask_") :]
    if stem.isascii() and stem.isdigit():
        stem = str(int(stem))
    return stem


@dataclass(frozen=True)
class TextRow:
    """
    One row of a text table.

    Args:
        row: the spreadsheet row number (the header is row 1, the first data row is row 2).
        name: the ``Image`` cell, stripped.
        key: :func:`match_key` of ``name``.
        text: the ``Description`` cell after :func:`normalize_text` (may be ``""``).
    """

    row: int
    name: str
    key: str
    text: str


@dataclass(frozen=True)
class SiteRow:
    """
    One row of a site/class table.

    Args:
        row: the spreadsheet row number (header = row 1).
        name: the ``Image`` cell, stripped.
        key: :func:`match_key` of ``name``.
        site: the ``site`` cell, or ``None`` when the column is absent or the cell is empty.
        cls: the ``class`` cell, or ``None`` when absent or empty.
    """

    row: int
    name: str
    key: str
    site: str | None
    cls: str | None


@dataclass
class Table:
    """
    A parsed table.

    Args:
        path: the file read.
        rows: the data rows (:class:`TextRow` or :class:`SiteRow`), blank rows excluded.
        blank_rows: the number of rows whose cells are all empty (spreadsheets often carry thousands of them
            after the data; they are counted, not listed).
    """

    path: Path
    rows: list = field(default_factory=list)
    blank_rows: int = 0


def _read_frame(path: Path) -> pd.DataFrame:
    """Read a table as strings (empty cells as ``""``); Excel: first sheet; CSV: UTF-8 with or without BOM."""
    if not path.is_file():
        raise FileNotFoundError(f"table {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame = pd.read_excel(path, sheet_name=0, dtype=str)
        elif suffix == ".csv":
            # utf-8-sig removes the byte-order mark of the MAdapter CSVs (method_notes.md section 6.1)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            raise ValueError(f"table {str(path)!r}: unsupported format {suffix!r}; use one of {TABLE_SUFFIXES}.")
    except (ValueError, FileNotFoundError):
        raise
    except Exception as e:  # parser errors of pandas/openpyxl: name the file
        raise ValueError(f"table {str(path)!r} cannot be read: {e}") from e
    return frame.fillna("")


def _find_column(frame: pd.DataFrame, name: str) -> str | None:
    for col in frame.columns:
        if str(col).strip().lstrip("\ufeff").lower() == name.lower():
            return col
    return None


def _require_column(frame: pd.DataFrame, name: str, path: Path) -> str:
    col = _find_column(frame, name)
    if col is None:
        raise ValueError(
            f"table {str(path)!r} has no {name!r} column; its columns are {[str(c) for c in frame.columns]}."
        )
    return col


def read_text_table(path: str | os.PathLike) -> Table:
    """
    Read a text table with columns ``Image`` and ``Description`` (matched case-insensitively), as published
    with LViT (xlsx, first sheet; LViT ``utils.read_text``) and MAdapter (CSV, UTF-8 with BOM).

    Args:
        path: an ``.xlsx``/``.xlsm`` or ``.csv`` file.

    Returns:
        a :class:`Table` of :class:`TextRow`, in file order.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it cannot be parsed, has an unsupported extension, or lacks a column.
    """
    path = Path(path)
    frame = _read_frame(path)
    image_col = _require_column(frame, "Image", path)
    text_col = _require_column(frame, "Description", path)
    table = Table(path=path)
    for i, (name, text) in enumerate(zip(frame[image_col], frame[text_col])):
        name, text = str(name).strip(), normalize_text(text)
        if not name and not text:
            table.blank_rows += 1
            continue
        table.rows.append(TextRow(row=i + 2, name=name, key=match_key(name) if name else "", text=text))
    return table


def read_site_table(path: str | os.PathLike) -> Table:
    """
    Read a site/class table: column ``Image`` (the image file name or stem) and at least one of ``site`` and
    ``class`` (all matched case-insensitively); values are kept as strings.

    Args:
        path: an ``.xlsx``/``.xlsm`` or ``.csv`` file.

    Returns:
        a :class:`Table` of :class:`SiteRow`, in file order.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it cannot be parsed or lacks ``Image`` or both ``site`` and ``class``.
    """
    path = Path(path)
    frame = _read_frame(path)
    image_col = _require_column(frame, "Image", path)
    site_col, class_col = _find_column(frame, "site"), _find_column(frame, "class")
    if site_col is None and class_col is None:
        raise ValueError(
            f"site table {str(path)!r} needs a 'site' or 'class' column; its columns are "
            f"{[str(c) for c in frame.columns]}."
        )
    table = Table(path=path)
    for i in range(len(frame)):
        name = str(frame[image_col].iloc[i]).strip()
        site = normalize_text(frame[site_col].iloc[i]) if site_col is not None else ""
        cls = normalize_text(frame[class_col].iloc[i]) if class_col is not None else ""
        if not name and not site and not cls:
            table.blank_rows += 1
            continue
        table.rows.append(
            SiteRow(row=i + 2, name=name, key=match_key(name) if name else "", site=site or None, cls=cls or None)
        )
    return table
