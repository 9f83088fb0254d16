"""Per-pixel photon-transfer fit: offset, read noise, gain, PRNU, defects, and their SEs.

Model (Poisson-Gaussian, per pixel ``i``, level ``k``)::

    mean_ik = o_i + s_ik              s_ik = signal in ADU
    var_ik  = g_i * s_ik + r_i        r_i = dark variance (read noise^2 + 1/12 rounding)

The gain is the weighted least-squares slope through the origin of
``y_k = var_k - r`` against ``x_k = mean_k - o`` over the levels where the pixel is not
clipped, with weights ``1 / Var(var_k)``, ``Var(var_k) = 2 sigma_k^4 / dof_k`` from the
model (iterated twice). Its standard error propagates the level variances and the
errors of the dark offset and variance, which are common to all levels.

``read_noise`` is the square root of the measured dark temporal variance, which
includes the 1/12 ADU^2 of rounding: that is the noise the same camera adds to any
frame, and what ``CameraProfile.variance`` must reproduce.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import brentq

from .profile import (
    DEFECT_BAD_GAIN,
    DEFECT_DEAD,
    DEFECT_HOT,
    DEFECT_NOISY,
    DEFECT_NONLINEAR,
    DEFECT_SATURATED,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .moments import PixelMoments

__all__ = ["PixelMaps", "fit_pixel_maps", "saturation_masks"]

_BLOCK_PIXELS = 1 << 16


@dataclass
class PixelMaps:
    """Per-pixel calibration maps (all (H, W); float64 unless noted).

    Attributes
    ----------
    offset, offset_se : ADU
    read_var, read_var_se : ADU^2 (dark temporal variance and its SE)
    read_noise, read_noise_se : ADU rms
    gain, gain_se : ADU per photo-electron (NaN where fewer than ``min_levels`` levels
        were usable)
    gain_chi2 : reduced chi^2 of the weighted gain fit (about 1 for a good pixel; NaN
        with fewer than 2 usable levels)
    prnu : relative photo-response, mean 1 over good pixels
    defects : uint8 bitmask (``DEFECT_*`` of :mod:`rawsigma.calib.profile`)
    n_levels : uint8, levels used in the gain fit
    level_signal : (K,) mean signal of each level over all pixels (ADU above offset)
    level_clipped : (K,) fraction of pixels clipped at each level
    saturation_mode : "none", "adc" or "full_well"
    info : dict
        ``gain_guess``, ``dark_frames``, ``frames_per_level``, ``all_clipped`` and
        ``no_signal`` (bool (H, W): pixel clipped at every level / without signal
        above dark wherever not clipped), and the shrinkage prior when used.
    """

    offset: np.ndarray
    offset_se: np.ndarray
    read_var: np.ndarray
    read_var_se: np.ndarray
    read_noise: np.ndarray
    read_noise_se: np.ndarray
    gain: np.ndarray
    gain_se: np.ndarray
    gain_chi2: np.ndarray
    prnu: np.ndarray
    defects: np.ndarray
    n_levels: np.ndarray
    level_signal: np.ndarray
    level_clipped: np.ndarray
    saturation_mode: str = "none"
    info: dict = field(default_factory=dict)

    @property
    def good(self) -> np.ndarray:
        """Boolean (H, W): no defect flag set."""
        return self.defects == 0


def _robust_sigma(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def _shrink(
    gain: np.ndarray, se: np.ndarray, good: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Empirical-Bayes (normal-normal) shrinkage of the good pixels' gains."""
    g, s = gain[good], se[good]
    mu = float(np.median(g))
    s2 = s * s
    floor = (1e-4 * mu) ** 2

    # Paule-Mandel: the spread for which the standardised residuals have unit variance
    def excess(t2: float) -> float:
        return float(np.sum((g - mu) ** 2 / (t2 + s2))) - (g.size - 1)

    hi = float(np.var(g)) + floor
    tau2 = floor if excess(floor) <= 0 else brentq(excess, floor, hi, xtol=floor * 1e-3)
    var_mu = 1.5708 / float(np.sum(1.0 / (tau2 + s2)))  # variance of the (median) centre
    w = tau2 / (tau2 + se**2)
    post = mu + w * (gain - mu)
    post_se = np.sqrt(w * se**2 + (1 - w) ** 2 * var_mu)
    out_g = np.where(good, post, gain)
    out_s = np.where(good, post_se, se)
    return out_g, out_s, {"centre": mu, "spread": float(np.sqrt(tau2))}


def saturation_masks(
    dark: PixelMoments,
    levels: Sequence[PixelMoments],
    max_adu: int,
    read_var: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """Which pixel is clipped at which level.

    A pixel is clipped at a level when any of its frames reached the ADC maximum,
    or, when the photon-transfer curve shows a full well clipping below the ADC
    (the mean variance falls by half after its peak), when any frame came within
    ``3 sigma_read + 1`` ADU of the largest value that pixel ever reached.

    Returns
    -------
    clipped : ndarray of bool, shape (K, H, W)
    mode : {"none", "adc", "full_well"}
    """
    k = len(levels)
    clipped = np.stack([lv.pixel_max >= max_adu for lv in levels])
    frac = clipped.reshape(k, -1).mean(axis=1)
    mode = "adc" if np.any(frac >= 0.001) else "none"
    sig = np.array([lv.frame_means.mean() for lv in levels]) - dark.frame_means.mean()
    gvar = np.array([float(np.mean(lv.var())) for lv in levels])
    order = np.argsort(sig)
    gv = gvar[order]
    if k >= 2 and np.all(np.isfinite(gv)):
        ipk = int(np.argmax(gv))
        later = gv[ipk + 1 :]
        if later.size and later.min() < 0.5 * gv[ipk]:
            # the photon-transfer curve collapses: a full well (or ADC) clips
            rv = dark.var() if read_var is None else read_var
            tol = 3.0 * np.sqrt(np.maximum(rv, 0)) + 1.0
            top = functools.reduce(np.maximum, [lv.pixel_max for lv in levels])
            fw = np.stack([lv.pixel_max >= top - tol for lv in levels])
            # pixels without a real plateau (dead, barely responding) never saturate
            rise = top - dark.mean()
            fw[:, rise < 0.5 * np.median(rise)] = False
            # levels far below the peak of the curve cannot be at saturation
            fw[sig < 0.5 * sig[order[ipk]]] = False
            clipped |= fw
            if np.median(top) < max_adu:
                mode = "full_well"
    return clipped, mode


def fit_pixel_maps(
    dark: PixelMoments,
    levels: Sequence[PixelMoments],
    *,
    max_adu: int,
    flicker_correction: bool = True,
    min_levels: int = 2,
    outlier_sigma: float = 6.0,
    nonlinear_tol: float = 0.03,
    shrink_gain: bool = False,
) -> PixelMaps:
    """Fit per-pixel offset, read noise, gain, PRNU and a defect mask.

    Parameters
    ----------
    dark : PixelMoments
        Dark frames (shutter closed), same exposure as the levels. At least 2 frames.
    levels : sequence of PixelMoments or LevelStats
        One accumulator (or its :meth:`~PixelMoments.compact` summary) per light
        level, any order, each with at least 2 frames.
    max_adu : int
        ADC maximum (``2**bit_depth - 1``); frames reaching it are clipped.
    flicker_correction : bool
        Remove common-mode light fluctuations from the level variances
        (:meth:`PixelMoments.var_corrected`).
    min_levels : int
        Minimum number of unclipped levels for a gain estimate (at most the number of
        levels: with one level, each pixel's gain is
        ``(var_flat - var_dark) / (mean_flat - mean_dark)`` with its delta-method SE).
    outlier_sigma : float
        Robust z threshold for hot, noisy and gain-outlier pixels.
    nonlinear_tol : float
        Relative deviation of a pixel's mean from its linear response above which
        (and beyond 6 standard errors) it is flagged nonlinear.
    shrink_gain : bool
        Empirical-Bayes gain map: each good pixel's gain becomes the posterior mean
        under a normal prior fitted to all good pixels (centre = median gain, spread
        by Paule-Mandel: standardised residuals of unit variance), and ``gain_se`` the
        posterior sd (plus the uncertainty of the prior centre). Lower error per pixel
        when the true gain spread is small against the per-pixel SE (sCMOS with few
        frames); the raw WLS estimate is kept in ``info["gain_raw"]``. Default False.

    Returns
    -------
    PixelMaps
    """
    _check_frames(dark, levels)
    k = len(levels)
    min_levels = max(1, min(int(min_levels), k))
    dm = _dark_maps(dark)
    clipped, mode = saturation_masks(dark, levels, max_adu, dm.read_var)
    level_clipped = clipped.reshape(k, -1).mean(axis=1)
    dark_level = float(dark.frame_means.mean())
    level_signal = np.array([lv.frame_means.mean() - dark_level for lv in levels])
    g0 = _gain_guess(levels, dm.read_var, level_clipped, level_signal)

    fits = _GainMaps.empty(dark.shape)
    rows_per = max(1, _BLOCK_PIXELS // dark.shape[1])
    for r0 in range(0, dark.shape[0], rows_per):
        rows = slice(r0, min(dark.shape[0], r0 + rows_per))
        block = _block_data(rows, levels, dm, clipped, flicker_correction)
        model_var = _fit_block_gain(fits, block, dm, g0, min_levels)
        _fit_block_response(fits, block, model_var, level_signal, nonlinear_tol)

    defects = _defects(dark, dm, fits, clipped, level_clipped, outlier_sigma)
    gain, gain_se = fits.gain, fits.gain_se
    good = defects == 0
    info: dict = {}
    if shrink_gain and np.count_nonzero(good) > 10:
        info["gain_raw"], info["gain_se_raw"] = gain.copy(), gain_se.copy()
        gain, gain_se, prior = _shrink(gain, gain_se, good)
        info["gain_prior"] = prior
    resp = fits.resp
    med_resp = _median_response(resp)
    norm = float(np.mean(resp[good])) if np.any(good) else med_resp
    prnu = resp / norm if np.isfinite(norm) and norm > 0 else resp

    return PixelMaps(
        offset=dm.offset,
        offset_se=dm.offset_se,
        read_var=dm.read_var,
        read_var_se=dm.read_var_se,
        read_noise=dm.read_noise,
        read_noise_se=dm.read_noise_se,
        gain=gain,
        gain_se=gain_se,
        gain_chi2=fits.chi2,
        prnu=prnu,
        defects=defects,
        n_levels=fits.n_used,
        level_signal=level_signal,
        level_clipped=level_clipped,
        saturation_mode=mode,
        info={
            "gain_guess": g0,
            "dark_frames": dark.n,
            "frames_per_level": [lv.n for lv in levels],
            "all_clipped": np.all(clipped, axis=0),
            "no_signal": fits.no_signal,
            **info,
        },
    )


# ----------------------------------------------------------------------------- steps
def _check_frames(dark: PixelMoments, levels: Sequence[PixelMoments]) -> None:
    if not levels:
        raise ValueError("fit_pixel_maps needs at least one light level")
    shape = dark.shape
    for i, lv in enumerate(levels):
        if lv.shape != shape:
            raise ValueError(f"level {i} has shape {lv.shape}, dark has {shape}")
        if lv.n < 2:
            raise ValueError(f"level {i} has {lv.n} frame(s); at least 2 are needed")
    if dark.n < 2:
        raise ValueError(f"dark has {dark.n} frame(s); at least 2 are needed")


@dataclass
class _DarkMaps:
    """Offset and dark temporal variance per pixel, with their standard errors."""

    offset: np.ndarray
    offset_se: np.ndarray
    read_var: np.ndarray
    read_var_se: np.ndarray
    read_noise: np.ndarray
    read_noise_se: np.ndarray


def _dark_maps(dark: PixelMoments) -> _DarkMaps:
    nd = dark.n
    offset = dark.mean()
    read_var = dark.var()
    read_var_se = np.sqrt(2.0 / (nd - 1)) * read_var
    if dark.higher and nd >= 4:
        # a heavy tail widens the SE; but the fourth moment of a few dozen frames is too
        # noisy to narrow it below the Gaussian value (20 frames: 3 % of the pixels were
        # > 3 SE off the truth, 1.6 % with this floor)
        read_var_se = np.maximum(dark.var_se(), read_var_se)
    offset_se = np.sqrt(np.maximum(read_var, 1.0 / 12) / nd)
    read_noise = np.sqrt(np.maximum(read_var, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        read_noise_se = read_var_se / (2 * np.maximum(read_noise, 1e-6))
    return _DarkMaps(offset, offset_se, read_var, read_var_se, read_noise, read_noise_se)


def _gain_guess(
    levels: Sequence[PixelMoments],
    read_var: np.ndarray,
    level_clipped: np.ndarray,
    level_signal: np.ndarray,
) -> float:
    """A global gain from the median variances of unclipped levels: the first weights."""
    good_lv = (level_clipped < 0.01) & (level_signal > 0)
    gv = np.array(
        [
            np.median(lv.var()) - np.median(read_var) if g else np.nan
            for lv, g in zip(levels, good_lv, strict=True)
        ]
    )
    if np.any(good_lv):
        g0 = float(
            np.nansum(gv[good_lv] * level_signal[good_lv]) / np.sum(level_signal[good_lv] ** 2)
        )
    else:
        g0 = 1.0
    if not np.isfinite(g0) or g0 <= 0:
        g0 = 1.0
    return g0


@dataclass
class _GainMaps:
    """The per-pixel fit results, filled block of rows by block of rows."""

    gain: np.ndarray
    gain_se: np.ndarray
    chi2: np.ndarray
    resp: np.ndarray  # response relative to the mean signal of each level
    nonlin: np.ndarray
    n_used: np.ndarray
    no_signal: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _GainMaps:
        return cls(
            gain=np.full(shape, np.nan),
            gain_se=np.full(shape, np.nan),
            chi2=np.full(shape, np.nan),
            resp=np.full(shape, np.nan),
            nonlin=np.zeros(shape, bool),
            n_used=np.zeros(shape, np.uint8),
            no_signal=np.zeros(shape, bool),
        )


@dataclass
class _Block:
    """One block of rows: signal ``x`` and variance ``y`` above dark per level."""

    rows: slice
    x: np.ndarray  # (K, rows, W) mean above offset
    y: np.ndarray  # (K, rows, W) variance above dark variance
    dof: np.ndarray  # (K, 1, 1) or (K, rows, W) degrees of freedom of each variance
    nk: np.ndarray  # (K, 1, 1) frames per level
    use: np.ndarray  # (K, rows, W) level usable for the pixel
    nuse: np.ndarray  # (rows, W)
    no_signal: np.ndarray  # (rows, W) every level clipped or at/below the offset


def _block_data(
    rows: slice,
    levels: Sequence[PixelMoments],
    dm: _DarkMaps,
    clipped: np.ndarray,
    flicker_correction: bool,
) -> _Block:
    o = dm.offset[rows]
    x = np.stack([lv.mean(rows=rows) for lv in levels]) - o
    nk = np.array([lv.n for lv in levels], np.float64)[:, None, None]
    ys, dofs = [], []
    for lv in levels:
        if flicker_correction:
            v, d = lv.var_corrected(rows=rows, offset=o)
        else:
            v, d = lv.var(rows=rows), lv.n - 1
        ys.append(v)
        dofs.append(d)
    y = np.stack(ys) - dm.read_var[rows]
    dof = np.array(dofs, np.float64)[:, None, None]
    use = ~clipped[:, rows] & (x > 0) & np.isfinite(y)
    no_signal = np.all(clipped[:, rows] | ~(x > 0), axis=0)
    return _Block(rows, x, y, dof, nk, use, use.sum(axis=0), no_signal)


def _fit_block_gain(
    fits: _GainMaps, block: _Block, dm: _DarkMaps, g0: float, min_levels: int
) -> np.ndarray:
    """Weighted least-squares gain through the origin, its SE and reduced chi^2.

    Returns the model variance of every level at the fitted gain.
    """
    rs, x, y, dof, nk, use, nuse = (
        block.rows, block.x, block.y, block.dof, block.nk, block.use, block.nuse
    )  # fmt: skip
    r = dm.read_var[rs]
    fits.n_used[rs] = np.minimum(nuse, 255)
    fits.no_signal[rs] = block.no_signal
    g = np.full(r.shape, g0)
    for _ in range(3):
        s2 = np.maximum(np.maximum(g, 0) * x + r, np.maximum(r, 1.0 / 12))
        vv = 2 * s2 * s2 / dof  # model variance of each level's variance
        w = np.where(use, 1.0 / vv, 0.0)
        sxx = np.sum(w * x * x, axis=0)
        sxy = np.sum(w * x * y, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = sxy / sxx
        g = np.where(np.isfinite(g), g, g0)
    s2 = np.maximum(np.maximum(g, 0) * x + r, np.maximum(r, 1.0 / 12))
    vv = 2 * s2 * s2 / dof
    w = np.where(use, 1.0 / vv, 0.0)
    sxx = np.sum(w * x * x, axis=0)
    sx = np.sum(w * x, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.sum(w * x * y, axis=0) / sxx
        var_o = dm.offset_se[rs] ** 2
        var_g = (
            1.0 / sxx
            + (sx / sxx) ** 2 * (dm.read_var_se[rs] ** 2 + g * g * var_o)
            + g * g * np.sum(w * w * x * x * s2 / nk, axis=0) / sxx**2
        )
        res = y - g * x
        c2 = np.sum(w * res * res, axis=0) / np.maximum(nuse - 1, 1)
    ok = nuse >= min_levels
    fits.gain[rs] = np.where(ok, g, np.nan)
    fits.gain_se[rs] = np.where(ok, np.sqrt(var_g), np.nan)
    fits.chi2[rs] = np.where(ok & (nuse >= 2), c2, np.nan)
    return s2  # the model variances at the fitted gain


def _fit_block_response(
    fits: _GainMaps,
    block: _Block,
    model_var: np.ndarray,
    level_signal: np.ndarray,
    nonlinear_tol: float,
) -> None:
    """Relative response (pixel signal against the global mean signal) and nonlinearity."""
    x, use = block.x, block.use
    sk = level_signal[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.sum(np.where(use, x * sk, 0), axis=0) / np.sum(np.where(use, sk * sk, 0), axis=0)
        fitm = a * sk
        se_m = np.sqrt(model_var / block.nk)
        dev = np.abs(x - fitm)
        big = use & (sk > 0.05 * np.max(level_signal)) & (dev > nonlinear_tol * np.abs(fitm))
        big &= dev > 6 * se_m
    fits.resp[block.rows] = a
    fits.nonlin[block.rows] = np.any(big, axis=0)


def _median_response(resp: np.ndarray) -> float:
    return float(np.nanmedian(resp)) if np.any(np.isfinite(resp)) else float("nan")


def _defects(
    dark: PixelMoments,
    dm: _DarkMaps,
    fits: _GainMaps,
    clipped: np.ndarray,
    level_clipped: np.ndarray,
    outlier_sigma: float,
) -> np.ndarray:
    """The ``DEFECT_*`` bitmask: hot, dead, noisy, nonlinear, bad gain, early saturation."""
    offset, read_noise, gain, nd = dm.offset, dm.read_noise, fits.gain, dark.n
    defects = np.zeros(dark.shape, np.uint8)
    med_o = float(np.median(offset))
    so = max(_robust_sigma(offset), 1e-3)
    # significant for the pixel itself too: a very noisy pixel's offset scatters
    hot = (offset - med_o > outlier_sigma * so) & (offset - med_o > 5 * dm.offset_se)
    defects[hot] |= DEFECT_HOT
    med_resp = _median_response(fits.resp)
    if np.isfinite(med_resp) and med_resp > 0:
        defects[~(fits.resp > 0.5 * med_resp)] |= DEFECT_DEAD
    lrn = np.log(np.maximum(read_noise, 1e-3))
    noisy = lrn - np.median(lrn) > outlier_sigma * max(_robust_sigma(lrn), 0.02)
    if dark.higher and nd >= 20:
        kurt = dark.excess_kurtosis()
        se_k = np.sqrt(24.0 / nd)
        # a two-level telegraph signal makes the dark distribution platykurtic
        rn_hi = read_noise > 1.5 * np.median(read_noise)
        noisy |= ((kurt < -3 * se_k) & rn_hi) | (kurt > 12 * se_k)
    defects[noisy] |= DEFECT_NOISY
    defects[fits.nonlin] |= DEFECT_NONLINEAR
    med_g = float(np.nanmedian(gain)) if np.any(np.isfinite(gain)) else np.nan
    sg = _robust_sigma(gain)
    with np.errstate(invalid="ignore"):
        badg = ~np.isfinite(gain) | (gain <= 0)
        if np.isfinite(med_g) and np.isfinite(sg):
            badg |= np.abs(gain - med_g) > outlier_sigma * max(sg, 1e-3 * abs(med_g))
    defects[badg] |= DEFECT_BAD_GAIN
    # saturates at a level where almost no other pixel does
    early = np.any(clipped & (level_clipped < 0.001)[:, None, None], axis=0)
    defects[early] |= DEFECT_SATURATED
    return defects
