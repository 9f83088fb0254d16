"""The ``effort="pyramid"`` back end: hierarchical interpolative prediction, interleaved rANS.

A tile of codes ``P_0`` (h × w) is split into its four polyphase planes ``ee`` (even row,
even column), ``oo``, ``eo`` and ``oe``; ``P_1 = ee`` is split again, down to ``P_K``.
Decoding runs coarse to fine: ``P_K`` (a few hundred codes, median-edge prediction), then
per level the three stages

- A: ``oo`` predicted from its 16 nearest ``ee`` neighbours (diagonals),
- B1: ``eo`` from ``ee`` and ``oo`` (the 4 direct neighbours and 12 more),
- B2: ``oe`` from ``ee``, ``oo`` and ``eo`` (its 8 immediate neighbours and 8 more),

and ``P_k`` is their interleave. Every pixel of a stage is predicted from data decoded in
earlier stages only, and from both sides: the features of a whole row are computed in
one vectorisable loop. The 16 neighbours enter as three sums over symmetric rings
(distance classes), weighted per class (activity × level, ``N_CLASS``; level boundaries
chosen per weight set by the encoder) by least squares, fixed point. The residual to the
floor of the prediction is coded with static tables per context (fraction of the
prediction × activity), one context group per stage for level 0 and for the coarser
levels; the encoder merges fraction bins where the data cannot pay for their tables
(`choose_contexts`). Four rANS states (the state of column ``j`` is ``j & 3``), each with
its own stream of 16-bit words, so four independent dependency chains overlap in the
CPU together with the per-pixel weighting, which runs in the same serial loop.

Plane buffers carry a halo of `HALO` cells filled by edge replication, so encoder and
decoder read the same neighbours at the borders.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

from .exactfit import XL_F, solve4, xlog2x
from .kernels import (
    ESC,
    N_SYM,
    RANS_L,
    RMAX,
    dequantise_row,
    normalise_counts,
)

HALO = 2
WB = 12  # fixed-point fraction bits of the weights
N_ACT_CLS = 8
N_LVL_CLS = 8
N_CLASS = N_ACT_CLS * N_LVL_CLS
FRAC_BITS = 3  # the prediction's fractional part (8 bins) selects the context
N_FRAC = 1 << FRAC_BITS
N_ACT_CTX = 12
N_CTX = N_FRAC * N_ACT_CTX  # contexts per group
N_LEVEL_GROUPS = 2  # context tables: level 0, and levels >= 1 (a quarter of the pixels)
N_STAGE = 3
N_WEIGHT_LEVELS = 2  # weight sets: level 0, and levels >= 1
N_SETS = N_WEIGHT_LEVELS * N_STAGE  # weight sets
N_GROUPS = 1 + N_LEVEL_GROUPS * N_STAGE  # context groups; group 0: the top plane
N_CTX_ALL = N_GROUPS * N_CTX
N_W = 4  # weights of the three ring sums and the bias
TOP_ROWS = 8  # split until a plane has at most this many rows (or 1 column)
LANES = 4  # rANS states of formats 3-4, each with its own word stream
WL = 16  # rANS states of format 5, one word stream (`pyramid5`)
TAB_BITS = 10  # probability resolution of the tables: small enough to stay in L2
TAB = 1 << TAB_BITS
MAX_CODE = 4095  # int32 predictions (see `solve_weights`); larger codes use "best"
U = np.uint64

ACT_MAX = 63
LVL_MAX = 255
# activity (range of the 4 nearest codes) → class bucket (premultiplied by N_LVL_CLS) in
# the low byte and context bucket in the next byte: one lookup
ACT_LUT = (
    np.searchsorted([1, 2, 3, 4, 6, 9, 14], np.arange(ACT_MAX + 1), side="right") * N_LVL_CLS
    + (
        np.searchsorted([1, 2, 3, 4, 5, 6, 8, 10, 13, 17, 22], np.arange(ACT_MAX + 1), side="right")
        << 8
    )
).astype(np.int32)
# level (mean of the 4 nearest codes, clipped to LVL_MAX) → class bucket: thresholds at
# octiles of the level distribution of each weight set, chosen by the encoder
# (`level_thresholds`) and sent with the weights

# compiled kernels are cached per machine (`jitcache`), keyed by these modules' contents
jitcache.install()
_OPTS = dict(nogil=True, cache=True)
# helpers (called from kernels only): LLVM inlines them and prunes the refcounts
# (numba-level inlining, inline="always", compiled twice as slowly for the same speed)
_INLINE = jitcache.HELPER


# ---------------------------------------------------------------- geometry
@nb.njit(**_OPTS)
def n_levels(h: int, w: int) -> int:
    """Number of splits K of an ``h × w`` tile (encoder and decoder)."""
    k = 0
    while h > TOP_ROWS and w > 1:
        h, w = (h + 1) // 2, (w + 1) // 2
        k += 1
    return k


@nb.njit(**_INLINE)
def _sizes(h, w, K):
    hs = np.empty(K + 1, np.int64)
    ws = np.empty(K + 1, np.int64)
    hs[0], ws[0] = h, w
    for k in range(K):
        hs[k + 1] = (hs[k] + 1) // 2
        ws[k + 1] = (ws[k] + 1) // 2
    return hs, ws


@nb.njit(**_INLINE)
def _fill_halo(B, n, m):
    """Edge-replicate the valid ``n × m`` region of padded buffer ``B`` into the rest."""
    H = HALO
    R, C = B.shape
    for i in range(H, H + n):
        v = B[i, H]
        for j in range(H):
            B[i, j] = v
        v = B[i, H + m - 1]
        for j in range(H + m, C):
            B[i, j] = v
    for i in range(H):
        for j in range(C):
            B[i, j] = B[H, j]
    for i in range(H + n, R):
        for j in range(C):
            B[i, j] = B[H + n - 1, j]


@nb.njit(**_INLINE)
def _stage_rows(kind, hk, wk):
    """Rows and columns of the stage's target plane inside level plane ``hk × wk``."""
    if kind == 0:  # oo
        return hk // 2, wk // 2
    if kind == 1:  # eo
        return (hk + 1) // 2, wk // 2
    return hk // 2, (wk + 1) // 2  # oe


# ---------------------------------------------------------------- prediction
# Per row, one branch-free loop per stage kind over shifted row views (LLVM vectorises it)
# computes the three ring sums, the activity and the level; a serial loop looks up the
# class's weights (a per-pixel table lookup would stop the vectorisation) and forms the
# prediction and context.


@nb.njit(**_INLINE)
def _act_lvl(p0, p1, p2, p3, r1):
    """``activity << 8 | level``: the range of the 4 nearest codes and their mean, clipped
    (the index of `class_tables`)."""
    act = min(max(max(p0, p1), max(p2, p3)) - min(min(p0, p1), min(p2, p3)), ACT_MAX)
    return np.uint16((act << 8) | max(min(r1 >> 2, LVL_MAX), 0))


@nb.njit(**_INLINE)
def _feat_a(E, a, n, r1, r2, r3, al):
    """Stage A (oo): the 4 diagonal ee neighbours (d² = 2 in full-resolution units), the
    8 at d² = 10 and the 4 at d² = 18."""
    u0, u1, u2, u3 = E[a - 1], E[a], E[a + 1], E[a + 2]
    for j in range(n):
        p0, p1 = np.int32(u1[j + 2]), np.int32(u1[j + 3])
        p2, p3 = np.int32(u2[j + 2]), np.int32(u2[j + 3])
        s1 = p0 + p1 + p2 + p3
        r1[j] = s1
        r2[j] = (
            np.int32(u1[j + 1]) + np.int32(u1[j + 4]) + np.int32(u2[j + 1]) + np.int32(u2[j + 4])
            + np.int32(u0[j + 2]) + np.int32(u0[j + 3]) + np.int32(u3[j + 2]) + np.int32(u3[j + 3])
        )  # fmt: skip
        r3[j] = (
            np.int32(u0[j + 1]) + np.int32(u0[j + 4]) + np.int32(u3[j + 1]) + np.int32(u3[j + 4])
        )
        al[j] = _act_lvl(p0, p1, p2, p3, s1)


@nb.njit(**_INLINE)
def _feat_b1(E, O, a, n, r1, r2, r3, al):
    """Stage B1 (eo): the 4 direct neighbours (2 ee, 2 oo), the 8 at d² = 5 and the 4 at
    d² = 9."""
    e0, e1, e2 = E[a - 1], E[a], E[a + 1]
    o0, o1, o2, o3 = O[a - 2], O[a - 1], O[a], O[a + 1]
    for j in range(n):
        p0, p1 = np.int32(e1[j + 2]), np.int32(e1[j + 3])
        p2, p3 = np.int32(o1[j + 2]), np.int32(o2[j + 2])
        s1 = p0 + p1 + p2 + p3
        r1[j] = s1
        r2[j] = (
            np.int32(o1[j + 1]) + np.int32(o1[j + 3]) + np.int32(o2[j + 1]) + np.int32(o2[j + 3])
            + np.int32(e0[j + 2]) + np.int32(e0[j + 3]) + np.int32(e2[j + 2]) + np.int32(e2[j + 3])
        )  # fmt: skip
        r3[j] = (
            np.int32(e1[j + 1]) + np.int32(e1[j + 4]) + np.int32(o0[j + 2]) + np.int32(o3[j + 2])
        )
        al[j] = _act_lvl(p0, p1, p2, p3, s1)


@nb.njit(**_INLINE)
def _feat_b2(E, O, Q, a, n, r1, r2, r3, al):
    """Stage B2 (oe): the 4 direct neighbours (2 oo, 2 ee), the 4 eo diagonals and the 8
    at d² = 5."""
    e1, e2 = E[a], E[a + 1]
    o0, o1, o2 = O[a - 1], O[a], O[a + 1]
    q1, q2 = Q[a], Q[a + 1]
    for j in range(n):
        p0, p1 = np.int32(o1[j + 1]), np.int32(o1[j + 2])
        p2, p3 = np.int32(e1[j + 2]), np.int32(e2[j + 2])
        s1 = p0 + p1 + p2 + p3
        r1[j] = s1
        r2[j] = (
            np.int32(q1[j + 1]) + np.int32(q1[j + 2]) + np.int32(q2[j + 1]) + np.int32(q2[j + 2])
        )
        r3[j] = (
            np.int32(e1[j + 1]) + np.int32(e1[j + 3]) + np.int32(e2[j + 1]) + np.int32(e2[j + 3])
            + np.int32(o0[j + 1]) + np.int32(o0[j + 2]) + np.int32(o2[j + 1]) + np.int32(o2[j + 2])
        )  # fmt: skip
        al[j] = _act_lvl(p0, p1, p2, p3, s1)


@nb.njit(**_INLINE)
def _features(kind, i, n, E, O, Q, r1, r2, r3, al):
    """Ring sums, activity and level of row ``i`` of stage ``kind``'s target plane
    (``E``/``O``/``Q``: the padded ee/oo/eo planes)."""
    a = i + HALO
    if kind == 0:
        _feat_a(E, a, n, r1, r2, r3, al)
    elif kind == 1:
        _feat_b1(E, O, a, n, r1, r2, r3, al)
    else:
        _feat_b2(E, O, Q, a, n, r1, r2, r3, al)


@nb.njit(**_INLINE)
def _pc(j, wt, ct, g0, r1, r2, r3, al):
    """Prediction floor and global (logical) rANS context of pixel ``j`` of a row: the
    class table ``ct`` (`class_tables`) gives the offset of the class's fixed-point
    weights in ``wt`` (N_CLASS · N_W int32, flat) and the activity bucket; the context is
    the group base ``g0`` + fraction bin of the prediction × activity bucket. Unsigned
    indices: no negative-index wrap-around. Encoder and decoder both use this."""
    v = U(ct[al[j]])
    c = v & U(0xFF)
    p = np.int32(wt[c + U(3)] + wt[c] * r1[j] + wt[c + U(1)] * r2[j] + wt[c + U(2)] * r3[j])
    return p >> WB, g0 + U((p >> (WB - FRAC_BITS)) & (N_FRAC - 1)) * U(N_ACT_CTX) + (v >> U(8))


@nb.njit(**_INLINE)
def _classify(n, wt, ct, g0, r1, r2, r3, al, base, ctx):
    """`_pc` over a row into ``base`` and ``ctx`` (the encoder's pass)."""
    for j in range(n):
        base[j], ctx[j] = _pc(j, wt, ct, g0, r1, r2, r3, al)


@nb.njit(**_INLINE)
def _row_buffers(n):
    """r1, r2, r3 (int32), activity << 8 | level (uint16), prediction floor (int32),
    context (uint16)."""
    return (
        np.empty(n, np.int32),
        np.empty(n, np.int32),
        np.empty(n, np.int32),
        np.empty(n, np.uint16),
        np.empty(n, np.int32),
        np.empty(n + 4, np.uint16),
    )


# ---------------------------------------------------------------- planes (encoder side)
@nb.njit(**_INLINE)
def _phase(t, E, O, Q, R):
    """Polyphase plane ``t`` (0: ee, 1: oo, 2: eo, 3: oe) and its row and column offsets."""
    X = E if t == 0 else (O if t == 1 else (Q if t == 2 else R))
    return X, t & 1, (t ^ (t >> 1)) & 1


@nb.njit(**_INLINE)
def _split(P, hk, wk, E, O, Q, R):
    """Polyphase split of level plane ``P`` (padded, valid ``hk × wk``) into padded planes
    (one loop over the four phases: one copy of the code)."""
    H = HALO
    for t in range(4):
        X, dy, dx = _phase(t, E, O, Q, R)
        n, m = (hk + 1 - dy) // 2, (wk + 1 - dx) // 2
        for i in range(n):
            for j in range(m):
                X[H + i, H + j] = P[H + 2 * i + dy, H + 2 * j + dx]
        _fill_halo(X, n, m)


@nb.njit(**_INLINE)
def build_planes(codes, K):
    """Level planes ``P_0..P_K`` (padded int16) and per level the padded oo/eo/oe planes.

    Returns ``(levels, stages)``: ``levels[k]`` is ``P_k``; ``stages[3k + s]`` the target
    plane of stage ``s`` at level ``k``.
    """
    h, w = codes.shape
    hs, ws = _sizes(h, w, K)
    H = HALO
    levels = []
    stages = []
    P = np.empty((h + 2 * H, w + 2 * H), np.int16)
    for i in range(h):
        for j in range(w):
            P[H + i, H + j] = codes[i, j]
    _fill_halo(P, h, w)
    levels.append(P)
    for k in range(K):
        hh, wh = hs[k + 1], ws[k + 1]
        E = np.empty((hh + 2 * H, wh + 2 * H), np.int16)
        O = np.empty_like(E)
        Q = np.empty_like(E)
        R = np.empty_like(E)
        _split(levels[k], hs[k], ws[k], E, O, Q, R)
        levels.append(E)
        stages.append(O)
        stages.append(Q)
        stages.append(R)
    return levels, stages


# ---------------------------------------------------------------- training (encoder)
N_MOM = 14  # distinct moments of (r1, r2, r3, 1) and the code: see `normal_equations`


@nb.njit(**_OPTS)
def train_tile(codes, K, acc, row_step=4, sparse=False):
    """Accumulate, per weight set, activity class and level value, the moments that make
    the normal equations of the ring predictor (features r1, r2, r3, 1 → code) over a
    sample of a tile's pixels: every row of the coarse levels, every ``⌈row_step / 2⌉``-th
    row of level 1 and every ``row_step``-th of level 0 (3 weights and a bias per class
    need far fewer samples; `stream` passes 8 for frames of more than 2 Mpx). ``sparse``
    halves the density of levels ≥ 1: every 2nd row of the coarse levels, every
    ``2⌈row_step / 2⌉``-th of level 1 (`stream`'s choice since format 5's session 9).

    ``acc`` (N_SETS, N_ACT_CLS, LVL_MAX + 1, N_MOM) int64, exact integer sums; the level
    classes are chosen afterwards (`level_thresholds`).
    """
    h, w = codes.shape
    hs, ws = _sizes(h, w, K)
    levels, stages = build_planes(codes, K)
    r1, r2, r3, al, base, ctx = _row_buffers(ws[0])
    u = acc.reshape(-1)  # flat, unsigned offsets: no per-pixel view, no wrap-around code
    for k in range(K):
        E = levels[k + 1]
        O, Q = stages[3 * k], stages[3 * k + 1]
        m0 = min(k, N_WEIGHT_LEVELS - 1) * N_STAGE
        rstep = row_step if k == 0 else ((row_step + 1) // 2 if k == 1 else 1) << int(sparse)
        for kind in range(N_STAGE):
            T = stages[3 * k + kind]
            n_r, n_c = _stage_rows(kind, hs[k], ws[k])
            m = m0 + kind
            for i in range(kind % rstep, n_r, rstep):
                _features(kind, i, n_c, E, O, Q, r1, r2, r3, al)
                a = i + HALO
                t = T[a, HALO:]
                for j in range(n_c):
                    v = U(al[j])
                    c = U(ACT_LUT[v >> U(8)] & 0xFF) // U(N_LVL_CLS)
                    b = ((U(m) * U(N_ACT_CLS) + c) * U(LVL_MAX + 1) + (v & U(0xFF))) * U(N_MOM)
                    f1, f2, f3 = np.int64(r1[j]), np.int64(r2[j]), np.int64(r3[j])
                    y = np.int64(t[j])
                    u[b] += f1 * f1
                    u[b + U(1)] += f1 * f2
                    u[b + U(2)] += f1 * f3
                    u[b + U(3)] += f1
                    u[b + U(4)] += f2 * f2
                    u[b + U(5)] += f2 * f3
                    u[b + U(6)] += f2
                    u[b + U(7)] += f3 * f3
                    u[b + U(8)] += f3
                    u[b + U(9)] += 1
                    u[b + U(10)] += y * f1
                    u[b + U(11)] += y * f2
                    u[b + U(12)] += y * f3
                    u[b + U(13)] += y


def new_moments() -> np.ndarray:
    """Zeroed accumulator of `train_tile`."""
    return np.zeros((N_SETS, N_ACT_CLS, LVL_MAX + 1, N_MOM), np.int64)


def normal_equations(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``AᵀA`` (…, N_W, N_W) and ``Aᵀy`` (…, N_W) float64 from `train_tile` moments."""
    m = acc.astype(np.float64)
    ata = np.empty(acc.shape[:-1] + (N_W, N_W))
    idx = [[0, 1, 2, 3], [1, 4, 5, 6], [2, 5, 7, 8], [3, 6, 8, 9]]
    for u in range(N_W):
        for v in range(N_W):
            ata[..., u, v] = m[..., idx[u][v]]
    return ata, m[..., 10:14].copy()


def level_thresholds(counts: np.ndarray) -> np.ndarray:
    """Level → class LUT (uint8, LVL_MAX + 1) with class boundaries at the octiles of the
    level distribution ``counts`` (per level value)."""
    return level_luts(np.asarray(counts)[None])[0]


def level_luts(counts: np.ndarray) -> np.ndarray:
    """`level_thresholds` of every row of ``counts`` (sets, LVL_MAX + 1) at once: the
    class of a level is the number of distinct octile edges at or below it (the same
    integers as a search per row, without a Python loop)."""
    cdf = np.cumsum(counts, axis=-1, dtype=np.float64)
    tot = cdf[:, -1:]
    thr = tot * np.arange(1, N_LVL_CLS) / N_LVL_CLS  # (sets, 7)
    # searchsorted(cdf, thr, "right"): the number of cdf values <= thr
    edges = np.clip((cdf[:, None, :] <= thr[:, :, None]).sum(-1), 1, LVL_MAX)
    new = np.ones(edges.shape, bool)  # edges ascend: the first of equal edges counts
    new[:, 1:] = edges[:, 1:] != edges[:, :-1]
    lvl = np.arange(LVL_MAX + 1)
    luts = ((edges[:, :, None] <= lvl) & new[:, :, None]).sum(1)
    luts[tot[:, 0] <= 0] = 0
    return luts.astype(np.uint8)


def _solve(ata: np.ndarray, aty: np.ndarray, fallback: np.ndarray, min_n: float) -> np.ndarray:
    """Batched ridge least squares (…, N_W) from normal equations; entries with fewer
    than ``min_n`` samples (or a singular system) take ``fallback``. `exactfit.solve4`:
    the operations of the C ``solve_weights``, so both give the same bits."""
    n = ata[..., -1, -1]
    ok = n > min_n
    ridge = np.eye(N_W) * 1e-3  # features only: positive definite whatever the data
    ridge[-1, -1] = 0.0
    safe = np.where(ok, n, 1.0)[..., None]
    m = np.where(ok[..., None, None], ata / safe[..., None] + ridge, np.eye(N_W))
    w = solve4(m, aty / safe)
    ok &= np.isfinite(w).all(-1)
    return np.where(ok[..., None], w, fallback)


def class_tables(luts: np.ndarray) -> np.ndarray:
    """Per weight set, for every ``activity << 8 | level``: ``4·class | context bucket << 8``
    (uint16, (N_SETS, (ACT_MAX + 1) · 256)): one lookup gives the weights' offset and the
    activity part of the context. The last few are kept (frames of one camera share
    their level classes; ≈ 0.5 ms each); the caller gets a writable copy."""
    luts = np.asarray(luts, np.int64)
    key = luts.tobytes() + bytes(str(luts.shape), "ascii")
    hit = _CLASS_TABLES.get(key)
    if hit is None:
        cls = (ACT_LUT[:, None] & 0xFF) + luts[:, None, :]  # (N_SETS, act, lvl)
        cx = (ACT_LUT >> 8)[None, :, None]
        hit = np.ascontiguousarray(((4 * cls) | (cx << 8)).reshape(len(luts), -1).astype(np.uint16))
        if len(_CLASS_TABLES) >= 8:
            _CLASS_TABLES.clear()  # atomic (threads)
        _CLASS_TABLES[key] = hit
    return hit.copy()


_CLASS_TABLES: dict[bytes, np.ndarray] = {}


def _class_moments(acc: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Moments (N_SETS, N_ACT_CLS, N_LVL_CLS, N_MOM) of each level class: the level
    moments summed over the levels ``luts`` maps to the class (exact for int64 moments;
    a level class is a run of levels, `level_thresholds`). One ``reduceat`` over the
    flattened (set, activity, level) axis: the global class index never decreases
    along it."""
    ns, na, nl, nm = acc.shape
    gidx = np.arange(ns * na)[:, None] * N_LVL_CLS + luts.astype(np.int64).repeat(na, 0)
    gidx = gidx.ravel()
    starts = np.flatnonzero(np.diff(gidx, prepend=-1))
    out = np.zeros((ns * na * N_LVL_CLS, nm), acc.dtype)
    out[gidx[starts]] = np.add.reduceat(acc.reshape(-1, nm), starts, axis=0)
    return out.reshape(ns, na, N_LVL_CLS, nm)


def solve_weights(acc: np.ndarray, class_moments=None) -> tuple[np.ndarray, np.ndarray]:
    """Level LUTs (N_SETS, LVL_MAX + 1) uint8 and fixed-point weights (N_SETS, N_CLASS ·
    N_W) int32 (per class: r1, r2, r3, bias) from the `train_tile` moments: least
    squares per class with a small ridge; classes with few samples take their set's
    pooled fit (or the mean of the nearest ring). The class fits and the pooled fits
    are one batched solve (`exactfit.solve4`: the same bits as the C kernel).
    ``class_moments(acc, luts, out)``: a kernel filling `_class_moments` (the C one of
    `ckernels`; None: numpy)."""
    acc = np.ascontiguousarray(acc, np.int64)
    luts = level_luts(acc[..., 9].sum(1))
    if class_moments is None:
        moments = _class_moments(acc, luts)
    else:
        moments = np.empty((N_SETS, N_ACT_CLS, N_LVL_CLS, N_MOM), np.int64)
        class_moments(acc, luts, moments)
    moments = moments.reshape(N_SETS, N_CLASS, N_MOM)
    # the pooled moments of each set: exact integer sums (then the order does not matter)
    moments = np.concatenate([moments, moments.sum(1, keepdims=True)], 1)
    ata, aty = normal_equations(moments)
    both = _solve(ata, aty, np.nan, 0.0)  # (N_SETS, N_CLASS + 1, N_W); NaN: no fit
    n = ata[..., -1, -1]
    default = np.array([0.25, 0.0, 0.0, 0.0])
    pooled = np.where(((n[:, -1] > 16 * N_W) & np.isfinite(both[:, -1]).all(-1))[:, None],
                      both[:, -1], default)  # fmt: skip
    ok = (n[:, :-1] > 32 * N_W) & np.isfinite(both[:, :-1]).all(-1)
    out = np.where(ok[..., None], both[:, :-1], pooled[:, None, :])
    # ring weights |w| <= 2, bias |b| <= 4096 codes: with codes <= MAX_CODE every
    # product and the prediction stay inside int32 (ring sums <= 8 · MAX_CODE < 2**15)
    out[..., :-1] = np.clip(out[..., :-1], -2.0, 2.0)
    out[..., -1] = np.clip(out[..., -1], -4096.0, 4096.0)
    wq = np.rint(out * (1 << WB)).astype(np.int32)
    return luts, np.ascontiguousarray(wq.reshape(N_SETS, N_CLASS * N_W))


# ---------------------------------------------------------------- symbols (encoder)
@nb.njit(**_INLINE)
def _med(P, i, j):
    """Median-edge prediction of ``P[i, j]`` (padded coordinates) from W, N, NW."""
    H = HALO
    if i == H and j == H:
        return np.int64(0)
    if i == H:
        return np.int64(P[i, j - 1])
    if j == H:
        return np.int64(P[i - 1, j])
    a = np.int64(P[i, j - 1])
    b = np.int64(P[i - 1, j])
    c = np.int64(P[i - 1, j - 1])
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


@nb.njit(**_INLINE)
def _symbol(c, base):
    r = c - base
    if -RMAX <= r < RMAX:
        return r + RMAX
    return ESC


LANE_SHIFT = 14  # `model_tile` packs the rANS lane of a symbol above its context
assert N_CTX_ALL < 1 << LANE_SHIFT and LANES <= 4


@nb.njit(**_OPTS)
def model_tile(codes, K, wts, cts, syms, ctxs, esc, hist):
    """Symbols of a tile in decoding order, their global contexts with the rANS lane in
    the top bits (``ctx | lane << LANE_SHIFT``), the escaped codes (returned count) and
    the per-context histogram ``hist`` (N_CTX_ALL · N_SYM, flat int64)."""
    h, w = codes.shape
    hs, ws = _sizes(h, w, K)
    levels, stages = build_planes(codes, K)
    H = HALO
    t = 0
    n_esc = 0
    # top plane: median-edge prediction, group 0 context 0
    P = levels[K]
    for i in range(hs[K]):
        for j in range(ws[K]):
            c = np.int64(P[H + i, H + j])
            s = _symbol(c, _med(P, H + i, H + j))
            if s == ESC:
                esc[n_esc] = c
                n_esc += 1
            syms[t] = s
            ctxs[t] = (j & 3) << LANE_SHIFT
            hist[s] += 1
            t += 1
    r1, r2, r3, al, base, ctx = _row_buffers(ws[0])
    for k in range(K - 1, -1, -1):
        E = levels[k + 1]
        O, Q = stages[3 * k], stages[3 * k + 1]
        st = min(k, N_LEVEL_GROUPS - 1) * N_STAGE
        m0 = min(k, N_WEIGHT_LEVELS - 1) * N_STAGE
        for kind in range(N_STAGE):
            T = stages[3 * k + kind]
            n_r, n_c = _stage_rows(kind, hs[k], ws[k])
            g0 = (1 + st + kind) * N_CTX
            for i in range(n_r):
                _features(kind, i, n_c, E, O, Q, r1, r2, r3, al)
                _classify(n_c, wts[m0 + kind], cts[m0 + kind], U(g0), r1, r2, r3, al, base, ctx)
                trow = T[H + i, H:]
                for j in range(n_c):
                    c = np.int64(trow[j])
                    s = _symbol(c, np.int64(base[j]))
                    if s == ESC:
                        esc[n_esc] = c
                        n_esc += 1
                    g = U(ctx[j])
                    syms[t] = s
                    ctxs[t] = g | (U(j & 3) << U(LANE_SHIFT))
                    hist[g * U(N_SYM) + U(s)] += 1
                    t += 1
    return n_esc


# ---------------------------------------------------------------- tables
def normalise(counts: np.ndarray) -> np.ndarray:
    """Frequencies per context summing to `TAB`, ≥ 1 for every symbol seen (int64)."""
    return normalise_counts(np.ascontiguousarray(counts, np.int64), TAB)


def _code_bits(counts: np.ndarray) -> np.ndarray:
    """Bits to code each row of ``counts`` (…, N_SYM) with its own empirical distribution,
    plus ~9 bits per used symbol and 16 per used table for sending the table:
    ``T·log2 T − Σ c·log2 c`` (``T`` the row's total), in fixed point (int64, units of
    2^-`exactfit.XL_F` bits: integer sums, the C kernel's choices)."""
    tot = counts.sum(-1)
    data = xlog2x(tot) - xlog2x(counts).sum(-1)
    return data + ((9 * (counts > 0).sum(-1) + 16 * (tot > 0)) << XL_F)


def choose_contexts(hist: np.ndarray) -> np.ndarray:
    """Context map (N_CTX_ALL,) int64: logical context → physical table.

    Per group and activity bucket, the fraction bins are merged into 8, 4, 2 or 1
    tables, whichever codes the histogram plus its tables in the fewest bits (a small
    image cannot pay for 96 tables per group; a large one gains from all of them; costs
    in fixed point, ties to the fewest tables). Contexts that no pixel used share one
    table. Physical tables are numbered in order of their first logical context.
    """
    hist = np.asarray(hist, np.int64)
    merged = hist.reshape(N_GROUPS, N_FRAC, N_ACT_CTX, N_SYM).transpose(0, 2, 1, 3)
    costs = [np.zeros(merged.shape[:2], np.int64)] * (FRAC_BITS + 1)
    for m in range(FRAC_BITS, -1, -1):  # 2**m tables of N_FRAC >> m fraction bins each
        costs[m] = _code_bits(merged).sum(-1)
        if m:  # neighbouring tables merged (exact integer sums)
            merged = merged[:, :, 0::2] + merged[:, :, 1::2]
    best = np.argmin(np.stack(costs), 0)  # (N_GROUPS, N_ACT_CTX); ties: fewest tables
    width = (N_FRAC >> best)[:, None, :]  # (N_GROUPS, 1, N_ACT_CTX)
    logical = np.arange(N_CTX_ALL).reshape(N_GROUPS, N_FRAC, N_ACT_CTX)
    f = np.arange(N_FRAC)[None, :, None]
    target = (logical - f * N_ACT_CTX + (f // width) * width * N_ACT_CTX).ravel()
    # contexts never used share one table
    per_target = np.bincount(target, weights=hist.sum(1), minlength=N_CTX_ALL)
    empty = per_target[target] == 0
    if empty.any():
        target[empty] = target[np.flatnonzero(empty)[0]]
    _, remap = np.unique(target, return_inverse=True)
    return remap.astype(np.int64)


def encoder_tables(hist: np.ndarray) -> tuple[np.ndarray, ...]:
    """The encoder's tables from the frame's histogram ``hist`` (N_CTX_ALL, N_SYM): the
    context map (`choose_contexts`), the physical tables (normalised counts, one row
    per table: the stream's ``freq`` section) and per logical context their frequencies
    and cumulative frequencies (int64, what the rANS encoders take). The C kernel
    ``_ckernels.encoder_tables`` gives the same integers."""
    hist = np.asarray(hist, np.int64)
    remap = choose_contexts(hist)
    # physical table counts: the logical contexts' histograms summed (int64, exact)
    order = np.argsort(remap, kind="stable")
    starts = np.flatnonzero(np.diff(remap[order], prepend=-1))
    phys = normalise(np.add.reduceat(hist[order], starts, axis=0))
    freq = phys[remap]
    return remap, phys, freq, cumulative(freq)


def cumulative(freq: np.ndarray) -> np.ndarray:
    """Start of each symbol's slot range per context (exclusive cumulative sum)."""
    cum = np.zeros_like(freq)
    cum[:, 1:] = np.cumsum(freq, axis=1)[:, :-1]
    return cum


def decode_table(
    freq: np.ndarray, remap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decoding tables of the physical contexts ``freq`` (rows summing to `TAB`): the
    symbol of each slot (uint8, 1 KB per table), per table and symbol ``freq << 16 |
    cum`` (uint32, 64 per table), and the logical → physical context map (uint16;
    identity without ``remap``). Indexing by physical table keeps a group's merged
    tables small enough for L1/L2 (-8 % decode time against one table per logical
    context)."""
    freq = np.ascontiguousarray(freq, np.int64)
    n, m = freq.shape
    if (freq < 0).any() or (freq.sum(1) != TAB).any():
        raise ValueError("decode_table: every row must be >= 0 and sum to TAB")
    # rows of TAB slots each: the symbols repeated by their frequencies, back to back
    lut = np.repeat(np.tile(np.arange(m, dtype=np.uint8), n), freq.ravel())
    fc = np.zeros((n, 64), np.uint32)
    fc[:, :m] = (freq << 16) | cumulative(freq)
    fc = fc.ravel()
    if remap is None:
        remap = np.arange(freq.shape[0])
    return lut, fc, np.ascontiguousarray(remap, np.uint16)


@nb.njit(**_OPTS)
def rans_encode(syms, ctxs, freq, cum, out, lens):
    """rANS of symbols in decoding order (contexts and lanes packed as by `model_tile`)
    with `LANES` states, each with its own stream of uint16 words. ``out`` (LANES,
    capacity) receives the streams in the order the decoder reads them, ``lens`` their
    lengths."""
    xs = np.empty(LANES, np.int64)
    for ln in range(LANES):
        xs[ln] = RANS_L
        lens[ln] = 0
    inv = np.empty(freq.shape, np.float64)  # explicit loops: no array-expression code
    for c in range(freq.shape[0]):
        for s in range(freq.shape[1]):
            inv[c, s] = 1.0 / np.float64(max(freq[c, s], 1))
    for t in range(syms.shape[0] - 1, -1, -1):
        ln = ctxs[t] >> LANE_SHIFT
        g = ctxs[t] & ((1 << LANE_SHIFT) - 1)
        s = syms[t]
        f = np.int64(freq[g, s])
        x = xs[ln]
        if x >= (f << (32 - TAB_BITS)):
            out[ln, lens[ln]] = np.uint16(x & 0xFFFF)
            lens[ln] += 1
            x >>= 16
        # x // f through the reciprocal (x < 2**32: off by at most one, corrected)
        q = np.int64(np.float64(x) * inv[g, s])
        r = x - q * f
        if r < 0:
            q -= 1
            r += f
        elif r >= f:
            q += 1
            r -= f
        xs[ln] = (q << TAB_BITS) + r + np.int64(cum[g, s])
    for ln in range(LANES):
        m = lens[ln]
        out[ln, m] = np.uint16(xs[ln] & 0xFFFF)
        out[ln, m + 1] = np.uint16(xs[ln] >> 16)
        m += 2
        lens[ln] = m
        for a in range(m // 2):
            tmp = out[ln, a]
            out[ln, a] = out[ln, m - 1 - a]
            out[ln, m - 1 - a] = tmp


# ---------------------------------------------------------------- decoder
# Index arithmetic is unsigned (np.uint64 throughout): numba then emits no negative-index
# wrap-around, which otherwise sits on the rANS dependency chain.


@nb.njit(**_INLINE)
def _dec(x, g, words, q, tab):
    """One rANS step of state ``x`` in physical context ``g`` reading its stream at
    ``q`` (``tab``: `decode_table`)."""
    lut, fc, _ = tab
    slot = x & U(TAB - 1)
    s = U(lut[(g << U(TAB_BITS)) + slot])
    e = U(fc[(g << U(6)) + s])
    x = (e >> U(16)) * (x >> U(TAB_BITS)) + slot - (e & U(0xFFFF))
    need = U(x < U(RANS_L))  # renormalise without a branch: it is taken at random
    x = (x << (need << U(4))) | (U(words[q]) & (U(0) - need))
    return x, q + need, np.uint8(s)


@nb.njit(**_INLINE)
def _put(T, a, b, s, p, esc, ne, eend):
    """Code of a decoded symbol into ``T[a, b]``; returns the escape position."""
    if s == ESC:
        c = esc[ne] if ne < eend else 0
        ne += 1
    else:
        c = (p >> WB) + s - RMAX
    T[a, b] = c
    return ne


@nb.njit(**_INLINE)
def _ppc(j, wt, ct, g0, r1, r2, r3, al, rm):
    """`_pc` with the physical context (``rm``: logical → physical table)."""
    b, g = _pc(j, wt, ct, g0, r1, r2, r3, al)
    return b, U(rm[g])


@nb.njit(**_INLINE)
def _decode_row(n, wt, ct, g0, r1, r2, r3, al, base, sym, x0, x1, x2, x3, q0, q1,
                q2, q3, words, tab):  # fmt: skip
    """Prediction floors (``base``) and symbols (``sym``) of one row; pixel ``j`` uses
    state ``j & 3``. The prediction of the next pixels is independent work the CPU
    overlaps with the rANS dependency chains. Returns the states and stream positions."""
    m = n - (n & 3)  # whole groups of 4 (`range`: j typed int64, one specialisation)
    for j in range(0, m, 4):
        b0, c0 = _ppc(j, wt, ct, g0, r1, r2, r3, al, tab[2])
        b1, c1 = _ppc(j + 1, wt, ct, g0, r1, r2, r3, al, tab[2])
        b2, c2 = _ppc(j + 2, wt, ct, g0, r1, r2, r3, al, tab[2])
        b3, c3 = _ppc(j + 3, wt, ct, g0, r1, r2, r3, al, tab[2])
        x0, q0, s0 = _dec(x0, c0, words, q0, tab)
        x1, q1, s1 = _dec(x1, c1, words, q1, tab)
        x2, q2, s2 = _dec(x2, c2, words, q2, tab)
        x3, q3, s3 = _dec(x3, c3, words, q3, tab)
        sym[j] = s0
        sym[j + 1] = s1
        sym[j + 2] = s2
        sym[j + 3] = s3
        base[j] = b0
        base[j + 1] = b1
        base[j + 2] = b2
        base[j + 3] = b3
    j = m
    if j < n:
        b0, c0 = _ppc(j, wt, ct, g0, r1, r2, r3, al, tab[2])
        x0, q0, s0 = _dec(x0, c0, words, q0, tab)
        sym[j] = s0
        base[j] = b0
    if j + 1 < n:
        b1, c1 = _ppc(j + 1, wt, ct, g0, r1, r2, r3, al, tab[2])
        x1, q1, s1 = _dec(x1, c1, words, q1, tab)
        sym[j + 1] = s1
        base[j + 1] = b1
    if j + 2 < n:
        b2, c2 = _ppc(j + 2, wt, ct, g0, r1, r2, r3, al, tab[2])
        x2, q2, s2 = _dec(x2, c2, words, q2, tab)
        sym[j + 2] = s2
        base[j + 2] = b2
    return x0, x1, x2, x3, q0, q1, q2, q3


@nb.njit(**_INLINE)
def _interleave(A, B, i, ca, cb, kbuf):
    """Row ``i`` of padded planes ``A`` (even columns, ``ca`` of them) and ``B`` (odd
    columns, ``cb``) interleaved into ``kbuf``."""
    a = i + HALO
    for j in range(ca):
        kbuf[2 * j] = A[a, HALO + j]
    for j in range(cb):
        kbuf[2 * j + 1] = B[a, HALO + j]


@nb.njit(**_INLINE)
def _dequantise(kbuf, y, out, dq):
    """Dequantise the codes ``kbuf`` of output row ``y`` into ``out[y]``; ``dq`` = (off,
    gain, recon, step, c0, dither, seed, index0, max_adu, analytic, kp) as in
    `kernels.dequantise_tile` (``off``/``gain``: the tile's maps)."""
    off, gain, recon, step, c0, dither, seed, index0, max_adu, analytic, kp = dq
    w = out.shape[1]
    dequantise_row(kbuf, off[y], gain[y], out[y], recon, step, c0, dither, seed,
                   index0 + y * w, max_adu, analytic, kp)  # fmt: skip


@nb.njit(**_INLINE)
def _merge_level(E, O, Q, R, hk, wk):
    """The padded level plane ``P_k`` (``hk`` × ``wk``) interleaved from its four
    polyphase planes."""
    H = HALO
    P = np.empty((hk + 2 * H, wk + 2 * H), np.int16)
    for t in range(4):
        X, dy, dx = _phase(t, E, O, Q, R)
        for i in range((hk + 1 - dy) // 2):
            for j in range((wk + 1 - dx) // 2):
                P[H + 2 * i + dy, H + 2 * j + dx] = X[H + i, H + j]
    _fill_halo(P, hk, wk)
    return P


@nb.njit(**_INLINE)
def _write_rows(P, K, E, O, Q, R, out, dq):
    """The tile's output, dequantised row by row: the top plane ``P`` itself (``K`` = 0:
    a tile of at most TOP_ROWS rows) or the level-0 planes interleaved."""
    h, w = out.shape
    kbuf = np.empty(w, np.int32)
    for y in range(h):
        if K == 0:
            for j in range(w):
                kbuf[j] = P[HALO + y, HALO + j]
        else:
            _interleave(R if y & 1 else E, O if y & 1 else Q, y >> 1, (w + 1) // 2, w // 2, kbuf)
        _dequantise(kbuf, y, out, dq)


@nb.njit(**_OPTS)
def decode_tile(words, starts, ends, esc, ebeg, eend, wts, cts, tab, out, dq):
    """Decode one tile and dequantise it into ``out`` (h, w) uint16 (``dq``: `_dequantise`).

    Lane ``l`` reads ``words[starts[l]:ends[l]]``; ``words`` must extend at least ``w``
    zero words past the last end (rows are decoded without bounds checks, positions are
    checked after each row). Returns ``(ok, ne)``: whether every lane ended exactly at
    its end, and the escape position reached (compare with ``eend``).
    """
    h, w = out.shape
    K = n_levels(h, w)
    hs, ws = _sizes(h, w, K)
    H = HALO
    ne = ebeg
    for ln in range(LANES):
        if ends[ln] - starts[ln] < 2:
            return False, ne
    # states and stream positions of the lanes: arrays for the top plane (one inlined
    # rANS step instead of one per lane), scalars in the rows below
    xs = np.empty(LANES, np.uint64)
    qs = np.empty(LANES, np.uint64)
    for ln in range(LANES):
        q = U(starts[ln])
        xs[ln] = (U(words[q]) << U(16)) | U(words[q + U(1)])
        qs[ln] = q + U(2)
    e0, e1, e2, e3 = U(ends[0]), U(ends[1]), U(ends[2]), U(ends[3])
    g = U(tab[2][0])
    # top plane, serial
    P = np.empty((hs[K] + 2 * H, ws[K] + 2 * H), np.int16)
    for i in range(hs[K]):
        for j in range(ws[K]):
            ln = j & 3
            xs[ln], qs[ln], s = _dec(xs[ln], g, words, qs[ln], tab)
            p = _med(P, H + i, H + j) << WB
            ne = _put(P, H + i, H + j, s, p, esc, ne, eend)
        if qs[0] > e0 or qs[1] > e1 or qs[2] > e2 or qs[3] > e3:
            return False, ne
    _fill_halo(P, hs[K], ws[K])
    x0, x1, x2, x3 = xs[0], xs[1], xs[2], xs[3]
    q0, q1, q2, q3 = qs[0], qs[1], qs[2], qs[3]
    r1, r2, r3, al, base, ctx = _row_buffers(ws[0])
    sym = np.empty(ws[0] + 4, np.uint8)
    E = O = Q = R = P
    for k in range(K - 1, -1, -1):
        E = P
        hh, wh = hs[k + 1], ws[k + 1]
        O = np.empty((hh + 2 * H, wh + 2 * H), np.int16)
        Q = np.empty_like(O)
        R = np.empty_like(O)
        st = min(k, N_LEVEL_GROUPS - 1) * N_STAGE
        m0 = min(k, N_WEIGHT_LEVELS - 1) * N_STAGE
        for kind in range(N_STAGE):
            T = O if kind == 0 else (Q if kind == 1 else R)
            n_r, n_c = _stage_rows(kind, hs[k], ws[k])
            g0 = (1 + st + kind) * N_CTX
            for i in range(n_r):
                _features(kind, i, n_c, E, O, Q, r1, r2, r3, al)
                x0, x1, x2, x3, q0, q1, q2, q3 = _decode_row(
                    n_c, wts[m0 + kind], cts[m0 + kind], U(g0), r1, r2, r3, al, base, sym,
                    x0, x1, x2, x3, q0, q1, q2, q3, words, tab,
                )  # fmt: skip
                if q0 > e0 or q1 > e1 or q2 > e2 or q3 > e3:
                    return False, ne
                a = i + H
                n_esc = 0
                for j in range(n_c):
                    s = np.int64(sym[j])
                    T[a, j + H] = base[j] + s - RMAX
                    n_esc += s == ESC
                if n_esc:
                    for j in range(n_c):
                        if sym[j] == ESC:
                            T[a, j + H] = esc[ne] if ne < eend else 0
                            ne += 1
            _fill_halo(T, n_r, n_c)
        # interleave into the level plane (P_0, the output, below)
        if k > 0:
            P = _merge_level(E, O, Q, R, hs[k], ws[k])
    _write_rows(P, K, E, O, Q, R, out, dq)
    ok = q0 == e0 and q1 == e1 and q2 == e2 and q3 == e3
    return ok, ne
