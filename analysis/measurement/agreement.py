"""Agreement of a segmentation with reference instance labels or reference points (2D/3D).

- :func:`instance_agreement`: objects matched one-to-one at IoU ≥ a threshold (0.5 by
  default: above 0.5 a match is unique, so no assignment is needed); precision, recall,
  F1, the mean IoU of matched pairs, and the voxel-wise Jaccard index of the two
  foreground masks.
- :func:`point_agreement`: reference points (e.g. detected cell centres) against
  objects: points inside an object, objects holding at least one point, and the count.
"""

from __future__ import annotations

import numpy as np

__all__ = ["instance_agreement", "point_agreement"]


def instance_agreement(
    labels: np.ndarray, reference: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Match objects of ``labels`` to ``reference`` objects by IoU.

    Parameters
    ----------
    labels, reference : ndarray of int, same shape
        Instance labels (0 = background).
    iou_threshold : float
        A pair matches when its intersection over union is ≥ this (≥ 0.5: each
        object has at most one partner).

    Returns
    -------
    dict
        ``n_objects``, ``n_reference``, ``tp``, ``fp``, ``fn``, ``precision``,
        ``recall``, ``f1``, ``mean_iou_matched`` and ``jaccard_foreground``.
    """
    a = np.asarray(labels).astype(np.int64, copy=False)
    b = np.asarray(reference).astype(np.int64, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"label images differ in shape: {a.shape} vs {b.shape}")
    if not 0.5 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0.5, 1], got {iou_threshold}")
    ids_a = np.unique(a[a > 0])
    ids_b = np.unique(b[b > 0])
    size_a = dict(zip(*np.unique(a[a > 0], return_counts=True), strict=True))
    size_b = dict(zip(*np.unique(b[b > 0], return_counts=True), strict=True))
    both = (a > 0) & (b > 0)
    tp, ious = 0, []
    if both.any():
        pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
        for (ia, ib), n in zip(pairs.T, inter, strict=True):
            iou = n / (size_a[ia] + size_b[ib] - n)
            if iou >= iou_threshold:
                tp += 1
                ious.append(iou)
    fp, fn = ids_a.size - tp, ids_b.size - tp
    prec = tp / ids_a.size if ids_a.size else float("nan")
    rec = tp / ids_b.size if ids_b.size else float("nan")
    f1 = 2 * tp / (ids_a.size + ids_b.size) if ids_a.size + ids_b.size else float("nan")
    fa, fb = a > 0, b > 0
    union = np.count_nonzero(fa | fb)
    return {
        "n_objects": int(ids_a.size),
        "n_reference": int(ids_b.size),
        "iou_threshold": float(iou_threshold),
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "mean_iou_matched": float(np.mean(ious)) if ious else float("nan"),
        "jaccard_foreground": float(np.count_nonzero(fa & fb) / union) if union else float("nan"),
    }


def point_agreement(labels: np.ndarray, points: np.ndarray) -> dict[str, float]:
    """Reference points against objects.

    Parameters
    ----------
    labels : ndarray of int
        Instance labels (0 = background).
    points : (n, ndim) array
        Point positions in voxel indices, same axis order as ``labels``; points
        outside the array are counted as outside every object.

    Returns
    -------
    dict
        ``n_objects``, ``n_points``, ``points_in_object`` (points inside some object),
        ``objects_with_point``, ``objects_with_several_points`` and
        ``count_ratio`` (objects / points).
    """
    lab = np.asarray(labels)
    pts = np.rint(np.asarray(points, float)).astype(np.int64).reshape(-1, lab.ndim)
    inside = np.all((pts >= 0) & (pts < np.array(lab.shape)), axis=1)
    hit = np.zeros(len(pts), np.int64)
    hit[inside] = lab[tuple(pts[inside].T)]
    n_obj = int(np.unique(lab[lab > 0]).size)
    per_obj = np.bincount(hit[hit > 0]) if (hit > 0).any() else np.zeros(1, np.int64)
    return {
        "n_objects": n_obj,
        "n_points": int(len(pts)),
        "points_in_object": int(np.count_nonzero(hit)),
        "objects_with_point": int(np.count_nonzero(per_obj)),
        "objects_with_several_points": int(np.count_nonzero(per_obj > 1)),
        "count_ratio": float(n_obj / len(pts)) if len(pts) else float("nan"),
    }
