"""One-pass accumulation kernel of `PixelMoments` (numba, ``nogil``).

Reads each frame value once and updates every per-pixel sum in registers: no
temporaries, no per-block allocation. The sums are those of the vectorised numpy
version it replaces, computed in the same order (exact int64 sums of ``d`` and ``d²``;
float64 sums of ``d³``, ``d⁴`` over each group of ``group`` frames added to the running
sums, as numpy's axis-0 sum of a block did; the flicker cross sum frame by frame), so
results are bit-identical.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

# compiled kernels are cached per machine (`rawsigma.jitcache`)
jitcache.install()


CHUNK = 4096  # pixels whose sums stay in cache while a chunk's frames are folded in


@nb.njit(nogil=True, cache=True)
def frame_sums(x):
    """Exact int64 sum of each frame of ``x`` (k, n)."""
    k, n = x.shape
    out = np.zeros(k, np.int64)
    for j in range(k):
        acc = np.int64(0)
        for p in range(n):
            acc += np.int64(x[j, p])
        out[j] = acc
    return out


@nb.njit(nogil=True, cache=True)
def _core(x, sh, s1, s2, pmax):
    for p in range(x.size):
        v = np.int64(x[p])
        d = v - np.int64(sh[p])
        s1[p] += d
        s2[p] += d * d
        pmax[p] = max(pmax[p], np.int32(v))


@nb.njit(nogil=True, cache=True)
def _min(x, pmin):
    for p in range(x.size):
        pmin[p] = min(pmin[p], np.int32(x[p]))


@nb.njit(nogil=True, cache=True)
def _cross(x, sh, fj, sdf):
    for p in range(x.size):
        sdf[p] += fj * np.float64(np.int32(x[p]) - sh[p])  # |d| <= 2**21: int32


@nb.njit(nogil=True, cache=True)
def _higher(x, sh, t3, t4):
    for p in range(x.size):
        d = np.float64(np.int32(x[p]) - sh[p])  # int32 → float64 vectorises (AVX2)
        f2 = d * d
        t3[p] += d * f2
        t4[p] += f2 * f2


@nb.njit(nogil=True, cache=True)
def accumulate(x, shift, s1, s2, pmax, pmin, fdev, sdf, s3, s4, group, t3, t4):
    """Fold frames ``x`` (k, n) into the flat per-pixel sums (n,).

    ``pmin``, ``sdf``, ``s3``/``s4``: empty arrays when not tracked; ``fdev`` (k,): each
    frame's mean minus the first frame's; ``group``: frames summed before ``s3``/``s4``
    are updated; ``t3``, ``t4``: scratch of `CHUNK` float64. Pixels are processed in
    chunks of `CHUNK`, frame by frame, in loops LLVM vectorises.
    """
    k, n = x.shape
    do_min = pmin.size > 0
    do_f = sdf.size > 0
    do_h = s3.size > 0
    for c0 in range(0, n, CHUNK):
        c1 = min(n, c0 + CHUNK)
        for g0 in range(0, k, group):
            if do_h:
                t3[: c1 - c0] = 0.0
                t4[: c1 - c0] = 0.0
            for j in range(g0, min(k, g0 + group)):
                # one simple loop per sum: each vectorises (flags tested outside)
                xj = x[j, c0:c1]
                sh = shift[c0:c1]
                _core(xj, sh, s1[c0:c1], s2[c0:c1], pmax[c0:c1])
                if do_min:
                    _min(xj, pmin[c0:c1])
                if do_f:
                    _cross(xj, sh, fdev[j], sdf[c0:c1])
                if do_h:
                    _higher(xj, sh, t3, t4)
            if do_h:
                for p in range(c0, c1):
                    s3[p] += t3[p - c0]
                    s4[p] += t4[p - c0]
