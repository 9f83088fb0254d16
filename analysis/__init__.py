"""Offline scoring: replicas, codecs, segmentation, morphometry and the standard score.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "Codec": "codecs",
    "FeatureConfig": "features",
    "NoiseCodec": "noisecodec",
    "PixelClassifier": "classifier",
    "ScorePlan": "plans",
    "ScoreResult": "runner",
    "available_codecs": "codecs",
    "estimate_profile": "noise_estimate",
    "feature_bank": "features",
    "global_params": "morphometry",
    "global_params3d": "morphometry3d",
    "match_objects": "matching",
    "measure": "morphometry",
    "measure3d": "morphometry3d",
    "parse_codecs": "codecs",
    "register_codec": "codecs",
    "run_demo": "demo",
    "score_image": "runner",
    "synthesize": "synthesis",
    "write_report": "report",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
