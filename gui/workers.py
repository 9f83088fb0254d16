"""Run acquisitions and statistics off the GUI thread.

The acquisition runners (``rawsigma.acquire.sweep.SweepRunner``,
``rawsigma.acquire.stack.StackRunner``) report through psygnal signals emitted in
the thread that runs them. :class:`RunnerWorker` runs one in a ``QThread`` and
re-emits the signals as Qt signals, which reach GUI objects through queued
connections. Per-frame signals are *not* forwarded one by one (a fast camera would
flood the event loop): the latest frame is kept in a :class:`LatestFrame` slot that
the display timer polls, and copies of the live accumulators are sent to a
:class:`StatsWorker` at a bounded rate. The statistics worker calls the calib
functions (``PixelMoments.mean/var``, ``rawsigma.calib.fit.fit_pixel_maps``) in its
own thread and sends the resulting maps back.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy import QtCore, QtWidgets

from .mapview import robust_stats
from .plan_form import PlanForm

if TYPE_CHECKING:
    from rawsigma.acquire.protocols import AcquisitionRunner, MMCore

QUEUED = QtCore.Qt.ConnectionType.QueuedConnection


#: running maps: statistics on a regular subsample of at most this many pixels
STATS_PIXELS = 2**16


def camera_max_adu(core: MMCore) -> int:
    """Largest raw value of the core's camera, ADU (from its bit depth; 16 bit if unknown)."""
    return 2 ** int(core.getImageBitDepth() or 16) - 1


class LatestFrame:
    """Thread-safe single slot holding the most recent frame and a frame counter.

    The producer calls :meth:`put` for every frame; it stores a copy at most
    ``max_rate`` times per second. The consumer calls :meth:`take` from a timer.
    """

    def __init__(self, max_rate: float = 50.0) -> None:
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._serial = 0
        self._taken = 0
        self._min_dt = 1.0 / max_rate if max_rate > 0 else 0.0
        self._t_last = 0.0
        self.count = 0  #: frames offered so far

    def put(self, frame: np.ndarray, label: str = "") -> None:
        """Offer a frame (any thread). Copies it if it is due for display."""
        self.count += 1
        now = time.perf_counter()
        if now - self._t_last < self._min_dt:
            return
        self._t_last = now
        f = np.array(frame, copy=True)
        with self._lock:
            self._frame = f
            self._label = label
            self._serial += 1

    def take(self) -> tuple[np.ndarray, str] | None:
        """Return (frame, label) if a new frame arrived since the last call, else None."""
        with self._lock:
            if self._serial == self._taken or self._frame is None:
                return None
            self._taken = self._serial
            return self._frame, self._label


def copy_moments(m: Any) -> Any:
    """Independent copy of a ``PixelMoments`` (safe to read while the original grows)."""
    cls = type(m)
    if hasattr(m, "state_dict") and hasattr(cls, "from_state"):
        return cls.from_state(copy.deepcopy(m.state_dict()))
    return copy.deepcopy(m)


@dataclass
class MapsSnapshot:
    """Running per-pixel maps of the level being acquired (computed off the GUI thread).

    Attributes
    ----------
    level : int
        Sweep level index (-1 = dark).
    n : int
        Frames accumulated.
    mean : ndarray, float
        Running per-pixel mean, ADU.
    var : ndarray, float
        Running per-pixel temporal variance (ddof=1), ADU².
    stats : dict
        ``{"mean": robust_stats, "var": robust_stats}``.
    final : bool
        True for the snapshot taken when the level finished.
    spatial_mean, spatial_var : float
        Average over pixels of ``mean`` and ``var`` (ADU, ADU²): the level's PTC point.
    """

    level: int
    n: int
    mean: np.ndarray
    var: np.ndarray
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    final: bool = False
    spatial_mean: float = float("nan")
    spatial_var: float = float("nan")


class StatsWorker(QtCore.QObject):
    """Compute running maps and per-pixel fits in a worker thread.

    Slots :meth:`compute_maps` and :meth:`compute_fit` are invoked through queued
    signals; results come back through :attr:`mapsReady` and :attr:`fitReady`.
    ``busy`` tells the producer to drop a snapshot instead of queueing it.
    """

    mapsReady = QtCore.Signal(object)  # MapsSnapshot
    fitReady = QtCore.Signal(object)  # dict: maps, stats, n_levels
    fitFailed = QtCore.Signal(str)
    _runFit = QtCore.Signal()

    def __init__(self, max_adu: int) -> None:
        super().__init__()
        self.max_adu = int(max_adu)
        self.busy = threading.Event()
        self._fit_lock = threading.Lock()
        self._fit_pending: tuple[Any, list] | None = None
        self._fit_scheduled = False
        self._runFit.connect(self._run_pending_fit, QUEUED)

    def request_fit(self, dark: Any, levels: list) -> None:
        """Ask for a fit (any thread). Requests arriving while a fit runs are coalesced:
        only the newest one is computed next, so fits never pile up.
        """
        with self._fit_lock:
            self._fit_pending = (dark, list(levels))
            if self._fit_scheduled:
                return
            self._fit_scheduled = True
        self._runFit.emit()

    @QtCore.Slot()
    def _run_pending_fit(self) -> None:
        while True:
            with self._fit_lock:
                job, self._fit_pending = self._fit_pending, None
                if job is None:
                    self._fit_scheduled = False
                    return
            self.compute_fit(*job)

    @QtCore.Slot(int, object, bool)
    def compute_maps(self, level: int, moments: Any, final: bool = False) -> None:
        try:
            if moments.n < 2:  # a temporal variance needs two frames
                return
            mean = np.asarray(moments.mean())
            var = np.asarray(moments.var())
            snap = MapsSnapshot(
                level=level,
                n=int(moments.n),
                mean=mean,
                var=var,
                stats={
                    "mean": robust_stats(mean, max_pixels=STATS_PIXELS),
                    "var": robust_stats(var, max_pixels=STATS_PIXELS),
                },
                final=final,
                spatial_mean=float(np.nanmean(mean)),
                spatial_var=float(np.nanmean(var)),
            )
            self.mapsReady.emit(snap)
        finally:
            self.busy.clear()

    @QtCore.Slot(object, object)
    def compute_fit(self, dark: Any, levels: list) -> None:
        """Per-pixel maps (``calib.fit.fit_pixel_maps``) and the PTC (``calib.emva``)."""
        from rawsigma.calib.emva import emva_analysis
        from rawsigma.calib.fit import fit_pixel_maps

        try:
            maps = fit_pixel_maps(dark, list(levels), max_adu=self.max_adu)
        except Exception as exc:  # a fit on too few levels is expected to fail
            self.fitFailed.emit(f"per-pixel fit not available yet: {exc}")
            return
        out: dict[str, Any] = {"maps": maps, "n_levels": len(levels), "stats": {}}
        for name in ("gain", "read_noise", "offset"):
            arr = getattr(maps, name, None)
            if arr is not None:
                out["stats"][name] = robust_stats(arr, max_pixels=STATS_PIXELS)
        if len(levels) >= 2:
            try:
                out["emva"], out["ptc"] = emva_analysis(dark, list(levels), max_adu=self.max_adu)
            except Exception as exc:  # keep the maps; say why the PTC fit is missing
                out["emva_error"] = str(exc)
        self.fitReady.emit(out)


class RunnerWorker(QtCore.QObject):
    """Run an acquisition runner (sweep or stack) in a QThread, bridging its signals.

    Parameters
    ----------
    runner : SweepRunner or StackRunner
        Object with ``run()``, ``cancel()``, ``pause()``, ``resume()`` and psygnal
        signals (see ``docs/architecture.md``).
    output : Path, optional
        Where to save the resulting profile (atomically) when the run completes.
    force : bool
        Allow replacing ``output``.
    latest : LatestFrame, optional
        Receives every frame (for the live view).
    stats : StatsWorker, optional
        Receives snapshot copies of the live accumulators.
    snapshot_interval : float
        Minimum seconds between two accumulator snapshots.
    run_kwargs : dict, optional
        Keyword arguments of ``runner.run`` (``resume``, ``out`` for a sweep). When
        ``out`` is given the runner saves the profile itself (as the CLI does).
    """

    levelStarted = QtCore.Signal(int, object)
    levelFinished = QtCore.Signal(int, object)
    progress = QtCore.Signal(int, int)  # level, frames done (throttled)
    warning = QtCore.Signal(str)
    finished = QtCore.Signal(object)  # result of runner.run()
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal(str)
    done = QtCore.Signal()  # always last
    _requestMaps = QtCore.Signal(int, object, bool)

    def __init__(
        self,
        runner: AcquisitionRunner,
        output: Path | None = None,
        force: bool = False,
        latest: LatestFrame | None = None,
        stats: StatsWorker | None = None,
        snapshot_interval: float = 0.25,
        run_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.run_kwargs = dict(run_kwargs or {})
        self.output = Path(output) if output is not None else None
        self.force = force
        self.latest = latest
        self.stats = stats
        self.snapshot_interval = snapshot_interval
        self._t_snap = 0.0
        self._t_prog = 0.0
        self.result: Any = None
        if stats is not None:
            self._requestMaps.connect(stats.compute_maps, QUEUED)

    # -------------------------------------------------- psygnal callbacks
    # These run in the acquisition thread.
    def _on_level_started(self, level: int, info: dict) -> None:
        self.levelStarted.emit(level, dict(info or {}))

    def _on_frame(self, level: int, index: int, frame: Any) -> None:
        if self.latest is not None:
            self.latest.put(frame, f"level {level}, frame {index}")
        now = time.perf_counter()
        if now - self._t_prog >= 0.05:
            self._t_prog = now
            self.progress.emit(level, index + 1)
        if self.stats is None or now - self._t_snap < self.snapshot_interval:
            return
        if self.stats.busy.is_set():
            return
        moments = self._current_moments(level)
        if moments is None or moments.n < 2:
            return
        self._t_snap = now
        self.stats.busy.set()
        self._requestMaps.emit(level, copy_moments(moments), False)

    def _on_level_finished(self, level: int, info: dict) -> None:
        self.progress.emit(level, int((info or {}).get("n_frames", -1)))
        self.levelFinished.emit(level, dict(info or {}))
        if self.stats is None:
            return
        moments = self._current_moments(level)
        if moments is not None and moments.n > 1:
            self.stats.busy.set()
            self._requestMaps.emit(level, copy_moments(moments), True)
        if level < 0:
            return
        dark = getattr(self.runner, "dark", None)
        done = [m for m in (getattr(self.runner, "levels", None) or []) if m is not None]
        current = getattr(self.runner, "current", None)
        if current is not None and all(current is not m for m in done):
            done.append(current)  # the level just finished, not yet in .levels
        done = [m for m in done if m.n > 1]
        if dark is not None and dark.n > 1 and done:
            # no copies: the runner never changes a level (or the dark) once finished
            self.stats.request_fit(dark, done)

    def _current_moments(self, level: int) -> Any:
        current = getattr(self.runner, "current", None)  # SweepRunner: level in progress
        if current is not None:
            return current
        single = getattr(self.runner, "moments", None)  # StackRunner: one accumulator
        if single is not None:
            return single
        if level < 0:
            return getattr(self.runner, "dark", None)
        levels = getattr(self.runner, "levels", None) or []
        if level < len(levels):
            return levels[level]
        return None

    def _connect(self) -> list[tuple[Any, Any]]:
        pairs = []
        for name, cb in (
            ("levelStarted", self._on_level_started),
            ("frameAccumulated", self._on_frame),
            ("levelFinished", self._on_level_finished),
            ("warning", self.warning.emit),
        ):
            sig = getattr(self.runner, name, None)
            if sig is not None:
                sig.connect(cb)
                pairs.append((sig, cb))
        return pairs

    # ------------------------------------------------------------- slots
    @QtCore.Slot()
    def run(self) -> None:
        """Run the runner to completion (in the worker thread)."""
        from rawsigma.errors import Cancelled, RawsigmaError

        pairs = self._connect()
        try:
            result = self.runner.run(**self.run_kwargs)
            self.result = result
            if self.output is not None and hasattr(result, "save"):
                result.save(self.output, force=self.force)
            self.finished.emit(result)
        except Cancelled as exc:
            self.cancelled.emit(str(exc) or "stopped")
        except RawsigmaError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # report, never crash the GUI
            self.failed.emit(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        finally:
            for sig, cb in pairs:
                sig.disconnect(cb)
            self.done.emit()

    def pause(self) -> None:
        """Pause the runner (thread-safe)."""
        self.runner.pause()

    def resume(self) -> None:
        """Resume a paused runner (thread-safe)."""
        self.runner.resume()

    def cancel(self) -> None:
        """Ask the runner to stop; it keeps a resumable partial file."""
        self.runner.cancel()


def start_in_thread(worker: QtCore.QObject, entry: str = "run") -> QtCore.QThread:
    """Move ``worker`` to a new QThread, call ``worker.<entry>`` there, return the thread.

    The thread quits when the worker emits ``done``.
    """
    thread = QtCore.QThread()
    worker.moveToThread(thread)
    thread.started.connect(getattr(worker, entry))
    if hasattr(worker, "done"):
        worker.done.connect(thread.quit, QtCore.Qt.ConnectionType.DirectConnection)
    thread.start()
    return thread


def start_stats_thread(stats: StatsWorker) -> QtCore.QThread:
    """Run a :class:`StatsWorker`'s event loop in its own QThread."""
    thread = QtCore.QThread()
    stats.moveToThread(thread)
    thread.start()
    return thread


class RunPanel(QtWidgets.QWidget):
    """Base of the panels that run an acquisition runner built from a plan form.

    Holds what the calibration and stack panels share: the plan form, the runner
    factory, the run's :class:`RunnerWorker` and its thread, and a
    :class:`StatsWorker` in its own thread; :meth:`wait` and :meth:`shutdown` end
    them. Subclasses build the layout and define ``start`` and ``stop``.

    Parameters
    ----------
    core : CMMCorePlus
        The core the runner acquires from.
    runner_factory : callable
        Builds the runner from ``(core, plan, ...)``.
    plan_cls : type
        Plan model shown in the form.
    order : sequence of str
        Plan fields shown first in the form.
    """

    runStarted = QtCore.Signal()
    runEnded = QtCore.Signal(str)  # the final state, e.g. "finished" | "stopped" | "failed"

    def __init__(
        self,
        core: MMCore,
        runner_factory: Any,
        plan_cls: type,
        order: tuple[str, ...],
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.core = core
        self.runner_factory = runner_factory
        self.form = PlanForm(plan_cls, order=order)
        self.worker: RunnerWorker | None = None
        self.thread: QtCore.QThread | None = None
        self.latest: LatestFrame | None = None  # the live view's, set by the main window
        self.state = "idle"
        self.stats = StatsWorker(max_adu=camera_max_adu(core))
        self.stats_thread = start_stats_thread(self.stats)

    def wait(self, timeout_ms: int = 60000) -> bool:
        """Block until the worker thread ends (for tests and shutdown)."""
        return True if self.thread is None else self.thread.wait(timeout_ms)

    def shutdown(self) -> None:
        """Stop any run and the statistics thread (window closing)."""
        self.stop()
        self.wait(30000)
        self.stats_thread.quit()
        self.stats_thread.wait(10000)
