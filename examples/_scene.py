"""A small simulated raw image shared by the examples (not part of rawsigma)."""

from __future__ import annotations

import numpy as np
from rawsigma.analysis import nuclei2d
from rawsigma.calib import CameraProfile

GAIN, OFFSET, READ_NOISE = 2.0, 100.0, 1.6  # ADU per e⁻, ADU, ADU


def camera_profile(shape: tuple[int, int]) -> CameraProfile:
    """Return a uniform 12-bit camera profile (`rawsigma calibrate` measures real ones)."""
    return CameraProfile.uniform(
        shape, gain=GAIN, offset=OFFSET, read_noise=READ_NOISE, bit_depth=12
    )


def raw_image(shape: tuple[int, int] = (96, 96), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei imaged by that camera: (uint16 raw frame in ADU, instance labels)."""
    rng = np.random.default_rng(seed)
    brightness, truth = nuclei2d(shape, n_objects=8, rng=seed, n_beads=0)
    electrons = rng.poisson(20.0 + 400.0 * brightness)
    adu = OFFSET + GAIN * electrons + rng.normal(0.0, READ_NOISE, shape)
    return np.clip(np.rint(adu), 0, 4095).astype(np.uint16), truth
