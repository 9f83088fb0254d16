"""Peak memory of a streamed sweep level on the simulated rig.

Acceptance: a 1000-frame 1024 x 1024 level runs with peak memory < 300 MB above
the process baseline. The baseline is the resident set size (RSS) after the
simulated core is open (its 96 MB sequence buffer allocated but untouched) and
the modules are imported; a background thread samples RSS every 5 ms. The
figure includes the core's sequence buffer pages touched during the level, the
accumulators, the frame chunk, the simulator's temporaries and the final fit.

Usage::

    python benchmarks/bench_memory_sweep.py [--frames 1000] [--size 1024]
"""

from __future__ import annotations

import argparse
import os
import threading
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    def __init__(self, interval: float = 0.005) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(interval)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()

    import rawsigma.acquire.identity  # noqa: F401
    import rawsigma.calib.build  # noqa: F401
    from rawsigma.acquire.core import open_core
    from rawsigma.acquire.plans import SweepPlan
    from rawsigma.acquire.sweep import SweepRunner

    n, s = args.frames, args.size
    core = open_core(properties={"Camera.SensorWidth": s, "Camera.SensorHeight": s})
    core.snapImage()  # build the sensor model
    plan = SweepPlan(
        dark_frames=2,
        n_levels=2,
        frames_per_level=n,
        auto_range=False,
        control_min=20,
        control_max=40,
        saturation_levels=0,
    )
    runner = SweepRunner(core, plan)
    level_peak: dict[int, int] = {}
    fps: dict[int, float] = {}
    base = rss_bytes()
    with PeakRSS() as mon:
        runner.levelFinished.connect(
            lambda i, d: (level_peak.__setitem__(i, mon.peak), fps.__setitem__(i, d["fps"]))
        )
        t0 = time.perf_counter()
        runner.run()
        dt = time.perf_counter() - t0
    stack_mb = n * s * s * 2 / 2**20
    mb = 2**20
    first = (level_peak[0] - base) / mb
    total = (mon.peak - base) / mb
    print(f"frame {s}x{s} uint16, {n} frames per level (stack would be {stack_mb:.0f} MB)")
    print(f"baseline RSS                     {base / mb:8.1f} MB")
    print(f"peak above baseline, 1st level   {first:8.1f} MB  (target < 300 MB)")
    print(f"peak above baseline, whole sweep {total:8.1f} MB  (2 levels + dark + fit)")
    print(f"peak / stack size                {first / stack_mb:8.3f}")
    print(f"acquisition + accumulation       {fps[0]:8.1f} frames/s (level 0), total {dt:.1f} s")
    print("PASS" if first < 300 else "FAIL")


if __name__ == "__main__":
    main()
