# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""The list of items an inference run works on: a folder of images or one split of a datalist."""

from __future__ import annotations

import os

from common.data.datalist import load_datalist
from common.data.tables import IMAGE_SUFFIXES

__all__ = ["list_image_folder", "inference_items"]


def list_image_folder(folder: str) -> list[dict]:
    """
    Every image file directly inside ``folder`` (extensions in ``common.data.tables.IMAGE_SUFFIXES``, case-insensitive),
    sorted by name, as ``[{"image": <absolute path>}, ...]``.

    Args:
        folder: the folder to list.

    Raises:
        FileNotFoundError: when ``folder`` is not a folder.
        ValueError: when it holds no image file (naming the folder and the extensions looked for).
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"input_dir {folder!r} is not a folder.")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ValueError(f"input_dir {folder!r} holds no image file ({', '.join(IMAGE_SUFFIXES)}).")
    return [{"image": os.path.abspath(os.path.join(folder, n))} for n in names]


def inference_items(
    input_dir: str | None,
    datalist_file: str | None,
    split: str = "test",
    text: str | None = None,
    require_text: bool = False,
) -> list[dict]:
    """
    The items of an inference run: the images of ``input_dir`` when it is given, else the ``split`` list of the
    datalist (labels and text kept, so text-guided bundles find their prompt).

    Args:
        input_dir: a folder of images, or ``None``/``""`` to use the datalist.
        datalist_file: a datalist JSON (see ``common.data.load_datalist``).
        split: the datalist split to read, default ``"test"``.
        text: a text prompt given to every image of ``input_dir`` (text-guided bundles); datalist items keep their
            own text.
        require_text: raise when images of ``input_dir`` would get no text (text-guided bundles).

    Raises:
        ValueError: when neither source is given, or ``require_text`` and a folder is given without ``text``.
    """
    if input_dir:
        items = list_image_folder(input_dir)
        if text:
            return [dict(item, text=text) for item in items]
        if require_text:
            raise ValueError(
                f'the images of input_dir {input_dir!r} have no text: pass a prompt with `--text_prompt "..."` '
                "or use a datalist (`datalist_file`), whose items carry their own text."
            )
        return items
    if not datalist_file:
        raise ValueError("inference needs `input_dir` (a folder of images) or `datalist_file` (a datalist JSON).")
    return load_datalist(datalist_file, split)
