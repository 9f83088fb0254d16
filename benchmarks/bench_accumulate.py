"""Per-frame cost of the calibration accumulators against a plain float64 sum.

For each frame size, one uint16 stack is folded in chunks of 8 frames by the level
accumulator (``PixelMoments(higher=False)``: exact sums of d and d², flicker cross sum,
maximum) and by the dark accumulator (``PixelMoments()``: also d³, d⁴), and, as the
baseline, by a float64 sum of x and x² per frame (``s += x; s2 += x²``). Interleaved,
best of ``--repeat``; process CPU time (steady on a shared machine) and wall time.
Targets (issue 16): level ≤ 1.0×, dark ≤ 1.5× the baseline.

    python benchmarks/bench_accumulate.py [--sizes 512,1024,2048] [--frames 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from rawsigma.calib.moments import PixelMoments


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"load {os.getloadavg()}")
    PixelMoments((8, 8)).add(np.zeros((2, 8, 8), np.uint16))  # compile / load the kernel
    for size in (int(s) for s in a.sizes.split(",")):
        rng = np.random.default_rng(0)
        stack = rng.poisson(rng.uniform(50, 3000, (size, size)), (a.frames, size, size))
        stack = stack.astype(np.uint16)

        def plain(stack=stack, size=size):
            s1 = np.zeros((size, size))
            s2 = np.zeros((size, size))
            for f in stack:
                s1 += f
                s2 += np.square(f, dtype=np.float64)

        def acc(higher, stack=stack, size=size):
            pm = PixelMoments((size, size), higher=higher)
            for c in range(0, len(stack), 8):
                pm.add(stack[c : c + 8])

        best = {k: [np.inf, np.inf] for k in ("plain", "level", "dark")}
        for _ in range(a.repeat):
            for k, fn in (
                ("plain", plain),
                ("level", lambda: acc(False)),
                ("dark", lambda: acc(True)),
            ):
                w, c = _timed(fn)
                best[k] = [min(best[k][0], w), min(best[k][1], c)]
        p = best["plain"]
        per = 1e3 / a.frames
        print(
            f"{size}²: per frame plain {p[1] * per:.2f} ms CPU; level {best['level'][1] * per:.2f} "
            f"ms = {best['level'][1] / p[1]:.2f}x CPU ({best['level'][0] / p[0]:.2f}x wall, "
            f"target <= 1.0); dark {best['dark'][1] * per:.2f} ms = "
            f"{best['dark'][1] / p[1]:.2f}x CPU ({best['dark'][0] / p[0]:.2f}x wall, target <= 1.5)"
        )
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
