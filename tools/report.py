# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
One command, every bundle, every protocol: train and evaluate any list of bundles on one datalist, budget and list
of seeds under the protocols of ``tools/protocols.md``, and write one report folder (``report.md`` with every table,
PNG figures, ``report.json``, ``results.csv``).

Run from the repository root::

    python tools/report.py --bundles bundles/unet_baseline bundles/lvit --dataset_dir data/synthetic_cxr \\
        --synthetic chest_xray --max_epochs 20 --seeds 0 1 2 \\
        --protocols clean,text_swap,corruption,low_data,loso --out out/report

Protocols (``--protocols``, comma-separated; ``clean`` is always run, the others build on its models):

- ``clean``: train on the ``training`` split (model chosen on the ``validation`` split by each bundle's
  ``BestModelHandler``) and evaluate the ``test`` split; the predictions of the overlay cases are saved
  (``common/configs/save_predictions.json``).
- ``text_swap``: the same model evaluated with every test image carrying ANOTHER test image's note
  (``tools/compare.py``'s :func:`ablate_datalist`, mode ``test``); only for text-guided bundles (those whose
  ``metadata.json`` lists a network input named ``text...``).
- ``corruption``: the same model evaluated under each test-time corruption of BiCLIP section 3.4
  (``common/configs/corruption.json``; ``--corruptions``).
- ``low_data``: one model per ``train_fraction`` of ``--fractions`` (BiCLIP section 3.3), each evaluated clean;
  the clean run is the fraction 1 point.
- ``loso``: leave-one-site-out (MCDRL section 5.1; ``tools/leave_one_site_out.py``'s folds, whole held-out site as
  test data), only when every datalist entry has a ``site``; otherwise the report says it was skipped.

Baseline given the same care. The bundle named by ``--baseline`` (default ``unet_baseline``) is trained with each
learning rate of ``--baseline_lr_grid`` (default ``1e-3 3e-3 1e-2``; ``--baseline_lr_grid`` with no value turns it
off) at every seed, and the rate with the best mean VALIDATION Dice over seeds (the best-epoch value of
``models/model.json``; the test split is never looked at) is used for all of its protocols. The grid and the choice
are in ``report.md``.

Run folders: ``OUT/runs/<bundle>/seed<s>/<variant>`` with ``variant`` = ``full`` (``full_lr<lr>`` for the
baseline's grid), ``frac_<f>`` or ``loso_<site>``. Training writes ``models/`` there, each evaluation ``eval``
(clean), ``eval_text_swap`` or ``eval_<corruption>``. Every step is resumable (``tools/protocol_steps.py``): its
command line, seconds and log path are recorded in ``<run>/.<step>_done.json``, its output in ``<run>/logs/``;
running the same command again skips every finished step whose metrics file exists and rebuilds the report, so an
interrupted report continues where it stopped. A changed setting in the same ``--out`` is refused (another
``--out``, or ``--overwrite``); a retrained model makes its evaluations run again.

Each bundle gets the same arguments: ``--dataset_dir``, ``--max_epochs``, ``--seed``, ``--datalist_file`` (one
datalist for every run, resolved as ``tools/compare.py`` does), every ``--extra KEY=VALUE``, then its own
``--bundle_extra NAME:KEY=VALUE`` (e.g. ``lvit:base_channels=32``; applied after ``--extra``).

Tables: one cell per bundle and condition, ``mean ± std`` over seeds (sample standard deviation; only the mean for
one seed), for Dice, IoU, HD95, ASSD and every other column any ``metrics.csv`` has (read generically, e.g.
pixel accuracy or the text-mask consistency scores). Exit status 0; 1 for bad arguments or a failed run (named, with
the command and the tail of its log; with ``--keep_going`` the other runs continue and the failed cells read
``failed``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from compare import REQUIRED_METRICS, ablate_datalist, parse_extra, read_metrics_csv, resolve_bundles  # noqa: E402
from protocol_steps import (  # noqa: E402
    REPO_ROOT,
    STEP_ERRORS,
    SubprocessError,
    bundle_command,
    read_per_case,
    resumable_step,
)

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

__all__ = [
    "PROTOCOLS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_LR_GRID",
    "aggregate",
    "build_parser",
    "choose_learning_rate",
    "format_cell",
    "is_text_guided",
    "main",
    "mean_std",
    "metric_columns",
    "parse_bundle_extra",
    "write_report",
]

#: Protocol names of ``--protocols``.
PROTOCOLS = ("clean", "text_swap", "corruption", "low_data", "loso")
#: BiCLIP section 3.3's low-data regimes.
DEFAULT_FRACTIONS = (0.25, 0.1, 0.05, 0.01)
#: The baseline's learning-rate grid.
DEFAULT_LR_GRID = (1e-3, 3e-3, 1e-2)
SAVE_PREDICTIONS_LAYER = REPO_ROOT / "common" / "configs" / "save_predictions.json"
CORRUPTION_LAYER = REPO_ROOT / "common" / "configs" / "corruption.json"


# ----------------------------------------------------------------------------------------------------- helpers
def is_text_guided(bundle: Path) -> bool:
    """
    Whether a bundle reads a per-image note: its ``configs/metadata.json`` lists a network input whose name starts
    with ``text`` (``text``, ``text_ids``).

    Args:
        bundle: the bundle folder.

    Raises:
        ValueError: ``metadata.json`` is missing or has no ``network_data_format.inputs``.
    """
    path = Path(bundle) / "configs" / "metadata.json"
    try:
        inputs = json.loads(path.read_text(encoding="utf-8"))["network_data_format"]["inputs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot read network_data_format.inputs ({type(e).__name__}: {e}).") from e
    return any(str(k).startswith("text") for k in inputs)


def parse_bundle_extra(items: Sequence[str] | None, names: Sequence[str]) -> dict[str, list[str]]:
    """
    ``["lvit:base_channels=32", ...]`` -> ``{"lvit": ["--base_channels", "32"], ...}`` (``--bundle_extra``).

    Args:
        items: the ``NAME:KEY=VALUE`` strings.
        names: the bundle folder names of ``--bundles``.

    Raises:
        ValueError: an item without ``:`` or ``=``, or a name that is not one of ``names``.
    """
    out: dict[str, list[str]] = {n: [] for n in names}
    for item in items or []:
        name, sep, rest = item.partition(":")
        if not sep or not name:
            raise ValueError(f"--bundle_extra {item!r}: expected NAME:KEY=VALUE, e.g. lvit:base_channels=32.")
        if name not in out:
            raise ValueError(f"--bundle_extra {item!r}: {name!r} is not one of the --bundles {list(names)}.")
        out[name] += parse_extra([rest])
    return out


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None, int]:
    """
    ``(mean, sample std, n)`` of the finite values; std is ``None`` below two values, mean ``None`` for none.

    Args:
        values: one value per seed (NaN and inf skipped).
    """
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return None, None, 0
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None), len(v)


def format_cell(stat: tuple[float | None, float | None, int] | None, digits: int = 4) -> str:
    """``"0.7123 ± 0.0101"`` (``mean ± std``), ``"0.7123"`` for one seed, ``"-"`` without a value.

    Args:
        stat: ``(mean, std, n)`` from :func:`mean_std`, or ``None``.
        digits: decimals, default 4.
    """
    if stat is None or stat[0] is None:
        return "-"
    text = f"{stat[0]:.{digits}f}"
    return text if stat[1] is None else f"{text} ± {stat[1]:.{digits}f}"


def _digits(metric: str) -> int:
    return 2 if metric in ("HD95", "ASSD") else 4


def metric_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dice, IoU, HD95, ASSD first, then every other metric name found in the records, in first-seen order.

    Args:
        records: evaluation records with a ``metrics`` dict.
    """
    names = list(REQUIRED_METRICS)
    for r in records:
        for k in r.get("metrics") or {}:
            if k not in names:
                names.append(k)
    return names


def aggregate(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> dict[tuple[str, str, str], dict[str, tuple[float | None, float | None, int]]]:
    """
    ``{(bundle, protocol, condition): {metric: (mean, std, n)}}`` over the seeds of the records.

    Args:
        records: evaluation records ``{"bundle", "protocol", "condition", "seed", "metrics"}`` (``metrics`` is
            ``None`` for a failed run, which then counts for no seed).
        metrics: metric names to aggregate.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["bundle"], r["protocol"], str(r["condition"])), []).append(r)
    return {
        key: {m: mean_std((r["metrics"] or {}).get(m) for r in rs if r.get("metrics")) for m in metrics}
        for key, rs in groups.items()
    }


def choose_learning_rate(val_dice: Mapping[float, Sequence[float | None]]) -> float:
    """
    The learning rate with the highest mean validation Dice over seeds (the first of the grid on a tie; a rate
    whose runs all lack a value never wins).

    Args:
        val_dice: ``{learning rate: [best validation Dice per seed]}`` in grid order.

    Raises:
        ValueError: no rate has a validation Dice.
    """
    best, best_value = None, -math.inf
    for lr, values in val_dice.items():
        mean = mean_std(values)[0]
        if mean is not None and mean > best_value:
            best, best_value = lr, mean
    if best is None:
        raise ValueError(f"baseline learning-rate grid: no run recorded a validation Dice ({dict(val_dice)}).")
    return best


def _read_val_dice(run_dir: Path) -> float | None:
    """The best validation key-metric value of ``run_dir/models/model.json`` (``BestModelHandler``'s sidecar)."""
    path = run_dir / "models" / "model.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_if_changed(path: Path, data: Any) -> Path:
    """Write JSON only when the content differs (unchanged files keep the recorded commands valid)."""
    text = json.dumps(data, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def _lr_text(lr: float) -> str:
    return f"{lr:g}"


# ----------------------------------------------------------------------------------------------------- running
class _Runner:
    """
    Runs the resumable train/evaluate steps of every bundle; collects one record per training and per evaluation.

    Args:
        args: the parsed command line.
        out: the report folder.
        datalist: the one datalist file of the runs.
        extra: ``--extra`` as ``["--key", "value", ...]``.
        bundle_extra: ``--bundle_extra`` per bundle name (:func:`parse_bundle_extra`).
    """

    def __init__(self, args: argparse.Namespace, out: Path, datalist: Path, extra: list[str], bundle_extra):
        self.args = args
        self.out = out
        self.datalist = datalist
        self.extra = extra
        self.bundle_extra = bundle_extra
        self.dataset_dir = str(Path(args.dataset_dir).resolve())
        self.records: list[dict[str, Any]] = []
        self.trainings: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def _args(self, bundle: Path, seed: int, datalist: Path, more: Sequence[str] = ()) -> list[str]:
        a = ["--dataset_dir", self.dataset_dir, "--max_epochs", str(self.args.max_epochs), "--seed", str(seed)]
        return a + ["--datalist_file", str(datalist), *self.extra, *self.bundle_extra[bundle.name], *more]

    def _step(self, name: str, cmd: list[str], run_dir: Path, redo: bool) -> dict[str, Any] | None:
        try:
            return resumable_step(
                name, cmd, run_dir, run_dir / "logs" / f"{name}.log", redo or self.args.overwrite, self.args.in_process
            )
        except SubprocessError as e:
            if not self.args.keep_going:
                raise
            self.failures.append(f"{run_dir.relative_to(self.out)} {name}: {str(e).splitlines()[0]}")
            print(f"[report] FAILED {run_dir} {name} (continuing: --keep_going)\n{e}", file=sys.stderr, flush=True)
            return None

    def train(self, bundle: Path, seed: int, variant: str, datalist: Path, more: Sequence[str] = ()):
        """
        Train one variant into ``OUT/runs/<bundle>/seed<seed>/<variant>`` (skipped when finished with the same
        command and its ``models/model.pt`` exists).

        Args:
            bundle: the bundle folder.
            seed: the run's seed.
            variant: the run folder's name, e.g. ``"full"``, ``"frac_0.1"``, ``"loso_site_0"``.
            datalist: the datalist of this training (the fold's for ``loso``).
            more: further ``--key value`` arguments (learning rate, ``train_fraction``).

        Returns:
            ``(run_dir, step)``; ``step`` is ``None`` when the training failed under ``--keep_going``.
        """
        run_dir = self.out / "runs" / bundle.name / f"seed{seed}" / variant
        cmd = bundle_command(
            self.args.python,
            [bundle / "configs" / "train.json"],
            bundle,
            run_dir,
            self._args(bundle, seed, datalist, more),
        )
        print(f"[report] {bundle.name} seed {seed} {variant}: training", flush=True)
        done = (run_dir / "models" / "model.pt").is_file()
        step = self._step("train", cmd, run_dir, redo=not done)
        self.trainings.append(
            {
                "bundle": bundle.name,
                "seed": seed,
                "variant": variant,
                "run_dir": str(run_dir),
                "step": step,
                "val_dice": _read_val_dice(run_dir) if step else None,
            }
        )
        return run_dir, step

    def evaluate(
        self,
        bundle: Path,
        seed: int,
        run_dir: Path,
        train_step: dict[str, Any] | None,
        protocol: str,
        condition: str,
        eval_name: str,
        datalist: Path,
        more: Sequence[str] = (),
        layers: Sequence[Path] = (),
    ) -> None:
        """
        Evaluate a trained variant into ``run_dir/<eval_name>`` and append one record (``metrics`` ``None`` when the
        training or the evaluation failed). It runs again when the model was retrained in this call or its
        ``metrics.csv`` is missing.

        Args:
            bundle: the bundle folder.
            seed: the run's seed.
            run_dir: the trained variant's folder.
            train_step: what :meth:`train` returned as step (``None``: failed, nothing is evaluated).
            protocol: the record's protocol (``clean``, ``text_swap``, ``corruption``, ``low_data``, ``loso``).
            condition: the record's condition within the protocol (corruption name, fraction, site).
            eval_name: the step name and the evaluation folder under ``run_dir`` (``eval``, ``eval_<corruption>``).
            datalist: the datalist evaluated (the swapped-note copy for ``text_swap``).
            more: further ``--key value`` arguments.
            layers: config layers merged after ``evaluate.json``.
        """
        record = {
            "bundle": bundle.name,
            "seed": seed,
            "protocol": protocol,
            "condition": condition,
            "run_dir": str(run_dir),
            "eval_dir": str(run_dir / eval_name),
            "metrics": None,
            "train_seconds": None if train_step is None else train_step.get("seconds"),
        }
        self.records.append(record)
        if train_step is None:  # training failed (with --keep_going)
            return
        configs = [bundle / "configs" / "train.json", bundle / "configs" / "evaluate.json", *layers]
        cmd = bundle_command(self.args.python, configs, bundle, run_dir, self._args(bundle, seed, datalist, more))
        metrics_file = run_dir / eval_name / "metrics.csv"
        print(f"[report] {bundle.name} seed {seed} {run_dir.name}: evaluating {eval_name}", flush=True)
        redo = not train_step.get("reused", False) or not metrics_file.is_file()
        step = self._step(eval_name, cmd, run_dir, redo)
        if step is not None:
            record["metrics"] = read_metrics_csv(metrics_file)
            record["eval_seconds"] = step.get("seconds")


def _test_cases(datalist: Path, count: int) -> list[dict[str, str]]:
    """The first ``count`` entries of the test split (datalist order): the fixed overlay cases."""
    from common.data import load_datalist

    entries = load_datalist(str(datalist), "test", check_files=False)[: max(0, count)]
    names = [Path(e["image"]).name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"{datalist}: the overlay cases have repeated image base names {names}.")
    return [
        {"name": Path(e["image"]).name, "image": e["image"], "label": e.get("label", ""), "text": e.get("text", "")}
        for e in entries
    ]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    """Check the arguments, run every step (module docstring) and return the report dict of :func:`write_report`."""
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"--protocols: unknown {unknown}; choose from {','.join(PROTOCOLS)}.")
    if "clean" not in protocols:
        protocols.insert(0, "clean")
    if not args.seeds:
        raise ValueError("--seeds: give at least one seed.")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds lists a seed twice: {args.seeds}.")
    for f in args.fractions:
        if not 0 < f < 1:
            raise ValueError(f"--fractions: each must be in (0, 1) (1 is the clean run), got {f}.")
    from common.transforms.corruption import parse_corruption

    corruptions = [c for c in args.corruptions if c != "none"]
    for c in corruptions:
        parse_corruption(c)
    bundles = resolve_bundles(args.bundles)
    names = [b.name for b in bundles]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = parse_extra(args.extra)
    bundle_extra = parse_bundle_extra(args.bundle_extra, names)

    import compare

    ns = argparse.Namespace(
        datalist_file=args.datalist_file, dataset_dir=args.dataset_dir, synthetic=args.synthetic, seed=args.seeds[0]
    )
    datalist = compare._resolve_datalist(ns, bundles[0], extra + bundle_extra[names[0]])
    original = json.loads(datalist.read_text(encoding="utf-8"))
    cases = _test_cases(datalist, args.overlay_cases)

    swap_file = None
    if "text_swap" in protocols:
        swapped, _ = ablate_datalist(original, datalist.parent, "test", args.ablation_seed, source=str(datalist))
        swap_file = _write_if_changed(out / "datalists" / "text_swap_test.json", swapped)
    folds: dict[str, Path] = {}
    loso_note = None
    if "loso" in protocols:
        import leave_one_site_out

        entries = [e for s in ("training", "validation", "test") for e in original.get(s) or []]
        if entries and all(e.get("site") for e in entries):
            for site, fold in leave_one_site_out.fold_datalists(
                original, datalist.parent, source=str(datalist)
            ).items():
                folds[site] = _write_if_changed(out / "datalists" / "loso" / f"{site}.json", fold)
        else:
            loso_note = f"skipped: not every entry of {datalist} has a `site`."

    runner = _Runner(args, out, datalist, extra, bundle_extra)
    lr_grids: dict[str, Any] = {}
    for bundle in bundles:
        text = is_text_guided(bundle)
        grid = list(args.baseline_lr_grid) if bundle.name == args.baseline else []
        lr_args: list[str] = []
        full: dict[int, tuple[Path, dict | None]] = {}
        if grid:
            val: dict[float, list[float | None]] = {lr: [] for lr in grid}
            runs: dict[float, dict[int, tuple[Path, dict | None]]] = {lr: {} for lr in grid}
            for seed in args.seeds:
                for lr in grid:
                    more = [f"--{args.baseline_lr_key}", _lr_text(lr)]
                    run_dir, step = runner.train(bundle, seed, f"full_lr{_lr_text(lr)}", datalist, more)
                    runs[lr][seed] = (run_dir, step)
                    val[lr].append(_read_val_dice(run_dir) if step else None)
            chosen = choose_learning_rate(val)
            lr_args = [f"--{args.baseline_lr_key}", _lr_text(chosen)]
            full = runs[chosen]
            lr_grids[bundle.name] = {"key": args.baseline_lr_key, "val_dice": val, "chosen": chosen}
        else:
            for seed in args.seeds:
                full[seed] = runner.train(bundle, seed, "full", datalist)
        for seed in args.seeds:
            run_dir, step = full[seed]
            layer_args = ["--prediction_cases", repr([c["name"] for c in cases])]
            runner.evaluate(
                bundle,
                seed,
                run_dir,
                step,
                "clean",
                "clean",
                "eval",
                datalist,
                lr_args + layer_args,
                [SAVE_PREDICTIONS_LAYER],
            )
            if "text_swap" in protocols and text:
                more = lr_args + ["--eval_dir", str(run_dir / "eval_text_swap")]
                runner.evaluate(
                    bundle, seed, run_dir, step, "text_swap", "text_swap", "eval_text_swap", swap_file, more
                )
            if "corruption" in protocols:
                for c in corruptions:
                    more = lr_args + ["--corruption", c, "--corruption_seed", str(args.corruption_seed)]
                    runner.evaluate(
                        bundle, seed, run_dir, step, "corruption", c, f"eval_{c}", datalist, more, [CORRUPTION_LAYER]
                    )
        if "low_data" in protocols:
            for seed in args.seeds:
                for f in args.fractions:
                    more = lr_args + ["--train_fraction", f"{f:g}"]
                    run_dir, step = runner.train(bundle, seed, f"frac_{f:g}", datalist, more)
                    runner.evaluate(bundle, seed, run_dir, step, "low_data", f"{f:g}", "eval", datalist, more)
        if folds:
            for seed in args.seeds:
                for site, fold in folds.items():
                    run_dir, step = runner.train(bundle, seed, f"loso_{site}", fold, lr_args)
                    runner.evaluate(bundle, seed, run_dir, step, "loso", site, "eval", fold, lr_args)
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "tools/report.py", *args.argv]),
        "settings": {
            "bundles": [str(b) for b in bundles],
            "text_guided": {b.name: is_text_guided(b) for b in bundles},
            "dataset_dir": str(Path(args.dataset_dir).resolve()),
            "datalist_file": str(datalist),
            "max_epochs": args.max_epochs,
            "seeds": list(args.seeds),
            "protocols": protocols,
            "fractions": list(args.fractions),
            "corruptions": corruptions,
            "corruption_seed": args.corruption_seed,
            "ablation_seed": args.ablation_seed,
            "extra": list(args.extra or []),
            "bundle_extra": list(args.bundle_extra or []),
            "baseline": args.baseline,
            "baseline_lr_grid": list(args.baseline_lr_grid),
            "in_process": args.in_process,
        },
        "loso": {"sites": list(folds), "note": loso_note},
        "overlay_cases": cases,
        "lr_grids": lr_grids,
        "trainings": runner.trainings,
        "records": runner.records,
        "failures": runner.failures,
    }


# ----------------------------------------------------------------------------------------------------- report
def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _failed(records: Sequence[Mapping[str, Any]], bundle: str, protocol: str, condition: str) -> bool:
    return any(
        r["bundle"] == bundle and r["protocol"] == protocol and str(r["condition"]) == condition and not r["metrics"]
        for r in records
    )


def _seconds(values: Iterable[float | None]) -> str:
    mean = mean_std(values)[0]
    if mean is None:
        return "-"
    return f"{mean / 60:.1f} min" if mean >= 120 else f"{mean:.1f} s"


def _per_site(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple]]:
    """``{bundle: {site: (mean, std, n)}}`` of the clean test Dice per site (per_case.csv ``site``), over seeds."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r["protocol"] != "clean" or not r["metrics"]:
            continue
        path = Path(r["eval_dir"]) / "per_case.csv"
        if not path.is_file():
            continue
        sites: dict[str, list[float]] = {}
        for row in read_per_case(path):
            d = row.get("Dice")
            if row.get("site") and isinstance(d, float) and math.isfinite(d):
                sites.setdefault(row["site"], []).append(d)
        for s, v in sites.items():
            by.setdefault(r["bundle"], {}).setdefault(s, []).append(statistics.fmean(v))
    return {b: {s: mean_std(v) for s, v in sorted(sv.items())} for b, sv in by.items()}


def _case_scores(eval_dir: Path) -> dict[str, float]:
    path = eval_dir / "per_case.csv"
    if not path.is_file():
        return {}
    return {Path(r["filename"]).name: r.get("Dice") for r in read_per_case(path) if isinstance(r.get("Dice"), float)}


def write_report(out: str | Path, report: Mapping[str, Any]) -> dict[str, Any]:
    """
    Write ``report.md``, ``report.json``, ``results.csv`` and the figures of ``report`` into ``out``.

    Reads only what the records point to (``metrics`` values, ``eval_dir/per_case.csv``,
    ``eval_dir/predictions/*.png``), so a report can be rebuilt from any result folders.

    Args:
        out: the report folder.
        report: what :func:`_run` returns: ``settings``, ``records`` (one per evaluation: ``bundle``, ``seed``,
            ``protocol``, ``condition``, ``run_dir``, ``eval_dir``, ``metrics``, ``train_seconds``),
            ``lr_grids``, ``overlay_cases``, ``loso``, ``failures``, ``command``.

    Returns:
        ``{"report": path of report.md, "figures": {name: path}}``.
    """
    import report_figures as rf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = report["records"]
    settings = report["settings"]
    metrics = metric_columns(records)
    cells = aggregate(records, metrics)
    bundles = list(dict.fromkeys(r["bundle"] for r in records))
    figures: dict[str, Path] = {}
    md = ["# Benchmark report\n"]
    md.append(f"Created {report.get('created', '-')} by:\n\n```bash\n{report.get('command', '')}\n```\n")
    md.append(
        f"Datalist `{settings.get('datalist_file')}`; max_epochs {settings.get('max_epochs')}; seeds "
        f"{settings.get('seeds')}; protocols {', '.join(settings.get('protocols', []))}. Cells are mean ± std over "
        "seeds (sample std; the mean alone for one seed). Test split; each model chosen on validation Dice.\n"
    )
    if settings.get("extra") or settings.get("bundle_extra"):
        md.append(
            f"Overrides: `{' '.join(settings.get('extra', []))}`; per bundle: `{' '.join(settings.get('bundle_extra', []))}`.\n"
        )
    if report.get("failures"):
        md.append("**Failed runs** (their cells read `failed`; logs in the run folders):\n")
        md += [f"- {f}" for f in report["failures"]]
        md.append("")

    def row_cells(bundle: str, protocol: str, condition: str) -> list[str]:
        if (bundle, protocol, condition) not in cells:
            return ["-"] * len(metrics)
        c = cells[(bundle, protocol, condition)]
        if c[metrics[0]][2] == 0 and _failed(records, bundle, protocol, condition):
            return ["failed"] * len(metrics)
        return [format_cell(c[m], _digits(m)) for m in metrics]

    # LR grid
    for b, g in (report.get("lr_grids") or {}).items():
        md.append(f"## Baseline learning rate ({b})\n")
        md.append(
            f"`{g['key']}` chosen on the validation split (best-epoch validation Dice, mean over seeds): "
            f"**{_lr_text(float(g['chosen']))}**. The same budget as every other bundle.\n"
        )
        rows = []
        for lr, vals in g["val_dice"].items():
            rows.append(
                [
                    _lr_text(float(lr)),
                    format_cell(mean_std(vals)),
                    " ".join("-" if v is None else f"{v:.4f}" for v in vals),
                    "yes" if float(lr) == float(g["chosen"]) else "",
                ]
            )
        md.append(_table(["learning rate", "validation Dice", "per seed", "chosen"], rows, 1))

    # clean
    md.append("## Clean test split\n")
    rows = []
    for b in bundles:
        secs = [r.get("train_seconds") for r in records if r["bundle"] == b and r["protocol"] == "clean"]
        n = cells.get((b, "clean", "clean"), {}).get(metrics[0], (None, None, 0))[2]
        rows.append([b, str(n), *row_cells(b, "clean", "clean"), _seconds(secs)])
    md.append(_table(["bundle", "seeds", *metrics, "train time"], rows, 1))
    bar_values: dict[str, dict[str, tuple]] = {}
    for b in bundles:
        bar_values[b] = {}
        for protocol, label in (("clean", "clean test"), ("text_swap", "another image's note")):
            c = cells.get((b, protocol, protocol))
            if c and c["Dice"][0] is not None:
                bar_values[b][label] = c["Dice"][:2]
    figures["dice_per_bundle"] = out / "dice_per_bundle.png"
    rf.plot_dice_per_bundle(bar_values, figures["dice_per_bundle"])

    # text swap
    swap = [b for b in bundles if (b, "text_swap", "text_swap") in cells]
    if swap:
        md.append("## True note vs another image's note\n")
        md.append(
            "Each test image evaluated with the note of another test image (a seeded derangement, "
            f"`tools/compare.py` `derange_texts`, seed {settings.get('ablation_seed')}); same model. Text-free "
            "bundles are not listed.\n"
        )
        rows = []
        for b in swap:
            t, s = cells.get((b, "clean", "clean"), {}).get("Dice"), cells[(b, "text_swap", "text_swap")]["Dice"]
            diffs = _paired(records, b, "text_swap", "text_swap")
            rows.append([b, format_cell(t), format_cell(s), format_cell(mean_std(diffs))])
        md.append(_table(["bundle", "Dice, true note", "Dice, other note", "change (paired over seeds)"], rows, 1))
        md.append("All metrics with another image's note:\n")
        md.append(_table(["bundle", *metrics], [[b, *row_cells(b, "text_swap", "text_swap")] for b in swap], 1))

    # corruption
    corr = settings.get("corruptions") or []
    if "corruption" in settings.get("protocols", []) and corr:
        md.append("## Test-time corruptions (BiCLIP section 3.4)\n")
        for i, m in enumerate(metrics):
            rows = [
                [b, row_cells(b, "clean", "clean")[i], *(row_cells(b, "corruption", c)[i] for c in corr)]
                for b in bundles
            ]
            md.append(f"{m}:\n")
            md.append(_table(["bundle", "clean", *corr], rows, 1))
        values = {
            b: {
                "none": cells.get((b, "clean", "clean"), {}).get("Dice", (None, None))[:2],
                **{c: cells.get((b, "corruption", c), {}).get("Dice", (None, None))[:2] for c in corr},
            }
            for b in bundles
        }
        figures["dice_vs_corruption"] = out / "dice_vs_corruption.png"
        rf.plot_dice_vs_corruption(values, figures["dice_vs_corruption"])

    # low data
    fr = [f"{f:g}" for f in settings.get("fractions") or []]
    if "low_data" in settings.get("protocols", []) and fr:
        md.append("## Low-data regimes (BiCLIP section 3.3, `train_fraction`)\n")
        rows = [
            [
                b,
                *(row_cells(b, "low_data", f)[0] for f in fr),
                format_cell(cells.get((b, "clean", "clean"), {}).get("Dice")),
            ]
            for b in bundles
        ]
        md.append("Dice:\n")
        md.append(_table(["bundle", *fr, "1"], rows, 1))
        values = {}
        for b in bundles:
            values[b] = {float(f): cells[(b, "low_data", f)]["Dice"][:2] for f in fr if (b, "low_data", f) in cells}
            if (b, "clean", "clean") in cells:
                values[b][1.0] = cells[(b, "clean", "clean")]["Dice"][:2]
        figures["dice_vs_fraction"] = out / "dice_vs_fraction.png"
        rf.plot_dice_vs_fraction(values, figures["dice_vs_fraction"])

    # sites
    site_groups: dict[str, dict[str, dict[str, tuple]]] = {}
    per_site = _per_site(records)
    if per_site:
        md.append("## Dice per site (clean test split, from `per_case.csv`)\n")
        sites = sorted({s for v in per_site.values() for s in v})
        md.append(
            _table(["bundle", *sites], [[b, *(format_cell(per_site[b].get(s)) for s in sites)] for b in per_site], 1)
        )
        site_groups["test split, per site"] = {b: {s: v[:2] for s, v in sv.items()} for b, sv in per_site.items()}
    loso = report.get("loso") or {}
    if loso.get("sites"):
        md.append("## Leave-one-site-out (MCDRL section 5.1; held-out site = test data)\n")
        sites = list(loso["sites"])
        rows = []
        for b in bundles:
            dice = [cells.get((b, "loso", s), {}).get("Dice") for s in sites]
            means = [d[0] for d in dice if d and d[0] is not None]
            avg = statistics.fmean(means) if len(means) == len(sites) else None
            rows.append([b, *(row_cells(b, "loso", s)[0] for s in sites), "-" if avg is None else f"{avg:.4f}"])
        md.append(_table(["bundle", *sites, "Average"], rows, 1))
        site_groups["leave-one-site-out, held-out site"] = {
            b: {s: cells[(b, "loso", s)]["Dice"][:2] for s in sites if (b, "loso", s) in cells} for b in bundles
        }
    elif loso.get("note"):
        md.append(f"## Leave-one-site-out\n\n{loso['note']}\n")
    if site_groups:
        figures["dice_per_site"] = out / "dice_per_site.png"
        rf.plot_per_site(site_groups, figures["dice_per_site"])

    # overlays: first seed's clean model of each bundle
    cases = report.get("overlay_cases") or []
    if cases:
        preds: dict[str, dict[str, Path | None]] = {}
        scores: dict[str, dict[str, float]] = {}
        for b in bundles:
            rec = next((r for r in records if r["bundle"] == b and r["protocol"] == "clean"), None)
            eval_dir = Path(rec["eval_dir"]) if rec else None
            preds[b] = {
                c["name"]: (eval_dir / "predictions" / (Path(c["name"]).stem + ".png")) if eval_dir else None
                for c in cases
            }
            scores[b] = _case_scores(eval_dir) if eval_dir else {}
        figures["overlays"] = out / "overlays.png"
        rf.plot_overlays(cases, preds, figures["overlays"], scores)

    md.append("## Figures\n")
    captions = {
        "dice_per_bundle": "Dice per bundle (error bar: std over seeds); text-guided bundles also with another image's note",
        "dice_vs_corruption": "Dice against corruption level (low-dose noise, motion blur)",
        "dice_vs_fraction": "Dice against the share of training images (train_fraction)",
        "dice_per_site": "Dice per site (clean test split; leave-one-site-out held-out sites)",
        "overlays": "fixed test cases: ground truth (green) and prediction (red) outlines, the note as caption (first seed)",
    }
    for name, path in figures.items():
        md.append(f"![{captions[name]}]({path.name})\n\n{captions[name]}.\n")
    text = "\n".join(md)
    (out / "report.md").write_text(text, encoding="utf-8")
    with open(out / "report.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=str)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bundle", "protocol", "condition", "seed", "metric", "value"])
        for r in records:
            for m, v in (r["metrics"] or {}).items():
                w.writerow([r["bundle"], r["protocol"], r["condition"], r["seed"], m, v])
    return {"report": out / "report.md", "figures": figures}


def _paired(records: Sequence[Mapping[str, Any]], bundle: str, protocol: str, condition: str) -> list[float]:
    """Per seed, the Dice of (protocol, condition) minus the clean Dice of the same seed."""
    clean = {
        r["seed"]: r["metrics"]["Dice"]
        for r in records
        if r["bundle"] == bundle and r["protocol"] == "clean" and r["metrics"]
    }
    return [
        r["metrics"]["Dice"] - clean[r["seed"]]
        for r in records
        if r["bundle"] == bundle
        and r["protocol"] == protocol
        and str(r["condition"]) == condition
        and r["metrics"]
        and r["seed"] in clean
    ]


# ----------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line interface (module docstring)."""
    ap = argparse.ArgumentParser(description="Every bundle, every protocol, several seeds: one report folder.")
    ap.add_argument("--bundles", nargs="+", required=True, help="bundle folders, e.g. bundles/unet_baseline")
    ap.add_argument("--dataset_dir", required=True, help="dataset folder passed to every run as --dataset_dir")
    ap.add_argument("--synthetic", choices=["chest_xray", "endoscopy"], default=None, help="as tools/compare.py")
    ap.add_argument("--datalist_file", default=None, help="use this datalist for every run")
    ap.add_argument("--max_epochs", type=int, required=True, help="passed to every training run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (default 0)")
    ap.add_argument(
        "--protocols",
        default="clean",
        help=f"comma-separated, from {','.join(PROTOCOLS)} (default clean; clean is always run)",
    )
    ap.add_argument("--out", required=True, help="report folder: report.md, figures, runs/, datalists/")
    ap.add_argument("--extra", action="append", metavar="KEY=VALUE", help="override for every run; repeatable")
    ap.add_argument(
        "--bundle_extra", action="append", metavar="NAME:KEY=VALUE", help="override for one bundle; repeatable"
    )
    ap.add_argument("--baseline", default="unet_baseline", help="folder name of the baseline (default unet_baseline)")
    ap.add_argument(
        "--baseline_lr_grid",
        type=float,
        nargs="*",
        default=list(DEFAULT_LR_GRID),
        help="learning rates tried for the baseline, chosen on validation Dice (default 1e-3 3e-3 1e-2; none: off)",
    )
    ap.add_argument("--baseline_lr_key", default="learning_rate", help="the baseline's learning-rate key")
    ap.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS), help="low_data fractions")
    from common.transforms.corruption import CORRUPTIONS

    ap.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS[1:]), help="corruption protocol's set")
    ap.add_argument("--corruption_seed", type=int, default=0, help="seed of the corruptions (default 0)")
    ap.add_argument("--ablation_seed", type=int, default=0, help="seed of the text swap (default 0)")
    ap.add_argument("--overlay_cases", type=int, default=4, help="first N test images in the overlay grid (default 4)")
    ap.add_argument("--keep_going", action="store_true", help="continue after a failed run (its cells read failed)")
    ap.add_argument("--overwrite", action="store_true", help="redo finished steps")
    ap.add_argument("--in_process", action="store_true", help="run the steps in this process (same results)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (module docstring); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        report = _run(args)
    except STEP_ERRORS as e:
        print(f"[report] error: {e}", file=sys.stderr)
        return 1
    written = write_report(args.out, report)
    print(f"[report] wrote {written['report']} and {len(written['figures'])} figures")
    if report["failures"]:
        print(f"[report] {len(report['failures'])} run(s) failed: see {written['report']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
