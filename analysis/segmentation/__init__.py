"""Pixel classification.

The ilastik/Weka feature bank, the random-forest classifier and its compiled inference,
training annotations from instances.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "blob_objects": "blobs",
    "FeatureConfig": "features",
    "ILASTIK_FEATURES": "features",
    "ILASTIK_SIGMAS": "features",
    "PRESETS": "classifier",
    "PixelClassifier": "classifier",
    "PlaqueRule": "plaques3d",
    "SCORING_FEATURES": "features",
    "SCORING_SIGMAS": "features",
    "TRAINING_RING": "annotations",
    "VersionMismatchWarning": "classifier",
    "WEKA_SIGMAS": "features",
    "d1": "features_math",
    "d2": "features_math",
    "eig_sym2": "features_math",
    "eig_sym3": "features_math",
    "feature_bank": "features",
    "feature_maps_for_scoring": "features",
    "feature_names": "features",
    "fit_plaque_rule": "plaques3d",
    "gaussian": "features_math",
    "gaussian_kernel": "features_math",
    "gaussian_radius": "features_math",
    "iter_feature_blocks": "features",
    "map_feature_blocks": "features",
    "map_feature_blocks_many": "features",
    "ScoringChannels": "shared_filters",
    "ScratchPool": "scratch",
    "plan_scoring_channels": "shared_filters",
    "scoring_block": "shared_filters",
    "labels_from_output": "classifier",
    "load_model": "classifier",
    "organ_mask": "plaques3d",
    "segment_with": "classifier",
    "training_labels": "annotations",
    "training_labels_from_instances": "classifier",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
