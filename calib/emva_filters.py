"""The EMVA 1288 R4 spatial filters: the 7x11 box / 3x3 binomial high-pass and the
spatial variance of an accumulator's mean image (plain, high-passed or interior).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from .moments import PixelMoments

__all__ = ["highpass_r4", "spatial_variance"]


def _lowpass_r4(img: np.ndarray) -> np.ndarray:
    out = ndimage.uniform_filter(img, 7, mode="reflect")
    out = ndimage.uniform_filter(out, 11, mode="reflect")
    b = np.array([0.25, 0.5, 0.25])
    out = ndimage.correlate1d(out, b, axis=0, mode="reflect")
    return ndimage.correlate1d(out, b, axis=1, mode="reflect")


_MARGIN = 9  # (7 + 11 + 3 - 3) / 2: pixels affected by the reflection at the border


def _hp_gain() -> float:
    """White-noise variance gain of the high-pass filter (sum of squared taps)."""
    n = 2 * _MARGIN + 1 + 40
    d = np.zeros((n, n))
    d[n // 2, n // 2] = 1.0
    h = d - _lowpass_r4(d)
    return float(np.sum(h * h))


_HP_GAIN = _hp_gain()


def highpass_r4(img: np.ndarray) -> np.ndarray:
    """R4 high-pass of an image (float64), border of 9 pixels removed.

    ``img - binomial3(box11(box7(img)))``. Divide variances of the result by
    ``_HP_GAIN`` (about 0.92) to get the white-noise-equivalent variance.
    """
    img = np.asarray(img, np.float64)
    hp = img - _lowpass_r4(img)
    m = _MARGIN
    if min(img.shape) <= 2 * m + 2:
        raise ValueError(f"image {img.shape} too small for the R4 high-pass filter")
    return hp[m:-m, m:-m]


def spatial_variance(pm: PixelMoments, highpass: bool = False, interior: bool = False) -> float:
    """Spatial variance of the per-pixel means with the temporal part removed (ADU^2).

    ``s2 = var_spatial(<y>) - mean(var_temporal) / L`` (EMVA eq. 35/36); for a frame
    pair this equals eq. 32. With ``highpass``, both terms are taken after the R4
    high-pass (the temporal noise is white, so it scales with the same gain), over the
    interior that the filter leaves (9-pixel border removed); ``interior`` restricts
    the plain estimate to the same pixels, for comparisons.
    """
    mean = pm.mean()
    tvar = pm.var()
    if interior and not highpass:
        m = _MARGIN
        mean, tvar = mean[m:-m, m:-m], tvar[m:-m, m:-m]
    if highpass:
        hp = highpass_r4(mean)
        m = _MARGIN
        return float(np.var(hp) / _HP_GAIN - np.mean(tvar[m:-m, m:-m]) / pm.n)
    return float(np.var(mean) - np.mean(tvar) / pm.n)
