"""2 % frame-to-frame light flicker: per-pixel gain stays right and the profile says so."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.calib.build import build_profile, light_stability
from rawsigma.calib.fit import fit_pixel_maps
from rawsigma.calib.simsweep import accumulate_sweep


@pytest.fixture(scope="module")
def flicker_sweep():
    cam = SensorModel.preset("scmos", (160, 160), seed=21)
    photons = cam.photons_for_fraction(0.8, 0.01) * np.arange(1, 11) / 10
    sw = accumulate_sweep(
        cam.expose, cam.shape, photons, frames=200, dark_frames=200, flicker=0.02, rng=22
    )
    return cam, sw


@pytest.mark.slow
def test_gain_survives_flicker_and_is_flagged(flicker_sweep) -> None:
    cam, sw = flicker_sweep
    sel = cam.defects == 0
    maps = fit_pixel_maps(sw.dark, sw.levels, max_adu=cam.max_adu)
    rel = maps.gain[sel & (maps.defects == 0)] / cam.gain[sel & (maps.defects == 0)] - 1
    assert abs(np.median(rel)) < 0.01
    z = (maps.gain - cam.gain)[sel & (maps.defects == 0)] / maps.gain_se[sel & (maps.defects == 0)]
    assert 0.8 <= np.std(z) <= 1.25
    # without the correction the flicker variance inflates the gain by several %
    raw = fit_pixel_maps(sw.dark, sw.levels, max_adu=cam.max_adu, flicker_correction=False)
    assert np.median(raw.gain[sel] / cam.gain[sel]) - 1 > 0.05

    prof = build_profile(sw.dark, sw.levels, {"bit_depth": 16})
    st = prof.provenance["light_source"]
    assert prof.provenance["light_source_unstable"] is True
    assert prof.emva["light_source_unstable"] is True
    assert st["flicker_rms"] == pytest.approx(0.02, rel=0.15)
    assert any("unstable" in w for w in prof.provenance["warnings"])
    assert prof.emva["K"] == pytest.approx(float(np.median(cam.gain)), rel=0.01)


def test_stable_source_not_flagged_and_drift_is() -> None:
    cam = SensorModel.preset("ccd", (48, 48), seed=2)
    photons = cam.photons_for_fraction(0.5, 0.0) * np.array([0.3, 0.6, 1.0])
    stable = accumulate_sweep(
        cam.expose, cam.shape, photons, frames=40, dark_frames=20, exposure_s=0.0, rng=3
    )
    s = light_stability(stable.dark, stable.levels)
    assert not s["unstable"] and s["flicker_rms"] < 0.002
    drifting = accumulate_sweep(
        cam.expose, cam.shape, photons, frames=40, dark_frames=20, exposure_s=0.0, drift=0.03, rng=3
    )
    s = light_stability(drifting.dark, drifting.levels)
    assert s["unstable"] and s["drift_max"] == pytest.approx(0.03, rel=0.2)
