"""Feed a simulated flat-field sweep straight into accumulators (no Micro-Manager).

Used by tests, benchmarks and demos with any frame source that has the signature of
``rawsigma.acquire.sensor_model.SensorModel.expose`` (this module does not import
``acquire``, keeping the import direction acquire -> calib).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .moments import PixelMoments

__all__ = ["SimulatedSweep", "accumulate_sweep"]

ExposeFn = Callable[[float, float, np.random.Generator], np.ndarray]


@dataclass
class SimulatedSweep:
    """Accumulated sweep: ``dark``, ``levels`` and what was asked of the light source."""

    dark: PixelMoments
    levels: list[PixelMoments]
    photons: np.ndarray
    exposure_s: float
    level_darks: list[PixelMoments] | None = None
    light_factors: list[np.ndarray] = field(default_factory=list)


def _fill(pm: PixelMoments, n: int, make: Callable[[int], np.ndarray], chunk: int) -> None:
    buf: list[np.ndarray] = []
    for i in range(n):
        buf.append(make(i))
        if len(buf) == chunk:
            pm.add(np.stack(buf))
            buf.clear()
    if buf:
        pm.add(np.stack(buf))


def accumulate_sweep(
    expose: ExposeFn,
    shape: tuple[int, int],
    photons: Sequence[float],
    *,
    frames: int = 200,
    dark_frames: int = 200,
    exposure_s: float = 0.01,
    flicker: float = 0.0,
    drift: float = 0.0,
    level_darks: int = 0,
    rng: np.random.Generator | int | None = None,
    chunk: int = 8,
) -> SimulatedSweep:
    """Simulate dark frames and flat-field levels and fold them into `PixelMoments`.

    Parameters
    ----------
    expose : callable(photons, exposure_s, rng) -> integer ndarray (H, W)
        Frame source, e.g. ``SensorModel.expose``.
    shape : (H, W)
        Frame shape.
    photons : sequence of float
        Mean photons per pixel of each level.
    frames, dark_frames : int
        Frames per level and dark frames.
    exposure_s : float
        Exposure time, s.
    flicker : float
        Relative rms of a frame-to-frame (Gaussian) light fluctuation.
    drift : float
        Relative linear change of the light over each level.
    level_darks : int
        If > 0, also take that many dark frames per level (EMVA protocol).
    rng : Generator or int, optional
        Random source.
    chunk : int
        Frames folded in per ``add`` call.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    dark = PixelMoments(shape)
    _fill(dark, dark_frames, lambda i: expose(0.0, exposure_s, rng), chunk)
    levels, ldarks, factors = [], [], []
    for ph in photons:
        lv = PixelMoments(shape, higher=False)
        f = 1.0 + flicker * rng.standard_normal(frames)
        f *= 1.0 + drift * (np.arange(frames) / max(frames - 1, 1) - 0.5)
        factors.append(f)

        def make(i: int, ph: float = ph, f: np.ndarray = f) -> np.ndarray:
            return expose(ph * f[i], exposure_s, rng)

        _fill(lv, frames, make, chunk)
        levels.append(lv)
        if level_darks:
            d = PixelMoments(shape)
            _fill(d, level_darks, lambda i: expose(0.0, exposure_s, rng), chunk)
            ldarks.append(d)
    return SimulatedSweep(
        dark=dark,
        levels=levels,
        photons=np.asarray(photons, np.float64),
        exposure_s=exposure_s,
        level_darks=ldarks or None,
        light_factors=factors,
    )
