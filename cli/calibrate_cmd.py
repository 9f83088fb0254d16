"""``rawsigma calibrate``: flat-field sweep on a rig (or the simulator), or from stacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .console import (
    outputs_complete,
    parse_props,
    print_interrupted,
    runner_progress,
    user_errors,
)
from .params import options_error

if TYPE_CHECKING:
    from rawsigma.acquire.protocols import AcquisitionRunner, CorePlus, MMCore


@dataclass(frozen=True)
class SweepOptions:
    """The options of ``rawsigma calibrate`` for a sweep on a rig (see ``--help``)."""

    out: Path
    config: str | None = None
    levels: int = 10
    frames: int = 100
    dark: int = 100
    spacing: str = "linear"
    control: str = "LED-Intensity"
    control_min: float | None = None
    control_max: float | None = None
    auto_range: bool = True
    target: float = 0.9
    saturation_levels: int = 3
    exposure: float | None = None
    level_darks: int = 0
    settle: float = 0.0
    dark_exposures: str | None = None
    dark_exposure_frames: int | None = None
    seed: int | None = None
    prop: list[str] = field(default_factory=list)
    force: bool = False
    resume: bool = False
    partial: Path | None = None
    save_frames: Path | None = None
    engine: str = "runner"
    quiet: bool = False
    gain_map: str = "auto"


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to the root ``rawsigma`` app."""
    app.command("calibrate")(calibrate)


def calibrate(
    out: Path = typer.Option(..., "--out", "-o", help="Profile to write (HDF5)."),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Micro-Manager .cfg of the rig, 'pycromanager' for a running Micro-Manager, "
        "or omit for the simulated rig.",
    ),
    levels: int = typer.Option(10, "--levels", help="Flat-field levels below saturation."),
    frames: int = typer.Option(100, "--frames", help="Frames per level (full protocol: 1000)."),
    dark: int = typer.Option(100, "--dark", help="Dark frames."),
    spacing: str = typer.Option("linear", "--spacing", help="Level spacing: linear or log."),
    control: str = typer.Option(
        "LED-Intensity", "--control", help="Light-source property 'Device-Property' or 'exposure'."
    ),
    control_min: float | None = typer.Option(None, "--control-min", help="Lowest level."),
    control_max: float | None = typer.Option(None, "--control-max", help="Highest level/limit."),
    auto_range: bool = typer.Option(
        True, "--auto-range/--no-auto-range", help="Find the top level automatically."
    ),
    target: float = typer.Option(0.9, "--target", help="Top level as fraction of saturation."),
    saturation_levels: int = typer.Option(
        3, "--saturation-levels", help="Extra levels around saturation (saturation capacity)."
    ),
    exposure: float | None = typer.Option(None, "--exposure", help="Exposure, ms."),
    level_darks: int = typer.Option(0, "--level-darks", help="Dark frames per level (EMVA)."),
    settle: float = typer.Option(0.0, "--settle", help="Extra settle time per level, s."),
    dark_exposures: str | None = typer.Option(
        None,
        "--dark-exposures",
        help="Also measure the per-pixel dark current: dark stacks at these exposure "
        "times, ms, comma-separated (e.g. 10,100,1000).",
    ),
    dark_exposure_frames: int | None = typer.Option(
        None,
        "--dark-exposure-frames",
        help="Dark frames per --dark-exposures time (default --dark).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for simulated devices."),
    prop: list[str] = typer.Option(
        [], "--prop", "-p", help="Device.Property=Value to set after loading (repeatable)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted sweep."),
    partial: Path | None = typer.Option(
        None, "--partial", help="Partial (resume) file; default <out>.partial.h5."
    ),
    save_frames: Path | None = typer.Option(
        None,
        "--save-frames",
        help="Also save every frame (.ome.tif or .h5) + CSV table; with --engine mda a "
        "folder of OME-TIFF files (one per level) that --from-stacks reads back.",
    ),
    engine: str = typer.Option(
        "runner",
        "--engine",
        help="Sweep engine: 'runner' (rawsigma's sequence loop) or 'mda' (useq "
        "MDASequences through the pymmcore-plus MDA engine; same frames and profile).",
    ),
    from_stacks: bool = typer.Option(
        False, "--from-stacks", help="Calibrate offline from recorded stacks (STACKS...)."
    ),
    stacks: list[Path] = typer.Argument(
        None, help="With --from-stacks: dark stack then one stack per level, or stacks + --csv."
    ),
    csv: Path | None = typer.Option(None, "--csv", help="Frame table for --from-stacks."),
    dark_stack: Path | None = typer.Option(
        None, "--dark-stack", help="Dark stack for --from-stacks."
    ),
    bit_depth: int | None = typer.Option(None, "--bit-depth", help="ADC bits (--from-stacks)."),
    gain_map: str = typer.Option(
        "auto",
        "--gain-map",
        help="auto, per-pixel or global (EMVA K on every pixel; CCDs, frame pairs); "
        "auto: global when too few frames per level make per-pixel gains noise.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Measure a camera's per-pixel offset, read noise and gain (PTC sweep) → HDF5 profile."""
    with user_errors():
        if gain_map not in ("auto", "per-pixel", "global"):
            from rawsigma.errors import UsageError

            raise UsageError(f"--gain-map {gain_map!r}: use auto, per-pixel or global")
        if from_stacks:
            if dark_exposures:
                from rawsigma.errors import InputFileError

                raise InputFileError("--dark-exposures acquires on a rig; not with --from-stacks")
            _from_stacks(stacks or [], csv, dark_stack, bit_depth, out, force, quiet, gain_map)
            return
        if stacks:
            from rawsigma.errors import UsageError

            raise UsageError(f"unexpected arguments {[str(s) for s in stacks]} (--from-stacks?)")
        _sweep(
            SweepOptions(
                out=out,
                config=config,
                levels=levels,
                frames=frames,
                dark=dark,
                spacing=spacing,
                control=control,
                control_min=control_min,
                control_max=control_max,
                auto_range=auto_range,
                target=target,
                saturation_levels=saturation_levels,
                exposure=exposure,
                level_darks=level_darks,
                settle=settle,
                dark_exposures=dark_exposures,
                dark_exposure_frames=dark_exposure_frames,
                seed=seed,
                prop=prop,
                force=force,
                resume=resume,
                partial=partial,
                save_frames=save_frames,
                engine=engine,
                quiet=quiet,
                gain_map=gain_map,
            )
        )


def _sweep(options: SweepOptions) -> None:
    from rawsigma.acquire.sweep import partial_path_for
    from rawsigma.fileio import check_distinct_outputs, check_output, output_lock

    out = options.out
    check_distinct_outputs(out=out, save_frames=options.save_frames, partial=options.partial)
    check_output(out, options.force)
    mda = _engine_is_mda(options)  # hook: --engine mda (rawsigma.acquire.mda)
    partial = options.partial or partial_path_for(out)
    check_output(partial, force=True)
    if options.save_frames is not None and not options.resume and not mda:  # resumed: -resumed
        check_output(options.save_frames, options.force)
    with output_lock(out), output_lock(partial):
        _sweep_locked(out, partial, options, mda)


def _need_bytes(plan: Any, shape: tuple[int, int]) -> int:
    """Rough disk need of a sweep: profile, two partial checkpoints, saved frames."""
    px = shape[0] * shape[1]
    n_lv = plan.n_levels + plan.saturation_levels
    need = px * 64 + 2 * px * 24 * (n_lv + 2)
    if plan.save_frames is not None:
        need += 2 * px * (plan.dark_frames + n_lv * (plan.frames_per_level + plan.level_darks))
    return need


def _sweep_locked(out: Path, partial: Path, options: SweepOptions, mda: bool) -> None:
    from rawsigma.acquire.core import close_core, open_core
    from rawsigma.acquire.framesave import frames_format
    from rawsigma.acquire.plans import SweepPlan
    from rawsigma.acquire.sweep import SweepRunner
    from rawsigma.errors import (
        Cancelled,
        OutputExistsError,
        RawsigmaError,
        UsageError,
    )
    from rawsigma.fileio import check_output
    from rich.console import Console

    if partial.exists() and not options.resume and not mda:
        if not options.force:
            raise OutputExistsError(
                f"{partial}: an interrupted sweep exists; use --resume to continue it or "
                "--force to start over"
            )
        partial.unlink()
    try:
        plan = SweepPlan(
            dark_frames=options.dark,
            n_levels=options.levels,
            frames_per_level=options.frames,
            spacing=options.spacing,
            control=options.control,
            control_min=options.control_min,
            control_max=options.control_max,
            auto_range=options.auto_range,
            target_fraction=options.target,
            saturation_levels=options.saturation_levels,
            exposure_ms=options.exposure,
            level_darks=options.level_darks,
            settle_s=options.settle,
            seed=options.seed,
            save_frames=None
            if options.save_frames is None or mda
            else frames_format(options.save_frames),
        )
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        raise options_error(exc, "sweep options", as_flags=False) from None
    exposures = _parse_exposures(options.dark_exposures)
    if mda and exposures:
        raise UsageError("--dark-exposures works with --engine runner only")
    core = runner = None
    try:
        core = open_core(options.config, parse_props(options.prop))
        if mda:
            return _sweep_mda(core, plan, options)
        shape = (int(core.getImageHeight()), int(core.getImageWidth()))
        check_output(out, options.force, need_bytes=_need_bytes(plan, shape))
        runner = SweepRunner(
            core,
            plan,
            partial,
            frames_path=options.save_frames,
            force=options.force,
            gain_map=options.gain_map,
        )
        _warm_up(core)
        with runner_progress(runner, runner.total_frames, options.quiet):
            profile = runner.run(resume=options.resume, out=None if exposures else out)
        if exposures:
            profile = _dark_current(core, runner, profile, exposures, options, Console(stderr=True))
            profile.save(out, force=options.force)
            runner.discard_partial()
    except (KeyboardInterrupt, Cancelled):
        raise typer.Exit(print_interrupted(_kept(runner, partial))) from None
    except RawsigmaError as exc:
        if runner is not None and partial.exists() and not isinstance(exc, OutputExistsError):
            raise type(exc)(f"{str(exc).rstrip('.')}; {_kept(runner, partial)}") from None
        raise
    finally:
        if core is not None:
            close_core(core)
    outputs_complete()
    _summary(profile, out)


def _kept(runner: Any, partial: Path) -> str:
    """What an interrupted sweep left behind, truthfully."""
    if runner is None:
        if partial.exists():
            return f"the sweep had not restarted; {partial} is unchanged (--resume continues it)"
        return "the sweep had not started, no partial file"
    frames = ""
    if runner.frames_written is not None:
        frames = f"; the {runner.frames_written[1]} frames taken are in {runner.frames_written[0]}"
    if partial.exists() and (runner.dark is not None or runner.levels):
        n = len(runner.levels)
        if runner.level_values and n == len(runner.level_values):  # the profile failed
            return (
                f"the dark and all {n} levels are kept in {partial}; --resume builds the "
                f"profile from them without taking them again (e.g. with another "
                f"--gain-map), --force starts over{frames}"
            )
        return (
            f"the dark and {n} completed level(s) are kept in {partial}; run the same "
            f"command with --resume to continue{frames}"
        )
    if partial.exists():  # an earlier sweep's partial this run did not touch (e.g. a
        # --resume refused for another plan): it is still there
        return f"{partial} is kept as it was (--resume with its options continues it){frames}"
    return f"no level was completed, no partial file{frames}"


def _parse_exposures(text: str | None) -> list[float]:
    from rawsigma.errors import UsageError

    if not text:
        return []
    try:
        vals = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"--dark-exposures {text!r}: expected comma-separated milliseconds"
        ) from None
    if len(set(vals)) < 2 or any(v < 0 for v in vals):
        raise UsageError(f"--dark-exposures {text!r}: need >= 2 different exposure times >= 0 ms")
    return vals


def _dark_current(
    core: MMCore,
    runner: AcquisitionRunner,
    profile: Any,
    exposures: list[float],
    options: SweepOptions,
    console: Any,
) -> Any:
    """Dark stacks at ``exposures`` (ms) → dark current + hot pixels in the profile."""
    from rawsigma.acquire.darkseries import acquire_dark_series
    from rawsigma.calib.darkcurrent import attach_dark_current, fit_dark_current

    n = options.dark_exposure_frames or options.dark
    if not options.quiet:
        console.print(f"dark current: {n} dark frames at each of {exposures} ms")
    darks, temps = acquire_dark_series(
        core, exposures, n, camera=runner.camera, shutter=runner.shutter, seed=options.seed
    )
    known = [t for t in temps if t is not None]
    dc = fit_dark_current(
        darks,
        [t / 1000 for t in exposures],
        temperature_c=float(sum(known) / len(known)) if known else None,
    )
    ref = profile.identity.exposure_ms
    return attach_dark_current(profile, dc, None if ref is not None else exposures[0] / 1000)


def _warm_up(core: Any) -> None:
    """Compile the accumulation kernels if this machine never did, saying so on stderr.

    Before the progress bar, which would otherwise sit at 0 frames meanwhile.
    """
    import numpy as np
    from rawsigma.calib.moments_kernel import warm_up

    def say(stage: str, done: int, total: int) -> None:
        if done == 0:
            typer.echo(stage, err=True)

    dtype = np.uint8 if int(core.getBytesPerPixel()) == 1 else np.uint16
    seconds = warm_up(say, dtype)
    if seconds:
        typer.echo(f"  compiled in {seconds:.0f} s (cached for the next runs)", err=True)


def _engine_is_mda(options: SweepOptions) -> bool:
    from rawsigma.errors import UsageError

    engine = options.engine.lower()
    if engine not in ("runner", "mda"):
        raise UsageError(f"--engine {engine!r}: use 'runner' or 'mda'")
    if engine == "mda" and options.resume:
        raise UsageError("--resume works with --engine runner only (MDA sweeps do not resume)")
    return engine == "mda"


def _sweep_mda(core: CorePlus, plan: Any, options: SweepOptions) -> None:
    """The same sweep as useq MDASequences through ``core.mda`` (`MDASweep`)."""
    from rawsigma.acquire.mda import MDASweep
    from rawsigma.errors import Cancelled
    from rich.console import Console

    runner = MDASweep(
        core, plan, output_dir=options.save_frames, force=options.force, gain_map=options.gain_map
    )
    _warm_up(core)
    try:
        with runner_progress(runner, runner.total_frames, options.quiet):
            profile = runner.run(out=options.out)
    except (KeyboardInterrupt, Cancelled):
        Console(stderr=True).print("[yellow]interrupted:[/] nothing was written")
        raise typer.Exit(130) from None
    _summary(profile, options.out)


def _from_stacks(
    stacks: list[Path],
    csv: Path | None,
    dark_stack: Path | None,
    bit_depth: int | None,
    out: Path,
    force: bool,
    quiet: bool,
    gain_map: str = "auto",
) -> None:
    from rawsigma.calib.stacks import calibrate_from_stacks
    from rawsigma.errors import UsageError
    from rawsigma.fileio import check_not_input, check_output, output_lock

    check_output(out, force)
    check_not_input(out, *stacks, csv, dark_stack)
    if not stacks:
        raise UsageError("--from-stacks needs at least one stack file")
    with output_lock(out):
        profile = calibrate_from_stacks(
            stacks, csv, dark=dark_stack, bit_depth=bit_depth, gain_map=gain_map
        )
        profile.save(out, force=force)
    outputs_complete()
    _summary(profile, out)


def _summary(profile: Any, out: Path) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console()
    good = profile.good
    t = Table(title=f"profile {out}", show_header=False, title_justify="left")
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row("shape", f"{profile.shape[0]} x {profile.shape[1]}")
    t.add_row("gain (global)", f"{profile.gain_global:.4g} ADU/e-")
    t.add_row("offset (median)", f"{profile.offset_global:.4g} ADU")
    t.add_row("read noise (median)", f"{profile.read_noise_global:.4g} ADU rms")
    t.add_row("defect pixels", f"{int(np.count_nonzero(~good))}")
    gm = profile.provenance.get("gain_map")
    if gm:
        t.add_row("gain map", f"{gm} ({profile.provenance.get('gain_map_reason', '')})")
    for key in ("K", "sigma_d", "mu_e_sat", "DR_dB", "SNR_max"):
        if key in profile.emva and profile.emva[key] is not None:
            v = profile.emva[key]
            t.add_row(f"EMVA {key}", f"{v:.4g}" if isinstance(v, float) else str(v))
    from rawsigma.calib.emva import not_estimated_by_reason

    for why, keys in not_estimated_by_reason(profile.emva).items():
        t.add_row("not estimated", f"{', '.join(keys)}: {why}")
    if profile.dark_current is not None:
        di = profile.dark_info
        t.add_row(
            "dark current (median)",
            f"{di['median_adu_s']:.4g} ADU/s = {di['median_e_s']:.4g} e-/s; "
            f"{di['hot_pixels']} hot pixels",
        )
    ls = profile.provenance.get("light_source")
    if isinstance(ls, dict) and "message" in ls:
        t.add_row("light source", str(ls["message"]))
    console.print(t)
