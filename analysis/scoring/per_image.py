"""One image through the scoring pipeline: segment, drop small objects, measure, match.

The building blocks of :mod:`.runner`, applied alike to the raw image, its replicas and
every decoded image.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.measurement import moments_kernel
from rawsigma.analysis.measurement.matching import MatchResult, match_objects
from rawsigma.analysis.measurement.morphometry import measure
from rawsigma.analysis.segmentation.classifier import PixelClassifier, labels_from_output
from rawsigma.analysis.segmentation.features import feature_maps_for_scoring
from rawsigma.analysis.segmentation.scratch import ScratchPool
from rawsigma.analysis.segmentation.shared_filters import (
    ScoringChannels,
    plan_scoring_channels,
    scoring_block,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rawsigma.analysis.scoring.inputs import Segmenter
    from rawsigma.analysis.scoring.plans import ScorePlan

__all__ = [
    "Outcome",
    "StageClock",
    "centroids",
    "classifier_segmenter",
    "codec_bytes",
    "drop_small",
    "match_to_raw",
    "measure_objects",
    "outcome_of",
    "process_image",
    "raw_noise_sigma",
    "score_params",
    "scoring_features_provenance",
    "shared_pass",
    "SharedPass",
    "to_objects",
]


def to_objects(out: np.ndarray, threshold: float) -> np.ndarray:
    """Model output (labels, mask or foreground probability) → 8-connected label image."""
    out = np.asarray(out)
    shape = out.shape[:2] if out.ndim == 3 and out.dtype.kind == "f" else out.shape
    return labels_from_output(out, shape, threshold)


def centroids(table: dict[str, np.ndarray]) -> np.ndarray:
    """(x, y) centroids of a `morphometry.measure` table, float64."""
    return np.column_stack([table["x"], table["y"]]).astype(np.float64)


def measure_objects(labels: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """`morphometry.measure` and `global_params` of a 2D mask or label image.

    The globals are read from the table: ``count`` (distinct positive labels) is its
    number of rows and ``total_area`` (object pixels) the sum of its areas, the numbers
    `global_params` gives (test) without its second pass over the image (`np.unique`).
    """
    table = measure(labels)
    area = float(np.sum(table["area"]))
    return table, {"count": float(len(table["label"])), "total_area": area}


def score_params(table: dict[str, np.ndarray]) -> list[str]:
    skip = {"label", "Label", "BX", "BY", "Width", "Height", "id"}
    return [k for k, v in table.items() if k not in skip and np.asarray(v).dtype.kind in "fiu"]


#: at most this many bytes of the training image's feature blocks are kept from
#: training for the raw segmentation pass (`PixelClassifier.keep_bank`), and at most
#: ``KEPT_BANK_SHARE`` of the memory available at the time
KEPT_BANK_BYTES = 1 << 30
KEPT_BANK_SHARE = 0.25


def kept_bank_budget() -> int:
    """Bytes of training blocks to keep for the raw pass (see :data:`KEPT_BANK_BYTES`)."""
    from rawsigma._sysmem import meminfo_available, physical_memory

    available = meminfo_available()
    if not available:  # no /proc: half the physical memory
        available = (physical_memory() or 0) // 2
    return int(min(KEPT_BANK_BYTES, KEPT_BANK_SHARE * available))


def classifier_segmenter(image: np.ndarray, labels: np.ndarray, plan: ScorePlan, seed: int):
    """Train the pixel classifier on the raw image; return image → label image."""
    clf = PixelClassifier(
        preset=plan.classifier_preset,
        features=plan.feature_preset,
        random_state=seed,
        n_jobs=plan.workers,
        n_estimators=plan.n_estimators,
        max_samples_per_class=plan.max_samples_per_class,
        foreground_class=plan.foreground_class,
    )
    # the raw image's bank is computed in training: kept (bounded) for its raw pass
    clf.keep_bank = kept_bank_budget()
    clf.fit(image, labels)
    # prediction runs inside our worker threads: one thread each, no oversubscription
    clf.n_jobs = 1
    if hasattr(clf.model_, "n_jobs"):
        clf.model_.n_jobs = 1

    def segment(img: np.ndarray) -> np.ndarray:
        return to_objects(clf.foreground_probability(img), plan.threshold)

    return segment, clf


@dataclass
class Outcome:
    """One image segmented and measured: objects, their table, globals, feature maps."""

    labels: np.ndarray
    table: dict[str, np.ndarray]
    globals: dict[str, float]
    features: np.ndarray
    n_components: int = 0  # connected components before the size filter
    match: MatchResult | None = None  # a replica's match to the raw objects


def drop_small(lab: np.ndarray, min_size: int, in_place: bool = False) -> np.ndarray:
    """Remove objects below ``min_size`` px and renumber 1..n (label order kept).

    With ``in_place``, a C-contiguous writeable int32 ``lab`` is renumbered in place and
    returned (no full-size copy to fault in: the labels of a scoring pass, which nothing
    else holds); otherwise ``lab`` is left as it is.
    """
    if min_size <= 1 or not lab.any():
        return lab
    if in_place and _writeable_int32(lab):
        moments_kernel.size_relabel(lab, int(min_size))
        return lab
    if lab.dtype == np.int32 or (lab.dtype.kind in "iu" and lab.max() < 2**31):
        out = np.array(lab, np.int32, order="C")  # a copy: the caller's image is kept
        moments_kernel.size_relabel(out, int(min_size))  # counts, then renumbering in place
        return out
    return drop_small_numpy(lab, min_size)


def _writeable_int32(lab: np.ndarray) -> bool:
    """Whether ``lab`` can be renumbered in place by `moments_kernel.size_relabel`."""
    return lab.dtype == np.int32 and lab.flags.c_contiguous and lab.flags.writeable


def drop_small_numpy(lab: np.ndarray, min_size: int) -> np.ndarray:
    """:func:`drop_small` in numpy: any integer labels, and the compiled kernel's reference."""
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    new = np.zeros(sizes.size, np.int32)
    new[keep] = np.arange(1, int(keep.sum()) + 1)
    return new[lab]


class StageClock:
    """Thread-safe sums of per-image stage times for one run."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        with self._lock:
            self.times[stage] = self.times.get(stage, 0.0) + (t1 - t0)
        return t1


def match_to_raw(
    raw: Outcome, raw_centroids: np.ndarray, other: Outcome, max_distance: float
) -> MatchResult:
    """Match ``other``'s objects to the raw segmentation's (centroids ``raw_centroids``)."""
    return match_objects(
        raw_centroids,
        centroids(other.table) if other.labels.max() else np.zeros((0, 2)),
        max_distance,
        ref_labels=raw.labels,
        other_labels=other.labels,
    )


def process_image(
    img: np.ndarray, segment: Segmenter, plan: ScorePlan, clock: StageClock, features: bool = True
) -> Outcome:
    """Segment, drop small objects, measure and compute the scoring features of one image.

    With ``features=False`` (replicas: only their σ is needed, from
    `replica_feature_sigma`) the features are left empty.
    """
    t = time.perf_counter()
    out = segment(img)
    t = clock.add("segment (sum over images)", t)
    outcome = outcome_of(out, plan, clock)
    if features:
        t = time.perf_counter()
        outcome.features, _ = feature_maps_for_scoring(
            img, sigmas=list(plan.score_sigmas), n_workers=1
        )
        clock.add("scoring features (sum over images)", t)
    return outcome


def outcome_of(out: np.ndarray, plan: ScorePlan, clock: StageClock, own: bool = False) -> Outcome:
    """The objects of one model output (as returned by a segmenter), measured; no features.

    ``own``: ``out`` is the caller's to give away (the labels `SharedPass.segment_output`
    made for this call, held by nothing else): its objects are then filtered by size in
    place, not in a copy. Same outcome either way.
    """
    t = time.perf_counter()
    components = to_objects(out, plan.threshold)
    n_components = int(components.max()) if components.size else 0
    # labels made here from a mask or a probability are this call's own too
    own = own or not np.may_share_memory(components, out)
    lab = drop_small(components, plan.min_size or 0, in_place=own)
    t = clock.add("segment (sum over images)", t)
    table, glob = measure_objects(lab)
    clock.add("measure (sum over images)", t)
    return Outcome(lab, table, glob, np.empty(0, np.float32), n_components)


@dataclass
class SharedPass:
    """The classifier's segmentation pass, its filters shared with the scoring features.

    Each block's bank (the classifier's features) is classified and handed to
    `shared_filters.scoring_block`, which copies the scales the bank holds and computes
    the others: the scoring features of an image (and the replicas' σ) come out of its
    segmentation pass, with the values of `feature_maps_for_scoring` and
    `replica_feature_sigma`, without filtering the image a second time.
    """

    clf: PixelClassifier
    channels: ScoringChannels
    threshold: float
    #: the passes' block buffers, taken once for all the passes of a run
    scratch: ScratchPool = field(default_factory=ScratchPool)

    def segment_output(self, mask: np.ndarray) -> np.ndarray:
        """What ``classifier_segmenter``'s ``segment`` returns, from the mask.

        ``mask`` is the thresholded foreground probability
        (``foreground_probabilities(..., threshold=)``).
        """
        return to_objects(mask, self.threshold)

    def _buffer(self, core: tuple[slice, ...]) -> np.ndarray:
        """A (F, *core shape) float32 buffer from the pool (give it back after use)."""
        shape = (len(self.channels.names),) + tuple(c.stop - c.start for c in core)
        return self.scratch.take(int(np.prod(shape))).reshape(shape)

    def with_features(
        self, img: np.ndarray, channels_last: bool, n_workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(segment output, scoring features)`` of ``img`` in one pass.

        The features are ``img.shape + (F,)`` (``channels_last``) or ``(F,) + img.shape``,
        float32. Blocks on ``n_workers`` threads (default the classifier's).
        """
        n = len(self.channels.names)
        shape = img.shape + (n,) if channels_last else (n,) + img.shape
        feats = np.empty(shape, np.float32)

        def on_block(_i: int, core: tuple[slice, ...], bank: np.ndarray) -> None:
            out = self._buffer(core)
            buf = scoring_block(img, core, self.channels, bank, out)
            if channels_last:
                feats[core] = np.moveaxis(buf, 0, -1)
            else:
                feats[(slice(None), *core)] = buf
            self.scratch.give(out)

        (mask,) = self.clf.foreground_probabilities(
            [img], on_block, n_workers, threshold=self.threshold, scratch=self.scratch
        )
        return self.segment_output(mask), feats

    def with_bank_channels(
        self,
        img: np.ndarray,
        n_workers: int | None = None,
        out: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(segment output, {name: (H, W) float32})`` of the bank's scoring channels.

        Only the scoring channels the bank holds; no other scale is computed (a caller
        computes those one scale at a time). Blocks on ``n_workers`` threads (default
        the classifier's); the result does not depend on them. ``out`` (from
        `bank_channel_buffers`) receives the channels instead of new arrays (every
        pixel is written): a caller scoring several images in turn reuses its memory.
        """
        pairs = self.channels.from_bank
        if out is None:
            out = self.bank_channel_buffers(img.shape)
        chans = {self.channels.names[i]: out[self.channels.names[i]] for i, _ in pairs}

        def on_block(_i: int, core: tuple[slice, ...], bank: np.ndarray) -> None:
            for i, j in pairs:
                chans[self.channels.names[i]][core] = bank[j]

        (mask,) = self.clf.foreground_probabilities(
            [img], on_block, n_workers, threshold=self.threshold, scratch=self.scratch
        )
        return self.segment_output(mask), chans

    def bank_channel_buffers(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Uninitialised ``{name: shape float32}`` for `with_bank_channels`' ``out``."""
        pairs = self.channels.from_bank
        return {self.channels.names[i]: np.empty(shape, np.float32) for i, _ in pairs}

    def replicas(
        self,
        images: np.ndarray,
        n_workers: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Foreground masks of the replicas and the σ of their scoring features.

        Masks: probability > threshold, as `segment_output` takes them.

        σ as `standard_score.replica_feature_sigma` (the same float64 Welford fold, block
        by block, replicas in order), channel-first: ``(F,) + images.shape[1:]`` float32.
        ``progress(done, total)`` counts the blocks done (all replicas of a block).
        """
        from rawsigma.analysis.scoring import welford_kernel  # numba: imported when needed

        if len(images) < 2:
            raise ValueError("need at least two replicas for a feature sigma")
        n = len(self.channels.names)
        sigma = np.empty((n,) + images.shape[1:], np.float32)
        local = threading.local()  # a block's accumulators, from its first replica to its last

        def on_block(i: int, core: tuple[slice, ...], bank: np.ndarray) -> None:
            out = self._buffer(core)
            buf = scoring_block(images[i], core, self.channels, bank, out)
            size = buf.size
            if i == 0:
                local.acc = self.scratch.take(2 * size, np.float64).reshape(2, size)
                local.acc[:] = 0.0
            mean, m2 = local.acc[0], local.acc[1]
            welford_kernel.fold(mean, m2, buf.ravel(), i + 1)
            if i == len(images) - 1:
                welford_kernel.finish(m2, len(images), buf.ravel())  # buf is contiguous
                sigma[(slice(None), *core)] = buf
                self.scratch.give(local.acc)
                local.acc = None
            self.scratch.give(out)

        fgs = self.clf.foreground_probabilities(
            list(images), on_block, n_workers, progress, self.threshold, self.scratch
        )
        return fgs, sigma


def shared_pass(clf: PixelClassifier, plan: ScorePlan, ndim: int = 2) -> SharedPass | None:
    """The `SharedPass` of a trained classifier, or None if it cannot share its blocks."""
    if not clf.shares_blocks():
        return None
    channels = plan_scoring_channels(clf.features, plan.score_sigmas, ndim)
    return SharedPass(clf, channels, plan.threshold)


def scoring_features_provenance(shared: SharedPass | None, plan: ScorePlan) -> dict:
    """``results.json``'s ``provenance.scoring_features``: which scales, and from where.

    ``from_model_bank``: scales whose four channels are the classifier bank's own,
    taken from each image's segmentation pass; ``computed``: scales filtered apart.
    """
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES

    scales = [float(s) for s in plan.score_sigmas]
    if shared is None:
        banked: list[float] = []
    else:
        banked = [s for s in scales if s not in shared.channels.computed]
    return {
        "features": list(SCORING_FEATURES),
        "scales": scales,
        "from_model_bank": banked,
        "computed": [s for s in scales if s not in banked],
    }


def codec_bytes(codec: Any, image: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = codec.encode(image)
    return data, np.asarray(codec.decode(data))


def raw_noise_sigma(image: np.ndarray, profile: Any) -> np.ndarray:
    """Per-pixel (voxel) raw noise σ (ADU): Poisson–Gaussian model + ADC quantisation.

    The quantisation adds 1/12 ADU². Saturated pixels have no defined noise and are
    NaN (left out of the Δ/σ map).
    """
    var = np.maximum(profile.variance(image.astype(np.float32)), 0) + 1.0 / 12.0
    sigma = np.sqrt(var).astype(np.float32)
    sigma[image >= min(profile.max_adu, np.iinfo(image.dtype).max)] = np.nan
    return sigma
