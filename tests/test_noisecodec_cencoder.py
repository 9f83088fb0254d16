"""The C encoder's vector paths (AVX2 training moments, prediction and 16-state rANS
encoder, `_ckernels.c`) against the numba kernels and the plain-C paths: the same bytes,
on tile sizes that leave partial vectors and on tables with extreme frequencies."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec import pyramid as PY
from rawsigma.analysis.noisecodec.synthetic import reference_frame

C = CK.c_namespace()
NB = CK.numba_namespace()
pytestmark = pytest.mark.skipif(C is None, reason=f"C kernels unavailable: {CK.WHY_NOT}")


def _tables(rng, nctx: int, skew: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalised frequencies of nctx contexts: with skew, context 0 gives all of TAB to
    one symbol and context 1 one slot to every symbol but one."""
    counts = rng.integers(0, 50, (nctx, PY.N_SYM)) * (rng.random((nctx, PY.N_SYM)) < 0.7)
    counts[:, PY.RMAX] += 1
    if skew:
        counts[0] = 0
        counts[0, 3] = 1000
        counts[1] = 1
        counts[1, 7] = 10**6
    freq = PY.normalise(counts)
    return freq, PY.cumulative(freq)


def _symbols(rng, n: int, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nctx = freq.shape[0]
    ctxs = rng.integers(0, nctx, n)
    syms = np.empty(n, np.uint8)
    for g in range(nctx):  # symbols drawn from their context's table
        at = np.flatnonzero(ctxs == g)
        p = freq[g] / freq[g].sum()
        syms[at] = rng.choice(PY.N_SYM, at.size, p=p)
    lanes = (rng.integers(0, 4, n) << PY.LANE_SHIFT).astype(np.uint16)  # ignored bits
    return syms, ctxs.astype(np.uint16) | lanes


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 200, 4099])
@pytest.mark.parametrize("skew", [False, True])
def test_rans_encode16_matches_numba(n, skew):
    """The 16-state AVX2 encoder (partial first group, masks, reversal) writes numba's
    words; the plain-C encoder too (an out buffer without the vector slack)."""
    rng = np.random.default_rng(n + 1000 * skew)
    freq, cum = _tables(rng, 5, skew)
    syms, ctxs = _symbols(rng, n, freq)
    got = []
    entries = (CK.rans_entries(freq, cum), None)  # C: the frame's table made once
    for ns, slack, tab in ((NB, 16, (freq, cum)), (C, 16, (freq, cum)), (C, 0, (freq, cum)),
                           (C, 16, entries), (C, 0, entries)):  # fmt: skip
        out = np.zeros(n + 2 * PY.WL + slack, np.uint16)
        got.append(out[: ns.rans_encode16(syms, ctxs, *tab, out)].copy())
    # the histogram cells of model_tile (ctxs None; format 5's rows of the entry table)
    cells = ((ctxs & 0x3FFF).astype(np.int64) * PY.N_SYM + syms).astype(np.uint16)
    for slack in (16, 0):
        out = np.zeros(n + 2 * PY.WL + slack, np.uint16)
        got.append(out[: C.rans_encode16(cells, None, *entries, out)].copy())
    assert got[0].size >= 2 * PY.WL
    for g in got[1:]:
        np.testing.assert_array_equal(g, got[0])


@pytest.mark.parametrize("where", [3, 20, 40])
@pytest.mark.parametrize("bad", ["freq0", "context", "symbol"])
def test_rans_encode16_rejects_bad_symbols(where, bad):
    """A symbol of frequency 0, a context row or a symbol out of range is a ValueError
    in the vector path (positions 3 and 20 of 41; 40: its scalar tail) as in the plain one."""
    rng = np.random.default_rng(5)
    freq, cum = _tables(rng, 3, False)
    syms, ctxs = _symbols(rng, 41, freq)
    if bad == "freq0":
        freq[ctxs[where] & 0x3FFF, 0] = 0  # (tables need not sum to TAB here)
        cum = PY.cumulative(freq)
        syms[where] = 0
    elif bad == "context":
        ctxs[where] = 3
    else:
        syms[where] = PY.N_SYM
    cells = ((ctxs & 0x3FFF).astype(np.int64) * PY.N_SYM + syms).astype(np.uint16)
    for slack in (16, 0):
        out = np.zeros(syms.size + 2 * PY.WL + slack, np.uint16)
        for tab in ((freq, cum), (CK.rans_entries(freq, cum), None)):
            with pytest.raises(ValueError, match="out of range or of frequency 0"):
                C.rans_encode16(syms, ctxs, *tab, out)
        if bad != "symbol":  # (a cell holds no symbol beyond its row)
            with pytest.raises(ValueError, match="out of range or of frequency 0"):
                C.rans_encode16(cells, None, CK.rans_entries(freq, cum), None, out)
    with pytest.raises(ValueError, match="must lie in"):
        CK.rans_entries(freq, cum + PY.TAB)


def test_training_moments_match_numba_for_large_codes():
    """Codes beyond +-4095 (32-bit products would overflow) take the scalar training
    loop, codes within the vector one: numba's sums either way."""
    rng = np.random.default_rng(3)
    for top in (4095, 9000):
        codes = rng.integers(-top, top + 1, (37, 83)).astype(np.int32)
        codes[5, 7] = top
        accs = []
        for ns in (NB, C):
            acc = PY.new_moments()
            ns.train_tile(codes, PY.n_levels(*codes.shape), acc, 2)
            accs.append(acc)
        np.testing.assert_array_equal(accs[0], accs[1])


def test_plain_c_encoder_gives_the_same_stream():
    """The encoder's plain-C paths (CPUs without AVX2; forced by RAWSIGMA_CODEC_NO_AVX2)
    write the bytes of the AVX2 paths and of numba."""
    frame, _, cam = reference_frame((150, 97), seed=6)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=37)
    stack = np.stack([frame, frame[::-1].copy()])
    code = (
        "import sys, hashlib, numpy as np; "
        "from rawsigma.analysis.noisecodec import NoiseCodec; "
        "from rawsigma.analysis.noisecodec.synthetic import reference_frame; "
        "f, _, cam = reference_frame((150, 97), seed=6); "
        "c = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=37); "
        "print(hashlib.sha256(c.encode(np.stack([f, f[::-1].copy()]))).hexdigest())"
    )
    shas = []
    for flag in ("1", "0"):
        env = dict(os.environ, RAWSIGMA_CODEC_NO_AVX2=flag, RAWSIGMA_CODEC_KERNELS="c")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        shas.append(r.stdout.strip())
    saved = CK.KERNELS
    try:
        CK.KERNELS = NB
        want = hashlib.sha256(codec.encode(stack)).hexdigest()
    finally:
        CK.KERNELS = saved
    assert shas == [want, want]


@pytest.mark.parametrize("regular", [True, False])
def test_model_tile_matches_numba(regular):
    """model_tile's AVX2 prediction (regular level classes; rows of 8k + 1..7 pixels:
    vector and scalar parts) and its generic path (level classes that are no run of
    octiles) give numba's symbols, contexts, escapes and histogram."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[:45, :77]
    codes = (60 + 40 * np.sin(x / 5.0) * np.cos(y / 9.0) + rng.normal(0, 3, y.shape)).astype(
        np.int32
    )
    codes[rng.random(codes.shape) < 0.01] = 4000  # escapes
    K = PY.n_levels(*codes.shape)
    acc = PY.new_moments()
    NB.train_tile(codes, K, acc)
    luts, wts = PY.solve_weights(acc)
    if not regular:
        luts = np.tile((np.arange(PY.LVL_MAX + 1) * 5) % PY.N_LVL_CLS, (PY.N_SETS, 1))
    cts = PY.class_tables(luts.astype(np.uint8))
    # C's training keeps the tile's planes for its model pass: the same outputs
    keep = np.full(C.planes_size(*codes.shape), 12345, np.int16)
    C.train_tile(codes, K, PY.new_moments(), 4, True, keep)
    res = []
    nh = PY.N_CTX_ALL * PY.N_SYM
    for ns, planes, h32 in ((NB, (), False), (C, (), False), (C, (keep,), True)):
        n = codes.size
        syms, ctxs = np.empty(n, np.uint8), np.empty(n, np.uint16)
        # C also takes its own two uint32 halves (added to, summed by the caller)
        hist = np.full(2 * nh, 7, np.uint32) if h32 else np.zeros(nh, np.int64)
        esc = np.empty(n, np.int32)
        ne = ns.model_tile(codes, K, wts, ns.model_tables(cts), syms, ctxs, esc, hist, *planes)
        if h32:
            hist = hist[:nh].astype(np.int64) + hist[nh:] - 14
        res.append((syms, ctxs, esc[:ne], hist))
    assert res[0][2].size > 0
    for other in res[1:]:
        for a, b in zip(res[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    # format 5: one uint16 histogram cell per pixel (ctxs None), the same escapes and counts
    cells, esc, hist = np.empty(codes.size, np.uint16), np.empty(codes.size, np.int32), hist * 0
    ne = C.model_tile(codes, K, wts, C.model_tables(cts), cells, None, esc, hist)
    want = (res[0][1] & ((1 << PY.LANE_SHIFT) - 1)).astype(np.int64) * PY.N_SYM + res[0][0]
    np.testing.assert_array_equal(cells, want)
    np.testing.assert_array_equal(esc[:ne], res[0][2])
    np.testing.assert_array_equal(hist, res[0][3])
    with pytest.raises(ValueError, match="planes size"):
        C.train_tile(codes, K, PY.new_moments(), 4, True, keep[:-1])
    with pytest.raises(ValueError, match="planes size"):
        C.model_tile(codes, K, wts, C.model_tables(cts), syms, ctxs, esc, hist, keep[1:])
