"""Simulated scenes with known ground truth (instance labels), to image through the camera model.

- `nuclei2d`: elliptical nuclei plus bright beads, blurred by a Gaussian PSF.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "nuclei2d": "scenes2d",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
