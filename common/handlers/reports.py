# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""One per-case table from the per-metric files that ``monai.handlers.MetricsSaver`` writes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

__all__ = ["CASE_FIELDS", "write_per_case_table"]

#: Datalist entry keys copied into ``per_case.csv`` when present.
CASE_FIELDS: tuple[str, ...] = ("site", "class")


def write_per_case_table(
    eval_dir: str,
    metrics: Sequence[str],
    filename: str = "per_case.csv",
    datalist_file: str | None = None,
    split: str | None = None,
    fields: Sequence[str] = CASE_FIELDS,
) -> str:
    """
    Joins ``<eval_dir>/<metric>_raw.csv`` (one row per image, written by ``MetricsSaver(metric_details=...)``)
    into ``<eval_dir>/per_case.csv`` with columns ``filename, <field>..., <metric>...``: one row per case, one
    column per metric, in the order of ``metrics``. Single-channel metrics use the value of their only class column.

    With ``datalist_file`` and ``split``, the case's datalist entry (matched by its absolute ``image`` path, or by
    the file's base name when that is unique in the split) adds one column per entry key of ``fields`` that some
    entry of the split has (default ``site`` and ``class``, for the leave-one-site-out and per-lesion-type tables of
    ``tools/leave_one_site_out.py``); a case without that key gets an empty cell.

    Args:
        eval_dir: the MetricsSaver ``save_dir``.
        metrics: metric names, e.g. ``["Dice", "IoU", "HD95", "ASSD"]``.
        filename: name of the table written in ``eval_dir``.
        datalist_file: the datalist the evaluation read; ``None`` (default): no entry columns.
        split: the split evaluated (e.g. ``"test"``); needed with ``datalist_file``.
        fields: entry keys to copy, default :data:`CASE_FIELDS`.

    Returns:
        the path of the table.

    Raises:
        FileNotFoundError: when a ``<metric>_raw.csv`` is missing (naming it).
        ValueError: when the per-metric files list different cases, or ``datalist_file`` is given without ``split``.
    """
    if datalist_file is not None and not split:
        raise ValueError("write_per_case_table: datalist_file needs the split evaluated (e.g. 'test').")
    columns: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for name in metrics:
        path = os.path.join(eval_dir, f"{name}_raw.csv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: was `{name}` evaluated with save_details=True?")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        values = {row[0]: row[1] for row in rows[1:] if row}
        if not order:
            order = [row[0] for row in rows[1:] if row]
        elif set(values) != set(order):
            raise ValueError(f"{path} lists different cases from {metrics[0]}_raw.csv.")
        columns[name] = values
    extra: list[str] = []
    entry_of: dict[str, dict] = {}
    if datalist_file is not None:
        from common.data.datalist import load_datalist  # here: importing common.handlers stays light

        entries = load_datalist(datalist_file, split, check_files=False)
        extra = [k for k in fields if any(k in e for e in entries)]
        by_path = {os.path.normpath(os.path.abspath(e["image"])): e for e in entries}
        names: dict[str, list[dict]] = {}
        for e in entries:
            names.setdefault(os.path.basename(e["image"]), []).append(e)
        for case in order:
            e = by_path.get(os.path.normpath(os.path.abspath(case)))
            if e is None and len(names.get(os.path.basename(case), [])) == 1:
                e = names[os.path.basename(case)][0]
            entry_of[case] = e or {}
    out = os.path.join(eval_dir, filename)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", *extra, *metrics])
        for case in order:
            info = [entry_of.get(case, {}).get(k, "") for k in extra]
            writer.writerow([case, *info, *(columns[m][case] for m in metrics)])
    return out
