"""The standard score ε of Pomarico et al. (2023) and its bookkeeping.

For a parameter χ measured on the raw image (χ_raw), on ``n`` raw-equivalent replicas
and on a processed image (χ_c)::

    ε = (χ_raw − χ_c) / σ_raw,        σ_raw = std(χ over replicas, ddof=1)

``|ε| < 1``: the processing moved χ by less than the raw noise does.

Conventions
-----------
- Angles (``Angle``, ``FeretAngle``) are axial, defined modulo 180°: their differences
  are wrapped into [−90°, 90°) before any statistic.
- ``σ_raw = 0`` (the parameter never changed over the replicas): ε = 0 when χ_c = χ_raw,
  else ±inf. Infinite per-object scores are *counted* (``n_inf``) and left out of the
  per-object mean and std, which are over finite scores; a global ε = ±inf fails the
  verdict.
- Confidence interval. Conditional on the raw image, χ_raw and χ_c are fixed numbers;
  only σ_raw is estimated. For Gaussian replica values ``(n−1)s²/σ² ~ χ²(n−1)``, so
  with probability ``1−α``::

      σ ∈ [ s·√((n−1)/q_hi),  s·√((n−1)/q_lo) ],   q_lo,q_hi = χ²(n−1) quantiles α/2, 1−α/2

  and the true score ε* = Δ/σ lies in ``ε̂·[√(q_lo/(n−1)), √(q_hi/(n−1))]``. For n = 10
  and 95 %: [0.55, 1.45]·ε̂. Note ``E[1/s] > 1/σ`` (≈ +9 % at n = 10): per-object mean
  scores are biased away from zero by that factor; the interval covers it.
- Verdict (calibrated, :mod:`rawsigma.analysis.scoring.nullstats`): per parameter, the robust
  location T of the floored scores ε_eff = Δ/√(σ_raw² + q²/12) is compared with its
  leave-one-out null (each replica scored against raw, σ from the others); the image
  exceeds the noise iff some parameter has |T| ≥ max(1, |b| + z_fw·se), z_fw the
  Bonferroni quantile over the parameters. Without a null (``score_objects`` called
  without ``null=``) the paper's rule applies: every |mean ε over objects| < 1 (finite
  scores; a parameter whose scores are all infinite fails). The paper's |mean ε| is
  always reported beside the calibrated numbers. Global parameters are single values,
  flagged beyond the same leave-one-out null (|ε| ≥ |bias| + 3·spread,
  :func:`global_null`) and reported next to the verdict (see :func:`verdict`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring.deviations import ANGLE_PARAMS, delta, epsilon, replica_sigma

__all__ = [
    "ANGLE_PARAMS",
    "NON_INDEPENDENT_NOTE",
    "FeatureStats",
    "ObjectScore",
    "delta",
    "delta_stats",
    "epsilon",
    "epsilon_ci",
    "epsilon_ci_factors",
    "feature_epsilon",
    "global_null",
    "matched_values",
    "replica_feature_sigma",
    "replica_sigma",
    "score_globals",
    "score_objects",
    "systematic_shifts",
    "tolerance_best",
    "verdict",
    "worst_feature_map",
]

GLOBAL_LIMIT = 3.0
#: A failing per-object parameter is called a systematic shift when at least this
#: fraction of its scored objects moved the same way as its robust ε ...
SYSTEMATIC_SAME_SIGN = 0.8
#: ... over at least this many objects (below, the fraction says little).
SYSTEMATIC_MIN_OBJECTS = 5
NON_INDEPENDENT_NOTE = (
    "Round = 1/AR and Compact = √Round exactly under ImageJ's area-normalised ellipse, "
    "so AR, Round and Compact are one degree of freedom, not three independent tests."
)


def epsilon_ci_factors(n_replicas: int, level: float = 0.95) -> tuple[float, float]:
    """Multipliers ``(lo, hi)`` such that ε* ∈ ε̂·[lo, hi] with probability ``level``.

    Parameters
    ----------
    n_replicas : int
        Number of replicas σ_raw was estimated from (≥ 2).
    level : float
        Coverage probability.
    """
    if n_replicas < 2:
        return (math.nan, math.nan)
    # χ² quantiles as scipy.stats.chi2.ppf computes them, without importing scipy.stats
    # (≈ 0.7 s at start-up)
    from scipy.special import gammaincinv

    k = n_replicas - 1
    a = 1.0 - level
    q_lo = 2.0 * float(gammaincinv(k / 2, a / 2))
    q_hi = 2.0 * float(gammaincinv(k / 2, 1 - a / 2))
    return (math.sqrt(q_lo / k), math.sqrt(q_hi / k))


def epsilon_ci(eps: float, n_replicas: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of a score ε̂ computed with σ from ``n_replicas`` replicas."""
    lo, hi = epsilon_ci_factors(n_replicas, level)
    a, b = eps * lo, eps * hi
    return (min(a, b), max(a, b))


def delta_stats(d: np.ndarray) -> dict:
    """µ, σ (ddof=1) and count of the finite entries of a Δ sample."""
    d = np.asarray(d, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    return {
        "mu": float(d.mean()) if d.size else math.nan,
        "sigma": float(d.std(ddof=1)) if d.size > 1 else math.nan,
        "n": int(d.size),
    }


def matched_values(
    other: Mapping[str, np.ndarray], ref_index: np.ndarray, other_index: np.ndarray, n_ref: int
) -> dict[str, np.ndarray]:
    """Re-index an object table onto the reference objects (NaN where unmatched)."""
    out = {}
    for k, v in other.items():
        col = np.full(n_ref, np.nan)
        v = np.asarray(v, dtype=np.float64)
        if ref_index.size:
            col[ref_index] = v[other_index]
        out[k] = col
    return out


def global_null(raw: float, replica_values: np.ndarray, key: str = "") -> dict:
    """Leave-one-out null of a global parameter's ε: the spread of a raw-equivalent version.

    Replica k is scored like a version, ``ε_k = (χ_raw − χ_k) / σ_{−k}`` with σ from the
    other replicas. With replicas centred on the observed image their globals are
    shifted against raw by the synthesis bias (noise applied twice: more specks, a
    thinner or thicker mask), which for a sum over every object is several σ; the
    null's centre ``bias = mean ε_k`` carries it. ``spread = max(sd ε_k, √2)``: a
    raw-equivalent version may be a second independent draw of the scene, whose Δ
    against raw has sd √2·σ_raw (an observed-centred replica's has ≈ 1).

    Parameters
    ----------
    raw : float
        χ_raw.
    replica_values : (n,) array
        χ of each replica.
    key : str
        Parameter name (for :func:`delta`).

    Returns
    -------
    dict
        ``bias``, ``spread`` (over the finite ``eps_loo``), ``eps_loo`` (the n values,
        NaN where the other replicas all agree: σ 0); NaN bias/spread with fewer than
        3 finite values.
    """
    rep = np.asarray(replica_values, dtype=np.float64)
    n = rep.size
    loo = np.full(n, math.nan)
    if n >= 3:
        for k in range(n):
            s = float(np.std(np.delete(rep, k), ddof=1))
            loo[k] = float(epsilon(float(delta(key, raw, rep[k])), s)) if s > 0 else math.nan
    ok = np.isfinite(loo)
    if ok.sum() >= 3:
        bias = float(loo[ok].mean())
        spread = max(float(loo[ok].std(ddof=1)), math.sqrt(2.0))
    else:
        bias = spread = math.nan
    return {"bias": bias, "spread": spread, "eps_loo": [float(v) for v in loo]}


def score_globals(
    raw: Mapping[str, float],
    replicas: Sequence[Mapping[str, float]],
    other: Mapping[str, float],
    limit: float = GLOBAL_LIMIT,
) -> dict[str, dict]:
    """ε for each global parameter (count, total area, ...) and its calibrated flag.

    ``flag``: |ε| ≥ |bias| + ``limit``·spread of the leave-one-out null
    (:func:`global_null`), i.e. beyond every raw-equivalent version (a replica, biased
    by the synthesis, or a second frame, unbiased) by ``limit`` null spreads. Without
    a null (fewer than 3 replicas, or a replica σ of 0) the uncalibrated |ε| ≥ ``limit``.

    Returns
    -------
    dict
        ``{param: {"raw", "value", "replica_mean", "sigma_raw", "delta", "epsilon",
        "ci", "null", "flag_limit", "flag"}}``.
    """
    n = len(replicas)
    out = {}
    for k, r in raw.items():
        rep = np.array([float(x[k]) for x in replicas], dtype=np.float64)
        s = float(replica_sigma(rep[:, None])[0]) if n > 1 else math.nan
        d = float(delta(k, r, other[k]))
        e = float(epsilon(d, s))
        null = global_null(float(r), rep, k)
        cal = math.isfinite(null["bias"])
        lim = abs(null["bias"]) + limit * null["spread"] if cal else limit
        out[k] = {
            "raw": float(r),
            "value": float(other[k]),
            "replica_mean": float(rep.mean()) if n else math.nan,
            "sigma_raw": s,
            "delta": d,
            "epsilon": e,
            "ci": list(epsilon_ci(e, n)) if math.isfinite(e) else [e, e],
            "null": null,
            "flag_limit": float(lim),
            "flag_calibrated": cal,
            "flag": bool(not math.isnan(e) and abs(e) >= lim),
        }
    return out


@dataclass
class ObjectScore:
    """Per-object scores of one parameter against the raw segmentation."""

    param: str
    eps: np.ndarray  # (n_raw_objects,) NaN where unmatched or σ undefined
    delta: np.ndarray  # (n_raw_objects,) χ_raw − χ_c, NaN where unmatched
    sigma_raw: np.ndarray  # (n_raw_objects,)
    mean: float
    std: float
    n: int  # finite scores
    n_inf: int
    ci: tuple[float, float]
    eps_eff: np.ndarray | None = None  # ε with σ floored by the parameter's quantum
    robust: float = math.nan  # robust location (trimmed mean) of eps_eff
    test: dict | None = None  # calibrated test against the leave-one-out null

    def summary(self) -> dict:
        """JSON-ready numbers (no per-object arrays)."""
        fin = self.eps[np.isfinite(self.eps)]
        extra = {"robust_epsilon": self.robust}
        if self.test is not None:
            extra["test"] = dict(self.test)
        return {
            **extra,
            "mean_epsilon": self.mean,
            "std_epsilon": self.std,
            # robust companions: one object whose discrete-valued parameter (Feret end
            # points, integer area) flips state can dominate the mean when its σ_raw is
            # tiny; the median and the fraction beyond ±1 show whether that happened
            "median_epsilon": float(np.median(fin)) if fin.size else math.nan,
            "fraction_abs_gt_1": float(np.mean(np.abs(fin) > 1)) if fin.size else math.nan,
            "n": self.n,
            "n_inf": self.n_inf,
            "ci": list(self.ci),
            "delta": delta_stats(self.delta),
        }


def score_objects(
    raw: Mapping[str, np.ndarray],
    replica_matched: Mapping[str, np.ndarray],
    other_matched: Mapping[str, np.ndarray],
    *,
    params: Iterable[str] | None = None,
    min_replicas: int = 2,
    level: float = 0.95,
    quanta: Mapping[str, np.ndarray] | None = None,
    null: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
) -> dict[str, ObjectScore]:
    """Per-object ε for each parameter, then mean ± std over objects.

    Parameters
    ----------
    raw : mapping param -> (n_obj,) array
        Raw-image object table.
    replica_matched : mapping param -> (n_rep, n_obj) array
        Replica values re-indexed onto the raw objects (NaN where unmatched).
    other_matched : mapping param -> (n_obj,) array
        Processed-image values re-indexed onto the raw objects (NaN where unmatched).
    params : iterable of str, optional
        Parameters to score (default: all keys of ``other_matched`` present in ``raw``).
    min_replicas : int
        Minimum number of replicas in which an object must be matched for its σ_raw.
    level : float
        Coverage of the confidence interval of the mean score.
    quanta : mapping param -> (n_obj,) array, optional
        Resolution floor of σ (:func:`rawsigma.analysis.scoring.nullstats.parameter_quantum`);
        default none (``eps_eff`` = ε, infinite scores left out of the robust location).
    null : mapping param -> ParamNull, optional
        Leave-one-out nulls (:func:`rawsigma.analysis.scoring.nullstats.loo_null`); with them
        every score carries the calibrated ``test`` (family-wise over the parameters
        scored here at level ``alpha``).
    """
    keys = list(params) if params is not None else [k for k in other_matched if k in raw]
    out = {}
    for k in keys:
        rep = np.asarray(replica_matched[k], dtype=np.float64)
        n_rep = rep.shape[0]
        # σ of the wrapped deviations for angles (std is shift-invariant otherwise)
        dev = delta(k, np.asarray(raw[k])[None, :], rep)
        s = replica_sigma(dev, min_replicas)
        d = delta(k, raw[k], other_matched[k])
        e = epsilon(d, s)
        fin = np.isfinite(e)
        n_inf = int(np.sum(np.isinf(e)))
        ef = e[fin]
        mean = float(ef.mean()) if ef.size else (math.inf if n_inf else math.nan)
        std = float(ef.std(ddof=1)) if ef.size > 1 else math.nan
        ci = epsilon_ci(mean, n_rep, level) if math.isfinite(mean) else (mean, mean)
        q = quanta.get(k) if quanta is not None else None
        e_eff = epsilon(d, ns.floored_sigma(s, q)) if q is not None else e
        fe = e_eff[np.isfinite(e_eff)]
        t = ns.robust_location(fe)
        out[k] = ObjectScore(k, e, d, s, mean, std, int(ef.size), n_inf, ci, e_eff, t)
    if null is not None:
        n_par = sum(1 for v in out.values() if math.isfinite(v.robust))
        for k, v in out.items():
            n_fin = int(np.sum(np.isfinite(v.eps_eff)))
            v.test = ns.calibrated_test(v.robust, n_fin, null.get(k), n_par, alpha)
    return out


@dataclass
class FeatureStats:
    """Running per-pixel mean and variance of feature maps over replicas (Welford)."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    names: list[str] = field(default_factory=list)

    def add(self, f: np.ndarray) -> None:
        """Fold one replica's feature stack, shape (..., F), float.

        Folded in slices along the first axis, so the float64 temporaries are those of
        one slice, not of the whole stack (same values as folding it at once).
        """
        f = np.asarray(f)
        if self.mean is None:
            self.mean = np.zeros(f.shape, np.float64)
            self.m2 = np.zeros(f.shape, np.float64)
        elif f.shape != self.mean.shape:
            raise ValueError(f"feature stack shape {f.shape} != {self.mean.shape}")
        assert self.m2 is not None
        self.n += 1
        for sl in _slices(f):
            fi = f[sl].astype(np.float64)
            mean, m2 = self.mean[sl], self.m2[sl]
            d = fi - mean
            mean += d / self.n
            fi -= mean
            d *= fi
            m2 += d

    def sigma(self, dtype: type = np.float64) -> np.ndarray:
        """Per-pixel, per-channel std (ddof=1) over the folded replicas (``dtype``)."""
        if self.m2 is None or self.n < 2:
            raise ValueError("need at least two replicas for a feature sigma")
        out = np.empty(self.m2.shape, dtype)
        for sl in _slices(self.m2):
            out[sl] = np.sqrt(self.m2[sl] / (self.n - 1))
        return out


def replica_feature_sigma(
    replicas: Sequence[np.ndarray], sigmas: Sequence[float], n_workers: int = 1
) -> np.ndarray:
    """Per-pixel std (ddof=1, float32) of the scoring feature maps over ``replicas``.

    The same values as folding every replica's `feature_maps_for_scoring` into a
    `FeatureStats`, computed block by block (each block of every replica, read with
    the filters' halo, then folded by `welford_kernel` with `FeatureStats`'s float64
    operations): memory is the result and a few blocks, not one full-size float32
    stack per replica plus two float64 accumulators.
    """
    from rawsigma.analysis.scoring import welford_kernel  # numba: imported when needed
    from rawsigma.analysis.segmentation import features as fb
    from rawsigma.analysis.segmentation.features import (
        _block_starts,
        _compute_block,
        _resolve_block,
    )

    if len(replicas) < 2:
        raise ValueError("need at least two replicas for a feature sigma")
    shape = np.shape(replicas[0])
    cfg = fb.FeatureConfig("ilastik", tuple(sigmas), fb.SCORING_FEATURES).resolved()
    names = fb.feature_names(len(shape), "ilastik", cfg.sigmas, cfg.features)
    index = {n: i for i, n in enumerate(names)}
    spacing = (1.0,) * len(shape)
    out = np.empty(tuple(shape) + (len(names),), np.float32)
    block = _resolve_block(None, shape, cfg, n_workers, fb.MAP_BLOCK_MEMORY)

    local = threading.local()

    def one(core: tuple[slice, ...]) -> None:
        if getattr(local, "buf", None) is None:  # per-thread buffers, reused block to block
            size = len(names) * int(np.prod(block))
            local.buf = np.empty((len(names),) + tuple(block), np.float32)
            local.acc = np.empty((2, size)), np.empty(size, np.float32)
        (mean, m2), sig = local.acc
        shape = (len(names),) + tuple(c.stop - c.start for c in core)
        size = int(np.prod(shape))
        mean, m2, sig = mean[:size], m2[:size], sig[:size]
        mean[:] = 0.0
        m2[:] = 0.0
        for n, r in enumerate(replicas, 1):  # FeatureStats.add's operations, compiled
            feats = _compute_block(r, core, cfg, spacing, index, local.buf)
            welford_kernel.fold(mean, m2, feats.ravel(), n)
        welford_kernel.finish(m2, len(replicas), sig)
        out[core] = np.moveaxis(sig.reshape(shape), 0, -1)

    cores = _block_starts(shape, block)
    if n_workers <= 1 or len(cores) == 1:
        for c in cores:
            one(c)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(one, cores))
    return out


def _slices(a: np.ndarray, elements: int = 1 << 20) -> list[tuple[slice, ...]]:
    """Slices along the first axis of about ``elements`` elements each."""
    if a.ndim == 0 or a.shape[0] == 0:
        return [(Ellipsis,)]  # type: ignore[list-item]
    step = max(1, elements // max(1, a[0].size))
    return [(slice(i, i + step),) for i in range(0, a.shape[0], step)]


def feature_epsilon(
    raw: np.ndarray, sigma: np.ndarray, other: np.ndarray, names: Sequence[str]
) -> dict[str, dict]:
    """Per-pixel ε maps of feature channels, averaged over pixels.

    Pixels with σ = 0 are left out (a feature constant under the raw noise, e.g. in
    clipped regions). Returns ``{name: {"mean_epsilon", "mean_abs_epsilon", "rms_epsilon",
    "n_pixels"}}``.
    """
    out = {}
    for c, name in enumerate(names):
        s = sigma[..., c]
        ok = s > 0
        e = (raw[..., c][ok] - other[..., c][ok]) / s[ok]
        out[name] = {
            "mean_epsilon": float(e.mean()) if e.size else math.nan,
            "mean_abs_epsilon": float(np.abs(e).mean()) if e.size else math.nan,
            "rms_epsilon": float(np.sqrt(np.mean(e * e))) if e.size else math.nan,
            "n_pixels": int(e.size),
        }
    return out


def worst_feature_map(
    fe: dict[str, dict], raw: np.ndarray, sigma: np.ndarray, other: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """``{name: per-pixel ε map}`` of the feature with the largest mean |ε|.

    ``fe`` is `feature_epsilon`'s output for the same stacks; the map is float32,
    NaN where σ = 0. Empty if no feature has a finite score.
    """
    finite = {
        n: v["mean_abs_epsilon"] for n, v in fe.items() if math.isfinite(v["mean_abs_epsilon"])
    }
    if not finite:
        return {}
    name = max(finite, key=finite.__getitem__)
    c = list(names).index(name)
    s = sigma[..., c]
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(s > 0, (raw[..., c] - other[..., c]) / s, np.nan)
    return {name: e.astype(np.float32)}


def _paper_rule(object_scores: Mapping[str, ObjectScore]) -> dict:
    """The paper's rule: every per-object parameter has |mean ε over objects| < 1."""
    failing, borderline = [], []
    worst: tuple[str, float] = ("", 0.0)
    for k, v in object_scores.items():
        e = v.mean
        if math.isnan(e):
            continue  # σ undefined for every object (too few matched replicas)
        if abs(e) >= 1:
            failing.append(k)
        elif max(abs(v.ci[0]), abs(v.ci[1])) >= 1:
            borderline.append(k)
        if abs(e) > abs(worst[1]):
            worst = (k, float(e))
    return {"within_noise": not failing, "failing": failing, "borderline": borderline,
            "worst": list(worst)}  # fmt: skip


def systematic_shifts(object_scores: Mapping[str, ObjectScore], params: Iterable[str]) -> list:
    """The parameters among ``params`` whose objects moved together, not at random.

    For each parameter, the fraction of its scored objects (finite ``eps_eff``, else
    ``eps``) whose Δ = χ_raw − χ_c has the sign of the robust ε (of the mean ε without
    a robust one). Raw noise moves objects independently, about half each way; a
    processing that moves every object the same way (a threshold meeting a codec's
    quantisation levels: every boundary shifts together) gives a fraction near 1.

    Returns
    -------
    list of dict
        ``{"param", "same_sign", "n", "epsilon"}`` for the parameters with at least
        ``SYSTEMATIC_MIN_OBJECTS`` scored objects of which at least
        ``SYSTEMATIC_SAME_SIGN`` moved the same way.
    """
    out = []
    for k in params:
        s = object_scores.get(k)
        if s is None:
            continue
        e = s.eps_eff if s.eps_eff is not None else s.eps
        e = np.asarray(e, dtype=np.float64)
        e = e[np.isfinite(e)]
        loc = s.robust if math.isfinite(s.robust) else s.mean
        if e.size < SYSTEMATIC_MIN_OBJECTS or not math.isfinite(loc) or loc == 0:
            continue
        same = float(np.mean(np.sign(e) == np.sign(loc)))
        if same >= SYSTEMATIC_SAME_SIGN:
            out.append({"param": k, "same_sign": same, "n": int(e.size), "epsilon": float(loc)})
    return out


def verdict(
    global_scores: Mapping[str, Mapping],
    object_scores: Mapping[str, ObjectScore],
    global_limit: float = GLOBAL_LIMIT,
    matching: Mapping | None = None,
) -> dict:
    """Within noise iff no per-object parameter exceeds its calibrated limit.

    ``matching`` (:func:`rawsigma.analysis.scoring.nullstats.matching_test`): objects lost or
    invented against the replicas; when it exceeds, ``"matching"`` is failing too (a
    version that destroys objects leaves nothing to score per object).

    With calibrated tests (``score_objects(..., null=...)``) a parameter fails iff its
    robust ε is beyond max(1, the family-wise 95 % null quantile) (see
    :mod:`rawsigma.analysis.scoring.nullstats`); otherwise the paper's rule applies (every
    |mean ε over objects| < 1, its Fig. 2e/h). The paper's rule is always reported
    under ``"paper"``. Global parameters (count, total area) are single values and are
    reported separately as ``global_flags``, not part of the verdict: a global whose
    ``flag`` (:func:`score_globals`) is set, |ε| ≥ |bias| + ``global_limit``·spread of
    its leave-one-out null (:func:`global_null`; with replicas centred on the observed
    image, the paper's default, a sum over all objects carries the synthesis bias, and a
    second frame differs from raw by √2 σ); scores without ``flag`` use
    |ε| ≥ ``global_limit``. When the raw image has no objects, the globals decide, by
    the uncalibrated |ε| ≥ ``global_limit`` (default 3), and ``global_flags`` lists
    those (what decided the verdict).

    Returns
    -------
    dict
        ``within_noise`` (bool), ``rule`` ("calibrated" or "paper"), ``failing``,
        ``global_flags``, ``borderline`` (calibrated: beyond the null but below the
        margin 1, i.e. detectably shifted by less than one σ; paper: the 95 % interval
        of the mean reaches 1), ``unresolved`` (|robust ε| ≥ 1 but inside the null: too
        few objects to tell), ``worst`` ([parameter, ε]; the robust ε under the
        calibrated rule), ``worst_p_fw``, ``paper``, ``global_limit`` and
        ``systematic`` (:func:`systematic_shifts` of the failing and borderline
        per-object parameters: those whose objects all moved the same way).
    """
    paper = _paper_rule(object_scores)
    tests = {k: v.test for k, v in object_scores.items() if v.test is not None}
    calibrated = bool(tests) and any(t.get("calibrated") for t in tests.values())
    unresolved: list[str] = []
    worst_p = math.nan
    if tests:
        failing = [k for k, t in tests.items() if t["exceeds"]]
        borderline = [  # > : with a degenerate null (crit 0) an unchanged value is not a shift
            k for k, t in tests.items()
            if not t["exceeds"] and t.get("calibrated") and abs(t["t"]) > t["crit"]
        ]  # fmt: skip
        unresolved = [k for k, t in tests.items() if not t["exceeds"] and abs(t["t"]) >= ns.MARGIN]
        fam = ns.family_summary({k: tests[k] for k in failing} if failing else tests)
        wk = fam["param"]
        worst = [wk, float(tests[wk]["t"])] if wk else ["", 0.0]
        worst_p = fam["p_fw"]
    else:
        failing, borderline, worst = paper["failing"], paper["borderline"], paper["worst"]
    flags, uncalibrated = [], []
    gworst: tuple[str, float] = ("", 0.0)
    for k, g in global_scores.items():
        e = g["epsilon"]
        if math.isnan(e):
            continue
        if abs(e) >= global_limit:
            uncalibrated.append(f"global:{k}")
        if g.get("flag", abs(e) >= global_limit):  # `score_globals`' calibrated flag
            flags.append(f"global:{k}")
        if abs(e) > abs(gworst[1]):
            gworst = (f"global:{k}", float(e))
    if not object_scores:  # the globals decide, by the uncalibrated |ε| ≥ limit,
        failing, worst = uncalibrated, list(gworst)  # and are what the report flags
        flags = list(uncalibrated)
    if matching is not None and matching.get("exceeds"):
        failing = [*failing, "matching"]
        if not worst[0] or not math.isfinite(worst_p) or matching["p_fw"] < worst_p:
            worst, worst_p = ["matching", float(matching["d"])], matching["p_fw"]
    return {
        "within_noise": not failing,
        "rule": "calibrated" if calibrated else "paper",
        "failing": failing,
        "global_flags": flags,
        "borderline": borderline,
        "unresolved": unresolved,
        "worst": list(worst),
        "worst_p_fw": worst_p,
        "worst_global": list(gworst),
        "global_limit": global_limit,
        "paper": paper,
        "matching": dict(matching) if matching is not None else None,
        "systematic": systematic_shifts(object_scores, [*failing, *borderline]),
    }


def tolerance_best(points: Sequence[Mapping]) -> Mapping | None:
    """Pick the highest compression ratio among sweep points that are within noise.

    ``points``: mappings with at least ``"ratio"`` and ``"within_noise"``.
    """
    ok = [p for p in points if p.get("within_noise")]
    return max(ok, key=lambda p: p["ratio"]) if ok else None
