"""One-pass accumulation kernel of `PixelMoments` (numba, ``nogil``).

Reads each frame value once and updates every per-pixel sum in registers: no
temporaries, no per-block allocation. Pixels are taken in chunks of `CHUNK` whose sums
stay in the L1/L2 cache while all the frames of a call are folded in, by one fused loop
per frame that LLVM vectorises (one specialised loop per set of sums: no flag tested
inside). The sums are those of the vectorised numpy version it replaces, computed in the
same order (exact int64 sums of ``d`` and ``d²``; float64 sums of ``d³``, ``d⁴`` over
each group of ``group`` frames added to the running sums, as numpy's axis-0 sum of a
block did; the flicker cross sum frame by frame), so results are bit-identical.

The per-pixel arrays should not all start at the same offset modulo 4 KiB (see
`PixelMoments`' allocation): the fused loop touches them at the same index, and
aliased streams evict each other from the cache and stall the store buffer.
"""

from __future__ import annotations

import time
from typing import Any

import numba as nb
import numpy as np
from rawsigma import jitcache

# compiled kernels are cached per machine (`rawsigma.jitcache`)
jitcache.install()


CHUNK = 1024  # pixels whose sums stay in cache while a call's frames are folded in


@nb.njit(nogil=True, cache=True)
def frame_sums(x):
    """Exact int64 sum of each frame of ``x`` (k, n)."""
    k, n = x.shape
    out = np.empty(k, np.int64)  # np.empty: np.zeros is more code to compile
    for j in range(k):
        acc = np.int64(0)
        for p in range(n):
            acc += np.int64(x[j, p])
        out[j] = acc
    return out


@nb.njit(**jitcache.HELPER)
def _level(x, sh, s1, s2, pmax, fj, sdf):
    """Sums of d, d², the maximum and the flicker cross sum, one frame."""
    for p in range(x.size):
        v = np.int32(x[p])
        d = np.int32(v - sh[p])  # |d| <= 2**21; int32 keeps the loop in 32-bit lanes
        s1[p] += d
        s2[p] += np.int64(d) * np.int64(d)
        pmax[p] = max(pmax[p], v)
        sdf[p] += fj * np.float64(d)


@nb.njit(**jitcache.HELPER)
def _level_nof(x, sh, s1, s2, pmax):
    """`_level` without the flicker cross sum."""
    for p in range(x.size):
        v = np.int32(x[p])
        d = np.int32(v - sh[p])
        s1[p] += d
        s2[p] += np.int64(d) * np.int64(d)
        pmax[p] = max(pmax[p], v)


@nb.njit(**jitcache.HELPER)
def _dark(x, sh, s1, s2, pmax, fj, sdf, t3, t4):
    """`_level` plus the d³, d⁴ sums (into ``t3``, ``t4``)."""
    for p in range(x.size):
        v = np.int32(x[p])
        d = np.int32(v - sh[p])
        s1[p] += d
        s2[p] += np.int64(d) * np.int64(d)
        pmax[p] = max(pmax[p], v)
        df = np.float64(d)
        sdf[p] += fj * df
        f2 = df * df
        t3[p] += df * f2
        t4[p] += f2 * f2


@nb.njit(**jitcache.HELPER)
def _dark_nof(x, sh, s1, s2, pmax, t3, t4):
    """`_dark` without the flicker cross sum."""
    for p in range(x.size):
        v = np.int32(x[p])
        d = np.int32(v - sh[p])
        s1[p] += d
        s2[p] += np.int64(d) * np.int64(d)
        pmax[p] = max(pmax[p], v)
        df = np.float64(d)
        f2 = df * df
        t3[p] += df * f2
        t4[p] += f2 * f2


@nb.njit(**jitcache.HELPER)
def _min(x, pmin):
    for p in range(x.size):
        pmin[p] = min(pmin[p], np.int32(x[p]))


@nb.njit(nogil=True, cache=True)
def accumulate(x, shift, s1, s2, pmax, pmin, fdev, sdf, s3, s4, group, t3, t4):
    """Fold frames ``x`` (k, n) into the flat per-pixel sums (n,).

    ``pmin``, ``sdf``, ``s3``/``s4``: empty arrays when not tracked; ``fdev`` (k,): each
    frame's mean minus the first frame's; ``group``: frames summed before ``s3``/``s4``
    are updated (with 1 the frame's terms go straight into them: ``0 + t`` is ``t``);
    ``t3``, ``t4``: scratch of at least `CHUNK` float64 (used when ``group > 1``).
    """
    k, n = x.shape
    do_min = pmin.size > 0
    do_f = sdf.size > 0
    do_h = s3.size > 0
    for c0 in range(0, n, CHUNK):
        c1 = min(n, c0 + CHUNK)
        m = c1 - c0
        sh = shift[c0:c1]
        a1, a2, amax = s1[c0:c1], s2[c0:c1], pmax[c0:c1]
        af = sdf[c0:c1] if do_f else sdf
        h3, h4 = (s3[c0:c1], s4[c0:c1]) if do_h else (s3, s4)
        for g0 in range(0, k, group):
            if do_h and group > 1:
                h3, h4 = t3[:m], t4[:m]
                for p in range(m):
                    h3[p] = 0.0
                    h4[p] = 0.0
            for j in range(g0, min(k, g0 + group)):
                xj = x[j, c0:c1]
                if do_h and do_f:  # (no `_frame` helper: one function less to compile)
                    _dark(xj, sh, a1, a2, amax, fdev[j], af, h3, h4)
                elif do_h:
                    _dark_nof(xj, sh, a1, a2, amax, h3, h4)
                elif do_f:
                    _level(xj, sh, a1, a2, amax, fdev[j], af)
                else:
                    _level_nof(xj, sh, a1, a2, amax)
                if do_min:
                    _min(xj, pmin[c0:c1])
            if do_h and group > 1:
                for p in range(m):
                    s3[c0 + p] += h3[p]
                    s4[c0 + p] += h4[p]


STAGE = "compiling accumulation kernels (first run only)…"


def warm_up(progress: Any = None, dtype: Any = np.uint16) -> float:
    """Compile (or load from the per-user cache) the kernels for frames of ``dtype``.

    Calls them once on two tiny frames, with the argument types `PixelMoments.add`
    passes; does nothing when they are compiled or cached already.

    Parameters
    ----------
    progress : callable(stage, done, total), optional
        Told ``(STAGE, 0, 1)`` and ``(STAGE, 1, 1)`` when there is something to compile.
    dtype : numpy dtype
        The frames' integer type (one compiled signature per type).

    Returns
    -------
    float
        Seconds spent (0 when nothing needed compiling).
    """
    if not jitcache.pending([frame_sums, accumulate]):
        return 0.0
    t0 = time.perf_counter()
    if progress is not None:
        progress(STAGE, 0, 1)
    call_tiny(dtype)
    if progress is not None:
        progress(STAGE, 1, 1)
    return time.perf_counter() - t0


def call_tiny(dtype: Any = np.uint16) -> None:
    """Call the kernels once on two tiny frames of ``dtype`` (what `warm_up` runs)."""
    x = np.zeros((2, 4), dtype)
    i32, i64, f64 = (np.zeros(4, t) for t in (np.int32, np.int64, np.float64))
    frame_sums(x)
    accumulate(x, i32, i64, i64.copy(), i32.copy(), i32.copy(), f64[:2].copy(), f64,
               f64.copy(), f64.copy(), 2, np.zeros(CHUNK), np.zeros(CHUNK))  # fmt: skip
