"""Combine per-pixel maps and EMVA numbers into a :class:`CameraProfile`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rawsigma.fileio import provenance

from .emva import _level_stability, emva_analysis
from .fit import PixelMaps, fit_pixel_maps
from .moments import PixelMoments
from .profile import DEFECT_BAD_GAIN, CameraIdentity, CameraProfile

__all__ = ["build_profile", "light_stability"]

FLICKER_LIMIT = 0.005  # relative rms frame-to-frame fluctuation of the light
DRIFT_LIMIT = 0.01  # relative change of the light over one level


def light_stability(
    dark: PixelMoments | Sequence[PixelMoments],
    levels: Sequence[PixelMoments],
    *,
    flicker_limit: float = FLICKER_LIMIT,
    drift_limit: float = DRIFT_LIMIT,
) -> dict[str, Any]:
    """Measure light-source flicker and drift from the frame means of every level.

    Flicker is the rms frame-to-frame fluctuation of the frame mean not explained by
    pixel noise, relative to the level's signal (mean above dark), pooled (rms) over
    levels for the decision; drift is the change of a straight line fitted to the
    frame means over the level, relative to the signal.

    Returns
    -------
    dict
        ``unstable`` (bool), ``flicker_rms``, ``flicker_max``, ``drift_max``
        (relative), per-level lists ``flicker`` and ``drift``, the limits used and a
        human-readable ``message``.
    """
    darks = [dark] * len(levels) if hasattr(dark, "frame_means") else list(dark)
    flick, drift = [], []
    for lv, d in zip(levels, darks, strict=True):
        f, dr = _level_stability(lv, d.frame_means.mean())
        flick.append(f)
        drift.append(dr)
    fmax = max(flick, default=0.0)
    # pooled over levels: a frame pair gives a 1-degree-of-freedom estimate per level
    frms = float(np.sqrt(np.mean(np.square(flick)))) if flick else 0.0
    dmax = max((abs(v) for v in drift), default=0.0)
    unstable = frms > flicker_limit or dmax > drift_limit
    msg = (
        f"light source unstable: flicker {100 * frms:.2f} % rms (up to {100 * fmax:.2f} % "
        f"in one level), drift up to "
        f"{100 * dmax:.2f} % per level (limits {100 * flicker_limit:.2f} %, "
        f"{100 * drift_limit:.2f} %); common-mode fluctuations were corrected"
        if unstable
        else "light source stable"
    )
    return {
        "unstable": bool(unstable),
        "flicker_rms": frms,
        "flicker_max": float(fmax),
        "drift_max": float(dmax),
        "flicker": flick,
        "drift": drift,
        "flicker_limit": flicker_limit,
        "drift_limit": drift_limit,
        "message": msg,
    }


def _identity(identity: CameraIdentity | Mapping[str, Any] | None, shape: tuple[int, int]):
    if identity is None:
        return CameraIdentity(roi=(0, 0, shape[1], shape[0]), sensor_shape=shape)
    if isinstance(identity, CameraIdentity):
        return identity
    return CameraIdentity.from_dict(dict(identity))


def _plan_dict(plan: Any) -> dict:
    if plan is None:
        return {}
    if hasattr(plan, "model_dump"):
        return dict(plan.model_dump(mode="json"))
    if dataclasses.is_dataclass(plan):
        return dataclasses.asdict(plan)
    return dict(plan)


def build_profile(
    dark: PixelMoments,
    levels: Sequence[PixelMoments],
    identity: CameraIdentity | Mapping[str, Any] | None = None,
    plan: Any = None,
    *,
    max_adu: int | None = None,
    level_darks: Sequence[PixelMoments] | None = None,
    photons: Sequence[float] | None = None,
    exposure: Sequence[float] | None = None,
    flicker_correction: bool = True,
    shrink_gain: bool = False,
    seed: int | None = None,
    source: str = "",
    flicker_limit: float = FLICKER_LIMIT,
    drift_limit: float = DRIFT_LIMIT,
    **extra_provenance: Any,
) -> CameraProfile:
    """Fit the per-pixel maps and the EMVA numbers and assemble a camera profile.

    Parameters
    ----------
    dark : PixelMoments
        Dark frames for the per-pixel offset and read noise.
    levels : sequence of PixelMoments
        Flat-field levels.
    identity : CameraIdentity or dict, optional
        Camera identity (bit depth gives ``max_adu``).
    plan : pydantic model, dataclass or dict, optional
        Acquisition plan, stored as a dict.
    max_adu : int, optional
        ADC maximum; default ``2**identity.bit_depth - 1``.
    level_darks : sequence of PixelMoments, optional
        One dark per level (EMVA protocol) for the global numbers; default ``dark``.
    photons, exposure : sequence of float, optional
        Per-level photons per pixel / exposure, for QE and linearity.
    flicker_correction : bool
        Remove common-mode light fluctuations from the per-pixel variances.
    shrink_gain : bool
        Empirical-Bayes gain map (see :func:`~rawsigma.calib.fit.fit_pixel_maps`).
    seed : int, optional
        Seed of a simulated acquisition (provenance).
    source : str
        Where the frames came from (rig, file names), provenance.
    flicker_limit, drift_limit : float
        Relative flicker / drift above which the light source is reported unstable.
    **extra_provenance
        Further provenance entries.

    Returns
    -------
    CameraProfile
        Unusable gains (fewer than two unclipped levels, gain <= 0) are replaced by
        the median gain and flagged ``DEFECT_BAD_GAIN``. ``provenance["light_source"]``
        holds the measured stability; ``provenance["light_source_unstable"]`` and
        ``emva["light_source_unstable"]`` say whether it exceeded the limits.
    """
    ident = _identity(identity, dark.shape)
    if max_adu is None:
        max_adu = (1 << int(ident.bit_depth)) - 1
    maps: PixelMaps = fit_pixel_maps(
        dark,
        levels,
        max_adu=max_adu,
        flicker_correction=flicker_correction,
        shrink_gain=shrink_gain,
    )
    warnings: list[str] = []
    try:
        emva, ptc = emva_analysis(
            level_darks if level_darks is not None else dark,
            levels,
            max_adu=max_adu,
            photons=photons,
            exposure=exposure,
        )
    except ValueError as e:
        emva, ptc = {"error": str(e)}, {}
        warnings.append(f"EMVA analysis not possible: {e}")
    stab = light_stability(
        level_darks if level_darks is not None else dark,
        levels,
        flicker_limit=flicker_limit,
        drift_limit=drift_limit,
    )
    emva["light_source_unstable"] = stab["unstable"]
    if stab["unstable"]:
        warnings.append(stab["message"])

    defects = maps.defects.copy()
    gain = maps.gain.copy()
    bad = ~np.isfinite(gain) | (gain <= 0)
    defects[bad] |= DEFECT_BAD_GAIN
    good = defects == 0
    fill = float(np.median(gain[good])) if np.any(good) else float(np.nanmedian(gain))
    if not np.isfinite(fill) or fill <= 0:
        fill = 1.0
        warnings.append("no pixel has a usable gain; gain map filled with 1.0")
    gain[bad] = fill
    prnu = np.where(np.isfinite(maps.prnu), maps.prnu, 0.0)

    prov = provenance(
        estimated=False,
        method="photon transfer: per-pixel weighted LS gain, EMVA 1288 R4 global numbers",
        source=source,
        seed=seed,
        dark_frames=int(dark.n),
        frames_per_level=[int(lv.n) for lv in levels],
        n_levels=len(levels),
        flicker_correction=bool(flicker_correction),
        gain_estimator="empirical-Bayes shrinkage of per-pixel WLS"
        if shrink_gain
        else "per-pixel WLS",
        gain_prior=maps.info.get("gain_prior"),
        saturation_mode=maps.saturation_mode,
        light_source=stab,
        light_source_unstable=stab["unstable"],
        warnings=warnings,
        defect_counts={str(b): int(np.count_nonzero(defects & b)) for b in (1, 2, 4, 8, 16, 32)},
        **extra_provenance,
    )
    return CameraProfile(
        offset=maps.offset,
        gain=gain,
        read_noise=maps.read_noise,
        identity=ident,
        offset_se=maps.offset_se,
        gain_se=maps.gain_se,
        read_noise_se=maps.read_noise_se,
        defects=defects,
        prnu=prnu,
        emva=emva,
        ptc=ptc,
        plan=_plan_dict(plan),
        provenance=prov,
    )
