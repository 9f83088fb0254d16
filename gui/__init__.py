"""The rawsigma bench GUI (qtpy + pyqtgraph + pymmcore-widgets).

Start it with ``rawsigma gui`` or :func:`rawsigma.gui.app.run_gui`. Modules:
``main_window`` (tabs), ``live_view`` (camera frames, exposure/light controls),
``calib_panel`` (sweep plan and run controls), ``noise_maps`` (live maps and PTC),
``stack_panel`` (repeat stack, single-pixel relative error), ``profile_viewer``
(open/compare/export profiles), ``mapview``/``ptc_plot`` (plots), ``plan_form``
(forms from pydantic plans) and ``workers`` (threads). Importing this package does
not import Qt.
"""
