"""Profile estimate when every block holds signal: the dark floor (confocal volumes).

A high-gain camera (EMCCD-like, 25 ADU/e⁻) imaging a sample that fills most of the
field: the background is a thin margin, so every 32×32 block holds signal, the offset
used to be assumed at the darkest block (a few ADU above the background) and the read
noise, taken from the variance line there, came out ~5× the background's noise
(BBBC050, benchmarks/RESULTS.md "Profile estimate on a confocal volume (hpe)").
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.noisemodel.blocks import dark_floor
from rawsigma.analysis.noisemodel.estimate import estimate_profile

GAIN, OFFSET, READ = 25.0, 100.0, 2.0
BBBC050 = "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"


def _crowded_volume(seed: int = 0) -> np.ndarray:
    """(12, 128, 128) raw counts: smooth dim cells everywhere but in narrow gaps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128].astype(np.float64)
    frames = []
    for _ in range(12):
        lam = np.zeros((128, 128))
        for cy in range(8, 128, 16):
            for cx in range(8, 128, 16):
                y0, x0 = cy + rng.uniform(-2, 2), cx + rng.uniform(-2, 2)
                r2 = (yy - y0) ** 2 + (xx - x0) ** 2
                lam += rng.uniform(0.3, 3.0) * np.exp(-((np.sqrt(r2) / 6.0) ** 6))
        counts = rng.poisson(lam) * GAIN + rng.normal(OFFSET, READ, lam.shape)
        frames.append(np.clip(np.round(counts), 0, 65535))
    return np.asarray(frames, np.uint16)


def _model_sigma(prof, x: float) -> float:
    est = prof.provenance["estimate"]
    s = max(x - est["offset"], 0.0)
    return float(np.sqrt(est["gain"] * s + est["fit_quad"] * s * s + est["read_noise"] ** 2))


def test_crowded_high_gain_volume_keeps_the_background_noise():
    vol = _crowded_volume()
    prof = estimate_profile(vol, source="crowded")
    est = prof.provenance["estimate"]
    # the blocks cannot see the background: the darkest block is well above it
    assert est["darkest_block_mean_adu"] > OFFSET + 3
    # was 11.3 ADU (offset assumed at the darkest block, 105 ADU)
    assert est["read_noise"] == pytest.approx(READ, rel=0.25)
    assert _model_sigma(prof, OFFSET) == pytest.approx(READ, rel=0.25)
    assert est["dark_floor"]["applied"] is True
    assert est["offset"] == pytest.approx(OFFSET, abs=3.0)
    assert prof.gain_global == pytest.approx(GAIN, rel=0.2)
    assert est["identifiable"] is False and "darkest pixels" in est["offset_source"]


def test_dark_floor_measures_read_noise_core_of_sparse_events():
    """Sparse 25-ADU events on a read-noise background: the left half-width is the core."""
    rng = np.random.default_rng(3)
    img = rng.normal(OFFSET, READ, (4, 128, 128)) + GAIN * rng.poisson(0.05, (4, 128, 128))
    level, sigma, n = dark_floor(np.round(img).astype(np.uint16))
    assert n >= 200
    assert level == pytest.approx(OFFSET, abs=1)
    assert sigma == pytest.approx(READ, rel=0.15)


def test_dark_floor_is_none_for_too_few_pixels():
    assert dark_floor(np.full((20, 20), 100, np.uint16)) is None


def test_bbbc050_background_noise_matches_the_model(shared_data):
    """σ_model in the background within 1.5× its neighbour-difference σ (was 5.4×)."""
    vol = tifffile.imread(shared_data / BBBC050)
    prof = estimate_profile(vol, source=BBBC050)
    bg = vol < 105  # 48 % of the voxels
    f = vol.astype(np.float64)
    pair = bg[:, :, 1:] & bg[:, :, :-1]
    nd_sigma = float(np.diff(f, axis=2)[pair].std() / np.sqrt(2))
    assert 1.6 < nd_sigma < 2.1  # 1.84 ADU
    model = _model_sigma(prof, float(np.median(vol[bg])))
    assert model / nd_sigma < 1.5
    assert model / nd_sigma > 0.8
    assert 15 < prof.gain_global < 35  # the foreground's slope (~22-26 ADU/e⁻) is kept


def test_given_offset_below_the_curves_zero_takes_the_dark_floor(shared_data):
    """--offset 100 on BBBC050 was refused ("the read noise came out 0")."""
    vol = tifffile.imread(shared_data / BBBC050)
    prof = estimate_profile(vol, offset=100.0, source=BBBC050)
    est = prof.provenance["estimate"]
    assert est["offset"] == 100.0 and est["identifiable"] is True
    assert 1.5 < est["read_noise"] < 2.8  # the background's noise, 1.8-2.2 ADU
    assert est["dark_floor"]["applied"] is True
    assert "darkest pixels" in est["read_noise_source"]
    assert 15 < prof.gain_global < 35
