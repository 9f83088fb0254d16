"""Feature-bank speed against ``skimage.feature.multiscale_basic_features``.

Same 2048x2048 image, same number of threads, best of ``--repeat`` interleaved rounds
(wall and process CPU time; CPU time is the steadier figure on a shared machine).  Prints
both times, the channel counts and the ratios (target: ours / skimage <= 1 while
computing more channels).

    python benchmarks/bench_features.py [--size 2048] [--repeat 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rawsigma.analysis.segmentation.features import feature_bank
from scipy import ndimage as ndi
from skimage.feature import multiscale_basic_features


def _image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    blobs = ndi.gaussian_filter(rng.random((size, size)), 4) > 0.52
    photons = ndi.gaussian_filter(np.where(blobs, 600.0, 100.0), 1.5)
    return (rng.poisson(photons) * 2 + 100).astype(np.uint16)


def _best(fn, repeat: int) -> tuple[float, float, int]:
    """Best wall time, best process CPU time (all threads), channel count."""
    best = cpu = np.inf
    nch = 0
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        nch = out.shape[-1]
        del out
    return best, cpu, nch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    img = _image(a.size)
    w = a.workers
    print(f"image {img.shape} {img.dtype}, {w} threads, best of {a.repeat}")

    def sk(n):
        return lambda: multiscale_basic_features(
            img, sigma_min=0.3, sigma_max=10, num_sigma=n, workers=w
        )

    # first touch of a fresh ~1 GB array costs the same for everybody: pay it up front
    warm = np.empty(img.shape + (70,), np.float32)
    warm[...] = 0
    del warm
    runs = {
        "skimage multiscale_basic_features, 7 sigmas 0.3-10": sk(7),
        "skimage multiscale_basic_features, 12 sigmas 0.3-10": sk(12),
        "rawsigma ilastik (fd derivatives)": lambda: feature_bank(img, "ilastik", n_workers=w)[0],
        "rawsigma ilastik (Gaussian derivatives)": lambda: feature_bank(
            img, "ilastik", derivatives="gaussian", n_workers=w
        )[0],
        "rawsigma weka": lambda: feature_bank(img, "weka", n_workers=w)[0],
    }
    # interleaved rounds, best of each: robust against load drifting on a shared machine
    res: dict[str, tuple[float, float, int]] = {}
    for _ in range(a.repeat):
        for name, fn in runs.items():
            t, c, n = _best(fn, 1)
            old = res.get(name, (np.inf, np.inf, n))
            res[name] = (min(t, old[0]), min(c, old[1]), n)
    print(f"{'feature bank':55s} {'wall s':>7s} {'cpu s':>7s} {'ch':>4s} {'wall ms/ch':>11s}")
    for name, (t, c, n) in res.items():
        print(f"{name:55s} {t:7.2f} {c:7.2f} {n:4d} {1000 * t / n:11.1f}")
    sk7, sk12 = res[list(runs)[0]], res[list(runs)[1]]
    print()
    for name in list(runs)[2:]:
        t, c, n = res[name]
        for ref in (sk7, sk12):
            print(
                f"{name} ({n} ch) / skimage ({ref[2]} ch): total wall {t / ref[0]:.2f}, "
                f"total cpu {c / ref[1]:.2f}, per channel wall {(t / n) / (ref[0] / ref[2]):.2f}, "
                f"per channel cpu {(c / n) / (ref[1] / ref[2]):.2f}"
            )


if __name__ == "__main__":
    main()
