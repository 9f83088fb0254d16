"""The variance curve of the blocks and the solutions for gain, offset and read noise.

The fitting half of :mod:`.estimate` (see its notes 3-5): the robust variance
line or parabola against the block means, the split of offset and read noise when
neither is given (`_honest_split`) and the solutions when one of them is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rawsigma.errors import RawsigmaError

__all__ = ["NoiseEstimateError", "fit_variance_line"]


class NoiseEstimateError(RawsigmaError, ValueError):
    """The image does not allow a noise estimate (too few blocks, no variance trend)."""


def fit_variance_line(
    mean: np.ndarray, var: np.ndarray, quadratic: bool = True, n_iter: int = 30
) -> dict[str, Any]:
    """Robust IRLS fit of ``var = quad * mean² + slope * mean + intercept``.

    The quadratic term models fixed-pattern noise (PRNU, pixel-to-pixel gain
    spread), which a single image cannot tell from temporal noise except by its
    ``(mean - offset)²`` growth; it is constrained to be >= 0 (refit without it
    otherwise). Weights are ``1 / fitted_var²`` (the sampling variance of a
    variance estimate is proportional to its square) times a Tukey biweight
    (c = 4.685) of the residuals standardised by their robust (MAD) relative scale.

    Returns
    -------
    dict
        ``quad``, ``slope``, ``intercept`` and their standard errors (``*_se``),
        ``weights`` (final, 1-D, max 1), ``rel_scale`` (robust relative scatter
        of the variances), ``n_inliers``.
    """
    x = np.asarray(mean, np.float64)
    y = np.asarray(var, np.float64)
    xs = max(float(np.max(np.abs(x))), 1.0)  # scale for conditioning
    u_x = x / xs

    def design(q: bool) -> np.ndarray:
        cols = [u_x * u_x] if q else []
        return np.column_stack([*cols, u_x, np.ones_like(x)])

    def run(q: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        A = design(q)
        # start from the lower half of the variances (signal can only add)
        sel = y <= np.median(y) if x.size >= 8 else np.ones(x.size, bool)
        if np.count_nonzero(sel) < A.shape[1] + 1:
            sel = np.ones(x.size, bool)
        coef = np.linalg.lstsq(A[sel], y[sel], rcond=None)[0]
        robust = np.ones_like(x)
        scale = 1.0
        floor = 1e-3 * max(float(np.median(y)), 1e-12)
        for _ in range(n_iter):
            fit = np.maximum(A @ coef, floor)
            rel = (y - fit) / fit
            scale = max(1.4826 * float(np.median(np.abs(rel - np.median(rel)))), 1e-6)
            u = rel / (4.685 * scale)
            robust = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
            sw = np.sqrt(robust) / fit
            new = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
            done = np.allclose(new, coef, rtol=1e-9, atol=1e-12 * floor)
            coef = new
            if done:
                break
        fit = np.maximum(A @ coef, floor)
        wts = robust / fit**2
        cov = np.linalg.pinv((A * wts[:, None]).T @ A) * scale**2
        return coef, cov, wts, scale

    q = quadratic and x.size >= 12
    coef, cov, wts, scale = run(q)
    if q and coef[0] < 0:
        q = False
        coef, cov, wts, scale = run(False)
    if not q:
        coef = np.concatenate([[0.0], coef])
        cov = np.pad(cov, ((1, 0), (1, 0)))
    units = np.array([xs * xs, xs, 1.0])
    coef = coef / units
    cov = cov / np.outer(units, units)
    se = np.sqrt(np.maximum(np.diag(cov), 0))
    return {
        "quad": float(coef[0]),
        "slope": float(coef[1]),
        "intercept": float(coef[2]),
        "quad_se": float(se[0]),
        "slope_se": float(se[1]),
        "intercept_se": float(se[2]),
        "quadratic": bool(q),
        "cov": cov,
        "weights": wts / wts.max() if wts.max() > 0 else wts,
        "rel_scale": float(scale),
        "n_inliers": int(np.count_nonzero(wts > 0)),
    }


def _root(c: float, a: float, d: float) -> float:
    """Root of ``c·o² + a·o + d = 0`` nearest ``-d/a`` (stable form)."""
    disc = a * a - 4 * c * d
    if c <= 0 or disc < 0:
        return -d / a
    return -2 * d / (a + np.sqrt(disc))


def _fit_through(
    fit: dict[str, Any], mean: np.ndarray, var: np.ndarray, o: float, r2: float
) -> dict[str, Any]:
    """Refit ``var = c (mean - o)² + g (mean - o) + r2`` with ``o`` and ``r2`` fixed.

    Used when the free fit contradicts a known or physically bounded offset;
    keeps the free fit's robust weights and its choice of quadratic term.
    """
    s = np.asarray(mean, np.float64) - o
    w = np.asarray(fit["weights"], np.float64)
    q = bool(fit["quadratic"])
    A = np.column_stack([s * s, s]) if q else s[:, None]
    sw = np.sqrt(w)
    y = np.asarray(var, np.float64) - r2
    coef = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
    c, g = (float(coef[0]), float(coef[1])) if q else (0.0, float(coef[0]))
    if c < 0:
        c, g = 0.0, float(np.sum(w * y * s) / np.sum(w * s * s))
    resid = y - (c * s * s + g * s)
    rel = resid / np.maximum(c * s * s + g * s, 1e-12)
    scale = 1.4826 * float(np.median(np.abs(rel[w > 0])))
    model = np.maximum(c * s * s + g * s + r2, 1e-12)
    info = float(np.sum((w > 0) * s * s / model**2))
    g_se = float(scale / np.sqrt(info)) if info > 0 else float("nan")
    cov = np.zeros((3, 3))
    cov[1, 1] = g_se**2
    out = dict(fit)
    out.update(
        quad=c,
        slope=g - 2 * c * o,
        intercept=c * o * o - g * o + r2,
        cov=cov,
        quadratic=c > 0,
        through=True,
    )
    return out


def _solve(
    fit: dict[str, Any], mean: np.ndarray, read_noise: float | None, offset: float | None
) -> dict[str, Any]:
    """Gain, offset and read noise from a fitted variance curve (module notes 4–5)."""
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    dark = float(np.min(mean[fit["weights"] > 0]))
    if offset is not None:
        o = float(offset)
        o_src = "given"
    elif read_noise is not None:
        o = _root(c, a, b - float(read_noise) ** 2)
        o_src = "from the fit and the given read noise"
    else:
        o = dark
        o_src = "darkest usable block (assumed free of photo-signal)"
    if read_noise is not None:
        rn = float(read_noise)
        r_src = "given"
    else:
        rn2 = c * o * o + a * o + b  # fitted variance at the offset
        if rn2 <= 0 and offset is None:
            rn2, o = 0.0, _root(c, a, b)
            o_src = "zero-variance intercept of the fit"
        rn = float(np.sqrt(max(rn2, 0.0)))
        r_src = "fitted variance at the offset" + (
            "" if offset is not None else " (upper bound: darkest block signal-free)"
        )
    gain = a + 2 * c * o
    jac = np.array([2 * o, 1.0, 0.0])
    return {
        "gain": float(gain),
        "gain_se": float(np.sqrt(max(jac @ fit["cov"] @ jac, 0))),
        "offset": float(o),
        "read_noise": rn,
        "offset_source": o_src,
        "read_noise_source": r_src,
    }


# Largest plausible camera offset without a data sheet, as a fraction of the ADC range
# (scientific cameras put it at ~100 ADU of 65535 or a few tens of 4095: < 5 %).
OFFSET_PRIOR_FRACTION = 0.05


def _honest_split(
    fit: dict[str, Any], mean: np.ndarray, x_low: float, max_adu: int
) -> tuple[float, float, float, str, str]:
    """Offset, read noise (ADU) and gain assumed when one image cannot separate them.

    The fitted curve ``c·x² + a·x + b`` is split into fixed pattern and a temporal line
    ``G·(x − μ0)`` through its zero-variance point ``μ0`` (slope ``G = a + 2c·μ0``; a
    calibration's profile holds the temporal part only). That line is measured only
    over the blocks' means; the profile must keep a positive variance down to the
    darkest pixels. The offset is assumed at ``o_hi = min(darkest usable block,
    x_low + 3σ, OFFSET_PRIOR_FRACTION · max_adu)`` (``x_low``: 0.1 % percentile, σ the
    noise of the darkest block; in a dark region ``x_low`` lies ≈ 3σ below the offset):
    the highest offset consistent with the pixels and with typical camera offsets.
    If ``μ0 < o_hi`` the read noise is ``sqrt(G·(o_hi − μ0))`` (an upper bound) and the
    model equals the temporal line over the image's range. Otherwise the curve reaches
    zero above ``o_hi`` (its slope cannot be extrapolated: typically high-frequency
    signal in an undersampled image) and is refitted through ``(o_hi, 0)``
    (`_fit_through`): positive over the image's range, read noise 0 at the assumed
    offset, below the image's values.

    Returns
    -------
    offset, read_noise, gain, offset_assumption, read_noise_assumption
    """
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    dark = float(np.min(mean[fit["weights"] > 0]))
    mu0 = _root(c, a, b) if c > 0 or a > 0 else -np.inf
    g_t = a + 2 * c * mu0 if np.isfinite(mu0) else a
    sd = float(np.sqrt(max(c * dark * dark + a * dark + b, 0.0)))  # noise of the darkest block
    cands = {
        "the darkest usable block": dark,
        # in a dark region (its block at most 4 sigma above x_low) x_low lies ~3 sigma
        # below the offset; without one the darkest pixels bound the offset
        "the darkest pixels (0.1 % percentile + 3 sigma)"
        if dark - x_low <= 4 * sd
        else "the darkest pixels (0.1 % percentile)": x_low
        + (3 * sd if dark - x_low <= 4 * sd else 0),
        f"{OFFSET_PRIOR_FRACTION:.0%} of the ADC range (typical camera offsets are below)": (
            OFFSET_PRIOR_FRACTION * max_adu
        ),
    }
    where = min(cands, key=lambda name: cands[name])
    o_hi = float(cands[where])
    if mu0 < o_hi and g_t > 0:
        return (
            o_hi,
            float(np.sqrt(g_t * (o_hi - mu0))),
            float(g_t),
            f"assumed at {where}",
            "the measured variance line at the assumed offset (an upper bound)",
        )
    raise _ThroughZero(o_hi, where)


class _ThroughZero(Exception):
    """`_honest_split`: refit through (offset, 0) at ``o_hi``."""

    def __init__(self, o_hi: float, where: str) -> None:
        super().__init__(where)
        self.o_hi, self.where = o_hi, where


def _solve_given(
    fit: dict[str, Any],
    mean: np.ndarray,
    var: np.ndarray,
    read_noise: float | None,
    offset: float | None,
    gain: float | None,
    top: float,
    name: str,
) -> dict[str, Any]:
    """Gain, offset and read noise when the offset and/or read noise is known."""
    sol = _solve_known(fit, mean, var, read_noise, offset)
    if gain is not None:  # a given gain wins over any refit through the given point
        sol["gain"] = float(gain)
    if offset is None and not 0 <= sol["offset"] <= top:
        raise NoiseEstimateError(
            f"{name}: the given read noise {read_noise:.4g} ADU does not fit this image: "
            f"the measured variance equals its square at {sol['offset']:.6g} ADU, outside "
            f"the possible offsets [0, {top:.6g}] ADU (wrong camera mode or preset?); give "
            "--offset as well, or omit --read-noise"
        )
    return sol


def _solve_unidentifiable(
    fit: dict[str, Any],
    mean: np.ndarray,
    var: np.ndarray,
    x_low: float,
    max_adu: int,
    gain: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Offset and read noise assumed (`_honest_split`); the fit and the solution."""
    try:
        o, rn, g_t, o_txt, r_txt = _honest_split(fit, mean, x_low, max_adu)
    except _ThroughZero as tz:
        o, rn = tz.o_hi, 0.0
        fit = _fit_through(fit, mean, var, o, 0.0)
        g_t = fit["slope"] + 2 * fit["quad"] * o
        o_txt = (
            f"assumed at {tz.where}; the measured variance curve reached zero above it "
            "and was refitted through (offset, 0)"
        )
        r_txt = "assumed 0 at the assumed offset (below the image's values)"
    if gain is not None:
        g_t = float(gain)
    sol = {
        "gain": float(g_t),
        "gain_se": float(np.sqrt(max(fit["cov"][1, 1], 0))),
        "offset": o,
        "read_noise": rn,
        "offset_source": o_txt,
        "read_noise_source": r_txt,
    }
    return fit, sol


# The model's noise at the darkest pixels may exceed their measured noise by this
# factor (sigma) before the dark floor replaces the assumed offset and read noise.
DARK_TOLERANCE = 1.3


def model_variance(fit: dict[str, Any], sol: dict[str, Any], x: float) -> float:
    """Variance (ADU²) of the estimated profile at value ``x`` (read noise below the offset)."""
    s = max(float(x) - float(sol["offset"]), 0.0)
    return float(sol["gain"]) * s + float(fit["quad"]) * s * s + float(sol["read_noise"]) ** 2


def _apply_dark_floor(
    fit: dict[str, Any],
    sol: dict[str, Any],
    mean: np.ndarray,
    var: np.ndarray,
    floor: tuple[float, float, int] | None,
    gain: float | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Put the assumed offset and read noise on the measured dark floor if needed.

    The blocks (32-64 pixels) may all hold signal, e.g. a confocal volume whose
    background is a thin margin: the offset is then assumed at a block mean above the
    background and, with a high gain (EMCCD: ~25 ADU/e⁻), the read noise taken from the
    variance line there is several times the background's noise. When the model's
    noise at the darkest pixels (`blocks.dark_floor`: level ``x_d``, noise ``σ_d``)
    exceeds ``DARK_TOLERANCE·σ_d``, the read noise becomes ``σ_d`` and the offset the
    value where the fitted curve equals ``σ_d²`` (at least ``x_d``); the curve is
    refitted through that point (`_fit_through`). Structure can only raise ``σ_d``, so
    only a model too noisy at the dark end is corrected.

    Returns
    -------
    fit, sol, record
        ``record`` (for the provenance): level, sigma, n, the model's sigma there
        before and after, and ``applied``.
    """
    rec: dict[str, Any] = {"applied": False}
    if floor is None or not floor[1] > 0:
        return fit, sol, rec
    x_d, s_d, n_d = floor
    before = float(np.sqrt(model_variance(fit, sol, x_d)))
    rec.update(level_adu=x_d, sigma_adu=s_d, n_pixels=n_d, model_sigma_before=before)
    if before <= DARK_TOLERANCE * s_d:
        rec["model_sigma_after"] = before
        return fit, sol, rec
    v_d = s_d * s_d
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    o = max(x_d, float(_root(c, a, b - v_d))) if a > 0 or c > 0 else x_d
    fit2 = _fit_through(fit, mean, var, o, v_d)
    g = float(gain) if gain is not None else fit2["slope"] + 2 * fit2["quad"] * o
    if not (np.isfinite(g) and g > 0):
        return fit, sol, rec
    where = f"{x_d:.6g} ADU, noise {s_d:.3g} ADU rms over the {n_d} darkest pixels"
    sol = dict(
        sol,
        gain=g,
        offset=o,
        read_noise=s_d,
        offset_source=(
            "assumed where the measured variance curve meets the noise of the darkest "
            f"pixels ({where}; the blocks were too bright to show it)"
        ),
        read_noise_source="the noise of the darkest pixels, measured pixel by pixel",
    )
    rec.update(applied=True, model_sigma_after=float(np.sqrt(model_variance(fit2, sol, x_d))))
    return fit2, sol, rec


def _fit_curve(
    mean: np.ndarray, var: np.ndarray, quadratic: bool, gain: float | None, name: str
) -> dict[str, Any]:
    """The variance curve of the blocks (module notes 3).

    With a known ``gain``, the straight line of that slope (robust weights from the
    free fit).
    """
    candidates = []
    if quadratic and gain is None:
        fq = fit_variance_line(mean, var, quadratic=True)
        if fq["quadratic"] and fq["quad"] > 2 * fq["quad_se"]:
            candidates.append(fq)
    candidates.append(fit_variance_line(mean, var, quadratic=False))
    for fit in candidates:
        if fit["n_inliers"] < 4 or not np.all(np.isfinite([fit["slope"], fit["quad"]])):
            continue
        if gain is not None:
            w = fit["weights"]
            b = float(np.sum(w * (var - gain * mean)) / np.sum(w))
            return dict(fit, quad=0.0, slope=float(gain), intercept=b, quadratic=False)
        if fit["slope"] + 2 * fit["quad"] * float(np.min(mean)) > 0:
            return fit
    raise NoiseEstimateError(
        f"{name}: the high-frequency noise variance does not increase with the "
        f"mean over {mean.size} blocks (means {mean.min():.6g}..{mean.max():.6g} ADU, "
        f"variances {var.min():.4g}..{var.max():.4g} ADU^2); cannot estimate a gain "
        "from this image"
    )


def _solve_known(
    fit: dict[str, Any],
    mean: np.ndarray,
    var: np.ndarray,
    read_noise: float | None,
    offset: float | None,
) -> dict[str, Any]:
    """Gain, offset and read noise when the offset and/or the read noise is given."""
    sol = _solve(fit, mean, read_noise, offset)
    o = sol["offset"]
    r2 = None if read_noise is None else float(read_noise) ** 2
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    if r2 is not None and offset is not None:
        fit2 = _fit_through(fit, mean, var, o, r2)
        note = "variance curve refitted through (offset, read noise²)"
    elif c * o * o + a * o + b < 0:
        fit2 = _fit_through(fit, mean, var, o, 0.0)
        note = "variance curve refitted through (offset, 0)"
    else:
        return sol
    src = sol["offset_source"]
    sol = _solve(fit2, mean, read_noise, o)
    sol["offset_source"] = src
    sol["fit_note"] = note
    fit.update({k: fit2[k] for k in ("quad", "slope", "intercept", "cov", "quadratic")})
    return sol
