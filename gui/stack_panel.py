"""Repeat-stack panel: N frames at fixed settings, running maps and convergence.

The convergence is the single-pixel relative error (Fig. 1a of Pomarico et al. 2023).

For one pixel (default: the centre; click the mean map to choose another) the panel
keeps the pixel's value in every frame, as the frames arrive, and shows the relative
error of each sample ``RE_k = (x_k − x̄) / x̄`` against the frame index, the running
σ/μ of the first N frames (which converges as N grows), and the histogram of the RE
values; both computed by ``rawsigma.acquire.stack.StackResult``. The running maps
come from the ``StackRunner``'s accumulator (``PixelMoments``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtWidgets

from .mapview import MapView
from .workers import QUEUED, RunnerWorker, RunPanel, start_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from rawsigma.acquire.protocols import MMCore


class PixelTrace:
    """Thread-safe record of one pixel's values over a stack (appended per frame)."""

    def __init__(self, y: int, x: int) -> None:
        self.y, self.x = y, x
        self._lock = threading.Lock()
        self._values: list[float] = []

    def add(self, frame: np.ndarray) -> None:
        """Append the pixel's value in ``frame`` (any thread)."""
        v = float(frame[self.y, self.x])
        with self._lock:
            self._values.append(v)

    def values(self) -> np.ndarray:
        """The values so far, float64 ADU."""
        with self._lock:
            return np.array(self._values, dtype=np.float64)


def relative_error_curves(values: np.ndarray, plan: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors ``(x_k − x̄)/x̄`` and the running σ/μ of one pixel's values.

    Computed by ``rawsigma.acquire.stack.StackResult`` (``relative_error`` and
    ``convergence``), the same code that writes the stack summary file.

    Parameters
    ----------
    values : 1-D ndarray
        The pixel's value in successive frames, ADU.
    plan : StackPlan, optional

    Returns
    -------
    re : ndarray, float64 (N,)
    rel_sigma : ndarray, float64 (N,)
        std(ddof=1)/mean of the first n values (NaN for n = 1).
    """
    from rawsigma.acquire.stack import StackResult

    v = np.asarray(values)
    if v.size == 0:
        empty = np.empty(0)
        return empty, empty
    res = StackResult(
        moments=None, probe_pixels=[(0, 0)], probe_values=v[None, :], identity=None, plan=plan
    )
    return res.relative_error()[0], res.convergence()["rel_sigma"][0]


class StackPanel(RunPanel):
    """Plan form, run controls, running mean/variance maps and the RE convergence plot."""

    def __init__(
        self,
        core: MMCore,
        runner_factory: Callable[..., Any] | None = None,
        plan_cls: type | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        from rawsigma.acquire.plans import StackPlan
        from rawsigma.acquire.stack import StackRunner

        order = ("n_frames", "shutter_open", "properties", "exposure_ms", "seed")
        super().__init__(core, runner_factory or StackRunner, plan_cls or StackPlan, order, parent)
        self.result: Any = None
        h, w = core.getImageHeight(), core.getImageWidth()
        self.trace = PixelTrace(h // 2, w // 2)

        self.start_btn = QtWidgets.QPushButton("Start stack")
        self.stop_btn = QtWidgets.QPushButton("Stop")
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.stop_btn.setEnabled(False)
        self.status = QtWidgets.QLabel("idle")
        self.status.setWordWrap(True)
        self.pixel_label = QtWidgets.QLabel()
        left = QtWidgets.QVBoxLayout()
        box = QtWidgets.QGroupBox("stack plan")
        QtWidgets.QVBoxLayout(box).addWidget(self.form)
        left.addWidget(box)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.start_btn)
        row.addWidget(self.stop_btn)
        left.addLayout(row)
        left.addWidget(self.status)
        left.addWidget(self.pixel_label)
        left.addStretch(1)

        self.mean_view = MapView("running mean", "ADU", "viridis")
        self.var_view = MapView("temporal variance", "ADU²", "inferno")
        self.mean_view.cursorMoved.connect(self._hover)
        self.mean_view.plot.scene().sigMouseClicked.connect(self._clicked)
        self.re_plot = pg.PlotWidget(background="w")
        self.re_plot.setTitle("single-pixel relative error", color="k", size="11pt")
        self.re_plot.setLabel("bottom", "frame number N", color="k")
        self.re_plot.setLabel("left", "relative error (x − x̄)/x̄", color="k")
        self.re_plot.addLegend(offset=(10, 10), labelTextColor="k")
        self.re_points = self.re_plot.plot(
            [], [], pen=None, symbol="o", symbolSize=5, symbolPen=None,
            symbolBrush=(30, 90, 200, 200), name="RE per frame",
        )  # fmt: skip
        pen = pg.mkPen((220, 60, 30), width=2)
        self.re_spread = self.re_plot.plot([], [], pen=pen, name="± σ/μ of the first N frames")
        self.re_spread_neg = self.re_plot.plot([], [], pen=pen)
        self.re_hist = pg.PlotWidget(background="w")
        self.re_hist.setTitle("histogram of RE", color="k", size="11pt")
        self.re_hist.setLabel("bottom", "relative error", color="k")
        self.re_hist.setLabel("left", "frames", color="k")
        self.hist_curve = self.re_hist.plot(
            [0, 1], [0], stepMode="center", fillLevel=0, brush=(30, 90, 200, 150)
        )
        for pw in (self.re_plot, self.re_hist):
            for ax in ("bottom", "left"):
                pw.getAxis(ax).setTextPen("k")
                pw.getAxis(ax).setPen("k")
        grid = QtWidgets.QGridLayout()
        grid.addWidget(self.mean_view, 0, 0)
        grid.addWidget(self.var_view, 0, 1)
        grid.addWidget(self.re_plot, 1, 0)
        grid.addWidget(self.re_hist, 1, 1)
        side = QtWidgets.QWidget()
        side.setLayout(left)
        side.setMaximumWidth(360)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(side)
        lay.addLayout(grid, 1)

        self.stats.mapsReady.connect(self._on_maps, QUEUED)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.refresh_re)
        self._update_pixel_label()

    # ------------------------------------------------------------ controls
    def set_pixel(self, y: int, x: int) -> None:
        """Follow another pixel (starts a new trace)."""
        self.trace = PixelTrace(int(y), int(x))
        self._update_pixel_label()
        self.refresh_re()

    def _update_pixel_label(self) -> None:
        self.pixel_label.setText(
            f"pixel (x={self.trace.x}, y={self.trace.y}) — click the mean map to choose"
        )

    def _hover(self, x: int, y: int, v: float) -> None:
        self._hover_xy = (x, y)

    def _clicked(self, evt: Any) -> None:
        xy = getattr(self, "_hover_xy", None)
        if xy is not None and self.state != "running":
            self.set_pixel(xy[1], xy[0])

    def start(self) -> bool:
        """Validate the plan and acquire the stack in a worker thread."""
        if self.state == "running":
            return False
        try:
            plan = self.form.plan()
            runner = self.runner_factory(self.core, plan)
            self._plan = plan
        except Exception as exc:
            self.status.setText(f"cannot start: {exc}")
            return False
        self.trace = PixelTrace(self.trace.y, self.trace.x)
        trace = self.trace
        sig = getattr(runner, "frameAccumulated", None)
        if sig is not None:
            sig.connect(lambda level, index, frame: trace.add(frame))
        self.worker = RunnerWorker(runner, latest=self.latest, stats=self.stats)
        self.worker.finished.connect(self._on_finished)
        self.worker.cancelled.connect(lambda t: self._end("stopped", t))
        self.worker.failed.connect(lambda t: self._end("failed", t))
        self.worker.done.connect(self._on_done)
        self.worker.progress.connect(self._on_progress)
        self.state = "running"
        self.status.setText("acquiring…")
        self.runStarted.emit()  # listeners stop live mode before the runner starts
        self.thread = start_in_thread(self.worker)
        self.start_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self.timer.start()
        return True

    def stop(self) -> None:
        """Cancel the stack acquisition."""
        if self.state == "running" and self.worker is not None:
            self.worker.cancel()

    # ------------------------------------------------------------- slots
    @QtCore.Slot(int, int)
    def _on_progress(self, level: int, frames: int) -> None:
        self.status.setText(f"acquiring… {frames} frames")

    @QtCore.Slot(object)
    def _on_maps(self, snap: Any) -> None:
        self.mean_view.set_map(snap.mean, stats=snap.stats.get("mean"))
        self.var_view.set_map(snap.var, stats=snap.stats.get("var"))

    @QtCore.Slot(object)
    def _on_finished(self, result: Any) -> None:
        self.result = result
        self._end("finished", f"{len(self.trace.values())} frames")

    def _end(self, state: str, text: str) -> None:
        self.state = state
        self.status.setText(f"{state}: {text}")

    @QtCore.Slot()
    def _on_done(self) -> None:
        if self.thread is not None:
            self.thread.wait(5000)
        if self.state == "running":
            self.state = "finished"
        self.timer.stop()
        self.refresh_re()
        self.start_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)
        self.runEnded.emit(self.state)

    @QtCore.Slot()
    def refresh_re(self) -> None:
        """Redraw the relative-error plots from the pixel trace."""
        v = self.trace.values()
        re, spread = relative_error_curves(v, getattr(self, "_plan", None))
        n = np.arange(1, re.size + 1)
        self.re_points.setData(n, re)
        self.re_spread.setData(n, spread)
        self.re_spread_neg.setData(n, -spread)
        if re.size >= 2 and np.isfinite(re).all():
            counts, edges = np.histogram(re, bins=min(50, max(5, re.size // 10)))
            self.hist_curve.setData(edges, counts)
            s = spread[-1]
            self.re_plot.setTitle(
                f"single-pixel relative error: σ/μ → {s:.4g} after {re.size} frames", color="k"
            )
