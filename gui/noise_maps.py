"""Live noise maps: running mean, temporal variance, gain, read noise, defects and the PTC."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy import QtWidgets

from .mapview import DEFECT_COLOURS, DEFECT_NAMES, MapView, defect_overlay
from .ptc_plot import PTCPlot
from .workers import MapsSnapshot


def defect_legend(defects: np.ndarray | None) -> str:
    """HTML legend of the defect colours with the number of pixels per class."""
    parts = []
    for bit, rgba in DEFECT_COLOURS.items():
        n = int(np.count_nonzero(np.asarray(defects) & bit)) if defects is not None else 0
        col = "#{:02x}{:02x}{:02x}".format(*rgba[:3])
        parts.append(f'<span style="color:{col}">■</span> {DEFECT_NAMES[bit]} {n}')
    return "defects: " + " &nbsp; ".join(parts)


class NoiseMapsPanel(QtWidgets.QWidget):
    """Grid of live maps and the photon-transfer curve.

    Fed by :class:`rawsigma.gui.workers.StatsWorker` results: :meth:`show_snapshot`
    (running mean/variance of the level being acquired), :meth:`show_fit`
    (per-pixel gain/read noise/defects fitted by calib on the levels done so far) and
    :meth:`add_level_point` (one PTC point per finished level).
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.mean_view = MapView("running mean", "ADU", "viridis")
        self.var_view = MapView("temporal variance", "ADU²", "inferno")
        self.gain_view = MapView("gain", "ADU/e⁻", "cividis")
        self.read_view = MapView("read noise", "ADU rms", "magma")
        self.defect_view = MapView("defects over offset", "ADU", "CET-L1")
        self.defect_view.image.setOpacity(0.45)  # dim base so the defect colours stand out
        self.ptc = PTCPlot()
        self.defect_legend = QtWidgets.QLabel(defect_legend(None))
        self.status = QtWidgets.QLabel("waiting for frames")

        grid = QtWidgets.QGridLayout()
        grid.addWidget(self.mean_view, 0, 0)
        grid.addWidget(self.var_view, 0, 1)
        grid.addWidget(self.ptc, 0, 2)
        grid.addWidget(self.gain_view, 1, 0)
        grid.addWidget(self.read_view, 1, 1)
        dbox = QtWidgets.QVBoxLayout()
        dbox.addWidget(self.defect_view, 1)
        dbox.addWidget(self.defect_legend)
        grid.addLayout(dbox, 1, 2)
        for c in range(3):
            grid.setColumnStretch(c, 1)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addLayout(grid, 1)

        self._ptc_x: dict[int, float] = {}
        self._ptc_y: dict[int, float] = {}
        self._dark_mean: float | None = None
        self.last_snapshot: MapsSnapshot | None = None
        self.last_fit: dict[str, Any] | None = None
        self.snap_label = ""
        self.fit_label = ""
        self._table_levels = 0
        self.n_snapshots = 0  #: running-map updates drawn (for the benchmark)
        self.n_fits = 0  #: per-pixel fits drawn

    def reset(self) -> None:
        """Clear all maps and the PTC (new run)."""
        for v in (self.mean_view, self.var_view, self.gain_view, self.read_view, self.defect_view):
            v.clear()
        self.ptc.clear()
        self._ptc_x.clear()
        self._ptc_y.clear()
        self._dark_mean = None
        self.last_snapshot = None
        self.last_fit = None
        self._table_levels = 0
        self.snap_label = ""
        self.fit_label = ""
        self.status.setText("waiting for frames")

    def show_snapshot(self, snap: MapsSnapshot) -> None:
        """Show the running mean and temporal variance of the level being acquired."""
        self.last_snapshot = snap
        self.n_snapshots += 1
        which = "dark frames" if snap.level < 0 else f"level {snap.level}"
        self.snap_label = f"running maps: {which}, {snap.n} frames"
        self._update_status()
        self.mean_view.set_map(snap.mean, stats=snap.stats.get("mean"))
        self.var_view.set_map(snap.var, stats=snap.stats.get("var"))
        if snap.final:
            self.add_level_point(snap.level, snap.spatial_mean, snap.spatial_var)

    def _update_status(self) -> None:
        self.status.setText("   ·   ".join(t for t in (self.snap_label, self.fit_label) if t))

    def add_level_point(self, level: int, mean: float, var: float) -> None:
        """Record a finished level's spatial mean signal and temporal variance (ADU, ADU²)."""
        if level < 0:
            self._dark_mean = float(mean)
            self._ptc_y[-1] = float(var)
            return
        self._ptc_x[level] = float(mean)
        self._ptc_y[level] = float(var)
        self._redraw_ptc()

    def _redraw_ptc(self) -> None:
        if self._table_levels >= len(self._ptc_x):
            return  # the calib PTC table already covers these levels
        keys = sorted(k for k in self._ptc_x)
        dark = self._dark_mean or 0.0
        x = np.array([self._ptc_x[k] - dark for k in keys])
        y = np.array([self._ptc_y[k] for k in keys])
        self.ptc.set_points(x, y)

    def show_fit(self, result: dict[str, Any]) -> None:
        """Show calib's per-pixel fit (``fit_pixel_maps`` output) on the levels so far."""
        self.last_fit = result
        self.n_fits += 1
        maps = result["maps"]
        stats = result.get("stats", {})
        n = result.get("n_levels", 0)
        gain = getattr(maps, "gain", None)
        rn = getattr(maps, "read_noise", None)
        offset = getattr(maps, "offset", None)
        defects = getattr(maps, "defects", None)
        self.fit_label = f"per-pixel fit on {n} level(s)"
        self._update_status()
        if gain is not None:
            self.gain_view.set_map(gain, stats=stats.get("gain"))
        if rn is not None:
            self.read_view.set_map(rn, stats=stats.get("read_noise"))
        if offset is not None:
            self.defect_view.set_map(offset, stats=stats.get("offset"))
        if defects is not None:
            self.defect_view.set_overlay(defect_overlay(defects))
            self.defect_legend.setText(defect_legend(defects))
        if "ptc" in result:  # calib.emva's PTC table and K fit replace the quick points
            self.ptc.set_table(result["ptc"], result.get("emva", {}))
            self._table_levels = len(next(iter(result["ptc"].values()), []))
