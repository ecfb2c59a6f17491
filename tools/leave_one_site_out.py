# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Leave-one-site-out protocol (MCDRL, section 5.1, Tables 1 and 2) for any list of bundles.

For every site ``s`` in turn, each bundle trains on all the other sites and is evaluated on ``s``; one table gives
Dice, IoU and pixel accuracy per held-out site and their average (MCDRL Table 1) and one the Dice per lesion type
(Table 2, from each entry's ``class``). Run from the repository root::

    # synthetic five-site endoscopy data, generated on first use (common.data.ensure_datalist(..., "endoscopy"))
    python tools/leave_one_site_out.py --bundles bundles/unet_baseline bundles/mcdrl \\
        --dataset_dir data/synthetic_endoscopy --synthetic endoscopy --max_epochs 20 --out out/loso

    # real sites: one datalist per site (e.g. from tools/prepare_dataset.py), each entry's site set to its name
    python tools/leave_one_site_out.py --bundles bundles/unet_baseline \\
        --site_datalists cvc=data/CVC-ClinicDB/datalist.json kvasir=data/Kvasir-SEG/datalist.json \\
        --dataset_dir data --max_epochs 50 --out out/loso_real

Folds. The datalist's entries must all carry ``site`` (``--site_datalists`` sets it). Fold ``s`` is written to
``OUT/folds/<s>/datalist.json`` with absolute paths: ``training`` and ``validation`` = the entries of those splits
from the other sites; ``test`` = every entry of site ``s`` from all splits (``--heldout_from all``, default: the
held-out domain is never seen, so all of it is test data, as in MCDRL where a site's whole data set is the target)
or only its ``test`` entries (``--heldout_from test``). ``--sites`` restricts the held-out sites (default: every
site, in sorted order).

Runs. For each bundle ``B`` and site ``s`` the two contract commands of ``tools/compare.py`` run with
``--datalist_file OUT/folds/<s>/datalist.json --output_dir OUT/<B>/<s>`` (train, then evaluate the ``test`` split).
Each finished step leaves a marker (``tools/protocol_steps.py``): rerunning the same command skips it, so an
interrupted protocol resumes where it stopped; logs are in ``OUT/logs``.

Tables (``OUT/loso.md``, ``OUT/loso.csv``, ``OUT/loso.json``):

- per held-out site: ``Dice``, ``IoU``, ``PixelAccuracy`` from the fold's ``metrics.csv`` (means over the site's
  images), and ``Average`` = the unweighted mean over the held-out sites (as the paper's "Average" column);
- per lesion type: for each ``class``, the mean per-image ``Dice`` over the held-out images of that type, pooled
  over all folds (each image is held out exactly once), from the folds' ``per_case.csv``; ``Average`` = the mean
  over types. A bundle reports its binary lesion-vs-background Dice here (``common.metrics.classwise``), so
  binary and K-class bundles share the table.

Exit status 0; 1 for bad arguments or data (named), or a failed run (command and log tail printed).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from protocol_steps import (  # noqa: E402
    STEP_ERRORS,
    resolve_bundles,
    bundle_command,
    parse_extra,
    read_metrics_csv,
    read_per_case,
    resumable_step,
)

__all__ = [
    "SITE_METRICS",
    "build_parser",
    "fold_datalists",
    "format_tables",
    "lesion_type_table",
    "main",
    "merge_site_datalists",
]

#: Metrics of the per-site table (MCDRL Table 1: Dice, IoU, Acc).
SITE_METRICS = ("Dice", "IoU", "PixelAccuracy")
_SPLITS = ("training", "validation", "test")


def _absolute(entry: dict, base: Path) -> dict:
    e = dict(entry)
    for k in ("image", "label", "lungs"):  # lungs: common.data.datalist.OPTIONAL_PATH_KEYS
        if isinstance(e.get(k), str) and not os.path.isabs(e[k]):
            e[k] = str((base / e[k]).resolve())
    return e


def merge_site_datalists(site_files: dict[str, Path]) -> dict[str, Any]:
    """
    One datalist from one datalist per site: every entry gets ``site`` = its file's site name (replacing any
    ``site`` it had) and absolute ``image``/``label`` paths.

    Args:
        site_files: ``{site name: datalist file}``.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not a datalist with a ``training`` list.
    """
    merged: dict[str, Any] = {"name": "sites_" + "_".join(site_files), "training": [], "validation": [], "test": []}
    for site, path in site_files.items():
        if not path.is_file():
            raise FileNotFoundError(f"--site_datalists {site}={path}: file not found.")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("training"), list):
            raise ValueError(f"{path}: not a datalist (a JSON object with a 'training' list).")
        for split in _SPLITS:
            for e in data.get(split) or []:
                if not isinstance(e, dict):
                    raise ValueError(f"{path}: split {split!r} has an entry that is not an object: {e!r}.")
                merged[split].append({**_absolute(e, path.parent), "site": site})
    merged["sites_from"] = {s: str(p) for s, p in site_files.items()}
    return merged


def fold_datalists(
    datalist: dict[str, Any],
    base: Path,
    heldout_from: str = "all",
    sites: Sequence[str] | None = None,
    source="datalist",
) -> dict[str, dict[str, Any]]:
    """
    The leave-one-site-out datalists (module docstring, "Folds").

    Args:
        datalist: the datalist (``training``/``validation``/``test`` lists; every entry with ``site``).
        base: folder the relative paths are relative to (the datalist's folder).
        heldout_from: ``"all"`` (every split of the held-out site is test data) or ``"test"``.
        sites: held-out sites; ``None``: all, sorted.
        source: the datalist's name, for error messages.

    Returns:
        ``{site: fold datalist}``, each with a ``"loso"`` record (held-out site, counts).

    Raises:
        ValueError: entries without ``site``, fewer than two sites, an unknown ``--sites`` name, or a fold with an
            empty training, validation or test split.
    """
    if heldout_from not in ("all", "test"):
        raise ValueError(f"--heldout_from must be 'all' or 'test', got {heldout_from!r}.")
    entries = {s: [_absolute(e, base) for e in datalist.get(s) or []] for s in _SPLITS}
    missing = [f"{s}[{i}]" for s in _SPLITS for i, e in enumerate(entries[s]) if not e.get("site")]
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"{source}: {len(missing)} entries have no 'site' ({shown}); leave-one-site-out needs a site for every "
            "entry (tools/prepare_dataset.py --site_table, or --site_datalists NAME=FILE ...)."
        )
    all_sites = sorted({e["site"] for s in _SPLITS for e in entries[s]})
    if len(all_sites) < 2:
        raise ValueError(f"{source}: leave-one-site-out needs at least 2 sites, found {all_sites}.")
    chosen = list(sites) if sites else all_sites
    unknown = [s for s in chosen if s not in all_sites]
    if unknown:
        raise ValueError(f"--sites {unknown} not in {source}, whose sites are {all_sites}.")
    folds: dict[str, dict[str, Any]] = {}
    for site in chosen:
        fold = {
            "name": f"{datalist.get('name', 'datalist')}_without_{site}",
            "training": [e for e in entries["training"] if e["site"] != site],
            "validation": [e for e in entries["validation"] if e["site"] != site],
            "test": [
                e for s in (_SPLITS if heldout_from == "all" else ("test",)) for e in entries[s] if e["site"] == site
            ],
        }
        for split in _SPLITS:
            if not fold[split]:
                raise ValueError(f"{source}: the fold holding out {site!r} has an empty {split!r} split.")
        fold["loso"] = {
            "source": str(source),
            "heldout_site": site,
            "heldout_from": heldout_from,
            "training_sites": sorted({e["site"] for e in fold["training"]}),
            "counts": {s: len(fold[s]) for s in _SPLITS},
        }
        folds[site] = fold
    return folds


def lesion_type_table(per_case: list[dict[str, Any]], metric: str = "Dice") -> dict[str, float]:
    """
    Mean ``metric`` per ``class`` over the pooled per-case rows of every fold (NaN values skipped), and
    ``"Average"`` = the mean over classes.

    Args:
        per_case: rows of the folds' ``per_case.csv`` (with ``class``).
        metric: column to average, default ``"Dice"``.

    Raises:
        ValueError: when no row has a ``class`` (per_case.csv written without the datalist fields).
    """
    values: dict[str, list[float]] = {}
    for row in per_case:
        c = row.get("class")
        v = row.get(metric)
        if c and isinstance(v, float) and not math.isnan(v):
            values.setdefault(c, []).append(v)
    if not values:
        raise ValueError("no per-case row has a 'class': the per-lesion-type table needs `class` in the datalist.")
    table = {c: sum(v) / len(v) for c, v in sorted(values.items())}
    table["Average"] = sum(table.values()) / len(table)
    return table


def _pct(v: float | None) -> str:
    return "missing" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def format_tables(site_rows: dict[str, dict[str, dict[str, float]]], type_rows: dict[str, dict[str, float]]) -> str:
    """
    The two Markdown tables, values in percent (one decimal, as the paper).

    Args:
        site_rows: ``{bundle: {site or "Average": {metric: value}}}``.
        type_rows: ``{bundle: {class or "Average": Dice}}``.
    """
    sites = list(dict.fromkeys(s for r in site_rows.values() for s in r))
    head = " | ".join(f"{s} Dice | {s} IoU | {s} Acc" for s in sites)
    out = (
        f"Held-out site (train on all other sites; %):\n\n| bundle | {head} |\n|---|" + "---:|" * 3 * len(sites) + "\n"
    )
    for b, r in site_rows.items():
        cells = [_pct(r.get(s, {}).get(m)) for s in sites for m in SITE_METRICS]
        out += f"| {b} | " + " | ".join(cells) + " |\n"
    types = list(dict.fromkeys(c for r in type_rows.values() for c in r))
    if types:
        out += "\nDice per lesion type (each image scored when its site is held out; %):\n\n"
        out += "| bundle | " + " | ".join(types) + " |\n|---|" + "---:|" * len(types) + "\n"
        for b, r in type_rows.items():
            out += f"| {b} | " + " | ".join(_pct(r.get(c)) for c in types) + " |\n"
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface (module docstring)."""
    ap = argparse.ArgumentParser(description="Leave-one-site-out training and evaluation for any bundles.")
    ap.add_argument("--bundles", nargs="+", required=True, help="bundle folders, e.g. bundles/unet_baseline")
    ap.add_argument("--dataset_dir", required=True, help="dataset folder passed to every run as --dataset_dir")
    ap.add_argument("--synthetic", choices=["chest_xray", "endoscopy"], default="endoscopy", help="default endoscopy")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--datalist_file", default=None, help="datalist with 'site' on every entry")
    src.add_argument("--site_datalists", nargs="+", metavar="SITE=FILE", help="one datalist per site")
    ap.add_argument("--sites", nargs="+", default=None, help="held-out sites (default: all, sorted)")
    ap.add_argument("--heldout_from", choices=["all", "test"], default="all", help="default all (see docstring)")
    ap.add_argument("--max_epochs", type=int, required=True, help="passed to every training run")
    ap.add_argument("--seed", type=int, default=0, help="passed to every run (default 0)")
    ap.add_argument("--out", required=True, help="output folder: folds/, OUT/<bundle>/<site>, loso.md/.csv/.json")
    ap.add_argument("--extra", action="append", metavar="KEY=VALUE", help="extra override for every run; repeatable")
    ap.add_argument("--overwrite", action="store_true", help="redo finished steps")
    ap.add_argument(
        "--in_process", action="store_true", help="run the steps in this process, not as subprocesses (same results)"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    return ap


def _source_datalist(args: argparse.Namespace, bundle: Path, extra: list[str], out: Path) -> tuple[dict, Path, str]:
    if args.site_datalists:
        files: dict[str, Path] = {}
        for item in args.site_datalists:
            site, sep, path = item.partition("=")
            if not sep or not site or not path:
                raise ValueError(f"--site_datalists {item!r}: expected SITE=FILE.")
            if site in files:
                raise ValueError(f"--site_datalists: site {site!r} given twice.")
            files[site] = Path(path).resolve()
        merged = merge_site_datalists(files)
        path = out / "datalist_sites.json"
        path.write_text(json.dumps(merged, indent=2), encoding="utf-8")
        return merged, path.parent, str(path)
    import compare

    path = compare._resolve_datalist(args, bundle, extra)
    with open(path, encoding="utf-8") as f:
        return json.load(f), path.parent, str(path)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    bundles = resolve_bundles(args.bundles)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = parse_extra(args.extra)
    datalist, base, source = _source_datalist(args, bundles[0], extra, out)
    folds = fold_datalists(datalist, base, args.heldout_from, args.sites, source=source)
    fold_files: dict[str, Path] = {}
    for site, fold in folds.items():
        path = out / "folds" / site / "datalist.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(fold, indent=2)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged folds keep their markers valid
            path.write_text(text, encoding="utf-8")
        fold_files[site] = path
    dataset_dir = str(Path(args.dataset_dir).resolve())
    runs: list[dict[str, Any]] = []
    site_rows: dict[str, dict[str, dict[str, float]]] = {}
    type_rows: dict[str, dict[str, float]] = {}
    for bundle in bundles:
        train_cfg = bundle / "configs" / "train.json"
        eval_cfgs = [train_cfg, bundle / "configs" / "evaluate.json"]
        pooled: list[dict[str, Any]] = []
        site_rows[bundle.name] = {}
        for site, dl in fold_files.items():
            run_dir = out / bundle.name / site
            run_args = ["--dataset_dir", dataset_dir, "--max_epochs", str(args.max_epochs), "--seed", str(args.seed)]
            run_args += ["--datalist_file", str(dl), *extra]
            tag = f"{bundle.name}_{site}"
            print(f"[loso] {bundle.name}: training without {site}", flush=True)
            cmd = bundle_command(args.python, [train_cfg], bundle, run_dir, run_args)
            train = resumable_step(
                "train", cmd, run_dir, out / "logs" / f"{tag}_train.log", args.overwrite, args.in_process
            )
            print(f"[loso] {bundle.name}: evaluating on {site}", flush=True)
            cmd = bundle_command(args.python, eval_cfgs, bundle, run_dir, run_args + ["--eval_split", "test"])
            redo = args.overwrite or not train["reused"]  # a new model makes the old evaluation stale
            evaluate = resumable_step("eval", cmd, run_dir, out / "logs" / f"{tag}_eval.log", redo, args.in_process)
            metrics = read_metrics_csv(run_dir / "eval" / "metrics.csv")
            site_rows[bundle.name][site] = {m: metrics[m] for m in SITE_METRICS if m in metrics}
            rows = read_per_case(run_dir / "eval" / "per_case.csv")
            pooled += [{**r, "heldout_site": site} for r in rows]
            runs.append(
                {"bundle": bundle.name, "heldout_site": site, "metrics": metrics, "train": train, "eval": evaluate}
            )
        per_site = [v for s, v in site_rows[bundle.name].items() if s != "Average"]
        site_rows[bundle.name]["Average"] = {
            m: sum(v[m] for v in per_site) / len(per_site) for m in SITE_METRICS if all(m in v for v in per_site)
        }
        if any(r.get("class") for r in pooled):
            type_rows[bundle.name] = lesion_type_table(pooled)
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": {
            "bundles": [str(b) for b in bundles],
            "source_datalist": source,
            "folds": {s: {"datalist": str(p), **folds[s]["loso"]} for s, p in fold_files.items()},
            "max_epochs": args.max_epochs,
            "seed": args.seed,
            "extra": list(args.extra or []),
            "in_process": args.in_process,
        },
        "per_site": site_rows,
        "per_lesion_type": type_rows,
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (module docstring); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        report = _run(args)
    except STEP_ERRORS as e:
        print(f"[loso] error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    s = report["settings"]
    counts = ", ".join(
        f"{k}: {v['counts']['training']}/{v['counts']['validation']}/{v['counts']['test']}"
        for k, v in s["folds"].items()
    )
    header = (
        f"Source datalist: `{s['source_datalist']}`; max_epochs {s['max_epochs']}; seed {s['seed']}; "
        f"training/validation/test images per held-out site: {counts}.\n\n"
    )
    tables = format_tables(report["per_site"], report["per_lesion_type"])
    (out / "loso.md").write_text(header + tables, encoding="utf-8")
    with open(out / "loso.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bundle", "table", "column", "metric", "value"])
        for b, r in report["per_site"].items():
            for site, ms in r.items():
                for m, v in ms.items():
                    w.writerow([b, "site", site, m, v])
        for b, r in report["per_lesion_type"].items():
            for c, v in r.items():
                w.writerow([b, "lesion_type", c, "Dice", v])
    with open(out / "loso.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(tables)
    print(f"[loso] wrote {out / 'loso.md'}, loso.csv and loso.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
