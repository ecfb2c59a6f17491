# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
Orderly end of a multi-process run, so that no communication thread outlives the Python interpreter.

A gloo process group runs C++ worker threads that keep work objects holding tensors (and, through futures and
DistributedDataParallel's reducer, Python references). If the group is still alive when the interpreter finalises,
releasing those objects needs the GIL of an interpreter being torn down and the process dies with SIGABRT
(``terminate called without an active exception``, exit status 134): the mechanism described in PyTorch pull request
#179291 ("Register atexit handler to destroy process groups before interpreter finalization"), which proposes the
atexit hook used here; it is not merged in the PyTorch this project uses, so the bundles register it themselves.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Sequence

__all__ = ["release_process_group", "end_process_group", "end_process_group_at_exit"]

_registered = False

#: attributes through which ``torch.nn.parallel.DistributedDataParallel`` keeps its process group alive
_DDP_GROUP_HOLDERS = ("reducer", "logger", "process_group")


def release_process_group(modules: Sequence = ()) -> int:
    """
    Drop the references that ``DistributedDataParallel`` modules keep to their process group (its C++
    ``reducer`` and ``logger`` and its ``process_group``), then collect garbage, so that the group object is
    destroyed now and its C++ threads are joined while the interpreter is alive.

    Why: ``destroy_process_group()`` only removes the group from ``torch.distributed``'s registry; a DDP module
    still holds it, and the gloo threads (``gloo_tcp_loop``, ``pt_gloo_runloop``) keep running into interpreter
    finalisation. Measured in this project: after ``destroy_process_group()`` both ranks of the 2-process test still
    had these three threads; after this call they had none. A gloo thread that then releases the last reference to
    a tensor with a Python object needs the GIL of a finalising interpreter, and the rank aborts
    (``terminate called without an active exception``, seen once in about 50 two-process runs here).
    The modules are unusable for training afterwards (their weights stay usable through ``.module``).

    Args:
        modules: the modules to release; entries that are not ``DistributedDataParallel`` are skipped.

    Returns:
        the number of DDP modules released.
    """
    from torch.nn.parallel import DistributedDataParallel

    released = 0
    for module in modules:
        if isinstance(module, DistributedDataParallel):
            for attr in _DDP_GROUP_HOLDERS:
                if hasattr(module, attr):
                    delattr(module, attr)
            released += 1
    gc.collect()
    return released


def end_process_group(barrier: bool = True, release: Sequence = ()) -> bool:
    """
    End the default process group when one is initialised: wait for every rank (``barrier``), so no rank shuts
    its side down while another still communicates, ``torch.distributed.destroy_process_group()``, and then
    :func:`release_process_group` on ``release`` so the group's threads are joined before the process exits.

    Args:
        barrier: wait for every rank first; default ``True``. The atexit hook uses ``False`` (a rank leaving on an
            error must not wait for ranks that will never arrive).
        release: the ``DistributedDataParallel`` modules of the run (e.g. ``[@network]`` in a bundle's
            ``finalize``); default ``()``.

    Returns:
        whether a process group was destroyed.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        release_process_group(release)
        return False
    if barrier:
        dist.barrier()
    dist.destroy_process_group()
    release_process_group(release)
    return True


def end_process_group_at_exit() -> None:
    """
    Register (once per process) an ``atexit`` hook that destroys a process group still alive at exit, while the
    interpreter can still run the clean-up: after an error, or when ``finalize`` is not reached. Bundles call it
    in ``multi_gpu_train.json`` right after ``init_process_group``. It does not release DDP modules (it does not
    know them); ``finalize`` does, through :func:`end_process_group`.
    """
    global _registered
    if not _registered:
        atexit.register(end_process_group, barrier=False)
        _registered = True
