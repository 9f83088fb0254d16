"""``rawsigma score VOLUME``: the 3D path of ``score`` (one (Z, Y, X) volume).

In memory by default; with ``--scheduler`` (dask.distributed), ``--chunks`` or a volume
too large for memory, as a task graph (`rawsigma.analysis.scoring.volume_graph`) whose
results go to ``OUT/work`` as they complete: a failed run names its failed tasks and
keeps the others for the re-run; ``OUT/work`` is removed once the report is written.

A file is scored as a volume when ``--spacing`` or ``--axes`` is given, or when the
file declares a ``Z`` axis (OME-TIFF, OME-Zarr, a JSON description, an HDF5/zarr
``axes`` attribute) and no ``--index`` picks one frame of it.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def is_volume(image: Path, index: int | None, spacing: str | None, axes: str | None) -> bool:
    """Whether ``score`` should take the 3D path for this file and these options."""
    if spacing is not None or axes is not None:
        return True
    if index is not None:
        return False
    from rawsigma.volread import declared_axes

    return "Z" in declared_axes(image)


def read_points(path: Path) -> np.ndarray:
    """(n, 3) voxel positions (z, y, x) from a CSV with columns named z, y, x."""
    from rawsigma.errors import InputFileError

    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    keys = {k.strip().lower(): k for k in (rows[0] if rows else {})}
    if not rows or not {"z", "y", "x"} <= set(keys):
        raise InputFileError(f"{path}: a points CSV needs a header with columns z, y, x")
    try:
        return np.array([[float(r[keys[a]]) for a in "zyx"] for r in rows], float)
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: non-numeric point coordinate ({exc})") from None


def _read_labels(path: Path, axes: str | None, shape: tuple[int, ...], what: str) -> np.ndarray:
    from rawsigma.errors import ImageMismatchError
    from rawsigma.volread import read_volume

    lab, _ = read_volume(path, axes=axes, what=what)
    if lab.shape != shape:
        raise ImageMismatchError(
            f"{path}: {what} shape {lab.shape} (Z, Y, X) differs from the volume's {shape}"
        )
    return lab


def _profile(profile, exposure, vol: np.ndarray, image: Path, console):  # type: ignore[no-untyped-def]
    if profile is not None:
        from rawsigma.calib.profile import CameraProfile

        from .integrity import at_exposure

        return at_exposure(CameraProfile.load(profile), exposure, profile)
    from rawsigma.analysis.noisemodel.estimate import MIN_BLOCKS, estimate_profile
    from rawsigma.analysis.scoring.volume import check_raw_volume
    from rawsigma.errors import InputFileError, RawsigmaError

    from .params import advise_estimate_warning, estimate_advice

    check_raw_volume(vol, None, str(image))
    tile = 64 if min(vol.shape[1:]) >= 256 else 32
    n, h, w = vol.shape  # few small planes: smaller blocks (not "tile must be in [16, 16]")
    while tile > 16 and n * (h // tile) * (w // tile) < MIN_BLOCKS:
        tile //= 2
    try:
        prof = estimate_profile(vol, tile=tile, source=str(image))
    except (RawsigmaError, ValueError) as exc:
        msg = estimate_advice(str(exc) if str(image) in str(exc) else f"{image}: {exc}", image)
        raise InputFileError(f"cannot estimate a profile: {msg}") from None
    advise_estimate_warning(prof, image)
    console.print("[yellow]profile estimated from the volume's planes (no bench calibration)[/]")
    return prof


def run_score_volume(o: dict[str, Any]) -> Path:
    """Body of ``rawsigma score`` for a volume (``o``: the command's options)."""
    import contextlib
    import os
    import shutil

    from rawsigma.analysis.reporting.report3d import VOLUME_RESULT_FILES, write_volume_report
    from rawsigma.errors import OutputExistsError, UsageError
    from rawsigma.fileio import check_output_dir, output_lock

    from .params import check_profile_choice

    out: Path = o["out"]
    check_output_dir(out)
    existing = [f for f in VOLUME_RESULT_FILES if (out / f).exists()]
    if existing and not o["force"]:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force"
        )
    if (o["labels"] is None) == (o["model"] is None):
        raise UsageError("give exactly one of --labels or --model")
    check_profile_choice(o["profile"], o["estimate_profile"])
    if o["index"] is not None:
        raise UsageError("--index picks one 2-D frame; a volume (--spacing/--axes) is scored whole")
    created = not out.exists()
    try:
        result = _run(o)
    except BaseException as exc:  # failed or interrupted: leave no empty directory behind
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if isinstance(exc, KeyboardInterrupt) and _tasks_kept(out / "work"):
            from .console import print_interrupted

            print_interrupted(_tasks_kept_line(out, o["force"], existing))
        raise
    from .integrity import LOSSY_NOTE, lossy_derived

    if lossy_derived(o["image"]):  # first in the notes: terminal and report
        result.notes.insert(0, "WARNING: " + LOSSY_NOTE.format(
            image=o["image"], consequence="every codec is scored against a volume that "
            "was compressed already, not against the camera's raw values"))  # fmt: skip
    stage = out / ".report.tmp"
    try:
        with output_lock(out / "report.html"):
            shutil.rmtree(stage, ignore_errors=True)
            try:
                write_volume_report(result, stage, force=True)
                (out / "figures").mkdir(exist_ok=True)
                for png in sorted((stage / "figures").iterdir()):
                    os.replace(png, out / "figures" / png.name)
                for name in sorted(VOLUME_RESULT_FILES, key=lambda n: n == "report.html"):
                    os.replace(stage / name, out / name)
            finally:
                with contextlib.suppress(OSError):
                    shutil.rmtree(stage)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    shutil.rmtree(out / "work", ignore_errors=True)  # the task results: all in the report
    _summary(result, out / "report.html")
    return out / "report.html"


def _tasks_kept_line(out: Path, force: bool, existing: list[str]) -> str:
    """After Ctrl-C: where the finished tasks are, and which command continues them.

    ``existing``: the result files OUT held before (the command refuses them without
    --force, and with it redoes all).
    """
    line = f"no report; the finished tasks are kept in {out / 'work'}"
    if not force:
        return f"{line}: the same command continues them (--force redoes all)"
    if existing:  # without --force: refused; with it: all redone
        return f"{line}; the earlier results ({', '.join(existing)}) are unchanged"
    return f"{line}: the command without --force continues them"


def _tasks_kept(work: Path) -> int:
    """How many finished tasks of the task graph ``work`` holds (0: none, or no graph)."""
    tasks = work / "tasks"
    if not tasks.is_dir():
        return 0
    return sum(1 for t in tasks.iterdir() if not t.name.startswith(".") and t.is_dir())


def _run(o: dict[str, Any]):  # type: ignore[no-untyped-def]
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.analysis.scoring.volume import check_raw_volume, score_volume
    from rawsigma.errors import ImageMismatchError
    from rawsigma.fileio import check_output_dir
    from rawsigma.volread import open_volume, parse_spacing, read_volume
    from rich.console import Console

    from .console import stage_progress
    from .integrity import check_profile_defects
    from .params import check_codecs, codec_list, options_error

    console = Console(stderr=True)
    image: Path = o["image"]
    spacing = parse_spacing(o["spacing"]) if o["spacing"] is not None else None
    try:
        plan = ScorePlan(
            codecs=codec_list(o["codecs"]), n_replicas=o["replicas"], seed=o["seed"],
            centre=o["centre"], max_distance=o["max_distance"], min_size=o["min_size"],
            foreground_class=o["foreground_class"], classifier_preset=o["preset"],
            feature_preset=o["preset"], workers=o["workers"], model=o["model"],
            tolerance_search=[t for t in (o["tolerance_search"] or "").split(",") if t.strip()],
            n_estimators=o.get("trees"),
        )  # fmt: skip
    except ValueError as exc:
        raise options_error(exc) from None
    src, info = open_volume(image, axes=o["axes"], spacing=spacing)
    if src.shape[0] < 2:  # the 3D path squeezed its labels: a false "shape differs"
        raise ImageMismatchError(
            f"{image}: a volume of one plane {tuple(src.shape)}: 3D scoring needs 2 or more; "
            "score the plane as a 2D image (--index 0, without --spacing/--axes)"
        )
    chunks = choose_chunks(o.get("chunks"), src, plan)
    why_not = choose_driver(o.get("driver", "auto"), chunks, src.nbytes, _lazy_refusal(o))
    if why_not is None:
        return _run_lazy(o, src, info, plan, chunks, console)
    vol, info = read_volume(image, axes=o["axes"], spacing=spacing)
    console.print(f"read {info.describe()}", highlight=False, soft_wrap=True)
    if chunks is not None:
        console.print(f"driver in memory: {why_not}", highlight=False)
    if info.spacing is None:
        console.print(
            "[yellow]no voxel size in the file and no --spacing: isotropic 1 assumed "
            "(stated in the report)[/]",
            soft_wrap=True,
        )
    check_output_dir(o["out"], need_bytes=4_000_000 + 6 * vol.nbytes)
    prof = _profile(o["profile"], o["exposure"], vol, image, console)
    check_codecs(list(plan.codecs), prof, vol)
    check_profile_defects(prof, o["profile"] or "estimated profile")
    try:
        vol = check_raw_volume(vol, prof, str(image))
    except ImageMismatchError as exc:
        msg = str(exc)
        raise ImageMismatchError(msg if msg.startswith(str(image)) else f"{image}: {msg}") from None
    lab, ref, pts, tissue = _side_volumes(o, vol.shape)
    kw = dict(labels=lab, model=o["model"], spacing=info.spacing, plan=plan, reference=ref,
              feature_sigmas=feature_sigmas(o.get("sigmas")),
              reference_points=pts, spacing_source=info.spacing_source, tissue=tissue)  # fmt: skip
    if o.get("scheduler") is None and chunks is None:
        console.print("path: in memory (one process)", highlight=False)
        with stage_progress(console, 18) as progress, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = score_volume(vol, prof, progress=progress, **kw)
    else:
        result = _run_graph(o, vol, prof, chunks, kw, console)
    result.provenance.setdefault("execution", {"scheduler": None, "chunks": None})
    result.provenance["execution"].update(driver="in memory", driver_peak_rss_mb=peak_rss_mb())
    if ref is not None and o["instances"] and o["reference"] is None:
        result.reference["note"] = (
            "The classifier was trained on annotations derived from these labels (eroded "
            "cores and background rings), so this is agreement on the training volume."
        )
    result.provenance.update(
        image_file=str(image), image_read=info.as_dict(),
        labels_file=str(o["labels"]) if o["labels"] else None,
        reference_file=str(o["reference"]) if o["reference"] else None,
        mask_file=str(o["mask"]) if o.get("mask") else None,
        profile_file=str(o["profile"]) if o["profile"] else None,
    )  # fmt: skip
    return result


def _side_volumes(o: dict[str, Any], shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Annotations, reference labels or points, tissue mask of the in-memory driver."""
    from rawsigma.errors import ImageMismatchError

    lab = ref = pts = tissue = None
    if o["labels"] is not None:
        lab = _read_labels(o["labels"], o["axes"], shape, "label volume")
        from rawsigma.analysis.scoring.inputs import check_label_values

        check_label_values(lab, str(o["labels"]), instances=o["instances"])
        name = str(o["labels"])
        if o["instances"]:
            from rawsigma.analysis.segmentation.annotations import training_labels

            ref, lab = lab, training_labels(lab)
            name += " (the training labels made from its instances)"
        from rawsigma.analysis.scoring.inputs import check_labels

        # named here: the runner would call the file "labels"
        check_labels(lab, shape, name=name, foreground_class=o["foreground_class"])
    if o["reference"] is not None:
        if Path(o["reference"]).suffix.lower() == ".csv":
            pts, ref = read_points(o["reference"]), None
        else:
            ref = _read_labels(o["reference"], o["axes"], shape, "reference label volume")
    if o.get("mask") is not None:
        tissue = _read_labels(o["mask"], o["axes"], shape, "mask volume") != 0
        if not tissue.any():
            raise ImageMismatchError(f"{o['mask']}: the mask volume holds no tissue voxel")
    return lab, ref, pts, tissue


#: In-memory scoring holds about this many bytes per voxel beyond the versions
#: themselves (classifier feature blocks, scoring feature maps, labels, ε maps).
IN_MEMORY_BYTES_PER_VOXEL = 120
DEFAULT_CHUNKS = (32, 256, 256)


def available_memory() -> int:
    """Bytes of memory available now.

    ``MemAvailable``; physical memory elsewhere; 0 where neither is known (the chunked
    path).
    """
    from rawsigma._sysmem import meminfo_available, physical_memory

    available = meminfo_available()
    return available if available is not None else physical_memory() or 0


def choose_chunks(text: str | None, vol: Any, plan: Any) -> tuple[int, int, int] | None:
    """The chunks of the out-of-core path, or None (whole volumes).

    ``--chunks Z,Y,X`` when given; else :data:`DEFAULT_CHUNKS` when the in-memory run
    would not fit in half the available memory.
    """
    from rawsigma.errors import UsageError

    if text is not None:
        try:
            c = tuple(int(v) for v in text.split(","))
        except ValueError:
            c = ()
        if len(c) != 3 or min(c) < 1:
            raise UsageError(f"--chunks {text!r}: give three positive integers Z,Y,X")
        return c  # type: ignore[return-value]
    versions = 1 + plan.n_replicas + len(plan.codecs)
    need = vol.nbytes * versions + vol.size * IN_MEMORY_BYTES_PER_VOXEL
    if need <= available_memory() // 2:
        return None
    return tuple(min(n, c) for n, c in zip(vol.shape, DEFAULT_CHUNKS, strict=True))  # type: ignore[return-value]


def _run_graph(o, vol, prof, chunks, kw, console):  # type: ignore[no-untyped-def]
    """The task graph (``--scheduler``, ``--chunks`` or a volume too large for memory)."""
    from rawsigma.analysis.outofcore.taskrun import connect
    from rawsigma.analysis.scoring.volume_graph import score_volume_tasks
    from rawsigma.errors import UsageError

    from .console import stage_progress

    if chunks is not None and kw["labels"] is None:
        raise UsageError("--chunks (out of core) needs --labels: the trained forest is chunked")
    sched = o.get("scheduler")
    where = f"dask.distributed ({sched})" if sched else f"{o['workers']} local threads"
    how = f"chunks {','.join(map(str, chunks))}" if chunks else "whole volume per task"
    console.print(f"path: task graph on {where}, {how}", highlight=False)
    work = o["out"] / "work"
    with connect(sched, o["workers"]) as client, stage_progress(console, 18) as progress:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = score_volume_tasks(
                vol, prof, work, client=client, task_threads=o["workers"], chunks=chunks,
                resume=not o["force"], progress=progress, **kw,
            )  # fmt: skip
    result.provenance["execution"] = {"scheduler": sched or "local threads", "chunks": chunks,
                                      "workdir": str(work)}  # fmt: skip
    return result


def feature_sigmas(text: str | None) -> tuple[float, ...]:
    """``--sigmas`` as the classifier's feature scales (default ``VOLUME_SIGMAS``)."""
    import math

    from rawsigma.analysis.scoring.volume import VOLUME_SIGMAS
    from rawsigma.errors import UsageError

    if text is None:
        return VOLUME_SIGMAS
    try:
        s = tuple(float(v) for v in text.split(","))
    except ValueError:
        s = ()
    if not s or not all(math.isfinite(v) and 0.3 <= v <= 50 for v in s):
        raise UsageError(f"--sigmas {text!r}: give scales in finest voxels, each in [0.3, 50]")
    return s


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; ``ru_maxrss``)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _lazy_refusal(o: dict[str, Any]) -> str | None:
    """Why the chunked path must hold the volume in the driver (None: it need not)."""
    refusals = (
        ("model", "a plug-in --model segments whole volumes"),
        ("instances", "--instances derives annotations from the whole label volume"),
        ("reference", "--reference is compared with the whole raw labels"),
        ("estimate_profile", "--estimate-profile reads every plane"),
        ("tolerance_search", "--tolerance-search runs in the in-memory driver"),
    )
    for opt, why in refusals:
        if o.get(opt):
            return why
    return None


#: ``--driver auto`` reads the volume into the driver (replicas from one random stream,
#: as ``score_volume``) when the raw volume takes at most this share of the available
#: memory.
IN_MEMORY_DRIVER_SHARE = 0.125


def choose_driver(
    driver: str, chunks: tuple[int, int, int] | None, nbytes: int, refusal: str | None
) -> str | None:
    """Why the volume is read whole into the driver, or None for the lazy driver.

    ``driver`` is ``--driver``: ``lazy`` (refused with the reason when an option needs
    the whole volume), ``memory``, or ``auto`` (lazy on the chunked path when the raw
    volume is larger than :data:`IN_MEMORY_DRIVER_SHARE` of the available memory).
    """
    from rawsigma.errors import UsageError

    if driver not in ("auto", "lazy", "memory"):
        raise UsageError(f"--driver {driver!r}: give auto, lazy or memory")
    if driver == "lazy":
        if chunks is None:
            raise UsageError("--driver lazy needs the chunked path: give --chunks Z,Y,X")
        if refusal is not None:
            raise UsageError(f"--driver lazy: {refusal}")
        return None
    if driver == "memory" or chunks is None:
        return "--driver memory" if driver == "memory" else "no chunks"
    if refusal is not None:
        return refusal
    if nbytes <= available_memory() * IN_MEMORY_DRIVER_SHARE:
        return "the volume fits in memory (--driver lazy to not read it)"
    return None


def _run_lazy(o, src, info, plan, chunks, console):  # type: ignore[no-untyped-def]
    """The chunked path with a lazy driver: the volume is never read whole."""
    import shutil

    from rawsigma.analysis.scoring.volume_lazy import LazyInputs
    from rawsigma.errors import RawsigmaError
    from rawsigma.fileio import check_output_dir
    from rawsigma.volread import open_volume

    from .integrity import check_profile_defects
    from .params import check_codecs

    console.print(f"opened {info.describe()}", highlight=False, soft_wrap=True)
    if info.spacing is None:
        console.print("[yellow]no voxel size in the file and no --spacing: isotropic 1 assumed "
                      "(stated in the report)[/]", soft_wrap=True)  # fmt: skip
    # OUT/work holds every version (uint16) until feature ε, and each codec's float32 map
    versions = 4 + plan.n_replicas + 3 * len(plan.codecs)
    check_output_dir(o["out"], need_bytes=4_000_000 + 2 * math.prod(src.shape) * versions)
    prof = _profile(o["profile"], o["exposure"], None, o["image"], console)
    check_codecs(list(plan.codecs), prof)
    check_profile_defects(prof, o["profile"])
    lab, _ = open_volume(o["labels"], axes=o["axes"], integer=True, what="label volume")
    if tuple(lab.shape) != tuple(src.shape):
        from rawsigma.errors import ImageMismatchError

        raise ImageMismatchError(f"{o['labels']}: label volume shape {lab.shape} (Z, Y, X) "
                                 f"differs from the volume's {src.shape}")  # fmt: skip
    mask = None
    if o.get("mask") is not None:
        mask, _ = open_volume(o["mask"], axes=o["axes"], integer=False, what="mask volume")
        if tuple(mask.shape) != tuple(src.shape):
            from rawsigma.errors import ImageMismatchError

            raise ImageMismatchError(f"{o['mask']}: mask volume shape {mask.shape} (Z, Y, X) "
                                     f"differs from the volume's {src.shape}")  # fmt: skip
    inputs = LazyInputs(src, lab, mask, info.spacing, info.spacing_source)
    sched = o.get("scheduler")
    where = f"dask.distributed ({sched})" if sched else f"{o['workers']} local threads"
    console.print(f"path: task graph on {where}, chunks {','.join(map(str, chunks))}, lazy "
                  "driver (the volume is read block by block)", highlight=False)  # fmt: skip
    work = o["out"] / "work"
    try:
        result = _lazy_call(o, inputs, prof, work, chunks, plan, console)
    except (RawsigmaError, KeyboardInterrupt):
        if not (work / "tasks").exists():  # failed before any task: nothing worth keeping
            shutil.rmtree(work, ignore_errors=True)
        raise
    result.provenance["execution"] = {"scheduler": sched or "local threads", "chunks": chunks,
                                      "workdir": str(work), "driver": "lazy",
                                      "driver_peak_rss_mb": peak_rss_mb()}  # fmt: skip
    result.provenance.update(
        image_file=str(o["image"]), image_read=info.as_dict(), labels_file=str(o["labels"]),
        reference_file=None, mask_file=str(o["mask"]) if o.get("mask") else None,
        profile_file=str(o["profile"]),
    )  # fmt: skip
    return result


def _lazy_call(o, inputs, prof, work, chunks, plan, console):  # type: ignore[no-untyped-def]
    from rawsigma.analysis.outofcore.taskrun import connect
    from rawsigma.analysis.scoring.volume_lazy import score_volume_lazy

    from .console import stage_progress

    with (
        connect(o.get("scheduler"), o["workers"]) as client,
        stage_progress(console, 18) as progress,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return score_volume_lazy(inputs, prof, work, chunks=chunks, plan=plan, client=client,
                                       feature_sigmas=feature_sigmas(o.get("sigmas")),
                                       task_threads=o["workers"], resume=not o["force"],
                                       progress=progress)  # fmt: skip


def _summary(result, report: Path) -> None:  # type: ignore[no-untyped-def]
    import typer
    from rich.console import Console

    from .console import outputs_complete

    console = Console(stderr=True)
    outputs_complete()
    for note in result.notes:
        if note.upper().startswith("WARNING"):
            console.print(f"[bold red]{note}[/]", soft_wrap=True)
    info = result.objects_info
    console.print(
        f"  {result.n_objects} objects, 26-connected (min size {info.get('min_size')} voxels: "
        f"{info.get('min_size_source', '')})",
        soft_wrap=True,
        highlight=False,
    )
    ref = result.reference
    if ref.get("n_points") is not None:
        console.print(
            f"  reference points: {ref['n_points']}, inside an object {ref['points_in_object']}"
        )
    elif ref:
        console.print(
            f"  reference labels: F1 {ref['f1']:.3f} at IoU {ref['iou_threshold']:g} "
            f"({ref['tp']} matched of {ref['n_objects']} / {ref['n_reference']})"
        )
    for c in result.codecs:
        v = "within noise" if c.verdict["within_noise"] else "exceeds noise"
        w = c.verdict["worst"]
        cnt = c.globals["count"]
        console.print(
            f"  {c.spec:<14} {c.ratio:6.1f}:1  {v:<14} worst {w[0]} ε={w[1]:.2f} "
            f"| count {cnt['raw']:.0f} → {cnt['value']:.0f}",
            soft_wrap=True,
        )
        if c.verdict.get("systematic_note"):
            console.print(f"    {c.verdict['systematic_note']}", soft_wrap=True, highlight=False)
    for fam, t in result.tolerance.items():
        b = t["best"]
        best = f"{b['spec']} ({b['ratio']:.1f}:1)" if b else "none within noise"
        console.print(f"  tolerance {fam}: {best}", highlight=False)
    ex = result.provenance.get("execution") or {}
    console.print(f"  driver: {ex.get('driver', 'in memory')}, peak RSS {peak_rss_mb():.0f} MB",
                  highlight=False)  # fmt: skip
    typer.echo(f"report: {report}")
