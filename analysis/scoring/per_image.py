"""One image through the scoring pipeline: segment, drop small objects, measure, match.

The building blocks of :mod:`.runner`, applied alike to the raw image, its replicas and
every decoded image.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.measurement.matching import MatchResult, match_objects
from rawsigma.analysis.measurement.morphometry import global_params, measure
from rawsigma.analysis.segmentation.classifier import PixelClassifier, labels_from_output
from rawsigma.analysis.segmentation.features import feature_maps_for_scoring

if TYPE_CHECKING:
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
    "process_image",
    "raw_noise_sigma",
    "score_params",
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
    return measure(labels), {k: float(v) for k, v in global_params(labels).items()}


def score_params(table: dict[str, np.ndarray]) -> list[str]:
    skip = {"label", "Label", "BX", "BY", "Width", "Height", "id"}
    return [k for k, v in table.items() if k not in skip and np.asarray(v).dtype.kind in "fiu"]


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


def drop_small(lab: np.ndarray, min_size: int) -> np.ndarray:
    """Remove objects below ``min_size`` px and renumber 1..n (label order kept)."""
    if min_size <= 1 or not lab.any():
        return lab
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
    components = to_objects(segment(img), plan.threshold)
    lab = drop_small(components, plan.min_size or 0)
    t = clock.add("segment (sum over images)", t)
    table, glob = measure_objects(lab)
    t = clock.add("measure (sum over images)", t)
    n_components = int(components.max()) if components.size else 0
    if not features:
        return Outcome(lab, table, glob, np.empty(0, np.float32), n_components)
    feats, _ = feature_maps_for_scoring(img, sigmas=list(plan.score_sigmas), n_workers=1)
    clock.add("scoring features (sum over images)", t)
    return Outcome(lab, table, glob, feats, n_components)


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
