"""QA session 13 (hnew): the paths a lab reaches second (3D, OPT, napari, GUI, API)."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.cli.main import app
from typer.testing import CliRunner


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _error_line(r) -> str:
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    return err


@pytest.mark.parametrize("ext", ["tif", "h5", "zarr"])
def test_napari_reader_keeps_a_compressed_volume_voxel_size(tmp_path, ext):
    """A (Z, Y, X) volume keeps its voxel size through .tif, .h5 and .zarr (README), but
    the napari reader opened it with scale 1, 1, 1 (z squashed 1.75x on BBBC050)."""
    if ext == "zarr":
        pytest.importorskip("zarr")
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec import containers as C
    from rawsigma.analysis.noisecodec.synthetic import reference_frame
    from rawsigma.napari import read_layers

    frame, _, cam = reference_frame((32, 40), seed=3)
    vol = np.stack([frame, frame[::-1], frame[:, ::-1]])
    codec = NoiseCodec(cam.true_profile(), step=2.0, maps="global")
    meta = {"axes": "ZYX", "spacing_zyx": [1.75, 0.8, 0.8]}
    p = C.write_compressed(tmp_path / f"v.{ext}", vol, codec, meta=meta)
    ((data, kw, kind),) = read_layers(p)
    assert kind == "image" and data.shape == vol.shape
    assert kw["scale"] == (1.75, 0.8, 0.8)
    assert kw["metadata"]["rawsigma"]["spacing_zyx"] == [1.75, 0.8, 0.8]
    # frames without a voxel size: no scale (napari's default)
    q = C.write_compressed(tmp_path / f"f.{ext}", vol, codec)
    ((_, kw2, _),) = read_layers(q)
    assert "scale" not in kw2


def test_error_line_keeps_square_brackets(tmp_path, capsys):
    """`tomo reconstruct 'opt.tif[x]'` said "error: opt.tif: no such file" (opt.tif
    exists): rich took "[x]" for a markup tag and dropped it from the one error line."""
    r = _run("tomo", "reconstruct", tmp_path / "opt.tif[x]", "--angle-range", "0,360",
             "-o", tmp_path / "r.tif")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert _error_line(r) == f"error: {tmp_path / 'opt.tif[x]'}: no such file"
    # the usage-error printer of the console script too ("No such option: --" before)
    from rawsigma.cli.main import _run as console_script

    assert console_script(["score", str(tmp_path / "i.tif"), "--[x]"]) == 2
    assert "No such option: --[x] (see" in capsys.readouterr().err
    import tifffile

    tifffile.imwrite(tmp_path / "p.tif", np.full((8, 2, 64), 1000, np.uint16))
    r = _run("tomo", "reconstruct", tmp_path / "p.tif", "--angle-range", "0,180",
             "--center", "[x]", "-o", tmp_path / "r.tif")  # fmt: skip
    assert _error_line(r) == "error: --center '[x]': expected auto or a number of pixels"
