"""Simulated camera and light source as pymmcore-plus Python devices.

Both are ordinary `pymmcore_plus.experimental.unicore` devices, so the acquisition
code drives them through the plain MMCore API (``setProperty``,
``setShutterOpen``, ``snapImage``, ``startSequenceAcquisition`` /
``popNextImage``) exactly as it would drive real hardware.
``hardware_profiles/sim_rig.cfg`` loads them with ``#py`` lines under the labels
``Camera`` and ``LED``.

Coupling. Python devices only see a restricted core proxy, so the camera finds
its light source through a small process-wide registry: every `SimLightSource`
registers itself under (its core, its label) when initialised, and the camera
looks up the label in its ``LightSource`` property (default ``"LED"``) within
the same core. Tests may also set ``SimCamera.light_source`` directly.

Time. Frames are produced as fast as numpy allows (``RealTime = "No"``) or paced
at the exposure time (``"Yes"``). The light source's slow drift runs on a
virtual clock advanced by each exposure (so drift is reproducible); its settling
after an intensity change runs on the wall clock and makes the device report
busy until settled, which ``core.waitForDevice`` honours.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice, ShutterDevice, pymm_property

from .sensor_model import SensorModel

__all__ = ["SimCamera", "SimLightSource", "find_light_source", "sim_device"]

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


def _register(device: Any) -> None:
    key = _core_key(device)
    if key is not None:
        with _REG_LOCK:
            _REGISTRY[(key, device.get_label())] = weakref.ref(device)


def _unregister(device: Any) -> None:
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


def sim_device(core: Any, label: str) -> Any:
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


def _block_sum(a: np.ndarray, b: int) -> np.ndarray:
    if b == 1:
        return a
    h, w = a.shape[0] // b, a.shape[1] // b
    return a[: h * b, : w * b].reshape(h, b, w, b).sum(axis=(1, 3), dtype=np.float32)


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
        _register(self)

    def shutdown(self) -> None:
        _unregister(self)

    def busy(self) -> bool:
        return self._settling_left() > 0

    # ---------------------------------------------------------------- shutter
    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)

    # ---------------------------------------------------------------- properties
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


class SimCamera(CameraDevice):
    """A simulated camera whose physics is a `SensorModel`.

    Properties
    ----------
    Exposure (ms), Binning (1, 2, 4), BitDepth (12, 16), Preset (scmos, ccd),
    SensorWidth / SensorHeight (native pixels), MapSeed (seed of the preset's maps),
    MapsFile (gain/read-noise-variance TIFF; overrides Preset when set), Seed (seed
    of the frame noise; setting it restarts the draws), LightSource (label of a
    `SimLightSource`), Sample ("LightSource" or "Image"), SampleFile (photon-flux
    TIFF, photons/pixel/s at 100 % illumination), RealTime (pace frames at the
    exposure time), CameraName, CameraID (serial), ReadoutMode, CCDTemperature.

    ROI is in binned pixels, origin top-left of the full binned sensor; changing
    the binning clears the ROI (as Micro-Manager cameras do).
    """

    def __init__(self) -> None:
        super().__init__()
        self._exposure_ms = 10.0
        self._binning = 1
        self._bit_depth: int | None = None
        self._preset = "scmos"
        self._width = 512
        self._height = 512
        self._map_seed = 0
        self._maps_file = ""
        self._seed = 0
        self._rng = np.random.default_rng(0)
        self._light_label = "LED"
        self._sample_mode = "LightSource"
        self._sample_file = ""
        self._sample: np.ndarray | None = None
        self._real_time = False
        self._roi: tuple[int, int, int, int] | None = None
        self._base: SensorModel | None = None
        self._active: SensorModel | None = None
        self._photon_cache: dict[tuple, np.ndarray | None] = {}
        self.light_source: SimLightSource | None = None  # explicit coupling (tests)

    # ---------------------------------------------------------------- model
    @property
    def sensor_model(self) -> SensorModel:
        """The native (unbinned, full-sensor) `SensorModel` (built lazily)."""
        if self._base is None:
            if self._maps_file:
                m = SensorModel.from_maps_file(self._maps_file, seed=self._map_seed)
            else:
                m = SensorModel.preset(
                    self._preset, (self._height, self._width), seed=self._map_seed
                )
            if self._bit_depth is not None:
                m.bit_depth = self._bit_depth
            self._base = m
            self._height, self._width = m.shape
        return self._base

    def set_sensor_model(self, model: SensorModel) -> None:
        """Replace the sensor physics (e.g. a custom model in a test or demo)."""
        self._base = model
        self._height, self._width = model.shape
        self._bit_depth = model.bit_depth
        self._invalidate(clear_roi=True)

    @property
    def active_model(self) -> SensorModel:
        """The model of the current binning and ROI (what frames are drawn from)."""
        if self._active is None:
            m = self.sensor_model.binned(self._binning)
            if self._roi is not None:
                m = m.crop(self._roi)
            self._active = m
        return self._active

    def _invalidate(self, clear_roi: bool = False, rebuild: bool = False) -> None:
        if rebuild:
            self._base = None
        if clear_roi:
            self._roi = None
        self._active = None
        self._photon_cache.clear()

    # ---------------------------------------------------------------- camera API
    def description(self) -> str:
        return "rawsigma simulated camera (SensorModel physics)"

    def initialize(self) -> None:
        _register(self)

    def shutdown(self) -> None:
        _unregister(self)

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        exposure = float(exposure)
        if exposure < 0:
            raise ValueError(f"exposure must be >= 0 ms, got {exposure}")
        self._exposure_ms = exposure

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        b = int(float(value))
        if b not in (1, 2, 4):
            raise ValueError(f"binning must be 1, 2 or 4, got {value}")
        if b != self._binning:
            self._binning = b
            self._invalidate(clear_roi=True)

    def get_camera_name(self) -> str:
        return "SimCamera"

    def get_camera_id(self) -> str:
        src = Path(self._maps_file).stem if self._maps_file else self._preset
        return f"SIM-{src}-{self._map_seed}"

    def get_readout_mode(self) -> str:
        return "Standard"

    def get_ccd_temperature(self) -> float:
        return -10.0 if self._preset == "scmos" else -20.0

    def shape(self) -> tuple[int, int]:
        return self.active_model.shape

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def full_binned_shape(self) -> tuple[int, int]:
        """Shape of the full sensor at the current binning, (rows, cols)."""
        b = self._binning
        return (self._height // b, self._width // b)

    def get_roi(self) -> tuple[int, int, int, int]:
        if self._roi is not None:
            return self._roi
        h, w = self.full_binned_shape()
        return (0, 0, w, h)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        h, w = self.full_binned_shape()
        if x < 0 or y < 0 or width <= 0 or height <= 0 or x + width > w or y + height > h:
            raise ValueError(f"ROI ({x}, {y}, {width}, {height}) outside sensor {w}x{h}")
        self._roi = (int(x), int(y), int(width), int(height))
        self._invalidate()

    def clear_roi(self) -> None:
        self._roi = None
        self._invalidate()

    # ---------------------------------------------------------------- frames
    def _light(self) -> SimLightSource | None:
        if self.light_source is not None:
            return self.light_source
        return find_light_source(self, self._light_label)

    def _photon_map(self, light: SimLightSource | None) -> np.ndarray | None:
        """Relative photon map (per output pixel, per unit flux), None = uniform."""
        flat = light.flat_field((self._height, self._width)) if light is not None else None
        use_sample = self._sample_mode == "Image"
        key = (id(flat), use_sample, self._binning, self._roi)
        if key in self._photon_cache:
            return self._photon_cache[key]
        native: np.ndarray | None = None
        if use_sample:
            native = self._load_sample()
        if flat is not None:
            native = flat if native is None else native * flat
        out: np.ndarray | None = None
        if native is not None:
            out = _block_sum(native.astype(np.float32, copy=False), self._binning)
            if self._roi is not None:
                x, y, w, h = self._roi
                out = np.ascontiguousarray(out[y : y + h, x : x + w])
        self._photon_cache.clear()
        self._photon_cache[key] = out
        return out

    def _load_sample(self) -> np.ndarray:
        if self._sample is None:
            if not self._sample_file:
                raise ValueError("Sample is 'Image' but no SampleFile or sample array is set")
            import tifffile
            from rawsigma.errors import InputFileError

            try:
                arr = np.asarray(tifffile.imread(self._sample_file), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - reported with the file name
                raise InputFileError(f"{self._sample_file}: cannot read sample ({exc})") from exc
            self._check_sample(arr, self._sample_file)
            self._sample = arr
        return self._sample

    def _check_sample(self, arr: np.ndarray, source: str) -> None:
        from rawsigma.errors import InputFileError

        if arr.shape != (self._height, self._width):
            raise InputFileError(
                f"{source}: sample shape {arr.shape} != sensor shape "
                f"{(self._height, self._width)} (photon flux per native pixel)"
            )

    def set_sample(self, flux: np.ndarray | None) -> None:
        """Image a sample: ``flux`` is photons/pixel/s (native pixels) at 100 % light.

        ``None`` returns to imaging the bare light source.
        """
        if flux is None:
            self._sample = None
            self._sample_mode = "LightSource"
        else:
            arr = np.asarray(flux, dtype=np.float32)
            self.sensor_model  # noqa: B018 - fixes the sensor shape
            self._check_sample(arr, "sample array")
            self._sample = arr
            self._sample_mode = "Image"
        self._photon_cache.clear()

    def photons_per_frame(self, exposure_s: float) -> float | np.ndarray:
        """Mean photons per output pixel for the next frame (draws the flicker)."""
        light = self._light()
        pmap = self._photon_map(light)
        if light is None:
            level = 1.0 if self._sample_mode == "Image" else 0.0
            flux = 1.0
        else:
            level = light.relative_output(exposure_s)
            flux = 1.0 if self._sample_mode == "Image" else light.max_photon_flux
        scale = np.float32(level * flux * exposure_s)
        if pmap is None:
            return float(scale) * self._binning**2
        return pmap * scale

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
    ) -> Iterator[Mapping]:
        model = self.active_model
        exposure_s = self._exposure_ms / 1000.0
        limit = n if n is not None else 2**63
        count = 0
        while count < limit:
            t0 = time.perf_counter()
            photons = self.photons_per_frame(exposure_s)
            buf = get_buffer(model.shape, np.uint16)
            model.expose(photons, exposure_s, self._rng, out=buf)
            if self._real_time:
                time.sleep(max(exposure_s - (time.perf_counter() - t0), 0.0))
            count += 1
            yield {"SimCamera-Seed": str(self._seed), "SimCamera-Frame": str(count)}

    # ---------------------------------------------------------------- properties
    @pymm_property(name="BitDepth")
    def bit_depth(self) -> int:
        """ADC bit depth."""
        return self._bit_depth if self._bit_depth is not None else self.sensor_model.bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        bits = int(float(value))
        if bits not in (12, 16):
            raise ValueError(f"BitDepth must be 12 or 16, got {value}")
        self._bit_depth = bits
        if self._base is not None:
            self._base.bit_depth = self._bit_depth
        self._invalidate()

    @pymm_property(name="Preset", allowed_values=("scmos", "ccd"))
    def preset(self) -> str:
        """Sensor preset (ignored when MapsFile is set)."""
        return self._preset

    @preset.setter
    def preset(self, value: str) -> None:
        self._preset = str(value)
        self._bit_depth = None
        self._invalidate(clear_roi=True, rebuild=True)

    @pymm_property(name="SensorWidth", limits=(1, 16384))
    def sensor_width(self) -> int:
        """Native sensor width, pixels."""
        return self._width

    @sensor_width.setter
    def sensor_width(self, value: int) -> None:
        self._width = int(float(value))
        self._invalidate(clear_roi=True, rebuild=True)

    @pymm_property(name="SensorHeight", limits=(1, 16384))
    def sensor_height(self) -> int:
        """Native sensor height, pixels."""
        return self._height

    @sensor_height.setter
    def sensor_height(self, value: int) -> None:
        self._height = int(float(value))
        self._invalidate(clear_roi=True, rebuild=True)

    @pymm_property(name="MapSeed", limits=(0, 2**31 - 1))
    def map_seed(self) -> int:
        """Seed of the preset's per-pixel maps."""
        return self._map_seed

    @map_seed.setter
    def map_seed(self, value: int) -> None:
        self._map_seed = int(float(value))
        self._invalidate(rebuild=True)

    @pymm_property(name="MapsFile")
    def maps_file(self) -> str:
        """TIFF of (2, H, W) gain and read-noise variance maps ('' = use Preset)."""
        return self._maps_file

    @maps_file.setter
    def maps_file(self, value: str) -> None:
        self._maps_file = str(value)
        self._invalidate(clear_roi=True, rebuild=True)

    @pymm_property(name="Seed", limits=(0, 2**31 - 1))
    def seed(self) -> int:
        """Seed of the frame noise (setting restarts the draws)."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = int(float(value))
        self._rng = np.random.default_rng(self._seed)

    @pymm_property(name="LightSource")
    def light_source_label(self) -> str:
        """Label of the SimLightSource that illuminates the sensor."""
        return self._light_label

    @light_source_label.setter
    def light_source_label(self, value: str) -> None:
        self._light_label = str(value)

    @pymm_property(name="Sample", allowed_values=("LightSource", "Image"))
    def sample(self) -> str:
        """What the camera sees: the bare light source or a sample image."""
        return self._sample_mode

    @sample.setter
    def sample(self, value: str) -> None:
        if value == "Image" and self._sample is None and not self._sample_file:
            raise ValueError("set SampleFile (or call set_sample) before Sample=Image")
        self._sample_mode = str(value)
        self._photon_cache.clear()

    @pymm_property(name="SampleFile")
    def sample_file(self) -> str:
        """Photon-flux TIFF (photons/pixel/s at 100 %), native sensor shape."""
        return self._sample_file

    @sample_file.setter
    def sample_file(self, value: str) -> None:
        self._sample_file = str(value)
        self._sample = None
        self._photon_cache.clear()

    @pymm_property(name="RealTime", allowed_values=("No", "Yes"))
    def real_time(self) -> str:
        """Pace frames at the exposure time."""
        return "Yes" if self._real_time else "No"

    @real_time.setter
    def real_time(self, value: str) -> None:
        self._real_time = value == "Yes"
