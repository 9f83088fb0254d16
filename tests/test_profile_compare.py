"""compare_profiles: how a camera changed between two calibrations."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.calib.compare import compare_profiles, difference_maps, map_stats
from rawsigma.calib.profile import DEFECT_HOT, CameraProfile


def with_se(p: CameraProfile, se: float = 0.01) -> CameraProfile:
    for name in ("offset_se", "gain_se", "read_noise_se"):
        setattr(p, name, np.full(p.shape, se, np.float32))
    return p


def test_map_stats_known_values():
    s = map_stats(np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan]))
    assert s["n"] == 5 and s["median"] == 3.0 and s["mad"] == 1.0
    assert s["min"] == 1.0 and s["max"] == 100.0 and s["p50"] == 3.0
    assert np.isnan(map_stats(np.array([np.nan]))["median"])


def test_significant_changes_counted():
    a = with_se(CameraProfile.uniform((30, 40), 2.0, 100.0, 1.5, serial="S1"))
    b = with_se(CameraProfile.uniform((30, 40), 2.0, 100.0, 1.5, serial="S1"))
    rng = np.random.default_rng(0)
    # small changes within noise everywhere (|z| < 3), 17 pixels far beyond
    b.gain += (rng.uniform(-1, 1, b.shape) * 0.02).astype(np.float32)  # |Δ| < 1.42 SE
    idx = rng.choice(b.gain.size, 17, replace=False)
    b.gain.ravel()[idx] += 0.1  # 7 combined SEs
    b.defects[0, :5] = DEFECT_HOT
    b.identity.temperature_c = -5.0
    c = compare_profiles(a, b, k=3.0)
    assert c["comparable"] and c["roi"] == [0, 0, 40, 30]
    g = c["maps"]["gain"]
    assert g["n_significant"] == 17 - len(set(idx) & set(range(5)))  # hot pixels excluded
    assert g["n_tested"] == 30 * 40 - 5
    assert c["maps"]["offset"]["n_significant"] == 0 and c["maps"]["offset"]["mad"] == 0
    assert c["defects"] == {"new": 5, "gone": 0, "both": 0}
    assert c["identity"] == {"temperature_c": [None, -5.0]}
    assert c["global"]["gain"]["a"] == 2.0
    assert abs(c["global"]["gain"]["diff"]) < 0.01
    assert c["ids"] == [a.profile_id, b.profile_id]


def test_overlap_of_rois_and_incomparable():
    a = CameraProfile.uniform((40, 40), 2.0, 100.0, 1.5)
    b = a.crop((10, 5, 20, 30))
    b.offset += 1.0
    c = compare_profiles(a, b)
    assert c["roi"] == [10, 5, 20, 30]
    assert c["identity"]["roi"] == [[0, 0, 40, 40], [10, 5, 20, 30]]
    assert c["maps"]["offset"]["median"] == pytest.approx(1.0)
    assert "n_significant" not in c["maps"]["offset"]  # no SE maps
    d = difference_maps(a, b)
    assert d["offset"].shape == (30, 20) and np.all(d["offset"] == 1.0)

    binned = CameraProfile.uniform((20, 20), 2.0, 100.0, 1.5, binning=2)
    c = compare_profiles(a, binned)
    assert not c["comparable"] and "binning" in c["reason"]
    assert difference_maps(a, binned) == {}
    far = CameraProfile.uniform(
        (10, 10), 2.0, 100.0, 1.5, roi=(50, 50, 10, 10), sensor_shape=(64, 64)
    )
    c = compare_profiles(a, far)
    assert not c["comparable"] and "overlap" in c["reason"]
