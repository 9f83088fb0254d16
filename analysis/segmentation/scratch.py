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
    """Free buffers handed out by size and taken back (thread-safe), of any dtype.

    The pool holds raw memory: a buffer given back (any C-contiguous array, e.g. a
    block of features a pass no longer needs) serves any later request of at most its
    size in bytes. At most ``keep`` free buffers are held; the memory is released with
    the pool (or :meth:`clear`).
    """

    def __init__(self, keep: int = 6) -> None:
        self.keep = int(keep)
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, size: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """A 1-D buffer of ``size`` elements of ``dtype`` (uninitialised contents)."""
        dt = np.dtype(dtype)
        nbytes = int(size) * dt.itemsize
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if b.size >= nbytes]
            if fits:
                raw = self._free.pop(min(fits, key=lambda i: self._free[i].size))
                return raw[:nbytes].view(dt)
        return np.empty(int(size), dt)

    def give(self, buf: np.ndarray) -> None:
        """Return memory for reuse: the whole array that ``buf`` is a view of.

        The caller must not use ``buf`` (or any view of its memory) afterwards.
        """
        root = buf
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not root.flags.c_contiguous or not root.flags.writeable:
            return
        raw = root.reshape(-1).view(np.uint8)
        with self._lock:
            if len(self._free) < self.keep and all(b.ctypes.data != raw.ctypes.data
                                                   for b in self._free):  # fmt: skip
                self._free.append(raw)

    @contextlib.contextmanager
    def buffer(self, size: int, dtype: np.dtype | type = np.float32) -> Iterator[np.ndarray]:
        """:meth:`take` for the duration of a ``with`` block, then :meth:`give`."""
        buf = self.take(size, dtype)
        try:
            yield buf
        finally:
            self.give(buf)

    def trim(self, n: int) -> None:
        """Keep at most the ``n`` largest free buffers (and hold at most ``n`` from now)."""
        with self._lock:
            self.keep = max(0, int(n))
            self._free = sorted(self._free, key=lambda b: -b.size)[: self.keep]

    def clear(self) -> None:
        """Drop the free buffers."""
        self.trim(0)
