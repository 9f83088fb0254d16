"""Chunked, lazy versions of the feature bank, synthesis and feature ε on dask arrays.

For images and volumes beyond memory (the ``scale`` extra).

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "feature_bank_dask": "lazy",
    "synthesize_dask": "lazy",
    "ChunkedLabels": "chunklabel",
    "label_chunked": "chunklabel",
    "measure3d_chunked": "chunklabel",
    "predict_proba_dask": "classify",
    "foreground_dask": "classify",
    "ChunkedFeatureEpsilon": "featurestats",
    "feature_epsilon_chunked": "featurestats",
    "TaskOutcome": "taskrun",
    "LocalClusterOnDemand": "taskrun",
    "connect": "taskrun",
    "run_tasks": "taskrun",
    "segment_measure_chunked": "pipeline",
    "auto_chunks": "pipeline",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
