"""What a scoring run writes: the HTML report, its figures, results.json and the objects table.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "RESULT_FILES": "report",
    "TOMO_RESULT_FILES": "tomo_report",
    "delta_area_histograms": "figures",
    "epsilon_objects": "figures",
    "feature_epsilon": "figures",
    "globals_normalised": "figures",
    "operator_epsilon_figure": "tomo_report",
    "overlays": "figures",
    "pixel_epsilon_maps": "figures",
    "sinogram_figure": "tomo_report",
    "slices_figure": "tomo_report",
    "VOLUME_RESULT_FILES": "report3d",
    "mips": "report3d",
    "orthogonal_slices": "report3d",
    "tolerance_curves": "figures",
    "write_volume_report": "report3d",
    "write_volumes_h5": "report3d",
    "write_objects_csv": "report",
    "write_report": "report",
    "write_results_json": "report",
    "write_tomo_maps": "tomo_report",
    "write_tomo_report": "tomo_report",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
