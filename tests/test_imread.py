"""`rawsigma.imread`: every layout rawsigma writes reads back identical (property-based),
and what it cannot interpret is refused with the layout it found."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawsigma.errors import InputFileError
from rawsigma.imread import imread, read_frame, read_stack, split_dataset

zarr = pytest.importorskip("zarr")

INT_DTYPES = ["uint8", "uint16", "int16", "uint32", "int32"]
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def arrays(draw, dtypes=INT_DTYPES):
    """(H, W) or (N, H, W) arrays, N 1-4, H, W 5-20, values over the dtype's range."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n = draw(st.integers(0, 4))  # 0: a 2-D image
    h, w = draw(st.integers(5, 20)), draw(st.integers(5, 20))
    shape = (h, w) if n == 0 else (n, h, w)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def expected(a: np.ndarray) -> np.ndarray:
    return a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def write(kind: str, a: np.ndarray, d: Path) -> Path:
    """Write ``a`` the way rawsigma (or a user's tool) would; return the path to read."""
    if kind == "tiff":
        p = d / "a.tif"
        tifffile.imwrite(p, a, photometric="minisblack")
    elif kind == "ome-series":  # FrameWriter today: one OME image per frame
        p = d / "a.ome.tif"
        with tifffile.TiffWriter(p, ome=True) as tw:
            for f in a.reshape(-1, *a.shape[-2:]):
                tw.write(f, photometric="minisblack")
    elif kind == "ome-t":  # one series with a T axis
        p = d / "a.ome.tif"
        tifffile.imwrite(p, a, ome=True, metadata={"axes": "TYX" if a.ndim == 3 else "YX"})
    elif kind == "hdf5":
        p = d / "a.h5"
        with h5py.File(p, "w") as f:
            f["frames"] = a
            f["kind"] = np.zeros(5, np.int8)  # 1-D side tables are not candidates
    elif kind == "hdf5-named":
        p = d / "b.h5"
        with h5py.File(p, "w") as f:
            f["grp/raw"] = a
            f["grp/other"] = a[..., :3]
        return Path(f"{p}:/grp/raw")
    elif kind == "zarr3":
        p = d / "a.zarr"
        z = zarr.create_array(str(p), shape=a.shape, dtype=a.dtype, chunks=(4,) * a.ndim)
        z[...] = a
    elif kind == "zarr2":
        p = d / "a.zarr"
        z = zarr.create_array(str(p), shape=a.shape, dtype=a.dtype, chunks=a.shape, zarr_format=2)
        z[...] = a
    elif kind == "zarr-group":
        p = d / "g.zarr"
        g = zarr.open_group(str(p), mode="w")
        z = g.create_array("frames", shape=a.shape, dtype=a.dtype, chunks=a.shape)
        z[...] = a
    elif kind == "npy":
        p = d / "a.npy"
        np.save(p, a)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


KINDS = ["tiff", "ome-series", "ome-t", "hdf5", "hdf5-named", "zarr3", "zarr2", "zarr-group", "npy"]


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(a=arrays())
def test_round_trip(kind, a):
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = write(kind, a, Path(tmp))
        got, info = imread(p)
        want = expected(a)
        assert got.dtype == a.dtype
        assert np.array_equal(got, want)
        assert info.shape == want.shape
        assert info.n_frames == (want.shape[0] if want.ndim == 3 else 1)
        assert info.axes == ("TYX" if want.ndim == 3 else "YX")
        stack, sinfo = read_stack(p)
        assert stack.shape == (info.n_frames, *want.shape[-2:])
        assert sinfo.n_frames == info.n_frames


@pytest.mark.parametrize("kind", ["tiff", "hdf5", "npy"])
@SETTINGS
@given(a=arrays(dtypes=["float32"]))
def test_float_refused_unless_allowed(kind, a):
    with tempfile.TemporaryDirectory() as tmp:
        p = write(kind, a, Path(tmp))
        with pytest.raises(InputFileError, match="floating-point"):
            imread(p)
        got, _ = imread(p, integer=False)
        assert np.array_equal(got, expected(a))


@SETTINGS
@given(a=arrays(dtypes=["uint16"]), data=st.data())
def test_zarr_missing_chunk_is_an_error(a, data):
    """Delete any one chunk: the reader refuses (never zeros), naming the chunk."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = write("zarr3", a, Path(tmp))
        chunks = sorted(q for q in (p / "c").rglob("*") if q.is_file())
        victim = data.draw(st.sampled_from(chunks))
        victim.unlink()
        key = "c/" + "/".join(victim.relative_to(p / "c").parts)
        with pytest.raises(InputFileError, match=f"1 of {len(chunks)} chunks.*{key}"):
            imread(p)


@SETTINGS
@given(a=arrays(dtypes=["uint16"]), index=st.integers(-2, 6))
def test_read_frame_index(a, index):
    with tempfile.TemporaryDirectory() as tmp:
        p = write("ome-series", a, Path(tmp))
        want = expected(a)
        if want.ndim == 2:
            if index in (0,):
                assert np.array_equal(read_frame(p, index)[0], want)
            elif index is not None:
                with pytest.raises(InputFileError, match="one 2-D image"):
                    read_frame(p, index)
            return
        if 0 <= index < want.shape[0]:
            f, info = read_frame(p, index)
            assert np.array_equal(f, want[index]) and info.n_frames == 1
        else:
            with pytest.raises(InputFileError, match="out of range"):
                read_frame(p, index)
        with pytest.raises(InputFileError, match=f"stack of {want.shape[0]} frames"):
            read_frame(p)


def test_framewriter_files_read_as_all_frames(tmp_path):
    """The OME-TIFF and HDF5 that acquire's FrameWriter writes: every frame, bit depth."""
    from rawsigma.acquire.framesave import FrameWriter

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4096, (5, 16, 24), dtype=np.uint16)
    for name in ("s.ome.tif", "t.h5"):
        with FrameWriter(tmp_path / name, (16, 24), 12) as w:
            for f in frames:
                w.write(f, "dark", -1)
        a, info = imread(tmp_path / name)
        assert np.array_equal(a, frames)
        assert info.n_frames == 5 and info.bit_depth == 12
        assert "5 frames" in info.describe()


REFUSED = [
    ("rgb8.tif", lambda p: tifffile.imwrite(p, np.zeros((9, 9, 3), np.uint8), photometric="rgb"),
     "colour (RGB)"),
    ("chan.tif", lambda p: tifffile.imwrite(p, np.zeros((2, 3, 9, 9), np.uint16),
                                            imagej=True, metadata={"axes": "TCYX"}),
     "3 channels"),
    ("tz.tif", lambda p: tifffile.imwrite(p, np.zeros((2, 3, 9, 9), np.uint16),
                                          photometric="minisblack", metadata={"axes": "TZYX"}),
     "2 non-spatial axes"),
    ("5d.npy", lambda p: np.save(p, np.zeros((2, 2, 2, 9, 9), np.uint16)),
     "without axis metadata"),
    ("rgb.npy", lambda p: np.save(p, np.zeros((9, 9, 3), np.uint16)), "colour (RGB)"),
    ("obj.npy", lambda p: np.save(p, np.array([{"a": 1}]), allow_pickle=True),
     "not a plain numeric"),
    ("line.npy", lambda p: np.save(p, np.zeros(9, np.uint16)), "(9,)"),
    ("mixed.ome.tif", lambda p: _mixed(p), "2 images of different shapes"),
    ("x.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n0000"), "unrecognised content"),
    ("e.h5", lambda p: h5py.File(p, "w").close(), "no image dataset"),
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 9, 9), np.uint16)), "empty"),
]  # fmt: skip


def _mixed(p: Path) -> None:
    with tifffile.TiffWriter(p, ome=True) as tw:
        tw.write(np.zeros((9, 9), np.uint16))
        tw.write(np.zeros((5, 7), np.uint16))


@pytest.mark.parametrize(("name", "make", "needle"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_layout(tmp_path, name, make, needle):
    p = tmp_path / name
    make(p)
    with pytest.raises(InputFileError, match=None) as e:
        imread(p)
    assert needle in str(e.value), str(e.value)
    assert str(p) in str(e.value)


def test_noise_codec_files_are_not_raw_frames(tmp_path):
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.containers import write_compressed
    from rawsigma.calib.profile import CameraProfile

    prof = CameraProfile.uniform((16, 16), gain=2.0, offset=100.0, read_noise=3.0)
    frames = np.random.default_rng(0).integers(90, 400, (2, 16, 16), dtype=np.uint16)
    codec = NoiseCodec(prof, maps="global")
    for name in ("c.tif", "c.h5"):
        write_compressed(tmp_path / name, frames, codec)
        with pytest.raises(InputFileError, match="rawsigma decompress"):
            imread(tmp_path / name)
    # a noise-codec zarr decodes through zarr's codec registry: real values, not codes
    write_compressed(tmp_path / "c.zarr", frames, codec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, info = imread(tmp_path / "c.zarr")
    assert np.array_equal(got, codec.decode(codec.encode(frames)))
    shutil.rmtree(tmp_path / "c.zarr" / "c" / "1")
    with pytest.raises(InputFileError, match="missing"):
        imread(tmp_path / "c.zarr")


def test_hdf5_and_zarr_selection(tmp_path):
    a = np.arange(2 * 6 * 7, dtype=np.uint16).reshape(2, 6, 7)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["x"], f["y"] = a, a + 1
    with pytest.raises(InputFileError, match=r"2 image datasets .*/x \(2, 6, 7\).*:NAME"):
        imread(tmp_path / "m.h5")
    assert np.array_equal(imread(f"{tmp_path}/m.h5:y")[0], a + 1)
    assert np.array_equal(imread(tmp_path / "m.h5", dataset="/x")[0], a)
    with pytest.raises(InputFileError, match="no dataset 'z'"):
        imread(f"{tmp_path}/m.h5:z")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", shape=a.shape, dtype=a.dtype)[...] = a
    g.create_array("b", shape=a.shape, dtype=a.dtype)[...] = a + 2
    with pytest.raises(InputFileError, match="2 arrays"):
        imread(tmp_path / "g.zarr")
    assert np.array_equal(imread(f"{tmp_path}/g.zarr:b")[0], a + 2)
    assert split_dataset("C:/x/a.tif") == (Path("C:/x/a.tif"), None)
    assert split_dataset("d/a.h5:/g/x") == (Path("d/a.h5"), "/g/x")
