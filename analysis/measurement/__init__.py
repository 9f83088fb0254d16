"""Objects and what is measured on them.

Per-object and global morphometry (2D and 3D) and the matching of objects between
two segmentations.

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "GLOBAL_PARAMETERS": "morphometry",
    "GLOBAL_PARAMETERS_3D": "morphometry3d",
    "IMAGEJ_COLUMNS": "morphometry",
    "MatchResult": "matching",
    "PARAMETERS": "morphometry",
    "PARAMETERS_3D": "morphometry3d",
    "as_labels": "morphometry",
    "corner_hull": "morphometry",
    "global_params": "morphometry",
    "global_params3d": "morphometry3d",
    "instance_agreement": "agreement",
    "match_objects": "matching",
    "measure": "morphometry",
    "measure3d": "morphometry3d",
    "point_agreement": "agreement",
    "split_merge_counts": "matching",
    "traced_outline": "morphometry",
    "traced_perimeter": "morphometry",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
