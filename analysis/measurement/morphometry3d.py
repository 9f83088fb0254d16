"""Per-object 3D morphometry: volume, surface area, centroid; and 3D globals.

Objects are the 26-connected components of a boolean mask or the positive labels of
an integer label image, shape (Z, Y, X).  ``spacing`` = (dz, dy, dx) voxel size.

Surface area is the area of the marching-cubes mesh at iso-level 0.5 of the object's
binary mask (``skimage.measure.marching_cubes`` + ``mesh_surface_area``, padded by one
voxel so objects touching the border are closed), with no smoothing, so it is a
deterministic function of the mask.  On voxelised balls of radius 5-15 voxels it reads
8-10 % above the true 4*pi*r² (the staircase), where the exposed-face count reads about
50 % above (6*pi*r²); on anisotropic voxels the staircase along the coarse axis adds
more: +13 % with z voxels twice as long as x/y, +20 % at 4:1 (measured on balls of
radius 3-15 z voxels; the bias does not shrink with the size).  The bias is the same
for raw, replicas and codecs, so it cancels in epsilon; report the method next to absolute areas.

Derived shape parameters: equivalent diameter ``(6 V / pi)^(1/3)`` (the diameter of
the ball of the same volume) and sphericity ``pi^(1/3) (6 V)^(2/3) / A`` (1 for a
ball; with the marching-cubes area a voxelised ball reads about 0.93 on isotropic
voxels, 0.89 at 2:1 and 0.84 at 4:1 anisotropy, for the staircase bias above).
"""

from __future__ import annotations

import numpy as np
from rawsigma.analysis.measurement.morphometry import as_labels
from scipy import ndimage as ndi

__all__ = ["PARAMETERS_3D", "GLOBAL_PARAMETERS_3D", "measure3d", "global_params3d"]

#: Per-object 3D parameters.
PARAMETERS_3D: tuple[str, ...] = (
    "volume",
    "surface_area",
    "z",
    "y",
    "x",
    "equiv_diameter",
    "sphericity",
)

#: Keys of :func:`global_params3d`.
GLOBAL_PARAMETERS_3D: tuple[str, ...] = (
    "count",
    "total_volume",
    "total_surface",
    "mean_volume",
    "load",
)


def _spacing(spacing: tuple[float, float, float] | float | None) -> tuple[float, float, float]:
    if spacing is None:
        return (1.0, 1.0, 1.0)
    if np.isscalar(spacing):
        return (float(spacing),) * 3
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or min(sp) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers (dz, dy, dx), got {spacing}")
    return sp  # type: ignore[return-value]


def _surface(obj: np.ndarray, spacing: tuple[float, ...]) -> float:
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(obj.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing)
    return float(mesh_surface_area(verts, faces))


def measure3d(
    labels: np.ndarray, spacing: tuple[float, float, float] | float | None = None
) -> dict[str, np.ndarray]:
    """Measure every 3D object.

    Parameters
    ----------
    labels : ndarray, (Z, Y, X)
        Boolean mask (26-connected objects) or non-negative integer instance labels.
    spacing : (dz, dy, dx) or float, optional
        Voxel size in physical units (default 1).

    Returns
    -------
    dict of str to ndarray
        ``label`` (int64), ``volume`` (voxel count x voxel volume), ``surface_area``
        (marching-cubes mesh area, units²), centroid ``z``, ``y``, ``x`` (physical
        units, voxel centres at (i + 0.5) * spacing, like the 2D ImageJ convention);
        ``equiv_diameter`` (units) and ``sphericity`` (see the module notes);
        float64, one entry per object in increasing label order.
    """
    lab = as_labels(labels, 3)
    sp = _spacing(spacing)
    out: dict[str, np.ndarray] = {"label": np.zeros(0, np.int64)}
    out.update({k: np.zeros(0) for k in PARAMETERS_3D})
    nmax = int(lab.max()) if lab.size else 0
    if nmax == 0:
        return out
    slices = ndi.find_objects(lab)
    ids = np.array([i + 1 for i, s in enumerate(slices) if s is not None], np.int64)
    idx = np.nonzero(lab)
    ll = lab[idx]
    n = np.bincount(ll, minlength=nmax + 1)[ids].astype(np.float64)
    cents = [
        (np.bincount(ll, weights=c.astype(np.float64), minlength=nmax + 1)[ids] / n + 0.5) * s
        for c, s in zip(idx, sp, strict=True)
    ]
    surf = np.array([_surface(lab[slices[i - 1]] == i, sp) for i in ids])
    vol = n * sp[0] * sp[1] * sp[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        spher = np.where(surf > 0, np.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / surf, np.nan)
    return {
        "label": ids,
        "volume": vol,
        "surface_area": surf,
        "z": cents[0],
        "y": cents[1],
        "x": cents[2],
        "equiv_diameter": (6 * vol / np.pi) ** (1 / 3),
        "sphericity": spher,
    }


def global_params3d(
    labels: np.ndarray,
    spacing: tuple[float, float, float] | float | None = None,
    reference_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Global parameters of a 3D segmentation (the paper's plaque analysis).

    Parameters
    ----------
    labels : ndarray, (Z, Y, X)
        Boolean mask or integer instance labels.
    spacing : (dz, dy, dx) or float, optional
        Voxel size.
    reference_mask : ndarray of bool, optional
        The organ / tissue volume the load is relative to; default the whole image.

    Returns
    -------
    dict
        ``count``, ``total_volume``, ``total_surface`` (sum of per-object mesh areas),
        ``mean_volume`` (0 when there are no objects) and ``load`` = total volume /
        reference volume (the paper's "plaque load").
    """
    lab = as_labels(labels, 3)
    sp = _spacing(spacing)
    m = measure3d(lab, sp)
    vox = sp[0] * sp[1] * sp[2]
    if reference_mask is None:
        ref = lab.size * vox
    else:
        ref_arr = np.asarray(reference_mask, bool)
        if ref_arr.shape != lab.shape:
            raise ValueError(
                f"reference_mask: shape {ref_arr.shape} does not match labels {lab.shape}"
            )
        ref = float(np.count_nonzero(ref_arr)) * vox
    total = float(m["volume"].sum())
    count = len(m["label"])
    return {
        "count": float(count),
        "total_volume": total,
        "total_surface": float(m["surface_area"].sum()),
        "mean_volume": total / count if count else 0.0,
        "load": total / ref if ref > 0 else 0.0,
    }
