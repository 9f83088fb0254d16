"""The scoring experiment: synthesis → segmentation → measurement → matching → ε.

:func:`score_image` runs the method of Pomarico et al. (2023) on one raw image:

1. draw ``n_replicas`` raw-equivalent replicas from the camera profile;
2. encode/decode the image with every codec (compression ratio against raw 16-bit);
3. train the pixel classifier on sparse labels of the raw image (or use a plug-in
   model), segment raw, replicas and decoded images (8-connected objects);
4. measure the ImageJ parameters, match objects to the raw ones, score ε, Δ and the
   per-pixel ε of the feature maps; optionally sweep codec families for the highest
   compression ratio that stays within noise.

Each step is one function below, in the order :func:`score_image` calls them.
Replicas and codec outputs are processed in parallel threads (numpy, scipy filters and
the forest's tree traversal release the GIL).

The input checks live in :mod:`.inputs`, the result classes in :mod:`.results` (both
re-exported here), the processing of one image in :mod:`.per_image`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from rawsigma import fileio
from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs
from rawsigma.analysis.noisemodel.synthesis import REPLICA_METHOD, synthesize
from rawsigma.analysis.scoring import first_run
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.feature_scores import codec_feature_epsilon
from rawsigma.analysis.scoring.inputs import (
    Segmenter,
    check_labels,
    check_raw_image,
    load_model,
    resolve_plan,
)
from rawsigma.analysis.scoring.per_image import (
    Outcome,
    SharedPass,
    StageClock,
    centroids,
    classifier_segmenter,
    codec_bytes,
    match_to_raw,
    outcome_of,
    process_image,
    raw_noise_sigma,
    score_params,
    scoring_features_provenance,
    shared_pass,
)
from rawsigma.analysis.scoring.plans import TOLERANCE_SWEEPS, ScorePlan
from rawsigma.analysis.scoring.reference import ReplicaReference, codec_result, replica_reference
from rawsigma.analysis.scoring.results import CodecResult, ScoreResult
from rawsigma.analysis.scoring.tolerance import tolerance_sweep
from rawsigma.analysis.segmentation.features import (
    SCORING_FEATURES,
    feature_names,
)
from rawsigma.analysis.segmentation.scratch import ScratchPool
from rawsigma.calib.profile_check import check_defect_fraction

__all__ = ["CodecResult", "ScoreResult", "check_raw_image", "load_model", "score_image"]

Progress = Callable[[str, int, int], None]
CONTROL_SPEC = "replica"


# ----------------------------------------------------------------------------- steps
class _Decoded(NamedTuple):
    """One processed version of the raw image, ready to be scored."""

    image: np.ndarray
    ratio: float
    n_bytes: int
    description: str


@dataclass
class _Segmenter:
    """The segmenter of a run, its description and the min-size rule it set."""

    segment: Segmenter
    description: str
    plan: ScorePlan  # the run's plan with ``min_size`` resolved
    objects_info: dict
    #: the classifier's pass that also gives the scoring features (None: plug-in model)
    shared: SharedPass | None = None


def _check_inputs(
    image: np.ndarray, profile: Any, labels: np.ndarray | None, plan: ScorePlan, notes: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw frame and annotations checked before any long work; profile warnings noted."""
    image = check_raw_image(image, profile)
    defects_note = check_defect_fraction(profile, "profile")  # raises above 50 %
    if defects_note:
        notes.append("Warning: " + defects_note)
    if labels is not None:  # before any long work: wrong annotations fail at once
        labels = check_labels(labels, image.shape, foreground_class=plan.foreground_class)
    return image, labels


def _make_replicas(
    image: np.ndarray, profile: Any, plan: ScorePlan, seed: np.random.SeedSequence
) -> np.ndarray:
    """The ``n_replicas`` raw-equivalent replicas of ``image`` drawn from ``profile``."""
    return synthesize(image, profile, plan.n_replicas, np.random.default_rng(seed), plan.centre)


def _encode_codecs(
    image: np.ndarray,
    profile: Any,
    plan: ScorePlan,
    control_seed: np.random.SeedSequence,
    report: Progress,
) -> dict[str, _Decoded]:
    """Every codec of the plan encoded and decoded (and the held-out control replica)."""
    specs = list(plan.codecs)
    codec_specs = [s for s in specs if s != CONTROL_SPEC]
    decoded: dict[str, _Decoded] = {}
    if CONTROL_SPEC in specs:
        rng = np.random.default_rng(control_seed)
        control = synthesize(image, profile, 1, rng, plan.centre)[0]
        decoded[CONTROL_SPEC] = _Decoded(
            control, 1.0, image.size * 2, "held-out raw-equivalent replica"
        )
    parsed = [c for s in codec_specs for c in parse_codecs(s, profile=profile)]
    # keep the user's spelling ("noise:step=2") as the key; parse order = given order
    codecs = dict(zip(codec_specs, parsed, strict=True))
    for codec in codecs.values():  # compile first-run kernels under their own progress stage
        getattr(codec, "prepare", lambda _progress: None)(report)
    for i, (spec, codec) in enumerate(codecs.items()):
        report("encode", i, len(codecs))
        data, dec = codec_bytes(codec, image)
        decoded[spec] = _Decoded(dec, compression_ratio(image, data), len(data), codec.description)
    report("encode", len(codecs), len(codecs))
    return decoded


def _make_segmenter(
    image: np.ndarray,
    labels: np.ndarray | None,
    model: Segmenter | str | None,
    plan: ScorePlan,
    classifier_seed: np.random.SeedSequence,
) -> _Segmenter:
    """Train the classifier on ``labels`` or load the plug-in model; resolve ``min_size``."""
    objects_info: dict = {}
    if labels is not None:
        auto, objects_info = rc.default_min_size(labels, plan.foreground_class)
        if plan.min_size is None:
            plan = plan.model_copy(update={"min_size": auto})
            objects_info["min_size_source"] = "default: " + objects_info["rule"]
        else:
            objects_info["min_size_source"] = f"given: {plan.min_size} px (default {auto} px)"
        seed = int(classifier_seed.generate_state(1)[0])
        segment, clf = classifier_segmenter(image, labels, plan, seed)
        description = (
            f"random forest ({plan.classifier_preset} preset, {plan.feature_preset} features)"
        )
        return _Segmenter(segment, description, plan, objects_info, shared_pass(clf, plan))
    chosen = model if model is not None else plan.model
    if plan.min_size is None:
        plan = plan.model_copy(update={"min_size": 0})
        objects_info["min_size_source"] = "plug-in model, no annotations: 0 px"
    else:
        objects_info["min_size_source"] = f"given: {plan.min_size} px"
    segment = load_model(chosen) if isinstance(chosen, str) else chosen
    description = f"plug-in model {plan.model or getattr(model, '__name__', 'callable')}"
    return _Segmenter(segment, description, plan, objects_info)


def _segment_raw_and_replicas(
    pool: ThreadPoolExecutor,
    image: np.ndarray,
    replicas: np.ndarray,
    segmenter: _Segmenter,
    clock: StageClock,
    report: Progress,
) -> tuple[Outcome, list[Outcome], np.ndarray]:
    """Segment and measure raw and replicas in parallel; the replicas' feature σ.

    With the classifier, the scoring features of raw and the replicas' σ come out of
    their segmentation passes (`SharedPass`: the replicas block by block, all replicas
    of a block in turn); a plug-in model's images are segmented in the pool and the σ
    computed by `replica_feature_sigma`. No replica's full-size feature maps are held.
    """
    segment, plan, shared = segmenter.segment, segmenter.plan, segmenter.shared
    workers = min(plan.workers, os.cpu_count() or 1)
    if shared is None:
        raw_future = pool.submit(process_image, image, segment, plan, clock)
        outputs: list = [None] * len(replicas)
        futures = [pool.submit(process_image, r, segment, plan, clock, False) for r in replicas]
    else:
        if shared.clf.has_kept_bank():  # raw's bank kept from training: its pass first,
            # on every worker, so the kept blocks are classified and released before the
            # replicas' pass needs memory
            t = time.perf_counter()
            out, feats = shared.with_features(image, False, workers)
            clock.add("segment (sum over images)", t)
            raw_future = pool.submit(_measured, out, feats, plan, clock)
        else:
            raw_future = pool.submit(_shared_outcome, shared, image, plan, clock)
        t = time.perf_counter()
        outputs, feature_sigma = shared.replicas(
            replicas, workers, lambda done, total: report("segment replicas", done, total)
        )
        clock.add("segment (sum over images)", t)

        def one(i: int) -> Outcome:  # outputs: the replicas' foreground masks
            out, outputs[i] = shared.segment_output(outputs[i]), None  # released when used
            return outcome_of(out, plan, clock, own=True)

        futures = [pool.submit(one, i) for i in range(len(replicas))]
    raw = raw_future.result()
    raw_centroids = centroids(raw.table) if len(raw.table["label"]) else np.zeros((0, 2))
    replica_outcomes = []
    for i, future in enumerate(futures):
        outcome = future.result()
        # matched as it arrives, then its label image is released (not one per replica)
        outcome.match = match_to_raw(raw, raw_centroids, outcome, plan.max_distance)
        outcome.labels = np.empty((0, 0), np.int32)
        replica_outcomes.append(outcome)
        report("replicas", i + 1, len(futures))
    if shared is None:
        t = time.perf_counter()
        feature_sigma = sc.replica_feature_sigma(replicas, plan.score_sigmas, workers)
        clock.add("scoring features (sum over images)", t)
    return raw, replica_outcomes, feature_sigma


def _shared_outcome(
    shared: SharedPass, img: np.ndarray, plan: ScorePlan, clock: StageClock
) -> Outcome:
    """One image segmented with its scoring features (F, H, W) from the same pass, measured."""
    t = time.perf_counter()
    out, feats = shared.with_features(img, channels_last=False)
    clock.add("segment (sum over images)", t)
    return _measured(out, feats, plan, clock)


def _measured(out: np.ndarray, feats: np.ndarray, plan: ScorePlan, clock: StageClock) -> Outcome:
    """The outcome of a segment output, with its scoring features (F, H, W)."""
    outcome = outcome_of(out, plan, clock, own=True)  # ``out``: the pass's own labels
    outcome.features = feats
    return outcome


def _replica_reference(
    raw: Outcome,
    replicas: list[Outcome],
    feature_sigma: np.ndarray,
    plan: ScorePlan,
    notes: list[str],
) -> ReplicaReference:
    """Match every replica to raw: Δ, matched values and the calibrated null per parameter."""
    names = feature_names(2, "ilastik", plan.score_sigmas, SCORING_FEATURES)
    if len(raw.table["label"]) == 0:
        notes.append("The raw segmentation has no objects: only global parameters are scored.")
    return replica_reference(
        raw, replicas, score_params(raw.table), _matched_on_arrival, ns.parameter_quantum,
        feature_sigma, names,
    )  # fmt: skip


def _matched_on_arrival(outcome: Outcome) -> Any:
    """A replica's matching to raw, made by `_segment_raw_and_replicas` as it arrived."""
    assert outcome.match is not None
    return outcome.match


@dataclass
class _CodecScorer:
    """Scores one decoded image against the raw image and its replicas."""

    image: np.ndarray
    reference: ReplicaReference
    pixel_sigma: np.ndarray
    segmenter: _Segmenter
    clock: StageClock
    raw_centroids: np.ndarray = field(init=False)
    _channels_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    #: the decoded images' channels, reused image to image (under the lock)
    _channel_buffers: dict[str, np.ndarray] | None = field(init=False, default=None)
    #: the feature ε's scratch buffers, reused image to image
    _eps_scratch: ScratchPool = field(init=False, default_factory=lambda: ScratchPool(keep=4))

    def __post_init__(self) -> None:
        raw = self.reference.raw
        self.raw_centroids = centroids(raw.table) if len(raw.table["label"]) else np.zeros((0, 2))

    def score(self, spec: str, decoded: _Decoded) -> CodecResult:
        ref, plan = self.reference, self.segmenter.plan
        if self.segmenter.shared is None:
            outcome = process_image(decoded.image, self.segmenter.segment, plan, self.clock, False)
            feature_eps, worst_map = self._feature_epsilon(decoded.image, None)
        else:
            out, feature_eps, worst_map = self._shared_pass(decoded.image)
            outcome = outcome_of(out, plan, self.clock, own=True)
        match = match_to_raw(ref.raw, self.raw_centroids, outcome, plan.max_distance)
        return codec_result(
            spec, decoded, self.image, self.pixel_sigma, ref, outcome, match, feature_eps,
            worst_map,
        )  # fmt: skip

    def _shared_pass(self, image: np.ndarray) -> tuple[np.ndarray, dict, dict]:
        """``(segment output, feature ε, worst map)`` of a decoded image from its pass.

        One codec at a time holds its full-size scoring channels (12 with the default
        scales): its pass runs on the run's workers (block by block) under a lock, then
        its channels are scored; the next codec's pass writes the same buffers (no new
        memory to fault in per codec). The same values as one thread per codec.
        """
        shared = self.segmenter.shared
        assert shared is not None
        workers = min(self.segmenter.plan.workers, os.cpu_count() or 1)
        with self._channels_lock:
            t = time.perf_counter()
            if self._channel_buffers is None:  # one set of full-size channels, reused
                self._channel_buffers = shared.bank_channel_buffers(image.shape)
            out, bank_channels = shared.with_bank_channels(image, workers, self._channel_buffers)
            self.clock.add("segment (sum over images)", t)
            feature_eps, worst_map = self._feature_epsilon(image, bank_channels, self._eps_scratch)
        return out, feature_eps, worst_map

    def _feature_epsilon(
        self, image: np.ndarray, channels: dict | None, scratch: ScratchPool | None = None
    ) -> tuple[dict, dict]:
        """`codec_feature_epsilon` of a decoded image (``channels``: from its pass;
        ``scratch``: its scratch buffers)."""
        ref = self.reference
        t = time.perf_counter()  # the scales not in ``channels`` computed one at a time
        res = codec_feature_epsilon(
            ref.raw.features, ref.feature_sigma, image, ref.feature_names,
            self.segmenter.plan.score_sigmas, channels, self.segmenter.shared is not None,
            scratch,
        )  # fmt: skip
        self.clock.add("scoring features (sum over images)", t)
        return res


def _score_codecs(
    pool: ThreadPoolExecutor,
    scorer: _CodecScorer,
    decoded: dict[str, _Decoded],
    report: Progress,
) -> list[CodecResult]:
    """Score every decoded image in parallel, in the plan's order."""
    futures = {spec: pool.submit(scorer.score, spec, d) for spec, d in decoded.items()}
    results = []
    for i, future in enumerate(futures.values()):
        results.append(future.result())
        report("codecs", i + 1, len(futures))
    return results


def _tolerance_sweep(
    family: str, sweep: list[str], scorer: _CodecScorer, profile: Any, report: Progress
) -> dict:
    """`tolerance.tolerance_sweep` of one codec family on the image of ``scorer``."""
    image = scorer.image

    def encode(spec: str) -> tuple[float, _Decoded]:
        (codec,) = parse_codecs(spec, profile=profile)
        data, dec = codec_bytes(codec, image)
        ratio = compression_ratio(image, data)
        return ratio, _Decoded(dec, ratio, len(data), codec.description)

    return tolerance_sweep(family, sweep, encode, scorer.score, report)


def _objects_info(
    segmenter: _Segmenter, raw: Outcome, n_obj: int, notes: list[str], profile: Any
) -> dict:
    """The min-size rule, object sizes and warnings; warnings put first in ``notes``."""
    info = rc.complete_objects_info(
        segmenter.objects_info, segmenter.plan.min_size, raw.n_components, n_obj,
        raw.table["area"], notes,
    )  # fmt: skip
    rc.note_estimated_profile(profile, notes)
    return info


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), seconds it took)``."""
    t = time.perf_counter()
    return fn(*args), time.perf_counter() - t


# ----------------------------------------------------------------------------- main
def score_image(
    image: np.ndarray,
    profile: Any,
    *,
    labels: np.ndarray | None = None,
    model: Segmenter | str | None = None,
    plan: ScorePlan | None = None,
    progress: Progress | None = None,
    **plan_fields: Any,
) -> ScoreResult:
    """Score codecs on one raw image against its raw noise.

    Parameters
    ----------
    image : (H, W) ndarray, uint16
        Raw camera frame in ADU, matching ``profile``.
    profile : CameraProfile
        Camera noise profile (measured or estimated).
    labels : (H, W) ndarray of int, optional
        Sparse training annotations of ``image`` (0 unlabelled, 1 background,
        2 foreground: :mod:`rawsigma.analysis.segmentation.classifier` convention) for the pixel
        classifier.
    model : callable or "module:function", optional
        Plug-in segmenter instead of the classifier: image → labels, mask or
        foreground probability (H, W) / class probabilities (H, W, K), last channel
        foreground.
    plan : ScorePlan, optional
        Run settings; ``**plan_fields`` (``codecs=[...]``, ``n_replicas=10``,
        ``seed=0``, ``centre``, ``max_distance``, ``tolerance_search``, ...) build one.
    progress : callable(stage: str, done: int, total: int), optional
        Progress callback.

    Returns
    -------
    ScoreResult
    """
    plan = resolve_plan(labels, model, plan, plan_fields, "score_image")
    report: Progress = progress or (lambda stage, done, total: None)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    clock = StageClock()
    notes: list[str] = []
    image, labels = _check_inputs(image, profile, labels, plan, notes)
    synthesis_seed, control_seed, classifier_seed = np.random.SeedSequence(plan.seed).spawn(3)

    # the replicas are drawn on a thread of their own (one generator, single-threaded)
    # while the codecs encode and the classifier trains: same replicas, less waiting
    with ThreadPoolExecutor(max_workers=1) as background:
        report("synthesis", 0, 1)
        timings["synthesis"] = 0.0
        synthesis = background.submit(_timed, _make_replicas, image, profile, plan, synthesis_seed)

        t0 = time.perf_counter()
        decoded = _encode_codecs(image, profile, plan, control_seed, report)
        timings["codecs"] = time.perf_counter() - t0

        first_run.warm_up(report)  # first run on this machine: compile the kernels, announced
        t0 = time.perf_counter()
        report("training", 0, 1)
        segmenter = _make_segmenter(image, labels, model, plan, classifier_seed)
        plan = segmenter.plan
        timings["training"] = time.perf_counter() - t0
        report("training", 1, 1)
        replicas, timings["synthesis"] = synthesis.result()
        report("synthesis", 1, 1)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(plan.workers, os.cpu_count() or 1)) as pool:
        raw, replica_outcomes, feature_sigma = _segment_raw_and_replicas(
            pool, image, replicas, segmenter, clock, report
        )
        del replicas  # the replicas' images are no longer needed
        if segmenter.shared is not None:  # the codecs' passes need one block buffer a worker
            segmenter.shared.scratch.trim(min(plan.workers, os.cpu_count() or 1))
        timings["replicas"] = time.perf_counter() - t0
        reference = _replica_reference(raw, replica_outcomes, feature_sigma, plan, notes)
        scorer = _CodecScorer(image, reference, raw_noise_sigma(image, profile), segmenter, clock)
        t0 = time.perf_counter()
        results = _score_codecs(pool, scorer, decoded, report)
        timings["scoring_codecs"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sweeps = {family: TOLERANCE_SWEEPS[family] for family in plan.tolerance_search}
    tolerance = {f: _tolerance_sweep(f, s, scorer, profile, report) for f, s in sweeps.items()}
    if sweeps:
        timings["tolerance_search"] = time.perf_counter() - t0
    objects_info = _objects_info(segmenter, raw, reference.n_objects, notes, profile)
    timings["total"] = time.perf_counter() - t_all
    timings.update(clock.times)

    provenance = fileio.provenance(
        profile_id=profile.profile_id,
        profile_estimated=bool(profile.provenance.get("estimated", False)),
        plan=plan.model_dump(),
        seed=plan.seed,
        synthesis_centre=plan.centre,
        replica_method=REPLICA_METHOD,
        segmenter=segmenter.description,
        n_replicas=plan.n_replicas,
        scoring_features=scoring_features_provenance(segmenter.shared, plan),
    )
    return ScoreResult(
        plan=plan,
        provenance=provenance,
        image=image,
        feature_names=list(reference.feature_names),
        codecs=results,
        tolerance=tolerance,
        timings=timings,
        notes=notes,
        objects_info=objects_info,
        **reference.result_fields(),
    )
