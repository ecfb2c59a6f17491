# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Evaluate bundles on the test split clean and under each test-time corruption of BiCLIP (section 3.4, Table 3).

Run from the repository root::

    python tools/corruption_eval.py --bundles bundles/unet_baseline bundles/lvit --dataset_dir data/synthetic_cxr \\
        --synthetic chest_xray --max_epochs 20 --seed 0 --out out/corruption

For each bundle, one training run (skipped when ``OUT/<bundle>/.train_done.json`` records the same command, or
with ``--reuse_models`` when ``OUT/<bundle>/models/model.pt`` exists, e.g. in a ``tools/compare.py`` output
folder), then one evaluation per corruption with the config layer ``common/configs/corruption.json``::

    python -m monai.bundle run --config_file "['B/configs/train.json','B/configs/evaluate.json',
        'common/configs/corruption.json']" --bundle_root B --output_dir OUT/<bundle> --corruption dose_140 ...

whose metrics go to ``OUT/<bundle>/eval_<corruption>`` (``eval`` when clean). Every run gets the same datalist,
resolved as ``tools/compare.py`` does. Why a tool and a layer rather than one config that loops: MONAI's bundle
CLI runs one workflow per call, and a layer merged after ``evaluate.json`` changes only the evaluation pipeline
(``validate#preprocessing#transforms``) and ``eval_dir``, so it works unchanged for every bundle whose evaluation
pipeline scales intensities to [0, 1] and resizes with ``Resized`` (all bundles here; ``--corruption_after`` names
another transform otherwise).

Outputs: ``OUT/corruption.md`` (the long table, one row per bundle and corruption, with the Dice change from
clean; then the wide table of the paper's Table 3 layout), ``OUT/corruption.csv``, ``OUT/corruption.json``
(settings, commands, seconds) and ``OUT/logs/*.log``. Exit status 0; 1 for bad arguments or a failed run (the
command and the tail of its log are printed).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
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
    REPO_ROOT,
    bundle_command,
    parse_extra,
    read_metrics_csv,
    resumable_step,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from common.transforms.corruption import CORRUPTIONS, parse_corruption  # noqa: E402

__all__ = ["LAYER", "METRICS", "build_parser", "eval_dir_name", "format_tables", "main"]

#: The evaluation config layer.
LAYER = REPO_ROOT / "common" / "configs" / "corruption.json"
#: Metrics tabulated (names of ``metrics.csv`` lines).
METRICS = ("Dice", "IoU", "HD95", "ASSD", "PixelAccuracy")


def eval_dir_name(corruption: str) -> str:
    """``eval`` for ``"none"``, else ``eval_<corruption>`` (as ``common/configs/corruption.json`` sets it)."""
    return "eval" if corruption == "none" else f"eval_{corruption}"


def _fmt(v: float | None, digits: int) -> str:
    return "missing" if v is None else f"{v:.{digits}f}"


def format_tables(rows: list[dict[str, Any]]) -> str:
    """
    The Markdown tables of :func:`main`: a long table (bundle, corruption, the five metrics, Dice change from the
    clean row of the same bundle) and a wide one (one row per bundle and corruption family, Dice/IoU per level).

    Args:
        rows: ``{"bundle", "corruption", "metrics": {name: value}}`` per evaluation.
    """
    lines = [
        "| bundle | corruption | Dice | IoU | HD95 | ASSD | PixelAccuracy | Dice change |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    clean = {r["bundle"]: r["metrics"].get("Dice") for r in rows if r["corruption"] == "none"}
    for r in rows:
        m = r["metrics"]
        base = clean.get(r["bundle"])
        delta = (
            "-" if base is None or m.get("Dice") is None or r["corruption"] == "none" else f"{m['Dice'] - base:+.4f}"
        )
        lines.append(
            f"| {r['bundle']} | {r['corruption']} | {_fmt(m.get('Dice'), 4)} | {_fmt(m.get('IoU'), 4)} | "
            f"{_fmt(m.get('HD95'), 2)} | {_fmt(m.get('ASSD'), 2)} | {_fmt(m.get('PixelAccuracy'), 4)} | {delta} |"
        )
    out = "\n".join(lines) + "\n"
    families: dict[str, list[str]] = {}
    for r in rows:
        kind, _ = parse_corruption(r["corruption"])
        if kind != "none":
            families.setdefault(kind, [])
            if r["corruption"] not in families[kind]:
                families[kind].append(r["corruption"])
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    by_key = {(r["bundle"], r["corruption"]): r["metrics"] for r in rows}
    for kind, names in families.items():
        title = "Low-dose noise" if kind == "dose" else "Motion blur"
        head = " | ".join(f"{n} Dice | {n} IoU" for n in ["none", *names])
        out += f"\n{title} (Dice / IoU; Table 3 layout):\n\n| bundle | {head} |\n"
        out += "|---|" + "---:|---:|" * (len(names) + 1) + "\n"
        for b in bundles:
            cells = []
            for n in ["none", *names]:
                m = by_key.get((b, n), {})
                cells += [_fmt(m.get("Dice"), 4), _fmt(m.get("IoU"), 4)]
            out += f"| {b} | " + " | ".join(cells) + " |\n"
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface (module docstring)."""
    ap = argparse.ArgumentParser(description="Evaluate bundles clean and under BiCLIP's test-time corruptions.")
    ap.add_argument("--bundles", nargs="+", required=True, help="bundle folders, e.g. bundles/unet_baseline")
    ap.add_argument("--dataset_dir", required=True, help="dataset folder passed to every run as --dataset_dir")
    ap.add_argument("--synthetic", choices=["chest_xray", "endoscopy"], default=None, help="as tools/compare.py")
    ap.add_argument("--datalist_file", default=None, help="use this datalist for every run")
    ap.add_argument("--max_epochs", type=int, required=True, help="passed to every training run")
    ap.add_argument("--seed", type=int, default=0, help="passed to every run (default 0)")
    ap.add_argument(
        "--corruptions",
        nargs="+",
        default=list(CORRUPTIONS),
        help=f"corruptions to evaluate, clean first (default: {' '.join(CORRUPTIONS)})",
    )
    ap.add_argument("--corruption_seed", type=int, default=0, help="seed of the corruptions (default 0)")
    ap.add_argument("--corruption_after", default="Resized", help="transform class the corruption follows")
    ap.add_argument("--out", required=True, help="output folder: OUT/<bundle>, corruption.md/.csv/.json, logs/")
    ap.add_argument("--extra", action="append", metavar="KEY=VALUE", help="extra override for every run; repeatable")
    ap.add_argument("--reuse_models", action="store_true", help="use OUT/<bundle>/models/model.pt when present")
    ap.add_argument("--overwrite", action="store_true", help="redo finished steps")
    ap.add_argument(
        "--in_process", action="store_true", help="run the steps in this process, not as subprocesses (same results)"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    return ap


def _resolve_datalist(args: argparse.Namespace, bundle: Path, extra: list[str]) -> Path:
    import compare

    return compare._resolve_datalist(args, bundle, extra)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    for c in args.corruptions:
        parse_corruption(c)  # raises ValueError naming the valid names
    if len(set(args.corruptions)) != len(args.corruptions):
        raise ValueError(f"--corruptions lists a name twice: {args.corruptions}.")
    bundles = resolve_bundles(args.bundles)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = parse_extra(args.extra)
    datalist = _resolve_datalist(args, bundles[0], extra)
    dataset_dir = str(Path(args.dataset_dir).resolve())
    common_args = ["--dataset_dir", dataset_dir, "--max_epochs", str(args.max_epochs), "--seed", str(args.seed)]
    common_args += ["--datalist_file", str(datalist), *extra]
    rows: list[dict[str, Any]] = []
    for bundle in bundles:
        run_dir = out / bundle.name
        train_cfg = bundle / "configs" / "train.json"
        eval_cfgs = [train_cfg, bundle / "configs" / "evaluate.json", LAYER]
        record: dict[str, Any] = {"bundle": bundle.name, "output_dir": str(run_dir), "steps": {}}
        if args.reuse_models and (run_dir / "models" / "model.pt").is_file():
            record["steps"]["train"] = {"reused": True, "command": None, "note": "existing models/model.pt"}
        else:
            cmd = bundle_command(args.python, [train_cfg], bundle, run_dir, common_args)
            print(f"[corruption] {bundle.name}: training", flush=True)
            record["steps"]["train"] = resumable_step(
                "train", cmd, run_dir, out / "logs" / f"{bundle.name}_train.log", args.overwrite, args.in_process
            )
        # a new model makes every earlier evaluation of this folder stale
        redo_evals = args.overwrite or not record["steps"]["train"]["reused"]
        for c in args.corruptions:
            layer_args = ["--corruption", c, "--corruption_seed", str(args.corruption_seed)]
            layer_args += ["--corruption_after", args.corruption_after]
            cmd = bundle_command(args.python, eval_cfgs, bundle, run_dir, common_args + layer_args)
            print(f"[corruption] {bundle.name}: evaluating under {c}", flush=True)
            step = resumable_step(
                f"eval_{c}", cmd, run_dir, out / "logs" / f"{bundle.name}_eval_{c}.log", redo_evals, args.in_process
            )
            metrics = read_metrics_csv(run_dir / eval_dir_name(c) / "metrics.csv")
            rows.append({"bundle": bundle.name, "corruption": c, "metrics": metrics, "step": step})
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": {
            "bundles": [str(b) for b in bundles],
            "datalist_file": str(datalist),
            "max_epochs": args.max_epochs,
            "seed": args.seed,
            "corruptions": list(args.corruptions),
            "corruption_seed": args.corruption_seed,
            "corruption_after": args.corruption_after,
            "extra": list(args.extra or []),
            "in_process": args.in_process,
        },
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (module docstring); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        report = _run(args)
    except STEP_ERRORS as e:
        print(f"[corruption] error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    s = report["settings"]
    header = (
        f"Datalist: `{s['datalist_file']}`; max_epochs {s['max_epochs']}; seed {s['seed']}; corruption seed "
        f"{s['corruption_seed']}, inserted after `{s['corruption_after']}`.\n\n"
    )
    tables = format_tables(report["rows"])
    (out / "corruption.md").write_text(header + tables, encoding="utf-8")
    with open(out / "corruption.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bundle", "corruption", *METRICS])
        for r in report["rows"]:
            w.writerow([r["bundle"], r["corruption"], *(r["metrics"].get(m, "") for m in METRICS)])
    with open(out / "corruption.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(tables)
    print(f"[corruption] wrote {out / 'corruption.md'}, corruption.csv and corruption.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
