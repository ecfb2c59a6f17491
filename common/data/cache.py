# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
The bundles' datasets, one per ``cache_mode`` (:func:`make_dataset`): in memory (:class:`SafeCacheDataset`), on disk
(:class:`SafePersistentDataset`) or none (:class:`SafeDataset`); each names the failing item in its error.

:class:`SafeCacheDataset` is a ``CacheDataset`` whose cache-filling threads have stopped before an error leaves it,
and whose error names the item.

Why: ``monai.data.CacheDataset`` (MONAI 1.6) fills its cache with ``multiprocessing.pool.ThreadPool`` inside a
``with`` block. When one item fails (a truncated PNG, a mask that is not binary), leaving the block calls
``ThreadPool.terminate()``, which for a *thread* pool does not join the worker threads (CPython's
``Pool._terminate_pool`` joins only workers that have a ``terminate`` method, i.e. processes). A daemon worker is
then still running the transforms of the next item, inside PyTorch C++ code with the GIL released, while the
interpreter exits; when it tries to take the GIL back during finalisation CPython ends the thread with
``pthread_exit``, whose forced unwinding through a ``noexcept`` C++ frame calls ``std::terminate``: the process
prints ``terminate called without an active exception`` and dies with SIGABRT (exit status 134) instead of 1.
Seen in this project in 2 of 5 runs of a training on a datalist with a truncated PNG (``--num_workers 0``, i.e. one
cache thread), with a worker thread still inside ``Compose.__call__`` when the error reached the top.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.utils import optional_import

from common.utils.errors import DataError, exception_chain

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = [
    "CACHE_MODES",
    "SafeCacheDataset",
    "SafeDataset",
    "SafePersistentDataset",
    "file_aware_hash",
    "make_dataset",
    "transform_hash",
]


def _describe_item(item) -> str:
    if isinstance(item, dict):
        files = [f"{k} {v!r}" for k, v in item.items() if isinstance(v, str) and k in ("image", "label")]
        if files:
            return ", ".join(files)
    return repr(item)[:200]


class _NamedItemErrors:
    """Mixin: a failure while preparing item ``index`` is re-raised as a ``DataError`` naming the item."""

    data: Sequence

    def _item_error(self, idx: int, error: Exception) -> DataError:
        root = exception_chain(error)[-1]
        kind = type(root).__qualname__
        if type(root).__module__ not in ("builtins", "__main__"):
            kind = f"{type(root).__module__}.{kind}"
        return DataError(f"cannot prepare data item {idx} ({_describe_item(self.data[idx])}): {kind}: {root}")

    def _named_transform(self, index: int, transform: Callable[[int], Any]):
        if not -len(self.data) <= index < len(self.data):
            return transform(index)  # its IndexError ends iteration over the dataset
        try:
            return transform(index)
        except DataError:
            raise
        except Exception as e:
            raise self._item_error(index % len(self.data), e) from e


class SafeCacheDataset(_NamedItemErrors, CacheDataset):
    """
    ``monai.data.CacheDataset`` with two changes to the initial cache filling, same arguments otherwise:

    1. the thread pool is always joined: on success after ``close()``, on failure after ``terminate()``, so no
       worker thread outlives the call (see the module docstring for the abort this prevents); joining waits for
       at most the item each worker is preparing;
    2. a failure while preparing an item, for the cache or later while loading batches (``cache_rate`` < 1,
       random transforms), is re-raised as :class:`common.utils.errors.DataError` naming the item's index, its
       ``image``/``label`` files and the original error (chained with ``from``).

    Args:
        args: positional arguments of ``monai.data.CacheDataset`` (``data``, ``transform``, ...).
        kwargs: keyword arguments of ``monai.data.CacheDataset`` (``cache_rate``, ``num_workers``, ...).

    Raises:
        DataError: when the deterministic transforms fail on an item.

    Examples::

        ds = SafeCacheDataset(data=load_datalist("datalist.json"), transform=preprocessing, num_workers=2)
    """

    def _fill_cache(self, indices=None) -> list:
        """
        Compute the cache content of ``indices`` (default: the first ``cache_num`` items) with
        ``num_workers`` threads, joined before returning or raising.

        Args:
            indices: indices into ``self.data``; default ``None``.
        """
        if self.cache_num <= 0:
            return []
        if indices is None:
            indices = list(range(self.cache_num))
        pool = ThreadPool(self.num_workers)
        try:
            results = pool.imap(self._load_cache_item, indices)
            if self.progress and has_tqdm:
                results = tqdm(results, total=len(indices), desc="Loading dataset")
            out = list(results)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
        return out

    def _load_cache_item(self, idx: int):
        """
        The deterministic transforms of one item, for the cache.

        Args:
            idx: index of the item in ``self.data``.

        Raises:
            DataError: naming the item and the original error.
        """
        try:
            return super()._load_cache_item(idx)
        except DataError:
            raise
        except Exception as e:
            raise self._item_error(idx, e) from e

    def _transform(self, index: int):
        """
        One item as the data loader gets it (cached part plus the remaining transforms, or every transform for
        an item that is not cached): a failure here happens while training, often in a DataLoader worker process,
        where the exception chain is lost, so the message itself names the item.

        Args:
            index: index of the item in ``self.data``.

        Raises:
            DataError: naming the item and the original error.
        """
        return self._named_transform(index, super()._transform)


CACHE_MODES = ("memory", "disk", "none")
"""The values of the bundles' ``cache_mode`` key (see :func:`make_dataset`)."""


class SafeDataset(_NamedItemErrors, Dataset):
    """
    ``monai.data.Dataset`` (every transform on every access, nothing cached) whose errors name the item: a failure
    is re-raised as :class:`common.utils.errors.DataError` with the item's index and ``image``/``label`` files.

    Args:
        data: the datalist entries.
        transform: the transform chain (a ``Compose`` or a sequence of callables).
    """

    def _transform(self, index: int):
        """
        One item through every transform.

        Args:
            index: index of the item in ``self.data``.

        Raises:
            DataError: naming the item and the original error.
        """
        return self._named_transform(index, super()._transform)


def _stat_of(path: Any) -> list[Any] | None:
    if not isinstance(path, str):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def file_aware_hash(item: Any) -> bytes:
    """
    Cache key of a datalist entry for :class:`SafePersistentDataset`: ``monai.data.utils.pickle_hashing`` of the
    entry together with the size and modification time of its ``image`` and ``label`` files, so that a file
    rewritten in place under the same name gets a new cache entry instead of its stale cached tensors (MONAI's
    default key hashes the entry, i.e. the file names, alone).

    Args:
        item: one datalist entry (a dict; any other picklable value is hashed as it is).

    Returns:
        the sha256 hex digest as bytes, as MONAI's ``hash_func`` contract asks.
    """
    if isinstance(item, dict):
        stats = {k: _stat_of(item.get(k)) for k in ("image", "label") if k in item}
        return pickle_hashing({"item": item, "files": stats})
    return pickle_hashing(item)


def _describe_state(obj: Any, depth: int, seen: set[int]) -> Any:
    """A JSON-ready, process-independent description of a transform's configuration (see :func:`transform_hash`)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return hashlib.sha256(obj).hexdigest()
    if isinstance(obj, (torch.dtype, np.dtype, enum.Enum, Path)) or isinstance(obj, type):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if obj.numel() else b""
        return {"array": list(obj.shape), "dtype": str(obj.dtype), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(obj, np.ndarray):
        return {"array": list(obj.shape), "dtype": str(obj.dtype), "sha256": hashlib.sha256(obj.tobytes()).hexdigest()}
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if (
        id(obj) in seen
        or depth <= 0
        or isinstance(obj, torch.nn.Module)
        or callable(obj)
        and not hasattr(obj, "__dict__")
    ):
        return name
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        return [_describe_state(v, depth - 1, seen) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(json.dumps(_describe_state(v, depth - 1, seen), sort_keys=True, default=str) for v in obj)
    if isinstance(obj, dict):
        return {str(k): _describe_state(v, depth - 1, seen) for k, v in obj.items()}
    fields = getattr(obj, "__dict__", None)
    if not isinstance(fields, dict):
        return name
    return {"class": name, **{str(k): _describe_state(v, depth - 1, seen) for k, v in fields.items()}}


def transform_hash(transforms: Sequence[Any]) -> bytes:
    """
    Hash of the cached (deterministic) part of a transform chain, for ``PersistentDataset(hash_transform=...)``.

    MONAI's own options do not fit the bundles' chains: ``json_hashing`` cannot serialise transform objects and
    falls back to their class names, so a changed ``image_size`` would reuse the old cache files; ``pickle_hashing``
    would serialise whole objects, including a text encoder's weights. This hash describes each transform by its
    class and its attributes, recursively (``depth`` 6): numbers, strings, dtypes, small and large arrays (by
    content hash), containers; a ``torch.nn.Module`` or a plain function counts by its class or name only.

    Args:
        transforms: the transforms before the first random one (what ``PersistentDataset.set_transform_hash``
            passes).

    Returns:
        the sha256 hex digest as bytes.
    """
    text = json.dumps(_describe_state(list(transforms), 6, set()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("utf-8")


class SafePersistentDataset(_NamedItemErrors, PersistentDataset):
    """
    ``monai.data.PersistentDataset`` set up for the bundles' on-disk cache (``cache_mode: disk``), with errors that
    name the item.

    Differences from the MONAI defaults, and why:

    - cache key: :func:`file_aware_hash` (entry plus file size and modification time) and :func:`transform_hash`
      (the deterministic transforms' settings), so that neither a rewritten image nor a changed ``image_size``
      reuses stale files;
    - ``track_meta=True`` and ``weights_only=False``: the cached image keeps its ``MetaTensor`` metadata (the
      evaluation's ``MetricsSaver`` reads the file names from it). With MONAI 1.6's default ``weights_only=True``
      a cached ``MetaTensor`` cannot be loaded: MONAI then warns "Corrupt cache file detected", deletes the file
      and recomputes it on every access, i.e. the cache never hits (checked here with a one-item dataset).
      ``weights_only=False`` means ``torch.load`` unpickles the files, so ``cache_dir`` must be a folder only this
      project writes, like a checkpoint folder.

    Args:
        data: the datalist entries.
        transform: the transform chain; the part before the first random transform is cached.
        cache_dir: the folder of the cache files (created when missing).
        kwargs: further arguments of ``monai.data.PersistentDataset``.
    """

    def __init__(self, data: Sequence, transform: Any, cache_dir: str | os.PathLike, **kwargs: Any) -> None:
        kwargs.setdefault("hash_func", file_aware_hash)
        kwargs.setdefault("hash_transform", transform_hash)
        kwargs.setdefault("track_meta", True)
        kwargs.setdefault("weights_only", False)
        super().__init__(data=data, transform=transform, cache_dir=cache_dir, **kwargs)

    def _transform(self, index: int):
        """
        One item: the cached deterministic part (read, or computed and written) plus the random transforms.

        Args:
            index: index of the item in ``self.data``.

        Raises:
            DataError: naming the item and the original error.
        """
        return self._named_transform(index, super()._transform)


def make_dataset(
    data: Sequence,
    transform: Any,
    cache_mode: str = "memory",
    cache_rate: float = 1.0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = 1,
    progress: bool = True,
) -> Dataset:
    """
    The dataset of one split, cached as the bundle's ``cache_mode`` key says (the one switch between the caches).

    - ``"memory"``: :class:`SafeCacheDataset` keeps the output of the deterministic transforms (loading, channel
      and mask checks, intensity scaling, resizing, tokenising) of ``cache_rate`` of the items in RAM, filled
      before training with ``num_workers`` threads; the random transforms run per batch.
    - ``"disk"``: :class:`SafePersistentDataset` writes the same output to ``cache_dir`` on first use and reads it
      afterwards (memory stays flat as the data set grows; the files survive the run, so the next run starts
      without the preparation pass).
    - ``"none"``: :class:`SafeDataset`, every transform on every access.

    Args:
        data: the datalist entries.
        transform: the transform chain (a ``monai.transforms.Compose``).
        cache_mode: ``"memory"`` (default), ``"disk"`` or ``"none"``.
        cache_rate: the fraction of items cached in ``"memory"`` mode, in [0, 1]; default 1.0. Ignored otherwise.
        cache_dir: the cache folder, required in ``"disk"`` mode; default ``None``.
        num_workers: threads that fill the memory cache; default 1.
        progress: show the memory cache's filling progress bar; default ``True``.

    Returns:
        the dataset.

    Raises:
        ValueError: an unknown ``cache_mode``, or ``"disk"`` without a ``cache_dir`` (the message names the key).
    """
    if cache_mode not in CACHE_MODES:
        raise ValueError(f"cache_mode: expected one of {list(CACHE_MODES)}, got {cache_mode!r}.")
    if cache_mode == "disk":
        if cache_dir is None or not str(cache_dir).strip():
            raise ValueError("cache_dir: cache_mode 'disk' needs a cache folder, got none.")
        return SafePersistentDataset(data=data, transform=transform, cache_dir=cache_dir)
    if cache_mode == "none":
        return SafeDataset(data=data, transform=transform)
    return SafeCacheDataset(
        data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers, progress=progress
    )
