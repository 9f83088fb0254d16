"""Physics of the pure-numpy SensorModel against its own truth maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.errors import InputFileError

DATA = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("kind", ["scmos", "ccd"])
def test_mean_variance_match_model(kind: str) -> None:
    m = SensorModel.preset(kind, (32, 32), seed=3)
    rng = np.random.default_rng(0)
    photons = m.photons_for_fraction(0.3)
    frames = np.stack([m.expose(photons, 0.01, rng) for _ in range(3000)]).astype(np.float64)
    mu, var = frames.mean(0), frames.var(0, ddof=1)
    ok = ~(m.hot | m.dead)
    pred_mu = m.expected_adu(photons, 0.01)
    pred_var = m.gain * (pred_mu - m.offset) + m.read_noise**2 + 1 / 12
    ratio = var[ok] / pred_var[ok]
    assert abs(np.median(ratio) - 1) < 0.01
    # per-pixel scatter of the ratio is the sampling error of a variance
    assert np.std(ratio) < 3 * np.sqrt(2 / 2999)
    z = (mu[ok] - pred_mu[ok]) / np.sqrt(pred_var[ok] / frames.shape[0])
    assert abs(np.mean(z)) < 0.2 and 0.85 < np.std(z) < 1.15


def test_seed_reproducible_and_dtype() -> None:
    a = SensorModel.preset("scmos", (16, 24), seed=5)
    b = SensorModel.preset("scmos", (16, 24), seed=5)
    c = SensorModel.preset("scmos", (16, 24), seed=6)
    np.testing.assert_array_equal(a.gain, b.gain)
    assert not np.array_equal(a.gain, c.gain)
    fa = a.expose(100.0, 0.01, np.random.default_rng(1))
    fb = b.expose(100.0, 0.01, np.random.default_rng(1))
    np.testing.assert_array_equal(fa, fb)
    assert fa.dtype == np.uint16 and fa.shape == (16, 24)


def test_clipping_full_well_and_adc() -> None:
    m = SensorModel.preset("scmos", (16, 16), seed=0)  # full well before ADC
    f = m.expose(1e7, 0.0, 0)
    ok = ~m.dead
    assert f.max() < m.max_adu
    assert np.all(np.abs(f[ok] - (m.gain * m.full_well + m.offset)[ok]) < 8 * m.read_noise[ok] + 1)
    ccd = SensorModel.preset("ccd", (16, 16), seed=0)  # ADC clips first
    f = ccd.expose(1e7, 0.0, 0)
    assert np.all(f[~ccd.dead] == 4095) and f.max() <= 4095


def test_photon_image_and_geometry() -> None:
    m = SensorModel.preset("ccd", (20, 30), seed=1)
    img = np.zeros((20, 30), np.float32)
    img[5:10, 5:10] = 5000
    f = m.expose(img, 0.0, 2).astype(float)
    assert f[5:10, 5:10].mean() > f[15:, 15:].mean() + 500
    with pytest.raises(ValueError, match="shape"):
        m.expose(np.zeros((3, 3)), 0.0, 0)
    c = m.crop((2, 3, 10, 5))
    assert c.shape == (5, 10)
    np.testing.assert_array_equal(c.offset, m.offset[3:8, 2:12])
    b = m.binned(2)
    assert b.shape == (10, 15) and b.binning == 2 and b.full_well == 4 * m.full_well


@pytest.mark.skipif(
    not (DATA / "scmos_pixel_gain_variance_maps_512.tif").exists(), reason="no data"
)
def test_from_maps_file_handles_bad_gain() -> None:
    m = SensorModel.from_maps_file(DATA / "scmos_pixel_gain_variance_maps_512.tif")
    assert m.shape == (512, 512)
    assert m.bad_gain.sum() > 0 and np.all(m.gain > 0)
    assert np.all(m.prnu[m.bad_gain] == 0)
    assert abs(np.median(m.gain) - 2.18) < 0.02
    assert np.all(m.defects[m.bad_gain] & 16)


def test_from_maps_file_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        SensorModel.from_maps_file(tmp_path / "nope.tif")
    p = tmp_path / "bad.npy"
    np.save(p, np.ones((4, 4)))
    with pytest.raises(InputFileError, match="bad.npy"):
        SensorModel.from_maps_file(p)
