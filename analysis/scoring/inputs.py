"""Checks of the scoring inputs: the raw frame, the sparse annotations, a plug-in model.

Every check fails with one clear error before any long work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rawsigma.analysis.scoring.plans import ScorePlan
from rawsigma.analysis.segmentation.label_values import distinct_values
from rawsigma.errors import ImageMismatchError, InputFileError
from scipy import ndimage as ndi

__all__ = [
    "MIN_LABELLED_PER_CLASS",
    "Segmenter",
    "check_label_values",
    "check_labels",
    "check_raw_image",
    "instance_like",
    "load_model",
    "raw_counts",
    "resolve_plan",
]

Segmenter = Callable[[np.ndarray], np.ndarray]


def check_raw_image(image: np.ndarray, profile: Any, name: str = "image") -> np.ndarray:
    """Return a 2-D integer raw frame or raise a clear error.

    Raises
    ------
    ImageMismatchError
        8-bit, float or non-2-D images, or an image that does not match the profile.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ImageMismatchError(f"{name}: expected one 2-D raw frame, got shape {a.shape}")
    if a.dtype.kind == "f":
        raise ImageMismatchError(
            f"{name}: floating-point image ({a.dtype}); scoring needs the raw integer "
            "camera image (uint16) as recorded, before any conversion"
        )
    if a.dtype.kind not in "ui" or a.dtype.itemsize < 2:
        raise ImageMismatchError(
            f"{name}: {a.dtype} image; an 8-bit image has already lost the raw values. "
            "Score the 16-bit (10–16-bit ADC) raw camera image instead"
        )
    return raw_counts(a, profile, name, "pixel", "image")


def raw_counts(a: np.ndarray, profile: Any, name: str, element: str, what: str) -> np.ndarray:
    """Integer camera counts made unsigned and checked against ``profile`` (2D and 3D).

    Parameters
    ----------
    a : ndarray of integers
        The raw image or volume (its shape and type already checked).
    profile : CameraProfile or None
        Checked with ``profile.check_image(a, name=name)``.
    name : str
        The input's name in error messages.
    element, what : str
        ``"pixel", "image"`` or ``"voxel", "volume"`` for the error message.

    Raises
    ------
    ImageMismatchError
        Negative values, a constant image or volume (all zero, all saturated: nothing to
        segment, every codec "within noise" by default), or a shape that is not the
        profile's.
    """
    if a.dtype.kind == "i":
        if a.min() < 0:
            raise ImageMismatchError(f"{name}: negative {element} values; not a raw {what}")
        a = a.astype(np.uint16 if a.max() <= 65535 else np.uint32)
    if a.size and (lo := a.min()) == a.max():
        raise ImageMismatchError(
            f"{name}: every {element} has the value {int(lo)} ADU: a constant {what} has no "
            "objects and no noise to score codecs against (an empty, dark or saturated "
            "acquisition?)"
        )
    if profile is not None:
        profile.check_image(a, name=name)
    return a


def check_label_values(lab: np.ndarray, name: str = "labels", instances: bool = False) -> None:
    """Refuse negative labels and, with ``instances``, labels without background (0) or
    without any object.

    Negative values were read as "unlabelled" (annotations) or background (instances),
    so an object labelled -1, or objects shifted down by one under a background of -1,
    were lost without a word. Instance labels covering every pixel (e.g. the image
    itself given as labels) leave no background to train on.

    Raises
    ------
    InputFileError
        Either case, in one line naming ``name``.
    """
    if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
        raise InputFileError(
            f"{name}: negative label values (min {int(lab.min())}); labels are 0 "
            "(unlabelled / background) and positive classes or instance ids"
        )
    if instances and lab.size and not (lab == 0).any():
        raise InputFileError(
            f"{name}: no pixel is 0: instance labels (--instances) mark the background "
            "with 0 (is this the image rather than its labels?)"
        )
    if instances and lab.size and not lab.any():
        raise InputFileError(
            f"{name}: every pixel is 0: no labelled object (--instances labels give each "
            "object its own positive id)"
        )


def check_labels(
    labels: np.ndarray,
    shape: tuple[int, ...],
    name: str = "labels",
    foreground_class: int | None = None,
) -> np.ndarray:
    """Validate a sparse annotation image (0 unlabelled, 1 background, 2 foreground)."""
    lab = np.asarray(labels)
    if lab.ndim == 3 and lab.shape[0] == 1:
        lab = lab[0]
    if lab.shape != tuple(shape):
        raise ImageMismatchError(
            f"{name}: shape {lab.shape} differs from the image shape {tuple(shape)}"
        )
    if lab.dtype.kind not in "uib":
        raise InputFileError(f"{name}: annotations must be integer classes, got {lab.dtype}")
    classes = distinct_values(lab, positive=True)
    if foreground_class is not None and classes.size and foreground_class not in classes:
        raise InputFileError(
            f"{name}: no pixel of the foreground class {foreground_class} is annotated "
            f"(classes present: {classes.tolist()})"
            + (
                "; a binary object mask is ground truth: pass --instances"
                if classes.size == 1
                else ""
            )
        )
    if classes.size == 0:
        raise InputFileError(f"{name}: empty annotations (no labelled pixel)")
    hint = instance_like(lab)
    if hint:
        raise InputFileError(
            f"{name}: {hint}: these look like ground-truth instance labels (one value per "
            "object), not sparse annotations (1 background, 2 object). Pass --instances "
            "(Python: training_labels_from_instances) to train on them"
        )
    if classes.size < 2:
        raise InputFileError(
            f"{name}: only class {classes.tolist()} is annotated; label both foreground and "
            "background (a binary object mask is ground truth: pass --instances)"
        )
    counts = {int(c): int(np.count_nonzero(lab == c)) for c in classes}
    few = {c: n for c, n in counts.items() if n < MIN_LABELLED_PER_CLASS}
    if few:
        listing = ", ".join(f"class {c}: {n} px" for c, n in counts.items())
        raise InputFileError(
            f"{name}: too few annotated pixels to train a classifier ({listing}); annotate "
            f"at least {MIN_LABELLED_PER_CLASS} pixels of every class"
        )
    return lab.astype(np.int32)


#: Fewest annotated pixels per class that `check_labels` accepts for training.
MIN_LABELLED_PER_CLASS = 20


def instance_like(labels: np.ndarray, min_values: int = 4) -> str | None:
    """Describe why ``labels`` look like instance labels, or None if they do not.

    Instance labels give every object its own value, each one compact region;
    sparse annotations use a few class values, usually as several strokes each.
    Labels with at least ``min_values`` distinct positive values of which at
    least 3/4 are a single 8-connected region are called instance-like.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "ui" or lab.ndim not in (2, 3):
        return None
    values = distinct_values(lab, positive=True)
    if values.size < min_values:
        return None
    sample = values[:: max(1, values.size // 200)]  # bounded work for huge label sets
    objs = ndi.find_objects(np.where(np.isin(lab, sample), lab, 0).astype(np.int64))
    struct = np.ones((3,) * lab.ndim, bool)
    single = 0
    for v in sample:
        sl = objs[int(v) - 1] if int(v) - 1 < len(objs) else None
        if sl is None:
            continue
        _, n = ndi.label(lab[sl] == v, structure=struct)
        single += n == 1
    if single < 0.75 * sample.size:
        return None
    return (
        f"{values.size} distinct values ({int(values[0])}..{int(values[-1])}), "
        f"{single} of {sample.size} checked each one compact region"
    )


def load_model(spec: str) -> Segmenter:
    """Load a plug-in segmenter: ``module:function``, ``file.py:function`` or a saved
    classifier (see :func:`rawsigma.analysis.segmentation.classifier.load_model`).
    """
    # imported on use: scikit-learn is heavy and a plug-in model does not need it
    from rawsigma.analysis.segmentation.classifier import load_model as _load

    return _CheckedModel(_load(spec), str(spec))


class _CheckedModel:
    """A loaded model whose output must have the image's shape (one clear error if not).

    A function such as ``skimage.filters:threshold_otsu`` returns a number, not a
    segmentation; without this check the run failed later on a "labels" of shape ().
    """

    def __init__(self, fn: Segmenter, name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = np.asarray(self.fn(image))
        img = np.asarray(image)
        if out.shape[: img.ndim] != img.shape or out.ndim > img.ndim + 1:
            raise ImageMismatchError(
                f"model {self.name}: returned shape {out.shape} for an image of shape "
                f"{img.shape}; a model must return labels, a mask or probabilities of the "
                "image's shape"
            )
        return out


def resolve_plan(
    labels: np.ndarray | None,
    model: Segmenter | str | None,
    plan: ScorePlan | None,
    plan_fields: dict[str, Any],
    caller: str,
) -> ScorePlan:
    """The run's plan from ``plan`` and/or ``plan_fields``; exactly one segmenter source.

    ``caller`` names the function in the error (``score_image``, ``score_volume``).
    """
    if plan is None:
        if isinstance(model, str):
            plan_fields.setdefault("model", model)
        plan = ScorePlan(**plan_fields)
    elif plan_fields:
        plan = plan.model_copy(update=plan_fields)
    if (labels is None) == (model is None and plan.model is None):
        raise InputFileError(f"{caller}: give exactly one of labels= or model=")
    return plan
