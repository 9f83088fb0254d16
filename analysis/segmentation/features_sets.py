"""Filter sets of the feature bank: the ilastik and the Weka scale groups.

Each ``_*_group(image, sigma, cfg, spacing)`` computes every channel of one scale
on one (halo-padded) block and returns ``{channel name: float32 array}``; see
:mod:`rawsigma.analysis.segmentation.features` for the definitions and the block machinery.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
from rawsigma.analysis.segmentation.features_math import d1, d2, eig_sym2, eig_sym3, gaussian
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from rawsigma.analysis.segmentation.features import FeatureConfig

_ILASTIK_MIN_SCALE = 0.7  # ilastik's minimum for every feature except smoothing
_DOG_RATIO = 0.66
_WEKA_BLUR = 0.4

_WEKA_HESSIAN_2D = (
    "Hessian",
    "Hessian_Trace",
    "Hessian_Determinant",
    "Hessian_Eigenvalue_1",
    "Hessian_Eigenvalue_2",
    "Hessian_Orientation",
    "Hessian_Square_Eigenvalue_Difference",
    "Hessian_Normalized_Eigenvalue_Difference",
)
_WEKA_HESSIAN_3D = (
    "Hessian",
    "Hessian_Trace",
    "Hessian_Determinant",
    "Hessian_Eigenvalue_1",
    "Hessian_Eigenvalue_2",
    "Hessian_Eigenvalue_3",
)


def _fmt(s: float) -> str:
    return f"{s:g}"


def _ilastik_group(
    img: np.ndarray, sigma: float, cfg: FeatureConfig, spacing: tuple[float, ...]
) -> dict[str, np.ndarray]:
    nd = img.ndim
    feats = cfg.features or ()
    s = _fmt(sigma)
    sig_ax = tuple(sigma / h for h in spacing)
    out: dict[str, np.ndarray] = {}
    g = gaussian(img, sig_ax, cfg.truncate, "reflect")
    if "GaussianSmoothing" in feats:
        out[f"GaussianSmoothing_s{s}"] = g
    if sigma < _ILASTIK_MIN_SCALE:
        return out
    if "DifferenceOfGaussians" in feats:
        g2 = gaussian(img, tuple(_DOG_RATIO * x for x in sig_ax), cfg.truncate, "reflect")
        np.subtract(g, g2, out=g2)
        out[f"DifferenceOfGaussians_s{s}"] = g2
    need_grad = {"GaussianGradientMagnitude", "StructureTensorEigenvalues"} & set(feats)
    need_hess = {"LaplacianOfGaussian", "HessianOfGaussianEigenvalues"} & set(feats)
    grads: list[np.ndarray] = []
    if need_grad:
        if cfg.derivatives == "fd":
            grads = [d1(g, ax, spacing[ax]) for ax in range(nd)]
        else:
            grads = [
                gaussian(img, sig_ax, cfg.truncate, "reflect", _unit(nd, ax, 1), spacing)
                for ax in range(nd)
            ]
    if "GaussianGradientMagnitude" in feats:
        m = np.square(grads[0])
        for gr in grads[1:]:
            m += np.square(gr)
        np.sqrt(m, out=m)
        out[f"GaussianGradientMagnitude_s{s}"] = m
    if "StructureTensorEigenvalues" in feats:
        outer = tuple(x / 2 for x in sig_ax)
        comps = [
            gaussian(grads[i] * grads[j], outer, cfg.truncate, "reflect")
            for i, j in itertools.combinations_with_replacement(range(nd), 2)
        ]
        ev = eig_sym2(*comps) if nd == 2 else eig_sym3(*comps)
        for i, e in enumerate(ev):
            out[f"StructureTensorEigenvalues_s{s}_e{i}"] = e
    del grads
    if need_hess:
        hess = {}
        for i, j in itertools.combinations_with_replacement(range(nd), 2):
            if cfg.derivatives == "fd":
                hess[i, j] = (
                    d2(g, i, spacing[i]) if i == j else d1(d1(g, i, spacing[i]), j, spacing[j])
                )
            else:
                order = tuple((1 if ax == i else 0) + (1 if ax == j else 0) for ax in range(nd))
                hess[i, j] = gaussian(img, sig_ax, cfg.truncate, "reflect", order, spacing)
        if "LaplacianOfGaussian" in feats:
            lap = hess[0, 0].copy()
            for ax in range(1, nd):
                lap += hess[ax, ax]
            out[f"LaplacianOfGaussian_s{s}"] = lap
        if "HessianOfGaussianEigenvalues" in feats:
            comps = [hess[k] for k in itertools.combinations_with_replacement(range(nd), 2)]
            ev = eig_sym2(*comps) if nd == 2 else eig_sym3(*comps)
            for i, e in enumerate(ev):
                out[f"HessianOfGaussianEigenvalues_s{s}_e{i}"] = e
    return out


def _unit(nd: int, ax: int, k: int) -> tuple[int, ...]:
    return tuple(k if a == ax else 0 for a in range(nd))


def _sobel(a: np.ndarray, axis: int) -> np.ndarray:
    return ndi.sobel(a, axis=axis, mode="nearest", output=np.float32)


def _weka_group(
    img: np.ndarray, sigma: float, cfg: FeatureConfig, spacing: tuple[float, ...]
) -> dict[str, np.ndarray]:
    nd = img.ndim
    s = _fmt(sigma)
    out: dict[str, np.ndarray] = {}
    if sigma == 0:
        b = img
        out["original"] = img
    else:
        b = gaussian(img, tuple(_WEKA_BLUR * sigma / h for h in spacing), cfg.truncate, "nearest")
        out[f"Gaussian_blur_{s}"] = b
        for a in cfg.sigmas or ():
            if a < sigma:
                ga = gaussian(
                    img, tuple(_WEKA_BLUR * a / h for h in spacing), cfg.truncate, "nearest"
                )
                np.subtract(ga, b, out=ga)
                out[f"Difference_of_gaussians_{_fmt(a)}_{s}"] = ga
    sob = [_sobel(b, ax) for ax in range(nd)]
    mag = np.square(sob[0])
    for x in sob[1:]:
        mag += np.square(x)
    out[f"Sobel_filter_{s}"] = np.sqrt(mag, out=mag)
    h = {}
    for i, j in itertools.combinations_with_replacement(range(nd), 2):
        h[i, j] = _sobel(sob[i], j)
    del sob
    if nd == 2:
        a, bb, d = h[0, 0], h[0, 1], h[1, 1]
        tr = a + d
        det = a * d - bb * bb
        amd = a - d
        q = amd * amd + 4 * bb * bb
        root = np.sqrt(q / 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ori = 0.5 * np.arccos(np.clip(amd / np.sqrt(q), -1, 1))
        ori = np.where(np.isnan(ori), 0, ori)
        ori = np.where(bb < 0, -ori, ori).astype(np.float32)
        vals = (
            np.sqrt(a * a + bb * bb + d * d),
            tr,
            det,
            tr / 2 + root,
            tr / 2 - root,
            ori,
            tr * tr * q,
            q,
        )
        for name, v in zip(_WEKA_HESSIAN_2D, vals, strict=True):
            out[f"{name}_{s}"] = v.astype(np.float32, copy=False)
    else:
        comps = [h[k] for k in itertools.combinations_with_replacement(range(3), 2)]
        xx, xy, xz, yy, yz, zz = comps
        module = np.sqrt(sum(c * c for c in comps) + xy * xy + xz * xz + yz * yz)
        tr = xx + yy + zz
        det = xx * (yy * zz - yz * yz) - xy * (xy * zz - yz * xz) + xz * (xy * yz - yy * xz)
        ev = eig_sym3(*comps)
        for name, v in zip(_WEKA_HESSIAN_3D, (module, tr, det, *ev), strict=True):
            out[f"{name}_{s}"] = v.astype(np.float32, copy=False)
    return out
