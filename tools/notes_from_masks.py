# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Write QaTa-style notes from masks, or check a datalist's notes against its masks.

A data set with masks but no notes can still train the text-guided bundles: this tool measures every mask
(:func:`common.metrics.text_consistency.mask_attributes`: connected components, lung side and zones) and writes the
QaTa-COV19 sentence of what it shows (:func:`common.data.synthetic_text.describe_lung_lesions`), e.g.
"Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.". What such notes can
and cannot teach is discussed in ``tools/protocols.md`` ("Text-mask consistency").

Run from the repository root::

    # a folder of masks -> a text table in the LViT layout (columns Image, Description)
    python tools/notes_from_masks.py --masks /data/xray/masks --out /data/xray/notes.csv [--lungs /data/xray/lungs]
    # a datalist -> a copy whose entries get the machine-written note as `text` (absolute paths)
    python tools/notes_from_masks.py --datalist /data/xray/datalist.json --out /data/xray/datalist_notes.json
    # score a datalist's own notes against its ground-truth masks (per-split means and the disagreeing cases)
    python tools/notes_from_masks.py --datalist DATALIST --check --splits test [--size 224] [--lung_fields none]

Sides and zones come from each entry's ``lungs`` file (or ``--lungs FOLDER``, same file names as the masks) and
otherwise from the geometric rule (image halves, thirds of ``--zone_band``). A mask without a lesion, or with more
than ten, has no QaTa sentence: it is listed by name and left out (``--strict``: exit status 1 instead). Bad input
(a missing folder or datalist, an unreadable mask) is an error naming the file, exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.data.datalist import load_datalist, read_datalist_json  # noqa: E402
from common.data.synthetic_text import COUNT_WORDS, describe_lung_lesions  # noqa: E402
from common.metrics.text_consistency import (  # noqa: E402
    DEFAULT_MIN_AREA_FRACTION,
    DEFAULT_MIN_ZONE_FRACTION,
    DEFAULT_ZONE_BAND,
    SCORE_NAMES,
    LungFields,
    load_lung_fields,
    mask_attributes,
    score_consistency,
    try_parse_note,
)

__all__ = ["load_mask", "note_for_mask", "check_datalist", "main"]

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def load_mask(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """A mask file as a boolean (H, W) array (pixels above 127, as JPEG masks need), optionally resized.

    Args:
        path: the mask image.
        size: resize to ``size x size`` with nearest-neighbour first (the bundles' evaluation size); None: as is.

    Raises:
        ValueError: when the file cannot be read as an image (naming it).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L")
            if size is not None:
                img = img.resize((int(size), int(size)), Image.NEAREST)
            return np.asarray(img) > 127
    except OSError as e:
        raise ValueError(f"mask {os.fspath(path)!r} cannot be read as an image: {e}") from e


def note_for_mask(
    mask: np.ndarray,
    lung_fields: LungFields | None = None,
    min_area_fraction: float = DEFAULT_MIN_AREA_FRACTION,
    min_zone_fraction: float = DEFAULT_MIN_ZONE_FRACTION,
) -> str | None:
    """The QaTa-style note of a mask, or None when it has no lesion or more than ten.

    Args:
        mask: (H, W) mask.
        lung_fields: where the lungs and zones are; None: the geometric rule on the whole height.
        min_area_fraction: components below this share of the image are ignored.
        min_zone_fraction: share of a component's pixels a zone needs to be named.
    """
    lesions = mask_attributes(mask, lung_fields, min_area_fraction, min_zone_fraction).lung_lesions()
    if not 1 <= len(lesions) <= len(COUNT_WORDS):
        return None
    return describe_lung_lesions(lesions)


def _fields(lungs: str | None, geometric: LungFields, use_lungs: bool) -> LungFields:
    return load_lung_fields(lungs) if use_lungs and lungs else geometric


def _raw_entries(datalist_file: str, data: dict, split: str) -> list[dict]:
    """The entries of a split with absolute paths, notes NOT required (a data set without text)."""
    base = os.path.dirname(os.path.abspath(datalist_file))
    entries = data[split]
    if not isinstance(entries, list):
        raise ValueError(f"datalist {datalist_file!r} split {split!r} must be a list.")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ValueError(f"datalist {datalist_file!r} split {split!r} entry {i}: needs a 'label' mask path.")
        entry = dict(entry)
        for key in ("image", "label", "lungs"):
            if isinstance(entry.get(key), str):
                entry[key] = os.path.normpath(os.path.join(base, entry[key]))
        if not os.path.isfile(entry["label"]):
            raise FileNotFoundError(
                f"datalist {datalist_file!r} split {split!r} entry {i}: {entry['label']!r} missing."
            )
        out.append(entry)
    return out


def check_datalist(
    datalist_file: str,
    splits: list[str],
    size: int | None,
    use_lungs: bool,
    geometric: LungFields,
    min_area_fraction: float,
    min_zone_fraction: float,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Score each entry's ground-truth mask against its own note.

    Returns:
        ``({split: {score: mean (NaN skipped), "images": n, "unparsed": n}}, [disagreeing or unparsed cases])``.
    """
    table: dict[str, dict[str, float]] = {}
    cases: list[str] = []
    for split in splits:
        values: dict[str, list[float]] = {name: [] for name in SCORE_NAMES}
        entries = load_datalist(datalist_file, split)
        unparsed = 0
        for entry in entries:
            note = try_parse_note(entry["text"])
            fields = _fields(entry.get("lungs"), geometric, use_lungs)
            attrs = mask_attributes(load_mask(entry["label"], size), fields, min_area_fraction, min_zone_fraction)
            scores = score_consistency(note, attrs).as_dict()
            for name, value in scores.items():
                values[name].append(value)
            if not hasattr(note, "kind"):
                unparsed += 1
                cases.append(f"{split}\t{entry['image']}\tunparsed: {note.reason}")
            elif scores["consistency"] != 1.0:
                shown = [(c.lung, c.zones) for c in attrs.components]
                cases.append(f"{split}\t{entry['image']}\tnote: {entry['text']}\tmask: {shown}")
        row = {
            name: float(np.nanmean(v)) if any(not math.isnan(x) for x in v) else float("nan")
            for name, v in values.items()
        }
        row.update(images=len(entries), unparsed=unparsed)
        table[split] = row
    return table, cases


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Write QaTa-style notes from masks, or check notes against masks.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--masks", help="folder of mask images (non-zero above 127 = lesion)")
    src.add_argument("--datalist", help="a datalist JSON (entries' `label` masks, `lungs` files where present)")
    ap.add_argument("--out", help="output: a CSV (with --masks) or a datalist JSON (with --datalist)")
    ap.add_argument("--lungs", help="with --masks: folder of lung field files named as the masks (zone map or mask)")
    ap.add_argument("--splits", nargs="+", default=["training", "validation", "test"], help="datalist splits")
    ap.add_argument("--check", action="store_true", help="score the datalist's own notes against its masks")
    ap.add_argument("--size", type=int, default=None, help="resize masks to SIZE x SIZE (nearest) first")
    ap.add_argument("--lung_fields", choices=("auto", "none"), default="auto", help="none: geometric rule only")
    ap.add_argument("--zone_band", type=float, nargs=2, default=list(DEFAULT_ZONE_BAND), metavar=("TOP", "BOTTOM"))
    ap.add_argument("--min_area_fraction", type=float, default=DEFAULT_MIN_AREA_FRACTION)
    ap.add_argument("--min_zone_fraction", type=float, default=DEFAULT_MIN_ZONE_FRACTION)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a mask gets no note")
    return ap


def _fmt(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        geometric = LungFields.geometric(args.zone_band)
        use_lungs = args.lung_fields == "auto"
        knobs = (args.min_area_fraction, args.min_zone_fraction)
        if args.check:
            if not args.datalist:
                raise ValueError("--check needs --datalist.")
            table, cases = check_datalist(args.datalist, args.splits, args.size, use_lungs, geometric, *knobs)
            print("| split | images | unparsed | " + " | ".join(SCORE_NAMES) + " |")
            print("|---|---|---|" + "---|" * len(SCORE_NAMES))
            for split, row in table.items():
                cells = " | ".join(_fmt(row[name]) for name in SCORE_NAMES)
                print(f"| {split} | {row['images']} | {row['unparsed']} | {cells} |")
            for line in cases:
                print(line, file=sys.stderr)
            return 0
        if not args.out:
            raise ValueError("--out is required to write notes.")
        skipped: list[str] = []
        if args.masks:
            folder = Path(args.masks)
            if not folder.is_dir():
                raise FileNotFoundError(f"--masks {str(folder)!r} is not a folder.")
            lungs_dir = Path(args.lungs) if args.lungs else None
            if lungs_dir is not None and not lungs_dir.is_dir():
                raise FileNotFoundError(f"--lungs {str(lungs_dir)!r} is not a folder.")
            rows = []
            for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES):
                lungs = lungs_dir / path.name if lungs_dir is not None else None
                lungs_file = str(lungs) if lungs is not None and lungs.is_file() else None
                note = note_for_mask(load_mask(path, args.size), _fields(lungs_file, geometric, use_lungs), *knobs)
                if note is None:
                    skipped.append(str(path))
                else:
                    rows.append((path.name, note))
            with open(args.out, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["Image", "Description"])
                writer.writerows(rows)
            written = len(rows)
        else:
            data = read_datalist_json(args.datalist)
            out: dict = {k: v for k, v in data.items() if k not in args.splits}
            written = 0
            for split in args.splits:
                if split not in data:
                    continue
                entries = []
                for entry in _raw_entries(args.datalist, data, split):
                    fields = _fields(entry.get("lungs"), geometric, use_lungs)
                    note = note_for_mask(load_mask(entry["label"], args.size), fields, *knobs)
                    if note is None:
                        skipped.append(f"{split}: {entry['label']}")
                        continue
                    entries.append({**entry, "text": note})
                out[split] = entries
                written += len(entries)
            out["notes_from_masks"] = {"source": os.path.abspath(args.datalist), "splits": args.splits}
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"[notes_from_masks] {written} note(s) written to {args.out}; {len(skipped)} mask(s) without a note")
        for name in skipped:
            print(f"  no note (no lesion, or more than {len(COUNT_WORDS)}): {name}", file=sys.stderr)
        return 1 if skipped and args.strict else 0
    except (OSError, ValueError, KeyError) as e:
        print(f"[notes_from_masks] error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
