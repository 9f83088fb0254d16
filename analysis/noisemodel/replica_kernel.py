"""Compiled Poisson–Gaussian redraws of `synthesis.redraw` (counter-based streams).

The random numbers come from the Philox4x32-10 counter-based generator (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011; the Random123 reference, whose
published known-answer vectors the tests check) with the 64-bit key ``key[0:2]``
drawn from the caller's generator. Every pixel of every replica has its own counters,
distinct blocks of the counter space, so its draws are independent of every other
pixel's by construction and depend only on the key, its row, column and replica:
never on how the rows are split into chunks or threads, nor on how many replicas
are drawn (replica ``k`` of ``n = 10`` is replica ``k`` of ``n = 20``).

Pixel ``j`` of row ``r`` in replica ``k`` owns the Philox blocks of counters
``(j, r, k + 2¹⁶·i, key[2])``, i = 0, 1, ... (so ``n < 2¹⁶``); blocks 0 and 1 of every
pixel of a row are computed together (a loop the compiler vectorises), the others
only when a rejection step needs them. Two 32-bit words ``a, b`` make one uniform
double ``(a >> 5 · 2²⁶ + b >> 6) · 2⁻⁵³`` in [0, 1) (numpy's conversion).

* Read noise: a standard normal by the 128-layer ziggurat (G. Marsaglia & W. W. Tsang,
  "The ziggurat method for generating random variables", J. Stat. Softw. 5(8), 2000),
  exact: block 0's word 0 is the signed value, the low 7 bits of word 1 the layer
  (separate bits for both, as J. Doornik's 2005 note on the method recommends); the
  wedges and the tail use the pixel's blocks 32768, 32769, ...
* Photo-electrons ``Poisson(λ)``, exact: for ``λ < 10`` by inversion (sequential
  search of the CDF from 0 with the uniform of block 0's words 2–3); for ``λ ≥ 10`` by
  Hörmann's transformed rejection with squeeze (PTRS; W. Hörmann, "The transformed
  rejection method for generating Poisson random variables", Insurance: Math. & Econ.
  12, 1993), the algorithm numpy's ``Generator.poisson`` uses for these means: the
  first trial with the uniforms of block 0 (words 2–3) and block 1 (words 0–1), the
  next ones from block 1's words 4–5 and the pixel's blocks 2, 3, ...

The value is then formed with the float32 operations of the former numpy version
(``y = z·r + base + k·g``, rounded half to even, clipped to ``[0, max_adu]``,
saturated pixels at ``max_adu``). Every draw of a pixel depends on the key, its row,
its column and its replica only.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from rawsigma import jitcache

jitcache.install()

__all__ = ["philox4x32", "redraw_rows"]

U = np.uint64
_H = dict(error_model="numpy", **jitcache.HELPER)
_MASK = U(0xFFFFFFFF)
_M0 = U(0xD2511F53)
_M1 = U(0xCD9E8D57)
_W0 = U(0x9E3779B9)
_W1 = U(0xBB67AE85)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53
_N_LOG_FACTORIAL = 4096
#: log(k!) = lgamma(k + 1) for k < _N_LOG_FACTORIAL (the same values, looked up)
_LOG_FACTORIAL = np.array([math.lgamma(k + 1.0) for k in range(_N_LOG_FACTORIAL)])


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``kn``, ``wn``, ``fn`` of the 128-layer normal ziggurat (Marsaglia & Tsang 2000)."""
    m1 = 2147483648.0
    dn = tn = _ZIG_R
    vn = 9.91256303526217e-3
    kn = np.zeros(128, np.int64)
    wn = np.zeros(128)
    fn = np.zeros(128)
    q = vn / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    wn[0], wn[127] = q / m1, dn / m1
    fn[0], fn[127] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / m1
    return kn, wn, fn


_ZIG_R = 3.442619855899
_ZIG_KN, _ZIG_WN, _ZIG_FN = _ziggurat_tables()
_NORMAL_BLOCKS = U(32768)  # a pixel's blocks 2..32767 serve PTRS, 32768.. the normal


@nb.njit(inline="always")
def _philox(c0, c1, c2, c3, k0, k1):  # pragma: no cover - numba
    """Philox4x32-10 of counter ``(c0..c3)`` and key ``(k0, k1)``, words in uint64."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> U(32)) ^ c1 ^ k0, p1 & _MASK, (p0 >> U(32)) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@nb.njit(cache=True)
def philox4x32(counter, key):  # pragma: no cover - numba
    """Philox4x32-10 of one counter (4 words) and key (2 words), uint64 array of 4."""
    a, b, c, d = _philox(U(counter[0]), U(counter[1]), U(counter[2]), U(counter[3]),
                         U(key[0]), U(key[1]))  # fmt: skip
    return np.array([a, b, c, d], np.uint64)


@nb.njit(**_H)
def _doubles(j, row, c2, k0, k1, c3):  # pragma: no cover - numba
    """The two uniform doubles in [0, 1) of Philox block ``(j, row, c2, c3)``.

    Key ``(k0, k1)``.
    """
    a, b, c, d = _philox(U(j), row, c2, c3, k0, k1)
    u0 = np.float64((a >> U(5)) * U(67108864) + (b >> U(6))) * _INV53
    u1 = np.float64((c >> U(5)) * U(67108864) + (d >> U(6))) * _INV53
    return u0, u1


@nb.njit(**_H)
def _normal_slow(hz, iz, j, row, rep, k0, k1, c3):  # pragma: no cover - numba
    """The ziggurat's wedges and tail after a first draw outside its rectangle.

    Marsaglia & Tsang (2000); uniforms from the pixel's blocks 32768, 32769, ...
    """
    blk = _NORMAL_BLOCKS
    while blk < U(65536):
        x = hz * _ZIG_WN[iz]
        if iz == 0:  # the tail beyond r, by Marsaglia's exponential rejection
            while blk < U(65536):
                a, b, c, d = _philox(U(j), row, rep + (blk << U(16)), c3, k0, k1)
                blk += U(1)
                x = -math.log(1.0 - _double(a, b)) / _ZIG_R
                y = -math.log(1.0 - _double(c, d))
                if y + y >= x * x:
                    break
            return _ZIG_R + x if hz > 0 else -_ZIG_R - x
        a, b, c, d = _philox(U(j), row, rep + (blk << U(16)), c3, k0, k1)
        blk += U(1)
        f0 = _ZIG_FN[iz]
        if f0 + _double(a, b) * (_ZIG_FN[iz - 1] - f0) < math.exp(-0.5 * x * x):
            return x
        hz = np.int64(np.int32(c))
        iz = np.int64(d & U(127))
        if abs(hz) < _ZIG_KN[iz]:
            return hz * _ZIG_WN[iz]
    return 0.0  # not reached


@nb.njit(**_H)
def _ptrs(
    lam, a, b, log_inv_alpha, vr, loglam, u, v, u1, j, row, rep, k0, k1, c3
):  # pragma: no cover - numba
    """Poisson(λ ≥ 10) by PTRS (numpy's random_poisson_ptrs, two uniforms per trial).

    ``u``, ``v``, ``u1``: the pixel's uniforms of its blocks 0 and 1 (first trial: ``u``,
    ``v``; second: ``u1`` and the first of block 2); later ones from its blocks
    ``rep + 2¹⁶·i``, i = 2, 3, ...
    """
    spare = u1
    blk = U(2)
    while blk < _NORMAL_BLOCKS:
        uu = u - 0.5
        us = 0.5 - abs(uu)
        kf = np.floor((2.0 * a / us + b) * uu + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return kf
        if kf >= 0.0 and not (us < 0.013 and v > us) and kf < 1e300:
            lhs = math.log(v / (a / (us * us) + b)) + log_inv_alpha
            lgf = _LOG_FACTORIAL[int(kf)] if kf < _N_LOG_FACTORIAL else math.lgamma(kf + 1.0)
            if lhs <= -lam + kf * loglam - lgf:
                return kf
        # next trial: the spare uniform and the first of the next block, whose second
        # becomes the spare
        u = spare
        v, spare = _doubles(j, row, rep + (blk << U(16)), k0, k1, c3)
        blk += U(1)
    return np.floor(lam)  # not reached: 65534 rejections in a row


@nb.njit(**_H)
def _constants(consts, lam, r):  # pragma: no cover - numba
    """``consts`` (W, 5) ← the constants of the Poisson draws of row ``r`` of ``lam``."""
    for j in range(consts.shape[0]):
        _pixel_constants(consts, j, lam[r, j])


@nb.njit(**_H)
def _pixel_constants(c, j, lam):  # pragma: no cover - numba
    """Row ``j`` of ``c`` ← the constants of the Poisson draw of mean ``lam``."""
    if lam < 10.0:
        c[j, 0] = math.exp(-lam)
        return
    slam = math.sqrt(lam)
    b = 0.931 + 2.53 * slam
    c[j, 0] = -0.059 + 0.02483 * b
    c[j, 1] = b
    c[j, 2] = math.log(1.1239 + 1.1328 / (b - 3.4))
    c[j, 3] = 0.9277 - 3.6224 / (b - 2.0)
    c[j, 4] = math.log(lam)


@nb.njit(**_H)
def _row_blocks(words, row, rep, k0, k1, c3):  # pragma: no cover - numba
    """``words`` (8, W) ← blocks 0 and 1 of every pixel of the row.

    No branches and one plane per word: the compiler vectorises it.
    """
    rep1 = rep + U(65536)
    for j in range(words.shape[1]):
        a, b, c, d = _philox(U(j), row, rep, c3, k0, k1)
        words[0, j] = a
        words[1, j] = b
        words[2, j] = c
        words[3, j] = d
        a, b, c, d = _philox(U(j), row, rep1, c3, k0, k1)
        words[4, j] = a
        words[5, j] = b
        words[6, j] = c
        words[7, j] = d


@nb.njit(**_H)
def _double(hi, lo):  # pragma: no cover - numba
    """Uniform double in [0, 1) of two 32-bit words (numpy's conversion)."""
    return np.float64((hi >> U(5)) * U(67108864) + (lo >> U(6))) * _INV53


@nb.njit(**_H)
def _first_trials(xs, pend, words, consts, lam, r):  # pragma: no cover - numba
    """``xs[j]`` ← every pixel's first PTRS trial; ``pend[:m]`` ← the pixels it leaves.

    Branch-free over the row (no unpredictable branch per pixel): the trial is `_ptrs`'
    first one, from the same uniforms and with the same operations, so a pixel its
    squeeze accepts has `_ptrs`' value; the others (λ < 10, or not accepted by the
    squeeze) are listed in ``pend`` and drawn by `_ptrs` or the inversion. Returns ``m``.
    """
    m = 0
    for j in range(xs.shape[0]):
        lm = lam[r, j]
        u = _double(words[2, j], words[3, j])
        v = _double(words[4, j], words[5, j])
        uu = u - 0.5
        us = 0.5 - abs(uu)
        xs[j] = np.floor((2.0 * consts[j, 0] / us + consts[j, 1]) * uu + lm + 0.43)
        done = (us >= 0.07) & (v <= consts[j, 3]) & (lm >= 10.0)
        pend[m] = j
        m += np.int64(1) - np.int64(done)
    return m


@nb.njit(**_H)
def _pending(xs, pend, m, words, consts, lam, r, row, rep, k0, k1, c3):  # pragma: no cover
    """``xs[pend[:m]]`` ← the photo-electrons of the pixels the first trial left."""
    for q in range(m):
        j = pend[q]
        u = _double(words[2, j], words[3, j])
        lm = lam[r, j]
        if lm < 10.0:  # inversion: P(0) = exp(-λ), P(x) = P(x-1)·λ/x
            x = 0.0
            p = consts[j, 0]
            f = p
            while u > f and p > 0.0:
                x += 1.0
                p *= lm / x
                f += p
        else:
            v = _double(words[4, j], words[5, j])
            u2 = _double(words[6, j], words[7, j])
            x = _ptrs(lm, consts[j, 0], consts[j, 1], consts[j, 2], consts[j, 3],
                      consts[j, 4], u, v, u2, j, row, rep, k0, k1, c3)  # fmt: skip
        xs[j] = x


@nb.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def redraw_rows(
    lam, base, gain, read_noise, saturated, max_adu, key, out, r0, r1
):  # pragma: no cover - numba
    """Replicas ``out[:, r0:r1]`` of rows ``r0 .. r1 - 1`` (see the module notes).

    ``lam`` (H, W) float64 photo-electrons (finite, >= 0); ``base``, ``gain``,
    ``read_noise`` (H, W) float32; ``saturated`` (H, W) uint8; ``max_adu`` float32;
    ``key`` 3 uint64 words < 2³²; ``out`` (n, H, W) integer array, n < 2¹⁶.
    Per row and replica: the Philox blocks, the photo-electrons (`_first_trials`, then
    `_pending`), then the read noise and the value.
    """
    n, _, w = out.shape
    words = np.zeros((8, w), np.uint64)
    consts = np.zeros((w, 5), np.float64)
    xs = np.empty(w, np.float64)
    pend = np.empty(w, np.int64)
    top = np.float32(max_adu)
    zero = np.float32(0.0)
    k0, k1, c3 = U(key[0]), U(key[1]), U(key[2])
    for r in range(r0, r1):
        _constants(consts, lam, r)
        row = U(r)
        for k in range(n):
            rep = U(k)
            _row_blocks(words, row, rep, k0, k1, c3)
            m = _first_trials(xs, pend, words, consts, lam, r)
            _pending(xs, pend, m, words, consts, lam, r, row, rep, k0, k1, c3)
            for j in range(w):
                if saturated[r, j]:
                    out[k, r, j] = top
                    continue
                # read noise: ziggurat, value from word 0, layer from word 1's low bits
                hz = np.int64(np.int32(words[0, j]))
                iz = np.int64(words[1, j] & U(127))
                if abs(hz) < _ZIG_KN[iz]:
                    z = hz * _ZIG_WN[iz]
                else:
                    z = _normal_slow(hz, iz, j, row, rep, k0, k1, c3)
                y = np.float32(z) * read_noise[r, j]
                y = y + base[r, j]
                y = y + np.float32(xs[j]) * gain[r, j]
                y = np.float32(np.rint(y))
                if not (y >= zero):  # negative or NaN
                    y = zero
                elif y > top:
                    y = top
                out[k, r, j] = y
