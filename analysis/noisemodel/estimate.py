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
   ``variance(offset) = r²``; a known offset gives ``r² = variance(offset)``; a known
   gain replaces the fitted slope; a camera preset (`camera_presets`) gives all three.
6. With neither offset nor read noise one image's variance curve cannot separate them
   (``identifiable = False``): `_honest_split` keeps the measured temporal line over the
   image's values and puts the offset at the highest value consistent with the darkest
   pixels (0.1 % percentile, + 3σ when the darkest block sits on that floor: a dark
   region), the darkest usable block and a prior that camera offsets are below 5 % of
   the ADC range; the read noise is the line's value there (an upper bound), or 0 at an
   offset below the image's values when the line would reach zero inside them
   (undersampled images, whose high-frequency signal steepens the slope). The
   profile's variance is therefore positive over the whole range of the image, and
   ``provenance["estimate"]`` records ``identifiable``, ``assumed`` and ``warning``.

The result is a *uniform* profile (global scalars) whose ``provenance`` says
``estimated=True`` and records the method and the fit numbers; the per-block means
and variances are stored in ``profile.ptc`` (``mean``, ``var``, ``weight``).
The method needs images sampled at or beyond Nyquist; strongly undersampled
images put signal into the high frequencies and bias the gain upwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.noisemodel.blocks import K_CUT, _saturation_mask, tile_statistics
from rawsigma.analysis.noisemodel.camera_presets import load_preset
from rawsigma.calib.profile import CameraProfile
from rawsigma.errors import ImageMismatchError, RawsigmaError
from rawsigma.fileio import provenance

__all__ = ["NoiseEstimateError", "estimate_profile", "fit_variance_line", "tile_statistics"]

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

METHOD = "heintzmann2016-hf-fourier-irls"


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
MIN_BLOCKS = 8


def _check_inputs(
    img: np.ndarray,
    name: str,
    tile: int,
    max_adu: int,
    read_noise: float | None,
    offset: float | None,
    gain: float | None,
) -> None:
    """Refuse unusable images and parameters with one message giving the valid range."""
    h, w = img.shape[-2:]
    n = 1 if img.ndim == 2 else img.shape[0]
    # largest tile that still gives MIN_BLOCKS blocks
    t_max = max((t for t in range(16, min(h, w) + 1) if n * (h // t) * (w // t) >= MIN_BLOCKS),
                default=0)  # fmt: skip
    if t_max == 0:
        raise NoiseEstimateError(
            f"{name}: image {h}x{w} is too small for a noise estimate: it needs at least "
            f"{MIN_BLOCKS} blocks of at least 16x16 pixels (e.g. 32x64 pixels)"
        )
    if not 16 <= int(tile) <= t_max or int(tile) != tile:
        raise NoiseEstimateError(
            f"{name}: tile must be an integer in [16, {t_max}] pixels for this {h}x{w} image "
            f"(at least {MIN_BLOCKS} blocks), got {tile}"
        )
    lo, hi = int(img.min()), int(img.max())
    if lo == hi:
        raise NoiseEstimateError(
            f"{name}: every pixel has the value {lo} ADU: no noise to estimate"
        )
    if lo >= max_adu:
        raise NoiseEstimateError(f"{name}: every pixel is saturated ({max_adu} ADU)")
    if read_noise is not None and not (np.isfinite(read_noise) and 0 <= read_noise <= max_adu):
        raise NoiseEstimateError(
            f"{name}: read noise must be in [0, {max_adu}] ADU rms, got {read_noise}"
        )
    if gain is not None and not (np.isfinite(gain) and 0 < gain <= max_adu):
        raise NoiseEstimateError(f"{name}: gain must be in (0, {max_adu}] ADU/e-, got {gain}")
    if offset is not None:
        top = min(float(np.median(img)), float(max_adu))
        if not (np.isfinite(offset) and 0 <= offset <= top):
            raise NoiseEstimateError(
                f"{name}: offset must be in [0, {top:.6g}] ADU (at most the image's median: "
                f"an offset above most pixels is not the camera's), got {offset}"
            )


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
    where = min(cands, key=cands.get)
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


def estimate_profile(
    image: np.ndarray,
    read_noise: float | None = None,
    *,
    tile: int = 64,
    bit_depth: int | None = None,
    offset: float | None = None,
    gain: float | None = None,
    camera: str | None = None,
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
        Known read noise, ADU rms. Without it (and without ``offset``) offset and read
        noise are not identifiable from one image: see `_honest_split`.
    tile : int
        Block edge in pixels (default 64; use 32 for small images).
    bit_depth : int, optional
        ADC bit depth; default the preset's, else the dtype's (16 for uint16). Sets
        ``max_adu`` for saturation and for the profile.
    offset : float, optional
        Known offset (ADU), e.g. from the camera's data sheet; then the read noise
        (if not given) is the fitted variance at the offset.
    gain : float, optional
        Known gain (ADU/e⁻, data sheet); replaces the fitted slope.
    camera : str, optional
        Name of a camera preset (`rawsigma.analysis.noisemodel.camera_presets`): its offset, read
        noise and gain unless given explicitly. Refused when its bit depth does not fit
        the image.
    quadratic : bool
        Allow a ``mean²`` term for fixed-pattern noise (see
        :func:`fit_variance_line`); it is kept only if significant (> 2 SE: a missed
        1 % PRNU biases the gain by up to 1.7x on bright images, a spurious term only
        widens the gain's error) and it gives a positive gain, otherwise the straight
        line is used.
    source : str
        Name of the image (file) for provenance and error messages.

    Returns
    -------
    CameraProfile
        Uniform maps of gain (ADU/e⁻), offset (ADU) and read noise (ADU rms);
        ``provenance["estimated"] = True``; ``provenance["estimate"]`` holds the method,
        the fit numbers, ``identifiable`` (False when offset and read noise could not be
        separated), ``assumed`` (what was assumed instead, one sentence per quantity),
        ``warning`` (the sentence a report should show, "" if identifiable) and
        ``variance_check`` (model variance at the image's 1st/50th percentiles);
        ``ptc`` the block means and variances.

    Raises
    ------
    ImageMismatchError
        Non-integer image, wrong dimensions, or a preset of another bit depth.
    NoiseEstimateError
        Image too small, constant or saturated, parameters out of range, too few
        usable blocks, or no positive variance-against-mean slope.
    """
    name = source or "image"
    img = _raw_array(image, name)
    preset = None
    if camera is not None:
        preset = _camera_preset(camera, img, name, bit_depth)
        bit_depth = preset.bit_depth
        offset = preset.offset if offset is None else offset
        read_noise = preset.read_noise if read_noise is None else read_noise
        gain = preset.gain if gain is None else gain
    bit_depth, max_adu = _bit_range(img, name, bit_depth)
    _check_inputs(img, name, tile, max_adu, read_noise, offset, gain)
    mean, var, n_blocks = tile_statistics(img, tile=int(tile), max_adu=max_adu)
    if mean.size < MIN_BLOCKS:
        raise NoiseEstimateError(
            f"{name}: only {mean.size} of {n_blocks} {tile}x{tile} blocks are usable "
            "(not saturated); use a larger image or a smaller tile"
        )
    fit = _fit_curve(mean, var, quadratic, gain, name)
    valid = img[~_saturation_mask(img, max_adu)]
    x_low = float(np.percentile(valid, 0.1)) if valid.size else float(img.min())
    identifiable = offset is not None or read_noise is not None
    assumed: dict[str, str] = {}
    if identifiable:
        top = float(np.median(valid)) if valid.size else float(max_adu)
        sol = _solve_given(fit, mean, var, read_noise, offset, gain, top, name)
    else:
        fit, sol = _solve_unidentifiable(fit, mean, var, x_low, max_adu, gain)
        assumed = {"offset": sol["offset_source"], "read_noise": sol["read_noise_source"]}
    gain_v, offset_v, rn = sol["gain"], sol["offset"], sol["read_noise"]
    if not np.isfinite(gain_v) or gain_v <= 0:
        raise NoiseEstimateError(f"{name}: no positive gain consistent with the darkest pixels")
    pcts = np.percentile(valid, [1, 50]) if valid.size else np.array([x_low, x_low])
    estimate = {
        "method": METHOD,
        "reference": "Heintzmann, Relich & Nagy 2016, arXiv:1611.05654",
        "tile": int(tile),
        "k_cut_nyquist": K_CUT,
        "n_blocks": int(n_blocks),
        "n_used": int(mean.size),
        **_fit_record(fit, sol, mean, x_low),
        "gain_source": "given" if gain is not None else "fitted slope",
        "offset_source": sol["offset_source"],
        "read_noise_source": sol["read_noise_source"],
        "fit_note": sol.get("fit_note", ""),
        "bit_depth": int(bit_depth),
        "identifiable": bool(identifiable),
        "assumed": assumed,
        "warning": "" if identifiable else _not_identifiable_warning(offset_v, rn, assumed),
        "variance_check": _variance_check(pcts, gain_v, offset_v, fit["quad"], rn),
        "camera_preset": preset.as_dict() if preset is not None else None,
    }
    _check_no_silence(valid, float(offset_v), rn, name)
    h, w = img.shape[-2:]
    prof = CameraProfile.uniform(
        (h, w),
        gain=float(gain_v),
        offset=float(offset_v),
        read_noise=rn,
        bit_depth=int(bit_depth),
        camera=preset.camera if preset is not None else "estimated",
        provenance=provenance(estimated=True, source=str(source), estimate=estimate),
        emva={"K": float(gain_v)},
    )
    prof.ptc = {"mean": mean, "var": var, "weight": fit["weights"]}
    return prof


# ----------------------------------------------------------------------------- steps
def _raw_array(image: np.ndarray, name: str) -> np.ndarray:
    """The image as (H, W) or (N, H, W) unsigned integers, or a clear error."""
    img = np.asarray(image)
    if img.dtype.kind not in "u":
        raise ImageMismatchError(
            f"{name}: raw image must have an unsigned integer dtype (ADU), got {img.dtype}"
        )
    while img.ndim > 2 and img.shape[0] == 1:
        img = img[0]
    if img.ndim not in (2, 3):
        raise ImageMismatchError(f"{name}: expected (H, W) or (N, H, W), got shape {img.shape}")
    return img


def _camera_preset(camera: str, img: np.ndarray, name: str, bit_depth: int | None) -> Any:
    """The named camera preset, refused when its bit depth does not fit the image."""
    preset = load_preset(camera)
    if bit_depth is not None and int(bit_depth) != preset.bit_depth:
        raise ImageMismatchError(
            f"{name}: camera preset {preset.name} is {preset.bit_depth}-bit, "
            f"--bit-depth says {bit_depth}"
        )
    if int(img.max()) > (1 << preset.bit_depth) - 1 or img.dtype.itemsize * 8 < min(
        preset.bit_depth, 16
    ):
        raise ImageMismatchError(
            f"{name}: camera preset {preset.name} is {preset.bit_depth}-bit but the image "
            f"is {img.dtype} with values up to {int(img.max())}: not this camera mode"
        )
    return preset


def _bit_range(img: np.ndarray, name: str, bit_depth: int | None) -> tuple[int, int]:
    """Bit depth (default: the dtype's) and ADC maximum; the image must fit in it."""
    if bit_depth is None:
        bit_depth = img.dtype.itemsize * 8
    if not 8 <= int(bit_depth) <= img.dtype.itemsize * 8:
        raise NoiseEstimateError(
            f"{name}: bit depth must be in [8, {img.dtype.itemsize * 8}] for {img.dtype}, "
            f"got {bit_depth}"
        )
    max_adu = (1 << int(bit_depth)) - 1
    if int(img.max()) > max_adu:
        raise ImageMismatchError(
            f"{name}: values up to {int(img.max())} exceed the {bit_depth}-bit range"
        )
    return bit_depth, max_adu


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


def _fit_record(
    fit: dict[str, Any], sol: dict[str, Any], mean: np.ndarray, x_low: float
) -> dict[str, Any]:
    """The fit's numbers for the provenance, in its keys and order."""
    c = fit["quad"]
    inl = fit["weights"] > 0
    return {
        "n_inliers": fit["n_inliers"],
        "gain": float(sol["gain"]),
        "fit_quad": c,
        "fit_slope": fit["slope"],
        "fit_intercept": fit["intercept"],
        "fit_quadratic_term": fit["quadratic"],
        "fixed_pattern_rel": float(np.sqrt(max(c, 0.0))),
        "zero_variance_mean_adu": float(_root(c, fit["slope"], fit["intercept"])),
        "darkest_block_mean_adu": float(np.min(mean[inl])),
        "darkest_pixels_adu": x_low,
        "mean_span_adu": float(np.ptp(mean[inl])) if inl.any() else 0.0,
        "rel_scatter": fit["rel_scale"],
        "offset": float(sol["offset"]),
        "read_noise": sol["read_noise"],
        "gain_se": sol["gain_se"],
    }


def _not_identifiable_warning(offset: float, read_noise: float, assumed: dict[str, str]) -> str:
    return (
        "offset and read noise are not identifiable from the image alone: offset "
        f"{offset:.6g} ADU ({assumed['offset']}) and read noise {read_noise:.4g} ADU "
        f"({assumed['read_noise']}) are assumptions; the variance model follows the "
        "measured noise over the image's values. Give --offset/--read-noise or --camera "
        "for physical values"
    )


def _variance_check(
    pcts: np.ndarray, gain: float, offset: float, quad: float, read_noise: float
) -> dict[str, float]:
    """Model variance at the image's 1st and 50th percentiles."""
    model = [gain * max(p - offset, 0.0) + quad * max(p - offset, 0.0) ** 2
             + read_noise * read_noise for p in pcts]  # fmt: skip
    return {
        "p1_adu": float(pcts[0]),
        "p50_adu": float(pcts[1]),
        "model_var_p1": float(model[0]),
        "model_var_p50": float(model[1]),
    }


def _fit_curve(
    mean: np.ndarray, var: np.ndarray, quadratic: bool, gain: float | None, name: str
) -> dict[str, Any]:
    """The variance curve of the blocks (module notes 3); with a known ``gain`` the
    straight line of that slope (robust weights from the free fit)."""
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


def _check_no_silence(valid: np.ndarray, offset: float, read_noise: float, name: str) -> None:
    """Refuse a model that gives pixels of the image zero variance (read noise 0 with
    pixels below the offset): their replicas would be noise-free and the noise codec
    could not bound their error."""
    below = int(np.count_nonzero(valid < offset)) if valid.size else 0
    if read_noise <= 0 and below:
        raise NoiseEstimateError(
            f"{name}: {below} pixels ({100 * below / valid.size:.2g} %) lie below the offset "
            f"{offset:g} ADU and the read noise came out 0, so the model gives them no "
            "noise; give the read noise (--read-noise, e.g. from the data sheet), a lower "
            "--offset, or --camera"
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
