"""Camera noise profile estimated from a single image (no calibration available).

Method, in the spirit of Heintzmann, Relich & Nagy (2016, arXiv:1611.05654,
``pcfo.m``):

1. Cut the image (each plane of a stack) into ``tile × tile`` blocks; drop blocks
   that touch saturated (``>= max_adu``, or at the image maximum when that is a
   full-scale code ``2**b - 1``) or zero-clipped pixels.
2. Per block: take the 2-D FFT of its periodic component (Moisan's
   periodic-plus-smooth decomposition removes the leakage of the jump across the
   block's periodic boundary) and average ``|F(k)|²`` over the frequencies beyond
   ``0.9 k_Nyquist`` (radially), skipping the ``kx = 0`` and ``ky = 0`` axes
   (row/column patterns). Beyond the optical cut-off only noise remains, so for
   independent pixels ``E|F(k)|² = σ² · G(k)`` with ``G`` computed exactly for the
   decomposition (``tile²`` minus what the smooth part absorbs of the border
   pixels' noise): the block's noise variance is the average of ``|F(k)|²/G(k)``,
   paired with the block mean.
3. Fit ``variance = c · mean² + a · mean + b`` by iteratively reweighted least
   squares (weights ``1/variance²`` from the fit, Tukey biweight on the
   standardised residuals, so blocks with high-frequency signal are rejected).
   The ``c`` term is fixed-pattern noise (PRNU and pixel-to-pixel gain spread look
   like white noise in one image and grow as ``(mean - offset)²``); it is kept only
   if significant and physically usable, otherwise a straight line is fitted.
   Without it a 1 % PRNU biases the gain by ~10 % on bright images.
4. ``gain = a + 2 c · offset`` (the slope of the temporal part at the offset).
5. Offset and read noise: a known read noise ``r`` gives the offset as the root of
   ``variance(offset) = r²``; a known offset gives ``r² = variance(offset)``.
   With neither, one image's variance curve cannot separate them; the darkest
   usable block is assumed to hold no photo-signal (``offset`` = its mean,
   ``r² = variance(offset)``), the largest read noise consistent with the data
   (an upper bound). The variance model ``gain·(mean - offset) + r²`` is nearly
   unaffected by the split over the image's range, so replicas drawn from the
   profile keep the right variance.

6. Physical bounds: every pixel's expectation is >= offset, so the offset is
   capped at the 0.1 % pixel percentile plus 5 sigma of the darkest blocks' noise;
   when the free curve then gives a negative variance at the offset (or offset and
   read noise are both given), the curve is refitted through ``(offset, r²)``
   (``r = 0`` if unknown). Images without dark regions (phase contrast) need a
   known ``offset`` (camera data sheet) for a physical gain; without it the
   estimate is an upper-bound offset with a matching gain, whose variance curve
   is right over the image's own range of values.

The result is a *uniform* profile (global scalars) whose ``provenance`` says
``estimated=True`` and records the method and the fit numbers; the per-block means
and variances are stored in ``profile.ptc`` (``mean``, ``var``, ``weight``).
The method needs images sampled at or beyond Nyquist; strongly undersampled
images put signal into the high frequencies and bias the gain upwards.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import ImageMismatchError, RawsigmaError

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

METHOD = "heintzmann2016-hf-fourier-irls"
K_CUT = 0.9  # fraction of the Nyquist frequency beyond which a block is pure noise


class NoiseEstimateError(RawsigmaError, ValueError):
    """The image does not allow a noise estimate (too few blocks, no variance trend)."""


def _saturation_mask(img: np.ndarray, max_adu: int) -> np.ndarray:
    bad = (img >= max_adu) | (img <= 0)
    top = int(img.max())
    if (top + 1) & top == 0 and top >= 255:  # full-scale code 2**b - 1
        bad |= img == top
    return bad


def _periodic_spectrum(blocks: np.ndarray) -> np.ndarray:
    """``rfft2`` of the periodic component of each block (Moisan 2011).

    Removing the smooth component that carries the jump across the block's
    periodic boundary leaves a spectrum free of the ``1/k`` boundary leakage while
    every pixel keeps equal weight (a window would discard most of the data).
    """
    n, th, tw = blocks.shape
    v = np.zeros_like(blocks)
    dy = blocks[:, -1, :] - blocks[:, 0, :]
    dx = blocks[:, :, -1] - blocks[:, :, 0]
    v[:, 0, :] += dy
    v[:, -1, :] -= dy
    v[:, :, 0] += dx
    v[:, :, -1] -= dx
    cy = 2 * np.cos(2 * np.pi * np.fft.fftfreq(th))[:, None]
    cx = 2 * np.cos(2 * np.pi * np.fft.rfftfreq(tw))[None, :]
    den = cy + cx - 4
    den[0, 0] = 1.0
    s_hat = np.fft.rfft2(v) / den
    s_hat[:, 0, 0] = 0
    return np.fft.rfft2(blocks) - s_hat


@functools.lru_cache(maxsize=8)
def _noise_gain(tile: int) -> np.ndarray:
    """``Σ_i |a_k[i]|²`` for ``p_hat(k) = Σ_i a_k[i] u_i`` (the periodic spectrum).

    White noise of variance σ² gives ``E|p_hat(k)|² = σ² · _noise_gain(tile)[k]``.
    Interior pixels contribute 1 each; the border pixels, whose noise is partly
    absorbed by the smooth component, are evaluated exactly with delta images.
    """
    border = np.zeros((tile, tile), bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    idx = np.flatnonzero(border)
    deltas = np.zeros((idx.size, tile * tile))
    deltas[np.arange(idx.size), idx] = 1.0
    spec = _periodic_spectrum(deltas.reshape(-1, tile, tile))
    power = spec.real**2 + spec.imag**2
    return tile * tile - idx.size + power.sum(axis=0)


def _frequency_mask(tile: int) -> np.ndarray:
    fy = np.fft.fftfreq(tile)[:, None]
    fx = np.fft.rfftfreq(tile)[None, :]
    k = np.hypot(fx, fy)
    step = 1.0 / tile
    mask = k > K_CUT * 0.5
    mask &= np.abs(fx) > 0.5 * step  # skip the kx = 0 and ky = 0 axes
    mask &= np.abs(fy) > 0.5 * step
    return mask


def tile_statistics(
    image: np.ndarray, tile: int = 64, max_adu: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-block weighted mean and high-frequency noise variance.

    Parameters
    ----------
    image : (H, W) or (N, H, W) integer ndarray
        Raw image(s), ADU.
    tile : int
        Block edge, pixels (>= 16).
    max_adu : int, optional
        ADC full scale; default the dtype maximum.

    Returns
    -------
    mean, var : 1-D float64 ndarray
        Block means (ADU) and high-frequency noise variances (ADU²) of the usable
        blocks.
    n_blocks : int
        Number of blocks before rejecting saturated ones.
    """
    img = np.asarray(image)
    planes = img.reshape(-1, *img.shape[-2:])
    if max_adu is None:
        max_adu = int(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 2**16 - 1
    h, w = planes.shape[-2:]
    ny, nx = h // tile, w // tile
    fmask = _frequency_mask(tile)
    ngain = _noise_gain(tile)[fmask]
    means: list[np.ndarray] = []
    vars_: list[np.ndarray] = []
    n_blocks = 0
    for plane in planes:
        p = plane[: ny * tile, : nx * tile]
        blocks = p.reshape(ny, tile, nx, tile).swapaxes(1, 2).reshape(-1, tile, tile)
        n_blocks += blocks.shape[0]
        bad = _saturation_mask(blocks, max_adu).any(axis=(1, 2))
        b = blocks[~bad].astype(np.float64)
        if not b.size:
            continue
        means.append(b.mean(axis=(1, 2)))
        spec = _periodic_spectrum(b)
        power = (spec.real**2 + spec.imag**2)[:, fmask]
        vars_.append((power / ngain).mean(axis=1))
    if not means:
        return np.empty(0), np.empty(0), n_blocks
    return np.concatenate(means), np.concatenate(vars_), n_blocks


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


def estimate_profile(
    image: np.ndarray,
    read_noise: float | None = None,
    *,
    tile: int = 64,
    bit_depth: int | None = None,
    offset: float | None = None,
    quadratic: bool = True,
    source: str = "",
) -> CameraProfile:
    """Estimate a uniform camera profile from one raw image.

    Parameters
    ----------
    image : (H, W) or (N, H, W) unsigned integer ndarray
        Raw image in ADU; a stack is treated as N images from the same camera
        (more blocks, one profile of shape (H, W)).
    read_noise : float, optional
        Known read noise, ADU rms. Without it the read noise is estimated as the
        upper bound described in the module notes.
    tile : int
        Block edge in pixels (default 64; use 32 for small images).
    bit_depth : int, optional
        ADC bit depth; default the dtype's (16 for uint16). Sets ``max_adu`` for
        saturation and for the profile.
    offset : float, optional
        Known offset (ADU), e.g. from the camera's data sheet; then the read noise
        (if not given) is the fitted variance at the offset.
    quadratic : bool
        Allow a ``mean²`` term for fixed-pattern noise (see
        :func:`fit_variance_line`); it is kept only if significant (> 3 SE) and
        it gives a positive gain, otherwise the straight line is used.
    source : str
        Name of the image (file) for provenance and error messages.

    Returns
    -------
    CameraProfile
        Uniform maps of gain (ADU/e⁻), offset (ADU) and read noise (ADU rms);
        ``provenance["estimated"] = True``, ``provenance["estimate"]`` holds the
        method and fit numbers, ``ptc`` the block means and variances.

    Raises
    ------
    ImageMismatchError
        Non-integer image or wrong dimensions.
    NoiseEstimateError
        Too few usable blocks, or no positive variance-against-mean slope.
    """
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.fileio import provenance

    name = source or "image"
    img = np.asarray(image)
    if img.dtype.kind not in "u":
        raise ImageMismatchError(
            f"{name}: raw image must have an unsigned integer dtype (ADU), got {img.dtype}"
        )
    while img.ndim > 2 and img.shape[0] == 1:
        img = img[0]
    if img.ndim not in (2, 3):
        raise ImageMismatchError(f"{name}: expected (H, W) or (N, H, W), got shape {img.shape}")
    if tile < 16:
        raise ValueError(f"estimate_profile: tile must be >= 16 pixels, got {tile}")
    if bit_depth is None:
        bit_depth = img.dtype.itemsize * 8
    max_adu = (1 << int(bit_depth)) - 1
    if int(img.max()) > max_adu:
        raise ImageMismatchError(
            f"{name}: values up to {int(img.max())} exceed the {bit_depth}-bit range"
        )
    mean, var, n_blocks = tile_statistics(img, tile=tile, max_adu=max_adu)
    if mean.size < 8:
        raise NoiseEstimateError(
            f"{name}: only {mean.size} of {n_blocks} {tile}x{tile} blocks are usable "
            "(not saturated); use a larger image or a smaller tile"
        )
    if read_noise is not None and read_noise < 0:
        raise ValueError(f"estimate_profile: read_noise must be >= 0, got {read_noise}")
    candidates = []
    if quadratic:
        fq = fit_variance_line(mean, var, quadratic=True)
        if fq["quadratic"] and fq["quad"] > 3 * fq["quad_se"]:
            candidates.append(fq)
    candidates.append(fit_variance_line(mean, var, quadratic=False))
    sol: dict[str, Any] | None = None
    for fit in candidates:
        if fit["n_inliers"] < 4 or not np.all(np.isfinite([fit["slope"], fit["quad"]])):
            continue
        sol = _solve(fit, mean, read_noise, offset)
        if np.isfinite(sol["gain"]) and sol["gain"] > 0:
            break
    if sol is None or not np.isfinite(sol["gain"]) or sol["gain"] <= 0:
        raise NoiseEstimateError(
            f"{name}: the high-frequency noise variance does not increase with the "
            f"mean over {mean.size} blocks (means {mean.min():.6g}..{mean.max():.6g} ADU, "
            f"variances {var.min():.4g}..{var.max():.4g} ADU^2); cannot estimate a gain "
            "from this image"
        )
    # Physical constraints: the offset cannot lie above the darkest pixels by more
    # than their noise (every pixel's expectation is >= offset, so fewer than 0.1 %
    # of pixels fall 5 sigma below it), and the variance at the offset is the
    # read-noise variance.
    valid = img[~_saturation_mask(img, max_adu)]
    q_low = float(np.percentile(valid, 0.1)) if valid.size else float("nan")
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    o = sol["offset"]
    r2 = None if read_noise is None else float(read_noise) ** 2
    notes = []
    if offset is None and np.isfinite(q_low):
        # noise of the darkest regions (>= read noise), from the free fit
        d0 = float(np.min(mean[fit["weights"] > 0]))
        sd = float(np.sqrt(max(c * d0 * d0 + a * d0 + b, r2 or 0.0, 0.0)))
        if o > q_low + 5 * sd:
            o = float(q_low + 5 * sd)
            notes.append("offset bounded by the darkest pixels (0.1 % percentile + 5 sigma)")
    v_at_o = c * o * o + a * o + b
    if r2 is not None and (offset is not None or notes):
        fit = _fit_through(fit, mean, var, o, r2)
        notes.append("variance curve refitted through (offset, read noise²)")
    elif r2 is None and v_at_o < 0:
        fit = _fit_through(fit, mean, var, o, 0.0)
        notes.append("variance curve refitted through (offset, 0)")
    if notes:
        src = sol["offset_source"]
        sol = _solve(fit, mean, read_noise, o)
        sol["offset_source"] = src if offset is not None else notes[0]
        sol["fit_note"] = "; ".join(notes)
    c, a, b = fit["quad"], fit["slope"], fit["intercept"]
    gain, offset, rn = sol["gain"], sol["offset"], sol["read_noise"]
    if not np.isfinite(gain) or gain <= 0:
        raise NoiseEstimateError(f"{name}: no positive gain consistent with the darkest pixels")
    inl = fit["weights"] > 0
    dark = float(np.min(mean[inl]))
    mu0 = _root(c, a, b)
    span = float(np.ptp(mean[inl])) if inl.any() else 0.0
    estimate = {
        "method": METHOD,
        "reference": "Heintzmann, Relich & Nagy 2016, arXiv:1611.05654",
        "tile": int(tile),
        "k_cut_nyquist": K_CUT,
        "n_blocks": int(n_blocks),
        "n_used": int(mean.size),
        "n_inliers": fit["n_inliers"],
        "gain": float(gain),
        "fit_quad": c,
        "fit_slope": a,
        "fit_intercept": b,
        "fit_quadratic_term": fit["quadratic"],
        "fixed_pattern_rel": float(np.sqrt(max(c, 0.0))),
        "zero_variance_mean_adu": float(mu0),
        "darkest_block_mean_adu": dark,
        "darkest_pixels_adu": q_low,
        "mean_span_adu": span,
        "rel_scatter": fit["rel_scale"],
        "offset": float(offset),
        "read_noise": rn,
        "gain_se": sol["gain_se"],
        "offset_source": sol["offset_source"],
        "read_noise_source": sol["read_noise_source"],
        "fit_note": sol.get("fit_note", ""),
        "bit_depth": int(bit_depth),
    }
    h, w = img.shape[-2:]
    prof = CameraProfile.uniform(
        (h, w),
        gain=float(gain),
        offset=float(offset),
        read_noise=rn,
        bit_depth=int(bit_depth),
        camera="estimated",
        provenance=provenance(estimated=True, source=str(source), estimate=estimate),
        emva={"K": float(gain)},
    )
    prof.ptc = {"mean": mean, "var": var, "weight": fit["weights"]}
    return prof
