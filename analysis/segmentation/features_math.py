"""Numerical kernels of the feature bank: Gaussians, finite differences, eigenvalues.

All functions take and return float32 arrays and are safe to call from several
threads (scipy.ndimage and numpy release the GIL).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["gaussian_radius", "gaussian_kernel", "gaussian", "d1", "d2", "eig_sym2", "eig_sym3"]


def gaussian_radius(sigma: float, truncate: float) -> int:
    """Kernel radius scipy.ndimage uses for ``sigma`` and ``truncate`` (pixels)."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel(sigma: float, order: int, truncate: float) -> np.ndarray:
    """1D Gaussian (derivative) correlation kernel with exact discrete moments.

    Order 0 sums to 1; order 1 has zero sum and unit first moment (so it returns
    the derivative of a ramp exactly); order 2 has zero sum and unit second moment/2
    (no response to a constant even when truncated, unlike scipy's order-2 kernel).
    """
    r = max(gaussian_radius(sigma, truncate), order)
    x = np.arange(-r, r + 1, dtype=np.float64)
    phi = np.exp(-0.5 * (x / sigma) ** 2)
    if order == 0:
        return phi / phi.sum()
    if order == 1:
        k = x * phi
        return k / np.dot(k, x)
    if order == 2:
        k = (x * x / sigma**2 - 1.0) * phi
        k -= phi * (k.sum() / phi.sum())
        return k / np.dot(k, x * x / 2.0)
    raise ValueError(f"derivative order must be 0, 1 or 2, got {order}")


def gaussian(
    image: np.ndarray,
    sigma: tuple[float, ...],
    truncate: float,
    mode: str,
    order: tuple[int, ...] | None = None,
    spacing: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Separable Gaussian (derivative) filter in float32.

    Without ``order`` this is ``scipy.ndimage.gaussian_filter``.  With ``order`` (per
    axis) the kernels of :func:`gaussian_kernel` are used and derivatives are divided
    by ``spacing**order`` so they are per physical unit.
    """
    if order is None or not any(order):
        return ndi.gaussian_filter(image, sigma, truncate=truncate, mode=mode, output=np.float32)
    out = np.asarray(image, np.float32)
    for ax, (s, o) in enumerate(zip(sigma, order, strict=True)):
        k = gaussian_kernel(s, o, truncate)
        out = ndi.correlate1d(out, k, axis=ax, mode=mode, output=np.float32)
    if spacing is not None:
        scale = float(np.prod([h**o for h, o in zip(spacing, order, strict=True)]))
        if scale != 1.0:
            out /= np.float32(scale)
    return out


def _sl(nd: int, axis: int, s: slice) -> tuple[slice, ...]:
    return tuple(s if i == axis else slice(None) for i in range(nd))


def d1(a: np.ndarray, axis: int, h: float = 1.0) -> np.ndarray:
    """Central first difference along ``axis`` (reflecting boundary), per unit ``h``."""
    nd = a.ndim
    out = np.empty_like(a, dtype=np.float32)
    n = a.shape[axis]
    if n < 2:
        out[...] = 0
        return out
    c = np.float32(0.5 / h)
    mid = out[_sl(nd, axis, slice(1, -1))]
    np.subtract(a[_sl(nd, axis, slice(2, None))], a[_sl(nd, axis, slice(None, -2))], out=mid)
    mid *= c
    first = out[_sl(nd, axis, slice(0, 1))]
    np.subtract(a[_sl(nd, axis, slice(1, 2))], a[_sl(nd, axis, slice(0, 1))], out=first)
    first *= c
    last = out[_sl(nd, axis, slice(-1, None))]
    np.subtract(a[_sl(nd, axis, slice(-1, None))], a[_sl(nd, axis, slice(-2, -1))], out=last)
    last *= c
    return out


def d2(a: np.ndarray, axis: int, h: float = 1.0) -> np.ndarray:
    """Second difference ``a[i+1] - 2 a[i] + a[i-1]`` along ``axis`` (reflecting), / h²."""
    nd = a.ndim
    out = np.empty_like(a, dtype=np.float32)
    n = a.shape[axis]
    if n < 2:
        out[...] = 0
        return out
    mid = out[_sl(nd, axis, slice(1, -1))]
    centre = a[_sl(nd, axis, slice(1, -1))]
    np.add(a[_sl(nd, axis, slice(2, None))], a[_sl(nd, axis, slice(None, -2))], out=mid)
    mid -= centre
    mid -= centre
    np.subtract(
        a[_sl(nd, axis, slice(1, 2))],
        a[_sl(nd, axis, slice(0, 1))],
        out=out[_sl(nd, axis, slice(0, 1))],
    )
    np.subtract(
        a[_sl(nd, axis, slice(-2, -1))],
        a[_sl(nd, axis, slice(-1, None))],
        out=out[_sl(nd, axis, slice(-1, None))],
    )
    if h != 1.0:
        out *= np.float32(1.0 / (h * h))
    return out


def eig_sym2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) of [[a, b], [b, c]], elementwise, float32."""
    m = a + c
    m *= np.float32(0.5)
    d = a - c
    d *= np.float32(0.5)
    np.square(d, out=d)
    d += np.square(b)
    np.sqrt(d, out=d)
    e1 = m - d
    m += d
    return m, e1


def eig_sym3(
    xx: np.ndarray, xy: np.ndarray, xz: np.ndarray, yy: np.ndarray, yz: np.ndarray, zz: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues (descending) of symmetric 3x3 matrices, elementwise (Smith 1961).

    Arguments are the upper-triangle components in ``combinations_with_replacement``
    order (00, 01, 02, 11, 12, 22).  Computed in float64 in chunks of 2**18 elements
    (bounded temporaries), returned as float32.
    """
    shape = np.shape(xx)
    comps = [np.ravel(np.asarray(v)) for v in (xx, xy, xz, yy, yz, zz)]
    n = comps[0].size
    outs = [np.empty(n, np.float32) for _ in range(3)]
    step = 1 << 18
    for i in range(0, n, step):
        sl = slice(i, min(i + step, n))
        a, b, c, d, e, f = (v[sl].astype(np.float64) for v in comps)
        q = (a + d + f) / 3.0
        p1 = b * b + c * c + e * e
        aq, dq, fq = a - q, d - q, f - q
        p = np.sqrt((aq * aq + dq * dq + fq * fq + 2.0 * p1) / 6.0)
        safe = np.where(p > 0, p, 1.0)
        # det(B) / 2 with B = (A - qI) / p
        det = aq * (dq * fq - e * e) - b * (b * fq - e * c) + c * (b * e - dq * c)
        phi = np.arccos(np.clip(det / (2.0 * safe**3), -1.0, 1.0)) / 3.0
        e1 = q + 2.0 * p * np.cos(phi)
        e3 = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
        outs[0][sl] = e1
        outs[1][sl] = 3.0 * q - e1 - e3
        outs[2][sl] = e3
    return tuple(o.reshape(shape) for o in outs)  # type: ignore[return-value]
