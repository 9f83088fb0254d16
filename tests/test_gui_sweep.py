"""End to end on the simulated rig: a sweep run from the GUI equals ``rawsigma calibrate``.

A small sensor (64×48) and few frames keep this inside the GUI test budget; equality
is exact because the simulated rig is seeded per level from the plan seed.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui
from rawsigma.acquire.core import open_core  # noqa: E402
from rawsigma.calib.profile import CameraProfile  # noqa: E402

SENSOR = {"Camera.SensorWidth": 64, "Camera.SensorHeight": 48}
PLAN = dict(dark_frames=6, n_levels=3, frames_per_level=6, saturation_levels=0, seed=11)
SLOW_PLAN = dict(PLAN, frames_per_level=10)
MAPS = ("offset", "gain", "read_noise", "defects")


def _core():
    return open_core(None, properties=SENSOR)


def _cli_reference(tmp_path_factory, plan: dict) -> CameraProfile:
    """The profile ``rawsigma calibrate`` writes for the same plan and seed."""
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("cli") / "cli.h5"
    args = ["calibrate", "--out", str(out), "--quiet"]
    args += ["--dark", str(plan["dark_frames"]), "--levels", str(plan["n_levels"])]
    args += ["--frames", str(plan["frames_per_level"]), "--seed", str(plan["seed"])]
    args += ["--saturation-levels", str(plan["saturation_levels"])]
    for k, v in SENSOR.items():
        args += ["--prop", f"{k}={v}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return CameraProfile.load(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _cli_reference(tmp_path_factory, PLAN)


def _window(qtbot, tmp_path, plan=PLAN):
    from rawsigma.gui.main_window import MainWindow

    win = MainWindow(core=_core())
    qtbot.addWidget(win)
    win.calib.output.setText(str(tmp_path / "gui.h5"))
    win.calib.form.set_values(**plan)
    return win


def _assert_same_profile(a: CameraProfile, b: CameraProfile) -> None:
    for name in MAPS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.emva.get("K") == pytest.approx(b.emva.get("K"), rel=1e-12)
    assert a.identity.roi == b.identity.roi


def test_gui_sweep_equals_runner_and_shows_profile_maps(qtbot, tmp_path, reference):
    win = _window(qtbot, tmp_path)
    with qtbot.waitSignal(win.calib.runEnded, timeout=120000) as sig:
        assert win.calib.start(), win.calib.status.text()
    assert sig.args == ["finished"], win.calib.status.text()
    saved = CameraProfile.load(tmp_path / "gui.h5")
    _assert_same_profile(saved, reference)
    # the profile viewer shows exactly the profile's maps
    for name in ("offset", "gain", "read_noise"):
        np.testing.assert_array_equal(win.viewer.views[name].data, getattr(saved, name))
    # the live maps are calib's fit on the accumulators: equal to the profile on good pixels
    qtbot.waitUntil(lambda: win.maps.last_fit is not None, timeout=30000)
    qtbot.waitUntil(lambda: win.maps.last_fit["n_levels"] == PLAN["n_levels"], timeout=30000)
    good = saved.good
    live = win.maps.last_fit["maps"]
    for name in ("offset", "read_noise"):
        live_map = np.asarray(getattr(live, name))
        np.testing.assert_allclose(live_map[good], getattr(saved, name)[good], rtol=1e-5)
    # 6 frames per level: the per-pixel gains (shown live) would be noise, so the profile
    # stores the global K on every pixel (--gain-map auto, as rawsigma calibrate)
    assert saved.provenance["gain_map"] == "global"
    assert np.all(saved.gain[good] == saved.emva["K"])
    live_gain = np.asarray(live.gain)[good]
    assert abs(np.median(live_gain) / saved.emva["K"] - 1) < 0.1
    assert win.calib.table.rowCount() >= PLAN["n_levels"] + 1
    x, y = win.maps.ptc.data
    assert x.size >= 2 and np.all(np.diff(np.log(y)) > 0)  # variance grows with signal
    win.close()


def test_gui_pause_resume_stop_leaves_resumable_partial(qtbot, tmp_path, tmp_path_factory):
    reference = _cli_reference(tmp_path_factory, SLOW_PLAN)
    win = _window(qtbot, tmp_path, SLOW_PLAN)
    calib = win.calib
    counts = []
    assert calib.start(), calib.status.text()
    runner = calib.worker.runner

    def slow_consumer(lv, i, frame):  # 25 ms per frame, so pause and stop land mid-run
        counts.append((lv, i))
        time.sleep(0.025)

    runner.frameAccumulated.connect(slow_consumer)
    qtbot.waitUntil(lambda: len(counts) >= 3, timeout=60000)
    calib.pause()
    assert calib.state == "paused" and calib.resume_btn.isEnabled()
    assert not win.live.light_widget.isEnabled() and not win.live.live_btn.isEnabled()
    n = -1
    for _ in range(50):  # frames already in the sequence buffer are drained first
        if len(counts) == n:
            break
        n = len(counts)
        qtbot.wait(200)
    qtbot.wait(500)
    assert len(counts) == n, "frames kept arriving while paused"
    total = SLOW_PLAN["dark_frames"] + SLOW_PLAN["n_levels"] * SLOW_PLAN["frames_per_level"]
    assert n < total
    calib.resume()
    assert calib.state == "running"
    qtbot.waitUntil(lambda: len(counts) >= n + 2, timeout=60000)
    assert calib.state == "running", "the slow plan should still be running"
    with qtbot.waitSignal(calib.runEnded, timeout=60000) as sig:
        calib.stop()
    assert sig.args == ["stopped"], calib.status.text()
    assert win.live.light_widget.isEnabled() and win.live.live_btn.isEnabled()
    assert calib.partial_path().exists() and calib.resume_btn.isEnabled()
    assert calib.partial_path().name == "gui.h5.partial.h5"  # the CLI's name: --resume works
    assert not (tmp_path / "gui.h5").exists()
    assert not calib.start(), "Start must not discard the partial run"
    with qtbot.waitSignal(calib.runEnded, timeout=120000) as sig:
        calib.resume()
    assert sig.args == ["finished"], calib.status.text()
    assert not calib.partial_path().exists()
    _assert_same_profile(CameraProfile.load(tmp_path / "gui.h5"), reference)
    win.close()


def test_gui_shows_unstable_light_warning(qtbot, tmp_path):
    win = _window(qtbot, tmp_path, dict(PLAN, n_levels=2, saturation_levels=0))
    win.core.setProperty("LED", "Flicker", 3.0)  # % rms frame-to-frame
    with qtbot.waitSignal(win.calib.runEnded, timeout=120000) as sig:
        assert win.calib.start(), win.calib.status.text()
    assert sig.args == ["finished"], win.calib.status.text()
    texts = [win.calib.warnings.item(i).text() for i in range(win.calib.warnings.count())]
    assert any("flicker" in t for t in texts), texts
    win.close()
