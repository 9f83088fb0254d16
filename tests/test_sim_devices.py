"""The simulated rig as pymmcore-plus Python devices, driven through the MMCore API."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.core import open_core, sim_rig_config
from rawsigma.acquire.devices import sim_device
from rawsigma.acquire.identity import read_identity
from rawsigma.errors import InputFileError


@pytest.fixture
def core():
    return open_core(properties={"Camera.SensorWidth": 48, "Camera.SensorHeight": 40})


def _snap(core) -> np.ndarray:
    core.snapImage()
    return np.array(core.getImage(), copy=True)


def test_cfg_loads_with_unimmcore() -> None:
    from pymmcore_plus.experimental.unicore import UniMMCore

    c = UniMMCore()
    c.loadSystemConfiguration(str(sim_rig_config()))
    assert set(c.getLoadedDevices()) >= {"Camera", "LED"}
    assert c.getCameraDevice() == "Camera" and c.getShutterDevice() == "LED"
    assert c.isPyDevice("Camera") and c.isPyDevice("LED")
    assert "Intensity" in c.getDevicePropertyNames("LED")
    assert (c.getImageHeight(), c.getImageWidth()) == (512, 512)


def test_light_shutter_and_intensity(core) -> None:
    core.setAutoShutter(False)
    m = sim_device(core, "Camera").sensor_model
    core.setProperty("LED", "Intensity", 20)
    core.setShutterOpen("LED", False)
    dark = _snap(core).astype(float)
    core.setShutterOpen("LED", True)
    lo = _snap(core).astype(float)
    core.setProperty("LED", "Intensity", 40)
    hi = _snap(core).astype(float)
    ok = ~(m.hot | m.dead)
    assert abs(np.median(dark[ok]) - np.median(m.offset)) < 1.0
    s_lo, s_hi = np.median((lo - dark)[ok]), np.median((hi - dark)[ok])
    assert s_lo > 1000 and abs(s_hi / s_lo - 2) < 0.05
    # photons per frame = 0.2 * MaxPhotonFlux * 10 ms, times QE and gain
    expect = 0.2 * 4e6 * 0.01 * m.qe * np.median(m.gain)
    assert abs(s_lo / expect - 1) < 0.03


def test_seed_property_reproducible(core) -> None:
    core.setAutoShutter(False)
    core.setShutterOpen("LED", True)
    core.setProperty("LED", "Intensity", 10)
    core.setProperty("Camera", "Seed", 7)
    a = _snap(core)
    b = _snap(core)
    core.setProperty("Camera", "Seed", 7)
    c = _snap(core)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_roi_binning_bit_depth_and_identity(core) -> None:
    core.setProperty("Camera", "BitDepth", 12)
    core.setProperty("Camera", "Binning", 2)
    assert (core.getImageHeight(), core.getImageWidth()) == (20, 24)
    core.setROI(2, 3, 10, 8)
    assert _snap(core).shape == (8, 10)
    ident = read_identity(core)
    assert ident.roi == (2, 3, 10, 8) and ident.sensor_shape == (20, 24)
    assert ident.binning == 2 and ident.bit_depth == 12 and ident.serial == "SIM-scmos-0"
    assert list(core.getROI()) == [2, 3, 10, 8]  # restored after measuring the sensor
    core.setAutoShutter(False)
    core.setShutterOpen("LED", True)
    core.setProperty("LED", "Intensity", 100)
    assert _snap(core).max() <= 4095  # 12-bit ADC clips
    with pytest.raises(Exception, match="BitDepth"):
        core.setProperty("Camera", "BitDepth", 13)


def test_sample_image_and_vignetting(core, tmp_path) -> None:
    import tifffile

    cam = sim_device(core, "Camera")
    flux = np.zeros((40, 48), np.float32)
    flux[10:20, 10:30] = 2e5  # photons/pixel/s at 100 %
    p = tmp_path / "sample.tif"
    tifffile.imwrite(p, flux)
    core.setProperty("Camera", "SampleFile", str(p))
    core.setProperty("Camera", "Sample", "Image")
    core.setAutoShutter(False)
    core.setShutterOpen("LED", True)
    core.setProperty("LED", "Intensity", 100)
    img = _snap(core).astype(float)
    assert img[12:18, 12:28].mean() > img[30:, :].mean() + 1000
    cam.set_sample(None)
    core.setProperty("LED", "Vignetting", 0.5)
    core.setProperty("LED", "Intensity", 30)
    flat = _snap(core).astype(float)
    assert flat[18:22, 22:26].mean() > 1.3 * flat[:4, :4].mean() - 100
    tifffile.imwrite(p, np.zeros((5, 5), np.float32))
    core.setProperty("Camera", "SampleFile", str(p))
    core.setProperty("Camera", "Sample", "Image")
    with pytest.raises(Exception, match="sample shape"):
        _snap(core)


def test_flicker_changes_frame_means(core) -> None:
    core.setAutoShutter(False)
    core.setShutterOpen("LED", True)
    core.setProperty("LED", "Intensity", 30)
    core.setProperty("LED", "Flicker", 2.0)
    means = [_snap(core).mean() for _ in range(40)]
    dark_mean = 100.0
    rel = np.std(means) / (np.mean(means) - dark_mean)
    assert 0.012 < rel < 0.03


def test_open_core_bad_config(tmp_path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        open_core(tmp_path / "missing.cfg")
    bad = tmp_path / "bad.cfg"
    bad.write_text("#py pyDevice,Camera,rawsigma.acquire.devices,NoSuchCamera\n")
    with pytest.raises(InputFileError, match="bad.cfg"):
        open_core(bad)


def test_settling_reports_busy(core) -> None:
    import time

    core.setAutoShutter(False)
    core.setShutterOpen("LED", True)
    core.setProperty("LED", "SettlingTime_ms", 150)
    core.setProperty("LED", "Intensity", 50)
    core.waitForDevice("LED")
    settled = _snap(core).mean()
    core.setProperty("LED", "Intensity", 10)
    early = _snap(core).mean()  # still near the old output
    t0 = time.monotonic()
    core.waitForDevice("LED")
    assert time.monotonic() - t0 > 0.05
    late = _snap(core).mean()
    assert early > 0.5 * settled and late < 0.3 * settled


def test_open_core_paths_and_pycromanager_bridge() -> None:
    import importlib.util

    from rawsigma.errors import AcquisitionError

    c = open_core(sim_rig_config(), {"Camera.SensorWidth": 8, "Camera.SensorHeight": 8})
    assert c.getImageWidth() == 8 and type(c).__name__ == "UniMMCore"
    if importlib.util.find_spec("pycromanager") is None:
        with pytest.raises(AcquisitionError, match="pycromanager"):
            open_core("pycromanager")
