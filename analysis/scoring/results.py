"""What a scoring run returns: per-codec scores and the whole run's results."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.scoring import standard_score as sc

if TYPE_CHECKING:
    from rawsigma.analysis.scoring.plans import ScorePlan

__all__ = ["CodecResult", "ScoreResult", "ScoredVersion", "scored_record"]


@dataclass
class ScoredVersion:
    """What every scored version has (2D and 3D :class:`CodecResult`, tomography's version)."""

    spec: str
    description: str
    ratio: float
    n_bytes: int
    globals: dict[str, dict]
    objects: dict[str, sc.ObjectScore]
    if TYPE_CHECKING:  # a field of each subclass (it comes after fields of their own)
        verdict: dict

    def record(self) -> dict:
        """The JSON record every version's ``to_dict`` starts with."""
        return {
            "spec": self.spec,
            "description": self.description,
            "compression_ratio": self.ratio,
            "n_bytes": self.n_bytes,
            "verdict": self.verdict,
            "globals": self.globals,
            "objects": {k: v.summary() for k, v in self.objects.items()},
        }


def scored_record(result: Any, **replicas_extra: Any) -> dict:
    """Raw objects, raw globals, the replicas and every version's record, for JSON.

    ``result`` has ``n_objects``, ``raw_globals``, ``replica_globals``,
    ``replica_delta``, ``replica_match`` and ``codecs`` (each with ``to_dict``);
    ``replicas_extra`` are added to the ``replicas`` record.
    """
    return {
        "n_objects_raw": result.n_objects,
        "raw_globals": result.raw_globals,
        "replicas": {
            "n": len(result.replica_globals),
            "globals": result.replica_globals,
            "delta": result.replica_delta,
            "match": result.replica_match,
            **replicas_extra,
        },
        "codecs": [c.to_dict() for c in result.codecs],
    }


@dataclass
class CodecResult(ScoredVersion):
    """Scores of one processed version of the raw image against the raw noise."""

    features: dict[str, dict]
    match: dict
    verdict: dict
    labels: np.ndarray
    pixel_eps: np.ndarray  # (H, W) float32, (raw − decoded)/σ_pixel
    values: dict[str, np.ndarray]  # object table re-indexed onto raw objects
    quantisation: dict | None = None  # 8-bit step against σ at the objects
    # per-pixel ε map of the feature with the largest mean |ε| (name → (H, W) float32)
    feature_eps: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready summary (no images)."""
        pe = self.pixel_eps[np.isfinite(self.pixel_eps)]
        extra = {"quantisation": self.quantisation} if self.quantisation else {}
        return {
            **extra,
            **self.record(),
            "features": self.features,
            "match": self.match,
            "pixel_epsilon": {
                "mean": float(pe.mean()) if pe.size else math.nan,
                "rms": float(np.sqrt(np.mean(pe.astype(np.float64) ** 2))) if pe.size else 0,
            },
        }


@dataclass
class ScoreResult:
    """Everything a report needs: plan, provenance, raw results, per-codec scores."""

    plan: ScorePlan
    provenance: dict
    image: np.ndarray
    raw_labels: np.ndarray
    raw_objects: dict[str, np.ndarray]
    raw_globals: dict[str, float]
    replica_globals: list[dict]
    replica_values: dict[str, np.ndarray]  # (n_rep, n_obj)
    replica_delta: dict[str, dict]
    replica_match: list[dict]
    feature_names: list[str]
    codecs: list[CodecResult]
    tolerance: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    null: dict[str, Any] = field(default_factory=dict)  # param -> nullstats.ParamNull
    objects_info: dict = field(default_factory=dict)  # min size rule, sizes, warnings

    @property
    def n_objects(self) -> int:
        """Number of objects in the raw segmentation."""
        return len(next(iter(self.raw_objects.values()), []))

    def to_dict(self) -> dict:
        """JSON-ready results (written as ``results.json``)."""
        return {
            "provenance": self.provenance,
            "plan": self.plan.model_dump(),
            "image_shape": list(self.image.shape),
            "image_dtype": str(self.image.dtype),
            **scored_record(
                self, ci_factors_95=list(sc.epsilon_ci_factors(len(self.replica_globals)))
            ),
            "tolerance_search": self.tolerance,
            "timings_s": self.timings,
            "notes": self.notes,
            "null": {k: v.to_dict() for k, v in self.null.items()},
            "objects_info": self.objects_info,
        }


# JSON of results: numpy values as Python numbers, non-finite floats as strings
