# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Pre-flight check of a datalist: every problem of every entry of the splits a run will read, reported at once,
before any dataset, network or thread exists.

What is checked, per entry, with the rules the bundle's own transforms apply (taken from the configured transform
objects when given, so a changed argument, e.g. ``allow_label_maps``, is honoured):

- the entry itself (keys, non-empty ``text``, files exist): :func:`common.data.check_datalist_split`, the checks of
  :func:`common.data.load_datalist`;
- the image opens (PIL, as MONAI's ``PILReader``; header read plus ``Image.verify()``, which walks the file
  without decoding pixels and finds truncated PNGs; ``decode_images=True`` decodes fully) and its channel count
  can be converted to the network's by ``EnsureNumChannelsd``
  (:func:`common.transforms.channels.channel_conversion_problem`);
- the mask decodes, has the image's spatial size (``CheckSameSpatialShaped``), and, after the mask's
  ``EnsureNumChannelsd``, follows the binarisation rule of ``BinarizeMaskd``
  (:class:`common.transforms.mask.BinarizeMask`); masks are decoded because the rule reads every pixel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from common.data.datalist import check_datalist_split, read_datalist_json
from common.data.report import DataProblem
from common.transforms.channels import EnsureNumChannels, EnsureNumChannelsd, channel_conversion_problem
from common.transforms.checks import CheckSameSpatialShaped
from common.transforms.mask import BinarizeMask, BinarizeMaskd
from common.utils.errors import DataError

__all__ = ["DatalistError", "PreflightRules", "check_datalist", "preflight_datalist", "main"]

logger = logging.getLogger(__name__)


class DatalistError(DataError):
    """
    A datalist has problems; the message lists every one (split, entry index, key, file and what is wrong).

    Args:
        message: the full message.
        problems: the :class:`~common.data.report.DataProblem` list; default ``None`` (empty).
    """

    def __init__(self, message: str, problems: Sequence[DataProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


def _flatten(transforms: Any) -> list:
    if transforms is None:
        return []
    if hasattr(transforms, "transforms") and not isinstance(transforms, (list, tuple)):
        return _flatten(list(transforms.transforms))
    if isinstance(transforms, (list, tuple)):
        out = []
        for t in transforms:
            out.extend(_flatten(t) if isinstance(t, (list, tuple)) or hasattr(t, "transforms") else [t])
        return out
    return [transforms]


class PreflightRules:
    """
    The rules the pre-flight check applies, read from a bundle's deterministic transforms.

    Args:
        transforms: the transforms (a list or a ``Compose``) the training/evaluation pipeline applies after loading;
            the first ``EnsureNumChannelsd`` on ``image_key``, the first ``EnsureNumChannelsd`` and
            ``BinarizeMaskd`` on ``label_key`` and the first ``CheckSameSpatialShaped`` are used. Default ``None``:
            no image channel check, masks brought to one channel, ``BinarizeMask()`` defaults, sizes compared.
            When transforms are given, a rule whose transform is absent from them is not checked.
        image_key: the image key; default ``"image"``.
        label_key: the mask key; default ``"label"``.
    """

    def __init__(self, transforms: Any = None, image_key: str = "image", label_key: str = "label") -> None:
        self.image_key, self.label_key = image_key, label_key
        flat = _flatten(transforms)
        given = transforms is not None

        def first(cls, key):
            return next((t for t in flat if isinstance(t, cls) and key in t.keys), None)

        image_channels = first(EnsureNumChannelsd, image_key)
        label_channels = first(EnsureNumChannelsd, label_key)
        binarize = first(BinarizeMaskd, label_key)
        same_shape = next((t for t in flat if isinstance(t, CheckSameSpatialShaped)), None)
        #: channels the image must be convertible to, or ``None``
        self.image_channels: int | None = image_channels.converter.num_channels if image_channels else None
        #: the mask channel converter, or ``None``
        self.label_converter: EnsureNumChannels | None = (
            label_channels.converter if label_channels else (None if given else EnsureNumChannels(1))
        )
        #: the mask binarisation rule, or ``None``
        self.binarizer: BinarizeMask | None = binarize.binarizer if binarize else (None if given else BinarizeMask())
        #: whether image and mask spatial sizes are compared
        self.check_shape: bool = same_shape is not None or not given


def _channel_first(arr: np.ndarray) -> np.ndarray:
    """A PIL array (H, W) or (H, W, C) as channel-first (C, W, H): the layout of ``PILReader`` (spatial axes
    reversed) followed by ``EnsureChannelFirstd``."""
    arr = arr.T if arr.ndim == 2 else np.moveaxis(arr, (0, 1, 2), (2, 1, 0))
    return arr[None] if arr.ndim == 2 else arr


def _check_image(path: str, rules: PreflightRules, decode: bool) -> tuple[tuple[int, int, int] | None, str | None]:
    """``((channels, W, H), None)`` when the image is usable, else ``(shape or None, problem)``."""
    try:
        with Image.open(path) as im:
            shape = (len(im.getbands()), *im.size)
            if decode:
                im.load()
            else:
                im.verify()
    except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, ... for broken files
        return None, f"image {path}: cannot be read ({type(e).__name__}: {e})"
    if rules.image_channels is not None:
        problem = channel_conversion_problem(shape[0], rules.image_channels)
        if problem is not None:
            return shape, f"image {path}: {problem} (the network takes {rules.image_channels})"
    return shape, None


def _check_mask(
    path: str, image_path: str | None, image_shape: tuple[int, int, int] | None, rules: PreflightRules
) -> str | None:
    """``None`` when the mask passes the bundle's mask transforms, else the problem."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as e:
        return f"mask {path}: cannot be read ({type(e).__name__}: {e})"
    mask = _channel_first(arr)
    if rules.check_shape and image_shape is not None:
        image = np.broadcast_to(np.zeros((), dtype=np.uint8), image_shape)
        data = {
            rules.image_key: image,
            f"{rules.image_key}_meta_dict": {"filename_or_obj": image_path},
            rules.label_key: mask,
            f"{rules.label_key}_meta_dict": {"filename_or_obj": path},
        }
        try:
            CheckSameSpatialShaped(keys=(rules.image_key, rules.label_key))(data)
        except ValueError as e:
            return str(e)
    values = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)  # LoadImaged's default dtype
    hint = ""
    if values.shape[0] > 1 and not bool((values == values[:1]).all()):
        hint = f" (the mask has {values.shape[0]} channels that differ: an RGB photo given as a mask?)"
    try:
        if rules.label_converter is not None:
            values = rules.label_converter(values)
        if rules.binarizer is not None:
            rules.binarizer(values, name=path)
    except ValueError as e:
        message = str(e)
        return (message if path in message else f"mask {path}: {message}") + hint
    return None


def check_datalist(
    datalist_file: str | os.PathLike,
    splits: Iterable[str] = ("training", "validation"),
    transforms: Any = None,
    image_key: str = "image",
    label_key: str = "label",
    decode_images: bool = False,
) -> tuple[list[DataProblem], int]:
    """
    Check every entry of ``splits`` of a datalist (see the module docstring for the rules).

    Args:
        datalist_file: the datalist JSON.
        splits: the splits to check; default ``("training", "validation")``.
        transforms: the pipeline's deterministic transforms, to read the rules from (see :class:`PreflightRules`);
            default ``None``.
        image_key: the image key; default ``"image"``.
        label_key: the mask key; default ``"label"``.
        decode_images: decode every image fully instead of ``Image.verify()``; default ``False``.

    Returns:
        ``(problems, num_entries)``: every problem found, in split and entry order, and the entries checked.

    Raises:
        FileNotFoundError, ValueError: when the datalist file itself is absent or not a JSON object.
    """
    data = read_datalist_json(datalist_file)
    rules = PreflightRules(transforms, image_key=image_key, label_key=label_key)
    problems: list[DataProblem] = []
    num_entries = 0
    for split in splits:
        try:
            indexed, found = check_datalist_split(datalist_file, split, data=data)
        except ValueError as e:
            problems.append(DataProblem(split, None, None, str(e)))
            continue
        problems.extend(found)
        num_entries += len(data[split])
        bad = {(p.index, p.key) for p in found}
        for i, item in indexed:
            image_shape = None
            image_path = item.get(image_key)
            if isinstance(image_path, str) and (i, image_key) not in bad:
                image_shape, problem = _check_image(image_path, rules, decode_images)
                if problem is not None:
                    problems.append(DataProblem(split, i, image_key, problem))
            mask_path = item.get(label_key)
            if isinstance(mask_path, str) and (i, label_key) not in bad:
                problem = _check_mask(mask_path, image_path, image_shape, rules)
                if problem is not None:
                    problems.append(DataProblem(split, i, label_key, problem))
    order = {s: n for n, s in enumerate(splits)}
    problems.sort(key=lambda p: (order.get(p.split, len(order)), -1 if p.index is None else p.index))
    return problems, num_entries


def preflight_datalist(
    datalist_file: str | os.PathLike,
    splits: Iterable[str] = ("training", "validation"),
    transforms: Any = None,
    enabled: bool = True,
    decode_images: bool = False,
    max_listed: int = 200,
) -> dict | None:
    """
    Run :func:`check_datalist` and stop with every problem listed; bundles call it in ``initialize``, before any
    component is built, behind their ``preflight`` key.

    Args:
        datalist_file: the datalist JSON.
        splits: the splits the run reads; default ``("training", "validation")``.
        transforms: the pipeline's deterministic transforms (see :class:`PreflightRules`); default ``None``.
        enabled: ``False`` skips the check (logged); must be a real boolean. Default ``True``.
        decode_images: decode images fully (slower; catches damage that ``Image.verify()`` cannot see, e.g. in
            JPEG data); default ``False``.
        max_listed: problems listed in the message (the count is always complete); default 200.

    Returns:
        ``{"entries": n, "splits": [...], "seconds": t}`` when the data has no problem, ``None`` when skipped.

    Raises:
        ValueError: when ``enabled`` is not a boolean.
        DatalistError: listing every problem (``split '<split>' entry <i> key '<key>': <what>``, ``what`` naming
            the file),
            or naming the datalist file when it is absent or unreadable.
    """
    if not isinstance(enabled, bool):
        raise ValueError(
            f"config key `preflight` must be True or False, got {enabled!r} (on the command line write "
            "`--preflight False`)."
        )
    splits = list(splits)
    if not enabled:
        logger.info("pre-flight check of the datalist skipped (preflight=False).")
        return None
    start = time.perf_counter()
    datalist_file = os.path.abspath(os.fspath(datalist_file))
    threads = torch.get_num_threads()
    # one mask is a few 10^5 values: intra-op threads only add synchronisation, which costs 10-40x on a busy
    # machine (measured: 0.42 s with 1 thread, 7-17 s with 2, for 200 entries at 256 px under load 12 on 2 cores)
    torch.set_num_threads(1)
    try:
        problems, num_entries = check_datalist(datalist_file, splits, transforms, decode_images=decode_images)
    except (FileNotFoundError, ValueError) as e:
        raise DatalistError(f"pre-flight check: {e}") from e
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    if problems:
        entries = {(p.split, p.index) for p in problems}
        lines = [f"  {p.line(with_key=True)}" for p in problems[:max_listed]]
        if len(problems) > max_listed:
            lines.append(f"  ... and {len(problems) - max_listed} more")
        raise DatalistError(
            f"pre-flight check of datalist {datalist_file!r} (splits {splits}): {len(problems)} problem(s) in "
            f"{len(entries)} of {num_entries} entries:\n" + "\n".join(lines) + "\nFix the files or the datalist "
            "entries listed (or set `preflight` to False to skip this check).",
            problems,
        )
    logger.info(f"pre-flight check: {num_entries} entries of {splits} in {datalist_file} are fine ({seconds:.2f} s).")
    return {"entries": num_entries, "splits": splits, "seconds": seconds}


def _transforms_from_config(config_file: str) -> Any:
    """The ``train#deterministic_transforms`` of a bundle config, with ``bundle_root`` set to its bundle folder."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file)
    parser.update({"bundle_root": os.path.dirname(os.path.dirname(os.path.abspath(config_file)))})
    return parser.get_parsed_content("train#deterministic_transforms")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Command line (``tools/check_datalist.py``): check a datalist as a bundle's ``initialize`` does, without
    training::

        python tools/check_datalist.py DATALIST [--splits training validation] [--config_file train.json]

    Args:
        argv: the arguments; default ``None``: ``sys.argv[1:]``.

    Returns:
        the exit status: 0 when the data has no problem, 1 otherwise (problems listed on stderr).
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="tools/check_datalist.py", description="Check a datalist as a bundle's pre-flight step does."
    )
    ap.add_argument("datalist", help="the datalist JSON")
    ap.add_argument("--splits", nargs="+", default=["training", "validation"], help="splits to check")
    ap.add_argument("--config_file", default=None, help="a bundle's train.json, to apply its transforms' rules")
    ap.add_argument("--decode_images", action="store_true", help="decode images fully instead of verifying them")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        transforms = _transforms_from_config(args.config_file) if args.config_file else None
        preflight_datalist(args.datalist, args.splits, transforms, decode_images=args.decode_images)
    except (DatalistError, FileNotFoundError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
