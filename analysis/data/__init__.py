"""Bundled demo data (see README.md here for origin, crop and license)."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["CITATION", "demo_image", "demo_labels"]

CITATION = (
    "We used image set BBBC039v1 (Caicedo et al., Cytometry Part A, 2019), available from "
    "the Broad Bioimage Benchmark Collection (Ljosa et al., Nature Methods, 2012)."
)
_IMAGE = "bbbc039_u2os_hoechst_crop256.tif"
_LABELS = "bbbc039_u2os_hoechst_crop256_labels.tif"


def _read(name: str) -> np.ndarray:
    import tifffile

    with resources.as_file(resources.files(__name__) / name) as p:
        return tifffile.imread(p)


def demo_image() -> np.ndarray:
    """Return the bundled 256×256 uint16 BBBC039 crop (raw 12-bit camera values, DN)."""
    return _read(_IMAGE)


def demo_labels() -> np.ndarray:
    """Return the expert instance labels of :func:`demo_image` (uint16, 0 = background)."""
    return _read(_LABELS)
