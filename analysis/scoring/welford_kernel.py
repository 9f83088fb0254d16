"""Compiled Welford fold of feature blocks (the replicas' feature σ).

`fold` performs, element by element, the float64 operations of
`standard_score.FeatureStats.add` (``d = x - mean; mean += d / n; m2 += d * (x - mean)``)
in one pass over memory instead of seven numpy passes with float64 temporaries, and
`finish` the float32 σ of `FeatureStats.sigma` (``sqrt(m2 / (n - 1))``); numba keeps
the IEEE operations as written (no fast-math, no fused multiply-add), so the values are
identical (test). `fold` releases the GIL; `finish` runs once per block and is numpy on
small slices (the same three IEEE operations, and no kernel to compile on a first run).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

jitcache.install()

__all__ = ["finish", "fold"]


@nb.njit(cache=True, nogil=True)
def fold(mean, m2, x, n):  # pragma: no cover - numba
    """Fold ``x`` (float32, flat) as the ``n``-th sample into ``mean``, ``m2`` (float64)."""
    nf = np.float64(n)
    for i in range(x.size):
        xi = np.float64(x[i])
        d = xi - mean[i]
        mu = mean[i] + d / nf
        mean[i] = mu
        m2[i] = m2[i] + d * (xi - mu)


_FINISH = 1 << 14  # elements per slice of `finish` (bounded float64 scratch)


def finish(m2: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out`` (float32, flat) ← ``sqrt(m2 / (n - 1))`` rounded once to float32."""
    nm1 = np.float64(n - 1)
    tmp = np.empty(min(m2.size, _FINISH))
    for a in range(0, m2.size, _FINISH):
        t = tmp[: min(m2.size - a, _FINISH)]
        np.divide(m2[a : a + t.size], nm1, out=t)
        np.sqrt(t, out=t)
        out[a : a + t.size] = t
