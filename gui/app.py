"""Start the rawsigma bench GUI (``rawsigma gui``)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
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
    with _close_on_signals(win) as hit:
        rc = int(app.exec())
    if hit:  # Ctrl-C or SIGTERM: exit 130 as every other command
        raise KeyboardInterrupt
    return rc


@contextlib.contextmanager
def _close_on_signals(win: Any) -> Iterator[list[int]]:
    """Make Ctrl-C and SIGTERM close ``win`` while Qt's event loop runs.

    Qt's C++ loop never hands control to Python, so Python's signal handlers would
    only run once the window closed: the GUI ignored Ctrl-C and SIGTERM. A timer
    lets the interpreter run them; the handler closes the window (which stops any
    running work, as the window's close button does) and records the signal.
    """
    import signal

    from qtpy import QtCore

    hit: list[int] = []

    def handler(signum: int, frame: object) -> None:
        hit.append(signum)
        win.close()
        QtCore.QCoreApplication.quit()

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    timer = QtCore.QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(200)
    try:
        yield hit
    finally:
        timer.stop()
        for sig, h in old.items():
            signal.signal(sig, h)
