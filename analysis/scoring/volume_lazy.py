"""A volume scored out of core, never held whole in the driver: :func:`score_volume_lazy`.

The chunked path of ``rawsigma score VOLUME`` (``--chunks``, or a volume too large
for memory). The same experiment and task graph as
:func:`~rawsigma.analysis.scoring.volume_graph.score_volume_tasks` with ``chunks``,
but every step reads the volume block by block:

1. the raw source is copied into ``workdir/inputs/raw.zarr`` (the run's chunks) one
   z-slab at a time and checked on the way; the annotations likewise
   (`volume_source`);
2. the forest is trained from the drawn annotated voxels only (`fit_lazy`: the
   same forest as in memory); the default minimum size comes from the annotated
   regions labelled chunk-wise; the tissue (load's denominator) is counted with the
   exact chunked Otsu of the smoothed volume (`tissue_voxels`);
3. one task per version reads ``raw.zarr``, makes its version chunk by chunk into
   its own zarr store (`volume_versions`: per-plane random streams for replicas,
   slab-wise codecs with the whole volume's 8-bit range), segments and measures
   it with `segment_measure_chunked`, keeps its labels and its version as zarr
   stores and, for a codec, the Δ/σ summary and projections;
4. feature ε: `feature_epsilon_chunked` over ``raw.zarr``, the replicas' and the
   codecs' version stores, one chunk (with each scale's filter halo) and one
   replica at a time, into ``workdir/features/codecs`` (the worst channel's ε
   maps as zarr arrays); then the version stores no later step reads are removed
   (all but the 8-bit ones, which the quantisation note reads);
5. the driver scores from the tables (matching, ε, null, verdict: the in-memory
   steps), counting splits and merges and the 8-bit quantisation note from the
   label stores slab by slab. The result's ``image``, labels and feature ε maps
   are zarr-backed objects the report reads slab by slab.

Raw and codec versions equal the chunked path on a volume in memory (same labels and
tables); replicas differ only by their random stream (see `volume_versions`), and so
does feature ε, whose σ comes from the replicas: it equals the in-memory feature ε of
the same raw, replica and codec volumes (test).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.analysis.scoring.results import CodecResult
from rawsigma.analysis.scoring.runner import CONTROL_SPEC
from rawsigma.analysis.scoring.volume import (
    TISSUE_SMOOTHING,
    VOLUME_SIGMAS,
    _resolve_min_size,
    _resolve_spacing,
    _segmenter,
)
from rawsigma.analysis.scoring.volume_graph import (
    CONTROL_DESCRIPTION,
    _prepare_workdir,
    run_version_tasks,
    volume_task_names,
)
from rawsigma.analysis.scoring.volume_steps import (
    VolumeResult,
    _CodecScorer,
    _Outcome,
    _rel_spacing,
    _replica_reference,
    _Run,
    assemble_result,
)
from rawsigma.analysis.scoring.volume_versions import PixelEpsSummary, ZarrVolume

__all__ = ["LazyCodecResult", "score_volume_lazy"]


@dataclass
class LazyCodecResult(CodecResult):
    """A codec's scores whose Δ/σ is a `PixelEpsSummary` (no per-voxel map in memory)."""

    def to_dict(self) -> dict:
        """As ``CodecResult.to_dict``, the Δ/σ mean and RMS from the summary."""
        base = CodecResult(**{f.name: getattr(self, f.name) for f in fields(CodecResult)})
        base.pixel_eps = np.zeros(0, np.float32)
        d = base.to_dict()
        d["pixel_epsilon"] = self.pixel_eps.summary()  # type: ignore[attr-defined]
        return d


@dataclass
class _LazyContext:
    """What every task needs (pickled to the workers)."""

    raw: str
    profile: Any
    plan: Any
    segment: Any
    spacing: tuple[float, float, float]
    tissue: dict
    synthesis_seed: np.random.SeedSequence
    control_seed: np.random.SeedSequence
    chunks: tuple[int, int, int]
    ranges: dict[str, Any]


def _make_version(tmp: Path, kind: str, key: Any, ctx: _LazyContext) -> str:
    from rawsigma.analysis.scoring import volume_versions as vv

    if kind == "raw":
        return ctx.raw
    dest = tmp / "version.zarr"
    if kind == "replica":
        vv.write_replica(ctx.raw, dest, ctx.profile, ctx.synthesis_seed, key, ctx.plan.centre)
        return str(dest)
    if key == CONTROL_SPEC:
        vv.write_replica(ctx.raw, dest, ctx.profile, ctx.control_seed, None, ctx.plan.centre)
        meta = {"ratio": 1.0, "n_bytes": int(np.prod(_shape(ctx.raw))) * 2,
                "description": CONTROL_DESCRIPTION}  # fmt: skip
    else:
        meta = vv.write_codec(ctx.raw, dest, key, ctx.profile, ctx.ranges.get(key))
    (tmp / "codec.json").write_text(json.dumps(meta))
    return str(dest)


def _shape(path: str) -> tuple[int, ...]:
    import zarr

    return tuple(zarr.open_array(path, mode="r").shape)


def _lazy_task(tmp: Path, kind: str, key: Any, ctx: _LazyContext) -> None:
    """One version: made, segmented and measured chunk by chunk; results to ``tmp``."""
    import dask
    from rawsigma.analysis.outofcore.pipeline import segment_measure_chunked
    from rawsigma.analysis.scoring.volume_steps import _globals3d
    from rawsigma.analysis.scoring.volume_versions import pixel_eps_stats

    t0 = time.perf_counter()
    version = _make_version(tmp, kind, key, ctx)
    clf = getattr(ctx.segment, "__self__", None)
    with dask.config.set(scheduler="synchronous"):
        _, table = segment_measure_chunked(
            version, clf, tmp / "chunked", spacing=ctx.spacing,
            min_size=ctx.plan.min_size or 0, threshold=ctx.plan.threshold, chunks=ctx.chunks,
        )  # fmt: skip
    os.replace(tmp / "chunked" / "labels.zarr", tmp / "labels.zarr")
    shutil.rmtree(tmp / "chunked", ignore_errors=True)
    if kind == "codec":
        np.savez(tmp / "eps.npz", **pixel_eps_stats(ctx.raw, version, ctx.profile))
    # version.zarr stays until feature ε is computed (`_lazy_features`)
    table.pop("bbox", None)
    columns: dict[str, Any] = {k: np.asarray(v) for k, v in table.items()}
    np.savez(tmp / "table.npz", **columns)
    info = {"globals": _globals3d(table, ctx.tissue["volume"]), "n_components": len(table["label"]),
            "seconds": time.perf_counter() - t0, "chunked": True, "lazy": True}  # fmt: skip
    (tmp / "outcome.json").write_text(json.dumps(info))


def _read(d: Path) -> _Outcome:
    info = json.loads((d / "outcome.json").read_text())
    with np.load(d / "table.npz") as z:
        table = {k: z[k] for k in z.files}
    labels: Any = ZarrVolume(d / "labels.zarr")
    return _Outcome(labels, table, info["globals"], np.zeros(labels.shape + (0,), np.float32),
                    info["n_components"])  # fmt: skip


# ----------------------------------------------------------------------------- reduce
def quantisation_note_chunked(
    spec: str, raw: str, dec: str, labels: str, profile: Any
) -> dict | None:
    """``runchecks.quantisation_note`` slab by slab (σ medians from 0.05 %-wide log bins)."""
    from rawsigma.analysis.scoring import runchecks as rc
    from rawsigma.analysis.scoring.per_image import raw_noise_sigma
    from rawsigma.analysis.scoring.volume_source import slabs
    from rawsigma.analysis.scoring.volume_versions import TASK_SLAB_FACTOR, _open

    if not spec.startswith("8bit"):
        return None
    a_src, d_src, l_src = _open(raw), _open(dec), _open(labels)
    edges = np.geomspace(1e-3, 1e5, 36000)
    h_obj, h_bg = np.zeros(edges.size + 1, np.int64), np.zeros(edges.size + 1, np.int64)
    levels = np.zeros(0, np.int64)
    for z in slabs(a_src.shape, 2, 2 * TASK_SLAB_FACTOR):  # whole planes (the profile)
        a = np.asarray(a_src[z])
        levels = np.union1d(levels, np.unique(np.asarray(d_src[z])))
        sig = raw_noise_sigma(a, profile)
        obj = np.asarray(l_src[z]) > 0
        fin = np.isfinite(sig)
        h_obj += np.bincount(np.searchsorted(edges, sig[obj & fin]), minlength=edges.size + 1)
        h_bg += np.bincount(np.searchsorted(edges, sig[~obj & fin]), minlength=edges.size + 1)

    def median(h: np.ndarray) -> float:
        if not h.sum():
            return math.nan
        k = int(np.searchsorted(np.cumsum(h), (h.sum() + 1) / 2))
        return float(edges[min(k, edges.size - 1)])

    # stand-ins with the same levels and σ medians as the whole volume
    sig = np.array([median(h_obj), median(h_bg)], np.float32)
    return rc.quantisation_note(spec, levels.astype(np.uint16), sig, np.array([1, 0]))


class _LazyScorer(_CodecScorer):
    """Scores a codec from its task's results (tables, Δ/σ summary, label stores)."""

    def score_lazy(
        self, spec: str, outcome: _Outcome, d: Path, raw: str, features: tuple[dict, dict]
    ) -> LazyCodecResult:
        """The codec's result from its task's outputs and the replica reference.

        ``features``: its feature ε per channel and worst channel's ε map.
        """
        from rawsigma.analysis.scoring.reference import score_version
        from rawsigma.analysis.scoring.volume_steps import _match

        ref, plan = self.reference, self.run.plan
        meta = json.loads((d / "codec.json").read_text())
        s = score_version(ref, outcome, _match(ref.raw, outcome, plan.max_distance), spec)
        with np.load(d / "eps.npz") as z:
            eps = PixelEpsSummary({k: z[k] if z[k].ndim else z[k].item() for k in z.files})
        quant = quantisation_note_chunked(spec, raw, str(d / "version.zarr"),
                                          ref.raw.labels.path, self.run.profile)  # fmt: skip
        return LazyCodecResult(
            spec, meta["description"], float(meta["ratio"]), int(meta["n_bytes"]),
            s.globals, s.objects, features[0], s.match, s.verdict, outcome.labels,
            eps, s.matched, quant, features[1],  # type: ignore[arg-type]
        )  # fmt: skip


def _reduce(
    run: _Run, tasks: Path, names: dict[str, tuple[str, Any]], raw: str, feats: Any
) -> VolumeResult:
    """ε, Δ, null and verdict from the written task results, slab by slab where voxels count.

    ``feats``: the codecs' feature ε (`_lazy_features`).
    """
    from rawsigma.analysis.scoring import standard_score as sc

    t0 = time.perf_counter()
    raw_o = _read(tasks / "raw")
    stats = sc.FeatureStats()
    replicas = []
    for name, (kind, _key) in names.items():
        if kind == "replica":
            rep = _read(tasks / name)
            stats.add(rep.features)
            replicas.append(rep)
    ref = _replica_reference(raw_o, replicas, stats, run)
    ref.feature_names = list(feats.names)
    scorer = _LazyScorer(run, ref, np.zeros(0, np.float32))
    results: list[CodecResult] = []
    for name, (kind, spec) in names.items():
        if kind == "codec":
            o = _read(tasks / name)
            fe = (feats.scores[spec], feats.worst.get(spec, {}))
            results.append(scorer.score_lazy(spec, o, tasks / name, raw, fe))
            run.report("codecs", len(results), sum(k == "codec" for k, _ in names.values()))
    run.timings["reduce"] = time.perf_counter() - t0
    run.vol = ZarrVolume(raw)  # type: ignore[assignment]
    return assemble_result(run, ref, results)


# ----------------------------------------------------------------------------- feature ε
FEATURES_DONE = "result.json"


def _lazy_features(
    work: Path, names: dict[str, tuple[str, Any]], ctx: _LazyContext, opts: dict, timings: dict
) -> Any:
    """Feature ε of every codec over the tasks' version stores, chunk by chunk.

    ``feature_epsilon_chunked`` reads ``raw.zarr``, the replicas' and the codecs'
    ``version.zarr`` (one chunk with its halo, one replica at a time) and writes its
    chunk results and the worst channels' maps under ``work/features/codecs``; the
    finished result is kept as ``result.json`` (a resumed run reuses it). Then every
    version store but the 8-bit codecs' (read by the quantisation note) is removed.
    ``timings["feature_epsilon"]``: its seconds.
    """
    from rawsigma.analysis.outofcore.featurestats import (
        ChunkedFeatureEpsilon,
        feature_epsilon_chunked,
    )
    from rawsigma.errors import RawsigmaError

    t0 = time.perf_counter()
    fdir, tasks = work / "features" / "codecs", work / "tasks"
    done = fdir / FEATURES_DONE
    store = {n: str(tasks / n / "version.zarr") for n in names}
    reps = [store[n] for n, (kind, _) in names.items() if kind == "replica"]
    codecs = {k: store[n] for n, (kind, k) in names.items() if kind == "codec"}
    if done.exists() and opts["resume"]:
        d = json.loads(done.read_text())
        feats = ChunkedFeatureEpsilon(d["names"], d["scores"], {}, d["n_chunks"])
    else:
        gone = [p for p in [*reps, *codecs.values()] if not Path(p).exists()]
        if gone:
            raise RawsigmaError(f"feature ε: {gone[0]} is missing (removed by hand?); run "
                                "again with --force")  # fmt: skip
        feats = feature_epsilon_chunked(ctx.raw, reps, codecs, fdir, sigmas=ctx.plan.score_sigmas,
                                        spacing=ctx.spacing, chunks=ctx.chunks, **opts)  # fmt: skip
        tmp = fdir / (FEATURES_DONE + ".tmp")
        tmp.write_text(json.dumps({"names": feats.names, "scores": feats.scores,
                                   "n_chunks": feats.n_chunks}))  # fmt: skip
        tmp.replace(done)
    feats.worst = _worst_maps(fdir, list(codecs))
    for n, (kind, key) in names.items():
        if kind == "replica" or (kind == "codec" and not str(key).startswith("8bit")):
            shutil.rmtree(tasks / n / "version.zarr", ignore_errors=True)
    timings["feature_epsilon"] = time.perf_counter() - t0
    return feats


def _worst_maps(fdir: Path, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each codec's worst-channel ε map, opened read-only from ``maps/NN.zarr``.

    ``NN`` is the codec's position in ``keys`` (`feature_epsilon_chunked`'s layout); the
    ``NN.json`` beside it names the channel written. A codec without a finite score has
    no map.
    """
    import zarr

    out: dict[str, dict[str, Any]] = {}
    for k, key in enumerate(keys):
        meta = fdir / "maps" / f"{k:02d}.json"
        store = fdir / "maps" / f"{k:02d}.zarr"
        if meta.exists() and store.exists():
            _sigma, name = json.loads(meta.read_text())
            out[key] = {name: zarr.open_array(str(store), mode="r")}
        else:
            out[key] = {}
    return out


@dataclass
class LazyInputs:
    """The file-backed inputs of :func:`score_volume_lazy`."""

    volume: Any  # rawsigma.volread.VolumeSource
    labels: Any  # VolumeSource of the sparse annotations
    mask: Any = None  # VolumeSource of a tissue mask, optional
    spacing: tuple[float, float, float] | None = None
    spacing_source: str | None = None


def _run_key(inp: LazyInputs, profile: Any, plan: Any, extra: list[Any]) -> str:
    import hashlib

    h = hashlib.sha256()
    for src in (inp.volume, inp.labels, inp.mask):
        if src is not None:
            st = os.stat(src.path)
            h.update(
                repr((src.path, src.key, src.shape, src.dtype, st.st_size, st.st_mtime_ns)).encode()
            )
    h.update(str(getattr(profile, "profile_id", "")).encode())
    h.update(plan.model_dump_json().encode())
    h.update(json.dumps(extra, default=str).encode())
    return h.hexdigest()[:16]


def _stage(inp: LazyInputs, inputs: Path, chunks: Any, profile: Any, plan: Any, report: Any) -> Any:
    """Raw and annotation stores (reused when complete), their statistics."""
    import pickle

    from rawsigma.analysis.scoring.volume_source import (
        limit_malloc_arenas,
        stage_annotations,
        stage_raw,
    )

    limit_malloc_arenas()  # the driver's first step: before its threads allocate
    done = inputs / "staged.pkl"
    if done.exists():
        return pickle.loads(done.read_bytes())
    inputs.mkdir(parents=True, exist_ok=True)
    report("staging", 0, 2)
    stats = stage_raw(inp.volume, inputs / "raw.zarr", chunks, profile)
    report("staging", 1, 2)
    ann = stage_annotations(inp.labels, inputs / "labels.zarr", chunks, stats.shape,
                            plan.foreground_class)  # fmt: skip
    report("staging", 2, 2)
    tmp = inputs / ".staged.tmp"
    tmp.write_bytes(pickle.dumps((stats, ann)))
    tmp.replace(done)
    return stats, ann


def score_volume_lazy(
    inputs: LazyInputs,
    profile: Any,
    workdir: str | Path,
    *,
    chunks: tuple[int, int, int],
    plan: Any = None,
    progress: Any = None,
    feature_sigmas: tuple[float, ...] = VOLUME_SIGMAS,
    client: Any = None,
    task_threads: int = 1,
    retries: int = 1,
    resume: bool = True,
    **plan_fields: Any,
) -> VolumeResult:
    """Score codecs on a raw volume in a file, chunk by chunk (see module notes).

    Parameters
    ----------
    inputs : LazyInputs
        The raw volume, the sparse annotations (a trained forest is required) and an
        optional tissue mask, as :class:`~rawsigma.volread.VolumeSource` objects.
    profile : CameraProfile
        Of the (Y, X) planes.
    workdir : path
        ``inputs/`` (zarr copies) and ``tasks/<name>/``, kept for a resumed run.
    chunks : (cz, cy, cx)
        Storage and processing chunks.
    plan, progress, feature_sigmas, client, task_threads, retries, resume
        As :func:`~rawsigma.analysis.scoring.volume_graph.score_volume_tasks`.

    Returns
    -------
    VolumeResult
        ``image`` and the labels are `ZarrVolume` objects in ``workdir``;
        ``provenance["execution"]["driver"]`` is ``"lazy"``.
    """
    from rawsigma.analysis.scoring.inputs import resolve_plan
    from rawsigma.analysis.scoring.volume_source import (
        annotation_region_sizes,
        fit_lazy,
        tissue_voxels,
    )
    from rawsigma.analysis.scoring.volume_versions import eight_bit_range

    plan = resolve_plan(True, None, plan, plan_fields, "score_volume_lazy")  # type: ignore[arg-type]
    report = progress or (lambda stage, done, total: None)
    t_all, timings, notes = time.perf_counter(), {}, []  # type: ignore[var-annotated]
    sp, spacing_source = _resolve_spacing(inputs.spacing, inputs.spacing_source, notes)
    synthesis_seed, control_seed, classifier_seed = np.random.SeedSequence(plan.seed).spawn(3)
    work = Path(workdir).resolve()
    # "feature ε": task directories keep their version stores for the feature ε pass
    key = _run_key(inputs, profile, plan, [sp, list(feature_sigmas), chunks, "feature ε"])
    _prepare_workdir(work, key, resume, notes)
    t0 = time.perf_counter()
    stats, ann = _stage(inputs, work / "inputs", chunks, profile, plan, report)
    timings["staging"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report("training", 0, 1)
    sizes = annotation_region_sizes(ann, work / "inputs" / "regions")
    plan, objects_info = _resolve_min_size(None, plan, sizes)
    seed = int(classifier_seed.generate_state(1)[0])
    segment, seg_desc = _segmenter(None, None, None, plan, sp, feature_sigmas, seed,  # type: ignore[arg-type]
                                   fit=lambda clf: fit_lazy(clf, stats.path, ann))  # fmt: skip
    timings["training"] = time.perf_counter() - t0
    report("training", 1, 1)
    t0 = time.perf_counter()
    sig = tuple(TISSUE_SMOOTHING / r for r in _rel_spacing(sp))
    n_tissue = tissue_voxels(stats.path, sig, inputs.mask)
    tissue = {
        "source": "given" if inputs.mask is not None else (
            f"Otsu threshold of the raw volume smoothed by a Gaussian of σ = "
            f"{TISSUE_SMOOTHING:g} finest voxels (chunk-wise, exact)"),
        "n_voxels": n_tissue, "volume": float(n_tissue * sp[0] * sp[1] * sp[2]),
    }  # fmt: skip
    timings["tissue"] = time.perf_counter() - t0
    from rawsigma.analysis.codecs.registry import parse_codecs

    ranges = {s: eight_bit_range(parse_codecs(s, profile=profile)[0], stats)
              for s in plan.codecs if s != CONTROL_SPEC}  # fmt: skip
    ctx = _LazyContext(stats.path, profile, plan, segment, sp, tissue, synthesis_seed,
                       control_seed, chunks, ranges)  # fmt: skip
    names = volume_task_names(plan)
    t0 = time.perf_counter()
    run_version_tasks(
        _lazy_task,
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
    opts = dict(client=client, workers=task_threads, retries=retries, resume=resume)
    feats = _lazy_features(work, names, ctx, {**opts, "progress": report}, timings)
    notes.append(
        f"Out of core, lazy driver: the volume was read block by block and never held "
        f"whole; every version made, segmented and measured in chunks of {chunks} voxels; "
        "replicas drawn plane by plane from per-plane random streams (not the in-memory "
        f"stream); feature ε computed chunk by chunk ({feats.n_chunks} chunks, filters read "
        "with their halo, replicas folded one at a time)."
    )
    run = _Run(
        vol=None, profile=profile, reps=np.empty((0, 0, 0, 0), np.uint16), decoded={},  # type: ignore[arg-type]
        segment=segment, plan=plan, spacing=sp, spacing_source=spacing_source, tissue=tissue,
        reference=None, reference_points=None, report=report, timings=timings,
        notes=notes, objects_info=objects_info, t_all=t_all, segmenter=seg_desc,
    )  # fmt: skip
    result = _reduce(run, work / "tasks", names, stats.path, feats)
    result.provenance["synthesis"] = (
        "per z plane with the 2D profile (broadcast over z); plane z of replica i drawn "
        "from SeedSequence(synthesis seed, spawn_key + (i, z)), the control replica from "
        "SeedSequence(control seed, spawn_key + (z,))"
    )
    return result
