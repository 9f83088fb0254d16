"""Noise codec in containers (rsnc, zarr v2/v3, TIFF, HDF5) and the compress/decompress CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("numcodecs")
pytest.importorskip("zarr")

from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec import containers as C  # noqa: E402
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.errors import InputFileError, OutputExistsError  # noqa: E402


@pytest.fixture(scope="module")
def data():
    frame, lam, cam = reference_frame((128, 192), seed=11)
    stack = np.stack([frame, cam.expose(lam, 0.0, np.random.default_rng(1))])
    return stack, cam.true_profile()


@pytest.mark.parametrize("maps", ["pixel", "global"])
@pytest.mark.parametrize("ext", ["rsnc", "tif", "h5", "zarr"])
def test_round_trip_without_profile(tmp_path, data, ext, maps):
    stack, prof = data
    codec = NoiseCodec(prof, step=2.0, maps=maps)
    expected = codec.decode(codec.encode(stack))
    path = C.write_compressed(tmp_path / f"x.{ext}", stack, codec)
    got = C.read_compressed(path)  # no profile anywhere
    assert got.dtype == np.uint16 and got.shape == stack.shape
    assert np.array_equal(got, expected)
    with pytest.raises(OutputExistsError):
        C.write_compressed(path, stack, codec)
    C.write_compressed(path, stack, codec, force=True)


def test_zarr_v2_numcodecs_any_chunks(tmp_path, data):
    import zarr

    stack, prof = data
    codec = NoiseCodec(prof, step=2.0, maps="global")
    nc = C.NoiseNumcodec.from_codec(codec)
    z = zarr.open_array(
        str(tmp_path / "v2.zarr"), mode="w", shape=stack.shape, chunks=(1, 64, 64),
        dtype="uint16", zarr_format=2, compressor=nc,
    )  # fmt: skip
    z[...] = stack
    back = zarr.open_array(str(tmp_path / "v2.zarr"), mode="r")[...]
    g = codec.maps.gain().astype(float)
    sigma = g * np.sqrt(np.maximum((stack - codec.maps.offset()) / g, 0) + codec.params.sigma_e**2)
    assert np.abs(back.astype(float) - stack).max() < 4 * sigma.max()
    assert ((back.astype(float) - stack) ** 2 / sigma**2).mean() < 0.5
    # the stored config re-creates the codec
    import numcodecs

    cfg = nc.get_config()
    assert numcodecs.get_codec(cfg).get_config() == cfg


def test_zarr_v3_registered(tmp_path, data):
    import zarr

    stack, prof = data
    nc = C.NoiseNumcodec.from_codec(NoiseCodec(prof, maps="global"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = zarr.create_array(
            store=str(tmp_path / "v3.zarr"), shape=stack.shape, chunks=(1, 128, 64),
            dtype="uint16", serializer=C.zarr3_codec(nc), compressors=None, zarr_format=3,
        )  # fmt: skip
        a[...] = stack
        back = zarr.open_array(str(tmp_path / "v3.zarr"), mode="r")[...]
    assert back.shape == stack.shape and np.abs(back.astype(int) - stack).mean() < 10


def test_pixel_maps_in_zarr_need_whole_frames(data):
    stack, prof = data
    nc = C.NoiseNumcodec.from_codec(NoiseCodec(prof), maps="pixel")
    with pytest.raises(Exception, match="does not match"):
        nc.encode(stack[:, :64, :64])
    bare = C.NoiseNumcodec(maps="pixel")
    with pytest.raises(InputFileError, match="per-pixel maps"):
        bare.encode(stack)


def test_bad_container_files(tmp_path, data):
    import h5py

    stack, prof = data
    codec = NoiseCodec(prof)
    p = C.write_compressed(tmp_path / "x.rsnc", stack, codec)
    raw = p.read_bytes()
    (tmp_path / "cut.rsnc").write_bytes(raw[:-100])
    with pytest.raises(InputFileError, match="truncated"):
        C.read_compressed(tmp_path / "cut.rsnc")
    h5 = C.write_compressed(tmp_path / "x.h5", stack, codec)
    with h5py.File(h5, "a") as f:
        f["rsnc"].attrs["version"] = 7
    with pytest.raises(InputFileError, match="version 7"):
        C.read_compressed(h5)
    t = C.write_compressed(tmp_path / "x.tif", stack, codec)
    b = bytearray(t.read_bytes())
    t.write_bytes(bytes(b[: len(b) // 2]))
    with pytest.raises(InputFileError):
        C.read_compressed(t)
    with pytest.raises(InputFileError, match="no such file"):
        C.read_compressed(tmp_path / "missing.rsnc")
    with pytest.raises(ValueError, match="unknown container format 'bogus'"):
        C.read_compressed(h5, fmt="bogus")


def test_cli_compress_decompress(tmp_path, data):
    import tifffile
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    stack, prof = data
    prof.save(tmp_path / "p.h5")
    tifffile.imwrite(tmp_path / "raw.tif", stack[0])
    run = CliRunner().invoke
    r = run(app, ["compress", str(tmp_path / "raw.tif"), "--profile", str(tmp_path / "p.h5"),
                  "--step", "2", "--out", str(tmp_path / "c.tif")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert ":1 against raw" in r.output
    r = run(app, ["decompress", str(tmp_path / "c.tif"), "--out", str(tmp_path / "d.tif")])
    assert r.exit_code == 0, r.output
    dec = tifffile.imread(tmp_path / "d.tif")
    expected = NoiseCodec(prof, maps="global").decode(
        NoiseCodec(prof, maps="global").encode(stack[0])
    )
    assert np.array_equal(dec, expected)
    # --effort fast: a different back end, the same quantised values after decoding
    r = run(app, ["compress", str(tmp_path / "raw.tif"), "--profile", str(tmp_path / "p.h5"),
                  "--effort", "fast", "--out", str(tmp_path / "f.rsnc")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "effort=fast" in r.output
    r = run(app, ["decompress", str(tmp_path / "f.rsnc"), "--out", str(tmp_path / "f.tif")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(tifffile.imread(tmp_path / "f.tif"), expected)
    # refuses to overwrite; a frame of another shape is a clear error
    r = run(app, ["decompress", str(tmp_path / "c.tif"), "--out", str(tmp_path / "d.tif")])
    assert r.exit_code == 1 and "exists" in r.output
    tifffile.imwrite(tmp_path / "small.tif", stack[0, :64])
    r = run(app, ["compress", str(tmp_path / "small.tif"), "--profile", str(tmp_path / "p.h5"),
                  "--out", str(tmp_path / "s.h5")])  # fmt: skip
    assert r.exit_code == 1 and "does not match" in r.output
