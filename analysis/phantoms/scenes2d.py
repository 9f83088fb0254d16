"""A 2D scene of nuclei with known instance labels, for tests, benchmarks and the demo."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["nuclei2d"]


def nuclei2d(
    shape: tuple[int, int] = (192, 192),
    n_objects: int = 24,
    radius: tuple[float, float] = (6.0, 11.0),
    psf_sigma: float = 1.5,
    rng: np.random.Generator | int | None = 0,
    n_beads: int = 3,
    bead_brightness: float = 100.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping elliptical "nuclei" blurred by a Gaussian PSF, plus bright beads.

    The beads (3×3 px, ``bead_brightness`` times a nucleus) stand for the bright debris
    or beads of real fields: they stretch the dynamic range, which is what makes a
    min–max 8-bit conversion coarse on the dim nuclei.

    Returns
    -------
    brightness : ndarray of float32, (H, W)
        Relative brightness after blurring (background 0, nuclei ≤ 1, beads higher).
    truth : ndarray of int32, (H, W)
        Instance labels of the unblurred nuclei and beads (0 = background).
    """
    rng = np.random.default_rng(rng)
    h, w = shape
    truth = np.zeros(shape, np.int32)
    bright = np.zeros(shape, np.float32)
    k, tries = 0, 0
    while k < n_objects and tries < 50 * n_objects:
        tries += 1
        a = rng.uniform(*radius)
        b = a * rng.uniform(0.6, 1.0)
        cy, cx = rng.uniform(a + 3, h - a - 3), rng.uniform(a + 3, w - a - 3)
        t = rng.uniform(0, np.pi)
        # work in the object's bounding window (+3 px margin for the spacing test)
        r0, r1 = int(max(cy - a - 4, 0)), int(min(cy + a + 5, h))
        c0, c1 = int(max(cx - a - 4, 0)), int(min(cx + a + 5, w))
        yy, xx = np.mgrid[r0:r1, c0:c1]
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1
        grown = ndi.binary_dilation(m, iterations=3)
        if np.any(truth[r0:r1, c0:c1][grown]):
            continue
        k += 1
        truth[r0:r1, c0:c1][m] = k
        bright[r0:r1, c0:c1][m] = rng.uniform(0.7, 1.0)
    for _ in range(n_beads):
        for _t in range(200):
            cy, cx = (int(v) for v in rng.integers(4, (h - 4, w - 4)))
            if not truth[cy - 4 : cy + 5, cx - 4 : cx + 5].any():
                k += 1
                truth[cy - 1 : cy + 2, cx - 1 : cx + 2] = k
                bright[cy - 1 : cy + 2, cx - 1 : cx + 2] = bead_brightness
                break
    bright = ndi.gaussian_filter(bright, psf_sigma).astype(np.float32)
    return bright, truth
