"""SweepRunner end to end on the simulated rig: accuracy, resume, stability, files."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.core import open_core
from rawsigma.acquire.devices import sim_device
from rawsigma.acquire.plans import SweepPlan
from rawsigma.acquire.sweep import SweepRunner, level_stability
from rawsigma.errors import Cancelled, InputFileError, OutputExistsError

SMALL = {"Camera.SensorWidth": 48, "Camera.SensorHeight": 48}


def _core(**props):
    return open_core(properties={**SMALL, **props})


def _plan(**kw) -> SweepPlan:
    base = dict(dark_frames=60, n_levels=6, frames_per_level=60, seed=11, saturation_levels=1)
    base.update(kw)
    return SweepPlan(**base)


def _good(profile, model) -> np.ndarray:
    return profile.good & ~model.hot & ~model.dead & (model.rts_amplitude == 0)


def test_sweep_profile_matches_truth() -> None:
    core = _core()
    runner = SweepRunner(core, _plan(frames_per_level=150, dark_frames=150, saturation_levels=3))
    events: list[tuple] = []
    runner.levelStarted.connect(lambda i, d: events.append(("start", i)))
    runner.levelFinished.connect(lambda i, d: events.append(("end", i)))
    nframes = [0]
    runner.frameAccumulated.connect(lambda i, j, f: nframes.__setitem__(0, nframes[0] + 1))
    prof = runner.run()
    m = sim_device(core, "Camera").active_model
    g = _good(prof, m)
    assert g.mean() > 0.9
    rel = np.abs(prof.gain[g] / m.gain[g] - 1)
    assert np.median(rel) < 0.05
    z = (prof.gain[g] - m.gain[g]) / prof.gain_se[g]
    assert 0.8 < np.std(z) < 1.25 and abs(np.mean(z)) < 0.2
    assert np.median(np.abs(prof.offset[g] - m.offset[g])) < 0.2
    assert np.median(np.abs(prof.read_noise[g] / m.read_noise[g] - 1)) < 0.08
    # auto-range: top level near 90 % of the full-well signal, then 3 levels that
    # bracket saturation (the last one is clipped at the full well)
    sat = np.median(m.gain * m.full_well)
    means = [lv.frame_means.mean() - 100 for lv in runner.levels]
    assert 0.85 < means[5] / sat < 0.95
    assert len(runner.levels) == 9
    assert 0.93 < means[6] / sat < 0.99 and means[8] / sat > 0.99
    assert events[0] == ("start", -1) and events[-1] == ("end", 8)
    assert nframes[0] == runner.total_frames
    assert prof.identity.camera == "Camera" and prof.identity.serial == "SIM-scmos-0"
    assert prof.plan["frames_per_level"] == 150 and prof.provenance["seed"] == 11
    assert core.getAutoShutter()  # restored


def test_resume_after_cancel_gives_identical_profile(tmp_path) -> None:
    plan = _plan()
    ref = SweepRunner(_core(), plan).run()

    part = tmp_path / "sweep.partial.h5"
    r1 = SweepRunner(_core(), plan, part)
    r1.levelFinished.connect(lambda i, d: r1.cancel() if i == 2 else None)
    with pytest.raises(Cancelled):
        r1.run()
    assert part.exists()
    with pytest.raises(OutputExistsError, match="resume"):
        SweepRunner(_core(), plan, part).run()
    with pytest.raises(InputFileError, match="different plan.*resume it with --frames 60 or"):
        SweepRunner(_core(), _plan(frames_per_level=61), part).run(resume=True)
    r2 = SweepRunner(_core(), plan, part)
    started: list[int] = []
    r2.levelStarted.connect(lambda i, d: started.append(i))
    out = tmp_path / "p.h5"
    prof = r2.run(resume=True, out=out)
    assert started[0] == 3  # dark and levels 0-2 came from the partial file
    assert out.exists() and not part.exists()
    for name in ("gain", "offset", "read_noise", "gain_se"):
        np.testing.assert_array_equal(getattr(prof, name), getattr(ref, name))
    with pytest.raises(OutputExistsError):
        SweepRunner(_core(), plan).run(out=out)


def test_partial_from_other_camera_rejected(tmp_path) -> None:
    plan = _plan(n_levels=2, saturation_levels=0)
    part = tmp_path / "p.h5"
    r1 = SweepRunner(_core(), plan, part)
    r1.levelStarted.connect(lambda i, d: r1.cancel() if i == 0 else None)
    with pytest.raises(Cancelled):
        r1.run()
    other = open_core(properties={"Camera.SensorWidth": 40, "Camera.SensorHeight": 48})
    with pytest.raises(InputFileError, match="sensor_shape|roi"):
        SweepRunner(other, plan, part).run(resume=True)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputFileError, match="junk.h5"):
        SweepRunner(_core(), plan, tmp_path / "junk.h5").run(resume=True)


def test_flicker_flagged_and_gain_still_right() -> None:
    core = _core(**{"LED.Flicker": 2.0})
    warnings: list[str] = []
    runner = SweepRunner(core, _plan(frames_per_level=150, dark_frames=150))
    runner.warning.connect(warnings.append)
    prof = runner.run()
    assert any("flicker" in w for w in warnings)
    assert prof.provenance["light_source_unstable"] is True
    assert all(0.01 < s["flicker"] < 0.03 for s in runner.stability[:6])
    m = sim_device(core, "Camera").active_model
    g = _good(prof, m)
    assert np.median(np.abs(prof.gain[g] / m.gain[g] - 1)) < 0.05


def test_drift_reacquired_then_reported() -> None:
    core = _core(**{"LED.Drift": 30.0})  # +30 %/s: 0.6 s of exposure per level
    warnings: list[str] = []
    runner = SweepRunner(core, _plan(n_levels=2, saturation_levels=0, max_retries=1))
    runner.warning.connect(warnings.append)
    runner.run()
    assert sum("re-acquiring" in w for w in warnings) == 2
    assert sum("kept and reported" in w for w in warnings) == 2
    assert all(s["drifting"] and s["retry"] == 1 for s in runner.stability)


def test_level_stability_statistics() -> None:
    rng = np.random.default_rng(0)
    fm = 1100 + rng.normal(0, 0.1, 200)
    st = level_stability(fm, 100.0, 400.0, 40000)
    assert st["flicker"] < 0.001 and abs(st["drift_t"]) < 4
    st = level_stability(fm + np.linspace(0, 50, 200), 100.0, 400.0, 40000)
    assert abs(st["drift"] - 0.05) < 0.002 and st["drift_t"] > 4


def test_exposure_control_and_saved_frames(tmp_path) -> None:
    import tifffile
    from rawsigma.calib.stacks import calibrate_from_stacks

    core = _core(**{"LED.Intensity": 10})
    plan = _plan(
        control="exposure",
        n_levels=3,
        frames_per_level=20,
        dark_frames=20,
        saturation_levels=0,
        save_frames="ome-tiff",
    )
    frames = tmp_path / "frames.ome.tif"
    runner = SweepRunner(core, plan, frames_path=frames)
    prof = runner.run()
    assert runner.level_values[-1] > 10.0  # auto-range lengthened the exposure
    with tifffile.TiffFile(frames) as tif:
        assert len(tif.pages) == 20 + 3 * 20
    again = calibrate_from_stacks(frames, tmp_path / "frames.csv")
    np.testing.assert_allclose(again.gain, prof.gain, rtol=1e-4)
    with pytest.raises(OutputExistsError):
        SweepRunner(_core(), plan, frames_path=frames).run()


def test_level_darks_emva_protocol() -> None:
    core = _core()
    plan = _plan(n_levels=3, frames_per_level=20, dark_frames=20, level_darks=4)
    kinds: list[tuple[int, str, object]] = []
    runner = SweepRunner(core, plan)
    runner.levelStarted.connect(lambda i, d: kinds.append((i, d["kind"], d["level_dark_of"])))
    prof = runner.run()
    assert len(runner.level_darks) == len(runner.levels) == 4
    assert all(d.n == 4 for d in runner.level_darks)
    assert kinds[:3] == [(-1, "dark", None), (0, "light", None), (-1, "dark", 0)]
    assert abs(prof.gain_global / 2.0 - 1) < 0.05


def test_resume_at_another_exposure_rejected_and_plan_exposure_recorded(tmp_path) -> None:
    """QA session 11: resuming after the exposure changed (10 -> 40 ms, e.g. in the GUI's
    Live tab) mixed the 10 ms dark and levels with 40 ms (saturated) levels and recorded
    40 ms, exit 0; and ``--exposure 20`` recorded the camera's previous 10 ms as the
    profile's exposure (the offset's and the dark current's reference)."""
    plan = _plan(dark_frames=8, n_levels=3, frames_per_level=8, saturation_levels=0)
    part = tmp_path / "p.h5"
    r1 = SweepRunner(_core(), plan, part)
    r1.levelFinished.connect(lambda i, d: r1.cancel() if i == 0 else None)
    with pytest.raises(Cancelled):
        r1.run()
    core = _core()
    core.setExposure(40.0)
    with pytest.raises(
        InputFileError,
        match="exposure_ms = 10.0, but the camera now has 40.0; resume with --exposure 10$",
    ):
        SweepRunner(core, plan, part).run(resume=True)

    prof = SweepRunner(_core(), _plan(**{**plan.model_dump(), "exposure_ms": 20.0})).run()
    assert prof.identity.exposure_ms == 20.0 and prof.identity.extra["Exposure"] == "20.0"


def _cancelled_partial(plan: SweepPlan, part, at: int = 1, **props) -> SweepRunner:
    r1 = SweepRunner(_core(**props), plan, part)
    r1.levelFinished.connect(lambda i, d: r1.cancel() if i == at else None)
    with pytest.raises(Cancelled):
        r1.run()
    return r1


def _same_maps(a, b) -> None:
    for name in ("gain", "offset", "read_noise", "gain_se"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_resume_at_the_recorded_exposure_with_exposure_option(tmp_path) -> None:
    """QA session 12: the refusal above (a sweep without --exposure, the camera now at
    40 ms) is lifted by the option it names: ``--exposure 10`` takes the remaining
    levels at the 10 ms of the file's frames; another exposure is still refused."""
    plan = _plan(dark_frames=8, n_levels=3, frames_per_level=8, saturation_levels=0)
    ref = SweepRunner(_core(), plan).run()
    part = tmp_path / "p.h5"
    _cancelled_partial(plan, part, at=0)
    core = _core()
    core.setExposure(40.0)
    with pytest.raises(
        InputFileError, match=r"exposure_ms None \(now 20.0\); resume it with --exposure 10 or"
    ):
        SweepRunner(core, _plan(**{**plan.model_dump(), "exposure_ms": 20.0}), part).run(
            resume=True
        )
    prof = SweepRunner(core, _plan(**{**plan.model_dump(), "exposure_ms": 10.0}), part).run(
        resume=True
    )
    _same_maps(prof, ref)
    assert prof.identity.exposure_ms == 10.0


def test_resume_partial_written_before_the_plan_exposure_fix(tmp_path) -> None:
    """QA session 12: partial files of ``--exposure 20`` written before session 11
    recorded the camera's previous 10 ms although every frame was taken at 20 ms, and
    resuming them with ``--exposure 20`` was refused (exposure_ms = 10.0, now 20.0)."""
    from rawsigma.acquire.partial import read_partial, write_partial

    plan = _plan(dark_frames=8, n_levels=3, frames_per_level=8, saturation_levels=0)
    plan = _plan(**{**plan.model_dump(), "exposure_ms": 20.0})
    ref = SweepRunner(_core(), plan).run()
    part = tmp_path / "p.h5"
    _cancelled_partial(plan, part, at=0)
    data = read_partial(part)  # as the old code wrote it: the camera's previous exposure
    ident = {**data["identity"], "exposure_ms": 10.0}
    ident["extra"] = {**ident["extra"], "Exposure": "10.0"}
    part.unlink()
    write_partial(
        part, plan=data["plan"], identity=ident, state=data["state"], groups=data["groups"]
    )
    prof = SweepRunner(_core(), plan, part).run(resume=True)
    _same_maps(prof, ref)
    assert prof.identity.exposure_ms == 20.0 and prof.identity.extra["Exposure"] == "20.0"
    part2 = tmp_path / "p2.h5"
    _cancelled_partial(plan, part2, at=0)
    with pytest.raises(
        InputFileError, match=r"exposure_ms 20.0 \(now 30.0\); resume it with --exposure 20 or"
    ):
        SweepRunner(_core(), _plan(**{**plan.model_dump(), "exposure_ms": 30.0}), part2).run(
            resume=True
        )


def test_resume_after_crash_under_exposure_control(tmp_path) -> None:
    """QA session 12: a sweep killed under ``--control exposure`` leaves the camera at
    its last level's exposure (a camera that keeps its state, e.g. through pycromanager);
    resuming was refused (exposure_ms = 10.0, now 40.0) though every level sets its own
    exposure. The profile keeps the dark's 10 ms as its exposure."""
    plan = _plan(control="exposure", n_levels=3, frames_per_level=8, dark_frames=8)
    plan = SweepPlan(**{**plan.model_dump(), "saturation_levels": 0, "level_darks": 2})
    led = {"LED.Intensity": 50}
    ref = SweepRunner(_core(**led), plan).run()
    part = tmp_path / "p.h5"
    r1 = _cancelled_partial(plan, part, at=1, **led)
    core = _core(**led)
    core.setExposure(r1.level_values[1])  # no restore: the run was killed
    assert core.getExposure() != 10.0
    prof = SweepRunner(core, plan, part).run(resume=True)
    _same_maps(prof, ref)
    assert prof.identity.exposure_ms == 10.0 == ref.identity.exposure_ms
    assert prof.identity.extra.get("Exposure") == ref.identity.extra.get("Exposure")


def test_exposure_control_finds_the_full_well() -> None:
    """QA session 11: with the exposure as the control, auto-range stopped doubling at
    30 % of the ADC and, the response being linear there, put the top level at 90 % of
    the ADC: beyond the simulated sCMOS's full well (about 92 % of it), with 25 % of
    the pixels clipped, and mu_e.sat interpolated from there 17 % low (23 800 e-)."""
    core = _core(**{"LED.Intensity": 50})
    plan = _plan(control="exposure", n_levels=4, frames_per_level=20, dark_frames=20)
    plan = SweepPlan(**{**plan.model_dump(), "saturation_levels": 3})
    prof = SweepRunner(core, plan).run()
    linear = prof.ptc["clipped_fraction"][:4]
    assert np.all(linear < 0.001), linear
    assert 27000 < prof.emva["mu_e_sat"] < 30000  # 0.15 % of pixels at the full well


@pytest.mark.parametrize("preset, mode", [("ccd", "adc"), ("scmos", "full_well")])
def test_exposure_control_compressive_response_still_brackets_saturation(preset, mode) -> None:
    """QA session 12: auto-range took a response 5 % below the line at the ADC's top
    for the full well's plateau, the same 5 % the linearity check allows. A 12-bit
    camera (the ADC clips first) whose response is 8 % compressive at full scale was
    given a "full well" at 0.93 of the ADC, its saturation levels were put 7 % low
    (at most 0.13 % of the pixels clipped) and mu_e.sat was not estimated. The sCMOS
    (full well below the ADC) still finds its plateau."""
    core = _core(**{"Camera.Preset": preset, "LED.Intensity": 2})
    cam = sim_device(core, "Camera")
    ph_sat = cam.active_model.photons_for_fraction(1.0)
    linear = cam.photons_per_frame
    cam.photons_per_frame = lambda e: (lambda p: p * (1 - 0.08 * np.minimum(p / ph_sat, 1.5)))(
        linear(e)
    )
    plan = _plan(control="exposure", n_levels=4, frames_per_level=20, dark_frames=20)
    prof = SweepRunner(core, SweepPlan(**{**plan.model_dump(), "saturation_levels": 3})).run()
    clipped = prof.ptc["clipped_fraction"]
    assert np.all(clipped[:4] < 0.001) and clipped[-1] > 0.99, clipped
    assert prof.emva.get("mu_e_sat") is not None and prof.emva["saturation_mode"] == mode


@pytest.mark.parametrize("level_darks", [0, 5])
def test_resumed_sweep_progress_bar_counts_the_saved_levels(tmp_path, level_darks) -> None:
    """`calibrate --resume`'s bar ended at 1800/2700 (frames in the partial file not
    counted): it now starts past them and ends at the sweep's total."""
    from rawsigma.cli.console import runner_progress

    plan = _plan(n_levels=3, saturation_levels=0, level_darks=level_darks)
    part = tmp_path / "sweep.partial.h5"
    r1 = SweepRunner(_core(), plan, part)
    r1.levelFinished.connect(lambda i, d: r1.cancel() if i == 1 else None)
    with pytest.raises(Cancelled):
        r1.run()
    r2 = SweepRunner(_core(), plan, part)
    with runner_progress(r2, r2.total_frames) as progress:
        r2.run(resume=True, out=tmp_path / "p.h5")
        overall = progress.tasks[0]
        assert (overall.completed, overall.total) == (r2.total_frames, r2.total_frames)
    # a sweep that is not resumed counts every frame once (no floor added)
    r3 = SweepRunner(_core(), plan)
    with runner_progress(r3, r3.total_frames) as progress:
        r3.run()
        assert progress.tasks[0].completed == r3.total_frames


@pytest.mark.parametrize(
    "response, saturating",
    [
        (lambda c: 1000 * min(c, 2.0), 2.0),  # a plateau at control 2: found there
        (lambda c: 1000 * c**0.3, None),  # compressive, rising to the end: none claimed
    ],
)
def test_full_well_plateau_claimed_only_when_seen(response, saturating) -> None:
    """`_plateau` returned its last probe as the saturation point even when the signal
    still rose at every one of its 12 steps of 10 %; it now reports none."""
    from rawsigma.acquire.light_control import LightControl

    lc = object.__new__(LightControl)
    lc.signal = lambda c, dark_med, n=4: response(c)  # type: ignore[method-assign]
    c0 = 1.0
    sat, got = lc._plateau(c0, response(c0), 1100.0, 1e9, 0.0)
    if saturating is None:
        assert got is None and sat == pytest.approx(response(1.1**12))
    else:
        assert got == pytest.approx(saturating, rel=0.06) and sat == pytest.approx(2000)


@pytest.mark.parametrize("quiet", [True, False])
def test_swallowed_ctrl_c_stops_the_sweep_at_the_next_frame(monkeypatch, quiet) -> None:
    """A Ctrl-C that a library swallowed (seen by the console script's handler, its
    KeyboardInterrupt lost in a compiled module's import) let `calibrate` run on to
    exit 0 (test_ctrl_c_calibrate_truthful, 1 run in ~30 under load): the next frame
    now raises it."""
    from rawsigma.cli import console
    from rawsigma.cli.console import runner_progress

    monkeypatch.setattr(console, "_CONSOLE_SCRIPT", [True])
    monkeypatch.setattr(console, "_SIGINT_SEEN", [True])
    runner = SweepRunner(_core(), _plan(n_levels=2, saturation_levels=0))
    frames: list[int] = []
    runner.frameAccumulated.connect(lambda i, j, f: frames.append(j))
    with pytest.raises(KeyboardInterrupt), runner_progress(runner, runner.total_frames, quiet):
        runner.run()
    assert len(frames) <= 1
    monkeypatch.setattr(console, "_SIGINT_SEEN", [False])  # no Ctrl-C: runs through
    runner = SweepRunner(_core(), _plan(n_levels=2, saturation_levels=0))
    with runner_progress(runner, runner.total_frames, quiet):
        runner.run()
