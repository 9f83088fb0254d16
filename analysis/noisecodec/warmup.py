"""Compile (or load from the cache) the codec kernels of one back end, announced.

The kernels are numba functions compiled on their first call. Compiled code is cached
per machine (`rawsigma.jitcache`), so only the first run on a machine pays
(≈ 10–20 s CPU for the default back end; see benchmarks/RESULTS.md). When the C
extension is installed (`ckernels`), the default back end and the quantisers need no
compiling at all: `pending` is empty and `warm_up` returns at once. Callers with a
progress display call `warm_up` before coding: it compiles the kernels by coding a
tiny frame, under the stage `STAGE`, and returns at once when nothing needs compiling.
Only the kernels of the back end in use are compiled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from rawsigma import jitcache

from . import ckernels as CK
from . import fastpath as FP
from . import kernels as K
from . import pyramid as PY
from . import pyramid5 as P5
from .maps import CodecMaps
from .stream import StreamParams, decode_frames, encode_frames

STAGE = "compiling codec kernels (first run only)…"
Progress = Callable[[str, int, int], None]


def kernels(params: StreamParams, encode: bool = True, decode: bool = True) -> list:
    """The numba dispatchers that coding with ``params`` calls at top level (none for
    the quantiser and the "pyramid" back end when the C kernels are in use:
    `ckernels`)."""
    out = []
    c_path = CK.KERNELS.name == "c"
    if encode and not c_path:
        out.append(FP.quantise_round if params.max_error is None and not params.dither
                   else K.quantise_tile)  # fmt: skip
    if c_path and params.effort == "pyramid":
        return out
    if encode:
        out += {
            "pyramid": [PY.n_levels, PY.train_tile, PY.model_tile, P5.rans_encode16],
            "best": [K.train_tile, K.model_tile, K.rans_encode],
            "fast": [FP.train_tile, FP.model_tile, K.rans_encode],
        }[params.effort]
    if decode:
        out += {
            "pyramid": [P5.decode_tile16],  # streams written today: format 5
            "best": [FP.decode_lanes_best, K.dequantise_tile],
            "fast": [FP.decode_lanes, K.dequantise_tile],
        }[params.effort]
    return out


def pending(params: StreamParams, encode: bool = True, decode: bool = True) -> list[str]:
    """Names of the kernels that coding with ``params`` would compile first."""
    return jitcache.pending(kernels(params, encode, decode))


def _tiny(params: StreamParams) -> tuple[np.ndarray, CodecMaps, StreamParams]:
    rng = np.random.default_rng(0)
    frames = (100 + 2 * rng.poisson(40.0, (2, 64, 64))).astype(np.uint16)
    maps = CodecMaps.uniform((64, 64), 100.0, 2.0)
    small = replace(params, tile_rows=32, threads=1, max_adu=65535, sigma_e=1.5)
    return frames, maps, small


def warm_up(params: StreamParams | None = None, progress: Progress | None = None) -> float:
    """Compile the encoder and decoder kernels of ``params``'s back end if needed, by
    coding a tiny stack with the same parameters (same kernels, same argument types).

    Parameters
    ----------
    params : StreamParams, optional
        The coding parameters that will be used (back end, quantiser mode).
    progress : callable(stage, done, total), optional
        Told ``(STAGE, 0, 2)``, ``(STAGE, 1, 2)`` (encoder), ``(STAGE, 2, 2)`` (decoder)
        when there is something to compile; not called otherwise.

    Returns
    -------
    float
        Seconds spent (0 when every kernel was compiled or cached already).
    """
    params = params or StreamParams()
    if not pending(params):
        return 0.0
    t0 = time.perf_counter()
    say = progress or (lambda s, d, t: None)
    say(STAGE, 0, 2)
    code_tiny(params, lambda: say(STAGE, 1, 2))
    say(STAGE, 2, 2)
    return time.perf_counter() - t0


def code_tiny(params: StreamParams, encoded: Callable[[], None] | None = None) -> None:
    """Encode and decode a tiny stack with ``params`` (the kernels and argument types of
    real coding; ``encoded()`` is called between the two)."""
    frames, maps, small = _tiny(params)
    data = encode_frames(frames, maps, small)
    if encoded is not None:
        encoded()
    decode_frames(data, threads=1)
