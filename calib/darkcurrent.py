"""Per-pixel dark current from dark stacks at several exposure times.

Model, per pixel ``i`` and exposure ``t_k``: ``mean_ik = b_i + D_i * t_k`` with
``D_i`` the dark current in ADU/s (``D_i / g_i`` in e-/s). ``D_i`` and ``b_i`` are the
weighted least-squares line through the per-exposure means, weights
``n_k / var_ik`` (the variance of each mean; it grows with the dark signal's shot
noise; with fewer than 10 frames per exposure the per-pixel variance is pooled over the
exposures). Hot pixels: a dark current more than ``hot_factor`` (10) times the median,
above the median by more than ``hot_sigma`` (6) robust standard deviations of the map
and by more than ``hot_z`` (5) of its own standard error.

:func:`attach_dark_current` stores the result in a :class:`CameraProfile`
(``dark_current``, ``dark_current_se``, ``dark_info``; ``DEFECT_HOT`` on hot pixels),
and :meth:`CameraProfile.at_exposure` uses it for images of another exposure.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .profile_fields import DEFECT_HOT
from .validate import CalibrationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .profile import CameraProfile

__all__ = ["DarkCurrent", "attach_dark_current", "fit_dark_current", "profile_at_exposure"]


@dataclass
class DarkCurrent:
    """Per-pixel dark current fit (all maps (H, W) float64 unless noted).

    Attributes
    ----------
    rate, rate_se : ADU/s
    bias, bias_se : ADU (intercept at zero exposure)
    hot : bool, dark current significantly above the rest
    exposures_s : (K,) exposures of the dark stacks, s
    frames : (K,) frames per exposure
    temperature_c : sensor temperature reported during the darks, or None
    """

    rate: np.ndarray
    rate_se: np.ndarray
    bias: np.ndarray
    bias_se: np.ndarray
    hot: np.ndarray
    exposures_s: np.ndarray
    frames: np.ndarray
    temperature_c: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _robust_sigma(a: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def fit_dark_current(
    darks: Sequence[Any],
    exposures_s: Sequence[float],
    *,
    temperature_c: float | None = None,
    hot_sigma: float = 6.0,
    hot_z: float = 5.0,
    hot_factor: float = 10.0,
) -> DarkCurrent:
    """Fit the per-pixel dark current from dark accumulators at several exposures.

    Parameters
    ----------
    darks : sequence of PixelMoments or LevelStats
        One dark accumulator per exposure, each with at least 2 frames, same shape.
    exposures_s : sequence of float
        Exposure of each accumulator, seconds; at least 2 distinct values.
    temperature_c : float, optional
        Sensor temperature during the darks (stored with the result).
    hot_sigma, hot_z, hot_factor : float
        Hot-pixel thresholds (robust sigmas of the map; own standard errors; times
        the median dark current).

    Returns
    -------
    DarkCurrent

    Raises
    ------
    CalibrationError
        Fewer than 2 distinct exposures, an accumulator with < 2 frames, shapes that
        differ.
    """
    t = np.asarray(exposures_s, np.float64)
    if len(darks) != t.size:
        raise CalibrationError(f"{len(darks)} dark stacks for {t.size} exposure times")
    if np.unique(t).size < 2:
        raise CalibrationError(
            "dark current needs dark stacks at >= 2 different exposure times, got "
            f"{sorted(set(t.tolist()))} s"
        )
    if np.any(t < 0):
        raise CalibrationError(f"negative exposure time in {t.tolist()} s")
    shape = darks[0].shape
    for d, tk in zip(darks, t, strict=True):
        if d.shape != shape:
            raise CalibrationError(f"dark at {tk:g} s has shape {d.shape}, first has {shape}")
        if d.n < 2:
            raise CalibrationError(f"dark at {tk:g} s has {d.n} frame; at least 2 are needed")
    sw = np.zeros(shape)
    swt = np.zeros(shape)
    swtt = np.zeros(shape)
    swy = np.zeros(shape)
    swty = np.zeros(shape)
    pooled = None
    if min(d.n for d in darks) < 10:
        # a few frames per exposure (EMVA pairs): one variance per pixel for all of them,
        # pooled over the exposures, instead of weights from 1-dof variances
        dof = sum(d.n - 1 for d in darks)
        pooled = sum((d.n - 1) * np.maximum(d.var(), 0) for d in darks) / dof
    for d, tk in zip(darks, t, strict=True):
        w = d.n / np.maximum(d.var() if pooled is None else pooled, 1.0 / 12)
        y = d.mean()
        sw += w
        swt += w * tk
        swtt += w * tk * tk
        swy += w * y
        swty += w * tk * y
    det = sw * swtt - swt * swt
    rate = (sw * swty - swt * swy) / det
    bias = (swtt * swy - swt * swty) / det
    rate_se = np.sqrt(sw / det)
    bias_se = np.sqrt(swtt / det)
    med = float(np.median(rate))
    sig = max(_robust_sigma(rate), 1e-9)
    hot = ((rate - med) > hot_sigma * sig) & ((rate - med) > hot_z * rate_se)
    if med > 0:
        hot &= rate > hot_factor * med
    return DarkCurrent(
        rate=rate,
        rate_se=rate_se,
        bias=bias,
        bias_se=bias_se,
        hot=hot,
        exposures_s=t,
        frames=np.array([d.n for d in darks], np.int64),
        temperature_c=temperature_c,
        info={
            "median": med,
            "robust_sigma": sig,
            "hot_sigma": hot_sigma,
            "hot_z": hot_z,
            "hot_factor": hot_factor,
        },
    )


def attach_dark_current(
    profile: CameraProfile,
    dc: DarkCurrent,
    reference_exposure_s: float | None = None,
) -> CameraProfile:
    """Return a copy of ``profile`` holding the dark current and its hot pixels.

    Parameters
    ----------
    profile : CameraProfile
        Calibrated at one exposure (its ``offset`` and ``read_noise`` include that
        exposure's dark signal).
    dc : DarkCurrent
        From :func:`fit_dark_current`, same shape.
    reference_exposure_s : float, optional
        Exposure at which ``profile`` was calibrated; default
        ``profile.identity.exposure_ms / 1000``.

    Raises
    ------
    CalibrationError
        Shapes differ, or the reference exposure is unknown.
    """
    if dc.rate.shape != profile.shape:
        raise CalibrationError(
            f"dark current map {dc.rate.shape} does not match the profile {profile.shape}"
        )
    if reference_exposure_s is None:
        if profile.identity.exposure_ms is None:
            raise CalibrationError(
                "the profile's exposure is unknown: cannot relate its offset to the dark "
                "current (give the reference exposure)"
            )
        reference_exposure_s = profile.identity.exposure_ms / 1000.0
    defects = (
        np.zeros(profile.shape, np.uint8) if profile.defects is None else profile.defects.copy()
    )
    defects[dc.hot] |= DEFECT_HOT
    g = np.where(profile.gain > 0, profile.gain, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_e = dc.rate / g
    good = (defects == 0) & np.isfinite(rate_e)
    info = {
        "units": "ADU/s",
        "reference_exposure_s": float(reference_exposure_s),
        "exposures_s": [float(v) for v in dc.exposures_s],
        "frames": [int(v) for v in dc.frames],
        "temperature_c": dc.temperature_c,
        "median_adu_s": float(np.median(dc.rate[good])) if good.any() else float("nan"),
        "median_e_s": float(np.median(rate_e[good])) if good.any() else float("nan"),
        "hot_pixels": int(np.count_nonzero(dc.hot)),
        "hot_rule": f"> {dc.info.get('hot_factor', 10):g} x median, > median + "
        f"{dc.info.get('hot_sigma', 6):g} robust sigma and > {dc.info.get('hot_z', 5):g} SE",
    }
    prov = dict(profile.provenance)
    counts = dict(prov.get("defect_counts", {}))
    counts[str(DEFECT_HOT)] = int(np.count_nonzero(defects & DEFECT_HOT))
    prov["defect_counts"] = counts
    return dataclasses.replace(
        profile,
        defects=defects,
        dark_current=dc.rate,
        dark_current_se=dc.rate_se,
        dark_info=info,
        provenance=prov,
        identity=dataclasses.replace(profile.identity, extra=dict(profile.identity.extra)),
    )


def profile_at_exposure(profile: CameraProfile, exposure_s: float) -> CameraProfile:
    """``profile`` adjusted to an image exposure of ``exposure_s`` seconds.

    Offset ``o + D (t - t_ref)``, read-noise variance ``r^2 + g D (t - t_ref)``
    (floored at 1/12 ADU^2), with ``D`` the dark current (ADU/s, negative values
    count as 0 for the noise) and ``t_ref = dark_info["reference_exposure_s"]``.
    ``identity.exposure_ms`` becomes the new exposure and
    ``provenance["at_exposure"]`` records the source profile id. A profile without
    dark current, or ``t == t_ref``, is returned unchanged.

    Raises
    ------
    ValueError
        ``exposure_s`` negative or not finite.
    """
    t = float(exposure_s)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"exposure must be a finite number of seconds >= 0, got {exposure_s}")
    if profile.dark_current is None:
        return profile
    t_ref = float(profile.dark_info["reference_exposure_s"])
    dt = t - t_ref
    if dt == 0:
        return profile
    d = profile.dark_current.astype(np.float64)
    offset = profile.offset + d * dt
    rv = profile.read_noise.astype(np.float64) ** 2 + profile.gain * np.maximum(d, 0) * dt
    read_noise = np.sqrt(np.maximum(rv, 1.0 / 12))
    prov = dict(profile.provenance)
    prov["at_exposure"] = {
        "exposure_s": t,
        "reference_exposure_s": t_ref,
        "from_profile_id": profile.profile_id,
    }
    return dataclasses.replace(
        profile,
        offset=offset,
        read_noise=read_noise,
        identity=dataclasses.replace(
            profile.identity, exposure_ms=1000.0 * t, extra=dict(profile.identity.extra)
        ),
        provenance=prov,
        dark_info=dict(profile.dark_info),
    )
