# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
One generic config for every bundle the app serves: which bundles, their default notes and config overrides.

The app's ``--conf`` settings (``monailabel start_server ... --conf KEY VALUE``):

- ``models``: comma-separated bundle folder names, or ``all`` (default): every folder of ``bundles`` with
  ``configs/inference.json`` and ``configs/metadata.json``.
- ``bundles``: the folder holding the bundles. Defaults to the repository's ``bundles/``.
- ``overrides``: a JSON file ``{bundle: {config id: value}}`` applied to that bundle's inference and train configs,
  e.g. the sizes its ``models/model.pt`` was trained with (``{"lvit": {"model_size": "S"}}``). Optional.
- ``texts``: a JSON file ``{bundle: default note}``. Optional; the default note of a bundle is, in this order, this
  file's entry, the bundle's ``displayable_configs#text``, its ``text_prompt`` key, :data:`DEFAULT_TEXT`.
- ``work_dir``: where training requests write their datalists (``<work_dir>/<bundle>/datalist.json``). Defaults
  to ``<studies>/.text_bundles``.
- ``skip_trainers``: ``true`` serves inference only. Defaults to ``false``.

No bundle is downloaded: a name that is not a folder of ``bundles`` is an error (MONAI Label's own
``get_bundle_models`` would look it up in the model zoo, which needs the network).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

#: the note used where neither the app's ``texts`` file nor the bundle gives one: a QaTa-COV19-style note, the domain
#: of the bundles' built-in synthetic chest X-rays (README "Data")
DEFAULT_TEXT = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


@dataclass
class BundleConfig:
    """
    One served bundle.

    Attributes:
        name: the bundle folder name (the model name of ``/infer/<name>`` and ``/train/<name>``).
        path: the bundle folder.
        default_text: the note of a request without ``text``.
        overrides: config items set before the bundle's inference and train configs are built.
    """

    name: str
    path: str
    default_text: str
    overrides: dict[str, Any] = field(default_factory=dict)


def _read_json_mapping(path: str | None, what: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the {what} file {path} (--conf {what} ...): {e}") from e
    if not isinstance(content, dict):
        raise ValueError(f"the {what} file {path} must hold a JSON object keyed by bundle name.")
    return content


def _bundle_default_text(path: str) -> str | None:
    try:
        with open(os.path.join(path, "configs", "inference.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    shown = config.get("displayable_configs")
    for value in (shown.get("text") if isinstance(shown, dict) else None, config.get("text_prompt")):
        if isinstance(value, str) and value.strip() and not value.startswith(("$", "@", "%")):
            return value.strip()
    return None


def bundle_configs(conf: dict[str, str], default_bundles_dir: str) -> list[BundleConfig]:
    """
    The bundles named by the app's ``--conf`` settings.

    Args:
        conf: the app's settings (see the module docstring).
        default_bundles_dir: the folder of the bundles when ``conf`` has no ``bundles``.

    Returns:
        one :class:`BundleConfig` per bundle, in name order for ``all``, else in the given order.

    Raises:
        ValueError: when a named bundle is not a bundle folder, when no bundle is found, or when the ``overrides``
            or ``texts`` file cannot be read or names an unknown bundle (the message names the file or bundle).
    """
    root = os.path.abspath(conf.get("bundles") or default_bundles_dir)
    available = sorted(
        d
        for d in (os.listdir(root) if os.path.isdir(root) else [])
        if os.path.isfile(os.path.join(root, d, "configs", "inference.json"))
        and os.path.isfile(os.path.join(root, d, "configs", "metadata.json"))
    )
    wanted = conf.get("models", "all").strip()
    names = available if wanted in ("", "all") else [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise ValueError(
            f"bundle(s) {unknown or names} not found in {root} (a bundle folder has configs/inference.json and "
            f"configs/metadata.json); available: {available}. Set --conf models and --conf bundles."
        )
    overrides = _read_json_mapping(conf.get("overrides"), "overrides")
    texts = _read_json_mapping(conf.get("texts"), "texts")
    for what, content in (("overrides", overrides), ("texts", texts)):
        stray = sorted(set(content) - set(available))
        if stray:
            raise ValueError(f"the {what} file {conf.get(what)} names bundles that are not served: {stray}.")
    result = []
    for name in names:
        path = os.path.join(root, name)
        text = texts.get(name) or _bundle_default_text(path) or DEFAULT_TEXT
        result.append(BundleConfig(name=name, path=path, default_text=str(text), overrides=overrides.get(name, {})))
    return result
