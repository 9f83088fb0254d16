"""Streaming: a level's frames are folded in as they arrive, never stacked in memory.

Peak traced memory must not grow with the number of frames; the full-scale figure
(1000 frames of 1024 x 1024) is measured by ``benchmarks/bench_memory_sweep.py``.

The traced runs happen in a child process (``python test_acquire_memory.py sweep N``):
MMCore delivers property notifications from a C++ thread that enters Python with a new
thread state each time, and CPython 3.11's tracemalloc can crash tracing that
allocation (a segfault in ``traceback_new``, about 1 run in 10). A crashed child is
run again; the measurement itself is unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import rawsigma.acquire.identity  # noqa: F401 - imports are not what is measured
import rawsigma.calib.build  # noqa: F401
from rawsigma.acquire.core import open_core
from rawsigma.acquire.devices import sim_device
from rawsigma.acquire.plans import StackPlan, SweepPlan
from rawsigma.acquire.stack import StackRunner
from rawsigma.acquire.sweep import SweepRunner
from rawsigma.calib.moments import PixelMoments

H = W = 96


def _warm_up_kernels() -> None:
    """Load the compiled accumulation kernels (imports are not what is measured)."""
    moments = PixelMoments((4, 4))
    moments.add(np.zeros((2, 4, 4), np.uint16))
    dark = PixelMoments((4, 4), higher=True, flicker=False)
    dark.add(np.zeros((2, 4, 4), np.uint16))


def _peak(fn) -> int:
    _warm_up_kernels()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _in_child(*args: str) -> int:
    """Peak bytes measured by this file run as a script (see the module docstring)."""
    for _ in range(4):
        proc = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, timeout=300
        )
        if proc.returncode >= 0:  # a signal (the tracemalloc crash) is negative
            break
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak"])


def _sweep_peak(n: int) -> int:
    core = open_core(properties={"Camera.SensorWidth": W, "Camera.SensorHeight": H})
    core.snapImage()  # build the sensor model before measuring
    plan = SweepPlan(
        dark_frames=2,
        n_levels=2,
        frames_per_level=n,
        auto_range=False,
        control_min=10,
        control_max=20,
        saturation_levels=0,
    )
    return _peak(SweepRunner(core, plan).run)


def _stack_core():
    core = open_core(
        properties={"Camera.SensorWidth": W, "Camera.SensorHeight": H, "LED.Intensity": 20}
    )
    core.snapImage()
    return core


def _stack_peak(n: int, out: str) -> int:
    runner = StackRunner(_stack_core(), StackPlan(n_frames=n, seed=4))
    return _peak(lambda: runner.run(out=out))


def test_sweep_peak_memory_does_not_grow_with_frames() -> None:
    small, large = _in_child("sweep", "40"), _in_child("sweep", "440")
    extra_stack = 2 * 400 * H * W * 2  # what holding the extra frames would cost
    assert large - small < 0.05 * extra_stack, (small, large, extra_stack)
    assert large < 1000 * H * W  # bytes per pixel: accumulators, chunk, fit


def test_stack_runner_memory_and_convergence(tmp_path) -> None:
    import h5py

    n = 1000
    peak = _in_child("stack", str(n), str(tmp_path / "traced.h5"))
    assert peak < 0.4 * n * H * W * 2  # the stack itself would be n * H * W * 2 bytes
    core = _stack_core()
    out = tmp_path / "stack.h5"
    res = StackRunner(core, StackPlan(n_frames=n, seed=4)).run(out=out)
    conv = res.convergence()
    rel_final = conv["rel_sigma"][:, -1]
    m = sim_device(core, "Camera").active_model
    rows, cols = np.array(res.probe_pixels).T
    mu = res.moments.mean()[rows, cols]
    pred = np.sqrt(m.gain[rows, cols] * (mu - m.offset[rows, cols]) + m.read_noise[rows, cols] ** 2)
    np.testing.assert_allclose(rel_final, pred / mu, rtol=0.15)
    # the sigma/mu estimate from 10 frames is much further off than from 400
    err10 = np.abs(conv["rel_error"][:, 9]).mean()
    err400 = np.abs(conv["rel_error"][:, 399]).mean()
    assert err10 > 2 * err400
    assert res.relative_error().shape == (len(res.probe_pixels), n)
    with h5py.File(out) as f:
        assert f["mean"].shape == (H, W) and f["probe_values"].shape[1] == n


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    peak = _sweep_peak(n) if kind == "sweep" else _stack_peak(n, sys.argv[3])
    print(json.dumps({"peak": peak}))
