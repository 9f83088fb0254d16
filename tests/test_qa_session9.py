"""QA session 9: one-line messages of `rawsigma score` on volumes (CLI, no scoring run)."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from rawsigma.calib.profile import CameraProfile


def _run(*args):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [*map(str, args)], terminal_width=80)


def test_volume_warning_and_estimate_error_are_single_lines(tmp_path):
    rng = np.random.default_rng(0)
    vol = (100 + rng.poisson(50, (6, 64, 64))).astype(np.uint16)  # no signal: no gain
    tifffile.imwrite(tmp_path / "vol.tif", vol, description=json.dumps({"axes": "ZYX"}))
    tifffile.imwrite(tmp_path / "lab.tif", np.ones((6, 64, 64), np.uint8))
    # no voxel size: the warning is one line even in an 80-column terminal
    CameraProfile.uniform((32, 32), 2.0, 100.0, 2.0).save(tmp_path / "p32.h5")
    r = _run("score", tmp_path / "vol.tif", "-p", tmp_path / "p32.h5", "--labels",
             tmp_path / "lab.tif", "--out", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    (warn,) = [ln for ln in lines if ln.startswith("no voxel size")]
    assert warn.endswith("isotropic 1 assumed (stated in the report)")
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1
    # a profile that cannot be estimated: the file is named once
    r = _run("score", tmp_path / "vol.tif", "--estimate-profile", "--labels",
             tmp_path / "lab.tif", "--out", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 1, r.output
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "cannot estimate a profile" in err and err.count("vol.tif") == 1, err
    assert not (tmp_path / "out").exists()


def test_error_before_any_stage_prints_no_empty_progress_line(tmp_path):
    """`tomo reconstruct` without angles: stderr was an empty line (the progress bars'
    final render) then the error."""
    tifffile.imwrite(tmp_path / "p.tif", np.ones((3, 2, 64), np.uint16), photometric="minisblack")
    r = _run("tomo", "reconstruct", tmp_path / "p.tif", "-o", tmp_path / "rec.tif")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: no angles") and r.stderr.count("\n") == 1, repr(r.stderr)
    assert not (tmp_path / "rec.tif").exists()


def test_estimate_advice_points_score_users_to_profile_estimate(shared_data, tmp_path):
    """`score --estimate-profile` repeated the estimator's advice "give --read-noise, a
    lower --offset, or --camera": options `score` does not have."""
    from rawsigma.cli.params import estimate_advice

    assert estimate_advice("no problem", "x.tif") == "no problem"
    msg = estimate_advice("give --offset or --camera", "x.tif", own=("--offset",))
    assert msg.endswith("(--camera: options of `rawsigma profile estimate x.tif --out P.h5`; "
                        "then pass --profile P.h5)")  # fmt: skip
    opt = shared_data / "opt_zebrafish_transmission_frames_640.tif"
    blobs = "rawsigma.analysis.segmentation.blobs:blob_objects"
    r = _run("score", opt, "--index", "0", "--estimate-profile", "--model", blobs,
             "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "read noise came out 0" in err
    assert "--read-noise, --camera: options of `rawsigma profile estimate" in err
    assert not (tmp_path / "o").exists()


def test_estimated_profile_warning_in_score_names_profile_estimate():
    from pathlib import Path

    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.cli.params import advise_estimate_warning

    rng = np.random.default_rng(1)
    light = np.broadcast_to(np.linspace(20, 400, 128), (128, 128))  # a smooth ramp
    img = np.rint(100 + 2.0 * rng.poisson(light) + rng.normal(0, 2, light.shape))
    prof = estimate_profile(img.astype(np.uint16))
    assert "Give --offset/--read-noise or --camera" in prof.provenance["estimate"]["warning"]
    advise_estimate_warning(prof, Path("img.tif"))
    w = prof.provenance["estimate"]["warning"]
    assert w.endswith("options of `rawsigma profile estimate img.tif --out P.h5`; then pass "
                      "--profile P.h5)")  # fmt: skip


def test_tomo_score_offset_without_estimate_profile_is_refused(tmp_path):
    """`tomo score --profile P --offset 5` ignored --offset (exit 0 after the full run)."""
    tifffile.imwrite(tmp_path / "p.tif", np.ones((4, 2, 16), np.uint16), photometric="minisblack")
    CameraProfile.uniform((2, 16), 2.0, 100.0, 2.0).save(tmp_path / "prof.h5")
    base = ["tomo", "score", tmp_path / "p.tif", "--out", tmp_path / "o"]
    for extra, text in (
        (["--profile", tmp_path / "prof.h5", "--offset", "5"], "--offset 5 applies with --est"),
        (["--estimate-profile", "--offset", "-5"], "--offset must be a finite value >= 0"),
    ):
        r = _run(*base, *extra)
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith(f"error: {text}") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_volume_labels_too_sparse_name_the_file(tmp_path):
    """3D: the runner's label check called the annotation file "labels"."""
    # not constant: `score` refuses a constant volume first (QA session 11)
    vol = (150 + np.random.default_rng(1).poisson(20, (4, 32, 32))).astype(np.uint16)
    lab = np.zeros((4, 32, 32), np.uint8)
    lab[:, :16] = 1
    lab[0, 20, 20:25] = 2  # 5 foreground pixels: too few to train
    for name, a in (("vol.tif", vol), ("ann.tif", lab)):
        tifffile.imwrite(tmp_path / name, a, photometric="minisblack",
                         description=json.dumps({"axes": "ZYX"}))  # fmt: skip
    CameraProfile.uniform((32, 32), 2.0, 100.0, 2.0).save(tmp_path / "p.h5")
    r = _run("score", tmp_path / "vol.tif", "-p", tmp_path / "p.h5", "--labels",
             tmp_path / "ann.tif", "--out", tmp_path / "out")  # fmt: skip
    assert r.exit_code == 1, r.output
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert err.startswith(f"error: {tmp_path / 'ann.tif'}: too few annotated pixels"), err
    assert not (tmp_path / "out").exists()


def test_tomo_score_takes_a_frame_selection_like_reconstruct(tmp_path):
    """`tomo score 'FILE[i:j]'` said "no such file" (`tomo reconstruct` takes it): the
    real OPT file holds 7 projections, then dark, flat and hot-pixel frames."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "p.tif", rng.integers(1000, 2000, (12, 4, 16), dtype=np.uint16),
                     photometric="minisblack")  # fmt: skip
    r = _run("tomo", "score", f"{tmp_path / 'p.tif'}[0:2]", "--estimate-profile",
             "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 1, r.output
    read, err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "frames [0:2] selected -> (2, 4, 16) uint16, 2 frames" in read
    assert "2 projections for a 16-pixel detector" in err
    r = _run("tomo", "score", f"{tmp_path / 'p.tif'}[5:5]", "--estimate-profile",
             "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 2 and "selects none of the 12 frames" in r.stderr, r.output
    # beyond the file's frames: refused as by `tomo reconstruct`, not clipped to them
    r = _run("tomo", "score", f"{tmp_path / 'p.tif'}[0:70]", "--estimate-profile",
             "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 2 and "frames out of range (the file has 12" in r.stderr, r.output
    assert not (tmp_path / "o").exists()
