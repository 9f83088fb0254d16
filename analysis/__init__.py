"""Offline scoring: replicas, codecs, segmentation, morphometry and the standard score.

Subpackages, one per domain (each with its own public names):

- `rawsigma.analysis.noisemodel`: replicas from a profile; profiles estimated from images.
- `rawsigma.analysis.codecs`: the codec registry and built-in codecs;
  `rawsigma.analysis.noisecodec`: the noise-calibrated codec and its containers.
- `rawsigma.analysis.segmentation`: feature bank, random forest, training annotations.
- `rawsigma.analysis.measurement`: morphometry (2D, 3D) and object matching.
- `rawsigma.analysis.scoring`: ε, Δ, the calibrated verdict and `score_image`.
- `rawsigma.analysis.reporting`: report, figures, results files.
- `rawsigma.analysis.phantoms`: simulated scenes with known labels.
- `rawsigma.analysis.outofcore`: dask versions for data beyond memory.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "Codec": "codecs.registry",
    "FeatureConfig": "segmentation.features",
    "NoiseCodec": "noisecodec",
    "PixelClassifier": "segmentation.classifier",
    "ScorePlan": "scoring.plans",
    "ScoreResult": "scoring.results",
    "available_codecs": "codecs.registry",
    "estimate_profile": "noisemodel.estimate",
    "feature_bank": "segmentation.features",
    "global_params": "measurement.morphometry",
    "global_params3d": "measurement.morphometry3d",
    "match_objects": "measurement.matching",
    "measure": "measurement.morphometry",
    "measure3d": "measurement.morphometry3d",
    "nuclei2d": "phantoms.scenes2d",
    "nuclei3d": "phantoms.scenes3d",
    "parse_codecs": "codecs.registry",
    "register_codec": "codecs.registry",
    "run_demo": "demo",
    "score_image": "scoring.runner",
    "score_volume": "scoring.volume",
    "synthesize": "noisemodel.synthesis",
    "training_labels": "segmentation.annotations",
    "write_report": "reporting.report",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
