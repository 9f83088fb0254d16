"""The codec's per-frame work that is done once (maps) or in cache-sized pieces gives
the values of the whole-array formulas it replaced."""

from __future__ import annotations

import numpy as np
from rawsigma.analysis.noisecodec import pyramid as PY
from rawsigma.analysis.noisecodec.maps import CodecMaps
from rawsigma.analysis.noisecodec.stream import frames_v_min


def _maps(shape=(300, 257), seed=0) -> CodecMaps:
    rng = np.random.default_rng(seed)
    return CodecMaps.from_maps(rng.normal(100, 3, shape), rng.normal(2.0, 0.05, shape))


def test_maps_bytes_built_once_and_decoded_once() -> None:
    m = _maps()
    b = m.to_bytes()
    assert m.to_bytes() is b
    a1 = CodecMaps.from_bytes(b, m.shape, m.offset0, m.gain0, m.jitter)
    a2 = CodecMaps.from_bytes(bytes(b), m.shape, m.offset0, m.gain0, m.jitter)
    assert a1 is a2  # cached by content: float maps and digest computed once
    assert a1.digest() == m.digest()
    np.testing.assert_array_equal(a1.offset(), m.offset())
    np.testing.assert_array_equal(a1.gain(), m.gain())
    assert not a1.offset_q.flags.writeable and not a1.gain_q.flags.writeable
    other = _maps(seed=1)
    b2 = other.to_bytes()
    assert CodecMaps.from_bytes(b2, m.shape, m.offset0, m.gain0, m.jitter).digest() != m.digest()


def test_frames_v_min_in_blocks_equals_whole_frames() -> None:
    m = _maps()
    rng = np.random.default_rng(3)
    for n in (1, 3):
        stack = rng.integers(60, 4000, (n, *m.shape)).astype(np.uint16)
        lo = stack.min(axis=0).astype(np.float64)
        want = float(np.min((lo - m.offset()) / m.gain())) + 1.5
        assert frames_v_min(stack, m, 1.5) == want


def test_class_moments_equal_the_one_hot_sum() -> None:
    rng = np.random.default_rng(4)
    shape = (PY.N_SETS, PY.N_ACT_CLS, PY.LVL_MAX + 1, PY.N_MOM)
    acc = rng.integers(0, 2**40, shape) * (rng.random((1, 1, shape[2], 1)) < 0.4)
    accf = acc.astype(np.float64)
    luts = np.stack([PY.level_thresholds(accf[s, :, :, 9].sum(0)) for s in range(PY.N_SETS)])
    onehot = (luts[:, :, None] == np.arange(PY.N_LVL_CLS)).astype(np.float64)
    want = np.einsum("salm,slc->sacm", accf, onehot)
    np.testing.assert_array_equal(PY._class_moments(acc, luts).astype(np.float64), want)
