"""CameraProfile: construction, id, model helpers, crop and image checks."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.calib.profile import (
    DEFECT_BAD_GAIN,
    DEFECT_HOT,
    DEFECT_NOISY,
    CameraIdentity,
    CameraProfile,
)
from rawsigma.errors import ImageMismatchError, ProfileError


def ramp_profile(shape=(24, 40), origin=(10, 20), sensor=(64, 96), bit_depth=12):
    """Profile whose offset encodes absolute sensor position: 1000 * row + col."""
    h, w = shape
    x0, y0 = origin
    rows, cols = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    rng = np.random.default_rng(0)
    defects = np.zeros(shape, np.uint8)
    defects[3, 4] = DEFECT_HOT
    defects[5, 6] = DEFECT_NOISY | DEFECT_HOT
    return CameraProfile(
        offset=(1000.0 * rows + cols).astype(np.float32),
        gain=rng.uniform(1.5, 2.5, shape).astype(np.float32),
        read_noise=rng.uniform(1.0, 3.0, shape).astype(np.float32),
        identity=CameraIdentity(
            camera="Camera",
            model="M1",
            serial="SN1",
            bit_depth=bit_depth,
            roi=(x0, y0, w, h),
            sensor_shape=sensor,
        ),
        defects=defects,
        gain_se=np.full(shape, 0.01, np.float32),
    )


def test_uniform_and_globals():
    p = CameraProfile.uniform((16, 8), gain=2.0, offset=100.0, read_noise=1.5, bit_depth=12)
    assert p.shape == (16, 8)
    assert p.max_adu == 4095
    assert p.identity.roi == (0, 0, 8, 16)
    assert p.identity.sensor_shape == (16, 8)
    assert (p.gain_global, p.offset_global, p.read_noise_global) == (2.0, 100.0, 1.5)
    assert p.gain.dtype == np.float32 and p.defects.dtype == np.uint8
    assert p.good.all()
    assert not p.estimated
    q = CameraProfile.uniform((4, 4), 1, 0, 1, binning=2, serial="X")
    assert q.identity.binning == 2 and q.identity.serial == "X"


def test_global_medians_ignore_defects():
    p = CameraProfile.uniform((10, 10), 2.0, 100.0, 1.0)
    p.gain[:4] = 50.0  # 40 % of pixels, all flagged
    p.defects[:4] = DEFECT_BAD_GAIN
    assert p.gain_global == 2.0
    p.defects[:] = 0
    assert p.gain_global == 2.0  # median still robust at 40 %
    p.gain[:6] = 50.0
    assert p.gain_global == 50.0  # proves the mask is what mattered above


def test_variance_and_electrons():
    p = CameraProfile.uniform((4, 5), gain=2.0, offset=100.0, read_noise=3.0)
    np.testing.assert_allclose(p.variance(300.0), 2.0 * 200 + 9)
    np.testing.assert_allclose(p.variance(50.0), 9.0)  # clipped at read variance
    m = np.full((4, 5), 120.0)
    assert p.variance(m).shape == (4, 5) and p.variance(m).dtype == np.float32
    img = np.full((3, 4, 5), 140, np.uint16)
    e = p.to_electrons(img)
    assert e.dtype == np.float32 and e.shape == (3, 4, 5)
    np.testing.assert_allclose(e, 20.0)
    with pytest.raises(ImageMismatchError):
        p.to_electrons(np.zeros((5, 4)))


def test_profile_id_stable_and_sensitive():
    p = ramp_profile()
    pid = p.profile_id
    assert len(pid) == 12 and int(pid, 16) >= 0
    assert ramp_profile().profile_id == pid
    p.provenance["note"] = "re-saved"
    p.emva["K"] = 2.0
    assert p.profile_id == pid  # notes do not change the id
    q = ramp_profile()
    q.gain[7, 7] = np.nextafter(q.gain[7, 7], np.float32(10))
    assert q.profile_id != pid
    r = ramp_profile()
    r.identity.serial = "SN2"
    assert r.profile_id != pid


def test_construction_validation():
    ok = np.ones((4, 4), np.float32)
    with pytest.raises(ProfileError, match="shape"):
        CameraProfile(offset=ok, gain=np.ones((4, 5)), read_noise=ok)
    bad = ok.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ProfileError, match="non-finite"):
        CameraProfile(offset=ok, gain=bad, read_noise=ok)
    # on a flagged pixel a NaN is replaced by the good-pixel median, caller's array kept
    gain = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    gain[1, 1] = np.nan
    d = np.zeros((4, 4), np.uint8)
    d[1, 1] = DEFECT_BAD_GAIN
    p = CameraProfile(offset=ok, gain=gain, read_noise=ok, defects=d)
    assert p.gain[1, 1] == np.median(gain[d == 0])
    assert np.isnan(gain[1, 1])
    assert p.provenance["substituted_nonfinite"] == {"gain": 1}
    allbad = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(ProfileError, match="no finite"):
        CameraProfile(ok, ok, allbad, defects=np.ones((4, 4), np.uint8))
    with pytest.raises(ProfileError, match="ROI"):
        CameraProfile(ok, ok, ok, identity=CameraIdentity(roi=(0, 0, 4, 5)))
    with pytest.raises(ProfileError, match="beyond the sensor"):
        CameraProfile(ok, ok, ok, identity=CameraIdentity(roi=(2, 0, 4, 4), sensor_shape=(4, 5)))
    zero = ok.copy()
    zero[0, 0] = 0
    with pytest.raises(ProfileError, match="gain"):
        CameraProfile(ok, zero, ok)
    d = np.zeros((4, 4), np.uint8)
    d[0, 0] = DEFECT_BAD_GAIN
    p = CameraProfile(ok, zero, ok, defects=d)  # flagged: allowed
    assert not p.good[0, 0] and p.good.sum() == 15
    with pytest.raises(ProfileError, match="read_noise"):
        CameraProfile(ok, ok, -ok)


# ---------------------------------------------------------------- crop


def test_crop_absolute_alignment():
    p = ramp_profile()  # profile origin (x=10, y=20), 40 x 24
    c = p.crop((12, 23, 5, 4))
    assert c.shape == (4, 5)
    assert c.identity.roi == (12, 23, 5, 4)
    assert c.identity.sensor_shape == p.identity.sensor_shape
    assert c.offset[0, 0] == 23 * 1000 + 12  # top-left is exactly (x=12, y=23)
    assert c.offset[-1, -1] == 26 * 1000 + 16  # exclusive end
    np.testing.assert_array_equal(c.gain, p.gain[3:7, 2:7])
    np.testing.assert_array_equal(c.defects, p.defects[3:7, 2:7])
    assert c.defects[0, 2] == DEFECT_HOT  # (row 3, col 4) of the parent
    assert c.gain_se.shape == (4, 5) and c.read_noise_se is None
    # the full region is a valid crop, one more pixel is not
    assert p.crop(p.identity.roi).profile_id == p.profile_id
    for roi in [(9, 20, 40, 24), (10, 19, 5, 5), (11, 20, 40, 24), (10, 21, 40, 24)]:
        with pytest.raises(ImageMismatchError, match="not inside"):
            p.crop(roi)
    with pytest.raises(ImageMismatchError, match="empty"):
        p.crop((12, 23, 0, 4))


def test_crop_relative_and_composition():
    p = ramp_profile()
    a = p.crop((2, 3, 5, 4), relative=True)
    b = p.crop((12, 23, 5, 4))
    assert a.profile_id == b.profile_id
    cc = p.crop((12, 23, 10, 10)).crop((13, 25, 3, 2))
    assert cc.identity.roi == (13, 25, 3, 2)
    assert cc.offset[0, 0] == 25 * 1000 + 13
    assert cc.provenance["cropped_from"]["roi"] == [12, 23, 10, 10]


# ---------------------------------------------------------------- check_image


def test_check_image_accepts_raw():
    p = ramp_profile(bit_depth=12)
    img = np.full(p.shape, 4095, np.uint16)
    p.check_image(img)
    p.check_image(np.zeros((3, *p.shape), np.uint16))
    p.check_image(img.astype(np.int32))
    meta = {"Binning": "1x1", "BitDepth": 12, "ROI": "10-20-40-24", "Camera": "Camera"}
    p.check_image(img, meta)
    p.check_image(img, {"binning": 1, "bit_depth": "12", "roi": (10, 20, 40, 24), "serial": "SN1"})


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((12, 20), np.uint16), "binned 2x2"),
        (np.zeros((48, 80), np.uint16), "profile looks binned 2x2"),
        (np.zeros((10, 10), np.uint16), "sub-region"),
        (np.zeros((40, 24), np.uint16), "transposed"),
        (np.zeros((30, 50), np.uint16), "covers only ROI"),  # fits the 64x96 sensor
        (np.zeros((70, 100), np.uint16), "larger than the profile's whole 96x64 sensor"),
        (np.zeros((24, 40), np.uint8), "8-bit"),
        (np.zeros((24, 40), np.float32), "float32"),
        (np.full((24, 40), 4096, np.uint16), "above the profile's 12-bit maximum 4095"),
        (np.full((24, 40), -1, np.int16), "negative"),
        (np.zeros((24, 40), bool), "bool"),
        (np.zeros((2, 2, 24, 40), np.uint16), "dimension"),
    ],
)
def test_check_image_errors(image, match):
    p = ramp_profile(bit_depth=12)
    with pytest.raises(ImageMismatchError, match=match):
        p.check_image(image)


def test_check_image_names_the_file():
    p = ramp_profile()
    with pytest.raises(ImageMismatchError, match=r"^cells\.tif: image shape"):
        p.check_image(np.zeros((5, 5), np.uint16), name="cells.tif")


def test_check_image_counts_overflow_pixels():
    p = ramp_profile(bit_depth=12)
    img = np.zeros(p.shape, np.uint16)
    img[0, :3] = 5000
    with pytest.raises(ImageMismatchError, match=r"has 3 value\(s\) above"):
        p.check_image(img)


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"Binning": "2x2"}, "binning 2 \\(profile: 1\\)"),
        ({"BitDepth": 16}, "bit depth 16 \\(profile: 12\\)"),
        ({"ROI": "0-0-40-24"}, "ROI \\(0, 0, 40, 24\\)"),
        ({"ROI": "12-23-5-4"}, "crop the profile"),
        ({"Camera": "OtherCam"}, "camera 'OtherCam'"),
        ({"serial": "SN9"}, "serial 'SN9'"),
        ({"Binning": "2x1"}, "asymmetric"),
        ({"ROI": "1-2-3"}, "not \\(x, y, width, height\\)"),
    ],
)
def test_check_image_metadata_errors(meta, match):
    p = ramp_profile(bit_depth=12)
    img = np.zeros(p.shape, np.uint16)
    with pytest.raises(ImageMismatchError, match=match):
        p.check_image(img, meta)


def test_summary_numbers():
    p = ramp_profile()
    s = p.summary()
    assert s["profile_id"] == p.profile_id
    assert s["defects"]["hot"] == 2 and s["defects"]["noisy"] == 1
    assert s["defects"]["any"] == 2 and s["defects"]["good"] == 24 * 40 - 2
    good = p.good
    assert s["maps"]["gain"]["median"] == pytest.approx(float(np.median(p.gain[good])))
    mad = np.median(np.abs(p.gain[good] - np.median(p.gain[good])))
    assert s["maps"]["gain"]["mad"] == pytest.approx(float(mad))
    assert s["maps"]["gain"]["n"] == good.sum()
    assert s["identity"]["roi"] == [10, 20, 40, 24]
    assert "read_noise_se" not in s["maps"]


def test_sensor_model_truth_profile_is_valid():
    import rawsigma.acquire.sensor_model as sm

    p = sm.SensorModel.preset("scmos", shape=(32, 48), seed=3).true_profile()
    assert p.shape == (32, 48)
    assert p.gain_global > 0 and p.good.sum() > 0.9 * p.good.size


def test_summary_says_which_gain_map_was_stored() -> None:
    """A profile with the global K on every pixel showed a flat gain map in the GUI's
    profile viewer with no word why; the summary (GUI table) now carries the choice."""
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.calib.build import build_profile
    from rawsigma.calib.simsweep import accumulate_sweep

    cam = SensorModel.preset("scmos", (24, 24), seed=3)
    ph = cam.photons_for_fraction(0.5, 0.01) * np.array([0.3, 0.7])
    sw = accumulate_sweep(cam.expose, cam.shape, ph, frames=4, dark_frames=8, rng=1)
    prof = build_profile(sw.dark, sw.levels, max_adu=cam.max_adu, gain_map="auto")
    prov = prof.summary()["provenance"]
    assert prov["gain_map"] == "global" and "global K" in prov["gain_map_reason"]
