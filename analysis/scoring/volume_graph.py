"""A volume's replicas × codecs as one task graph: :func:`score_volume_tasks`.

The same experiment as :func:`rawsigma.analysis.scoring.volume.score_volume`, cut
into named tasks run by :func:`rawsigma.analysis.outofcore.taskrun.run_tasks` (a
local thread pool, or the workers of a ``dask.distributed`` cluster):

- the driver checks the inputs, trains the segmenter (once, on the raw volume and
  its annotations), computes the tissue mask and writes the inputs every task
  reads into ``workdir/inputs`` (``raw.npy``; ``replicas.npy``: every replica,
  synthesised plane by plane from the same random stream as in memory);
- one task per version: ``raw``, ``replica_000`` …, ``codec_00_<spec>`` … (a
  codec task encodes and decodes the raw volume itself). Each segments and
  measures its volume and writes ``labels.npy``, ``table.npz``, ``outcome.json``
  and ``features.npy`` (the scoring feature maps), plus ``decoded.npy`` and the
  codec's ratio for a codec, into ``workdir/tasks/<name>`` atomically when it
  ends. A re-run reuses the written results (same run key); a task that fails
  is retried, then named (:class:`VolumeTasksFailedError`), the others kept;
- then ε, Δ, the leave-one-out null and the calibrated verdict are computed from
  the written results with the in-memory steps (``volume_steps``): the same
  numbers as ``score_volume``.

With ``chunks``, each task segments and measures its volume chunk by chunk
(:func:`rawsigma.analysis.outofcore.pipeline.segment_measure_chunked`: the
classifier's features exist for one chunk at a time; labels and tables equal the
in-memory ones), and feature ε is computed by one more round of chunk tasks over
the written volumes (:func:`rawsigma.analysis.outofcore.featurestats.feature_epsilon_chunked`:
raw, replicas one at a time, codecs; ``workdir/features``), equal to the in-memory
feature ε up to float rounding, its worst-channel maps in zarr arrays.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.scoring.inputs import resolve_plan
from rawsigma.analysis.scoring.per_image import StageClock, raw_noise_sigma
from rawsigma.analysis.scoring.runner import CONTROL_SPEC
from rawsigma.analysis.scoring.volume import (
    VOLUME_SIGMAS,
    _check_inputs,
    _synthesize,
    _tissue_info,
    train_segmenter,
)
from rawsigma.analysis.scoring.volume_steps import (
    VolumeResult,
    _CodecScorer,
    _Decoded,
    _Outcome,
    _process,
    _replica_reference,
    _Run,
    assemble_result,
    tolerance_search,
)
from rawsigma.errors import RawsigmaError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rawsigma.analysis.scoring.plans import ScorePlan

__all__ = [
    "VolumeTasksFailedError",
    "run_version_tasks",
    "score_volume_tasks",
    "volume_task_names",
]

RUN_FILE = "run.json"
CONTROL_DESCRIPTION = "held-out raw-equivalent replica"  # as score_volume's


class VolumeTasksFailedError(RawsigmaError):
    """Some tasks of a volume run failed (named); the written ones are kept."""

    def __init__(self, message: str, failed: dict[str, str]) -> None:
        super().__init__(message)
        self.failed = failed


def _safe(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@=-]", "_", spec)


def volume_task_names(plan: ScorePlan) -> dict[str, tuple[str, Any]]:
    """Task name → (kind, key) of a run: raw, every replica, every codec of ``plan``."""
    names: dict[str, tuple[str, Any]] = {"raw": ("raw", None)}
    for i in range(plan.n_replicas):
        names[f"replica_{i:03d}"] = ("replica", i)
    for j, spec in enumerate(plan.codecs):
        names[f"codec_{j:02d}_{_safe(spec)}"] = ("codec", spec)
    return names


@dataclass
class _TaskContext:
    """What every task needs (pickled to the workers)."""

    inputs: str
    profile: Any
    plan: Any
    segment: Any
    spacing: tuple[float, float, float]
    tissue: dict
    control_seed: np.random.SeedSequence
    chunks: tuple[int, int, int] | None = None


@dataclass
class _PluginModel:
    """A plug-in segmenter named by its spec, loaded where it runs.

    A ``file.py:function`` plug-in is loaded as a module the workers cannot import,
    so the spec (with an absolute path) travels instead of the function.
    """

    spec: str

    def __call__(self, vol: np.ndarray) -> np.ndarray:
        from rawsigma.analysis.scoring.inputs import load_model

        return load_model(self.spec)(vol)


def _portable(model: Any, plan: ScorePlan, segment: Any) -> Any:
    """The segmenter to send to the tasks: a plug-in spec travels as `_PluginModel`."""
    spec = model if model is not None else plan.model
    if not isinstance(spec, str):
        return segment
    head, sep, tail = spec.rpartition(":")
    if sep and Path(head).is_file():
        spec = f"{Path(head).resolve()}:{tail}"
    elif Path(spec).is_file():
        spec = str(Path(spec).resolve())
    return _PluginModel(spec)


@dataclass
class _Local:
    """A `_process` context inside a task (its own clock: locks do not pickle)."""

    segment: Any
    plan: Any
    spacing: tuple[float, float, float]
    tissue: dict
    clock: StageClock = field(default_factory=StageClock)


def _version(tmp: Path, kind: str, key: Any, ctx: _TaskContext) -> np.ndarray:
    """The task's volume; a codec's decoded volume is written to ``tmp`` with its ratio."""
    from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs

    raw = np.load(Path(ctx.inputs) / "raw.npy", mmap_mode="r")
    if kind == "raw":
        return raw
    if kind == "replica":
        return np.load(Path(ctx.inputs) / "replicas.npy", mmap_mode="r")[key]
    vol = np.asarray(raw)
    if key == CONTROL_SPEC:
        rng = np.random.default_rng(ctx.control_seed)
        dec = _synthesize(vol, ctx.profile, 1, rng, ctx.plan.centre)[0]
        meta = {"ratio": 1.0, "n_bytes": vol.size * 2, "description": CONTROL_DESCRIPTION}
    else:
        codec = parse_codecs(key, profile=ctx.profile)[0]
        getattr(codec, "prepare", lambda _p: None)(lambda *_a: None)
        data = codec.encode(vol)
        dec = np.asarray(codec.decode(data))
        meta = {"ratio": compression_ratio(vol, data), "n_bytes": len(data),
                "description": codec.description}  # fmt: skip
    np.save(tmp / "decoded.npy", dec)
    (tmp / "codec.json").write_text(json.dumps(meta))
    return dec


def _chunked_outcome(vol: np.ndarray, tmp: Path, ctx: _TaskContext) -> _Outcome:
    """Segment and measure chunk by chunk (synchronous dask inside the task)."""
    import dask
    import dask.array as da
    from rawsigma.analysis.outofcore.pipeline import segment_measure_chunked
    from rawsigma.analysis.scoring.volume_steps import _globals3d

    clf = getattr(ctx.segment, "__self__", None)
    with dask.config.set(scheduler="synchronous"):
        labels, table = segment_measure_chunked(
            da.from_array(vol, chunks=ctx.chunks), clf, tmp / "chunked",
            spacing=ctx.spacing, min_size=ctx.plan.min_size or 0,
            threshold=ctx.plan.threshold, chunks=ctx.chunks,
        )  # fmt: skip
        lab = np.asarray(labels.compute())
    shutil.rmtree(tmp / "chunked", ignore_errors=True)
    table.pop("bbox", None)  # the keys of measure3d
    n = len(table["label"])
    return _Outcome(lab, table, _globals3d(table, ctx.tissue["volume"]), np.empty(0, np.float32), n)


def _version_task(tmp: Path, kind: str, key: Any, ctx: _TaskContext) -> None:
    """One task: segment, measure (and feature maps) of one version, written to ``tmp``."""
    t0 = time.perf_counter()
    vol = _version(tmp, kind, key, ctx)
    if ctx.chunks is not None:
        out = _chunked_outcome(np.asarray(vol), tmp, ctx)
    else:
        out = _process(np.asarray(vol), _Local(ctx.segment, ctx.plan, ctx.spacing, ctx.tissue))
    np.save(tmp / "labels.npy", out.labels)
    columns: dict[str, Any] = {k: np.asarray(v) for k, v in out.table.items()}
    np.savez(tmp / "table.npz", **columns)
    np.save(tmp / "features.npy", out.features)
    info = {"globals": out.globals, "n_components": out.n_components,
            "seconds": time.perf_counter() - t0, "chunked": ctx.chunks is not None}  # fmt: skip
    (tmp / "outcome.json").write_text(json.dumps(info))


def _read_outcome(d: Path, features: bool = True) -> _Outcome:
    info = json.loads((d / "outcome.json").read_text())
    with np.load(d / "table.npz") as z:
        table = {k: z[k] for k in z.files}
    feats = np.load(d / "features.npy", mmap_mode="r") if features else np.empty(0, np.float32)
    return _Outcome(np.load(d / "labels.npy"), table, info["globals"], feats, info["n_components"])


# ----------------------------------------------------------------------------- driver
def _run_key(vol: np.ndarray, profile: Any, plan: ScorePlan, extra: list[Any]) -> str:
    """Fingerprint of a run: a re-run reuses task results only with the same key."""
    h = hashlib.sha256()
    h.update(repr((vol.shape, str(vol.dtype))).encode())
    step = max(1, vol.nbytes // (1 << 24))  # at most 16 MiB of the volume's bytes
    h.update(np.ascontiguousarray(vol).view(np.uint8).reshape(-1)[::step].tobytes())
    h.update(str(getattr(profile, "profile_id", "")).encode())
    h.update(plan.model_dump_json().encode())
    h.update(json.dumps(extra, default=str).encode())
    return h.hexdigest()[:16]


def _prepare_workdir(work: Path, key: str, resume: bool, notes: list[str]) -> None:
    """Keep ``work``'s results only for the same run key and ``resume``."""
    work.mkdir(parents=True, exist_ok=True)
    run_file = work / RUN_FILE
    old = json.loads(run_file.read_text()).get("key") if run_file.exists() else None
    if old is not None and (old != key or not resume):
        if old != key and resume:
            notes.append(f"Task results in {work} were from another run: recomputed.")
        for sub in ("tasks", "inputs", "features"):
            shutil.rmtree(work / sub, ignore_errors=True)
    run_file.write_text(json.dumps({"key": key}))


def _write_inputs(inputs: Path, vol: np.ndarray, profile: Any, plan: ScorePlan, seed: Any) -> None:
    """``raw.npy`` and ``replicas.npy`` (the in-memory replicas, plane by plane)."""
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    if (inputs / "replicas.npy").exists() and (inputs / "raw.npy").exists():
        return
    inputs.mkdir(parents=True, exist_ok=True)
    tmp = inputs / ".replicas.npy.tmp"
    reps = np.lib.format.open_memmap(tmp, "w+", vol.dtype, (plan.n_replicas,) + vol.shape)
    rng = np.random.default_rng(seed)
    for z in range(vol.shape[0]):
        reps[:, z] = synthesize(vol[z], profile, plan.n_replicas, rng, plan.centre)
    reps.flush()
    del reps
    np.save(inputs / ".raw.tmp.npy", vol)
    (inputs / ".raw.tmp.npy").replace(inputs / "raw.npy")
    tmp.replace(inputs / "replicas.npy")


def _chunked_features(work: Path, specs: dict[str, str], ctx: _TaskContext, opts: dict) -> Any:
    """Feature ε of the codecs ``specs`` (spec → task name), chunk by chunk, in ``work``."""
    from rawsigma.analysis.outofcore.featurestats import feature_epsilon_chunked

    inputs = Path(ctx.inputs)
    decoded = {s: str(inputs.parent / "tasks" / n / "decoded.npy") for s, n in specs.items()}
    assert ctx.chunks is not None
    return feature_epsilon_chunked(
        str(inputs / "raw.npy"), str(inputs / "replicas.npy"), decoded, work,
        sigmas=ctx.plan.score_sigmas, spacing=ctx.spacing, chunks=ctx.chunks, **opts,
    )  # fmt: skip


@dataclass
class _GraphPoints:
    """Tolerance-search points as tasks of the graph (`volume_steps.tolerance_search`).

    A point is one more codec task (``tolerance_<spec>``; a spec of the plan reuses
    its task), scored like the plan's codecs. A point keeps only its ratio and
    verdict, which feature ε does not enter: on the chunked path its feature ε is not
    computed (no second pass over the replicas per point).
    """

    work: Path
    ctx: _TaskContext
    opts: dict
    existing: dict[str, str]  # spec → task name of the plan's codecs
    run: Any = None
    scorer: Any = None

    def encode(self, spec: str) -> tuple[float, str]:
        """Run the point's codec task; its compression ratio and task name."""
        from rawsigma.analysis.outofcore.taskrun import run_tasks

        name = self.existing.get(spec, f"tolerance_{_safe(spec)}")
        if spec not in self.existing:
            task = {name: (_version_task, ("codec", spec, self.ctx))}
            o = {k: v for k, v in self.opts.items() if k != "progress"}
            failed = run_tasks(task, self.work / "tasks", **o).failed
            if failed:
                raise RawsigmaError(failed[name])
        return json.loads((self.work / "tasks" / name / "codec.json").read_text())["ratio"], name

    def score(self, spec: str, name: str) -> Any:
        """Score the point's written outcome (the plan's decoded volumes left as they were)."""
        d = self.work / "tasks" / name
        meta = json.loads((d / "codec.json").read_text())
        dec = np.load(d / "decoded.npy", mmap_mode="r")
        kept = self.run.decoded.get(spec)
        self.run.decoded[spec] = _Decoded(dec, meta["ratio"], meta["n_bytes"], meta["description"])
        feats: tuple[dict, dict] | None = None
        try:
            outcome = _read_outcome(d, features=self.ctx.chunks is None)
            if self.ctx.chunks is not None:
                feats = ({}, {})
            return self.scorer.score_outcome(spec, outcome, feats)
        finally:
            if kept is None:
                del self.run.decoded[spec]
            else:
                self.run.decoded[spec] = kept


def _reduce(
    run: _Run,
    tasks: Path,
    names: dict[str, tuple[str, Any]],
    feats: Any = None,
    points: _GraphPoints | None = None,
) -> VolumeResult:
    """ε, Δ, null and verdict from the written task results (the in-memory steps).

    ``feats``: the chunked path's feature ε (`_chunked_features`), else None;
    ``points``: the tolerance search's points as tasks.
    """
    from rawsigma.analysis.scoring import standard_score as sc

    t0 = time.perf_counter()
    raw = _read_outcome(tasks / "raw")
    chunked = raw.features.size == 0  # no scoring feature maps: zero channels
    no_features = np.zeros(raw.labels.shape + (0,), np.float32)
    if chunked:
        raw.features = no_features
    stats = sc.FeatureStats()
    replicas = []
    for name, (kind, _key) in names.items():
        if kind == "replica":
            rep = _read_outcome(tasks / name)
            stats.add(no_features if chunked else rep.features)
            rep.features = np.empty(0, np.float32)
            replicas.append(rep)
    ref = _replica_reference(raw, replicas, stats, run)
    if chunked:
        ref.feature_names = list(feats.names) if feats is not None else []
    outcomes = {}
    for name, (kind, spec) in names.items():
        if kind == "codec":
            d = tasks / name
            meta = json.loads((d / "codec.json").read_text())
            dec = np.load(d / "decoded.npy", mmap_mode="r")
            run.decoded[spec] = _Decoded(dec, meta["ratio"], meta["n_bytes"], meta["description"])
            outcomes[spec] = _read_outcome(d)
            if chunked:
                outcomes[spec].features = raw.features
    scorer = _CodecScorer(run, ref, raw_noise_sigma(run.vol, run.profile))
    results = [
        scorer.score_outcome(spec, o, (feats.scores[spec], feats.worst[spec]) if chunked else None)
        for spec, o in outcomes.items()
    ]
    run.timings["reduce"] = time.perf_counter() - t0
    tolerance = {}
    if points is not None:
        points.run, points.scorer = run, scorer
        tolerance = tolerance_search(run, points.encode, points.score)
    return assemble_result(run, ref, results, tolerance)


def run_version_tasks(
    task: Any,
    ctx: Any,
    names: dict[str, tuple[str, Any]],
    work: Path,
    report: Callable[[str, int, int], None],
    notes: list[str],
    **run: Any,
) -> None:
    """Run ``task(tmp, kind, key, ctx)`` for every version of ``names`` on `run_tasks`.

    ``run`` holds `run_tasks`' client, workers, retries and resume. Progress goes to
    ``report("tasks", done, total)``; reused results are noted in ``notes``.

    Raises
    ------
    VolumeTasksFailedError
        Some tasks failed after their retries: named with their one-line reasons.
    """
    from rawsigma.analysis.outofcore.taskrun import run_tasks

    tasks = {n: (task, (kind, k, ctx)) for n, (kind, k) in names.items()}
    report("tasks", 0, len(tasks))
    outcome = run_tasks(tasks, work / "tasks", progress=lambda _n, d, t: report("tasks", d, t),
                        **run)  # fmt: skip
    if outcome.failed:
        why = "; ".join(f"{n}: {r}" for n, r in outcome.failed.items())
        raise VolumeTasksFailedError(
            f"{len(outcome.failed)} of {len(tasks)} tasks failed ({why}); the "
            f"{len(tasks) - len(outcome.failed)} others are in {work / 'tasks'} (a re-run "
            "reuses them)",
            outcome.failed,
        )
    if outcome.reused:
        notes.append(f"{len(outcome.reused)} of {len(tasks)} task results reused from {work}.")


def score_volume_tasks(
    volume: np.ndarray,
    profile: Any,
    workdir: str | Path,
    *,
    labels: np.ndarray | None = None,
    spacing: tuple[float, float, float] | None = None,
    plan: ScorePlan | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    model: Any = None,
    tissue: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    reference_points: np.ndarray | None = None,
    feature_sigmas: tuple[float, ...] = VOLUME_SIGMAS,
    spacing_source: str | None = None,
    client: Any = None,
    task_threads: int = 1,
    retries: int = 1,
    resume: bool = True,
    chunks: tuple[int, int, int] | None = None,
    **plan_fields: Any,
) -> VolumeResult:
    """Score codecs on one raw volume as a task graph whose results are written to disk.

    Parameters
    ----------
    volume, profile, labels, spacing, plan, model, tissue, reference : see below
        As :func:`rawsigma.analysis.scoring.volume.score_volume`; so are
        ``reference_points``, ``feature_sigmas``, ``spacing_source``, ``plan_fields``.
    workdir : path
        ``inputs/`` and ``tasks/<name>/`` go here (on a cluster: a file system every
        worker sees). Kept after the run: a re-run with the same inputs and settings
        reuses every task result already written.
    progress : callable(stage, done, total), optional
        ``("tasks", done, total)`` as each task ends, plus the driver's stages.
    client : dask.distributed.Client, optional
        Run the tasks on this cluster; default ``task_threads`` local threads.
    task_threads : int
        Local threads running tasks without a client (``plan.workers`` is the
        training's threads).
    retries : int
        Extra attempts of a failed task (a task lost with its worker is resubmitted).
    resume : bool
        Reuse the results of an earlier run of the same key (False: redo every task).
    chunks : (cz, cy, cx), optional
        Segment and measure each version chunk by chunk (trained forest only).

    Returns
    -------
    VolumeResult
        Equal to ``score_volume``'s (timings aside); ``timings["tasks"]`` is the graph.

    Raises
    ------
    VolumeTasksFailedError
        Some tasks failed after their retries: named with their one-line reasons.
    """
    from rawsigma.errors import UsageError

    plan = resolve_plan(labels, model, plan, plan_fields, "score_volume_tasks")
    report = progress or (lambda stage, done, total: None)
    t_all, timings, notes = time.perf_counter(), {}, []  # type: ignore[var-annotated]
    vol, labels, sp, spacing_source = _check_inputs(
        volume, profile, labels, spacing, spacing_source, reference, tissue, plan, notes
    )
    if chunks is not None and labels is None:
        raise UsageError("the chunked path (--chunks) needs the trained forest (--labels)")
    synthesis_seed, control_seed, classifier_seed = np.random.SeedSequence(plan.seed).spawn(3)
    plan, objects_info, segment, seg_desc = train_segmenter(
        vol, labels, model, plan, sp, feature_sigmas, classifier_seed, report, timings
    )
    if labels is None:
        segment = _portable(model, plan, segment)
    tissue_info = _tissue_info(vol, sp, tissue)
    work = Path(workdir).resolve()  # workers elsewhere need absolute paths
    key = _run_key(vol, profile, plan, [sp, seg_desc, tissue_info, list(feature_sigmas), chunks])
    _prepare_workdir(work, key, resume, notes)
    t0 = time.perf_counter()
    report("synthesis", 0, 1)
    _write_inputs(work / "inputs", vol, profile, plan, synthesis_seed)
    timings["synthesis"] = time.perf_counter() - t0
    report("synthesis", 1, 1)
    ctx = _TaskContext(str(work / "inputs"), profile, plan, segment, sp, tissue_info,
                       control_seed, chunks)  # fmt: skip
    names = volume_task_names(plan)
    t0 = time.perf_counter()
    run_version_tasks(
        _version_task,
        ctx,
        names,
        work,
        report,
        notes,
        client=client,
        workers=task_threads,
        retries=retries,
        resume=resume,
    )
    timings["tasks"] = time.perf_counter() - t0
    feats = None
    specs = {k: n for n, (kind, k) in names.items() if kind == "codec"}
    opts = dict(client=client, workers=task_threads, retries=retries, resume=resume,
                progress=report)  # fmt: skip
    if chunks is not None:
        t0 = time.perf_counter()
        feats = _chunked_features(work / "features" / "codecs", specs, ctx, opts)
        timings["feature_epsilon"] = time.perf_counter() - t0
        notes.append(
            f"Out of core: every version segmented and measured in chunks of {chunks} voxels; "
            f"feature ε computed chunk by chunk ({feats.n_chunks} chunks, filters read with "
            "their halo, replicas folded one at a time)."
        )
    run = _Run(
        vol=vol, profile=profile, reps=np.empty((0,) + vol.shape, vol.dtype), decoded={},
        segment=segment, plan=plan, spacing=sp, spacing_source=spacing_source,
        tissue=tissue_info, reference=reference, reference_points=reference_points,
        report=report, timings=timings, notes=notes, objects_info=objects_info, t_all=t_all,
        segmenter=seg_desc,
    )  # fmt: skip
    return _reduce(run, work / "tasks", names, feats, _GraphPoints(work, ctx, opts, specs))
