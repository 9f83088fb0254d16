"""``rawsigma acquire``: raw acquisitions (N-frame repeat stacks)."""

from __future__ import annotations

from pathlib import Path

import typer

acquire_app = typer.Typer(
    name="acquire",
    help="Raw acquisitions through Micro-Manager (or the simulated rig).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``acquire`` sub-command group to the root ``rawsigma`` app."""
    app.add_typer(acquire_app, name="acquire")


@acquire_app.command("stack")
def stack(
    out: Path = typer.Option(..., "--out", "-o", help="Stack summary to write (HDF5)."),
    frames: int = typer.Option(1000, "--frames", "-n", help="Frames in the stack."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Micro-Manager .cfg, 'pycromanager', or omit for the simulator.",
    ),
    exposure: float | None = typer.Option(None, "--exposure", help="Exposure, ms."),
    dark: bool = typer.Option(False, "--dark", help="Shutter closed (dark stack)."),
    prop: list[str] = typer.Option(
        [], "--prop", "-p", help="Device.Property=Value set before the stack (repeatable)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for simulated devices."),
    save_frames: Path | None = typer.Option(
        None, "--save-frames", help="Also save the frames (.ome.tif or .h5) + CSV table."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="PNG of the single-pixel relative error (Fig. 1a style)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Acquire an N-frame repeat stack with streaming per-pixel moments."""
    from .console import (
        kept_after_interrupt,
        outputs_complete,
        parse_props,
        print_interrupted,
        runner_progress,
        snapshot,
        user_errors,
    )

    with user_errors():
        import numpy as np
        from rawsigma.acquire.core import close_core, open_core
        from rawsigma.acquire.framesave import frames_format
        from rawsigma.acquire.plans import StackPlan
        from rawsigma.acquire.stack import StackRunner
        from rawsigma.errors import Cancelled
        from rawsigma.fileio import check_distinct_outputs, check_output
        from rich.console import Console
        from rich.table import Table

        from .params import options_error

        check_distinct_outputs(out=out, plot=plot, save_frames=save_frames)
        check_output(out, force)
        if plot is not None:
            check_output(plot, force)
        if save_frames is not None:
            check_output(save_frames, force)
        try:
            plan = StackPlan(
                n_frames=frames,
                shutter_open=not dark,
                exposure_ms=exposure,
                seed=seed,
                save_frames=None if save_frames is None else frames_format(save_frames),
            )
        except ValueError as exc:
            raise options_error(exc, "stack options", as_flags=False) from None
        core = None
        before = snapshot(out, save_frames)
        try:
            core = open_core(config, parse_props(prop))
            if not dark:
                _warn_if_unlit(core)
            h, w = int(core.getImageHeight()), int(core.getImageWidth())
            check_output(out, force, need_bytes=h * w * 8 + 16 * frames)
            if save_frames is not None:
                check_output(save_frames, force, need_bytes=2 * h * w * frames)
            runner = StackRunner(core, plan, frames_path=save_frames, force=force)
            with runner_progress(runner, frames, quiet):
                res = runner.run(out=out)
        except (KeyboardInterrupt, Cancelled):
            kept = f" (the frames were not saved to {save_frames})" if save_frames else ""
            what = kept_after_interrupt(before, f"nothing written{kept}")
            raise typer.Exit(print_interrupted(what)) from None
        finally:
            if core is not None:
                close_core(core)
        if plot is None:
            outputs_complete()
        conv = res.convergence()
        t = Table(title=f"single-pixel relative noise σ/μ vs frames ({out})")
        t.add_column("pixel (row, col)")
        marks = [n for n in (10, 100, 1000, 10000) if n <= frames] + [frames]
        marks = sorted(set(marks))
        for n in marks:
            t.add_column(f"n={n}", justify="right")
        t.add_column("mean ADU", justify="right")
        for p, (r, c) in enumerate(res.probe_pixels):
            vals = [f"{100 * conv['rel_sigma'][p, n - 1]:.3f} %" for n in marks]
            mean = float(np.mean(res.probe_values[p]))
            t.add_row(f"({r}, {c})", *vals, f"{mean:.1f}")
        Console().print(t)
        Console().print(f"{res.info['fps']:.1f} frames/s, {res.info['seconds']:.1f} s")
        if plot is not None:
            _plot(res, plot)


def _warn_if_unlit(core) -> None:  # type: ignore[no-untyped-def]
    """Warn when the shutter's light source is set to 0: the stack would be dark.

    The simulated rig (and many LED controllers) start at ``Intensity`` 0; a "light"
    stack there measures the offset and read noise only, and its σ/μ is meaningless.
    """
    import contextlib

    with contextlib.suppress(Exception):  # no shutter, no such property: nothing to say
        dev = core.getShutterDevice()
        if dev and core.hasProperty(dev, "Intensity"):
            if float(core.getProperty(dev, "Intensity")) == 0.0:
                typer.echo(
                    f"warning: {dev} Intensity is 0: the shutter opens on no light, this "
                    f"is a dark stack; set the light with -p {dev}.Intensity=30 (or --dark)",
                    err=True,
                )


def _plot(res, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conv = res.convergence()
    re = res.relative_error()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for p, (r, c) in enumerate(res.probe_pixels):
        a.plot(conv["n"], 100 * conv["rel_sigma"][p], lw=1, label=f"({r}, {c})")
    a.set_xscale("log")
    a.set_xlabel("number of frames")
    a.set_ylabel("σ/μ of one pixel (%)")
    a.legend(fontsize=7)
    b.hist(100 * re[0], bins=50)
    b.set_xlabel("relative error (x − μ)/μ (%)")
    b.set_ylabel("frames")
    fig.tight_layout()
    from rawsigma.fileio import atomic_write

    try:
        with atomic_write(path, force=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
