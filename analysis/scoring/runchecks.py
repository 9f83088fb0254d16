"""Plausibility checks of a scoring run: minimum object size, object counts, 8-bit step.

- :func:`default_min_size`: the minimum object size the user implied. Annotated
  foreground regions (8-connected) are parts of objects (a stroke across an object
  spans its diameter), so a fifth of the median object size they imply is a
  conservative lower bound of an object's size (a median: one tiny stroke or a
  fragment annotated at the image edge does not set it); components below it are classifier
  speckle, not objects.
- :func:`count_warnings`: loud warnings when the object count looks implausible against
  the annotations (e.g. 1304 objects for ~85 annotated cells).
- :func:`quantisation_note`: the 8-bit step against the raw σ at the objects, which
  says why 8-bit stays within noise (or not).
- :func:`reference_note`: the raw segmentation against the user's instance labels
  (F1 at IoU ≥ 0.5, merged and missed objects), with a warning and what to do when
  they agree poorly: the scores then describe other objects than the user's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rawsigma.analysis.segmentation.label_values import distinct_values
from scipy import ndimage as ndi

__all__ = [
    "MIN_SIZE_FRACTION",
    "complete_objects_info",
    "count_warnings",
    "default_min_size",
    "note_estimated_profile",
    "quantisation_note",
    "reference_note",
    "size_summary",
    "systematic_note",
]

#: default minimum object size = this fraction of the median annotated object size
MIN_SIZE_FRACTION = 0.2
MIN_SIZE_PERCENTILE = 50.0
#: below this F1 (IoU ≥ 0.5) against the instance labels the report warns
POOR_AGREEMENT_F1 = 0.5


def size_summary(areas: np.ndarray) -> dict:
    """Count, min, 10th/50th/90th percentile and max of object areas (px)."""
    a = np.asarray(areas, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"n": 0}
    q = np.percentile(a, [10, 50, 90])
    return {"n": int(a.size), "min": float(a.min()), "p10": float(q[0]),
            "median": float(q[1]), "p90": float(q[2]), "max": float(a.max())}  # fmt: skip


def default_min_size(annotations: np.ndarray, foreground_class: int = 2) -> tuple[int, dict]:
    """Minimum object size (px) implied by the annotations, and how it was derived.

    Parameters
    ----------
    annotations : (H, W) int array
        Sparse training annotations.
    foreground_class : int
        Annotation class of the objects.

    Returns
    -------
    min_size : int
        ``max(1, floor(MIN_SIZE_FRACTION · median))`` of the object sizes implied by the
        8-connected annotated foreground regions: ``max(area, π/4·extent²)`` with the
        extent the longer bounding-box side (a stroke across an object implies the
        disc it spans); 1 when there is no foreground region.
    info : dict
        ``rule`` (text), ``n_regions``, ``region_sizes`` (:func:`size_summary`).
    """
    fg = np.asarray(annotations) == foreground_class
    lab, n = ndi.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return 1, {"rule": "no annotated foreground region: 1 px", "n_regions": 0}
    sizes = np.bincount(lab.ravel())[1:].astype(np.float64)
    # a scribbled stroke across an object spans it: the object is at least the disc
    # whose diameter is the stroke's extent (bounding-box side)
    ext = np.array([max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
                    for sl in ndi.find_objects(lab)], dtype=np.float64)  # fmt: skip
    implied = np.maximum(sizes, math.pi / 4.0 * ext**2)
    p10 = float(np.percentile(implied, MIN_SIZE_PERCENTILE))
    ms = max(1, int(math.floor(MIN_SIZE_FRACTION * p10)))
    rule = (
        f"{MIN_SIZE_FRACTION:g} × the median object size implied "
        f"by the {n} annotated foreground regions ({p10:.0f} px; a region implies max(its "
        f"area, the disc spanned by its extent)) = {ms} px"
    )
    info = {"rule": rule, "n_regions": int(n), "region_sizes": size_summary(sizes),
            "implied_sizes": size_summary(implied)}  # fmt: skip
    return ms, info


def count_warnings(
    n_objects: int, n_components: int, min_size: int, info: dict[str, Any], unit: str = "px"
) -> list[str]:
    """Warnings when the object count looks implausible against the annotations.

    Parameters
    ----------
    n_objects : int
        Objects kept in the raw segmentation (≥ ``min_size``).
    n_components : int
        Connected components before the size filter.
    min_size : int
        Size filter used (px).
    info : dict
        ``n_regions`` of :func:`default_min_size` (absent with a plug-in model).
    unit : str
        Unit of ``min_size`` in the message: "px" (2D) or "voxels" (3D).
    """
    out = []
    dropped = n_components - n_objects
    if n_components >= 20 and dropped > 0.5 * n_components:
        out.append(
            f"WARNING: the raw segmentation had {n_components} connected components and "
            f"{dropped} of them ({100 * dropped / n_components:.0f} %) were smaller than "
            f"{min_size} {unit}: the classifier produces speckle; check the annotations "
            "(annotate the background where the speckle is) or the threshold."
        )
    n_reg = int(info.get("n_regions", 0) or 0)
    if n_reg and n_objects > 3 * n_reg + 10:
        out.append(
            f"WARNING: {n_objects} objects scored for {n_reg} annotated foreground regions: "
            "if every object was annotated, the segmentation splits objects or counts noise "
            "as objects, and the scores describe those fragments. Raise --min-size or "
            "improve the annotations (ignore this if only some objects were annotated)."
        )
    return out


def complete_objects_info(
    info: dict[str, Any],
    min_size: int,
    n_components: int,
    n_objects: int,
    sizes: np.ndarray,
    notes: list[str],
    unit: str = "px",
) -> dict[str, Any]:
    """Add the raw object counts, sizes and count warnings to ``info`` (2D and 3D).

    The warnings (:func:`count_warnings`) are also put first in ``notes``. ``sizes`` are
    the raw objects' sizes (px or voxels, ``unit``); ``info`` is returned.
    """
    warnings = count_warnings(n_objects, n_components, min_size, info, unit)
    info.update(
        min_size=min_size,
        n_components_raw=n_components,
        n_objects_raw=n_objects,
        sizes=size_summary(sizes) if n_objects else {"n": 0},
        warnings=warnings,
    )
    notes[:0] = warnings
    return info


def note_estimated_profile(profile: Any, notes: list[str]) -> None:
    """Put the warning of an estimated camera profile first in ``notes``."""
    est = profile.provenance.get("estimate") if isinstance(profile.provenance, dict) else None
    if isinstance(est, dict) and est.get("warning"):
        notes.insert(0, f"WARNING: estimated profile: {est['warning']}")


def systematic_note(spec: str, verdict: dict, global_scores: dict) -> str | None:
    """One line on a failing parameter whose objects all moved the same way, or None.

    Parameters
    ----------
    spec : str
        Codec spec as the user spelt it.
    verdict : dict
        The version's verdict (`standard_score.verdict`), with ``systematic``.
    global_scores : dict
        The version's global scores (`standard_score.score_globals`); the total area's
        ε is quoted (a global threshold moves it by many raw σ: every object adds to it).

    Returns
    -------
    str or None
        What moved, in which direction and in how many objects; for the noise codec
        without dither, the option that removes the shift (measured in
        ``benchmarks/RESULTS.md``, "Verdict with threshold plug-ins").
    """
    shifts = verdict.get("systematic") or []
    if not shifts:
        return None
    s = max(shifts, key=lambda d: abs(d["epsilon"]))
    way = "larger" if s["epsilon"] < 0 else "smaller"  # ε = (χ_raw − χ_c)/σ
    text = (
        f"{spec}: a systematic shift, not scatter: {s['param']} is {way} in {spec} for "
        f"{s['same_sign']:.0%} of the {s['n']} scored objects (robust ε {s['epsilon']:.2f}), "
        "where raw noise moves objects about half each way"
    )
    if spec.startswith(("noise", "8bit")):  # codecs that map values onto levels
        text += (
            ". Every object boundary moved together, as when a threshold-based segmentation "
            "(a global or Otsu threshold) meets the codec's quantisation levels"
        )
    total = global_scores.get("total_area") or global_scores.get("total_volume")
    if total and math.isfinite(total.get("epsilon", math.nan)):
        name = "total area" if "total_area" in global_scores else "total volume"
        text += f"; the {name} moved by ε {total['epsilon']:.2f}"
    if spec.startswith("noise") and "dither=1" not in spec.replace(" ", ""):
        text += (
            f". For the noise codec, subtractive dither ({spec},dither=1) decorrelates its "
            "error from the signal and removes this shift"
        )
    return text + "."


def quantisation_note(
    spec: str, decoded: np.ndarray, sigma_pix: np.ndarray, objects: np.ndarray
) -> dict | None:
    """The quantisation step of a decoded image against the raw σ at the objects.

    Parameters
    ----------
    spec : str
        Codec spec (only 8-bit conversions, ``8bit...``, get a note).
    decoded : (H, W) array
        Decoded image on the raw scale.
    sigma_pix : (H, W) array
        Raw noise σ per pixel (ADU; NaN where undefined, e.g. saturated).
    objects : (H, W) int array
        Raw segmentation (0 background).

    Returns
    -------
    dict or None
        ``step`` (ADU, median spacing of the decoded levels), ``sigma_objects`` and
        ``sigma_background`` (median σ there), ``step_over_sigma`` (objects),
        ``text``.
    """
    if not spec.startswith("8bit"):
        return None
    levels = distinct_values(decoded)
    if levels.size < 2:
        return None
    step = float(np.median(np.diff(levels.astype(np.float64))))
    obj = (np.asarray(objects) > 0) & np.isfinite(sigma_pix)
    bg = (np.asarray(objects) == 0) & np.isfinite(sigma_pix)
    s_obj = float(np.median(sigma_pix[obj])) if obj.any() else math.nan
    s_bg = float(np.median(sigma_pix[bg])) if bg.any() else math.nan
    r = step / s_obj if s_obj > 0 else math.nan
    if not math.isfinite(r):
        text = f"{spec}: 8-bit step {step:.1f} ADU (no object pixels to compare with)."
    else:
        if r < 1:
            why = (
                "below the raw noise at the objects: its rounding error is a fraction of "
                "the noise, which is why 8-bit can stay within noise here"
            )
        elif r < math.sqrt(12):
            why = (
                "comparable to the raw noise at the objects: the rounding error is still "
                "below the noise, so whether object edges move beyond the noise is what "
                "the verdict above measures"
            )
        else:
            why = (
                "far above the raw noise at the objects: the rounding error alone exceeds "
                "the noise, so 8-bit rounding can move object edges by more than the noise can"
            )
        text = (
            f"{spec}: 8-bit step {step:.1f} ADU = {r:.2f} σ at the objects (median raw σ "
            f"{s_obj:.1f} ADU there, {s_bg:.1f} ADU in the background; rounding error "
            f"step/√12 = {r / math.sqrt(12):.2f} σ rms): {why}."
        )
    return {"step": step, "sigma_objects": s_obj, "sigma_background": s_bg,
            "step_over_sigma": r, "text": text}  # fmt: skip


def _merged_missed(labels: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """Reference objects sharing their main object with another one, and those missed.

    A reference object is *covered* when one object holds at least half of its
    pixels; covered objects whose object covers another reference object too are
    *merged*; the others not covered are *missed*.
    """
    ref = np.asarray(reference).astype(np.int64, copy=False).ravel()
    lab = np.asarray(labels).astype(np.int64, copy=False).ravel()
    ids, size = np.unique(ref[ref > 0], return_counts=True)
    both = (ref > 0) & (lab > 0)
    if ids.size == 0 or not both.any():
        return 0, int(ids.size)
    pairs, n = np.unique(np.stack([ref[both], lab[both]]), axis=1, return_counts=True)
    frac = n / size[np.searchsorted(ids, pairs[0])]
    owner = pairs[1][frac >= 0.5]  # the object holding half of a reference object
    holders, k = np.unique(owner, return_counts=True)
    merged = int(k[k >= 2].sum())
    return merged, int(ids.size - owner.size)


def _on_background(labels: np.ndarray, reference: np.ndarray) -> int:
    """Objects with more than half of their pixels outside every reference object."""
    lab = np.asarray(labels).astype(np.int64, copy=False).ravel()
    n = int(lab.max()) + 1 if lab.size else 1
    size = np.bincount(lab, minlength=n)
    outside = np.bincount(lab[np.asarray(reference).ravel() == 0], minlength=n)
    return int(np.count_nonzero((size[1:] > 0) & (outside[1:] * 2 > size[1:])))


def reference_note(
    labels: np.ndarray, reference: np.ndarray, min_size: int | None = None
) -> tuple[dict, list[str]]:
    """Agreement of the raw segmentation with the user's instance labels.

    Parameters
    ----------
    labels : (H, W) int array
        Raw segmentation (objects after the size filter).
    reference : (H, W) int array
        The instance labels given with ``--instances`` (0 = background).
    min_size : int, optional
        Size filter of the run (px), quoted in the advice.

    Returns
    -------
    info : dict
        :func:`~rawsigma.analysis.measurement.agreement.instance_agreement` (IoU ≥ 0.5)
        plus ``n_merged``, ``n_missed``, ``n_on_background`` (objects with more than
        half of their pixels outside every labelled object) and ``poor`` (F1 below
        :data:`POOR_AGREEMENT_F1`).
    notes : list of str
        One line: the agreement, a ``WARNING`` with what to do when it is poor.
    """
    from rawsigma.analysis.measurement.agreement import instance_agreement

    info: dict[str, Any] = dict(instance_agreement(labels, reference, 0.5))
    merged, missed = _merged_missed(labels, reference)
    spurious = _on_background(labels, reference)
    f1 = float(info["f1"])
    info.update(n_merged=merged, n_missed=missed, n_on_background=spurious, iou_threshold=0.5,
                poor=bool(not f1 >= POOR_AGREEMENT_F1))  # fmt: skip
    what = (
        f"agreement of the raw segmentation with the instance labels: F1 {f1:.2f} "
        f"(IoU ≥ 0.5; {info['tp']} of {info['n_objects']} objects match one of the "
        f"{info['n_reference']} labelled; {merged} labelled objects merged with others, "
        f"{missed} missed)"
    )
    if not info["poor"]:
        return info, [f"{what[0].upper()}{what[1:]}."]
    advice = []
    if merged >= max(missed, 1):
        advice.append(
            "touching objects merge (a pixel classifier with connected components cannot "
            "split them): annotate the background between them, or use a model that "
            "separates instances (--model module:function)"
        )
    if spurious >= max(2, 0.25 * info["n_objects"]):
        ms = f" (now {min_size} px)" if min_size is not None else ""
        advice.append(
            f"{spurious} objects lie mostly on background: raise --min-size{ms} or "
            "annotate the background there"
        )
    if missed > merged:
        advice.append("labelled objects missed: add annotations of such objects")
    if not advice:
        advice.append("add annotations, or use another model (--model module:function)")
    return info, [
        f"WARNING: poor {what}: the scores describe these objects, not the labelled ones; "
        + "; ".join(advice)
        + "."
    ]
