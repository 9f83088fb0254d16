"""Compiled inference of a trained scikit-learn random forest (same probabilities).

`flatten` copies a fitted `sklearn.ensemble.RandomForestClassifier` into flat arrays;
`predict_proba` (rows of features) and `predict_proba_channels` (channel-first
features, as the feature bank computes them) evaluate them with numba kernels that
release the GIL. Two kernels, chosen per forest:

* **bit masks** (QuickScorer, Lucchese et al. 2015), when every tree has at most 64
  leaves: the leaves of a tree are numbered left to right; every internal node whose
  test sends a pixel right clears the bits of the leaves of its left subtree from the
  pixel's 64-bit mask, and the pixel's leaf is the lowest bit left. Every internal
  node of a tree is tested for a block of pixels in a row (one feature, one
  threshold, contiguous channel-first features: the loop vectorises), with no
  dependent loads and no branches.
* **traversal** otherwise (deep trees): a block of pixels descends each tree level by
  level without branches (the child is ``kids[2·node + (x > threshold)]``, a leaf is
  its own child).

Both compute what scikit-learn computes, in the same order: per tree the leaf's class
fractions (``tree_.value``, float64), summed over the trees in their order, divided by
the number of trees; a float32 feature goes left when ``x <= t`` for the float64
threshold ``t`` as sklearn's Cython does (the mask kernel compares with the largest
float32 not above ``t``, which gives the same answer for every float32 ``x``). The
probabilities are therefore equal to sklearn's with ``n_jobs=1`` (with several jobs
sklearn's own sum order varies, in the last bit). Features must be finite
(sklearn's missing-value routing is not reproduced; `supported` says whether a model
can be flattened).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros
from rawsigma import jitcache

# compiled kernels are cached per machine (`jitcache`), keyed by this module's contents
jitcache.install()

_BLOCK = 64  # pixels walked through one tree before the next tree
_MASK_BLOCK = 128  # pixels tested against one tree's nodes at a time (mask kernel)
_ROWS = 1 << 15  # rows per task of `predict_proba`
MAX_MASK_LEAVES = 64  # the mask kernel needs every tree to have at most this many leaves
U = np.uint64


@dataclass(frozen=True)
class MaskForest:
    """A forest as per-node bit masks (every tree ≤ 64 leaves; see the module doc)."""

    node_start: np.ndarray  # int64 (T + 1,): internal nodes of tree t: [start[t], start[t+1])
    feature: np.ndarray  # int64 (M,): feature tested by each internal node
    threshold: np.ndarray  # float32 (M,): largest float32 <= sklearn's float64 threshold
    clear: np.ndarray  # uint64 (M,): mask without the leaves of the node's left subtree
    leaf_start: np.ndarray  # int64 (T,): first leaf of each tree in `leaf_value`
    leaf_value: np.ndarray  # float64 (K, L): class fractions of every leaf, left to right


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
    masks: MaskForest | None = None  # the bit-mask form, if every tree allows it

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


def _float32_floor(t: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 ``t``: ``x <= t`` iff ``x <= floor`` (float32 x)."""
    f = t.astype(np.float32)
    up = f.astype(np.float64) > t
    f[up] = np.nextafter(f[up], np.float32(-np.inf))
    return f


def _tree_masks(tree: Any, k: int) -> tuple[list, list, list, np.ndarray]:
    """(features, thresholds, clear masks) of a tree's internal nodes, leaf values."""
    left, right = tree.children_left, tree.children_right
    leaves: list[int] = []
    nodes: list[tuple[int, int, int]] = []  # node, first and end leaf of its left subtree
    stack: list[tuple[int, int]] = [(0, 0)]  # (node, 0 = enter / 1 = left subtree done)
    first: dict[int, int] = {}
    while stack:  # depth-first, left before right, without recursion
        n, state = stack.pop()
        if left[n] < 0:
            leaves.append(n)
        elif state == 0:
            first[n] = len(leaves)
            stack += [(n, 1), (int(left[n]), 0)]
        else:
            nodes.append((n, first[n], len(leaves)))
            stack.append((int(right[n]), 0))
    full = (1 << 64) - 1
    idx = np.array([n for n, _, _ in nodes], np.int64)
    clear = [full & ~(((1 << (hi - lo)) - 1) << lo) for _, lo, hi in nodes]
    return (
        list(tree.feature[idx]) if idx.size else [],
        list(tree.threshold[idx]) if idx.size else [],
        clear,
        tree.value[leaves, 0, :k],
    )


def _mask_forest(model: Any, k: int) -> MaskForest | None:
    trees = [est.tree_ for est in model.estimators_]
    if max(int(t.n_leaves) for t in trees) > MAX_MASK_LEAVES:
        return None
    feats, thrs, clears, vals = [], [], [], []
    node_start, leaf_start = [0], []
    n_leaves = 0
    for t in trees:
        f, th, c, v = _tree_masks(t, k)
        feats += f
        thrs += th
        clears += c
        vals.append(v)
        node_start.append(len(feats))
        leaf_start.append(n_leaves)
        n_leaves += v.shape[0]
    return MaskForest(
        node_start=np.asarray(node_start, np.int64),
        feature=np.asarray(feats, np.int64),
        threshold=_float32_floor(np.asarray(thrs, np.float64)),
        clear=np.asarray(clears, np.uint64),
        leaf_start=np.asarray(leaf_start, np.int64),
        leaf_value=np.ascontiguousarray(np.concatenate(vals).T, np.float64),
    )


def flatten(model: Any, masks: bool = True) -> FlatForest:
    """Flat node arrays of a fitted `RandomForestClassifier` (see `supported`);
    ``masks``: also the bit-mask form when every tree has at most 64 leaves."""
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
        masks=_mask_forest(model, k) if masks else None,
    )


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _mask_proba(xt, node_start, feature, threshold, clear, leaf_start, leaf_value, out):
    """``out[i]`` (K) ← mean over trees of the leaf fractions of pixel ``i``, features
    channel-first ``xt`` (F, n) float32 (bit-mask kernel, see the module doc)."""
    n = xt.shape[1]
    k = leaf_value.shape[0]
    n_trees = node_start.size - 1
    mask = np.empty(_MASK_BLOCK, np.uint64)
    leaf = np.empty(_MASK_BLOCK, np.int64)
    acc = np.empty((k, _MASK_BLOCK), np.float64)
    full = ~U(0)
    for b0 in range(0, n, _MASK_BLOCK):
        m = min(n, b0 + _MASK_BLOCK) - b0
        acc[:, :m] = 0.0
        for t in range(n_trees):
            for i in range(m):
                mask[i] = full
            for j in range(node_start[t], node_start[t + 1]):
                row = xt[feature[j], b0 : b0 + m]
                th = threshold[j]
                cl = clear[j]
                for i in range(m):  # goes right: clear the left subtree's leaves
                    mask[i] &= cl | ~(U(0) - U(row[i] > th))
            lb = leaf_start[t]
            if k == 2:  # the usual case, one pass
                lv0 = leaf_value[0]
                lv1 = leaf_value[1]
                a0 = acc[0]
                a1 = acc[1]
                for i in range(m):
                    li = lb + trailing_zeros(mask[i])
                    a0[i] += lv0[li]
                    a1[i] += lv1[li]
                continue
            for i in range(m):
                leaf[i] = lb + trailing_zeros(mask[i])
            for c in range(k):
                lv = leaf_value[c]
                a = acc[c]
                for i in range(m):
                    a[i] += lv[leaf[i]]
        for i in range(m):
            for c in range(k):
                out[b0 + i, c] = acc[c, i] / n_trees


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _forest_proba(x, roots, depth, kids, feature, threshold, value, out):
    """``out[i]`` (float64, K) ← mean over trees of the leaf fractions of ``x[i]``
    (float32 features, C order; traversal kernel).

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
    acc = np.empty((_BLOCK, k), np.float64)
    for b0 in range(0, n, _BLOCK):
        m = min(n, b0 + _BLOCK) - b0
        base = U(b0) * n_feat
        acc[:] = 0.0
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
                    acc[i, c] += value[nd, c]
        for i in range(m):
            for c in range(k):
                out[b0 + i, c] = acc[i, c] / roots.size


#: the numba kernel of each inference kind (`scoring.first_run` compiles them ahead)
KERNELS = {"mask": _mask_proba, "traversal": _forest_proba}


def _run_rows(forest: FlatForest, x: np.ndarray, out: np.ndarray) -> None:
    """One thread's share: rows ``x`` (n, F) float32 → ``out`` (n, K) float64."""
    mf = forest.masks
    if mf is None:
        _forest_proba(x, forest.roots, forest.depth, forest.kids, forest.feature,
                      forest.threshold, forest.value, out)  # fmt: skip
        return
    _run_channels(forest, np.ascontiguousarray(x.T), out)


def _run_channels(forest: FlatForest, xt: np.ndarray, out: np.ndarray) -> None:
    """One thread's share: channel-first ``xt`` (F, n) float32 → ``out`` (n, K)."""
    mf = forest.masks
    if mf is None:
        _run_rows(forest, np.ascontiguousarray(xt.T), out)
        return
    _mask_proba(xt, mf.node_start, mf.feature, mf.threshold, mf.clear, mf.leaf_start,
                mf.leaf_value, out)  # fmt: skip


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
    parts = [(i, min(i + _ROWS, x.shape[0])) for i in range(0, x.shape[0], _ROWS)]
    if threads == 1 or len(parts) == 1:
        for a, b in parts:
            _run_rows(forest, x[a:b], out[a:b])
        return out
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: _run_rows(forest, x[p[0] : p[1]], out[p[0] : p[1]]), parts))
    return out


def predict_proba_channels(forest: FlatForest, xt: np.ndarray, out: np.ndarray | None = None):
    """Class probabilities (float64, ``(n, K)``) of channel-first features ``xt``
    (``(F, n)`` float32, e.g. a feature-bank block reshaped), in the calling thread."""
    xt = np.ascontiguousarray(xt, np.float32)
    if xt.ndim != 2 or xt.shape[0] != forest.n_features:
        raise ValueError(f"expected ({forest.n_features}, n) features, got {xt.shape}")
    if out is None:
        out = np.empty((xt.shape[1], forest.n_classes), np.float64)
    _run_channels(forest, xt, out)
    return out
