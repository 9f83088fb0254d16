"""Compiled per-tile kernels of the noise codec (numba, ``nogil`` so tiles run in threads).

Layout shared by encoder and decoder: a tile of ``h × w`` codes lives in a padded int32
buffer ``B`` of shape ``(h + PAD, w + 2·PAD)`` with the code of pixel ``(y, x)`` at
``B[PAD + y, PAD + x]``. The top ``PAD`` rows hold the tile's fill value; before row ``y``
is coded its left pad takes the code above the first column, after it its right pad takes
the row's last code. The decoder rebuilds the same buffer causally, so both sides compute
bit-identical integer predictions.

Prediction: per pixel a class ``activity bucket × level bucket`` chooses one of
``N_CLASS`` linear predictors over ``N_NB`` causal neighbours (fixed-point weights,
least-squares trained by the encoder and sent in the header). The residual to the
floor of the prediction is coded with static rANS tables selected by a context
``(fraction of the prediction, activity bucket)``.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma import jitcache

PAD = 3
# causal neighbours (dy, dx): W, N, NW, NE, WW, NN, then a wider ring
NB_DY = np.array([0, -1, -1, -1, 0, -2, -1, -2, -2, -1, -2, -2, 0, -3, -3, -3, -1, -1], np.int64)
NB_DX = np.array([-1, 0, -1, 1, -2, 0, -2, -1, 1, 2, -2, 2, -3, 0, -1, 1, -3, 3], np.int64)
N_NB = 18
N_ACT_CLS = 8
N_LVL_CLS = 8
N_CLASS = N_ACT_CLS * N_LVL_CLS
N_ACT_CTX = 12
N_FRAC = 4
N_CTX = N_FRAC * N_ACT_CTX
WBITS = 12  # fixed-point bits of the predictor weights
RMAX = 24  # residuals in [-RMAX, RMAX) are symbols, others escape
N_SYM = 2 * RMAX + 1
ESC = 2 * RMAX
SCALE_BITS = 12
SCALE = 1 << SCALE_BITS
RANS_L = 1 << 16
ACT_MAX = 1023
LVL_MAX = 4095

_a = np.log2(1.0 + np.arange(ACT_MAX + 1))
ACT_CLS_LUT = np.minimum(np.floor(_a * 1.5), N_ACT_CLS - 1).astype(np.int32)
ACT_CTX_LUT = np.minimum(np.floor(_a * 2.5), N_ACT_CTX - 1).astype(np.int32)
LVL_CLS_LUT = np.minimum(np.floor(np.log2(1.0 + np.arange(LVL_MAX + 1))), N_LVL_CLS - 1).astype(
    np.int32
)
# Array dtypes are chosen so that outputs never share a dtype with inputs read in the same
# loop (int32 weights/LUTs/ring, uint8 classes, int64 row buffers): LLVM may then assume
# they do not alias and overlap iterations (3x faster row preparation).

# transform knee of format 4 (`vst`): [v_knee, t_knee, 1/sqrt(v_knee), code shift]; all 0
# for formats 1–3 (the transform clips at v = 0)
NO_KNEE = np.zeros(4, np.float64)
NO_KNEE.flags.writeable = False

# compiled kernels are cached per machine (`jitcache`), keyed by these modules' contents
jitcache.install()
_OPTS = dict(nogil=True, cache=True)
# helpers (called from kernels only): LLVM inlines them and prunes the refcounts
# (numba-level inlining, inline="always", compiled twice as slowly for the same speed)
_INLINE = jitcache.HELPER


# ---------------------------------------------------------------- dither and transform
@nb.njit(**_INLINE)
def dither_value(index: np.uint64, seed: np.uint64) -> float:
    """Uniform [0, 1) pseudo-random value of pixel ``index`` (splitmix64 hash)."""
    z = index * np.uint64(0x9E3779B97F4A7C15) + seed
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(**_INLINE)
def vst(v, kp):
    """Transform value ``t`` of ``v = e + c0`` (e⁻²): ``2 sqrt(v)`` above the knee
    ``kp[0]``, its tangent ``kp[1] + (v − kp[0])·kp[2]`` below (format 4); with
    ``kp[0] = 0`` (formats 1–3) ``2 sqrt(max(v, 0))``, clipped at 0."""
    if v >= kp[0]:
        return 2.0 * np.sqrt(v) if v > 0.0 else 0.0
    return kp[1] + (v - kp[0]) * kp[2]


@nb.njit(**_INLINE)
def vst_inverse(t, c0, kp):
    """e⁻ of transform value ``t`` (inverse of `vst`; ``t²/4 − c0`` above the knee)."""
    if t >= kp[1]:
        return 0.25 * t * t - c0
    return kp[0] - c0 + (t - kp[1]) / kp[2]


@nb.njit(**_OPTS)
def quantise_tile(x, off, gain, codes, step, c0, dither, seed, index0, edges, sum_e, cnt,
                  kp=NO_KNEE):  # fmt: skip
    """Raw ADU → integer codes for one tile.

    ``x`` (h, w) uint16; ``off``/``gain`` (h, w) float32 maps; ``codes`` (h, w) int32 out.
    Without dither ``code = round(t / step)`` with ``t = 2 sqrt(e + c0)`` (`vst`, knee
    ``kp``) and ``e`` the photo-electrons; with dither ``code = floor(t / step + u)``; both
    plus the code shift ``kp[3]`` (format 4, codes stay >= 0); when ``edges`` is not
    empty (hard bound) the code is the bin of ``e`` among ``edges`` (lower edges, e⁻).
    ``sum_e``/``cnt`` accumulate per-code sums of ``e`` (conditional-mean decoding).
    """
    shift = int(kp[3])
    h, w = x.shape
    inv = 1.0 / step
    nedge = edges.shape[0]
    # hard bound: a grid over t = 2 sqrt(e + c0) gives a lower bound of each pixel's bin
    # (bins are ~1 wide in t), then a short forward scan: the last edge <= e, as a binary
    # search would find it, without its unpredictable branches
    dt = 0.25
    ng = 2
    if nedge > 0:
        ng = int(2.0 * np.sqrt(max(edges[nedge - 1] + c0, 0.0)) / dt) + 3
    grid = np.zeros(ng, np.int64)
    if nedge > 0:
        k = 0
        for g in range(ng):
            tg = g * dt
            eg = 0.25 * tg * tg - c0
            while k + 1 < nedge and edges[k + 1] <= eg:
                k += 1
            grid[g] = k
    for y in range(h):
        for i in range(w):
            e = (float(x[y, i]) - off[y, i]) / gain[y, i]
            if nedge > 0:
                v = e + c0
                k = 0
                if v > 0.0:
                    # one cell of slack: the grid point stays below e whatever the rounding
                    g = min(int(2.0 * np.sqrt(v) / dt) - 1, ng - 1)
                    if g > 0:
                        k = grid[g]
                while k + 1 < nedge and edges[k + 1] <= e:
                    k += 1
            else:
                t = vst(e + c0, kp)
                if dither:
                    u = dither_value(np.uint64(index0 + y * w + i), np.uint64(seed))
                    k = int(np.floor(t * inv + u)) + shift
                else:
                    k = int(np.floor(t * inv + 0.5)) + shift
            codes[y, i] = k
            if k < sum_e.shape[0]:
                sum_e[k] += e
                cnt[k] += 1


@nb.njit(**_INLINE)
def _e_dither(k, u, step, c0, kp):
    """e⁻ of code ``k`` with subtractive dither ``u``: the analytic inverse minus
    E[(t̂/2)²] − (t/2)² of a uniform error of width ``step`` (format 4: `convexity`)."""
    if kp[0] == 0.0:
        t = step * (k - u + 0.5)
        return 0.25 * t * t - c0 - step * step / 48.0
    t = step * (k - kp[3] - u + 0.5)
    return vst_inverse(t, c0, kp) - convexity(t, step, kp)


@nb.njit(**_INLINE)
def convexity(t, step, kp):
    """``E[inv(t + w)] − inv(t)`` for ``w`` uniform of width ``step`` (`vst_inverse` with
    a knee ``kp``): ``step²/48`` above the knee, 0 below it (linear), in between the
    integral of the quadratic part."""
    a = t - kp[1] - 0.5 * step
    b = a + step
    d = t - kp[1]
    return (max(b, 0.0) ** 3 - max(a, 0.0) ** 3) / (12.0 * step) - 0.25 * max(d, 0.0) ** 2


@nb.njit(**_INLINE)
def _e_centre(k, step, c0, kp):
    """e⁻ of the centre of code ``k``'s bin (algebraic inverse)."""
    if kp[0] == 0.0:
        t = step * k
        return 0.25 * t * t - c0
    return vst_inverse(step * (k - kp[3]), c0, kp)


@nb.njit(**_INLINE)
def _adu(off, gain, e, max_adu):
    """Rounded, clipped ADU of ``e`` e⁻ at a pixel with offset ``off`` and gain ``gain``."""
    v = np.floor(off + gain * e + 0.5)
    return np.uint16(min(max(v, 0.0), max_adu))


@nb.njit(**_INLINE)
def dequantise_one(k, off, gain, recon, step, c0, dither, seed, index, max_adu, kp):
    """ADU (uint16) of code ``k`` at a pixel with offset ``off``, gain ``gain`` and flat
    index ``index`` (dither): ``recon`` e⁻ per code, or the analytic inverse (knee
    ``kp``, see `vst`)."""
    k = max(k, 0)
    if dither:
        e = _e_dither(k, dither_value(np.uint64(index), np.uint64(seed)), step, c0, kp)
    elif k < recon.shape[0]:
        e = recon[k]
    else:
        e = _e_centre(k, step, c0, kp)
    return _adu(off, gain, e, max_adu)


@nb.njit(**_INLINE)
def dequantise_row(k, off, gain, out, recon, step, c0, dither, seed, index0, max_adu, analytic,
                   kp):  # fmt: skip
    """`dequantise_one` over a row (1-D arrays, pixel ``x`` at flat index ``index0 + x``).

    With ``analytic`` the reconstruction table is known to be `transform.unbiased_recon`
    (per-pixel maps, no bound): it is computed instead of looked up, with the same
    operations (bit-identical), and the loop vectorises, as does the dither loop (the
    branches of `dequantise_one` hoisted out of the loops).
    """
    n = out.shape[0]
    if dither:
        sd = np.uint64(seed)
        for x in range(n):
            u = dither_value(np.uint64(index0 + x), sd)
            out[x] = _adu(off[x], gain[x], _e_dither(max(k[x], 0), u, step, c0, kp), max_adu)
        return
    if not analytic:
        for x in range(n):
            out[x] = dequantise_one(k[x], off[x], gain[x], recon, step, c0, dither, seed,
                                    index0 + x, max_adu, kp)  # fmt: skip
        return
    nrec = recon.shape[0]
    corr = step * step / 48.0  # unbiased_recon = centre - step²/48 for codes in the table
    for x in range(n):
        kk = max(k[x], 0)
        e = _e_centre(kk, step, c0, kp)
        e = e - corr if kk < nrec else e
        out[x] = _adu(off[x], gain[x], e, max_adu)


@nb.njit(**_OPTS)
def dequantise_tile(codes, off, gain, out, recon, step, c0, dither, seed, index0, max_adu,
                    analytic=False, kp=NO_KNEE):  # fmt: skip
    """Codes → uint16 ADU for one tile (``recon``: e⁻ per code, or analytic with dither;
    ``analytic``: see `dequantise_row`; ``kp``: the knee, see `vst`)."""
    h, w = codes.shape
    for y in range(h):
        dequantise_row(codes[y], off[y], gain[y], out[y], recon, step, c0, dither, seed,
                       index0 + y * w, max_adu, analytic, kp)  # fmt: skip


# ---------------------------------------------------------------- context and prediction
# The tile's codes live in a ring of PAD + 1 rows of ``w + 2·PAD`` int32 (row y in slot
# (y + PAD) & 3); the top rows start at the fill value.
RING = PAD + 1


def new_ring(w: int, fill: int) -> np.ndarray:
    """Ring buffer of a tile's last rows, all at ``fill``."""
    return np.full(RING * (w + 2 * PAD), fill, np.int32)


@nb.njit(**_INLINE)
def _taps(B, c0, c1, c2, c3, x, f):
    # causal neighbours in the order of NB_DY/NB_DX; c0..c3 = bases of rows y, y-1, y-2, y-3
    f[0] = B[c0 + x - 1]
    f[1] = B[c1 + x]
    f[2] = B[c1 + x - 1]
    f[3] = B[c1 + x + 1]
    f[4] = B[c0 + x - 2]
    f[5] = B[c2 + x]
    f[6] = B[c1 + x - 2]
    f[7] = B[c2 + x - 1]
    f[8] = B[c2 + x + 1]
    f[9] = B[c1 + x + 2]
    f[10] = B[c2 + x - 2]
    f[11] = B[c2 + x + 2]
    f[12] = B[c0 + x - 3]
    f[13] = B[c3 + x]
    f[14] = B[c3 + x - 1]
    f[15] = B[c3 + x + 1]
    f[16] = B[c1 + x - 3]
    f[17] = B[c1 + x + 3]


@nb.njit(**_OPTS)
def _row_prep(B, c1, c2, c3, w, wf, bias, act_cls, lvl_cls, cls, q, aup):
    """Vectorisable part of a row's prediction: the class (from the rows above only),
    the fixed-point contribution of the 15 taps in the rows above, and the part of the
    context activity that does not need the current row."""
    for i in range(w):
        x = i + PAD
        nv = np.int64(B[c1 + x])
        nw = np.int64(B[c1 + x - 1])
        ne = np.int64(B[c1 + x + 1])
        nn = np.int64(B[c2 + x])
        a_up = abs(nv - nw) + abs(nv - ne) + abs(nv - nn)
        act = a_up + abs(nw - B[c2 + x - 1]) + abs(ne - B[c2 + x + 1])
        if act > ACT_MAX:
            act = ACT_MAX
        lv = (nv + ne) >> 1
        if lv > LVL_MAX:
            lv = LVL_MAX
        elif lv < 0:
            lv = 0
        cl = act_cls[act] * N_LVL_CLS + lvl_cls[lv]
        o = cl * N_NB
        acc = np.int64(bias[cl]) + wf[o + 1] * nv + wf[o + 2] * nw + wf[o + 3] * ne + wf[o + 5] * nn
        acc += wf[o + 6] * np.int64(B[c1 + x - 2]) + wf[o + 7] * np.int64(B[c2 + x - 1])
        acc += wf[o + 8] * np.int64(B[c2 + x + 1]) + wf[o + 9] * np.int64(B[c1 + x + 2])
        acc += wf[o + 10] * np.int64(B[c2 + x - 2]) + wf[o + 11] * np.int64(B[c2 + x + 2])
        acc += wf[o + 13] * np.int64(B[c3 + x]) + wf[o + 14] * np.int64(B[c3 + x - 1])
        acc += wf[o + 15] * np.int64(B[c3 + x + 1]) + wf[o + 16] * np.int64(B[c1 + x - 3])
        acc += wf[o + 17] * np.int64(B[c1 + x + 3])
        cls[i] = cl
        q[i] = acc
        aup[i] = a_up


@nb.njit(**_INLINE)
def _finish(B, c0, c1, x, i, wf, cls, q, aup, act_ctx):
    """Serial part: add the current-row taps (W, WW, W3); return (prediction, context)."""
    wv = np.int64(B[c0 + x - 1])
    ww = np.int64(B[c0 + x - 2])
    o = np.int64(cls[i]) * N_NB
    p = q[i] + wf[o] * wv + wf[o + 4] * ww + wf[o + 12] * np.int64(B[c0 + x - 3])
    act = aup[i] + abs(wv - B[c1 + x - 1]) + abs(wv - ww)
    return p, _context(p, act, act_ctx)


@nb.njit(**_INLINE)
def _context(p, act, act_ctx):
    """rANS context of a pixel: fraction of its prediction ``p`` × bucket of activity ``act``."""
    if act > ACT_MAX:
        act = ACT_MAX
    return ((p >> (WBITS - 2)) & 3) * N_ACT_CTX + act_ctx[act]


@nb.njit(**_INLINE)
def _row_bases(y, stride):
    return (
        ((y + 3) & 3) * stride,
        ((y + 2) & 3) * stride,
        ((y + 1) & 3) * stride,
        (y & 3) * stride,
    )


@nb.njit(**_INLINE)
def _open_row(B, c0, c1):
    v = B[c1 + PAD]
    for j in range(PAD):
        B[c0 + j] = v


@nb.njit(**_INLINE)
def _close_row(B, c0, w):
    v = B[c0 + PAD + w - 1]
    for j in range(PAD):
        B[c0 + PAD + w + j] = v


@nb.njit(**_INLINE)
def _push_row(B, c0, c1, codes, y):
    """Known row ``y`` of ``codes`` into ring row ``c0``, with its left and right pads."""
    w = codes.shape[1]
    _open_row(B, c0, c1)
    for i in range(w):
        B[c0 + PAD + i] = codes[y, i]
    _close_row(B, c0, w)


@nb.njit(**_OPTS)
def train_tile(codes, B, row_step, col_step, feats, target, klass, act_cls, lvl_cls):
    """Collect training samples (18 neighbours, code, class) on every ``row_step``-th
    row and ``col_step``-th column of a tile (``B`` from `new_ring`); returns their
    number (``feats`` (n, N_NB) float64, ``target`` (n,), ``klass`` (n,) uint8)."""
    h, w = codes.shape
    stride = w + 2 * PAD
    fi = np.empty(N_NB, np.int64)
    wz = np.zeros(N_CLASS * N_NB, np.int32)
    bz = np.zeros(N_CLASS, np.int32)
    cls = np.empty(w, np.uint8)
    q = np.empty(w, np.int64)
    aup = np.empty(w, np.int64)
    n = 0
    cap = feats.shape[0]
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        _push_row(B, c0, c1, codes, y)
        if y < PAD or (y % row_step) != 1:
            continue
        _row_prep(B, c1, c2, c3, w, wz, bz, act_cls, lvl_cls, cls, q, aup)
        for i in range(y % col_step, w, col_step):
            if n >= cap:
                return n
            _taps(B, c0, c1, c2, c3, i + PAD, fi)
            for j in range(N_NB):
                feats[n, j] = fi[j]
            target[n] = codes[y, i]
            klass[n] = cls[i]
            n += 1
    return n


@nb.njit(**_OPTS)
def model_tile(codes, B, wf, bias, act_cls, act_ctx, lvl_cls, syms, ctxs, esc, hist):
    """Encoder pass 1: symbols, contexts and escapes of one tile; histogram per context.

    Returns the number of escapes written to ``esc``.
    """
    h, w = codes.shape
    stride = w + 2 * PAD
    n_esc = 0
    cls = np.empty(w, np.uint8)
    q = np.empty(w, np.int64)
    aup = np.empty(w, np.int64)
    for y in range(h):
        c0, c1, c2, c3 = _row_bases(y, stride)
        _open_row(B, c0, c1)
        _row_prep(B, c1, c2, c3, w, wf, bias, act_cls, lvl_cls, cls, q, aup)
        for i in range(w):
            x = i + PAD
            p, ctx = _finish(B, c0, c1, x, i, wf, cls, q, aup, act_ctx)
            base = p >> WBITS
            c = codes[y, i]
            r = c - base
            if -RMAX <= r < RMAX:
                s = r + RMAX
            else:
                s = ESC
                esc[n_esc] = c
                n_esc += 1
            syms[y, i] = s
            ctxs[y, i] = ctx
            hist[ctx, s] += 1
            B[c0 + x] = c
        _close_row(B, c0, w)
    return n_esc


@nb.njit(**_OPTS)
def rans_encode(syms, ctxs, freq, cum, out):
    """Encode symbols (raster order) with static per-context tables; returns the number
    of uint16 words written to ``out`` (decoder reads them in order)."""
    h, w = syms.shape
    x = np.uint64(RANS_L)
    n = 0
    for y in range(h - 1, -1, -1):
        for i in range(w - 1, -1, -1):
            ctx = ctxs[y, i]
            s = syms[y, i]
            f = np.uint64(freq[ctx, s])
            xmax = f << np.uint64(32 - SCALE_BITS)
            if x >= xmax:
                out[n] = np.uint16(x & np.uint64(0xFFFF))
                n += 1
                x = x >> np.uint64(16)
            x = ((x // f) << np.uint64(SCALE_BITS)) + (x % f) + np.uint64(cum[ctx, s])
    out[n] = np.uint16(x & np.uint64(0xFFFF))
    out[n + 1] = np.uint16(x >> np.uint64(16))
    n += 2
    # reverse in place so the decoder reads forwards
    for a in range(n // 2):
        t = out[a]
        out[a] = out[n - 1 - a]
        out[n - 1 - a] = t
    return n


# ---------------------------------------------------------------- tables
def normalise_counts(counts: np.ndarray, total: int) -> np.ndarray:
    """Frequencies per context (rows of ``counts``) summing to ``total``, ≥ 1 for every
    symbol seen; the rounding remainder goes to (or comes from) the most frequent
    symbol (the first of equals), in steps as large as keep every seen symbol ≥ 1. A
    context never seen gets a flat table (any valid table would do). numpy, all rows at
    once (a numba kernel cost ~0.7 s of compiling on the first run for ~1 ms of work).
    """
    counts = np.asarray(counts, np.int64)
    n, m = counts.shape
    tot = counts.sum(1)
    f = np.full((n, m), total // m, np.int64)
    f[:, RMAX] += total - (total // m) * m
    seen = np.flatnonzero(tot > 0)
    c = counts[seen]
    v = c * total // tot[seen, None]
    v[(v == 0) & (c > 0)] = 1
    acc = v.sum(1)
    bad = np.flatnonzero(acc != total)
    while bad.size:
        j = np.argmax(v[bad], axis=1)
        d = total - acc[bad]
        d = np.where(d < 0, np.maximum(d, 1 - v[bad, j]), d)
        v[bad, j] += d
        acc[bad] += d
        bad = bad[acc[bad] != total]
    f[seen] = v
    return f


# ---------------------------------------------------------------- decoder setup
# The decoders (lock-step over ``L`` tiles of one shape) are in `fastpath`: decode_lanes_best.
@nb.njit(**_INLINE)
def _rans_init(words, wbeg, wend):
    """Per lane the rANS state read from its first two words, and the read position after."""
    L = wbeg.shape[0]
    xs = np.empty(L, np.uint64)
    pos = wbeg.copy()
    for lane in range(L):
        if wend[lane] - wbeg[lane] >= 2:
            xs[lane] = (np.uint64(words[wbeg[lane]]) << np.uint64(16)) | np.uint64(
                words[wbeg[lane] + 1]
            )
        else:
            xs[lane] = np.uint64(RANS_L)
        pos[lane] += 2
    return xs, pos
