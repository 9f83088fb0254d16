"""Profile viewer: maps, EMVA summary, PTC of an HDF5 camera profile; compare two profiles."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qtpy import QtCore, QtWidgets

from .mapview import MapView, defect_overlay, robust_stats
from .noise_maps import defect_legend
from .ptc_plot import PTCPlot

#: (attribute, title, units, colour map) of the maps shown for a profile
PROFILE_MAPS = (
    ("offset", "offset", "ADU", "viridis"),
    ("gain", "gain", "ADU/e⁻", "cividis"),
    ("read_noise", "read noise", "ADU rms", "magma"),
)
MAP_UNITS = {attr: units for attr, _, units, _ in PROFILE_MAPS}
DIFF_MAPS = (
    ("offset", "Δ offset (B − A)", "ADU"),
    ("gain", "Δ gain (B − A)", "ADU/e⁻"),
    ("read_noise", "Δ read noise (B − A)", "ADU rms"),
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.5g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict) and "value" in v:
        u = v.get("unit") or v.get("units") or ""
        return f"{_fmt(v['value'])} {u}".strip()
    return str(v)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Flatten ``CameraProfile.summary()`` into (quantity, value) rows for a table."""
    rows: list[tuple[str, str]] = [("profile id", str(summary.get("profile_id", "")))]
    ident = summary.get("identity", {})
    for key in ("camera", "vendor", "model", "serial", "bit_depth", "binning", "roi"):
        if ident.get(key) not in (None, ""):
            rows.append((key.replace("_", " "), _fmt(ident[key])))
    if ident.get("exposure_ms") is not None:
        rows.append(("exposure", f"{_fmt(float(ident['exposure_ms']))} ms"))
    for key, val in summary.get("global", {}).items():
        rows.append(
            (f"median {key.replace('_', ' ')}", f"{_fmt(float(val))} {MAP_UNITS.get(key, '')}")
        )
    for key, val in summary.get("emva", {}).items():
        if isinstance(val, (dict, list)) and not (isinstance(val, dict) and "value" in val):
            continue
        rows.append((f"EMVA {key}", _fmt(val)))
    d = summary.get("defects", {})
    if d:
        rows.append(("defect pixels", f"{d.get('any', 0)} ({d.get('good', 0)} good)"))
    rows.append(("PTC levels", str(summary.get("ptc_levels", 0))))
    for key, val in summary.get("provenance", {}).items():
        rows.append((key.replace("_", " "), _fmt(val)))
    return rows


class ProfileViewer(QtWidgets.QWidget):
    """Open an HDF5 profile, show its maps, summary table and PTC; compare with another."""

    profileLoaded = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.profile: Any = None
        self.other: Any = None
        self.path: Path | None = None
        self.last_error: QtWidgets.QMessageBox | None = None

        bar = QtWidgets.QHBoxLayout()
        self.open_btn = QtWidgets.QPushButton("Open profile…")
        self.compare_btn = QtWidgets.QPushButton("Compare with…")
        self.export_btn = QtWidgets.QPushButton("Export PNG…")
        self.compare_btn.setEnabled(False)
        self.export_btn.setEnabled(False)
        self.path_label = QtWidgets.QLabel("no profile")
        for w in (self.open_btn, self.compare_btn, self.export_btn):
            bar.addWidget(w)
        bar.addWidget(self.path_label, 1)
        self.open_btn.clicked.connect(self._ask_open)
        self.compare_btn.clicked.connect(self._ask_compare)
        self.export_btn.clicked.connect(self._ask_export)

        self.views: dict[str, MapView] = {}
        maps_page = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(maps_page)
        for i, (attr, title, units, cmap) in enumerate(PROFILE_MAPS):
            v = MapView(title, units, cmap)
            self.views[attr] = v
            grid.addWidget(v, i // 2, i % 2)
        self.defect_view = MapView("defects over offset", "ADU", "CET-L1")
        self.defect_view.image.setOpacity(0.45)  # dim base so the defect colours stand out
        self.defect_legend = QtWidgets.QLabel(defect_legend(None))
        dbox = QtWidgets.QVBoxLayout()
        dbox.addWidget(self.defect_view, 1)
        dbox.addWidget(self.defect_legend)
        grid.addLayout(dbox, 1, 1)

        self.diff_views: dict[str, MapView] = {}
        diff_page = QtWidgets.QWidget()
        dgrid = QtWidgets.QGridLayout(diff_page)
        for i, (attr, title, units) in enumerate(DIFF_MAPS):
            v = MapView(title, units, "CET-D1")
            self.diff_views[attr] = v
            dgrid.addWidget(v, i // 2, i % 2)
        self.compare_table = QtWidgets.QTableWidget(0, 4)
        self.compare_table.setHorizontalHeaderLabels(["quantity", "A", "B", "B − A (rel.)"])
        self.compare_table.horizontalHeader().setStretchLastSection(True)
        dgrid.addWidget(self.compare_table, 1, 1)
        self.compare_table.verticalHeader().setVisible(False)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(maps_page, "maps")
        self.tabs.addTab(diff_page, "compare")

        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["quantity", "value"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.ptc = PTCPlot()
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(self.ptc)

        split = QtWidgets.QSplitter()
        split.addWidget(self.tabs)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        lay = QtWidgets.QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)

    # --------------------------------------------------------------- loading
    def _error(self, title: str, text: str) -> None:
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, title, text, parent=self)
        box.setModal(True)
        box.open()  # non-blocking, so tests and timers keep running
        self.last_error = box

    def _load(self, path: str | Path) -> Any:
        from rawsigma.calib.profile import CameraProfile
        from rawsigma.errors import RawsigmaError

        try:
            return CameraProfile.load(path)
        except (RawsigmaError, OSError, ValueError, KeyError) as exc:
            self._error("Cannot open profile", f"{path}:\n{exc}")
        except Exception as exc:  # unforeseen corruption: still a dialog, not a crash
            self._error("Cannot open profile", f"{path}:\n{type(exc).__name__}: {exc}")
        return None

    def open_profile(self, path: str | Path) -> bool:
        """Load and show ``path``; on failure show an error dialog and return False."""
        prof = self._load(path)
        if prof is None:
            return False
        self.set_profile(prof, Path(path))
        return True

    def set_profile(self, profile: Any, path: Path | None = None) -> None:
        """Show an in-memory ``CameraProfile``."""
        self.profile = profile
        self.path = path
        self.other = None
        self.path_label.setText(str(path) if path else f"profile {profile.profile_id}")
        good = profile.good  # a computed property: read it once
        good = good if good.any() else None
        for attr, view in self.views.items():
            view.set_map(getattr(profile, attr), mask=good)
        self.defect_view.set_map(profile.offset, mask=good)
        if profile.defects is not None:
            self.defect_view.set_overlay(defect_overlay(profile.defects))
        else:
            self.defect_view.set_overlay(None)
        self.defect_legend.setText(defect_legend(profile.defects))
        self._fill_table(self.table, summary_rows(profile.summary()))
        self.ptc.set_table(profile.ptc, profile.emva)
        for v in self.diff_views.values():
            v.clear()
        self.compare_table.setRowCount(0)
        self.tabs.setCurrentIndex(0)
        self.compare_btn.setEnabled(True)
        self.export_btn.setEnabled(True)
        self.profileLoaded.emit(profile)

    @staticmethod
    def _fill_table(table: QtWidgets.QTableWidget, rows: list[tuple[str, ...]]) -> None:
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QtWidgets.QTableWidgetItem(text)
                item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
                table.setItem(r, c, item)
        table.resizeColumnToContents(0)

    # ------------------------------------------------------------- compare
    def compare_with(self, path: str | Path) -> bool:
        """Load a second profile B and show B − A difference maps and a comparison table."""
        if self.profile is None:
            self._error("Nothing to compare", "Open a profile first.")
            return False
        other = self._load(path)
        if other is None:
            return False
        return self.set_other(other)

    def set_other(self, other: Any) -> bool:
        """Compare the shown profile (A) with an in-memory profile (B)."""
        from rawsigma.calib.compare import compare_profiles, difference_maps

        self.other = other
        cmp = compare_profiles(self.profile, other)
        diffs = difference_maps(self.profile, other)
        if not diffs:
            self._error("Profiles not comparable", cmp.get("reason") or "no overlap")
            return False
        for attr, view in self.diff_views.items():
            d = diffs.get(attr)
            if d is None:
                view.clear()
                continue
            s = robust_stats(d)  # symmetric colour range around zero, drawn once
            lim = max(abs(s["p1"]), abs(s["p99"]), 1e-9)
            view.set_map(d, levels=(-lim, lim), stats=s)
        rows = []
        for key, g in cmp.get("global", {}).items():
            rows.append(
                (
                    f"median {key.replace('_', ' ')} ({MAP_UNITS.get(key, '')})",
                    _fmt(g["a"]),
                    _fmt(g["b"]),
                    f"{_fmt(g['diff'])} ({100 * g['rel']:+.2f} %)",
                )
            )
        for key, g in cmp.get("emva", {}).items():
            rows.append((f"EMVA {key}", _fmt(g["a"]), _fmt(g["b"]), f"{100 * g['rel']:+.2f} %"))
        for key, s in cmp.get("maps", {}).items():
            if "n_significant" in s:
                rows.append(
                    (f"{key}: pixels changed > {cmp['k']:g} SE", "", "", str(s["n_significant"]))
                )
        dd = cmp.get("defects", {})
        if dd:
            rows.append(("defects new / gone", "", "", f"{dd['new']} / {dd['gone']}"))
        self._fill_table(self.compare_table, rows)
        self.tabs.setCurrentIndex(1)
        return True

    # -------------------------------------------------------------- export
    def export_figures(self, folder: str | Path, prefix: str = "profile") -> list[Path]:
        """Write every map, the PTC and the whole viewer as PNG files into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for attr, view in self.views.items():
            if view.data is not None:
                out.append(view.export_png(folder / f"{prefix}_{attr}.png"))
        if self.defect_view.data is not None:
            out.append(self.defect_view.export_png(folder / f"{prefix}_defects.png"))
        for attr, view in self.diff_views.items():
            if view.data is not None:
                out.append(view.export_png(folder / f"{prefix}_diff_{attr}.png"))
        p = folder / f"{prefix}_ptc.png"
        self.ptc.grab().save(str(p), "PNG")
        out.append(p)
        p = folder / f"{prefix}_viewer.png"
        self.grab().save(str(p), "PNG")
        out.append(p)
        return out

    # -------------------------------------------------------------- dialogs
    def _ask_open(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open camera profile", "", "HDF5 profiles (*.h5 *.hdf5);;All files (*)"
        )
        if path:
            self.open_profile(path)

    def _ask_compare(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Compare with profile", "", "HDF5 profiles (*.h5 *.hdf5);;All files (*)"
        )
        if path:
            self.compare_with(path)

    def _ask_export(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Export figures to folder")
        if folder:
            files = self.export_figures(folder)
            QtWidgets.QMessageBox.information(
                self, "Exported", f"{len(files)} PNG files written to {folder}"
            )
