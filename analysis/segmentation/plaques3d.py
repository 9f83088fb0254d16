"""A documented threshold rule for bright plaque-like objects in a 3D volume.

Used by the tomography scoring pipeline when no trained model is given. The rule is
fitted once on the raw reconstruction and then applied unchanged to every replica and
processed version (as the pixel classifier is trained once on the raw image):

1. response ``R = G_σs(v) − G_σb(v)`` (a difference of Gaussians: the plaque scale
   σs = 1 voxel minus the local tissue background at σb = 4 voxels);
2. organ mask: ``g > ½·median(g[g > Otsu(g)])`` with ``g = G_2(min(v, q))``, ``q``
   the 95 % quantile of the raw volume (clipping first, so a few bright plaques or
   specks do not decide the tissue; assumes the organ fills at least 5 % of the
   volume), largest 26-connected component only: the tissue, for the plaque load and
   the threshold;
3. threshold ``t = level · quantile_q(R[organ])`` with ``q = 0.999`` and ``level = 0.4``
   (a fraction of the brightest plaque response);
4. objects: 26-connected components of ``R > t`` inside the (raw) organ mask,
   smaller than ``min_size`` voxels dropped, labels renumbered 1..n in scan order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["PlaqueRule", "fit_plaque_rule", "organ_mask"]


def _response(volume: np.ndarray, sigma: float, background: float) -> np.ndarray:
    v = np.asarray(volume, np.float32)
    return (ndi.gaussian_filter(v, sigma) - ndi.gaussian_filter(v, background)).astype(np.float32)


@dataclass(frozen=True)
class PlaqueRule:
    """A fitted plaque segmentation rule (call it on a volume to get labels)."""

    threshold: float
    sigma: float = 1.0
    background: float = 4.0
    min_size: int = 4
    level: float = 0.4
    quantile: float = 0.999
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        """Instance labels (int32) of the plaques of ``volume`` (Z, Y, X)."""
        r = _response(volume, self.sigma, self.background)
        fg = r > self.threshold
        if self.mask is not None:
            fg &= self.mask
        lab, n = ndi.label(fg, structure=np.ones((3, 3, 3), bool))
        if n == 0:
            return lab.astype(np.int32)
        sizes = np.bincount(lab.ravel())
        keep = sizes >= self.min_size
        keep[0] = False
        new = np.zeros(sizes.size, np.int32)
        new[keep] = np.arange(1, int(keep.sum()) + 1)
        return new[lab]

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"threshold rule: DoG (σ {self.sigma:g} − {self.background:g} voxels) > "
            f"{self.threshold:.4g} (= {self.level:g} × the {self.quantile:g} quantile in the "
            f"raw organ), inside the organ, 26-connected, ≥ {self.min_size} voxels; fitted on the "
            "raw volume"
        )

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return {
            k: getattr(self, k)
            for k in ("threshold", "sigma", "background", "min_size", "level", "quantile")
        }


def organ_mask(volume: np.ndarray) -> np.ndarray:
    """The tissue of a reconstructed volume (rule step 2), bool."""
    from skimage.filters import threshold_otsu

    v = np.asarray(volume, np.float32)
    g = ndi.gaussian_filter(np.minimum(v, np.quantile(v, 0.95)), 2.0)
    t = threshold_otsu(g)
    hi = g[g > t]
    m = g > 0.5 * float(np.median(hi)) if hi.size else g > t
    lab, n = ndi.label(m, structure=np.ones((3, 3, 3), bool))  # as the chunked path
    if n > 1:  # the organ is one piece: bright specks around it are not tissue
        m = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return m


def fit_plaque_rule(
    volume: np.ndarray,
    *,
    sigma: float = 1.0,
    background: float = 4.0,
    level: float = 0.4,
    quantile: float = 0.999,
    min_size: int = 4,
    mask: np.ndarray | None = None,
) -> tuple[PlaqueRule, np.ndarray]:
    """Fit the rule on a raw volume.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        The raw reconstruction.
    sigma, background : float
        Plaque and background scales of the DoG, voxels.
    level, quantile : float
        Threshold = ``level`` × the ``quantile`` of the response inside the organ.
    min_size : int
        Smallest object kept, voxels.
    mask : bool ndarray, optional
        The organ (default :func:`organ_mask` of ``volume``).

    Returns
    -------
    rule : PlaqueRule
    organ : bool ndarray
        The organ mask used (the plaque load's reference volume).
    """
    v = np.asarray(volume, np.float32)
    if v.ndim != 3:
        raise ValueError(f"fit_plaque_rule: expected a 3-D volume, got shape {v.shape}")
    organ = organ_mask(v) if mask is None else np.asarray(mask, bool)
    r = _response(v, sigma, background)
    inside = r[organ] if organ.any() else r.ravel()
    t = level * float(np.quantile(inside, quantile))
    return PlaqueRule(t, sigma, background, min_size, level, quantile, organ), organ
