"""A plain local-contrast blob segmenter, for volumes or images without annotations.

``rawsigma score VOLUME --model rawsigma.analysis.segmentation.blobs:blob_objects``
segments bright compact objects (cell bodies, nuclei) when no annotations exist:

1. contrast = G(σ = 1 voxel) − G(σ = 10 voxels) of the image (a difference of
   Gaussians: the local background, e.g. tissue autofluorescence, is removed);
2. foreground = contrast > median + 6 × 1.4826 × MAD of the contrast (a robust noise
   level: the median absolute deviation of a mostly-background image);
3. objects = 26-connected (3D) / 8-connected (2D) components (done by the scorer).

Scales are in voxels (the plug-in sees no voxel size). It is a baseline with fixed
settings, not a trained model: use annotations (``--labels``) when you have them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["blob_objects"]

#: Fine and background scales (voxels) and the threshold in robust noise units.
BLOB_SIGMA, BACKGROUND_SIGMA, K_MAD = 1.0, 10.0, 6.0


def blob_objects(image: np.ndarray) -> np.ndarray:
    """Foreground mask of bright blobs (bool, the image's shape); see the module notes."""
    a = np.asarray(image, dtype=np.float32)
    contrast = ndi.gaussian_filter(a, BLOB_SIGMA) - ndi.gaussian_filter(a, BACKGROUND_SIGMA)
    med = float(np.median(contrast))
    mad = 1.4826 * float(np.median(np.abs(contrast - med)))
    return contrast > med + K_MAD * max(mad, 1e-6)
