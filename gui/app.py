"""Start the rawsigma bench GUI (``rawsigma gui``)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def make_window(
    config: str | Path | None = None,
    profile: str | Path | None = None,
    offline: bool | None = None,
) -> Any:
    """Build the main window (a QApplication must exist).

    Parameters
    ----------
    config : path or "sim", optional
        Micro-Manager configuration; None = the simulated rig.
    profile : path, optional
        Profile to open in the viewer.
    offline : bool, optional
        Do not open a camera. Default: offline when only ``profile`` is given.
    """
    from .main_window import MainWindow

    if offline is None:
        offline = profile is not None and config is None
    core = None
    if not offline:
        from rawsigma.acquire.core import open_core

        core = open_core(config)
    return MainWindow(core=core, profile=profile)


def run_gui(
    config: str | Path | None = None,
    profile: str | Path | None = None,
    offline: bool | None = None,
) -> int:
    """Run the GUI event loop until the window closes; return the exit code."""
    from qtpy import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("rawsigma")
    win = make_window(config, profile, offline)
    win.resize(1600, 1000)
    win.show()
    if os.environ.get("RAWSIGMA_GUI_SMOKE"):  # CI: start, draw, quit
        from qtpy import QtCore

        QtCore.QTimer.singleShot(500, win.close)
    return int(app.exec())
