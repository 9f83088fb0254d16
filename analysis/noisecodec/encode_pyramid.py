"""The "pyramid" back end's encoder (stream formats 3-5).

Training, model pass, tables, rANS coding and the model's sections.
`stream.encode_frames` quantises the frames (training each tile as it goes,
`Training`) and hands the codes to `code_pyramid`. The kernels are C or numba
(`ckernels.KERNELS`); every buffer is allocated in the calling thread.
"""

from __future__ import annotations

import threading
import zlib

import numpy as np

from . import ckernels as CK
from . import pyramid as PY
from .runtime import _map, _memo, pool_threads

# the format the "pyramid" back end writes: 5; 4 writes formats 3-4 (4 word streams per
# tile, as rawsigma before format 5: for comparisons and tests)
PYRAMID_FORMAT = 5


# The predictor of a stack is trained on about this many pixels of whole frames, evenly
# spaced (a few hundred thousand samples for 6 × 64 × 4 weights; the frames of a stack
# share their statistics); a single frame trains on all its tiles
TRAIN_PIXELS = 1 << 21
TRAIN_DENSE = 1 << 21  # above (frames > 2 Mpx): half the rows of levels 0 and 1
# level 0's training rows: every n-th of a single frame of TRAIN_SINGLE pixels or more,
# of other frames and stacks (up to TRAIN_DENSE pixels of training tiles), above
# TRAIN_DENSE. A single frame's training is not shared: every 5th row saves 2-6 % of its
# encode for -0.34 to +0.15 % of size (RESULTS.md, session 10, henc); smaller frames
# have few samples to spare. (4, 4, 8) gives the streams of earlier versions
TRAIN_ROW_STEP = (5, 4, 8)
TRAIN_SINGLE = 1 << 18
# levels >= 1 (a quarter of the pixels, half of the training samples) trained on half
# their old rows: -20 % of the training's work, sizes within +-0.2 % (RESULTS.md,
# session 9, husi); False gives the streams of earlier versions
TRAIN_SPARSE = True
KEEP_PLANES = 1 << 22  # training pixels up to which C keeps their planes (≈ 2.7 B/px)


def _train_tiles(tiles, hw: int) -> list[tuple[int, int, int]]:
    """The tiles `code_pyramid` trains on: those of at most ``TRAIN_PIXELS // hw`` evenly
    spaced frames, at least one (a single frame: all its tiles)."""
    n = 1 + max(f for f, _, _ in tiles)
    keep = max(1, TRAIN_PIXELS // max(hw, 1))
    frames = set(range(n)) if keep >= n else {(2 * i + 1) * n // (2 * keep) for i in range(keep)}
    return [t for t in tiles if t[0] in frames]


_MOMENTS = (PY.N_SETS, PY.N_ACT_CLS, PY.LVL_MAX + 1, PY.N_MOM)  # `PY.new_moments`


class Training:
    """The predictor's training of `code_pyramid`, tile by tile.

    `quantise_frames_knee` trains each tile in the item that quantises it (its codes
    still in the core's cache; one phase and its hand-off fewer: RESULTS.md, session
    11); `weights` trains whatever that did not. A thread adds its tiles to moment
    sums of its own: int64 sums, the same in any order, so any assignment of tiles to
    threads gives the same weights. Buffers are allocated here, in the calling thread
    (see `code_pyramid`).
    """

    def __init__(self, shape: tuple[int, ...], tiles: list, threads: int | None) -> None:
        n, h, w = shape[-3:] if len(shape) >= 3 else (1, *shape)
        self.kx = kx = CK.KERNELS
        chosen = _train_tiles(tiles, h * w)
        self.chosen = {(f, r0) for f, r0, _ in chosen}
        # every 5th row of level 0 for a single frame, every 4th for stacks up to 2 Mpx
        # of training tiles, every 8th above; levels >= 1 at half `train_tile`'s old
        # density (TRAIN_SPARSE)
        n_train = sum(th for _, _, th in chosen) * w
        single = n == 1 and n_train >= TRAIN_SINGLE
        self.row_step = TRAIN_ROW_STEP[2 if n_train > TRAIN_DENSE else 0 if single else 1]
        # C: the planes of the training tiles (all tiles of a frame up to KEEP_PLANES
        # pixels) are built once, for both passes
        keeps = kx.planes_size is not None and n_train <= KEEP_PLANES
        self.keep: dict[tuple[int, int], np.ndarray] | None = {} if keeps else None
        if self.keep is not None:
            for f, r0, th in chosen:
                self.keep[f, r0] = np.empty(kx.planes_size(th, w), np.int16)
        n_acc = 1 if threads == 1 else max(1, min(len(chosen), pool_threads()))
        self.accs = [_take_zeros(_MOMENTS, np.int64) for _ in range(n_acc)]
        self.trained: list[tuple[int, int]] = []  # (frame, row0) of the tiles in the sums
        self.reset()

    def reset(self) -> None:
        """Forget the tiles trained so far (the quantiser's pass is repeated)."""
        if self.trained:  # else the sums are still the zeros `_take_zeros` gave
            for acc in self.accs:
                acc.fill(0)
        self._free: list[int] = list(range(len(self.accs)))
        self._mine: dict[int, int] = {}  # thread id -> its accumulator
        self.trained = []

    def tile(self, codes: np.ndarray, tile: tuple[int, int, int], top: int = 0) -> None:
        """Train on ``codes``'s tile if it is a training tile (none above `PY.MAX_CODE`,
        where the encoder does not use this back end)."""
        f, r0, th = tile
        if (f, r0) not in self.chosen or top > PY.MAX_CODE:
            return
        me = threading.get_ident()
        i = self._mine.get(me)
        if i is None:
            i = self._mine[me] = self._free.pop()  # atomic (GIL); accs >= the threads
        block = codes[f, r0 : r0 + th]
        args = (block, self.kx.n_levels(*block.shape), self.accs[i], self.row_step)
        keep = () if self.keep is None else (self.keep[f, r0],)
        self.kx.train_tile(*args, TRAIN_SPARSE, *keep)
        self.trained.append((f, r0))  # atomic (GIL)

    def weights(self, codes: np.ndarray, tiles: list, threads: int | None):
        """``(luts, wts)`` of `solve_weights`, trained first on all training tiles if
        the quantiser did not (the moment sums then given back to `_SCRATCH`)."""
        if len(self.trained) != len(self.chosen):
            self.reset()
            _map(lambda t: self.tile(codes, t), tiles, threads)
        acc = self.accs[0]
        for more in self.accs[1:]:
            np.add(acc, more, out=acc)
        luts, wts = self.kx.solve_weights(acc, True)  # acc left zeroed: no fill when taken
        _give(self.accs[:1], clean=True)
        _give(self.accs[1:])
        self.accs = []  # given back: not to be used again
        return luts, wts


def code_pyramid(codes, tiles, params, training: Training | None = None, lent=None):
    """Back end "pyramid" (format 3, `pyramid`): hierarchical interpolative prediction,
    four interleaved rANS states per tile. Returns as `_code_causal`.

    Every buffer is allocated here, in the calling thread: a pool thread's allocations
    come from its own malloc arena, whose freed pages go back to the system, so that
    each encode faulted them in again (≈ 1 ms of system time per parallel 1 Mpx frame).
    ``training``: the `Training` of these tiles (the quantiser's), else one made here.
    ``lent``: a list that receives the `_take_empty` buffer of the model cells, for the
    caller to `_give` back."""
    kx = CK.KERNELS  # C extension or numba (`ckernels`)
    lent = [] if lent is None else lent
    if training is None:
        training = Training(codes.shape, tiles, params.threads)
    luts, wts = training.weights(codes, tiles, params.threads)
    keep = training.keep
    cts = _model_tables(kx, luts)

    modelled, hists = _model_pass(kx, codes, tiles, wts, cts, keep, params.threads, lent)
    if kx.encoder_entries is not None and hists.dtype == np.uint32 and PYRAMID_FORMAT >= 5:
        # C: the tables and the rANS entries (made once for all tiles) in one call
        remap, phys, entries = kx.encoder_entries(hists)
        freq = cum = None
        tables = (entries, None)
    else:
        hist = hists.sum(0, dtype=np.int64)
        if hists.dtype == np.uint32:  # C's two halves (formats 3-4)
            hist = hist[: hist.size // 2] + hist[hist.size // 2 :]
        remap, phys, freq, cum = kx.encoder_tables(hist.reshape(PY.N_CTX_ALL, PY.N_SYM))
        tables = (CK.rans_entries(freq, cum), None) if kx.entry_tables else (freq, cum)
    _give([hists])
    # the words: per tile, from malloc (a few touched pages each; one 2 B/px buffer kept
    # in `_SCRATCH` made decodes and zstd calls between encodes fault instead)
    outs = [np.empty(m[0].size + 2 * PY.WL + 16, np.uint16) for m in modelled]

    escapes = [m[2] for m in modelled]

    def code(i):  # format 5: one word stream of `PY.WL` states (`pyramid5`)
        if i < 0:  # the sections, deflated meanwhile by whichever thread takes item 0
            return _pyramid_sections(wts, luts, phys, remap, escapes, codes.shape[0])
        m, out = modelled[i], outs[i]
        if PYRAMID_FORMAT < 5:  # formats 3-4: `PY.LANES` streams
            out = np.empty((PY.LANES, m[0].size // PY.LANES + 16), np.uint16)
            lens = np.zeros(PY.LANES, np.int64)
            kx.rans_encode(m[0], m[1], freq, cum, out, lens)
            return np.concatenate([out[k, : lens[k]] for k in range(PY.LANES)]), lens
        n = kx.rans_encode16(m[0], m[1], *tables, out)
        return out[:n], [n]

    sections, *coded = _map(code, range(-1, len(modelled)), params.threads)
    rows = [
        [f, r0, th, int(m[2].size)] + [int(v) for v in lens]
        for (f, r0, th), m, (_, lens) in zip(tiles, modelled, coded, strict=True)
    ]
    return sections, rows, [wd for wd, _ in coded], escapes


def _pyramid_sections(wts, luts, phys, remap, escapes, n_frames: int) -> dict[str, bytes]:
    """The model sections of `code_pyramid` and the escapes, in stream order.

    Made while the tiles are rANS-coded (an item of that phase): in one thread they
    followed it, ≈ 0.55 ms of a 1 Mpx frame's 6 ms encode (RESULTS.md, session 11)."""
    return {
        "weights": _deflate(wts.astype("<i4").tobytes(), *_ZLIB_WEIGHTS),
        "levels": zlib.compress(luts.astype(np.uint8).tobytes(), 9),
        # run-length matches only (Z_RLE, level 1): 2.5-3.5x faster than level 6 on
        # these planes (Usiigaci: 0.11 instead of 0.38 ms), +0.05-0.11 % of a stream
        "freq": _deflate(_byte_planes(phys.astype("<u2")), 1, zlib.Z_RLE),
        "contexts": zlib.compress(remap.astype("<u2").tobytes(), 9),
        "escapes": escapes_section(np.concatenate(escapes), n_frames),
    }


def _model_pass(kx, codes, tiles, wts, cts, keep, threads, lent):
    """The model pass of `code_pyramid`: per tile ``(syms, ctxs, escapes)`` (C, format 5:
    ``(cells, None, escapes)``, the cells views of one `_take_empty` buffer added to
    ``lent``), and the histograms ``(threads, size)`` of the frame (`_take_zeros`:
    `_give` them back).

    Every thread adds its tiles to one histogram of its own (a row: C's two uint32
    halves of ``model_tile``, or int64), summed by the caller: no zeroed histogram per
    tile."""
    w = codes.shape[-1]
    n_hist = min(len(tiles), 1 if threads == 1 else pool_threads())
    c32 = kx.hist_u32 and codes.size < 1 << 32
    size = (2 if c32 else 1) * PY.N_CTX_ALL * PY.N_SYM
    hists = _take_zeros((n_hist, size), np.uint32 if c32 else np.int64)
    free, mine = list(range(n_hist)), {}  # a thread's histogram, taken on its first tile
    # C, format 5: one uint16 histogram cell (context · N_SYM + symbol) per pixel, the row
    # of the rANS entry table, instead of a symbol and a context (`model_tile` ctxs None)
    cells = c32 and kx.encoder_entries is not None and PYRAMID_FORMAT >= 5
    sizes = [th * w for _, _, th in tiles]
    if cells:  # every pixel's cell written: buffers whose pages are in memory already
        flat = _take_empty((sum(sizes),), np.uint16)
        bufs = [(c, None, np.empty(c.size, np.int32)) for c in _split(flat, sizes, lent)]
    else:
        bufs = [(np.empty(n, np.uint8), np.empty(n, np.uint16), np.empty(n, np.int32))
                for n in sizes]  # fmt: skip

    def model(i):
        f, r0, th = tiles[i]
        block = codes[f, r0 : r0 + th]
        syms, ctxs, esc = bufs[i]
        me = threading.get_ident()
        row = mine.get(me)
        if row is None:
            row = mine[me] = free.pop()  # atomic (GIL); n_hist >= the threads that run
        planes = () if keep is None or (f, r0) not in keep else (keep.pop((f, r0)),)
        ne = kx.model_tile(block, kx.n_levels(*block.shape), wts, cts, syms, ctxs, esc,
                           hists[row], *planes)  # fmt: skip
        return syms, ctxs, esc[:ne]

    return _map(model, range(len(tiles)), threads), hists


# scratch arrays of the encoder kept between calls, by (shape, dtype): reused pages,
# where a new array's pages are faulted in (and zeroed by the kernel) again at every
# encode once several are alive (threads: ≈ 150 faults per 1 Mpx frame). Zeroed ones
# (`_take_zeros`: moment accumulators, 1.4 MB; histograms) and ones of any content
# (`_take_empty`: the codes, 4 B/px, and the model cells, 2 B/px, of `encode_frames`,
# every byte written): a 10-frame stack's lie beyond glibc's mmap or trim thresholds,
# went back to the system after each encode and cost 10-20 % of its CPU time in page
# faults (RESULTS.md, "Issue 16: stack CPU per frame"). At most `_SCRATCH_KEEP` arrays
# per kind and `_SCRATCH_BYTES` in all are kept (a 10-frame 1 Mpx stack: 63 MB);
# larger encodes fault as before.
_SCRATCH: dict[tuple, list[tuple[np.ndarray, bool]]] = {}  # (array, zeroed already)
_SCRATCH_KEEP = 4  # arrays kept per kind
_SCRATCH_BYTES = 1 << 27


def _take_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.zeros(shape, dtype)``, from `_SCRATCH` when one is free."""
    stash = _SCRATCH.get((shape, np.dtype(dtype).str))
    try:
        a, clean = stash.pop() if stash else (None, False)  # atomic (GIL)
    except IndexError:  # taken by another thread meanwhile
        a = None
    if a is None:
        return np.zeros(shape, dtype)
    if not clean:
        a.fill(0)
    return a


def _take_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, from `_SCRATCH` when one is free (any content)."""
    stash = _SCRATCH.get((shape, np.dtype(dtype).str))
    try:
        return stash.pop()[0] if stash else np.empty(shape, dtype)  # atomic (GIL)
    except IndexError:  # taken by another thread meanwhile
        return np.empty(shape, dtype)


def _split(flat: np.ndarray, sizes: list[int], lent: list) -> list[np.ndarray]:
    """``flat`` (of `_take_empty`) as consecutive views of ``sizes``; ``flat`` added to
    ``lent`` (to be given back when the views are no longer used)."""
    lent.append(flat)
    ends = np.cumsum(sizes).tolist()
    return [flat[e - n : e] for e, n in zip(ends, sizes, strict=True)]


def _scratch_bytes() -> int:
    """Bytes held in `_SCRATCH` (read while other threads may add to it: copies)."""
    return sum(a.nbytes for stash in list(_SCRATCH.values()) for a, _ in list(stash))


def _give(arrays, clean: bool = False) -> None:
    """Return arrays of `_take_zeros` or `_take_empty` to `_SCRATCH` (none may be used
    afterwards); ``clean``: they are all zeros (no fill when taken). Kept while their
    kind has fewer than `_SCRATCH_KEEP`; arrays of other kinds are dropped (those given
    longest ago first) until all fit in `_SCRATCH_BYTES`: a long-lived process keeps
    the shapes it encodes now, not the first ones it met."""
    for a in arrays:
        key = (a.shape, a.dtype.str)
        stash = _SCRATCH.setdefault(key, [])
        if len(stash) >= _SCRATCH_KEEP or a.nbytes > _SCRATCH_BYTES:
            continue
        _make_room(key, _SCRATCH_BYTES - a.nbytes)
        if _scratch_bytes() + a.nbytes <= _SCRATCH_BYTES:
            stash.append((a, clean))
            _SCRATCH[key] = _SCRATCH.pop(key, stash)  # the kind given last: dropped last


def _make_room(key: tuple, budget: int) -> None:
    """Drop kept arrays of kinds other than ``key`` (oldest kind first) while
    `_SCRATCH` holds more than ``budget`` bytes."""
    for other in list(_SCRATCH):
        if _scratch_bytes() <= budget:
            return
        stash = _SCRATCH.get(other)
        while other != key and stash and _scratch_bytes() > budget:
            try:
                stash.pop(0)  # atomic (GIL): a thread taking it meanwhile has it
            except IndexError:
                break


# zlib setting (level, strategy) of the weights: "filtered" (few short matches) suits
# these int32 arrays; level 5: 1.5-2x faster than the default level 6 and 1-3 % smaller.
# Any setting decodes the same (`zlib.decompress`). (The escaped codes: `escapes_section`.)
_ZLIB_WEIGHTS = (5, zlib.Z_FILTERED)


def _deflate(raw: bytes, level: int, strategy: int) -> bytes:
    """``zlib.compress(raw, level)`` with a compression strategy."""
    z = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
    return z.compress(raw) + z.flush()


# the class tables as ``model_tile`` takes them, per kernels and level LUTs (frames of
# one camera share their level classes): neither kernel writes them
_MODEL_TABLES: dict[tuple, np.ndarray] = {}


def escapes_section(esc: np.ndarray, n_frames: int) -> bytes:
    """The "escapes" section: the escaped codes as little-endian int32, zlib.

    A stack's escapes repeat from frame to frame (level 6 finds them). A single frame's
    are few distinct small values that LZ77 matching hardly shortens: Huffman coding
    alone is 5-8x faster (Usiigaci: 0.12 instead of 0.93 ms, +1.5 % of this section,
    +0.02 % of the stream; its output is 33 % of the raw size); level 6 is still tried
    when the Huffman code shows repetitive values (< 1/4 of the raw size: one value
    repeated gives 19 %). Any setting decodes the same."""
    raw = esc.astype("<i4").tobytes()
    if n_frames > 1:
        return zlib.compress(raw, 6)
    out = _deflate(raw, 1, zlib.Z_HUFFMAN_ONLY)
    if 4 * len(out) < len(raw):
        out = min(out, zlib.compress(raw, 6), key=len)
    return out


def _model_tables(kx, luts: np.ndarray) -> np.ndarray:
    """``kx.model_tables(pyramid.class_tables(luts))``, cached."""
    key = (kx.name, luts.tobytes())
    return _memo(_MODEL_TABLES, key, 8, lambda: kx.model_tables(PY.class_tables(luts)))


def _byte_planes(a: np.ndarray) -> bytes:
    """Little-endian uint16 values as a plane of low bytes then a plane of high bytes
    (compresses better: the high bytes are mostly zero)."""
    b = np.ascontiguousarray(a, "<u2").view(np.uint8).reshape(-1, 2)
    return b[:, 0].tobytes() + b[:, 1].tobytes()
