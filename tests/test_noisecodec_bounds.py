"""Issue 9/10: the noise codec never clamps (values below the offset), refuses profiles
that would make its error unbounded, and limits its step to the unbiased range."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.codecs.registry import CodecError, parse_codecs
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec.codec import MAX_STEP, MIN_STEP
from rawsigma.calib.profile import CameraProfile
from rawsigma.cli.main import app
from rawsigma.errors import ImageMismatchError, ProfileError
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def frame():
    sensor = SensorModel.preset("scmos", shape=(128, 128), seed=0)
    yy, xx = np.mgrid[:128, :128]
    ph = 5 + 2000 * np.exp(-((yy - 64) ** 2 + (xx - 50) ** 2) / 400.0)
    return sensor.expose(ph.astype(np.float32), 0.0, rng=3), sensor.true_profile()


def _sigma(img, prof):
    """Per-pixel noise sigma of the profile's model (read noise below the offset)."""
    g, o, r = prof.gain_global, prof.offset_global, prof.read_noise_global
    return np.sqrt(g * np.maximum(img.astype(float) - o, 0) + r * r)


def _bound(img, prof, step):
    """The codec's stated bound: S/2 of the pixel's sigma, plus the reconstruction's
    convexity term g·S²/24, the output rounding and the maps' offset jitter (1/2 ADU each)."""
    return 0.5 * step * _sigma(img, prof) + prof.gain_global * step * step / 24 + 1.0


@pytest.mark.parametrize(
    "kw", [dict(step=2), dict(step=2, dither=True), dict(step=2, effort="best"), dict(step=1)]
)
@pytest.mark.parametrize("doff", [30.0, 300.0])
def test_offset_above_part_of_the_image(frame, kw, doff):
    """A profile whose offset lies above most of the dark pixels: every pixel (those below
    the offset included) within S/2 of its own sigma (+ the 1/2 ADU output rounding),
    unbiased; the stream has the transform's knee (format 5 for "pyramid", else 4)."""
    img, tp = frame
    prof = CameraProfile.uniform(
        img.shape, gain=tp.gain_global, offset=tp.offset_global + doff,
        read_noise=tp.read_noise_global,
    )  # fmt: skip
    codec = NoiseCodec(prof, maps="global", **kw)
    data = codec.encode(img)
    version = 4 if kw.get("effort") == "best" else 5
    assert struct.unpack_from("<H", data, 4)[0] == version and "knee" in NoiseCodec.info(data)
    err = codec.decode(data).astype(float) - img
    below = img < prof.offset_global
    assert below.mean() > 0.5
    assert np.all(np.abs(err) <= _bound(img, prof, kw["step"]))
    assert abs(err[below].mean()) < 0.05 * prof.read_noise_global


def test_frames_above_the_knee_have_no_knee(frame):
    img, tp = frame
    prof = CameraProfile.uniform(img.shape, gain=tp.gain_global, offset=0.0, read_noise=2.0)
    data = NoiseCodec(prof, maps="global").encode(img)
    assert struct.unpack_from("<H", data, 4)[0] == 5 and "knee" not in NoiseCodec.info(data)


def test_unbounded_profiles_are_refused(frame):
    img, tp = frame
    zero_rn = CameraProfile.uniform(img.shape, gain=2.0, offset=float(img.max()), read_noise=0.0)
    with pytest.raises(ImageMismatchError, match="read noise is 0 and pixels lie below"):
        NoiseCodec(zero_rn).encode(img)
    import types

    for gain, rn in ((0.0, 2.0), (-1.0, 2.0), (np.nan, 2.0), (2.0, -1.0), (2.0, np.inf)):
        bad = types.SimpleNamespace(
            gain_global=gain, read_noise_global=rn, offset_global=100.0, profile_id="x"
        )
        with pytest.raises(ProfileError, match="gain" if rn == 2.0 else "read noise"):
            NoiseCodec(bad)


def test_usiigaci_estimated_profile_no_pixel_beyond_bound(shared_data):
    """The real field with its default estimated profile: every pixel within S/2 of its
    sigma (the profile's model) + 1/2 ADU; before the fix the pixels below the assumed
    offset moved by +1577 ADU on average."""
    import tifffile
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    img = tifffile.imread(shared_data / "usiigaci_phase_contrast_1fields.tif").reshape(-1, 1024)
    prof = estimate_profile(img)
    codec = NoiseCodec(prof, maps="global", step=2)
    err = codec.decode(codec.encode(img)).astype(float) - img
    assert np.all(np.abs(err) <= _bound(img, prof, 2.0))
    # the old estimate (offset 11830 ADU above 0.2 % of the pixels) with a read noise
    old = CameraProfile.uniform(img.shape, gain=4.1, offset=11830.0, read_noise=20.0)
    codec = NoiseCodec(old, maps="global", step=2)
    err = codec.decode(codec.encode(img)).astype(float) - img
    below = img < 11830
    assert below.any() and np.all(np.abs(err) <= _bound(img, old, 2.0))
    assert abs(err[below].mean()) < 1.0  # was +1577 ADU


@pytest.mark.parametrize("step", [0.0, -1.0, np.inf, np.nan, 2.6, 32.0, 64.0])
def test_step_outside_the_unbiased_range_is_refused(frame, step):
    _, tp = frame
    with pytest.raises(ValueError, match=r"\[0.01, 2.5\]"):
        NoiseCodec(tp, step=step)
    with pytest.raises(CodecError, match=r"2.5"):
        parse_codecs(f"noise:step={step}", profile=tp)


def test_codec_spec_limits_match_the_codec():
    from rawsigma.analysis.codecs.builtin import NoiseCodecAdapter

    p = {q.name: q for q in NoiseCodecAdapter.PARAMS}["step"]
    assert (p.lo, p.hi) == (MIN_STEP, MAX_STEP)


@pytest.mark.parametrize("step", ["64", "inf", "0", "2.6"])
def test_cli_compress_step_refused_first(tmp_path, step):
    res = runner.invoke(
        app,
        ["compress", str(tmp_path / "none.tif"), "--profile", str(tmp_path / "none.h5"),
         "--step", step, "--out", str(tmp_path / "x.rsnc")],
    )  # fmt: skip
    assert res.exit_code == 2  # a value out of range is a usage error
    assert "--step must be" in " ".join(res.output.split()) and "2.5" in res.output
    assert not (tmp_path / "x.rsnc").exists()


def test_step_limit_is_unbiased_and_bounded():
    """At the largest allowed step the decoded mean stays within 0.05 sigma of the raw
    mean in every signal bin, and never beyond the input maximum by more than S/2 sigma."""
    from rawsigma.analysis.noisecodec.synthetic import fluorescence_scene, reference_camera

    cam = reference_camera((256, 256), seed=0)
    lam = fluorescence_scene((256, 256), seed=0).astype(np.float32)
    frames = np.stack([cam.expose(lam, 0.0, rng=100 + r) for r in range(4)])
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=MAX_STEP, maps="global")
    dec = codec.decode(codec.encode(frames)).astype(float)
    g, rn = prof.gain_global, prof.read_noise_global
    sigma = np.sqrt(g * g * lam + rn * rn)
    err = (dec - frames).mean(axis=0) / sigma
    edges = np.quantile(lam, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, 9)
    worst = max(abs(err[idx == b].mean()) for b in range(10))
    assert worst < 0.05
    top = frames.max()
    assert dec.max() <= top + 0.5 * MAX_STEP * np.sqrt(g * (top - 100) + rn * rn) + 1


def test_hard_bound_below_the_offset(frame):
    """--max-error K: bins designed in e⁻ cover values below the offset; every pixel
    within K sigma (+ rounding and jitter), and bins wholly below the transform's zero
    decode at their centre (were biased by ~1 sigma)."""
    img, tp = frame
    prof = CameraProfile.uniform(
        img.shape, gain=tp.gain_global, offset=tp.offset_global + 30,
        read_noise=tp.read_noise_global,
    )  # fmt: skip
    codec = NoiseCodec(prof, maps="global", step=1, max_error=3)
    err = codec.decode(codec.encode(img)).astype(float) - img
    below = img < prof.offset_global
    assert np.all(np.abs(err) <= 3 * _sigma(img, prof) + 1.0)
    assert abs(err[below].mean()) < 0.1 * prof.read_noise_global
