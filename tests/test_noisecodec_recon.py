"""The reconstruction table a stream stores does not depend on the CPU that wrote it."""

from __future__ import annotations

import numba as nb
import numpy as np
from rawsigma.analysis.noisecodec import kernels as K
from rawsigma.analysis.noisecodec.transform import knee_convexity, knee_recon


@nb.njit(cache=False)
def _kernel_convexity(t, step, kp):  # the numba kernels' helper (inlined there)
    return K.convexity(t, step, kp)


def test_knee_convexity_is_the_kernels_bit_for_bit():
    """The numpy twin computes x³ as the kernels do, x · (x · x): numpy's power has SIMD
    versions (AVX-512) that round differently from libm's pow, which made the "recon"
    section of a stream with a knee differ between CPUs (session 11: the 2048²
    reference stream was 2 bytes longer on an AVX-512 machine)."""
    rng = np.random.default_rng(5)
    for step in (0.5, 1.0, 2.0, 3.7):
        kp = np.array([rng.uniform(1, 40), rng.uniform(2, 12), rng.uniform(0.05, 1), 3.0])
        t = np.concatenate([rng.uniform(-10, 60, 4000), kp[1] + step * rng.uniform(-1, 1, 4000)])
        got = knee_convexity(t, step, kp)
        want = [_kernel_convexity(float(x), step, kp) for x in t]
        np.testing.assert_array_equal(got, np.array(want))
        a = t - kp[1] - 0.5 * step  # the kernels' association, x³ = x · (x · x)
        b, d = np.maximum(a + step, 0.0), np.maximum(t - kp[1], 0.0)
        a = np.maximum(a, 0.0)
        cubes = [b[i] * (b[i] * b[i]) - a[i] * (a[i] * a[i]) for i in range(t.size)]
        np.testing.assert_array_equal(got, np.array(cubes) / (12.0 * step) - 0.25 * (d * d))


def test_knee_recon_matches_its_formula():
    kp = np.array([16.0, 8.0, 0.25, 1.0])
    rec = knee_recon(64, 2.0, 4.0, kp)
    t = 2.0 * (np.arange(64) - 1.0)
    above = t - 1.0 - 8.0 >= 0  # wholly above the knee: the S²/48 term of `unbiased_recon`
    np.testing.assert_allclose(rec[above], (0.25 * t * t - 4.0 - 4.0 / 48.0)[above], rtol=1e-12)
    below = t + 1.0 - 8.0 <= 0  # wholly on the linear part: no convexity term
    np.testing.assert_allclose(rec[below], (16.0 - 4.0 + (t - 8.0) / 0.25)[below], rtol=1e-12)
