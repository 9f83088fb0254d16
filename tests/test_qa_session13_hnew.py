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


def _small_volume(tmp_path):
    import json

    import tifffile

    rng = np.random.default_rng(4)
    zz, yy, xx = np.mgrid[:4, :48, :64]
    light = 40 + 400 * (((yy - 24 + 3 * zz) ** 2 + (xx - 20 - 6 * zz) ** 2) < 150)
    vol = np.rint(100 + 2.0 * rng.poisson(light) + rng.normal(0, 2, light.shape))
    lab = np.zeros(vol.shape, np.uint8)
    lab[:, 2:8, 2:12] = 1
    lab[:, 22:26, 18:22] = 2
    desc = json.dumps({"axes": "ZYX", "voxel_size_um_zyx": [2.0, 0.5, 0.5]})
    tifffile.imwrite(
        tmp_path / "v.tif", vol.astype(np.uint16), description=desc, photometric="minisblack"
    )
    tifffile.imwrite(
        tmp_path / "l.tif", lab, description=json.dumps({"axes": "ZYX"}), photometric="minisblack"
    )
    return tmp_path / "v.tif", tmp_path / "l.tif"


def test_volume_graph_ctrl_c_says_the_finished_tasks_are_kept(tmp_path, monkeypatch):
    """Ctrl-C during `score VOLUME --scheduler local` kept the finished tasks in OUT/work
    (the same command continues them, as README says) but said "interrupted: nothing
    written"; it now says what was kept and how to continue."""
    import rawsigma.analysis.scoring.volume_graph as vg

    def interrupted(vol, prof, work, **kw):
        (work / "tasks" / "raw").mkdir(parents=True)
        (work / "tasks" / ".replica_000.tmp-1").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(vg, "score_volume_tasks", interrupted)
    v, lab = _small_volume(tmp_path)
    out = tmp_path / "o"
    r = _run("score", v, "--estimate-profile", "--labels", lab, "--chunks", "4,48,64",
             "--codecs", "8bit", "--replicas", "2", "--out", out)  # fmt: skip
    assert r.exit_code == 130, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted:")]
    assert f"the finished tasks are kept in {out / 'work'}" in line, line
    assert "nothing written" not in r.stderr
    assert not (out / "report.html").exists()


def test_worker_processes_do_not_take_the_command_s_ctrl_c_handler(tmp_path):
    """Ctrl-C on `score VOLUME --scheduler local` printed "interrupted: nothing done" once
    per dask worker (spawned children get the command's sys.argv, so importing rawsigma
    installed the command's early handler in them) beside the command's own line."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import multiprocessing as mp, sys\n"
        "def probe(q):\n"
        "    import signal, rawsigma\n"
        "    q.put(signal.getsignal(signal.SIGINT) is rawsigma._early_interrupt)\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = '/venv/bin/rawsigma'  # what the console script's children get\n"
        "    ctx = mp.get_context('spawn')\n"
        "    q = ctx.Queue()\n"
        "    p = ctx.Process(target=probe, args=(q,))\n"
        "    p.start()\n"
        "    print(q.get())\n"
        "    p.join()\n"
    )
    r = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_many_fields_ctrl_c_says_the_fields_kept(tmp_path, monkeypatch):
    """Ctrl-C during `score fields.tif --all-fields` kept the finished fields (the same
    command scores the rest) but said "interrupted: nothing written"."""
    import rawsigma.analysis.outofcore.taskrun as tr
    import tifffile

    def interrupted(tasks, out, **kw):
        (out / next(iter(tasks))).mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "run_tasks", interrupted)
    rng = np.random.default_rng(2)
    imgs = rng.poisson(200, (3, 48, 64)).astype(np.uint16)
    lab = np.zeros(imgs.shape, np.uint8)
    lab[:, 2:8, 2:12], lab[:, 20:30, 20:30] = 1, 2
    tifffile.imwrite(tmp_path / "f.tif", imgs, photometric="minisblack")
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")
    out = tmp_path / "o"
    r = _run("score", tmp_path / "f.tif", "--estimate-profile", "--labels", tmp_path / "l.tif",
             "--all-fields", "--out", out)  # fmt: skip
    assert r.exit_code == 130, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted:")]
    assert f"1 of 3 fields are written in {out / 'fields'}" in line, line


def test_gui_refuses_a_bad_profile_before_opening(tmp_path, monkeypatch):
    """`rawsigma gui --profile broken.h5` (truncated, or not a profile) opened the window
    with an error dialog (offscreen: an invisible one, the command waiting); `profile show`
    refuses the same file in one line. Now the GUI does too, before starting Qt."""
    import rawsigma.gui.app as gui_app

    started = []
    monkeypatch.setattr(gui_app, "run_gui", lambda **kw: started.append(kw) or 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    r = _run("gui", "--profile", tmp_path / "broken.h5")
    assert r.exit_code == 1, r.output
    assert "cannot open as a camera profile" in _error_line(r)
    assert not started


def test_reconstruct_refuses_a_one_pixel_detector(tmp_path):
    """`tomo reconstruct` of a (51, 1, 1) stack (a 1x1-pixel crop) wrote a 1x1 "slice"
    with the centre of rotation at -2 px (outside the detector), exit 0."""
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "p.tif", rng.integers(900, 1100, (51, 1, 1), np.uint16),
                     photometric="minisblack")  # fmt: skip
    r = _run("tomo", "reconstruct", tmp_path / "p.tif", "--angle-range", "0,360",
             "-o", tmp_path / "r.tif")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "a 1-pixel detector" in _error_line(r)
    assert not (tmp_path / "r.tif").exists()
    # the narrowest accepted detector still reconstructs
    tifffile.imwrite(tmp_path / "q.tif", rng.integers(900, 1100, (16, 2, 8), np.uint16),
                     photometric="minisblack")  # fmt: skip
    r = _run("tomo", "reconstruct", tmp_path / "q.tif", "--angle-range", "0,180",
             "-o", tmp_path / "q_rec.tif")  # fmt: skip
    assert r.exit_code == 0, r.output


def test_one_plane_volume_is_refused_with_the_2d_way(tmp_path):
    """A ZYX file of one plane with its one-plane labels stopped on "the training labels
    ...: shape (48, 64) differs from the image shape (1, 48, 64)" (they match); it is now
    refused as a one-plane volume, naming the 2D way (--index 0), which works."""
    import json

    import tifffile

    v, lab = _small_volume(tmp_path)
    desc = json.dumps({"axes": "ZYX", "voxel_size_um_zyx": [2.0, 0.5, 0.5]})
    for name, src in (("v1.tif", v), ("l1.tif", lab)):
        tifffile.imwrite(tmp_path / name, tifffile.imread(src)[:1], description=desc,
                         photometric="minisblack")  # fmt: skip
    r = _run("score", tmp_path / "v1.tif", "--estimate-profile", "--labels",
             tmp_path / "l1.tif", "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1, r.output
    err = _error_line(r)
    assert "a volume of one plane (1, 48, 64)" in err and "--index 0" in err, err
    assert not (tmp_path / "o").exists()


def test_estimate_on_a_small_volume_picks_a_block_size_that_fits(tmp_path):
    """`score VOL --estimate-profile` on a (2, 40, 48) volume stopped on "tile must be an
    integer in [16, 16] pixels for this 40x48 image, got 32": a parameter the command
    chose itself (no option sets it). It now uses 16-pixel blocks there."""
    import json

    import tifffile

    v, lab = _small_volume(tmp_path)
    desc = json.dumps({"axes": "ZYX", "voxel_size_um_zyx": [2.0, 0.5, 0.5]})
    tifffile.imwrite(tmp_path / "v2.tif", tifffile.imread(v)[:2, :40, :48], description=desc,
                     photometric="minisblack")  # fmt: skip
    from rawsigma.cli.score_volume_cmd import _profile
    from rich.console import Console

    vol = tifffile.imread(tmp_path / "v2.tif")
    prof = _profile(None, None, vol, tmp_path / "v2.tif", Console(stderr=True))
    assert prof.offset.shape == (40, 48)


def test_readme_outofcore_api_is_public(tmp_path):
    """README: "Volumes beyond memory (Python API, `rawsigma.analysis.outofcore`; …):
    `segment_measure_chunked(zarr_path, classifier, workdir, spacing=..., chunks="auto")`"
    -- but `from rawsigma.analysis.outofcore import segment_measure_chunked` failed
    (AttributeError: it was only in the private `.pipeline` module)."""
    pytest.importorskip("dask")
    zarr = pytest.importorskip("zarr")
    from rawsigma.analysis import outofcore
    from rawsigma.analysis.outofcore import segment_measure_chunked

    assert "segment_measure_chunked" in outofcore.__all__
    vol = np.zeros((6, 20, 24), np.uint16)
    vol[1:4, 2:8, 2:8] = 500
    vol[2:5, 12:18, 14:22] = 500
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=vol.shape, dtype=vol.dtype,
                        chunks=(3, 10, 12))  # fmt: skip
    z[:] = vol
    lab, table = segment_measure_chunked(str(tmp_path / "v.zarr"), None, tmp_path / "w",
                                         spacing=(2.0, 1.0, 1.0), threshold=200,
                                         chunks="auto")  # fmt: skip
    assert int(np.asarray(lab).max()) == 2


def test_one_image_with_a_label_stack_names_no_dead_end(tmp_path):
    """`score slice.tif --labels embryo_labels.tif` (2D image, 51-frame labels) advised
    "choose one label image with --index (0..50)"; --index then picked a frame of the
    one-frame image too: "--index 25, but the file holds one 2-D image"."""
    import tifffile

    rng = np.random.default_rng(0)
    light = np.broadcast_to(np.linspace(20, 400, 128), (128, 128))
    img = np.rint(100 + 2.0 * rng.poisson(light) + rng.normal(0, 2, light.shape))
    tifffile.imwrite(tmp_path / "i.tif", img.astype(np.uint16))
    lab = np.zeros((5, 128, 128), np.uint8)
    lab[:, 2:8, 2:12], lab[:, 20:30, 20:30] = 1, 2
    tifffile.imwrite(tmp_path / "l.tif", lab, photometric="minisblack")
    r = _run("score", tmp_path / "i.tif", "--estimate-profile", "--labels", tmp_path / "l.tif",
             "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1, r.output
    err = _error_line(r)
    assert "5 label frames" in err and "give the label image of that image alone" in err, err
    assert "--index" not in err


def test_reconstruct_refuses_an_rgb_tiff_as_such(tmp_path):
    """`tomo reconstruct rgb.tif` read the (rows, cols, 3) colour image as projections
    3 pixels wide and stopped on "no open beam at the detector edges"."""
    import tifffile

    rgb = np.random.default_rng(0).integers(0, 255, (120, 122, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    r = _run("tomo", "reconstruct", tmp_path / "rgb.tif", "--angle-range", "0,360",
             "-o", tmp_path / "r.tif")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "colour (RGB) image" in _error_line(r), r.stderr


def test_bad_scheduler_address_is_a_usage_error(tmp_path):
    """`score VOL --scheduler bogus` read the volume, estimated a profile, then stopped on
    "internal error: ValueError: missing port number in address 'bogus' (... please report
    it)", exit 1: a bad option value, refused up front (exit 2) now."""
    pytest.importorskip("distributed")
    v, lab = _small_volume(tmp_path)
    for bad in ("bogus", "tcp://head", "tcp://head:port"):
        r = _run("score", v, "--estimate-profile", "--labels", lab, "--scheduler", bad,
                 "--out", tmp_path / "o")  # fmt: skip
        assert r.exit_code == 2, r.output
        err = _error_line(r)
        assert f"--scheduler '{bad}': not 'local' or a scheduler address" in err, err
        assert "read " not in r.stderr  # before any input is read
    from rawsigma.cli.params import check_scheduler

    for good in (None, "local", "tcp://head:8786", "head:8786", "tls://10.0.0.5:8786"):
        check_scheduler(good)
