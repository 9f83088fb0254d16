"""The parts of a camera profile that its file format needs: defect bits, map names,
the camera identity and the JSON encoding.

They live apart from :class:`~rawsigma.calib.profile.CameraProfile` so that
:mod:`~rawsigma.calib.profile_io` and :mod:`~rawsigma.calib.compare` can use them
without importing the profile class (which imports them: no import cycle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import ProfileError

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFECT_HOT = 1
DEFECT_DEAD = 2
DEFECT_NOISY = 4  # noisy / random-telegraph-signal pixels
DEFECT_NONLINEAR = 8
DEFECT_BAD_GAIN = 16  # gain <= 0 or an outlier
DEFECT_SATURATED = 32  # saturates below the top sweep level

DEFECT_NAMES: dict[int, str] = {
    DEFECT_HOT: "hot",
    DEFECT_DEAD: "dead",
    DEFECT_NOISY: "noisy",
    DEFECT_NONLINEAR: "nonlinear",
    DEFECT_BAD_GAIN: "bad_gain",
    DEFECT_SATURATED: "saturated",
}

#: Map attributes of :class:`CameraProfile`, in the order used for hashing and files.
REQUIRED_MAPS = ("offset", "gain", "read_noise")
OPTIONAL_MAPS = ("offset_se", "gain_se", "read_noise_se", "prnu", "defects")
MAP_NAMES = REQUIRED_MAPS + OPTIONAL_MAPS
#: Optional dark-current maps (ADU/s), stored in the ``/dark_current`` group.
DARK_MAPS = ("dark_current", "dark_current_se")

Roi = tuple[int, int, int, int]


@dataclass
class CameraIdentity:
    """What camera, in which mode, a profile was measured on.

    Parameters
    ----------
    camera, model, serial, vendor : str
        Micro-Manager device label / adapter, model, serial number, vendor.
    bit_depth : int
        ADC bit depth; the largest raw value is ``2**bit_depth - 1``.
    binning : int
        Symmetric binning factor (1 = none).
    roi : (x, y, width, height) or None
        Region of the profile in binned sensor pixels, 0-based, top-left origin,
        exclusive end. ``None`` means "the whole map", filled in by
        :class:`CameraProfile` as ``(0, 0, W, H)``.
    sensor_shape : (rows, cols) or None
        Full binned sensor size; ``None`` is filled in as the map shape plus the ROI
        origin.
    readout_mode, gain_mode : str
        Camera readout / gain mode names as reported by the camera.
    exposure_ms, temperature_c : float or None
        Exposure time (ms) and sensor temperature (deg C) where known.
    extra : dict of str to str
        Other recorded device properties.
    """

    camera: str = ""
    model: str = ""
    serial: str = ""
    vendor: str = ""
    bit_depth: int = 16
    binning: int = 1
    roi: Roi | None = None
    sensor_shape: tuple[int, int] | None = None
    readout_mode: str = ""
    gain_mode: str = ""
    exposure_ms: float | None = None
    temperature_c: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of all fields (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["roi"] = None if self.roi is None else [int(v) for v in self.roi]
        d["sensor_shape"] = (
            None if self.sensor_shape is None else [int(v) for v in self.sensor_shape]
        )
        d["extra"] = {str(k): str(v) for k, v in self.extra.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CameraIdentity:
        """Inverse of :meth:`to_dict`; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        extra = dict(kw.pop("extra", {}) or {})
        extra.update({k: str(v) for k, v in d.items() if k not in names})
        if kw.get("roi") is not None:
            kw["roi"] = tuple(int(v) for v in kw["roi"])
        if kw.get("sensor_shape") is not None:
            kw["sensor_shape"] = tuple(int(v) for v in kw["sensor_shape"])
        return cls(**kw, extra=extra)


def _as_map(name: str, value: Any, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ProfileError(f"profile: map {name!r} must be 2-D, got shape {arr.shape}")
    if dtype is np.uint8:
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ProfileError(f"profile: map {name!r} must be an integer bitmask, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ProfileError(f"profile: map {name!r} values must fit in uint8")
    elif not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ProfileError(f"profile: map {name!r} must be numeric, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def to_json(obj: Any) -> str:
    """Serialise ``obj`` to JSON, converting numpy values, paths and dataclasses."""
    return json.dumps(obj, default=_json_default, sort_keys=True)
