"""Statistically raw-equivalent replicas of one raw image (method step 2).

From a single raw image ``x`` and a :class:`~rawsigma.calib.profile.CameraProfile`
(offset ``o``, gain ``g``, read noise ``r`` per pixel), every replica redraws each
pixel from the calibrated Poisson–Gaussian distribution::

    e = max((c - o) / g, 0)                         # photo-electrons
    y = c + g * (Poisson(e) - e) + Normal(0, r)     # ADU, float
    replica = clip(rint(y), 0, max_adu)             # rounded once, ADC range

(for ``c >= o`` this is exactly ``Poisson(e)·g + o + Normal(0, r)``; a centre below
the offset, which only read noise can produce, keeps its value as the mean and gets
read noise only, instead of being pulled up to the offset)
where the centre ``c`` is the observed image (``centre="observed"``, the paper's
default) or a denoised estimate of the expected image (``centre="denoised"``).

Conventions
-----------
* The profile's read noise is used as the Gaussian standard deviation *before* the
  final rounding, as the simulated camera (:class:`rawsigma.acquire.sensor_model.
  SensorModel`) defines it; rounding adds 1/12 ADU² of variance.
* Saturated pixels (value ``>= profile.max_adu``) carry no information about the
  true signal, which is at or above full scale; any redraw of such a pixel would
  also saturate, so they stay at ``max_adu`` in every replica.
* Pixels whose gain is not usable (``<= 0``, flagged ``DEFECT_BAD_GAIN``) use the
  profile's global gain.
* ``centre="denoised"``: generalised Anscombe transform with the profile's gain,
  offset and read noise (noise ≈ N(0, 1)), non-local means
  (:func:`skimage.restoration.denoise_nl_means`, fast mode, 5×5 patches, search
  distance 6, ``h = 0.8``, ``sigma = 1``), then the closed-form approximation of
  the exact unbiased inverse (Mäkitalo & Foi, IEEE TIP 22, 2013). Centring on the
  observed image doubles the expected squared distance of a replica from the truth;
  the denoised centre avoids that at the cost of the denoiser's own bias.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rawsigma.errors import ImageMismatchError

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

Centre = Literal["observed", "denoised"]
CENTRES: tuple[str, ...] = ("observed", "denoised")

DENOISER_DESCRIPTION = (
    "generalised Anscombe VST (profile gain/offset/read noise) + non-local means "
    "(skimage, fast mode, patch 5, distance 6, h=0.8, sigma=1) + Makitalo-Foi "
    "closed-form unbiased inverse"
)


#: How the redraws are made (recorded in provenance next to every result)
REPLICA_METHOD = (
    "exact Poisson-Gaussian redraws from per-pixel Philox4x32-10 counter streams "
    "(96-bit key from the seed): ziggurat normal, Poisson by inversion below 10 e- "
    "and PTRS from 10 e- (rawsigma.analysis.noisemodel.replica_kernel, since 2026-12)"
)

__all__ = [
    "REPLICA_METHOD",
    "SynthesisInfo",
    "anscombe",
    "denoise",
    "inverse_anscombe",
    "redraw",
    "synthesize",
]


@dataclass(frozen=True)
class SynthesisInfo:
    """How a set of replicas was made (record it next to every result).

    Attributes
    ----------
    centre : str
        ``"observed"`` or ``"denoised"``.
    centre_method : str
        Human-readable description of the centre (the denoiser for ``"denoised"``).
    n : int
        Number of replicas.
    profile_id : str
        ``CameraProfile.profile_id`` of the profile used.
    profile_estimated : bool
        True if the profile was estimated from the image rather than calibrated.
    max_adu : int
        ADC full scale used for clipping.
    n_saturated : int
        Pixels of the input image at or above ``max_adu`` (kept saturated).
    seed : Any
        Seed or generator description, if known (``None`` for fresh entropy).
    method : str
        How the redraws are drawn (`REPLICA_METHOD`).
    """

    centre: str
    centre_method: str
    n: int
    profile_id: str
    profile_estimated: bool
    max_adu: int
    n_saturated: int
    seed: Any = None
    method: str = REPLICA_METHOD
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of all fields."""
        return dataclasses.asdict(self)


def _check_inputs(image: np.ndarray, profile: CameraProfile) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype.kind not in "ui":
        raise ImageMismatchError(
            f"synthesize: raw image must have an integer dtype (ADU), got {img.dtype}; "
            "float or rescaled images are not raw"
        )
    if img.ndim != 2:
        raise ImageMismatchError(
            f"synthesize: expected one 2-D raw frame (H, W), got shape {img.shape}"
        )
    profile.check_image(img)
    return img


def _safe_gain(profile: CameraProfile) -> np.ndarray:
    g = profile.gain
    bad = ~(g > 0)
    if bad.any():
        g = g.copy()
        g[bad] = np.float32(profile.gain_global)
    return g


def anscombe(image: np.ndarray, profile: CameraProfile) -> np.ndarray:
    """Generalised Anscombe transform in photo-electron units, float32.

    ``t = 2 sqrt(max(e + 3/8 + s², 0))`` with ``e = (x - o)/g`` and ``s = r/g``
    (read noise in electrons); ``t`` has approximately unit noise variance.
    """
    g = _safe_gain(profile)
    e = (np.asarray(image, np.float32) - profile.offset) / g
    s2 = (profile.read_noise / g) ** 2
    return (2.0 * np.sqrt(np.maximum(e + np.float32(0.375) + s2, 0))).astype(np.float32)


def inverse_anscombe(t: np.ndarray, profile: CameraProfile) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`anscombe`.

    Mäkitalo & Foi (2013): ``E = t²/4 + √(3/2)/(4t) − 11/(8t²) + 5√(3/2)/(8t³) −
    1/8 − s²`` electrons (clipped at 0), returned in ADU (float32).
    """
    g = _safe_gain(profile)
    s2 = (profile.read_noise / g) ** 2
    d = np.maximum(np.asarray(t, np.float64), 0.8)  # the series diverges near 0
    k = np.sqrt(1.5)
    e = 0.25 * d**2 + 0.25 * k / d - 1.375 / d**2 + 0.625 * k / d**3 - 0.125 - s2
    return (np.maximum(e, 0) * g + profile.offset).astype(np.float32)


def denoise(image: np.ndarray, profile: CameraProfile) -> np.ndarray:
    """Denoised estimate of the expected image, ADU, float32 (see module notes)."""
    from skimage.restoration import denoise_nl_means

    t = anscombe(image, profile)
    td = denoise_nl_means(
        t, patch_size=5, patch_distance=6, h=0.8, sigma=1.0, fast_mode=True
    ).astype(np.float32)
    return inverse_anscombe(td, profile)


def _plane(x: Any, shape: tuple, dtype: Any) -> np.ndarray:
    """``x`` as a writeable C-contiguous ``shape`` array (the one kernel signature)."""
    a = np.asarray(x, dtype)
    if a.shape != shape or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(np.broadcast_to(a, shape), dtype, order="C")
    return a


def redraw(
    centre: np.ndarray,
    gain: np.ndarray,
    offset: np.ndarray,
    read_noise: np.ndarray,
    saturated: np.ndarray,
    max_adu: int,
    n: int,
    rng: np.random.Generator,
    dtype: np.dtype,
    *,
    threads: int = 1,
) -> np.ndarray:
    """The Poisson–Gaussian redraws of `synthesize` for one (tile of an) image.

    Parameters
    ----------
    centre : (H, W) float32 ndarray
        Centre of the redraws, ADU.
    gain, offset, read_noise : (H, W) float32 ndarray
        Usable gain (ADU/e⁻, > 0), offset (ADU), read noise (ADU rms) of these pixels.
    saturated : (H, W) bool ndarray
        Pixels kept at ``max_adu``.
    max_adu : int
        Top of the ADC range.
    n : int
        Number of replicas.
    rng : numpy.random.Generator
        Gives the 96-bit key of the counter-based streams (three 32-bit words, one
        call): the same generator state gives the same replicas.
    dtype : numpy dtype
        Integer dtype of the result.
    threads : int
        Threads drawing row blocks; the values do not depend on it (every row and
        replica has its own stream, see `replica_kernel`).

    Returns
    -------
    (n, H, W) ndarray of ``dtype``

    Raises
    ------
    ValueError
        If a pixel's photo-electron mean is not finite (NaN or infinite map values).
    """
    from rawsigma.analysis.noisemodel import replica_kernel

    c = np.asarray(centre, np.float32)
    g = np.asarray(gain, np.float32)
    e = np.maximum((c - offset) / g, np.float32(0)).astype(np.float32)
    base = np.ascontiguousarray(c - g * e, np.float32)  # = o where c >= o, else c
    lam = np.ascontiguousarray(e, np.float64)
    if not np.isfinite(lam).all():
        raise ValueError("redraw: non-finite photo-electron mean (NaN or inf in the maps)")
    key = rng.integers(0, 2**32, size=3, dtype=np.uint64)
    out = np.empty((n, *c.shape), dtype=dtype)
    args = (
        lam,
        base,
        _plane(g, c.shape, np.float32),
        _plane(read_noise, c.shape, np.float32),
        _plane(saturated, c.shape, np.bool_).view(np.uint8),
        np.float32(max_adu),
        key,
        out,
    )
    h = c.shape[0]
    parts = max(1, min(int(threads), h))
    if parts == 1:
        replica_kernel.redraw_rows(*args, 0, h)
        return out
    from concurrent.futures import ThreadPoolExecutor

    edges = np.linspace(0, h, parts + 1).astype(int)
    with ThreadPoolExecutor(parts) as pool:
        done = [
            pool.submit(replica_kernel.redraw_rows, *args, a, b)
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
        for f in done:
            f.result()
    return out


def synthesize(
    image: np.ndarray,
    profile: CameraProfile,
    n: int = 10,
    rng: np.random.Generator | int | None = None,
    centre: Centre = "observed",
    *,
    return_info: bool = False,
    exposure_s: float | None = None,
) -> np.ndarray | tuple[np.ndarray, SynthesisInfo]:
    """Draw ``n`` statistically raw-equivalent replicas of a raw image.

    Parameters
    ----------
    image : (H, W) ndarray, unsigned integer (usually uint16)
        One raw frame in ADU, matching ``profile`` (shape, bit depth).
    profile : CameraProfile
        Per-pixel offset, gain and read noise of the camera.
    n : int
        Number of replicas (>= 1).
    rng : numpy.random.Generator or int or None
        Random source; an int is a seed, ``None`` fresh entropy.
    centre : {"observed", "denoised"}
        Centre the redraws on the observed values (paper default) or on a
        denoised estimate (see module notes for the denoiser).
    return_info : bool
        Also return a :class:`SynthesisInfo` describing how the replicas were made.
    exposure_s : float, optional
        Exposure of ``image``, s: the profile is first moved to it
        (:meth:`CameraProfile.at_exposure`: offset and read noise follow the dark
        current, when the profile has one).

    Returns
    -------
    replicas : (n, H, W) ndarray, same dtype as ``image``
        Values in ``[0, profile.max_adu]``; pixels saturated in ``image`` stay
        saturated.
    info : SynthesisInfo
        Only with ``return_info=True``.

    Raises
    ------
    ImageMismatchError
        If the image is not an integer 2-D frame matching the profile.
    ValueError
        For an unknown ``centre`` or ``n < 1``.
    """
    if centre not in CENTRES:
        raise ValueError(f"synthesize: centre must be one of {CENTRES}, got {centre!r}")
    if int(n) < 1:
        raise ValueError(f"synthesize: n must be >= 1, got {n}")
    n = int(n)
    if exposure_s is not None:
        profile = profile.at_exposure(exposure_s)
    img = _check_inputs(image, profile)
    seed = rng if isinstance(rng, int | None) else None
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)

    max_adu = int(min(profile.max_adu, np.iinfo(img.dtype).max))
    saturated = img >= max_adu
    if centre == "observed":
        c = img.astype(np.float32)
        method = "observed raw values"
    else:
        c = denoise(img, profile)
        method = DENOISER_DESCRIPTION

    out = redraw(
        c,
        _safe_gain(profile),
        profile.offset,
        profile.read_noise,
        saturated,
        max_adu,
        n,
        rng,
        img.dtype,
    )
    if not return_info:
        return out
    info = SynthesisInfo(
        centre=centre,
        centre_method=method,
        n=n,
        profile_id=profile.profile_id,
        profile_estimated=profile.estimated,
        max_adu=max_adu,
        n_saturated=int(np.count_nonzero(saturated)),
        seed=seed,
    )
    return out, info
