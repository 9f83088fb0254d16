"""Back-projection kernel of `rawsigma.analysis.tomo.fbp` (numba, ``nogil``).

One call back-projects a block of output rows of one slice; callers run several calls
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
def backproject_rows(q, cos, sin, center, r0, r1, circle, scale, out):
    """Back-project filtered projections ``q`` (n_angles, n_det) into rows r0:r1 of ``out``.

    ``out`` (n, n) float32 is overwritten on those rows (not accumulated).
    """
    n_ang, n_det = q.shape
    n = out.shape[1]
    half = n // 2
    rad2 = float(half * half)
    last = n_det - 1
    row = np.zeros(n, np.float64)
    for r in range(r0, r1):
        y = float(r - half)
        for c in range(n):
            row[c] = 0.0
        for a in range(n_ang):
            ca = cos[a]
            t0 = center - y * sin[a] - half * ca
            for c in range(n):
                t = t0 + c * ca
                if t >= 0.0 and t < last:
                    i = int(t)
                    w = t - i
                    row[c] += q[a, i] + w * (q[a, i + 1] - q[a, i])
                elif -EDGE < t < 0.0:  # on the first pixel up to rounding
                    row[c] += q[a, 0]
                elif last <= t < last + EDGE:
                    row[c] += q[a, last]
        for c in range(n):
            x = float(c - half)
            if circle and x * x + y * y > rad2:
                out[r, c] = 0.0
            else:
                out[r, c] = row[c] * scale
    return out


def pending_compile() -> bool:
    """True if the first call will compile the kernel (not cached for this CPU)."""
    return jitcache.pending([backproject_rows]) != []


def _warm() -> None:  # pragma: no cover - convenience for benchmarks
    q = np.zeros((2, 4), np.float32)
    a = np.zeros(2)
    backproject_rows(q, a, a, 2.0, 0, 4, True, 1.0, np.zeros((4, 4), np.float32))
