"""A per-pixel map display: image, colour bar with units, histogram and robust statistics.

:class:`MapView` is the building block of the live noise maps and the profile
viewer. The statistics it prints (median, MAD, percentiles) describe what is on
screen; they are display summaries, not estimators (those live in ``rawsigma.calib``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtWidgets

#: RGBA colours of the defect overlay, one per bit of ``rawsigma.calib.profile.DEFECT_*``
DEFECT_COLOURS: dict[int, tuple[int, int, int, int]] = {
    1: (255, 40, 40, 255),  # hot
    2: (40, 120, 255, 255),  # dead
    4: (255, 200, 0, 255),  # noisy / RTS
    8: (200, 0, 255, 255),  # nonlinear
    16: (0, 230, 230, 255),  # bad gain
    32: (255, 128, 0, 255),  # saturates early
}
DEFECT_NAMES = {1: "hot", 2: "dead", 4: "noisy", 8: "nonlinear", 16: "bad gain", 32: "sat."}


def robust_stats(
    values: np.ndarray, mask: np.ndarray | None = None, max_pixels: int | None = None
) -> dict[str, float]:
    """Median, MAD and percentiles of the finite values of a map.

    A thin wrapper of :func:`rawsigma.calib.compare.map_stats` (the same numbers as
    ``rawsigma profile show``) that applies an optional pixel mask and subsample.

    Parameters
    ----------
    values : ndarray
        Map of any shape and real dtype; (rows, cols) when ``max_pixels`` is given.
    mask : ndarray of bool, optional
        Pixels to include (True); default all.
    max_pixels : int, optional
        Use a regular subsample of at most this many pixels (sorting a 4 Mpx map
        holds the GIL for ~100 ms); default all pixels.

    Returns
    -------
    dict
        ``median``, ``mad`` (unscaled), ``p1``, ``p99``, ``min``, ``max`` ... in the
        unit of ``values``, and ``n`` (number of finite pixels used).
    """
    from rawsigma.calib.compare import map_stats

    v = np.asarray(values)
    if max_pixels is not None and v.size > max_pixels:
        step = int(math.ceil(math.sqrt(v.size / max_pixels)))
        v = v[::step, ::step]
        mask = None if mask is None else np.asarray(mask)[::step, ::step]
    if mask is not None:
        v = v[np.asarray(mask, dtype=bool)]
    out = map_stats(v)
    out["n"] = int(out["n"])
    return out


def _fmt(x: float) -> str:
    """Four significant digits, without an exponent between 1e-3 and 1e6."""
    if not math.isfinite(x):
        return "–"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1e6 or a < 1e-3:
        return f"{x:.3g}"
    decimals = max(0, 3 - int(math.floor(math.log10(a))))
    return f"{x:.{decimals}f}"


def format_stats(stats: dict[str, float], units: str = "") -> str:
    """One-line text of :func:`robust_stats` output, with units."""
    u = f" {units}" if units else ""
    return (
        f"median {_fmt(stats['median'])}{u}   MAD {_fmt(stats['mad'])}   "
        f"p1 {_fmt(stats['p1'])}   p99 {_fmt(stats['p99'])}"
    )


def _coarse_colormap(name: str, n: int = 16) -> pg.ColorMap:
    """A named colour map resampled to ``n`` stops.

    pyqtgraph's gradient editor draws one tick item per stop; the 256-stop maps made
    every repaint of a colour bar cost ~8 ms.
    """
    cmap = pg.colormap.get(name)
    pos = np.linspace(0.0, 1.0, n)
    return pg.ColorMap(pos, cmap.map(pos, mode="byte"))


def display_array(image: np.ndarray) -> np.ndarray:
    """Transpose a (rows, cols) array for pyqtgraph's (x, y) image convention."""
    return np.asarray(image).T


class MapView(QtWidgets.QWidget):
    """Image of a per-pixel map with a labelled colour bar, its histogram and statistics.

    Parameters
    ----------
    title : str
        Shown above the image (e.g. ``"gain"``).
    units : str
        Unit of the map values, shown on the colour bar and in the statistics
        (e.g. ``"ADU/e⁻"``).
    colormap : str
        A pyqtgraph/matplotlib colour-map name.
    parent : QWidget, optional
    """

    #: emitted with (x, y, value) when the cursor moves over the image
    cursorMoved = QtCore.Signal(int, int, float)

    def __init__(
        self,
        title: str,
        units: str = "",
        colormap: str = "viridis",
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.units = units
        self._data: np.ndarray | None = None
        self._mask: np.ndarray | None = None

        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("w")
        self.glw.ci.setContentsMargins(2, 2, 2, 2)
        self.plot = self.glw.addPlot(row=0, col=0)
        self.plot.setTitle(title, color="k", size="11pt")
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.setLabel("bottom", "x", units="px", color="k")
        self.plot.setLabel("left", "y", units="px", color="k")
        for ax in ("bottom", "left"):
            self.plot.getAxis(ax).enableAutoSIPrefix(False)
            self.plot.getAxis(ax).setTextPen("k")
            self.plot.getAxis(ax).setPen("k")
        self.image = pg.ImageItem(axisOrder="col-major")
        self.plot.addItem(self.image)
        self.overlay = pg.ImageItem(axisOrder="col-major")
        self.overlay.setZValue(10)
        self.plot.addItem(self.overlay)

        self.hist = pg.HistogramLUTItem(image=self.image, fillHistogram=True)
        self.hist.gradient.setColorMap(_coarse_colormap(colormap))
        self.hist.gradient.showTicks(False)
        self.hist.axis.setLabel(title, units=units, color="k")
        self.hist.axis.enableAutoSIPrefix(False)
        self.hist.axis.setTextPen("k")
        self.hist.axis.setPen("k")
        # fixed width with room for 6-digit ticks and the label: pyqtgraph widens the
        # axis only after a first paint, which left the label over the tick text
        self.hist.axis.setWidth(78)
        self.hist.setMinimumWidth(140)
        self.hist.setMaximumWidth(200)
        self.glw.addItem(self.hist, row=0, col=1)
        self.glw.ci.layout.setColumnStretchFactor(0, 4)
        self.glw.ci.layout.setColumnStretchFactor(1, 1)

        self.stats_label = QtWidgets.QLabel("no data")
        self.stats_label.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.stats_label.setWordWrap(True)
        self.cursor_label = QtWidgets.QLabel(" ")

        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.stats_label)
        lay.addWidget(self.cursor_label)

        self._proxy = pg.SignalProxy(
            self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse
        )

    # ------------------------------------------------------------------ data
    @property
    def data(self) -> np.ndarray | None:
        """The map currently shown, (rows, cols), as given to :meth:`set_map`."""
        return self._data

    def set_map(
        self,
        values: np.ndarray,
        mask: np.ndarray | None = None,
        levels: tuple[float, float] | None = None,
        stats: dict[str, float] | None = None,
        max_stat_pixels: int | None = None,
    ) -> dict[str, float]:
        """Show a map.

        Parameters
        ----------
        values : ndarray, (rows, cols)
            Map values in :attr:`units`; NaN pixels are shown transparent.
        mask : ndarray of bool, optional
            Pixels used for the statistics and the default colour range (True = use).
        levels : (float, float), optional
            Colour range; default the 1st–99th percentile of the masked values.
        stats : dict, optional
            Precomputed :func:`robust_stats` (e.g. from a worker thread).
        max_stat_pixels : int, optional
            Compute the statistics on a regular subsample of at most this many
            pixels (live frames: keeps the GUI thread light); default all pixels.

        Returns
        -------
        dict
            The statistics shown.
        """
        data = np.asarray(values)
        self._data = data
        self._mask = mask
        if stats is None:
            stats = robust_stats(data, mask, max_pixels=max_stat_pixels)
        if levels is None:
            levels = (stats["p1"], stats["p99"])
        if stats["n"] == 0:  # nothing finite to draw
            self.image.clear()
            self.stats_label.setText("no finite values")
            return stats
        lo, hi = levels
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = 0.0, 1.0
        if hi <= lo:
            hi = lo + max(abs(lo) * 1e-3, 1e-6)
        disp = display_array(data.astype(np.float32, copy=False))
        self.image.setImage(disp, autoLevels=False, levels=(lo, hi))
        self.hist.setLevels(lo, hi)
        self.hist.setHistogramRange(
            *self._hist_range(stats, lo, hi),
            padding=0.05,
        )
        self.stats_label.setText(format_stats(stats, self.units))
        self.stats_label.setToolTip(
            f"{stats['n']} finite pixels; MAD = median absolute deviation (unscaled); "
            "p1/p99 = 1st/99th percentiles; colour range p1–p99"
        )
        return stats

    @staticmethod
    def _hist_range(stats: dict[str, float], lo: float, hi: float) -> tuple[float, float]:
        a = min(lo, stats["p1"]) if math.isfinite(stats["p1"]) else lo
        b = max(hi, stats["p99"]) if math.isfinite(stats["p99"]) else hi
        span = b - a
        return a - 0.1 * span, b + 0.1 * span

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        """Draw an RGBA (rows, cols, 4) uint8 overlay over the map; None clears it."""
        if rgba is None:
            self.overlay.clear()
            return
        self.overlay.setImage(np.ascontiguousarray(rgba.transpose(1, 0, 2)), autoLevels=False)

    def clear(self) -> None:
        """Remove the map and the overlay."""
        self._data = None
        self.image.clear()
        self.overlay.clear()
        self.stats_label.setText("no data")

    def export_png(self, path: str | Path) -> Path:
        """Save the view (image, colour bar, statistics) as a PNG file."""
        path = Path(path)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"{path}: could not write PNG")
        return path

    # ---------------------------------------------------------------- cursor
    def _on_mouse(self, evt: tuple) -> None:
        if self._data is None:
            return
        pos = evt[0]
        if not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.vb.mapSceneToView(pos)
        x, y = int(math.floor(p.x())), int(math.floor(p.y()))
        rows, cols = self._data.shape[:2]
        if 0 <= x < cols and 0 <= y < rows:
            v = float(self._data[y, x])
            self.cursor_label.setText(f"x={x}  y={y}  value={_fmt(v)} {self.units}")
            self.cursorMoved.emit(x, y, v)


def defect_overlay(defects: np.ndarray, alpha: int = 255) -> np.ndarray:
    """RGBA (rows, cols, 4) uint8 overlay of a defect bitmask (see :data:`DEFECT_COLOURS`).

    A pixel with several bits set takes the colour of its lowest bit.
    """
    d = np.asarray(defects).astype(np.uint8, copy=False)
    rgba = np.zeros((*d.shape, 4), dtype=np.uint8)
    for bit in sorted(DEFECT_COLOURS, reverse=True):
        sel = (d & bit) != 0
        rgba[sel] = DEFECT_COLOURS[bit][:3] + (alpha,)
    return rgba


def saturation_overlay(frame: np.ndarray, max_adu: int) -> np.ndarray:
    """RGBA overlay marking pixels at or above ``max_adu`` in red."""
    f = np.asarray(frame)
    rgba = np.zeros((*f.shape, 4), dtype=np.uint8)
    rgba[f >= max_adu] = (255, 0, 0, 255)
    return rgba
