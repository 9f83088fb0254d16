"""The rawsigma bench main window: live view, calibration, repeat stack, profile viewer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy import QtCore, QtWidgets

from .profile_viewer import ProfileViewer
from .workers import QUEUED

if TYPE_CHECKING:
    from rawsigma.acquire.protocols import MMCore


class MainWindow(QtWidgets.QMainWindow):
    """Tabs: *Live*, *Calibration* (sweep + live noise maps + PTC), *Stack*, *Profile*.

    Parameters
    ----------
    core : CMMCorePlus, optional
        A loaded core; without one only the profile viewer is shown (offline use).
    profile : path, optional
        A profile to open in the viewer at start.
    runner_factory, plan_cls : optional
        Passed to :class:`~rawsigma.gui.calib_panel.CalibrationPanel`.
    """

    def __init__(
        self,
        core: MMCore | None = None,
        profile: str | Path | None = None,
        runner_factory: Any = None,
        plan_cls: type | None = None,
        stack_factory: Any = None,
        stack_plan_cls: type | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self.setWindowTitle("rawsigma bench")
        self.tabs = QtWidgets.QTabWidget()
        self.setCentralWidget(self.tabs)
        self.live = None
        self.calib = None
        self.maps = None
        self.stack = None
        if core is not None:
            self._build_bench(core, runner_factory, plan_cls, stack_factory, stack_plan_cls)
        self.viewer = ProfileViewer()
        self.tabs.addTab(self.viewer, "Profile")
        self._build_menu()
        self.statusBar().showMessage(
            f"camera: {core.getCameraDevice()}" if core is not None else "offline: no camera"
        )
        if profile is not None:
            self.tabs.setCurrentWidget(self.viewer)
            self.viewer.open_profile(profile)

    def _build_bench(
        self,
        core: MMCore,
        runner_factory: Any,
        plan_cls: type | None,
        stack_factory: Any,
        stack_plan_cls: type | None,
    ) -> None:
        from .calib_panel import CalibrationPanel
        from .live_view import LiveView

        self.live = LiveView(core)
        self.tabs.addTab(self.live, "Live")
        try:
            self.calib = CalibrationPanel(core, runner_factory=runner_factory, plan_cls=plan_cls)
        except ImportError as exc:  # acquire.sweep / acquire.plans not available
            self.calib = None
            self.tabs.addTab(QtWidgets.QLabel(f"calibration unavailable: {exc}"), "Calibration")
        else:
            self._build_calibration_tab()
        try:
            from .stack_panel import StackPanel

            self.stack = StackPanel(core, runner_factory=stack_factory, plan_cls=stack_plan_cls)
        except ImportError as exc:  # acquire.stack not available
            self.stack = None
            self.tabs.addTab(QtWidgets.QLabel(f"repeat stacks unavailable: {exc}"), "Stack")
        else:
            self.stack.latest = self.live.latest
            self.stack.runStarted.connect(self._on_run_started)
            self.stack.runEnded.connect(self._on_run_ended)
            self.tabs.addTab(self.stack, "Stack")

    def _build_calibration_tab(self) -> None:
        from .noise_maps import NoiseMapsPanel

        self.calib.latest = self.live.latest
        light = self.live.light  # a real rig's light source, if it has an Intensity
        if light is not None and "control" in self.calib.form.widgets:
            self.calib.form.set_values(control=f"{light[0]}-{light[1]}")
        self.maps = NoiseMapsPanel()
        split = QtWidgets.QSplitter()
        split.addWidget(self.calib)
        split.addWidget(self.maps)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 4)
        self.tabs.addTab(split, "Calibration")
        st = self.calib.stats
        st.mapsReady.connect(self.maps.show_snapshot, QUEUED)
        st.fitReady.connect(self.maps.show_fit, QUEUED)
        st.fitFailed.connect(self.maps.status.setText, QUEUED)
        self.calib.runStarted.connect(self._on_run_started)
        self.calib.runEnded.connect(self._on_run_ended)
        self.calib.profileReady.connect(self._on_profile)

    def _build_menu(self) -> None:
        m = self.menuBar().addMenu("&File")
        m.addAction("Open profile…", self.viewer._ask_open)
        m.addAction("Compare with profile…", self.viewer._ask_compare)
        m.addAction("Export figures (PNG)…", self.viewer._ask_export)
        m.addSeparator()
        m.addAction("Quit", self.close)
        if self.live is not None:
            d = self.menuBar().addMenu("&Devices")
            d.addAction("Property browser…", self.live.show_property_browser)
            d.addAction("Configuration groups…", self.live.show_config_groups)

    # ------------------------------------------------------------- slots
    @QtCore.Slot()
    def _on_run_started(self) -> None:
        if self.live is not None:
            self.live.stop_live()
            self.live.set_acquiring(True)
        if self.maps is not None and self.sender() is self.calib:
            self.maps.reset()
            self.maps.status.setText("sweep running")

    @QtCore.Slot(str)
    def _on_run_ended(self, state: str) -> None:
        if self.live is not None:
            self.live.set_acquiring(False)
        self.statusBar().showMessage(f"run {state}")

    @QtCore.Slot(object)
    def _on_profile(self, profile: Any) -> None:
        path = self.calib.output_path() if self.calib is not None else None
        self.viewer.set_profile(profile, path)
        if self.maps is not None:
            self.maps.status.setText(f"sweep finished; profile in the Profile tab ({path})")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        """Stop running work and threads before the window goes."""
        for panel in (self.calib, self.stack):
            if panel is not None:
                panel.shutdown()
        if self.live is not None:
            self.live.stop_live()
            self.live.close_dialogs()
        super().closeEvent(event)
