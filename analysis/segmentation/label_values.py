"""The distinct values of label and level arrays, counted rather than sorted."""

from __future__ import annotations

import numpy as np

__all__ = ["distinct_values"]


def distinct_values(values: np.ndarray, positive: bool = False) -> np.ndarray:
    """``np.unique(values)`` (with ``positive``: of the values > 0), in ``values``' dtype.

    Integer arrays with every value in [0, 2**16) (8- and 16-bit unsigned by their dtype,
    other integers by their range) are counted (`np.bincount`, one pass) instead of
    sorted: the same values.
    """
    a = np.asarray(values)
    small = a.dtype.kind == "u" and a.dtype.itemsize <= 2
    if not small and a.dtype.kind in "ui" and a.size:
        small = bool(a.min() >= 0 and a.max() < 1 << 16)
    if small and a.size:
        first = int(positive)
        return (np.flatnonzero(_counts(a.ravel())[first:]) + first).astype(a.dtype)
    return np.unique(a[a > 0] if positive else a)


#: elements counted at a time: `np.bincount` casts its input to intp, a temporary this
#: size (2 MB, recycled by the allocator) instead of 8 bytes per element of the image
_COUNT_CHUNK = 1 << 18


def _counts(flat: np.ndarray) -> np.ndarray:
    """``np.bincount(flat)`` of non-negative integers below 2**16, chunk by chunk."""
    if flat.dtype.itemsize > 2 or flat.size <= _COUNT_CHUNK:
        return np.bincount(flat)
    top = 1 << (8 * flat.dtype.itemsize)
    counts = np.zeros(top, np.intp)
    for i in range(0, flat.size, _COUNT_CHUNK):
        counts += np.bincount(flat[i : i + _COUNT_CHUNK], minlength=top)
    return counts
