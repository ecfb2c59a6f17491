# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Write a deterministic synthetic data set (chest X-ray in the LViT QaTa layout, or endoscopy in the MAdapter
layout) and print its summary as JSON.

Examples::

    python tools/make_synthetic.py chest_xray data/synthetic_cxr --num-train 160 --num-val 40 --num-test 40
    python tools/make_synthetic.py endoscopy data/synthetic_endo --image-size 128 --seed 1

See :mod:`common.data.synthetic` for the layouts, the sentence grammars and the marker file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.data.synthetic import generate_chest_xray_dataset, generate_endoscopy_dataset  # noqa: E402

__all__ = ["build_parser", "main"]

_DEFAULTS = {
    "chest_xray": {"num_train": 160, "num_val": 40, "num_test": 40},
    "endoscopy": {"num_train": 200, "num_test": 50},
}


def build_parser() -> argparse.ArgumentParser:
    """Command-line parser.

    Returns:
        The parser: positional ``dataset`` (``chest_xray`` or ``endoscopy``) and ``root``; options
        ``--num-train``, ``--num-val`` (chest X-ray only), ``--num-test`` (defaults: 160/40/40 for chest X-ray,
        200/-/50 for endoscopy), ``--image-size`` (default 256) and ``--seed`` (default 0).
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("dataset", choices=sorted(_DEFAULTS), help="which phantom set to write")
    parser.add_argument("root", help="output folder (absent, empty, or the same synthetic set)")
    parser.add_argument("--num-train", type=int, default=None, help="training images (160 / 200)")
    parser.add_argument("--num-val", type=int, default=None, help="validation images, chest_xray only (40)")
    parser.add_argument("--num-test", type=int, default=None, help="test images (40 / 50)")
    parser.add_argument("--image-size", type=int, default=256, help="height and width in pixels, >= 32 (256)")
    parser.add_argument("--seed", type=int, default=0, help="non-negative seed (0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success. Bad arguments exit with status 2 and a message naming the argument or the folder.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    counts = dict(_DEFAULTS[args.dataset])
    for key in ("num_train", "num_val", "num_test"):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in counts:
            parser.error(f"--{key.replace('_', '-')} is not used by the {args.dataset} generator")
        counts[key] = value
    generator = generate_chest_xray_dataset if args.dataset == "chest_xray" else generate_endoscopy_dataset
    try:
        summary = generator(args.root, image_size=args.image_size, seed=args.seed, **counts)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
