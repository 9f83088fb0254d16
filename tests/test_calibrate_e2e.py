"""``rawsigma calibrate`` and ``rawsigma acquire stack`` end to end on the simulator."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.cli.main import app
from typer.testing import CliRunner

SMALL = ["-p", "Camera.SensorWidth=32", "-p", "Camera.SensorHeight=32", "-q"]
SWEEP = ["--levels", "4", "--frames", "30", "--dark", "30", "--seed", "3", *SMALL]


@pytest.fixture
def cli():
    return CliRunner()


def test_calibrate_sim_force_and_from_stacks(cli, tmp_path) -> None:
    from rawsigma.calib.profile import CameraProfile

    out = tmp_path / "p.h5"
    frames = tmp_path / "frames.ome.tif"
    r = cli.invoke(app, ["calibrate", "--out", str(out), *SWEEP, "--save-frames", str(frames)])
    assert r.exit_code == 0, r.output
    prof = CameraProfile.load(out)
    assert prof.shape == (32, 32) and abs(prof.gain_global / 2.0 - 1) < 0.05
    assert prof.plan["n_levels"] == 4 and prof.identity.camera == "Camera"
    assert not (tmp_path / "p.h5.partial.h5").exists()
    assert "gain (global)" in r.output

    before = out.read_bytes()
    r = cli.invoke(app, ["calibrate", "--out", str(out), *SWEEP])
    assert r.exit_code == 1 and "exists" in r.output and "--force" in r.output
    assert out.read_bytes() == before  # nothing lost

    r = cli.invoke(app, ["calibrate", "--out", str(out), *SWEEP, "--seed", "4", "--force"])
    assert r.exit_code == 0, r.output
    assert CameraProfile.load(out).provenance["seed"] == 4

    off = tmp_path / "offline.h5"
    r = cli.invoke(
        app,
        [
            "calibrate",
            "--from-stacks",
            str(frames),
            "--csv",
            str(tmp_path / "frames.csv"),
            "--out",
            str(off),
        ],
    )
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(CameraProfile.load(off).gain, prof.gain, rtol=1e-4)


def test_calibrate_resume_and_bad_options(cli, tmp_path) -> None:
    from rawsigma.acquire.core import open_core
    from rawsigma.acquire.plans import SweepPlan
    from rawsigma.acquire.sweep import SweepRunner
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.errors import Cancelled

    out = tmp_path / "p.h5"
    ref = tmp_path / "ref.h5"
    assert cli.invoke(app, ["calibrate", "--out", str(ref), *SWEEP]).exit_code == 0
    # an interrupted run with the same options as the CLI builds
    plan = SweepPlan(dark_frames=30, n_levels=4, frames_per_level=30, seed=3)
    core = open_core(properties={"Camera.SensorWidth": "32", "Camera.SensorHeight": "32"})
    runner = SweepRunner(core, plan, tmp_path / "p.h5.partial.h5")
    runner.levelFinished.connect(lambda i, d: runner.cancel() if i == 1 else None)
    with pytest.raises(Cancelled):
        runner.run()
    r = cli.invoke(app, ["calibrate", "--out", str(out), *SWEEP])
    assert r.exit_code == 1 and "--resume" in r.output
    r = cli.invoke(app, ["calibrate", "--out", str(out), *SWEEP, "--resume"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(CameraProfile.load(out).gain, CameraProfile.load(ref).gain)

    r = cli.invoke(app, ["calibrate", "--out", str(tmp_path / "x.h5"), "--levels", "1", *SMALL])
    assert r.exit_code == 2 and "n_levels" in r.output
    r = cli.invoke(app, ["calibrate", "--out", str(tmp_path / "x.h5"), "-c", "nope.cfg"])
    assert r.exit_code == 1 and "nope.cfg" in r.output
    r = cli.invoke(app, ["calibrate", "--out", str(tmp_path / "x.h5"), "-p", "Camera.Bogus=1"])
    assert r.exit_code == 1 and "Camera.Bogus" in r.output


def test_acquire_stack_cli(cli, tmp_path) -> None:
    import h5py

    out = tmp_path / "stack.h5"
    r = cli.invoke(
        app,
        [
            "acquire",
            "stack",
            "--frames",
            "120",
            "--out",
            str(out),
            "-p",
            "LED.Intensity=30",
            "--seed",
            "1",
            *SMALL,
        ],
    )
    assert r.exit_code == 0, r.output
    assert "n=100" in r.output
    with h5py.File(out) as f:
        assert f["probe_values"].shape == (5, 120)
        assert 9000 < float(np.median(f["mean"][()])) < 40000
    r = cli.invoke(app, ["acquire", "stack", "--frames", "1", "--out", str(tmp_path / "y.h5")])
    assert r.exit_code == 2 and "n_frames" in r.output


def test_acquire_stack_warns_when_the_light_is_off(tmp_path):
    """The simulated rig starts with LED Intensity 0: `acquire stack` as in the README
    gave a 'light' stack of the offset (mean 100 ADU) and a σ/μ table of read noise
    over offset, silently. It now says so; with the light on it does not."""
    cli = CliRunner()
    small = ["-p", "Camera.SensorWidth=32", "-p", "Camera.SensorHeight=32", "-q"]
    r = cli.invoke(app, ["acquire", "stack", "-n", "5", "--out", str(tmp_path / "a.h5"), *small])
    assert r.exit_code == 0, r.output
    assert "LED Intensity is 0" in r.output and "dark stack" in r.output
    import h5py

    with h5py.File(tmp_path / "a.h5") as f:
        assert float(np.median(f["mean"][()])) < 110  # the offset: no light indeed
    lit = ["-p", "LED.Intensity=30"]
    r = cli.invoke(
        app, ["acquire", "stack", "-n", "5", "--out", str(tmp_path / "b.h5"), *lit, *small]
    )
    assert r.exit_code == 0, r.output
    assert "Intensity is 0" not in r.output
    r = cli.invoke(
        app, ["acquire", "stack", "-n", "5", "--dark", "--out", str(tmp_path / "c.h5"), *small]
    )
    assert r.exit_code == 0 and "Intensity is 0" not in r.output, r.output


def test_calibrate_sweep_honours_gain_map(cli, tmp_path) -> None:
    """The sweep stored per-pixel gains "requested" whatever --gain-map said (QA s11).

    With 4 frames per level those gains have a median SE of ~45 % and a median
    7 % below the truth (2.0); auto stores the global K instead, as the README says.
    """
    from rawsigma.calib.profile import CameraProfile

    few = ["--levels", "3", "--frames", "4", "--dark", "20", "--seed", "1", *SMALL]
    out = tmp_path / "auto.h5"
    r = cli.invoke(app, ["calibrate", "--out", str(out), *few])
    assert r.exit_code == 0, r.output
    prof = CameraProfile.load(out)
    assert prof.provenance["gain_map"] == "global", prof.provenance["gain_map_reason"]
    K, K_se = prof.emva["K"], prof.emva["K_se"]
    assert np.all(prof.gain[prof.good] == K) and np.all(prof.gain_se[prof.good] == K_se)
    assert abs(K - 2.0) < 3 * K_se + 0.01
    assert "requested" not in r.output

    pp = tmp_path / "pp.h5"
    r = cli.invoke(app, ["calibrate", "--out", str(pp), *few, "--gain-map", "per-pixel"])
    assert r.exit_code == 0, r.output
    prof = CameraProfile.load(pp)
    assert prof.provenance["gain_map"] == "per-pixel" and len(np.unique(prof.gain)) > 100

    bad = tmp_path / "bad.h5"
    r = cli.invoke(app, ["calibrate", "--out", str(bad), *few, "--gain-map", "pixel"])
    assert r.exit_code == 2 and "--gain-map 'pixel'" in r.output
    assert not list(tmp_path.glob("bad.h5*"))


def test_calibrate_refused_profile_does_not_advise_resume_to_continue(cli, tmp_path) -> None:
    """Every level taken, the profile refused (all saturated): "--resume to continue"
    promised more acquisition that would never come (QA session 11)."""
    out = tmp_path / "sat.h5"
    args = ["calibrate", "--out", str(out), "--levels", "2", "--saturation-levels", "0"]
    args += ["--no-auto-range", "--control-min", "99", "--control-max", "100"]
    args += ["--frames", "6", "--dark", "6", "--seed", "1", *SMALL]
    r = cli.invoke(app, args)
    assert r.exit_code == 1 and "every light level is saturated" in r.output
    assert "all 2 levels are kept" in r.output and "to continue" not in r.output
    assert not out.exists() and (tmp_path / "sat.h5.partial.h5").exists()


@pytest.mark.parametrize("engine", ["runner", "mda"])
def test_calibrate_bad_control_refused_before_the_dark(cli, tmp_path, engine) -> None:
    """A --control the rig lacks failed only after the dark frames (100 at full frame
    by default), with "acquisition failed: ..." and a partial file that no corrected
    command could resume (QA session 11). Now one usage line first, nothing kept."""
    out = tmp_path / "c.h5"
    for control, says in [
        ("LED-Brightness", "device LED has no property 'Brightness' (its properties: "),
        ("Lamp-Intensity", "no device 'Lamp' (devices: "),
        ("Camera-Exposure", "has no upper limit: give control_max (--control-max)"),
    ]:
        args = ["calibrate", "--out", str(out), "--control", control, "--engine", engine]
        r = cli.invoke(app, [*args, *SWEEP])
        assert r.exit_code == 2 and says in r.output, r.output
        assert not list(tmp_path.iterdir())
