# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
The PNG figures of ``tools/report.py``, drawn with matplotlib's object API on the Agg canvas (no display, no
``pyplot`` state), each from plain Python data so that it can be made from any result folder.

Every function saves one PNG and returns the :class:`matplotlib.figure.Figure`, so that callers and tests can
read its axes, titles and lines. A value is ``(mean, std)`` over seeds; ``std`` is ``None`` for a single seed (no
error bar is drawn).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "Value",
    "plot_dice_per_bundle",
    "plot_dice_vs_corruption",
    "plot_dice_vs_fraction",
    "plot_per_site",
    "plot_overlays",
]

Value = tuple  # (mean, std or None)

_DPI = 110


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _err(v: Value | None) -> float:
    if v is None or v[1] is None or not math.isfinite(v[1]):
        return 0.0
    return float(v[1])


def _mean(v: Value | None) -> float:
    return float("nan") if v is None or v[0] is None else float(v[0])


def _save(fig: Figure, path: str | Path) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return fig


def plot_dice_per_bundle(values: Mapping[str, Mapping[str, Value]], path: str | Path, metric: str = "Dice") -> Figure:
    """
    Grouped bars: one group per bundle, one bar per condition (e.g. ``"clean"``, ``"text_swap"``), the error bar
    the std over seeds.

    Args:
        values: ``{bundle: {condition: (mean, std)}}``; a missing condition leaves a gap.
        path: the PNG file.
        metric: y-axis label and title, default ``"Dice"``.

    Returns:
        the figure: one axes titled ``"<metric> per bundle (test split)"``, one bar container per condition.
    """
    bundles = list(values)
    conditions = list(dict.fromkeys(c for v in values.values() for c in v))
    fig = _figure(max(4.0, 1.2 * len(bundles) + 1.5), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(conditions))
    x = np.arange(len(bundles))
    for i, c in enumerate(conditions):
        means = [_mean(values[b].get(c)) for b in bundles]
        errs = [_err(values[b].get(c)) for b in bundles]
        ax.bar(
            x + (i - (len(conditions) - 1) / 2) * width,
            means,
            width,
            yerr=errs if any(errs) else None,
            capsize=3,
            label=c,
        )
    ax.set_xticks(x)
    ax.set_xticklabels(bundles, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(f"{metric} per bundle (test split)")
    if conditions:
        ax.legend(fontsize=8)
    return _save(fig, path)


def _family(name: str) -> tuple[str, float]:
    """``"dose_140"`` -> ("dose", 140.0); ``"blur_k5"`` -> ("blur", 5.0)."""
    kind, _, level = name.partition("_")
    return kind, float(level.lstrip("k"))


def plot_dice_vs_corruption(
    values: Mapping[str, Mapping[str, Value]], path: str | Path, metric: str = "Dice"
) -> Figure:
    """
    One axes per corruption family (low-dose noise, motion blur): the metric against the corruption level, one line
    per bundle, the clean value (``"none"``) as the first point of every family.

    Low-dose levels are drawn from the highest dose (mildest noise) to the lowest, so that in every panel the
    corruption gets stronger to the right.

    Args:
        values: ``{bundle: {corruption name: (mean, std)}}`` with names as in ``common.transforms.corruption``
            (``"none"``, ``"dose_140"``, ``"blur_k3"``, ...).
        path: the PNG file.
        metric: y-axis label, default ``"Dice"``.

    Returns:
        the figure: one axes per family present, titled ``"Low-dose noise"`` / ``"Motion blur"``, one line per bundle.
    """
    titles = {"dose": "Low-dose noise", "blur": "Motion blur"}
    families: dict[str, list[str]] = {}
    for v in values.values():
        for name in v:
            if name != "none":
                families.setdefault(_family(name)[0], [])
                if name not in families[_family(name)[0]]:
                    families[_family(name)[0]].append(name)
    fig = _figure(4.2 * max(1, len(families)), 3.6)
    for i, (kind, names) in enumerate(families.items()):
        names = sorted(names, key=lambda n: -_family(n)[1] if kind == "dose" else _family(n)[1])
        ax = fig.add_subplot(1, len(families), i + 1)
        labels = ["clean", *(n.partition("_")[2] for n in names)]
        for b, v in values.items():
            pts = [v.get("none"), *(v.get(n) for n in names)]
            ax.errorbar(range(len(pts)), [_mean(p) for p in pts], yerr=[_err(p) for p in pts], marker="o", capsize=3)
            ax.lines[-1].set_label(b)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
        ax.set_xlabel("dose" if kind == "dose" else "kernel size")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.set_title(titles.get(kind, kind))
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_dice_vs_fraction(
    values: Mapping[str, Mapping[float, Value]], path: str | Path, metric: str = "Dice"
) -> Figure:
    """
    The metric against the share of labelled training images kept (``train_fraction``, log scale), one line per
    bundle.

    Args:
        values: ``{bundle: {fraction: (mean, std)}}``, fraction in (0, 1].
        path: the PNG file.
        metric: y-axis label, default ``"Dice"``.

    Returns:
        the figure: one axes titled ``"<metric> against label fraction"``, one line per bundle.
    """
    fig = _figure(5.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for b, v in values.items():
        fr = sorted(v)
        ax.errorbar(fr, [_mean(v[f]) for f in fr], yerr=[_err(v[f]) for f in fr], marker="o", capsize=3)
        ax.lines[-1].set_label(b)
    ax.set_xscale("log")
    ax.set_xlabel("train_fraction (share of training images)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.set_title(f"{metric} against label fraction")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_per_site(
    groups: Mapping[str, Mapping[str, Mapping[str, Value]]], path: str | Path, metric: str = "Dice"
) -> Figure:
    """
    One axes per group (e.g. ``"test split, per site"`` and ``"leave-one-site-out, held-out site"``): grouped bars,
    one group per site, one bar per bundle.

    Args:
        groups: ``{panel title: {bundle: {site: (mean, std)}}}``.
        path: the PNG file.
        metric: y-axis label, default ``"Dice"``.

    Returns:
        the figure: one axes per group, titled with the group's key.
    """
    fig = _figure(5.0 * max(1, len(groups)), 3.6)
    for i, (title, values) in enumerate(groups.items()):
        ax = fig.add_subplot(1, len(groups), i + 1)
        bundles = list(values)
        sites = sorted({s for v in values.values() for s in v})
        width = 0.8 / max(1, len(bundles))
        x = np.arange(len(sites))
        for j, b in enumerate(bundles):
            means = [_mean(values[b].get(s)) for s in sites]
            errs = [_err(values[b].get(s)) for s in sites]
            ax.bar(
                x + (j - (len(bundles) - 1) / 2) * width,
                means,
                width,
                yerr=errs if any(errs) else None,
                capsize=2,
                label=b,
            )
        ax.set_xticks(x)
        ax.set_xticklabels(sites, rotation=20, ha="right")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _load_gray(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _load_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if shape is not None and im.size != (shape[1], shape[0]):
            im = im.resize((shape[1], shape[0]), Image.NEAREST)
        return np.asarray(im) > 0


def plot_overlays(
    cases: Sequence[Mapping[str, str]],
    predictions: Mapping[str, Mapping[str, str | Path | None]],
    path: str | Path,
    scores: Mapping[str, Mapping[str, float]] | None = None,
    wrap: int = 34,
) -> Figure:
    """
    A grid of overlays: one row per bundle, one column per case; each panel shows the image, the ground-truth
    outline (green) and the predicted outline (red); the case's note is the caption under its column.

    A prediction is resized to the image's size (nearest neighbour) before its outline is drawn (predictions are
    saved at the network's input size by ``common.handlers.SavePredictionsHandler``).

    Args:
        cases: per column ``{"name", "image", "label", "text"}`` (``name``: the image base name; ``text`` may be
            empty for a dataset without notes).
        predictions: ``{bundle: {case name: prediction PNG or None}}``; a missing file is drawn without its outline
            and titled ``"(no prediction)"``.
        path: the PNG file.
        scores: optional ``{bundle: {case name: Dice}}``, shown in each panel's title.
        wrap: characters per caption line, default 34.

    Returns:
        the figure: ``len(predictions) * len(cases)`` axes; each title starts with the bundle name, and the bottom
        row's x-labels are the notes.
    """
    bundles = list(predictions)
    ncols, nrows = max(1, len(cases)), max(1, len(bundles))
    fig = _figure(2.6 * ncols, 2.6 * nrows + 0.6)
    images = [_load_gray(c["image"]) for c in cases]
    labels = [_load_mask(c["label"], im.shape) for c, im in zip(cases, images)]
    for r, b in enumerate(bundles):
        for k, case in enumerate(cases):
            ax = fig.add_subplot(nrows, ncols, r * ncols + k + 1)
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
            if labels[k].any():
                ax.contour(labels[k].astype(float), levels=[0.5], colors=["lime"], linewidths=1.0)
            pred_file = predictions[b].get(case["name"])
            title = b
            if pred_file is not None and Path(pred_file).is_file():
                pred = _load_mask(pred_file, images[k].shape)
                if pred.any():
                    ax.contour(pred.astype(float), levels=[0.5], colors=["red"], linewidths=1.0)
                score = (scores or {}).get(b, {}).get(case["name"])
                if score is not None and math.isfinite(score):
                    title += f" (Dice {score:.2f})"
            else:
                title += " (no prediction)"
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == nrows - 1:
                caption = case.get("text") or case["name"]
                ax.set_xlabel("\n".join(textwrap.wrap(caption, wrap)), fontsize=7)
    fig.suptitle("green: ground truth, red: prediction", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return _save(fig, path)
