"""Compiled per-object pixel sums and overlaps of label images (one pass each).

`label_moments` gives, for every label of a 2D label image, what
`morphometry.measure` computed with ``ndi.find_objects``, ``np.nonzero`` and six
``np.bincount`` calls: the bounding box, the pixel count and the sums of the
box-local coordinates, their squares and products. ``np.bincount`` adds its float64
weights one by one in pixel order, which is the order of the loop here, with the same
float64 products: the sums are equal bit for bit (tests).

`size_relabel` is `per_image.drop_small` in two passes (counts, then the renumbering
written in place of a copy), and `overlap_runs` the overlap pairs of two label images
as runs (the pair of labels is mostly the same from one pixel to the next along a
row), with both images' areas: `matching.split_merge_counts` adds the runs up.
All release the GIL.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

jitcache.install()

__all__ = ["label_moments", "overlap_runs", "size_relabel"]


@nb.njit(cache=True, nogil=True)
def label_moments(lab, nmax):  # pragma: no cover - numba
    """Boxes and sums of labels ``1..nmax`` of ``lab`` (H, W).

    Returns ``box`` (4, nmax + 1) int64 (top, left, height, width; height 0 for an
    absent label), ``count`` (nmax + 1) int64 and ``sums`` (5, nmax + 1) float64 of
    ``x``, ``y``, ``x·x``, ``y·y``, ``x·y`` with box-local pixel coordinates.
    """
    h, w = lab.shape
    m = nmax + 1
    box = np.zeros((4, m), np.int64)
    bottom = np.zeros(m, np.int64)
    right = np.zeros(m, np.int64)
    count = np.zeros(m, np.int64)
    for i in range(m):
        box[0, i] = h
        box[1, i] = w
    for r in range(h):
        for c in range(w):
            v = lab[r, c]
            if v > 0:
                if r < box[0, v]:
                    box[0, v] = r
                if c < box[1, v]:
                    box[1, v] = c
                if r > bottom[v]:
                    bottom[v] = r
                if c > right[v]:
                    right[v] = c
                count[v] += 1
    sums = np.zeros((5, m), np.float64)
    for r in range(h):
        for c in range(w):
            v = lab[r, c]
            if v > 0:
                xl = np.float64(c - box[1, v])
                yl = np.float64(r - box[0, v])
                sums[0, v] += xl
                sums[1, v] += yl
                sums[2, v] += xl * xl
                sums[3, v] += yl * yl
                sums[4, v] += xl * yl
    for i in range(m):
        if count[i] > 0:
            box[2, i] = bottom[i] - box[0, i] + 1
            box[3, i] = right[i] - box[1, i] + 1
        else:
            box[0, i] = 0
            box[1, i] = 0
    return box, count, sums


@nb.njit(cache=True, nogil=True)
def size_relabel(lab, min_size):  # pragma: no cover - numba
    """Labels of ``lab`` below ``min_size`` px removed, in place; returns ``n``.

    ``lab`` is int32; the kept labels are renumbered ``1..n`` in label order.
    """
    flat = lab.ravel()
    nmax = 0
    for i in range(flat.size):
        if flat[i] > nmax:
            nmax = flat[i]
    sizes = np.zeros(nmax + 1, np.int64)
    for i in range(flat.size):
        sizes[flat[i]] += 1
    new = np.zeros(nmax + 1, np.int32)
    n = 0
    for v in range(1, nmax + 1):
        if sizes[v] >= min_size:
            n += 1
            new[v] = n
    for i in range(flat.size):
        flat[i] = new[flat[i]]
    return n


@nb.njit(cache=True, nogil=True)
def overlap_runs(a, b, na, nb_):  # pragma: no cover - numba
    """Runs of pixels where both label images (same shape, flat) are positive.

    Returns ``keys`` (int64, ``a·(nb_ + 1) + b`` of each run), ``lengths`` (int64) and
    the areas (bincounts) of ``a`` and ``b`` (``na + 1``, ``nb_ + 1``).
    """
    span = nb_ + 1
    area_a = np.zeros(na + 1, np.int64)
    area_b = np.zeros(nb_ + 1, np.int64)
    for i in range(a.size):  # two loops: faster than one doing both
        area_a[a[i]] += 1
        area_b[b[i]] += 1
    # at most one run per pixel; pages never written are never committed
    keys = np.empty(a.size, np.int64)
    lengths = np.empty(a.size, np.int64)
    k = -1
    last = -1
    for i in range(a.size):
        x = a[i]
        y = b[i]
        if x > 0 and y > 0:
            key = np.int64(x) * span + y
            if key == last:
                lengths[k] += 1
                continue
            k += 1
            keys[k] = key
            lengths[k] = 1
            last = key
        else:
            last = -1
    return keys[: k + 1].copy(), lengths[: k + 1].copy(), area_a, area_b
