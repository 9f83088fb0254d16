"""Frames/s of the two sweep engines in one run, and whether their profiles agree.

The same `SweepPlan` (fixed levels, seeded) runs on the simulated rig through
`SweepRunner` (rawsigma's own sequence loop) and through `MDASweep` (useq
MDASequences on the pymmcore-plus MDA engine, `MomentsHandler` as frame handler),
alternately, ``--repeats`` times per frame size. Printed per size: median frames/s
of each engine, the ratio MDA / runner, and whether the maps are bit-identical.

Usage: ``python benchmarks/bench_mda_sweep.py [--sizes 128,512] [--frames 200] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from rawsigma.acquire.core import open_core
from rawsigma.acquire.mda import MDASweep
from rawsigma.acquire.plans import SweepPlan
from rawsigma.acquire.sweep import SweepRunner

MAPS = ("offset", "gain", "read_noise", "gain_se", "prnu")


def _plan(frames: int) -> SweepPlan:
    return SweepPlan(
        dark_frames=frames,
        n_levels=4,
        frames_per_level=frames,
        saturation_levels=0,
        auto_range=False,
        control_max=50,
        seed=3,
    )


def _timed(engine: str, size: int, plan: SweepPlan):
    core = open_core(properties={"Camera.SensorWidth": size, "Camera.SensorHeight": size})
    runner = SweepRunner(core, plan) if engine == "runner" else MDASweep(core, plan)
    t0 = time.perf_counter()
    prof = runner.run()
    dt = time.perf_counter() - t0
    return runner.total_frames / dt, prof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="128,512")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    print(f"load: {os.getloadavg()}")
    print(f"{'size':>6} {'frames':>6} {'runner fps':>11} {'MDA fps':>9} {'MDA/runner':>10} "
          f"{'identical':>9}")  # fmt: skip
    plan = _plan(a.frames)
    _timed("runner", 64, _plan(8))  # warm-up (imports, numba) outside the timings
    _timed("mda", 64, _plan(8))
    for size in (int(s) for s in a.sizes.split(",")):
        fps: dict[str, list[float]] = {"runner": [], "mda": []}
        profs = {}
        for r in range(a.repeats):
            order = ("runner", "mda") if r % 2 == 0 else ("mda", "runner")
            for eng in order:
                f, profs[eng] = _timed(eng, size, plan)
                fps[eng].append(f)
        same = all(
            np.array_equal(getattr(profs["runner"], k), getattr(profs["mda"], k), equal_nan=True)
            for k in MAPS
        )
        fr, fm = np.median(fps["runner"]), np.median(fps["mda"])
        print(
            f"{size:>6} {plan.dark_frames + 4 * plan.frames_per_level:>6} {fr:>11.1f} "
            f"{fm:>9.1f} {fm / fr:>10.3f} {str(same):>9}"
        )
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
