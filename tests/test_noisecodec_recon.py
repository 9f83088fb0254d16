"""The reconstruction table a stream stores does not depend on the CPU that wrote it."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
from rawsigma.analysis.noisecodec.transform import knee_convexity, knee_recon


def test_knee_convexity_cubes_by_libm():
    """x³ by libm's pow, element by element: numpy's power has SIMD versions (AVX-512)
    that round differently, which made the "recon" section of a stream with a knee
    differ between CPUs (session 11: the 2048² reference stream was 2 bytes longer on
    an AVX-512 machine)."""
    rng = np.random.default_rng(5)
    for step in (0.5, 1.0, 2.0, 3.7):
        kp = np.array([rng.uniform(1, 40), rng.uniform(2, 12), rng.uniform(0.05, 1), 3.0])
        t = np.concatenate([rng.uniform(-10, 60, 4000), kp[1] + step * rng.uniform(-1, 1, 4000)])
        want = []
        for x in t.tolist():
            a = x - kp[1] - 0.5 * step
            b, d = max(a + step, 0.0), max(x - kp[1], 0.0)
            cubes = math.pow(b, 3.0) - math.pow(max(a, 0.0), 3.0)
            want.append(cubes / (12.0 * step) - 0.25 * d * d)
        np.testing.assert_array_equal(knee_convexity(t, step, kp), np.array(want))


_TABLE = (
    "import numpy as np, hashlib;"
    "from rawsigma.analysis.noisecodec.transform import knee_recon;"
    "kp = np.array([16.003, 8.0008, 0.24997, 1.0]);"
    "print(hashlib.sha256(knee_recon(4096, 2.0, 4.0004, kp).tobytes()).hexdigest())"
)


def test_knee_recon_bytes_do_not_follow_numpys_simd_dispatch():
    """The table with numpy's AVX-512 loops disabled is the table with them (where the
    CPU has none, both runs take the same loops and the test cannot fail: it guards
    the machines that have them, like this project's CI)."""
    runs = []
    for disable in ("", "X86_V4 AVX512_ICL AVX512_SKX AVX512F"):
        env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=disable)
        out = subprocess.run([sys.executable, "-c", _TABLE], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        runs.append(out.stdout.strip())
    assert len(runs[0]) == 64 and runs[0] == runs[1]


def test_knee_recon_matches_its_formula():
    kp = np.array([16.0, 8.0, 0.25, 1.0])
    rec = knee_recon(64, 2.0, 4.0, kp)
    t = 2.0 * (np.arange(64) - 1.0)
    above = t - 1.0 - 8.0 >= 0  # wholly above the knee: the S²/48 term of `unbiased_recon`
    np.testing.assert_allclose(rec[above], (0.25 * t * t - 4.0 - 4.0 / 48.0)[above], rtol=1e-12)
    below = t + 1.0 - 8.0 <= 0  # wholly on the linear part: no convexity term
    np.testing.assert_allclose(rec[below], (16.0 - 4.0 + (t - 8.0) / 0.25)[below], rtol=1e-12)
