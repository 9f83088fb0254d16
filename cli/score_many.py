"""``rawsigma score`` over many 2D fields (a folder, a multi-page file): one graph.

Every field is one named task (`rawsigma.analysis.outofcore.taskrun`): its report
is written into ``OUT/fields/<name>/`` when it completes (complete or absent), a
field that fails is reported by name and the others go on, a re-run keeps the
fields already done (``--force`` redoes them). Then ``OUT/summary.json`` and
``OUT/summary.html`` list every field's verdicts. ``--scheduler`` runs the same
tasks on a ``dask.distributed`` cluster (``local``: a LocalCluster of
``--workers`` processes).
"""

from __future__ import annotations

import html
import json
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rawsigma.errors import RawsigmaError

if TYPE_CHECKING:
    from pathlib import Path


class FieldsFailedError(RawsigmaError):
    """Some fields of a many-field run failed (named); the others are written."""


IMAGE_SUFFIXES = (".tif", ".tiff", ".npy", ".h5", ".hdf5", ".zarr")


@dataclass(frozen=True)
class Field:
    """One 2D field to score: a file, or one frame of a multi-page file."""

    name: str
    image: Path
    index: int | None
    labels: Path | None


def is_folder(path: Path) -> bool:
    """Tell whether ``path`` is a folder of fields (a directory, not a zarr store)."""
    if not path.is_dir() or path.suffix.lower() == ".zarr":
        return False
    return not any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))


def _is_image(p: Path) -> bool:
    name = p.name.lower()
    return not p.name.startswith(".") and name.endswith(IMAGE_SUFFIXES)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "field"


def _label_for(img: Path, labels: Path | None) -> Path | None:
    """The label file of image ``img`` in folder ``labels`` (never ``img`` itself).

    Raises
    ------
    InputFileError
        Two label files fit (``a.tif`` and ``a_labels.tif`` in a labels folder).
    """
    from rawsigma.errors import InputFileError

    if labels is None:
        return None
    stem = img.name.split(".")[0]
    found = [
        cand
        for cand in sorted(labels.iterdir())
        if _is_image(cand)
        and cand.name.split(".")[0] in (stem, f"{stem}_labels", f"{stem}_label")
        and not (cand.exists() and img.exists() and cand.samefile(img))
    ]
    if len(found) > 1:
        names = ", ".join(c.name for c in found)
        raise InputFileError(f"{img}: more than one label file fits in {labels} ({names})")
    return found[0] if found else None


def list_fields(image: Path, labels: Path | None) -> list[Field]:
    """List the fields of a folder of images, or every frame of a multi-page file.

    Labels: a folder holding, per image, a file with the same stem (or
    ``<stem>_labels``); for a multi-page file, a multi-page label file with one
    frame per field.

    Raises
    ------
    InputFileError
        No images, a missing or ambiguous label file, frame counts that differ.
    """
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread

    if image.is_dir():
        if labels is not None and not labels.is_dir():
            raise InputFileError(f"{labels}: with a folder of images, --labels is a folder")
        imgs = [
            p for p in sorted(image.iterdir()) if _is_image(p) and (labels is None or p != labels)
        ]
        if labels is not None:
            imgs = [p for p in imgs if not p.name.split(".")[0].endswith(("_labels", "_label"))]
        if not imgs:
            raise InputFileError(f"{image}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        fields = []
        for p in imgs:
            lab = _label_for(p, labels)
            if labels is not None and lab is None:
                raise InputFileError(f"{p}: no label file of the same name in {labels}")
            fields.append(Field(_safe(p.name.split(".")[0]), p, None, lab))
        return fields
    arr, info = imread(image, what="image")
    n = int(arr.shape[0]) if arr.ndim == 3 else 1
    if labels is not None:
        lab_arr, _ = imread(labels, integer=True, what="label image")
        nl = int(lab_arr.shape[0]) if lab_arr.ndim == 3 else 1
        if nl != n:
            raise InputFileError(f"{labels}: {nl} label frames for the {n} fields of {image}")
    stem = _safe(image.name.split(".")[0])
    return [Field(f"{stem}_f{i:03d}", image, i if n > 1 else None, labels) for i in range(n)]


def _score_field(tmp: Path, field: Field, options: dict[str, Any]) -> None:
    """Score one field into ``tmp`` (the task's fresh directory)."""
    import contextlib
    import io

    opts = dict(options, image=field.image, index=field.index, labels=field.labels)
    score_one = opts.pop("score_one")
    # per-field terminal lines would interleave; the report holds them all
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        score_one(dict(opts, out=tmp, force=True))


def _field_summary(name: str, d: dict) -> dict[str, Any]:
    codecs = []
    for c in d.get("codecs", []):
        v = c.get("verdict", {})
        codecs.append(
            {
                "spec": c.get("spec"),
                "ratio": c.get("compression_ratio"),
                "within_noise": v.get("within_noise"),
                "worst": v.get("worst"),
            }
        )
    prov = d.get("provenance", {})
    return {
        "name": name,
        "image": prov.get("image_file"),
        "index": prov.get("image_index"),
        "report": f"fields/{name}/report.html",
        "n_objects": d.get("n_objects_raw"),
        "codecs": codecs,
    }


# options that do not change a field's results
_RUN_NEUTRAL = ("workers", "score_one", "quiet")


def run_record(image: Path, labels: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """What identifies a many-field run: its images, labels and scoring options."""
    from pathlib import Path

    rec = {
        "image": str(Path(image).resolve()),
        "labels": None if labels is None else str(Path(labels).resolve()),
        **{k: v for k, v in sorted(options.items()) if k not in _RUN_NEUTRAL},
    }
    if rec.get("profile") is not None:
        rec["profile"] = str(Path(rec["profile"]).resolve())
    return json.loads(json.dumps(rec, default=str))


def check_same_run(out: Path, record: dict[str, Any], force: bool) -> None:
    """Refuse (without ``--force``) an ``OUT`` that holds another run's results.

    A re-run of the same command keeps the fields already done; another run (other
    images, labels or options) would replace the summary and mix its fields with the
    earlier ones. The record is ``OUT/run.json`` (`start_run`, written before the
    first field: an interrupted run has no summary yet) or the summary's ``run``.
    With ``force`` the other run's fields and summary are removed first: replaced one
    field at a time, an interrupted run left them beside its own, which the next run
    (its record now in ``run.json``) kept as its own.

    Raises
    ------
    OutputExistsError
        ``OUT/run.json`` or ``OUT/summary.json`` records another run, naming what differs.
    """
    import shutil

    from rawsigma.errors import OutputExistsError

    old = _recorded_run(out)
    if not isinstance(old, dict) or old == record:  # summaries before the record: kept
        return
    if force:
        shutil.rmtree(out / "fields", ignore_errors=True)
        for name in ("summary.json", "summary.html"):
            (out / name).unlink(missing_ok=True)
        return
    diff = [k for k in dict.fromkeys([*record, *old]) if record.get(k) != old.get(k)]
    raise OutputExistsError(
        f"{out}: holds the results of another run ({', '.join(diff)} differ); "
        "use --force to replace them, or another --out"
    )


#: the record of the run an ``OUT`` holds (`check_same_run`)
RUN_FILE = "run.json"


def _recorded_run(out: Path) -> Any:
    """The record of the run ``out`` holds (`start_run`, else the summary's), or None."""
    for path, key in ((out / RUN_FILE, None), (out / "summary.json", "run")):
        try:
            doc = json.loads(path.read_text())
            return doc if key is None else doc.get(key)
        except (OSError, ValueError, AttributeError):
            continue
    return None


def start_run(out: Path, record: dict[str, Any]) -> None:
    """Write ``OUT/run.json`` before the first field is scored (`check_same_run`)."""
    from rawsigma.fileio import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / RUN_FILE, force=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2))


def write_summary(
    out: Path, names: list[str], failed: dict[str, str], run: dict[str, Any] | None = None
) -> Path:
    """``summary.json`` and ``summary.html`` from the fields' ``results.json``."""
    from rawsigma.fileio import atomic_write

    fields = []
    for n in names:
        res = out / "fields" / n / "results.json"
        if res.exists():
            fields.append(_field_summary(n, json.loads(res.read_text())))
    specs = sorted({c["spec"] for f in fields for c in f["codecs"]}, key=str)
    summary = {
        "n_fields": len(names),
        "n_scored": len(fields),
        "failed": failed,
        "codecs_within_noise_in_every_field": [
            s
            for s in specs
            if fields
            and all(any(c["spec"] == s and c["within_noise"] for c in f["codecs"]) for f in fields)
        ],
        "fields": fields,
        "run": run,
    }
    with atomic_write(out / "summary.json", force=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    rows = []
    for f in fields:
        cells = []
        for s in specs:
            c = next((c for c in f["codecs"] if c["spec"] == s), None)
            ok = c is not None and c["within_noise"]
            cells.append(f"<td class={'ok' if ok else 'bad'}>{'within' if ok else 'exceeds'}</td>")
        rows.append(
            f"<tr><td><a href='{html.escape(f['report'])}'>{html.escape(f['name'])}</a></td>"
            f"<td>{f['n_objects']}</td>{''.join(cells)}</tr>"
        )
    for n, why in failed.items():
        rows.append(
            f"<tr><td>{html.escape(n)}</td><td colspan={len(specs) + 1} class=bad>failed: "
            f"{html.escape(why)}</td></tr>"
        )
    head = "".join(f"<th>{html.escape(s)}</th>" for s in specs)
    page = (
        "<!doctype html><meta charset=utf-8><title>rawsigma summary</title><style>"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd}.ok{color:#060}.bad{color:#a00}"
        f"</style><h1>Scoring summary: {len(fields)} of {len(names)} fields</h1>"
        f"<table><tr><th>field</th><th>objects</th>{head}</tr>{''.join(rows)}</table>"
    )
    with atomic_write(out / "summary.html", force=True) as tmp:
        tmp.write_text(page)
    return out / "summary.html"


def _say_fields_kept(fields: Path, total: int, force: bool = False) -> None:
    """After Ctrl-C: say which finished fields are kept (nothing to say: none)."""
    from .console import print_interrupted

    done = [d for d in fields.iterdir() if d.is_dir() and not d.name.startswith(".")] if (
        fields.is_dir()
    ) else []  # fmt: skip
    how = ("the command without --force scores the rest" if force
           else "the same command scores the rest (--force redoes all)")  # fmt: skip
    if done:
        print_interrupted(f"no summary; {len(done)} of {total} fields are written in {fields}: "
                          f"{how}")  # fmt: skip


def run_many(
    image: Path,
    labels: Path | None,
    out: Path,
    scheduler: str | None,
    workers: int,
    force: bool,
    index: int | None = None,
    **options: Any,
) -> Path:
    """Score every field as one task graph; returns ``OUT/summary.html``.

    Raises
    ------
    UsageError
        ``--index`` with many fields.
    FieldsFailedError
        Some fields failed (their names and reasons; the others are written).
    """
    from rawsigma.analysis.outofcore.taskrun import connect, run_tasks
    from rawsigma.errors import UsageError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if index is not None:
        raise UsageError("--index selects one frame: leave it out to score every field")
    fields = list_fields(image, labels)
    record = run_record(image, labels, options)
    check_same_run(out, record, force)
    start_run(out, record)
    console = Console(file=sys.stderr)  # fixed: a field's own lines are captured
    where = f"on {scheduler}" if scheduler else "locally"
    console.print(f"{len(fields)} fields of {image}, scored {where}", highlight=False, markup=False)
    # locally: one field at a time, each with --workers threads; on a cluster: one
    # single-threaded field per worker process
    field_workers = 1
    opts = dict(options, workers=workers if scheduler is None else 1)
    tasks = {f.name: (_score_field, (f, opts)) for f in fields}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        job = bar.add_task("fields", total=len(tasks))
        try:
            with connect(scheduler, workers) as client:
                outcome = run_tasks(
                    tasks,
                    out / "fields",
                    client=client,
                    workers=field_workers,
                    retries=1,
                    resume=not force,
                    progress=lambda name, done, total: _advance(bar, job, done),
                )
        except KeyboardInterrupt:
            _say_fields_kept(out / "fields", len(tasks), force)
            raise
    summary = write_summary(out, list(tasks), outcome.failed, record)
    # no markup: names, errors and paths are text ('[/x]' raised MarkupError, '[b]' bold)
    for name in outcome.reused:
        console.print(f"  {name}: kept from an earlier run", highlight=False, markup=False)
    for name, why in outcome.failed.items():
        console.print(f"  {name}: FAILED: {why}", style="bold red", highlight=False, markup=False)
    console.print(f"summary: {summary}", highlight=False, markup=False)
    if outcome.failed:
        raise FieldsFailedError(
            f"{len(outcome.failed)} of {len(tasks)} fields failed "
            f"({', '.join(outcome.failed)}); the others are in {out / 'fields'}"
        )
    return summary


def _advance(bar: Any, job: Any, done: int) -> None:
    """One more field done; a Ctrl-C a library swallowed stops here (fields so far kept)."""
    from .console import raise_swallowed_interrupt

    raise_swallowed_interrupt()
    bar.update(job, completed=done)
