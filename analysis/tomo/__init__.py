"""Tomographic reconstruction: filtered back-projection (parallel beam), centre of rotation,
dark/flat normalisation of transmission frames.

- `fbp`: slices from projections (angle, row, detector), iradon's conventions, threaded,
  chunked over rows (``out=`` a zarr/h5 dataset for volumes beyond memory);
  `fbp_chunks` yields the slices chunk by chunk.
- `find_center`: rotation axis from 0°/180° projection pairs (sub-pixel);
  `center_sharpness` / `sharpest_center`: the check by a sharpness search.
- `normalize_transmission` / `NormalizedProjections`: −log((I − dark) / (flat − dark)).

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "FILTERS": "backprojection",
    "fbp": "backprojection",
    "fbp_chunks": "backprojection",
    "fourier_filter": "backprojection",
    "find_center": "center",
    "auto_center": "center",
    "center_sharpness": "center",
    "sharpest_center": "center",
    "entropy_sharpness": "center",
    "opposite_pairs": "center",
    "normalize_transmission": "normalize",
    "NormalizedProjections": "normalize",
    "reference_frames": "normalize",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
