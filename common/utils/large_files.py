# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The error message of a run whose pretrained weights file (or folder) is absent, worded from the bundle's
``large_files.yml``.

A bundle lists the files it can download in ``<bundle>/large_files.yml`` (MONAI's ``large_files`` list of ``path``,
``url``, ``hash_val``, ``hash_type``; fetched by ``python -m monai.bundle download_large_files --bundle_path
<bundle>``, which reads only that list). Our bundles add a second top-level mapping, ``if_missing``, that MONAI does
not read: for a file or folder (a path relative to the bundle, as in ``large_files``) the config key that points at
it (``key``) and the command-line override that trains without it (``without``); optionally ``made_from``, for a
folder made from a downloaded one. Example::

    large_files:
      - path: "models/RN101.pt"
        url: "https://openaipublic.azureedge.net/clip/models/8fa8.../RN101.pt"
        hash_val: "8fa8..."
        hash_type: "sha256"
    if_missing:
      models/RN101.pt: {key: "clip_weights", without: "--clip_pretrained False"}

:func:`missing_file_message` finds the bundle of a missing path (the nearest folder above it with a
``large_files.yml`` that lists it) and names the file, the command that fetches it, the key that points at it and
the override that trains without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LargeFileHint", "find_large_file", "missing_file_message", "read_large_files"]

LARGE_FILES_NAME = "large_files.yml"


def read_large_files(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """
    Read ``<bundle_dir>/large_files.yml``.

    Args:
        bundle_dir: the bundle folder.

    Returns:
        ``{"large_files": [entry, ...], "if_missing": {path: {"key", "without"[, "made_from"]}}}``; both present
        (empty when the file lacks them).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not YAML, or ``large_files`` is not a list of mappings with a ``path``, or
            ``if_missing`` is not a mapping of mappings (the message names the file).
    """
    import yaml

    path = Path(bundle_dir) / LARGE_FILES_NAME
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(content, dict):
        raise ValueError(f"{path} must be a mapping with a 'large_files' list, got {type(content).__name__}.")
    entries = content.get("large_files") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "path" in e for e in entries):
        raise ValueError(f"{path}: 'large_files' must be a list of mappings, each with a 'path'.")
    hints = content.get("if_missing") or {}
    if not isinstance(hints, dict) or not all(isinstance(v, dict) for v in hints.values()):
        raise ValueError(f"{path}: 'if_missing' must map paths to mappings with 'key' and 'without'.")
    return {"large_files": entries, "if_missing": hints}


@dataclass
class LargeFileHint:
    """
    Where a missing path belongs: its bundle, its path there, the listed files it stands for and the hint.

    Attributes:
        bundle_dir: the bundle folder that holds the ``large_files.yml``.
        relative_path: the missing path relative to ``bundle_dir`` (POSIX separators).
        listed: ``large_files`` paths equal to ``relative_path`` or under it (a folder), in file order.
        key: the config key that points at the path (``if_missing``), or ``None``.
        without: the override that trains without it (``if_missing``), or ``None``.
        made_from: what the path is made from when it is not downloaded itself (``if_missing``), or ``None``.
    """

    bundle_dir: Path
    relative_path: str
    listed: list[str] = field(default_factory=list)
    key: str | None = None
    without: str | None = None
    made_from: str | None = None


def _relative_to(path: Path, folder: Path) -> str | None:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return None


def find_large_file(path: str | os.PathLike) -> LargeFileHint | None:
    """
    Find the bundle whose ``large_files.yml`` lists ``path`` (or files under it) or names it in ``if_missing``.

    The folders above ``path`` are searched from the nearest up; the first ``large_files.yml`` that knows the path
    wins. An unreadable ``large_files.yml`` is skipped (the caller is already reporting a missing file).

    Args:
        path: the missing file or folder (absolute or relative to the working directory).

    Returns:
        the :class:`LargeFileHint`, or ``None`` when no bundle knows the path.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    for folder in target.parents:
        if not (folder / LARGE_FILES_NAME).is_file():
            continue
        relative = _relative_to(target, folder)
        try:
            content = read_large_files(folder)
        except (OSError, ValueError):
            continue
        listed = [
            str(e["path"])
            for e in content["large_files"]
            if str(e["path"]) == relative or str(e["path"]).startswith(relative.rstrip("/") + "/")
        ]
        hint = content["if_missing"].get(relative) or content["if_missing"].get(relative + "/")
        if listed or hint:
            hint = hint or {}
            return LargeFileHint(
                bundle_dir=folder,
                relative_path=relative,
                listed=listed,
                key=hint.get("key"),
                without=hint.get("without"),
                made_from=hint.get("made_from"),
            )
    return None


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    relative = _relative_to(path, Path(os.getcwd()))
    return relative if relative is not None and relative != "." else str(path)


def missing_file_message(
    path: str | os.PathLike, what: str, key: str | None = None, without: str | None = None, problem: str = ""
) -> str:
    """
    The message for a missing pretrained file or folder: what and where, how to fetch it, how to train without it.

    For a path that a bundle's ``large_files.yml`` lists (see :func:`find_large_file`) the message names the
    command ``python -m monai.bundle download_large_files --bundle_path <bundle>`` (the bundle relative to the
    working directory when inside it), the key that points at the path and the override that trains without it
    (``if_missing``; the arguments ``key`` and ``without`` are used where the file gives none). For any other path
    it names ``key`` and ``without`` when given.

    Args:
        path: the missing file or folder, as configured.
        what: what it is, e.g. ``"CLIP weights file"`` or ``"Hugging Face model folder"``.
        key: the config key that points at it, when the caller knows it. Defaults to ``None``.
        without: the override that trains without it, when the caller knows it. Defaults to ``None``.
        problem: what is wrong, when not simply absent, worded after the path, e.g. ``"has no config.json"``.
            Defaults to ``""`` (``"<what> not found: <path>"``).

    Returns:
        the message, one paragraph.
    """
    shown = os.fspath(path) or '""'
    hint = find_large_file(path) if os.fspath(path) else None
    key = (hint.key if hint and hint.key else None) or key
    without = (hint.without if hint and hint.without else None) or without
    message = f"{what} {shown} {problem}" if problem else f"{what} not found: {shown}"
    if key:
        message += f" (the `{key}` setting)"
    message += "."
    if hint is not None and hint.listed:
        bundle = _display(hint.bundle_dir)
        message += (
            f" It is listed in {bundle}/{LARGE_FILES_NAME}; fetch it with: "
            f"python -m monai.bundle download_large_files --bundle_path {bundle}"
        )
        message += "." if not hint.made_from else f" (then make it from {hint.made_from})."
    elif hint is not None and hint.made_from:
        bundle = _display(hint.bundle_dir)
        message += (
            f" It is made from {hint.made_from}; fetch that with: "
            f"python -m monai.bundle download_large_files --bundle_path {bundle}."
        )
    else:
        message += (
            " Point the setting at an existing local copy, or fetch the files a bundle lists in its "
            f"{LARGE_FILES_NAME} with: python -m monai.bundle download_large_files --bundle_path <bundle>."
        )
    if without:
        message += f" Or train without it: {without}."
    return message
