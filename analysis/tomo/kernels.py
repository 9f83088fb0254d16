"""Back-projection kernel of `rawsigma.analysis.tomo.fbp` (numba, ``nogil``).

One call back-projects a band of output rows of a group of slices; callers run several calls
at once in a thread pool (the kernel releases the GIL). The geometry is that of
``skimage.transform.iradon``: output pixel (r, c) of an ``n × n`` grid centred on
``n // 2`` sees detector coordinate ``t = (c - n//2) cos θ - (r - n//2) sin θ + center``,
linearly interpolated, zero outside the detector.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

# compiled kernels are cached per machine (`rawsigma.jitcache`)
jitcache.install()

EDGE = 1e-6  # detector pixels: a coordinate this close to the first/last is on it


@nb.njit(nogil=True, cache=True, fastmath=True)
def backproject_block(q, cos, sin, center, r0, r1, circle, scale, out):
    """Back-project filtered projections into rows r0:r1 of a group of slices.

    ``q`` (n_angles, n_det, n_slices) float32, the slices innermost so that one
    interpolation weight serves them all (SIMD over slices); ``out`` (n_slices, n, n)
    float32 is overwritten on those rows. With ``circle`` only the pixels of the
    inscribed circle are computed, the others set to 0.
    """
    n_ang, n_det, ns = q.shape
    n = out.shape[2]
    half = n // 2
    last = n_det - 1
    acc = np.empty((n, ns), np.float32)
    for r in range(r0, r1):
        y = float(r - half)
        c0, c1 = 0, n
        if circle:
            h2 = half * half - y * y
            h = int(np.sqrt(h2)) if h2 >= 0 else -1
            c0, c1 = half - h, min(half + h + 1, n)
        acc[:] = 0.0
        for a in range(n_ang):
            ca = cos[a]
            t0 = center - y * sin[a] - half * ca
            for c in range(c0, c1):
                t = t0 + c * ca
                if t >= 0.0 and t < last:
                    i = int(t)
                    w = np.float32(t - i)
                    w0 = np.float32(1.0) - w
                    for s in range(ns):
                        acc[c, s] += w0 * q[a, i, s] + w * q[a, i + 1, s]
                elif -EDGE < t < 0.0 or last <= t < last + EDGE:  # on the end pixel
                    j = 0 if t < 0.0 else last
                    for s in range(ns):
                        acc[c, s] += q[a, j, s]
        for s in range(ns):
            for c in range(n):
                out[s, r, c] = acc[c, s] * scale if c0 <= c < c1 else 0.0
    return out


def pending_compile() -> bool:
    """True if the first call will compile the kernel (not cached for this CPU)."""
    return jitcache.pending([backproject_block]) != []


def _warm() -> None:  # pragma: no cover - convenience for benchmarks
    q = np.zeros((2, 4, 1), np.float32)
    a = np.zeros(2)
    backproject_block(q, a, a, 2.0, 0, 4, True, 1.0, np.zeros((1, 4, 4), np.float32))
