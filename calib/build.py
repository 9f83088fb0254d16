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
from .validate import MAX_UNUSABLE, CalibrationError, check_inputs, check_maps

__all__ = ["build_profile", "light_stability"]

FLICKER_LIMIT = 0.005  # relative rms frame-to-frame fluctuation of the light
DRIFT_LIMIT = 0.01  # relative change of the light over one level
#: ``gain_map="auto"`` uses the global K when the median per-pixel gain SE exceeds this
GAIN_REL_SE_LIMIT = 0.3
#: ``gain_map="per-pixel"`` is refused above this median per-pixel gain SE (frame pairs)
GAIN_REL_SE_MAX = 1.0


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


def _identity(
    identity: CameraIdentity | Mapping[str, Any] | None, shape: tuple[int, int]
) -> CameraIdentity:
    if identity is None:
        return CameraIdentity(roi=(0, 0, shape[1], shape[0]), sensor_shape=shape)
    if isinstance(identity, CameraIdentity):
        return identity
    return CameraIdentity.from_dict(dict(identity))


def _plan_dict(plan: Any) -> dict[str, Any]:
    if plan is None:
        return {}
    if hasattr(plan, "model_dump"):
        return dict(plan.model_dump(mode="json"))
    if dataclasses.is_dataclass(plan) and not isinstance(plan, type):
        return dataclasses.asdict(plan)
    return dict(plan)


def _gain_mode(gain_map: str, maps: PixelMaps, emva: dict[str, Any]) -> tuple[str, str]:
    """Which gain map to store ("per-pixel" or "global") and why."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = maps.gain_se / np.abs(maps.gain)
    rel = rel[np.isfinite(rel)]
    med = float(np.median(rel)) if rel.size else float("inf")
    has_k = "K" in emva and np.isfinite(emva["K"])
    if gain_map == "per-pixel":
        if med > GAIN_REL_SE_MAX:
            n = min(maps.info["frames_per_level"])
            raise CalibrationError(
                f"too few frames for a per-pixel gain: {n} per level give a median "
                f"per-pixel gain SE of {100 * med:.0f} % (limit "
                f"{100 * GAIN_REL_SE_MAX:.0f} %); record more frames per level or use "
                "the global gain (gain_map 'global' / --gain-map global)"
            )
        return "per-pixel", "requested"
    if gain_map == "global":
        if not has_k:
            raise CalibrationError(f"no global gain K: {emva.get('error', 'EMVA failed')}")
        return "global", "requested"
    if med <= GAIN_REL_SE_LIMIT or not has_k:
        return "per-pixel", f"median per-pixel gain SE {100 * med:.3g} %"
    return (
        "global",
        f"median per-pixel gain SE would be {100 * med:.3g} % (> "
        f"{100 * GAIN_REL_SE_LIMIT:.0f} %: too few frames per level); every pixel gets "
        "the global K",
    )


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
    gain_map: str = "per-pixel",
    max_unusable: float = MAX_UNUSABLE,
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
    gain_map : {"auto", "per-pixel", "global"}
        ``per-pixel``: the weighted LS gain of every pixel (one level: its
        ``(var_f - var_d) / (mean_f - mean_d)``). ``global``: the EMVA ``K`` on every
        pixel, with ``K_se`` (a single-amplifier CCD, or frame pairs). ``auto``:
        per-pixel unless the median per-pixel gain SE exceeds
        ``GAIN_REL_SE_LIMIT`` (30 %: fewer than ~25 frames at one level, or frame
        pairs); ``per-pixel`` is refused above ``GAIN_REL_SE_MAX`` (100 %). The choice is
        in ``provenance["gain_map"]``. Default ``per-pixel``; the sweeps (CLI, GUI,
        ``--engine mda``), :func:`~rawsigma.calib.stacks.calibrate_from_stacks` and
        ``rawsigma calibrate --from-stacks`` default to ``auto``.
    max_unusable : float
        Largest fraction of pixels without a usable gain (default 5 %).
    **extra_provenance
        Further provenance entries.

    Returns
    -------
    CameraProfile
        Unusable gains (no unclipped level with signal, gain <= 0) are replaced by
        the median gain and flagged ``DEFECT_BAD_GAIN``. ``provenance["light_source"]``
        holds the measured stability; ``provenance["light_source_unstable"]`` and
        ``emva["light_source_unstable"]`` say whether it exceeded the limits.
    """
    ident = _identity(identity, dark.shape)
    if max_adu is None:
        max_adu = (1 << int(ident.bit_depth)) - 1
    if gain_map not in ("auto", "per-pixel", "global"):
        raise ValueError(f"gain_map must be 'auto', 'per-pixel' or 'global', got {gain_map!r}")
    warnings: list[str] = check_inputs(dark, levels, max_adu)
    maps: PixelMaps = fit_pixel_maps(
        dark,
        levels,
        max_adu=max_adu,
        flicker_correction=flicker_correction,
        shrink_gain=shrink_gain,
    )
    emva, ptc = _emva_numbers(
        level_darks if level_darks is not None else dark,
        levels,
        max_adu,
        photons,
        exposure,
        warnings,
    )
    mode, why = _gain_mode(gain_map, maps, emva)
    gain_in, gain_se, defects = _gain_source(mode, maps, emva)
    usable = _check_usable(gain_in, maps, [lv.n for lv in levels], max_unusable)
    stab = light_stability(
        level_darks if level_darks is not None else dark,
        levels,
        flicker_limit=flicker_limit,
        drift_limit=drift_limit,
    )
    emva["light_source_unstable"] = stab["unstable"]
    if stab["unstable"]:
        warnings.append(stab["message"])

    gain = _usable_gain(gain_in, defects)
    prnu = np.where(np.isfinite(maps.prnu), maps.prnu, 0.0)

    prov = provenance(
        estimated=False,
        method="photon transfer: per-pixel weighted LS gain, EMVA 1288 R4 global numbers",
        source=source,
        seed=seed,
        dark_frames=int(dark.n),
        frames_per_level=[int(lv.n) for lv in levels],
        n_levels=len(levels),
        gain_map=mode,
        gain_map_reason=why,
        unusable_fraction=usable,
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
        gain_se=gain_se,
        read_noise_se=maps.read_noise_se,
        defects=defects,
        prnu=prnu,
        emva=emva,
        ptc=ptc,
        plan=_plan_dict(plan),
        provenance=prov,
    )


def _check_usable(
    gain: np.ndarray, maps: PixelMaps, frames: list[int], max_unusable: float
) -> dict[str, float]:
    """`check_maps` of the fitted gains (refuses too many unusable pixels, saying why)."""
    return check_maps(
        gain,
        maps.info["all_clipped"],
        maps.info["no_signal"],
        frames,
        max_unusable=max_unusable,
        n_used=maps.n_levels,
        min_levels=min(2, len(frames)),
    )


def _emva_numbers(
    dark: PixelMoments | Sequence[PixelMoments],
    levels: Sequence[PixelMoments],
    max_adu: int,
    photons: Sequence[float] | None,
    exposure: Sequence[float] | None,
    warnings: list[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """EMVA summary and PTC table, or the reason they are missing (in ``warnings``)."""
    try:
        return emva_analysis(dark, levels, max_adu=max_adu, photons=photons, exposure=exposure)
    except ValueError as e:
        warnings.append(f"EMVA analysis not possible: {e}")
        return {"error": str(e)}, {}


def _gain_source(
    mode: str, maps: PixelMaps, emva: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gain map, its SE and the defects: per-pixel fit, or the EMVA K on every pixel."""
    gain_in, gain_se = maps.gain, maps.gain_se
    defects = maps.defects.copy()
    if mode == "global":
        lost = maps.info["all_clipped"] | maps.info["no_signal"]
        gain_in = np.where(lost, np.nan, emva["K"])
        gain_se = np.full(maps.gain.shape, emva.get("K_se", np.nan))
        defects &= ~np.uint8(DEFECT_BAD_GAIN)  # per-pixel noise, not a defect
    return gain_in, gain_se, defects


def _usable_gain(gain_in: np.ndarray, defects: np.ndarray) -> np.ndarray:
    """Unusable gains (non-finite, <= 0) flagged in ``defects`` and set to the median."""
    gain = np.array(gain_in, np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(gain) | (gain <= 0)
    defects[bad] |= DEFECT_BAD_GAIN
    good = defects == 0
    if not np.any(good):
        raise CalibrationError("no pixel without a defect flag: the profile would be unusable")
    gain[bad] = float(np.median(gain[good]))
    return gain
