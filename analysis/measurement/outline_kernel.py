"""Compiled outline, convex hull and Feret diameters of every object of a label image.

One numba kernel (`shape_params`) computes, for every object, what
`morphometry.traced_outline`, `traced_perimeter`, `corner_hull`, `_feret` and
`_shoelace` compute in Python, with the same operations in the same order: the
outline, perimeter counts and hull are integer computations; the Feret diameter,
its angle, the minimum caliper width and the hull area use the same float64
expressions (no fused multiply-add, ``atan2`` and ``hypot`` from the C library as
numpy and ``math`` do), so the results are equal to the Python definitions bit for
bit (tests). It releases the GIL, so the scoring's worker threads measure in parallel.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from rawsigma import jitcache

jitcache.install()

_RAD_TO_DEG = 180.0 / math.pi  # CPython's math.degrees factor


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _mask(lab, ident, top, left, h, w):  # pragma: no cover - numba
    """The object in its bounding box padded by one pixel (`traced_outline`'s grid)."""
    m = np.zeros((h + 2, w + 2), np.bool_)
    for r in range(h):
        for c in range(w):
            m[r + 1, c + 1] = lab[top + r, left + c] == ident
    return m


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _trace(m, xs, ys):  # pragma: no cover - numba
    """Outline vertices of padded mask ``m`` into ``xs``, ``ys``; their count.

    ImageJ's ``Wand``, as `traced_outline` traces it.
    """
    x = 0
    while not m[1, x]:  # first pixel of the top row, then the end of its run
        x += 1
    while m[1, x]:
        x += 1
    start_x, start_y, start_dir = x, 2, 3
    y, direction, n = start_y, start_dir, 0
    while True:
        new_dir = direction + 1
        while True:
            d = new_dir & 3
            if d == 0:
                ok = m[y, x]
            elif d == 1:
                ok = m[y - 1, x]
            elif d == 2:
                ok = m[y - 1, x - 1]
            else:
                ok = m[y, x - 1]
            if ok:
                break
            new_dir -= 1
            if new_dir < direction:
                break
        if new_dir != direction:
            xs[n] = x
            ys[n] = y
            n += 1
        d = new_dir & 3
        if d == 0:
            x += 1
        elif d == 1:
            y -= 1
        elif d == 2:
            x -= 1
        else:
            y += 1
        direction = new_dir
        if x == start_x and y == start_y and (direction & 3) == start_dir:
            break
    if xs[0] != x:
        xs[n] = x
        ys[n] = y
        n += 1
    return n


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _perimeter_counts(xs, ys, n):  # pragma: no cover - numba
    """(sum |dx| + |dy|, counted corners) of `traced_perimeter`."""
    sumd = 0
    corners = 0
    dx1, dy1 = xs[0] - xs[n - 1], ys[0] - ys[n - 1]
    side1 = abs(dx1) + abs(dy1)
    corner = False
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        dx2, dy2 = xs[j] - xs[i], ys[j] - ys[i]
        sumd += abs(dx1) + abs(dy1)
        if side1 > 1 or not corner:
            corner = True
            corners += 1
        else:
            corner = False
        dx1, dy1, side1 = dx2, dy2, abs(dx2) + abs(dy2)
    return sumd, corners


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _turns_right(px, py, chain, n, i) -> bool:  # pragma: no cover - numba
    """`corner_hull`'s ``cross(chain[n-2], chain[n-1], i) <= 0`` (integers)."""
    a, b = chain[n - 2], chain[n - 1]
    return (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a]) <= 0


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _hull(mask):  # pragma: no cover - numba
    """`corner_hull` of one object (padded mask): float64 (k, 2) vertices, ImageJ's order."""
    h, w = mask.shape[0] - 2, mask.shape[1] - 2
    grid = np.zeros((w + 1, h + 1), np.bool_)  # pixel corners of each row's end pixels
    for r in range(h):
        first, last = -1, -1
        for c in range(w):
            if mask[r + 1, c + 1]:
                if first < 0:
                    first = c
                last = c
        if first >= 0:
            grid[first, r] = grid[first, r + 1] = True
            grid[last + 1, r] = grid[last + 1, r + 1] = True
    px = np.empty(4 * h, np.int64)
    py = np.empty(4 * h, np.int64)
    m = 0
    for x in range(w + 1):  # distinct points sorted by x, then y (np.unique's order)
        for y in range(h + 1):
            if grid[x, y]:
                px[m] = x
                py[m] = y
                m += 1
    if m <= 2:
        out = np.empty((m, 2))
        for i in range(m):
            out[i, 0], out[i, 1] = px[i], py[i]
        return out
    chain = np.empty(2 * m, np.int64)  # indices of points: lower hull, then upper hull
    n = 0
    for i in range(m):
        while n >= 2 and _turns_right(px, py, chain, n, i):
            n -= 1
        chain[n] = i
        n += 1
    n_lower = n - 1
    base = n
    for i in range(m - 1, -1, -1):
        while n - base >= 2 and _turns_right(px, py, chain, n, i):
            n -= 1
        chain[n] = i
        n += 1
    # hull = lower[:-1] + upper[:-1], reversed (ImageJ: counter-clockwise on screen)
    k = n_lower + (n - 1 - base)
    idx = np.empty(k, np.int64)
    for i in range(n_lower):
        idx[k - 1 - i] = chain[i]
    for i in range(n - 1 - base):
        idx[k - 1 - n_lower - i] = chain[base + i]
    start = 0
    for i in range(k):  # top-most, then left-most vertex first
        a, b = idx[i], idx[start]
        if py[a] < py[b] or (py[a] == py[b] and px[a] < px[b]):
            start = i
    out = np.empty((k, 2))
    for i in range(k):
        j = idx[(start + i) % k]
        out[i, 0], out[i, 1] = px[j], py[j]
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _feret(hull):  # pragma: no cover - numba
    """`morphometry._feret` (feret, angle, min_feret, x1, y1), same float64 operations."""
    x, y = hull[:, 0], hull[:, 1]
    h = x.size
    best, p1, p2 = -1.0, 0, 0
    for i in range(h):
        for j in range(i + 1, h):
            d2 = (x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2
            if d2 > best:
                best, p1, p2 = d2, i, j
    if x[p1] > x[p2]:
        p1, p2 = p2, p1
    feret = math.sqrt(max(best, 0.0))
    angle = math.atan2(y[p1] - y[p2], x[p2] - x[p1]) * _RAD_TO_DEG
    if angle < 0:
        angle += 180.0
    min_feret = np.inf
    for i in range(h):
        xn = y[i] - y[i - 1]
        yn = x[i - 1] - x[i]
        norm = math.hypot(xn, yn)
        xn = xn / norm
        yn = yn / norm
        far = -np.inf
        for j in range(h):
            far = max(far, (x[j] - x[i]) * xn + (y[j] - y[i]) * yn)
        min_feret = min(min_feret, max(far, 0.0))
    return feret, angle, min_feret, x[p1], y[p1]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _shoelace(hull):  # pragma: no cover - numba
    x, y = hull[:, 0], hull[:, 1]
    a = 0.0
    b = 0.0
    for i in range(x.size):
        j = i + 1 if i + 1 < x.size else 0
        a += x[i] * y[j]
        b += x[j] * y[i]
    return 0.5 * abs(a - b)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def shape_params(lab, ids, top, left, height, width):  # pragma: no cover - numba
    """Outline, hull and Feret values of objects ``ids`` of ``lab``.

    Returns ``(n_vertices, sum_d, corners, values)``: the outline's vertex count and
    the two counts of `traced_perimeter` (int64), and ``values`` float64 (k, 6):
    feret, feret angle, min feret, feret x and y (image coordinates), hull area.
    """
    k = ids.size
    nv = np.zeros(k, np.int64)
    sumd = np.zeros(k, np.int64)
    corners = np.zeros(k, np.int64)
    vals = np.empty((k, 6))
    for o in range(k):
        i = ids[o]
        t, lf, h, w = top[i], left[i], height[i], width[i]
        mask = _mask(lab, i, t, lf, h, w)
        xs = np.empty(2 * (h + 3) * (w + 3), np.int64)
        ys = np.empty_like(xs)
        n = _trace(mask, xs, ys)
        nv[o] = n
        if n >= 4:
            sumd[o], corners[o] = _perimeter_counts(xs, ys, n)
        hull = _hull(mask)
        f, a, mf, x1, y1 = _feret(hull)
        vals[o, 0], vals[o, 1], vals[o, 2] = f, a, mf
        vals[o, 3], vals[o, 4] = x1 + lf, y1 + t
        vals[o, 5] = _shoelace(hull)
    return nv, sumd, corners, vals
