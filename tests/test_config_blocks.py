# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Config blocks meant to be the same in every bundle stay the same.

Each bundle keeps complete config files (a model-zoo bundle is self-contained, and MONAI Label loads one config file:
see /work/shared/reference/monai_bundle_conventions.md, section 1.4), so the blocks that carry the project's shared
protocol are repeated. :data:`SHARED` declares them, each with the reason it is shared; the test compares them across
every bundle under ``bundles/`` (a new bundle is covered the moment it has ``configs/metadata.json``). A block is
compared as parsed JSON, before MONAI resolves references, so ``@bundle_root``-relative values compare equal.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from conftest import REPO_ROOT

BUNDLES = sorted(p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())


@dataclass(frozen=True)
class Shared:
    """
    A config block that every bundle must write identically.

    Args:
        file: the config file name under ``configs/``.
        path: the key path, ``#``-separated as in MONAI configs (list positions are numbers).
        reason: why it is shared (shown when it drifts).
        entries: for a list, compare only the entries this predicate selects (in order), e.g. the handlers of
            given ``_target_``s; default ``None``: the whole value.
        entries_doc: how the entries are chosen, for the failure message.
    """

    file: str
    path: str
    reason: str
    entries: Callable[[Any], bool] | None = None
    entries_doc: str = ""


def _targets(*targets: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, dict) and e.get("_target_") in targets


def _starts(*prefixes: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, str) and e.startswith(prefixes)


_RUN = "run switches with one meaning and default in every bundle; the tests and tools/compare.py override them by name"
_SYNTH = "the built-in synthetic set has the same size in every bundle, so tools/compare.py compares methods on one set"
_VAL = "one validation protocol (per-image Dice/IoU, model selection and early stop on val_mean_dice) for every method"
_EVAL = "one evaluation protocol: the four metrics, per-case tables and output names that tools/compare.py reads"
_DIST = "the multi-process set-up (rank-0-only logging/checkpoints, DistributedSampler) tested in tests/test_bundles.py"
_FAIL = "failures end cleanly: the error summary comes first and the datalist pre-flight runs before anything is built"
_CONSOLE = (
    "console and TensorBoard output: a progress bar or per-iteration lines (`progress_bar`), epoch summaries always"
)
_CONTRACT = "the data contract: PILReader, same-size check, one mask binarisation rule (the pre-flight reads these)"

SHARED: list[Shared] = [
    # train.json: run switches and locations
    *[Shared("train.json", k, _RUN) for k in ("seed", "amp", "resume", "progress_bar", "preflight", "num_workers")],
    *[Shared("train.json", k, _RUN) for k in ("cache_rate", "val_interval", "device", "rank", "is_not_rank0")],
    *[
        Shared("train.json", k, "one caching switch (common.data.make_dataset: memory | disk | none) for every bundle")
        for k in ("cache_mode", "cache_dir")
    ],
    Shared(
        "train.json",
        "train_fraction",
        "one low-data key (BiCLIP section 3.3, common.data.training_subset, tools/protocols.md) for every bundle",
    ),
    *[
        Shared("train.json", k, "output layout read by evaluate.json, inference and tools/compare.py")
        for k in ("output_dir", "ckpt_dir", "log_dir")
    ],
    Shared("train.json", "datalist_file", "every bundle gets its datalist from common.data.ensure_datalist"),
    Shared(
        "train.json",
        "fused_optimizer",
        "one switch of the fused Adam/AdamW step (issue 11 speed target, tools/speed_compare.py) in every bundle",
    ),
    *[
        Shared("train.json", f"synthetic_{k}", _SYNTH)
        for k in ("num_train", "num_val", "num_test", "image_size", "seed")
    ],
    Shared("train.json", "run", "the same training workflow steps"),
    Shared("train.json", "finalize", "the same end-of-run message (paths of model, resumable state, TensorBoard)"),
    Shared(
        "train.json",
        "initialize",
        _FAIL,
        _starts("$common.utils.install_error_summary", "$common.data.preflight"),
        "the error-summary and pre-flight steps",
    ),
    Shared(
        "train.json",
        "train#deterministic_transforms",
        _CONTRACT,
        _targets(
            "LoadImaged",
            "EnsureChannelFirstd",
            "common.transforms.checks.CheckSameSpatialShaped",
            "common.transforms.mask.BinarizeMaskd",
        ),
        "LoadImaged, EnsureChannelFirstd, CheckSameSpatialShaped, BinarizeMaskd",
    ),
    Shared(
        "train.json",
        "train#dataset#_target_",
        "make_dataset gives the cache of cache_mode; each names the failing item, SafeCacheDataset joins its threads",
    ),
    Shared(
        "train.json",
        "train#handlers",
        _CONSOLE,
        _targets("StatsHandler", "TensorBoardStatsHandler", "ignite.handlers.ProgressBar"),
        "StatsHandler, TensorBoardStatsHandler, ProgressBar",
    ),
    Shared(
        "train.json",
        "train#handlers",
        "same learning-rate logging and validation schedule (`val_interval`)",
        _targets("LrScheduleHandler", "ValidationHandler"),
        "LrScheduleHandler, ValidationHandler",
    ),
    *[
        Shared("train.json", f"validate#{k}", _VAL)
        for k in ("dataset", "dataloader", "early_stop", "handlers", "key_metric", "additional_metrics")
    ],
    # evaluate.json: the whole protocol
    *[
        Shared("evaluate.json", k, _EVAL)
        for k in (
            "eval_dir",
            "eval_split",
            "hd95_mode",
            "consistency_min_area_fraction",
            "consistency_zone_band",
            "validate#dataset#data",
            "validate#dataset#cache_rate",
            "validate#handlers",
            "validate#key_metric",
            "validate#additional_metrics",
            "run",
            "finalize",
        )
    ],
    Shared(
        "evaluate.json",
        "initialize",
        _FAIL,
        _starts("$common.utils.install_error_summary", "$common.data.preflight"),
        "the error-summary and pre-flight steps",
    ),
    # multi_gpu_train.json
    *[
        Shared("multi_gpu_train.json", k, _DIST)
        for k in (
            "dist_backend",
            "rank",
            "local_rank",
            "device",
            "network",
            "train#sampler",
            "train#dataloader#sampler",
            "train#dataloader#shuffle",
            "validate#sampler",
            "validate#dataloader#sampler",
            "run",
            "finalize",
        )
    ],
    Shared(
        "multi_gpu_train.json",
        "initialize",
        _DIST + "; " + _FAIL,
        _starts(
            "$import ",
            "$dist.is_initialized()",
            "$common.utils.end_process_group_at_exit",
            "$torch.cuda.set_device",
            "$logging.getLogger()",
            "$common.utils.install_error_summary",
            "$common.data.preflight",
        ),
        "imports, process-group start and end at exit, device, rank-0 logging, error summary, pre-flight",
    ),
    # inference.json: what MONAI Label and users get
    *[
        Shared("inference.json", k, "one inference contract: <image stem>_mask.png at the image's size, same inputs")
        for k in (
            "output_dir",
            "ckpt_path",
            "input_dir",
            "datalist_file",
            "datalist_split",
            "threshold",
            "postprocessing",
            "handlers",
            "inferer",
            "dataloader",
            "run",
            "finalize",
        )
    ],
]

_ABSENT = object()


def lookup(config: dict, path: str) -> Any:
    """The value at a ``#``-separated path, or ``_ABSENT``; a whole-key override such as ``"a#b"`` in an
    override file is found as that literal key first."""
    if path in config:
        return config[path]
    value: Any = config
    for part in path.split("#"):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _ABSENT
    return value


def _selected(block: Shared, value: Any) -> Any:
    if value is _ABSENT or block.entries is None:
        return value
    if not isinstance(value, list):
        return value
    return [e for e in value if block.entries(e)]


def _show(value: Any) -> str:
    text = "<absent>" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:300] + " ..."


def find_drift(configs: dict[str, dict[str, dict]], shared: list[Shared] = SHARED) -> list[str]:
    """
    Every shared block that is not the same in all bundles, as readable messages.

    Args:
        configs: ``{bundle: {file name: parsed JSON}}``.
        shared: the declared blocks; default :data:`SHARED`.

    Returns:
        one message per drifting (bundle, file, key): the bundle's value, the value most bundles share (ties:
        the first bundle in name order) and the reason the block is shared.
    """
    messages = []
    for block in shared:
        values = {b: _selected(block, lookup(files.get(block.file, {}), block.path)) for b, files in configs.items()}
        shown = {b: json.dumps(v, sort_keys=True) if v is not _ABSENT else "<absent>" for b, v in values.items()}
        if len(set(shown.values())) <= 1:
            continue
        counts = Counter(shown.values())
        reference = max(sorted(shown.values(), key=lambda s: min(b for b in shown if shown[b] == s)), key=counts.get)
        agreeing = sorted(b for b, s in shown.items() if s == reference)
        which = f" ({block.entries_doc})" if block.entries_doc else ""
        for bundle in sorted(b for b, s in shown.items() if s != reference):
            messages.append(
                f"bundles/{bundle}/configs/{block.file} key '{block.path}'{which} drifted from "
                f"{', '.join(agreeing)}:\n    {bundle}: {_show(values[bundle])}\n    others: "
                f"{_show(values[agreeing[0]])}\n    shared because: {block.reason}"
            )
    return messages


def _load_all() -> dict[str, dict[str, dict]]:
    files = sorted({b.file for b in SHARED})
    out: dict[str, dict[str, dict]] = {}
    for bundle in BUNDLES:
        out[bundle] = {}
        for f in files:
            path = REPO_ROOT / "bundles" / bundle / "configs" / f
            out[bundle][f] = json.loads(path.read_text()) if path.is_file() else {}
    return out


def test_shared_blocks_are_identical_in_every_bundle():
    if len(BUNDLES) < 2:
        pytest.skip("fewer than two bundles")
    drift = find_drift(_load_all())
    assert not drift, f"{len(drift)} shared config block(s) drifted:\n" + "\n".join(drift)


def test_every_shared_block_exists():
    """A declared block that no bundle has (a renamed key) would compare equal everywhere and check nothing."""
    configs = _load_all()
    for block in SHARED:
        values = [_selected(block, lookup(configs[b][block.file], block.path)) for b in BUNDLES]
        assert any(v is not _ABSENT and v != [] for v in values), f"{block.file} key '{block.path}' is in no bundle"


def test_drift_message_names_bundle_file_and_key():
    configs = json.loads(json.dumps(_load_all()))  # a deep copy
    victim = BUNDLES[-1]
    configs[victim]["train.json"]["validate"]["key_metric"]["val_mean_dice"]["include_background"] = False
    configs[victim]["evaluate.json"].pop("hd95_mode")
    handlers = configs[victim]["train.json"]["train"]["handlers"]
    next(h for h in handlers if h.get("_target_") == "StatsHandler")["iteration_log"] = True
    already = set(find_drift(_load_all()))  # a real drift is reported by the test above, not here
    drift = [d for d in find_drift(configs) if d not in already]
    assert len(drift) == 3, drift
    assert drift[0].startswith(f"bundles/{victim}/configs/train.json key 'train#handlers' (StatsHandler, "), drift[0]
    assert f"bundles/{victim}/configs/train.json key 'validate#key_metric' drifted from" in drift[1]
    assert '"include_background": false' in drift[1] and "shared because: one validation protocol" in drift[1]
    assert f"bundles/{victim}/configs/evaluate.json key 'hd95_mode' drifted" in drift[2] and "<absent>" in drift[2]
