# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Time bundles' networks on two source trees side by side (a base commit and the working tree), same weights.

Issue 11 section 3 asks for every bundle's inference and training step to be measured "side by side in one run
against the code as it was when this issue started (``git worktree`` of that commit), same machine, batch 1 and 8,
equal output (max abs difference of logits < 1e-4)". Run from the repository root::

    git worktree add /tmp/base89 89e7238          # the base tree, once
    python tools/speed_compare.py unet_baseline lvit --base /tmp/base89 --image_size 64 --override image_size=64
    python tools/speed_compare.py lvit --base . --base_override fused_optimizer=False --phases train_step  # one lever
    python tools/speed_compare.py unet_baseline --base /tmp/base89 --phases inference_onnx  # ONNX Runtime vs eager

Procedure:

1. Two worker processes start at once, one per tree (``--base`` and ``--new``, default: this repository), each with
   its tree first on ``sys.path``, so the bundles' ``common`` imports come from that tree (the worker checks
   ``common.__file__``). They serve every bundle of the run. For each bundle both build ``network_def`` with
   :func:`tools.benchmark.load_network` (the ``benchmark.py`` of THIS repository, so both sides are measured by one
   procedure) and, per batch size, its loss and a fresh optimizer with :func:`tools.benchmark.make_train_components`
   from their own tree's ``train.json``. ``--override`` sets config keys on both sides, ``--base_override`` /
   ``--new_override`` on one side only (e.g. one lever off).
2. Same weights: the base network's ``state_dict`` (BatchNorm statistics included) is loaded into both sides before
   each batch size; a key that does not fit is an error naming the keys. Same inputs:
   :func:`tools.benchmark.build_inputs` once per batch size (``--seed``), sent to both.
3. Parity: eval-mode logits (the first tensor of the output, :func:`tools.benchmark._primary_output`) must agree to
   ``--tolerance`` (max abs difference, default 1e-4); the training loss of one batch (train mode, the same random
   label, the RNG seeded identically before the forward) must agree to the same tolerance relative to
   ``max(1, |loss|)``, before AND after one optimizer step (so an optimizer change must give the same update). With
   the ``inference_onnx`` phase the new side runs its network through :class:`common.utils.OnnxRuntimeNetwork`, the
   bundles' ``inference_backend: "onnxruntime"`` (exported at the first call, run in ONNX Runtime on the CPU with
   the same thread count, tensors converted both ways as in a bundle run), and its logits are checked against the base's eager logits; an export or runtime
   failure becomes a table row with the error instead of ending the run. A parity failure is printed, marked
   ``FAIL`` in the table and gives exit status 1.
4. Timing, interleaved: after ``--warmup`` untimed calls on each side, ``--repeats`` rounds of one call per side,
   the order alternating (A, B, B, A, ...), so load changes of a shared machine hit both sides alike; only one worker
   computes at a time. Inference is ``eval()`` + ``torch.inference_mode()`` + one forward; a training step is
   ``zero_grad`` + forward + loss + backward + ``optimizer.step()`` (the procedure of ``tools/benchmark.py``).
   Reported: the medians and ``ratio = base median / new median`` (above 1: the new tree is faster).

The table (Markdown, printed and written to ``--markdown``) has the columns bundle, batch, phase, base ms, new ms,
ratio, max abs diff (logits for the inference rows, the loss for ``train_step`` rows); ``--out`` gets the JSON with
every timed call, the losses and the ``common`` package each side imported. Exit status 1 on bad arguments, a
bundle that fails to build or run (the message names the tree and the error) or a parity failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = ["compare_bundle", "format_markdown", "build_parser", "main"]

_MARK = "@@speed_compare@@ "  # prefix of the worker's reply lines on stdout; any other output is passed to stderr


# ----------------------------------------------------------------------------------------------------------------------
# worker side (one process per tree)
# ----------------------------------------------------------------------------------------------------------------------
def _load_benchmark_module():
    """``tools/benchmark.py`` of the repository this file lives in, under a private module name."""
    spec = importlib.util.spec_from_file_location("_speed_compare_benchmark", REPO_ROOT / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Worker:
    """One tree's side: builds a bundle's network, loss and optimizer and answers the parent's commands.

    One worker serves every bundle of a run (the ``build`` command replaces the previous bundle's objects), so the
    interpreter start and the ``torch``/``monai`` imports are paid once per tree.

    Args:
        tree: the source tree root (its ``common`` package is the one imported).
        device: torch device name.
        seed: seed of the weights, the label and the training-mode RNG.
    """

    def __init__(self, tree: Path, device: str, seed: int) -> None:
        import torch

        import common

        common_file = Path(common.__file__).resolve()
        if tree.resolve() not in common_file.parents:
            raise RuntimeError(f"the worker for {tree} imported common from {common_file}; check PYTHONPATH.")
        self.torch = torch
        self.bench = _load_benchmark_module()
        self.tree = tree
        self.device = torch.device(device)
        self.seed = seed
        self.common_file = str(common_file)
        self.network = None

    def build(self, bundle: str, overrides: dict[str, Any], network_config: str, train_config: str) -> None:
        """Instantiate ``network_def`` of ``<tree>/bundles/<bundle>/configs/<network_config>`` (seeded).

        Args:
            bundle: the bundle folder name under ``<tree>/bundles``.
            overrides: config keys set in both ``network_config`` and ``train_config`` before parsing.
            network_config: config file under ``configs/`` with ``network_def``.
            train_config: config file under ``configs/`` with ``loss`` and ``optimizer``.
        """
        import gc

        self.network = self.loss_fn = self.optimizer = self.onnx_network = None
        gc.collect()
        self.bundle_root = self.tree / "bundles" / bundle
        if not (self.bundle_root / "configs").is_dir():
            raise FileNotFoundError(f"{self.bundle_root}: not a bundle (no configs/ folder).")
        if str(self.bundle_root) not in sys.path:
            sys.path.insert(1, str(self.bundle_root))  # bundle-local `scripts`, as monai.bundle run does
        self.overrides = overrides
        self.network_config, self.train_config = network_config, train_config
        self.torch.manual_seed(self.seed)
        self.network = self.bench.load_network(self.bundle_root, network_config, overrides).to(self.device)
        self.values: list[Any] = []
        self.label = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def _forward_eval(self):
        self.network.eval()
        with self.torch.inference_mode():
            return self.network(*self.values)

    def _train_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.network(*self.values), self.label)
        loss.backward()
        self.optimizer.step()

    def _onnx_setup(self, path: str, logits_path: str) -> dict[str, Any]:
        """Wrap the eval network in :class:`common.utils.OnnxRuntimeNetwork` (the bundles' ``inference_backend:
        "onnxruntime"``, same thread count) and run it once: that exports it with this batch's inputs, checks parity
        with eager PyTorch and opens the ONNX Runtime session that the timed calls use."""
        from common.utils.onnx_runtime import OnnxRuntimeNetwork

        torch = self.torch
        if not all(isinstance(v, torch.Tensor) for v in self.values):
            raise ValueError("ONNX timing needs tensor-only forward inputs.")
        self.network.eval()
        self.onnx_network = OnnxRuntimeNetwork(
            self.network, export_dir=Path(path).parent, num_threads=torch.get_num_threads()
        ).eval()
        out = self._onnx_run()
        torch.save(out.detach().float().cpu(), logits_path)
        return {"shape": list(out.shape), "exports": self.onnx_network.exports}

    def _onnx_run(self):
        with self.torch.inference_mode():
            return self.onnx_network(*self.values)

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Run one command; return the JSON-ready reply."""
        torch = self.torch
        cmd = msg["cmd"]
        if cmd == "build":
            self.build(msg["bundle"], msg["overrides"], msg["network_config"], msg["train_config"])
            return {"common": self.common_file, "torch_threads": torch.get_num_threads()}
        if cmd == "save_state":
            torch.save(self.network.state_dict(), msg["path"])
            return {}
        if cmd == "load_state":
            state = torch.load(msg["path"], map_location=self.device, weights_only=True)
            missing, unexpected = self.network.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise RuntimeError(
                    f"{self.bundle_root}: the base network's state_dict does not fit the new one: missing "
                    f"{list(missing)[:8]}, unexpected {list(unexpected)[:8]}."
                )
            return {}
        if cmd == "set_inputs":
            self.values = [
                v.to(self.device) if isinstance(v, torch.Tensor) else v
                for v in torch.load(msg["path"], weights_only=False)
            ]
            batch = msg["batch"]
            out = self.bench._primary_output(self._forward_eval())
            gen = torch.Generator().manual_seed(self.seed)
            self.label = (torch.rand((batch, 1, *out.shape[2:]), generator=gen) > 0.5).float().to(self.device)
            # fresh optimizer state for every batch size: both sides start the timed steps from the same state
            self.loss_fn, self.optimizer, info = self.bench.make_train_components(
                self.bundle_root, self.network, self.device, self.train_config, self.overrides
            )
            return {"train_setup": info}
        if cmd == "logits":
            out = self.bench._primary_output(self._forward_eval())
            torch.save(out.detach().float().cpu(), msg["path"])
            return {"shape": list(out.shape)}
        if cmd == "loss":
            self.network.train()
            if msg.get("step_first"):  # one training step (the optimizer under test), then the loss
                torch.manual_seed(self.seed + 1)
                self._train_step()
            torch.manual_seed(self.seed)
            loss = self.loss_fn(self.network(*self.values), self.label)
            return {"loss": float(loss.detach())}
        if cmd == "onnx":
            return self._onnx_setup(msg["path"], msg["logits_path"])
        if cmd == "time":
            phase = msg["phase"]
            if phase == "inference_onnx" and self.onnx_network is not None:
                call = self._onnx_run
            else:
                call = self._forward_eval if phase in ("inference", "inference_onnx") else self._train_step
            if phase == "train_step":
                self.network.train()
            times = []
            for _ in range(int(msg.get("n", 1))):
                self._sync()
                start = time.perf_counter()
                call()
                self._sync()
                times.append((time.perf_counter() - start) * 1000.0)
            return {"ms": times}
        raise ValueError(f"unknown worker command {cmd!r}")


def _worker_main(argv: Sequence[str]) -> int:
    """Worker loop: one JSON command per stdin line, one ``_MARK``-prefixed JSON reply per line on stdout."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    tree = Path(a.tree).resolve()
    sys.path[:] = [str(tree)] + [p for p in sys.path if Path(p or ".").resolve() not in (tree, REPO_ROOT)]
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything the bundle code prints must not mix with the replies
    try:
        import torch

        torch.set_num_threads(a.threads)
        worker = _Worker(tree, a.device, a.seed)
        reply.write(_MARK + json.dumps({"ok": True}) + "\n")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which exits with status 1
        reply.write(_MARK + json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        reply.flush()
        return 1
    reply.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("cmd") == "quit":
            break
        try:
            out = {"ok": True, **worker.handle(msg)}
        except Exception as e:  # noqa: BLE001
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply.write(_MARK + json.dumps(out) + "\n")
        reply.flush()
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# parent side
# ----------------------------------------------------------------------------------------------------------------------
class _Side:
    """A running worker process for one tree (started at once; :meth:`wait_ready` waits for its imports).

    Args:
        name: ``"base"`` or ``"new"`` (for messages).
        tree: the tree root.
        args: the parsed command line (device, seed, threads).
    """

    def __init__(self, name: str, tree: Path, args: argparse.Namespace) -> None:
        self.name, self.tree = name, tree
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--tree", str(tree), "--device", args.device]
        cmd += ["--seed", str(args.seed), "--threads", str(args.threads)]
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
        self.proc = subprocess.Popen(
            cmd, cwd=str(tree), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.ready = False

    def wait_ready(self) -> None:
        """Wait until the worker has built its network (both workers start at once; this waits for one)."""
        if not self.ready:
            self._reply()
            self.ready = True

    def _reply(self) -> dict[str, Any]:
        for line in self.proc.stdout:
            if line.startswith(_MARK):
                out = json.loads(line[len(_MARK) :])
                if not out.get("ok"):
                    raise RuntimeError(f"{self.name} tree {self.tree}: {out.get('error')}")
                return out
            sys.stderr.write(line)
        raise RuntimeError(f"{self.name} tree {self.tree}: the worker ended (exit status {self.proc.wait()}).")

    def ask(self, cmd: str, **kw: Any) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        """Stop the worker."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _bundle_inputs(tree: Path, bundle: str, batch: int, args: argparse.Namespace, bench) -> list[Any]:
    import torch

    meta_file = tree / "bundles" / bundle / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{meta_file}: cannot read ({e}).") from e
    desc = meta.get("network_data_format", {}).get("inputs")
    gen = torch.Generator().manual_seed(args.seed + batch)
    values, _ = bench.build_inputs(desc, batch, args.image_size, args.input_shapes, gen, f"{meta_file} inputs")
    return values


def compare_bundle(bundle: str, args: argparse.Namespace, sides: dict[str, _Side]) -> list[dict[str, Any]]:
    """Measure one bundle on both trees; returns one row per (batch size, phase) (see the module docstring).

    Args:
        bundle: the bundle folder name (the same in both trees).
        args: the parsed command line.
        sides: the running ``"base"`` and ``"new"`` workers.
    """
    import torch

    bench = _load_benchmark_module()
    rows: list[dict[str, Any]] = []
    info = {}
    for k, side in sides.items():
        overrides = {**args.overrides, **(args.base_overrides if k == "base" else args.new_overrides)}
        info[k] = side.ask(
            "build",
            bundle=bundle,
            overrides=overrides,
            network_config=args.network_config,
            train_config=args.train_config,
        )
    with tempfile.TemporaryDirectory(prefix="speed_compare_") as tmp:
        state = os.path.join(tmp, "state.pt")
        sides["base"].ask("save_state", path=state)
        for batch in args.batch_sizes:
            for s in sides.values():  # the same weights and BatchNorm statistics on both sides, for every batch
                s.ask("load_state", path=state)
            inputs = os.path.join(tmp, f"inputs_{batch}.pt")
            torch.save(_bundle_inputs(args.new, bundle, batch, args, bench), inputs)
            setup = {k: s.ask("set_inputs", path=inputs, batch=batch)["train_setup"] for k, s in sides.items()}
            logits = {}
            for k, s in sides.items():
                s.ask("logits", path=os.path.join(tmp, f"logits_{k}.pt"))
                logits[k] = torch.load(os.path.join(tmp, f"logits_{k}.pt"))
            if logits["base"].shape != logits["new"].shape:
                logit_diff = float("inf")
            else:
                logit_diff = float((logits["base"] - logits["new"]).abs().max())
            onnx_diff, onnx_error, onnx_exports = None, None, None
            if "inference_onnx" in args.phases:
                onnx_logits = os.path.join(tmp, "logits_onnx.pt")
                try:
                    onnx_path = os.path.join(tmp, f"network_{batch}.onnx")
                    onnx_exports = sides["new"].ask("onnx", path=onnx_path, logits_path=onnx_logits)["exports"]
                except RuntimeError as e:  # an export or ONNX Runtime failure is a result, not the end of the run
                    onnx_error = str(e).splitlines()[0][:300]
                    print(f"[speed_compare] {bundle} B={batch} inference_onnx: {onnx_error}", flush=True)
                else:
                    onnx_out = torch.load(onnx_logits)
                    same_shape = onnx_out.shape == logits["base"].shape
                    onnx_diff = float((logits["base"] - onnx_out).abs().max()) if same_shape else float("inf")
            loss = {k: s.ask("loss")["loss"] for k, s in sides.items()}
            stepped = {k: s.ask("loss", step_first=True)["loss"] for k, s in sides.items()}
            loss_diff = max(
                abs(loss["base"] - loss["new"]) / max(1.0, abs(loss["base"])),
                abs(stepped["base"] - stepped["new"]) / max(1.0, abs(stepped["base"])),
            )
            for phase in args.phases:
                if phase == "inference_onnx" and onnx_error is not None:
                    rows.append({"bundle": bundle, "batch": batch, "phase": phase, "error": onnx_error})
                    continue
                for k in ("base", "new"):
                    sides[k].ask("time", phase=phase, n=args.warmup)
                times: dict[str, list[float]] = {"base": [], "new": []}
                for r in range(args.repeats):
                    for k in ("base", "new") if r % 2 == 0 else ("new", "base"):
                        times[k] += sides[k].ask("time", phase=phase, n=1)["ms"]
                base_ms, new_ms = statistics.median(times["base"]), statistics.median(times["new"])
                diff = {"inference": logit_diff, "train_step": loss_diff, "inference_onnx": onnx_diff}[phase]
                row = {
                    "bundle": bundle,
                    "batch": batch,
                    "phase": phase,
                    "base_ms": base_ms,
                    "new_ms": new_ms,
                    "ratio": base_ms / new_ms if new_ms > 0 else float("inf"),
                    "max_abs_diff": diff,
                    "logits_max_abs_diff": logit_diff,
                    "loss_base": loss["base"],
                    "loss_new": loss["new"],
                    "loss_after_step_base": stepped["base"],
                    "loss_after_step_new": stepped["new"],
                    "parity": bool(max(logit_diff, loss_diff, onnx_diff or 0.0) < args.tolerance),
                    "times_ms": times,
                    "common": {k: v["common"] for k, v in info.items()},
                    "train_setup": setup,
                }
                if phase == "inference_onnx":
                    row["onnx_exports"] = onnx_exports  # the graph(s) the timed calls ran: exporter, parity
                rows.append(row)
                print(_row_line(row), flush=True)
    return rows


def _row_line(row: dict[str, Any]) -> str:
    flag = "" if row["parity"] else "  PARITY FAIL"
    return (
        f"[speed_compare] {row['bundle']} B={row['batch']} {row['phase']}: base {row['base_ms']:.1f} ms, new "
        f"{row['new_ms']:.1f} ms, ratio {row['ratio']:.2f}, max |diff| {row['max_abs_diff']:.2e}{flag}"
    )


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table: bundle, batch, phase, base ms, new ms, ratio, max abs diff (and FAIL on parity)."""
    lines = [
        "| bundle | batch | phase | base ms | new ms | ratio | max abs diff |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['bundle']} | {r['batch']} | {r['phase']} | - | - | - | {r['error'][:120]} |")
            continue
        diff = f"{r['max_abs_diff']:.1e}" + ("" if r["parity"] else " FAIL")
        lines.append(
            f"| {r['bundle']} | {r['batch']} | {r['phase']} | {r['base_ms']:.1f} | {r['new_ms']:.1f} "
            f"| {r['ratio']:.2f} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description="Time bundles' networks on a base tree and the working tree, same weights."
    )
    ap.add_argument("bundles", nargs="+", help="bundle folder names under bundles/, e.g. unet_baseline lvit")
    ap.add_argument("--base", required=True, help="root of the base tree, e.g. a git worktree of the base commit")
    ap.add_argument("--new", default=str(REPO_ROOT), help="root of the new tree (default: this repository)")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8], help="default: 1 8")
    ap.add_argument(
        "--phases",
        nargs="+",
        choices=["inference", "train_step", "inference_onnx"],
        default=["inference", "train_step"],
        help="inference_onnx: the new side runs its network exported to ONNX in ONNX Runtime (CPU), the base eager",
    )
    ap.add_argument("--image_size", type=int, default=None, help="spatial size of the image (default: metadata)")
    ap.add_argument("--input_shape", action="append", metavar="NAME=D1,D2", help="per-sample shape of another input")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per side, interleaved (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls per side first (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker (default 1)")
    ap.add_argument("--device", default="cpu", help="torch device of both workers (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max abs logits / relative loss difference")
    ap.add_argument("--network_config", default="inference.json")
    ap.add_argument("--train_config", default="train.json")
    ap.add_argument("--override", action="append", metavar="KEY=VALUE", help="config key on both sides; repeatable")
    ap.add_argument("--base_override", action="append", metavar="KEY=VALUE", help="config key on the base side only")
    ap.add_argument("--new_override", action="append", metavar="KEY=VALUE", help="config key on the new side only")
    ap.add_argument("--out", default=None, help="JSON path (default: <repo>/out/speed_compare.json)")
    ap.add_argument("--markdown", default=None, help="Markdown table path (default: the JSON path with .md)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0, or 1 when a bundle fails to run or a parity check fails."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"]:
        return _worker_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        parse_overrides = _load_benchmark_module()._parse_overrides
        args.overrides = parse_overrides(args.override, "--override")
        args.base_overrides = parse_overrides(args.base_override, "--base_override")
        args.new_overrides = parse_overrides(args.new_override, "--new_override")
        args.input_shapes = {}
        for item in args.input_shape or []:
            name, _, dims = item.partition("=")
            args.input_shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
        args.base, args.new = Path(args.base).resolve(), Path(args.new).resolve()
        for tree in (args.base, args.new):
            if not (tree / "common").is_dir():
                raise ValueError(f"{tree}: not a source tree of this project (no common/ folder).")
            for bundle in args.bundles:
                if not (tree / "bundles" / bundle / "configs").is_dir():
                    raise ValueError(f"{tree}: no bundle {bundle!r} (no bundles/{bundle}/configs).")
        if args.repeats < 1 or args.warmup < 0 or any(b < 1 for b in args.batch_sizes):
            raise ValueError("--repeats and --batch_sizes must be >= 1, --warmup >= 0.")
        rows = []
        sides = {"base": _Side("base", args.base, args), "new": _Side("new", args.new, args)}
        try:
            for side in sides.values():
                side.wait_ready()
            for bundle in args.bundles:
                rows += compare_bundle(bundle, args, sides)
        finally:
            for side in sides.values():
                side.close()
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"speed_compare: error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else REPO_ROOT / "out" / "speed_compare.json"
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    md.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["speed_compare.py", *argv],
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = format_markdown(rows)
    md.write_text(table, encoding="utf-8")
    print(table)
    print(f"JSON: {out}\nMarkdown: {md}")
    failed = [r for r in rows if "error" not in r and not r["parity"]]
    for r in failed:
        print(
            f"speed_compare: error: {r['bundle']} batch {r['batch']} {r['phase']}: outputs differ (logits max abs diff "
            f"{r['logits_max_abs_diff']:.3e}, loss {r['loss_base']:.6g} vs {r['loss_new']:.6g}; tolerance "
            f"{args.tolerance:g}).",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
