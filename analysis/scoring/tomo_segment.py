"""Plaque segmentation of reconstructions: in memory, and the 3D forest option.

`MemoryVolumes` is the in-memory twin of
:class:`rawsigma.analysis.scoring.tomo_chunked.ChunkedVolumes` (same methods, numpy
arrays): the runner calls one or the other.

Two segmenters, both fitted once on the raw reconstruction and applied unchanged to
every replica and version:

- the plaque rule (:mod:`rawsigma.analysis.segmentation.plaques3d`, default);
- the 3D random forest of the 2D/3D scoring path (ilastik feature bank in 3D,
  `rawsigma.analysis.segmentation.classifier.PixelClassifier`), trained on sparse
  annotations (0 unlabelled, 1 background, 2 plaque) of the raw reconstruction: a
  user's annotation volume, or instance labels (a phantom's plaques) turned into
  annotations by `rawsigma.analysis.segmentation.annotations.training_labels`
  (eroded cores, a background ring), as ``rawsigma score VOLUME --instances`` does.
  Plaques are the 26-connected components of ``P(plaque) > 0.5`` inside the organ,
  smaller than ``min_size`` dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["MemoryVolumes", "train_forest"]

#: Largest training crop of the forest, voxels (a central range of slices beyond it).
MAX_TRAIN_VOXELS = 16 * 2**20


def _training_crop(annotations: np.ndarray) -> tuple[slice, slice, slice]:
    """Training crop of the forest.

    The bounding box of the annotations, cut to a central range of slices when larger
    than `MAX_TRAIN_VOXELS` (the same crop in memory and chunked: the same forest).
    """
    idx = [np.flatnonzero(np.any(annotations > 0, axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
    if any(i.size == 0 for i in idx):
        raise ValueError("annotations: no labelled voxel (1 = background, 2 = plaque)")
    z0, z1 = int(idx[0][0]), int(idx[0][-1]) + 1
    y, x = (slice(int(i[0]), int(i[-1]) + 1) for i in idx[1:])
    plane = (y.stop - y.start) * (x.stop - x.start)
    nz = max(1, min(z1 - z0, MAX_TRAIN_VOXELS // plane))
    mid = (z0 + z1) // 2
    lo = max(z0, mid - nz // 2)
    return slice(lo, min(z1, lo + nz)), y, x


def train_forest(
    volume: Any, annotations: np.ndarray, *, seed: int = 0, workers: int = 1
) -> tuple[Any, str]:
    """Train the 3D pixel classifier on the raw reconstruction.

    On a crop around the annotations; returns it and a one-line description.
    """
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig

    ann = np.asarray(annotations)
    if ann.shape != tuple(volume.shape):
        raise ValueError(
            f"annotations: shape {ann.shape} is not the reconstruction's {tuple(volume.shape)}"
        )
    if not {1, 2} <= set(np.unique(ann).tolist()):
        raise ValueError("annotations: need both classes, 1 = background and 2 = plaque")
    crop = _training_crop(ann)
    sub = np.asarray(volume[crop], np.float32)
    clf = PixelClassifier(features=FeatureConfig("ilastik"), random_state=seed, n_jobs=workers,
                          foreground_class=2)  # fmt: skip
    clf.fit(sub, ann[crop])
    clf.n_jobs = 1
    if hasattr(clf.model_, "n_jobs"):
        clf.model_.n_jobs = 1
    n_fg, n_bg = int((ann[crop] == 2).sum()), int((ann[crop] == 1).sum())
    desc = (
        "random forest (3D ilastik features) trained on the raw reconstruction "
        f"(crop z {crop[0].start}:{crop[0].stop}; {n_fg} plaque, {n_bg} background voxels); "
        "P(plaque) > 0.5 inside the organ, 26-connected"
    )
    return clf, desc


class MemoryVolumes:
    """Everything in memory (numpy), the methods of `ChunkedVolumes`."""

    chunked = False
    slab = 16  # slices per step of the per-voxel σ and ε

    def slabs(self, n: int):
        """``(z0, z1)`` of every step of ``n`` slices."""
        for z0 in range(0, n, self.slab):
            yield z0, min(n, z0 + self.slab)

    def array(self, key: str, shape: tuple, dtype: Any, chunks: Any = None) -> np.ndarray:
        """A new array."""
        return np.empty(shape, dtype)

    def projections(self, key: str, shape: tuple, dtype: Any) -> np.ndarray:
        """A new projection stack."""
        return np.empty(shape, dtype)

    def replica_stacks(self, n: int, shape: tuple, dtype: Any) -> np.ndarray:
        """Projection stacks of the replicas, one array."""
        return np.empty((n, *shape), dtype)

    def close(self) -> None:
        """Nothing to remove."""

    def reconstruct(self, proj: Any, offset: np.ndarray, gain: np.ndarray, key: str,
                    fbp: Any, **kw: Any) -> np.ndarray:  # fmt: skip
        """FBP of ``proj`` (ADU) → (Z, N, N) float32."""
        return fbp((np.asarray(proj).astype(np.float32) - offset) / gain, **kw)

    def organ_mask(self, vol: np.ndarray) -> tuple[np.ndarray, int]:
        """`plaques3d.organ_mask` and its voxel count."""
        from rawsigma.analysis.segmentation.plaques3d import organ_mask

        organ = organ_mask(vol)
        return organ, int(organ.sum())

    def fit_rule(self, vol: np.ndarray, organ: np.ndarray, n_organ: int, **kw: Any) -> Any:
        """`fit_plaque_rule` with the given organ."""
        from rawsigma.analysis.segmentation.plaques3d import fit_plaque_rule

        return fit_plaque_rule(vol, mask=organ, **kw)[0]

    def foreground_rule(self, vol: np.ndarray, rule: Any, organ: np.ndarray, key: str):
        """The rule's foreground inside the organ."""
        from rawsigma.analysis.segmentation.plaques3d import _response

        return (_response(vol, rule.sigma, rule.background) > rule.threshold) & organ

    def foreground_forest(self, vol: np.ndarray, clf: Any, organ: np.ndarray, key: str):
        """The forest's foreground (P > 0.5) inside the organ."""
        return (clf.foreground_probability(np.asarray(vol, np.float32)) > 0.5) & organ

    def label_measure(self, mask: np.ndarray, min_size: int, key: str) -> tuple[Any, dict]:
        """26-connected labels, small ones dropped, and their table."""
        from rawsigma.analysis.measurement.morphometry3d import measure3d
        from rawsigma.analysis.scoring.per_image import drop_small

        lab = ndi.label(mask, structure=np.ones((3, 3, 3), bool))[0]
        lab = drop_small(lab, min_size).astype(np.int32)
        return lab, measure3d(lab)

    def split_merge(self, ref: np.ndarray, other: np.ndarray) -> tuple[int, int]:
        """`split_merge_counts`."""
        from rawsigma.analysis.measurement.matching import split_merge_counts

        return split_merge_counts(ref, other)

    def voxel_eps(self, raw: np.ndarray, sigma: np.ndarray, version: np.ndarray, key: str):
        """Per-voxel ε (`tomo_chunked.voxel_eps`)."""
        from .tomo_chunked import voxel_eps

        return voxel_eps(self, raw, sigma, version, key)

    def remove(self, arr: Any) -> None:
        """Nothing to remove."""
