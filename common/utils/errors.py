# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Errors that name what is wrong with the user's data, and a top-level hook that repeats the real cause last.

``python -m monai.bundle run`` wraps every failure of a config item: an error raised while an expression is
evaluated ends as ``RuntimeError: Failed to evaluate ConfigExpression ...`` and one raised while a component is
built as ``RuntimeError: Failed to instantiate component '...CacheDataset' ...`` (``monai.bundle.config_item``,
``monai.utils.module.instantiate``). The cause (which file, what is wrong) is then in the middle of a long
traceback. :func:`install_error_summary` installs a ``sys.excepthook`` that prints the usual traceback and then a
short summary of the cause, so the last lines a user sees name the file and the problem. The exit status stays the
interpreter's (1 for an uncaught exception).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["DataError", "exception_chain", "error_summary", "install_error_summary"]

_SUMMARY_RULE = "=" * 30


class DataError(ValueError):
    """
    The user's data is wrong (a file, an entry of a datalist); the message names the file or entry and what is
    wrong. A ``ValueError``, so code that catches ``ValueError`` keeps working.
    """


def exception_chain(exc: BaseException) -> list[BaseException]:
    """
    The chain of an exception, outermost first: ``exc``, its ``__cause__`` (``raise ... from``) or, unless
    suppressed, its ``__context__``, and so on. Cycles are cut.

    Args:
        exc: the exception.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        chain.append(current)
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def error_summary(exc: BaseException) -> str:
    """
    A short statement of what went wrong: the outermost :class:`DataError` of the chain (it names the file), or
    else the innermost exception (the original error under MONAI's wrappers), as ``<type>: <message>``.

    Args:
        exc: the exception that ended the program.

    Returns:
        the summary, several lines when the message has several (e.g. a list of problems).
    """
    chain = exception_chain(exc)
    data_errors = [e for e in chain if isinstance(e, DataError)]
    cause = data_errors[0] if data_errors else chain[-1]
    message = str(cause).strip() or "(no message)"
    return f"{type(cause).__name__}: {message}"


def install_error_summary(stream: TextIO | None = None) -> Callable:
    """
    Install a ``sys.excepthook`` that prints the traceback as usual (through the hook it replaces) and then,
    when the exception is a wrapper of another one, a block::

        ============================== error ==============================
        DatalistError: 2 problem(s) in datalist '/data/datalist.json':
          split 'training' entry 3 (key 'label'): mask /data/masks/a.png: ...

    so the last lines name the cause. Calling it again does not stack hooks. Bundles call it first in their
    ``initialize`` list.

    Args:
        stream: where the summary goes; default ``None``: ``sys.stderr`` at the time of the error.

    Returns:
        the installed hook.
    """
    previous = sys.excepthook
    if getattr(previous, "_prints_error_summary", False):
        return previous

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        previous(exc_type, exc, tb)
        if isinstance(exc, KeyboardInterrupt) or len(exception_chain(exc)) < 2:
            return  # the traceback already ends with the cause
        out = stream if stream is not None else sys.stderr
        try:
            print(f"\n{_SUMMARY_RULE} error {_SUMMARY_RULE}\n{error_summary(exc)}", file=out, flush=True)
        except Exception:  # never hide the original error behind a failure of the summary
            traceback.print_exc()

    hook._prints_error_summary = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    return hook
