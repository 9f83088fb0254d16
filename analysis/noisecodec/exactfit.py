"""Exact arithmetic of the encoder's per-frame model fit, shared bit for bit with C.

The "pyramid" encoder fits its predictor weights (`pyramid.solve_weights`) and merges
its rANS contexts (`pyramid.choose_contexts`) once per frame. The C extension does
both (``_ckernels.solve_weights``, ``_ckernels.encoder_tables``); these numpy functions
are their twins, written so that both make the same choices on every machine:

- `solve4`: batched Gaussian elimination with partial pivoting, in the order of
  operations of the C loop (IEEE operations only: no LAPACK, whose blocking and FMA
  use vary between builds and would change a weight's rounding now and then);
- `xlog2x`: ``c · log2 c`` of integer counts in fixed point (`XL_F` fraction bits),
  from a table of an integer-only binary logarithm (`ilog2`): no libm, whose last bit
  differs between platforms, so context costs compare as integers.
"""

from __future__ import annotations

import numpy as np

XL_F = 16  # fraction bits of the fixed-point logarithm
XL_BITS = 14
XL_N = 1 << XL_BITS  # counts below this: the table; above, their top XL_BITS bits


def ilog2(c: np.ndarray) -> np.ndarray:
    """Fixed-point ``log2 c`` (`XL_F` fraction bits, int64) of integers ``1 ≤ c < 2^63``.

    The integer part from the bit length, then one fraction bit per squaring of the
    mantissa (31 fraction bits, products < 2^64; truncated, not rounded).
    """
    c = np.asarray(c, np.uint64)
    e = np.zeros(c.shape, np.uint64)
    for s in (32, 16, 8, 4, 2, 1):
        e += np.uint64(s) * ((c >> (e + np.uint64(s))) != 0)
    y = np.where(e <= 31, c << (np.uint64(31) - np.minimum(e, 31)), c >> (np.maximum(e, 31) - 31))
    r = e.astype(np.int64)
    two = np.uint64(1 << 32)
    for _ in range(XL_F):
        y = (y * y) >> np.uint64(31)
        hi = y >= two
        r = 2 * r + hi
        y = np.where(hi, y >> np.uint64(1), y)
    return r


_LOG_TAB = ilog2(np.maximum(np.arange(XL_N + 1), 1))  # (one past: the interpolation)
_XL_TAB = np.arange(XL_N, dtype=np.int64) * _LOG_TAB[:XL_N]


def xlog2x(c: np.ndarray) -> np.ndarray:
    """``c · L(c)`` of non-negative integer counts ``c < 2^53`` (0 for 0), int64.

    ``L(c)`` is `ilog2` for ``c < XL_N``; above, the shift ``r`` that leaves `XL_BITS`
    bits, ``m = c >> r``, plus `ilog2` interpolated linearly between ``m`` and ``m + 1``
    (floor; within ~2^-16 of ``log2 c``). Exact integers: their sums do not depend on
    the order.
    """
    c = np.asarray(c, np.int64)
    out = _XL_TAB[np.minimum(c, XL_N - 1)]
    big = c >= XL_N
    if big.any():
        cb = c[big]
        r = (np.frexp(cb.astype(np.float64))[1] - XL_BITS).astype(np.int64)  # exact
        m = cb >> r
        lo = _LOG_TAB[m]
        frac = ((_LOG_TAB[m + 1] - lo) * (cb - (m << r))) >> r
        out[big] = cb * (lo + frac + (r << XL_F))
    return out


def solve4(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solutions of the systems ``a x = b``, ``a`` (…, n, n) and ``b`` (…, n).

    Gaussian elimination with partial pivoting (the first row of largest magnitude,
    NaN below every magnitude), row by row in the order of the C loop. A singular
    system gives NaN (0/0 after a zero pivot).
    """
    shape = b.shape
    n = a.shape[-1]
    A = np.moveaxis(np.asarray(a, np.float64).reshape(-1, n, n), 0, -1).copy()  # (n, n, N)
    B = np.asarray(b, np.float64).reshape(-1, n).T.copy()  # (n, N)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(n):
            mag = np.abs(A[k:, k])
            mag[np.isnan(mag)] = -1.0
            p = k + np.argmax(mag, axis=0)
            rk, bk = A[k].copy(), B[k].copy()
            for i in range(k + 1, n):  # swap rows k and p (p > k for some systems)
                m = p == i
                if m.any():
                    A[k] = np.where(m, A[i], A[k])
                    B[k] = np.where(m, B[i], B[k])
                    A[i] = np.where(m, rk, A[i])
                    B[i] = np.where(m, bk, B[i])
            for i in range(k + 1, n):
                f = A[i, k] / A[k, k]
                A[i, k + 1 :] = A[i, k + 1 :] - f * A[k, k + 1 :]
                B[i] = B[i] - f * B[k]
        x = np.empty_like(B)
        for i in range(n - 1, -1, -1):
            s = B[i]
            for j in range(i + 1, n):
                s = s - A[i, j] * x[j]
            x[i] = s / A[i, i]
    return x.T.reshape(shape)
