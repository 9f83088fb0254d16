"""Steps of :func:`rawsigma.analysis.scoring.volume.score_volume`: segment, measure, score.

Each volume (raw, replicas, codec outputs) is segmented with the run's segmenter,
measured (:func:`~rawsigma.analysis.measurement.morphometry3d.measure3d`, physical
units) and its scoring feature maps computed; then replicas and codec outputs are
matched to the raw objects and scored as in 2D (see the ``volume`` module notes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rawsigma.analysis.measurement.matching import match_objects
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.per_image import StageClock, drop_small
from rawsigma.analysis.scoring.plans import ScorePlan
from rawsigma.analysis.scoring.results import CodecResult, ScoreResult

__all__ = ["DEFAULT_SPACING", "VolumeResult", "parameter_quantum3d", "score_run"]

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
    decoded: dict[str, tuple[np.ndarray, float, int, str]]
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


def _process(vol: np.ndarray, ctx: _Run) -> _Outcome:
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
    return match_objects(
        _centroids(raw.table) if raw.labels.max() else np.zeros((0, 3)),
        _centroids(other.table) if other.labels.max() else np.zeros((0, 3)),
        max_distance,
        ref_labels=raw.labels,
        other_labels=other.labels,
    )


def score_run(run: _Run) -> VolumeResult:
    """Segment, measure and score raw, replicas and every codec output of ``run``."""
    from rawsigma import fileio
    from rawsigma.analysis.measurement.morphometry3d import PARAMETERS_3D
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_names

    ctx, plan, sp = run, run.plan, run.spacing
    vol, profile, reps, decoded = run.vol, run.profile, run.reps, run.decoded
    report, timings, notes, objects_info = run.report, run.timings, run.notes, run.objects_info
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, plan.workers)) as pool:
        raw_fut = pool.submit(_process, vol, ctx)
        rep_futs = [pool.submit(_process, r, ctx) for r in reps]
        raw = raw_fut.result()
        fstats = sc.FeatureStats()
        rep_out = []
        for i, f in enumerate(rep_futs):
            o = f.result()
            fstats.add(o.features)
            o.features = np.empty(0, np.float32)
            rep_out.append(o)
            report("replicas", i + 1, len(rep_futs))
        timings["replicas"] = time.perf_counter() - t0
        feat_names = feature_names(3, "ilastik", plan.score_sigmas, SCORING_FEATURES)
        sigma_f = fstats.sigma().astype(np.float32)
        n_obj = len(raw.table["label"])
        params = list(PARAMETERS_3D)
        if n_obj == 0:
            notes.append("The raw segmentation has no objects: only global parameters are scored.")
        rep_values = {k: np.full((len(rep_out), n_obj), np.nan) for k in params}
        rep_match, rep_deltas = [], {k: [] for k in params}
        for i, o in enumerate(rep_out):
            m = _match(raw, o, plan.max_distance)
            rep_match.append(m.summary())
            mv = sc.matched_values(o.table, m.ref_index, m.other_index, n_obj)
            for k in params:
                rep_values[k][i] = mv[k]
                rep_deltas[k].append(sc.delta(k, raw.table[k], mv[k]))
        replica_delta = {k: sc.delta_stats(np.concatenate(v)) for k, v in rep_deltas.items()}
        quanta = {k: parameter_quantum3d(k, raw.table, sp) for k in params} if n_obj else {}
        nulls = (
            {k: ns.loo_null(k, raw.table[k], rep_values[k], quanta[k]) for k in params}
            if n_obj and len(rep_out) >= 3
            else {}
        )
        var = np.maximum(profile.variance(vol.astype(np.float32)), 0) + 1.0 / 12.0
        sigma_pix = np.sqrt(var).astype(np.float32)
        sigma_pix[vol >= min(profile.max_adu, np.iinfo(vol.dtype).max)] = np.nan
        d_null = [r["n_unmatched_ref"] + r["n_unmatched_other"] for r in rep_match]

        def matching(ms: dict, obj: dict) -> dict | None:
            if n_obj == 0 or len(d_null) < 3:
                return None
            d = ms["n_unmatched_ref"] + ms["n_unmatched_other"]
            n_par = sum(1 for v in obj.values() if math.isfinite(v.robust)) + 1
            return ns.matching_test(d, d_null, n_par)

        def score_one(spec: str) -> CodecResult:
            dec, ratio, nbytes, desc = decoded[spec]
            o = _process(dec, ctx)
            m = _match(raw, o, plan.max_distance)
            mv = sc.matched_values(o.table, m.ref_index, m.other_index, n_obj)
            g = sc.score_globals(raw.globals, [r.globals for r in rep_out], o.globals)
            obj = (
                sc.score_objects(raw.table, rep_values, mv, params=params, quanta=quanta,
                                 null=nulls or None)
                if n_obj else {}
            )  # fmt: skip
            fe = sc.feature_epsilon(raw.features, sigma_f, o.features, feat_names)
            fmap = sc.worst_feature_map(fe, raw.features, sigma_f, o.features, feat_names)
            pe = (vol.astype(np.float32) - dec.astype(np.float32)) / sigma_pix
            return CodecResult(
                spec, desc, float(ratio), int(nbytes), g, obj, fe, m.summary(),
                sc.verdict(g, obj, matching=matching(m.summary(), obj)), o.labels,
                pe.astype(np.float32), mv, rc.quantisation_note(spec, dec, sigma_pix, raw.labels),
                fmap,
            )  # fmt: skip

        t0 = time.perf_counter()
        futs = {s: pool.submit(score_one, s) for s in decoded}
        results = []
        for i, f in enumerate(futs.values()):
            results.append(f.result())
            report("codecs", i + 1, len(futs))
        timings["scoring_codecs"] = time.perf_counter() - t0
    sizes = raw.table["volume"] / (sp[0] * sp[1] * sp[2])
    objects_info.update(
        min_size=plan.min_size,
        n_components_raw=raw.n_components,
        n_objects_raw=n_obj,
        sizes=rc.size_summary(sizes) if n_obj else {"n": 0},
        warnings=rc.count_warnings(n_obj, raw.n_components, plan.min_size, objects_info),
    )
    notes[:0] = objects_info["warnings"]
    ref_info: dict = {}
    ref_labels, ref_points = run.reference, run.reference_points
    if ref_labels is not None:
        from rawsigma.analysis.measurement.agreement import instance_agreement

        ref_info = instance_agreement(raw.labels, np.asarray(ref_labels), 0.5)
    elif ref_points is not None:
        from rawsigma.analysis.measurement.agreement import point_agreement

        ref_info = point_agreement(raw.labels, ref_points)
    est = profile.provenance.get("estimate") if isinstance(profile.provenance, dict) else None
    if isinstance(est, dict) and est.get("warning"):
        notes.insert(0, f"WARNING: estimated profile: {est['warning']}")
    timings["total"] = time.perf_counter() - run.t_all
    timings.update(ctx.clock.times)
    prov = fileio.provenance(
        profile_id=profile.profile_id,
        profile_estimated=bool(profile.provenance.get("estimated", False)),
        plan=plan.model_dump(),
        seed=plan.seed,
        synthesis_centre=plan.centre,
        synthesis="per z plane with the 2D profile (broadcast over z)",
        segmenter=run.segmenter,
        n_replicas=plan.n_replicas,
        spacing_zyx=list(sp),
        spacing_source=run.spacing_source,
    )
    return VolumeResult(
        plan=plan, provenance=prov, image=vol, raw_labels=raw.labels, raw_objects=raw.table,
        raw_globals=raw.globals, replica_globals=[r.globals for r in rep_out],
        replica_values=rep_values, replica_delta=replica_delta, replica_match=rep_match,
        feature_names=list(feat_names), codecs=results, timings=timings, notes=notes,
        null=nulls, objects_info=objects_info, spacing=sp, spacing_source=run.spacing_source,
        tissue=run.tissue, reference=ref_info,
    )  # fmt: skip
