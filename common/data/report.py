# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""The report a dataset reader returns next to the datalist: every problem found, listed by file name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from common.data.fileio import atomic_write_json

__all__ = ["PROBLEM_KINDS", "DataProblem", "ReaderReport", "report_path_for"]

#: Problem kinds, in the order they are displayed. Each is a list attribute of :class:`ReaderReport`.
PROBLEM_KINDS: tuple[str, ...] = (
    "text_without_image",
    "image_without_text",
    "image_without_mask",
    "mask_without_image",
    "size_mismatch",
    "unreadable",
    "empty_text",
    "duplicate_keys",
    "unknown_text",
    "image_without_site",
    "site_without_image",
)

_KIND_HELP = {
    "text_without_image": "text rows whose image file is absent",
    "image_without_text": "images without a text row (left out)",
    "image_without_mask": "images without a mask (left out)",
    "mask_without_image": "masks without an image",
    "size_mismatch": "image and mask sizes differ (left out)",
    "unreadable": "files PIL cannot open (left out)",
    "empty_text": "empty descriptions (image left out)",
    "duplicate_keys": "names that match more than one file or row",
    "unknown_text": "descriptions that read 'unknown' (kept)",
    "image_without_site": "images missing from the site/class table (kept without site)",
    "site_without_image": "site/class table rows whose image is absent",
}


@dataclass(frozen=True)
class DataProblem:
    """
    One problem of one datalist entry, found by :func:`common.data.check_datalist_split` (structure, missing files)
    or :func:`common.data.preflight.check_datalist` (file contents).

    Args:
        split: the datalist split, e.g. ``"training"``.
        index: the entry's index in the split; ``None`` for a problem of the split itself.
        key: the entry key involved (``"image"``, ``"label"``, ``"text"``, ...); ``None`` when not one key.
        what: what is wrong; it names the file when one is involved.
        file: a file to name before ``what`` (e.g. the image of an entry whose text is empty); default ``None``.
        missing_file: the problem is a listed file that does not exist; default ``False``.
    """

    split: str
    index: int | None
    key: str | None
    what: str
    file: str | None = None
    missing_file: bool = False

    def line(self, where: str | None = None, with_key: bool = False) -> str:
        """
        The problem as one line: ``<where> entry <index>[ key '<key>'] (<file>): <what>``.

        Args:
            where: what to start with; default ``None``: ``split '<split>'``.
            with_key: name the key after the entry index; default ``False`` (``what`` names it).
        """
        where = f"split {self.split!r}" if where is None else where
        entry = f" entry {self.index}" if self.index is not None else ""
        key = f" key {self.key!r}" if with_key and self.key is not None else ""
        file = f" ({self.file})" if self.file else ""
        return f"{where}{entry}{key}{file}: {self.what}"


def report_path_for(datalist_path: str | os.PathLike) -> str:
    """
    The report file that goes with a datalist: ``<folder>/<datalist stem>_report.json``, i.e.
    ``datalist_report.json`` next to the default ``datalist.json``.

    Args:
        datalist_path: the datalist JSON path.
    """
    folder, name = os.path.split(os.fspath(datalist_path))
    stem = os.path.splitext(name)[0]
    return os.path.join(folder, f"{stem}_report.json")


@dataclass
class ReaderReport:
    """
    What a reader found while turning a dataset layout into a datalist.

    Every problem is one string that starts with the file name (a path relative to the dataset root, or
    ``<table> row <n>: <name>`` for table rows, ``n`` being the spreadsheet row number with the header as
    row 1). Items with a missing or broken piece are left out of the datalist but always listed here.

    Args:
        layout: the reader's layout name (``"lvit"``, ``"madapter"``, ``"folders"``).
        root: the dataset root, absolute.
        counts: number of datalist entries per split, filled by the reader.
        text_without_image, ...: one list per kind in :data:`PROBLEM_KINDS`.
        ignored_files: files in image/mask folders that are not images (not a problem, but listed).
        notes: other facts worth knowing (text table used per split, blank table rows skipped, how the
            validation split was drawn).
    """

    layout: str
    root: str
    counts: dict[str, int] = field(default_factory=dict)
    text_without_image: list[str] = field(default_factory=list)
    image_without_text: list[str] = field(default_factory=list)
    image_without_mask: list[str] = field(default_factory=list)
    mask_without_image: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    empty_text: list[str] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)
    unknown_text: list[str] = field(default_factory=list)
    image_without_site: list[str] = field(default_factory=list)
    site_without_image: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, name: str) -> None:
        """
        Record one problem.

        Args:
            kind: one of :data:`PROBLEM_KINDS`.
            name: the file name (with detail) to list.

        Raises:
            ValueError: when ``kind`` is not a problem kind.
        """
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; valid kinds: {', '.join(PROBLEM_KINDS)}.")
        getattr(self, kind).append(name)

    def problems(self) -> dict[str, list[str]]:
        """The non-empty problem lists, keyed by kind, in :data:`PROBLEM_KINDS` order."""
        return {k: list(getattr(self, k)) for k in PROBLEM_KINDS if getattr(self, k)}

    @property
    def num_problems(self) -> int:
        """Total number of problems listed."""
        return sum(len(v) for v in self.problems().values())

    def format_problems(self, max_items: int = 20) -> str:
        """
        The problems as text, one block per kind, each showing at most ``max_items`` names followed by
        ``... and <n> more``.

        Args:
            max_items: names shown per kind, default 20.
        """
        lines = []
        for kind, names in self.problems().items():
            lines.append(f"  {kind} ({len(names)}: {_KIND_HELP[kind]}):")
            lines.extend(f"    {n}" for n in names[:max_items])
            if len(names) > max_items:
                lines.append(f"    ... and {len(names) - max_items} more")
        return "\n".join(lines)

    def summary(self, max_items: int = 20) -> str:
        """
        A human-readable summary: entries per split, notes, ignored files and problems.

        Args:
            max_items: names shown per problem kind, default 20.
        """
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts.items()) or "none"
        lines = [f"{self.layout} dataset at {self.root}", f"entries per split: {counts}"]
        lines.extend(f"note: {n}" for n in self.notes)
        if self.ignored_files:
            shown = ", ".join(self.ignored_files[:max_items])
            more = f" ... and {len(self.ignored_files) - max_items} more" if len(self.ignored_files) > max_items else ""
            lines.append(f"ignored non-image files ({len(self.ignored_files)}): {shown}{more}")
        if self.num_problems:
            lines.append(f"{self.num_problems} problem(s):")
            lines.append(self.format_problems(max_items))
        else:
            lines.append("no problems found")
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        """
        Raises:
            ValueError: when any problem is listed; the message lists them all (20 names per kind shown).
        """
        if self.num_problems:
            raise ValueError(
                f"{self.num_problems} problem(s) reading the {self.layout} dataset at {self.root} "
                f"(strict mode):\n{self.format_problems()}"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict: ``layout``, ``root``, ``counts``, ``num_problems``, ``problems``, ..."""
        out: dict = {"layout": self.layout, "root": self.root, "counts": dict(self.counts)}
        out["num_problems"] = self.num_problems
        out["problems"] = {k: list(getattr(self, k)) for k in PROBLEM_KINDS}
        out["ignored_files"] = list(self.ignored_files)
        out["notes"] = list(self.notes)
        return out

    def save(self, path: str | os.PathLike) -> str:
        """
        Write :meth:`to_dict` as JSON (atomically).

        Args:
            path: the JSON file, usually :func:`report_path_for` of the datalist.

        Returns:
            ``str(path)``.
        """
        return atomic_write_json(path, self.to_dict())
