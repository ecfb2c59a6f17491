# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Resumable train/evaluate steps shared by ``tools/corruption_eval.py`` and ``tools/leave_one_site_out.py``.

A step is one ``python -m monai.bundle run ...`` subprocess (run by ``tools/compare.py``'s :func:`run_logged`, output
in a log file). When it succeeds, a marker ``<run dir>/.<step>_done.json`` records the command line, the wall-clock
seconds and the time; a later call with the SAME command finds the marker and skips the step (a finished run is not
redone), and a call with a different command stops with an error instead of mixing two settings in one folder
(use another ``--out``, or ``--overwrite``). A failed or interrupted step leaves no marker and runs again.

``--in_process`` (both tools) runs each step in the tool's own Python process (:func:`run_in_process`) instead:
same results, no interpreter start-up per step. The marker records the same command either way, so a protocol
started one way can be resumed the other way.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import datetime
import json
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TOOLS_DIR = Path(__file__).resolve().parent
if str(TOOLS_DIR) not in sys.path:
    sys.path.insert(0, str(TOOLS_DIR))

from compare import (  # noqa: E402
    REPO_ROOT,
    SubprocessError,
    _bundle_command,
    parse_extra,
    read_metrics_csv,
    resolve_bundles,
    run_logged,
)

__all__ = [
    "REPO_ROOT",
    "SubprocessError",
    "STEP_ERRORS",
    "StepMismatchError",
    "bundle_command",
    "read_metrics_csv",
    "read_per_case",
    "resolve_bundles",
    "resumable_step",
    "run_in_process",
    "parse_extra",
]


class StepMismatchError(RuntimeError):
    """A finished step's marker records another command than the one requested."""


STEP_ERRORS = (SubprocessError, StepMismatchError, FileNotFoundError, FileExistsError, ValueError)
"""The errors a protocol tool reports as one ``error:`` line and exit status 1 (a failed step, a changed command in a
resumed folder, a missing or existing path, a bad argument)."""


def bundle_command(python: str, config_files: Sequence[Path], bundle: Path, output_dir: Path, args: list[str]):
    """``python -m monai.bundle run --config_file ... --bundle_root BUNDLE --output_dir OUT <args>`` (a list)."""
    return _bundle_command(python, list(config_files), bundle, output_dir, args)


def _cli_value(text: str) -> Any:
    """``"64"`` -> 64, ``"[1, 2]"`` -> [1, 2], ``"False"`` -> False, anything else stays a string (as python-fire)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_in_process(cmd: list[str], log_file: Path) -> float:
    """
    Run a ``python -m monai.bundle run --key value ...`` command line in THIS process (``monai.bundle.run`` with
    the same arguments, read as the CLI reads them); return the wall-clock seconds.

    The results are those of the subprocess (the same configs and overrides; every bundle's ``initialize`` calls
    ``monai.utils.set_determinism``); what is saved is one Python start-up per step, which on a loaded CPU machine
    costs more than a small evaluation. Log records and printed output go to ``log_file``.

    Raises:
        ValueError: ``cmd`` is not a ``monai.bundle run`` command with ``--key value`` pairs.
        SubprocessError: the run raised (or exited non-zero); the message holds the command and the log tail.
    """
    if cmd[1:4] != ["-m", "monai.bundle", "run"] or len(cmd[4:]) % 2:
        raise ValueError(f"not a 'python -m monai.bundle run --key value ...' command: {shlex.join(cmd)}")
    kwargs = {key[2:]: _cli_value(value) for key, value in zip(cmd[4::2], cmd[5::2])}
    from monai.bundle import run

    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}  (run in-process)\n")
        log.flush()
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        failure: BaseException | None = None
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                run(**kwargs)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported with the command, as a subprocess failure
            if not (isinstance(e, SystemExit) and e.code in (0, None)):
                failure = e
                traceback.print_exception(e, file=log)
        finally:
            root.removeHandler(handler)
    if failure is not None:
        raise SubprocessError(
            f"in-process run failed ({type(failure).__name__}: {failure}):\n  {shlex.join(cmd)}\n"
            f"last lines of {log_file}:\n" + "".join(log_file.read_text(encoding="utf-8").splitlines(True)[-40:])
        )
    return time.perf_counter() - start


def resumable_step(
    name: str, cmd: list[str], run_dir: Path, log_file: Path, overwrite: bool = False, in_process: bool = False
) -> dict:
    """
    Run ``cmd`` unless ``run_dir/.<name>_done.json`` records the same command (module docstring).

    Args:
        name: step name, e.g. ``"train"`` or ``"eval_dose_140"``.
        cmd: the command line (a list).
        run_dir: the run's output folder (the marker goes there).
        log_file: where the subprocess output goes.
        overwrite: run again even when a marker exists (the marker is replaced), default ``False``.
        in_process: run it with :func:`run_in_process` instead of a subprocess, default ``False``.

    Returns:
        ``{"command", "seconds", "finished", "reused"}``; ``reused`` is True when the step was skipped.

    Raises:
        StepMismatchError: the marker records a different command (and not ``overwrite``).
        SubprocessError: the subprocess failed (no marker is written).
    """
    marker = run_dir / f".{name}_done.json"
    command = shlex.join(cmd)
    if marker.is_file() and not overwrite:
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("command") != command:
            raise StepMismatchError(
                f"{marker} records another command:\n  done:      {done.get('command')}\n  requested: {command}\n"
                "use another --out folder, or --overwrite to redo it."
            )
        return {**done, "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    if marker.exists():
        marker.unlink()
    seconds = run_in_process(cmd, log_file) if in_process else run_logged(cmd, log_file)
    record = {
        "command": command,
        "in_process": in_process,
        "seconds": seconds,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "log": str(log_file),
    }
    marker.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return {**record, "reused": False}


def read_per_case(path: Path) -> list[dict[str, Any]]:
    """
    Rows of a ``per_case.csv`` (``common.handlers.write_per_case_table``): metric columns as floats (``nan``
    kept), ``filename``/``site``/``class`` as strings.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (the evaluation writes it in its finalize step).")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out: dict[str, Any] = {}
            for k, v in row.items():
                if k in ("filename", "site", "class"):
                    out[k] = v
                    continue
                try:
                    out[k] = float(v)
                except (TypeError, ValueError):
                    out[k] = v
            rows.append(out)
    return rows
