# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Small file helpers shared by the datalist writer and the reader report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "atomic_write_json"]


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """
    Write ``text`` to ``path`` so that readers never see a half-written file.

    The text goes to a temporary file in the same folder (same file system), is flushed and synced, then
    moved over ``path`` with :func:`os.replace`, which POSIX and Windows both perform atomically. The parent
    folder is created when missing.

    Args:
        path: the file to write (replaced when it exists).
        text: the content, written as UTF-8.

    Returns:
        ``str(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise
    return str(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> str:
    """
    Write ``obj`` as indented UTF-8 JSON (non-ASCII characters kept as they are) with :func:`atomic_write_text`.

    Args:
        path: the file to write.
        obj: a JSON-serialisable object.

    Returns:
        ``str(path)``.
    """
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
