"""Compiled inference of a trained scikit-learn random forest (same probabilities).

`flatten` copies a fitted `sklearn.ensemble.RandomForestClassifier` into flat node
arrays (every tree's ``tree_.children_left/right``, ``feature``, ``threshold`` and
``value``, one after the other); `predict_proba` traverses them with a numba kernel that
walks every tree for a small block of pixels at a time, level by level without
branches (the tree's nodes and the block's features stay in cache), releases the GIL
and runs blocks of rows in threads.

It computes what scikit-learn computes, in the same order: per tree the leaf's class
fractions (``tree_.value``, float64), summed over the trees in their order, divided by
the number of trees; a float32 feature is compared with the float64 threshold
(``x <= t`` goes left) as sklearn's Cython does. The probabilities are therefore equal
to sklearn's with ``n_jobs=1`` (with several jobs sklearn's own sum order varies, in
the last bit). Features must be finite (sklearn's missing-value routing is not
reproduced; `supported` says whether a model can be flattened).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
from rawsigma import jitcache

# compiled kernels are cached per machine (`jitcache`), keyed by this module's contents
jitcache.install()

_BLOCK = 64  # pixels walked through one tree before the next tree
U = np.uint64


@dataclass(frozen=True)
class FlatForest:
    """A forest's trees as flat node arrays (absolute node indices)."""

    roots: np.ndarray  # int64 (T,): first node of each tree
    depth: np.ndarray  # int64 (T,): depth of each tree
    kids: np.ndarray  # int32 (2N,): left, right child of each node (a leaf: itself twice)
    feature: np.ndarray  # int32 (N,)
    threshold: np.ndarray  # float64 (N,)
    value: np.ndarray  # float64 (N, K): class fractions of each node (leaves used)
    n_features: int

    @property
    def n_classes(self) -> int:
        return int(self.value.shape[1])


def supported(model: Any) -> bool:
    """Whether `flatten` reproduces ``model.predict_proba`` (a fitted single-output
    scikit-learn forest classifier whose trees store class fractions)."""
    est = getattr(model, "estimators_", None)
    if not est or getattr(model, "n_outputs_", 1) != 1:
        return False
    t = est[0].tree_
    return t.value.ndim == 3 and bool(np.allclose(t.value[0, 0].sum(), 1.0))


def flatten(model: Any) -> FlatForest:
    """Flat node arrays of a fitted `RandomForestClassifier` (see `supported`)."""
    k = int(model.n_classes_)
    roots, depths, kids, feats, thrs, vals = [], [], [], [], [], []
    base = 0
    for est in model.estimators_:
        t = est.tree_
        idx = np.arange(t.node_count, dtype=np.int64) + base
        leaf = t.children_left < 0
        pair = np.stack([t.children_left + base, t.children_right + base], 1)
        kids.append(np.where(leaf[:, None], idx[:, None], pair).ravel())
        feats.append(np.where(leaf, 0, t.feature))
        thrs.append(np.where(leaf, np.inf, t.threshold))
        vals.append(t.value[:, 0, :k])
        roots.append(base)
        depths.append(t.max_depth)
        base += t.node_count
    return FlatForest(
        roots=np.asarray(roots, np.int64),
        depth=np.asarray(depths, np.int64),
        kids=np.ascontiguousarray(np.concatenate(kids), np.int32),
        feature=np.ascontiguousarray(np.concatenate(feats), np.int32),
        threshold=np.ascontiguousarray(np.concatenate(thrs), np.float64),
        value=np.ascontiguousarray(np.concatenate(vals), np.float64),
        n_features=int(model.n_features_in_),
    )


@nb.njit(nogil=True, cache=True)
def _forest_proba(x, roots, depth, kids, feature, threshold, value, out):
    """``out[i]`` (float64, K) ← mean over trees of the leaf fractions of ``x[i]``
    (float32 features, C order).

    Per tree, a block of `_BLOCK` pixels descends level by level without branches: the
    child is ``kids[2·node + (x > threshold)]``, a leaf being its own child (threshold
    +inf), for the tree's depth; the pixels' walks are independent, so they overlap in
    the CPU, and the tree's nodes and the block's features stay in cache. Unsigned
    indices: no negative-index wrap-around code.
    """
    n = x.shape[0]
    k = value.shape[1]
    n_feat = U(x.shape[1])
    xf = x.ravel()
    node = np.empty(_BLOCK, np.uint64)
    for i in range(n):
        for c in range(k):
            out[i, c] = 0.0
    for b0 in range(0, n, _BLOCK):
        m = min(n, b0 + _BLOCK) - b0
        base = U(b0) * n_feat
        for t in range(roots.size):
            root = U(roots[t])
            for i in range(m):
                node[i] = root
            for _ in range(depth[t]):
                for i in range(m):
                    nd = node[i]
                    v = xf[base + U(i) * n_feat + U(feature[nd])]
                    node[i] = U(kids[U(2) * nd + U(v > threshold[nd])])
            for i in range(m):
                nd = node[i]
                for c in range(k):
                    out[b0 + i, c] += value[nd, c]
    for i in range(n):
        for c in range(k):
            out[i, c] /= roots.size


def predict_proba(forest: FlatForest, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Class probabilities (float64, ``(n, K)``) of the rows of ``x`` (``(n, F)``).

    Parameters
    ----------
    forest : FlatForest
    x : ndarray, (n, F)
        Features (converted to float32 C order, as sklearn does).
    threads : int, optional
        Worker threads over row blocks (default: all cores).
    """
    x = np.ascontiguousarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != forest.n_features:
        raise ValueError(f"expected (n, {forest.n_features}) features, got {x.shape}")
    out = np.empty((x.shape[0], forest.n_classes), np.float64)
    threads = max(1, threads or os.cpu_count() or 1)
    args = (forest.roots, forest.depth, forest.kids, forest.feature, forest.threshold,
            forest.value)  # fmt: skip
    step = max(_BLOCK, -(-x.shape[0] // (4 * threads)) // _BLOCK * _BLOCK)
    parts = [(i, min(i + step, x.shape[0])) for i in range(0, x.shape[0], step)]
    if threads == 1 or len(parts) == 1:
        _forest_proba(x, *args, out)
        return out
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: _forest_proba(x[p[0] : p[1]], *args, out[p[0] : p[1]]), parts))
    return out
