"""Live camera view with exposure, light-source and device controls.

The image is a :class:`~rawsigma.gui.mapview.MapView` (histogram/LUT, colour bar in
ADU, pixel value under the cursor) with an optional red overlay on saturated
pixels. Frames come from a :class:`~rawsigma.gui.workers.LatestFrame` slot fed by
snaps, by Micro-Manager live mode, or by a running sweep; a timer shows the newest
one at a bounded rate (default 20 Hz) however fast the camera runs.

Device controls are pymmcore-widgets: ``ExposureWidget``, ``SnapButton``,
``LiveButton``, ``PropertyWidget`` (light-source intensity), ``ShuttersWidget``,
``PropertyBrowser`` and ``GroupPresetTableWidget`` (configuration groups).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy import QtCore, QtWidgets

from .mapview import MapView, saturation_overlay
from .workers import LatestFrame, camera_max_adu

if TYPE_CHECKING:
    from rawsigma.acquire.protocols import MMCore

#: default display refresh rate, Hz
DISPLAY_HZ = 20.0

# pymmcore-widgets fetches button icons from the web; offline it warns on every toggle
warnings.filterwarnings("ignore", message="Error fetching icon", category=UserWarning)
warnings.filterwarnings("ignore", message="Icon .* not cached", category=UserWarning)


_ICON_HOST = "api.iconify.design"
_icons_online: bool | None = None  # unknown until the background probe answers


def _probe_icon_host() -> None:
    global _icons_online
    import socket

    try:
        socket.getaddrinfo(_ICON_HOST, 443)
        _icons_online = True
    except OSError:
        _icons_online = False


def _guard_icon_downloads() -> None:
    """Keep superqt's icon downloads off the GUI thread when the host is unreachable.

    pymmcore-widgets' buttons fetch their icons from the web in the GUI thread; on an
    offline bench PC every attempt waits for a DNS failure (the property browser
    took 20 s to open here). Icons are fetched only once a background probe has
    reached the icon host; otherwise the widgets draw their text fallback at once.
    """
    import threading

    try:
        import superqt.iconify as si
    except ImportError:
        return
    if getattr(si, "_rawsigma_guarded", False):
        return
    original = si.svg_path

    def svg_path(*args: Any, **kwargs: Any) -> Any:
        if _icons_online:
            return original(*args, **kwargs)
        raise OSError(f"{_ICON_HOST} not reachable (or not probed yet)")

    si.svg_path = svg_path
    si._rawsigma_guarded = True
    threading.Thread(target=_probe_icon_host, daemon=True, name="icon-probe").start()


def _quiet_widgets() -> Any:
    """Import pymmcore_widgets without icon downloads blocking or warning offline."""
    _guard_icon_downloads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pymmcore_widgets

    return pymmcore_widgets


def light_source_property(core: MMCore) -> tuple[str, str] | None:
    """The (device, property) controlling the light level, if the rig has one.

    Prefers ``LED.Intensity`` (the simulated rig); otherwise the first device with
    an ``Intensity`` property.
    """
    devices = list(core.getLoadedDevices())
    if "LED" in devices and core.hasProperty("LED", "Intensity"):
        return "LED", "Intensity"
    for dev in devices:
        for prop in core.getDevicePropertyNames(dev):
            if prop.lower() == "intensity":
                return dev, prop
    return None


class LiveView(QtWidgets.QWidget):
    """Camera frame display plus exposure, light and live/snap controls.

    Parameters
    ----------
    core : CMMCorePlus
        The Micro-Manager core (a UniMMCore for the simulated rig).
    display_hz : float
        Display refresh rate (frames shown per second at most).
    """

    def __init__(
        self,
        core: MMCore,
        display_hz: float = DISPLAY_HZ,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.core = core
        self.latest = LatestFrame(max_rate=max(display_hz * 2, 1.0))
        self.external = False  # True while a sweep feeds frames (no live polling)
        self.displayed = 0  #: number of frames drawn so far
        self._t0 = time.perf_counter()
        self._n0 = 0
        self._c0 = 0
        self.max_adu = camera_max_adu(core)

        self.view = MapView("camera frame", "ADU", "CET-L1")
        self.saturation = QtWidgets.QCheckBox("highlight saturated pixels (red) ≥")
        self.saturation.setChecked(True)
        self.sat_level = QtWidgets.QSpinBox()
        self.sat_level.setRange(1, self.max_adu)
        self.sat_level.setValue(self.max_adu)
        self.sat_level.setSuffix(" ADU")
        self.sat_level.setToolTip(
            "Threshold of the saturation highlight: the ADC maximum by default; lower it "
            "for a camera whose full well clips below the ADC range."
        )
        self.rate_label = QtWidgets.QLabel("display: – fps")
        self.frame_label = QtWidgets.QLabel(" ")

        w = _quiet_widgets()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.exposure = w.ExposureWidget(mmcore=core)
            self.snap_btn = w.SnapButton(mmcore=core)
            self.live_btn = w.LiveButton(mmcore=core)
        ctrl = QtWidgets.QFormLayout()
        ctrl.addRow("exposure", self.exposure)
        btns = QtWidgets.QHBoxLayout()
        btns.addWidget(self.snap_btn)
        btns.addWidget(self.live_btn)
        ctrl.addRow(btns)
        self.light: tuple[str, str] | None = light_source_property(core)
        self.light_widget: QtWidgets.QWidget | None = None
        if self.light is not None:
            self.light_widget = w.PropertyWidget(*self.light, mmcore=core)
            ctrl.addRow(f"{self.light[0]} {self.light[1]} (%)", self.light_widget)
        if core.getLoadedDevicesOfType(_shutter_type()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.shutters = w.ShuttersWidget(core.getShutterDevice() or "", mmcore=core)
            ctrl.addRow("shutter", self.shutters)
        self.props_btn = QtWidgets.QPushButton("Device properties…")
        self.props_btn.clicked.connect(self.show_property_browser)
        self.groups_btn = QtWidgets.QPushButton("Configuration groups…")
        self.groups_btn.clicked.connect(self.show_config_groups)
        ctrl.addRow(self.props_btn)
        ctrl.addRow(self.groups_btn)
        ctrl.addRow(self.saturation, self.sat_level)
        ctrl.addRow(self.rate_label)
        ctrl.addRow(self.frame_label)

        side = QtWidgets.QWidget()
        side.setLayout(ctrl)
        side.setMaximumWidth(360)
        lay = QtWidgets.QHBoxLayout(self)
        lay.addWidget(self.view, 1)
        lay.addWidget(side)

        self._browser: QtWidgets.QWidget | None = None
        self._groups: QtWidgets.QWidget | None = None
        core.events.imageSnapped.connect(self._on_snapped)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(int(round(1000.0 / display_hz)))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        # UniMMCore does not emit property/exposure events for Python devices, so
        # keep the pymmcore-widgets controls in step with the core at 2 Hz.
        self.sync_timer = QtCore.QTimer(self)
        self.sync_timer.setInterval(500)
        self.sync_timer.timeout.connect(self.sync_controls)
        self.sync_timer.start()

    @QtCore.Slot()
    def sync_controls(self) -> None:
        """Show the core's current exposure and light level in the controls."""
        try:
            if self.light_widget is not None and not self.light_widget.hasFocus():
                self.light_widget.refresh()
            box = self.exposure.spinBox
            exp = float(self.core.getExposure())
            if not box.hasFocus() and abs(box.value() - exp) > 1e-9:
                box.blockSignals(True)
                box.setValue(exp)
                box.blockSignals(False)
        except Exception:  # a device busy or gone: try again at the next tick
            return

    # -------------------------------------------------------------- frames
    def _on_snapped(self, *args: Any) -> None:
        # psygnal callback, possibly in SnapButton's worker thread
        try:
            self.latest.put(self.core.getImage(), "snap")
        except Exception:  # no image in the buffer: nothing to show
            return

    def _poll_live(self) -> None:
        core = self.core
        if self.external or not core.isSequenceRunning():
            return
        try:
            if core.getRemainingImageCount() > 0:
                self.latest.put(core.getLastImage(), "live")
        except Exception:
            return

    @QtCore.Slot()
    def refresh(self) -> None:
        """Timer slot: draw the newest frame, if any, and update the rate label."""
        self._poll_live()
        item = self.latest.take()
        now = time.perf_counter()
        if item is not None and self.isVisible():  # hidden tab: count, do not draw
            frame, label = item
            self.show_frame(frame, label)
        if now - self._t0 >= 1.0:
            fps = (self.displayed - self._n0) / (now - self._t0)
            cam = (self.latest.count - self._c0) / (now - self._t0)
            self.rate_label.setText(f"display: {fps:.1f} fps   frames in: {cam:.1f} /s")
            self._t0, self._n0, self._c0 = now, self.displayed, self.latest.count

    def show_frame(self, frame: np.ndarray, label: str = "") -> None:
        """Draw one frame (rows, cols) now."""
        self.view.set_map(frame, max_stat_pixels=2**14)
        level = int(self.sat_level.value())
        sat = frame >= level
        nsat = int(np.count_nonzero(sat))
        if self.saturation.isChecked() and nsat:
            self.view.set_overlay(saturation_overlay(frame, level))
        else:
            self.view.set_overlay(None)
        self.frame_label.setText(f"{label}: {nsat} saturated px (≥ {level} ADU)")
        self.displayed += 1

    # ------------------------------------------------------------- dialogs
    def show_property_browser(self) -> QtWidgets.QWidget:
        """Open pymmcore-widgets' PropertyBrowser for every device of the core."""
        if self._browser is None:
            w = _quiet_widgets()
            self._browser = w.PropertyBrowser(mmcore=self.core)
            self._browser.setWindowTitle("rawsigma – device properties")
        self._browser.show()
        return self._browser

    def show_config_groups(self) -> QtWidgets.QWidget:
        """Open pymmcore-widgets' GroupPresetTableWidget (configuration groups)."""
        if self._groups is None:
            w = _quiet_widgets()
            self._groups = w.GroupPresetTableWidget(mmcore=self.core)
            self._groups.setWindowTitle("rawsigma – configuration groups")
        self._groups.show()
        return self._groups

    def set_acquiring(self, busy: bool) -> None:
        """Disable live/snap while a sweep or stack owns the camera."""
        self.external = busy
        widgets = [self.snap_btn, self.live_btn, self.exposure, self.light_widget]
        widgets.append(getattr(self, "shutters", None))
        for wdg in widgets:
            if wdg is not None:  # the runner owns exposure, light and shutter now
                wdg.setEnabled(not busy)

    def stop_live(self) -> None:
        """Stop Micro-Manager live mode if it is running."""
        if self.core.isSequenceRunning():
            self.core.stopSequenceAcquisition()

    def close_dialogs(self) -> None:
        """Close the property browser and group dialogs, and stop the timer."""
        self.timer.stop()
        self.sync_timer.stop()
        try:
            self.core.events.imageSnapped.disconnect(self._on_snapped)
        except Exception:
            pass
        for d in (self._browser, self._groups):
            if d is not None:
                d.close()


def _shutter_type() -> Any:
    from pymmcore_plus import DeviceType

    return DeviceType.Shutter
