"""HDF5 profile files: exact round trip, atomic writes, every kind of bad file."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from rawsigma.calib.profile import DEFECT_DEAD, CameraIdentity, CameraProfile
from rawsigma.calib.profile_io import FORMAT_NAME, SCHEMA_VERSION
from rawsigma.errors import OutputExistsError, ProfileError


def full_profile() -> CameraProfile:
    """Every optional field filled, with values that catch lossy storage."""
    rng = np.random.default_rng(42)
    shape = (20, 30)
    defects = np.zeros(shape, np.uint8)
    defects[2, 3] = DEFECT_DEAD
    se = rng.uniform(0.001, 0.01, shape).astype(np.float32)
    se[2, 3] = np.nan  # not estimated for the dead pixel
    return CameraProfile(
        offset=rng.normal(100, 2, shape).astype(np.float32),
        gain=rng.normal(2, 0.05, shape).astype(np.float32),
        read_noise=rng.lognormal(0.5, 0.3, shape).astype(np.float32),
        identity=CameraIdentity(
            camera="Camera",
            model="ORCA-Flash4.0 V3",
            serial="301234",
            vendor="Hamamatsu",
            bit_depth=16,
            binning=2,
            roi=(4, 6, 30, 20),
            sensor_shape=(1024, 1024),
            readout_mode="Standard",
            gain_mode="HDR",
            exposure_ms=10.5,
            temperature_c=-10.0,
            extra={"ScanMode": "2", "Ünïcode": "µs"},
        ),
        offset_se=se,
        gain_se=se * 2,
        read_noise_se=se * 3,
        defects=defects,
        prnu=rng.normal(1, 0.01, shape).astype(np.float32),
        emva={"K": 2.0001, "sigma_d": 1.7, "saturation_capacity_e": 30000.0, "nested": [1, 2]},
        ptc={
            "level": np.arange(6, dtype=np.int64),
            "mean": np.linspace(100, 60000, 6),
            "var": np.linspace(3, 120000, 6),
            "n_frames": np.full(6, 200, np.int32),
        },
        plan={"levels": 6, "frames_per_level": 200, "control": "LED.Intensity"},
        provenance={"software_version": "0.1.0", "seed": 7, "estimated": False},
    )


def assert_same(a: CameraProfile, b: CameraProfile) -> None:
    for name in (
        "offset",
        "gain",
        "read_noise",
        "offset_se",
        "gain_se",
        "read_noise_se",
        "defects",
        "prnu",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.identity == b.identity
    assert a.emva == b.emva and a.plan == b.plan and a.provenance == b.provenance
    assert list(a.ptc) == list(b.ptc)
    for k in a.ptc:
        assert a.ptc[k].dtype == b.ptc[k].dtype
        np.testing.assert_array_equal(a.ptc[k], b.ptc[k])


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_round_trip_exact(tmp_path, compression):
    p = full_profile()
    path = tmp_path / "p.h5"
    p.save(path, compression=compression)
    q = CameraProfile.load(path)
    assert_same(p, q)
    assert q.profile_id == p.profile_id
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert f.attrs["profile_id"] == p.profile_id
        assert f["maps/gain"].compression == compression
        assert f["maps/gain"].attrs["units"] == "ADU/e-"
        assert list(f["identity"].attrs["roi"]) == [4, 6, 30, 20]


def test_round_trip_minimal_and_cropped(tmp_path):
    p = CameraProfile.uniform((8, 8), 1.5, 10, 2.0)
    p.save(tmp_path / "u.h5")
    q = CameraProfile.load(tmp_path / "u.h5")
    assert q.profile_id == p.profile_id and q.ptc == {} and q.gain_se is None
    c = full_profile().crop((10, 8, 7, 5))
    c.save(tmp_path / "c.h5")
    assert_same(c, CameraProfile.load(tmp_path / "c.h5"))


def test_refuses_overwrite_and_keeps_file(tmp_path):
    path = tmp_path / "p.h5"
    full_profile().save(path)
    before = path.read_bytes()
    other = CameraProfile.uniform((4, 4), 1, 1, 1)
    with pytest.raises(OutputExistsError, match="p.h5"):
        other.save(path)
    assert path.read_bytes() == before
    other.save(path, force=True)
    assert CameraProfile.load(path).profile_id == other.profile_id


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "p.h5"
    full_profile().save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        CameraProfile.uniform((4, 4), 1, 1, 1).save(path, force=True)
    assert path.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.h5"]  # no temp file left


# ---------------------------------------------------------------- bad files


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    full_profile().save(path)
    return path


def tampered(good_file, name, edit):
    path = good_file.with_name(name)
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def load_error(path) -> str:
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(ProfileError) as info:
        CameraProfile.load(path)
    msg = str(info.value)
    assert str(path) in msg  # every message names the file
    if before is not None:
        assert path.read_bytes() == before  # loading never touches the file
    return msg


def test_missing_file(tmp_path):
    assert "no such" in load_error(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("this is not HDF5\n" * 10)
    assert "not an HDF5" in load_error(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated(good_file, keep):
    data = good_file.read_bytes()
    path = good_file.with_name("trunc.h5")
    path.write_bytes(data[: int(len(data) * keep)])
    msg = load_error(path)
    assert "truncated" in msg or "corrupted" in msg


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((4, 4))
    assert "not a rawsigma camera profile" in load_error(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "someone.else"
    assert "'someone.else'" in load_error(path)


@pytest.mark.parametrize(("version", "match"), [(2, "newer"), (0, "version 0")])
def test_wrong_schema_version(good_file, version, match):
    path = tampered(good_file, "v.h5", lambda f: f.attrs.__setitem__("schema_version", version))
    msg = load_error(path)
    assert "schema version" in msg and match in msg


def test_schema_version_wrong_type(good_file):
    path = tampered(good_file, "v.h5", lambda f: f.attrs.__setitem__("schema_version", "1"))
    assert "integer" in load_error(path)


def _replace(f, name, data):
    del f[name]
    f[name] = data


def test_map_shapes_disagree(good_file):
    path = tampered(good_file, "s.h5", lambda f: _replace(f, "maps/gain", np.ones((20, 31), "f4")))
    assert "shapes disagree" in load_error(path)


def test_map_shape_vs_identity_roi(good_file):
    path = tampered(
        good_file,
        "r.h5",
        lambda f: f["identity"].attrs.__setitem__("roi", np.array([4, 6, 30, 21], np.int64)),
    )
    assert "ROI" in load_error(path)


def test_wrong_dtype(good_file):
    path = tampered(good_file, "d.h5", lambda f: _replace(f, "maps/gain", np.ones((20, 30), "f8")))
    msg = load_error(path)
    assert "float64" in msg and "gain" in msg
    path = tampered(
        good_file, "d2.h5", lambda f: _replace(f, "maps/defects", np.zeros((20, 30), "i4"))
    )
    assert "defects" in load_error(path)


def test_nan_in_required_map(good_file):
    def edit(f):
        g = f["maps/read_noise"][()]
        g[1, 1] = np.nan
        _replace(f, "maps/read_noise", g)

    assert "non-finite" in load_error(tampered(good_file, "n.h5", edit))


def test_missing_map_and_bad_json(good_file):
    assert "missing required map" in load_error(
        tampered(good_file, "m.h5", lambda f: f.__delitem__("maps/offset"))
    )
    assert "not valid JSON" in load_error(
        tampered(good_file, "j.h5", lambda f: f.attrs.__setitem__("emva", "{oops"))
    )
    assert "'/identity'" in load_error(
        tampered(good_file, "i.h5", lambda f: f.__delitem__("identity"))
    )


def test_modified_values_detected(good_file):
    def edit(f):
        f["maps/gain"][0, 0] = 123.0

    assert "does not match" in load_error(tampered(good_file, "x.h5", edit))
