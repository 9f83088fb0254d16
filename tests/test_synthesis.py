"""Replicas: per-pixel mean and variance against the profile, dtype, clipping."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.noisemodel.synthesis import SynthesisInfo, denoise, synthesize
from rawsigma.calib.profile import CameraProfile
from rawsigma.errors import ImageMismatchError

N_REP = 2000


@pytest.fixture(scope="module")
def flat_replicas():
    """2000 replicas of a 32x32 image (left half dim, right half bright), per-pixel maps."""
    sensor = SensorModel.preset("scmos", shape=(32, 32), seed=3)
    profile = sensor.true_profile()
    image = np.empty((32, 32), np.uint16)
    image[:, :16] = 112  # ~6 e- above offset: strongly non-Gaussian Poisson part
    image[:, 16:] = 1100  # ~500 e-
    reps = synthesize(image, profile, n=N_REP, rng=np.random.default_rng(7))
    return image, profile, reps


def test_replicas_mean_and_variance_match_profile(flat_replicas):
    image, profile, reps = flat_replicas
    good = profile.good & (image > profile.offset + 2)
    x = reps.astype(np.float64)
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
    # Expected: mean = observed value, variance = g (x - o) + r^2 (+1/12 from the
    # final rounding, the profile's read noise being the pre-rounding Gaussian).
    exp_var = profile.variance(image.astype(np.float32)).astype(np.float64) + 1 / 12
    # Sampling distribution over N replicas: SE(mean) = sqrt(var / N);
    # SE(var) = var * sqrt(2 / (N - 1) + kappa / N), kappa = excess kurtosis of
    # Poisson-Gaussian = g^2 * g e / var^2 (the Poisson 4th cumulant).
    k4 = profile.gain**2 * profile.gain * np.maximum(image - profile.offset, 0)
    kappa = k4 / exp_var**2
    se_mean = np.sqrt(exp_var / N_REP)
    se_var = exp_var * np.sqrt(2 / (N_REP - 1) + kappa / N_REP)
    z_mean = ((mean - image) / se_mean)[good]
    z_var = ((var - exp_var) / se_var)[good]
    npx = z_mean.size
    assert npx > 900
    # Each z ~ N(0, 1): the max over ~1000 pixels exceeds 4.5 with probability < 1 %.
    assert np.abs(z_mean).max() < 4.5
    assert np.abs(z_var).max() < 4.5
    # Pooled over pixels the average z has SE 1/sqrt(npx): test at 4 SE (~0.13);
    # a 1 % gain error would move z_var by ~0.3 on the bright half.
    assert abs(z_mean.mean()) < 4 / np.sqrt(npx)
    assert abs(z_var.mean()) < 4 / np.sqrt(npx)
    assert abs(z_var[z_var.size // 2 :].mean()) < 4 / np.sqrt(npx / 2)


def test_replicas_dtype_shape_range(flat_replicas):
    image, profile, reps = flat_replicas
    assert reps.dtype == np.uint16
    assert reps.shape == (N_REP, *image.shape)
    assert reps.min() >= 0 and reps.max() <= profile.max_adu


def test_clipping_and_saturation():
    profile = CameraProfile.uniform((16, 16), gain=2.0, offset=100.0, read_noise=3.0, bit_depth=12)
    image = np.full((16, 16), 4000, np.uint16)  # near full scale: some draws clip
    image[:4] = 4095  # saturated: must stay saturated
    image[-4:] = 90  # below offset: zero photo-electrons, redrawn as x + N(0, r)
    reps = synthesize(image, profile, n=200, rng=1)
    assert reps.max() == 4095
    assert np.all(reps[:, :4] == 4095)
    mid = reps[:, 4:-4]
    assert (mid == 4095).mean() > 0.01  # clipped at the ADC range, not wrapped
    low = reps[:, -4:].astype(float)
    assert abs(low.mean() - 90) < 1.0
    assert abs(low.std() - np.sqrt(9 + 1 / 12)) < 0.3


def test_reproducible_and_info():
    profile = CameraProfile.uniform((8, 8), gain=1.5, offset=50.0, read_noise=2.0)
    image = np.full((8, 8), 500, np.uint16)
    a, info = synthesize(image, profile, n=3, rng=5, return_info=True)
    b = synthesize(image, profile, n=3, rng=5)
    assert np.array_equal(a, b)
    assert isinstance(info, SynthesisInfo)
    assert info.centre == "observed" and info.n == 3 and info.seed == 5
    assert info.profile_id == profile.profile_id
    assert info.as_dict()["centre"] == "observed"


def test_denoised_centre_is_closer_to_truth():
    sensor = SensorModel.preset("scmos", shape=(96, 96), seed=1)
    profile = sensor.true_profile()
    yy, xx = np.mgrid[:96, :96]
    photons = 400 + 300 * (((yy - 48) ** 2 + (xx - 48) ** 2) < 30**2)
    truth = sensor.expected_adu(photons, 0.0)
    good = profile.good
    image = sensor.expose(photons, 0.0, rng=2)
    den = denoise(image, profile)
    err_obs = np.sqrt(np.mean((image[good] - truth[good]) ** 2))
    err_den = np.sqrt(np.mean((den[good] - truth[good]) ** 2))
    assert err_den < 0.6 * err_obs
    # the unbiased inverse keeps the flat regions unbiased to a fraction of sigma
    inner = good & (((yy - 48) ** 2 + (xx - 48) ** 2) < 20**2)
    assert abs(np.mean(den[inner] - truth[inner])) < 0.2 * err_obs
    reps, info = synthesize(image, profile, n=4, rng=0, centre="denoised", return_info=True)
    assert reps.dtype == np.uint16 and reps.shape == (4, 96, 96)
    assert info.centre == "denoised" and "non-local means" in info.centre_method


def test_bad_input():
    profile = CameraProfile.uniform((8, 8), gain=1.5, offset=50.0, read_noise=2.0)
    with pytest.raises(ImageMismatchError):
        synthesize(np.zeros((8, 8), np.float32), profile)
    with pytest.raises(ImageMismatchError):
        synthesize(np.zeros((8, 9), np.uint16), profile)
    with pytest.raises(ValueError, match="centre"):
        synthesize(np.zeros((8, 8), np.uint16), profile, centre="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must"):
        synthesize(np.zeros((8, 8), np.uint16), profile, n=0)
