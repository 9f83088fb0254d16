"""What the 2D, 3D and tomography pipelines share: the replica reference and version scores.

Every pipeline segments and measures the raw data, its replicas and each processed
version, then scores them the same way; only three things differ between them, and
they are the parameters here:

- the **outcome** of one segmentation: any object with ``labels``, ``table`` (parameter →
  per-object values, with ``"label"``) and ``globals`` (name → value);
- the **matching** of an outcome's objects to the raw ones (``match(outcome)`` → a
  :class:`~rawsigma.analysis.measurement.matching.MatchResult`): centroids and distance
  are the pipeline's own (pixels, physical units, voxels);
- the **scored parameters** and their **resolution** (``quantum(param, raw_table)`` →
  per-object floor of σ).

:func:`replica_reference` matches every replica to raw (Δ, the matched values, the
leave-one-out null, the matching test's null); :func:`score_version` scores one
version against it; :func:`codec_result` assembles the 2D/3D
:class:`~rawsigma.analysis.scoring.results.CodecResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.results import CodecResult

__all__ = [
    "Outcome",
    "ReplicaReference",
    "VersionScores",
    "codec_result",
    "pixel_epsilon",
    "replica_reference",
    "score_version",
]


class Outcome(Protocol):
    """One segmentation measured: what the shared scorer reads of it."""

    labels: Any  # label image or volume (numpy, or zarr on tomography's chunked path)
    table: dict[str, np.ndarray]  # parameter → per-object values, with "label"
    globals: dict[str, float]


#: An outcome's matching to the raw objects (``MatchResult``: ``ref_index``,
#: ``other_index``, ``summary()``).
Match = Callable[[Any], Any]
#: Resolution of a parameter: ``quantum(param, raw_table)`` → (n_objects,) floor of σ.
Quantum = Callable[[str, dict], np.ndarray]


@dataclass
class ReplicaReference:
    """The raw segmentation and what the replicas say about its noise."""

    raw: Any  # the raw Outcome (a pipeline's own type, with its extra fields)
    replicas: list[Any]  # the replicas' Outcomes
    params: list[str]  # object parameters that are scored
    values: dict[str, np.ndarray]  # parameter → (n_replicas, n_objects), matched to raw
    matches: list[dict]
    delta: dict[str, dict]
    quanta: dict[str, np.ndarray]
    nulls: dict[str, Any]  # parameter → nullstats.ParamNull
    unmatched_null: list[int]  # unmatched objects per replica: the matching test's null
    feature_sigma: np.ndarray | None = None  # replica spread of the scoring features
    feature_names: list[str] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        """Objects of the raw segmentation."""
        return len(self.raw.table["label"])

    def result_fields(self) -> dict[str, Any]:
        """The raw and replica fields of a result (``ScoreResult``, ``TomoScoreResult``)."""
        return {
            "raw_labels": self.raw.labels,
            "raw_objects": self.raw.table,
            "raw_globals": self.raw.globals,
            "replica_globals": [r.globals for r in self.replicas],
            "replica_values": self.values,
            "replica_delta": self.delta,
            "replica_match": self.matches,
            "null": self.nulls,
        }


def replica_reference(
    raw: Outcome,
    replicas: Sequence[Outcome],
    params: Sequence[str],
    match: Match,
    quantum: Quantum,
    feature_sigma: np.ndarray | None = None,
    feature_names: Sequence[str] = (),
) -> ReplicaReference:
    """Match every replica to raw: Δ, matched values and the calibrated null per parameter.

    Parameters
    ----------
    raw, replicas : outcomes
        Segmentations of the raw data and of its replicas (module notes).
    params : sequence of str
        The object parameters scored.
    match : callable(outcome) → MatchResult
        The outcome's objects matched to the raw ones.
    quantum : callable(param, raw_table) → (n_objects,) array
        Resolution floor of each parameter (used only when raw has objects).
    feature_sigma, feature_names : optional
        The replicas' spread of the scoring features and their names (2D and 3D).
    """
    params = list(params)
    n_obj = len(raw.table["label"])
    values = {k: np.full((len(replicas), n_obj), np.nan) for k in params}
    matches: list[dict] = []
    deltas: dict[str, list] = {k: [] for k in params}
    for i, outcome in enumerate(replicas):
        m = match(outcome)
        matches.append(m.summary())
        matched = sc.matched_values(outcome.table, m.ref_index, m.other_index, n_obj)
        for k in params:
            values[k][i] = matched[k]
            deltas[k].append(sc.delta(k, raw.table[k], matched[k]))
    delta = {k: sc.delta_stats(np.concatenate(v)) for k, v in deltas.items()}
    # calibrated verdict: resolution floors and the leave-one-out null per parameter
    quanta = {k: quantum(k, raw.table) for k in params} if n_obj else {}
    nulls = (
        {k: ns.loo_null(k, raw.table[k], values[k], quanta[k]) for k in params}
        if n_obj and len(replicas) >= 3
        else {}
    )
    unmatched = [ns.n_unmatched(m) for m in matches]
    return ReplicaReference(
        raw, list(replicas), params, values, matches, delta, quanta, nulls, unmatched,
        feature_sigma, list(feature_names),
    )  # fmt: skip


class VersionScores(NamedTuple):
    """Scores of one processed version against the replica reference."""

    match: dict  # the matching summary
    matched: dict[str, np.ndarray]  # the version's table re-indexed onto the raw objects
    globals: dict[str, dict]
    objects: dict[str, sc.ObjectScore]
    verdict: dict


def score_version(
    ref: ReplicaReference, outcome: Outcome, match: Any, spec: str | None = None
) -> VersionScores:
    """ε, Δ and the calibrated verdict of one version whose objects matched raw by ``match``.

    With ``spec`` (the version's codec spec), a failing parameter whose objects all moved
    the same way gets ``verdict["systematic_note"]`` (`runchecks.systematic_note`).
    """
    raw, n_obj = ref.raw, ref.n_objects
    matched = sc.matched_values(outcome.table, match.ref_index, match.other_index, n_obj)
    replica_globals = [r.globals for r in ref.replicas]
    global_scores = sc.score_globals(raw.globals, replica_globals, outcome.globals)
    object_scores = (
        sc.score_objects(raw.table, ref.values, matched, params=ref.params,
                         quanta=ref.quanta, null=ref.nulls or None)
        if n_obj
        else {}
    )  # fmt: skip
    summary = match.summary()
    matching = ns.codec_matching_test(summary, ref.unmatched_null, n_obj, object_scores)
    verdict = sc.verdict(global_scores, object_scores, matching=matching)
    note = rc.systematic_note(spec, verdict, global_scores) if spec is not None else None
    if note:
        verdict["systematic_note"] = note
    return VersionScores(summary, matched, global_scores, object_scores, verdict)


def pixel_epsilon(raw: np.ndarray, decoded: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The pixel ε map ``(raw − decoded) / σ``, float32.

    The values of ``((raw.astype(f32) − decoded.astype(f32)) / σ).astype(f32)`` (the
    quotient in σ's precision, rounded once to float32), in one array instead of four.
    """
    out = np.asarray(raw).astype(np.float32)
    np.subtract(out, np.asarray(decoded).astype(np.float32, copy=False), out=out)
    np.divide(out, sigma, out=out, casting="same_kind")
    return out


def codec_result(
    spec: str,
    decoded: Any,
    raw_data: np.ndarray,
    noise_sigma: np.ndarray,
    ref: ReplicaReference,
    outcome: Outcome,
    match: Any,
    feature_eps: dict[str, dict],
    worst_map: dict[str, np.ndarray],
) -> CodecResult:
    """The :class:`CodecResult` of one decoded image or volume.

    Parameters
    ----------
    spec : str
        The codec spec as the user spelt it.
    decoded : (data, ratio, n_bytes, description) tuple
        The decoded data and its compression figures.
    raw_data : ndarray
        The raw image or volume.
    noise_sigma : ndarray
        The raw noise σ per pixel/voxel (pixel ε = (raw − decoded)/σ).
    ref, outcome, match
        The replica reference, the decoded data's outcome and its matching to raw.
    feature_eps, worst_map
        The feature ε summary and the worst feature's ε map.
    """
    dec, ratio, n_bytes, description = decoded
    s = score_version(ref, outcome, match, spec)
    pixel_eps = pixel_epsilon(raw_data, dec, noise_sigma)
    return CodecResult(
        spec, description, float(ratio), int(n_bytes), s.globals, s.objects, feature_eps,
        s.match, s.verdict, outcome.labels, pixel_eps, s.matched,
        rc.quantisation_note(spec, dec, noise_sigma, ref.raw.labels), worst_map,
    )  # fmt: skip
