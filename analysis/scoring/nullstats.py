"""Calibrated verdict: the leave-one-out null of the per-parameter statistic.

The paper's rule ("every |mean ε over objects| < 1") has an unknown false-alarm rate:
σ_raw from n replicas has a heavy-tailed inverse, discrete parameters (integer area,
Feret end points) give σ_raw = 0 or tiny, and one object can then decide the mean.
This module defines a statistic whose null distribution is measured on the very
replicas the run already segmented, and a family-wise decision over the parameters.

Statistic, per parameter p and processed image c
------------------------------------------------
- Resolution floor: ``σ_eff,i = sqrt(σ_raw,i² + q_i²/12)`` with ``q_i`` the parameter's
  quantum for object i (:func:`parameter_quantum`: 1 px for area and lengths, the
  centroid shift of one boundary pixel for x/y, …). A parameter that did not change
  over the replicas gets a finite ε, never ±inf.
- ``e_i = Δ_i / σ_eff,i`` and ``T = robust location of e over matched objects``
  (20 % trimmed mean each side; the median below 5 objects), so one object cannot
  decide T.

Null distribution (leave-one-out, no extra segmentation)
--------------------------------------------------------
Replica k is scored like a codec: ``Δ^(k) = χ_raw − χ_k``, σ from the other n − 1
replicas (floored the same way), giving ``T^(k)``: n draws of the statistic for a
raw-equivalent image. Ten draws are too few for a 95 % family-wise quantile, so the
null is parametric, fitted on them:

- centre ``b = mean_k T^(k)`` (the synthesis bias of observed-centred replicas; zero
  for denoised-centred ones);
- spread ``se(N) = s₁/√N`` for a statistic over N objects, where ``s₁`` is the larger of
  the pooled trimmed-mean standard error (winsorised variance of the n·N leave-one-out
  scores, Tukey–McLaughlin) scaled to one object, and the spread of the n values
  ``T^(k)`` scaled the same way (this one also carries any correlation between
  objects).

Objects lost or invented
------------------------
A version that loses objects leaves fewer (or no) matched objects to score, so the
count of raw objects without a match plus objects without a raw match,
``d = n_unmatched_ref + n_unmatched_other``, is one more member of the family
(:func:`matching_test`): its null is the same count for each replica against raw,
mean ``d̄``, spread ``sd = sqrt(max(s², d̄, 1))`` (Poisson-like, at least one object);
it exceeds iff ``d − d̄ ≥ z·sd``.

Decision
--------
With P parameters tested, Bonferroni ``z = Φ⁻¹(1 − α/(2P))`` (valid whatever the
correlation between parameters) and ``crit = |b| + z·se(N_c)``. Parameter p *exceeds
the noise* iff ``|T| ≥ max(margin, crit)``, margin 1: shifts smaller than one raw σ
on average are within noise by definition (the paper's effect size), and a shift
larger than that must also be outside the null to count. A raw-equivalent image is
therefore called within noise with probability ≥ 1 − α (family-wise), whatever the
object count; the measured rate is in ``benchmarks/RESULTS.md``. Reported with it:
``p`` (two-sided, beyond the bias), ``p_fw = min(1, P·p)``, the null quantile
``Φ((T − b)/se)``, and ``crit``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rawsigma.analysis.scoring.deviations import delta, epsilon, replica_sigma
from scipy import special

__all__ = [
    "MARGIN",
    "TRIM",
    "ParamNull",
    "calibrated_test",
    "codec_matching_test",
    "family_summary",
    "floored_sigma",
    "loo_null",
    "matching_test",
    "n_unmatched",
    "parameter_quantum",
    "robust_location",
    "trimmed_se_unit",
]

TRIM = 0.2  # fraction trimmed at each end
MIN_TRIM_N = 5  # below this many objects: the median
MARGIN = 1.0  # effect-size margin (the paper's |ε| < 1)

_LENGTHS = frozenset({"perimeter", "major", "minor", "feret", "min_feret", "feret_x", "feret_y"})
_RATIOS = frozenset(
    {"circularity", "aspect_ratio", "roundness", "solidity", "feret_ar", "compactness", "extent"}
)


def parameter_quantum(param: str, table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-object resolution ``q`` of a parameter: its change for one boundary pixel.

    Parameters
    ----------
    param : str
        Parameter name (:data:`rawsigma.analysis.measurement.morphometry.PARAMETERS`).
    table : mapping
        Raw object table (needs ``area``; ``major``/``feret`` for the angles).

    Returns
    -------
    ndarray of float64, (n_objects,)
        Area 1 px; lengths 1 px; centroid 1/√(πA) px (one pixel at the boundary,
        radius √(A/π), moves it by r/A); angles (180/π)/length degrees; shape ratios
        |χ|/√A (relative change O(1/√A) of a perimeter-like ratio); unknown
        parameters 0 (no floor).
    """
    area = np.maximum(np.asarray(table["area"], dtype=np.float64), 1.0)
    n = area.size
    if param == "area":
        return np.ones(n)
    if param in _LENGTHS:
        return np.ones(n)
    if param in ("x", "y"):
        return 1.0 / np.sqrt(math.pi * area)
    if param in ("angle", "feret_angle"):
        ref = table.get("major" if param == "angle" else "feret")
        length = np.sqrt(area) if ref is None else np.asarray(ref, dtype=np.float64)
        return (180.0 / math.pi) / np.maximum(length, 1.0)
    if param in _RATIOS:
        v = np.abs(np.asarray(table[param], dtype=np.float64))
        return np.where(np.isfinite(v), v, 0.0) / np.sqrt(area)
    return np.zeros(n)


def floored_sigma(sigma: np.ndarray, quantum: np.ndarray | float) -> np.ndarray:
    """``sqrt(σ² + q²/12)``: σ_raw with the parameter's resolution floor (NaN stays)."""
    s = np.asarray(sigma, dtype=np.float64)
    q = np.asarray(quantum, dtype=np.float64)
    return np.sqrt(s * s + q * q / 12.0)


def _finite(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64).ravel()
    return e[np.isfinite(e)]


def robust_location(e: np.ndarray) -> float:
    """20 % trimmed mean of the finite entries (median below 5; NaN if none)."""
    f = _finite(e)
    if f.size == 0:
        return math.nan
    if f.size < MIN_TRIM_N:
        return float(np.median(f))
    g = int(math.floor(TRIM * f.size))
    s = np.sort(f)
    return float(s[g : f.size - g].mean())


def trimmed_se_unit(e: np.ndarray) -> float:
    """Standard error of :func:`robust_location` times √N (Tukey–McLaughlin).

    ``s_w / (1 − 2g)`` with ``s_w`` the winsorised standard deviation; for the median
    (N < 5) the normal-theory ``1.2533·sd``. NaN below 2 values.
    """
    f = _finite(e)
    if f.size < 2:
        return math.nan
    if f.size < MIN_TRIM_N:
        return float(1.2533 * f.std(ddof=1))
    g = int(math.floor(TRIM * f.size))
    s = np.sort(f)
    if g:
        s[:g] = s[g]
        s[-g:] = s[-g - 1]
    return float(s.std(ddof=1) / (1.0 - 2.0 * g / f.size))


@dataclass
class ParamNull:
    """Leave-one-out null of one parameter's statistic."""

    param: str
    t_loo: np.ndarray  # (n_rep,) T^(k)
    n_loo: np.ndarray  # (n_rep,) objects entering T^(k)
    bias: float  # mean T^(k)
    unit_se: float  # s₁: se of T over N objects = unit_se/√N
    pooled_unit_se: float
    spread_unit_se: float

    def se(self, n_objects: int) -> float:
        """Null standard error of T over ``n_objects`` objects."""
        if n_objects < 1 or not math.isfinite(self.unit_se):
            return math.nan
        return self.unit_se / math.sqrt(n_objects)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "bias": self.bias,
            "unit_se": self.unit_se,
            "pooled_unit_se": self.pooled_unit_se,
            "spread_unit_se": self.spread_unit_se,
            "t_loo": [float(v) for v in self.t_loo],
            "max_abs_t_loo": float(np.nanmax(np.abs(self.t_loo))) if self.t_loo.size else math.nan,
        }


def loo_null(
    param: str,
    raw: np.ndarray,
    replica_matched: np.ndarray,
    quantum: np.ndarray,
    *,
    min_replicas: int = 2,
) -> ParamNull:
    """Null of T for one parameter: each replica scored against raw, σ from the others.

    Parameters
    ----------
    param : str
        Parameter name (axial angles are wrapped).
    raw : (n_obj,) array
        Raw values.
    replica_matched : (n_rep, n_obj) array
        Replica values re-indexed onto the raw objects (NaN where unmatched).
    quantum : (n_obj,) array
        Resolution of the parameter per object (:func:`parameter_quantum`).
    min_replicas : int
        Matched replicas needed (among the other n − 1) for an object's σ.
    """
    rep = np.asarray(replica_matched, dtype=np.float64)
    n = rep.shape[0]
    dev = delta(param, np.asarray(raw, dtype=np.float64)[None, :], rep)  # (n, N)
    t, cnt, units = np.full(n, np.nan), np.zeros(n, int), []
    for k in range(n):
        others = np.delete(dev, k, axis=0)
        s = floored_sigma(replica_sigma(others, min_replicas), quantum)
        e = _finite(epsilon(dev[k], s))
        t[k] = robust_location(e)
        cnt[k] = e.size
        u = trimmed_se_unit(e)
        if math.isfinite(u):
            units.append(u)
    pooled = float(np.sqrt(np.mean(np.square(units)))) if units else math.nan
    ok = np.isfinite(t) & (cnt > 0)
    if ok.sum() >= 2:
        spread = float(np.std(t[ok], ddof=1) * math.sqrt(np.mean(cnt[ok])))
    else:
        spread = math.nan
    both = [v for v in (pooled, spread) if math.isfinite(v)]
    unit = max(both) if both else math.nan
    bias = float(np.mean(t[ok])) if ok.any() else math.nan
    return ParamNull(param, t, cnt, bias, unit, pooled, spread)


def calibrated_test(
    t_stat: float, n_objects: int, null: ParamNull | None, n_params: int, alpha: float = 0.05
) -> dict:
    """Place T in its null; decide ``exceeds`` family-wise over ``n_params`` parameters.

    Returns
    -------
    dict
        ``t`` (robust ε), ``n``, ``bias``, ``se``, ``crit`` (|b| + z·se),
        ``limit`` (max(margin, crit)), ``z_fw``, ``p`` (two-sided, beyond |b|),
        ``p_fw`` (Bonferroni), ``null_quantile`` (Φ((T − b)/se)), ``exceeds``.
    """
    z = float(special.ndtri(1.0 - alpha / (2.0 * max(n_params, 1))))
    out = {"t": t_stat, "n": int(n_objects), "z_fw": z, "alpha": alpha, "margin": MARGIN}
    se = null.se(n_objects) if null is not None else math.nan
    b = null.bias if null is not None else math.nan
    if math.isfinite(t_stat) and math.isfinite(b) and se == 0:
        # degenerate null: every leave-one-out draw gave the same T (a parameter that
        # never moved); the margin decides
        side = float(np.sign(t_stat - b))
        out.update(bias=b, se=0.0, crit=abs(b), limit=max(MARGIN, abs(b)),
                   p=1.0 if abs(t_stat) <= abs(b) else 0.0,
                   p_fw=1.0 if abs(t_stat) <= abs(b) else 0.0,
                   null_quantile=0.5 + 0.5 * side, exceeds=bool(abs(t_stat) >= max(MARGIN, abs(b))),
                   calibrated=True, degenerate=True)  # fmt: skip
        return out
    if not (math.isfinite(t_stat) and math.isfinite(se) and math.isfinite(b)) or se <= 0:
        # no null: fall back to the effect-size margin alone (paper-like, uncalibrated)
        exceeds = math.isfinite(t_stat) and abs(t_stat) >= MARGIN
        out.update(bias=b, se=se, crit=math.nan, limit=MARGIN, p=math.nan, p_fw=math.nan,
                   null_quantile=math.nan, exceeds=bool(exceeds), calibrated=False)  # fmt: skip
        return out
    crit = abs(b) + z * se
    excess = max(abs(t_stat) - abs(b), 0.0) / se
    p = float(2.0 * special.ndtr(-(excess)))
    out.update(
        bias=b,
        se=se,
        crit=crit,
        limit=max(MARGIN, crit),
        p=p,
        p_fw=min(1.0, p * n_params),
        null_quantile=float(special.ndtr((t_stat - b) / se)),
        exceeds=bool(abs(t_stat) >= max(MARGIN, crit)),
        calibrated=True,
    )
    return out


def matching_test(
    d_codec: int, d_replicas: Sequence[int], n_params: int, alpha: float = 0.05
) -> dict:
    """Objects lost or invented (``d``) against the replicas' own counts.

    Parameters
    ----------
    d_codec : int
        Unmatched raw objects + unmatched processed objects.
    d_replicas : sequence of int
        The same count for each replica against raw (the null).
    n_params : int
        Size of the family (parameters + this test) for the Bonferroni quantile.
    alpha : float
        Family-wise level.
    """
    d = np.asarray(d_replicas, dtype=np.float64)
    z = float(special.ndtri(1.0 - alpha / (2.0 * max(n_params, 1))))
    mean = float(d.mean()) if d.size else 0.0
    var = float(d.var(ddof=1)) if d.size > 1 else 0.0
    sd = math.sqrt(max(var, mean, 1.0))
    excess = (float(d_codec) - mean) / sd
    p = float(special.ndtr(-excess))
    return {
        "d": int(d_codec),
        "null_mean": mean,
        "null_sd": sd,
        "z_fw": z,
        "crit": mean + z * sd,
        "p": p,
        "p_fw": min(1.0, p * n_params),
        "null_quantile": float(special.ndtr(excess)),
        "exceeds": bool(excess >= z),
    }


def n_unmatched(match_summary: Mapping[str, int]) -> int:
    """Objects lost plus objects invented, from a `match_objects` summary."""
    return int(match_summary["n_unmatched_ref"] + match_summary["n_unmatched_other"])


def codec_matching_test(
    match_summary: Mapping[str, int],
    null: Sequence[int],
    n_objects: int,
    object_scores: Mapping[str, Any],
) -> dict | None:
    """`matching_test` of one codec, sized by its scored parameters.

    None without raw objects or with fewer than 3 replicas in ``null``. The family is
    the parameters with a finite robust ε plus this test.
    """
    if n_objects == 0 or len(null) < 3:
        return None
    n_par = sum(1 for v in object_scores.values() if math.isfinite(v.robust)) + 1
    return matching_test(n_unmatched(match_summary), null, n_par)


def family_summary(tests: Mapping[str, Mapping], order: Sequence[str] | None = None) -> dict:
    """Worst parameter: the largest |T|/limit (then the smallest family-wise p)."""
    keys = list(order) if order is not None else list(tests)
    best, key = None, (math.inf, -math.inf)
    for k in keys:
        t = tests[k]
        if not math.isfinite(t.get("t", math.nan)):
            continue
        p = t.get("p_fw", math.nan)
        r = abs(t["t"]) / t["limit"] if t.get("limit") else 0.0
        cand = (-r, p if math.isfinite(p) else 1.0)
        if best is None or cand < key:
            best, key = k, cand
    return {"param": best, "p_fw": key[1] if best else math.nan}
