"""QA session 11: what `compress` / `decompress` keep of a real volume besides its pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from rawsigma.calib.profile import CameraProfile
from rawsigma.volread import declared_axes, open_volume

EMBRYO = "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"


def _run(*args):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [*map(str, args)], terminal_width=80)


@pytest.fixture(scope="module")
def embryo(shared_data, tmp_path_factory):
    """The first 6 planes of the BBBC050 volume (ZYX, voxel 1.75 x 0.8 x 0.8 µm) and a
    profile with the numbers `profile estimate` gives it."""
    d = tmp_path_factory.mktemp("embryo")
    vol = tifffile.imread(shared_data / EMBRYO)[:6]
    desc = '{"axes": "ZYX", "voxel_size_um_zyx": [1.75, 0.8, 0.8]}'
    tifffile.imwrite(d / "vol.tif", vol, description=desc, metadata=None)
    prof = CameraProfile.uniform(vol.shape[1:], gain=26.12, offset=101.5, read_noise=2.209)
    prof.save(d / "cam.h5")
    return d, vol


@pytest.mark.parametrize("ext", ["tif", "h5", "zarr"])
def test_volume_axes_and_voxel_size_survive_the_codec(embryo, ext):
    """Before: the decoded file of a ZYX volume was a stack of frames ('IYX') without its
    voxel size, so `score decoded.tif` asked for --index and 3D measures lost their
    units; the .zarr container opened as a volume with no voxel size either."""
    d, vol = embryo
    comp, dec = d / f"c.{ext}", d / f"d_{ext}.tif"
    r = _run("compress", d / "vol.tif", "-p", d / "cam.h5", "--out", comp)
    assert r.exit_code == 0, r.output
    assert "axes ZYX, voxel 1.75 x 0.8 x 0.8 µm kept" in r.stdout
    r = _run("decompress", comp, "--out", dec)
    assert r.exit_code == 0, r.output
    assert declared_axes(dec) == "ZYX"
    _, info = open_volume(dec)
    assert info.spacing == pytest.approx((1.75, 0.8, 0.8)) and info.shape == vol.shape
    assert tifffile.imread(dec).shape == vol.shape
    if ext == "zarr":  # the store itself, read as a volume (it decodes transparently)
        _, info = open_volume(comp)
        assert info.spacing == pytest.approx((1.75, 0.8, 0.8))


def test_rsnc_and_npy_say_what_they_drop(embryo):
    """The bare stream and a .npy have no place for axes or voxel size: one warning each."""
    d, vol = embryo
    r = _run("compress", d / "vol.tif", "-p", d / "cam.h5", "--out", d / "v.rsnc")
    assert r.exit_code == 0, r.output
    (w,) = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert ".rsnc stream keeps no image metadata" in w and "voxel 1.75 x 0.8 x 0.8" in w
    r = _run("compress", d / "vol.tif", "-p", d / "cam.h5", "--out", d / "v.h5")
    r = _run("decompress", d / "v.h5", "--out", d / "v.npy")
    assert r.exit_code == 0, r.output
    (w,) = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert "cannot record that its values are decoded" in w and "axes ZYX, voxel" in w
    assert np.load(d / "v.npy").shape == vol.shape


def test_stack_of_frames_stays_frames(shared_data, tmp_path):
    """BBBC039's 3 fields (axes 'IYX': frames, not a volume) get no Z axis."""
    img = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[:, :64, :96]
    tifffile.imwrite(tmp_path / "f.tif", img, photometric="minisblack")
    CameraProfile.uniform(img.shape[1:], gain=0.368, offset=128.0, read_noise=3.4).save(
        tmp_path / "cam.h5"
    )
    r = _run("compress", tmp_path / "f.tif", "-p", tmp_path / "cam.h5", "--out", tmp_path / "c.h5")
    assert r.exit_code == 0 and "kept" not in r.stdout, r.output
    r = _run("decompress", tmp_path / "c.h5", "--out", tmp_path / "d.tif")
    assert r.exit_code == 0, r.output
    assert "Z" not in declared_axes(tmp_path / "d.tif")


def test_score_all_zero_instance_labels_named(shared_data, tmp_path):
    """All-zero --instances labels ended in "labels: no objects to derive training
    annotations from", without the file's name; now one line naming it (exit 1)."""
    img = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[0]
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "zero.tif", np.zeros(img.shape, np.uint16))
    r = _run("score", tmp_path / "img.tif", "--estimate-profile", "--labels",
             tmp_path / "zero.tif", "--instances", "--out", tmp_path / "s")  # fmt: skip
    assert r.exit_code == 1
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert f"{tmp_path / 'zero.tif'}: every pixel is 0: no labelled object" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("values", "says"), [(0, "every pixel is 0"), (-1, "negative label values")]
)
def test_tomo_score_labels_checked_like_score(tmp_path, values, says):
    """`tomo score --segmenter forest --labels` skipped the label checks of `score`:
    all-zero instances gave "labels: no objects …" unnamed, negative values were read
    as unlabelled. Both are now one line naming the file."""
    from rawsigma.cli.tomo_score_cmd import _annotations
    from rawsigma.errors import InputFileError

    lab = np.zeros((2, 16, 16), np.int16)
    lab[:, 4:8, 4:8] = values
    tifffile.imwrite(tmp_path / "lab.tif", lab, description='{"axes": "ZYX"}', metadata=None)
    with pytest.raises(InputFileError, match=f"lab.tif: {says}"):
        _annotations(tmp_path / "lab.tif", True, "forest", (10, 2, 16))


def test_zarr_shape_bit_flip_not_silently_shorter(embryo):
    """One bit flipped in the noise-codec store's zarr.json ("shape": [6 → 2, …]) made
    `decompress` write 2 of the 6 planes with exit 0; now refused in one line (exit 1)."""
    d, vol = embryo
    store = d / "flip.zarr"
    r = _run("compress", d / "vol.tif", "-p", d / "cam.h5", "--out", store)
    assert r.exit_code == 0, r.output
    meta = store / "zarr.json"
    original = meta.read_bytes()
    at = original.index(b'"shape"')
    at = original.index(b"6", at)
    flipped = original[:at] + bytes([original[at] ^ 0x04]) + original[at + 1 :]  # '6' -> '2'
    # since session 12 the store's metadata checksum refuses it first; a store written
    # before (no meta_crc32) is refused by its chunks outside the shorter grid
    doc = json.loads(flipped)
    del doc["attributes"]["meta_crc32"]
    for text, says in (
        (flipped, "zarr.json: metadata checksum mismatch"),
        (json.dumps(doc).encode(), "4 chunk file(s) outside the array's grid (e.g. c/2/0/0)"),
    ):
        meta.write_bytes(text)
        r = _run("decompress", store, "--out", d / "flip.tif")
        assert r.exit_code == 1 and not (d / "flip.tif").exists()
        (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert says in err


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_raw_zarr_with_chunks_beyond_its_shape_refused(tmp_path, zarr_format):
    """`imread` (score, compress, profile estimate) and `read_volume` read the shorter
    array a damaged shape describes; now they refuse it."""
    import json

    zarr = pytest.importorskip("zarr")
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread
    from rawsigma.volread import read_volume

    path = tmp_path / "raw.zarr"
    arr = zarr.create_array(
        str(path), shape=(6, 32, 32), chunks=(1, 32, 32), dtype="uint16", zarr_format=zarr_format
    )
    arr[...] = np.arange(6, dtype=np.uint16)[:, None, None] + 100
    meta = path / (".zarray" if zarr_format == 2 else "zarr.json")
    rec = json.loads(meta.read_text())
    rec["shape"][0] = 4
    meta.write_text(json.dumps(rec))
    with pytest.raises(InputFileError, match="2 chunk file"):
        imread(path)
    with pytest.raises(InputFileError, match="2 chunk file"):
        read_volume(path)


def test_decompress_npy_says_it_loses_the_lossy_mark(shared_data, tmp_path):
    """A decoded .npy is read as raw frames by every rawsigma command (no place for the
    lossy-derived mark): `profile estimate` of it then held the codec's noise, silently.
    `decompress` now says so in one warning line (exit 0); a .tif keeps the mark."""
    from rawsigma.cli.integrity import lossy_derived

    img = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[0, :128, :192]
    tifffile.imwrite(tmp_path / "f.tif", img)
    CameraProfile.uniform(img.shape, gain=0.368, offset=128.0, read_noise=3.4).save(
        tmp_path / "cam.h5"
    )
    r = _run("compress", tmp_path / "f.tif", "-p", tmp_path / "cam.h5", "--out", tmp_path / "c.h5")
    assert r.exit_code == 0, r.output
    r = _run("decompress", tmp_path / "c.h5", "--out", tmp_path / "d.npy")
    assert r.exit_code == 0, r.output
    (w,) = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert "d.npy: a .npy file cannot record that its values are decoded" in w
    assert not lossy_derived(tmp_path / "d.npy")
    r = _run("decompress", tmp_path / "c.h5", "--out", tmp_path / "d.tif")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    assert lossy_derived(tmp_path / "d.tif")


def test_rsnc_as_input_named_as_such(tmp_path):
    """A .rsnc given to score / compress / profile estimate was "not a TIFF/OME-TIFF,
    HDF5, zarr or .npy file (unrecognised content)", unlike the other containers."""
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.containers import write_compressed

    rng = np.random.default_rng(0)
    img = (200 + rng.poisson(50.0, (64, 64))).astype(np.uint16)
    prof = CameraProfile.uniform(img.shape, gain=1.0, offset=100.0, read_noise=2.0)
    write_compressed(tmp_path / "x.rsnc", img, NoiseCodec(prof, maps="global"))
    r = _run("profile", "estimate", tmp_path / "x.rsnc", "--out", tmp_path / "p.h5")
    assert r.exit_code == 1
    assert "a rawsigma noise-codec stream (.rsnc), not raw frames; run `rawsigma decompress`" in (
        r.stderr
    )


@pytest.mark.parametrize("value", [0, 500, 65535])
def test_score_constant_image_refused(shared_data, tmp_path, value):
    """`score --profile` of a constant frame (all 0, flat, all saturated) ran to the end,
    exit 0, "0 objects" and every codec "within noise" (jpeg@100 too, p=nan): a verdict
    on nothing. `profile estimate` already refused such images; `score` now does too."""
    labels = shared_data / "bbbc039_u2os_hoechst_3fields_labels.tif"
    shape = tifffile.imread(labels)[0].shape
    tifffile.imwrite(tmp_path / "c.tif", np.full(shape, value, np.uint16))
    CameraProfile.uniform(shape, gain=0.37, offset=128.0, read_noise=3.4).save(tmp_path / "p.h5")
    r = _run("score", tmp_path / "c.tif", "-p", tmp_path / "p.h5", "--labels", labels,
             "--index", "0", "--instances", "--out", tmp_path / "s")  # fmt: skip
    assert r.exit_code == 1, r.output
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert f"every pixel has the value {value} ADU: a constant image" in err
    assert not (tmp_path / "s").exists()


def test_score_volume_constant_refused():
    """The same check for a (Z, Y, X) volume."""
    from rawsigma.analysis.scoring.volume import check_raw_volume
    from rawsigma.errors import ImageMismatchError

    with pytest.raises(ImageMismatchError, match="every voxel has the value 7 ADU"):
        check_raw_volume(np.full((3, 16, 16), 7, np.uint16), None, "v.tif")


def test_allow_missing_output_not_read_as_raw(embryo):
    """`decompress --allow-missing` writes lost planes as 0 (and a mask). `compress` took
    that TIFF as raw frames and coded the zeros as data, exit 0: the new container no
    longer said anything was lost; `profile estimate` and `score` read it too. Every
    raw-frame reader now refuses it in one line naming the mask."""
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread
    from rawsigma.volread import read_volume

    d, vol = embryo
    store = d / "lost.zarr"
    r = _run("compress", d / "vol.tif", "-p", d / "cam.h5", "--out", store)
    assert r.exit_code == 0, r.output
    (store / "c" / "3" / "0" / "0").unlink()
    r = _run("decompress", store, "--out", d / "lost.tif", "--allow-missing")
    assert r.exit_code == 0 and (d / "lost.mask.tif").exists(), r.output
    r = _run("compress", d / "lost.tif", "-p", d / "cam.h5", "--out", d / "again.h5")
    assert r.exit_code == 1 and not (d / "again.h5").exists()
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "decoded with --allow-missing: its lost regions hold 0" in err
    assert "mask lost.mask.tif" in err
    for read in (imread, read_volume):
        with pytest.raises(InputFileError, match="lost regions hold 0"):
            read(d / "lost.tif")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_stray_file_in_a_zarr_store_is_not_a_chunk(tmp_path, zarr_format):
    """Review of session 11: every file in the array's folder counted as a chunk, so a
    stray `Thumbs.db` or `desktop.ini` (or a `*.partial` left by a copy tool) made a
    valid store "damaged". Only keys that read as chunk keys count; a real chunk
    outside the grid is still refused."""
    zarr = pytest.importorskip("zarr")
    from rawsigma._imread_stores import looks_like_chunk_key
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread

    assert looks_like_chunk_key("c/0/1/2") and looks_like_chunk_key("0.1.2")
    assert looks_like_chunk_key("c.3.0.0") and looks_like_chunk_key("4/0/0")
    assert not looks_like_chunk_key("Thumbs.db") and not looks_like_chunk_key("c/0/x.partial")
    path = tmp_path / "raw.zarr"
    arr = zarr.create_array(
        str(path), shape=(6, 32, 32), chunks=(1, 32, 32), dtype="uint16", zarr_format=zarr_format
    )
    arr[...] = np.arange(6, dtype=np.uint16)[:, None, None] + 100
    for stray in ("Thumbs.db", "desktop.ini", "notes.txt"):
        (path / stray).write_text("x")
    assert imread(path)[0].shape == (6, 32, 32)
    outside = "c/9/0/0" if zarr_format == 3 else "9.0.0"
    (path / outside).parent.mkdir(parents=True, exist_ok=True)
    (path / outside).write_bytes((path / ("c/0/0/0" if zarr_format == 3 else "0.0.0")).read_bytes())
    with pytest.raises(InputFileError, match="1 chunk file"):
        imread(path)
