"""The camera noise model applied offline.

Raw-equivalent replicas from a profile, and a profile estimated from raw images alone.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "CameraPreset": "camera_presets",
    "NoiseEstimateError": "estimate",
    "PresetError": "camera_presets",
    "REPLICA_METHOD": "synthesis",
    "SynthesisInfo": "synthesis",
    "anscombe": "synthesis",
    "denoise": "synthesis",
    "estimate_profile": "estimate",
    "fit_variance_line": "estimate",
    "inverse_anscombe": "synthesis",
    "list_presets": "camera_presets",
    "load_preset": "camera_presets",
    "redraw": "synthesis",
    "synthesize": "synthesis",
    "tile_statistics": "estimate",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
