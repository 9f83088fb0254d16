"""The C decoder's pipelined format-5 paths (issue 16, decoder CPU per pixel) against the
numba decoder and the coded values themselves: features in 16-bit lanes where a stage's
codes are small (|code| <= 4095, `plane_small`), the 32-bit lanes where they are not,
rows in chunks of nearly one length and predictions run past a chunk's end (widths
that are no multiple of 16), with AVX2 and without (``RAWSIGMA_CODEC_NO_AVX2``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from codec_streams import coded_tile, trained_weights
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec import pyramid as PY

C = CK.c_namespace()
NB = CK.numba_namespace()
needs_c = pytest.mark.skipif(C is None, reason=f"C kernels unavailable: {CK.WHY_NOT}")

SMALL = 4095  # the largest |code| of the 16-bit lanes (FEAT16_MAX in _ckernels.c)


def _codes(h: int, w: int, block: int, seed: int) -> np.ndarray:
    """Smooth codes with noise and isolated escapes, and a flat block of ``block`` and
    ``block - 1`` (ring sums of 8 codes up to 8 · block) over the middle third of the
    columns."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    c = 300 + 200 * np.sin(x / 7.0) * np.cos(y / 11.0) + rng.normal(0, 2.0, (h, w))
    c[rng.random((h, w)) < 0.01] = 1000  # escapes
    a, b = w // 3, 2 * w // 3
    c[:, a:b] = block - rng.integers(0, 2, (h, b - a))  # block - 1 or block
    return np.ascontiguousarray(c.clip(0, 8191).astype(np.int32))


def _stream(codes: np.ndarray) -> tuple:
    """A format-5 stream of ``codes`` (numba's encoder side): words, esc, wts, cts, tab."""
    luts, wts = trained_weights(codes, NB)
    cts = PY.class_tables(luts)
    words, esc, tab = coded_tile(codes, wts, cts, NB, NB)
    return words, esc, wts, cts, tab


def _decoded(ns, codes: np.ndarray, stream: tuple) -> np.ndarray:
    """The codes as ``ns`` decodes them: an identity reconstruction table (e = code) with
    offset 0 and gain 1 puts each code in the output as it is."""
    words, esc, wts, cts, tab = stream
    h, w = codes.shape
    wpad = np.concatenate([words, np.zeros(w + 64, np.uint16)])
    recon = np.arange(8192, dtype=np.float64)
    zeros, ones = np.zeros((h, w), np.float32), np.ones((h, w), np.float32)
    dq = (zeros, ones, recon, 2.0, 0.0, False, 0, 0, 65535.0, False, np.zeros(4))
    out = np.empty((h, w), np.uint16)
    ok, ne = ns.decode_tile16(wpad, 0, words.size, esc.astype(np.int64), 0, esc.size, wts, cts,
                              tab, out, dq)  # fmt: skip
    assert ok and ne == esc.size
    return out


# (block value, shape): at the bound (8 · 4095 = 32760 fits int16), one past it (8 · 4096
# overflows int16: the 32-bit lanes), far past it; widths whose stage rows are no multiple
# of 16 (348, 363, 27) or split into chunks of unequal length (700 = 352 + 348, 1000 =
# 512 + 488)
CASES = [
    (SMALL, (40, 696)),
    (SMALL + 1, (40, 1400)),
    (7000, (33, 726)),
    (SMALL, (24, 2000)),
    (SMALL + 1, (24, 2000)),
    (50, (19, 53)),
]


@needs_c
@pytest.mark.parametrize(("block", "shape"), CASES)
def test_decoded_codes_equal_numba_and_the_truth(block, shape):
    """Tiles whose flat block sits at the 16-bit bound, past it (a stage's ring sums
    would wrap in int16: the decoder must take the 32-bit lanes), far past it, on widths
    with partial chunks and partial 16-pixel blocks: the coded values, as numba."""
    codes = _codes(*shape, block, seed=block + shape[1])
    assert (codes.max() > SMALL) == (block > SMALL)
    stream = _stream(codes)
    got = _decoded(C, codes, stream)
    np.testing.assert_array_equal(got, codes.astype(np.uint16))
    np.testing.assert_array_equal(got, _decoded(NB, codes, stream))


@needs_c
def test_plain_c_and_avx2_decoders_give_the_coded_values():
    """Without AVX2 (RAWSIGMA_CODEC_NO_AVX2: the plain-C rows, no 16-bit lanes) the same
    tiles decode to the same codes."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); "
        "import test_noisecodec_cdecoder as T; "
        "cs = [T._codes(*s, b, seed=b + s[1]) for b, s in T.CASES]; "
        "print(all((T._decoded(T.C, c, T._stream(c)) == c).all() for c in cs))"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    for flag in ("1", "0"):
        env = dict(os.environ, RAWSIGMA_CODEC_NO_AVX2=flag, RAWSIGMA_CODEC_KERNELS="c")
        r = subprocess.run([sys.executable, "-c", code, here], env=env, capture_output=True,
                           text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "True", (flag, r.stdout, r.stderr[-2000:])


@needs_c
def test_crc32_equals_zlib():
    """The C extension's CRC-32 (carry-less multiplication; the check of every decode) is
    zlib's on every length around its 16- and 64-byte blocks, on views and large
    buffers; `ckernels.crc32` gives the same where the C kernels are not in use."""
    import zlib

    from rawsigma.analysis.noisecodec import _ckernels

    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    sizes = [*range(0, 200), 255, 256, 257, 1023, 4096, 65_537, 300_001]
    for n in sizes:
        data = big[:n]
        want = zlib.crc32(data)
        got = _ckernels.crc32(data)
        assert got is None or got == want, n  # None: no PCLMULQDQ on this CPU
        assert CK.crc32(memoryview(data)) == want, n
    assert CK.crc32(memoryview(big)[7:4000]) == zlib.crc32(big[7:4000])
    # continued over pieces, as the encoder checksums its sections
    for value in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
        for n in (0, 17, 64, 65_537):
            want = zlib.crc32(big[:n], value)
            got = _ckernels.crc32(big[:n], value)
            assert got is None or got == want, (value, n)
            assert CK.crc32(big[:n], value) == want, (value, n)
    crc = 0
    for piece in (big[:10], big[10:5000], big[5000:5001], big[5001:]):
        crc = CK.crc32(piece, crc)
    assert crc == zlib.crc32(big)
