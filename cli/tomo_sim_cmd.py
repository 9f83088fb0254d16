"""``rawsigma tomo simulate``: a simulated OPT acquisition with known truth.

Writes what ``rawsigma tomo score`` reads: the raw 16-bit projection stack and the
camera's profile, measured on the simulated bench. Registered on the ``tomo`` group of
:mod:`rawsigma.cli.tomo_cmd`.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import Any

import typer

from .console import outputs_complete, user_errors
from .params import choice

CAMERAS = ("orca-flash4", "scmos")


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the ``tomo`` group (registered on ``app`` by tomo_cmd)."""
    from .tomo_cmd import tomo_app

    tomo_app.command("simulate")(simulate)


def simulate(
    out: Path = typer.Argument(..., help="Projection stack to write (.tif, 16-bit)."),
    profile_out: Path | None = typer.Option(
        None, "--profile-out", help="Camera profile (.h5). Default: OUT with _profile.h5."
    ),
    rows: int = typer.Option(32, "--rows", min=8, max=1024, help="Detector rows (8-1024)."),
    det: int = typer.Option(96, "--det", min=16, max=1024, help="Detector pixels (16-1024)."),
    angles: int | None = typer.Option(
        None, "--angles", min=2, max=4000, help="Angles over 360° (default det·1200/1024)."
    ),
    fill: float = typer.Option(
        0.8, "--fill", min=0.001, max=1.0, help="Brightest pixel / full well (photon budget)."
    ),
    camera: str = typer.Option(
        "orca-flash4", "--camera", callback=choice(CAMERAS), help="orca-flash4 or scmos."
    ),
    plaques: int = typer.Option(24, "--plaques", min=0, max=1000, help="Plaques to place."),
    plaque_level: str = typer.Option(
        "0.7,1.0", "--plaque-level", help="LO,HI plaque fluorescence (organ tissue 0.08)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Phantom, camera maps and frames."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT and the profile."),
) -> None:
    """Image an organ phantom with plaques by OPT through a calibrated simulated camera.

    Defaults follow the paper's acquisition scaled down (ORCA-Flash4.0, 16-bit, 1200
    angles per 1024 detector pixels over 360°, brightest pixel at 80 % of the full well).
    Then: rawsigma tomo score OUT --profile PROFILE --out DIR.
    """
    with user_errors():
        run_simulate(out, profile_out, rows, det, angles, fill, camera, plaques,
                     plaque_level, seed, force)  # fmt: skip


def _level(text: str) -> tuple[float, float]:
    from rawsigma.errors import UsageError

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--plaque-level {text!r}: give LO,HI, e.g. 0.7,1.0") from None
    if not 0 < lo <= hi:
        raise UsageError(f"--plaque-level {text!r}: need 0 < LO <= HI")
    return lo, hi


def run_simulate(
    out: Path, profile_out: Path | None, rows: int, det: int, angles: int | None, fill: float,
    camera: str, plaques: int, plaque_level: str, seed: int, force: bool,
) -> dict[str, Any]:  # fmt: skip
    """Body of ``rawsigma tomo simulate`` (raises :class:`rawsigma.errors.RawsigmaError`)."""
    import numpy as np
    import tifffile
    from rawsigma import fileio
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.demo import calibrate_simulated
    from rawsigma.analysis.phantoms.opt_organ import orca_flash4, paper_opt
    from rawsigma.errors import UsageError

    if out.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(f"{out}: give a .tif output for the projection stack")
    prof_path = profile_out or out.with_name(out.stem + "_profile.h5")
    if prof_path.resolve() == out.resolve():
        raise UsageError(f"--profile-out {prof_path}: the same file as the projections")
    fileio.check_output(out, force)
    fileio.check_output(prof_path, force)
    level = _level(plaque_level)
    s_cam = np.random.SeedSequence(seed).spawn(3)[1]
    cam_seed = int(s_cam.generate_state(1)[0] % 2**31)  # as paper_opt seeds its camera
    if camera == "orca-flash4":
        model = orca_flash4((rows, det), cam_seed)
    else:
        model = SensorModel.preset("scmos", (rows, det), seed=cam_seed)
    typer.echo("calibrating the simulated camera on the simulated bench...", err=True)
    prof, model, how = calibrate_simulated(model=model, seed=seed)
    typer.echo("imaging the phantom at every angle...", err=True)
    acq = paper_opt((rows, det), angles, fill=fill, rng=seed, model=model, profile=prof,
                    n_plaques=plaques, plaque_level=level)  # fmt: skip
    meta = {
        "angles_deg": "evenly over [0, 360)",
        "n_angles": int(acq.angles_deg.size),
        "calibration": how,
        **{k: v for k, v in acq.info.items() if k != "photons_per_unit"},
    }
    # both files or neither: each is renamed into place only after both are written
    with fileio.atomic_write(out, force=force) as tmp, \
            fileio.atomic_write(prof_path, force=force) as tmp_prof:  # fmt: skip
        tifffile.imwrite(tmp, acq.projections, metadata={"rawsigma": str(meta)})
        prof.save(tmp_prof, force=True)
    outputs_complete()
    typer.echo(
        f"{acq.projections.shape[0]} projections of {rows}×{det} ({camera}, peak "
        f"{acq.info['peak_electrons']:.0f} e- of {acq.info['full_well_e']:.0f}, "
        f"{acq.info['n_plaques']} plaques): {out}"
    )
    typer.echo(f"profile ({how}): {prof_path}")
    typer.echo(f"next: rawsigma tomo score {out} --profile {prof_path} --out RESULTS_DIR")
    return meta
