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
7. The darkest block may sit well above the background when every block holds signal
   (a confocal volume whose background is a thin margin); with a high gain the read
   noise of step 6 is then several times the background's. `blocks.dark_floor`
   measures the noise of the darkest pixels one by one; when the model exceeds it by
   more than ``DARK_TOLERANCE`` the read noise becomes that noise and the offset the
   value where the curve meets it (`variance_fit._apply_dark_floor`).

The result is a *uniform* profile (global scalars) whose ``provenance`` says
``estimated=True`` and records the method and the fit numbers; the per-block means
and variances are stored in ``profile.ptc`` (``mean``, ``var``, ``weight``).
The method needs images sampled at or beyond Nyquist; strongly undersampled
images put signal into the high frequencies and bias the gain upwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rawsigma.analysis.noisemodel.blocks import (
    K_CUT,
    STATIC_MAX,
    _saturation_mask,
    dark_floor,
    static_fraction,
    tile_statistics,
)
from rawsigma.analysis.noisemodel.camera_presets import load_preset
from rawsigma.analysis.noisemodel.offset_check import check_given_offset
from rawsigma.analysis.noisemodel.variance_fit import (
    NoiseEstimateError,
    _apply_dark_floor,
    _fit_curve,
    _root,
    _solve_given,
    _solve_unidentifiable,
    fit_variance_line,
)
from rawsigma.calib.profile import CameraProfile
from rawsigma.errors import ImageMismatchError
from rawsigma.fileio import provenance

__all__ = [
    "NoiseEstimateError",
    "auto_tile",
    "check_frames",
    "estimate_profile",
    "fit_variance_line",
    "tile_statistics",
]

METHOD = "heintzmann2016-hf-fourier-irls"


MIN_BLOCKS = 8


def auto_tile(shape: tuple[int, ...]) -> int:
    """Default block edge for an image or stack of this shape.

    64 pixels when both sides of a frame are at least 256, else 32 (enough blocks on
    small images), reduced to the largest edge (>= 16) that still gives `MIN_BLOCKS`
    blocks; 16 when none does (the estimate then refuses the image as too small).
    """
    h, w = shape[-2:]
    n = 1 if len(shape) == 2 else int(np.prod(shape[:-2]))
    tile = 64 if min(h, w) >= 256 else 32
    while tile > 16 and n * (h // tile) * (w // tile) < MIN_BLOCKS:
        tile -= 1
    return tile


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


def estimate_profile(
    image: np.ndarray,
    read_noise: float | None = None,
    *,
    tile: int | None = None,
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
    tile : int, optional
        Block edge in pixels; default `auto_tile` (64, or 32 for images under 256
        pixels a side, smaller when needed for 8 blocks).
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
    rn_from_preset = camera is not None and read_noise is None and offset is None
    given_words = _given_words(camera, offset, gain)
    if camera is not None:
        preset = _camera_preset(camera, img, name, bit_depth)
        bit_depth = preset.bit_depth
        offset = preset.offset if offset is None else offset
        read_noise = preset.read_noise if read_noise is None else read_noise
        gain = preset.gain if gain is None else gain
    bit_depth, max_adu = _bit_range(img, name, bit_depth)
    if tile is None:
        tile = auto_tile(img.shape)
    _check_inputs(img, name, tile, max_adu, read_noise, offset, gain)
    mean, var, n_blocks = tile_statistics(img, tile=int(tile), max_adu=max_adu)
    fit = _fit_blocks(img, (mean, var, n_blocks), (int(tile), max_adu), quadratic, gain, name)
    static, mu0 = fit["static_fraction"], fit["zero_free"]
    valid = img[~_saturation_mask(img, max_adu)]
    x_low = float(np.percentile(valid, 0.1)) if valid.size else float(img.min())
    identifiable = offset is not None or read_noise is not None
    assumed: dict[str, str] = {}
    floor_rec: dict[str, Any] = {"applied": False}
    if identifiable:
        top = float(np.median(valid)) if valid.size else float(max_adu)
        floor = dark_floor(img, max_adu) if offset is not None else None
        rn_floor, floor_rec = _floor_at_given_offset(fit, floor, offset, read_noise)
        given = (read_noise if rn_floor is None else rn_floor, offset, gain)
        sol = _given_solution(fit, mean, var, given, top, name, preset if rn_from_preset else None)
        if rn_floor is not None:
            sol["read_noise_source"] = "the noise of the darkest pixels (at the given offset)"
    else:
        fit, sol = _solve_unidentifiable(fit, mean, var, x_low, max_adu, gain)
        floor = dark_floor(img, max_adu)
        fit, sol, floor_rec = _apply_dark_floor(fit, sol, mean, var, floor, gain)
        assumed = {"offset": sol["offset_source"], "read_noise": sol["read_noise_source"]}
    gain_v, offset_v, rn = sol["gain"], sol["offset"], sol["read_noise"]
    if not np.isfinite(gain_v) or gain_v <= 0:
        raise NoiseEstimateError(f"{name}: no positive gain consistent with the darkest pixels")
    offset_rec = _offset_record(offset, given_words, valid, floor, (mean, var, static), fit, sol)
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
        "dark_floor": floor_rec,
        "offset_check": offset_rec,
    }
    if not identifiable:
        estimate["warning"] += _gain_warning(gain, estimate)
    _check_no_silence(valid, float(offset_v), rn, name, (floor, mu0, gain))
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
def _fit_blocks(
    img: np.ndarray,
    blocks: tuple[np.ndarray, np.ndarray, int],
    tile_max: tuple[int, int],
    quadratic: bool,
    gain: float | None,
    name: str,
) -> dict[str, Any]:
    """`_fit_curve` of enough usable blocks, checked by `_check_static`.

    The fit gains ``static_fraction`` and ``zero_free`` (its zero-variance point
    before any refit through a given or assumed point).
    """
    mean, var, n_blocks = blocks
    tile, max_adu = tile_max
    if mean.size < MIN_BLOCKS:
        raise NoiseEstimateError(
            f"{name}: only {mean.size} of {n_blocks} {tile}x{tile} blocks are usable "
            "(not saturated); use a larger image or a smaller tile"
        )
    static = _check_static(img, tile, max_adu, gain, name)
    fit = _fit_curve(mean, var, quadratic, gain, name)
    fit["zero_free"] = float(_root(fit["quad"], fit["slope"], fit["intercept"]))
    fit["static_fraction"] = static
    return fit


def check_frames(frames: np.ndarray, tile: int, max_adu: int, name: str) -> float | None:
    """The check `estimate_profile` makes on a stack, for an estimate from one frame of it.

    `blocks.static_fraction` of the file's ``(N, H, W)`` frames at the estimate's
    ``tile``; None for fewer than 2 frames.

    Raises
    ------
    NoiseEstimateError
        Above `blocks.STATIC_MAX`: the frames' high-frequency variance repeats between
        frames (fixed pattern), which one frame cannot show.
    """
    return _check_static(np.asarray(frames), int(tile), int(max_adu), None, name)


def _check_static(
    img: np.ndarray, tile: int, max_adu: int, gain: float | None, name: str
) -> float | None:
    """`blocks.static_fraction` of a stack; refuse a fitted gain when it exceeds `STATIC_MAX`.

    Projections of a rotating sample (OPT) from a camera with a per-pixel gain spread:
    every block is bright, and the fixed pattern, the same in every frame, dominates
    the high frequencies (simulated ORCA-Flash4.0: 45-65 %, gain 3x too high). A given
    gain is not fitted, so the check only records the fraction then.
    """
    res = static_fraction(img, tile, max_adu)
    if res is None:
        return None
    rho = res[0]
    if gain is None and rho > STATIC_MAX:
        raise NoiseEstimateError(
            f"{name}: the image's high-frequency variance is not camera noise: {rho:.0%} of "
            f"it repeats between frames {img.shape[0] // 2} apart (the camera's fixed "
            f"pattern, or structure common to the frames), so a gain fitted to it would be "
            f"{1 / (1 - rho):.1f}x or more too high; use a profile measured on the camera "
            "(--profile), or its data-sheet gain (--gain or --camera)"
        )
    return rho


def _offset_record(
    offset: float | None,
    words: str,
    valid: np.ndarray,
    floor: tuple[float, float, int] | None,
    blocks: tuple[np.ndarray, np.ndarray, float | None],
    fit: dict[str, Any],
    sol: dict[str, Any],
) -> dict[str, Any]:
    """`check_given_offset` of the solution when an offset was given, else ``{}``.

    ``blocks``: means, variances and `blocks.static_fraction` (None for one frame).
    """
    if offset is None:
        return {}
    model = (float(sol["gain"]), float(sol["offset"]), float(sol["read_noise"]), fit["quad"])
    mean, var, static = blocks
    return check_given_offset(valid, floor, (mean, var), model, words, static=static)


def _given_words(camera: str | None, offset: float | None, gain: float | None) -> str:
    """What the user gave, for `check_given_offset`'s warning: ``"--offset"`` etc."""
    if camera is not None:
        return "the camera preset's" if offset is None else "the given"
    return "the given" if gain is None else "the given (with --gain)"


def _floor_at_given_offset(
    fit: dict[str, Any],
    floor: tuple[float, float, int] | None,
    offset: float | None,
    read_noise: float | None,
) -> tuple[float | None, dict[str, Any]]:
    """Read noise from the dark floor when the curve has no variance at a given offset.

    With ``--offset`` only, the read noise is the fitted variance at the offset; a
    curve that reaches zero above it (BBBC050: 101.3 ADU against an offset of 100)
    would give read noise 0, refused for the pixels below the offset. When the
    darkest pixels (`blocks.dark_floor`) sit within 3σ of the given offset, their
    measured noise is the read noise instead.
    """
    rec: dict[str, Any] = {"applied": False}
    if offset is None or read_noise is not None:
        return None, rec
    o = float(offset)
    if fit["quad"] * o * o + fit["slope"] * o + fit["intercept"] > 0:
        return None, rec
    if floor is None or not floor[1] > 0 or abs(floor[0] - o) > 3 * floor[1]:
        return None, rec
    level, sigma, n = floor
    rec.update(applied=True, level_adu=level, sigma_adu=sigma, n_pixels=n)
    return sigma, rec


def _given_solution(
    fit: dict[str, Any],
    mean: np.ndarray,
    var: np.ndarray,
    given: tuple[float | None, float | None, float | None],
    top: float,
    name: str,
    preset: Any,
) -> dict[str, Any]:
    """`_solve_given` with (read noise, offset, gain); ``preset`` when its read noise was used.

    A preset whose read noise does not fit the image is named in the error (the user
    gave --camera, not --read-noise).
    """
    read_noise, offset, gain = given
    try:
        return _solve_given(fit, mean, var, read_noise, offset, gain, top, name)
    except NoiseEstimateError as exc:
        if preset is None:
            raise
        msg = str(exc).replace(
            "the given read noise", f"the read noise of camera preset {preset.name},"
        )
        msg = msg.replace("; give --offset as well, or omit --read-noise", "")
        raise NoiseEstimateError(
            f"{msg}; choose another preset (--camera list), give --offset, or omit --camera"
        ) from None


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
        "static_fraction": fit.get("static_fraction"),
    }


def _not_identifiable_warning(offset: float, read_noise: float, assumed: dict[str, str]) -> str:
    return (
        "offset and read noise are not identifiable from the image alone: offset "
        f"{offset:.6g} ADU ({assumed['offset']}) and read noise {read_noise:.4g} ADU "
        f"({assumed['read_noise']}) are assumptions; the variance model follows the "
        "measured noise over the image's values. Give --offset/--read-noise or --camera "
        "for physical values"
    )


#: A fitted gain whose SE exceeds this fraction of it is reported as not identified
#: (real images: 0.6-2.3 %; a flat field: 60-800 %).
GAIN_REL_SE_WARN = 0.3


def _gain_warning(given: float | None, est: dict[str, Any]) -> str:
    """The sentence added to the warning when the fitted gain is not identified either."""
    gain, gain_se = est["gain"], est["gain_se"]
    if given is not None or not gain_se > GAIN_REL_SE_WARN * gain:
        return ""
    return (
        f". The gain is not identified either: {gain:.3g} ± {gain_se:.2g} ADU/e- (the "
        f"blocks' means span {est['mean_span_adu']:.3g} ADU, e.g. a flat field: the noise "
        "of other values is unknown); give --gain or --camera, or calibrate the camera "
        "(rawsigma calibrate)"
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


def _check_no_silence(
    valid: np.ndarray, offset: float, read_noise: float, name: str, why: tuple = (None, 0, 1)
) -> None:
    """Refuse a model that gives pixels of the image zero variance.

    That is read noise 0 with pixels below the offset: their replicas would be
    noise-free and the noise codec could not bound their error. ``why``: the dark
    floor, the free fit's zero-variance point and the given gain. When that point lies
    over 3σ above the darkest pixels, which are measurably noisy, the blocks' curve is
    too steep (high-frequency signal or fixed pattern in the blocks): the message says
    so instead of blaming the offset.
    """
    below = int(np.count_nonzero(valid < offset)) if valid.size else 0
    if read_noise > 0 or not below:
        return
    floor, mu0, gain = why
    if gain is None and floor is not None and floor[1] > 0 and mu0 > floor[0] + 3 * floor[1]:
        raise NoiseEstimateError(
            f"{name}: the blocks' noise variance falls to zero at {mu0:.6g} ADU, above "
            f"the darkest pixels ({floor[0]:.6g} ADU), which are noisy ({floor[1]:.3g} ADU "
            "rms): the blocks' high frequencies hold more than camera noise (signal of an "
            "undersampled image, or fixed pattern), so a fitted gain would be too high; "
            "use a profile measured on the camera (--profile), or its data-sheet gain "
            "(--gain or --camera)"
        )
    raise NoiseEstimateError(
        f"{name}: {below} pixels ({100 * below / valid.size:.2g} %) lie below the offset "
        f"{offset:g} ADU and the read noise came out 0, so the model gives them no "
        "noise; give the read noise (--read-noise, e.g. from the data sheet), a lower "
        "--offset, or --camera"
    )
