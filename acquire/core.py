"""Open a Micro-Manager core: the simulated rig, a real ``.cfg``, or pycromanager.

Everything downstream (`rawsigma.acquire.sweep`, `rawsigma.acquire.stack`,
`rawsigma.acquire.identity`) talks to the returned object through the ordinary
MMCore API only, so the simulated rig and a real rig run the same code.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rawsigma.errors import AcquisitionError, InputFileError

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = [
    "open_core",
    "close_core",
    "sim_rig_config",
    "set_properties",
    "PycromanagerCore",
    "SIM_BUFFER_MB",
    "cores_alive",
]

#: Sequence (circular) buffer of the simulated rig, MB. Frames are consumed as fast
#: as they are made, so a small buffer suffices and keeps the process footprint low.
SIM_BUFFER_MB = 96

# Cores made by `open_core`, so that a caller can collect them on the main thread:
# a core freed by the garbage collector while a camera thread calls back into Python
# can abort the process (pymmcore-plus ``onPropertyChanged``, SIGABRT).
_OPENED: weakref.WeakSet[Any] = weakref.WeakSet()


def cores_alive() -> int:
    """Number of cores opened by `open_core` that have not been freed yet."""
    return len(_OPENED)


def sim_rig_config() -> Path:
    """Path of the packaged ``sim_rig.cfg`` (camera ``Camera``, light source ``LED``)."""
    return Path(str(resources.files("rawsigma.hardware_profiles").joinpath("sim_rig.cfg")))


def _quiet_discovery() -> None:
    # UniMMCore looks for a Micro-Manager installation for C++ adapters and logs an
    # error when there is none; the simulated rig needs none.
    logging.getLogger("pymmcore-plus").setLevel(logging.CRITICAL)


def set_properties(core: MMCore, properties: Mapping[str, Any]) -> None:
    """Set ``{"Device.Property" (or "Device-Property"): value}`` on a core.

    Raises
    ------
    AcquisitionError
        If a key is malformed or the device rejects the value.
    """
    for key, value in properties.items():
        m = re.match(r"^([^.\-]+)[.\-](.+)$", key)
        if not m:
            raise AcquisitionError(f"property {key!r}: expected 'Device.Property'")
        dev, prop = m.groups()
        try:
            core.setProperty(dev, prop, value)
        except Exception as exc:  # noqa: BLE001 - reported with the property
            raise AcquisitionError(f"cannot set {dev}.{prop} = {value!r}: {exc}") from exc


def open_core(
    config: str | os.PathLike | None = None,
    properties: Mapping[str, Any] | None = None,
) -> Any:
    """Return a loaded Micro-Manager core.

    Parameters
    ----------
    config : None, "sim", path or "pycromanager"
        ``None`` or ``"sim"``: the simulated rig (`SimCamera` ``Camera`` + `SimLightSource`
        ``LED``) through ``UniMMCore``, with a `SIM_BUFFER_MB` sequence buffer. A path:
        that Micro-Manager ``.cfg``, loaded by
        ``UniMMCore`` when it has ``#py`` lines, else by ``CMMCorePlus`` (needs a
        Micro-Manager installation with the device adapters). ``"pycromanager"``: a
        thin bridge to a Micro-Manager application already running with its Java
        server enabled (optional ``pycromanager`` extra). The bridge maps the MMCore
        calls rawsigma uses onto pycromanager's snake_case Java core; it is NOT
        tested against a live Micro-Manager here (no hardware or Java in CI), only
        its import error path is.
    properties : mapping, optional
        ``{"Device.Property": value}`` set after loading (e.g.
        ``{"Camera.SensorWidth": 64}``).

    Returns
    -------
    CMMCorePlus, UniMMCore or PycromanagerCore

    Raises
    ------
    InputFileError
        If the config file does not exist or fails to load.
    AcquisitionError
        If pycromanager is missing or cannot connect.
    """
    if config is not None and str(config) == "pycromanager":
        core: Any = PycromanagerCore.connect()
    else:
        from pymmcore_plus import CMMCorePlus
        from pymmcore_plus.experimental.unicore import UniMMCore

        sim = config is None or str(config) == "sim"
        if sim:
            path = sim_rig_config()
            use_uni = True
        else:
            path = Path(str(config)).expanduser()
            if not path.is_file():
                raise InputFileError(f"{path}: Micro-Manager config file not found")
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                raise InputFileError(f"{path}: cannot read config ({exc})") from exc
            use_uni = any(line.lstrip().startswith("#py ") for line in text.splitlines())
        _quiet_discovery()
        core = UniMMCore() if use_uni else CMMCorePlus()
        try:
            core.loadSystemConfiguration(str(path))
        except Exception as exc:  # noqa: BLE001 - reported with the file name
            raise InputFileError(f"{path}: cannot load Micro-Manager config: {exc}") from exc
        if sim:
            core.setCircularBufferMemoryFootprint(SIM_BUFFER_MB)
            _sim_pixel_size(core)
        _OPENED.add(core)
    if properties:
        set_properties(core, properties)
    return core


def _sim_pixel_size(core: MMCore, um: float = 6.5) -> None:
    """Give the simulated rig a pixel size (OME writers of pymmcore-plus MDA need one)."""
    try:
        if not core.getAvailablePixelSizeConfigs():
            core.definePixelSizeConfig("sim")
            core.setPixelSizeUm("sim", um)
            core.setPixelSizeConfig("sim")
    except Exception:  # noqa: BLE001, S110 - optional nicety
        pass


def close_core(core: MMCore, timeout_s: float = 5.0) -> None:
    """Stop any sequence acquisition, wait for it, and unload the devices; never raises.

    Call it before the process exits: a camera thread still running (or calling
    back into Python) while the interpreter shuts down can abort the process
    ("FATAL: exception not rethrown", SIGABRT).
    """
    import time

    if isinstance(core, PycromanagerCore):
        return  # the devices belong to the running Micro-Manager
    try:
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
        t_end = time.monotonic() + timeout_s
        while core.isSequenceRunning() and time.monotonic() < t_end:
            time.sleep(0.005)
    except Exception:  # noqa: BLE001, S110 - best effort at shutdown
        pass
    try:
        core.unloadAllDevices()
    except Exception:  # noqa: BLE001, S110
        pass


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class PycromanagerCore:
    """Expose pycromanager's Java core with the camelCase MMCore names rawsigma uses.

    Unknown attributes are forwarded as ``fooBar`` → ``foo_bar``; the image calls
    return numpy arrays shaped (height, width). Untested against a live
    Micro-Manager (see `open_core`).
    """

    def __init__(self, java_core: Any) -> None:
        self._j = java_core

    @classmethod
    def connect(cls) -> PycromanagerCore:
        """Connect to a running Micro-Manager (Tools > Options > Run server)."""
        try:
            from pycromanager import Core  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError as exc:
            raise AcquisitionError(
                "pycromanager is not installed: pip install 'rawsigma[pycromanager]'"
            ) from exc
        try:
            return cls(Core())
        except Exception as exc:  # noqa: BLE001
            raise AcquisitionError(
                f"cannot connect to Micro-Manager through pycromanager: {exc}"
            ) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._j, _snake(name))

    def _tagged_to_array(self, tagged: Any) -> Any:
        import numpy as np

        tags = tagged.tags
        h, w = int(tags["Height"]), int(tags["Width"])
        return np.asarray(tagged.pix).reshape(h, w).astype(np.uint16, copy=False)

    def getImage(self) -> Any:  # noqa: N802 - MMCore name
        return self._tagged_to_array(self._j.get_tagged_image())

    def popNextImage(self) -> Any:  # noqa: N802
        return self._tagged_to_array(self._j.pop_next_tagged_image())

    def getROI(self, *label: str) -> list[int]:  # noqa: N802
        r = self._j.get_roi(*label)
        return [int(r.x), int(r.y), int(r.width), int(r.height)]

    def getDevicePropertyNames(self, label: str) -> tuple[str, ...]:  # noqa: N802
        names = self._j.get_device_property_names(label)
        return tuple(names.get(i) for i in range(names.size()))
