"""One-to-one matching of segmented objects to the raw image's objects.

The paper's rule (Pomarico et al. 2023): an object of the raw segmentation is found in
another segmentation (replica or codec output) as the object with the *identical*
centroid, else the *nearest* centroid; pairs further apart than 3 px are rejected.

Here the rule is made one-to-one:

1. pairs with identical centroids (distance ≤ ``atol``) are taken first;
2. the remaining objects within ``max_distance`` are assigned with the Hungarian
   algorithm (:func:`scipy.optimize.linear_sum_assignment`), run separately on each
   connected group of candidate pairs, with forbidden pairs priced above any allowed
   assignment so that the number of pairs is maximal and, among maximal assignments,
   the summed distance is minimal.

Why not greedy nearest-neighbour: in crowded regions two raw objects can share the same
nearest neighbour, and greedy order then decides which one loses its partner (and can
cascade). Where objects are further apart than ``2 * max_distance`` (the usual case) the
two rules give identical pairs; where they are not, the assignment is the optimal one
and does not depend on object order. The cost is negligible because each group holds a
handful of objects.

Splits and merges need the label images: a raw object is *split* when two or more
objects of the other segmentation have most of their area inside it; an object of the
other segmentation is *merged* when two or more raw objects have most of their area
inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rawsigma.analysis.measurement import moments_kernel
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["MatchResult", "match_objects", "split_merge_counts"]


@dataclass
class MatchResult:
    """Pairs of matched objects and the bookkeeping of the rest.

    Attributes
    ----------
    ref_index, other_index : ndarray of int64, shape (n_pairs,)
        Row indices (0-based, into the centroid arrays) of matched objects.
    distance : ndarray of float64, shape (n_pairs,)
        Centroid distance of each pair, px.
    n_ref, n_other : int
        Number of objects in each segmentation.
    n_identical : int
        Pairs with identical centroids.
    unmatched_ref, unmatched_other : ndarray of int64
        Indices of objects without a partner within ``max_distance``.
    n_split, n_merged : int or None
        Split raw objects and merged objects (None when label images were not given).
    max_distance : float
        Rejection radius used, px.
    """

    ref_index: np.ndarray
    other_index: np.ndarray
    distance: np.ndarray
    n_ref: int
    n_other: int
    n_identical: int
    unmatched_ref: np.ndarray
    unmatched_other: np.ndarray
    max_distance: float
    n_split: int | None = None
    n_merged: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(self.ref_index.size)

    def summary(self) -> dict:
        """JSON-ready counts."""
        return {
            "n_ref": self.n_ref,
            "n_other": self.n_other,
            "n_matched": self.n_matched,
            "n_identical": self.n_identical,
            "n_unmatched_ref": int(self.unmatched_ref.size),
            "n_unmatched_other": int(self.unmatched_other.size),
            "n_split": self.n_split,
            "n_merged": self.n_merged,
            "max_distance_px": self.max_distance,
        }


def _as_points(c: np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.size == 0:
        return c.reshape(0, 2 if c.ndim < 2 else c.shape[-1])
    if c.ndim != 2:
        raise ValueError(f"{name}: expected an (n, d) array of centroids, got shape {c.shape}")
    return c


def match_objects(
    ref_centroids: np.ndarray,
    other_centroids: np.ndarray,
    max_distance: float = 3.0,
    *,
    ref_labels: np.ndarray | None = None,
    other_labels: np.ndarray | None = None,
    atol: float = 1e-9,
) -> MatchResult:
    """Match objects one-to-one by centroid.

    Parameters
    ----------
    ref_centroids : array_like, shape (n, d)
        Centroids of the reference (raw) objects, px, any consistent axis order.
    other_centroids : array_like, shape (m, d)
        Centroids of the other segmentation's objects, same axis order.
    max_distance : float
        Pairs further apart than this (px, Euclidean) are rejected. Default 3.
    ref_labels, other_labels : ndarray of int, optional
        Label images whose labels ``1..n`` / ``1..m`` are the objects in row order; when
        both are given, splits and merges are counted.
    atol : float
        Distance below which centroids count as identical, px.

    Returns
    -------
    MatchResult
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    a = _as_points(ref_centroids, "ref_centroids")
    b = _as_points(other_centroids, "other_centroids")
    n, m = a.shape[0], b.shape[0]
    ref_idx: list[np.ndarray] = []
    oth_idx: list[np.ndarray] = []
    n_identical = 0
    if n and m:
        tree_b = cKDTree(b)
        tree_a = cKDTree(a)
        sdm = tree_a.sparse_distance_matrix(tree_b, max_distance, output_type="coo_matrix")
        rows, cols, dist = sdm.row, sdm.col, sdm.data
        # sparse_distance_matrix drops exact zeros (identical centroids): add them back
        d0, j0 = tree_b.query(a, k=1)
        zero = np.flatnonzero(d0 <= atol)
        rows = np.concatenate([rows, zero])
        cols = np.concatenate([cols, j0[zero]])
        dist = np.concatenate([dist, np.zeros(zero.size)])
        # step 1: identical centroids, one-to-one (first come for the rare duplicates)
        used_a = np.zeros(n, bool)
        used_b = np.zeros(m, bool)
        ident = np.flatnonzero(dist <= atol)
        ri0, ci0 = rows[ident], cols[ident]
        if np.unique(ri0).size == ri0.size and np.unique(ci0).size == ci0.size:
            used_a[ri0] = used_b[ci0] = True  # no duplicates: every pair taken (the usual)
            ref_idx.append(ri0)
            oth_idx.append(ci0)
        else:
            for i, j in zip(ri0.tolist(), ci0.tolist(), strict=True):
                if not used_a[i] and not used_b[j]:
                    used_a[i] = used_b[j] = True
                    ref_idx.append(np.array([i]))
                    oth_idx.append(np.array([j]))
        n_identical = sum(x.size for x in ref_idx)
        keep = ~used_a[rows] & ~used_b[cols]
        rows, cols, dist = rows[keep], cols[keep], dist[keep]
        if rows.size:
            # step 2: Hungarian per connected group of candidate pairs
            graph = coo_matrix((np.ones(rows.size), (rows, cols + n)), shape=(n + m, n + m))
            _, comp = connected_components(graph, directed=False)
            pair_comp = comp[rows]
            order = np.argsort(pair_comp, kind="stable")
            rows, cols, dist, pair_comp = rows[order], cols[order], dist[order], pair_comp[order]
            bounds = np.flatnonzero(np.diff(pair_comp)) + 1
            big = 1e6 * (max_distance + 1.0)
            begins = np.concatenate([[0], bounds]).astype(np.int64)
            ends = np.concatenate([bounds, [rows.size]]).astype(np.int64)
            single = ends - begins == 1  # a group of one candidate pair: matched
            ref_idx.append(rows[begins[single]])
            oth_idx.append(cols[begins[single]])
            for lo, hi in zip(begins[~single].tolist(), ends[~single].tolist(), strict=True):
                r, c, d = rows[lo:hi], cols[lo:hi], dist[lo:hi]
                ur, ri = np.unique(r, return_inverse=True)
                uc, ci = np.unique(c, return_inverse=True)
                cost = np.full((ur.size, uc.size), big)
                cost[ri, ci] = d
                rr, cc = linear_sum_assignment(cost)
                ok = cost[rr, cc] < big
                ref_idx.append(ur[rr[ok]])
                oth_idx.append(uc[cc[ok]])
    ri = np.concatenate(ref_idx).astype(np.int64) if ref_idx else np.zeros(0, np.int64)
    oi = np.concatenate(oth_idx).astype(np.int64) if oth_idx else np.zeros(0, np.int64)
    order = np.argsort(ri, kind="stable")
    ri, oi = ri[order], oi[order]
    d = np.linalg.norm(a[ri] - b[oi], axis=1) if ri.size else np.zeros(0)
    res = MatchResult(
        ref_index=ri,
        other_index=oi,
        distance=d,
        n_ref=n,
        n_other=m,
        n_identical=n_identical,
        unmatched_ref=np.setdiff1d(np.arange(n), ri),
        unmatched_other=np.setdiff1d(np.arange(m), oi),
        max_distance=float(max_distance),
    )
    if ref_labels is not None and other_labels is not None:
        res.n_split, res.n_merged = split_merge_counts(ref_labels, other_labels)
    return res


def split_merge_counts(
    ref_labels: np.ndarray, other_labels: np.ndarray, min_fraction: float = 0.5
) -> tuple[int, int]:
    """Count split reference objects and merged other objects from overlaps.

    Parameters
    ----------
    ref_labels, other_labels : ndarray of int, same shape
        Label images (0 = background).
    min_fraction : float
        An object "lies in" another when at least this fraction of its pixels do.

    Returns
    -------
    n_split : int
        Reference objects that contain two or more other objects.
    n_merged : int
        Other objects that contain two or more reference objects.
    """
    ref_labels = np.asarray(ref_labels)
    other_labels = np.asarray(other_labels)
    if ref_labels.shape != other_labels.shape:
        raise ValueError(
            f"label images differ in shape: {ref_labels.shape} vs {other_labels.shape}"
        )
    overlaps = _overlaps(ref_labels, other_labels)
    if overlaps is None:
        return 0, 0
    pairs, inter, area_ref, area_oth = overlaps
    # other object mostly inside a ref object -> counts towards a split of that ref
    oth_in_ref = inter >= min_fraction * area_oth[pairs[1]]
    ref_in_oth = inter >= min_fraction * area_ref[pairs[0]]
    split_hosts, n_children = np.unique(pairs[0][oth_in_ref], return_counts=True)
    merge_hosts, n_parents = np.unique(pairs[1][ref_in_oth], return_counts=True)
    return int(np.sum(n_children >= 2)), int(np.sum(n_parents >= 2))


def _overlaps(
    ref_labels: np.ndarray, other_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Overlapping label pairs of two label images, their overlaps and areas.

    Returns the (ref, other) pairs (2, k) sorted by ref then other, their overlaps in
    px and both images' areas per label, or None without overlap.

    Int32 images (the scoring's) go through `moments_kernel.overlap_runs`: one pass,
    runs of one pair added up; other dtypes through numpy. Same numbers.
    """
    if ref_labels.dtype == np.int32 and other_labels.dtype == np.int32:
        if ref_labels.size == 0:
            return None
        ra, oa = np.ravel(ref_labels), np.ravel(other_labels)
        span = int(oa.max()) + 1
        keys, lengths, area_ref, area_oth = moments_kernel.overlap_runs(
            ra, oa, int(ra.max()), span - 1
        )
        if keys.size == 0:
            return None
        order = np.argsort(keys, kind="stable")
        keys, lengths = keys[order], lengths[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        keys, inter = keys[starts], np.add.reduceat(lengths, starts)
        return np.stack([keys // span, keys % span]), inter, area_ref, area_oth
    both = (ref_labels > 0) & (other_labels > 0)
    if not both.any():
        return None
    ra = ref_labels[both].astype(np.int64)
    oa = other_labels[both].astype(np.int64)
    span = int(oa.max()) + 1
    keys, inter = np.unique(ra * span + oa, return_counts=True)
    pairs = np.stack([keys // span, keys % span])
    area_ref = np.bincount(ref_labels.ravel().astype(np.int64))
    area_oth = np.bincount(other_labels.ravel().astype(np.int64))
    return pairs, inter, area_ref, area_oth
