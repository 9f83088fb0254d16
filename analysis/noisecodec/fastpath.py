"""The ``effort="fast"`` back end of the noise codec: cheap prediction, lane-parallel decoding.

Same tile layout, ring buffer, contexts and static rANS tables as `kernels` (the default
``effort="best"`` back end), but the predictor is ONE least-squares linear predictor over
six causal neighbours (W, N, NW, NE, WW, NN; fitted per stream, fixed point): the part
from the rows above is a constant-weight dot product that vectorises, and the serial
part per pixel is two multiply-adds. The decoder runs up to `LANES` tiles of equal shape
in lock-step in one loop, so the latency chains (prediction → context → rANS → code) of
independent tiles overlap in the CPU instead of running one after the other.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

from . import kernels as K
from .kernels import (
    ESC,
    N_SYM,
    NO_KNEE,
    PAD,
    RANS_L,
    RMAX,
    SCALE,
    SCALE_BITS,
    WBITS,
    _close_row,
    _context,
    _open_row,
    _push_row,
    _rans_init,
    _row_bases,
)

# taps: W, N, NW, NE, WW, NN, then the bias
N_TAP = 6
LANES = 4
# compiled kernels are cached per machine (`jitcache`), keyed by these modules' contents
jitcache.install()
_OPTS = dict(nogil=True, cache=True)


@nb.njit(**_OPTS)
def _prep(B, c1, c2, w, wt, q, aup):
    """Vectorisable part of one row: rows-above prediction and context activity."""
    wn, wnw, wne, wnn, b = wt[1], wt[2], wt[3], wt[5], wt[6]
    for i in range(w):
        x = i + PAD
        nv = np.int64(B[c1 + x])
        nw = np.int64(B[c1 + x - 1])
        ne = np.int64(B[c1 + x + 1])
        nn = np.int64(B[c2 + x])
        q[i] = b + wn * nv + wnw * nw + wne * ne + wnn * nn
        aup[i] = (
            abs(nv - nw)
            + abs(nv - ne)
            + abs(nv - nn)
            + abs(nw - np.int64(B[c2 + x - 1]))
            + abs(ne - np.int64(B[c2 + x + 1]))
        )


@nb.njit(**_OPTS)
def train_tile(codes, B, row_step, col_step, feats, target):
    """Training samples (6 taps → code) on every ``row_step``-th row and ``col_step``-th
    column of a tile; returns their number (``feats`` (n, 6) float64, ``target`` (n,))."""
    h, w = codes.shape
    stride = w + 2 * PAD
    n = 0
    cap = feats.shape[0]
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        _push_row(B, c0, c1, codes, y)
        if y < PAD or (y % row_step) != 1:
            continue
        for i in range(y % col_step, w, col_step):
            if n >= cap:
                return n
            x = i + PAD
            feats[n, 0] = B[c0 + x - 1]
            feats[n, 1] = B[c1 + x]
            feats[n, 2] = B[c1 + x - 1]
            feats[n, 3] = B[c1 + x + 1]
            feats[n, 4] = B[c0 + x - 2]
            feats[n, 5] = B[c2 + x]
            target[n] = codes[y, i]
            n += 1
    return n


def solve_weights(feats: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares weights (6 taps + bias), fixed point int32 (``WBITS`` fraction bits)."""
    default = np.array([0.75, 0.75, -0.5, 0.0, 0.0, 0.0, 0.0])
    if feats.shape[0] < 64:
        w = default
    else:
        a = np.empty((feats.shape[0], N_TAP + 1))
        a[:, :N_TAP] = feats
        a[:, N_TAP] = 1.0
        ata = a.T @ a / a.shape[0]
        ridge = np.eye(N_TAP + 1) * 1e-3
        ridge[-1, -1] = 0.0
        w = np.linalg.solve(ata + ridge, a.T @ target / a.shape[0])
    # bias and the 0.5 of rounding: the code is floor(p) + residual
    return np.rint(w * (1 << WBITS)).astype(np.int32)


@nb.njit(**_OPTS)
def model_tile(codes, B, wt, act_ctx, syms, ctxs, esc, hist):
    """Encoder pass 1 of a tile: symbols, contexts, escapes (returned count) and the
    per-context histogram ``hist`` (N_CTX · N_SYM, flat int64)."""
    h, w = codes.shape
    nh = hist.shape[0]
    sub = np.zeros(4 * nh, np.int64)  # 4 histograms: no store-to-load chain on one bin
    stride = w + 2 * PAD
    n_esc = 0
    q = np.empty(w, np.int64)
    aup = np.empty(w, np.int64)
    ww_, www = np.int64(wt[0]), np.int64(wt[4])
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        _push_row(B, c0, c1, codes, y)
        _prep(B, c1, c2, w, wt, q, aup)
        for i in range(w):
            x = i + PAD
            wv = np.int64(B[c0 + x - 1])
            wwv = np.int64(B[c0 + x - 2])
            p = q[i] + ww_ * wv + www * wwv
            act = aup[i] + abs(wv - np.int64(B[c1 + x - 1])) + abs(wv - wwv)
            ctx = _context(p, act, act_ctx)
            c = np.int64(codes[y, i])
            r = c - (p >> WBITS)
            if -RMAX <= r < RMAX:
                s = r + RMAX
            else:
                s = ESC
                esc[n_esc] = c
                n_esc += 1
            syms[y, i] = s
            ctxs[y, i] = ctx
            sub[(i & 3) * nh + ctx * N_SYM + s] += 1
    for j in range(nh):
        hist[j] += sub[j] + sub[nh + j] + sub[2 * nh + j] + sub[3 * nh + j]
    return n_esc


@nb.njit(**_OPTS)
def decode_lanes(words, wbeg, wend, esc, ebeg, eend, B, wt, act_ctx, freq, cum, lut, codes):
    """Decode ``L`` tiles of the same shape in lock-step.

    ``words[wbeg[l]:wend[l]]`` and ``esc[ebeg[l]:eend[l]]`` are lane ``l``'s rANS words and
    escapes, ``B`` (L, ring) its ring buffer (from `kernels.new_ring`), ``codes`` (L, h, w)
    int32 the output. Returns per lane the words and escapes consumed (``pos``, ``ne``:
    absolute indices, checked by the caller against ``wend``/``eend``).
    """
    L, h, w = codes.shape
    stride = w + 2 * PAD
    mask = np.uint64(SCALE - 1)
    xs, pos = _rans_init(words, wbeg, wend)
    ne = ebeg.copy()
    q = np.empty((L, w), np.int64)
    aup = np.empty((L, w), np.int64)
    ww_, www = np.int64(wt[0]), np.int64(wt[4])
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        for lane in range(L):
            Bl = B[lane]
            _open_row(Bl, c0, c1)
            _prep(Bl, c1, c2, w, wt, q[lane], aup[lane])
        for i in range(w):
            x = i + PAD
            for lane in range(L):
                wv = np.int64(B[lane, c0 + x - 1])
                wwv = np.int64(B[lane, c0 + x - 2])
                p = q[lane, i] + ww_ * wv + www * wwv
                act = aup[lane, i] + abs(wv - np.int64(B[lane, c1 + x - 1])) + abs(wv - wwv)
                ctx = _context(p, act, act_ctx)
                st = xs[lane]
                slot = st & mask
                s = lut[ctx, slot]
                st = (
                    np.uint64(freq[ctx, s]) * (st >> np.uint64(SCALE_BITS))
                    + slot
                    - np.uint64(cum[ctx, s])
                )
                if st < np.uint64(RANS_L):
                    pp = pos[lane]
                    if pp < wend[lane]:
                        st = (st << np.uint64(16)) | np.uint64(words[pp])
                    pos[lane] = pp + 1
                xs[lane] = st
                if s == ESC:
                    k = ne[lane]
                    c = esc[k] if k < eend[lane] else 0
                    ne[lane] = k + 1
                else:
                    c = (p >> WBITS) + s - RMAX
                B[lane, c0 + x] = c
                codes[lane, y, i] = c
        for lane in range(L):
            _close_row(B[lane], c0, w)
    return pos, ne


def lane_groups(jobs: list, height) -> list[list]:
    """Consecutive jobs of equal ``height(job)`` in groups of at most `LANES`."""
    groups: list[list] = []
    for job in jobs:
        g = groups[-1] if groups else None
        if g is not None and len(g) < LANES and height(g[0]) == height(job):
            g.append(job)
        else:
            groups.append([job])
    return groups


# ---------------------------------------------------------------- encoder helpers
@nb.njit(**_OPTS)
def quantise_round(x, off, gain, codes, inv_step, c0, kp=NO_KNEE):
    """``code = round(2·sqrt(e + c0) / S)`` with ``e = (x − off)/gain`` for one tile (the
    round mode of `kernels.quantise_tile`, branch-free float32 so it vectorises); returns
    the largest code. With a knee ``kp`` (format 4, `kernels.vst`) the transform is
    linear below ``v = kp[0]`` and the codes are shifted by ``kp[3]``."""
    h, w = x.shape
    a = np.float32(2.0 * inv_step)
    cc = np.float32(c0)
    top = 0
    if kp[0] == 0.0:
        for y in range(h):
            for i in range(w):
                v = (np.float32(x[y, i]) - off[y, i]) / gain[y, i] + cc
                v = max(v, np.float32(0.0))
                k = np.int32(np.sqrt(v) * a + np.float32(0.5))
                codes[y, i] = k
                top = max(top, k)
        return top
    vk = np.float32(kp[0])
    tk = np.float32(kp[1] * inv_step)
    sk = np.float32(kp[2] * inv_step)
    sh = np.float32(kp[3] + 0.5)
    for y in range(h):
        for i in range(w):
            v = (np.float32(x[y, i]) - off[y, i]) / gain[y, i] + cc
            lin = tk + (v - vk) * sk
            q = np.sqrt(max(v, vk)) * a
            k = np.int32(np.floor((q if v >= vk else lin) + sh))
            codes[y, i] = k
            top = max(top, k)
    return top


@nb.njit(**_OPTS)
def decode_lanes_best(
    words, wbeg, wend, esc, ebeg, eend, B, wf, bias, act_cls, act_ctx, lvl_cls, freq, cum, lut,
    codes,
):  # fmt: skip
    """Decoder of the 18-tap ``effort="best"`` back end (`kernels.model_tile` inverted) for
    ``L`` tiles of the same shape in lock-step; arguments and return as in `decode_lanes`."""
    L, h, w = codes.shape
    stride = w + 2 * PAD
    mask = np.uint64(SCALE - 1)
    xs, pos = _rans_init(words, wbeg, wend)
    ne = ebeg.copy()
    cls = np.empty((L, w), np.uint8)
    q = np.empty((L, w), np.int64)
    aup = np.empty((L, w), np.int64)
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        for lane in range(L):
            Bl = B[lane]
            _open_row(Bl, c0, c1)
            K._row_prep(Bl, c1, c2, c3, w, wf, bias, act_cls, lvl_cls, cls[lane], q[lane],
                        aup[lane])  # fmt: skip
        for i in range(w):
            x = i + PAD
            for lane in range(L):
                wv = np.int64(B[lane, c0 + x - 1])
                wwv = np.int64(B[lane, c0 + x - 2])
                o = np.int64(cls[lane, i]) * K.N_NB
                p = (
                    q[lane, i]
                    + wf[o] * wv
                    + wf[o + 4] * wwv
                    + wf[o + 12] * np.int64(B[lane, c0 + x - 3])
                )
                act = aup[lane, i] + abs(wv - np.int64(B[lane, c1 + x - 1])) + abs(wv - wwv)
                ctx = _context(p, act, act_ctx)
                st = xs[lane]
                slot = st & mask
                s = lut[ctx, slot]
                st = (
                    np.uint64(freq[ctx, s]) * (st >> np.uint64(SCALE_BITS))
                    + slot
                    - np.uint64(cum[ctx, s])
                )
                if st < np.uint64(RANS_L):
                    pp = pos[lane]
                    if pp < wend[lane]:
                        st = (st << np.uint64(16)) | np.uint64(words[pp])
                    pos[lane] = pp + 1
                xs[lane] = st
                if s == ESC:
                    k = ne[lane]
                    c = esc[k] if k < eend[lane] else 0
                    ne[lane] = k + 1
                else:
                    c = (p >> WBITS) + s - RMAX
                B[lane, c0 + x] = c
                codes[lane, y, i] = c
        for lane in range(L):
            _close_row(B[lane], c0, w)
    return pos, ne
