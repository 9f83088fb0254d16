"""Exact arithmetic of the encoder's per-frame model fit, shared bit for bit with C.

The "pyramid" encoder fits its predictor weights (`pyramid.solve_weights`) and merges
its rANS contexts (`pyramid.choose_contexts`) once per frame. The C extension does
both (``_ckernels.solve_weights``, ``_ckernels.encoder_tables``); these numpy functions
are their twins, written so that both make the same choices on every machine:

- `solve4`: batched 4 × 4 Gaussian elimination with partial pivoting, in the order of
  operations of the C loop (IEEE operations only: no LAPACK, whose blocking and FMA
  use vary between builds and would change a weight's rounding now and then);
- `xlog2x`: ``c · log2 c`` of integer counts in fixed point (`XL_F` fraction bits),
  from an integer-only binary logarithm (`ilog2`): no libm, whose last bit differs
  between platforms, so context costs compare as integers.
"""

from __future__ import annotations

import numpy as np

XL_F = 16  # fraction bits of the fixed-point logarithm
XL_N = 1 << 14  # counts below this: a table (most histogram cells)


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


_XL_TAB = np.arange(XL_N, dtype=np.int64) * ilog2(np.maximum(np.arange(XL_N), 1))


def xlog2x(c: np.ndarray) -> np.ndarray:
    """``c · log2 c`` of non-negative integer counts in units of 2^-XL_F (0 for 0).

    Exact int64 values: their sums do not depend on the order.
    """
    c = np.asarray(c, np.int64)
    out = _XL_TAB[np.minimum(c, XL_N - 1)]
    big = c >= XL_N
    if big.any():
        out[big] = c[big] * ilog2(c[big])
    return out


def solve4(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solutions of the systems ``a x = b``, ``a`` (…, n, n) and ``b`` (…, n).

    Gaussian elimination with partial pivoting (the first row of largest magnitude),
    row by row in the order of the C loop. A singular system gives NaN (0/0 after a
    zero pivot).
    """
    shape = b.shape
    n = a.shape[-1]
    a = np.array(a, np.float64).reshape(-1, n, n)
    b = np.array(b, np.float64).reshape(-1, n)
    r = np.arange(a.shape[0])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(n):
            mag = np.abs(a[:, k:, k])
            mag[np.isnan(mag)] = -1.0  # NaN below every magnitude, as in C
            p = k + np.argmax(mag, axis=1)
            ak, bk = a[r, k].copy(), b[r, k].copy()
            a[r, k], b[r, k] = a[r, p], b[r, p]
            a[r, p], b[r, p] = ak, bk
            for i in range(k + 1, n):
                f = a[:, i, k] / a[:, k, k]
                a[:, i, k + 1 :] = a[:, i, k + 1 :] - f[:, None] * a[:, k, k + 1 :]
                b[:, i] = b[:, i] - f * b[:, k]
        x = np.empty_like(b)
        for i in range(n - 1, -1, -1):
            s = b[:, i]
            for j in range(i + 1, n):
                s = s - a[:, i, j] * x[:, j]
            x[:, i] = s / a[:, i, i]
    return x.reshape(shape)
