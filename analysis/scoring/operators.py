"""Per-pixel ε of the spatial operators a segmentation uses (the paper's Fig. 4f,g).

For a processed image ``c`` of a raw image ``x`` and an operator ``F`` (Gaussian
smoothing, Laplacian of Gaussian, Gaussian gradient magnitude, difference of
Gaussians, each at scale σ), the per-pixel standard score is::

    ε_F(p) = (F(x)(p) − F(c)(p)) / σ_raw,F(p)

with ``σ_raw,F(p)`` the standard deviation of ``F(replica)(p)`` over the raw-equivalent
replicas. A held-out replica gives ε ≈ N(0, 1): a fraction ``2Φ(−1) ≈ 0.317`` of
pixels beyond |ε| = 1 and a median |ε| of 0.674 (slightly more with σ from few
replicas: a t distribution). Operators are the feature bank's ilastik filters
(:func:`rawsigma.analysis.segmentation.features.feature_maps_for_scoring`), so the
maps are the very inputs of the pixel classifier.

Works on 2D images, 3D volumes (3D operators) and stacks of 2D images
(``stack=True``: projections, operators applied frame by frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "OPERATOR_SIGMAS",
    "OperatorEpsilon",
    "operator_epsilon",
    "operator_maps",
    "operator_table_markdown",
]

#: Scales of the paper's Fig. 4f,g, pixels.
OPERATOR_SIGMAS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: Short labels of the feature bank's operators.
_SHORT = {
    "GaussianSmoothing": "Gaussian",
    "LaplacianOfGaussian": "LoG",
    "GaussianGradientMagnitude": "gradient",
    "DifferenceOfGaussians": "DoG",
}
#: Expected fraction of |ε| > 1 for a raw-equivalent image (normal null).
NULL_FRACTION = 2.0 * 0.5 * math.erfc(1.0 / math.sqrt(2.0))


def operator_maps(
    image: np.ndarray,
    sigmas: Sequence[float] = OPERATOR_SIGMAS,
    *,
    stack: bool = False,
    n_workers: int | None = 1,
) -> tuple[np.ndarray, list[str]]:
    """Operator responses of an image, volume or stack of images.

    Parameters
    ----------
    image : (H, W), (Z, Y, X) or (N, H, W) ndarray
        Any real dtype; computed in float32, the image's own units.
    sigmas : sequence of float
        Scales, pixels (>= 0.7).
    stack : bool
        Treat a 3-D array as a stack of 2-D images (operators per frame).
    n_workers : int, optional
        Threads of the feature bank.

    Returns
    -------
    maps : float32 ndarray, ``image.shape + (4·len(sigmas),)``
    names : list of str
        ``"<Operator>_s<σ>"`` in channel order.
    """
    from rawsigma.analysis.segmentation.features import (
        SCORING_FEATURES,
        feature_bank,
        feature_maps_for_scoring,
    )

    img = np.asarray(image, np.float32)
    if img.ndim not in (2, 3):
        raise ValueError(f"operator_maps: expected a 2-D image or 3-D volume, got {img.shape}")
    if not stack or img.ndim == 2:
        return feature_maps_for_scoring(img, sigmas=list(sigmas), n_workers=n_workers)
    # a stack: infinite spacing along axis 0 makes every filter act within each frame
    # (σ/∞ = 0: no smoothing, zero derivative across frames): the same maps as frame by
    # frame, in one call
    return feature_bank(
        img,
        "ilastik",
        sigmas=list(sigmas),
        features=SCORING_FEATURES,
        spacing=(np.inf, 1.0, 1.0),
        n_workers=n_workers,
    )


class _Welford:
    """Per-pixel running mean and variance (Welford, float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        if self.mean is None:
            self.mean = np.zeros(x.shape, np.float64)
            self.m2 = np.zeros(x.shape, np.float64)
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def sigma(self) -> np.ndarray:
        if self.n < 2 or self.m2 is None:
            raise ValueError("operator ε needs at least two replicas")
        return np.sqrt(self.m2 / (self.n - 1)).astype(np.float32)


@dataclass
class OperatorEpsilon:
    """Operator ε of several processed versions of one raw image.

    Attributes
    ----------
    names : list of str
        Channel names (``"LaplacianOfGaussian_s2"``, …).
    table : dict
        ``{version: {channel: {"operator", "sigma", "frac_abs_gt1", "median_abs",
        "mean_abs", "mean", "n_pixels"}}}``; pixels with σ_raw = 0 are left out.
    maps : dict
        ``{version: (H, W, F) float32}``: ε maps of one 2-D section (the middle frame
        or slice of 3-D input), for figures; NaN where σ_raw = 0.
    n_replicas : int
    domain : str
        Free text ("projections", "reconstruction", "image").
    """

    names: list[str]
    table: dict[str, dict[str, dict]]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    n_replicas: int = 0
    domain: str = "image"

    def to_dict(self) -> dict:
        """JSON-ready (no maps)."""
        return {
            "domain": self.domain,
            "n_replicas": self.n_replicas,
            "null_fraction_abs_gt1": NULL_FRACTION,
            "table": self.table,
        }


def _split(name: str) -> tuple[str, float]:
    op, s = name.rsplit("_s", 1)
    return _SHORT.get(op, op), float(s)


def _summarise(eps: np.ndarray, names: Sequence[str], mask: np.ndarray | None) -> dict:
    out = {}
    for c, name in enumerate(names):
        e = eps[..., c]
        e = e[mask & np.isfinite(e)] if mask is not None else e[np.isfinite(e)]
        a = np.abs(e)
        op, s = _split(name)
        out[name] = {
            "operator": op,
            "sigma": s,
            "frac_abs_gt1": float(np.mean(a > 1)) if a.size else math.nan,
            "median_abs": float(np.median(a)) if a.size else math.nan,
            "mean_abs": float(a.mean()) if a.size else math.nan,
            "mean": float(e.mean()) if e.size else math.nan,
            "n_pixels": int(a.size),
        }
    return out


def operator_epsilon(
    raw: np.ndarray,
    replicas: Iterable[np.ndarray],
    versions: Mapping[str, np.ndarray],
    *,
    sigmas: Sequence[float] = OPERATOR_SIGMAS,
    stack: bool = False,
    mask: np.ndarray | None = None,
    domain: str = "image",
    n_workers: int | None = 1,
) -> OperatorEpsilon:
    """Per-pixel ε of the operators for each processed version against raw.

    Parameters
    ----------
    raw : ndarray
        The raw image / volume / stack (as the segmentation sees it: ADU, or the
        reconstruction).
    replicas : iterable of ndarray
        Raw-equivalent replicas (same shape), streamed: only the running mean and
        variance of their operator maps are kept. At least two.
    versions : mapping of name to ndarray
        Processed versions (same shape), e.g. ``{"replica": held_out, "8bit": …}``.
    sigmas, stack, n_workers
        See :func:`operator_maps`.
    mask : bool ndarray, optional
        Pixels to summarise (default: every pixel with σ_raw > 0).
    domain : str
        Label recorded in the result.

    Returns
    -------
    OperatorEpsilon
    """
    raw_maps, names = operator_maps(raw, sigmas, stack=stack, n_workers=n_workers)
    acc = _Welford()
    for r in replicas:
        if np.shape(r) != np.shape(raw):
            raise ValueError(f"operator_epsilon: replica shape {np.shape(r)} != {np.shape(raw)}")
        acc.add(operator_maps(r, sigmas, stack=stack, n_workers=n_workers)[0])
    sigma, n_rep = acc.sigma(), acc.n
    del acc
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != np.shape(raw):
            raise ValueError(f"operator_epsilon: mask shape {mask.shape} != {np.shape(raw)}")
    table, maps = {}, {}
    mid = np.shape(raw)[0] // 2 if np.ndim(raw) == 3 else None
    for key, img in versions.items():
        if np.shape(img) != np.shape(raw):
            raise ValueError(f"operator_epsilon: {key}: shape {np.shape(img)} != {np.shape(raw)}")
        other = operator_maps(img, sigmas, stack=stack, n_workers=n_workers)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = np.where(sigma > 0, (raw_maps - other) / sigma, np.nan).astype(np.float32)
        del other
        table[key] = _summarise(eps, names, mask)
        maps[key] = eps[mid] if mid is not None else eps
    return OperatorEpsilon(list(names), table, maps, n_replicas=n_rep, domain=domain)


def operator_table_markdown(columns: Mapping[str, tuple[OperatorEpsilon, str]]) -> str:
    """Markdown table: rows operator × σ, one column per ``label: (result, version)``.

    Each cell is ``fraction of pixels with |ε| > 1 / median |ε|`` (a raw-equivalent
    image: 0.32 / 0.67).
    """
    cols = {k: (r, v) for k, (r, v) in columns.items() if v in r.table}
    head = "| operator | σ | " + " | ".join(cols) + " |"
    lines = [head, "|---|---|" + "---|" * len(cols)]
    names = next(iter(cols.values()))[0].names if cols else []
    for name in names:
        op, s = _split(name)
        cells = []
        for r, v in cols.values():
            t = r.table[v].get(name)
            cells.append(f"{t['frac_abs_gt1']:.2f} / {t['median_abs']:.2f}" if t else "")
        lines.append(f"| {op} | {s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
