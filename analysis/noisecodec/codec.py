"""`NoiseCodec`: the noise-calibrated codec bound to a camera profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rawsigma.errors import ImageMismatchError

from .stream import EFFORTS, CodecMaps, StreamParams, decode_frames, encode_frames, read_header
from .transform import KNEE_FRACTION

# Largest quantisation step (units of σ) for which decoding stays unbiased: the
# reconstruction relies on the noise dithering the quantiser (Sheppard's correction),
# which holds while the step is not much larger than σ. Measured with
# benchmarks/bench_step_bias.py (benchmarks/RESULTS.md, "Issue 9 — honest noise model
# and codec bounds"): max |bias| over the signal range 0.027 σ (reference frame) and
# 0.043 σ (dim frame) at S = 2.5, 0.05–0.06 σ at 2.75, 0.1 σ at 3, 0.25 σ at 4, 6 σ at 16.
MAX_STEP = 2.5
MIN_STEP = 0.01  # finer steps only multiply the codes (pyramid falls back beyond 4095)


def check_step(step: float, what: str = "step") -> float:
    """``step`` as float if it is a usable quantisation step, else ValueError with the range."""
    try:
        s = float(step)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be a number in [{MIN_STEP:g}, {MAX_STEP:g}], got {step!r}"
        ) from None
    if not np.isfinite(s) or not MIN_STEP <= s <= MAX_STEP:
        raise ValueError(
            f"{what} must be in [{MIN_STEP:g}, {MAX_STEP:g}] (units of the noise sigma; "
            f"beyond {MAX_STEP:g} the decoding is biased), got {step!r}"
        )
    return s


def check_profile(profile: CameraProfile) -> None:
    """Refuse a profile whose global gain or read noise would make the codec's error
    unbounded (gain <= 0 or not finite, read noise < 0 or not finite)."""
    from rawsigma.errors import ProfileError

    g, r = float(profile.gain_global), float(profile.read_noise_global)
    if not (np.isfinite(g) and g > 0):
        raise ProfileError(
            f"noise codec: profile {profile.profile_id} has gain {g:g} ADU/e-; the codec "
            "needs a finite gain > 0 (its error is in units of the noise the gain predicts)"
        )
    if not (np.isfinite(r) and r >= 0):
        raise ProfileError(
            f"noise codec: profile {profile.profile_id} has read noise {r:g} ADU; the codec "
            "needs a finite read noise >= 0"
        )
    if not np.isfinite(float(profile.offset_global)):
        raise ProfileError(f"noise codec: profile {profile.profile_id} has no finite offset")


def fine_step_warning(
    profile: CameraProfile, step: float, image: np.ndarray | None = None
) -> str | None:
    """One line saying that ``step`` is too fine to pay, or None.

    A step whose size at the noise floor, ``S·σ_r`` with σ_r the read noise (ADU) of
    each good pixel, is below 1 ADU on most (> 50 %) pixels quantises finer than the
    camera's integer ADU: the dark pixels are kept almost exactly, at the cost of more
    codes, and the ratio can fall below a lossless codec's (BBBC039: 1.0:1 at S = 0.01
    against zstd-3's 2.15:1; benchmarks/RESULTS.md). The advice is a lossless codec or
    the smallest step with ``S·σ_r >= 1`` ADU on half of the pixels, ``1/median(σ_r)``.

    Parameters
    ----------
    profile : CameraProfile
        The codec's profile.
    step : float
        The step S, in units of the noise σ.
    image : ndarray, optional
        The frames ``(H, W)`` or ``(..., H, W)`` to be coded. With them σ is the
        profile's noise at each pixel's value, ``√(g·(x − o)₊ + σ_r²)``, not the read
        noise alone: an image far above the offset (Usiigaci, whose estimated profile
        has read noise 0) is not at the noise floor, and codes at 7.5:1 where zstd
        reaches 1.1:1.

    Returns
    -------
    str or None
        The warning, or None when the step pays.
    """
    rn = np.asarray(profile.read_noise, np.float64)
    good = np.asarray(profile.good)
    where = "the noise floor"
    # frames of another shape than the profile: the caller's shape check refuses them
    if image is not None and np.shape(image)[-2:] == np.shape(profile.offset):
        sig = _image_sigma(profile, image)
        where = "the image's noise"
    else:
        sig = rn[good] if good.any() else rn.ravel()
    sig = sig[np.isfinite(sig)]
    frac = float(np.mean(step * sig < 1.0)) if sig.size else 0.0
    if frac <= 0.5:
        return None
    med = float(np.median(sig))
    s_min = np.ceil(100.0 / med) / 100.0 if med > 0 else np.inf
    advice = (
        f"use a lossless codec (e.g. zstd) or a step >= {s_min:g}"
        if s_min <= MAX_STEP
        else f"use a lossless codec (e.g. zstd): no step up to {MAX_STEP:g} reaches 1 ADU"
    )
    return (
        f"noise codec step {step:g} is {step * med:.2g} ADU at {where} (below 1 ADU "
        f"on {frac:.0%} of the pixels): finer than the camera's ADU, it can compress worse "
        f"than a lossless codec; {advice}"
    )


def _image_sigma(profile: CameraProfile, image: np.ndarray, n: int = 1 << 20) -> np.ndarray:
    """The profile's noise (ADU) at the values of about ``n`` good pixels of ``image``
    (evenly spaced whole frames, then rows: memory bounded for any frame size)."""
    frames = np.asarray(image).reshape(-1, *np.shape(image)[-2:])
    frames = frames[:: max(1, -(-frames.size // n))]  # whole frames, about n pixels
    rows = slice(None, None, max(1, -(-frames.size // n)))  # a frame alone above n: rows
    x = frames[:, rows].astype(np.float64)
    o = np.asarray(profile.offset, np.float64)[rows]
    g = np.asarray(profile.gain, np.float64)[rows]
    rn = np.asarray(profile.read_noise, np.float64)[rows]
    with np.errstate(invalid="ignore"):  # flagged pixels' gains may be < 0: dropped below
        var = g * np.maximum(x - o, 0.0) + rn * rn
        good = np.broadcast_to(np.asarray(profile.good)[rows], var.shape)
        return np.sqrt(var[good] if good.any() else var.ravel())


if TYPE_CHECKING:
    from collections.abc import Iterator

    from rawsigma.calib.profile import CameraProfile

__all__ = ["NoiseCodec", "codec_maps", "fine_step_warning"]


def codec_maps(
    profile: CameraProfile,
    maps: str = "pixel",
    *,
    trust_defects: bool = False,
    gain_global: float | None = None,
) -> CodecMaps:
    """The offset/gain maps the codec uses for ``profile``.

    Parameters
    ----------
    profile : CameraProfile
    maps : {"pixel", "global"}
        Per-pixel gain and offset or the global gain and offset only, with a regenerated
        per-pixel offset jitter that keeps decoding unbiased (nothing per pixel to carry;
        a few % lower ratio on the reference frame). With per-pixel maps, pixels flagged
        in the profile's ``defects`` (their calibration is not trusted: a dead pixel's
        gain can come out 2–4× the camera's) and pixels with a non-finite or
        non-positive gain take the global gain and offset (medians over good pixels), so
        they are quantised in the global noise model and keep its error bound.
    trust_defects : bool
        Keep the defect pixels' own gain and offset (the maps written before defects
        were replaced, session 7): only to decode old streams that refer to them.
    gain_global : float, optional
        The global gain in place of ``profile.gain_global``: only to decode old streams
        (before session 12 it was the median of the good pixels' gains, not EMVA K).
    """
    gg = profile.gain_global if gain_global is None else float(gain_global)
    if maps == "global":
        return CodecMaps.uniform(profile.shape, profile.offset_global, gg)
    if maps != "pixel":
        raise ValueError(f"maps must be 'pixel' or 'global', got {maps!r}")
    g = np.asarray(profile.gain, np.float64)
    o = np.asarray(profile.offset, np.float64)
    g = np.where(~np.isfinite(g) | (g <= 0), gg, g)
    o = np.where(np.isfinite(o), o, profile.offset_global)
    if trust_defects:
        return CodecMaps.from_maps(o, g)
    # quantised around the medians of the maps as they were before defects took the
    # global values, so that the good pixels' maps are the same as before, bit for bit
    base = (float(np.median(o)), float(np.median(g)))
    defect = ~profile.good
    g = np.where(defect, gg, g)
    o = np.where(defect, profile.offset_global, o)
    return CodecMaps.from_maps(o, g, base=base)


def transform_sigma_e(profile: CameraProfile, step: float, max_error: float | None = None) -> float:
    """Global read noise (e⁻) put into the transform.

    The decoded frame is integer ADU, so rounding adds 1/12 ADU² to the S²σ²/12 of the
    quantiser, ``1/(S²σ_r²)`` of it at the read-noise floor (σ_r in ADU): 6 % at S = 2
    with σ_r = 2 ADU, 25 % at S = 1. Where that share exceeds 10 % (and there is no hard
    bound, whose σ must stay the true one) the transform uses ``σ_e² − 1/(S²g²)``: bins
    are narrowed just enough that quantisation plus rounding add S²σ²/12 in total, for a
    few % of ratio.
    """
    g = float(profile.gain_global)
    s2 = (float(profile.read_noise_global) / g) ** 2
    share = 1.0 / (step * step * s2 * g * g) if s2 > 0 else np.inf
    if max_error is None and share > 0.10:
        s2 = max(s2 - 1.0 / (step * step * g * g), 0.0)
    return float(np.sqrt(s2))


class NoiseCodec:
    """Noise-calibrated lossy codec for raw uint16 camera frames.

    Variance-stabilising transform with the profile's per-pixel gain and offset and its
    global read noise, quantisation with step ``step``·σ (``step=2`` is the
    Jetraw-equivalent point, ≈ 1.25 dB SNR loss; ``step=1`` ≈ 0.35 dB), optional
    subtractive dither or hard error bound, class-adaptive least-squares prediction of
    the codes and context-modelled rANS coding, unbiased decoding.

    Parameters
    ----------
    profile : CameraProfile
        Calibration of the camera that took the frames (shape must match the frames).
    step : float
        Quantisation step S in units of the noise σ (> 0).
    dither : bool
        Subtractive dither (seeded by ``seed``, reproducible): error independent of the
        signal, ~8 % lower ratio.
    max_error : float or None
        Hard bound k: every decoded pixel within k·σ of the raw value, σ from the
        codec's noise model at the raw value (bins designed in ADU).
    maps : {"pixel", "global"}
        Per-pixel gain/offset maps in the transform, or global values only.
    embed_maps : bool
        Put the (quantised) per-pixel maps into every payload so it decodes without the
        profile. Off by default: the payload then records the profile id and the maps'
        digest, and `decode` uses this codec's profile (containers store maps once).
    seed : int
        Dither seed.
    tile_rows : int
        Rows per independently coded tile (tiles run in parallel threads).
    threads : int or None
        Worker threads (None: all cores).
    effort : {"pyramid", "best", "fast"}
        Back end. ``"pyramid"`` (default, stream format 3): hierarchical interpolative
        prediction (each pixel predicted from both sides by the coarser levels) and four
        interleaved rANS states, the highest ratio and the fastest (10.15:1 at S = 2 on
        the reference frame, encode ≈ 1.2× and decode ≈ 0.5× the speed of zstd-3, see
        benchmarks/RESULTS.md). The causal back ends of format 2, kept for comparison
        and for their files: ``"best"``: 64-class least-squares prediction over 18
        causal neighbours (10.0:1, decode ≈ 0.14× zstd-3); ``"fast"``: one 6-tap
        predictor (8.5:1). Codes beyond `pyramid.MAX_CODE` (a step far below the
        noise) fall back to ``"best"``.
    """

    name = "noise"

    def __init__(
        self,
        profile: CameraProfile,
        step: float = 2.0,
        dither: bool = False,
        max_error: float | None = None,
        *,
        maps: str = "pixel",
        embed_maps: bool = False,
        seed: int = 0,
        tile_rows: int = 256,
        threads: int | None = None,
        effort: str = "pyramid",
    ) -> None:
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        step = check_step(step)
        check_profile(profile)
        if max_error is not None and not max_error > 0:
            raise ValueError(f"max_error must be > 0 (units of sigma), got {max_error}")
        if dither and max_error is not None:
            raise ValueError("a hard error bound and subtractive dither cannot be combined")
        self.profile = profile
        self.step = float(step)
        self.dither = bool(dither)
        self.max_error = None if max_error is None else float(max_error)
        self.maps_mode = maps
        self.embed_maps = bool(embed_maps)
        self.maps = codec_maps(profile, maps)
        self.params = StreamParams(
            step=self.step,
            dither=self.dither,
            max_error=self.max_error,
            sigma_e=transform_sigma_e(profile, self.step, self.max_error),
            seed=int(seed),
            max_adu=int(profile.max_adu),
            profile_id=profile.profile_id,
            tile_rows=int(tile_rows),
            threads=threads,
            effort=effort,
            knee=KNEE_FRACTION
            * (float(profile.read_noise_global) / float(profile.gain_global)) ** 2,
        )
        self.effort = effort

    @property
    def spec(self) -> str:
        s = f"noise:step={self.step:g}"
        if self.dither:
            s += ",dither=1"
        if self.max_error is not None:
            s += f",maxerr={self.max_error:g}"
        if self.effort != "pyramid":
            s += f",effort={self.effort}"
        return s

    @property
    def description(self) -> str:
        extra = ", subtractive dither" if self.dither else ""
        pred = {
            "pyramid": "hierarchical interpolative",
            "best": "class-adaptive causal",
            "fast": "6-tap causal",
        }[self.effort]
        if self.max_error is not None:
            extra += f", |error| <= {self.max_error:g} sigma"
        return (
            f"noise-calibrated: generalised Anscombe VST with the profile's "
            f"{'per-pixel' if self.maps_mode == 'pixel' else 'global'} gain/offset and "
            f"global read noise, step {self.step:g} sigma{extra}, {pred} prediction "
            f"+ context rANS, unbiased decoding (profile {self.profile.profile_id})"
        )

    def _check(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint16:
            raise ImageMismatchError(
                f"noise codec: expected a uint16 raw frame, got dtype {image.dtype}"
            )
        if image.ndim < 2 or image.shape[-2:] != tuple(self.profile.shape):
            raise ImageMismatchError(
                f"noise codec: frame shape {image.shape} does not match the profile "
                f"{self.profile.profile_id} shape {tuple(self.profile.shape)}"
            )
        # (a 16-bit profile admits every uint16: no pass over the pixels)
        if self.profile.max_adu < 65535 and int(image.max(initial=0)) > self.profile.max_adu:
            raise ImageMismatchError(
                f"noise codec: values up to {int(image.max())} exceed the profile's "
                f"{self.profile.identity.bit_depth}-bit range"
            )
        return image

    def encode(self, image: np.ndarray) -> bytes:
        """Compress raw frame(s) ``(..., H, W)`` uint16 to bytes."""
        return encode_frames(self._check(image), self.maps, self.params, self.embed_maps)

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress to uint16 frames (uses this codec's maps when not embedded; a
        stream that refers to the maps of an earlier release decodes with those: made
        before defect pixels took the global values, `codec_maps` ``trust_defects``, or
        with the median gain as the global one, before session 12)."""
        try:
            return decode_frames(data, self.maps, threads=self.params.threads)
        except ImageMismatchError:
            if self.maps_mode != "pixel":
                raise
            for old in self._earlier_maps():
                try:
                    return decode_frames(data, old, threads=self.params.threads)
                except ImageMismatchError:
                    continue
            raise

    def _earlier_maps(self) -> Iterator[CodecMaps]:
        """The per-pixel maps earlier releases made from this codec's profile."""
        p, seen = self.profile, {self.maps.digest()}
        median = p.gain_median  # the old gain_global
        choices: tuple[tuple[bool, float | None], ...] = (
            (True, None),
            (False, median),
            (True, median),
        )
        for trust, g_global in choices:
            old = codec_maps(p, "pixel", trust_defects=trust, gain_global=g_global)
            if old.digest() not in seen:
                seen.add(old.digest())
                yield old

    @staticmethod
    def info(data: bytes) -> dict:
        """Header of a payload (after checksum verification)."""
        hd = read_header(data)
        hd.pop("_body", None)
        hd.pop("_version", None)
        return hd


def error_ratio(codec: NoiseCodec, raw: np.ndarray, decoded: np.ndarray) -> float:
    """Largest ``|decoded − raw|`` over the codec's documented bound, over all pixels.

    The bound (README "the codec's limits") is ``S/2·σ(x) + g·S²/24 + 1`` ADU, or
    ``K·σ(x)`` with a hard bound ``max_error`` K, with σ(x)² = g·max(x − o, 0) + (g·σ_r)²
    from the codec's own gain and offset maps (the global model on defect pixels and
    with ``maps="global"``) and the profile's global read noise σ_r (e⁻). A value
    above 1 means the decoded frames are not within the bound of these raw frames.

    Parameters
    ----------
    codec : NoiseCodec
        The codec that encoded ``raw``.
    raw, decoded : numpy.ndarray
        Raw and decoded frames, uint16, the same shape ``(..., H, W)``.

    Returns
    -------
    float
        The worst ratio (0 for identical frames). Computed frame by frame in float32
        (a few passes over each frame).
    """
    p = codec.profile
    g, o = codec.maps.gain(), codec.maps.offset()
    s_e = np.float32(float(p.read_noise_global) / float(p.gain_global))
    floor = np.square(g * s_e)
    step = np.float32(codec.step)
    if codec.max_error is None:
        k, extra = step / np.float32(2), g * (step * step / np.float32(24)) + np.float32(1)
    else:
        k, extra = np.float32(codec.max_error), np.zeros_like(g)
    h, w = np.shape(raw)[-2:]
    rows = max(1, _RATIO_BLOCK // max(w, 1))
    buf = np.empty((2, min(rows, h), w), np.float32)
    worst = 0.0
    for x, y in zip(np.reshape(raw, (-1, h, w)), np.reshape(decoded, (-1, h, w)), strict=True):
        for r0 in range(0, h, rows):
            r = slice(r0, min(h, r0 + rows))
            n = r.stop - r0
            sig, err = buf[0, :n], buf[1, :n]
            np.subtract(x[r], o[r], out=sig, dtype=np.float32)
            np.maximum(sig, 0, out=sig)
            sig *= g[r]
            sig += floor[r]
            np.sqrt(sig, out=sig)
            sig *= k
            sig += extra[r]
            np.subtract(y[r], x[r], out=err, dtype=np.float32)
            np.abs(err, out=err)
            err /= sig
            worst = max(worst, float(err.max()))
    return worst


_RATIO_BLOCK = 1 << 15  # pixels per block of `error_ratio` (its buffers stay in cache)
