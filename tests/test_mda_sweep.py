"""The sweep as useq MDASequences on the pymmcore-plus MDA engine, and in-level stability."""

from __future__ import annotations

import numpy as np
import pytest
import useq
from rawsigma.acquire.core import open_core
from rawsigma.acquire.devices import sim_device
from rawsigma.acquire.mda import (
    KEY,
    MDASweep,
    MomentsHandler,
    plan_level_values,
    stack_sequence,
    sweep_sequences,
    write_sequences,
)
from rawsigma.acquire.plans import StackPlan, SweepPlan
from rawsigma.acquire.sweep import SweepRunner, sweep_profile

SMALL = {"Camera.SensorWidth": 40, "Camera.SensorHeight": 32}
MAPS = ("offset", "gain", "read_noise", "offset_se", "gain_se", "read_noise_se", "prnu")


def _same_maps(a, b) -> None:
    for k in MAPS:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    assert np.array_equal(a.defects, b.defects)


def test_mda_sweep_equals_sweep_runner_bit_for_bit() -> None:
    # auto-range, saturation levels, level darks, a flickering LED: every branch that
    # draws frames; same plan + seed -> same device seeds -> the same frames
    plan = SweepPlan(
        dark_frames=16, n_levels=3, frames_per_level=16, saturation_levels=2, level_darks=4, seed=5
    )
    props = {**SMALL, "LED.Flicker": 1.0}
    ref_runner = SweepRunner(open_core(properties=props), plan)
    ref = ref_runner.run()
    core = open_core(properties=props)
    mda = MDASweep(core, plan)
    seen: list[int] = []
    mda.levelFinished.connect(lambda i, info: seen.append(i))
    prof = mda.run()
    assert mda.level_values == ref_runner.level_values and len(mda.level_values) == 5
    _same_maps(prof, ref)
    assert prof.profile_id == ref.profile_id
    assert prof.emva["K"] == ref.emva["K"]
    assert prof.provenance["source"].startswith("pymmcore-plus MDA")
    assert seen[0] == -1 and seen.count(-1) == 1 + 5  # dark + one level-dark set per level
    # the frames really are simulated: the profile knows the camera's gain
    m = sim_device(core, "Camera").active_model
    assert abs(np.median(prof.gain / m.gain) - 1) < 0.1
    assert core.getAutoShutter() and ref_runner.core.getAutoShutter()  # both restored


def test_handler_on_core_signals_like_an_operator_gui(tmp_path) -> None:
    # pymmcore-gui / napari-micromanager: sequences loaded from files, run one by one
    # with the handler connected to core.mda.events; calib builds the profile
    plan = SweepPlan(
        dark_frames=12, n_levels=3, frames_per_level=12, saturation_levels=0,
        auto_range=False, control_max=50, seed=9,
    )  # fmt: skip
    ref = SweepRunner(open_core(properties=SMALL), plan).run()
    core = open_core(properties=SMALL)
    seqs = sweep_sequences(core, plan)
    files = write_sequences(seqs, tmp_path / "seqs")
    assert [f.name for f in files] == [
        "000_dark.json", "001_level000.json", "002_level001.json", "003_level002.json"
    ]  # fmt: skip
    loaded = [useq.MDASequence.from_file(f) for f in files]
    assert [s.metadata[KEY] for s in loaded] == [s.metadata[KEY] for s in seqs]
    h = MomentsHandler(plan.chunk_frames)
    ev = core.mda.events
    ev.sequenceStarted.connect(h.sequenceStarted)
    ev.frameReady.connect(h.frameReady)
    ev.sequenceFinished.connect(h.sequenceFinished)
    for s in loaded:
        core.mda.run(s)
    assert h.error is None and h.dark.n == 12 and sorted(h.levels) == [0, 1, 2]
    values = plan_level_values(core, plan)
    from rawsigma.acquire.identity import read_identity

    prof = sweep_profile(plan, h.dark, [h.levels[i] for i in range(3)], read_identity(core), values)
    _same_maps(prof, ref)


def test_stack_sequence_sets_the_stack() -> None:
    core = open_core(properties=SMALL)
    seq = stack_sequence(core, StackPlan(n_frames=6, properties={"LED-Intensity": "40"}, seed=1))
    h = MomentsHandler()
    core.mda.run(seq, output=[h])
    assert core.getProperty("LED", "Intensity") == 40.0 and core.getShutterOpen("LED")
    assert h.levels[0].n == 6 and h.levels[0].frame_means.mean() > 1000


def _monitor_run(props: dict, frames: int = 100):
    plan = SweepPlan(
        dark_frames=20, n_levels=2, frames_per_level=frames, saturation_levels=0,
        auto_range=False, control_max=40, seed=2, on_drift="report", stability_every=20,
    )  # fmt: skip
    runner = SweepRunner(open_core(properties={**SMALL, **props}), plan)
    log: list[tuple] = []
    runner.warning.connect(lambda m: log.append(("warn", m)))
    runner.levelFinished.connect(lambda i, d: log.append(("end", i)))
    runner.run()
    return log


def test_flicker_warned_during_the_level() -> None:
    log = _monitor_run({"LED.Flicker": 3.0})
    first = next(k for k, e in enumerate(log) if e[0] == "warn")
    assert "flickering" in log[first][1] and "of 100 frames" in log[first][1]
    n_seen = int(log[first][1].split(" after ")[1].split(" of ")[0])
    assert n_seen < 100
    assert ("end", 0) in log[first:]  # before level 0 ended
    assert any("flicker" in e[1] and "rms (limit" in e[1] for e in log if e[0] == "warn")


def test_drift_warned_during_the_level() -> None:
    # 5 %/s of exposure time at 10 ms: 5 % over a 100-frame level (limit 1 %)
    log = _monitor_run({"LED.Drift": 5.0})
    early = [e[1] for e in log if e[0] == "warn" and "projected" in e[1]]
    assert early and "level 0" in early[0]
    k = log.index(("warn", early[0]))
    assert ("end", 0) in log[k:]


@pytest.mark.parametrize("props", [{}, {"LED.Flicker": 0.2}])
def test_stable_light_no_early_warning(props) -> None:
    log = _monitor_run(props)
    assert not [e for e in log if e[0] == "warn"]


def test_mda_engine_refuses_a_core_without_mda() -> None:
    from rawsigma.errors import AcquisitionError

    with pytest.raises(AcquisitionError, match="pymmcore-plus core"):
        MDASweep(object(), SweepPlan())


def test_cli_engine_mda_matches_default_engine(tmp_path) -> None:
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    common = "--levels 2 --frames 10 --dark 10 --saturation-levels 0 --seed 4 -q".split()
    common += ["-p", "Camera.SensorWidth=24", "-p", "Camera.SensorHeight=16"]
    cli = CliRunner()
    r = cli.invoke(app, ["calibrate", "--out", str(tmp_path / "a.h5"), *common])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["calibrate", "--engine", "mda", "--out", str(tmp_path / "b.h5"), *common])
    assert r.exit_code == 0, r.output
    a, b = (CameraProfile.load(tmp_path / n) for n in ("a.h5", "b.h5"))
    assert a.profile_id == b.profile_id
    _same_maps(a, b)
    r = cli.invoke(app, ["calibrate", "--engine", "gpu", "--out", str(tmp_path / "c.h5")])
    assert r.exit_code != 0 and "--engine 'gpu'" in r.output and not (tmp_path / "c.h5").exists()
