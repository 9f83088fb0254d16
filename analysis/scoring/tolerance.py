"""The tolerance search: the most aggressive setting of a codec family within noise.

One loop for images and volumes (in memory or as a task graph): :func:`tolerance_sweep`
walks a family's settings (:data:`~rawsigma.analysis.scoring.plans.TOLERANCE_SWEEPS`)
from gentle to aggressive, scores each with the run's scorer, stops after two
failures in a row, and picks the highest compression ratio within noise. What
encoding and scoring one setting means is given by the caller: ``encode(spec)``
returns the compression ratio and a handle, ``score(spec, handle)`` the
:class:`~rawsigma.analysis.scoring.results.CodecResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rawsigma.analysis.scoring import standard_score as sc

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["tolerance_sweep"]


def tolerance_sweep(
    family: str,
    sweep: list[str],
    encode: Callable[[str], tuple[float, Any]],
    score: Callable[[str, Any], Any],
    report: Callable[[str, int, int], None],
) -> dict:
    """Sweep one codec family gentle → aggressive; stop after two failures in a row.

    Parameters
    ----------
    family : str
        Family name (progress stage ``"tolerance <family>"``).
    sweep : list of str
        Codec specs, gentle first.
    encode : callable(spec) -> (ratio, handle)
        Encode with ``spec``; any exception (codec unavailable, knob out of range)
        records the point as an error and the sweep goes on.
    score : callable(spec, handle) -> CodecResult
        Segment, measure and score the decoded data of ``handle``.
    report : callable(stage, done, total)
        Progress.

    Returns
    -------
    dict
        ``{"points": [{"spec", "ratio", "within_noise", "worst"} | {"spec", "error"} |
        a point with ``same_as`` (knob saturated: the same stream), …], "best": the
        within-noise point of highest ratio or None}``.
    """
    points: list[dict] = []
    fails = 0
    for j, spec in enumerate(sweep):
        report(f"tolerance {family}", j, len(sweep))
        try:
            ratio, handle = encode(spec)
        except Exception as exc:  # codec unavailable or knob out of range
            points.append({"spec": spec, "error": str(exc)})
            continue
        same = next(
            (p for p in points if "ratio" in p and abs(p["ratio"] / ratio - 1) < 0.005),
            None,
        )
        if same is not None:  # knob saturated (e.g. JPEG quality 100): same stream
            points.append({**same, "spec": spec, "same_as": same["spec"]})
            continue
        result = score(spec, handle)
        ok = bool(result.verdict["within_noise"])
        points.append({"spec": spec, "ratio": result.ratio, "within_noise": ok,
                       "worst": result.verdict["worst"]})  # fmt: skip
        fails = 0 if ok else fails + 1
        if fails >= 2:
            break
    report(f"tolerance {family}", len(sweep), len(sweep))  # the bar ends full
    best = sc.tolerance_best([p for p in points if "ratio" in p])
    return {"points": points, "best": best}
