"""Dark stacks at several exposure times (for the per-pixel dark current).

The light is shut off (shutter closed), every exposure time gets ``frames`` dark
frames through the ordinary sequence-acquisition API (`accumulate_frames`), and the
camera's exposure, shutter and auto-shutter are restored afterwards. The fit is done
in ``rawsigma.calib.darkcurrent`` (acquire never fits).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rawsigma.errors import AcquisitionError

from .stream import accumulate_frames, seed_devices

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = ["acquire_dark_series", "camera_temperature"]

_TEMPERATURE_PROPS = ("CCDTemperature", "Temperature", "SensorTemperature", "CCD Temperature")


def camera_temperature(core: MMCore, camera: str) -> float | None:
    """Sensor temperature (deg C) reported by the camera, or None."""
    for name in _TEMPERATURE_PROPS:
        with contextlib.suppress(Exception):
            if core.hasProperty(camera, name):
                return float(core.getProperty(camera, name))
    return None


def acquire_dark_series(
    core: MMCore,
    exposures_ms: Sequence[float],
    frames: int,
    *,
    camera: str | None = None,
    shutter: str | None = None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Any], list[float | None]]:
    """Take ``frames`` dark frames at each exposure time.

    Parameters
    ----------
    core : CMMCorePlus-like
    exposures_ms : sequence of float
        Exposure times, ms.
    frames : int
        Dark frames per exposure (>= 2).
    camera, shutter : str, optional
        Device labels (default: the core's current camera and shutter).
    seed : int, optional
        Seed for simulated devices (``Seed`` property), offset per exposure.
    progress : callable(done, total), optional
        Called after each exposure's frames.

    Returns
    -------
    darks : list of PixelMoments
        One accumulator per exposure.
    temperatures : list of float or None
        Sensor temperature read after each exposure's frames (None if not reported).

    Raises
    ------
    AcquisitionError
        No shutter to close, fewer than 2 frames, a camera failure.
    """
    from rawsigma.calib.moments import PixelMoments

    cam = camera or core.getCameraDevice()
    sh = shutter if shutter is not None else core.getShutterDevice()
    if not sh:
        raise AcquisitionError(
            "no shutter device: dark frames at several exposures need the light closed "
            "(set Core-Shutter in the config)"
        )
    if frames < 2:
        raise AcquisitionError(f"{frames} dark frame(s) per exposure; at least 2 are needed")
    saved = {"auto": core.getAutoShutter(), "exposure": core.getExposure(cam)}
    with contextlib.suppress(Exception):
        saved["open"] = core.getShutterOpen(sh)
    darks: list[Any] = []
    temps: list[float | None] = []
    try:
        core.setAutoShutter(False)
        core.setShutterOpen(sh, False)
        core.waitForDevice(sh)
        h, w = int(core.getImageHeight()), int(core.getImageWidth())
        for i, t in enumerate(exposures_ms):
            core.setExposure(cam, float(t))
            core.waitForDevice(cam)
            if seed is not None:
                seed_devices(core, {cam, sh}, seed + 7919 * (i + 1))
            pm = PixelMoments((h, w))
            accumulate_frames(core, cam, frames, pm, chunk_frames=8)
            darks.append(pm)
            temps.append(camera_temperature(core, cam))
            if progress is not None:
                progress(i + 1, len(exposures_ms))
    finally:
        with contextlib.suppress(Exception):
            core.setExposure(cam, saved["exposure"])
        with contextlib.suppress(Exception):
            if saved.get("open") is not None:
                core.setShutterOpen(sh, saved["open"])
        with contextlib.suppress(Exception):
            core.setAutoShutter(bool(saved["auto"]))
    return darks, temps
