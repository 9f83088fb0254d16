"""The compiled replica draws: generator, exact distributions, reproducibility."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest
from rawsigma.analysis.noisemodel import replica_kernel
from rawsigma.analysis.noisemodel.synthesis import REPLICA_METHOD, redraw, synthesize
from rawsigma.calib.profile import CameraProfile
from scipy import stats

# Random123's published known-answer vectors of Philox4x32-10: (counter, key, output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "want"), KAT)
def test_philox_known_answers(counter, key, want):
    got = replica_kernel.philox4x32(np.array(counter, np.uint64), np.array(key, np.uint64))
    assert got.tolist() == list(want)


def _poisson_frame(means: list[float], rows: int = 40, cols: int = 16):
    """Frame whose column group ``i`` has photo-electron mean ``means[i]`` exactly
    (gain 1, offset 100.3, no read noise: replica - 100 is the Poisson draw)."""
    offset = np.float32(100.3)
    prof = CameraProfile.uniform(
        (rows, cols * len(means)), gain=1.0, offset=float(offset), read_noise=0.0
    )
    img = np.repeat(np.array([round(100.3 + m) for m in means], np.uint16), cols)
    img = np.broadcast_to(img, (rows, img.size)).copy()
    lam = [float(np.float32(v) - offset) for v in img[0, ::cols]]
    return img, prof, lam


@pytest.mark.parametrize("mean", [0.7, 2.7, 6.7, 9.7, 12.7, 40.7, 299.7])
def test_photo_electrons_follow_poisson_exactly(mean):
    """Chi-square of 64 000 draws against the Poisson pmf, for inversion (< 10 e-) and
    PTRS (>= 10 e-) means; bins with >= 20 expected, tails merged."""
    img, prof, (lam,) = _poisson_frame([mean])
    reps = synthesize(img, prof, n=100, rng=11).astype(np.int64) - 100
    k = reps.ravel()
    assert k.min() >= 0
    n = k.size
    lo, hi = int(stats.poisson.ppf(1e-3, lam)), int(stats.poisson.isf(1e-3, lam))
    edges = np.arange(lo, hi + 2)
    obs = np.array([np.sum(k < lo + 1)] + [np.sum(k == v) for v in edges[1:-1]])
    obs = np.append(obs, n - obs.sum())
    exp = np.diff(np.concatenate([[0.0], stats.poisson.cdf(edges[:-1], lam), [1.0]])) * n
    keep = exp >= 20  # merge sparse bins into the tails' neighbours
    obs_m, exp_m = _merge(obs, exp, keep)
    p = stats.chisquare(obs_m, exp_m).pvalue
    assert p > 1e-3, (mean, p)
    assert abs(k.mean() - lam) < 4 * np.sqrt(lam / n)


def _merge(obs: np.ndarray, exp: np.ndarray, keep: np.ndarray):
    """Sparse bins added to the nearest kept bin (order kept)."""
    idx = np.flatnonzero(keep)
    target = idx[np.clip(np.searchsorted(idx, np.arange(obs.size)), 0, idx.size - 1)]
    return np.bincount(target, obs)[idx], np.bincount(target, exp)[idx]


def test_read_noise_is_standard_normal():
    """Pixels below the offset get read noise only: (replica - x) / r ~ N(0, 1)."""
    prof = CameraProfile.uniform((200, 200), gain=1.0, offset=60000.0, read_noise=1000.0)
    img = np.full((200, 200), 30000, np.uint16)
    z = (synthesize(img, prof, 10, 3).astype(np.float64).ravel() - 30000) / 1000
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # the ziggurat's tail beyond r = 3.44: observed vs expected count (Poisson SE)
    tail = np.sum(np.abs(z) > 3.5)
    expected = z.size * 2 * stats.norm.sf(3.5)
    assert abs(tail - expected) < 4 * np.sqrt(expected)


def test_reproducible_and_independent_of_threads_and_count():
    prof = CameraProfile.uniform((37, 23), gain=1.7, offset=100.0, read_noise=2.5)
    img = np.random.default_rng(0).integers(80, 3000, (37, 23)).astype(np.uint16)
    c = img.astype(np.float32)
    sat = np.zeros(img.shape, bool)

    def draw(n: int, threads: int) -> np.ndarray:
        rng = np.random.default_rng(5)
        return redraw(c, prof.gain, prof.offset, prof.read_noise, sat, 65535, n, rng,
                      np.dtype(np.uint16), threads=threads)  # fmt: skip

    a = draw(6, 1)
    assert np.array_equal(a, draw(6, 4))  # row blocks on 4 threads: same numbers
    assert np.array_equal(a[:3], draw(3, 1))  # replica k does not depend on n
    assert not np.array_equal(a[0], a[1])
    rng = np.random.default_rng(5)  # successive calls on one generator: new keys
    first, second = synthesize(img, prof, 1, rng), synthesize(img, prof, 1, rng)
    assert not np.array_equal(first, second)


def test_non_finite_maps_fail_clearly():
    img = np.full((4, 4), 500, np.uint16)
    c = img.astype(np.float32)
    offset = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        redraw(c, np.ones((4, 4), np.float32), offset, np.ones((4, 4), np.float32),
               np.zeros((4, 4), bool), 65535, 1, np.random.default_rng(0),
               np.dtype(np.uint16))  # fmt: skip


def test_method_recorded():
    _, info = synthesize(np.full((4, 4), 500, np.uint16),
                         CameraProfile.uniform((4, 4), gain=1.0, offset=100.0, read_noise=1.0),
                         1, 0, return_info=True)  # fmt: skip
    assert info.method == REPLICA_METHOD and "Philox4x32-10" in info.as_dict()["method"]


@nb.njit(cache=False)
def _per_pixel_rows(lam, base, gain, read_noise, saturated, max_adu, key, out):
    """The kernel's former loop: every pixel's photo-electrons drawn in turn (`_ptrs`
    from its first trial, inversion below 10 e-), then its value."""
    rk = replica_kernel
    n, h, w = out.shape
    words = np.zeros((8, w), np.uint64)
    consts = np.zeros((w, 5), np.float64)
    top, zero = np.float32(max_adu), np.float32(0.0)
    k0, k1, c3 = np.uint64(key[0]), np.uint64(key[1]), np.uint64(key[2])
    for r in range(h):
        rk._constants(consts, lam, r)
        row = np.uint64(r)
        for k in range(n):
            rep = np.uint64(k)
            rk._row_blocks(words, row, rep, k0, k1, c3)
            for j in range(w):
                if saturated[r, j]:
                    out[k, r, j] = top
                    continue
                hz = np.int64(np.int32(words[0, j]))
                iz = np.int64(words[1, j] & np.uint64(127))
                if abs(hz) < rk._ZIG_KN[iz]:
                    z = hz * rk._ZIG_WN[iz]
                else:
                    z = rk._normal_slow(hz, iz, j, row, rep, k0, k1, c3)
                u = rk._double(words[2, j], words[3, j])
                lm = lam[r, j]
                if lm < 10.0:
                    x, p = 0.0, consts[j, 0]
                    f = p
                    while u > f and p > 0.0:
                        x += 1.0
                        p *= lm / x
                        f += p
                else:
                    v = rk._double(words[4, j], words[5, j])
                    u2 = rk._double(words[6, j], words[7, j])
                    x = rk._ptrs(lm, consts[j, 0], consts[j, 1], consts[j, 2], consts[j, 3],
                                 consts[j, 4], u, v, u2, j, row, rep, k0, k1, c3)  # fmt: skip
                y = np.float32(z) * read_noise[r, j] + base[r, j]
                y = np.float32(np.rint(y + np.float32(x) * gain[r, j]))
                out[k, r, j] = zero if not (y >= zero) else (top if y > top else y)


def test_branch_free_first_trial_draws_the_per_pixel_values():
    """`redraw_rows` settles the first PTRS trial of a whole row at once and draws the
    rest after: the same values as drawing pixel by pixel (means 0–2000 e-, both
    samplers, saturated pixels, clipping at 0 and at the top)."""
    rng = np.random.default_rng(3)
    h, w = 23, 301
    lam = np.ascontiguousarray(rng.choice([0.0, 0.4, 3.0, 9.99, 10.0, 34.0, 2000.0], (h, w))
                               * rng.uniform(0.5, 1.5, (h, w)))  # fmt: skip
    base = rng.uniform(-20, 120, (h, w)).astype(np.float32)
    gain = rng.uniform(0.3, 3.0, (h, w)).astype(np.float32)
    noise = rng.uniform(0.0, 8.0, (h, w)).astype(np.float32)
    sat = (rng.random((h, w)) < 0.02).astype(np.uint8)
    key = np.array([12345, 678, 9], np.uint64)
    new, old = np.empty((7, h, w), np.uint16), np.empty((7, h, w), np.uint16)
    replica_kernel.redraw_rows(lam, base, gain, noise, sat, np.float32(4095), key, new, 0, h)
    _per_pixel_rows(lam, base, gain, noise, sat, np.float32(4095), key, old)
    assert np.array_equal(new, old)
    assert (new == 4095).any() and (new == 0).any()  # both clips were exercised
