"""QA session 10: trust on the tomography path (profile estimate on OPT projections)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.noisemodel.blocks import STATIC_MAX, static_fraction
from rawsigma.calib.profile import CameraProfile


def _run(*args):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [*map(str, args)], terminal_width=80)


@pytest.fixture(scope="module")
def opt_sim(tmp_path_factory):
    """`rawsigma tomo simulate` at its defaults (ORCA-Flash4.0, 112 × 32 × 96)."""
    d = tmp_path_factory.mktemp("optsim")
    r = _run("tomo", "simulate", d / "opt.tif")
    assert r.exit_code == 0, r.output
    return d / "opt.tif", CameraProfile.load(d / "opt_profile.h5")


def _error_line(r) -> str:
    (err,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    return err


def test_estimate_on_simulated_opt_is_refused_for_the_right_reason(opt_sim, tmp_path):
    """The fixed pattern of the simulated sCMOS, the same in every projection, made up
    ~half the blocks' high-frequency variance: the gain came out 3x too high (6-7.6 for
    2.16) or the estimate was refused for "read noise came out 0" with the true offset."""
    proj, _ = opt_sim
    for extra in ([], ["--offset", "100"]):
        r = _run("profile", "estimate", proj, *extra, "--out", tmp_path / "e.h5")
        assert r.exit_code == 1, r.output
        err = _error_line(r)
        assert "repeats between frames 56 apart" in err and "--camera" in err, err
        assert "read noise came out 0" not in err
        assert not (tmp_path / "e.h5").exists()
    r = _run("tomo", "score", proj, "--estimate-profile", "--offset", "100",
             "--out", tmp_path / "res")  # fmt: skip
    assert r.exit_code == 1, r.output
    err = _error_line(r)
    assert "cannot estimate a profile" in err and "repeats between frames" in err, err
    assert "--gain, --camera: options of `rawsigma profile estimate" in err, err
    assert not (tmp_path / "res").exists()


def test_data_sheet_preset_on_simulated_opt_matches_the_camera(opt_sim, tmp_path):
    """The advised way works: the ORCA-Flash4.0 preset gives the simulated camera's
    numbers, without the false "offset does not fit" warning (the blocks' variance is
    not noise) and without the crash on tomo simulate's TIFF description."""
    proj, truth = opt_sim
    out = tmp_path / "preset.h5"
    r = _run("profile", "estimate", proj, "--camera", "hamamatsu-orca-flash4-v3-standard",
             "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr, r.stderr
    est = CameraProfile.load(out)
    g_true = float(np.median(truth.gain))
    assert abs(float(np.median(est.gain)) - g_true) < 0.02 * g_true
    assert float(np.median(est.offset)) == pytest.approx(float(np.median(truth.offset)), abs=1)
    rec = est.provenance["estimate"]
    assert rec["static_fraction"] > STATIC_MAX
    assert "block_check_skipped" in rec["offset_check"]


def test_static_fraction_separates_fixed_pattern_from_noise(opt_sim, shared_data):
    """Near 0 for camera noise (real stacks, where the estimate is used), above the
    limit for the simulated OPT projections; None for one frame."""
    proj, _ = opt_sim
    rho, n = static_fraction(tifffile.imread(proj), 32, 65535)
    assert rho > 0.4 and n == 16 * 3  # 16 frame pairs of 3 blocks
    vol = tifffile.imread(shared_data / "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif")
    assert abs(static_fraction(vol, 32, 65535)[0]) < 0.05
    opt = tifffile.imread(shared_data / "opt_zebrafish_transmission_frames_640.tif")
    assert static_fraction(opt, 64, 4095)[0] < STATIC_MAX
    rng = np.random.default_rng(1)
    noise = (100 + rng.poisson(400, (4, 64, 64))).astype(np.uint16)
    assert abs(static_fraction(noise, 32, 65535)[0]) < 0.05
    fixed = rng.normal(0, 40, (64, 64))  # the same pattern in every frame
    assert static_fraction((noise + 200 + fixed).astype(np.uint16), 32, 65535)[0] > 0.5
    assert static_fraction(noise[0], 32, 65535) is None


def test_steep_block_curve_is_named_not_blamed_on_the_true_offset():
    """At fill 0.2 the fixed pattern is below the static limit, but the blocks' curve
    still reaches zero at 173 ADU, above the noisy darkest pixels (132 ADU): refused
    with the true offset for "a lower --offset" before, now for the blocks' content."""
    from rawsigma.analysis.noisemodel.estimate import NoiseEstimateError, estimate_profile
    from rawsigma.analysis.phantoms.opt_organ import paper_opt

    proj = paper_opt((32, 96), rng=0, fill=0.2).projections
    for kw in ({"offset": 100.0}, {}):
        with pytest.raises(NoiseEstimateError) as exc:
            estimate_profile(proj, **kw)
        msg = str(exc.value)
        assert "falls to zero at 173" in msg and "above the darkest pixels (132" in msg, msg
        assert "a lower --offset" not in msg and "--camera" in msg


def test_truncated_volume_is_one_line(tmp_path):
    """A truncated ZYX TIFF: tifffile's "invalid page offset" log reached stderr from the
    2D-or-3D probe (`volread.declared_axes`) before the reader's one-line error."""
    import json

    vol = np.random.default_rng(0).integers(100, 400, (12, 64, 64), dtype=np.uint16)
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, vol, description=json.dumps({"axes": "ZYX"}))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    r = _run("score", cut, "--estimate-profile", "--out", tmp_path / "out")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, repr(r.stderr)
    assert "damaged or truncated TIFF" in r.stderr
    assert not (tmp_path / "out").exists()


def test_dark_frame_among_projections_is_refused(opt_sim, tmp_path):
    """A stack holding its dark frame after the projections (as the real OPT frames do:
    7 projections, dark, flat, hot-pixel frame) was scored with the dark reconstructed as
    a view (with --few-views on the real frames, silently)."""
    proj, prof = opt_sim
    stack = tifffile.imread(proj)
    rng = np.random.default_rng(0)
    dark = np.clip(np.rint(100 + rng.normal(0, 3.4, stack.shape[1:])), 0, None)
    tifffile.imwrite(
        tmp_path / "with_dark.tif", np.concatenate([stack, dark[None]]).astype(np.uint16)
    )
    h5 = proj.with_name("opt_profile.h5")
    r = _run("tomo", "score", tmp_path / "with_dark.tif", "--profile", h5, "--out",
             tmp_path / "res", "--codecs", "replica", "--replicas", "3",
             "--no-operators")  # fmt: skip
    assert r.exit_code == 1, r.output
    err = _error_line(r)
    assert "frame 112 of" in err and "saw no light" in err, err
    assert f"'{tmp_path / 'with_dark.tif'}[0:112]'" in err, err
    assert not (tmp_path / "res").exists()
    assert float(np.median(prof.offset)) == 100.0


def test_reconstruct_bad_center_is_one_line(tmp_path):
    """`tomo reconstruct --center 1000`: the "centre of rotation" progress line was on
    stderr before the usage error."""
    tifffile.imwrite(tmp_path / "p.tif", np.ones((8, 2, 64), np.uint16) * 1000)
    r = _run("tomo", "reconstruct", tmp_path / "p.tif", "--angle-range", "0,180",
             "--center", "1000", "-o", tmp_path / "rec.tif")  # fmt: skip
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --center '1000'") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "rec.tif").exists()


def test_score_index_estimate_checks_the_files_frames(opt_sim, tmp_path):
    """`score opt.tif --index 5 --estimate-profile`: one simulated projection gave gain
    4.4-6.9 for 2.16 (SE 0.4-1.0), silently; the file's frames show the fixed pattern."""
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    proj, _ = opt_sim
    stack = tifffile.imread(proj)
    assert estimate_profile(stack[5]).provenance["estimate"]["gain"] > 4  # one frame: blind
    tifffile.imwrite(tmp_path / "lab.tif", (stack > 3000).astype(np.uint8))
    r = _run("score", proj, "--index", "5", "--estimate-profile", "--labels",
             tmp_path / "lab.tif", "--out", tmp_path / "s", "--codecs", "8bit")  # fmt: skip
    assert r.exit_code == 1, r.output
    err = _error_line(r)
    assert "cannot estimate a profile" in err and "repeats between frames 56 apart" in err, err
    assert not (tmp_path / "s").exists()
