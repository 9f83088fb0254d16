"""Format 5 of the ``"pyramid"`` back end: `WL` rANS states in one word stream.

Formats 3 and 4 (`pyramid.rans_encode`, `pyramid.decode_tile`) give pixel ``j`` of a row
to state ``j & 3`` and each of the 4 states its own stream of words. Format 5 gives
symbol ``t`` of the tile (in decoding order) to state ``t % WL`` (16 states) and writes
one stream: the 16 initial states (2 words each, high word first), then the states'
renormalisation words in the order of the symbols that read them. The C decoder steps 16
consecutive symbols at once (two AVX2 vectors of 8 states: 16 dependency chains overlap,
`_ckernels.c` ``rans_row_avx2``); prediction, contexts, tables, escapes and pixels are
those of formats 3–4 (the same codes give the same pixels). These numba kernels are the
reference and the fallback of the C ones (`ckernels`).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .kernels import ESC, RMAX
from .pyramid import (
    _INLINE,
    HALO,
    LANE_SHIFT,
    N_CTX,
    N_LEVEL_GROUPS,
    N_STAGE,
    N_WEIGHT_LEVELS,
    TAB_BITS,
    WB,
    WL,
    U,
    _dec,
    _features,
    _fill_halo,
    _med,
    _merge_level,
    _ppc,
    _put,
    _row_buffers,
    _sizes,
    _stage_rows,
    _write_rows,
    n_levels,
)

__all__ = ["rans_encode16", "decode_tile16"]


@nb.njit(nogil=True, cache=True)  # pyramid._OPTS
def rans_encode16(syms, ctxs, freq, cum, out):
    """Format 5 rANS coding of the symbols of a tile in decoding order.

    Contexts as for `pyramid.rans_encode` (their lane bits ignored). The stream goes to
    ``out[:n]``; returns ``n``, or -1 if ``out`` is too small.
    """
    xs = np.empty(WL, np.int64)
    for ln in range(WL):
        xs[ln] = 1 << 16
    pos = out.shape[0]  # words written backwards from the end
    for t in range(syms.shape[0] - 1, -1, -1):
        ln = t & (WL - 1)
        g = np.int64(ctxs[t]) & ((1 << LANE_SHIFT) - 1)
        s = np.int64(syms[t])
        f = np.int64(freq[g, s])
        x = xs[ln]
        if x >= (f << (32 - TAB_BITS)):
            if pos <= 2 * WL:
                return -1
            pos -= 1
            out[pos] = np.uint16(x & 0xFFFF)
            x >>= 16
        xs[ln] = ((x // f) << TAB_BITS) + x % f + np.int64(cum[g, s])
    for ln in range(WL - 1, -1, -1):
        out[pos - 1] = np.uint16(xs[ln] & 0xFFFF)
        out[pos - 2] = np.uint16(xs[ln] >> 16)
        pos -= 2
    n = out.shape[0] - pos
    for i in range(n):
        out[i] = out[pos + i]
    return n


@nb.njit(**_INLINE)
def _step(xs, t, g, words, q, tab):
    """One rANS step of symbol ``t`` (state ``t % WL``) in physical context ``g``."""
    ln = t & (WL - 1)
    x, q, s = _dec(xs[ln], g, words, q, tab)
    xs[ln] = x
    return q, s


@nb.njit(**_INLINE)
def _top16(P, hK, wK, xs, q, qe, words, tab, esc, ne, eend):
    """The top plane (median-edge prediction, context 0); returns (q, t, ne, ok)."""
    H = HALO
    g = U(tab[2][0])
    t = 0
    for i in range(hK):
        for j in range(wK):
            q, s = _step(xs, t, g, words, q, tab)
            t += 1
            ne = _put(P, H + i, H + j, s, _med(P, H + i, H + j) << WB, esc, ne, eend)
        if q > qe:
            return q, t, ne, False
    _fill_halo(P, hK, wK)
    return q, t, ne, True


@nb.njit(nogil=True, cache=True)  # pyramid._OPTS
def decode_tile16(words, start, end, esc, ebeg, eend, wts, cts, tab, out, dq):
    """Decode one tile of format 5 and dequantise it into ``out``.

    The stream is ``words[start:end]``, with zero words past it as for
    `pyramid.decode_tile`. Returns ``(ok, ne)`` as that kernel.
    """
    h, w = out.shape
    K = n_levels(h, w)
    hs, ws = _sizes(h, w, K)
    H = HALO
    ne = ebeg
    if end - start < 2 * WL:
        return False, ne
    xs = np.empty(WL, np.uint64)
    for ln in range(WL):
        xs[ln] = (U(words[start + 2 * ln]) << U(16)) | U(words[start + 2 * ln + 1])
    q, qe = U(start + 2 * WL), U(end)
    P = np.empty((hs[K] + 2 * H, ws[K] + 2 * H), np.int16)
    q, t, ne, ok = _top16(P, hs[K], ws[K], xs, q, qe, words, tab, esc, ne, eend)
    if not ok:
        return False, ne
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
            g0 = U((1 + st + kind) * N_CTX)
            wt, ct = wts[m0 + kind], cts[m0 + kind]
            for i in range(n_r):
                _features(kind, i, n_c, E, O, Q, r1, r2, r3, al)
                for j in range(n_c):
                    b, c = _ppc(j, wt, ct, g0, r1, r2, r3, al, tab[2])
                    q, s = _step(xs, t, c, words, q, tab)
                    t += 1
                    sym[j] = s
                    base[j] = b
                a = i + H
                for j in range(n_c):
                    s = np.int64(sym[j])
                    if s == ESC:
                        T[a, j + H] = esc[ne] if ne < eend else 0
                        ne += 1
                    else:
                        T[a, j + H] = base[j] + s - RMAX
                if q > qe:  # checked after the row's escapes (as the C kernel)
                    return False, ne
            _fill_halo(T, n_r, n_c)
        if k > 0:
            P = _merge_level(E, O, Q, R, hs[k], ws[k])
    _write_rows(P, K, E, O, Q, R, out, dq)
    return q == qe, ne
