"""``rawsigma tomo reconstruct``: filtered back-projection of projection files."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import outputs_complete, stage_progress, user_errors

tomo_app = typer.Typer(
    name="tomo",
    help="Tomography: reconstruct slices from parallel-beam projections.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``tomo`` sub-command group to the root ``rawsigma`` app."""
    app.add_typer(tomo_app, name="tomo")


@tomo_app.command("reconstruct")
def reconstruct(
    projections: list[str] = typer.Argument(
        ...,
        help="Projection files (TIFF, .npy, zarr, HDF5 with data/darks/flats/angles), "
        "stacked in order; FILE\\[i:j] selects frames.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output volume: .tif, .zarr or .h5."),
    angles: str = typer.Option(
        None, "--angles", help="Degrees, comma-separated, or a text/.npy file (one each)."
    ),
    angle_range: str = typer.Option(
        None, "--angle-range", help="START,STOP in degrees, evenly spaced, STOP excluded."
    ),
    include_end: bool = typer.Option(
        False, "--include-end", help="--angle-range includes STOP (last frame = first)."
    ),
    dark: str = typer.Option(None, "--dark", help="Dark frame(s) (FILE or FILE\\[i:j])."),
    flat: str = typer.Option(None, "--flat", help="Flat (open beam) frame(s)."),
    kind: str = typer.Option(
        "auto",
        "--input",
        help="counts (raw: dark/flat or edge open beam, -log), transmission (-log only), "
        "attenuation (as is); auto: counts for integers or with a flat, else attenuation.",
    ),
    center: str = typer.Option(
        "auto", "--center", help="Rotation axis in detector pixels (from 0), or auto."
    ),
    filter: str = typer.Option(
        "ramp", "--filter", help="ramp, shepp-logan, cosine, hamming or hann."
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="Worker threads."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Reconstruct slices (one per detector row) by filtered back-projection."""
    from rawsigma.analysis.tomo.pipeline import reconstruct_files
    from rich.console import Console

    console = Console(stderr=True)
    with user_errors(f"nothing written to {out}"):
        from rawsigma.fileio import check_not_input

        angles_file = angles if angles is not None and "," not in angles else None
        check_not_input(out, *projections, dark, flat, angles_file)
    with user_errors(f"nothing written to {out}"), stage_progress(console, 20) as bar:
        meta = reconstruct_files(
            projections, out, dark=dark, flat=flat, kind=kind, angles=angles,
            angle_range=angle_range, include_end=include_end, center=center,
            filter=filter, threads=threads, force=force,
            progress=None if quiet else bar,
        )  # fmt: skip
    outputs_complete()
    cen = meta["center_of_rotation"]
    line = f"centre of rotation {cen['center']:.2f} px ({cen['method']}"
    if cen.get("correlation") is not None:
        line += f"; 180° correlation {cen['correlation']:.2f}"
    console.print(line + ")", highlight=False)
    console.print(f"normalisation: {meta['normalisation']}", highlight=False)
    n, r, w = meta["shape"]
    console.print(f"{n} slices of {r}×{w} in {meta['seconds']:.1f} s", highlight=False)
    from .params import view_floor

    need, floor = view_floor(w)
    if meta["angles"]["n"] < floor:
        console.print(
            f"[yellow]warning: {meta['angles']['n']} projections for a {w}-pixel detector "
            f"(FBP needs about {need:.0f}): the slices are mostly streaks[/]",
            highlight=False,
            soft_wrap=True,
        )
    typer.echo(f"volume: {out}")
