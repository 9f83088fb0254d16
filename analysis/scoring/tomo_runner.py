"""The paper's tomography experiment: score codecs on OPT projections.

:func:`score_tomo` runs, on one set of raw projections ``(n_angles, n_rows, n_det)``:

1. ``n_replicas`` raw-equivalent replicas of every projection from the camera profile
   (:func:`rawsigma.analysis.noisemodel.synthesis.synthesize`, projection by
   projection), plus a held-out replica (the ``replica`` control);
2. every codec applied to every projection (where compression happens in practice),
   the compression ratio over the whole set;
3. each set → photo-electrons ``(ADU − offset)/gain`` → filtered back-projection
   (:mod:`rawsigma.analysis.scoring.fbp_adapter`) → plaque segmentation
   (:mod:`rawsigma.analysis.segmentation.plaques3d`, fitted on the raw volume, or a
   plug-in segmenter) → per-plaque volume and centroid, globals count, total volume, mean volume
   and load (plaque volume / organ volume);
4. ε, Δ and the calibrated verdict (:mod:`rawsigma.analysis.scoring.nullstats`:
   resolution floors, leave-one-out null, objects lost or invented) exactly as for
   2D images;
5. per-pixel ε of the operators at σ 1, 2, 4, 8 on the projections and on the
   reconstruction (:mod:`rawsigma.analysis.scoring.operators`).

Emission (fluorescence) OPT is assumed: the projections are line integrals of the
signal, so no −log is taken.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rawsigma.analysis.scoring import tomo_steps as steps
from rawsigma.analysis.scoring.operators import OPERATOR_SIGMAS, OperatorEpsilon
from rawsigma.analysis.scoring.reference import ReplicaReference, replica_reference, score_version
from rawsigma.analysis.scoring.results import ScoredVersion, scored_record
from rawsigma.analysis.scoring.tomo_steps import CONTROL_SPEC  # noqa: F401 - re-exported
from rawsigma.errors import ImageMismatchError

__all__ = ["TomoPlan", "TomoScoreResult", "TomoVersion", "check_projections", "score_tomo"]

Progress = Callable[[str, int, int], None]
_SCORED = ("volume", "z", "y", "x")


@dataclass(frozen=True)
class TomoPlan:
    """Settings of a tomography scoring run (saved with the results).

    Attributes
    ----------
    codecs : tuple of str
        Codec specs applied to every projection; ``"replica"`` is the held-out control.
    n_replicas, seed, centre
        Replicas (>= 3 for the calibrated verdict), seed, synthesis centre.
    center : float, optional
        Rotation axis on the detector, pixels (default the detector centre, or found
        with ``find_center``).
    find_center : bool
        Find the rotation axis from the raw projections
        (:func:`rawsigma.analysis.tomo.find_center`, 180° pairs) when ``center`` is None.
    filter : str
        FBP filter (``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, ``"hann"``).
    sigmas : tuple of float
        Operator scales, pixels.
    max_distance : float
        Matching radius between plaque centroids, voxels.
    level, min_size
        Plaque rule (:func:`rawsigma.analysis.segmentation.plaques3d.fit_plaque_rule`).
    operators : bool
        Compute the operator ε (the slowest step on large data).
    workers : int
        Threads of the reconstruction.
    segmenter : {"rule", "forest"}
        The plaque rule fitted on raw, or the 3D random forest trained on annotations
        of the raw reconstruction (:mod:`rawsigma.analysis.scoring.tomo_segment`).
    chunks : {"auto", "on", "off"}
        Reconstructions slab by slab on disk (:mod:`rawsigma.analysis.scoring.tomo_chunked`):
        ``"auto"`` when the in-memory estimate exceeds ``memory_budget``; a ``slab``
        forces it.
    slab : int, optional
        Slices per slab of the chunked path (default from the memory budget).
    memory_budget : int, optional
        Bytes (default half the available memory).
    """

    codecs: tuple[str, ...] = ("replica", "8bit", "jpeg@100", "noise:step=2")
    n_replicas: int = 10
    seed: int = 0
    centre: str = "observed"
    center: float | None = None
    find_center: bool = False
    filter: str = "ramp"
    sigmas: tuple[float, ...] = OPERATOR_SIGMAS
    max_distance: float = 3.0
    level: float = 0.4
    min_size: int = 4
    operators: bool = True
    workers: int = 2
    segmenter: str = "rule"
    chunks: str = "auto"
    slab: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.segmenter not in ("rule", "forest"):
            raise ValueError(f"TomoPlan: segmenter must be rule or forest, got {self.segmenter!r}")
        if self.chunks not in ("auto", "on", "off"):
            raise ValueError(f"TomoPlan: chunks must be auto, on or off, got {self.chunks!r}")
        if self.slab is not None and self.slab < 1:
            raise ValueError(f"TomoPlan: slab must be >= 1, got {self.slab}")
        if self.slab is not None and self.chunks == "off":
            raise ValueError("TomoPlan: a slab height needs the chunked path (chunks 'off' given)")
        if self.n_replicas < 2:
            raise ValueError(f"TomoPlan: n_replicas must be >= 2, got {self.n_replicas}")
        if not self.codecs:
            raise ValueError("TomoPlan: give at least one codec (or 'replica')")


@dataclass
class TomoVersion(ScoredVersion):
    """Scores of one processed set of projections."""

    match: dict
    verdict: dict
    labels: Any  # (Z, N, N) int32, numpy or a zarr array (chunked path)
    volume_slice: np.ndarray  # middle row of the reconstruction, float32
    values: dict[str, np.ndarray] = field(default_factory=dict)  # per raw plaque, NaN unmatched
    pixel_eps: Any = None  # (Z, N, N) float16 per-voxel ε of the reconstruction

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {**self.record(), "match": self.match}


@dataclass
class TomoScoreResult:
    """Everything the tomography report needs."""

    plan: TomoPlan
    provenance: dict
    projections: np.ndarray
    angles_deg: np.ndarray
    volume: Any  # raw reconstruction (n_rows, n_det, n_det) float32 (numpy or zarr)
    raw_labels: Any
    organ: Any
    raw_objects: dict[str, np.ndarray]
    raw_globals: dict[str, float]
    replica_globals: list[dict]
    replica_delta: dict[str, dict]
    replica_match: list[dict]
    versions: list[TomoVersion]
    segmenter: str
    null: dict[str, Any] = field(default_factory=dict)
    operators: dict[str, OperatorEpsilon] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    replica_values: dict[str, np.ndarray] = field(default_factory=dict)
    processing: dict[str, Any] = field(default_factory=dict)
    store: Any = None  # the volume store; `close` removes a chunked path's work directory

    @property
    def n_objects(self) -> int:
        """Plaques in the raw segmentation."""
        return len(self.raw_objects["label"])

    @property
    def codecs(self) -> list[TomoVersion]:
        """The versions (the name the 2D/3D report writers use)."""
        return self.versions

    def close(self) -> None:
        """Remove the work directory of the chunked path (its volumes become unreadable)."""
        if self.store is not None:
            self.store.close()

    def to_dict(self) -> dict:
        """JSON-ready results (``results.json``)."""
        return {
            "provenance": self.provenance,
            "plan": asdict(self.plan),
            "projections_shape": list(self.projections.shape),
            "volume_shape": list(self.volume.shape),
            "segmenter": self.segmenter,
            "processing": self.processing,
            "verdicts": {
                v.spec: "within noise" if v.verdict["within_noise"] else "NOT within noise"
                for v in self.versions
            },
            **scored_record(self),
            "null": {k: v.to_dict() for k, v in self.null.items()},
            "operator_epsilon": {k: v.to_dict() for k, v in self.operators.items()},
            "timings_s": self.timings,
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------- inputs
def check_projections(
    projections: np.ndarray | Sequence[np.ndarray], angles_deg: Any, profile: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate raw projections and their angles.

    Returns
    -------
    projections : (A, Z, N) ndarray, unsigned integer
    angles : (A,) float64

    Raises
    ------
    ImageMismatchError
        Mixed projection shapes, non-integer data, angles that do not match the
        projection count, non-finite angles, or a frame shape that is not the profile's.
    """
    if isinstance(projections, list | tuple):
        shapes = {np.shape(p) for p in projections}
        if len(shapes) > 1:
            first = np.shape(projections[0])
            bad = next(i for i, p in enumerate(projections) if np.shape(p) != first)
            raise ImageMismatchError(
                f"projections: mixed shapes; projection {bad} is {np.shape(projections[bad])}, "
                f"projection 0 is {first}"
            )
    p = np.asarray(projections)
    if p.ndim != 3:
        raise ImageMismatchError(
            f"projections: expected a stack (n_angles, n_rows, n_det), got shape {p.shape}"
        )
    if p.dtype.kind not in "ui" or p.dtype.itemsize < 2:
        raise ImageMismatchError(
            f"projections: {p.dtype} data; scoring needs the raw 16-bit camera projections"
        )
    if p.dtype.kind == "i":
        if p.min() < 0:
            raise ImageMismatchError("projections: negative values; not raw camera counts")
        p = p.astype(np.uint16 if p.max() <= 65535 else np.uint32)
    a = np.asarray(angles_deg, np.float64).ravel()
    if a.size != p.shape[0]:
        raise ImageMismatchError(
            f"angles: {a.size} values for {p.shape[0]} projections; give one angle per projection"
        )
    if not np.all(np.isfinite(a)):
        raise ImageMismatchError("angles: non-finite values")
    if p.shape[0] < 2:
        raise ImageMismatchError(f"projections: {p.shape[0]} projection; FBP needs several")
    if profile is not None:
        profile.check_image(p[0], name="projection 0")
    return p, a


def default_angles(n: int, arc: float = 360.0) -> np.ndarray:
    """``n`` angles evenly spread over ``[0, arc)`` degrees."""
    return np.arange(n) * (float(arc) / n)


# ----------------------------------------------------------------------------- steps
def _quantum(param: str, table: dict[str, np.ndarray]) -> np.ndarray:
    """Resolution of volume (1 voxel) and centroid (one boundary voxel moves it r/V)."""
    v = np.maximum(np.asarray(table["volume"], np.float64), 1.0)
    if param == "volume":
        return np.ones_like(v)
    return (3.0 / (4.0 * math.pi)) ** (1 / 3) * v ** (-2 / 3)


@dataclass
class _Outcome:
    labels: Any
    table: dict[str, np.ndarray]
    globals: dict[str, float]


def _outcome(segmented: tuple[Any, dict], organ_voxels: int) -> _Outcome:
    """A segmentation's (labels, table) with its globals (load over the organ's voxels)."""
    labels, table = segmented
    total = float(np.sum(table["volume"]))
    g = {
        "count": float(len(table["label"])),
        "total_volume": total,
        "load": total / organ_voxels if organ_voxels else 0.0,
        "mean_volume": total / len(table["label"]) if len(table["label"]) else 0.0,
    }
    return _Outcome(labels, table, g)


def _centroids(table: dict[str, np.ndarray]) -> np.ndarray:
    if len(table["label"]) == 0:
        return np.zeros((0, 3))
    return np.column_stack([table["z"], table["y"], table["x"]]).astype(np.float64)


def _match(raw: _Outcome, other: _Outcome, max_distance: float, vs: Any):
    from rawsigma.analysis.measurement.matching import match_objects

    m = match_objects(_centroids(raw.table), _centroids(other.table), max_distance)
    m.n_split, m.n_merged = vs.split_merge(raw.labels, other.labels)
    return m


def _replica_reference(
    raw: _Outcome, outcomes: list[_Outcome], max_distance: float, vs: Any
) -> ReplicaReference:
    """The replicas scored against raw: values, matches, Δ, quanta and the LOO null."""
    return replica_reference(
        raw, outcomes, _SCORED, lambda o: _match(raw, o, max_distance, vs), _quantum
    )


def _score_version(
    spec: str, entry: tuple, vol: Any, o: _Outcome, ref: ReplicaReference,
    max_distance: float, vs: Any,
) -> TomoVersion:  # fmt: skip
    """ε, Δ and the calibrated verdict of one processed set against raw and the null."""
    _dec, ratio, nbytes, desc = entry
    s = score_version(ref, o, _match(ref.raw, o, max_distance, vs), spec)
    mid = np.asarray(vol[vol.shape[0] // 2], np.float32).copy()
    return TomoVersion(
        spec, desc, float(ratio), int(nbytes), s.globals, s.objects, s.match, s.verdict,
        o.labels, mid, {p: np.asarray(s.matched[p], np.float64) for p in _SCORED},
    )  # fmt: skip


def _segmenter(vol_raw: Any, segmenter, annotations, plan: TomoPlan, vs):
    """(volume, key → (labels, table), organ, organ voxels, description)."""
    organ, n_organ = vs.organ_mask(vol_raw)
    if callable(segmenter):
        if vs.chunked:
            raise ValueError("a plug-in segmenter needs the in-memory path (chunks 'off')")
        from rawsigma.analysis.measurement.morphometry3d import measure3d

        def plug(vol: Any, key: str) -> tuple[Any, dict]:
            lab = np.asarray(segmenter(vol), np.int32)
            return lab, measure3d(lab)

        return plug, organ, n_organ, f"plug-in segmenter {getattr(segmenter, '__name__', '')}"
    if plan.segmenter == "forest":
        from rawsigma.analysis.scoring.tomo_segment import train_forest

        if annotations is None:
            raise ValueError("the forest segmenter needs annotations (1 background, 2 plaque)")
        clf, desc = train_forest(vol_raw, annotations, seed=plan.seed, workers=plan.workers)

        def fg(vol: Any, key: str) -> Any:
            return vs.foreground_forest(vol, clf, organ, key)

    else:
        rule = vs.fit_rule(vol_raw, organ, n_organ, level=plan.level, min_size=plan.min_size)
        desc = rule.describe()

        def fg(vol: Any, key: str) -> Any:
            return vs.foreground_rule(vol, rule, organ, key)

    def segment(vol: Any, key: str) -> tuple[Any, dict]:
        mask = fg(vol, key)
        out = vs.label_measure(mask, plan.min_size, key)
        vs.remove(mask)
        return out

    return segment, organ, n_organ, desc


# ----------------------------------------------------------------------------- main
def score_tomo(
    projections: np.ndarray | Sequence[np.ndarray],
    angles_deg: Any,
    profile: Any,
    *,
    plan: TomoPlan | None = None,
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    annotations: np.ndarray | None = None,
    workdir: Any = None,
    progress: Progress | None = None,
    **plan_fields: Any,
) -> TomoScoreResult:
    """Score codecs applied to OPT projections against the raw noise (module notes).

    Parameters
    ----------
    projections : (A, Z, N) ndarray of uint16, or a sequence of (Z, N) frames
        Raw camera projections, ADU, matching ``profile``.
    angles_deg : (A,) array
        Projection angles, degrees.
    profile : CameraProfile
        The camera's noise profile.
    plan : TomoPlan, optional
        Settings; ``**plan_fields`` build or update one.
    segmenter : callable or str, optional
        Volume (float32) → instance labels (in-memory path only); default the plan's
        segmenter (the plaque rule fitted on raw, or the forest); a string sets
        ``plan.segmenter``.
    annotations : (Z, N, N) ndarray, optional
        Training annotations of the raw reconstruction for ``plan.segmenter="forest"``
        (0 unlabelled, 1 background, 2 plaque).
    workdir : path, optional
        Work directory of the chunked path (default a temporary directory); removed by
        ``result.close()``, which the caller must call once the report is written.
    progress : callable(stage, done, total), optional

    Returns
    -------
    TomoScoreResult
    """
    if isinstance(segmenter, str):  # the plan's name ("rule" or "forest")
        plan_fields["segmenter"], segmenter = segmenter, None
    plan = plan or TomoPlan()
    if plan_fields:
        plan = TomoPlan(**{**asdict(plan), **plan_fields})
    proj, angles = check_projections(projections, angles_deg, profile)
    vs, processing = steps.volume_store(proj, plan, workdir)
    try:
        return _score(proj, angles, profile, plan, segmenter, annotations, vs, processing,
                      progress or (lambda s, d, t: None))  # fmt: skip
    except BaseException:
        vs.close()
        raise


def _score(proj, angles, profile, plan: TomoPlan, segmenter, annotations, vs, processing,
           report: Progress) -> TomoScoreResult:  # fmt: skip
    from rawsigma.analysis.scoring.fbp_adapter import FBP_SOURCE, fbp

    t_all, timings, notes = time.perf_counter(), {}, []
    s_syn, s_ctrl = np.random.SeedSequence(plan.seed).spawn(2)
    gain = np.where(profile.gain > 0, profile.gain, profile.gain_global).astype(np.float32)
    offset = profile.offset.astype(np.float32)
    center = plan.center
    if center is None and plan.find_center:
        from rawsigma.analysis.tomo import find_center

        center = float(find_center((proj.astype(np.float32) - offset) / gain, angles))

    def reconstruct(p: Any, key: str) -> Any:
        # slice progress for the raw volume only: the others are counted per volume
        prog = (lambda s, d, t: report("reconstruct raw", d, t)) if key == "raw" else None
        return vs.reconstruct(p, offset, gain, key, fbp, angles_deg=angles, center=center,
                              filter=plan.filter, threads=plan.workers, progress=prog)  # fmt: skip

    t0 = time.perf_counter()
    report("synthesis", 0, 1)
    stacks = vs.replica_stacks(plan.n_replicas, proj.shape, proj.dtype)
    reps = steps.fill_replicas(proj, profile, stacks, np.random.default_rng(s_syn), plan.centre)
    report("synthesis", 1, 1)
    timings["synthesis"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = steps.versions(proj, list(plan.codecs), profile, plan.centre,
                        np.random.default_rng(s_ctrl), report, vs)  # fmt: skip
    timings["codecs"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vol_raw = reconstruct(proj, "raw")
    segment, organ, n_organ, seg_desc = _segmenter(vol_raw, segmenter, annotations, plan, vs)
    raw = _outcome(segment(vol_raw, "raw"), n_organ)
    if len(raw.table["label"]) == 0:
        notes.append("The raw reconstruction has no plaques: only global parameters are scored.")
    rep_vols, rep_out = [], []
    for k in range(plan.n_replicas):
        rep_vols.append(reconstruct(reps[k], f"replica{k}"))
        rep_out.append(_outcome(segment(rep_vols[-1], f"replica{k}"), n_organ))
        report("replicas", k + 1, plan.n_replicas)
    timings["replicas"] = time.perf_counter() - t0
    ref = _replica_reference(raw, rep_out, plan.max_distance, vs)
    for o in rep_out:
        vs.remove(o.labels)

    t0 = time.perf_counter()
    from rawsigma.analysis.scoring.tomo_chunked import voxel_sigma

    sigma = voxel_sigma(vs, rep_vols)
    versions, vols = [], {}
    for i, (spec, entry) in enumerate(decoded.items()):
        vols[spec] = v = reconstruct(entry[0], spec)
        o = _outcome(segment(v, spec), n_organ)
        versions.append(_score_version(spec, entry, v, o, ref, plan.max_distance, vs))
        versions[-1].pixel_eps = vs.voxel_eps(vol_raw, sigma, v, spec)
        report("codecs", i + 1, len(decoded))
    timings["scoring_codecs"] = time.perf_counter() - t0

    operators: dict[str, OperatorEpsilon] = {}
    if plan.operators and decoded:
        t0 = time.perf_counter()
        inputs = steps.operator_inputs(proj, reps, decoded, vol_raw, rep_vols, vols, vs)
        processing["operator_epsilon_on"] = inputs[-1]
        operators = steps.operator_eps(inputs, plan, report)
        timings["operator_epsilon"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    if plan.center is not None:
        how = "given"
    else:
        how = "find_center (180° pairs)" if plan.find_center else "detector centre n_det // 2"
    from rawsigma import fileio

    prov = fileio.provenance(
        profile_id=profile.profile_id, plan=asdict(plan), seed=plan.seed,
        reconstruction=FBP_SOURCE, center=center if center is not None else proj.shape[2] // 2,
        center_source=how, segmenter=seg_desc, projections_shape=list(proj.shape),
        processing=processing,
    )  # fmt: skip
    return TomoScoreResult(
        plan, prov, proj, angles, vol_raw, organ=organ, versions=versions,
        segmenter=seg_desc, operators=operators, timings=timings, notes=notes,
        processing=processing, store=vs, **ref.result_fields(),
    )  # fmt: skip
