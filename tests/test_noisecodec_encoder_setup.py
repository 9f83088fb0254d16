"""The encoder's per-frame model work (hce): the vectorised level classes, class moments,
batched solve and context choice equal the straightforward per-row code they replace;
the quantiser's own minimum gives the knee `frames_v_min` gives; training choices
(frames of a stack, row step) are the same for the C and numba kernels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec import encode_pyramid as EP
from rawsigma.analysis.noisecodec import pyramid as PY
from rawsigma.analysis.noisecodec import runtime as RT
from rawsigma.analysis.noisecodec import stream as ST
from rawsigma.analysis.noisecodec.synthetic import reference_frame

C = CK.c_namespace()
NB = CK.numba_namespace()
needs_c = pytest.mark.skipif(C is None, reason=f"C kernels unavailable: {CK.WHY_NOT}")


def _luts_loop(counts: np.ndarray) -> np.ndarray:
    """The per-row search `level_luts` replaces (octile edges, distinct, searched)."""
    out = []
    for row in counts:
        cdf = np.cumsum(row, dtype=np.float64)
        if cdf[-1] <= 0:
            out.append(np.zeros(PY.LVL_MAX + 1, np.uint8))
            continue
        thr = cdf[-1] * np.arange(1, PY.N_LVL_CLS) / PY.N_LVL_CLS
        edges = np.unique(np.clip(np.searchsorted(cdf, thr, side="right"), 1, PY.LVL_MAX))
        out.append(np.searchsorted(edges, np.arange(PY.LVL_MAX + 1), side="right"))
    return np.array(out, np.uint8)


def _weights_loop(acc: np.ndarray) -> np.ndarray:
    """Per set: the pooled fit, then each class's fit or the pooled one (two solves)."""
    luts = _luts_loop(acc[..., 9].sum(1))
    mom = PY._class_moments(acc, luts).astype(np.float64).reshape(PY.N_SETS, PY.N_CLASS, -1)
    ata, aty = PY.normal_equations(mom)
    pooled = PY._solve(ata.sum(1), aty.sum(1), np.array([0.25, 0, 0, 0.0]), 16 * PY.N_W)
    out = PY._solve(ata, aty, pooled[:, None, :], 32 * PY.N_W)
    out[..., :-1] = np.clip(out[..., :-1], -2.0, 2.0)
    out[..., -1] = np.clip(out[..., -1], -4096.0, 4096.0)
    return np.rint(out * (1 << PY.WB)).astype(np.int32).reshape(PY.N_SETS, -1)


def test_level_luts_and_weights_equal_the_per_row_code() -> None:
    rng = np.random.default_rng(5)
    shape = (PY.N_SETS, PY.N_ACT_CLS, PY.LVL_MAX + 1, PY.N_MOM)
    for trial in range(40):
        scale = (2**40, 1000, 40, 3)[trial % 4]
        acc = rng.integers(0, scale, shape) * (rng.random((1, 1, shape[2], 1)) < rng.random())
        if trial % 5 == 0:
            acc[rng.integers(0, PY.N_SETS)] = 0  # a set without samples: the default fit
        luts, wts = PY.solve_weights(acc)
        np.testing.assert_array_equal(luts, _luts_loop(acc[..., 9].sum(1)))
        np.testing.assert_array_equal(wts, _weights_loop(acc))
        if C is not None:  # the C class moments: the same integers, the same weights
            luts_c, wts_c = PY.solve_weights(acc, C.class_moments)
            np.testing.assert_array_equal(luts_c, luts)
            np.testing.assert_array_equal(wts_c, wts)


def _contexts_loop(hist: np.ndarray) -> np.ndarray:
    """`choose_contexts` with the entropy written per cell, −Σ c·log2(c / T)."""
    h = hist.reshape(PY.N_GROUPS, PY.N_FRAC, PY.N_ACT_CTX, PY.N_SYM).transpose(0, 2, 1, 3)
    costs = []
    for m in range(PY.FRAC_BITS + 1):
        c = h.reshape(PY.N_GROUPS, PY.N_ACT_CTX, 1 << m, PY.N_FRAC >> m, PY.N_SYM).sum(3)
        c = c.astype(np.float64)
        t = c.sum(-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = np.where(c > 0, np.log2(c / np.maximum(t, 1.0)), 0.0)
        bits = -(c * lg).sum(-1) + 9.0 * (c > 0).sum(-1) + 16.0 * (t[..., 0] > 0)
        costs.append(bits.sum(-1))
    best = np.argmin(np.stack(costs), 0)
    # the same map construction as choose_contexts, from the chosen widths
    width = (PY.N_FRAC >> best)[:, None, :]
    logical = np.arange(PY.N_CTX_ALL).reshape(PY.N_GROUPS, PY.N_FRAC, PY.N_ACT_CTX)
    f = np.arange(PY.N_FRAC)[None, :, None]
    target = (logical - f * PY.N_ACT_CTX + (f // width) * width * PY.N_ACT_CTX).ravel()
    used = np.bincount(target, weights=hist.sum(1), minlength=PY.N_CTX_ALL)[target] > 0
    if (~used).any():
        target[~used] = target[np.flatnonzero(~used)[0]]
    return np.unique(target, return_inverse=True)[1]


def test_choose_contexts_equals_the_per_cell_entropy(context_histogram) -> None:
    rng = np.random.default_rng(6)
    for trial in range(60):
        h = context_histogram(rng, trial)
        np.testing.assert_array_equal(PY.choose_contexts(h), _contexts_loop(h))


@needs_c
def test_quantiser_minimum_is_the_float32_minimum() -> None:
    """`quantise_round` with its minimum: the same codes, and the smallest float32 v."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3000, (37, 53)).astype(np.uint16)
    off = rng.normal(100, 2, x.shape).astype(np.float32)
    gain = rng.normal(2, 0.1, x.shape).astype(np.float32)
    v32 = (x.astype(np.float32) - off) / gain + np.float32(0.375)
    for kp in (np.zeros(4), np.array([16.0, 8.0, 0.25, 1.0])):
        a, b = np.empty(x.shape, np.int32), np.empty(x.shape, np.int32)
        top = C.quantise_round(x, off, gain, a, 0.5, 0.375, kp)
        top2, vmin = C.quantise_round(x, off, gain, b, 0.5, 0.375, kp, True)
        np.testing.assert_array_equal(a, b)
        assert top == top2 and vmin == float(v32.min())


@needs_c
def test_quantiser_takes_one_gain_row_of_a_uniform_map() -> None:
    """`quantise_round` with one gain row for every row (uniform maps, `stream`): the
    codes, top and minimum of the whole map; a row of another length is refused."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3000, (37, 53)).astype(np.uint16)
    off = rng.normal(100, 2, x.shape).astype(np.float32)
    row = np.full(53, 2.17, np.float32)
    for kp in (np.zeros(4), np.array([16.0, 8.0, 0.25, 1.0])):
        a, b = np.empty(x.shape, np.int32), np.empty(x.shape, np.int32)
        want = C.quantise_round(x, off, np.tile(row, (37, 1)), a, 0.5, 0.375, kp, True)
        assert C.quantise_round(x, off, row, b, 0.5, 0.375, kp, True) == want
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="sizes"):
        C.quantise_round(x, off, row[:52], b, 0.5, 0.375, np.zeros(4))


def test_knee_of_agrees_with_the_exact_knee() -> None:
    """`_knee_of` gives `stream_knee`'s parameters for the exact v_min, or None close to a
    boundary of the knee's code shift or of the knee itself."""
    params = ST.StreamParams(step=2.0, knee=16.0)
    c0 = 0.375
    for v in np.linspace(-60.0, 40.0, 2001):
        got = ST._knee_of(float(v), c0, params)
        lo, hi = v * (1 - 1e-7) - 1e-7, v * (1 + 1e-7) + 1e-7
        exact = [ST.knee_params(u, 16.0, 2.0, False) for u in (lo, v, hi)]
        if got is not None:
            for e in exact:
                np.testing.assert_array_equal(got, e)
    assert ST._knee_of(16.5, c0, params) is not None  # far from every boundary
    assert ST._knee_of(16.0, c0, params) is None  # at the knee
    none = replace(params, knee=0.0)
    assert ST._knee_of(1.0, c0, none).tolist() == [0, 0, 0, 0]
    assert ST._knee_of(1e-9, c0, none) is None  # may be below 0: the exact check raises


@needs_c
def test_knee_guess_does_not_change_the_stream() -> None:
    """A frame with a knee after one without (and back), with the guess of the previous
    frame: the streams of a fresh encoder, and those of the numba kernels."""
    frame, _, cam = reference_frame((96, 80), seed=2)
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=2.0, tile_rows=32)
    low = np.clip(frame.astype(np.int32) - int(prof.offset.max()) // 2, 0, 65535)
    frames = [frame, low.astype(np.uint16), frame, low.astype(np.uint16)]
    saved = CK.KERNELS
    try:
        streams = {}
        for ns in (NB, C):
            CK.KERNELS = ns
            for i, f in enumerate(frames):  # C: each with the knee of the one before
                streams[ns.name, i] = ST.encode_frames(f, codec.maps, codec.params)
    finally:
        CK.KERNELS = saved
    for i in range(len(frames)):
        assert streams["c", i] == streams["numba", i]
    assert ST.read_header(streams["c", 1]).get("knee") != ST.read_header(streams["c", 0]).get(
        "knee"
    )


@needs_c
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("row_step", [1, 3, 5, 8])
def test_train_row_step_c_equals_numba(row_step, sparse) -> None:
    rng = np.random.default_rng(row_step)
    y, x = np.mgrid[:70, :90]
    codes = (40 + 30 * np.sin(x / 7.0) + rng.normal(0, 2, x.shape)).astype(np.int32)
    K = PY.n_levels(*codes.shape)
    accs = [PY.new_moments(), PY.new_moments()]
    NB.train_tile(codes, K, accs[0], row_step, sparse)
    C.train_tile(codes, K, accs[1], row_step, sparse)
    np.testing.assert_array_equal(accs[0], accs[1])
    dense = PY.new_moments()
    C.train_tile(codes, K, dense, 1)
    n = accs[1][..., 9].sum()
    assert 0 < n <= dense[..., 9].sum()
    assert (n < dense[..., 9].sum()) == (row_step > 1 or sparse)
    # sparse halves the rows of levels >= 1 (weight sets 3-5) only: level 0's samples
    # (sets 0-2) are those of the old density
    old = PY.new_moments()
    C.train_tile(codes, K, old, row_step)
    per_set = accs[1][..., 9].sum((1, 2))
    np.testing.assert_array_equal(per_set[:3], old[..., 9].sum((1, 2))[:3])
    if sparse:
        assert 0 < per_set[3:].sum() < 0.6 * old[..., 9].sum((1, 2))[3:].sum()


def test_training_frames_of_a_stack() -> None:
    """A stack trains on evenly spaced whole frames of at most TRAIN_PIXELS (at least
    one); a single frame on all its tiles."""
    tiles = ST._tiles(10, 512, 256)
    chosen = sorted(EP._train_tiles(tiles, 512 * 512))
    frames = sorted({f for f, _, _ in chosen})
    assert len(frames) == EP.TRAIN_PIXELS // (512 * 512) == 8
    assert all((f, r0, th) in chosen for f in frames for _, r0, th in tiles[:2])
    assert EP._train_tiles(ST._tiles(1, 4096, 256), 4096**2) == ST._tiles(1, 4096, 256)
    big = EP._train_tiles(ST._tiles(3, 2048, 256), 2048**2)
    assert {f for f, _, _ in big} == {1}


def test_small_frames_run_in_the_calling_thread() -> None:
    assert RT._auto_threads(None, 512 * 512) == 1
    assert RT._auto_threads(None, RT.PARALLEL_PIXELS) is None
    assert RT._auto_threads(2, 16) == 2


@needs_c
def test_model_tile_with_split_class_tables() -> None:
    """The separable class tables (split once per frame) give model_tile's outputs of the
    full tables; a table of another size is refused."""
    rng = np.random.default_rng(8)
    codes = (40 + rng.normal(0, 3, (40, 70))).astype(np.int32)
    codes[rng.random(codes.shape) < 0.01] = 900  # escapes
    K = PY.n_levels(*codes.shape)
    acc = PY.new_moments()
    C.train_tile(codes, K, acc)
    luts, wts = PY.solve_weights(acc)
    cts = PY.class_tables(luts)
    outs = []
    for tab in (cts, C.model_tables(cts)):
        n = codes.size
        o = (np.empty(n, np.uint8), np.empty(n, np.uint16), np.empty(n, np.int32))
        hist = np.zeros(PY.N_CTX_ALL * PY.N_SYM, np.int64)
        ne = C.model_tile(codes, K, wts, tab, *o, hist)
        outs.append((*o[:2], o[2][:ne], hist))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert outs[0][2].size > 0
    with pytest.raises(ValueError):
        C.model_tile(codes, K, wts, C.model_tables(cts)[:-1], *o, hist)


def test_escapes_section_settings_decode_the_same() -> None:
    """A single frame's escapes: Huffman-only zlib, or level 6 when that is smaller on
    repetitive values; a stack's: level 6. Every choice decodes to the codes."""
    import zlib

    rng = np.random.default_rng(9)
    varied = rng.integers(33, 154, 3437).astype(np.int32)
    repeated = np.full(3000, 4000, np.int32)
    raw = {k: v.astype("<i4").tobytes() for k, v in (("v", varied), ("r", repeated))}
    huff = EP._deflate(raw["v"], 1, zlib.Z_HUFFMAN_ONLY)
    assert EP.escapes_section(varied, 1) == huff
    assert EP.escapes_section(varied, 2) == zlib.compress(raw["v"], 6)
    # constant values: Huffman's 1 bit per byte at best; level 6 takes the repeats
    assert EP.escapes_section(repeated, 1) == zlib.compress(raw["r"], 6)
    assert len(EP.escapes_section(repeated, 1)) < len(raw["r"]) // 50
    for esc in (varied, repeated, np.zeros(0, np.int32)):
        for n in (1, 3):
            back = np.frombuffer(zlib.decompress(EP.escapes_section(esc, n)), "<i4")
            np.testing.assert_array_equal(back, esc)
