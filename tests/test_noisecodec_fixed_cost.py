"""The encoder's per-frame model fit in C (henc): `_ckernels.solve_weights` and
`_ckernels.encoder_tables` give the integers of their numpy twins (`pyramid`,
`exactfit`) on random and real inputs; the exact arithmetic they share is a correct
solve and logarithm; tiles sharing one histogram give the stream of per-tile ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec import encode_pyramid as EP
from rawsigma.analysis.noisecodec import exactfit as EF
from rawsigma.analysis.noisecodec import pyramid as PY
from rawsigma.analysis.noisecodec import stream as ST
from rawsigma.analysis.noisecodec.synthetic import reference_frame

C = CK.c_namespace()
needs_c = pytest.mark.skipif(C is None, reason=f"C kernels unavailable: {CK.WHY_NOT}")


def test_solve4_agrees_with_lapack_and_flags_singular_systems() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 4, 4)) + 4 * np.eye(4)
    b = rng.normal(size=(500, 4))
    np.testing.assert_allclose(EF.solve4(a, b), np.linalg.solve(a, b[..., None])[..., 0], 1e-12)
    a[7] = 0.0  # singular: no finite solution
    a[9, :, 2] = 0.0
    x = EF.solve4(a, b)
    assert not np.isfinite(x[7]).any() and not np.isfinite(x[9]).all()
    assert np.isfinite(np.delete(x, [7, 9], 0)).all()


def test_fixed_point_log_is_log2() -> None:
    c = np.unique(np.r_[1:5000, np.geomspace(5000, 2**40, 3000).astype(np.int64)])
    lg = EF.ilog2(c)
    err = lg / 2.0**EF.XL_F - np.log2(c.astype(np.float64))
    assert err.max() <= 1e-9 and err.min() > -(2.0 ** (1 - EF.XL_F))  # truncated, 1 unit
    assert (np.diff(lg) >= 0).all()
    np.testing.assert_array_equal(EF.ilog2(2 ** np.arange(40)), np.arange(40) << EF.XL_F)
    small = c < EF.XL_N
    np.testing.assert_array_equal(EF.xlog2x(c[small]), c[small] * lg[small])
    big = EF.xlog2x(c[~small]) / c[~small] / 2.0**EF.XL_F - np.log2(c[~small].astype(float))
    assert -(2.0**-14) < big.min() and big.max() <= 1e-9  # interpolated, floor
    assert (np.diff(EF.xlog2x(c)) > 0).all()
    assert EF.xlog2x(np.array([0]))[0] == 0


def _random_acc(rng, trial):
    shape = (PY.N_SETS, PY.N_ACT_CLS, PY.LVL_MAX + 1, PY.N_MOM)
    scale = (2**40, 1000, 40, 3)[trial % 4]
    acc = rng.integers(0, scale, shape) * (rng.random((1, 1, shape[2], 1)) < rng.random())
    if trial % 5 == 0:
        acc[rng.integers(0, PY.N_SETS)] = 0  # a set without samples: the default fit
    return acc


def _real_accs():
    """Training moments of real-looking tiles: the reference frame, a flat one, a ramp."""
    frame, _, cam = reference_frame((160, 120), seed=3)
    codec = NoiseCodec(cam.true_profile(), step=2.0)
    codes = ST.quantise_frames(frame, codec.maps, codec.params)[0]
    y, x = np.mgrid[:90, :70]
    out = []
    for c in (codes, np.full((40, 50), 7), (x + 3 * y) // 2):
        acc = PY.new_moments()
        c = np.ascontiguousarray(c, np.int32)
        PY.train_tile(c, PY.n_levels(*c.shape), acc, 1)
        out.append(acc)
    return out


@needs_c
def test_c_solve_weights_equals_numpy() -> None:
    rng = np.random.default_rng(2)
    accs = [_random_acc(rng, t) for t in range(40)] + _real_accs()
    for acc in accs:
        luts, wts = PY.solve_weights(acc)
        luts_c, wts_c = C.solve_weights(acc)
        np.testing.assert_array_equal(luts_c, luts)
        np.testing.assert_array_equal(wts_c, wts)
    real = accs[-3]
    ref = PY.solve_weights(real)[1].reshape(PY.N_SETS, PY.N_CLASS, PY.N_W)
    assert np.abs(ref[..., 0] - 1024).max() < 1024  # the nearest ring: about 1/4 each
    with pytest.raises(ValueError, match="sizes"):
        C.solve_weights(real[:3])


@needs_c
def test_c_encoder_tables_equal_numpy(context_histogram) -> None:
    rng = np.random.default_rng(3)
    hists = [context_histogram(rng, t) for t in range(60)]
    hists += [np.zeros((PY.N_CTX_ALL, PY.N_SYM), np.int64)]
    for h in hists:
        want = PY.encoder_tables(h)
        got = C.encoder_tables(h)
        for a, b in zip(want, got, strict=True):
            np.testing.assert_array_equal(a, b)
        remap, phys, freq, cum = got
        assert (phys.sum(1) == PY.TAB).all() and (phys >= 0).all()
        assert ((phys[remap] > 0) | (h == 0)).all()  # every seen symbol codable
        np.testing.assert_array_equal(freq, phys[remap])
        np.testing.assert_array_equal(cum, PY.cumulative(freq))
        assert remap.max() + 1 == phys.shape[0] == np.unique(remap).size
    bad = hists[1].copy()
    bad[3, 4] = -1
    with pytest.raises(ValueError, match="out of range"):
        C.encoder_tables(bad)


def test_one_shared_histogram_gives_the_per_tile_stream() -> None:
    """Tiles encoded in the calling thread add to one histogram; in threads each has its
    own, summed: the same stream."""
    frame, _, cam = reference_frame((200, 90), seed=5)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=48)
    serial = ST.encode_frames(frame, codec.maps, replace(codec.params, threads=1))
    threaded = ST.encode_frames(frame, codec.maps, replace(codec.params, threads=2))
    assert serial == threaded
    assert len(ST.read_header(serial)["tiles"]) == 5
    np.testing.assert_array_equal(codec.decode(serial), codec.decode(threaded))


def test_cached_tables_are_not_shared_with_the_caller() -> None:
    """The reconstruction table comes back as a copy (a caller may change it); the
    stream of a frame encoded after another one (caches warm) is that of a fresh start."""
    for cache in (ST._RECON, ST._RECON_Z, EP._MODEL_TABLES, ST._KNEE_GUESS):
        cache.clear()  # other tests may have filled them with the other kernels
    frame, _, cam = reference_frame((64, 48), seed=6)
    codec = NoiseCodec(cam.true_profile(), step=2.0)
    codes, recon, _ = ST.quantise_frames(frame, codec.maps, codec.params)
    recon[:] = -1.0
    again = ST.quantise_frames(frame, codec.maps, codec.params)[1]
    assert (again != -1.0).all() and again.size == recon.size
    first = codec.encode(frame)
    other = reference_frame((64, 48), seed=7)[0]
    codec.encode(other)
    for cache in (ST._RECON, ST._RECON_Z, EP._MODEL_TABLES):
        assert cache
    assert bool(ST._KNEE_GUESS) == CK.KERNELS.round_min  # the C quantiser's knee guess
    assert codec.encode(frame) == first
    for cache in (ST._RECON, ST._RECON_Z, EP._MODEL_TABLES, ST._KNEE_GUESS):
        cache.clear()
    assert codec.encode(frame) == first
