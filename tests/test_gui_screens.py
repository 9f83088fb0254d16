"""Screenshots of the main GUI views (PNG), for the README and for looking at.

Written to ``$RAWSIGMA_SCREENSHOTS`` when set (e.g. ``docs/screens``), else to a
temporary folder. The test checks the files are real, non-blank PNGs of the
window size; whether labels are readable is checked by looking at them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

SIZE = (1600, 1000)


@pytest.fixture
def shots(tmp_path) -> Path:
    d = Path(os.environ.get("RAWSIGMA_SCREENSHOTS") or tmp_path / "screens")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _save(widget, path: Path) -> Path:
    from qtpy import QtGui, QtWidgets

    QtWidgets.QApplication.processEvents()
    pix = widget.grab()
    assert pix.save(str(path), "PNG")
    img = QtGui.QImage(str(path))
    assert (img.width(), img.height()) == (widget.width(), widget.height())
    # not blank: many distinct colours
    ptr = img.convertToFormat(QtGui.QImage.Format.Format_RGB32).constBits()
    ptr.setsize(img.width() * img.height() * 4)
    arr = np.frombuffer(ptr, np.uint8)
    assert np.unique(arr[::97]).size > 50
    return path


def test_screenshot_profile_viewer(qtbot, shots):
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.gui.main_window import MainWindow

    a = SensorModel.preset("scmos", shape=(128, 160), seed=3).true_profile()
    b = SensorModel.preset("scmos", shape=(128, 160), seed=4).true_profile()
    win = MainWindow(core=None)
    qtbot.addWidget(win)
    win.resize(*SIZE)
    win.show()
    win.viewer.set_profile(a)
    _save(win, shots / "gui_profile.png")
    win.viewer.set_other(b)
    _save(win, shots / "gui_compare.png")


def test_screenshot_live_and_calibration(qtbot, shots, tmp_path):
    from rawsigma.acquire.core import open_core
    from rawsigma.gui.main_window import MainWindow

    core = open_core(None)
    core.setROI(0, 0, 256, 192)
    win = MainWindow(core=core)
    qtbot.addWidget(win)
    win.resize(*SIZE)
    win.show()
    core.setProperty("LED", "Intensity", 45)
    core.setAutoShutter(False)
    core.setShutterOpen(True)
    core.setExposure(20)
    win.live.sat_level.setValue(60000)  # below the full-well clip of this sensor
    core.snap()
    win.live.sync_controls()
    win.live.refresh()
    core.setShutterOpen(False)
    core.setAutoShutter(True)
    win.tabs.setCurrentWidget(win.live)
    _save(win, shots / "gui_live.png")
    if win.calib is None:
        pytest.skip("acquire.sweep not available: no calibration screenshot")
    win.calib.output.setText(str(tmp_path / "shot.h5"))
    win.calib.form.set_values(
        dark_frames=8, n_levels=5, frames_per_level=8, saturation_levels=0, seed=2
    )
    with qtbot.waitSignal(win.calib.runEnded, timeout=120000):
        assert win.calib.start(), win.calib.status.text()
    qtbot.waitUntil(lambda: win.maps.last_fit is not None, timeout=30000)
    qtbot.wait(300)
    win.tabs.setCurrentIndex(1)
    _save(win, shots / "gui_calibration.png")
    win.tabs.setCurrentWidget(win.viewer)
    _save(win, shots / "gui_profile_after_sweep.png")
    win.close()
