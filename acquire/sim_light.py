"""Simulated stabilised light source, and the registry that couples it to the camera.

`SimLightSource` is an ordinary `pymmcore_plus.experimental.unicore` shutter device
(``hardware_profiles/sim_rig.cfg`` loads it under the label ``LED``; it is also
importable from `rawsigma.acquire.devices`).

Coupling. Python devices only see a restricted core proxy, so the simulated camera
finds its light source through a small process-wide registry: every simulated
device registers itself under (its core, its label) when initialised, and the
camera looks up the label in its ``LightSource`` property within the same core
(`find_light_source`); `sim_device` returns any registered device (tests, demos).

Time. The slow drift runs on a virtual clock advanced by each exposure (so drift is
reproducible); settling after an intensity change runs on the wall clock and makes
the device report busy until settled, which ``core.waitForDevice`` honours.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import ShutterDevice, pymm_property

if TYPE_CHECKING:
    from .devices import SimCamera
    from .protocols import CorePlus

__all__ = [
    "SimLightSource",
    "find_light_source",
    "register_device",
    "sim_device",
    "unregister_device",
]

_REGISTRY: dict[tuple[Any, str], weakref.ReferenceType[Any]] = {}
_REG_LOCK = threading.Lock()


def _core_key(device: Any) -> Any:
    """Identity of the core a Python device is loaded into (None if not loaded).

    The core's ``propertyChanged`` signal object itself, not its ``id()``: with the
    Qt signal backend (a QApplication exists) every access yields a new
    ``pyqtBoundSignal``, but those compare and hash equal for the same core.
    """
    try:
        return device.core.events.propertyChanged
    except AttributeError:
        return None


def register_device(device: Any) -> None:
    """Record a simulated device under (its core, its label); called on initialise."""
    key = _core_key(device)
    if key is not None:
        with _REG_LOCK:
            _REGISTRY[(key, device.get_label())] = weakref.ref(device)


def unregister_device(device: Any) -> None:
    """Drop a simulated device from the registry; called on shutdown."""
    key = (_core_key(device), device.get_label())
    with _REG_LOCK:
        ref = _REGISTRY.get(key)  # type: ignore[arg-type]
        # ids can be reused after a core is garbage-collected: only drop our own entry
        if ref is not None and ref() in (device, None):
            del _REGISTRY[key]  # type: ignore[arg-type]


def find_light_source(camera: SimCamera, label: str) -> SimLightSource | None:
    """Return the `SimLightSource` labelled ``label`` in the camera's core, if any."""
    key = _core_key(camera)
    if key is None:
        return None
    with _REG_LOCK:
        ref = _REGISTRY.get((key, label))
    dev = ref() if ref is not None else None
    return dev if isinstance(dev, SimLightSource) else None


def sim_device(core: CorePlus, label: str) -> Any:
    """Return the simulated device object loaded under ``label`` in ``core``.

    For tests and demos (e.g. ``sim_device(core, "Camera").sensor_model`` is the
    truth). Raises KeyError if ``label`` is not a simulated device of that core.
    """
    with _REG_LOCK:
        ref = _REGISTRY.get((core.events.propertyChanged, label))
    dev = ref() if ref is not None else None
    if dev is None:
        raise KeyError(f"no simulated device {label!r} in this core")
    return dev


class SimLightSource(ShutterDevice):
    """A stabilised LED with an intensity control and a shutter.

    Properties
    ----------
    Intensity : float, 0–100 %
        Output relative to ``MaxPhotonFlux``.
    MaxPhotonFlux : float
        Photons per native sensor pixel per second at 100 % (flat centre).
    Vignetting : float, 0–1
        Flat-field fall-off: relative loss at the sensor corners (quadratic in radius).
    Flicker : float, %
        Frame-to-frame common-mode rms fluctuation of the output.
    Drift : float, % per second
        Linear drift of the output on the virtual exposure clock.
    SettlingTime_ms : float
        After an intensity change the output approaches the new value exponentially
        (within 1 % after this time) and the device reports busy meanwhile.
    Seed : int
        Seed of the flicker draws (setting it restarts the draws and the drift clock).
    State : int, 0 or 1
        The shutter (1 = open) as a property, as Micro-Manager shutter adapters have.
    """

    def __init__(self) -> None:
        super().__init__()
        self._state_lock = threading.Lock()
        self._open = False
        self._intensity = 0.0
        self._prev_intensity = 0.0
        self._changed_at = 0.0
        self._max_flux = 4.0e6
        self._vignetting = 0.0
        self._flicker = 0.0
        self._drift = 0.0
        self._settle_ms = 0.0
        self._seed = 0
        self._rng = np.random.default_rng(0)
        self._virtual_s = 0.0
        self._flat_cache: dict[tuple, np.ndarray] = {}

    # ---------------------------------------------------------------- lifecycle
    def description(self) -> str:
        return "rawsigma simulated stabilised LED (intensity, shutter, flicker, drift)"

    def initialize(self) -> None:
        register_device(self)

    def shutdown(self) -> None:
        unregister_device(self)

    def busy(self) -> bool:
        return self._settling_left() > 0

    # ---------------------------------------------------------------- shutter
    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)

    # ---------------------------------------------------------------- properties
    @pymm_property(name="State", limits=(0, 1))
    def state(self) -> int:
        """Shutter state as a property (1 = open), like Micro-Manager shutter adapters.

        Lets an MDA sequence's setup event (or a config preset) open or close the
        light, and is recorded in the per-image metadata of Micro-Manager datasets.
        """
        return int(self._open)

    @state.setter
    def state(self, value: int) -> None:
        self._open = bool(int(float(value)))

    @pymm_property(name="Intensity", limits=(0.0, 100.0))
    def intensity(self) -> float:
        """Output intensity, % of the maximum."""
        return self._intensity

    @intensity.setter
    def intensity(self, value: float) -> None:
        with self._state_lock:
            self._prev_intensity = self._current_intensity()
            self._intensity = float(value)
            self._changed_at = time.monotonic()

    @pymm_property(name="MaxPhotonFlux", limits=(0.0, 1e12))
    def max_photon_flux(self) -> float:
        """Photons per native pixel per second at 100 %."""
        return self._max_flux

    @max_photon_flux.setter
    def max_photon_flux(self, value: float) -> None:
        self._max_flux = float(value)

    @pymm_property(name="Vignetting", limits=(0.0, 1.0))
    def vignetting(self) -> float:
        """Relative fall-off at the sensor corners."""
        return self._vignetting

    @vignetting.setter
    def vignetting(self, value: float) -> None:
        self._vignetting = float(value)
        self._flat_cache.clear()

    @pymm_property(name="Flicker", limits=(0.0, 50.0))
    def flicker(self) -> float:
        """Frame-to-frame rms fluctuation, %."""
        return self._flicker

    @flicker.setter
    def flicker(self, value: float) -> None:
        self._flicker = float(value)

    @pymm_property(name="Drift", limits=(-100.0, 100.0))
    def drift(self) -> float:
        """Linear drift, % per second of exposure time."""
        return self._drift

    @drift.setter
    def drift(self, value: float) -> None:
        self._drift = float(value)

    @pymm_property(name="SettlingTime_ms", limits=(0.0, 60000.0))
    def settling_time_ms(self) -> float:
        """Settling time after an intensity change, ms."""
        return self._settle_ms

    @settling_time_ms.setter
    def settling_time_ms(self, value: float) -> None:
        self._settle_ms = float(value)

    @pymm_property(name="Seed", limits=(0, 2**31 - 1))
    def seed(self) -> int:
        """Seed of the flicker draws."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        with self._state_lock:
            self._seed = int(float(value))
            self._rng = np.random.default_rng(self._seed)
            self._virtual_s = 0.0

    # ---------------------------------------------------------------- physics
    def _settling_left(self) -> float:
        if self._settle_ms <= 0:
            return 0.0
        return max(self._settle_ms / 1000 - (time.monotonic() - self._changed_at), 0.0)

    def _current_intensity(self) -> float:
        if self._settle_ms <= 0:
            return self._intensity
        tau = self._settle_ms / 1000 / np.log(100.0)  # within 1 % after settle time
        dt = time.monotonic() - self._changed_at
        w = float(np.exp(-dt / tau))
        return self._intensity + (self._prev_intensity - self._intensity) * w

    def relative_output(self, exposure_s: float) -> float:
        """Output during the next exposure relative to 100 % (0 when closed).

        Advances the virtual clock by ``exposure_s`` and draws the flicker.
        """
        with self._state_lock:
            t_mid = self._virtual_s + 0.5 * exposure_s
            self._virtual_s += exposure_s
            noise = self._rng.standard_normal()  # drawn even when closed: reproducible
            if not self._open:
                return 0.0
            level = self._current_intensity() / 100.0
            level *= 1.0 + self._drift / 100.0 * t_mid
            level *= 1.0 + self._flicker / 100.0 * noise
            return max(level, 0.0)

    def flat_field(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Relative irradiance over a native sensor of ``shape`` (None if flat)."""
        if self._vignetting <= 0:
            return None
        key = (tuple(shape), self._vignetting)
        flat = self._flat_cache.get(key)
        if flat is None:
            h, w = shape
            y = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / max(h / 2, 1)
            x = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / max(w / 2, 1)
            r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0
            flat = (1.0 - self._vignetting * r2).astype(np.float32)
            self._flat_cache = {key: flat}
        return flat
