# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Checks of bundle config values that MONAI's command line can get wrong silently."""

from __future__ import annotations

__all__ = ["require", "require_bool", "require_choice"]


def require_bool(**flags) -> None:
    """
    Raises unless every flag is a real boolean.

    ``python -m monai.bundle run`` parses its ``--key value`` overrides with python-fire, which turns ``True``
    into a boolean but ``true``/``false`` into the *strings* ``"true"``/``"false"``; the string ``"false"`` is
    truthy, so ``--resume false`` would silently resume. Bundles call this in ``initialize`` on their boolean keys.

    Args:
        flags: ``key=value`` pairs, e.g. ``require_bool(resume=@resume, amp=@amp)``.

    Raises:
        ValueError: naming every key whose value is not ``True`` or ``False`` and how to write it.
    """
    bad = {k: v for k, v in flags.items() if not isinstance(v, bool)}
    if bad:
        listed = ", ".join(f"`{k}`={v!r}" for k, v in bad.items())
        raise ValueError(
            f"boolean config keys {listed} must be True or False; on the command line write e.g. "
            f"`--{next(iter(bad))} True` (python-fire reads `true`/`false` as strings)."
        )


def require_choice(key: str, value, choices) -> None:
    """
    Raises unless ``value`` is one of ``choices``.

    Args:
        key: the config key, named in the error.
        value: its value.
        choices: the allowed values.

    Raises:
        ValueError: naming the key, the value and the allowed values.
    """
    if value not in tuple(choices):
        raise ValueError(f"config key `{key}` is {value!r}; it must be one of {list(choices)}.")


def require(condition: bool, message: str) -> None:
    """
    Raises ``ValueError(message)`` unless ``condition`` holds; for config checks that read as a sentence
    (e.g. "semi-supervised training runs on one process").

    Args:
        condition: what must hold.
        message: the error, naming the keys involved and how to fix them.
    """
    if not condition:
        raise ValueError(message)
