"""``rawsigma tomo score``: score codecs on tomography (OPT) projections.

Registered on the ``tomo`` command group of ``rawsigma tomo reconstruct``
(:mod:`rawsigma.cli.tomo_cmd`).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import typer

from .console import user_errors
from .params import (
    advise_estimate_warning,
    choice,
    codec_list,
    codec_option,
    estimate_advice,
    options_error,
    view_floor,
)

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
SEGMENTERS = ("rule", "forest")
CHUNKS = ("auto", "on", "off")


def register(app: typer.Typer) -> None:
    """Add ``score`` to the ``tomo`` group of :mod:`rawsigma.cli.tomo_cmd` (registered on
    ``app`` by that module)."""
    from .tomo_cmd import tomo_app

    tomo_app.command("score")(score)


def score(
    projections: Path = typer.Argument(
        ...,
        help="Raw projections, a stack (n_angles, rows, detector) of 16-bit frames: "
        "TIFF, HDF5 (FILE.h5[:DATASET]), zarr or .npy; FILE\\[i:j] selects frames.",
    ),
    profile: Path | None = typer.Option(None, "--profile", "-p", help="Camera profile (.h5)."),
    estimate_profile: bool = typer.Option(
        False,
        "--estimate-profile",
        help="No calibration: estimate the profile from the projections themselves.",
    ),
    offset: float | None = typer.Option(
        None, "--offset", help="With --estimate-profile: the known dark offset, ADU."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Result directory."),
    angles: Path | None = typer.Option(
        None,
        "--angles",
        help="Angles file (degrees, one per projection: text or .npy). Default: evenly over --arc.",
    ),
    arc: float = typer.Option(360.0, "--arc", help="Angular range of the projections, degrees."),
    codecs: str = typer.Option(
        "replica,8bit,jpeg@100,noise:step=2",
        "--codecs",
        "-c",
        help="Comma-separated codecs applied to every projection ('replica': held-out control).",
        callback=codec_option,
    ),
    replicas: int = typer.Option(10, "--replicas", "-n", min=3, max=200, help="Replicas (3-200)."),
    center: float | None = typer.Option(
        None, "--center", help="Rotation axis on the detector, px (default: its centre)."
    ),
    find_center: bool = typer.Option(
        False, "--find-center", help="Find the rotation axis from 180° projection pairs."
    ),
    filter_name: str = typer.Option(
        "ramp", "--filter", callback=choice(FILTERS), help="FBP filter: " + ", ".join(FILTERS)
    ),
    level: float = typer.Option(
        0.4, "--level", min=0.01, max=1.0, help="Plaque threshold, fraction of the brightest."
    ),
    min_size: int = typer.Option(4, "--min-size", min=1, help="Smallest plaque, voxels."),
    no_operators: bool = typer.Option(
        False, "--no-operators", help="Skip the per-pixel operator ε (faster)."
    ),
    segmenter: str = typer.Option(
        "rule",
        "--segmenter",
        callback=choice(SEGMENTERS),
        help="Plaques by the threshold rule fitted on raw (default) or a 3D random forest "
        "trained on --labels.",
    ),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="With --segmenter forest: annotations of the raw reconstruction (Z, N, N): "
        "0 unlabelled, 1 background, 2 plaque; or instance labels with --instances.",
    ),
    instances: bool = typer.Option(
        False,
        "--instances",
        help="--labels holds plaque instances (e.g. a phantom's truth): train on their "
        "eroded cores and a background ring.",
    ),
    chunks: str = typer.Option(
        "auto",
        "--chunks",
        callback=choice(CHUNKS),
        help="Reconstructions slab by slab on disk: auto (when the in-memory estimate "
        "exceeds --memory-budget), on, off.",
    ),
    slab: int | None = typer.Option(
        None, "--slab", min=1, help="Slices per slab of the chunked path (forces it)."
    ),
    memory_budget: float | None = typer.Option(
        None,
        "--memory-budget",
        min=1,
        help="MB the in-memory path may use (default: half the available memory); "
        "beyond it the chunked path runs.",
    ),
    workdir: Path | None = typer.Option(
        None,
        "--workdir",
        help="Where the chunked path keeps its volumes (a rawsigma-tomo-* directory, "
        "removed at the end; default: beside --out).",
    ),
    few_views: bool = typer.Option(
        False,
        "--few-views",
        help="Score even when there are too few projections for a meaningful "
        "reconstruction (fewer than a tenth of the pi/2 x detector pixels FBP needs).",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Root random seed (>= 0)."),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="Threads (1-64)."),
    force: bool = typer.Option(False, "--force", help="Overwrite results in --out."),
) -> None:
    """Do codecs on the projections change plaque measurements by more than the raw noise?"""
    with user_errors():
        run_tomo_score(**locals())


def _check_geometry(center: float | None, arc: float, n_det: int) -> None:
    """Refuse a rotation axis off the detector and an arc that is not a positive angle."""
    from rawsigma.errors import UsageError

    if center is not None and not (math.isfinite(center) and 0 <= center <= n_det - 1):
        raise UsageError(f"--center {center:g}: outside the detector (pixels 0 to {n_det - 1})")
    if not (math.isfinite(arc) and 0 < arc <= 360):
        raise UsageError(f"--arc {arc:g}: expected an angle in (0, 360] degrees")


def _distinct_views(angles: object) -> int:
    """Projections at distinct angles (modulo 360°, to 1e-6°): repeated angles add no view.

    An angles file of 112 zeros gave 112 "views" of one direction, and a reconstruction
    with plaques and verdicts, exit 0.
    """
    import numpy as np

    a = np.mod(np.asarray(angles, dtype=np.float64), 360.0)
    return int(np.unique(np.round(a, 6) % 360.0).size)


def _check_views(
    n_views: int, n_det: int, projections: Path, few_views: bool, n_distinct: int | None = None
) -> str | None:
    """Refuse, in one line and before any long work, too few views to reconstruct.

    ``n_distinct``: the projections at distinct angles (default all). With
    ``few_views`` the run goes on: the returned warning goes into the report.
    """
    from rawsigma.errors import InputFileError

    need, floor = view_floor(n_det)
    n = n_views if n_distinct is None else n_distinct
    if n >= floor:
        return None
    views = f"{n_views} projections" + (f" at {n} distinct angles" if n != n_views else "")
    if few_views:
        return (
            f"WARNING: {views} for a {n_det}-pixel detector (filtered "
            f"back-projection needs about {need:.0f}): run anyway, as --few-views asked; the "
            "reconstruction is mostly streaks, so its plaques and their scores mean little."
        )
    raise InputFileError(
        f"{projections}: {views} for a {n_det}-pixel detector: filtered "
        f"back-projection needs about {need:.0f} (pi/2 x {n_det}) and below {floor} the "
        "reconstruction is mostly streaks, so its plaques and their scores would mean "
        "nothing; score the projections as 2D images (rawsigma score FILE --index N), "
        "or pass --few-views to run anyway"
    )


def _read_angles(path: Path, n: int) -> object:
    import numpy as np
    from rawsigma.errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"{path}: no such angles file")
    try:
        a = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except Exception as exc:  # noqa: BLE001 - a bad angles file is bad input
        raise InputFileError(f"{path}: cannot read angles ({exc})") from None
    return np.asarray(a, np.float64).ravel()


def run_tomo_score(
    projections: Path,
    profile: Path | None,
    estimate_profile: bool,
    offset: float | None,
    out: Path,
    angles: Path | None,
    arc: float,
    codecs: str,
    replicas: int,
    center: float | None,
    find_center: bool,
    filter_name: str,
    level: float,
    min_size: int,
    no_operators: bool,
    segmenter: str,
    labels: Path | None,
    instances: bool,
    chunks: str,
    slab: int | None,
    memory_budget: float | None,
    workdir: Path | None,
    seed: int,
    workers: int,
    force: bool,
    few_views: bool = False,
) -> Path:
    """Body of ``rawsigma tomo score`` (raises :class:`rawsigma.errors.RawsigmaError`)."""
    from rawsigma.analysis.reporting.tomo_report import TOMO_RESULT_FILES, write_tomo_report
    from rawsigma.analysis.scoring.tomo_runner import TomoPlan, default_angles, score_tomo
    from rawsigma.errors import ImageMismatchError, InputFileError, OutputExistsError, UsageError
    from rawsigma.fileio import check_output_dir
    from rawsigma.imread import read_stack
    from rich.console import Console

    from .console import stage_progress
    from .params import check_codecs, check_profile_choice

    check_profile_choice(profile, estimate_profile)
    _check_offset_option(offset, profile)
    check_output_dir(out)
    existing = [f for f in TOMO_RESULT_FILES if (out / f).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force"
        )
    try:
        plan = TomoPlan(
            codecs=tuple(codec_list(codecs)),
            n_replicas=replicas,
            seed=seed,
            center=center,
            find_center=find_center,
            filter=filter_name,
            level=level,
            min_size=min_size,
            operators=not no_operators,
            workers=workers,
            segmenter=segmenter,
            chunks=chunks,
            slab=slab,
            memory_budget=int(memory_budget * 2**20) if memory_budget else None,
        )
    except ValueError as exc:
        raise options_error(exc) from None
    console = Console(stderr=True)
    proj, info = _read_projections(projections, read_stack)
    console.print(f"read {info.describe()}", highlight=False, soft_wrap=True)
    _check_geometry(center, arc, proj.shape[-1])
    ang = _read_angles(angles, proj.shape[0]) if angles else default_angles(proj.shape[0], arc)
    if angles and len(ang) != proj.shape[0]:
        raise InputFileError(
            f"{angles}: {len(ang)} angles for the {proj.shape[0]} projections of {projections}; "
            "give one angle per projection"
        )
    few_note = _check_views(
        proj.shape[0], proj.shape[-1], projections, few_views, _distinct_views(ang)
    )
    if few_note:
        console.print(f"[bold red]{few_note}[/]", highlight=False, soft_wrap=True)
    prof = _tomo_profile(profile, proj, offset, projections, console)  # dark frames refused
    check_codecs(list(plan.codecs), prof)
    ann = _annotations(labels, instances, segmenter, proj.shape)
    work = workdir or out.parent  # a rawsigma-tomo-* directory there, removed at the end
    try:
        with stage_progress(console, 28) as progress, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = score_tomo(proj, ang, prof, plan=plan, annotations=ann, workdir=work,
                                progress=progress)  # fmt: skip
    except ImageMismatchError as exc:
        msg = str(exc)
        raise ImageMismatchError(f"{projections}: {msg}") from None
    except ValueError as exc:  # annotations that cannot train the forest
        raise UsageError(str(exc)) from None
    result.notes[:0] = [few_note] if few_note else []
    result.provenance.update(
        projections_file=str(projections),
        profile_file=str(profile) if profile else "estimated from the projections",
        angles_file=str(angles) if angles else f"even over {arc:g}°",
        labels_file=str(labels) if labels else None,
    )
    try:
        report = write_tomo_report(result, out, force=True)
    finally:
        result.close()
    console.print(f"  processing: {_processing_line(result.processing)}", highlight=False,
                  soft_wrap=True)  # fmt: skip
    _print_tomo_summary(result, console)
    typer.echo(f"report: {report}")
    return report


def _processing_line(processing: dict) -> str:
    """``chunked, slabs of 68 slices on disk (auto: ...)``: the path, then why."""
    path, why = str(processing["path"]), str(processing["why"])
    head = path.split(",")[0]  # "in memory" or "chunked"
    if why.startswith(head):
        why = why[len(head) :].strip()
    return f"{path} {why}" if why.startswith("(") else f"{path} ({why})"


def _annotations(labels: Path | None, instances: bool, segmenter: str, proj_shape) -> Any:
    """The forest's training annotations (Z, N, N) from ``--labels``, or None."""
    from rawsigma.errors import ImageMismatchError, UsageError

    if segmenter != "forest":
        if labels is not None or instances:
            raise UsageError("--labels/--instances train the forest: add --segmenter forest")
        return None
    if labels is None:
        raise UsageError("--segmenter forest needs --labels (annotations of the reconstruction)")
    from rawsigma.volread import read_volume

    lab, _ = read_volume(labels, what="label volume")
    _, z, n = proj_shape
    if lab.shape != (z, n, n):
        raise ImageMismatchError(
            f"{labels}: label volume shape {lab.shape} differs from the reconstruction's "
            f"{(z, n, n)} (rows, detector, detector)"
        )
    from rawsigma.analysis.scoring.inputs import check_label_values

    check_label_values(lab, str(labels), instances=instances)
    if instances:
        from rawsigma.analysis.segmentation.annotations import training_labels

        return training_labels(lab)
    return lab


def _check_offset_option(offset: float | None, profile: Path | None) -> None:
    """``--offset``: only with ``--estimate-profile``, finite and >= 0 (`UsageError`)."""
    from rawsigma.errors import UsageError

    if offset is not None and profile is not None:
        raise UsageError(
            f"--offset {offset:g} applies with --estimate-profile only: the profile "
            f"{profile} has its own offset"
        )
    if offset is not None and not (math.isfinite(offset) and offset >= 0):
        raise UsageError(f"--offset must be a finite value >= 0 ADU, got {offset}")


def _read_projections(projections: Path, read_stack: Any) -> tuple[Any, Any]:
    """The stack, or the frames ``FILE[i:j]`` / ``FILE[i]`` select (as `tomo reconstruct`)."""
    from dataclasses import replace

    from rawsigma.analysis.tomo.sources import select_frames, split_selection

    path, sel = split_selection(str(projections))
    proj, info = read_stack(path, what="projection stack")
    if sel is None:
        return proj, info
    proj = select_frames(proj, sel, str(projections), path)  # range checked
    if isinstance(sel, int):
        proj = proj[None]  # one frame, still a stack
    sel_text = str(projections)[len(str(path)) :]
    layout = f"{info.layout}, frames {sel_text} selected"
    return proj, replace(info, shape=proj.shape, n_frames=proj.shape[0], layout=layout)


def _check_dark_frames(proj: Any, prof: Any, projections: Path) -> Any:
    """``prof``; frames with no light among the projections are refused (`InputFileError`).

    A file holding the projections and its dark frames (the real OPT frames: 7
    projections, a dark, a flat and a hot-pixel frame) was scored with the darks
    reconstructed as views. A frame whose 99th percentile lies within 6 read-noise σ
    of the profile's offset saw no light.
    """
    import numpy as np
    from rawsigma.errors import InputFileError

    o = float(np.median(prof.offset))
    r = max(float(np.median(prof.read_noise)), 0.5)
    p99 = np.percentile(proj.reshape(proj.shape[0], -1), 99, axis=1)
    dark = np.flatnonzero(p99 - o < 6 * r)
    if not dark.size:
        return prof
    from rawsigma.analysis.tomo.sources import split_selection

    path, sel = split_selection(str(projections))
    start = 0 if sel is None else sel.start or 0 if isinstance(sel, slice) else -1
    edges = [-1, *dark.tolist(), proj.shape[0]]  # the longest run of lit frames
    i, j = max(zip(edges[:-1], edges[1:], strict=True), key=lambda e: e[1] - e[0])
    hint = f", e.g. '{path}[{start + i + 1}:{start + j}]'" if start >= 0 else ""
    shown = ", ".join(str(start + k if start >= 0 else k) for k in dark[:8])
    raise InputFileError(
        f"{projections}: frame{'s' if dark.size > 1 else ''} {shown}"
        f"{', ...' if dark.size > 8 else ''} of {path if start >= 0 else 'the selection'} "
        "saw no light (99th "
        f"percentile within 6σ of the offset {o:g} ADU: dark frames?); give the "
        f"projections only{hint}"
    )


def _tomo_profile(
    profile: Path | None, proj: Any, offset: float | None, projections: Path, console: Any
) -> Any:
    """The profile file, or one estimated from the first 16 projections (`_check_dark_frames`)."""
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.errors import InputFileError, RawsigmaError

    if profile is not None:
        return _check_dark_frames(proj, CameraProfile.load(profile), projections)
    from rawsigma.analysis.noisemodel.estimate import estimate_profile as _estimate

    side = min(proj.shape[1:])
    tile = 64 if side >= 256 else 32 if side >= 64 else 16
    try:
        prof = _estimate(proj[:16], tile=tile, offset=offset, source=str(projections))
    except (RawsigmaError, ValueError) as exc:
        msg = estimate_advice(str(exc).replace(f"{projections}: ", ""), projections, ("--offset",))
        raise InputFileError(f"{projections}: cannot estimate a profile: {msg}") from None
    advise_estimate_warning(prof, projections, ("--offset",))  # shown in the report
    console.print(
        "[yellow]profile estimated from the projections (no calibration)[/]", soft_wrap=True
    )
    from .profile_cmd import offset_warning

    if warning := offset_warning(prof):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    return _check_dark_frames(proj, prof, projections)


def _print_tomo_summary(result: Any, console: Any) -> None:
    """Plaque count and one line per version."""
    console.print(f"  {result.n_objects} plaques in the raw reconstruction ({result.segmenter})")
    for v in result.versions:
        verdict = "within noise" if v.verdict["within_noise"] else "exceeds noise"
        w = v.verdict["worst"]
        console.print(
            f"  {v.spec:<14} {v.ratio:6.1f}:1  {verdict:<14} worst {w[0]} ε={w[1]:.2f}",
            soft_wrap=True,
        )
        eps = ", ".join(f"{n.replace('_', ' ')} {_global_eps(g)}" for n, g in v.globals.items())
        console.print(f"  {'':<14} global ε: {eps}", soft_wrap=True, highlight=False)
        if v.verdict.get("systematic_note"):  # as `score`'s summary
            console.print(f"    {v.verdict['systematic_note']}", soft_wrap=True,
                          highlight=False, markup=False)  # fmt: skip


def _global_eps(g: dict) -> str:
    """A global's ε, or its change when every replica gave the same value (σ = 0)."""
    import math

    eps = float(g["epsilon"])
    if math.isfinite(eps):
        return f"{eps:+.2f}"
    if g.get("sigma_raw") == 0:
        return f"Δ {float(g['delta']):+g} (σ 0: the replicas all agree)"
    return "n/a"
