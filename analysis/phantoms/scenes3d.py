"""A 3D scene of nuclei with known instance labels (anisotropic voxels, touching pairs).

The volume is sampled on voxels of size ``spacing`` = (dz, dy, dx) in physical units
(µm, say); nuclei are ellipsoids with physical semi-axes, so the same scene looks the
same whatever the sampling. It holds:

- ``n_objects`` nuclei, separated by at least ``gap`` (physical units), except
- ``touching_pairs`` of them, each placed against a partner so that the two
  ellipsoids touch (their surfaces meet along the line of centres; the voxelised
  bodies do not overlap): after blurring they are one bright
  blob with a shallow neck, the case where a segmentation's object count is fragile;
- a dim "tissue" ellipsoid (brightness ``tissue``) holding the nuclei, for the load
  (object volume / tissue volume);
- ``n_beads`` bright single-voxel beads (``bead_brightness`` × a nucleus) outside the
  tissue: they set the range of a min–max 8-bit conversion, as debris does in real
  volumes.

Everything is blurred by an anisotropic Gaussian PSF given in physical units.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["nuclei3d"]


def _box(
    centre: np.ndarray, reach: np.ndarray, spacing: np.ndarray, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """Voxel slices covering ``centre ± reach`` (physical units)."""
    lo = np.maximum(np.floor((centre - reach) / spacing - 0.5).astype(int), 0)
    hi = np.minimum(np.ceil((centre + reach) / spacing + 0.5).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _rr(
    sl: tuple[slice, ...], centre: np.ndarray, radii: np.ndarray, spacing: np.ndarray
) -> np.ndarray:
    """Normalised squared radius of the ellipsoid at the voxel centres of ``sl``."""
    grids = np.ogrid[sl]
    return sum(
        (((g + 0.5) * s - c) / r) ** 2
        for g, s, c, r in zip(grids, spacing, centre, radii, strict=True)
    )


def nuclei3d(
    shape: tuple[int, int, int] = (40, 128, 128),
    spacing: tuple[float, float, float] = (1.0, 0.5, 0.5),
    n_objects: int = 200,
    touching_pairs: int = 20,
    rng: np.random.Generator | int | None = 0,
    *,
    radius: tuple[float, float] = (1.6, 2.4),
    gap: float = 1.0,
    psf_sigma: tuple[float, float, float] = (0.6, 0.25, 0.25),
    brightness: tuple[float, float] = (0.7, 1.0),
    tissue: float = 0.08,
    n_beads: int = 4,
    bead_brightness: float = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoidal nuclei in a dim tissue, blurred by an anisotropic Gaussian PSF.

    Parameters
    ----------
    shape : (Z, Y, X)
        Volume size in voxels.
    spacing : (dz, dy, dx)
        Voxel size in physical units.
    n_objects : int
        Nuclei to place (fewer if the volume is full: check ``truth.max()``).
    touching_pairs : int
        How many of them are placed touching a previously placed nucleus.
    rng : Generator, int or None
        Random source.
    radius : (min, max)
        Range of the nuclei's semi-axes, physical units (each axis drawn separately,
        so nuclei are ellipsoids aligned with the axes).
    gap : float
        Least surface-to-surface distance between nuclei that do not touch.
    psf_sigma : (sz, sy, sx)
        Gaussian PSF, physical units.
    brightness : (min, max)
        Range of the nuclei's brightness, drawn log-uniformly (a wide range, e.g.
        (0.1, 1), stands for the depth attenuation and expression spread of real
        volumes: dim nuclei are the ones a coarse 8-bit step loses).
    tissue : float
        Brightness of the tissue ellipsoid.
    n_beads : int
        Bright beads of one voxel each outside the tissue.
    bead_brightness : float
        Bead brightness relative to a nucleus.

    Returns
    -------
    brightness : ndarray of float32, (Z, Y, X)
        Relative brightness after blurring (background 0).
    truth : ndarray of int32, (Z, Y, X)
        Instance labels of the unblurred nuclei (1..n; touching pairs are distinct
        labels in contact, at most one voxel apart) and beads (after the nuclei); 0 = background.
    """
    rng = np.random.default_rng(rng)
    sp = np.asarray(spacing, float)
    if sp.shape != (3,) or not np.all(sp > 0):
        raise ValueError(f"spacing must be 3 positive numbers, got {spacing}")
    ext = np.asarray(shape, float) * sp  # physical extent
    truth = np.zeros(shape, np.int32)
    bright = np.zeros(shape, np.float32)
    t_sl = _box(ext / 2, ext * 0.46, sp, shape)
    tissue_mask = np.zeros(shape, bool)
    tissue_mask[t_sl] = _rr(t_sl, ext / 2, ext * 0.46, sp) <= 1
    bright[tissue_mask] = tissue
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    n_touch = min(int(touching_pairs), int(n_objects) // 2)
    k = tries = 0
    rmax = radius[1]
    while k < n_objects and tries < 200 * n_objects:
        tries += 1
        radii = rng.uniform(*radius, size=3)
        touch = k < 2 * n_touch and k % 2 == 1 and placed
        if touch:  # against the nucleus placed just before, along a random direction
            c0, r0 = placed[-1]
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            # distance where the two ellipsoids' surfaces meet along d
            reach = 1 / np.sqrt(np.sum((d / r0) ** 2)) + 1 / np.sqrt(np.sum((d / radii) ** 2))
            centre = c0 + d * reach
        else:
            centre = rng.uniform(rmax + 1, ext - rmax - 1)
        if not tissue_mask[tuple(np.clip((centre / sp).astype(int), 0, np.array(shape) - 1))]:
            continue
        sl = _box(centre, radii + gap, sp, shape)
        rr = _rr(sl, centre, radii + gap, sp)
        body = _rr(sl, centre, radii, sp) <= 1
        if not body.any() or any(a.stop - a.start < 3 for a in sl):
            continue
        near = truth[sl][rr <= 1]
        others = near[near > 0]
        if touch:  # may touch its partner only, not overlap it
            if np.any(others != k) or np.any(truth[sl][body] > 0):
                continue
        elif others.size:
            continue
        k += 1
        truth[sl][body] = k
        bright[sl][body] = np.exp(rng.uniform(*np.log(brightness)))
        placed.append((centre, radii))
    for _ in range(n_beads):
        for _t in range(500):
            idx = tuple(int(rng.integers(2, n - 2)) for n in shape)
            if not tissue_mask[idx] and not truth[idx]:
                k += 1
                truth[idx] = k
                bright[idx] = bead_brightness
                break
    bright = ndi.gaussian_filter(bright, tuple(np.asarray(psf_sigma) / sp)).astype(np.float32)
    return bright, truth
