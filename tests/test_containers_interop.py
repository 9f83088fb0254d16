"""Containers read by other tools (each in a fresh process that never imports rawsigma),
the numcodecs contract (numcodecs' own check helpers), lost chunks/pages, temporaries."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs")
zarr = pytest.importorskip("zarr")

from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec import containers as C  # noqa: E402
from rawsigma.analysis.noisecodec.numcodec import NoiseNumcodec  # noqa: E402
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.errors import InputFileError  # noqa: E402

FIXTURES = Path(__file__).parent / "data"
# rawsigma "not installed": not importable, and its entry points hidden from numcodecs/zarr
NO_RAWSIGMA = textwrap.dedent("""
    import sys, importlib.metadata as md
    sys.modules["rawsigma"] = None
    _eps = md.entry_points
    def _hidden(**kw):
        eps = _eps(**kw) if kw else [e for g in _eps().values() for e in g]
        return md.EntryPoints(e for e in eps if not e.value.startswith("rawsigma"))
    md.entry_points = _hidden
""")


@pytest.fixture(scope="module")
def data():
    frame, lam, cam = reference_frame((96, 128), seed=5)
    stack = np.stack([frame, cam.expose(lam, 0.0, np.random.default_rng(2)), frame])
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=2.0, maps="global")
    return stack, codec, codec.decode(codec.encode(stack))


def _run(code: str, *args: str, rawsigma: bool = False) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (importing rawsigma only if ``rawsigma``)."""
    assert rawsigma or ("import rawsigma" not in code and "from rawsigma" not in code)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _npy(proc: subprocess.CompletedProcess, path: Path) -> np.ndarray:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(path)


# ---------------------------------------------------------------- foreign readers
READ_TIFF = textwrap.dedent("""
    import sys, numpy as np, tifffile
    np.save(sys.argv[2], tifffile.imread(sys.argv[1]))
""")


def test_tifffile_without_rawsigma_refuses_never_a_thumbnail(tmp_path, data):
    stack, codec, _ = data
    p = C.write_compressed(tmp_path / "x.tif", stack, codec)
    r = _run(NO_RAWSIGMA + READ_TIFF, str(p), str(tmp_path / "o.npy"))
    assert r.returncode != 0 and "61500 is not a known COMPRESSION" in r.stderr
    assert not (tmp_path / "o.npy").exists()
    # what a plain reader can see says what the file is, and claims the full frame size
    r = _run(
        NO_RAWSIGMA + "import sys, tifffile\n"
        "tf = tifffile.TiffFile(sys.argv[1]); s = tf.series[0]\n"
        "print(s.name, s.shape, tf.is_ome, tf.is_shaped)\n",
        str(p),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "rawsigma noise-codec compressed (decode with rawsigma) (3, 96, 128) True False"
    )
    assert "shaped series" not in r.stderr


def test_tifffile_with_rawsigma_decoder_gets_the_frames(tmp_path, data):
    stack, codec, expected = data
    p = C.write_compressed(tmp_path / "x.tif", stack, codec)
    # the one line a user adds: import rawsigma's TIFF module (registers the decoder)
    code = "import rawsigma.analysis.noisecodec.containers_tiff\n"
    r = _run(code + READ_TIFF, str(p), str(tmp_path / "o.npy"), rawsigma=True)
    assert np.array_equal(_npy(r, tmp_path / "o.npy"), expected)


READ_ZARR = textwrap.dedent("""
    import sys, warnings, numpy as np, zarr
    warnings.simplefilter("ignore")
    np.save(sys.argv[2], zarr.open_array(sys.argv[1], mode="r")[...])
""")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_reads_through_the_entry_point(tmp_path, data, zarr_format):
    stack, codec, expected = data
    if zarr_format == 3:
        p = C.write_compressed(tmp_path / "x.zarr", stack, codec)
    else:
        p = tmp_path / "x.zarr"
        z = zarr.open_array(
            str(p), mode="w", shape=stack.shape, chunks=(1, 96, 128), dtype="uint16",
            zarr_format=2, compressor=NoiseNumcodec.from_codec(codec),
        )  # fmt: skip
        z[...] = stack
    r = _run(READ_ZARR, str(p), str(tmp_path / "o.npy"))
    assert np.array_equal(_npy(r, tmp_path / "o.npy"), expected)
    # without rawsigma: zarr refuses, naming the codec (never fill values)
    r = _run(NO_RAWSIGMA + READ_ZARR, str(p), str(tmp_path / "n.npy"))
    assert r.returncode != 0 and "rawsigma_noise" in r.stderr
    assert not (tmp_path / "n.npy").exists()


def test_h5py_sees_labelled_streams_not_an_image(tmp_path, data):
    stack, codec, expected = data
    p = C.write_compressed(tmp_path / "x.h5", stack, codec)
    r = _run(
        NO_RAWSIGMA
        + textwrap.dedent("""
        import sys, json, h5py
        with h5py.File(sys.argv[1], "r") as f:
            ds = f["rsnc"]
            out = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in ds.attrs.items()}
            out["n"] = ds.shape[0]
            out["magic"] = bytes(ds[0][:4]).decode()
            out["dtype"] = str(ds.dtype)
        print(json.dumps(out))
        """),
        str(p),
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "rawsigma-noisecodec" and info["lossy"] is True
    assert info["stack_shape"] == list(stack.shape) and info["n"] == 3
    assert info["magic"] == "RSNC" and info["dtype"] == "object"
    assert "decode with `rawsigma decompress`" in info["description"]
    assert np.array_equal(C.read_compressed(p), expected)


def test_hdf5_ratio_is_the_rsnc_ratio(tmp_path):
    frame, lam, cam = reference_frame((512, 512), seed=3)
    codec = NoiseCodec(cam.true_profile(), step=2.0, maps="global")
    rs = C.write_compressed(tmp_path / "x.rsnc", frame, codec).stat().st_size
    h5 = C.write_compressed(tmp_path / "x.h5", frame, codec).stat().st_size
    tif = C.write_compressed(tmp_path / "x.tif", frame, codec).stat().st_size
    assert h5 < rs * 1.05 + 4096 and tif < rs * 1.05 + 2048, (rs, h5, tif)


# ---------------------------------------------------------------- numcodecs contract
def _codec() -> NoiseNumcodec:
    return NoiseNumcodec(step=1.0, sigma_e=2.0, gain=1.0, offset=100.0, profile_id="t")


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    flat = rng.poisson(400, 4096).astype(np.uint16) + 100
    return [flat, flat.reshape(64, 64), flat.reshape(4, 32, 32), flat.reshape(64, 64).T]


def test_numcodecs_check_helpers():
    from numcodecs.tests.common import (
        check_config,
        check_encode_decode,
        check_err_encode_object_buffer,
    )

    codec = _codec()
    for arr in _arrays():
        # lossy: |error| <= ~1 sigma = sqrt(500 + 4) ADU here; decimal=-1 allows < 15 ADU
        check_encode_decode(arr, codec, precision=-1)
    check_err_encode_object_buffer(codec)
    check_config(codec)
    assert repr(codec) == (
        "NoiseNumcodec(dither=False, effort='pyramid', gain=1.0, knee=4.0, maps='global', "
        "max_adu=65535, max_error=None, offset=100.0, profile_id='t', seed=0, "
        "sigma_e=2.0, step=1.0)"
    )
    assert eval(repr(codec)) == codec


def test_numcodecs_decode_into_object_buffer_is_a_type_error():
    # numcodecs' check_err_decode_object_buffer encodes np.arange(10) (int64), which this
    # codec refuses by design; the same check with uint16 data:
    codec = _codec()
    enc = codec.encode(np.arange(10, dtype=np.uint16))
    with pytest.raises(TypeError):
        codec.decode(enc, out=np.empty(10, dtype=object))
    with pytest.raises(TypeError):
        codec.encode(np.arange(10))


def test_numcodecs_backwards_compatibility(monkeypatch):
    """Streams written by this version keep decoding to the same values."""
    from numcodecs.tests.common import check_backwards_compatibility

    assert (FIXTURES / "fixture/rawsigma_noise/codec.00/config.json").is_file()
    monkeypatch.chdir(FIXTURES)
    arrays = _arrays()[:3]
    check_backwards_compatibility("rawsigma_noise", arrays, [_codec()], precision=[-1])


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8", "int32", ">u2"])
def test_unsupported_dtypes_refused(tmp_path, dtype):
    codec = _codec()
    a = (np.arange(64 * 64).reshape(64, 64) - 100).astype(dtype)
    if dtype == ">u2":  # big-endian uint16 is still uint16: converted, not refused
        b = (np.arange(64 * 64).reshape(64, 64) + 100).astype(">u2")
        ref = codec.decode(codec.encode(b.astype(np.uint16)))
        assert np.array_equal(codec.decode(codec.encode(b)), ref)
        assert np.abs(ref.astype(int) - b).max() < 50
        return
    with pytest.raises(TypeError, match="uint16"):
        codec.encode(a)
    if dtype == "int16":  # through zarr too: an error, not 100-ADU errors
        z = zarr.open_array(
            str(tmp_path / "i.zarr"), mode="w", shape=a.shape, chunks=a.shape, dtype="int16",
            zarr_format=2, compressor=codec,
        )  # fmt: skip
        with pytest.raises(TypeError, match="uint16"):
            z[...] = a


def test_zarr3_codec_is_picklable(tmp_path, data):
    stack, codec, expected = data
    p = C.write_compressed(tmp_path / "x.zarr", stack, codec)
    a = zarr.open_array(str(p), mode="r")
    b = pickle.loads(pickle.dumps(a))
    assert np.array_equal(b[...], expected)
    s = C.zarr3_codec(NoiseNumcodec.from_codec(codec))
    assert pickle.loads(pickle.dumps(s)) == s


# ---------------------------------------------------------------- lost data
def test_missing_zarr_chunk_named_or_masked(tmp_path, data):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    stack, codec, expected = data
    p = C.write_compressed(tmp_path / "fr.zarr", stack, codec)
    chunk = p / "c" / "1" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()
    with pytest.raises(InputFileError, match=r"1 of 3 chunks missing \(c/1/0/0\)"):
        C.read_compressed(p)
    run = CliRunner().invoke
    r = run(app, ["decompress", str(p), "--out", str(tmp_path / "d.tif")])
    assert r.exit_code != 0 and "c/1/0/0" in r.output and "--allow-missing" in r.output
    assert not (tmp_path / "d.tif").exists()
    r = run(app, ["decompress", str(p), "--out", str(tmp_path / "d.tif"), "--allow-missing"])
    assert r.exit_code == 0, r.output
    assert "c/1/0/0" in r.output and "mask" in r.output
    import tifffile

    dec = tifffile.imread(tmp_path / "d.tif")
    mask = tifffile.imread(tmp_path / "d.mask.tif")
    assert np.array_equal(mask, np.broadcast_to(np.array([0, 1, 0])[:, None, None], dec.shape))
    assert np.array_equal(dec[[0, 2]], expected[[0, 2]])
    # the decoded TIFF says it is lossy-derived
    with tifffile.TiffFile(tmp_path / "d.tif") as tf:
        rec = json.loads(tf.pages[0].description)["rawsigma"]
    assert rec["lossy_derived"] is True and rec["masked_frames"] is True
    # compressing it again: refused, its lost frame holds 0 (QA session 11; before, the
    # zeros were coded as data with only the lossy-derived warning)
    codec.profile.save(tmp_path / "p.h5")
    r = run(app, ["compress", str(tmp_path / "d.tif"), "--profile", str(tmp_path / "p.h5"),
                  "--out", str(tmp_path / "again.rsnc")])  # fmt: skip
    assert r.exit_code == 1 and "lost regions hold 0" in r.output, r.output
    assert not (tmp_path / "again.rsnc").exists()
    # a corrupt chunk: named too
    p = C.write_compressed(tmp_path / "fr.zarr", stack, codec, force=True)
    (p / "c" / "2" / "0" / "0").write_bytes(b"RSNC garbage")
    with pytest.raises(InputFileError, match="chunk c/2/0/0 does not decode"):
        C.read_compressed(p)


def test_corrupt_tiff_page_and_h5_frame_named_or_masked(tmp_path, data):
    import h5py

    stack, codec, expected = data
    t = C.write_compressed(tmp_path / "x.tif", stack, codec)
    b = bytearray(t.read_bytes())
    import tifffile

    with tifffile.TiffFile(t) as tf:
        off = tf.pages[1].dataoffsets[0]
    b[off + 200] ^= 0xFF
    t.write_bytes(bytes(b))
    with pytest.raises(InputFileError, match="page 1"):
        C.read_compressed(t)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = C.read_compressed(t, allow_missing=True)
    assert got.mask[1].all() and not got.mask[[0, 2]].any() and w
    assert np.array_equal(got.data[[0, 2]], expected[[0, 2]])
    h = C.write_compressed(tmp_path / "x.h5", stack, codec)
    with h5py.File(h, "a") as f:
        f["rsnc"][2] = np.zeros(10, np.uint8)
    with pytest.raises(InputFileError, match="frame 2"):
        C.read_compressed(h)


def test_zarr_writer_leaves_no_temporary_on_failure(tmp_path, data, monkeypatch):
    stack, codec, _ = data

    def boom(self, buf):
        raise RuntimeError("disk full")

    monkeypatch.setattr(NoiseNumcodec, "encode", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        C.write_compressed(tmp_path / "x.zarr", stack, codec)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("maps", ["global", "pixel"])
def test_files_of_the_earlier_layout_still_decode(maps):
    """TIFF (preview + tag 65000) and HDF5 (codes) files written before issue 13."""
    legacy = FIXTURES / "legacy"
    expected = np.load(legacy / f"{maps}_decoded.npy")
    assert np.array_equal(C.read_compressed(legacy / f"{maps}.tif"), expected[:2])
    assert np.array_equal(C.read_compressed(legacy / f"{maps}.h5"), expected[2:])
