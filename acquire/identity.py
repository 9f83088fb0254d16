"""Read a camera's identity (model, serial, mode, geometry) from a Micro-Manager core."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rawsigma.calib.profile import CameraIdentity
from rawsigma.errors import AcquisitionError

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = ["read_identity", "camera_properties"]

# Property names used by common Micro-Manager camera adapters, most specific first.
_MODEL = ("CameraName", "Camera Name", "Model", "CameraModel")
_SERIAL = ("CameraID", "Serial", "SerialNumber", "Serial Number", "Camera Serial Number")
_READOUT = ("ReadoutMode", "Readout Mode", "ScanMode", "ReadoutRate", "PixelReadoutRate")
_GAIN = ("GainMode", "Gain Mode", "Sensitivity/DynamicRange", "Gain", "PreAmpGain", "EMGain")
_TEMP = ("CCDTemperature", "SensorTemperature", "Sensor Temperature", "Temperature")
_BITS = ("BitDepth", "Bit Depth", "PixelBitDepth", "ADC", "BitDepthMode")


def camera_properties(core: MMCore, camera: str) -> dict[str, str]:
    """All readable properties of ``camera`` as strings (unreadable ones skipped)."""
    out: dict[str, str] = {}
    for name in core.getDevicePropertyNames(camera):
        try:
            out[str(name)] = str(core.getProperty(camera, name))
        except Exception:  # noqa: BLE001, S112 - some adapters fail on write-only props
            continue
    return out


def _first(props: dict[str, str], names: tuple[str, ...]) -> str:
    for n in names:
        if props.get(n, "") != "":
            return props[n]
    return ""


def _int_in(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_identity(core: MMCore, camera: str | None = None) -> CameraIdentity:
    """Read the current camera's identity through the ordinary MMCore API.

    Parameters
    ----------
    core : CMMCorePlus-like
        A loaded core.
    camera : str, optional
        Camera label (default: the core's current camera).

    Returns
    -------
    CameraIdentity
        ``roi`` is ``core.getROI`` (binned pixels, top-left origin); ``sensor_shape``
        is measured by clearing the ROI momentarily and restoring it. ``bit_depth``
        comes from a bit-depth property when the camera has one (Python cameras
        report only their container dtype through ``getImageBitDepth``), else from
        ``getImageBitDepth``. ``extra`` records every camera property.

    Raises
    ------
    AcquisitionError
        If the core has no camera.
    """
    label = camera or core.getCameraDevice()
    if not label:
        raise AcquisitionError("no camera device is selected in the Micro-Manager core")
    props = camera_properties(core, label)
    bits = _int_in(_first(props, _BITS)) or int(core.getImageBitDepth())
    binning = _int_in(props.get("Binning", "1")) or 1
    try:
        roi = tuple(int(v) for v in core.getROI(label))
    except Exception:  # noqa: BLE001
        roi = (0, 0, int(core.getImageWidth()), int(core.getImageHeight()))
    sensor_shape = _full_sensor_shape(core, label, roi)
    vendor = ""
    try:
        vendor = str(core.getDeviceLibrary(label))
    except Exception:  # noqa: BLE001
        pass
    model = _first(props, _MODEL)
    if not model:
        try:
            model = str(core.getDeviceName(label))
        except Exception:  # noqa: BLE001
            model = ""
    exposure: float | None
    try:
        exposure = float(core.getExposure())
    except Exception:  # noqa: BLE001
        exposure = _float(props.get("Exposure", ""))
    return CameraIdentity(
        camera=str(label),
        model=model,
        serial=_first(props, _SERIAL),
        vendor=vendor,
        bit_depth=int(bits),
        binning=int(binning),
        roi=roi,  # type: ignore[arg-type]
        sensor_shape=sensor_shape,
        readout_mode=_first(props, _READOUT),
        gain_mode=_first(props, _GAIN),
        exposure_ms=exposure,
        temperature_c=_float(_first(props, _TEMP)),
        extra=props,
    )


def _full_sensor_shape(core: MMCore, label: str, roi: tuple[int, ...]) -> tuple[int, int]:
    """Full binned sensor (rows, cols): clear the ROI, read the size, restore the ROI."""
    x, y, w, h = roi
    try:
        if core.isSequenceRunning():
            raise RuntimeError("sequence running")
        if core.getCameraDevice() != label:
            raise RuntimeError("not the current camera")
        core.clearROI()
        full = (int(core.getImageHeight()), int(core.getImageWidth()))
        if (x, y, w, h) != (0, 0, full[1], full[0]):
            core.setROI(label, x, y, w, h)
        return full
    except Exception:  # noqa: BLE001 - fall back to "ROI is all we know"
        return (y + h, x + w)
