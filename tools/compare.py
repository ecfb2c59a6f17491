# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Train and evaluate several bundles on the same datalist and tabulate Dice, IoU, HD95, ASSD and training time.

Run from the repository root (nothing needs installing)::

    python tools/compare.py --bundles bundles/unet_baseline bundles/lvit --dataset_dir data/synthetic_cxr \\
        --synthetic chest_xray --max_epochs 20 --seed 0 --out out/compare --text_ablation test

For each bundle the two project-contract commands run as subprocesses from the repository root::

    python -m monai.bundle run --config_file BUNDLE/configs/train.json --bundle_root BUNDLE --dataset_dir D \\
        --output_dir OUT/<bundle>[_ablated] --max_epochs N --seed S --datalist_file F [--key value ...]
    python -m monai.bundle run --config_file "['BUNDLE/configs/train.json','BUNDLE/configs/evaluate.json']" \\
        (same arguments)

and ``OUT/<bundle>[_ablated]/eval/metrics.csv`` (written by ``monai.handlers.MetricsSaver``) is read. Every run gets
the same datalist file ``F``, passed explicitly: ``--datalist_file`` when given; otherwise the first bundle's own
``datalist_file`` item of ``train.json`` is evaluated in this process (normally its ``common.data.ensure_datalist``
call, which generates the synthetic set on first use) with ``dataset_dir`` = D, ``seed`` = S, ``synthetic`` =
``--synthetic`` when given, and the ``--extra`` overrides applied, so the data are those that bundle would make
itself (e.g. its ``synthetic_num_train``); a bundle without that key falls back to
``common.data.ensure_datalist(D, synthetic=--synthetic)`` with that function's defaults.

Text ablation (does the text matter?): a copy of the datalist with absolute paths in which every item of the chosen
splits carries the text of ANOTHER item of the same split (:func:`derange_texts`):

- ``none`` (default): one condition per bundle, ``original``;
- ``test``: also ``shuffled-test``: the model trained with the original texts is evaluated with shuffled test texts
  (its ``models/`` folder is copied to ``OUT/<bundle>_ablated``, no second training);
- ``all``: also ``shuffled-all``: a second model is trained AND evaluated with shuffled texts in every split.

Outputs: ``OUT/compare.md`` (one Markdown table, also printed), ``OUT/compare.json`` (everything, including the
commands), ``OUT/logs/*.log`` (each subprocess's output). Training time is the wall-clock time of the training
subprocess (interpreter start-up included).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

__all__ = [
    "REQUIRED_METRICS",
    "SubprocessError",
    "derangement_indices",
    "derange_texts",
    "ablate_datalist",
    "parse_extra",
    "read_metrics_csv",
    "resolve_bundles",
    "run_logged",
    "format_table",
    "main",
]

REQUIRED_METRICS = ("Dice", "IoU", "HD95", "ASSD")
PATH_KEYS = ("image", "label", "lungs")  # lungs: common.data.datalist.OPTIONAL_PATH_KEYS
ABLATION_SPLITS = {"test": ("test",), "all": None}  # None: every split
CONDITION_NAMES = {"none": "original", "test": "shuffled-test", "all": "shuffled-all"}
TAIL_LINES = 40

# one number, not part of an identifier or of a device string: matches 0.85 in "0.85", "tensor(0.85)",
# "np.float64(0.85)", "tensor(0.85, device='cuda:0')", and nan / inf
_NUMBER = re.compile(r"(?<![\w.:])[-+]?(?:nan|inf|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])", re.IGNORECASE)


class SubprocessError(RuntimeError):
    """A training or evaluation subprocess failed; the message holds the command line and the tail of its output."""


def _normalise_text(text: str) -> str:
    return " ".join(str(text).lower().split())


def derangement_indices(texts: Sequence[str], seed: int | str = 0) -> list[int]:
    """For every item, the index of the OTHER item whose text it receives: a seeded derangement avoiding equal texts.

    Items are grouped by text (case and whitespace normalised); the groups, and the items inside each group, are put
    in a seeded random order and laid out contiguously, largest group first; item ``i`` of that layout receives the
    text of item ``(i + m) mod n``, where ``m`` is the size of the largest group. Hence:

    - no item is mapped to itself (``1 <= m < n``), and the mapping is a permutation (every text is used once);
    - when no text is shared by more than half of the items (``m <= n / 2``), every item receives a DIFFERENT text
      string, because two positions ``m`` apart never fall in the same contiguous group;
    - otherwise exactly ``2m - n`` items of the largest group receive another item's identical text, which is the
      fewest possible (its ``m`` items can only receive the ``n - m`` texts of the other groups).

    If every text is the same (``m == n``), the shift is 1: still a derangement of the items.

    Args:
        texts: the texts of one split, in datalist order.
        seed: integer or string seed; the same seed and texts give the same result (``random.Random`` with an
            int/str seed is reproducible across processes and Python hash seeds). Defaults to 0.

    Returns:
        ``source`` with ``source[i] != i``: item ``i`` receives ``texts[source[i]]``.

    Raises:
        ValueError: with exactly one item (no derangement exists).

    Examples::

        >>> src = derangement_indices(["a", "b", "c", "d"], seed=1)
        >>> sorted(src), any(i == s for i, s in enumerate(src))
        ([0, 1, 2, 3], False)
    """
    n = len(texts)
    if n == 0:
        return []
    if n == 1:
        raise ValueError("text ablation needs at least 2 items in a split to swap texts; got 1.")
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(_normalise_text(t), []).append(i)
    ordered_groups = list(groups.values())
    rng.shuffle(ordered_groups)
    for g in ordered_groups:
        rng.shuffle(g)
    ordered_groups.sort(key=len, reverse=True)  # stable: equal sizes keep their shuffled order
    layout = [i for g in ordered_groups for i in g]
    largest = len(ordered_groups[0])
    shift = largest if largest < n else 1
    source = [0] * n
    for pos, item in enumerate(layout):
        source[item] = layout[(pos + shift) % n]
    return source


def derange_texts(texts: Sequence[str], seed: int | str = 0) -> list[str]:
    """The texts re-assigned by :func:`derangement_indices` (same arguments): item ``i`` gets ``texts[source[i]]``."""
    return [texts[j] for j in derangement_indices(texts, seed)]


def ablate_datalist(
    datalist: dict[str, Any], datalist_dir: str | Path, mode: str, seed: int = 0, source: str = "datalist"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy a datalist with absolute ``image``/``label`` paths and deranged texts in the splits chosen by ``mode``.

    Args:
        datalist: the datalist dict (project contract: ``training``/``validation``/``test`` lists of dicts with
            ``image``, ``label`` (relative to ``datalist_dir``) and ``text``).
        datalist_dir: folder of the datalist file, to make relative paths absolute.
        mode: ``"test"`` (only the ``test`` split) or ``"all"`` (every split whose value is a list).
        seed: seed of the derangements; each split uses ``f"{seed}:{split}"``. Defaults to 0.
        source: name of the datalist file, for error messages and the record added to the copy.

    Returns:
        ``(new_datalist, stats)``; ``stats[split] = {"items", "same_text"}`` counts, per ablated split, the items
        that ended up with an identical text string (0 unless one text covers more than half of the split).
        The copy gains a ``"text_ablation"`` record: source, mode, seed, splits.

    Raises:
        ValueError: unknown mode, a selected split missing, an entry without a non-empty ``text``, a split of one.
    """
    if mode not in ABLATION_SPLITS:
        raise ValueError(f"text ablation mode must be one of {sorted(ABLATION_SPLITS)}, got {mode!r}.")
    base = Path(datalist_dir).resolve()
    new: dict[str, Any] = {}
    list_splits = [k for k, v in datalist.items() if isinstance(v, list) and all(isinstance(e, dict) for e in v)]
    selected = list(ABLATION_SPLITS[mode] or list_splits)
    for split in selected:
        if split not in list_splits:
            raise ValueError(f"{source}: text ablation '{mode}' needs a {split!r} list; found {list_splits}.")
    stats: dict[str, Any] = {}
    for key, value in datalist.items():
        if key not in list_splits:
            new[key] = value
            continue
        entries = []
        for entry in value:
            entry = dict(entry)
            for pk in PATH_KEYS:
                if isinstance(entry.get(pk), str) and not os.path.isabs(entry[pk]):
                    entry[pk] = str(base / entry[pk])
            entries.append(entry)
        if key in selected:
            for i, e in enumerate(entries):
                if not isinstance(e.get("text"), str) or not e["text"].strip():
                    raise ValueError(f"{source}: split {key!r} entry {i}: 'text' missing or empty.")
            try:
                texts = derange_texts([e["text"] for e in entries], seed=f"{seed}:{key}")
            except ValueError as err:
                raise ValueError(f"{source}: split {key!r}: {err}") from err
            same = sum(_normalise_text(e["text"]) == _normalise_text(t) for e, t in zip(entries, texts))
            for e, t in zip(entries, texts):
                e["text"] = t
            stats[key] = {"items": len(entries), "same_text": same}
        new[key] = entries
    new["text_ablation"] = {"source": str(source), "mode": mode, "seed": seed, "splits": selected}
    return new, stats


def read_metrics_csv(path: str | Path) -> dict[str, float]:
    """Read the summary ``metrics.csv`` written by ``monai.handlers.MetricsSaver``.

    Format (``monai.handlers.utils.write_metrics_reports``): no header, one line per metric,
    ``f"{name}{delimiter}{str(value)}"``; the delimiter is ``","`` by default (``MetricsSaver(delimiter=...)``, a tab
    is also accepted here). ``str(value)`` may be a plain float, ``nan``/``inf``, or a tensor/numpy repr such as
    ``tensor(0.8123)``; it must hold exactly one number.

    Args:
        path: the ``metrics.csv`` file.

    Returns:
        ``{metric name: value}`` in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line without a delimiter, a value that is not exactly one number, a repeated name, no metric.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the evaluation should write it via MetricsSaver).")
    metrics: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            delimiter = "\t" if "\t" in line else ","
            name, sep, value = line.partition(delimiter)
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"{path}:{lineno}: expected 'name,value', got {line!r}.")
            numbers = _NUMBER.findall(value)
            if len(numbers) != 1:
                raise ValueError(f"{path}:{lineno}: metric {name!r}: expected one number, got {value.strip()!r}.")
            if name in metrics:
                raise ValueError(f"{path}:{lineno}: metric {name!r} appears twice.")
            metrics[name] = float(numbers[0])
    if not metrics:
        raise ValueError(f"{path}: no metric lines.")
    return metrics


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no output captured)"


def run_logged(cmd: list[str], log_file: Path, cwd: Path = REPO_ROOT) -> float:
    """Run ``cmd`` from ``cwd`` with stdout+stderr written to ``log_file``; return the wall-clock seconds.

    ``PYTHONPATH`` is prefixed with the repository root so ``common`` imports in every bundle.

    Raises:
        SubprocessError: non-zero exit status; the message holds the command line, the log path and its tail.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        raise SubprocessError(
            f"command failed with exit status {rc}:\n  {shlex.join(cmd)}\n"
            f"last {TAIL_LINES} lines of {log_file}:\n{_tail(log_file)}"
        )
    return seconds


def _bundle_command(
    python: str, config_files: list[Path], bundle: Path, output_dir: Path, run_args: list[str]
) -> list[str]:
    """``python -m monai.bundle run --config_file ... --bundle_root ... --output_dir ... <run_args>``."""
    config = str(config_files[0]) if len(config_files) == 1 else repr([str(c) for c in config_files])
    cmd = [python, "-m", "monai.bundle", "run", "--config_file", config, "--bundle_root", str(bundle)]
    return cmd + ["--output_dir", str(output_dir), *run_args]


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "missing"
    return f"{value:.{digits}f}"


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def format_table(runs: list[dict[str, Any]]) -> str:
    """One Markdown table: bundle, text condition, Dice, IoU, HD95, ASSD, train time (one row per run)."""
    lines = [
        "| bundle | text condition | Dice | IoU | HD95 | ASSD | train time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        m = r["metrics"]
        train = _fmt_seconds(r["train_seconds"])
        if r.get("train_reused_from"):
            train += f" (model of '{r['train_reused_from']}')"
        lines.append(
            f"| {r['bundle']} | {r['condition']} | {_fmt(m.get('Dice'), 4)} | {_fmt(m.get('IoU'), 4)} "
            f"| {_fmt(m.get('HD95'), 2)} | {_fmt(m.get('ASSD'), 2)} | {train} |"
        )
    return "\n".join(lines) + "\n"


def _literal(text: str) -> Any:
    """``"64"`` -> 64, ``"[1, 2]"`` -> [1, 2], anything else stays a string (as python-fire reads CLI values)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _resolve_datalist(args: argparse.Namespace, bundle: Path, extra: list[str]) -> Path:
    """The one datalist every run gets (see the module docstring)."""
    if args.datalist_file:
        path = Path(args.datalist_file).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--datalist_file {path} not found.")
        return path
    from monai.bundle import ConfigParser

    config_file = bundle / "configs" / "train.json"
    parser = ConfigParser()
    parser.read_config(str(config_file))
    if "datalist_file" not in parser:
        from common.data import ensure_datalist

        return Path(ensure_datalist(str(args.dataset_dir), synthetic=args.synthetic)).resolve()
    overrides: dict[str, Any] = {"bundle_root": str(bundle), "dataset_dir": str(Path(args.dataset_dir).resolve())}
    overrides["seed"] = args.seed
    if args.synthetic is not None:
        overrides["synthetic"] = args.synthetic
    overrides.update({extra[i][2:]: _literal(extra[i + 1]) for i in range(0, len(extra), 2)})
    for key, value in overrides.items():
        try:
            parser[key] = value
        except KeyError:  # e.g. an --extra for a nested section this config lacks: the runs themselves report it
            continue
    path = parser.get_parsed_content("datalist_file")
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise FileNotFoundError(f"{config_file}#datalist_file resolved to {path!r}, which is not a file.")
    return Path(path).resolve()


def _prepare_output_dir(path: Path, overwrite: bool) -> None:
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; pass --overwrite to replace it.")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def resolve_bundles(folders: Sequence[str]) -> list[Path]:
    """The ``--bundles`` folders as absolute paths, checked (shared by the protocol tools).

    Raises:
        ValueError: two folders with the same name (their run folders would collide).
        FileNotFoundError: a folder without ``configs/train.json`` or ``configs/evaluate.json``.
    """
    bundles = [Path(b).resolve() for b in folders]
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):
        raise ValueError(f"--bundles: folder names must be unique, got {names}.")
    for b in bundles:
        for cfg in ("train.json", "evaluate.json"):
            if not (b / "configs" / cfg).is_file():
                raise FileNotFoundError(f"{b / 'configs' / cfg} not found.")
    return bundles


def parse_extra(items: Sequence[str] | None) -> list[str]:
    """``["key=value", ...]`` -> ``["--key", "value", ...]`` (``--extra`` of compare.py and the protocol tools).

    Raises:
        ValueError: an item without ``=``.
    """
    out: list[str] = []
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--extra {item!r}: expected key=value, e.g. train#dataloader#num_workers=0.")
        out += [f"--{key}", value]
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of ``tools/compare.py`` (see the module docstring)."""
    ap = argparse.ArgumentParser(description="Train + evaluate bundles on one datalist; tabulate Dice/IoU/HD95/ASSD.")
    ap.add_argument("--bundles", nargs="+", required=True, help="bundle folders, e.g. bundles/unet_baseline")
    ap.add_argument("--dataset_dir", required=True, help="dataset folder passed to every bundle as --dataset_dir")
    ap.add_argument(
        "--synthetic",
        choices=["chest_xray", "endoscopy"],
        default=None,
        help="synthetic kind generated when dataset_dir has no datalist (default: the first bundle's own setting)",
    )
    ap.add_argument("--datalist_file", default=None, help="use this datalist for every run (default: see above)")
    ap.add_argument("--max_epochs", type=int, required=True, help="passed to every training run")
    ap.add_argument("--seed", type=int, default=0, help="passed to every run (default 0)")
    ap.add_argument("--ablation_seed", type=int, default=None, help="seed of the text shuffling (default: --seed)")
    ap.add_argument("--out", required=True, help="output folder: OUT/<bundle>[_ablated], compare.md, compare.json")
    ap.add_argument("--text_ablation", choices=["none", "test", "all"], default="none", help="default none")
    ap.add_argument("--extra", action="append", metavar="KEY=VALUE", help="extra override for every run; repeatable")
    ap.add_argument("--overwrite", action="store_true", help="replace existing non-empty run folders")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the runs (default: this one)")
    return ap


def _run_all(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out).resolve()
    bundles = resolve_bundles(args.bundles)
    extra = parse_extra(args.extra)
    out.mkdir(parents=True, exist_ok=True)
    datalist = _resolve_datalist(args, bundles[0], extra)
    dataset_dir = str(Path(args.dataset_dir).resolve())
    ablation_seed = args.seed if args.ablation_seed is None else args.ablation_seed

    conditions = [("none", datalist)]
    ablation_stats: dict[str, Any] = {}
    if args.text_ablation != "none":
        with open(datalist, encoding="utf-8") as f:
            original = json.load(f)
        ablated, ablation_stats = ablate_datalist(
            original, datalist.parent, args.text_ablation, ablation_seed, source=str(datalist)
        )
        ablated_file = out / f"datalist_shuffled_{args.text_ablation}.json"
        with open(ablated_file, "w", encoding="utf-8") as f:
            json.dump(ablated, f, indent=2)
        conditions.append((args.text_ablation, ablated_file))

    runs: list[dict[str, Any]] = []
    for bundle in bundles:
        train_cfg = bundle / "configs" / "train.json"
        eval_cfgs = [train_cfg, bundle / "configs" / "evaluate.json"]
        original_dir = out / bundle.name
        original_train_seconds: float | None = None
        for mode, dl in conditions:
            run_dir = original_dir if mode == "none" else out / f"{bundle.name}_ablated"
            run_args = ["--dataset_dir", dataset_dir, "--max_epochs", str(args.max_epochs), "--seed", str(args.seed)]
            run_args += ["--datalist_file", str(dl), *extra]
            record: dict[str, Any] = {
                "bundle": bundle.name,
                "bundle_root": str(bundle),
                "condition": CONDITION_NAMES[mode],
                "output_dir": str(run_dir),
                "datalist_file": str(dl),
                "train_seconds": None,
                "train_reused_from": None,
                "commands": [],
            }
            _prepare_output_dir(run_dir, args.overwrite)
            tag = f"{bundle.name}_{CONDITION_NAMES[mode]}"
            if mode == "test":
                shutil.copytree(original_dir / "models", run_dir / "models")
                record["train_seconds"] = original_train_seconds
                record["train_reused_from"] = CONDITION_NAMES["none"]
            else:
                cmd = _bundle_command(args.python, [train_cfg], bundle, run_dir, run_args)
                record["commands"].append(shlex.join(cmd))
                print(f"[compare] {tag}: training (log {out / 'logs' / (tag + '_train.log')})", flush=True)
                record["train_seconds"] = run_logged(cmd, out / "logs" / f"{tag}_train.log")
                if mode == "none":
                    original_train_seconds = record["train_seconds"]
            cmd = _bundle_command(args.python, eval_cfgs, bundle, run_dir, run_args)
            record["commands"].append(shlex.join(cmd))
            print(f"[compare] {tag}: evaluating (log {out / 'logs' / (tag + '_eval.log')})", flush=True)
            record["eval_seconds"] = run_logged(cmd, out / "logs" / f"{tag}_eval.log")
            record["metrics"] = read_metrics_csv(run_dir / "eval" / "metrics.csv")
            record["missing_metrics"] = [m for m in REQUIRED_METRICS if m not in record["metrics"]]
            runs.append(record)
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": {
            "bundles": [str(b) for b in bundles],
            "dataset_dir": dataset_dir,
            "datalist_file": str(datalist),
            "synthetic": args.synthetic,
            "max_epochs": args.max_epochs,
            "seed": args.seed,
            "text_ablation": args.text_ablation,
            "ablation_seed": ablation_seed,
            "extra": list(args.extra or []),
        },
        "text_ablation_stats": ablation_stats,
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run every bundle, write ``compare.md``/``compare.json``, print the table; return the exit code.

    Returns 1 (after writing the outputs) when a run's ``metrics.csv`` lacks one of :data:`REQUIRED_METRICS`, and
    2 with the failing command line and its output tail when a subprocess fails.
    """
    args = build_parser().parse_args(argv)
    try:
        report = _run_all(args)
    except (SubprocessError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"[compare] error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    table = format_table(report["runs"])
    settings = report["settings"]
    header = (
        f"Datalist: `{settings['datalist_file']}`; max_epochs {settings['max_epochs']}; seed {settings['seed']}; "
        f"text ablation: {settings['text_ablation']}.\n\n"
    )
    (out / "compare.md").write_text(header + table, encoding="utf-8")
    with open(out / "compare.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(table)
    print(f"[compare] wrote {out / 'compare.md'} and {out / 'compare.json'}")
    missing = {
        f"{r['bundle']} ({r['condition']})": r["missing_metrics"] for r in report["runs"] if r["missing_metrics"]
    }
    if missing:
        print(f"[compare] metrics.csv lacks required metrics {list(REQUIRED_METRICS)}: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
