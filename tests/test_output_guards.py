"""Outputs that would destroy data with exit 0 (QA pass, session 7).

Each case runs the CLI as a user would: ``--force`` replaces an earlier *output*, never
the command's input, a device node, or a directory of someone else's files; the lost-
region mask beside decoded frames always describes those frames; Ctrl-C while
``compress`` checks what it wrote says what is on disk.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec.synthetic import reference_frame
from rawsigma.cli.main import app
from rawsigma.errors import OutputError
from rawsigma.fileio import check_output
from typer.testing import CliRunner

if TYPE_CHECKING:
    from pathlib import Path


def run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def digest(path: Path) -> str:
    if path.is_dir():
        return ";".join(f"{q.relative_to(path)}" for q in sorted(path.rglob("*")))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(r, code: int, *needles: str) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in r.output, (n, r.output)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("guards")
    frame, lam, cam = reference_frame((48, 64), seed=3)
    stack = np.stack([frame, cam.expose(lam, 0.0, np.random.default_rng(1))])
    tifffile.imwrite(d / "raw.tif", stack)
    prof = cam.true_profile()
    prof.save(d / "cam.h5")
    codec = NoiseCodec(prof, step=2.0, maps="global")
    return d, stack, codec


def test_compress_decompress_refuse_their_input_as_output(world, tmp_path):
    d, stack, _ = world
    raw = tmp_path / "raw.tif"
    raw.write_bytes((d / "raw.tif").read_bytes())
    before = digest(raw)
    r = run("compress", raw, "--profile", d / "cam.h5", "--out", raw, "--force")
    one_line_error(r, 1, "is the input", "choose another output name")
    assert digest(raw) == before  # was: the raw frames replaced by their lossy code, exit 0
    prof = tmp_path / "cam.h5"
    prof.write_bytes((d / "cam.h5").read_bytes())
    r = run("compress", raw, "--profile", prof, "--out", prof, "--force", "--format", "h5")
    one_line_error(r, 1, "is the input")
    comp = tmp_path / "c.tif"
    assert run("compress", raw, "--profile", prof, "--out", comp).exit_code == 0
    before = digest(comp)
    r = run("decompress", comp, "--out", comp, "--force")
    one_line_error(r, 1, "is the input")
    assert digest(comp) == before


def test_profile_and_tomo_commands_refuse_their_input_as_output(world, tmp_path):
    d, stack, _ = world
    prof = tmp_path / "cam.h5"
    prof.write_bytes((d / "cam.h5").read_bytes())
    before = digest(prof)
    for args in (
        ("profile", "report", prof, "--out", prof),  # was: the profile replaced by HTML
        ("profile", "show", prof, "--plot", prof),
        ("profile", "compare", d / "cam.h5", prof, "--plot", prof),
    ):
        one_line_error(run(*args, "--force"), 1, "is the input")
        assert digest(prof) == before, args
    img = tmp_path / "img.npy"
    np.save(img, stack)
    before = digest(img)
    r = run("profile", "estimate", img, "--out", img, "--force")
    one_line_error(r, 1, "is the input")  # was: the image replaced by an HDF5 profile
    assert digest(img) == before
    r = run("tomo", "reconstruct", f"{img}[0:2]", "--angles", "0,90", "-o", img, "--force")
    one_line_error(r, 1, "is the input")
    assert digest(img) == before


def test_calibrate_from_stacks_refuses_its_csv_as_output(world, tmp_path):
    d, _, _ = world
    csv = tmp_path / "frames.csv"
    csv.write_text("kind,level_index\ndark,0\n")
    before = digest(csv)
    r = run("calibrate", "--from-stacks", d / "raw.tif", "--csv", csv, "--out", csv, "--force")
    one_line_error(r, 1, "is the input")
    assert digest(csv) == before


def test_force_never_replaces_a_device_or_pipe(tmp_path):
    fifo = tmp_path / "pipe.rsnc"
    os.mkfifo(fifo)
    for force in (False, True):
        with pytest.raises(OutputError, match="not a regular file"):
            check_output(fifo, force=force)
    assert fifo.is_fifo()
    with pytest.raises(OutputError, match="not a regular file"):
        check_output("/dev/null", force=True)  # was: renamed over, the node became a file


def test_force_replaces_a_zarr_store_not_a_directory_of_files(world, tmp_path):
    d, stack, _ = world
    mine = tmp_path / "thesis.zarr"
    mine.mkdir()
    (mine / "chapter1.txt").write_text("months of work")
    r = run("compress", d / "raw.tif", "--profile", d / "cam.h5", "--out", mine, "--force")
    one_line_error(r, 1, "not a zarr store", "--force replaces only a zarr store")
    assert (mine / "chapter1.txt").read_text() == "months of work"  # was: deleted, exit 0
    store = tmp_path / "c.zarr"
    (tmp_path / "empty.zarr").mkdir()
    for out in (store, store, tmp_path / "empty.zarr"):  # new, an earlier store, empty dir
        r = run("compress", d / "raw.tif", "--profile", d / "cam.h5", "--out", out, "--force")
        assert r.exit_code == 0, r.output
    with pytest.raises(OutputError, match="not a zarr store"):
        check_output(mine, force=True, allow_dir=True)
    from rawsigma.fileio import check_not_input

    check_not_input(tmp_path / "absent.tif", d / "raw.tif")  # nothing to protect


def _damaged_zarr(world, tmp_path) -> tuple[Path, Path]:
    from rawsigma.analysis.noisecodec import containers as C

    _, stack, codec = world
    intact = C.write_compressed(tmp_path / "ok.zarr", stack, codec)
    bad = C.write_compressed(tmp_path / "bad.zarr", stack, codec)
    (bad / "c" / "1" / "0" / "0").unlink()
    return intact, bad


def test_decompress_mask_always_describes_the_frames_beside_it(world, tmp_path):
    pytest.importorskip("zarr")
    intact, bad = _damaged_zarr(world, tmp_path)
    out, mask = tmp_path / "d.tif", tmp_path / "d.mask.tif"
    r = run("decompress", bad, "--out", out, "--allow-missing")
    assert r.exit_code == 0 and mask.is_file(), r.output
    # the same OUT decoded again from an intact file: the old mask would say frame 1
    # is lost while it is not (was: kept, exit 0)
    r = run("decompress", intact, "--out", out, "--allow-missing", "--force")
    assert r.exit_code == 0, r.output
    assert not mask.exists()
    # a mask in the way: refused before anything is written (was: OUT written, exit 1)
    mask.write_bytes(b"someone's mask")
    out2 = tmp_path / "e.tif"
    (tmp_path / "e.mask.tif").write_bytes(b"x")
    r = run("decompress", bad, "--out", out2, "--allow-missing")
    one_line_error(r, 1, "e.mask.tif", "file exists")
    assert not out2.exists()
    # a name with dots keeps its own mask: run.1.tif -> run.1.mask.tif (was run.mask.tif)
    r = run("decompress", bad, "--out", tmp_path / "run.1.tif", "--allow-missing")
    assert r.exit_code == 0 and (tmp_path / "run.1.mask.tif").is_file(), r.output


def test_ctrl_c_while_compress_verifies_says_what_is_on_disk(world, tmp_path, monkeypatch):
    import rawsigma.cli.codec_cmd as cc

    d, _, _ = world

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cc, "verify_written", interrupted)
    out = tmp_path / "c.h5"
    r = run("compress", d / "raw.tif", "--profile", d / "cam.h5", "--out", out)
    assert r.exit_code == 130, r.output
    assert out.is_file()
    # was: "interrupted: nothing written" with the complete file on disk
    assert "nothing written" not in r.output and "written completely" in r.output, r.output


def test_two_options_naming_one_output_are_refused(tmp_path):
    """acquire stack --out s.h5 --plot s.h5 wrote the plot over the statistics, exit 0;
    --save-frames s.h5 wrote the frames, then failed on --out (QA session 7)."""
    out = tmp_path / "s.h5"
    for extra in (["--plot", out], ["--save-frames", out]):
        r = run("acquire", "stack", "--frames", "3", "--out", out, *extra)
        one_line_error(r, 2, "are the same file", "give each its own name")
        assert not out.exists()
    r = run("calibrate", "--out", out, "--save-frames", out)
    one_line_error(r, 2, "--out and --save-frames are the same file")
    r = run("profile", "report", tmp_path / "none.h5", "--out", out, "--pdf", out)
    one_line_error(r, 2, "--out and --pdf are the same file")
    assert not out.exists()


def test_refused_resume_says_the_partial_file_is_kept(tmp_path):
    """calibrate --resume with another plan: the error ended "no level was completed, no
    partial file" while the earlier partial file was still there (QA session 7)."""
    from types import SimpleNamespace

    from rawsigma.cli.calibrate_cmd import _kept

    runner = SimpleNamespace(frames_written=None, dark=None, levels=[])
    partial = tmp_path / "c.h5.partial.h5"
    assert _kept(runner, partial) == "no level was completed, no partial file"
    partial.write_bytes(b"an earlier sweep")
    said = _kept(runner, partial)
    assert "no partial file" not in said and f"{partial} is kept as it was" in said


def test_noise_codec_zarr_input_is_said_to_be_lossy(world, tmp_path):
    """A noise-codec zarr decodes transparently: compress and score used it as raw
    frames without a word (QA session 7)."""
    pytest.importorskip("zarr")
    d, stack, _ = world
    z = tmp_path / "c.zarr"
    assert run("compress", d / "raw.tif", "--profile", d / "cam.h5", "--out", z).exit_code == 0
    r = run("compress", z, "--profile", d / "cam.h5", "--out", tmp_path / "again.rsnc")
    assert r.exit_code == 0 and "lossy-derived" in r.output, r.output
    sparse = np.where(stack[0] > np.median(stack[0]), 2, 1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ann.tif", sparse)
    r = run("score", z, "--index", "0", "--profile", d / "cam.h5", "--labels",
            tmp_path / "ann.tif", "--replicas", "2", "--codecs", "8bit",
            "--out", tmp_path / "res")  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    notes = json.loads((tmp_path / "res" / "results.json").read_text())["notes"]
    assert notes[0].startswith("WARNING: ") and "lossy-derived" in notes[0], notes
    r = run("score", d / "raw.tif", "--index", "0", "--profile", d / "cam.h5", "--labels",
            tmp_path / "ann.tif", "--replicas", "2", "--codecs", "8bit",
            "--out", tmp_path / "raw_res")  # fmt: skip
    assert r.exit_code == 0 and "lossy-derived" not in r.output, r.output


def test_decompress_format_errors_are_one_line(world, tmp_path):
    """decompress DIR.zarr --format h5 printed h5py's two-line message; --format bogus
    was exit 1 (QA session 7)."""
    pytest.importorskip("zarr")
    d, _, _ = world
    z = tmp_path / "c.zarr"
    assert run("compress", d / "raw.tif", "--profile", d / "cam.h5", "--out", z).exit_code == 0
    one_line_error(run("decompress", z, "--format", "h5", "--out", tmp_path / "a.tif"), 1, "HDF5")
    r = run("decompress", z, "--format", "bogus", "--out", tmp_path / "b.tif")
    one_line_error(r, 2, "--format must be one of")
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()


def test_noise_codec_zarr_volume_is_said_to_be_lossy(tmp_path):
    """The 3D path of the same note (QA session 7)."""
    pytest.importorskip("zarr")
    from rawsigma.calib.profile import CameraProfile
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    zz, yy, xx = np.mgrid[:10, :40, :40]
    truth = np.zeros((10, 40, 40), bool)
    for cz, cy, cx in ((5, 10, 10), (5, 28, 12), (4, 14, 28), (6, 30, 30)):
        truth |= (zz - cz) ** 2 / 9 + (yy - cy) ** 2 / 25 + (xx - cx) ** 2 / 25 < 1
    vol = (100 + 2 * rng.poisson(20 + 300 * truth)).astype(np.uint16)
    prof = CameraProfile.uniform((40, 40), gain=2.0, offset=100.0, read_noise=3.0)
    prof.save(tmp_path / "p.h5")
    tifffile.imwrite(tmp_path / "v.tif", vol)
    z = tmp_path / "v.zarr"
    assert run("compress", tmp_path / "v.tif", "-p", tmp_path / "p.h5", "-o", z).exit_code == 0
    labels, _ = ndi.label(truth)
    tifffile.imwrite(tmp_path / "lab.tif", labels.astype(np.uint16), metadata={"axes": "ZYX"})
    r = run("score", z, "--axes", "ZYX", "-p", tmp_path / "p.h5", "--labels",
            tmp_path / "lab.tif", "--instances", "--replicas", "2", "--codecs", "8bit",
            "--trees", "5", "--sigmas", "1", "--out", tmp_path / "res")  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    notes = json.loads((tmp_path / "res" / "results.json").read_text())["notes"]
    assert notes[0].startswith("WARNING: ") and "lossy-derived" in notes[0], notes


def test_output_lock_leaves_no_new_empty_folders(tmp_path) -> None:
    """A run into new folders that fails writes nothing, folders included; a run that
    wrote its output keeps them; folders that existed are never removed."""
    from rawsigma.fileio import output_lock

    with pytest.raises(RuntimeError), output_lock(tmp_path / "a" / "b" / "out.tif"):
        assert (tmp_path / "a" / "b").is_dir()
        raise RuntimeError("failed before writing")
    assert list(tmp_path.iterdir()) == []
    with output_lock(tmp_path / "a" / "b" / "out.tif") as out:
        out.write_bytes(b"x")
    assert (tmp_path / "a" / "b" / "out.tif").read_bytes() == b"x"
    (tmp_path / "kept").mkdir()
    with output_lock(tmp_path / "kept" / "out.tif"):
        pass
    assert (tmp_path / "kept").is_dir()


def test_failed_tomo_reconstruct_into_new_folders_leaves_nothing(tmp_path) -> None:
    r = CliRunner().invoke(
        app, ["tomo", "reconstruct", str(tmp_path / "none.tif"), "-o", str(tmp_path / "n/d/r.tif")]
    )
    assert r.exit_code == 1 and "no such file" in r.output
    assert list(tmp_path.iterdir()) == []
