"""Tiles of one frame decoded in parallel (issue 16, hthr): the persistent pool shares a
call's tiles with the calling thread; the pixels are those of the single-thread decode
(odd sizes, stacks, both kernel back ends); ``threads=1`` never leaves the calling
thread; errors of any tile reach the caller; the pool's size follows the cores this
process may use or ``$RAWSIGMA_CODEC_THREADS``."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec import runtime as RT
from rawsigma.analysis.noisecodec import stream as ST
from rawsigma.analysis.noisecodec.synthetic import reference_frame
from rawsigma.errors import InputFileError


def _encoded(shape: tuple[int, ...], tile_rows: int, **kw) -> tuple[bytes, NoiseCodec]:
    h, w = shape[-2:]
    frame, _, cam = reference_frame((h, w), seed=3)
    x = frame
    if len(shape) == 3:  # a stack: the frame and copies with ±2 ADU of other noise
        rng = np.random.default_rng(4)
        x = np.stack(
            [frame]
            + [
                np.clip(frame.astype(np.int32) + rng.integers(-2, 3, frame.shape), 0, 65535)
                for _ in range(shape[0] - 1)
            ]
        ).astype(np.uint16)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=tile_rows, **kw)
    return codec.encode(x), codec


@pytest.mark.parametrize(
    "shape, tile_rows, effort",
    [
        ((389, 517), 64, "pyramid"),  # odd sizes, a short last tile; ≥ the decode threshold
        ((3, 211, 333), 48, "pyramid"),  # a stack of odd frames
        ((523, 260), 256, "pyramid"),  # the default tile height: 3 tiles, the last of 11 rows
        ((2, 150, 97), 32, "best"),  # the causal back ends: groups of lanes
        ((2, 150, 97), 32, "fast"),
    ],
)
def test_parallel_decode_equals_single_thread(shape, tile_rows, effort) -> None:
    data, codec = _encoded(shape, tile_rows, effort=effort)
    one = ST.decode_frames(data, codec.maps, threads=1)
    assert one.shape == shape
    for threads in (None, 2, 3):
        assert np.array_equal(ST.decode_frames(data, codec.maps, threads=threads), one)
    namespaces = {"c": CK.c_namespace(), "numba": CK.numba_namespace()}
    saved = CK.KERNELS
    try:
        for ns in filter(None, namespaces.values()):
            CK.KERNELS = ns
            assert np.array_equal(ST.decode_frames(data, codec.maps, threads=None), one)
    finally:
        CK.KERNELS = saved


def test_default_threads_by_size() -> None:
    """A decode of ``threads=None`` goes parallel from `DECODE_PARALLEL_PIXELS` (an
    encode from `PARALLEL_PIXELS`); an explicit count is kept."""
    least = RT.DECODE_PARALLEL_PIXELS
    assert least <= 512 * 512 < RT.PARALLEL_PIXELS
    assert RT._auto_threads(None, least - 1, least) == 1
    assert RT._auto_threads(None, least, least) is None
    assert RT._auto_threads(1, 10**8, least) == 1
    assert RT._auto_threads(2, 16, least) == 2


def _idents(threads, n: int = 6, meet: threading.Barrier | None = None) -> list[int]:
    def fn(i):
        if meet is not None and i < 2:
            meet.wait()  # passes only when two items run at the same time
        return i, threading.get_ident()

    res = ST._map(fn, range(n), threads)
    assert [i for i, _ in res] == list(range(n))  # results in the items' order
    return [t for _, t in res]


def test_map_single_thread_stays_in_the_caller(monkeypatch) -> None:
    monkeypatch.setenv(RT.THREADS_ENV, "4")
    assert set(_idents(1)) == {threading.get_ident()}
    monkeypatch.setenv(RT.THREADS_ENV, "1")  # one thread for the codec: no hand-off
    assert set(_idents(None)) == {threading.get_ident()}


def test_map_shares_items_with_a_pool_thread(monkeypatch) -> None:
    monkeypatch.setenv(RT.THREADS_ENV, "2")
    idents = _idents(None, meet=threading.Barrier(2, timeout=20))
    assert threading.get_ident() in idents and len(set(idents)) == 2


def test_map_raises_a_tile_error_after_every_helper_stopped(monkeypatch) -> None:
    monkeypatch.setenv(RT.THREADS_ENV, "2")
    done: list[int] = []

    def fn(i):
        if i == 3:
            raise InputFileError("tile 3")
        done.append(i)

    for _ in range(20):
        done.clear()
        with pytest.raises(InputFileError, match="tile 3"):
            ST._map(fn, range(8), None)
        seen = sorted(done)
        time.sleep(0.002)
        assert sorted(done) == seen and 3 not in seen  # nothing runs after the raise


def test_pool_threads_from_affinity_or_environment(monkeypatch) -> None:
    monkeypatch.delenv(RT.THREADS_ENV, raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert RT.pool_threads() == (cores or os.cpu_count() or 1)
    monkeypatch.setenv(RT.THREADS_ENV, "3")
    assert RT.pool_threads() == 3
    for bad in ("0", "-2", "many", ""):
        monkeypatch.setenv(RT.THREADS_ENV, bad)
        assert RT.pool_threads() == (cores or os.cpu_count() or 1)


def test_decode_goes_parallel_only_when_a_core_is_free(monkeypatch) -> None:
    """Under load (the load average ≥ cores − ½) a decode below `PARALLEL_PIXELS` stays
    in the calling thread: a helper would wait in the run queue."""
    monkeypatch.setenv(RT.THREADS_ENV, "2")
    for load, least in ((0.3, RT.DECODE_PARALLEL_PIXELS), (1.6, RT.PARALLEL_PIXELS)):
        monkeypatch.setattr(RT.os, "getloadavg", lambda load=load: (load, load, load))
        monkeypatch.setattr(RT, "_LOAD", [-1.0, False])
        assert RT._parallel_least(RT.DECODE_PARALLEL_PIXELS) == least
    monkeypatch.setattr(RT.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    # the load is read at most once a second
    assert RT._parallel_least(RT.DECODE_PARALLEL_PIXELS) == RT.PARALLEL_PIXELS
