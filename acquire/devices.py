"""Simulated camera and light source as pymmcore-plus Python devices.

`SimCamera` lives here; `SimLightSource`, the device registry that couples the
two, `find_light_source` and `sim_device` live in `rawsigma.acquire.sim_light` and
are re-exported, so ``rawsigma.acquire.devices`` stays the one import for both.
Both are ordinary `pymmcore_plus.experimental.unicore` devices, so the acquisition
code drives them through the plain MMCore API (``setProperty``,
``setShutterOpen``, ``snapImage``, ``startSequenceAcquisition`` /
``popNextImage``) exactly as it would drive real hardware.
``hardware_profiles/sim_rig.cfg`` loads them with ``#py`` lines under the labels
``Camera`` and ``LED``.

Coupling. The camera looks up the light source labelled in its ``LightSource``
property (default ``"LED"``) within the same core (see `sim_light`). Tests may
also set ``SimCamera.light_source`` directly.

Time. Frames are produced as fast as numpy allows (``RealTime = "No"``) or paced
at the exposure time (``"Yes"``). The light source's slow drift runs on a
virtual clock advanced by each exposure (so drift is reproducible); its settling
after an intensity change runs on the wall clock and makes the device report
busy until settled, which ``core.waitForDevice`` honours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice, pymm_property

from .sensor_model import SensorModel
from .sim_light import (
    SimLightSource,
    find_light_source,
    register_device,
    sim_device,
    unregister_device,
)

__all__ = ["SimCamera", "SimLightSource", "find_light_source", "sim_device"]


def _block_sum(a: np.ndarray, b: int) -> np.ndarray:
    if b == 1:
        return a
    h, w = a.shape[0] // b, a.shape[1] // b
    return a[: h * b, : w * b].reshape(h, b, w, b).sum(axis=(1, 3), dtype=np.float32)


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
        register_device(self)

    def shutdown(self) -> None:
        unregister_device(self)

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
