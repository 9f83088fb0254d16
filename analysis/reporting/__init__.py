"""What a scoring run writes: the HTML report, its figures, results.json and the objects table.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "RESULT_FILES": "report",
    "delta_area_histograms": "figures",
    "epsilon_objects": "figures",
    "feature_epsilon": "figures",
    "globals_normalised": "figures",
    "overlays": "figures",
    "pixel_epsilon_maps": "figures",
    "tolerance_curves": "figures",
    "write_objects_csv": "report",
    "write_report": "report",
    "write_results_json": "report",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
