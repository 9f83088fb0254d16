"""Tests of the streaming per-pixel moment accumulator."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.calib.moments import PixelMoments


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.integers(100, 60000, (24, 20)).astype(np.int64)
    x = base + rng.integers(-3000, 3000, (40, 24, 20))
    return np.clip(x, 0, 65535).astype(np.uint16)


def test_exact_mean_var_and_chunking(stack: np.ndarray) -> None:
    pm = PixelMoments(stack.shape[1:], track_min=True)
    pm.add(stack[:5])
    for f in stack[5:9]:
        pm.add(f)
    pm.add(stack[9:])
    xf = stack.astype(np.float64)
    assert pm.n == 40
    np.testing.assert_allclose(pm.mean(), xf.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(pm.var(), xf.var(0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(pm.var(ddof=0), xf.var(0), rtol=1e-12)
    c = xf - xf.mean(0)
    np.testing.assert_allclose(pm.central_moment(4), (c**4).mean(0), rtol=1e-9)
    np.testing.assert_allclose(pm.central_moment(3), (c**3).mean(0), rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(pm.pixel_max, stack.max(0))
    np.testing.assert_array_equal(pm.pixel_min, stack.min(0))
    np.testing.assert_allclose(pm.frame_means, xf.reshape(40, -1).mean(1), rtol=1e-15)
    # integer sums are exact: sum of squares reconstructs the integer sum of x^2
    s2 = (stack.astype(np.int64) ** 2).sum(0)
    sh = pm._shift.astype(np.int64)
    assert np.array_equal(pm._s2 + 2 * sh * pm._s1 + 40 * sh * sh, s2)


def test_merge_and_state_roundtrip(stack: np.ndarray) -> None:
    a, b, full = (PixelMoments(stack.shape[1:], track_min=True) for _ in range(3))
    a.add(stack[:13])
    b.add(stack[13:])
    full.add(stack)
    b2 = PixelMoments.from_state(b.state_dict())
    a.merge(b2)
    assert a.n == full.n
    np.testing.assert_array_equal(a.var(), full.var())
    np.testing.assert_array_equal(a.pixel_min, full.pixel_min)
    np.testing.assert_array_equal(a.pixel_max, full.pixel_max)
    np.testing.assert_allclose(a.central_moment(4), full.central_moment(4), rtol=1e-9)
    va, _ = a.var_corrected()
    vf, _ = full.var_corrected()
    np.testing.assert_allclose(va, vf, rtol=1e-8)
    with pytest.raises(ValueError, match="inconsistent"):
        st = full.state_dict()
        st["n"] = 3
        PixelMoments.from_state(st)


def test_regression_flicker_correction_matches_direct(stack: np.ndarray) -> None:
    pm = PixelMoments(stack.shape[1:])
    pm.add(stack)
    x = stack.reshape(40, -1).astype(np.float64)
    f = x.mean(1) - x.mean(1).mean()
    xc = x - x.mean(0)
    want = ((xc**2).sum(0) - (f @ xc) ** 2 / (f @ f)) / 38
    got, dof = pm.var_corrected()
    assert dof == 38
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-9)


def test_flicker_removed_from_variance() -> None:
    rng = np.random.default_rng(2)
    shape, n = (64, 64), 300
    signal = 2000.0 * rng.uniform(0.8, 1.2, shape)
    flick = 1 + 0.03 * rng.standard_normal(n)
    frames = rng.poisson(signal[None] * flick[:, None, None]).astype(np.uint16)
    pm = PixelMoments(shape)
    pm.add(frames)
    raw = pm.var()
    assert np.median(raw / signal) > 1.5  # flicker dominates the raw variance
    for method in ("regression", "scaled"):
        v, _ = pm.var_corrected(offset=0.0, method=method)
        assert abs(np.median(v / signal) - 1) < 0.03, method
    assert np.sqrt(pm.flicker_var()) / pm.frame_means.mean() == pytest.approx(0.03, rel=0.2)


def test_var_se_is_honest() -> None:
    rng = np.random.default_rng(3)
    shape, n = (128, 128), 60
    x = np.round(100 + 3.0 * rng.standard_normal((n, *shape))).astype(np.uint16)
    pm = PixelMoments(shape)
    pm.add(x)
    z = (pm.var() - (9 + 1 / 12)) / pm.var_se()
    assert 0.85 < z.std() < 1.2
    assert abs(np.median(pm.excess_kurtosis())) < 0.2


def test_bad_input() -> None:
    pm = PixelMoments((4, 5))
    with pytest.raises(TypeError, match="integer"):
        pm.add(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        pm.add(np.zeros((5, 4), np.uint16))
    with pytest.raises(ValueError, match="2\\*\\*20"):
        pm.add(np.full((4, 5), 2**21, np.int32))
    with pytest.raises(ValueError, match="at least"):
        pm.var()
    pm.add(np.zeros((4, 5), np.uint8))
    assert pm.n == 1
    with pytest.raises(ValueError):
        PixelMoments((0, 3))


def test_compact_level_stats_give_the_same_fit() -> None:
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.calib.emva import emva_summary
    from rawsigma.calib.fit import fit_pixel_maps
    from rawsigma.calib.levelstats import LevelStats
    from rawsigma.calib.simsweep import accumulate_sweep

    cam = SensorModel.preset("scmos", (40, 48), seed=9)
    ph = cam.photons_for_fraction(0.8, 0.01) * np.array([0.2, 0.5, 0.8, 1.0])
    sw = accumulate_sweep(cam.expose, cam.shape, ph, frames=30, dark_frames=30, rng=9)
    small = [lv.compact() for lv in sw.levels]
    assert small[0].nbytes < 0.5 * 32 * cam.shape[0] * cam.shape[1]
    a = fit_pixel_maps(sw.dark, sw.levels, max_adu=cam.max_adu)
    b = fit_pixel_maps(sw.dark, small, max_adu=cam.max_adu)
    np.testing.assert_allclose(b.gain, a.gain, rtol=1e-4)
    np.testing.assert_array_equal(b.defects, a.defects)
    ea = emva_summary(sw.dark, sw.levels, max_adu=cam.max_adu)
    eb = emva_summary(sw.dark, small, max_adu=cam.max_adu)
    assert eb["K"] == pytest.approx(ea["K"], rel=1e-5)
    back = LevelStats.from_state(small[1].state_dict())
    np.testing.assert_array_equal(back.var(), small[1].var())
    v1, d1 = back.var_corrected()
    v2, d2 = sw.levels[1].var_corrected()
    assert d1 == d2 == 28
    np.testing.assert_allclose(v1, v2, rtol=1e-5)


def _reference_sums(chunks, shape, block_elems=1 << 18):
    """The former vectorised numpy accumulation (blocks of frames x rows), kept as the
    reference the compiled kernel must reproduce bit for bit."""
    h, w = shape
    npix = h * w
    s1 = np.zeros(shape, np.int64)
    s2 = np.zeros(shape, np.int64)
    s3 = np.zeros(shape)
    s4 = np.zeros(shape)
    sdf = np.zeros(shape)
    pmax = np.full(shape, np.iinfo(np.int32).min, np.int32)
    pmin = np.full(shape, np.iinfo(np.int32).max, np.int32)
    shift = f0 = None
    for a in chunks:
        k = a.shape[0]
        fm = a.reshape(k, -1).sum(axis=1, dtype=np.int64) / npix
        if shift is None:
            shift, f0 = a[0].astype(np.int32), float(fm[0])
        rows_per, fr_per = max(1, block_elems // w), max(1, block_elems // npix)
        for fa in range(0, k, fr_per):
            fsl = slice(fa, min(k, fa + fr_per))
            fdev = fm[fsl] - f0
            for r0 in range(0, h, rows_per):
                rsl = slice(r0, min(h, r0 + rows_per))
                x = a[fsl, rsl]
                np.maximum(pmax[rsl], x.max(axis=0), out=pmax[rsl])
                np.minimum(pmin[rsl], x.min(axis=0), out=pmin[rsl])
                d = np.subtract(x, shift[rsl], dtype=np.int64)
                s1[rsl] += d.sum(axis=0)
                s2[rsl] += (d * d).sum(axis=0)
                for j in range(x.shape[0]):
                    sdf[rsl] += fdev[j] * d[j]
                f2 = (d * d).astype(np.float64)
                s3[rsl] += (d.astype(np.float64) * f2).sum(axis=0)
                s4[rsl] += (f2 * f2).sum(axis=0)
    return s1, s2, s3, s4, sdf, pmax, pmin


@pytest.mark.parametrize("shape", [(37, 53), (512, 520)])
def test_compiled_accumulation_is_bit_identical_to_numpy_blocks(shape) -> None:
    rng = np.random.default_rng(5)
    frames = rng.poisson(rng.uniform(5, 3000, shape), (11, *shape)).astype(np.uint16)
    chunks = [frames[:1], frames[1:8], frames[8:]]
    pm = PixelMoments(shape, track_min=True)
    for c in chunks:
        pm.add(c)
    ref = _reference_sums(chunks, shape)
    got = (pm._s1, pm._s2, pm._s3, pm._s4, pm._sdf, pm.pixel_max, pm.pixel_min)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(g, r)
        assert g.dtype == r.dtype


def test_accumulators_of_several_frame_sizes_in_turn_stay_exact() -> None:
    """Kernel scratch and the staggered per-pixel arrays serve any frame size, one
    accumulator after another (chunks of pixels that do not divide the frame, frames
    smaller than one chunk, groups of frames > 1 and = 1): every sum bit-identical."""
    rng = np.random.default_rng(9)
    for shape in [(1, 1), (600, 701), (3, 1500), (37, 53), (600, 701)]:
        frames = rng.poisson(rng.uniform(5, 3000, shape), (9, *shape)).astype(np.uint16)
        chunks = [frames[:2], frames[2:9]]
        pm = PixelMoments(shape, track_min=True)
        for c in chunks:
            pm.add(c)
        ref = _reference_sums(chunks, shape)
        got = (pm._s1, pm._s2, pm._s3, pm._s4, pm._sdf, pm.pixel_max, pm.pixel_min)
        for i, (r, g) in enumerate(zip(ref, got, strict=True)):
            np.testing.assert_array_equal(g, r)
            assert g.shape == shape and g.flags.c_contiguous
            assert not any(np.shares_memory(g, o) for o in got[i + 1 :])
