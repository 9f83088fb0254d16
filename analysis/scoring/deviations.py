"""The deviation Δ of a parameter, its standard score ε = Δ/σ and the replica σ.

The primitives both :mod:`.standard_score` (per-codec scores) and :mod:`.nullstats`
(the leave-one-out null) are built on; their own module so that neither imports
the other's module at call time (no import cycle).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ANGLE_PARAMS", "delta", "epsilon", "replica_sigma"]


ANGLE_PARAMS = frozenset({"Angle", "FeretAngle", "angle", "feret_angle"})


def delta(param: str, raw: np.ndarray | float, other: np.ndarray | float) -> np.ndarray:
    """Return χ_raw − χ_other, wrapped into [−90, 90) for axial angles (degrees)."""
    d = np.asarray(raw, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    if param in ANGLE_PARAMS:
        d = (d + 90.0) % 180.0 - 90.0
    return d


def epsilon(d: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    """Standard score Δ/σ with the σ = 0 convention (0 if Δ = 0, else ±inf).

    NaN in either input gives NaN (object not matched, or too few replicas).
    """
    d = np.asarray(d, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = d / s
    zero = (s == 0) & (d == 0)
    return np.where(zero, 0.0, e)


def replica_sigma(values: np.ndarray, min_count: int = 2, rtol: float = 1e-6) -> np.ndarray:
    """Std (ddof=1) over axis 0 ignoring NaN; NaN where fewer than ``min_count`` values.

    A spread below ``rtol·(1 + |mean|)`` is floating-point round-off of a value that did
    not change over the replicas and is returned as exactly 0.
    """
    v = np.asarray(values, dtype=np.float64)
    cnt = np.sum(np.isfinite(v), axis=0)
    out = np.full(v.shape[1:], np.nan)
    ok = cnt >= max(min_count, 2)
    if np.any(ok):
        vv = v[:, ok]
        s = np.nanstd(vv, axis=0, ddof=1)
        s[s <= rtol * (1.0 + np.abs(np.nanmean(vv, axis=0)))] = 0.0
        out[ok] = s
    return out
