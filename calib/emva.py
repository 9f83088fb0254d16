"""Global EMVA 1288 Release 4.0 (Linear) numbers from streamed per-pixel moments.

Works from frame pairs (2 frames per level, the EMVA protocol) and from long stacks:
everything is computed from :class:`~rawsigma.calib.moments.PixelMoments`.

Estimators (equation numbers of EMVA 1288 R4.0 Linear):

- temporal variance per level: mean of the per-pixel variances minus the excess
  variance of the frame means (mean-difference flicker correction, eq. 18; for a pair
  this is exactly ``sum((yA - yB)**2) / 2NM - (muA - muB)**2 / 2``);
- ``K`` (eq. 50): least squares with intercept of ``var_y - var_dark`` against
  ``mu_y - mu_dark`` from dark up to 70 % of saturation;
- ``sigma_d`` (eq. 53/54): ``sqrt(var_dark - 1/12) / K``; if ``var_dark < 0.24`` only
  the upper limit ``0.40 / K`` is reported (``sigma_d_upper_limit`` True);
- saturation: the signal where 0.15 % (the middle of the 0.1–0.2 % rule) of pixels reach
  their maximum value, interpolated between levels on a probit scale. "Maximum" is the
  ADC ceiling, or, when the photon-transfer curve collapses below it (full well clips
  first), each pixel's own plateau (within 3 read-noise sigma). This is where the
  ``emva1288`` package's variance-peak search fails;
- ``DSNU1288 = s_y.dark / K`` and ``PRNU1288 = sqrt(s2_y.50 - s2_y.dark) / (mu_y.50 -
  mu_y.dark)`` (eq. 66/67), spatial variances of the per-pixel means with the temporal
  part removed (eq. 35/36); also after the R4 high-pass (7x7 box, 11x11 box, 3x3
  binomial, corrected for its white-noise gain), which is used for the headline value
  when low spatial frequencies (e.g. vignetting) inflate the plain estimate by > 10 %;
- ``SNR_max = sqrt(mu_e.sat)`` (eq. 55), ``DR = mu_e.sat / mu_e.min`` with
  ``mu_e.min = sqrt(sigma_d**2 + 1/(12 K**2) + 1/4) + 1/2`` (eq. 26, 28);
- linearity (eq. 58–63): weighted LS (weights ``1/y**2``) of ``y = mu_y - mu_dark``
  against the level's exposure or photon count over 5–95 % of saturation,
  ``LE = mean |delta|`` in %; needs ``photons`` or ``exposure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri

from .emva_filters import _HP_GAIN, _MARGIN, highpass_r4, spatial_variance
from .fit import saturation_masks
from .moments import PixelMoments

__all__ = [
    "emva_analysis",
    "emva_summary",
    "highpass_r4",
    "not_estimated_by_reason",
    "spatial_variance",
]

SIGMA2_Q = 1.0 / 12.0
_SAT_FRACTION = 0.0015


def _temporal_var(pm: PixelMoments) -> tuple[float, float]:
    """(raw, flicker-corrected) mean temporal variance of a level (ADU^2)."""
    raw = float(np.mean(pm.var()))
    return raw, raw - pm.flicker_var()


def _level_stability(pm: PixelMoments, dark_mean: float) -> tuple[float, float]:
    """(flicker, drift) of a level relative to its signal, from the frame means."""
    fm = pm.frame_means
    sig = fm.mean() - dark_mean
    if pm.n < 2 or sig <= 0:
        return 0.0, 0.0
    flick = float(np.sqrt(max(pm.flicker_var(), 0.0)) / sig)
    if pm.n < 3:
        return flick, 0.0
    t = np.arange(pm.n, dtype=np.float64)
    slope = np.polyfit(t, fm, 1)[0]
    return flick, float(slope * (pm.n - 1) / sig)


def _crossing(sig: np.ndarray, frac: np.ndarray, target: float, npix: int) -> float:
    """Signal at which the fraction of pixels at maximum crosses ``target``."""
    return _crossing_se(sig, frac, target, npix)[0]


def _crossing_se(
    sig: np.ndarray, frac: np.ndarray, target: float, npix: int
) -> tuple[float, float]:
    """`_crossing` and the SE of where it lies between the two levels around it.

    With no clipped pixel at the level below and most pixels (>= 10x ``target``)
    clipped at the level above, the curve between them is unknown: the crossing is
    only bracketed, so it is the bracket's middle with the SE of a uniform position
    in it (the probit interpolation put it near the lower level: mu_e.sat 17 % low
    with a 1 % SE on the simulated sCMOS). Otherwise the probit interpolation, SE 0.
    """
    order = np.argsort(sig)
    s, f = sig[order], frac[order]
    above = np.flatnonzero(f >= target)
    if above.size == 0:
        return float("nan"), float("nan")
    j = int(above[0])
    if j == 0:
        return float(s[0]), 0.0
    if f[j - 1] == 0 and f[j] >= 10 * target:
        return float(0.5 * (s[j - 1] + s[j])), float((s[j] - s[j - 1]) / np.sqrt(12.0))
    lo = 0.5 / npix
    z = ndtri(np.clip(f[[j - 1, j]], lo, 1 - lo))
    zt = ndtri(target)
    if z[1] <= z[0]:
        return float(s[j]), 0.0
    t = (zt - z[0]) / (z[1] - z[0])
    return float(s[j - 1] + np.clip(t, 0, 1) * (s[j] - s[j - 1])), 0.0


def _wls_line(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Weighted LS ``y = a + b x``; returns (b, a, SE of b)."""
    w = np.ones_like(x) if w is None else w
    sw = w.sum()
    xm, ym = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * (x - xm) ** 2).sum()
    b = (w * (x - xm) * (y - ym)).sum() / sxx
    a = ym - b * xm
    n = x.size
    if n > 2:
        res = y - a - b * x
        s2 = (w * res**2).sum() / (n - 2)
        se = float(np.sqrt(s2 / sxx))
    else:
        se = float("nan")
    return float(b), float(a), se


def emva_analysis(
    dark: PixelMoments | Sequence[PixelMoments],
    levels: Sequence[PixelMoments],
    *,
    max_adu: int,
    photons: Sequence[float] | None = None,
    exposure: Sequence[float] | None = None,
    highpass: str = "auto",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """EMVA 1288 R4 global numbers and the photon-transfer table.

    Parameters
    ----------
    dark : PixelMoments or sequence of PixelMoments
        One dark accumulator for all levels, or one per level (same exposure as the
        level, as in the EMVA protocol).
    levels : sequence of PixelMoments
        Bright accumulators, one per level, at least 2 frames each.
    max_adu : int
        ADC maximum.
    photons : sequence of float, optional
        Mean photons per pixel of each level (``mu_p``): gives ``R``, ``eta`` (QE),
        ``mu_p.min`` and ``mu_p.sat``, and the x-axis of the linearity fit.
    exposure : sequence of float, optional
        Exposure (or any quantity proportional to the irradiation) of each level;
        linearity x-axis when ``photons`` is not given.
    highpass : {"auto", "always", "never"}
        R4 high-pass for DSNU/PRNU; ``auto`` uses it for PRNU only, when the plain
        spatial variance exceeds the high-passed one by more than 10 %.

    Returns
    -------
    summary : dict
        Plain scalars (floats, ints, bools, str): ``K`` [DN/e-], ``K_se``,
        ``sigma_y_dark`` [DN], ``sigma_d`` [e-], ``sigma_d_upper_limit``, ``DSNU1288``
        [e-], ``PRNU1288`` [%], their ``_plain`` / ``_highpass`` variants,
        ``mu_y_sat`` [DN], ``mu_e_sat`` [e-], ``saturation_mode``, ``SNR_max``,
        ``SNR_max_dB``, ``mu_e_min``, ``DR``, ``DR_dB``, ``LE`` [%], ``R``, ``eta``,
        ``mu_p_min``, ``mu_p_sat``, ``flicker_max``, ``drift_max``, frame counts, ...
    ptc : dict of str to 1-D ndarray
        One entry per level, sorted by signal: ``level`` (input index), ``mean``,
        ``dark_mean``, ``var``, ``var_corrected``, ``dark_var``, ``n_frames``,
        ``clipped_fraction``, ``flicker``, ``drift``, ``photons``, ``exposure``,
        ``used_for_K``.
    """
    levels, darks, ph, ex = _check_accumulators(dark, levels, photons, exposure)
    k = len(levels)
    shape = levels[0].shape
    st = _level_stats(levels, darks)
    sig = st.sig
    base_dark = darks[int(np.argmax([d.n for d in darks]))]
    frac, mode, mu_y_sat_sig, sat_se = _saturation(
        base_dark, levels, max_adu, sig, shape[0] * shape[1]
    )
    usable, K, K_icpt, K_se, k_method = _fit_k(levels, darks, st, frac, mu_y_sat_sig)
    i_d, var_dark, upper, sigma_d = _dark_noise(darks, st.dvar, ph, ex, K)
    nu = _nonuniformity(levels, darks, sig, frac, usable, mu_y_sat_sig, K, highpass)
    i50 = nu.pop("i50")

    # derived numbers
    mu_e_sat = mu_y_sat_sig / K
    mu_e_min = float(np.sqrt(sigma_d**2 + SIGMA2_Q / K**2 + 0.25) + 0.5)
    snr_max = float(np.sqrt(mu_e_sat)) if np.isfinite(mu_e_sat) else float("nan")
    dr = mu_e_sat / mu_e_min
    R = eta = mu_p_min = mu_p_sat = float("nan")
    if ph is not None and np.any(usable & (ph > 0)):
        sel = usable & (ph > 0)
        R = float(np.sum(ph[sel] * sig[sel]) / np.sum(ph[sel] ** 2))
        eta = R / K
        mu_p_min = mu_e_min / eta
        mu_p_sat = mu_e_sat / eta
    xlin = ph if ph is not None else ex
    le, le_min, le_max, sel = _linearity(xlin, sig, frac, mu_y_sat_sig)

    use_hp_d, use_hp_p = nu["highpass_DSNU"], nu["highpass_PRNU"]
    summary: dict[str, Any] = {
        "standard": "EMVA 1288 R4.0 Linear",
        "K": K,
        "K_se": K_se,
        "K_intercept": K_icpt,
        "K_method": k_method,
        "n_levels": k,
        "n_levels_K": int(usable.sum()),
        "frames_per_level": int(np.min(st.n_frames)),
        "dark_frames": int(base_dark.n),
        "DSNU_dark_frames": nu.pop("n_dark_all"),
        "mu_y_dark": float(st.mu_d[i_d]),
        "sigma_y_dark": float(np.sqrt(max(var_dark, 0.0))),
        "sigma_d": float(sigma_d),
        "sigma_d_upper_limit": bool(upper),
    }
    dmean = nu.pop("dark_mean_map")
    summary.update(nu)
    summary.update(
        {
            "saturation_mode": mode,
            "mu_y_sat": float(mu_y_sat_sig + st.mu_d[i_d]),
            "mu_e_sat": float(mu_e_sat),
            **({"mu_y_sat_bracket_se": sat_se} if sat_se > 0 else {}),
            "SNR_max": snr_max,
            "SNR_max_dB": float(20 * np.log10(snr_max)) if snr_max > 0 else float("nan"),
            "mu_e_min": mu_e_min,
            "DR": float(dr),
            "DR_dB": float(20 * np.log10(dr)) if dr > 0 else float("nan"),
            "LE": le,
            "LE_min": le_min,
            "LE_max": le_max,
            "R": R,
            "eta": eta,
            "mu_p_min": mu_p_min,
            "mu_p_sat": mu_p_sat,
            "flicker_max": float(np.max(st.stab[:, 0])),
            "drift_max": float(np.max(np.abs(st.stab[:, 1]))),
        }
    )
    summary.update(
        _uncertainties(
            summary, dmean, levels[i50], darks[i50], use_hp_d, use_hp_p, var_dark, darks[i_d]
        )
    )
    if np.isfinite(le):
        summary["LE_se"] = _le_se(levels, darks, sig, sel)
    _mark_not_estimated(summary, k=k, has_x=xlin is not None, has_photons=ph is not None)
    return summary, _ptc_table(st, frac, usable, ph, ex)


# ----------------------------------------------------------------------------- steps
def _check_accumulators(
    dark: PixelMoments | Sequence[PixelMoments],
    levels: Sequence[PixelMoments],
    photons: Sequence[float] | None,
    exposure: Sequence[float] | None,
) -> tuple[list[Any], list[Any], np.ndarray | None, np.ndarray | None]:
    """Levels, one dark per level, photons and exposure as arrays; clear errors."""
    levels = list(levels)
    k = len(levels)
    if k < 1:
        raise ValueError("EMVA analysis needs at least 1 light level")
    darks = [dark] * k if hasattr(dark, "frame_means") else list(dark)
    if len(darks) != k:
        raise ValueError(f"{len(darks)} dark accumulators for {k} levels")
    for i, pm in enumerate([*levels, *darks]):
        if pm.n < 2:
            raise ValueError(f"accumulator {i} has {pm.n} frame(s); at least 2 are needed")
    ph = None if photons is None else np.asarray(photons, np.float64)
    ex = None if exposure is None else np.asarray(exposure, np.float64)
    for name, arr in (("photons", ph), ("exposure", ex)):
        if arr is not None and arr.shape != (k,):
            raise ValueError(f"{name} has {arr.shape[0]} values for {k} levels")
    return levels, darks, ph, ex


@dataclass
class _LevelStats:
    """Global means and temporal variances per level and its dark (EMVA eq. 18)."""

    mu_y: np.ndarray
    mu_d: np.ndarray
    var_raw: np.ndarray
    var_c: np.ndarray  # flicker-corrected
    dvar: np.ndarray
    n_frames: np.ndarray
    stab: np.ndarray  # (K, 2) flicker, drift
    sig: np.ndarray  # mean above dark
    yvar: np.ndarray  # variance above dark


def _level_stats(levels: list[Any], darks: list[Any]) -> _LevelStats:
    mu_y = np.array([lv.frame_means.mean() for lv in levels])
    mu_d = np.array([d.frame_means.mean() for d in darks])
    tv = np.array([_temporal_var(lv) for lv in levels])
    var_raw, var_c = tv[:, 0], tv[:, 1]
    # darks carry no light: no flicker correction, but eq. 18 form for consistency
    dvar = np.array([_temporal_var(d)[1] for d in darks])
    n_frames = np.array([lv.n for lv in levels])
    stab = np.array([_level_stability(lv, md) for lv, md in zip(levels, mu_d, strict=True)])
    return _LevelStats(mu_y, mu_d, var_raw, var_c, dvar, n_frames, stab, mu_y - mu_d, var_c - dvar)


def _saturation(
    base_dark: Any, levels: list[Any], max_adu: int, sig: np.ndarray, npix: int
) -> tuple[np.ndarray, str, float, float]:
    """Clipped fraction per level, saturation mode, saturation signal (DN) and its SE.

    The SE is that of the signal's position between two levels (`_crossing_se`).
    """
    clipped, mode = saturation_masks(base_dark, levels, max_adu)
    frac = clipped.reshape(len(levels), -1).mean(axis=1)
    if mode == "none" or frac.max() < _SAT_FRACTION:
        return frac, mode, float("nan"), float("nan")
    return frac, mode, *_crossing_se(sig, frac, _SAT_FRACTION, npix)


def _fit_k(
    levels: list[Any], darks: list[Any], st: _LevelStats, frac: np.ndarray, mu_y_sat_sig: float
) -> tuple[np.ndarray, float, float, float, str]:
    """The system gain K from the levels below 70 % of saturation (EMVA eq. 50)."""
    sig, yvar = st.sig, st.yvar
    usable = (frac < _SAT_FRACTION) & (sig > 0)
    if np.isfinite(mu_y_sat_sig):
        usable &= sig <= 0.7 * mu_y_sat_sig
    if usable.sum() < 2:
        usable = (frac < 0.01) & (sig > 0)
    if usable.sum() >= 2:
        idx = np.flatnonzero(usable)
        K, K_icpt, _ = _wls_line(sig[idx], yvar[idx])
        s_y = np.array([np.hypot(_mean_var_se(levels[i]), _mean_var_se(darks[i])) for i in idx])
        K_se = _slope_se(sig[idx], yvar[idx], K, K_icpt, s_y)
        k_method = "LS line with intercept (EMVA 1288 eq. 50)"
    elif usable.sum() == 1:
        i1 = int(np.flatnonzero(usable)[0])
        K, K_se = _k_one_level(levels[i1], darks[i1], float(yvar[i1]), float(sig[i1]))
        K_icpt, k_method = 0.0, "one level: ratio through the origin, SE from the pixel spread"
    else:
        raise ValueError("no unsaturated light level with signal above dark: cannot measure K")
    if not K > 0:
        raise ValueError(f"photon-transfer slope K = {K:.4g} DN/e- is not positive")
    return usable, K, K_icpt, K_se, k_method


def _mean_var_se(pm: Any) -> float:
    """SE of a level's pixel-mean temporal variance from the noise of its frames (ADU^2).

    Every pixel's variance ``s^2`` of ``n`` frames has the variance ``2 sigma^4 /
    (n - 1)`` (Gaussian fourth moment: shot noise above a few e-, read noise), and
    ``s^4 (n - 1) / (n + 1)`` estimates ``sigma^4`` without bias; the pixels' temporal
    noises are independent.
    """
    v = np.maximum(pm.var(), 0.0)
    return float(np.sqrt(2.0 / (pm.n + 1) * np.sum(v * v)) / v.size)


def _slope_se(x: np.ndarray, y: np.ndarray, b: float, a: float, s_y: np.ndarray) -> float:
    """SE of the LS slope ``b`` of ``y = a + b x`` whose points have the SEs ``s_y``.

    The larger of the SE propagated from the points' own noise and the SE from the
    residuals (which also holds a curved or unstable photon-transfer curve). Never
    the residuals alone: with 3-4 levels their 1-2 degrees of freedom gave SEs 10x
    too small now and then, and with 2 levels none at all.
    """
    dx = x - x.mean()
    sxx = float(np.sum(dx * dx))
    se = float(np.sqrt(np.sum(dx * dx * s_y * s_y)) / sxx)
    if x.size > 2:
        res = y - a - b * x
        se = max(se, float(np.sqrt(np.sum(res * res) / (x.size - 2) / sxx)))
    return se


def _dark_noise(
    darks: list[Any], dvar: np.ndarray, ph: np.ndarray | None, ex: np.ndarray | None, K: float
) -> tuple[int, float, bool, float]:
    """Index of the dark used, its temporal variance and the dark noise sigma_d (e-)."""
    if ex is not None:
        i_d = int(np.argmin(ex))
    elif ph is not None:
        i_d = int(np.argmin(ph))
    else:
        i_d = int(np.argmax([d.n for d in darks]))
    var_dark = float(dvar[i_d])
    upper = var_dark < 0.24
    sigma_d = 0.40 / K if upper else float(np.sqrt(var_dark - SIGMA2_Q) / K)
    return i_d, var_dark, upper, sigma_d


def _nonuniformity(
    levels: list[Any],
    darks: list[Any],
    sig: np.ndarray,
    frac: np.ndarray,
    usable: np.ndarray,
    mu_y_sat_sig: float,
    K: float,
    highpass: str,
) -> dict[str, Any]:
    """DSNU and PRNU (plain and high-passed), in the summary's keys and order.

    Also ``i50`` (the level near 50 % saturation), ``n_dark_all`` and
    ``dark_mean_map`` for the caller, who removes them.
    """
    # DSNU from all dark frames: the per-pixel mean over every dark group (each
    # group's global level removed, so exposure-dependent offsets do not count)
    dmean, dtvar, n_dark_all = _pooled_dark(darks)
    s2_dark_plain = float(np.var(dmean) - np.mean(dtvar))
    m = _MARGIN
    s2_dark_hp = float(np.var(highpass_r4(dmean)) / _HP_GAIN - np.mean(dtvar[m:-m, m:-m]))
    sat_ref = mu_y_sat_sig if np.isfinite(mu_y_sat_sig) else float(np.max(sig[usable]))
    i50 = int(np.argmin(np.abs(sig - 0.5 * sat_ref) + np.where(frac > 0.001, np.inf, 0)))
    d50 = darks[i50]
    s2_50_plain = spatial_variance(levels[i50]) - spatial_variance(d50)
    s2_50_hp = spatial_variance(levels[i50], highpass=True) - spatial_variance(d50, highpass=True)
    if highpass == "always":
        use_hp_d, use_hp_p = True, True
    elif highpass == "never":
        use_hp_d, use_hp_p = False, False
    elif highpass == "auto":
        use_hp_d = False  # dark nonuniformity is the sensor's own: never filtered
        # compare on the same pixels, so that a defect near the border cannot decide
        s2_50_int = spatial_variance(levels[i50], interior=True) - spatial_variance(
            d50, interior=True
        )
        use_hp_p = s2_50_int > 1.1 * max(s2_50_hp, 1e-12)
    else:
        raise ValueError(f"highpass must be 'auto', 'always' or 'never', got {highpass!r}")
    dsnu_plain = float(np.sqrt(max(s2_dark_plain, 0.0)) / K)
    dsnu_hp = float(np.sqrt(max(s2_dark_hp, 0.0)) / K)
    prnu_plain = float(100 * np.sqrt(max(s2_50_plain, 0.0)) / sig[i50])
    prnu_hp = float(100 * np.sqrt(max(s2_50_hp, 0.0)) / sig[i50])
    return {
        "i50": i50,
        "n_dark_all": int(n_dark_all),
        "dark_mean_map": dmean,
        "DSNU1288": dsnu_hp if use_hp_d else dsnu_plain,
        "DSNU1288_plain": dsnu_plain,
        "DSNU1288_highpass": dsnu_hp,
        "DSNU1288_DN": float((dsnu_hp if use_hp_d else dsnu_plain) * K),
        "PRNU1288": prnu_hp if use_hp_p else prnu_plain,
        "PRNU1288_plain": prnu_plain,
        "PRNU1288_highpass": prnu_hp,
        "highpass_DSNU": bool(use_hp_d),
        "highpass_PRNU": bool(use_hp_p),
        "PRNU_level_signal": float(sig[i50]),
    }


def _linearity(
    xlin: np.ndarray | None, sig: np.ndarray, frac: np.ndarray, mu_y_sat_sig: float
) -> tuple[float, float, float, np.ndarray]:
    """Linearity error LE (%) between 5 and 95 % of saturation, its range and the levels."""
    le = le_min = le_max = float("nan")
    sel = np.zeros(len(sig), bool)
    if xlin is not None and np.isfinite(mu_y_sat_sig):
        sel = (sig >= 0.05 * mu_y_sat_sig) & (sig <= 0.95 * mu_y_sat_sig) & (frac < _SAT_FRACTION)
        if sel.sum() >= 3 and np.ptp(xlin[sel]) > 0:
            b, a, _ = _wls_line(xlin[sel], sig[sel], 1.0 / sig[sel] ** 2)
            fit = a + b * xlin[sel]
            delta = 100 * (sig[sel] - fit) / fit
            le = float(np.mean(np.abs(delta)))
            le_min, le_max = float(delta.min()), float(delta.max())
    return le, le_min, le_max, sel


def _ptc_table(
    st: _LevelStats,
    frac: np.ndarray,
    usable: np.ndarray,
    ph: np.ndarray | None,
    ex: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The photon-transfer table, one entry per level sorted by signal."""
    order = np.argsort(st.sig)
    nan = np.full(len(order), np.nan)
    return {
        "level": order.astype(np.int64),
        "mean": st.mu_y[order],
        "dark_mean": st.mu_d[order],
        "var": st.var_raw[order],
        "var_corrected": st.var_c[order],
        "dark_var": st.dvar[order],
        "n_frames": st.n_frames[order].astype(np.int64),
        "clipped_fraction": frac[order],
        "flicker": st.stab[order, 0],
        "drift": st.stab[order, 1],
        "photons": (ph if ph is not None else nan)[order],
        "exposure": (ex if ex is not None else nan)[order],
        "used_for_K": usable[order],
    }


def _k_one_level(lv: Any, dark: Any, yvar: float, sig: float) -> tuple[float, float]:
    """K from one level (through the origin) and its SE from the spread over pixels.

    ``K = (var_y - var_dark) / (mu_y - mu_dark)`` with the frame-mean (flicker-
    corrected) numbers; the SE is the ratio-estimator SE over pixels
    ``sqrt(sum((y_i - K x_i)^2) / (n (n - 1))) / mean(x)``, which contains the
    temporal noise of every pixel's variance and any real gain spread.
    """
    K = yvar / sig
    y = (lv.var() - dark.var()).ravel()
    x = (lv.mean() - dark.mean()).ravel()
    n = x.size
    se = float(np.sqrt(np.sum((y - K * x) ** 2) / (n * (n - 1))) / abs(np.mean(x)))
    return float(K), se


def _pooled_dark(darks: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean dark image over all distinct dark accumulators and its temporal variance.

    Each group's global mean is removed before averaging (groups at different
    exposures differ by a global offset); returns (mean image, per-pixel variance of
    that mean from temporal noise, total frames).
    """
    uniq = list({id(d): d for d in darks}.values())
    g = len(uniq)
    mean = sum(d.mean() - float(np.mean(d.frame_means)) for d in uniq) / g
    tvar = sum(np.maximum(d.var(), 0) / d.n for d in uniq) / g**2
    return mean, tvar, sum(d.n for d in uniq)


def _s2_se(img: np.ndarray) -> float:
    """SE of the spatial variance of a map, ``sqrt((m4 - m2^2) / N)``."""
    c = img - img.mean()
    m2 = float(np.mean(c * c))
    m4 = float(np.mean(c**4))
    return float(np.sqrt(max(m4 - m2 * m2, 0.0) / c.size))


def _uncertainties(
    s: dict[str, Any],
    dark_mean: np.ndarray,
    lv50: Any,
    d50: Any,
    hp_d: bool,
    hp_p: bool,
    var_dark: float,
    dark_d: Any,
) -> dict[str, float]:
    """Standard errors of the summary numbers (first-order propagation).

    ``K_se`` enters every number in electrons; spatial variances get
    ``sqrt((m4 - m2^2)/N)`` from their own map (heavy tails included); the temporal
    dark variance the SE of its mean over pixels; saturation in DN is taken as exact
    (its interpolation error between levels is not included).
    """
    K, rk = s["K"], s["K_se"] / s["K"] if np.isfinite(s["K_se"]) else 0.0
    out: dict[str, float] = {}
    dv = dark_d.var()
    se_vd = float(np.std(dv) / np.sqrt(dv.size))
    if not s["sigma_d_upper_limit"]:
        r = se_vd / (2 * max(var_dark - SIGMA2_Q, 1e-12))
        out["sigma_d_se"] = s["sigma_d"] * float(np.hypot(r, rk))
    dmap = highpass_r4(dark_mean) / np.sqrt(_HP_GAIN) if hp_d else dark_mean
    s2d = (s["DSNU1288"] * K) ** 2
    if s2d > 0:
        out["DSNU1288_se"] = s["DSNU1288"] * float(np.hypot(_s2_se(dmap) / (2 * s2d), rk))
    lmap, ldm = lv50.mean(), d50.mean()
    if hp_p:
        lmap, ldm = highpass_r4(lmap) / np.sqrt(_HP_GAIN), highpass_r4(ldm) / np.sqrt(_HP_GAIN)
    s2p = (s["PRNU1288"] / 100 * s["PRNU_level_signal"]) ** 2
    if s2p > 0:
        out["PRNU1288_se"] = s["PRNU1288"] * float(np.hypot(_s2_se(lmap), _s2_se(ldm)) / (2 * s2p))
    if np.isfinite(s["mu_e_sat"]):
        r_sat = s.get("mu_y_sat_bracket_se", 0.0) / (s["mu_y_sat"] - s["mu_y_dark"])
        rk = float(np.hypot(rk, r_sat))  # below: numbers proportional to mu_e.sat
        out["mu_e_sat_se"] = s["mu_e_sat"] * rk
        out["SNR_max_se"] = 0.5 * s["SNR_max"] * rk
        # mu_e_min depends on sigma_d; its relative error is at most that of sigma_d
        r_min = out.get("sigma_d_se", 0.0) / s["sigma_d"] if s["sigma_d"] else 0.0
        r_dr = float(np.hypot(rk, r_min * s["sigma_d"] / max(s["mu_e_min"], 1e-12)))
        out["DR_se"] = s["DR"] * r_dr
        out["DR_dB_se"] = 20 / np.log(10) * r_dr
    return out


def _le_se(levels: Sequence[Any], darks: Sequence[Any], sig: np.ndarray, sel: np.ndarray) -> float:
    """SE of the linearity error from the noise of each level's mean signal (%)."""
    rel = []
    for i in np.flatnonzero(sel):
        lv, d = levels[i], darks[i]
        npix = lv.shape[0] * lv.shape[1]
        v = float(np.mean(lv.var())) / lv.n + float(np.mean(d.var())) / d.n
        rel.append(np.sqrt(max(lv.frame_mean_var(), v / npix) / lv.n + v / npix) / sig[i])
    r = np.asarray(rel)
    return float(100 * np.sqrt(np.sum(r * r)) / max(r.size, 1))


_SAT_KEYS = ("mu_y_sat", "mu_e_sat", "SNR_max", "SNR_max_dB", "DR", "DR_dB", "mu_p_sat")


def _mark_not_estimated(s: dict[str, Any], *, k: int, has_x: bool, has_photons: bool) -> None:
    """Move every NaN number to ``s["not_estimated"]`` (key -> reason), in place."""
    if k == 1:
        sat = "needs a light level at saturation (one light level measured)"
        lin = "needs >= 2 light levels (EMVA: >= 3 between 5 and 95 % of saturation)"
    else:
        sat = "no light level reaches saturation (0.15 % of pixels at their maximum)"
        lin = (
            "needs the photons or exposure of each level"
            if not has_x
            else "needs saturation and >= 3 levels between 5 and 95 % of it"
        )
    reasons = {
        "K_se": "needs >= 3 light levels for a fitted line's SE" if k == 2 else "not estimable",
        "LE": lin,
        "LE_min": lin,
        "LE_max": lin,
        "R": "needs the photons per pixel of each level",
        "eta": "needs the photons per pixel of each level",
        "mu_p_min": "needs the photons per pixel of each level",
    }
    for key in _SAT_KEYS:
        reasons[key] = sat
    if has_photons:
        for key in ("R", "eta", "mu_p_min"):
            reasons[key] = "no usable level with photons > 0"
    elif "mu_e_sat" in s and np.isfinite(s["mu_e_sat"]):
        reasons["mu_p_sat"] = "needs the photons per pixel of each level"
    missing: dict[str, str] = {}
    for key, v in list(s.items()):
        if isinstance(v, float) and not np.isfinite(v):
            missing[key] = reasons.get(key, "not estimable from these frames")
            del s[key]
    if k == 1:
        s["PRNU_note"] = "PRNU at the one measured level, not at 50 % of saturation"
    s["not_estimated"] = missing


def not_estimated_by_reason(emva: dict[str, Any]) -> dict[str, list[str]]:
    """``emva["not_estimated"]`` grouped: reason -> keys (for display)."""
    out: dict[str, list[str]] = {}
    for key, why in (emva.get("not_estimated") or {}).items():
        out.setdefault(str(why), []).append(str(key))
    return out


def emva_summary(
    dark: PixelMoments | Sequence[PixelMoments],
    levels: Sequence[PixelMoments],
    *,
    max_adu: int,
    photons: Sequence[float] | None = None,
    exposure: Sequence[float] | None = None,
    highpass: str = "auto",
) -> dict[str, Any]:
    """Global EMVA 1288 R4 numbers only; see :func:`emva_analysis`."""
    return emva_analysis(
        dark, levels, max_adu=max_adu, photons=photons, exposure=exposure, highpass=highpass
    )[0]
