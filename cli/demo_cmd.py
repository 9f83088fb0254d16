"""``rawsigma demo``: calibrate the simulated camera, score two images, write reports."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the root ``rawsigma`` app."""
    app.command("demo")(demo)


def bench_calibration(shape: tuple[int, int], seed: int, fast: bool):
    """Calibrate through the simulated Micro-Manager rig with the sweep runner.

    Returns the measured profile, the rig camera's `SensorModel` (to image the phantom
    with the very camera that was calibrated) and a description for the report.
    """
    from rawsigma.acquire.core import close_core, open_core
    from rawsigma.acquire.devices import sim_device
    from rawsigma.acquire.plans import SweepPlan
    from rawsigma.acquire.sweep import SweepRunner

    h, w = shape
    core = open_core(
        properties={"Camera.SensorWidth": w, "Camera.SensorHeight": h, "Camera.MapSeed": seed}
    )
    n = 12 if fast else 24
    plan = SweepPlan(dark_frames=n, n_levels=5, frames_per_level=n, seed=seed, chunk_frames=8)
    try:
        profile = SweepRunner(core, plan).run()
        model = sim_device(core, "Camera").active_model
    finally:
        import gc

        close_core(core)
        del core
        gc.collect()  # free the core here, not later on a camera callback thread
    desc = (
        f"simulated sCMOS rig {w}×{h} through Micro-Manager (UniMMCore, sim_rig): sweep of "
        f"{n} dark frames and 5 flat levels × {n} frames (auto-ranged), per-pixel "
        "photon-transfer fit (rawsigma.acquire SweepRunner → rawsigma.calib)"
    )
    return profile, model, desc


def demo(
    out: Path = typer.Option(Path("rawsigma-demo"), "--out", "-o", help="Output directory."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo's results."),
    fast: bool = typer.Option(False, "--fast", help="Smaller, quicker run (same steps)."),
    seed: int = typer.Option(0, "--seed", help="Root random seed."),
    sim_only: bool = typer.Option(
        False, "--no-rig", help="Calibrate from the camera model directly (no Micro-Manager)."
    ),
) -> None:
    """End-to-end demo with bundled data only (about a minute): no arguments needed."""
    from rawsigma.analysis.demo import run_demo
    from rich.console import Console

    from .console import stage_progress, user_errors

    console = Console(stderr=True)
    partly = f"{out} may hold some of the demo's outputs; rerun with --force"
    with user_errors(partly), stage_progress(console, 32) as progress:
        res = run_demo(
            out,
            force=force,
            fast=fast,
            seed=seed,
            progress=progress,
            calibrate=None if sim_only else bench_calibration,
        )
    for name, v in res.verdicts.items():
        line = ", ".join(f"{k} {'ok' if ok else 'EXCEEDS'}" for k, ok in v.items())
        console.print(f"  {name:<10} {line}")
    console.print(f"done in {res.seconds:.0f} s")
    typer.echo(f"report: {res.index.resolve()}")
