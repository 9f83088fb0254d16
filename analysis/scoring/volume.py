"""The scoring experiment on a 3D volume, in memory: :func:`score_volume`.

The same method as :func:`rawsigma.analysis.scoring.runner.score_image`, on a (Z, Y, X)
raw volume with voxel size ``spacing`` = (dz, dy, dx) in physical units:

1. **Replicas.** Synthesis is per voxel: each z plane is one camera frame, so the 2D
   camera profile (H, W) is broadcast over z and every plane is redrawn with it
   (one random stream over the planes, in order).
2. **Codecs** encode the whole volume: plane-wise codecs (JPEG, the noise codec) code
   each plane, the 8-bit conversion uses the range of the whole volume (as ImageJ
   converts a stack).
3. **Segmentation.** The 3D ilastik/Weka feature bank with anisotropic spacing:
   scales are given in units of the finest voxel size and turned into physical σ,
   then into per-axis σ_i = σ / spacing_i (σ in z is smaller in voxels when z is
   coarser); the same random forest classifies voxels; objects are the 26-connected
   components of the foreground, smaller ones than ``min_size`` voxels dropped.
4. **Measurement** (:mod:`rawsigma.analysis.measurement.morphometry3d`): per object
   volume, marching-cubes surface area, centroid, equivalent diameter, sphericity,
   all in physical units; globals count, total volume, total surface, mean volume
   and load = total object volume / tissue volume. The tissue mask is given, or the
   Otsu threshold of the raw volume smoothed by a Gaussian of σ = 4 finest voxels
   (physical, per axis), computed once on the raw volume and used for every version
   (so the load's denominator is the same for raw, replicas and codecs).
5. **Matching** by centroid with physical distances (radius ``plan.max_distance`` in
   the spacing's units), ε, Δ, the leave-one-out null and the calibrated verdict
   exactly as in 2D (:mod:`rawsigma.analysis.scoring.nullstats`), with the 3D
   parameters' resolution floors (:func:`parameter_quantum3d`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.scoring import first_run
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring.inputs import check_labels, load_model, raw_counts, resolve_plan
from rawsigma.analysis.scoring.runner import CONTROL_SPEC
from rawsigma.analysis.scoring.volume_steps import (
    DEFAULT_SPACING,
    VolumeResult,
    _Decoded,
    _rel_spacing,
    _Run,
    parameter_quantum3d,
    score_run,
)
from rawsigma.errors import ImageMismatchError
from rawsigma.volread import parse_spacing

if TYPE_CHECKING:
    from rawsigma.analysis.scoring.plans import ScorePlan

__all__ = [
    "DEFAULT_SPACING",
    "VolumeResult",
    "check_raw_volume",
    "check_spacing",
    "parameter_quantum3d",
    "score_volume",
    "tissue_mask",
]

Progress = Callable[[str, int, int], None]
Segmenter = Callable[[np.ndarray], np.ndarray]
#: Feature scales of the volume classifier (finest-voxel units): the ilastik set
#: without its largest scale (10), which costs the most in 3D and adds little for nuclei.
VOLUME_SIGMAS: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0)
TISSUE_SMOOTHING = 4.0  # finest voxels


# ----------------------------------------------------------------------------- inputs
def check_spacing(spacing: Any, name: str = "spacing") -> tuple[float, float, float]:
    """Return (dz, dy, dx) as floats or raise :class:`UsageError` (zeros, NaN, < 0).

    The same rule as the CLI's ``--spacing`` (:func:`rawsigma.volread.parse_spacing`).
    """
    return parse_spacing(spacing, name)


def check_raw_volume(volume: np.ndarray, profile: Any, name: str = "volume") -> np.ndarray:
    """Return a (Z, Y, X) raw integer volume matching ``profile`` or raise a clear error."""
    a = np.asarray(volume)
    if a.ndim != 3:
        raise ImageMismatchError(f"{name}: expected a 3-D volume (Z, Y, X), got shape {a.shape}")
    if a.dtype.kind == "f" or a.dtype.kind not in "ui" or a.dtype.itemsize < 2:
        raise ImageMismatchError(
            f"{name}: {a.dtype} volume; scoring needs the raw integer camera counts "
            "(uint16) as recorded, before any conversion"
        )
    return raw_counts(a, profile, name, "voxel", "volume")


def tissue_mask(volume: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Otsu threshold of the volume smoothed by σ = 4 finest voxels (per-axis σ)."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    sig = tuple(TISSUE_SMOOTHING / r for r in _rel_spacing(spacing))
    sm = ndi.gaussian_filter(volume.astype(np.float32), sig)
    if float(sm.max()) <= float(sm.min()):
        return np.ones(volume.shape, bool)
    return sm > threshold_otsu(sm)


def _default_min_size3d(annotations: np.ndarray, foreground_class: int) -> tuple[int, dict]:
    """1/5 of the median size (voxels) of the 26-connected annotated foreground regions."""
    from scipy import ndimage as ndi

    fg = np.asarray(annotations) == foreground_class
    lab, n = ndi.label(fg, structure=np.ones((3, 3, 3), bool))
    return min_size_rule(np.bincount(lab.ravel())[1:])


def min_size_rule(region_sizes: np.ndarray) -> tuple[int, dict]:
    """The default minimum size from the voxel counts of the annotated regions."""
    n = int(np.size(region_sizes))
    if n == 0:
        return 1, {"rule": "no annotated foreground region: 1 voxel", "n_regions": 0}
    sizes = np.asarray(region_sizes, np.float64)
    med = float(np.median(sizes))
    ms = max(1, int(math.floor(rc.MIN_SIZE_FRACTION * med)))
    rule = (
        f"{rc.MIN_SIZE_FRACTION:g} × the median size of the {n} annotated foreground "
        f"regions (26-connected, {med:.0f} voxels) = {ms} voxels"
    )
    return ms, {"rule": rule, "n_regions": int(n), "region_sizes": rc.size_summary(sizes)}


def _synthesize(vol: np.ndarray, profile: Any, n: int, rng: Any, centre: str) -> np.ndarray:
    """Replicas of a volume: every z plane redrawn with the 2D profile (one stream)."""
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    out = np.empty((n,) + vol.shape, vol.dtype)
    for z in range(vol.shape[0]):
        out[:, z] = synthesize(vol[z], profile, n, rng, centre)
    return out


def _segmenter(
    volume: np.ndarray,
    labels: np.ndarray | None,
    model: Segmenter | str | None,
    plan: ScorePlan,
    spacing: tuple[float, float, float],
    feature_sigmas: tuple[float, ...],
    seed: int,
    fit: Callable[[Any], Any] | None = None,
) -> tuple[Segmenter, str]:
    """The plug-in model, or a random forest trained on ``labels``; and its description.

    ``fit(clf)`` trains the forest instead of ``clf.fit(volume, labels)`` (the
    out-of-core path: ``volume`` and ``labels`` are then not used).
    """
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig

    if labels is None and fit is None:
        m = model if model is not None else plan.model
        fn = load_model(m) if isinstance(m, str) else m
        return fn, f"plug-in model {plan.model or getattr(m, '__name__', 'callable')}"
    cfg = FeatureConfig(
        plan.feature_preset,
        sigmas=feature_sigmas if plan.feature_preset == "ilastik" else None,
        spacing=_rel_spacing(spacing),
    )
    clf = PixelClassifier(
        preset=plan.classifier_preset,
        features=cfg,
        random_state=seed,
        n_jobs=plan.workers,
        n_estimators=plan.n_estimators,
        max_samples_per_class=plan.max_samples_per_class,
        foreground_class=plan.foreground_class,
    )
    if fit is None:
        clf.fit(volume, labels)
    else:
        fit(clf)
    clf.n_jobs = 1
    if hasattr(clf.model_, "n_jobs"):
        clf.model_.n_jobs = 1
    desc = (
        f"random forest ({plan.classifier_preset} preset, {plan.feature_preset} 3D features, "
        f"scales {', '.join(f'{s:g}' for s in cfg.resolved().sigmas or ())} finest voxels, "
        f"relative spacing {', '.join(f'{s:.3g}' for s in cfg.spacing or ())})"
    )
    return clf.foreground_probability, desc


def _resolve_spacing(
    spacing: Any, spacing_source: str | None, notes: list[str]
) -> tuple[tuple[float, float, float], str]:
    """The checked voxel size and where it came from; the isotropic default is warned."""
    if spacing is None:
        notes.append(
            "Warning: no voxel size given or found in the file: isotropic 1 assumed, so "
            "volumes, areas and distances are in voxels and the z axis is filtered as if "
            "it were sampled like x and y."
        )
        return DEFAULT_SPACING, "default (isotropic 1: no spacing given or found)"
    return check_spacing(spacing), spacing_source or "given"


def _check_inputs(
    volume: np.ndarray,
    profile: Any,
    labels: np.ndarray | None,
    spacing: Any,
    spacing_source: str | None,
    reference: np.ndarray | None,
    tissue: np.ndarray | None,
    plan: ScorePlan,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float], str]:
    """Raw volume, spacing, annotations and the optional masks checked before any work.

    Returns the raw volume, the checked annotations, the spacing and its source.
    """
    vol = check_raw_volume(volume, profile)
    sp, spacing_source = _resolve_spacing(spacing, spacing_source, notes)
    if labels is not None:
        labels = check_labels(labels, vol.shape, foreground_class=plan.foreground_class)
    if reference is not None and np.shape(reference) != vol.shape:
        raise ImageMismatchError(
            f"reference labels: shape {np.shape(reference)} differs from the volume {vol.shape}"
        )
    if tissue is not None and np.shape(tissue) != vol.shape:
        raise ImageMismatchError(
            f"tissue mask: shape {np.shape(tissue)} differs from the volume {vol.shape}"
        )
    return vol, labels, sp, spacing_source


def _encode_codecs(
    vol: np.ndarray,
    profile: Any,
    plan: ScorePlan,
    control_seed: np.random.SeedSequence,
    report: Progress,
) -> dict[str, _Decoded]:
    """Every codec of the plan on the whole volume (and the held-out control replica).

    Returns spec → the decoded volume, compression ratio, bytes and description.
    """
    from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs

    decoded: dict[str, _Decoded] = {}
    if CONTROL_SPEC in plan.codecs:
        rng = np.random.default_rng(control_seed)
        control = _synthesize(vol, profile, 1, rng, plan.centre)[0]
        decoded[CONTROL_SPEC] = _Decoded(
            control, 1.0, vol.size * 2, "held-out raw-equivalent replica"
        )
    specs = [s for s in plan.codecs if s != CONTROL_SPEC]
    parsed = [c for s in specs for c in parse_codecs(s, profile=profile)]
    codecs = dict(zip(specs, parsed, strict=True))  # the user's spelling as the key
    for i, (spec, codec) in enumerate(codecs.items()):
        getattr(codec, "prepare", lambda _p: None)(report)
        report("encode", i, len(codecs))
        data = codec.encode(vol)
        dec = np.asarray(codec.decode(data))
        decoded[spec] = _Decoded(dec, compression_ratio(vol, data), len(data), codec.description)
    report("encode", len(codecs), len(codecs))
    return decoded


def _resolve_min_size(
    labels: np.ndarray | None, plan: ScorePlan, region_sizes: np.ndarray | None = None
) -> tuple[ScorePlan, dict]:
    """The plan with ``min_size`` set (given, or from the annotations) and its rule.

    ``region_sizes``: the annotated regions' voxel counts, instead of ``labels``.
    """
    objects_info: dict = {}
    if labels is not None or region_sizes is not None:
        auto, objects_info = (
            _default_min_size3d(labels, plan.foreground_class)
            if region_sizes is None
            else min_size_rule(region_sizes)
        )
        source = f"given: {plan.min_size} voxels (default {auto})"
        if plan.min_size is None:
            plan = plan.model_copy(update={"min_size": auto})
            source = "default: " + objects_info["rule"]
    elif plan.min_size is None:
        plan, source = plan.model_copy(update={"min_size": 0}), "plug-in model: 0 voxels"
    else:
        source = f"given: {plan.min_size} voxels"
    objects_info["min_size_source"] = source
    return plan, objects_info


def train_segmenter(
    vol: np.ndarray,
    labels: np.ndarray | None,
    model: Any,
    plan: ScorePlan,
    sp: tuple[float, float, float],
    feature_sigmas: tuple[float, ...],
    classifier_seed: np.random.SeedSequence,
    report: Progress,
    timings: dict[str, float],
) -> tuple[ScorePlan, dict, Any, str]:
    """The "training" stage of the volume drivers, after the announced kernel compile.

    Returns the plan with its minimum size resolved, the objects-size info, the
    segmenter and its description; ``timings["training"]`` is set.
    """
    first_run.warm_up(report)  # first run on this machine: compile the kernels, announced
    t0 = time.perf_counter()
    report("training", 0, 1)
    plan, objects_info = _resolve_min_size(labels, plan)
    seed = int(classifier_seed.generate_state(1)[0])
    segment, seg_desc = _segmenter(vol, labels, model, plan, sp, feature_sigmas, seed)
    timings["training"] = time.perf_counter() - t0
    report("training", 1, 1)
    return plan, objects_info, segment, seg_desc


def _tissue_info(
    vol: np.ndarray, spacing: tuple[float, float, float], tissue: np.ndarray | None
) -> dict:
    """The tissue of the load's denominator: its source, voxel count and volume."""
    mask = tissue_mask(vol, spacing) if tissue is None else np.asarray(tissue, bool)
    voxel_volume = spacing[0] * spacing[1] * spacing[2]
    source = "given" if tissue is not None else (
        f"Otsu threshold of the raw volume smoothed by a Gaussian of σ = "
        f"{TISSUE_SMOOTHING:g} finest voxels"
    )  # fmt: skip
    return {
        "source": source,
        "n_voxels": int(np.count_nonzero(mask)),
        "volume": float(np.count_nonzero(mask) * voxel_volume),
    }


# ----------------------------------------------------------------------------- main
def score_volume(
    volume: np.ndarray,
    profile: Any,
    *,
    labels: np.ndarray | None = None,
    spacing: tuple[float, float, float] | None = None,
    plan: ScorePlan | None = None,
    progress: Progress | None = None,
    model: Segmenter | str | None = None,
    tissue: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    reference_points: np.ndarray | None = None,
    feature_sigmas: tuple[float, ...] = VOLUME_SIGMAS,
    spacing_source: str | None = None,
    **plan_fields: Any,
) -> VolumeResult:
    """Score codecs on one raw 3D volume against its raw noise, in memory.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray, uint16
        Raw camera counts; each z plane is one frame of the camera of ``profile``.
    profile : CameraProfile
        Camera noise profile of shape (Y, X), broadcast over z.
    labels : (Z, Y, X) ndarray of int, optional
        Sparse training annotations (0 unlabelled, 1 background, 2 foreground).
    spacing : (dz, dy, dx), optional
        Voxel size in physical units; default :data:`DEFAULT_SPACING` (isotropic 1,
        stated in the notes as a warning).
    plan : ScorePlan, optional
        Run settings (``max_distance`` in the spacing's units, ``min_size`` in
        voxels); ``**plan_fields`` build or update one.
    progress : callable(stage, done, total), optional
    model : callable or "module:function", optional
        Plug-in segmenter (volume → labels, mask or probability) instead of ``labels``.
    tissue : (Z, Y, X) bool ndarray, optional
        Tissue mask for the load; default the Otsu mask of the smoothed raw volume.
    reference : (Z, Y, X) int ndarray, optional
        Reference instance labels: the raw segmentation's agreement with them
        (F1 at IoU 0.5, :func:`~rawsigma.analysis.measurement.agreement.instance_agreement`)
        is reported.
    reference_points : (n, 3) array, optional
        Reference positions (z, y, x voxel indices, e.g. detected cells): points inside
        objects and the count against the points are reported
        (:func:`~rawsigma.analysis.measurement.agreement.point_agreement`).
    feature_sigmas : tuple of float
        Classifier feature scales (finest-voxel units, ilastik preset).
    spacing_source : str, optional
        Where the spacing came from (file metadata, option), for the report.

    Returns
    -------
    VolumeResult
    """
    plan = resolve_plan(labels, model, plan, plan_fields, "score_volume")
    report: Progress = progress or (lambda stage, done, total: None)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    vol, labels, sp, spacing_source = _check_inputs(
        volume, profile, labels, spacing, spacing_source, reference, tissue, plan, notes
    )
    synthesis_seed, control_seed, classifier_seed = np.random.SeedSequence(plan.seed).spawn(3)

    t0 = time.perf_counter()
    report("synthesis", 0, 1)
    rng = np.random.default_rng(synthesis_seed)
    reps = _synthesize(vol, profile, plan.n_replicas, rng, plan.centre)
    timings["synthesis"] = time.perf_counter() - t0
    report("synthesis", 1, 1)

    t0 = time.perf_counter()
    decoded = _encode_codecs(vol, profile, plan, control_seed, report)
    timings["codecs"] = time.perf_counter() - t0

    plan, objects_info, segment, seg_desc = train_segmenter(
        vol, labels, model, plan, sp, feature_sigmas, classifier_seed, report, timings
    )

    run = _Run(
        vol=vol, profile=profile, reps=reps, decoded=decoded, segment=segment, plan=plan,
        spacing=sp, spacing_source=spacing_source, tissue=_tissue_info(vol, sp, tissue),
        reference=reference, reference_points=reference_points, report=report,
        timings=timings, notes=notes, objects_info=objects_info, t_all=t_all,
        segmenter=seg_desc,
    )  # fmt: skip
    return score_run(run)
