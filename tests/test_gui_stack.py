"""Repeat stack from the GUI on the simulated rig: live trace equals the runner's probe."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui


def test_stack_panel_relative_error_convergence(qtbot, tmp_path):
    from rawsigma.acquire.core import open_core
    from rawsigma.gui.main_window import MainWindow

    core = open_core(None)
    core.setROI(0, 0, 64, 48)
    win = MainWindow(core=core)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    panel = win.stack
    assert (panel.trace.y, panel.trace.x) == (24, 32)  # the centre, StackPlan's first probe
    panel.form.set_values(n_frames=80, properties={"LED-Intensity": "30"}, seed=5)
    with qtbot.waitSignal(panel.runEnded, timeout=60000) as sig:
        assert panel.start(), panel.status.text()
    assert sig.args == ["finished"], panel.status.text()
    res = panel.result
    assert res.probe_pixels[0] == (24, 32)
    values = panel.trace.values()
    np.testing.assert_array_equal(values, res.probe_values[0])
    assert values.mean() > 1000  # lit
    x, y = panel.re_points.getData()
    np.testing.assert_array_equal(x, np.arange(1, 81))
    np.testing.assert_allclose(y, res.relative_error()[0])
    _, spread = panel.re_spread.getData()
    np.testing.assert_allclose(spread[1:], res.convergence()["rel_sigma"][0][1:])
    qtbot.waitUntil(lambda: panel.mean_view.data is not None, timeout=10000)
    shots = Path(os.environ.get("RAWSIGMA_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    win.tabs.setCurrentWidget(panel)
    qtbot.wait(100)
    assert win.grab().save(str(shots / "gui_stack.png"), "PNG")
    win.close()
