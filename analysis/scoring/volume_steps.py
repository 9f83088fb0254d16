"""Steps of :func:`rawsigma.analysis.scoring.volume.score_volume`: segment, measure, score.

Each volume (raw, replicas, codec outputs) is segmented with the run's segmenter,
measured (:func:`~rawsigma.analysis.measurement.morphometry3d.measure3d`, physical
units) and its scoring feature maps computed; then replicas and codec outputs are
matched to the raw objects and scored as in 2D (see the ``volume`` module notes).
With ``plan.tolerance_search``, :func:`tolerance_search` then sweeps each codec family
with the 2D loop (:func:`rawsigma.analysis.scoring.tolerance.tolerance_sweep`).

The module also holds what both it and ``volume`` need (:class:`VolumeResult`,
:data:`DEFAULT_SPACING`, :func:`parameter_quantum3d`): ``volume`` imports this module,
never the other way round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
from rawsigma.analysis.measurement.matching import match_objects
from rawsigma.analysis.measurement.morphometry3d import PARAMETERS_3D
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.per_image import StageClock, drop_small, raw_noise_sigma
from rawsigma.analysis.scoring.plans import ScorePlan
from rawsigma.analysis.scoring.reference import ReplicaReference, codec_result, replica_reference
from rawsigma.analysis.scoring.results import CodecResult, ScoreResult
from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_names

__all__ = [
    "DEFAULT_SPACING",
    "VolumeResult",
    "assemble_result",
    "parameter_quantum3d",
    "score_run",
]

Segmenter = Callable[[np.ndarray], np.ndarray]
#: Voxel size assumed when none is given or found (stated in the report, warned).
DEFAULT_SPACING: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class VolumeResult(ScoreResult):
    """:class:`ScoreResult` of a volume: ``image`` is (Z, Y, X), plus the voxel size."""

    spacing: tuple[float, float, float] = DEFAULT_SPACING
    spacing_source: str = "default"
    tissue: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready results (``results.json``), with ``volume`` (spacing, tissue)."""
        d = super().to_dict()
        d["volume"] = {
            "shape_zyx": list(self.image.shape),
            "spacing_zyx": list(self.spacing),
            "spacing_source": self.spacing_source,
            "tissue": self.tissue,
            "connectivity": 26,
        }
        if self.reference:
            d["reference"] = self.reference
        return d


def _rel_spacing(spacing: tuple[float, float, float]) -> tuple[float, ...]:
    """Spacing in units of the finest voxel size (feature scales are in those units)."""
    m = min(spacing)
    return tuple(s / m for s in spacing)


def parameter_quantum3d(
    param: str, table: dict[str, np.ndarray], spacing: tuple[float, float, float]
) -> np.ndarray:
    """Per-object resolution of a 3D parameter: its change for one boundary voxel.

    Volume: one voxel volume; surface area: one mean voxel face area; centroid along
    an axis: that axis' voxel size × r/N (r = (3N/4π)^(1/3) voxels, N voxels);
    equivalent diameter: d/(3N) (its change for one voxel); sphericity: |ψ|/N^(2/3)
    (relative change of one surface voxel). Other parameters: 0.
    """
    dz, dy, dx = spacing
    vox = dz * dy * dx
    n = np.maximum(np.asarray(table["volume"], np.float64) / vox, 1.0)
    r = (3 * n / (4 * math.pi)) ** (1 / 3)
    if param == "volume":
        return np.full(n.size, vox)
    if param == "surface_area":
        return np.full(n.size, (dz * dy + dz * dx + dy * dx) / 3)
    if param in ("z", "y", "x"):
        return {"z": dz, "y": dy, "x": dx}[param] * r / n
    if param == "equiv_diameter":
        return np.asarray(table[param], np.float64) / (3 * n)
    if param == "sphericity":
        v = np.abs(np.asarray(table[param], np.float64))
        return np.where(np.isfinite(v), v, 0.0) / n ** (2 / 3)
    return np.zeros(n.size)


# ----------------------------------------------------------------------------- steps
class _Decoded(NamedTuple):
    """One processed version of the raw volume (a codec's output), ready to be scored."""

    volume: np.ndarray
    ratio: float
    n_bytes: int
    description: str


@dataclass
class _Outcome:
    labels: np.ndarray
    table: dict[str, np.ndarray]
    globals: dict[str, float]
    features: np.ndarray
    n_components: int = 0


@dataclass
class _Run:
    """One run: inputs, settings and bookkeeping shared by every volume's processing."""

    vol: np.ndarray
    profile: Any
    reps: np.ndarray
    decoded: dict[str, _Decoded]  # spec → decoded volume
    segment: Segmenter
    plan: ScorePlan
    spacing: tuple[float, float, float]
    spacing_source: str
    tissue: dict
    reference: np.ndarray | None
    reference_points: np.ndarray | None
    report: Callable[[str, int, int], None]
    timings: dict[str, float]
    notes: list[str]
    objects_info: dict
    t_all: float
    segmenter: str
    clock: StageClock = field(default_factory=StageClock)


def _globals3d(table: dict[str, np.ndarray], tissue_volume: float) -> dict[str, float]:
    vol = np.asarray(table["volume"], np.float64)
    count = int(vol.size)
    total = float(vol.sum())
    return {
        "count": float(count),
        "total_volume": total,
        "total_surface": float(np.sum(table["surface_area"])),
        "mean_volume": total / count if count else 0.0,
        "load": total / tissue_volume if tissue_volume > 0 else 0.0,
    }


class _SegmentContext(Protocol):
    """What segmenting and measuring one volume needs (a `_Run`, or a task's context)."""

    segment: Segmenter
    plan: ScorePlan
    spacing: tuple[float, float, float]
    tissue: dict
    clock: StageClock


def _process(vol: np.ndarray, ctx: _SegmentContext) -> _Outcome:
    from rawsigma.analysis.measurement.morphometry3d import measure3d
    from rawsigma.analysis.segmentation.classifier import labels_from_output
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_bank

    t = time.perf_counter()
    lab0 = labels_from_output(ctx.segment(vol), vol.shape, ctx.plan.threshold)
    lab = drop_small(lab0, ctx.plan.min_size or 0)
    t = ctx.clock.add("segment (sum over volumes)", t)
    table = measure3d(lab, ctx.spacing)
    t = ctx.clock.add("measure (sum over volumes)", t)
    feats, _ = feature_bank(
        vol,
        "ilastik",
        sigmas=ctx.plan.score_sigmas,
        features=SCORING_FEATURES,
        spacing=_rel_spacing(ctx.spacing),
        n_workers=1,
    )
    ctx.clock.add("scoring features (sum over volumes)", t)
    n0 = int(lab0.max()) if lab0.size else 0
    return _Outcome(lab, table, _globals3d(table, ctx.tissue["volume"]), feats, n0)


def _centroids(table: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([table["z"], table["y"], table["x"]]).astype(np.float64)


def _match(raw: _Outcome, other: _Outcome, max_distance: float):  # type: ignore[no-untyped-def]
    # labels on disk (the out-of-core path) count their splits and merges chunk-wise
    on_disk = getattr(raw.labels, "split_merge", None)
    res = match_objects(
        _centroids(raw.table) if len(raw.table["label"]) else np.zeros((0, 3)),
        _centroids(other.table) if len(other.table["label"]) else np.zeros((0, 3)),
        max_distance,
        ref_labels=None if on_disk else raw.labels,
        other_labels=None if on_disk else other.labels,
    )
    if on_disk is not None:
        res.n_split, res.n_merged = on_disk(other.labels)
    return res


def _segment_raw_and_replicas(
    pool: ThreadPoolExecutor, run: _Run
) -> tuple[_Outcome, list[_Outcome], sc.FeatureStats]:
    """Segment and measure raw and replicas in parallel; the replicas' feature statistics.

    Each replica's feature maps are added to the running statistics, then dropped.
    """
    raw_future = pool.submit(_process, run.vol, run)
    replica_futures = [pool.submit(_process, r, run) for r in run.reps]
    raw = raw_future.result()
    feature_stats = sc.FeatureStats()
    replicas = []
    for i, future in enumerate(replica_futures):
        outcome = future.result()
        feature_stats.add(outcome.features)
        outcome.features = np.empty(0, np.float32)
        replicas.append(outcome)
        run.report("replicas", i + 1, len(replica_futures))
    return raw, replicas, feature_stats


def _replica_reference(
    raw: _Outcome, replicas: list[_Outcome], feature_stats: sc.FeatureStats, run: _Run
) -> ReplicaReference:
    """Match every replica to raw: Δ, matched values and the calibrated null per parameter."""
    plan = run.plan
    names = feature_names(3, "ilastik", plan.score_sigmas, SCORING_FEATURES)
    if len(raw.table["label"]) == 0:
        run.notes.append("The raw segmentation has no objects: only global parameters are scored.")
    return replica_reference(
        raw, replicas, PARAMETERS_3D, lambda o: _match(raw, o, plan.max_distance),
        lambda k, table: parameter_quantum3d(k, table, run.spacing),
        feature_stats.sigma().astype(np.float32), names,
    )  # fmt: skip


@dataclass
class _CodecScorer:
    """Scores one decoded volume against the raw volume and its replicas."""

    run: _Run
    reference: ReplicaReference
    voxel_sigma: np.ndarray

    def score(self, spec: str) -> CodecResult:
        """Segment, measure and score the decoded volume of ``spec``."""
        return self.score_outcome(spec, _process(self.run.decoded[spec].volume, self.run))

    def score_outcome(
        self, spec: str, outcome: _Outcome, features: tuple[dict, dict] | None = None
    ) -> CodecResult:
        """Score the decoded volume of ``spec`` whose segmentation is ``outcome``.

        ``features``: its feature ε and worst-channel map computed elsewhere (chunk by
        chunk, `rawsigma.analysis.outofcore.featurestats`); default from the feature
        stacks of ``outcome`` and the reference.
        """
        ref = self.reference
        raw = ref.raw
        match = _match(raw, outcome, self.run.plan.max_distance)
        if features is None:
            feature_eps = sc.feature_epsilon(
                raw.features, ref.feature_sigma, outcome.features, ref.feature_names
            )
            worst_map = sc.worst_feature_map(
                feature_eps, raw.features, ref.feature_sigma, outcome.features, ref.feature_names
            )
        else:
            feature_eps, worst_map = features
        return codec_result(
            spec, self.run.decoded[spec], self.run.vol, self.voxel_sigma, ref, outcome, match,
            feature_eps, worst_map,
        )  # fmt: skip


def _score_codecs(pool: ThreadPoolExecutor, scorer: _CodecScorer) -> list[CodecResult]:
    """Score every decoded volume in parallel, in the plan's order."""
    futures = {spec: pool.submit(scorer.score, spec) for spec in scorer.run.decoded}
    results = []
    for i, future in enumerate(futures.values()):
        results.append(future.result())
        scorer.run.report("codecs", i + 1, len(futures))
    return results


def _complete_objects_info(run: _Run, raw: _Outcome, n_obj: int) -> None:
    """Add the raw object counts, sizes and count warnings (warnings lead the notes)."""
    sp = run.spacing
    sizes = raw.table["volume"] / (sp[0] * sp[1] * sp[2])  # voxels
    rc.complete_objects_info(
        run.objects_info, run.plan.min_size, raw.n_components, n_obj, sizes, run.notes, "voxels"
    )


def _reference_agreement(run: _Run, raw_labels: np.ndarray) -> dict:
    """The raw segmentation against the reference labels or points ({} without)."""
    from rawsigma.analysis.measurement.agreement import instance_agreement, point_agreement

    if run.reference is not None:
        return instance_agreement(raw_labels, np.asarray(run.reference), 0.5)
    if run.reference_points is not None:
        return point_agreement(raw_labels, run.reference_points)
    return {}


def _provenance(run: _Run) -> dict:
    """Where the results come from: software, profile, plan, seed, segmenter, spacing."""
    from rawsigma import fileio
    from rawsigma.analysis.noisemodel.synthesis import REPLICA_METHOD

    plan, profile = run.plan, run.profile
    return fileio.provenance(
        profile_id=profile.profile_id,
        profile_estimated=bool(profile.provenance.get("estimated", False)),
        plan=plan.model_dump(),
        seed=plan.seed,
        synthesis_centre=plan.centre,
        synthesis="per z plane with the 2D profile (broadcast over z)",
        replica_method=REPLICA_METHOD,
        segmenter=run.segmenter,
        n_replicas=plan.n_replicas,
        spacing_zyx=list(run.spacing),
        spacing_source=run.spacing_source,
    )


def score_run(run: _Run) -> VolumeResult:
    """Segment, measure and score raw, replicas and every codec output of ``run``."""
    timings = run.timings
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, run.plan.workers)) as pool:
        raw, replicas, feature_stats = _segment_raw_and_replicas(pool, run)
        timings["replicas"] = time.perf_counter() - t0
        ref = _replica_reference(raw, replicas, feature_stats, run)
        scorer = _CodecScorer(run, ref, raw_noise_sigma(run.vol, run.profile))
        t0 = time.perf_counter()
        results = _score_codecs(pool, scorer)
        timings["scoring_codecs"] = time.perf_counter() - t0
    tolerance = tolerance_search(run, *_in_memory_points(run, scorer))
    return assemble_result(run, ref, results, tolerance)


def _in_memory_points(run: _Run, scorer: _CodecScorer) -> tuple[Callable, Callable]:
    """``encode(spec)`` and ``score(spec, decoded)`` of a tolerance point, in memory."""
    from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs

    def encode(spec: str) -> tuple[float, _Decoded]:
        (codec,) = parse_codecs(spec, profile=run.profile)
        getattr(codec, "prepare", lambda _p: None)(lambda *_a: None)
        data = codec.encode(run.vol)
        ratio = compression_ratio(run.vol, data)
        return ratio, _Decoded(np.asarray(codec.decode(data)), ratio, len(data), codec.description)

    def score(spec: str, decoded: _Decoded) -> CodecResult:
        kept = run.decoded.get(spec)
        run.decoded[spec] = decoded
        try:
            return scorer.score(spec)
        finally:
            if kept is None:
                del run.decoded[spec]
            else:
                run.decoded[spec] = kept

    return encode, score


def tolerance_search(
    run: _Run,
    encode: Callable[[str], tuple[float, Any]],
    score: Callable[[str, Any], CodecResult],
) -> dict[str, dict]:
    """`tolerance.tolerance_sweep` (the 2D loop) of each family of ``run.plan.tolerance_search``.

    ``encode(spec)`` returns a point's compression ratio and a handle, ``score(spec,
    handle)`` its result (in memory: the decoded volume; on the task graph: a task).
    """
    from rawsigma.analysis.scoring.plans import TOLERANCE_SWEEPS
    from rawsigma.analysis.scoring.tolerance import tolerance_sweep

    t0 = time.perf_counter()
    out = {
        family: tolerance_sweep(family, TOLERANCE_SWEEPS[family], encode, score, run.report)
        for family in run.plan.tolerance_search
    }
    if out:
        run.timings["tolerance_search"] = time.perf_counter() - t0
    return out


def assemble_result(
    run: _Run,
    ref: ReplicaReference,
    results: list[CodecResult],
    tolerance: dict[str, dict] | None = None,
) -> VolumeResult:
    """The :class:`VolumeResult` of a run from its replica reference and codec results."""
    raw, timings = ref.raw, run.timings
    _complete_objects_info(run, raw, ref.n_objects)
    reference_info = _reference_agreement(run, raw.labels)
    rc.note_estimated_profile(run.profile, run.notes)
    timings["total"] = time.perf_counter() - run.t_all
    timings.update(run.clock.times)
    return VolumeResult(
        plan=run.plan, provenance=_provenance(run), image=run.vol,
        feature_names=ref.feature_names, codecs=results, timings=timings, notes=run.notes,
        objects_info=run.objects_info, spacing=run.spacing, tolerance=tolerance or {},
        spacing_source=run.spacing_source, tissue=run.tissue, reference=reference_info,
        **ref.result_fields(),
    )  # fmt: skip
