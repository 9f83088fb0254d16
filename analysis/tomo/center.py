"""Centre of rotation: from 0°/180° projection pairs, checked by a sharpness search.

A feature at distance ``t`` from the axis ``c`` appears at detector pixel ``c + t`` at
angle θ and at ``c - t`` at θ + 180°, i.e. at ``n - 1 - c + t`` in the mirrored
projection: the two differ by a shift ``D = 2c - (n - 1)``. `find_center` measures
``D`` by cross-correlation of the profiles' derivatives after a 5-px median along
the detector (defective pixels, stripes, would correlate with their own mirror image),
summed over rows and over up to ``max_pairs`` pairs; sub-pixel peak of the
Fourier-interpolated correlation. `sharpest_center` reconstructs a few slices over a range
of centres and keeps the one of least histogram entropy (the criterion of Donath et
al., J. Opt. Soc. Am. A 23, 2006, also tomopy's): a wrong centre smears every edge
into arcs and spreads the grey levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft
from rawsigma.errors import ImageMismatchError

from .backprojection import as_projection_stack, check_angles, fbp


def opposite_pairs(angles_deg: Any, tol_deg: float | None = None) -> list[tuple[int, int]]:
    """Index pairs (i, j) whose angles differ by 180° (mod 360) within ``tol_deg``.

    Default tolerance: a tenth of the median angular step (or 0.01° for one angle).
    """
    a = np.mod(np.asarray(angles_deg, dtype=np.float64), 360.0)
    if tol_deg is None:
        steps = np.diff(np.sort(a))
        steps = steps[steps > 0]
        tol_deg = 0.1 * float(np.median(steps)) if steps.size else 0.01
    pairs = []
    for i, ai in enumerate(a):
        d = np.abs(np.mod(a - ai, 360.0) - 180.0)  # how far from opposite
        j = int(np.argmin(d))
        if d[j] <= tol_deg and i < j:
            pairs.append((i, j))
    return pairs


def _refine_peak(cross: np.ndarray, size: int, k: float) -> float:
    """Maximum of the band-limited correlation ``c(s) = Re Σ_f X(f) e^{2πi f s}`` (the
    cross-spectrum ``cross`` of rfft layout, FFT length ``size``) within ``k ± 1``."""
    from scipy.optimize import minimize_scalar

    f = np.arange(cross.size) / size
    w = np.where((np.arange(cross.size) == 0) | (2 * np.arange(cross.size) == size), 1.0, 2.0)

    def neg(s: float) -> float:
        return -float(np.sum(w * np.real(cross * np.exp(2j * np.pi * f * s))))

    res = minimize_scalar(neg, bounds=(k - 1.0, k + 1.0), method="bounded",
                          options={"xatol": 1e-4})  # fmt: skip
    return float(res.x)


def pair_cross(p0: np.ndarray, p180: np.ndarray, size: int) -> np.ndarray:
    """Cross-spectrum (rfft of length ``size``, rows summed) of the derivatives of ``p0``
    and of the mirrored ``p180`` (k, n), each median-filtered over 5 px first: a
    constant background drops out, without the bias that removing the mean gives."""
    from scipy.ndimage import median_filter

    def prep(p: np.ndarray) -> np.ndarray:  # 1-2 px defects (stripes) out, then d/dx
        return np.diff(median_filter(np.atleast_2d(p), size=(1, 5), mode="nearest"), axis=1)

    a = prep(np.asarray(p0, np.float64))
    b = prep(np.asarray(p180, np.float64)[..., ::-1])
    return (scipy.fft.rfft(a, size, axis=1) * np.conj(scipy.fft.rfft(b, size, axis=1))).sum(0)


def cross_shift(cross: np.ndarray, size: int) -> float:
    """Sub-pixel shift of the correlation peak: integer maximum, then `_refine_peak`."""
    corr = scipy.fft.irfft(cross, size)
    k = int(np.argmax(corr))
    k = k - size if k > size // 2 else k
    return _refine_peak(cross, size, k)


def pair_shift(p0: np.ndarray, p180: np.ndarray) -> float:
    """Shift ``D`` with ``p0(x) ≈ mirror(p180)(x - D)``; rows (k, n) summed, sub-pixel."""
    size = scipy.fft.next_fast_len(2 * np.shape(p0)[-1])
    return cross_shift(pair_cross(p0, p180, size), size)


def find_center(
    projections: Any,
    angles_deg: Any,
    *,
    rows: Any = None,
    max_pairs: int = 32,
    tol_deg: float | None = None,
) -> float:
    """Rotation axis (detector pixels) from projections 180° apart.

    Parameters
    ----------
    projections : array-like
        (n_angles, n_rows, n_det) line integrals (or a sinogram (n_angles, n_det)).
    angles_deg : array-like
        Angles in degrees.
    rows : slice or sequence of int, optional
        Detector rows to use (default all).
    max_pairs : int
        At most this many 180° pairs, evenly chosen, are correlated.
    tol_deg : float, optional
        How far from 180° a pair may be (default: a tenth of the angular step).

    Raises
    ------
    ImageMismatchError
        No two projections 180° apart (use `sharpest_center` then).
    """
    proj = as_projection_stack(projections)
    n_ang, n_rows, n_det = proj.shape
    ang = check_angles(angles_deg, n_ang)
    pairs = opposite_pairs(ang, tol_deg)
    if not pairs:
        raise ImageMismatchError(
            "no two projections 180° apart: cannot find the centre by correlation"
        )
    pick = np.linspace(0, len(pairs) - 1, min(max_pairs, len(pairs))).round().astype(int)
    sel = slice(None) if rows is None else rows
    size = scipy.fft.next_fast_len(2 * n_det)
    cross = np.zeros(size // 2 + 1, complex)
    for i, j in (pairs[k] for k in np.unique(pick)):
        p0 = np.asarray(proj[i], np.float64)[sel]
        p1 = np.asarray(proj[j], np.float64)[sel]
        cross += pair_cross(p0, p1, size)
    return float((cross_shift(cross, size) + n_det - 1) / 2.0)


def entropy_sharpness(img: np.ndarray, bins: int = 256) -> float:
    """Sharpness of a slice: minus the entropy of its grey-level histogram (inside the
    reconstruction circle, fixed range from the 0.5 and 99.5 percentiles of ``img``)."""
    v = img[np.isfinite(img) & (img != 0)]
    if v.size == 0:
        return -np.inf
    lo, hi = np.percentile(v, [0.5, 99.5])
    h, _ = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    p = h[h > 0] / h.sum()
    return float(np.sum(p * np.log(p)))


def shifted_sinograms(sino: np.ndarray, shifts: Any) -> np.ndarray:
    """Copies of a sinogram (n_angles, n_det) moved by whole pixels along the detector:
    ``out[k][:, x] = sino[:, x + shifts[k]]``, zero where that falls off the detector."""
    n = sino.shape[-1]
    out = np.zeros((len(shifts),) + sino.shape, np.float32)
    for k, d in enumerate(int(d) for d in shifts):
        lo, hi = max(0, -d), min(n, n - d)
        if hi > lo:
            out[k, :, lo:hi] = sino[:, lo + d : hi + d]
    return out


def center_sharpness(
    projections: Any,
    angles_deg: Any,
    centers: Any,
    *,
    rows: Any = None,
    filter: str = "ramp",
    threads: int | None = None,
) -> np.ndarray:
    """Sharpness (`entropy_sharpness`, summed over ``rows``) of the slices at each centre.

    ``rows``: detector rows to reconstruct (default: 3 rows around the middle, or all
    when there are fewer). Candidates that share a fractional part are back-projected
    together, as one group of slices: the sinogram moved by each one's whole-pixel
    offset (`shifted_sinograms`; what moves off the detector, usually background, is
    dropped), the fractional part given to `fbp` as the centre.
    """
    proj = as_projection_stack(projections)
    n_rows, n_det = proj.shape[1], proj.shape[2]
    if rows is None:
        rows = sorted({n_rows // 4, n_rows // 2, (3 * n_rows) // 4})
    centers = np.asarray(centers, np.float64)
    whole = np.floor(centers)
    frac = np.round(centers - whole, 6)
    ref = n_det // 2
    score = np.zeros(centers.size)
    sinos = [np.asarray(proj[:, r, :], np.float32) for r in rows]
    for f in np.unique(frac):
        idx = np.flatnonzero(frac == f)
        for sino in sinos:
            stack = shifted_sinograms(sino, whole[idx] - ref)  # (n_centres, n_angles, n_det)
            vol = fbp(stack.transpose(1, 0, 2), angles_deg, center=ref + f, filter=filter,
                      threads=threads)  # fmt: skip
            score[idx] += [entropy_sharpness(s) for s in vol]
    return score


def sharpest_center(
    projections: Any,
    angles_deg: Any,
    *,
    around: float | None = None,
    half_width: float = 8.0,
    step: float = 0.25,
    rows: Any = None,
    threads: int | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Centre giving the sharpest slices, searched over ``around ± half_width`` by ``step``.

    Returns ``(best, centers, sharpness)``; ``around`` defaults to `find_center` when
    there are 180° pairs, else to the middle of the detector (then widen ``half_width``).
    """
    proj = as_projection_stack(projections)
    n_det = proj.shape[2]
    if around is None:
        try:
            around = find_center(proj, angles_deg)
        except ImageMismatchError:
            around = (n_det - 1) / 2.0
    centers = np.arange(around - half_width, around + half_width + step / 2, step)
    score = center_sharpness(proj, angles_deg, centers, rows=rows, threads=threads)
    return float(centers[int(np.argmax(score))]), centers, score


def angular_step(angles_deg: Any) -> float:
    """Median step between sorted distinct angles (degrees, modulo 360)."""
    a = np.unique(np.mod(np.asarray(angles_deg, np.float64), 360.0))
    return float(np.median(np.diff(a))) if a.size > 1 else 360.0


#: farthest from 180° that an approximate pair may be (one step of a 0–179° scan)
APPROX_PAIR_DEG = 2.0


def auto_center(
    projections: Any,
    angles_deg: Any,
    *,
    rows: Any = None,
    refine: float = 2.0,
    step: float = 0.25,
    threads: int | None = None,
) -> dict[str, Any]:
    """Centre of rotation for ``--center auto``: correlation, then a local sharpness search.

    1. `find_center` on the 180° pairs (within a tenth of the angular step; failing
       that, the nearest pairs within one step and at most `APPROX_PAIR_DEG`, e.g. 0°
       and 179° of a 0–179° scan:
       ``pair_mismatch_deg`` says how far from 180° they are).
    2. `sharpest_center` within ``± refine`` px of it, by ``step``. Without any pair, a
       search over the middle half of the detector by 1 px first.

    Returns a dict: ``center`` (the result), ``correlation`` (step 1, or None),
    ``pair_mismatch_deg``, ``sharpest`` (step 2) and ``searched`` (first, last, step).
    """
    proj = as_projection_stack(projections)
    n_det = proj.shape[2]
    ang = check_angles(angles_deg, proj.shape[0])
    d = angular_step(ang)
    corr, mismatch = None, None
    for tol in (0.1 * d, min(1.01 * d, APPROX_PAIR_DEG)):
        pairs = opposite_pairs(ang, tol)
        if pairs:
            corr = find_center(proj, ang, rows=rows, tol_deg=tol)
            diffs = [abs(abs(np.mod(ang[j] - ang[i], 360.0)) - 180.0) for i, j in pairs]
            mismatch = float(np.median(diffs))
            break
    around = corr
    if around is None:
        coarse = np.arange(n_det // 4, n_det - n_det // 4 + 1, 1.0)
        around = float(coarse[np.argmax(center_sharpness(proj, ang, coarse, threads=threads))])
    best, centers, _ = sharpest_center(
        proj, ang, around=around, half_width=refine, step=step, threads=threads
    )
    return {
        "center": best,
        "correlation": corr,
        "pair_mismatch_deg": mismatch,
        "sharpest": best,
        "searched": [float(centers[0]), float(centers[-1]), step],
    }
