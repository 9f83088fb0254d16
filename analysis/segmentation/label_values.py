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
        return (np.flatnonzero(np.bincount(a.ravel())[first:]) + first).astype(a.dtype)
    return np.unique(a[a > 0] if positive else a)
