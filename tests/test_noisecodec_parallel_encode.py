"""Single frames encoded in parallel when a core is free (issue 16, session 10, henc):
the pool's streams are those of the calling thread alone (C and numba kernels, short
last tiles, stacks), the load gate picks the threshold, and the encoder's reused
scratch arrays come back zeroed."""

from __future__ import annotations

import sys
import tracemalloc
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

KINDS = ["numba"] + (["c"] if CK.c_namespace() is not None else [])


@pytest.fixture(params=KINDS)
def kernels(request, monkeypatch):
    ns = CK.numba_namespace() if request.param == "numba" else CK.c_namespace()
    monkeypatch.setattr(CK, "KERNELS", ns)
    return ns


@pytest.mark.parametrize("shape,rows", [((203, 90), 48), ((130, 77), 64)])
def test_pool_encode_gives_the_calling_threads_stream(kernels, shape, rows) -> None:
    frame, _, cam = reference_frame(shape, seed=11)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=rows)
    one = ST.encode_frames(frame, codec.maps, replace(codec.params, threads=1))
    for threads in (2, 3):
        assert ST.encode_frames(frame, codec.maps, replace(codec.params, threads=threads)) == one
    stack = np.stack([frame, np.clip(frame.astype(np.int32) + 2, 0, 65535).astype(np.uint16)])
    s1 = ST.encode_frames(stack, codec.maps, replace(codec.params, threads=1))
    assert ST.encode_frames(stack, codec.maps, replace(codec.params, threads=2)) == s1
    np.testing.assert_array_equal(codec.decode(one), codec.decode(s1)[0])


def test_encode_goes_parallel_only_with_a_free_core(monkeypatch) -> None:
    n = RT.ENCODE_PARALLEL_PIXELS
    assert 512 * 512 < n <= 520 * 696 < RT.PARALLEL_PIXELS  # (RESULTS.md, session 10)

    def least() -> int:
        return RT._parallel_least(RT.ENCODE_PARALLEL_PIXELS)

    monkeypatch.setattr(RT, "_core_free", lambda: True)
    assert RT._auto_threads(None, n, least()) is None
    assert RT._auto_threads(None, n - 1, least()) == 1
    monkeypatch.setattr(RT, "_core_free", lambda: False)
    assert RT._auto_threads(None, n, least()) == 1
    assert RT._auto_threads(None, RT.PARALLEL_PIXELS, least()) is None
    seen = []
    real = ST._map
    monkeypatch.setattr(ST, "_map", lambda fn, items, th: seen.append(th) or real(fn, items, th))
    frame, _, cam = reference_frame((64, 64), seed=2)
    NoiseCodec(cam.true_profile(), step=2.0).encode(frame)
    assert seen and set(seen) == {1}  # a small frame under load: the calling thread


def test_scratch_arrays_come_back_zeroed() -> None:
    a = EP._take_zeros((3, 5), np.int64)
    a += 7
    EP._give([a])
    b = EP._take_zeros((3, 5), np.int64)
    assert b is a and not b.any()
    assert EP._take_zeros((3, 5), np.uint32).dtype == np.uint32  # another kind: new


def _second_encode_peak(codec: NoiseCodec, stack: np.ndarray) -> tuple[int, bool]:
    """Bytes allocated at most during a second encode of ``stack`` (numpy's
    allocations, traced), and whether it gave the first one's stream."""
    first = codec.encode(stack)
    tracemalloc.start()
    try:
        second = codec.encode(stack)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, second == first


@pytest.mark.skipif(CK.c_namespace() is None, reason="C kernels unavailable")
def test_a_stacks_next_encode_reuses_its_buffers(monkeypatch) -> None:
    """Session 13: the codes (4 B/px) and model cells (2 B/px) of an encode are kept for
    the next (`_take_empty`): a 10-frame 1 Mpx stack's lie beyond glibc's mmap or trim
    thresholds and were faulted in and zeroed again at every encode (10-20 % of its CPU
    time). A second encode allocates < 11 B/px (the escapes' buffers, 4 B/px, and the
    words, 2 B/px, hardly touched; the training planes, 2.7 B/px); with nothing kept
    (`_SCRATCH_BYTES` 0) ≥ 15 B/px, as before (17 B/px here)."""
    monkeypatch.setattr(CK, "KERNELS", CK.c_namespace())
    frame, _, cam = reference_frame((256, 192), seed=3)
    rng = np.random.default_rng(3)
    stack = np.clip(frame + rng.integers(-2, 3, (4, *frame.shape)), 0, 65535).astype(np.uint16)
    codec = NoiseCodec(cam.true_profile(), step=2.0, threads=1)
    peak, same = _second_encode_peak(codec, stack)
    assert same and peak < 11 * stack.size
    assert EP._scratch_bytes() <= EP._SCRATCH_BYTES
    monkeypatch.setattr(EP, "_SCRATCH_BYTES", 0)
    EP._SCRATCH.clear()
    peak, same = _second_encode_peak(codec, stack)
    assert same and peak >= 15 * stack.size
    assert not EP._scratch_bytes()


@pytest.mark.skipif(CK.c_namespace() is None, reason="C kernels unavailable")
def test_c_encoder_entries_are_the_tables_of_the_summed_halves(context_histogram) -> None:
    """`_ckernels.encoder_entries` sums model_tile's uint32 halves (one pair per thread)
    and gives numpy's context map, tables and ``freq << 16 | cum``."""
    c = CK.c_namespace()
    rng = np.random.default_rng(4)
    for trial in range(24):
        h = context_histogram(rng, trial)
        pairs = 1 + trial % 3
        parts = rng.multinomial(1, np.ones(2 * pairs) / (2 * pairs), h.size).T
        halves = np.stack([(h.ravel() * p) for p in parts]).astype(np.uint32)
        halves[0] += (h.ravel() - halves.astype(np.int64).sum(0)).astype(np.uint32)
        remap, phys, freq, cum = PY.encoder_tables(h)
        got = c.encoder_entries(halves.reshape(pairs, -1))
        np.testing.assert_array_equal(got[0], remap)
        np.testing.assert_array_equal(got[1], phys)
        np.testing.assert_array_equal(got[2], CK.rans_entries(freq, cum))
    with pytest.raises(ValueError, match="sizes"):
        c.encoder_entries(np.zeros(PY.N_CTX_ALL * PY.N_SYM, np.uint32))  # half a pair


def test_single_frames_train_on_every_fifth_row(monkeypatch) -> None:
    """A single frame of TRAIN_SINGLE pixels or more trains on every 5th row of level 0
    (stacks and smaller frames on every 4th): other bytes, the same decoded pixels."""
    steps = []
    real = CK.KERNELS.train_tile
    monkeypatch.setattr(CK.KERNELS, "train_tile", lambda *a: steps.append(a[3]) or real(*a))
    frame, _, cam = reference_frame((512, 512), seed=3)
    codec = NoiseCodec(cam.true_profile(), step=2.0, threads=1)
    new = codec.encode(frame)
    assert set(steps) == {5}
    steps.clear()
    codec.encode(np.stack([frame, frame]))
    small = NoiseCodec(cam.true_profile().crop((0, 0, 64, 64), relative=True), step=2.0)
    small.encode(np.ascontiguousarray(frame[:64, :64]))
    assert set(steps) == {4}
    monkeypatch.setattr(EP, "TRAIN_ROW_STEP", (4, 4, 8))
    old = codec.encode(frame)
    assert old != new
    np.testing.assert_array_equal(codec.decode(old), codec.decode(new))


@pytest.mark.skipif(CK.c_namespace() is None, reason="C kernels unavailable")
def test_c_solve_weights_can_leave_the_moments_zeroed() -> None:
    c = CK.c_namespace()
    frame, _, cam = reference_frame((96, 80), seed=7)
    codes = ST.quantise_frames(frame, NoiseCodec(cam.true_profile()).maps, ST.StreamParams())[0]
    acc = PY.new_moments()
    c.train_tile(np.ascontiguousarray(codes, np.int32), c.n_levels(*codes.shape), acc, 1)
    assert acc.any()
    want = c.solve_weights(acc)
    got = c.solve_weights(acc, True)
    assert not acc.any()
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def _unfused(monkeypatch) -> None:
    """Training in a phase of its own (as before session 11), not in the quantiser's."""
    monkeypatch.setattr(ST, "_encode_training", lambda frames, params: None)


@pytest.mark.parametrize("threads", [1, 2])
def test_training_in_the_quantisers_items_gives_the_same_stream(kernels, monkeypatch, threads):
    """Session 11: each tile is trained in the item that quantises it. The moment sums
    are int64, so the weights, and the stream, are those of the separate phase; also
    after a wrong knee guess (the quantiser's pass repeated: the sums start again),
    for stacks, and in the modes that do not train in the quantiser (bound, dither)."""
    frame, _, cam = reference_frame((203, 90), seed=11)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=48)
    dark = np.clip(frame.astype(np.int32) - 60, 0, 65535).astype(np.uint16)  # another knee
    stack = np.stack([frame, dark])
    cases = [replace(codec.params, threads=threads)]
    cases += [replace(cases[0], max_error=3.0), replace(cases[0], dither=True)]
    inputs = [frame, dark, stack, frame]  # frame after dark: the knee guess is wrong

    def streams() -> list[bytes]:
        ST._KNEE_GUESS.clear()
        return [ST.encode_frames(x, codec.maps, p) for p in cases for x in inputs]

    fused = streams()
    with monkeypatch.context() as m:
        _unfused(m)
        assert streams() == fused
    callers = []
    real = EP.Training.reset

    def reset(self):
        callers.append(sys._getframe(1).f_code.co_name)
        real(self)

    monkeypatch.setattr(EP.Training, "reset", reset)
    assert streams() == fused
    # C: a wrong knee guess repeats the pass, and the sums (numba has no guess)
    assert ("quantise_frames_knee" in callers) == kernels.round_min
    assert callers.count("weights") == 2 * len(inputs)  # bound and dither: own phase
