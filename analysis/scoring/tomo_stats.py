"""Exact statistics of volumes read slab by slab (the chunked tomography path).

The plaque rule (:mod:`rawsigma.analysis.segmentation.plaques3d`) is fitted with a
few whole-volume statistics: a quantile of the raw volume, Otsu's threshold and a
median of the smoothed volume, a quantile of the plaque response inside the organ.
For a volume that does not fit in memory they are computed here from slabs, to the
same value as numpy/skimage give on the whole array:

- `chunked_quantile` / `chunked_median`: the order statistics are found by
  histogram narrowing (exact comparisons against bin edges, then the values of one
  bin gathered and partitioned), and combined by ``np.quantile`` / ``np.median`` on
  the two order statistics with the same interpolation weight, hence the same
  arithmetic and dtype as on the whole array;
- `chunked_otsu`: the 256-bin histogram over the global range, accumulated over
  slabs (the same bin edges for every slab), given to
  ``skimage.filters.threshold_otsu(hist=…)``.

``values`` is a callable returning a fresh iterable of 1-D arrays (one per slab):
every statistic reads the data a few times (2–4 passes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["chunked_median", "chunked_otsu", "chunked_quantile", "count_min_max"]

Values = Callable[[], Iterable[np.ndarray]]
_BINS = 4096
_GATHER = 1 << 22


def count_min_max(values: Values) -> tuple[int, Any, Any]:
    """Number of values, smallest and largest (numpy scalars of the data's dtype)."""
    n, lo, hi = 0, None, None
    for v in values():
        if v.size == 0:
            continue
        n += v.size
        a, b = v.min(), v.max()
        lo = a if lo is None or a < lo else lo
        hi = b if hi is None or b > hi else hi
    return n, lo, hi


def _bin_index(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, v, side="right") - 1, 0, edges.size - 2)


def _order_stats(values: Values, k: int, n: int, lo: Any, hi: Any) -> tuple[Any, Any]:
    """The ``k``-th and ``k+1``-th smallest of ``n`` values (0-based).

    Every value lies within [lo, hi]; the second is None when there is no such value.
    Both come from one gather when they share a bin.
    """
    below, n_in = 0, n  # values smaller than lo; values within [lo, hi]
    while True:
        if lo == hi:
            return lo, (lo if k + 1 - below < n_in else _next_above(values, lo))
        edges = np.linspace(float(lo), float(hi), _BINS + 1)
        counts = np.zeros(_BINS, np.int64)
        for v in values():
            v = v[(v >= lo) & (v <= hi)]
            counts += np.bincount(_bin_index(v, edges), minlength=_BINS)
        cum = np.cumsum(counts)
        j = int(np.searchsorted(cum, k - below, side="right"))
        below += int(cum[j - 1]) if j else 0
        n_in = int(counts[j])
        if n_in <= _GATHER:
            got = np.sort(_in_bin(values, edges, j))
            i = k - below
            nxt = got[i + 1] if i + 1 < got.size else _next_above(values, got[i])
            return got[i], nxt
        lo, hi = _bin_range(values, edges, j)


def _in_bin(values: Values, edges: np.ndarray, j: int) -> np.ndarray:
    parts = []
    for v in values():
        v = v[(v >= edges[j]) & (v <= edges[j + 1])]
        parts.append(v[_bin_index(v, edges) == j])
    return np.concatenate(parts)


def _bin_range(values: Values, edges: np.ndarray, j: int) -> tuple[Any, Any]:
    mn, mx = None, None
    for v in values():
        v = v[(v >= edges[j]) & (v <= edges[j + 1])]
        v = v[_bin_index(v, edges) == j]
        if v.size:
            mn = v.min() if mn is None else min(mn, v.min())
            mx = v.max() if mx is None else max(mx, v.max())
    return mn, mx


def _next_above(values: Values, x: Any) -> Any:
    """The smallest value greater than ``x`` (None if there is none)."""
    best = None
    for v in values():
        v = v[v > x]
        if v.size:
            m = v.min()
            best = m if best is None or m < best else best
    return best


def chunked_quantile(values: Values, q: float) -> Any:
    """``np.quantile(all_values, q)`` (linear interpolation) from slabs.

    Raises
    ------
    ValueError
        No values.
    """
    n, lo, hi = count_min_max(values)
    if n == 0:
        raise ValueError("chunked_quantile: no values")
    pos = (n - 1) * q
    k = min(int(math.floor(pos)), n - 1)
    gamma = pos - k
    a, b = _order_stats(values, k, n, lo, hi)
    b = a if k + 1 >= n else b
    return np.quantile(np.array([a, b], dtype=np.asarray(a).dtype), gamma)


def chunked_median(values: Values) -> Any:
    """``np.median(all_values)`` from slabs; ``None`` when there are no values."""
    n, lo, hi = count_min_max(values)
    if n == 0:
        return None
    a, b = _order_stats(values, (n - 1) // 2, n, lo, hi)
    if n % 2:
        return np.median(np.array([a], dtype=np.asarray(a).dtype))
    return np.median(np.array([a, b], dtype=np.asarray(a).dtype))


def chunked_otsu(values: Values, nbins: int = 256) -> Any:
    """``skimage.filters.threshold_otsu(all_values)`` from slabs."""
    from skimage.filters import threshold_otsu

    n, lo, hi = count_min_max(values)
    if n == 0:
        raise ValueError("chunked_otsu: no values")
    if lo == hi:
        return lo
    counts, edges = None, None
    for v in values():
        c, edges = np.histogram(v, bins=nbins, range=(lo, hi))
        counts = c if counts is None else counts + c
    assert edges is not None
    centres = (edges[:-1] + edges[1:]) / 2.0
    return threshold_otsu(hist=(counts, centres))
