"""QA session 7: with per-pixel maps, the noise codec quantises a pixel flagged as a
defect in its profile with the global gain and offset (its own calibration is not
trusted), so the README's per-pixel bound holds there too; streams that refer to the
old maps still decode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec.codec import codec_maps
from rawsigma.analysis.noisecodec.stream import decode_frames, encode_frames
from rawsigma.calib.profile import CameraProfile
from rawsigma.calib.profile_fields import DEFECT_BAD_GAIN, DEFECT_DEAD

STEP = 1.5


@pytest.fixture(scope="module")
def case():
    """Frames of a simulated sCMOS and its true profile with 40 pixels mis-calibrated
    (gain 2.5–3.6× the true one, as `calibrate` measured on dead pixels) and flagged."""
    sensor = SensorModel.preset("scmos", shape=(96, 96), seed=1)
    yy, xx = np.mgrid[:96, :96]
    ph = 3 + 800 * np.exp(-((yy - 40) ** 2 + (xx - 50) ** 2) / 300.0)
    frames = np.stack([sensor.expose(ph.astype(np.float32), 0.0, rng=r) for r in range(4)])
    true = sensor.true_profile()
    rng = np.random.default_rng(5)
    idx = rng.choice(96 * 96, 40, replace=False)
    gain, defects = true.gain.copy(), np.zeros((96, 96), np.uint8)
    gain.flat[idx] *= rng.uniform(2.5, 3.6, idx.size).astype(np.float32)
    defects.flat[idx] = DEFECT_DEAD | DEFECT_BAD_GAIN
    prof = dataclasses.replace(true, gain=gain, defects=defects)
    return frames, prof


def _bound(raw, prof, step=STEP, own_read_noise=False):
    """README bound S/2·σ(x) + g·S²/24 + 1 ADU: on good pixels g and the offset are the
    pixel's own and the read noise the global one in electrons (σ(x)² = g·(x − o) +
    (σ_r·g/K)²); the global model on defect pixels. ``own_read_noise``: the bound the
    README stated before (the pixel's own read noise), which does not hold."""
    raw = raw.astype(float)
    g, o, r = prof.gain_global, prof.offset_global, prof.read_noise_global
    glob = 0.5 * step * np.sqrt(g * np.maximum(raw - o, 0) + r * r) + g * step**2 / 24 + 1
    rn = prof.read_noise if own_read_noise else r * prof.gain / g
    own = (
        0.5 * step * np.sqrt(prof.gain * np.maximum(raw - prof.offset, 0) + rn * rn)
        + prof.gain * step**2 / 24
        + 1
    )
    return np.where(prof.good, own, glob)


def test_defect_pixels_keep_the_bound(case):
    frames, prof = case
    codec = NoiseCodec(prof, step=STEP, maps="pixel")
    err = np.abs(codec.decode(codec.encode(frames)).astype(float) - frames)
    bound = _bound(frames, prof)
    assert np.all(err <= bound), f"{(err > bound).sum()} samples beyond the bound"
    # the defects' own (wrong) gain made their steps ~3x too coarse: errors beyond it
    old = codec_maps(prof, "pixel", trust_defects=True)
    data = encode_frames(frames, old, codec.params, embed_maps=True)
    old_err = np.abs(decode_frames(data).astype(float) - frames)
    assert (old_err > bound)[:, ~prof.good].sum() > 10
    assert not (old_err > bound)[:, prof.good].any()


def test_maps_change_only_on_defect_pixels(case):
    _, prof = case
    new, old = codec_maps(prof, "pixel"), codec_maps(prof, "pixel", trust_defects=True)
    good = prof.good
    assert np.array_equal(new.gain()[good], old.gain()[good])
    assert np.array_equal(new.offset()[good], old.offset()[good])
    assert not np.allclose(new.gain()[~good], old.gain()[~good], rtol=0.5)
    # defect pixels take the global gain and offset (to the maps' quantisation)
    assert np.allclose(new.gain()[~good], prof.gain_global, rtol=2e-3)
    assert np.all(np.abs(new.offset()[~good] - prof.offset_global) <= 0.5 + 0.125)


def test_old_reference_stream_still_decodes(case):
    """A stream that refers to (does not embed) the maps made before this change decodes
    with the profile as it did."""
    frames, prof = case
    codec = NoiseCodec(prof, step=STEP, maps="pixel")
    old = codec_maps(prof, "pixel", trust_defects=True)
    data = encode_frames(frames, old, codec.params, embed_maps=False)
    assert NoiseCodec.info(data)["maps"] == "reference"
    assert np.array_equal(codec.decode(data), decode_frames(data, old))
    new = codec.encode(frames)  # and new streams with the new maps
    assert NoiseCodec.info(new)["maps"] == "reference"
    assert np.array_equal(codec.decode(new), decode_frames(new, codec.maps))


def test_pixel_maps_bound_uses_the_global_read_noise(shared_data):
    """QA session 8: with per-pixel maps the codec quantises in the GLOBAL read noise
    (in electrons), so on the real EMVA CCD's dark frames, whose per-pixel read noise
    (48 darks) spreads 2.3–3.8 ADU around 3.06, the bound written with each pixel's own
    read noise (as the README said) fails on thousands of samples at S = 2.5, and the
    bound with the global read noise holds on every sample."""
    import csv

    import tifffile

    frames = tifffile.imread(shared_data / "emva1288_ccd12_ptc_roi256.tif")
    with open(shared_data / "emva1288_ccd12_ptc_roi256.csv", newline="") as fh:
        dark = np.array([row["kind"] == "dark" for row in csv.DictReader(fh)])
    darks = frames[dark]
    stack = darks.astype(np.float64)
    off, rn = stack.mean(0), stack.std(0, ddof=1)
    prof = CameraProfile.uniform(
        off.shape, gain=0.278, offset=float(np.median(off)), read_noise=float(np.median(rn)),
        bit_depth=12,
    )  # fmt: skip
    prof = dataclasses.replace(
        prof, offset=off.astype(np.float32), read_noise=rn.astype(np.float32)
    )
    for step in (2.0, 2.5):
        codec = NoiseCodec(prof, step=step, maps="pixel")
        err = np.abs(codec.decode(codec.encode(darks)).astype(float) - darks)
        assert np.all(err <= _bound(darks, prof, step)), step
    assert (err > _bound(darks, prof, 2.5, own_read_noise=True)).sum() > 1000
