"""Photon-transfer curve plot (temporal variance against mean signal, log–log)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy import QtWidgets


def _first(table: Mapping[str, Any], *names: str) -> np.ndarray | None:
    for n in names:
        if n in table and table[n] is not None:
            return np.asarray(table[n], dtype=np.float64)
    return None


def _emva_value(emva: Mapping[str, Any], *names: str) -> float | None:
    for n in names:
        v = emva.get(n)
        if isinstance(v, Mapping):  # {"value": ..., "unit": ...}
            v = v.get("value")
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
    return None


class PTCPlot(QtWidgets.QWidget):
    """Log–log photon-transfer curve: one point per level and the fitted model line.

    The x axis is the mean signal above the dark level (ADU), the y axis the
    temporal variance (ADU²). The line is ``var = K · (mean − dark) + σ_d²`` with
    ``K`` (ADU/e⁻) and ``σ_d`` (ADU) coming from calib (profile or live fit).
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.pw = pg.PlotWidget(background="w")
        self.pw.setTitle("photon-transfer curve", color="k", size="11pt")
        self.pw.setLogMode(x=True, y=True)
        self.pw.showGrid(x=True, y=True, alpha=0.3)
        self.pw.setLabel("bottom", "mean − dark", units="ADU", color="k")
        self.pw.setLabel("left", "temporal variance", units="ADU²", color="k")
        for ax in ("bottom", "left"):
            axis = self.pw.getAxis(ax)
            axis.enableAutoSIPrefix(False)
            axis.setTextPen("k")
            axis.setPen("k")
        self.legend = self.pw.addLegend(offset=(10, 10), labelTextColor="k")
        self.points = self.pw.plot(
            [], [], pen=None, symbol="o", symbolSize=8, symbolBrush=(30, 90, 200), name="levels"
        )
        self.fit_line = self.pw.plot([], [], pen=pg.mkPen((220, 60, 30), width=2), name="fit")
        self.info = QtWidgets.QLabel(" ")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.pw, 1)
        lay.addWidget(self.info)
        self._x = np.empty(0)
        self._y = np.empty(0)

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean − dark, variance) of the points shown, ADU and ADU²."""
        return self._x, self._y

    def set_points(self, x: np.ndarray, y: np.ndarray) -> None:
        """Show per-level points; non-positive values (invisible on log axes) are dropped."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        self._x, self._y = x[ok], y[ok]
        self.points.setData(self._x, self._y)

    def set_fit(
        self, k: float | None, sigma_d: float | None, sat_mean: float | None = None
    ) -> None:
        """Draw ``var = k·x + sigma_d²`` over the range of the points (and up to ``sat_mean``)."""
        if k is None or not np.isfinite(k) or k <= 0:
            self.fit_line.setData([], [])
            self.info.setText("fit: not available")
            return
        s2 = float(sigma_d) ** 2 if sigma_d is not None and np.isfinite(sigma_d) else 0.0
        hi = max([*self._x.tolist(), sat_mean or 0.0, 10.0])
        lo = min([*self._x.tolist(), hi / 1e3]) if self._x.size else hi / 1e3
        xs = np.geomspace(max(lo * 0.5, 1e-3), hi * 1.5, 100)
        self.fit_line.setData(xs, k * xs + s2)
        sd = f"{sigma_d:.3g} ADU" if sigma_d is not None else "–"
        self.info.setText(f"fit: K = {k:.4g} ADU/e⁻,  σ_y,dark = {sd}")

    def set_table(self, ptc: Mapping[str, Any], emva: Mapping[str, Any] | None = None) -> None:
        """Show a profile's PTC table (``CameraProfile.ptc``) and its EMVA fit."""
        emva = emva or {}
        mean = _first(ptc, "mean_minus_dark", "mean_above_dark", "mean")
        var = _first(ptc, "var_corrected", "var", "variance")
        dark_mean = _emva_value(emva, "mu_y_dark", "dark_mean", "offset")
        if mean is not None and "mean_minus_dark" not in ptc and "mean_above_dark" not in ptc:
            dark = _first(ptc, "dark_mean")
            if dark is not None:
                mean = mean - dark
            elif dark_mean is not None:
                mean = mean - dark_mean
        if mean is None or var is None:
            self.set_points(np.empty(0), np.empty(0))
        else:
            self.set_points(mean, var)
        if self._x.size == 0:  # no PTC table (e.g. a truth or estimated profile)
            self.set_fit(None, None)
            self.info.setText("no photon-transfer table in this profile")
            return
        k = _emva_value(emva, "K", "k", "gain", "system_gain")
        # EMVA R4: var_y = K (mu_y - mu_y.dark) + sigma_y.dark^2, everything in DN (ADU)
        sd = _emva_value(emva, "sigma_y_dark", "read_noise")
        self.set_fit(k, sd)

    def clear(self) -> None:
        """Remove points and fit."""
        self.set_points(np.empty(0), np.empty(0))
        self.set_fit(None, None)
