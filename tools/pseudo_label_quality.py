# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""How good are the EPI pseudo labels of a semi-supervised LViT run? Dice of the pseudo-label bank (LViT eq. 9)
and of the contrastive labels (eq. 13) against the true masks of the unlabeled training images.

Run from the repository root (nothing needs installing)::

    python tools/pseudo_label_quality.py --checkpoint OUT/lvit/models/checkpoint_last.pt \\
        --datalist_file OUT/datalist.json --label_fraction 0.25 --seed 0 [--contrastive] [--per_image]

    # how the bank evolves: one row per checkpoint (copies of checkpoint_last.pt taken after each epoch)
    python tools/pseudo_label_quality.py --checkpoint hist/ckpt_*.pt --datalist_file ... --label_fraction 0.25

What it does:

1. Rebuilds the labeled/unlabeled split the bundle made (``common.data.semi_supervised.split_labeled`` of the
   datalist's ``training`` list with ``--label_fraction``, ``--seed`` and ``--stratify_key``, after
   ``common.data.training_subset`` when ``--train_fraction`` < 1, as ``train#split`` of
   ``bundles/lvit/configs/train.json`` does) and checks it against the bank: the bank saved in the checkpoint
   (entry ``epi_bank``) carries a hash of the unlabeled image paths in slot order, and a bank written for another
   split (other fraction, seed or datalist) is refused with an error.
2. Loads the true masks of the unlabeled images (training never loads them) in the frame of the network, as the
   bundle's ``train#deterministic_transforms`` load labels: ``LoadImaged`` with MONAI's ``PILReader`` (which
   transposes PNGs, so the bank's pseudo labels are in that frame too), channel first, the project's mask
   binarisation rule (``common.transforms.mask.BinarizeMaskd``), resized to the bank's size with nearest
   neighbours.
3. Scores, per unlabeled image, the bank's pseudo label thresholded at ``--threshold`` (default 0.5, the bundle's
   post-processing threshold) with the per-image foreground Dice of the bundles' metrics
   (``common.handlers.PerImageDiceHandler``: both masks empty = 1, exactly one empty = 0). Slots never initialised
   (images the trainer has not drawn since the warm-up ended) are left out and counted. It also reports the soft
   Dice ``2 sum(P y) / (sum P + sum y)`` of the unthresholded bank and its mean confidence ``mean |2P - 1|``.
4. With ``--contrastive``: rebuilds each unlabeled image's contrastive label (the mask of the labeled image with
   the most similar note, ``common.data.semi_supervised.assign_contrastive_labels`` with its default bag-of-words
   featurizer and ``--contrastive_min_similarity``; the configuration of ``text_encoder: embedding_table``) and
   scores it the same way. Texts with no similar labeled text have no contrastive label and are counted.

Outputs: one table row per checkpoint on stdout (epoch read from the checkpoint's trainer state when saved),
``--per_image``: one line per image for the last checkpoint; ``--out_json``: everything as JSON. Exit status 0 on
success, 1 with a one-line error naming the file or argument that is wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["foreground_dice", "load_bank_state", "load_masks", "score_bank", "main"]


def foreground_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """
    Per-image foreground Dice of two binary masks, with the empty cases of ``common.handlers.PerImageDiceHandler``.

    Args:
        pred: binary mask (any shape; non-zero = foreground).
        truth: binary mask of the same shape.

    Returns:
        ``2 |A n B| / (|A| + |B|)``; 1.0 when both are empty, 0.0 when exactly one is.

    Raises:
        ValueError: when the shapes differ.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"foreground_dice: shapes differ, {pred.shape} vs {truth.shape}.")
    a, b = np.asarray(pred) > 0, np.asarray(truth) > 0
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * float(np.logical_and(a, b).sum()) / total


def load_bank_state(checkpoint: str | Path) -> tuple[dict[str, Any], int | None]:
    """
    Read the EPI bank of a semi-supervised run's checkpoint.

    Args:
        checkpoint: ``checkpoint_last.pt`` of a run (or a copy), written by ``common.handlers.LastCheckpointHandler``
            with an ``epi_bank`` entry (``common.engines.PseudoLabelBank.state_dict``).

    Returns:
        ``(bank_state, epoch)``: the bank's state dict and the completed epoch (from the saved trainer state's
        ``iteration / epoch_length``; ``None`` when the checkpoint has no trainer state).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it cannot be read as a checkpoint or has no ``epi_bank`` entry.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        raise ValueError(f"checkpoint {str(path)!r} cannot be read by torch.load: {e}") from None
    if not isinstance(state, dict) or "epi_bank" not in state:
        if isinstance(state, dict):
            names = sorted(map(str, state))
            keys = ", ".join(names[:6]) + (f", ... ({len(names)} entries)" if len(names) > 6 else "")
        else:
            keys = type(state).__name__
        raise ValueError(
            f"checkpoint {str(path)!r} has no 'epi_bank' entry (found: {keys}); it is not the checkpoint_last.pt of "
            "a semi-supervised run (label_fraction < 1)."
        )
    epoch = None
    trainer = state.get("trainer")
    if isinstance(trainer, dict) and trainer.get("epoch_length"):
        epoch = int(trainer["iteration"]) // int(trainer["epoch_length"])
    return state["epi_bank"], epoch


def load_masks(paths: Sequence[str], spatial_size: Sequence[int]) -> np.ndarray:
    """
    Load masks in the network's frame, as the LViT bundle loads labels (``train#deterministic_transforms``).

    Args:
        paths: mask files.
        spatial_size: ``(H, W)`` to resize to (nearest neighbour).

    Returns:
        a bool array ``(len(paths), H, W)``.

    Raises:
        ValueError: when a mask violates the project's binarisation rule (message names the file).
    """
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized

    from common.transforms.channels import EnsureNumChannelsd
    from common.transforms.mask import BinarizeMaskd

    load = Compose(
        [
            LoadImaged(keys="label", reader="PILReader", image_only=True),
            EnsureChannelFirstd(keys="label"),
            EnsureNumChannelsd(keys="label", num_channels=1),
            BinarizeMaskd(keys="label"),
            Resized(keys="label", spatial_size=tuple(int(s) for s in spatial_size), mode="nearest"),
        ]
    )
    out = np.zeros((len(paths), *spatial_size), dtype=bool)
    for i, path in enumerate(paths):
        try:
            out[i] = np.asarray(load({"label": path})["label"])[0] > 0.5
        except Exception as e:
            raise ValueError(f"mask {path!r} cannot be loaded: {e}") from None
    return out


def _summary(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def score_bank(bank_state: dict[str, Any], truth: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """
    Score an EPI bank against the true masks.

    Args:
        bank_state: ``PseudoLabelBank.state_dict()`` (``values`` ``(U, H, W)``, ``initialised`` ``(U,)``).
        truth: bool ``(U, H, W)`` true masks in slot order.
        threshold: a pseudo label's foreground is ``P > threshold`` (default 0.5).

    Returns:
        a dict: ``dice`` (mean over initialised slots of the thresholded per-image Dice), ``soft_dice`` (mean
        ``2 sum(P y) / (sum P + sum y)``, 1 when both are empty), ``confidence`` (mean ``|2P - 1|`` over the pixels of
        the initialised slots), ``initialised`` / ``num_items`` (counts) and ``per_image`` (Dice per slot, ``None``
        for a slot never initialised).

    Raises:
        ValueError: when the bank's shape differs from ``truth``'s.
    """
    values = torch.as_tensor(bank_state["values"]).float().numpy()
    init = torch.as_tensor(bank_state["initialised"]).bool().numpy().reshape(-1)
    if values.shape != truth.shape:
        raise ValueError(f"the bank holds {values.shape} pseudo labels but {truth.shape} true masks were loaded.")
    per_image: list[float | None] = []
    soft: list[float] = []
    conf: list[float] = []
    for k in range(values.shape[0]):
        if not init[k]:
            per_image.append(None)
            continue
        p, y = values[k], truth[k].astype(np.float64)
        per_image.append(foreground_dice(p > threshold, truth[k]))
        denom = float(p.sum() + y.sum())
        soft.append(1.0 if denom == 0 else 2.0 * float((p * y).sum()) / denom)
        conf.append(float(np.abs(2.0 * p - 1.0).mean()))
    scored = [d for d in per_image if d is not None]
    return {
        "dice": _summary(scored),
        "soft_dice": _summary(soft),
        "confidence": _summary(conf),
        "initialised": int(init.sum()),
        "num_items": int(values.shape[0]),
        "per_image": per_image,
    }


def _contrastive_dice(labeled: list[dict], unlabeled: list[dict], truth: np.ndarray, min_similarity: float) -> dict:
    from common.data.semi_supervised import assign_contrastive_labels

    matched = assign_contrastive_labels(unlabeled, labeled, min_similarity=min_similarity)
    with_label = [k for k, item in enumerate(matched) if "contrastive_label" in item]
    masks = load_masks([matched[k]["contrastive_label"] for k in with_label], truth.shape[1:]) if with_label else []
    per_image: list[float | None] = [None] * len(matched)
    for row, k in enumerate(with_label):
        per_image[k] = foreground_dice(masks[row], truth[k])
    return {
        "dice": _summary([d for d in per_image if d is not None]),
        "matched": len(with_label),
        "num_items": len(matched),
        "per_image": per_image,
    }


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    """
    Command line, see the module docstring.

    Args:
        argv: the arguments; default ``None``: ``sys.argv[1:]``.

    Returns:
        the exit status: 0 on success, 1 on an error (printed on stderr).
    """
    ap = argparse.ArgumentParser(
        prog="tools/pseudo_label_quality.py",
        description="Dice of a semi-supervised LViT run's EPI pseudo labels (and contrastive labels) vs true masks.",
    )
    ap.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint_last.pt file(s) with an epi_bank")
    ap.add_argument("--datalist_file", required=True, help="the datalist the run trained on (its 'training' list)")
    ap.add_argument("--label_fraction", type=float, required=True, help="the run's label_fraction")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    ap.add_argument("--train_fraction", type=float, default=1.0, help="the run's train_fraction (default 1.0)")
    ap.add_argument("--stratify_key", default="site", help="split stratification key (default 'site'; '' for none)")
    ap.add_argument("--threshold", type=float, default=0.5, help="pseudo-label foreground threshold (default 0.5)")
    ap.add_argument("--contrastive", action="store_true", help="also score the contrastive labels (bag-of-words)")
    ap.add_argument(
        "--contrastive_min_similarity", type=float, default=0.0, help="the run's contrastive_min_similarity"
    )
    ap.add_argument("--per_image", action="store_true", help="print one line per image for the last checkpoint")
    ap.add_argument("--out_json", default=None, help="write every number to this JSON file")
    args = ap.parse_args(argv)
    try:
        from common.data import load_datalist
        from common.data.semi_supervised import split_labeled
        from common.engines import PseudoLabelBank

        if not 0.0 < args.threshold < 1.0:
            raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}.")
        training = load_datalist(args.datalist_file, "training")
        kept = training
        if args.train_fraction != 1.0:  # the bundle's train#split: training_subset first, then split_labeled
            from common.data import training_subset

            kept = training_subset(training, args.train_fraction, seed=args.seed)
        labeled, unlabeled = split_labeled(
            kept, args.label_fraction, seed=args.seed, stratify_key=args.stratify_key or None
        )
        if not unlabeled:
            raise ValueError(f"--label_fraction {args.label_fraction} leaves no unlabeled image: nothing to score.")
        by_image = {item["image"]: item["label"] for item in training}
        truth = None
        rows = []
        for ckpt in args.checkpoint:
            state, epoch = load_bank_state(ckpt)
            shape = tuple(torch.as_tensor(state["values"]).shape)
            # validates the number of slots and the split fingerprint (clear errors on a foreign bank)
            check = PseudoLabelBank(len(unlabeled), shape[1:], item_ids=[u["image"] for u in unlabeled])
            try:
                check.load_state_dict(state)
            except (KeyError, ValueError) as e:
                raise ValueError(
                    f"checkpoint {ckpt!r} does not match the split of --datalist_file/--label_fraction/--seed: {e}"
                ) from None
            if truth is None or truth.shape[1:] != shape[1:]:
                truth = load_masks([by_image[u["image"]] for u in unlabeled], shape[1:])
            scores = score_bank(state, truth, args.threshold)
            rows.append({"checkpoint": str(ckpt), "epoch": epoch, **scores})
        result: dict[str, Any] = {"num_labeled": len(labeled), "num_unlabeled": len(unlabeled), "banks": rows}
        if args.contrastive:
            result["contrastive"] = _contrastive_dice(labeled, unlabeled, truth, args.contrastive_min_similarity)
    except (FileNotFoundError, ValueError, TypeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(labeled)} labeled, {len(unlabeled)} unlabeled training images; threshold {args.threshold}")
    print("| checkpoint | epoch | pseudo-label Dice | soft Dice | confidence | initialised |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['checkpoint']} | {r['epoch'] if r['epoch'] is not None else '-'} | {_fmt(r['dice'])} | "
            f"{_fmt(r['soft_dice'])} | {_fmt(r['confidence'])} | {r['initialised']}/{r['num_items']} |"
        )
    if args.contrastive:
        c = result["contrastive"]
        print(f"contrastive labels: Dice {_fmt(c['dice'])} ({c['matched']}/{c['num_items']} texts matched)")
    if args.per_image:
        last = rows[-1]["per_image"]
        contrastive = result["contrastive"]["per_image"] if args.contrastive else [None] * len(last)
        print("slot\timage\tpseudo_dice\tcontrastive_dice")
        for k, (item, d, c) in enumerate(zip(unlabeled, last, contrastive)):
            print(f"{k}\t{item['image']}\t{_fmt(d)}\t{_fmt(c)}")
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
