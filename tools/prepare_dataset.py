# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Turn a public dataset layout into the project datalist (``datalist.json``) and its problem report
(``datalist_report.json``), printing a summary.

Usage (from the repository root, nothing to install)::

    python tools/prepare_dataset.py lvit --root data/QaTa-COV19 --out data/QaTa-COV19/datalist.json --name qata
    python tools/prepare_dataset.py lvit --root data/MoNuSeg --text_file Test=Test_Folder/Test_text.xlsx
    python tools/prepare_dataset.py madapter --root data/Kvasir-SEG --train_csv Kvasir_train.csv \\
        --test_csv Kvasir_test.csv
    python tools/prepare_dataset.py folders --root data/multisite --text_table text.csv --site_table sites.csv

Exit status: 0 when the datalist is written (problems, if any, are printed and saved in the report);
1 on an error, when ``--strict`` and problems were found, or when no complete item was found. The report is
written in every case where the layout could be read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from common.data.datalist import DATALIST_FILE_NAME, write_datalist  # noqa: E402
from common.data.readers import read_folders, read_lvit_layout, read_madapter  # noqa: E402
from common.data.report import report_path_for  # noqa: E402

__all__ = ["build_parser", "main"]


def _table_arg(value: str | None, root: str) -> str | None:
    """A table path from the command line: taken from the current folder when it exists there, else from root."""
    if value is None:
        return None
    if os.path.isabs(value) or os.path.exists(value):
        return os.path.abspath(value)
    return os.path.join(root, value)


def _text_files_arg(values: list[str] | None, root: str) -> str | dict[str, str] | None:
    """``--text_file [SPLIT=]PATH`` values -> one path for all splits, or a per-split mapping."""
    if not values:
        return None
    per_split: dict[str, str] = {}
    shared = None
    for v in values:
        split, sep, path = v.partition("=")
        if sep and split.lower() in ("train", "val", "test", "training", "validation"):
            per_split[split] = _table_arg(path, root)
        else:
            shared = _table_arg(v, root)
    if shared is not None and per_split:
        raise ValueError("--text_file: give either one PATH for all splits or SPLIT=PATH values, not both.")
    return shared if shared is not None else per_split


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands ``lvit``, ``madapter``, ``folders``)."""
    parser = argparse.ArgumentParser(
        prog="prepare_dataset.py",
        description="Write the project datalist (and datalist_report.json) for a public dataset layout.",
    )
    sub = parser.add_subparsers(dest="layout", required=True, metavar="{lvit,madapter,folders}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, help="dataset folder")
    common.add_argument("--out", default=None, help=f"datalist to write (default <root>/{DATALIST_FILE_NAME})")
    common.add_argument("--site_table", default=None, help="CSV/xlsx with Image and site and/or class columns")
    common.add_argument("--val_fraction", type=float, default=0.2, help="validation share drawn from training")
    common.add_argument("--seed", type=int, default=0, help="seed of the drawn splits (default 0)")
    common.add_argument("--strict", action="store_true", help="fail (exit 1, no datalist) on any problem")
    common.add_argument("--name", default=None, help="datalist name (default: root folder name)")
    common.add_argument("--max_listed", type=int, default=20, help="names printed per problem kind (default 20)")

    p = sub.add_parser("lvit", parents=[common], help="LViT layout: {Train,Val,Test}_Folder/{img,labelcol}")
    p.add_argument(
        "--text_file",
        action="append",
        default=None,
        metavar="[SPLIT=]PATH",
        help="text table for all splits (PATH) or one split (Train=PATH, Val=..., Test=...); repeatable",
    )
    p = sub.add_parser("madapter", parents=[common], help="images/ + masks/ + MAdapter CSVs")
    p.add_argument("--train_csv", default=None, help="training text CSV (e.g. Kvasir_train.csv)")
    p.add_argument("--test_csv", default=None, help="test text CSV (e.g. Kvasir_test.csv)")
    p.add_argument("--image_dir", default="images", help="image folder under root (default images)")
    p.add_argument("--mask_dir", default="masks", help="mask folder under root (default masks)")
    p.add_argument("--test_image_dir", default=None, help="test image folder when different")
    p.add_argument("--test_mask_dir", default=None, help="test mask folder when different")
    p = sub.add_parser("folders", parents=[common], help="plain images/ + masks/ (+ optional tables)")
    p.add_argument("--text_table", default=None, help="CSV/xlsx with Image and Description columns")
    p.add_argument("--default_text", default=None, help="description for every image when no text table")
    p.add_argument("--test_fraction", type=float, default=0.2, help="test share drawn from all items")
    p.add_argument("--image_dir", default="images", help="image folder under root (default images)")
    p.add_argument("--mask_dir", default="masks", help="mask folder under root (default masks)")
    return parser


def _read(args: argparse.Namespace, root: str, out: str):
    shared = dict(
        out_dir=os.path.dirname(out),
        site_table=_table_arg(args.site_table, root),
        val_fraction=args.val_fraction,
        seed=args.seed,
        strict=False,  # strictness is applied here, after the report is saved
        name=args.name,
    )
    if args.layout == "lvit":
        return read_lvit_layout(root, text_files=_text_files_arg(args.text_file, root), **shared)
    if args.layout == "madapter":
        return read_madapter(
            root,
            _table_arg(args.train_csv, root),
            _table_arg(args.test_csv, root),
            image_dir=args.image_dir,
            mask_dir=args.mask_dir,
            test_image_dir=args.test_image_dir,
            test_mask_dir=args.test_mask_dir,
            **shared,
        )
    return read_folders(
        root,
        _table_arg(args.text_table, root),
        default_text=args.default_text,
        image_dir=args.image_dir,
        mask_dir=args.mask_dir,
        test_fraction=args.test_fraction,
        **shared,
    )


def main(argv: list[str] | None = None) -> int:
    """
    Run the command line.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        the exit status (0 success, 1 error).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the summary below replaces the readers' warning line
    root = os.path.abspath(args.root)
    out = os.path.abspath(args.out or os.path.join(root, DATALIST_FILE_NAME))
    prog = "prepare_dataset.py"
    try:
        datalist, report = _read(args, root, out)
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(report.summary(max_items=args.max_listed))
    report_file = report.save(report_path_for(out))
    print(f"report: {report_file}")
    if args.strict and report.num_problems:
        print(
            f"{prog}: error: {report.num_problems} problem(s) found with --strict; no datalist written "
            f"(see {report_file}).",
            file=sys.stderr,
        )
        return 1
    if not any(datalist[s] for s in ("training", "validation", "test")):
        print(
            f"{prog}: error: no complete image/mask/text item found under {root}; no datalist written "
            f"(see {report_file}).",
            file=sys.stderr,
        )
        return 1
    write_datalist(datalist, out)
    print(f"datalist: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
