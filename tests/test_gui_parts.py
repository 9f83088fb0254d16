"""GUI components (pytest-qt, offscreen) against small local fakes of the rig and runner.

The fakes here exist only to drive the widgets deterministically (pause exactly
between frames, stop, fail); the end-to-end tests on the real simulated rig are in
``test_gui_sweep.py``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Literal

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
pytestmark = pytest.mark.gui

from psygnal import Signal  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402
from rawsigma.acquire.sensor_model import SensorModel  # noqa: E402
from rawsigma.calib.moments import PixelMoments  # noqa: E402
from rawsigma.errors import Cancelled, OutputExistsError  # noqa: E402

SHAPE = (48, 40)


# ----------------------------------------------------------------- fakes
class FakePlan(BaseModel):
    model_config = ConfigDict(frozen=True)
    n_levels: int = 3
    frames_per_level: int = 6
    n_dark: int = 6
    control: str = "LED.Intensity"
    target_saturation: float = 0.7
    spacing: Literal["linear", "log"] = "linear"
    settle_s: float | None = None
    seed: int = 0


class FakeRunner:
    """Follows the SweepRunner contract; frames from the pure-numpy SensorModel."""

    levelStarted = Signal(int, dict)
    frameAccumulated = Signal(int, int, object)
    levelFinished = Signal(int, dict)
    warning = Signal(str)
    finished = Signal(object)

    def __init__(self, core, plan, partial_path=None, force=False):
        self.plan, self.partial, self.force = plan, partial_path, force
        self.current = None
        self.sensor = SensorModel.preset("scmos", shape=SHAPE, seed=plan.seed)
        self._go = threading.Event()
        self._go.set()
        self._stop = False
        self.frames_done = 0
        self.resumed = partial_path is not None and partial_path.exists()
        self.dark = PixelMoments(SHAPE)
        self.levels: list[PixelMoments] = []
        self.at_frame = threading.Event()

    def pause(self):
        self._go.clear()

    def resume(self):
        self._go.set()

    def cancel(self):
        self._stop = True
        self._go.set()

    def run(self, resume=False, out=None):
        if self.partial.exists() and not resume:
            raise OutputExistsError(f"{self.partial}: partial exists")
        rng = np.random.default_rng(self.plan.seed)
        for lv in range(-1, self.plan.n_levels):
            n = self.plan.n_dark if lv < 0 else self.plan.frames_per_level
            m = self.dark if lv < 0 else PixelMoments(SHAPE)
            if lv >= 0:
                self.levels.append(m)
            photons = 0.0 if lv < 0 else 300.0 * (lv + 1)
            self.levelStarted.emit(lv, {"photons": photons, "n_frames": n})
            for i in range(n):
                self._go.wait()
                if self._stop:
                    self.partial.write_bytes(b"partial")
                    raise Cancelled("cancelled by the user")
                f = self.sensor.expose(np.full(SHAPE, photons), 0.01, rng)
                m.add(f)
                self.frames_done += 1
                self.frameAccumulated.emit(lv, i, f)
                self.at_frame.set()
                time.sleep(0.003)
            if lv == 0:
                self.warning.emit("light source unstable: 2.1 % frame-to-frame")
            self.levelFinished.emit(lv, {"n_frames": n})
        prof = self.sensor.true_profile()
        if out is not None:
            prof.save(out, force=self.force)
            self.partial.unlink(missing_ok=True)
        self.finished.emit(prof)
        return prof


def fake_core(shape=SHAPE):
    """UniMMCore with a tiny Python camera and an LED with Intensity."""
    from pymmcore_plus.experimental.unicore import (
        CameraDevice,
        GenericDevice,
        UniMMCore,
        pymm_property,
    )

    class Cam(CameraDevice):
        def __init__(self):
            super().__init__()
            self._exp = 10.0
            self.rng = np.random.default_rng(0)

        def get_exposure(self):
            return self._exp

        def set_exposure(self, e):
            self._exp = float(e)

        def shape(self):
            return shape

        def dtype(self):
            return np.uint16

        def start_sequence(self, n, get_buffer):
            i = 0
            while n is None or i < n:
                buf = get_buffer(shape, np.uint16)
                buf[:] = self.rng.poisson(100, shape)
                buf[:3, :4] = 65535  # 12 saturated pixels
                i += 1
                time.sleep(0.002)
                yield {}

    class LED(GenericDevice):
        def __init__(self):
            super().__init__()
            self._i = 0.0

        @pymm_property(limits=(0.0, 100.0), name="Intensity")
        def intensity(self) -> float:
            return self._i

        @intensity.setter
        def intensity(self, v: float) -> None:
            self._i = float(v)

    core = UniMMCore()
    core.loadPyDevice("Camera", Cam())
    core.loadPyDevice("LED", LED())
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    return core


@pytest.fixture
def truth_profiles(tmp_path):
    a = SensorModel.preset("scmos", shape=SHAPE, seed=1).true_profile()
    b = SensorModel.preset("scmos", shape=SHAPE, seed=2).true_profile()
    pa = tmp_path / "a.h5"
    a.save(pa)
    return a, b, pa


# ----------------------------------------------------------------- tests
def test_robust_stats_and_mapview(qtbot):
    from rawsigma.gui.mapview import MapView, robust_stats

    v = np.arange(101, dtype=np.float32).reshape(1, 101)
    s = robust_stats(v)
    assert s["median"] == 50 and s["mad"] == 25 and s["n"] == 101
    assert s["p1"] == pytest.approx(1.0) and s["p99"] == pytest.approx(99.0)
    mask = np.zeros_like(v, dtype=bool)
    mask[0, :11] = True
    assert robust_stats(v, mask)["median"] == 5
    mv = MapView("gain", "ADU/e⁻")
    qtbot.addWidget(mv)
    img = np.random.default_rng(0).normal(2.0, 0.1, (30, 20)).astype(np.float32)
    img[3, 4] = np.nan
    shown = mv.set_map(img)
    assert mv.data is img
    assert mv.image.image.shape == (20, 30)  # transposed for pyqtgraph (x, y)
    np.testing.assert_array_equal(mv.image.image.T, img)
    assert "ADU/e⁻" in mv.stats_label.text() and shown["n"] == 599
    assert mv.hist.axis.labelUnits == "ADU/e⁻"


def test_plan_form_roundtrip(qtbot):
    from rawsigma.gui.plan_form import PlanForm

    form = PlanForm(FakePlan, order=("frames_per_level",))
    qtbot.addWidget(form)
    assert form.plan() == FakePlan()
    form.set_values(n_levels=5, spacing="log", settle_s=0.5, control="Exposure")
    p = form.plan()
    assert (p.n_levels, p.spacing, p.settle_s, p.control) == (5, "log", 0.5, "Exposure")
    form.set_values(settle_s=None)
    assert form.plan().settle_s is None
    form.set_plan(FakePlan(seed=7))
    assert form.plan().seed == 7


def test_profile_viewer_shows_profile_maps_compare_export(qtbot, truth_profiles, tmp_path):
    from rawsigma.gui.profile_viewer import ProfileViewer

    a, b, pa = truth_profiles
    v = ProfileViewer()
    qtbot.addWidget(v)
    assert v.open_profile(pa)
    loaded = v.profile
    for name in ("offset", "gain", "read_noise"):
        np.testing.assert_array_equal(v.views[name].data, getattr(loaded, name))
        np.testing.assert_array_equal(v.views[name].data, getattr(a, name))
    texts = [v.table.item(r, 0).text() for r in range(v.table.rowCount())]
    assert "EMVA K" in texts and "profile id" in texts
    assert v.set_other(b)
    np.testing.assert_allclose(
        v.diff_views["gain"].data, b.gain.astype(np.float32) - a.gain, rtol=0, atol=1e-6
    )
    files = v.export_figures(tmp_path / "png")
    assert len(files) >= 7 and all(f.stat().st_size > 1000 for f in files)
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign"])
def test_corrupt_profile_shows_error_dialog(qtbot, truth_profiles, tmp_path, kind):
    import h5py
    from qtpy import QtWidgets
    from rawsigma.gui.main_window import MainWindow

    _, _, pa = truth_profiles
    bad = tmp_path / f"{kind}.h5"
    if kind == "garbage":
        bad.write_bytes(b"not an hdf5 file" * 100)
    elif kind == "truncated":
        data = pa.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        with h5py.File(bad, "w") as f:
            f["x"] = np.zeros(3)
    win = MainWindow(core=None, profile=bad)
    qtbot.addWidget(win)
    box = win.viewer.last_error
    assert isinstance(box, QtWidgets.QMessageBox) and box.isVisible()
    assert str(bad) in box.text()
    assert win.viewer.profile is None
    box.close()
    assert win.viewer.open_profile(pa)  # the window still works


def test_live_view_pymmcore_widgets_on_unicore(qtbot):
    from rawsigma.gui.live_view import LiveView

    core = fake_core()
    lv = LiveView(core, display_hz=50)
    qtbot.addWidget(lv)
    lv.show()  # hidden views count frames but do not draw them
    assert lv.light == ("LED", "Intensity")
    lv.light_widget.setValue(42.0)
    assert float(core.getProperty("LED", "Intensity")) == pytest.approx(42.0)
    lv.exposure.spinBox.setValue(5.0)
    assert core.getExposure() == pytest.approx(5.0)
    lv.live_btn.click()
    try:
        qtbot.waitUntil(lambda: lv.displayed >= 3, timeout=5000)
    finally:
        lv.live_btn.click()
    qtbot.waitUntil(lambda: not core.isSequenceRunning(), timeout=5000)
    assert lv.view.data.shape == SHAPE
    assert "12 saturated px" in lv.frame_label.text()
    ov = lv.view.overlay.image
    assert ov is not None and int((ov[..., 3] > 0).sum()) == 12
    lv.close_dialogs()


def _panel(qtbot, tmp_path):
    from rawsigma.gui.calib_panel import CalibrationPanel

    runners = []

    def factory(core, plan, partial, force=False):
        r = FakeRunner(core, plan, partial, force)
        runners.append(r)
        return r

    panel = CalibrationPanel(core=fake_core(), runner_factory=factory, plan_cls=FakePlan)
    qtbot.addWidget(panel)
    panel.output.setText(str(tmp_path / "cam.h5"))
    return panel, runners


def test_calib_panel_runs_and_saves_profile(qtbot, tmp_path):
    from rawsigma.calib.profile import CameraProfile

    panel, runners = _panel(qtbot, tmp_path)
    with qtbot.waitSignal(panel.runEnded, timeout=20000) as sig:
        assert panel.start()
    assert sig.args == ["finished"]
    saved = CameraProfile.load(tmp_path / "cam.h5")
    np.testing.assert_array_equal(saved.gain, runners[0].sensor.true_profile().gain)
    assert panel.table.rowCount() == 4  # dark + 3 levels
    assert panel.level_bar(2).value() == 6
    assert panel.warnings.count() == 1 and "unstable" in panel.warnings.item(0).text()
    assert not panel.start(), "output exists and overwrite is off"
    assert "exists" in panel.status.text()
    panel.shutdown()


def test_calib_panel_pause_resume_stop_and_resume_from_partial(qtbot, tmp_path):
    panel, runners = _panel(qtbot, tmp_path)
    assert panel.start()
    r = runners[0]
    qtbot.waitUntil(lambda: r.frames_done >= 3, timeout=10000)
    panel.pause()
    assert panel.state == "paused" and panel.resume_btn.isEnabled()
    time.sleep(0.1)
    n = r.frames_done
    time.sleep(0.2)
    assert r.frames_done <= n + 1  # at most the frame in flight
    panel.resume()
    assert panel.state == "running"
    qtbot.waitUntil(lambda: r.frames_done >= n + 3, timeout=10000)
    with qtbot.waitSignal(panel.runEnded, timeout=10000) as sig:
        panel.stop()
    assert sig.args == ["stopped"]
    assert panel.partial_path().exists()
    assert "Resume" in panel.status.text() and panel.resume_btn.isEnabled()
    assert not panel.start(), "start refuses to discard a partial run"
    with qtbot.waitSignal(panel.runEnded, timeout=20000) as sig:
        panel.resume()
    assert sig.args == ["finished"] and runners[1].resumed
    assert (tmp_path / "cam.h5").exists() and not panel.partial_path().exists()
    panel.shutdown()


def test_worker_reports_failure_without_crash(qtbot, tmp_path):
    panel, runners = _panel(qtbot, tmp_path)

    def boom(**kwargs):
        raise RuntimeError("camera unplugged")

    panel.runner_factory = lambda c, p, q, force: type("R", (), {"run": staticmethod(boom)})()
    with qtbot.waitSignal(panel.runEnded, timeout=5000) as sig:
        assert panel.start()
    assert sig.args == ["failed"] and "camera unplugged" in panel.status.text()
    panel.shutdown()


def test_quiet_import_of_widgets():
    from rawsigma.gui.live_view import _quiet_widgets

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hasattr(_quiet_widgets(), "ExposureWidget")
