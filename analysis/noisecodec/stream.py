"""The self-describing byte stream of the noise codec (format versions 1–5).

Layout::

    b"RSNC" | uint16 version | uint32 header length | header (UTF-8 JSON)
    | sections (concatenated, offsets in the header) | uint32 CRC-32 of all before it

The header holds everything needed to decode: shape, step, mode, global read noise,
dither seed, reconstruction table, predictor weights, rANS tables, tile directory, the
global gain/offset, the profile id and, for per-pixel maps, either the maps themselves
(quantised: offset in 1/4 ADU, gain in 2⁻⁹ relative steps, zstd) or their digest
(``maps="reference"``: the caller supplies the maps, e.g. from a container or profile).

Version 2 adds the header key ``effort``: ``"best"`` (the only back end of version 1:
64 classes × 18-tap predictor, weights section of 64·19 int32) or ``"fast"`` (one 6-tap
predictor, 7 int32, `fastpath`); their decoder runs tiles of equal shape in lock-step
groups of `fastpath.LANES`. Version 3 is the ``"pyramid"`` back end (`pyramid`):
sections ``weights`` (sets × classes × 4 int32: r1, r2, r3, bias), ``levels`` (level →
class LUT per set, uint8), ``freq`` (the tables, uint16 as low-byte then high-byte
planes) and ``contexts`` (logical context → table, uint16); a tile row of the directory is
``[frame, row0, rows, escapes, words of lane 0..3]``. Streams of the causal back ends
are still written as version 2. Version 4 (either back end) adds the header key ``knee``
(`transform.knee_params`: the transform continued linearly below the offset, codes
shifted by ``knee[3]``); it is written only when some value lies below the knee, so
other streams keep versions 2–3. Version 5 is the ``"pyramid"`` back end with 16 rANS
states per tile in one word stream (`pyramid5`; with or without ``knee``): a tile row of
the directory is ``[frame, row0, rows, escapes, words]``; prediction, tables and pixels
are those of version 3–4, which are still read. Tiles are coded independently.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np
from imagecodecs import ZstdError
from rawsigma.errors import ImageMismatchError, InputFileError

from . import ckernels as CK
from . import encode_pyramid as EP
from . import fastpath as FP
from . import kernels as K
from . import pyramid as PY
from .encode_pyramid import Training, _give, _take_empty, code_pyramid, escapes_section
from .maps import CodecMaps
from .runtime import (
    DECODE_PARALLEL_PIXELS,
    ENCODE_PARALLEL_PIXELS,
    _auto_threads,
    _map,
    _memo,
    _parallel_least,
    _remember,
)
from .transform import (
    bin_recon,
    design_bounded_bins,
    knee_params,
    knee_recon,
    lattice_recon,
    unbiased_recon,
    vst_constant,
)

MAGIC = b"RSNC"
# 5: "pyramid" with 16 rANS states in one word stream (`pyramid5`; 3-4: 4 streams);
# 4: header key "knee" (the transform continues linearly below the offset; any back end);
# 3: the "pyramid" back end; 2: header key "effort"; 1: "best" only
VERSION = 5
READ_VERSIONS = (1, 2, 3, 4, 5)
_PREFIX = struct.Struct("<4sHI")
# back ends: "pyramid" (default: highest ratio and fastest), then the causal back ends of
# format 2, kept for reading their files and for comparison
EFFORTS = ("pyramid", "best", "fast")


# ---------------------------------------------------------------- tables
def _normalise(counts: np.ndarray) -> np.ndarray:
    """Per-context frequencies summing to 2**SCALE_BITS, ≥ 1 for every seen symbol."""
    return K.normalise_counts(np.ascontiguousarray(counts, np.int64), K.SCALE)


def _tables(freq: np.ndarray):
    cum = PY.cumulative(freq)
    lut = np.empty((freq.shape[0], K.SCALE), np.uint8)
    for c in range(freq.shape[0]):
        lut[c] = np.repeat(np.arange(freq.shape[1], dtype=np.uint8), freq[c])
    return freq.astype(np.int64), cum.astype(np.int64), lut


def _normal_equations(samples) -> tuple[np.ndarray, np.ndarray]:
    """Per-class ``AᵀA`` and ``Aᵀy`` (features + constant 1) from training samples."""
    n = K.N_NB + 1
    ata = np.zeros((K.N_CLASS, n, n))
    aty = np.zeros((K.N_CLASS, n))
    feats = np.concatenate([s[0] for s in samples])
    target = np.concatenate([s[1] for s in samples])
    klass = np.concatenate([s[2] for s in samples])
    order = np.argsort(klass, kind="stable")
    bounds = np.searchsorted(klass[order], np.arange(K.N_CLASS + 1))
    a = np.empty((feats.shape[0], n))
    a[:, : K.N_NB] = feats[order]
    a[:, K.N_NB] = 1.0
    t = target[order]
    for c in range(K.N_CLASS):
        lo, hi = bounds[c], bounds[c + 1]
        if hi > lo:
            ata[c] = a[lo:hi].T @ a[lo:hi]
            aty[c] = a[lo:hi].T @ t[lo:hi]
    return ata, aty


def _solve_weights(ata: np.ndarray, aty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares predictor per class (ridge-regularised), fixed point."""
    n = K.N_NB + 1
    glob_a, glob_b = ata.sum(0), aty.sum(0)
    default = np.zeros(n)
    default[[0, 1, 2, 3]] = [0.5, 0.5, -0.25, 0.25]
    w_all = np.empty((K.N_CLASS, n))
    ridge = np.eye(n) * 1e-3
    ridge[-1, -1] = 0.0
    if glob_a[-1, -1] > 4 * n:
        scale = glob_a[-1, -1]
        default = np.linalg.solve(glob_a / scale + ridge, glob_b / scale)
    for c in range(K.N_CLASS):
        cnt = ata[c, -1, -1]
        if cnt < 8 * n:
            w_all[c] = default
            continue
        w_all[c] = np.linalg.solve(ata[c] / cnt + ridge, aty[c] / cnt)
    wq = np.rint(w_all * (1 << K.WBITS)).astype(np.int64)
    # the constant feature is 1: its weight is the bias, scaled like the others
    return np.ascontiguousarray(wq[:, : K.N_NB]), np.ascontiguousarray(wq[:, K.N_NB])


# ---------------------------------------------------------------- encode
@dataclass
class StreamParams:
    """What the encoder needs besides the frames and maps."""

    step: float = 2.0
    dither: bool = False
    max_error: float | None = None
    sigma_e: float = 1.0
    seed: int = 0
    max_adu: int = 65535
    profile_id: str = ""
    tile_rows: int = 256
    # None: one per core from `_parallel_least(ENCODE_PARALLEL_PIXELS)` pixels on, else 1
    threads: int | None = None
    effort: str = "pyramid"
    knee: float = 0.0  # v_k (e⁻²) of the format-4 transform, 0: none (formats 1–3)


def _tiles(n: int, h: int, rows: int) -> list[tuple[int, int, int]]:
    rows = max(8, int(rows))
    return [(f, r0, min(rows, h - r0)) for f in range(n) for r0 in range(0, h, rows)]


def _check_frames(frames: np.ndarray, maps: CodecMaps) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint16:
        raise ImageMismatchError(f"noise codec expects uint16 raw frames, got {frames.dtype}")
    if frames.ndim < 2:
        raise ImageMismatchError(f"noise codec expects (..., H, W) frames, got {frames.shape}")
    if tuple(frames.shape[-2:]) != maps.shape:
        raise ImageMismatchError(
            f"frame shape {tuple(frames.shape[-2:])} does not match the profile shape {maps.shape}"
        )
    return frames


def frames_v_min(stack: np.ndarray, maps: CodecMaps, c0: float) -> float:
    """Smallest ``e + c0`` (e⁻²) of frames ``(N, H, W)`` under ``maps``.

    Computed in blocks of rows whose float64 temporaries stay in cache (the same values
    as on whole frames: a minimum does not depend on the order)."""
    off, gain = maps.offset(), maps.gain()
    h, w = stack.shape[-2:]
    if CK.KERNELS.v_min is not None and off.dtype == gain.dtype == np.float32:
        return CK.KERNELS.v_min(np.ascontiguousarray(stack), off, gain) + c0
    rows = max(1, _V_MIN_BLOCK // w)
    best = np.inf
    for r0 in range(0, h, rows):
        r = slice(r0, min(h, r0 + rows))
        lo = stack[:, r].min(axis=0) if stack.shape[0] > 1 else stack[0, r]
        e = np.subtract(lo, off[r], dtype=np.float64)
        e /= gain[r]
        best = min(best, float(e.min()))
    return best + c0


_V_MIN_BLOCK = 1 << 15  # pixels per block of `frames_v_min`


def _frozen(kp) -> np.ndarray:
    """Knee parameters as the kernels always receive them: a read-only float64 copy (one
    numba signature whether or not a stream has a knee: no second compile)."""
    a = np.array(kp, np.float64)
    a.flags.writeable = False
    return a


_NO_KNEE = _frozen(K.NO_KNEE)  # read-only: shared by the decodes of streams without a knee


def stream_knee(stack: np.ndarray, maps: CodecMaps, params: StreamParams) -> np.ndarray:
    """The transform knee of a stream (`transform.knee_params`); all zeros when every
    value stays above it (the formats 1–3 transform, bit-identical streams).

    Raises
    ------
    ImageMismatchError
        Values lie below the point where the transform's argument vanishes but the
        profile gives no read noise to scale the bins there (error unbounded).
    """
    c0 = vst_constant(params.sigma_e)
    v_min = frames_v_min(stack, maps, c0)
    if v_min < 0 and not params.knee > 0:
        x_bad = maps.offset0 - maps.gain0 * c0
        raise ImageMismatchError(
            f"noise codec: the profile's read noise is 0 and pixels lie below its offset "
            f"({maps.offset0:.6g} ADU; {-v_min * maps.gain0:.4g} ADU below the transform's "
            f"zero at {x_bad:.6g} ADU): their error would be unbounded. Use a profile with "
            "a read noise (rawsigma profile estimate --read-noise or --camera) or a lower "
            "offset"
        )
    return knee_params(v_min, params.knee, float(params.step), bool(params.dither))


def _knee_of(v32: float, c0: float, params: StreamParams) -> np.ndarray | None:
    """The knee (`stream_knee`) implied by the smallest ``v`` computed in float32 (`ckernels`
    ``quantise_round`` with its minimum), or None when it may differ from the one of the
    exact float64 minimum (`frames_v_min`): the float32 value lies within ~2⁻²²·(|v| +
    2|c0|) of it, the margin is 40× that, and the knee is monotone in ``v``."""
    m = 1e-5 * (abs(v32) + 2.0 * abs(c0) + 1.0)
    if not params.knee > 0:
        return np.zeros(4) if v32 - m >= 0 else None  # below 0: `stream_knee` raises
    lo, hi = (knee_params(v, params.knee, float(params.step), False) for v in (v32 - m, v32 + m))
    return lo if np.array_equal(lo, hi) else None


# the knee of the last frames per (maps, step, knee, σ_e): the first guess of the next
_KNEE_GUESS: dict[tuple, np.ndarray] = {}


def quantise_frames(
    frames: np.ndarray, maps: CodecMaps, params: StreamParams
) -> tuple[np.ndarray, np.ndarray, str]:
    """Raw frames ``(..., H, W)`` uint16 → codes (int32, same shape), the per-code
    reconstruction table (e⁻; empty with dither) and the quantiser mode.

    The transform's knee (format 4) is `quantise_frames_knee`'s third output; this
    wrapper keeps the signature of formats 1–3."""
    codes, recon, mode, _ = quantise_frames_knee(frames, maps, params)
    return codes, recon, mode


def quantise_frames_knee(
    frames: np.ndarray, maps: CodecMaps, params: StreamParams, training: Training | None = None
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """`quantise_frames` plus the knee parameters (`stream_knee`) used. ``training``
    (mode "round"): trained on each tile in the item that quantises it (`Training`)."""
    frames = _check_frames(frames, maps)
    h, w = frames.shape[-2:]
    stack = np.ascontiguousarray(frames.reshape(-1, h, w))
    off, gain = maps.offset(), maps.gain()
    step = float(params.step)
    c0 = vst_constant(params.sigma_e)
    mode = "dither" if params.dither else "round"
    edges = np.zeros(0, np.float64)
    if params.max_error is not None:
        if params.dither:
            raise ValueError("a hard error bound and subtractive dither cannot be combined")
        mode = "bound"
        edges, rmin, rmax = design_bounded_bins(
            min(float((stack.min() - off.max()) / gain.min()), -1.0),
            float((stack.max() - off.min()) / gain.min()),
            float(params.max_error),
            step,
            params.sigma_e,
            float(gain.min()),
            float(gain.max()),
        )
    codes = _take_empty(stack.shape, np.int32)  # `encode_frames` gives it back
    nothing_f, nothing_i = np.zeros(0, np.float64), np.zeros(0, np.int64)
    kx = CK.KERNELS  # C extension or numba (`ckernels`)
    tiles = _tiles(stack.shape[0], h, params.tile_rows)
    kp = _frozen(K.NO_KNEE)

    # uniform maps: C's quantise_round takes one row of the (constant) gain map for every
    # row (no 4 B/px read; the same codes)
    gain_row = maps.is_uniform and kx.gain_row

    def quant(tile, with_min=False):
        f, r0, th = tile
        if mode == "round":
            top = kx.quantise_round(
                stack[f, r0 : r0 + th], off[r0 : r0 + th],
                gain[r0] if gain_row else gain[r0 : r0 + th],
                codes[f, r0 : r0 + th], 1.0 / step, c0, kp, *((True,) if with_min else ()),
            )  # fmt: skip
            if training is not None:
                training.tile(codes, tile, top[0] if with_min else top)
            return top
        kx.quantise_tile(
            stack[f, r0 : r0 + th], off[r0 : r0 + th], gain[r0 : r0 + th],
            codes[f, r0 : r0 + th], step, c0, params.dither, params.seed, (f * h + r0) * w,
            edges, nothing_f, nothing_i, kp,
        )  # fmt: skip

    if mode == "round" and kx.round_min:
        # quantised with the knee of the last frames of these maps (or a guess), the
        # smallest v from the same pass: the knee it implies is exact unless v lies
        # within rounding of a boundary (then `frames_v_min`); a wrong guess costs a pass
        key = (maps.digest(), step, float(params.knee), float(params.sigma_e))
        guess = _KNEE_GUESS.get(key)
        kp = _frozen(knee_params(0.0, params.knee, step, False)) if guess is None else guess
        res = _map(lambda t: quant(t, True), tiles, params.threads)
        tops = [r[0] for r in res]
        want = _knee_of(min(r[1] for r in res), c0, params)
        if want is None:
            want = stream_knee(stack, maps, params)
        if not np.array_equal(want, kp):
            kp = _frozen(want)
            if training is not None:
                training.reset()
            tops = _map(quant, tiles, params.threads)
        _remember(_KNEE_GUESS, key, kp, 64)
    else:
        if mode != "bound":
            kp = _frozen(stream_knee(stack, maps, params))
        tops = _map(quant, tiles, params.threads)
    n_codes = (max(tops) if mode == "round" else int(codes.max())) + 1
    if mode == "dither":
        recon = np.zeros(0, np.float64)
    elif mode == "bound":
        recon = bin_recon(edges, c0)[:n_codes]
        if maps.is_uniform and not maps.jitter:
            upper = np.append(edges[1:], np.inf)[:n_codes]
            recon = lattice_recon(upper, maps.offset0, maps.gain0, c0, recon)
        recon = np.clip(recon, rmin[:n_codes], rmax[:n_codes])
    else:
        recon = _round_recon(n_codes, step, c0, kp, params.sigma_e, maps)
    return codes.reshape(frames.shape), recon, mode, kp


# reconstruction tables of mode "round" and their zlib section (frames of one camera
# share them: computed once, ≈ 0.05 ms per frame)
_RECON: dict[tuple, np.ndarray] = {}
_RECON_Z: dict[bytes, bytes] = {}


def _round_recon(n_codes: int, step: float, c0: float, kp, sigma_e: float, maps) -> np.ndarray:
    """The per-code reconstruction (e⁻) of mode "round" (a copy of a cached table)."""
    lattice = maps.is_uniform and not maps.jitter
    key = (n_codes, step, c0, sigma_e, np.asarray(kp).tobytes(), lattice and maps.offset0,
           lattice and maps.gain0)  # fmt: skip

    def make() -> np.ndarray:
        if kp[0] > 0:
            return knee_recon(n_codes, step, c0, kp)
        recon = unbiased_recon(n_codes, step, sigma_e)
        if lattice:
            t_up = step * (np.arange(n_codes) + 0.5)
            t_e = 0.25 * t_up * t_up - c0
            recon = lattice_recon(t_e, maps.offset0, maps.gain0, c0, recon)
        return recon

    return _memo(_RECON, key, 32, make).copy()


def _recon_section(recon: np.ndarray) -> bytes:
    """The "recon" section: the table as little-endian float64, zlib level 6 (cached)."""
    raw = recon.astype("<f8").tobytes()
    return _memo(_RECON_Z, raw, 32, lambda: zlib.compress(raw, 6))


def dequantise_frames(
    codes: np.ndarray,
    maps: CodecMaps,
    recon: np.ndarray,
    mode: str,
    step: float,
    sigma_e: float,
    seed: int,
    max_adu: int,
    threads: int | None = None,
    tile_rows: int = 256,
    kp: np.ndarray = K.NO_KNEE,
) -> np.ndarray:
    """Codes ``(..., H, W)`` → uint16 ADU (inverse of `quantise_frames`; ``kp``: the
    knee of `quantise_frames_knee`)."""
    shape = codes.shape
    h, w = shape[-2:]
    stack = np.ascontiguousarray(codes.reshape(-1, h, w), dtype=np.int32)
    out = np.empty(stack.shape, np.uint16)
    off, gain = maps.offset(), maps.gain()
    c0 = vst_constant(sigma_e)
    recon = np.ascontiguousarray(recon, np.float64)

    def run(tile):
        f, r0, th = tile
        K.dequantise_tile(
            stack[f, r0 : r0 + th], off[r0 : r0 + th], gain[r0 : r0 + th],
            out[f, r0 : r0 + th], recon, float(step), c0, mode == "dither", int(seed),
            (f * h + r0) * w, float(max_adu), False, _frozen(kp),
        )  # fmt: skip

    _map(run, _tiles(stack.shape[0], h, tile_rows), threads)
    return out.reshape(shape)


def _sample_steps(n_pixels: int, samples: int) -> tuple[int, int]:
    """Row and column steps of the training subsample: about ``samples`` of ``n_pixels``."""
    sub = max(1, n_pixels // samples)
    row_step = max(1, min(16, int(np.sqrt(sub))))
    return row_step, max(1, sub // row_step)


def _model_best(codes, tiles, fills, params):
    """Class-adaptive 18-tap predictor: weights, bias and per-tile (syms, ctxs, esc, hist)."""
    w = codes.shape[-1]
    # ~150 k training samples: plenty for 64 classes × 19 weights
    row_step, col_step = _sample_steps(codes.size, 150_000)
    lut_args = (K.ACT_CLS_LUT, K.ACT_CTX_LUT, K.LVL_CLS_LUT)

    def train(args):
        (f, r0, th), fill = args
        cap = (th // row_step + 1) * (w // col_step + 1)
        feats = np.empty((cap, K.N_NB), np.float64)
        target = np.empty(cap, np.float64)
        klass = np.empty(cap, np.uint8)
        m = K.train_tile(
            codes[f, r0 : r0 + th], K.new_ring(w, fill), row_step, col_step, feats, target,
            klass, K.ACT_CLS_LUT, K.LVL_CLS_LUT,
        )  # fmt: skip
        return feats[:m], target[:m], klass[:m]

    res = _map(train, zip(tiles, fills, strict=True), params.threads)
    wts, bias = _solve_weights(*_normal_equations(res))

    wts32 = np.ascontiguousarray(wts.ravel(), dtype=np.int32)
    bias32 = np.ascontiguousarray(bias, dtype=np.int32)

    def model(args):
        (f, r0, th), fill = args
        syms = np.empty((th, w), np.uint8)
        ctxs = np.empty((th, w), np.uint8)
        esc = np.empty(th * w, np.int32)
        hist = np.zeros((K.N_CTX, K.N_SYM), np.int64)
        ne = K.model_tile(
            codes[f, r0 : r0 + th], K.new_ring(w, fill), wts32, bias32, *lut_args,
            syms, ctxs, esc, hist,
        )  # fmt: skip
        return syms, ctxs, esc[:ne], hist

    modelled = _map(model, zip(tiles, fills, strict=True), params.threads)
    return wts, bias, modelled


def _model_fast(codes, tiles, fills, params):
    """One 6-tap predictor (`fastpath`): weights (7,), empty bias, per-tile modelling."""
    w = codes.shape[-1]
    # 7 weights: ~30 k samples are plenty
    row_step, col_step = _sample_steps(codes.size, 30_000)

    def train(args):
        (f, r0, th), fill = args
        cap = (th // row_step + 1) * (w // col_step + 1)
        feats = np.empty((cap, FP.N_TAP), np.float64)
        target = np.empty(cap, np.float64)
        m = FP.train_tile(codes[f, r0 : r0 + th], K.new_ring(w, fill), row_step, col_step,
                          feats, target)  # fmt: skip
        return feats[:m], target[:m]

    res = _map(train, zip(tiles, fills, strict=True), params.threads)
    wt = FP.solve_weights(np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res]))

    def model(args):
        (f, r0, th), fill = args
        syms = np.empty((th, w), np.uint8)
        ctxs = np.empty((th, w), np.uint8)
        esc = np.empty(th * w, np.int32)
        hist = np.zeros(K.N_CTX * K.N_SYM, np.int64)
        ne = FP.model_tile(codes[f, r0 : r0 + th], K.new_ring(w, fill), wt, K.ACT_CTX_LUT,
                           syms, ctxs, esc, hist)  # fmt: skip
        return syms, ctxs, esc[:ne], hist.reshape(K.N_CTX, K.N_SYM)

    return (
        wt.astype(np.int64),
        np.zeros(0, np.int64),
        _map(model, zip(tiles, fills, strict=True), params.threads),
    )


def _code_causal(codes, tiles, params):
    """Back ends "best" and "fast" (format 2): causal prediction, one rANS state per tile.

    Returns the model sections, the tile directory rows, and per tile the words and the
    escaped codes.
    """
    fills = [int(np.median(codes[f, r0, :])) for f, r0, _ in tiles]
    model = _model_fast if params.effort == "fast" else _model_best
    wts, bias, modelled = model(codes, tiles, fills, params)
    freq, cum, _ = _tables(_normalise(np.sum([m[3] for m in modelled], 0)))

    def code(m):
        out = np.empty(m[0].size + 4, np.uint16)
        nw = K.rans_encode(m[0], m[1], freq, cum, out)
        return out[:nw]

    words = _map(code, modelled, params.threads)
    sections = {
        "weights": zlib.compress(np.concatenate([wts.ravel(), bias]).astype("<i4").tobytes(), 6),
        "freq": zlib.compress(freq.astype("<u2").tobytes(), 9),
    }
    rows = [
        [f, r0, th, fill, int(wd.size), int(m[2].size)]
        for (f, r0, th), fill, wd, m in zip(tiles, fills, words, modelled, strict=True)
    ]
    return sections, rows, words, [m[2] for m in modelled]


def encode_frames(
    frames: np.ndarray, maps: CodecMaps, params: StreamParams, embed_maps: bool = True
) -> bytes:
    """Encode raw frames ``(..., H, W)`` uint16 into one self-describing stream."""
    n_px = int(np.size(frames))
    threads = _auto_threads(params.threads, n_px, _parallel_least(ENCODE_PARALLEL_PIXELS))
    if threads != params.threads:
        params = replace(params, threads=threads)
    training = _encode_training(frames, params)
    codes, recon, mode, kp = quantise_frames_knee(frames, maps, params, training)
    shape = codes.shape
    h, w = shape[-2:]
    codes = codes.reshape(-1, h, w)
    lent = [codes.base if codes.base is not None else codes]  # `_give`n back at the end
    n = codes.shape[0]
    step = float(params.step)
    tiles = _tiles(n, h, params.tile_rows)
    n_codes = recon.size if mode != "dither" else int(codes.max()) + 1
    effort = params.effort
    if effort == "pyramid" and n_codes - 1 > PY.MAX_CODE:
        effort = "best"  # codes beyond the pyramid's int32 bound: a step far finer than σ
    if effort == "pyramid":
        model_sections, rows, words, escapes = code_pyramid(codes, tiles, params, training, lent)
    else:
        model_sections, rows, words, escapes = _code_causal(codes, tiles, params)

    sections: dict[str, bytes | list[memoryview]] = {}
    if embed_maps and not maps.is_uniform:
        sections["maps"] = maps.to_bytes()
    sections["recon"] = _recon_section(recon)
    sections.update(model_sections)  # "pyramid": the escapes too, made in parallel
    if "escapes" not in sections:
        sections["escapes"] = escapes_section(np.concatenate(escapes), n)
    # the words: views of the coder's arrays, copied once (into the stream)
    sections["words"] = [np.ascontiguousarray(wd, "<u2").data.cast("B") for wd in words]
    directory = {}
    pos = 0
    for name, blob in sections.items():
        size = sum(map(len, blob)) if isinstance(blob, list) else len(blob)
        directory[name] = [pos, size]
        pos += size
    header = {
        "shape": list(shape),
        "mode": mode,
        "step": step,
        "max_error": params.max_error,
        "sigma_e": float(params.sigma_e),
        "seed": int(params.seed),
        "max_adu": int(params.max_adu),
        "offset0": maps.offset0,
        "gain0": maps.gain0,
        "maps": "uniform" if maps.is_uniform else ("embedded" if embed_maps else "reference"),
        "maps_digest": maps.digest(),
        "jitter": bool(maps.jitter),
        "profile_id": params.profile_id,
        "n_codes": n_codes,
        "effort": effort,
        "tiles": rows,
        "sections": directory,
        "codes_bits_per_pixel": 16.0 * sum(int(wd.size) for wd in words) / codes.size,
    }
    if kp[0] > 0:
        header["knee"] = [float(v) for v in kp]
    hb = json.dumps(header, separators=(",", ":")).encode()
    if effort == "pyramid" and EP.PYRAMID_FORMAT >= 5:
        version = 5
    else:
        version = 4 if kp[0] > 0 else 3 if effort == "pyramid" else 2
    data = _joined([_PREFIX.pack(MAGIC, version, len(hb)), hb, *sections.values()])
    _give(lent)  # nothing reads the codes or the cells any more
    return data


def _encode_training(frames: np.ndarray, params: StreamParams) -> Training | None:
    """The `Training` the quantiser runs tile by tile ("pyramid" back end), if any."""
    if params.effort != "pyramid" or np.ndim(frames) < 2:
        return None
    h, w = np.shape(frames)[-2:]
    n = math.prod(np.shape(frames)[:-2])
    if n == 0 or h == 0 or w == 0:
        return None
    return Training((n, h, w), _tiles(n, h, params.tile_rows), params.threads)


def _joined(pieces: list) -> bytes:
    """Bytes-like pieces (or lists of them) and the CRC-32 of all, joined in one copy."""
    flat = [b for p in pieces for b in (p if isinstance(p, list) else [p])]
    crc = 0
    for b in flat:
        crc = CK.crc32(b, crc)
    return b"".join([*flat, struct.pack("<I", crc)])


# ---------------------------------------------------------------- decode
def read_header(data: bytes | bytearray | memoryview, source: str = "noise codec data") -> dict:
    """Parse and verify a stream: magic, version, length and CRC-32.

    Raises
    ------
    InputFileError
        Naming ``source`` and the problem (foreign data, unknown version, truncation,
        checksum mismatch).
    """
    data = memoryview(data).cast("B")
    if len(data) < _PREFIX.size + 4:
        raise InputFileError(f"{source}: truncated noise-codec stream ({len(data)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise InputFileError(f"{source}: not a rawsigma noise-codec stream (magic {magic!r})")
    if version not in READ_VERSIONS:
        raise InputFileError(
            f"{source}: unknown noise-codec format version {version} "
            f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
        )
    if _PREFIX.size + hlen + 4 > len(data):
        raise InputFileError(f"{source}: truncated noise-codec stream (header cut)")
    try:
        header = json.loads(bytes(data[_PREFIX.size : _PREFIX.size + hlen]))
        body_len = sum(v[1] for v in header["sections"].values())
        if not isinstance(body_len, int):
            raise TypeError(f"section sizes {header['sections']}")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise InputFileError(f"{source}: corrupted noise-codec header ({exc})") from None
    total = _PREFIX.size + hlen + body_len + 4
    if len(data) < total:
        raise InputFileError(
            f"{source}: truncated noise-codec stream: {len(data)} of {total} bytes"
        )
    if len(data) > total:
        raise InputFileError(f"{source}: {len(data) - total} unexpected trailing bytes")
    (crc,) = struct.unpack_from("<I", data, total - 4)
    if CK.crc32(data[: total - 4]) != crc:
        raise InputFileError(f"{source}: checksum mismatch: the compressed data were altered")
    header["_body"] = _PREFIX.size + hlen
    header["_version"] = version
    return header


def decode_frames(
    data: bytes,
    maps: CodecMaps | None = None,
    threads: int | None = None,
    source: str = "noise codec data",
) -> np.ndarray:
    """Decode a stream to uint16 frames of the encoded shape.

    ``maps`` is needed only for streams written with ``maps="reference"``; its digest
    must match the one recorded. A stream that cannot be interpreted raises
    `InputFileError` (`ImageMismatchError` for maps of another profile).
    """
    try:
        return _decode_frames(data, maps, threads, source)
    except (InputFileError, ImageMismatchError):
        raise
    except (zlib.error, ZstdError, IndexError, KeyError, TypeError, ValueError) as err:
        # damage the checksum cannot see (a writer's bug, a crafted file): compressed
        # sections, section offsets or header fields that do not decode
        raise InputFileError(
            f"{source}: corrupted noise-codec stream ({type(err).__name__}: {err})"
        ) from err


def _decode_frames(data, maps, threads, source) -> np.ndarray:
    hd = read_header(data, source)
    mv = memoryview(data).cast("B")
    base = hd["_body"]

    def sec(name: str) -> memoryview:
        o, n = hd["sections"][name]
        return mv[base + o : base + o + n]

    shape = tuple(hd["shape"])
    h, w = shape[-2:]
    threads = _auto_threads(threads, math.prod(shape), _parallel_least(DECODE_PARALLEL_PIXELS))
    if hd["maps"] == "embedded":
        maps = CodecMaps.from_bytes(
            bytes(sec("maps")), (h, w), hd["offset0"], hd["gain0"], hd["jitter"]
        )
    elif hd["maps"] == "uniform":
        maps = CodecMaps.uniform((h, w), hd["offset0"], hd["gain0"], hd.get("jitter", False))
    elif maps is None:
        raise InputFileError(
            f"{source}: the stream refers to per-pixel maps of profile "
            f"{hd['profile_id'] or '?'} that were not embedded; pass that profile"
        )
    if maps.shape != (h, w) or (hd["maps"] != "uniform" and maps.digest() != hd["maps_digest"]):
        raise ImageMismatchError(
            f"{source}: the supplied profile maps (shape {maps.shape}) are not the ones the "
            f"stream was encoded with (profile {hd['profile_id'] or '?'})"
        )
    off, gain = maps.offset(), maps.gain()
    recon_bytes = zlib.decompress(sec("recon"))
    recon = np.frombuffer(recon_bytes, "<f8").copy()
    effort = hd.get("effort", "best")
    if effort not in EFFORTS:
        raise InputFileError(f"{source}: unknown noise-codec back end {effort!r}")
    esc_all = np.frombuffer(zlib.decompress(sec("escapes")), "<i4").astype(np.int64)
    n = math.prod(shape[:-2])
    _check_tiles(hd["tiles"], n, h, effort, source)
    out = np.empty((n, h, w), np.uint16)
    c0 = vst_constant(hd["sigma_e"])
    kp = _frozen(hd["knee"]) if "knee" in hd else _NO_KNEE
    if kp is not _NO_KNEE and (kp.shape != (4,) or not np.isfinite(kp).all()):
        raise InputFileError(f"{source}: corrupted noise-codec header (knee {hd.get('knee')})")
    dither = hd["mode"] == "dither"
    # the usual table (per-pixel maps, no bound) is computed by the kernels, not looked up
    analytic = bool(
        not dither
        and kp[0] == 0
        and recon_bytes == _unbiased_bytes(recon.size, float(hd["step"]), float(hd["sigma_e"]))
    )

    # uniform maps: the C kernels take one row of the (constant) gain map for every row,
    # without reading 4 bytes per pixel
    gain_row = maps.is_uniform and effort == "pyramid" and CK.KERNELS.gain_row

    def dq(f, r0, th):
        """Arguments of the dequantisation of a tile (`kernels.dequantise_tile`)."""
        return (
            off[r0 : r0 + th], gain[0] if gain_row else gain[r0 : r0 + th], recon,
            float(hd["step"]), c0, dither, int(hd["seed"]), (f * h + r0) * w,
            float(hd["max_adu"]), analytic, kp,
        )  # fmt: skip

    def finish(f, r0, th, codes):
        off_t, gain_t, *rest = dq(f, r0, th)
        K.dequantise_tile(codes, off_t, gain_t, out[f, r0 : r0 + th], *rest)

    def corrupted(f, r0):
        return InputFileError(f"{source}: corrupted noise-codec tile (frame {f}, row {r0})")

    if effort == "pyramid":
        _decode_pyramid(hd, sec, esc_all, out, dq, corrupted, threads, source)
    else:
        _decode_causal(hd, sec, esc_all, w, finish, corrupted, threads, source)
    return out.reshape(shape)


@functools.lru_cache(maxsize=8)
def _unbiased_bytes(n: int, step: float, sigma_e: float) -> bytes:
    """`unbiased_recon` as a stream stores it (the check of the decoder's analytic
    dequantisation, once per stream: cached)."""
    return unbiased_recon(n, step, sigma_e).astype("<f8").tobytes()


def _check_tiles(tiles, n: int, h: int, effort: str, source: str) -> None:
    """The tile directory covers every row of every frame once, with integer fields and
    non-negative counts (else the output would keep rows never decoded, `np.empty`).

    The row ranges, sorted by (frame, first row), must follow each other without gap or
    overlap from (0, 0) to the end of frame ``n - 1`` (a few tiles per frame: plain
    Python, no per-row array)."""
    counts = slice(4, None) if effort in ("best", "fast") else slice(3, None)  # not "fill"
    ok = isinstance(tiles, list)
    for t in tiles if ok else ():
        ok = (
            isinstance(t, list)
            and len(t) >= 5
            and all(isinstance(v, int) and not isinstance(v, bool) for v in t)
            and 0 <= t[0] < n
            and 0 <= t[1]
            and 1 <= t[2] <= h - t[1]
            and min(t[counts]) >= 0
        )
        if not ok:
            break
    if ok:
        f = r = 0  # the next row expected: frame f, row r
        for t in sorted((t[0], t[1], t[2]) for t in tiles):
            ok = t[0] == f and t[1] == r
            if not ok:
                break
            r += t[2]
            if r == h:
                f, r = f + 1, 0
        ok = ok and (f == n or h == 0) and r == 0
    if not ok:
        raise InputFileError(f"{source}: corrupted noise-codec tile directory")


def _decode_causal(hd, sec, esc_all, w, finish, corrupted, threads, source):
    """Tiles of the "best" and "fast" back ends → ``finish(frame, row0, rows, codes)``."""
    effort = hd.get("effort", "best")
    wb = np.frombuffer(zlib.decompress(sec("weights")), "<i4").astype(np.int64)
    want = FP.N_TAP + 1 if effort == "fast" else K.N_CLASS * (K.N_NB + 1)
    if wb.size != want:
        raise InputFileError(f"{source}: corrupted noise-codec weights ({wb.size} values)")
    freq = np.frombuffer(zlib.decompress(sec("freq")), "<u2").reshape(K.N_CTX, K.N_SYM)
    freq, cum, lut = _tables(freq.astype(np.int64))
    words_all = np.frombuffer(bytes(sec("words")), "<u2")  # read-only, as compiled
    jobs = []
    wpos = epos = 0
    for f, r0, th, fill, nwords, nesc in hd["tiles"]:
        jobs.append((f, r0, th, fill, wpos, nwords, epos, nesc))
        wpos += nwords
        epos += nesc

    if effort == "fast":
        wt = np.ascontiguousarray(wb, dtype=np.int32)
        model = (wt, K.ACT_CTX_LUT)
        kernel = FP.decode_lanes
    else:
        wflat = np.ascontiguousarray(wb[: K.N_CLASS * K.N_NB], dtype=np.int32)
        bias = np.ascontiguousarray(wb[K.N_CLASS * K.N_NB :], dtype=np.int32)
        model = (wflat, bias, K.ACT_CLS_LUT, K.ACT_CTX_LUT, K.LVL_CLS_LUT)
        kernel = FP.decode_lanes_best

    def run(group):
        # tiles of one shape decode in lock-step: their latency chains overlap
        th = group[0][2]
        wbeg = np.array([j[4] for j in group], np.int64)
        ebeg = np.array([j[6] for j in group], np.int64)
        wend = wbeg + np.array([j[5] for j in group], np.int64)
        eend = ebeg + np.array([j[7] for j in group], np.int64)
        codes = np.empty((len(group), th, w), np.int32)
        rings = np.stack([K.new_ring(w, j[3]) for j in group])
        pos, ne = kernel(words_all, wbeg, wend, esc_all, ebeg, eend, rings, *model, freq, cum,
                         lut, codes)  # fmt: skip
        for lane, job in enumerate(group):
            if pos[lane] != wend[lane] or ne[lane] != eend[lane]:
                raise corrupted(job[0], job[1])
            finish(job[0], job[1], th, codes[lane])

    _map(run, FP.lane_groups(jobs, lambda j: j[2]), threads)


def _decode_pyramid(hd, sec, esc_all, out, dq, corrupted, threads, source):
    """Tiles of the "pyramid" back end, decoded and dequantised (``dq(frame, row0,
    rows)``: the tile's dequantisation arguments) into ``out`` (frames, H, W)."""
    w = out.shape[-1]
    kx = CK.KERNELS  # C extension or numba (`ckernels`)
    try:
        wts = np.frombuffer(zlib.decompress(sec("weights")), "<i4").reshape(
            PY.N_SETS, PY.N_CLASS * PY.N_W
        )
        levels, remap = zlib.decompress(sec("levels")), zlib.decompress(sec("contexts"))
        planes = zlib.decompress(sec("freq"))
    except (ValueError, zlib.error) as exc:
        raise InputFileError(f"{source}: corrupted noise-codec model ({exc})") from None
    tables = kx.decoder_tables(planes, remap, levels)  # (cts, tab); checked
    if tables is None:
        raise InputFileError(f"{source}: corrupted noise-codec tables")
    cts, tab = tables
    if kx.name != "c":  # C reads the weights in place
        wts = np.array(wts, np.int32)  # writable: the encoder's argument types, one compile
    raw = np.frombuffer(sec("words"), "<u2")
    # zero words past the end: rows decode without bounds checks (positions are checked
    # after each row)
    words = np.empty(raw.size + w + 64, np.uint16)
    words[: raw.size] = raw
    words[raw.size :] = 0
    jobs = []
    wpos = epos = 0
    wide = hd["_version"] >= 5  # one word stream per tile (`pyramid5`), else LANES
    for f, r0, th, nesc, *lens in hd["tiles"]:
        if len(lens) != (1 if wide else PY.LANES):
            raise InputFileError(f"{source}: corrupted noise-codec tile directory")
        if wide:
            starts, ends = (wpos,), (wpos + lens[0],)
        else:
            starts = wpos + np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            ends = starts + np.asarray(lens, np.int64)
        jobs.append((f, r0, th, starts, ends, epos, epos + nesc))
        wpos += sum(lens)
        epos += nesc
    if wpos + w + 64 != words.size or epos != esc_all.size:
        raise InputFileError(f"{source}: corrupted noise-codec tile directory")

    def run(job):
        f, r0, th, starts, ends, e0, e1 = job
        args = (esc_all, e0, e1, wts, cts, tab, out[f, r0 : r0 + th], dq(f, r0, th))
        if wide:
            ok, ne = kx.decode_tile16(words, starts[0], ends[0], *args)
        else:
            ok, ne = kx.decode_tile(words, starts, ends, *args)
        if not ok or ne != e1:
            raise corrupted(f, r0)

    _map(run, jobs, threads)
