# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Export a bundle's ``network_def`` to ONNX with every input (image and text), checked with onnxruntime.

Run from the repository root (or with ``PYTHONPATH`` on a packaged bundle and ``--bundle_root``)::

    python tools/export_onnx.py bundles/lvit                              # models/model.pt -> models/model.onnx
    python tools/export_onnx.py bundles/causalclipseg --static_batch --batch 1    # batch-dependent operators
    python tools/export_onnx.py bundles/unet_baseline --random_weights --extra channels=[4,8,16,32] --extra strides=[2,2,2]

The network is built from ``configs/inference.json`` (plus ``--extra key=value`` overrides, values read as Python
literals), the weights are loaded from ``--ckpt_file`` (a flat state dict as ``CheckpointSaver`` writes it, or a
``{"model": state_dict}`` checkpoint), the example inputs come from ``metadata.json`` ``network_data_format.inputs``
(the image at the config's ``image_size``, sequences at its ``num_tokens``, token ids below its ``text_vocab_size``
where the config has these keys), and :func:`common.utils.onnx_export.export_onnx` exports with a dynamic batch
axis (``--static_batch``: for ``--batch`` images only) and checks the graph with onnxruntime at batch sizes
``--batch``, 1 and 3 (``--static_batch``: two draws of ``--batch``) against eager PyTorch
(``--atol``, default 1e-4). Prints the exporter used and the max absolute difference; the ONNX file records the
bundle name, version and exporter in its metadata. MONAI's own ``python -m monai.bundle onnx_export`` feeds a
single image input and cannot export the text-guided networks (see ``common/utils/onnx_export.py``).

Exit status 0 on success; 1 with a message naming the bundle, file or key when the bundle or checkpoint is missing,
an override is malformed, or no exporter gives a graph within the tolerance (each exporter's reason is printed).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def parse_overrides(items: list[str] | None) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``, each value a Python literal when it parses as one, else a string.

    Raises:
        ValueError: an item without ``=`` or with an empty key.
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--extra {item!r}: expected key=value, e.g. image_size=96.")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def build_network(bundle_root: Path, config_file: Path, meta_file: Path, overrides: dict):
    """``network_def`` of ``config_file`` with ``overrides``, and the parser (for ``image_size`` etc.)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(meta_file))
    parser.update({"bundle_root": str(bundle_root), **overrides})
    return parser.get_parsed_content("network_def"), parser


def load_weights(net, ckpt_file: Path) -> None:
    """Load a flat state dict, or the ``"model"`` entry of a checkpoint, into ``net`` (strict)."""
    import torch

    state = torch.load(str(ckpt_file), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    net.load_state_dict(state)


def _config_int(parser, key: str) -> int | None:
    if key not in parser:
        return None
    value = parser.get_parsed_content(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def example_inputs(parser, meta: dict, batch: int, seed: int = 0) -> dict:
    """Inputs from ``meta["network_data_format"]["inputs"]`` at the sizes of the parsed config."""
    from common.utils.onnx_export import metadata_inputs

    inputs_format = meta["network_data_format"]["inputs"]
    vocab = _config_int(parser, "text_vocab_size")
    high = {}
    if vocab:
        for name, desc in inputs_format.items():
            if name != "image" and desc.get("value_range"):
                high[name] = min(int(desc["value_range"][1]), vocab - 1)
    return metadata_inputs(
        inputs_format,
        batch,
        image_size=_config_int(parser, "image_size"),
        num_tokens=_config_int(parser, "num_tokens"),
        high=high,
        seed=seed,
    )


def export_bundle(
    bundle_root: Path,
    filepath: Path | None = None,
    ckpt_file: Path | None = None,
    random_weights: bool = False,
    exporter: str = "auto",
    batch: int = 2,
    atol: float = 1e-4,
    overrides: dict | None = None,
    static_batch: bool = False,
):
    """Export ``bundle_root``'s network (see the module docstring); returns the :class:`OnnxExportResult`.

    With ``static_batch`` the graph is exported for batch size ``batch`` only (checked on a second draw of that
    size), for networks whose operators depend on the batch size (CausalCLIPSeg's per-sample dynamic kernels).

    Raises:
        FileNotFoundError: a missing bundle config, metadata or checkpoint file (named).
        common.utils.onnx_export.OnnxExportError: no exporter within ``atol``.
    """
    import onnx

    from common.utils.onnx_export import export_onnx

    bundle_root = Path(bundle_root)
    config_file, meta_file = bundle_root / "configs" / "inference.json", bundle_root / "configs" / "metadata.json"
    for f in (config_file, meta_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not found (is {bundle_root} a bundle folder?).")
    meta = json.loads(meta_file.read_text())
    net, parser = build_network(bundle_root, config_file, meta_file, overrides or {})
    if not random_weights:
        ckpt_file = Path(ckpt_file) if ckpt_file else bundle_root / "models" / "model.pt"
        if not ckpt_file.is_file():
            raise FileNotFoundError(
                f"{ckpt_file}: checkpoint not found; train the bundle first, pass --ckpt_file, or --random_weights."
            )
        load_weights(net, ckpt_file)
    inputs = example_inputs(parser, meta, batch, seed=0)
    sizes = (batch,) if static_batch else (1, 3)
    checks = [example_inputs(parser, meta, b, seed=1 + b) for b in sizes]
    filepath = Path(filepath) if filepath else bundle_root / "models" / "model.onnx"
    output_name = next(iter(meta["network_data_format"]["outputs"]), "pred")
    result = export_onnx(
        net,
        inputs,
        filepath,
        exporter=exporter,
        check_inputs=checks,
        atol=atol,
        output_name=output_name,
        dynamic_batch=not static_batch,
    )
    model = onnx.load(str(filepath), load_external_data=False)
    props = {"bundle": bundle_root.resolve().name, "version": str(meta.get("version", "")), "exporter": result.exporter}
    props["batch"] = str(batch) if static_batch else "dynamic"
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(filepath))
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="bundle folder, e.g. bundles/lvit (or a downloaded bundle)")
    ap.add_argument("--filepath", default=None, help="ONNX file to write (default: <bundle>/models/model.onnx)")
    ap.add_argument("--ckpt_file", default=None, help="weights (default: <bundle>/models/model.pt)")
    ap.add_argument("--random_weights", action="store_true", help="export the freshly initialised network")
    ap.add_argument("--exporter", default="auto", choices=["auto", "torchscript", "dynamo"])
    ap.add_argument("--batch", type=int, default=2, help="batch size of the example inputs (the axis is dynamic)")
    ap.add_argument(
        "--static_batch", action="store_true", help="export for --batch images only (batch-dependent operators)"
    )
    ap.add_argument("--atol", type=float, default=1e-4, help="largest accepted max |onnxruntime - PyTorch|")
    ap.add_argument("--extra", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    args = ap.parse_args(argv)
    from common.utils.onnx_export import OnnxExportError

    try:
        result = export_bundle(
            Path(args.bundle),
            filepath=args.filepath,
            ckpt_file=args.ckpt_file,
            random_weights=args.random_weights,
            exporter=args.exporter,
            batch=args.batch,
            atol=args.atol,
            overrides=parse_overrides(args.extra),
            static_batch=args.static_batch,
        )
    except OnnxExportError as err:
        print(f"export_onnx: {args.bundle}: {err}", file=sys.stderr)
        if not args.static_batch:
            print("export_onnx: with a batch-dependent operator, try --static_batch --batch 1", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        root = err
        while root.__cause__ is not None:  # MONAI wraps config errors ("Failed to evaluate ..."): show the cause
            root = root.__cause__
        cause = "" if root is err else f" (caused by {type(root).__name__}: {root})"
        print(f"export_onnx: {args.bundle}: {type(err).__name__}: {err}{cause}", file=sys.stderr)
        return 1
    for name, reason in result.failed.items():
        print(f"exporter {name} not used: {reason}")
    print(
        f"wrote {result.filepath} (exporter {result.exporter}, max |onnxruntime - PyTorch| = {result.max_abs_diff:.3g})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
