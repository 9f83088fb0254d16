"""Calibration panel: the sweep plan, start / pause / resume / stop, progress and warnings.

The panel builds a ``rawsigma.acquire.plans.SweepPlan`` from its form, runs a
``rawsigma.acquire.sweep.SweepRunner`` in a worker thread
(:class:`~rawsigma.gui.workers.RunnerWorker`) and feeds the live views. It does
exactly what ``rawsigma calibrate`` does with the same plan: construct the runner,
``run()`` it, save the returned profile.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy import QtCore, QtWidgets

from .workers import RunnerWorker, RunPanel, start_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from rawsigma.acquire.protocols import MMCore

#: plan fields shown first in the form, when the plan has them
PLAN_ORDER = (
    "n_levels",
    "frames_per_level",
    "dark_frames",
    "control",
    "target_fraction",
    "auto_range",
    "spacing",
    "exposure_ms",
    "seed",
)


def _frames_in_level(info: dict, plan: Any, level: int) -> int | None:
    for key in ("n_frames", "frames", "frames_per_level", "total"):
        if isinstance(info.get(key), int):
            return int(info[key])
    names = ("dark_frames", "n_dark") if level < 0 else ("frames_per_level",)
    for n in names:
        v = getattr(plan, n, None)
        if isinstance(v, int):
            return v
    return None


def _describe(info: dict, plan: Any = None) -> str:
    """Short text of a level: its control value, or "dark"."""
    ctrl = info.get("control")
    name = getattr(plan, "control", "control")
    if isinstance(ctrl, (int, float)):
        text = f"{name} = {ctrl:.4g}"
    else:
        text = str(info.get("kind", "")) or "–"
    if info.get("retry"):
        text += f" (retry {info['retry']})"
    if isinstance(info.get("fps"), float):
        text += f", {info['fps']:.0f} fps"
    return text


class CalibrationPanel(RunPanel):
    """Sweep plan form, run controls, per-level progress and warnings.

    Parameters
    ----------
    core : CMMCorePlus
        The core the sweep runs on.
    runner_factory : callable, optional
        ``(core, plan, partial_path) -> runner``; default
        ``rawsigma.acquire.sweep.SweepRunner``.
    plan_cls : type, optional
        Plan model; default ``rawsigma.acquire.plans.SweepPlan``.
    """

    profileReady = QtCore.Signal(object)
    warningRaised = QtCore.Signal(str)

    def __init__(
        self,
        core: MMCore,
        runner_factory: Callable[..., Any] | None = None,
        plan_cls: type | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        if plan_cls is None:
            from rawsigma.acquire.plans import SweepPlan as plan_cls
        if runner_factory is None:
            from rawsigma.acquire.sweep import SweepRunner as runner_factory
        super().__init__(core, runner_factory, plan_cls, PLAN_ORDER, parent)
        self.profile: Any = None
        # self.state: idle | running | paused | stopped | finished | failed
        self._plan: Any = None
        self._rows: dict[int, int] = {}

        self.output = QtWidgets.QLineEdit(str(Path.cwd() / "camera_profile.h5"))
        browse = QtWidgets.QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        self.force = QtWidgets.QCheckBox("overwrite")
        out_row = QtWidgets.QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        out_row.addWidget(self.force)

        self.start_btn = QtWidgets.QPushButton("Start")
        self.pause_btn = QtWidgets.QPushButton("Pause")
        self.resume_btn = QtWidgets.QPushButton("Resume")
        self.stop_btn = QtWidgets.QPushButton("Stop")
        self.start_btn.clicked.connect(self.start)
        self.pause_btn.clicked.connect(self.pause)
        self.resume_btn.clicked.connect(self.resume)
        self.stop_btn.clicked.connect(self.stop)
        btns = QtWidgets.QHBoxLayout()
        for b in (self.start_btn, self.pause_btn, self.resume_btn, self.stop_btn):
            btns.addWidget(b)

        self.table = QtWidgets.QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["level", "frames", "setting", "status"])
        self.table.verticalHeader().setVisible(False)
        hh = self.table.horizontalHeader()
        mode = QtWidgets.QHeaderView.ResizeMode
        hh.setSectionResizeMode(0, mode.ResizeToContents)
        hh.setSectionResizeMode(1, mode.Fixed)
        hh.setSectionResizeMode(2, mode.Stretch)
        hh.setSectionResizeMode(3, mode.ResizeToContents)
        self.table.setColumnWidth(1, 100)
        self.warnings = QtWidgets.QListWidget()
        self.status = QtWidgets.QLabel("idle")
        self.status.setWordWrap(True)

        plan_box = QtWidgets.QGroupBox("sweep plan")
        pl = QtWidgets.QVBoxLayout(plan_box)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        pl.addWidget(scroll)
        pl.addWidget(QtWidgets.QLabel("output profile"))
        pl.addLayout(out_row)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(plan_box, 3)
        lay.addLayout(btns)
        lay.addWidget(self.status)
        lay.addWidget(QtWidgets.QLabel("progress per level"))
        lay.addWidget(self.table, 2)
        lay.addWidget(QtWidgets.QLabel("warnings"))
        lay.addWidget(self.warnings, 1)
        self.setMinimumWidth(340)
        self.setMaximumWidth(420)
        self._update_buttons()

    # ---------------------------------------------------------------- state
    def _update_buttons(self) -> None:
        s = self.state
        self.start_btn.setEnabled(s not in ("running", "paused"))
        self.pause_btn.setEnabled(s == "running")
        partial = self.partial_path()
        self.resume_btn.setEnabled(s == "paused" or (s == "stopped" and partial.exists()))
        self.stop_btn.setEnabled(s in ("running", "paused"))
        self.form.setEnabled(s not in ("running", "paused"))

    def output_path(self) -> Path:
        """The profile file the run writes."""
        return Path(self.output.text()).expanduser()

    def partial_path(self) -> Path:
        """The resumable partial file of the current output (the CLI's name for it)."""
        from rawsigma.acquire.sweep import partial_path_for

        return partial_path_for(self.output_path())

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Profile file", self.output.text(), "HDF5 profiles (*.h5)"
        )
        if path:
            self.output.setText(path)

    # ------------------------------------------------------------ controls
    def start(self, resume: bool = False) -> bool:
        """Validate the plan and start the sweep in a worker thread.

        With ``resume`` the runner is given the existing partial file and continues it.
        Returns False (and says why in the status line) if the run cannot start.
        """
        from rawsigma.fileio import check_output

        if self.state in ("running", "paused"):
            return False
        try:
            plan = self.form.plan()
        except Exception as exc:  # pydantic ValidationError: show the message
            self._set_status(f"invalid plan: {exc}", error=True)
            return False
        out = self.output_path()
        partial = self.partial_path()
        try:
            check_output(out, self.force.isChecked())
        except Exception as exc:
            self._set_status(str(exc), error=True)
            return False
        if partial.exists() and not resume:
            if not self.force.isChecked():
                self._set_status(
                    f"{partial}: a partial run exists; press Resume to continue it, "
                    "or tick 'overwrite' to start again",
                    error=True,
                )
                return False
            partial.unlink()
        try:
            runner = self.runner_factory(self.core, plan, partial, force=self.force.isChecked())
        except Exception as exc:
            self._set_status(f"cannot start: {exc}", error=True)
            return False
        self._plan = plan
        if not resume:
            self.table.setRowCount(0)
            self._rows.clear()
            self.warnings.clear()
        # as ``rawsigma calibrate``: run(resume=..., out=...) saves the profile atomically
        # and removes the partial file
        self.worker = RunnerWorker(
            runner,
            latest=self.latest,
            stats=self.stats,
            run_kwargs={"resume": resume, "out": out},
        )
        w = self.worker
        w.levelStarted.connect(self._on_level_started)
        w.progress.connect(self._on_progress)
        w.levelFinished.connect(self._on_level_finished)
        w.warning.connect(self._on_warning)
        w.finished.connect(self._on_finished)
        w.cancelled.connect(self._on_cancelled)
        w.failed.connect(self._on_failed)
        w.done.connect(self._on_done)
        self.state = "running"
        self._set_status(("resuming" if resume else "running") + f" → {out}")
        # listeners stop Micro-Manager live mode here, before the runner owns the camera
        self.runStarted.emit()
        self.thread = start_in_thread(w)
        self._update_buttons()
        return True

    def pause(self) -> None:
        """Pause the running sweep (the camera stops between frames)."""
        if self.state == "running" and self.worker is not None:
            self.worker.pause()
            self.state = "paused"
            self._set_status("paused")
            self._update_buttons()

    def resume(self) -> None:
        """Resume a paused sweep, or continue a stopped one from its partial file."""
        if self.state == "paused" and self.worker is not None:
            self.worker.resume()
            self.state = "running"
            self._set_status("running")
            self._update_buttons()
        elif self.state in ("stopped", "failed", "idle") and self.partial_path().exists():
            self.start(resume=True)

    def stop(self) -> None:
        """Stop the sweep; the runner keeps a resumable partial file."""
        if self.state in ("running", "paused") and self.worker is not None:
            if self.state == "paused":
                self.worker.resume()  # let the runner see the cancel request
            self.worker.cancel()
            self._set_status("stopping…")

    # ---------------------------------------------------------- slot glue
    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020" if error else "")

    def _row(self, level: int) -> int:
        if level not in self._rows:
            r = self.table.rowCount()
            self.table.insertRow(r)
            self._rows[level] = r
            name = "dark" if level < 0 else str(level)
            self.table.setItem(r, 0, QtWidgets.QTableWidgetItem(name))
            bar = QtWidgets.QProgressBar()
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat("%v / %m")
            self.table.setCellWidget(r, 1, bar)
            self.table.setItem(r, 3, QtWidgets.QTableWidgetItem("waiting"))
        return self._rows[level]

    def level_bar(self, level: int) -> QtWidgets.QProgressBar:
        """The progress bar of a level's row."""
        return self.table.cellWidget(self._row(level), 1)

    @QtCore.Slot(int, object)
    def _on_level_started(self, level: int, info: dict) -> None:
        r = self._row(level)
        total = _frames_in_level(info, self._plan, level) or 0
        bar = self.level_bar(level)
        bar.setRange(0, max(total, 1))
        self.table.setItem(r, 2, QtWidgets.QTableWidgetItem(_describe(info, self._plan)))
        self.table.item(r, 3).setText("acquiring")
        self.table.scrollToItem(self.table.item(r, 0))

    @QtCore.Slot(int, int)
    def _on_progress(self, level: int, frames: int) -> None:
        if frames >= 0:
            bar = self.level_bar(level)
            if frames > bar.maximum():
                bar.setMaximum(frames)
            bar.setValue(frames)

    @QtCore.Slot(int, object)
    def _on_level_finished(self, level: int, info: dict) -> None:
        r = self._row(level)
        bar = self.level_bar(level)
        bar.setValue(bar.maximum())
        item = self.table.item(r, 3)
        item.setText("done")
        item.setToolTip(", ".join(f"{k}={v}" for k, v in info.items()))
        self.table.setItem(r, 2, QtWidgets.QTableWidgetItem(_describe(info, self._plan)))

    @QtCore.Slot(str)
    def _on_warning(self, text: str) -> None:
        item = QtWidgets.QListWidgetItem("⚠ " + text)
        self.warnings.addItem(item)
        self.warnings.scrollToBottom()
        self.warningRaised.emit(text)

    @QtCore.Slot(object)
    def _on_finished(self, profile: Any) -> None:
        self.profile = profile
        self.state = "finished"
        self._set_status(f"finished: profile saved to {self.output_path()}")
        self.profileReady.emit(profile)

    @QtCore.Slot(str)
    def _on_cancelled(self, text: str) -> None:
        self.state = "stopped"
        p = self.partial_path()
        kept = f"; partial run kept in {p} (Resume continues it)" if p.exists() else ""
        self._set_status(f"stopped: {text}{kept}")

    @QtCore.Slot(str)
    def _on_failed(self, text: str) -> None:
        self.state = "failed"
        p = self.partial_path()
        kept = f"\npartial run kept in {p}" if p.exists() else ""
        self._set_status(f"failed: {text}{kept}", error=True)

    @QtCore.Slot()
    def _on_done(self) -> None:
        if self.thread is not None:
            self.thread.wait(5000)
        self._update_buttons()
        self.runEnded.emit(self.state)
