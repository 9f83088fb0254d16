"""The noise codec's C kernels (`ckernels`, built at install) against the numba kernels
(the reference): the same bytes and the same pixels, kernel by kernel and stream by
stream, on random tiles of odd sizes, real frames and the 2048² reference frame."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from codec_streams import coded_tile, trained_weights  # noqa: E402
from rawsigma.analysis.noisecodec import NoiseCodec, StreamParams, codec_maps, warmup  # noqa: E402
from rawsigma.analysis.noisecodec import ckernels as CK  # noqa: E402
from rawsigma.analysis.noisecodec import pyramid as PY  # noqa: E402
from rawsigma.analysis.noisecodec.stream import decode_frames, encode_frames  # noqa: E402
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.errors import InputFileError  # noqa: E402

C = CK.c_namespace()
NB = CK.numba_namespace()
needs_c = pytest.mark.skipif(C is None, reason=f"C kernels unavailable: {CK.WHY_NOT}")


def test_extension_built_where_a_compiler_exists():
    """`pip install` builds the extension wherever there is a C compiler (CI, new
    machines); without one rawsigma falls back to numba (optional extension)."""
    if shutil.which("cc") or shutil.which("gcc"):
        assert C is not None, CK.WHY_NOT
        assert CK.BACKEND == "c" or os.environ.get("RAWSIGMA_CODEC_KERNELS") == "numba"


def _codes(rng, h, w, spread=2.0, top=4095):
    y, x = np.mgrid[:h, :w]
    base = 40 + 30 * np.sin(x / 7.0) * np.cos(y / 11.0)
    c = base + rng.normal(0, spread, (h, w))
    c[rng.random((h, w)) < 0.01] = top  # escapes
    return np.ascontiguousarray(c.clip(0, top).astype(np.int32))


SHAPES = [(1, 1), (1, 7), (9, 1), (8, 5), (13, 200), (37, 41), (64, 64), (129, 258)]


@needs_c
@pytest.mark.parametrize("shape", SHAPES)
def test_tile_kernels_equal(shape):
    """train_tile, model_tile, rans_encode and decode_tile: the same outputs, bit for bit,
    on one tile (odd sizes, K = 0 tiles, single rows and columns, escapes)."""
    rng = np.random.default_rng(sum(shape))
    codes = _codes(rng, *shape)
    K = PY.n_levels(*shape)
    assert C.n_levels(*shape) == K
    accs = [PY.new_moments(), PY.new_moments()]
    NB.train_tile(codes, K, accs[0])
    C.train_tile(codes, K, accs[1])
    np.testing.assert_array_equal(accs[0], accs[1])
    luts, wts = PY.solve_weights(accs[0])
    cts = PY.class_tables(luts)
    n = codes.size
    res = []
    for ns in (NB, C):
        syms, ctxs = np.empty(n, np.uint8), np.empty(n, np.uint16)
        esc, hist = np.empty(n, np.int32), np.zeros(PY.N_CTX_ALL * PY.N_SYM, np.int64)
        ne = ns.model_tile(codes, K, wts, cts, syms, ctxs, esc, hist)
        res.append((syms, ctxs, esc[:ne], hist))
    for a, b in zip(*res, strict=True):
        np.testing.assert_array_equal(a, b)
    syms, ctxs, esc, hist = res[0]
    phys = PY.normalise(hist.reshape(PY.N_CTX_ALL, PY.N_SYM))  # one table per context
    cum = PY.cumulative(phys)
    words = []
    for ns in (NB, C):
        out = np.zeros((PY.LANES, n // PY.LANES + 16), np.uint16)
        lens = np.zeros(PY.LANES, np.int64)
        ns.rans_encode(syms, ctxs, phys, cum, out, lens)
        words.append([out[k, : lens[k]].copy() for k in range(PY.LANES)])
    for a, b in zip(*words, strict=True):
        np.testing.assert_array_equal(a, b)
    _decode_both(words[0], esc, wts, cts, PY.decode_table(phys), codes)
    wide = []  # format 5: 16 states, one word stream
    for ns in (NB, C):
        out = np.zeros(n + 2 * PY.WL + 16, np.uint16)
        wide.append(out[: ns.rans_encode16(syms, ctxs, phys, cum, out)].copy())
    np.testing.assert_array_equal(wide[0], wide[1])
    _decode_both(wide[0], esc, wts, cts, PY.decode_table(phys), codes, wide=True)


@needs_c
def test_decode_with_irregular_level_classes():
    """Level classes that are no run of octiles (a corrupted or foreign model: more than
    7 steps) take the C decoder's generic prediction: still numba's pixels."""
    rng = np.random.default_rng(7)
    codes = _codes(rng, 40, 90)
    luts = np.tile((np.arange(PY.LVL_MAX + 1) * 5) % PY.N_LVL_CLS, (PY.N_SETS, 1))
    _decode_both(*_wide_stream(codes, luts), codes, wide=True)


def _wide_stream(codes, luts):
    """A format-5 stream of ``codes`` with the given level classes (numba's encoder side),
    as ``(words, esc, wts, cts, tab)``."""
    _, wts = trained_weights(codes, NB)
    # a bias of its own for every class (classes without samples share the default
    # weights: a wrong class must change the prediction)
    wts = np.array(wts, np.int32).reshape(PY.N_SETS, PY.N_CLASS, PY.N_W)
    wts[..., 3] += np.arange(PY.N_CLASS, dtype=np.int32) * 1500
    wts = wts.reshape(PY.N_SETS, -1)
    cts = PY.class_tables(np.asarray(luts, np.uint8))
    words, esc, tab = coded_tile(codes, wts, cts, NB, C)
    return words, esc, wts, cts, tab


# level steps (where the level class goes up): within 15 levels (the AVX2 prediction's byte
# tables), the same ending at level 255, spread wider (its permute form), none
LEVEL_STEPS = [(100, 101, 103, 106, 110, 114), (246, 248, 251, 255), (3, 20, 60, 130, 250), ()]


@needs_c
@pytest.mark.parametrize("steps", LEVEL_STEPS)
def test_decode_with_level_steps_near_and_far(steps):
    """Level classes with their steps close together or far apart (the two forms of the
    AVX2 prediction's class lookup), on codes whose levels cover 0..255 and beyond:
    numba's pixels."""
    rng = np.random.default_rng(len(steps))
    y, x = np.mgrid[:70, :150]
    c = 560 * (0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 13.0)) + rng.normal(0, 3.0, x.shape)
    codes = np.ascontiguousarray(c.clip(0, 4095).astype(np.int32))
    lvl = np.searchsorted(np.asarray(steps, np.int64), np.arange(PY.LVL_MAX + 1), side="right")
    luts = np.tile(lvl, (PY.N_SETS, 1))
    _decode_both(*_wide_stream(codes, luts), codes, wide=True)


@needs_c
@pytest.mark.parametrize(("nrec", "analytic", "gain_row"),
                         [(60, False, False), (60, False, True), (5, False, True),
                          (300, True, True), (300, True, False)])  # fmt: skip
def test_output_pass_tables_equal(nrec, analytic, gain_row):
    """The dequantisation of the decoded codes (negative codes, codes beyond the
    reconstruction table, a table or the analytic values, a gain map or one gain row,
    a knee-free jittered offset): numba's pixels."""
    rng = np.random.default_rng(nrec)
    codes = _codes(rng, 45, 131)
    codes[rng.random(codes.shape) < 0.02] = -3
    codes[rng.random(codes.shape) < 0.02] = 200
    luts = np.tile(np.minimum(np.arange(PY.LVL_MAX + 1) // 40, PY.N_LVL_CLS - 1), (PY.N_SETS, 1))
    words, esc, wts, cts, tab = _wide_stream(codes, luts)
    h, w = codes.shape
    off = (100 + rng.random((h, w)) - 0.5).astype(np.float32)
    gain = (
        np.full((h, w), 1.37, np.float32)
        if gain_row
        else rng.uniform(1, 2, (h, w)).astype(np.float32)
    )
    recon = 0.25 * (2.0 * np.arange(nrec)) ** 2 - 3.0 - 0.1 + rng.normal(0, 0.01, nrec)
    wpad = np.concatenate([words, np.zeros(w + 64, np.uint16)])
    outs = []
    for ns in (NB, C):
        out = np.empty((h, w), np.uint16)
        dq = (off, gain[0] if gain_row and ns is C else gain, recon, 2.0, 3.0, False, 0, 0,
              65535.0, analytic, np.zeros(4))  # fmt: skip
        ok, ne = ns.decode_tile16(wpad, 0, words.size, esc.astype(np.int64), 0, esc.size, wts,
                                  cts, tab, out, dq)  # fmt: skip
        assert ok and ne == esc.size
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert (outs[1] > 0).all()  # offset 100 ADU: the codes landed


def _decode_both(lanes, esc, wts, cts, tab, codes, wide=False):
    """decode_tile of both back ends: the same output and end state (identity maps: the
    output is the code, clipped to uint16)."""
    h, w = codes.shape
    lanes = [lanes] if wide else lanes
    lens = np.array([x.size for x in lanes])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    words = np.concatenate([*lanes, np.zeros(w + 64, np.uint16)])
    ones, zeros = np.ones((h, w), np.float32), np.zeros((h, w), np.float32)
    recon = np.zeros(0, np.float64)  # codes beyond the table: the analytic centre
    esc64 = esc.astype(np.int64)
    outs = []
    for ns in (NB, C):
        out = np.empty((h, w), np.uint16)
        dq = (zeros, ones, recon, 2.0, 0.0, False, 0, 0, 65535.0, False, np.zeros(4))
        if wide:
            ok, ne = ns.decode_tile16(words, 0, lens[0], esc64, 0, esc.size, wts, cts, tab,
                                      out, dq)  # fmt: skip
        else:
            ok, ne = ns.decode_tile(words, starts, starts + lens, esc64, 0, esc.size, wts, cts,
                                    tab, out, dq)  # fmt: skip
        assert ok and ne == esc.size
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    expected = np.floor(0.25 * (2.0 * np.maximum(codes, 0)) ** 2 + 0.5).clip(0, 65535)
    np.testing.assert_array_equal(outs[1], expected.astype(np.uint16))


def _both(frames, maps, params):
    """Encode and decode with each back end; assert identical bytes and pixels."""
    res = []
    saved = CK.KERNELS
    try:
        for ns in (NB, C):
            CK.KERNELS = ns
            data = encode_frames(frames, maps, params)
            res.append((data, decode_frames(data, maps)))
    finally:
        CK.KERNELS = saved
    assert res[0][0] == res[1][0], "C and numba streams differ"
    np.testing.assert_array_equal(res[0][1], res[1][1])
    return res[1]


PARAMS = [
    dict(step=2.0),
    dict(step=2.0, dither=True),
    dict(step=1.0, dither=True),
    dict(step=1.0),
    dict(max_error=1.0),
]


@needs_c
@pytest.mark.parametrize("kw", PARAMS)
def test_streams_equal_on_real_frames(shared_data, kw):
    """Two BBBC039 frames (520 × 696) in tiles of 64 rows (the last of 8 rows: a top
    plane only), S = 1 and 2, dither, a hard bound: same bytes, same pixels."""
    import tifffile
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    img = np.asarray(tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[:2])
    prof = estimate_profile(img[0], bit_depth=16)
    codec = NoiseCodec(prof, tile_rows=64, **kw)
    data, out = _both(img.astype(np.uint16), codec.maps, codec.params)
    assert out.shape == img.shape


@needs_c
def test_streams_equal_with_a_knee_and_per_pixel_maps():
    """Values below the offset (format 4, the transform's knee), per-pixel maps, odd
    tile heights, and codes beyond the reconstruction table (analytic decoding)."""
    frame, _, cam = reference_frame((150, 97), seed=4)
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=2.0, tile_rows=37)
    low = frame.astype(np.int32) - int(prof.offset.max()) // 2
    low = np.clip(low, 0, 65535).astype(np.uint16)
    for f, kw in ((low, {}), (frame, dict(dither=True)), (frame, dict(step=0.5))):
        params = replace(codec.params, **kw)
        data, _ = _both(np.stack([f, f[::-1].copy()]), codec.maps, params)


def _sections(data: bytes) -> dict:
    import zlib

    from rawsigma.analysis.noisecodec.stream import read_header

    hd = read_header(data)
    body = memoryview(data)[hd["_body"] :]
    return {k: zlib.decompress(body[o : o + n]) for k, (o, n) in hd["sections"].items()
            if k in ("freq", "contexts", "levels")}  # fmt: skip


@needs_c
def test_decoder_tables_from_sections_equal_the_prepared_tables():
    """`_ckernels.dec_tables` (a stream's tables from its sections, in C) makes the bytes
    of `dec_prepare` of the numba path's (cts, tab), and refuses what the numba path
    refuses: a table not summing to TAB, a context naming no table, a level class ≥ 8,
    sections of the wrong size."""
    frame, _, cam = reference_frame((96, 80), seed=2)
    sec = _sections(NoiseCodec(cam.true_profile(), step=2.0).encode(frame))
    args = (sec["freq"], sec["contexts"], sec["levels"])
    cts, tab = NB.decoder_tables(*args)
    prep, none = C.decoder_tables(*args)
    assert none is None and bytes(prep) == bytes(CK._C.dec_prepare(cts, *tab))
    planes = np.frombuffer(sec["freq"], np.uint8).copy()
    n = planes.size // 2
    f = planes[:n].astype(np.int64) | planes[n:].astype(np.int64) << 8
    g = int(np.flatnonzero(f)[0])
    f[g] -= 1  # its table sums to TAB - 1
    bad_freq = np.concatenate([f & 0xFF, f >> 8]).astype(np.uint8).tobytes()
    rm = np.frombuffer(sec["contexts"], "<u2").copy()
    rm[5] = n // PY.N_SYM  # one past the last table
    lv = np.frombuffer(sec["levels"], np.uint8).copy()
    lv[7] = PY.N_LVL_CLS
    for bad in (
        (bad_freq, *args[1:]),
        (args[0], rm.tobytes(), args[2]),
        (*args[:2], lv.tobytes()),
        (args[0][:-2], *args[1:]),
        (args[0], args[1][:-2], args[2]),
        (*args[:2], args[2] + b"\0"),
        (b"", *args[1:]),
    ):
        assert NB.decoder_tables(*bad) is None
        assert C.decoder_tables(*bad) is None


@needs_c
def test_quantise_tile_accumulators_equal():
    """`quantise_tile` (dither and bound modes) with its per-code sums of e⁻."""
    rng = np.random.default_rng(2)
    x = rng.integers(90, 4000, (33, 65)).astype(np.uint16)
    off = rng.normal(100, 1, x.shape).astype(np.float32)
    gain = rng.normal(2, 0.05, x.shape).astype(np.float32)
    edges = np.cumsum(rng.uniform(1, 5, 400)) - 50.0
    for dither, ed in ((True, np.zeros(0)), (False, edges), (False, np.zeros(0))):
        res = []
        for ns in (NB, C):
            codes = np.empty(x.shape, np.int32)
            s, n = np.zeros(300), np.zeros(300, np.int64)
            ns.quantise_tile(x, off, gain, codes, 1.5, 0.375, dither, 7, 123, ed, s, n,
                             np.zeros(4))  # fmt: skip
            res.append((codes, s, n))
        for a, b in zip(*res, strict=True):
            np.testing.assert_array_equal(a, b)


@needs_c
def test_v_min_equals_numpy():
    """The C loop of `frames_v_min` gives numpy's value (stacks and single frames)."""
    from rawsigma.analysis.noisecodec.stream import frames_v_min

    frame, _, cam = reference_frame((61, 77), seed=3)
    maps = NoiseCodec(cam.true_profile(), step=2.0).maps
    stack = np.stack([frame, frame[::-1].copy(), frame[:, ::-1].copy()])
    saved = CK.KERNELS
    try:
        for x in (stack, stack[:1]):
            CK.KERNELS = NB
            want = frames_v_min(x, maps, 0.375)
            CK.KERNELS = C
            assert frames_v_min(x, maps, 0.375) == want
    finally:
        CK.KERNELS = saved


@needs_c
@pytest.mark.slow
def test_reference_frame_bytes():
    """The 2048² reference frame of bench_noise_codec (S = 2): the same stream from both
    back ends (format 5: sha256 6b0a4d92f8de… on every CPU since session 11, whose
    "recon" table cubes by libm's pow: numpy's AVX-512 power gave da53ebdcf57c…, 825361
    bytes, on CPUs that have it; 6b0a4d92f8de… came with husi's sparser training of levels
    >= 1 and faster zlib settings of the escapes and freq sections, 825359 bytes, 785
    (0.1 %) more than 78e7971611c2… before it, which had henc's zlib setting of the
    weights section, 65 bytes shorter than
    e14ba2874eed… before it; format 4:
    c657812be343… with hce's encoder, 5514d519d86a… before it), decoding to the pixels
    of the format 4 stream (sha256 981aca96bccd…). The maps keep the defect pixels' own
    gain and offset, as when those hashes were recorded."""
    frame, _, cam = reference_frame((2048, 2048), seed=0)
    codec = NoiseCodec(cam.true_profile(), step=2.0)
    codec.maps = codec_maps(cam.true_profile(), "pixel", trust_defects=True)
    res, saved = [], CK.KERNELS
    try:
        for ns in (NB, C):
            CK.KERNELS = ns
            data = codec.encode(frame)
            res.append((hashlib.sha256(data).hexdigest(), codec.decode(data)))
    finally:
        CK.KERNELS = saved
    assert res[0][0] == res[1][0] and res[1][0].startswith("6b0a4d92f8de")
    np.testing.assert_array_equal(res[0][1], res[1][1])
    assert hashlib.sha256(res[1][1].tobytes()).hexdigest().startswith("981aca96bccd")


@needs_c
def test_c_errors_are_clean():
    """Wrong dtypes or sizes raise TypeError/ValueError, never crash; a lying lane
    directory is a corrupted tile (False), as in numba."""
    codes = np.zeros((16, 16), np.int64)
    with pytest.raises(TypeError, match="codes"):
        C.train_tile(codes, 1, PY.new_moments())
    with pytest.raises(ValueError, match="acc"):
        C.train_tile(codes.astype(np.int32), 1, np.zeros(5, np.int64))
    frame, _, cam = reference_frame((40, 30), seed=1)
    codec = NoiseCodec(cam.true_profile(), step=2.0, embed_maps=True)
    data = bytearray(codec.encode(frame))
    data[-40] ^= 0xFF  # inside the words: CRC mismatch first
    with pytest.raises(InputFileError):
        codec.decode(bytes(data))


@needs_c
def test_nothing_to_compile_on_the_c_path(monkeypatch):
    """With the C kernels the default back end and the quantisers need no numba
    compile at all: no kernel listed, `warm_up` returns at once, no stage shown."""
    monkeypatch.setattr(CK, "KERNELS", C)
    seen: list = []
    for p in (StreamParams(), StreamParams(dither=True), StreamParams(max_error=1.0)):
        assert warmup.kernels(p) == []
        assert warmup.warm_up(p, lambda *a: seen.append(a)) == 0.0
    assert seen == []
    monkeypatch.setattr(CK, "KERNELS", NB)
    assert {d.__name__ for d in warmup.kernels(StreamParams(), encode=False)} == {"decode_tile16"}


def test_backend_chosen_by_the_environment():
    code = "from rawsigma.analysis.noisecodec import ckernels as CK; print(CK.BACKEND)"
    env = dict(os.environ, RAWSIGMA_CODEC_KERNELS="numba")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.stdout.strip() == "numba", r.stderr
    env["RAWSIGMA_CODEC_KERNELS"] = "fortran"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "expected 'c' or 'numba'" in r.stderr


@needs_c
@pytest.mark.parametrize("maps", ["pixel", "global"])
def test_plain_c_decoder_gives_the_same_pixels(tmp_path, maps):
    """The decoder's plain-C paths (CPUs without AVX2; forced here by
    RAWSIGMA_CODEC_NO_AVX2) decode to the pixels of the AVX2 paths and of numba, with
    per-pixel maps and with global maps (one gain row for every row)."""
    frame, _, cam = reference_frame((150, 97), seed=4)
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=2.0, tile_rows=37, embed_maps=True, maps=maps)
    stream = tmp_path / "s.rsnc"
    stream.write_bytes(codec.encode(np.stack([frame, frame[::-1].copy()])))
    code = (
        "import sys, hashlib; from rawsigma.analysis.noisecodec.stream import decode_frames; "
        "print(hashlib.sha256(decode_frames(open(sys.argv[1], 'rb').read()).tobytes())"
        ".hexdigest())"
    )
    shas = []
    for flag in ("1", "0"):
        env = dict(os.environ, RAWSIGMA_CODEC_NO_AVX2=flag, RAWSIGMA_CODEC_KERNELS="c")
        r = subprocess.run([sys.executable, "-c", code, str(stream)], env=env,
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr
        shas.append(r.stdout.strip())
    saved = CK.KERNELS
    try:
        CK.KERNELS = NB
        want = hashlib.sha256(decode_frames(stream.read_bytes()).tobytes()).hexdigest()
    finally:
        CK.KERNELS = saved
    assert shas == [want, want]


def _many_tables_stack() -> np.ndarray:
    """8 frames of 512² (the reference frame, ±2 ADU of fresh noise in each): a stream
    of ~250 physical tables (a single 512² frame: ~100)."""
    frame, _, _ = reference_frame((512, 512), seed=5)
    rng = np.random.default_rng(5)
    noise = rng.integers(-2, 3, (8, *frame.shape))
    return np.clip(frame.astype(np.int32) + noise, 0, 65535).astype(np.uint16)


@needs_c
def test_compact_decoder_tables_give_the_steps_of_the_entries():
    """The compact tables the AVX2 rows read (per table its symbols' freq << 16 | symbol
    << 10 | cum, then per slot its symbol: 1.25 KiB instead of 4) give every slot of
    every table the step of its 4-byte entry (freq, symbol, slot - cum), on a stream of
    several hundred tables; and the stream decodes to numba's pixels."""
    _, _, cam = reference_frame((512, 512), seed=5)
    codec = NoiseCodec(cam.true_profile(), step=2.0)
    frames = _many_tables_stack()
    data = codec.encode(frames)
    sec = _sections(data)
    ntab = len(sec["freq"]) // (2 * PY.N_SYM)
    assert ntab > 200
    prep, _ = C.decoder_tables(sec["freq"], sec["contexts"], sec["levels"])
    blob = bytes(prep)
    head = len(blob) - ntab * (PY.TAB * 4 + 64 * 4 + PY.TAB)  # the struct before the tables
    assert head > 0
    tab = np.frombuffer(blob, "<u4", ntab * PY.TAB, head).reshape(ntab, PY.TAB)
    fc = np.frombuffer(blob, "<u4", ntab * 64, head + tab.nbytes).reshape(ntab, 64)
    sym = np.frombuffer(blob, np.uint8, ntab * PY.TAB, head + tab.nbytes + fc.nbytes)
    sym = sym.reshape(ntab, PY.TAB)
    np.testing.assert_array_equal(sym, (tab >> 10) & 63)
    e = np.take_along_axis(fc, sym.astype(np.int64), 1)
    np.testing.assert_array_equal(e >> 16, tab >> 16)  # the frequency
    np.testing.assert_array_equal((e >> 10) & 63, sym)
    np.testing.assert_array_equal(np.arange(PY.TAB) - (e & 1023), tab & 1023)  # slot - cum
    saved = CK.KERNELS
    try:
        CK.KERNELS = NB
        want = codec.decode(data)
    finally:
        CK.KERNELS = saved
    np.testing.assert_array_equal(codec.decode(data), want)
