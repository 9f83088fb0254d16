"""Scratch buffers kept from one block pass to the next.

A block pass (`features.map_feature_blocks_many`) gives each worker thread a buffer for
its blocks' features (49 channels of a 512² block: 51 MB). Threads and their buffers
normally live for one pass; a caller that runs many passes of one shape (``score``: the
raw image, the replicas, every decoded image) can hand them a `ScratchPool` instead, so
that the memory is taken once: a fresh buffer's first touch costs page faults, and with
transparent huge pages the kernel's gathering of free 2 MB runs (up to 2 s of system CPU
per GB measured on the 2-core machine when other work has taken the freed pages).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ScratchPool"]


class ScratchPool:
    """Free 1-D buffers handed out by size and dtype and taken back (thread-safe).

    At most ``keep`` free buffers are held; a buffer is only reused for a request of
    its dtype and at most its size. The pool's memory is released with the pool (or
    :meth:`clear`).
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = int(keep)
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, size: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """A 1-D buffer of ``size`` elements of ``dtype`` (uninitialised contents)."""
        dt = np.dtype(dtype)
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if b.dtype == dt and b.size >= size]
            if fits:
                best = min(fits, key=lambda i: self._free[i].size)
                return self._free.pop(best)[:size]
        return np.empty(int(size), dt)

    def give(self, buf: np.ndarray) -> None:
        """Return a buffer from :meth:`take` (its base, if a view, is what is kept)."""
        base = buf if buf.base is None else buf.base
        if not isinstance(base, np.ndarray) or base.ndim != 1:
            return
        with self._lock:
            if len(self._free) < self.keep:
                self._free.append(base)

    @contextlib.contextmanager
    def buffer(self, size: int, dtype: np.dtype | type = np.float32) -> Iterator[np.ndarray]:
        """:meth:`take` for the duration of a ``with`` block, then :meth:`give`."""
        buf = self.take(size, dtype)
        try:
            yield buf
        finally:
            self.give(buf)

    def clear(self) -> None:
        """Drop the free buffers."""
        with self._lock:
            self._free.clear()
