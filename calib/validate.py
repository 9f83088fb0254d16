"""Checks that calibration data can give a usable profile, with the reason when not.

Two stages:

- :func:`check_inputs` before the fit, from the accumulators alone: frame counts,
  shapes, light above dark (a flat that equals the dark, or stacks given in the wrong
  order), levels saturated everywhere;
- :func:`check_maps` after the fit: a fit that leaves more than ``max_unusable``
  (default 5 %) of the pixels without a usable gain is refused, naming the dominant
  cause per pixel (saturated, no signal above dark, too few frames for a positive
  variance excess).

Both raise :class:`CalibrationError` (a :class:`~rawsigma.errors.RawsigmaError`, so the
CLI prints it as one line and exits with status 1, an input error); nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import RawsigmaError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_UNUSABLE", "CalibrationError", "check_inputs", "check_maps", "signal_snr"]

#: Largest fraction of pixels without a usable gain that a profile may have.
MAX_UNUSABLE = 0.05
#: A level has light when its median per-pixel signal exceeds this many standard errors.
SIGNAL_Z = 5.0


class CalibrationError(RawsigmaError, ValueError):
    """Calibration frames cannot give a usable profile (the message says why)."""


def signal_snr(dark: Any, level: Any) -> tuple[float, float]:
    """Median signal above dark (ADU) of a level and its median z-score.

    The z-score of a pixel is ``(mean_flat - mean_dark) / sqrt(var_f/n_f + var_d/n_d)``.
    """
    x = level.mean() - dark.mean()
    se = np.sqrt(np.maximum(level.var(), 0) / level.n + np.maximum(dark.var(), 0) / dark.n)
    z = x / np.maximum(se, 1e-9)
    return float(np.median(x)), float(np.median(z))


def _no_shot_noise(dark: Any, level: Any, signal: float) -> bool:
    """True when a level with signal has no more temporal variance than the dark.

    Light brings shot noise: ``gain * signal`` ADU^2 above the dark variance, at
    least ``signal / 100`` for any camera (gain >= 0.01 ADU/e-). A level whose mean
    excess is below that and within 3 standard errors of zero is clipped at every
    pixel: a full well (or an ADC) saturating below the stated maximum.
    """
    excess = (level.var() - dark.var()).ravel()
    m = float(np.mean(excess))
    se = float(np.std(excess) / np.sqrt(excess.size))
    return m < 0.01 * signal and m < 3 * se


def check_inputs(
    dark: Any,
    levels: Sequence[Any],
    max_adu: int,
    *,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Refuse calibration data that cannot give a profile; return warnings.

    Parameters
    ----------
    dark : PixelMoments or LevelStats
        Dark frames.
    levels : sequence of PixelMoments or LevelStats
        Flat-field levels.
    max_adu : int
        ADC maximum.
    names : sequence of str, optional
        How to call each level in messages (default ``"level i"``).

    Returns
    -------
    list of str
        Warnings (levels without light that are ignored by the fit).

    Raises
    ------
    CalibrationError
        No level; fewer than 2 frames in the dark or a level; shapes differ; no
        level with light above the dark (flat = dark, or dark and flat swapped);
        every level saturated.
    """
    if not levels:
        raise CalibrationError("no light level: a flat-field stack is needed for the gain")
    names = list(names) if names is not None else [f"level {i}" for i in range(len(levels))]
    if dark.n < 2:
        raise CalibrationError(
            f"dark has {dark.n} frame; at least 2 frames are needed to measure a temporal "
            "variance (read noise)"
        )
    for nm, lv in zip(names, levels, strict=True):
        if lv.shape != dark.shape:
            raise CalibrationError(f"{nm} has frame shape {lv.shape}, the dark {dark.shape}")
        if lv.n < 2:
            raise CalibrationError(
                f"{nm} has {lv.n} frame; at least 2 frames per level are needed to measure "
                "a temporal variance"
            )
    warnings: list[str] = []
    lit, darker, saturated = [], [], []
    dark_level = float(np.mean(dark.frame_means))
    for nm, lv in zip(names, levels, strict=True):
        clipped = float(np.mean(lv.pixel_max >= max_adu))
        sig, z = signal_snr(dark, lv)
        if clipped > 0.5:
            saturated.append(f"{nm} ({100 * clipped:.0f} % of pixels at {max_adu} ADU)")
        elif z > SIGNAL_Z and _no_shot_noise(dark, lv, sig):
            saturated.append(
                f"{nm} ({sig:.5g} ADU above the dark without shot noise: the full well, "
                f"or an ADC below {max_adu} ADU, clips)"
            )
        elif z > SIGNAL_Z:
            lit.append(nm)
        elif z < -SIGNAL_Z:
            darker.append(
                f"{nm}: mean {np.mean(lv.frame_means):.5g} ADU below the dark's {dark_level:.5g}"
            )
        else:
            warnings.append(
                f"{nm}: no signal above dark (median {sig:+.3g} ADU, {z:+.2g} standard "
                "errors); ignored by the gain fit"
            )
    if lit:
        return warnings
    if darker:
        raise CalibrationError(
            "the flat frames are darker than the dark frames ("
            + "; ".join(darker)
            + "): the stacks are probably given in the wrong order (dark stack first)"
        )
    if saturated:
        raise CalibrationError(
            "every light level is saturated: " + ", ".join(saturated) + "; reduce the light "
            "or the exposure"
        )
    raise CalibrationError(
        "no light level has signal above the dark (flat = dark?): "
        + "; ".join(w.split(";")[0] for w in warnings)
    )


def check_maps(
    gain: np.ndarray,
    all_clipped: np.ndarray,
    no_signal: np.ndarray,
    frames: Sequence[int],
    *,
    max_unusable: float = MAX_UNUSABLE,
    n_used: np.ndarray | None = None,
    min_levels: int = 2,
) -> dict[str, float]:
    """Refuse a fit that leaves too many pixels without a usable gain.

    Parameters
    ----------
    gain : ndarray (H, W)
        Fitted per-pixel gain (NaN where not estimated).
    all_clipped : ndarray of bool (H, W)
        Pixel clipped at every level.
    no_signal : ndarray of bool (H, W)
        Pixel without signal above dark at every level where it is not clipped.
    frames : sequence of int
        Frames per level (for the "too few frames" diagnosis).
    max_unusable : float
        Largest allowed fraction of unusable pixels.
    n_used : ndarray of int (H, W), optional
        Levels unclipped and with signal per pixel (for the "too few levels" diagnosis).
    min_levels : int
        Levels a pixel's gain fit needs.

    Returns
    -------
    dict
        Fractions of pixels: ``unusable`` and per cause ``saturated``, ``no_signal``,
        ``few_levels``, ``nonpositive``.

    Raises
    ------
    CalibrationError
        More than ``max_unusable`` of the pixels are unusable; the message gives the
        fractions per cause and what to change.
    """
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(gain) | (gain <= 0)
    sat = bad & all_clipped
    nosig = bad & ~sat & no_signal
    few = bad & ~sat & ~nosig
    if n_used is not None:
        few &= n_used < min_levels
    else:
        few[:] = False
    nonpos = bad & ~sat & ~nosig & ~few
    n = gain.size
    out = {
        "unusable": float(bad.sum() / n),
        "saturated": float(sat.sum() / n),
        "no_signal": float(nosig.sum() / n),
        "few_levels": float(few.sum() / n),
        "nonpositive": float(nonpos.sum() / n),
    }
    if out["unusable"] <= max_unusable:
        return out
    parts = []
    if out["saturated"]:
        parts.append(f"{100 * out['saturated']:.1f} % saturated at every level")
    if out["no_signal"]:
        parts.append(f"{100 * out['no_signal']:.1f} % without signal above dark")
    if out["few_levels"]:
        parts.append(
            f"{100 * out['few_levels']:.1f} % unclipped at fewer than {min_levels} levels "
            "(the others saturate)"
        )
    if out["nonpositive"]:
        parts.append(
            f"{100 * out['nonpositive']:.1f} % with flat variance not above dark variance "
            f"(too few frames: {min(frames)} per level)"
        )
    hint = max(
        ("saturated", "reduce the light or the exposure"),
        ("no_signal", "more light"),
        ("few_levels", "put more levels below saturation (a lower --control-max or --target)"),
        ("nonpositive", "record more frames per level (>= 16; 100+ for sCMOS per-pixel gain)"),
        key=lambda c: out[c[0]],
    )[1]
    raise CalibrationError(
        f"{100 * out['unusable']:.1f} % of the pixels have no usable gain (limit "
        f"{100 * max_unusable:.0f} %): " + ", ".join(parts) + f"; {hint}. Nothing was written."
    )
