"""``rawsigma score``: score codecs on one raw image against its raw noise."""

from __future__ import annotations

from pathlib import Path

import typer

from .console import user_errors


def register(app: typer.Typer) -> None:
    """Add the ``score`` command to the root ``rawsigma`` app."""
    app.command("score")(score)


def read_frame(path: Path, index: int | None, what: str = "image"):
    """Read one 2-D frame from a TIFF (``index`` selects a page of a stack)."""
    import numpy as np
    import tifffile
    from rawsigma.errors import InputFileError

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    try:
        a = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types for foreign files
        raise InputFileError(f"{path}: cannot read as TIFF ({exc})") from exc
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] > 4:
        raise InputFileError(f"{path}: RGB {what} (shape {a.shape}); a raw camera frame is mono")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if index is None:
            raise InputFileError(
                f"{path}: stack of {a.shape[0]} frames; choose one with --index (0-based)"
            )
        if not 0 <= index < a.shape[0]:
            raise InputFileError(f"{path}: --index {index} out of range 0..{a.shape[0] - 1}")
        a = a[index]
    if a.ndim != 2:
        raise InputFileError(f"{path}: expected a 2-D {what}, got shape {a.shape}")
    return a


def score(
    image: Path = typer.Argument(..., help="Raw camera image (TIFF, 16-bit integer)."),
    profile: Path | None = typer.Option(None, "--profile", "-p", help="Camera profile (.h5)."),
    estimate_profile: bool = typer.Option(
        False, "--estimate-profile", help="No calibration: estimate the profile from the image."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", "-l", help="Sparse annotations (TIFF): 0 none, 1 background, 2 object."
    ),
    instances: bool = typer.Option(
        False,
        "--instances",
        help="--labels holds ground-truth instance labels: train on eroded cores and "
        "background rings derived from them.",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Plug-in segmenter 'module:function' (image -> labels/prob)."
    ),
    codecs: str = typer.Option(
        "8bit,jpeg@10,jpeg@100,noise:step=2", "--codecs", "-c", help="Comma-separated codecs."
    ),
    replicas: int = typer.Option(10, "--replicas", "-n", min=2, help="Raw-equivalent replicas."),
    out: Path = typer.Option(..., "--out", "-o", help="Result directory."),
    tolerance_search: str = typer.Option(
        "", "--tolerance-search", help="Codec families to sweep, e.g. 'jpeg,noise'."
    ),
    index: int | None = typer.Option(None, "--index", help="Frame of a multi-page TIFF."),
    centre: str = typer.Option("observed", "--centre", help="Synthesis centre: observed|denoised."),
    max_distance: float = typer.Option(3.0, "--max-distance", help="Matching radius, px."),
    min_size: int = typer.Option(
        0, "--min-size", help="Discard objects smaller than this (px), like ImageJ size=."
    ),
    foreground_class: int = typer.Option(
        2, "--foreground-class", help="Annotation class of the objects (background: others)."
    ),
    preset: str = typer.Option(
        "ilastik", "--preset", help="Classifier and feature preset: ilastik or weka."
    ),
    seed: int = typer.Option(0, "--seed", help="Root random seed."),
    workers: int = typer.Option(2, "--workers", help="Parallel threads."),
    force: bool = typer.Option(False, "--force", help="Overwrite results in --out."),
    exposure: float | None = typer.Option(
        None,
        "--exposure",
        help="Image exposure, ms: the profile's offset and noise follow "
        "its dark current (profiles calibrated with --dark-exposures).",
    ),
) -> None:
    """Does processing change the segmentation by more than the raw noise? Writes a report."""
    with user_errors():
        run_score(**locals())


def run_score(
    image: Path,
    profile: Path | None,
    estimate_profile: bool,
    labels: Path | None,
    instances: bool,
    model: str | None,
    codecs: str,
    replicas: int,
    out: Path,
    tolerance_search: str,
    index: int | None,
    centre: str,
    max_distance: float,
    min_size: int,
    foreground_class: int,
    preset: str,
    seed: int,
    workers: int,
    force: bool,
    exposure: float | None = None,
) -> Path:
    """Body of ``rawsigma score`` (raises :class:`rawsigma.errors.RawsigmaError`)."""
    from rawsigma.analysis.plans import ScorePlan
    from rawsigma.analysis.report import RESULT_FILES, write_report
    from rawsigma.analysis.runner import check_raw_image, score_image
    from rawsigma.errors import InputFileError, OutputExistsError
    from rich.console import Console

    console = Console(stderr=True)
    existing = [f for f in RESULT_FILES if (out / f).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force"
        )
    if (labels is None) == (model is None):
        raise InputFileError("give exactly one of --labels or --model")
    if (profile is None) == (not estimate_profile):
        raise InputFileError(
            "give --profile P.h5, or --estimate-profile when no calibration exists"
        )
    try:
        plan = ScorePlan(
            codecs=[c for c in codecs.split(",") if c.strip()],
            n_replicas=replicas,
            seed=seed,
            centre=centre,
            max_distance=max_distance,
            min_size=min_size,
            foreground_class=foreground_class,
            classifier_preset=preset,
            feature_preset=preset,
            tolerance_search=[t for t in tolerance_search.split(",") if t.strip()],
            workers=workers,
            model=model,
        )
    except ValueError as exc:
        raise InputFileError(f"invalid options: {exc}") from exc

    img = read_frame(image, index)
    if profile is not None:
        from rawsigma.calib.profile import CameraProfile

        prof = CameraProfile.load(profile)
        if exposure is not None:
            prof = prof.at_exposure(exposure / 1000.0)
    else:
        from rawsigma.analysis.noise_estimate import estimate_profile as _estimate
        from rawsigma.errors import RawsigmaError

        check_raw_image(img, None, str(image))
        tile = 64 if min(img.shape) >= 256 else 32  # enough tiles on small images
        try:
            prof = _estimate(img, tile=tile, source=str(image))
        except (RawsigmaError, ValueError) as exc:
            msg = str(exc) if str(image) in str(exc) else f"{image}: {exc}"
            raise InputFileError(f"cannot estimate a profile: {msg}") from None
        console.print("[yellow]profile estimated from the image (no bench calibration)[/]")
    from rawsigma.errors import ImageMismatchError

    try:
        check_raw_image(img, prof, str(image))
    except ImageMismatchError as exc:
        msg = str(exc)
        raise ImageMismatchError(msg if msg.startswith(str(image)) else f"{image}: {msg}") from None
    lab = None
    if labels is not None:
        lab = read_frame(labels, index, "label image")
        if lab.shape != img.shape:
            raise ImageMismatchError(
                f"{labels}: label image shape {lab.shape} differs from {image} {img.shape}"
            )
        if instances:
            from rawsigma.analysis.demo import training_labels

            lab = training_labels(lab)

    from .console import stage_progress

    with stage_progress(console, 18) as progress:
        result = score_image(img, prof, labels=lab, model=model, plan=plan, progress=progress)
    result.provenance["image_file"] = str(image)
    result.provenance["image_index"] = index
    result.provenance["profile_file"] = str(profile) if profile else None
    report = write_report(result, out, force=force)
    for c in result.codecs:
        v = "within noise" if c.verdict["within_noise"] else "exceeds noise"
        w = c.verdict["worst"]
        console.print(f"  {c.spec:<16} {c.ratio:6.1f}:1  {v:<14} worst {w[0]} ε={w[1]:.2f}")
    for fam, t in result.tolerance.items():
        b = t["best"]
        best = f"{b['spec']} ({b['ratio']:.1f}:1)" if b else "none within noise"
        console.print(f"  tolerance {fam}: {best}")
    if result.n_objects == 0:
        console.print("[yellow]no objects in the raw segmentation: only global parameters[/]")
    typer.echo(f"report: {report}")
    return report
