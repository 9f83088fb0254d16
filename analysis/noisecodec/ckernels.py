"""Which kernels the noise codec runs: the C extension, or the numba kernels.

The default ("pyramid") back end's hot kernels and the quantisers exist twice: as numba
functions (`pyramid`, `fastpath.quantise_round`, `kernels.quantise_tile`; compiled on
first use, ≈ 20 s CPU per machine) and in the C extension ``_ckernels`` built by ``pip
install`` (`setup.py`, optional: an install without a C compiler still works). Both
give the same bytes and pixels (tests/test_noisecodec_ckernels.py); the numba kernels
are the reference and the fallback.

`KERNELS` is a namespace with the functions ``quantise_round``, ``quantise_tile``,
``n_levels``, ``train_tile``, ``model_tile``, ``rans_encode`` and ``decode_tile`` (formats
3-4), ``rans_encode16`` and ``decode_tile16`` (format 5, `pyramid5`) with the numba
kernels' signatures (and ``decoder_tables``: a stream's ``cts, tab`` for the decoders;
``v_min``: the C loop of `stream.frames_v_min`, None for numpy; ``planes_size``: the
size of a tile's planes that C ``train_tile`` keeps for ``model_tile`` (None for numba);
``round_min``: whether ``quantise_round`` also returns the smallest ``v``;
``class_moments``: `pyramid._class_moments` in C, None for numpy; ``model_tables``: the
class tables as ``model_tile`` takes them, once per frame; ``solve_weights`` and
``encoder_tables``: the per-frame model fit of `pyramid`, the same integers from C and
numpy, `exactfit`; ``encoder_entries``: C's tables and rANS entries straight from its
uint32 histograms, None for numba). The C namespace is used when the
extension imports and was built from the same constants; ``RAWSIGMA_CODEC_KERNELS=numba``
forces the numba kernels (``=c`` requires the extension). `BACKEND` names the choice.
"""

from __future__ import annotations

import os
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import pyramid as PY

_ENV = "RAWSIGMA_CODEC_KERNELS"


def _load() -> tuple[Any, str]:
    """The extension module, or None and why not."""
    import importlib.util

    if importlib.util.find_spec(f"{__package__}._ckernels") is None:
        return None, "C extension not built (no C compiler at install?)"
    try:
        from . import _ckernels  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"C extension not loadable ({exc})"
    built = _ckernels.constants()
    if any(int(getattr(PY, name, -1)) != v for name, v in built.items()):
        return None, "C extension built from other constants: reinstall rawsigma"
    return _ckernels, ""


_C, WHY_NOT = _load()


# ---------------------------------------------------------------- C wrappers
def _quantise_round(x, off, gain, codes, inv_step, c0, kp=None, with_min=False):
    """``top`` code, or ``(top, smallest float32 v)`` with ``with_min`` (``round_min``)."""
    args = (x, off, gain, codes, float(inv_step), float(c0), _kp(kp))
    return _C.quantise_round(*args, True) if with_min else _C.quantise_round(*args)


def _quantise_tile(x, off, gain, codes, step, c0, dither, seed, index0, edges, sum_e, cnt,
                   kp=None) -> None:  # fmt: skip
    _C.quantise_tile(x, off, gain, codes, float(step), float(c0), bool(dither), int(seed),
                     int(index0), edges, sum_e, cnt, _kp(kp))  # fmt: skip


def _kp(kp) -> np.ndarray:
    from .kernels import NO_KNEE

    return NO_KNEE if kp is None else np.ascontiguousarray(kp, np.float64)


def _train_tile(codes, K, acc, row_step=4, sparse=False, keep=None) -> None:
    # keep: None, or an int16 array of planes_size(*codes.shape) that receives the
    # tile's planes for `_model_tile` (built once for both passes)
    _C.train_tile(codes, acc, PY.ACT_LUT, int(row_step), bool(sparse), keep)


def _model_tile(codes, K, wts, cts, syms, ctxs, esc, hist, planes=None) -> int:
    # planes: None, or `_train_tile`'s keep of the same codes; hist: int64 (numba's), or
    # uint32 of twice the size (C's own two halves, kept over the tiles of a frame)
    return _C.model_tile(codes, wts, cts, syms, ctxs, esc, hist, planes)


def _split_class_tables(cts: np.ndarray) -> np.ndarray:
    """The separable class tables that the C ``model_tile`` takes instead of ``cts``.

    `pyramid.class_tables` checked for separability once per frame, not once per tile.
    """
    out = np.empty((PY.N_SETS * (PY.ACT_MAX + 1 + PY.LVL_MAX + 1)), np.uint32)
    _C.split_class_tables(np.ascontiguousarray(cts, np.uint16), out)
    return out


def _solve_weights(acc, zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`pyramid.solve_weights` in C: level LUTs and fixed-point weights.

    ``zero``: the (contiguous int64) ``acc`` is left zeroed, each part once read (the
    encoder's reused scratch).
    """
    luts = np.empty((PY.N_SETS, PY.LVL_MAX + 1), np.uint8)
    wts = np.empty((PY.N_SETS, PY.N_CLASS * PY.N_W), np.int32)
    if zero:
        _C.solve_weights(acc, luts, wts, True)
    else:
        _C.solve_weights(np.ascontiguousarray(acc, np.int64), luts, wts)
    return luts, wts


def _encoder_tables(hist) -> tuple[np.ndarray, ...]:
    """`pyramid.encoder_tables` in C: context map, physical tables, freq and cum."""
    remap = np.empty(PY.N_CTX_ALL, np.int64)
    phys, freq, cum = (np.empty((PY.N_CTX_ALL, PY.N_SYM), np.int64) for _ in range(3))
    n = _C.encoder_tables(np.ascontiguousarray(hist, np.int64), remap, phys, freq, cum)
    return remap, phys[:n], freq, cum


def _encoder_entries(hists) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pyramid.encoder_tables` and `rans_entries` in one C call.

    From the uint32 histogram halves of the C ``model_tile`` (one pair per thread,
    summed): context map, physical tables and the entries ``freq << 16 | cum`` of
    ``rans_encode16``.
    """
    remap = np.empty(PY.N_CTX_ALL, np.int64)
    phys = np.empty((PY.N_CTX_ALL, PY.N_SYM), np.int64)
    entries = np.empty((PY.N_CTX_ALL, PY.N_SYM), np.uint32)
    n = _C.encoder_entries(np.ascontiguousarray(hists, np.uint32), remap, phys, entries)
    return remap, phys[:n], entries


def _rans_encode(syms, ctxs, freq, cum, out, lens) -> None:
    _C.rans_encode(syms, ctxs, np.ascontiguousarray(freq, np.int64),
                   np.ascontiguousarray(cum, np.int64), out, lens)  # fmt: skip


# the decoder's prepared tables (`_ckernels.dec_prepare`) of the last few streams (tiles and
# frames of a stream share them; streams decoded at once in threads, e.g. zarr chunks, do
# not evict each other): keyed by the identity of the arrays, which an entry keeps alive
_PREP: list = []
_PREP_KEEP = 4


def _prepared(cts, tab):
    key = (cts, *tab)
    entries = list(_PREP)  # a snapshot: other threads may replace the list's contents
    for k, prep in reversed(entries):
        if all(a is b for a, b in zip(k, key, strict=True)):
            return prep
    lut, fc, rm = tab
    prep = _C.dec_prepare(cts, lut, fc, rm)
    _PREP[:] = [*entries, (key, prep)][-_PREP_KEEP:]
    return prep


def _c_dequantisation(dq) -> tuple:
    """The dequantisation arguments ``dq`` (`pyramid._dequantise`) as C takes them."""
    off, gain, recon, step, c0, dither, seed, index0, max_adu, analytic, kp = dq
    return (off, gain, recon, float(step), float(c0), bool(dither), int(seed), int(index0),
            float(max_adu), bool(analytic), kp)  # fmt: skip


def _decode_tile(words, starts, ends, esc, ebeg, eend, wts, cts, tab, out, dq):
    prep = cts if tab is None else _prepared(cts, tab)  # tab None: `_decoder_tables`
    if prep is None:  # inconsistent tables: a corrupted stream
        return False, int(ebeg)
    return _C.decode_tile(
        prep, words, np.ascontiguousarray(starts, np.int64),
        np.ascontiguousarray(ends, np.int64), esc, int(ebeg), int(eend), wts, out,
        *_c_dequantisation(dq),
    )  # fmt: skip


def _rans_encode16(syms, ctxs, freq, cum, out) -> int:
    if cum is None:  # freq: the uint32 entries of `rans_entries`
        return _C.rans_encode16(syms, ctxs, freq, None, out)
    return _C.rans_encode16(syms, ctxs, np.ascontiguousarray(freq, np.int64),
                            np.ascontiguousarray(cum, np.int64), out)  # fmt: skip


def rans_entries(freq: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """``freq << 16 | cum`` as uint32, the C ``rans_encode16``'s table.

    Made once for the tiles of a frame and passed as ``freq`` with ``cum`` None. Values
    must lie in [0, TAB].
    """
    f, c = np.asarray(freq, np.int64), np.asarray(cum, np.int64)
    if f.shape != c.shape or min(f.min(), c.min()) < 0 or max(f.max(), c.max()) > PY.TAB:
        raise ValueError("rans_entries: freq and cum must lie in [0, TAB]")
    return np.ascontiguousarray((f << 16 | c).astype(np.uint32))


def _decoder_tables(planes, remap, luts):
    """(prepared tables, None) from the sections (`_ckernels.dec_tables`), or None."""
    prep = _C.dec_tables(planes, remap, luts, PY.ACT_LUT)
    return None if prep is None else (prep, None)


def _decode_tile16(words, start, end, esc, ebeg, eend, wts, cts, tab, out, dq):
    # tab None: cts are the prepared tables of `_decoder_tables`
    prep = cts if tab is None else _prepared(cts, tab)
    if prep is None:  # inconsistent tables: a corrupted stream
        return False, int(ebeg)
    return _C.decode_tile16(
        prep, words, int(start), int(end), esc, int(ebeg), int(eend), wts, out,
        *_c_dequantisation(dq),
    )  # fmt: skip


def _c_namespace() -> SimpleNamespace:
    return SimpleNamespace(
        name="c",
        quantise_round=_quantise_round,
        quantise_tile=_quantise_tile,
        n_levels=_C.n_levels,
        train_tile=_train_tile,
        model_tile=_model_tile,
        planes_size=_C.planes_size,  # train_tile(keep=) and model_tile(planes=)
        rans_encode=_rans_encode,
        decode_tile=_decode_tile,
        rans_encode16=_rans_encode16,
        decode_tile16=_decode_tile16,
        decoder_tables=_decoder_tables,
        v_min=_C.v_min,
        round_min=True,  # quantise_round(..., with_min=True): the knee check in the pass
        model_tables=_split_class_tables,  # cts → what model_tile takes, once per frame
        class_moments=_C.class_moments,
        solve_weights=_solve_weights,
        encoder_tables=_encoder_tables,
        encoder_entries=_encoder_entries,  # uint32 histograms -> tables and rANS entries
        # capabilities the encoder and decoder test (rather than the back end's name):
        gain_row=True,  # quantise_round and the decoders take one row of a uniform gain
        entry_tables=True,  # rans_encode16 takes (rans_entries, None), not (freq, cum)
        hist_u32=True,  # model_tile's histograms: uint32 halves (frames < 2**32 px)
    )


def numba_namespace() -> SimpleNamespace:
    """The numba kernels (reference and fallback) as a namespace like the C one."""
    from . import fastpath as FP
    from . import kernels as K
    from . import pyramid5 as P5

    return SimpleNamespace(
        name="numba",
        quantise_round=FP.quantise_round,
        quantise_tile=K.quantise_tile,
        n_levels=PY.n_levels,
        train_tile=PY.train_tile,
        model_tile=PY.model_tile,
        planes_size=None,  # no planes kept from training for the model pass
        rans_encode=PY.rans_encode,
        decode_tile=PY.decode_tile,
        rans_encode16=P5.rans_encode16,
        decode_tile16=P5.decode_tile16,
        decoder_tables=numba_decoder_tables,
        v_min=None,  # numpy in `stream.frames_v_min`
        round_min=False,
        model_tables=lambda cts: cts,
        class_moments=None,  # numpy in `pyramid._class_moments`
        solve_weights=_numpy_solve_weights,  # numpy, the same bits (`exactfit`)
        encoder_tables=PY.encoder_tables,
        encoder_entries=None,  # (C only)
        gain_row=False,
        entry_tables=False,
        hist_u32=False,
    )


def _numpy_solve_weights(acc, zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`pyramid.solve_weights` with the C kernel's ``zero``: ``acc`` left zeroed."""
    fit = PY.solve_weights(acc)
    if zero:
        acc.fill(0)
    return fit


def numba_decoder_tables(planes: bytes, remap: bytes, luts: bytes) -> tuple | None:
    """The ``(cts, tab)`` of a stream for ``decode_tile16``, or None if inconsistent.

    From the decompressed "freq" (byte planes), "contexts" and "levels" sections; None
    when they are not consistent (a corrupted stream). The C namespace's
    ``decoder_tables`` makes prepared tables (``tab`` None) with the same checks, in one
    call.
    """
    b = np.frombuffer(planes, np.uint8)
    n = b.size // 2
    if b.size % 2 or n % PY.N_SYM or n == 0 or len(remap) != 2 * PY.N_CTX_ALL:
        return None
    if len(luts) != PY.N_SETS * (PY.LVL_MAX + 1):
        return None
    phys = (b[:n].astype(np.int64) | (b[n:].astype(np.int64) << 8)).reshape(-1, PY.N_SYM)
    rm = np.frombuffer(remap, "<u2").astype(np.int64)
    lv = np.frombuffer(luts, np.uint8).reshape(PY.N_SETS, PY.LVL_MAX + 1)
    if (
        int(rm.max()) >= phys.shape[0]
        or (phys.sum(1) != PY.TAB).any()
        or int(lv.max()) >= PY.N_LVL_CLS
    ):
        return None
    return PY.class_tables(lv), PY.decode_table(phys, rm)


def c_namespace() -> SimpleNamespace | None:
    """The C kernels, or None when the extension is not available."""
    return None if _C is None else _c_namespace()


def _choose() -> SimpleNamespace:
    want = os.environ.get(_ENV, "").strip().lower()
    if want not in ("", "c", "numba"):
        raise ValueError(f"{_ENV}={want!r}: expected 'c' or 'numba'")
    if want == "c" and _C is None:
        raise ImportError(f"{_ENV}=c but {WHY_NOT}")
    if want == "numba" or _C is None:
        return numba_namespace()
    return _c_namespace()


KERNELS = _choose()
BACKEND: str = KERNELS.name


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """``zlib.crc32(data, value)``, the same value, computed faster where possible.

    By carry-less multiplication in the C extension where it is in use and the CPU has
    PCLMULQDQ (~3× zlib 1.2's speed; every encode and decode checksums its stream), else
    by zlib. ``value`` continues the CRC of earlier bytes, as in zlib.
    """
    if BACKEND == "c" and hasattr(_C, "crc32"):
        c = _C.crc32(data, value & 0xFFFFFFFF)
        if c is not None:
            return int(c)
    return zlib.crc32(data, value) & 0xFFFFFFFF


def describe() -> str:
    """One line naming the codec kernels in use (for ``rawsigma --version``)."""
    if BACKEND == "c":
        return "codec kernels: C extension"
    why = f"{_ENV}=numba" if _C is not None else WHY_NOT
    return f"codec kernels: numba ({why})"
