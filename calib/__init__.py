"""Streaming per-pixel statistics, photon-transfer estimators and camera profiles.

The public names below are imported lazily on first use.

Examples
--------
>>> from rawsigma.calib import CameraProfile
>>> profile = CameraProfile.uniform((64, 64), gain=2.0, offset=100.0, read_noise=1.5)
>>> round(profile.gain_global, 3)
2.0
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "CameraIdentity": "profile",
    "CameraProfile": "profile",
    "DEFECT_BAD_GAIN": "profile",
    "DEFECT_DEAD": "profile",
    "DEFECT_HOT": "profile",
    "DEFECT_NAMES": "profile",
    "DEFECT_NOISY": "profile",
    "DEFECT_NONLINEAR": "profile",
    "DEFECT_SATURATED": "profile",
    "LevelStats": "levelstats",
    "PixelMaps": "fit",
    "PixelMoments": "moments",
    "CalibrationError": "validate",
    "DarkCurrent": "darkcurrent",
    "attach_dark_current": "darkcurrent",
    "RecordedDataset": "datasets",
    "build_profile": "build",
    "datasheet_rows": "datasheet",
    "fit_dark_current": "darkcurrent",
    "write_datasheet": "sheet",
    "calibrate_from_stacks": "stacks",
    "compare_profiles": "compare",
    "emva_analysis": "emva",
    "fit_pixel_maps": "fit",
    "group_levels": "datasets",
    "load_profile": "profile",
    "profile_summary": "compare",
    "read_dataset": "datasets",
    "save_profile": "profile_io",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
