"""Compiled outline, convex hull and Feret diameters of every object of a label image.

One numba kernel (`shape_params`) computes, for every object, what
`morphometry.traced_outline`, `traced_perimeter`, `corner_hull`, `_feret` and
`_shoelace` compute in Python, with the same operations in the same order: the
outline, perimeter counts and hull are integer computations; the Feret diameter,
its angle, the minimum caliper width and the hull area use the same float64
expressions (no fused multiply-add, ``atan2`` and ``hypot`` from the C library as
numpy and ``math`` do), so the results are equal to the Python definitions bit for
bit (tests). It releases the GIL, so the scoring's worker threads measure in parallel.

Written to compile quickly on a first run (issue 16; numba's cost is mostly its own
typing and lowering, so less code and fewer distinct operations): the helpers are
`jitcache.HELPER` functions (no wrappers, no cache entries of their own); every
scratch array is a flat 1-D buffer allocated once per call with ``np.empty`` (no
``np.zeros``, no array slicing, no 2-D scratch), sized to the largest object and
reused from object to object; no ``max``/``min``/``**`` overloads (the same
comparisons and products written out).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from rawsigma import jitcache

jitcache.install()

_RAD_TO_DEG = 180.0 / math.pi  # CPython's math.degrees factor
_H = dict(error_model="numpy", **jitcache.HELPER)


@nb.njit(**_H)
def _mask(lab, ident, top, left, h, w, m):  # pragma: no cover - numba
    """The object in its bounding box padded by one pixel (`traced_outline`'s grid).

    Into ``m`` as ``h + 2`` rows of ``w + 2`` (flat, 0/1).
    """
    w2 = w + 2
    for p in range((h + 2) * w2):
        m[p] = 0
    for r in range(h):
        for c in range(w):
            m[(r + 1) * w2 + c + 1] = lab[top + r, left + c] == ident


@nb.njit(**_H)
def _trace(m, w2, xs, ys):  # pragma: no cover - numba
    """Outline vertices of padded mask ``m`` (rows of ``w2``) into ``xs``, ``ys``.

    ImageJ's ``Wand``, as `traced_outline` traces it. Returns the vertex count and
    `traced_perimeter`'s (sum |dx| + |dy|, counted corners), zeros below 4 vertices.
    """
    x = 0
    while not m[w2 + x]:  # first pixel of the top row, then the end of its run
        x += 1
    while m[w2 + x]:
        x += 1
    start_x, start_y, start_dir = x, 2, 3
    y, direction, n = start_y, start_dir, 0
    while True:
        new_dir = direction + 1
        while True:
            d = new_dir & 3  # pixel ahead-left: d 0 (y, x), 1 (y-1, x), 2 (y-1, x-1), 3 (y, x-1)
            up = 1 if d == 1 or d == 2 else 0
            if m[(y - up) * w2 + x - (1 if d >= 2 else 0)]:
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
    if n < 4:
        return n, 0, 0
    sumd = 0  # traced_perimeter's counts
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
    return n, sumd, corners


@nb.njit(**_H)
def _corners(m, h, w, grid, px, py):  # pragma: no cover - numba
    """Distinct pixel corners of each row's end pixels of mask ``m`` (`_mask`'s rows).

    Into ``px``, ``py``, sorted by x then y (np.unique's order); returns their count.
    """
    w2, h1 = w + 2, h + 1
    for p in range((w + 1) * h1):
        grid[p] = 0
    for r in range(h):
        first, last = -1, -1
        for c in range(w):
            if m[(r + 1) * w2 + c + 1]:
                if first < 0:
                    first = c
                last = c
        if first >= 0:
            grid[first * h1 + r] = grid[first * h1 + r + 1] = 1
            grid[(last + 1) * h1 + r] = grid[(last + 1) * h1 + r + 1] = 1
    k = 0
    for x in range(w + 1):
        for y in range(h1):
            if grid[x * h1 + y]:
                px[k] = x
                py[k] = y
                k += 1
    return k


@nb.njit(**_H)
def _hull(npt, px, py, chain, hx, hy):  # pragma: no cover - numba
    """`corner_hull` of the ``npt`` points ``px``, ``py`` (`_corners`).

    Its vertices into ``hx``, ``hy`` (float64) in ImageJ's order; returns their count.
    ``chain``: scratch of ``3 · npt`` (lower hull, upper hull, the hull's point indices).
    """
    if npt <= 2:
        for i in range(npt):
            hx[i], hy[i] = px[i], py[i]
        return npt
    n = 0  # chain: lower hull, then (from `base` on) upper hull
    for i in range(npt):  # pop while cross(chain[n-2], chain[n-1], i) <= 0
        while n >= 2:
            a, b = chain[n - 2], chain[n - 1]
            if (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a]) > 0:
                break
            n -= 1
        chain[n] = i
        n += 1
    n_lower = n - 1
    base = n
    for i in range(npt - 1, -1, -1):
        while n - base >= 2:
            a, b = chain[n - 2], chain[n - 1]
            if (px[b] - px[a]) * (py[i] - py[a]) - (py[b] - py[a]) * (px[i] - px[a]) > 0:
                break
            n -= 1
        chain[n] = i
        n += 1
    # hull = lower[:-1] + upper[:-1], reversed (ImageJ: counter-clockwise on screen)
    k = n_lower + (n - 1 - base)
    o = n  # the hull's point indices: chain[o : o + k]
    for i in range(n_lower):
        chain[o + k - 1 - i] = chain[i]
    for i in range(n - 1 - base):
        chain[o + k - 1 - n_lower - i] = chain[base + i]
    start = 0
    for i in range(k):  # top-most, then left-most vertex first
        a, b = chain[o + i], chain[o + start]
        if py[a] < py[b] or (py[a] == py[b] and px[a] < px[b]):
            start = i
    for i in range(k):
        j = chain[o + (start + i if start + i < k else start + i - k)]
        hx[i], hy[i] = px[j], py[j]
    return k


@nb.njit(**_H)
def _feret(x, y, h):  # pragma: no cover - numba
    """`morphometry._feret` (feret, angle, min_feret, x1, y1) and `_shoelace` (area).

    Of the hull's ``h`` vertices ``x``, ``y``, with the same float64 operations.
    """
    best, p1, p2 = -1.0, 0, 0
    for i in range(h):
        for j in range(i + 1, h):
            dx, dy = x[i] - x[j], y[i] - y[j]
            d2 = dx * dx + dy * dy  # `** 2`, exactly (no power function to compile)
            if d2 > best:
                best, p1, p2 = d2, i, j
    if x[p1] > x[p2]:
        p1, p2 = p2, p1
    feret = math.sqrt(0.0 if 0.0 > best else best)
    angle = math.atan2(y[p1] - y[p2], x[p2] - x[p1]) * _RAD_TO_DEG
    if angle < 0:
        angle += 180.0
    min_feret = np.inf
    for i in range(h):
        b = i - 1 if i > 0 else h - 1  # hull[i - 1], the last one for i = 0
        xn = y[i] - y[b]
        yn = x[b] - x[i]
        norm = math.hypot(xn, yn)
        xn = xn / norm
        yn = yn / norm
        far = -np.inf
        for j in range(h):
            v = (x[j] - x[i]) * xn + (y[j] - y[i]) * yn
            if v > far:  # max(far, v)
                far = v
        if 0.0 > far:  # min(min_feret, max(far, 0.0))
            far = 0.0
        if far < min_feret:
            min_feret = far
    a = 0.0  # `_shoelace`: the hull's area
    b = 0.0
    for i in range(h):
        j = i + 1 if i + 1 < h else 0
        a += x[i] * y[j]
        b += x[j] * y[i]
    return feret, angle, min_feret, x[p1], y[p1], 0.5 * abs(a - b)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def shape_params(lab, ids, top, left, height, width):  # pragma: no cover - numba
    """Outline, hull and Feret values of objects ``ids`` of ``lab``.

    Returns ``(n_vertices, sum_d, corners, values)``: the outline's vertex count and
    the two counts of `traced_perimeter` (int64), and ``values`` float64 (k, 6):
    feret, feret angle, min feret, feret x and y (image coordinates), hull area.
    """
    k = ids.size
    big = 0  # scratch sized to the largest bounding box
    for o in range(k):
        i = ids[o]
        size = (height[i] + 3) * (width[i] + 3)
        if size > big:
            big = size
    m = np.empty(big, np.uint8)  # padded mask
    grid = np.empty(big, np.uint8)  # the hull's pixel-corner grid
    xs, ys = np.empty(2 * big, np.int64), np.empty(2 * big, np.int64)
    px, py = np.empty(big, np.int64), np.empty(big, np.int64)
    chain = np.empty(3 * big, np.int64)
    hx, hy = np.empty(big), np.empty(big)
    nv, sumd, corners = np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.int64)
    vals = np.empty((k, 6))
    for o in range(k):
        i = ids[o]
        t, lf, h, w = top[i], left[i], height[i], width[i]
        _mask(lab, i, t, lf, h, w, m)
        nv[o], sumd[o], corners[o] = _trace(m, w + 2, xs, ys)
        nh = _hull(_corners(m, h, w, grid, px, py), px, py, chain, hx, hy)
        f, a, mf, x1, y1, area = _feret(hx, hy, nh)
        vals[o, 0], vals[o, 1], vals[o, 2] = f, a, mf
        vals[o, 3], vals[o, 4], vals[o, 5] = x1 + lf, y1 + t, area
    return nv, sumd, corners, vals
