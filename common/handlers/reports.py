# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""One per-case table from the per-metric files that ``monai.handlers.MetricsSaver`` writes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

__all__ = ["write_per_case_table"]


def write_per_case_table(eval_dir: str, metrics: Sequence[str], filename: str = "per_case.csv") -> str:
    """
    Joins ``<eval_dir>/<metric>_raw.csv`` (one row per image, written by ``MetricsSaver(metric_details=...)``)
    into ``<eval_dir>/per_case.csv`` with columns ``filename, <metric>...``: one row per case, one column per
    metric, in the order of ``metrics``. Single-channel metrics use the value of their only class column.

    Args:
        eval_dir: the MetricsSaver ``save_dir``.
        metrics: metric names, e.g. ``["Dice", "IoU", "HD95", "ASSD"]``.
        filename: name of the table written in ``eval_dir``.

    Returns:
        the path of the table.

    Raises:
        FileNotFoundError: when a ``<metric>_raw.csv`` is missing (naming it).
        ValueError: when the per-metric files list different cases.
    """
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
    out = os.path.join(eval_dir, filename)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", *metrics])
        for case in order:
            writer.writerow([case, *(columns[m][case] for m in metrics)])
    return out
