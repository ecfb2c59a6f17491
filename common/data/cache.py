# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""
A ``CacheDataset`` whose cache-filling threads have stopped before an error leaves it, and whose error names the
item.

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

from multiprocessing.pool import ThreadPool

from monai.data import CacheDataset
from monai.utils import optional_import

from common.utils.errors import DataError, exception_chain

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")

__all__ = ["SafeCacheDataset"]


def _describe_item(item) -> str:
    if isinstance(item, dict):
        files = [f"{k} {v!r}" for k, v in item.items() if isinstance(v, str) and k in ("image", "label")]
        if files:
            return ", ".join(files)
    return repr(item)[:200]


class SafeCacheDataset(CacheDataset):
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

    def _item_error(self, idx: int, error: Exception) -> DataError:
        root = exception_chain(error)[-1]
        kind = type(root).__qualname__
        if type(root).__module__ not in ("builtins", "__main__"):
            kind = f"{type(root).__module__}.{kind}"
        return DataError(f"cannot prepare data item {idx} ({_describe_item(self.data[idx])}): {kind}: {root}")

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
        if not -len(self.data) <= index < len(self.data):
            return super()._transform(index)  # its IndexError ends iteration over the dataset
        try:
            return super()._transform(index)
        except DataError:
            raise
        except Exception as e:
            raise self._item_error(index % len(self.data), e) from e
