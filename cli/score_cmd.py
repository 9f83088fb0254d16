"""``rawsigma score``: score codecs on one raw image against its raw noise."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .console import user_errors
from .integrity import LOSSY_NOTE, lossy_derived
from .params import (
    advise_estimate_warning,
    check_profile_choice,
    check_score_options,
    choice,
    codec_list,
    codec_option,
    estimate_advice,
    number,
    options_error,
)

if TYPE_CHECKING:
    import numpy as np
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.analysis.scoring.results import ScoreResult
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.imread import ImageInfo
    from rich.console import Console


@dataclass(frozen=True)
class ScoreOptions:
    """The options of ``rawsigma score`` (see its ``--help`` for each one)."""

    image: Path
    out: Path
    profile: Path | None = None
    estimate_profile: bool = False
    labels: Path | None = None
    instances: bool = False
    model: str | None = None
    codecs: str = "8bit,jpeg@10,jpeg@100,noise:step=2"
    replicas: int = 10
    tolerance_search: str = ""
    index: int | None = None
    centre: str = "observed"
    max_distance: float = 3.0
    min_size: int | None = None
    foreground_class: int = 2
    preset: str = "ilastik"
    seed: int = 0
    workers: int = 2
    force: bool = False
    exposure: float | None = None


def register(app: typer.Typer) -> None:
    """Add the ``score`` command to the root ``rawsigma`` app."""
    app.command("score")(score)


def _what_was_read(info, index: int | None) -> str:  # type: ignore[no-untyped-def]
    """``read X: layout -> shape dtype, 1 frame (--index i)`` for the terminal."""
    frame = f" (--index {index})" if index is not None else ""
    return f"read {info.describe()}{frame}"


def score(
    image: Path = typer.Argument(
        ...,
        help="Raw camera image (16-bit integer): TIFF/OME-TIFF, HDF5 (FILE.h5[:DATASET]), "
        "zarr or .npy; or a FOLDER of images (one report per field + a summary).",
    ),
    profile: Path | None = typer.Option(None, "--profile", "-p", help="Camera profile (.h5)."),
    estimate_profile: bool = typer.Option(
        False, "--estimate-profile", help="No calibration: estimate the profile from the image."
    ),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        "-l",
        help="Sparse annotations (any image format): 0 none, 1 background, 2 object.",
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
        "8bit,jpeg@10,jpeg@100,noise:step=2",
        "--codecs",
        "-c",
        help="Comma-separated codecs; key=value after a codec continues its parameters "
        "(noise:step=2,dither=1 is one codec).",
        callback=codec_option,
    ),
    replicas: int = typer.Option(
        10, "--replicas", "-n", min=2, max=1000, help="Raw-equivalent replicas (2-1000)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Result directory."),
    tolerance_search: str = typer.Option(
        "", "--tolerance-search", help="Codec families to sweep, e.g. 'jpeg,noise'."
    ),
    index: int | None = typer.Option(None, "--index", help="Frame of a multi-page TIFF."),
    centre: str = typer.Option("observed", "--centre", help="Synthesis centre: observed|denoised."),
    max_distance: float = typer.Option(3.0, "--max-distance", help="Matching radius, px."),
    min_size: int | None = typer.Option(
        None,
        "--min-size",
        min=0,
        help="Discard objects smaller than this (px), like ImageJ size=. Default: 1/5 of "
        "the median object size implied by the annotations (0 with --model).",
    ),
    foreground_class: int = typer.Option(
        2,
        "--foreground-class",
        min=1,
        max=65535,
        help="Annotation class of the objects (background: others).",
    ),
    preset: str = typer.Option(
        "ilastik",
        "--preset",
        callback=choice(("ilastik", "weka")),
        help="Classifier and feature preset: ilastik or weka.",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Root random seed (>= 0)."),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="Parallel threads (1-64)."),
    force: bool = typer.Option(False, "--force", help="Overwrite results in --out."),
    exposure: float | None = typer.Option(
        None,
        "--exposure",
        callback=number(0, None, what="ms"),
        help="Image exposure, ms: the profile's offset and noise follow "
        "its dark current (profiles calibrated with --dark-exposures).",
    ),
    spacing: str | None = typer.Option(
        None,
        "--spacing",
        help="3D: voxel size Z,Y,X (physical units, e.g. µm); scores the file as one "
        "volume. Default: the file's (OME, ImageJ), else isotropic 1 (warned).",
    ),
    axes: str | None = typer.Option(
        None,
        "--axes",
        help="3D: axes of the stored array, one letter per dimension (e.g. ZYX); scores "
        "the file as one volume. Files declaring a Z axis are volumes anyway.",
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="3D: reference instance labels (a volume) or points (CSV with z,y,x columns, "
        "voxels): the raw segmentation's agreement with them is reported.",
    ),
    mask: Path | None = typer.Option(
        None,
        "--mask",
        help="3D: tissue/organ mask volume (non-zero = tissue) for the load = object "
        "volume / mask volume. Default: Otsu of the smoothed raw volume.",
    ),
    all_fields: bool = typer.Option(
        False,
        "--all-fields",
        help="Score every frame of a multi-page / multi-position file as a 2D field "
        "(--labels: a label file with as many frames, or a folder).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on dask.distributed: a scheduler ADDRESS (tcp://host:8786) or 'local' "
        "(a LocalCluster of --workers processes). 2D: implies the fields layout; 3D: the "
        "volume's replicas × codecs as one task graph.",
    ),
    chunks: str | None = typer.Option(
        None,
        "--chunks",
        help="3D: segment and measure every version chunk by chunk (Z,Y,X voxels), out "
        "of core. Default: chunked only when the volume is too large for memory.",
    ),
    sigmas: str | None = typer.Option(
        None,
        "--sigmas",
        help="3D: scales of the forest's features, finest voxels (default "
        "0.7,1,1.6,3.5,5); fewer scales cost less on large volumes.",
    ),
    trees: int | None = typer.Option(
        None, "--trees", min=1, max=1000, help="3D: trees of the forest (default: the preset's)."
    ),
    driver: str = typer.Option(
        "auto",
        "--driver",
        help="3D, chunked path: 'lazy' never reads the whole volume, 'memory' reads it "
        "once in this process (both compute feature ε chunk by chunk), 'auto' lazy only "
        "when the volume is too large for this process's memory.",
    ),
) -> None:
    """Does processing change the segmentation by more than the raw noise? Writes a report."""
    opts = dict(locals())
    check_score_options(index, centre, max_distance, min_size)
    options = ScoreOptions(
        image=image,
        out=out,
        profile=profile,
        estimate_profile=estimate_profile,
        labels=labels,
        instances=instances,
        model=model,
        codecs=codecs,
        replicas=replicas,
        tolerance_search=tolerance_search,
        index=index,
        centre=centre,
        max_distance=max_distance,
        min_size=min_size,
        foreground_class=foreground_class,
        preset=preset,
        seed=seed,
        workers=workers,
        force=force,
        exposure=exposure,
    )
    with user_errors():
        from .score_many import is_folder
        from .score_volume_cmd import is_volume, run_score_volume

        all_fields, scheduler = opts.pop("all_fields"), opts.pop("scheduler")
        from .params import check_scheduler

        check_scheduler(scheduler)
        many = all_fields or scheduler is not None or is_folder(image)
        from rawsigma.errors import UsageError

        if not is_folder(image) and (chunks is not None or is_volume(image, index, spacing, axes)):
            if all_fields:
                raise UsageError("--all-fields scores many 2D fields; this file is one volume")
            run_score_volume(dict(opts, scheduler=scheduler))
            return
        if chunks is not None:
            raise UsageError("--chunks is for one 3D volume (give --spacing or --axes)")
        opts.pop("chunks")
        if sigmas is not None or trees is not None or driver != "auto":
            raise UsageError(
                "--sigmas/--trees/--driver are for 3D volumes (give --spacing or --axes)"
            )
        opts.pop("sigmas"), opts.pop("trees"), opts.pop("driver")

        if reference is not None:
            raise UsageError("--reference is for 3D volumes (give --spacing or --axes)")
        if many and (spacing is not None or axes is not None):
            raise UsageError("--spacing/--axes are for one 3D volume, not for many 2D fields")
        if mask is not None:
            raise UsageError("--mask is for 3D volumes (give --spacing or --axes)")
        for k in ("spacing", "axes", "reference", "mask"):
            opts.pop(k)
        if many:
            from .score_many import run_many

            run_many(**opts, scheduler=scheduler, score_one=score_one_field)
        else:
            run_score(options)


def _staged_report(result, out: Path, force: bool) -> Path:
    """Write the report into ``out/.report.tmp`` and move it into ``out`` at the end.

    The moves take microseconds (same file system), ``report.html`` last, so an
    interruption leaves either the previous results or the complete new ones; the
    staging directory is removed on any failure (and by the next run if killed).
    """
    import contextlib
    import os
    import shutil

    from rawsigma.analysis.reporting.report import RESULT_FILES, write_report

    stage = out / ".report.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        write_report(result, stage, force=True)
        (out / "figures").mkdir(exist_ok=True)
        for png in sorted((stage / "figures").iterdir()):
            os.replace(png, out / "figures" / png.name)
        for name in sorted(RESULT_FILES, key=lambda n: n == "report.html"):  # report last
            os.replace(stage / name, out / name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(stage)
    return out / "report.html"


def score_one_field(options: dict[str, Any]) -> Path:
    """Score one field of a many-fields run (`score_many`): ``run_score`` from a dict."""
    return run_score(ScoreOptions(**options))


def run_score(options: ScoreOptions) -> Path:
    """Body of ``rawsigma score`` (raises :class:`rawsigma.errors.RawsigmaError`)."""
    from rawsigma.analysis.reporting.report import RESULT_FILES
    from rawsigma.errors import OutputExistsError, UsageError
    from rawsigma.fileio import check_output_dir, output_lock

    out = options.out
    check_output_dir(out)
    existing = [f for f in RESULT_FILES if (out / f).exists()]
    if existing and not options.force:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force"
        )
    if (options.labels is None) == (options.model is None):
        raise UsageError("give exactly one of --labels or --model")
    check_profile_choice(options.profile, options.estimate_profile)
    from .console import snapshot

    created = not out.exists()
    before = snapshot(out / "report.html")
    try:
        with output_lock(out / "report.html"):
            return _score_locked(options)
    except (KeyboardInterrupt, Exception) as exc:  # a library may turn Ctrl-C into an error
        from .console import interrupted_meanwhile, kept_after_interrupt, print_interrupted

        if not interrupted_meanwhile(exc):
            raise

        kept = "previous results unchanged" if existing else "nothing written"
        what = kept_after_interrupt(before, f"{kept} in {out}")
        raise typer.Exit(print_interrupted(what)) from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty directory behind


def _plan(options: ScoreOptions) -> ScorePlan:
    """The scoring plan of the options (one usage error if they are invalid)."""
    from rawsigma.analysis.scoring.plans import ScorePlan

    try:
        return ScorePlan(
            codecs=codec_list(options.codecs),
            n_replicas=options.replicas,
            seed=options.seed,
            centre=options.centre,
            max_distance=options.max_distance,
            min_size=options.min_size,
            foreground_class=options.foreground_class,
            classifier_preset=options.preset,
            feature_preset=options.preset,
            tolerance_search=[t for t in options.tolerance_search.split(",") if t.strip()],
            workers=options.workers,
            model=options.model,
        )
    except ValueError as exc:
        raise options_error(exc) from None


def _camera_profile(options: ScoreOptions, img: np.ndarray, console: Console) -> CameraProfile:
    """The profile file (at ``--exposure``), or one estimated from the image."""
    image = options.image
    if options.profile is not None:
        from rawsigma.calib.profile import CameraProfile

        from .integrity import at_exposure

        return at_exposure(CameraProfile.load(options.profile), options.exposure, options.profile)
    from rawsigma.analysis.noisemodel.estimate import auto_tile
    from rawsigma.analysis.noisemodel.estimate import estimate_profile as _estimate
    from rawsigma.analysis.scoring.inputs import check_raw_image
    from rawsigma.errors import InputFileError, RawsigmaError

    check_raw_image(img, None, str(image))
    try:
        if options.index is not None:
            _check_file_frames(image, img)
        prof = _estimate(img, tile=auto_tile(img.shape), source=str(image))
    except (RawsigmaError, ValueError) as exc:
        msg = str(exc) if str(image) in str(exc) else f"{image}: {exc}"
        msg = estimate_advice(msg, image, frame=options.index)
        raise InputFileError(f"cannot estimate a profile: {msg}") from None
    advise_estimate_warning(prof, image, frame=options.index)
    console.print(
        "[yellow]profile estimated from the image (no bench calibration)[/]", soft_wrap=True
    )
    return prof


def _check_file_frames(image: Path, img: np.ndarray) -> None:
    """``--index`` with ``--estimate-profile``: the file's frames hold the camera's noise.

    One frame cannot show a fixed pattern repeated in every frame (simulated OPT
    projections: gain 4.4-6.9 ADU/e⁻ for 2.16 from one of them); the whole file's
    frames can (`estimate.check_frames`, `NoiseEstimateError` above the limit).
    """
    import numpy as np
    from rawsigma.analysis.noisemodel.estimate import auto_tile, check_frames
    from rawsigma.imread import imread

    stack, _ = imread(image)
    if stack.ndim == 3 and stack.shape[1:] == img.shape and stack.dtype.kind == "u":
        check_frames(stack, auto_tile(img.shape), int(np.iinfo(stack.dtype).max), str(image))


def _checked_inputs(
    options: ScoreOptions, img: np.ndarray, prof: CameraProfile, plan: ScorePlan
) -> None:
    """Codecs, profile defects and the image against the profile: one clear error each."""
    from rawsigma.analysis.scoring.inputs import check_raw_image
    from rawsigma.errors import ImageMismatchError

    from .integrity import check_profile_defects
    from .params import check_codecs

    image = options.image
    check_codecs(list(plan.codecs), prof, img)
    check_profile_defects(prof, options.profile or "estimated profile")
    try:
        check_raw_image(img, prof, str(image))
    except ImageMismatchError as exc:
        msg = str(exc)
        raise ImageMismatchError(msg if msg.startswith(str(image)) else f"{image}: {msg}") from None


def _training_labels(
    options: ScoreOptions, img: np.ndarray, console: Console
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The checked sparse annotations and, with ``--instances``, the instance labels."""
    from rawsigma.analysis.scoring.inputs import check_label_values, check_labels
    from rawsigma.errors import ImageMismatchError
    from rawsigma.imread import imread, read_frame

    labels = options.labels
    if labels is None:
        return None, None
    if options.index is None:  # one image: "choose one with --index" would pick its frame too
        lab, lab_info = imread(labels, what="label image")
        if lab.ndim == 3:
            raise ImageMismatchError(
                f"{labels}: {lab.shape[0]} label frames ({lab_info.layout}) for the one image "
                f"{options.image} {img.shape}: give the label image of that image alone"
            )
    else:
        lab, lab_info = read_frame(labels, options.index, what="label image")
    console.print(_what_was_read(lab_info, options.index), highlight=False, soft_wrap=True)
    if lab.shape != img.shape:
        raise ImageMismatchError(
            f"{labels}: label image shape {lab.shape} differs from {options.image} {img.shape}"
        )
    check_label_values(lab, str(labels), instances=options.instances)
    reference = None
    if options.instances:
        from rawsigma.analysis.segmentation.annotations import training_labels

        reference, lab = lab, training_labels(lab)
    checked = check_labels(lab, img.shape, str(labels), foreground_class=options.foreground_class)
    return checked, reference


def _note_reference(result: ScoreResult, reference: np.ndarray) -> None:
    """The raw segmentation against the ``--instances`` labels: results.json and notes.

    A poor agreement is a warning, first in the notes (terminal and report).
    """
    from rawsigma.analysis.scoring.runchecks import reference_note

    info, notes = reference_note(result.raw_labels, reference, result.plan.min_size)
    result.objects_info["reference_agreement"] = info
    if info["poor"]:
        result.notes[:0] = notes
    else:
        result.notes.extend(notes)


def _record_inputs(result: ScoreResult, options: ScoreOptions, img_info: ImageInfo) -> None:
    """Which files were read, in the result's provenance."""
    result.provenance["image_file"] = str(options.image)
    result.provenance["image_index"] = options.index
    result.provenance["image_read"] = img_info.as_dict()
    result.provenance["labels_file"] = str(options.labels) if options.labels is not None else None
    result.provenance["profile_file"] = str(options.profile) if options.profile else None


def _paper_none(match: dict) -> str:
    """The paper column without a worst parameter: every ε 0, or nothing to score."""
    if match.get("n_matched", 0) > 0:
        return "every mean ε 0.00"  # e.g. a lossless codec: identical objects
    return "no matched object to score"


def _print_summary(result: ScoreResult, console: Console) -> None:
    """Warnings, object count, one line per codec and the tolerance search's best."""
    for note in result.notes:
        if note.startswith("WARNING"):
            console.print(f"[bold red]{note}[/]", soft_wrap=True)
    info = result.objects_info
    console.print(  # one line each, however narrow the terminal or a log's 80 columns
        f"  {result.n_objects} objects (min size {info.get('min_size')} px: "
        f"{info.get('min_size_source', '')})",
        soft_wrap=True,
        highlight=False,
    )
    agree = info.get("reference_agreement")
    if agree and not agree["poor"]:
        console.print(
            f"  F1 {agree['f1']:.2f} against the instance labels ({agree['tp']} of "
            f"{agree['n_reference']} labelled objects matched at IoU ≥ 0.5)",
            highlight=False,
            soft_wrap=True,
        )
    for c in result.codecs:
        v = "within noise" if c.verdict["within_noise"] else "exceeds noise"
        w = c.verdict["worst"]
        p = c.verdict.get("worst_p_fw", float("nan"))
        pw = c.verdict.get("paper", {}).get("worst", ["", float("nan")])
        paper = f"{pw[0]} {pw[1]:.2f}" if pw[0] else _paper_none(c.match)
        console.print(
            f"  {c.spec:<14} {c.ratio:6.1f}:1  {v:<14} worst {w[0]} ε={w[1]:.2f} p={p:.2g}"
            f" | paper: {paper}",
            soft_wrap=True,
        )
        if c.quantisation:
            console.print(f"    {c.quantisation['text']}", soft_wrap=True, highlight=False)
        if c.verdict.get("systematic_note"):
            console.print(f"    {c.verdict['systematic_note']}", soft_wrap=True, highlight=False)
    for fam, t in result.tolerance.items():
        b = t["best"]
        best = f"{b['spec']} ({b['ratio']:.1f}:1)" if b else "none within noise"
        console.print(f"  tolerance {fam}: {best}")
    if result.n_objects == 0:
        console.print("[yellow]no objects in the raw segmentation: only global parameters[/]")


def _score_locked(options: ScoreOptions) -> Path:
    """Read, check, score and write the report (under the output lock)."""
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.fileio import check_output_dir
    from rawsigma.imread import read_frame
    from rich.console import Console

    from .console import outputs_complete, stage_progress

    console = Console(stderr=True)
    plan = _plan(options)
    img, img_info = read_frame(options.image, options.index)
    console.print(_what_was_read(img_info, options.index), highlight=False, soft_wrap=True)
    check_output_dir(options.out, need_bytes=4_000_000 + 4 * img.nbytes)
    prof = _camera_profile(options, img, console)
    _checked_inputs(options, img, prof, plan)
    lab, reference = _training_labels(options, img, console)
    with stage_progress(console, 18) as progress:
        with warnings.catch_warnings():
            # numpy's warnings on empty selections (e.g. no object matched) say nothing
            # the report does not; they must not reach the terminal
            warnings.simplefilter("ignore", RuntimeWarning)
            result = score_image(
                img, prof, labels=lab, model=options.model, plan=plan, progress=progress
            )
    _record_inputs(result, options, img_info)
    if reference is not None:
        _note_reference(result, reference)
    if lossy_derived(options.image):  # first in the notes: terminal and report
        result.notes.insert(0, "WARNING: " + LOSSY_NOTE.format(
            image=options.image, consequence="every codec is scored against frames that "
            "were compressed already, not against the camera's raw values"))  # fmt: skip
    report = _staged_report(result, options.out, options.force)
    outputs_complete()
    _print_summary(result, console)
    typer.echo(f"report: {report}")
    return report
