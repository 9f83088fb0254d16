"""Chunked voxel classification: the trained forest applied chunk by chunk.

Each chunk is read with the feature bank's halo (`features.max_halo`, no padding
at the volume's border), its features are computed and fed to the forest inside
the same task, and the halo is trimmed: the features never exist for more than one
chunk at a time, and the probabilities equal `PixelClassifier.predict_proba` on
the whole image (the in-memory path computes its features block-wise with the same
halo rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["foreground_dask", "predict_proba_dask"]


def _proba_block(block: np.ndarray, clf: Any) -> np.ndarray:
    from rawsigma.analysis.segmentation import forest_infer
    from rawsigma.analysis.segmentation.features import feature_bank

    feats = feature_bank(block, clf.features, block=block.shape, n_workers=1)[0]
    flat = feats.reshape(-1, feats.shape[-1])
    k = len(clf.classes_)
    res = np.empty((flat.shape[0], k), np.float32)
    forest = clf._flat_forest()  # noqa: SLF001 (the classifier's own compiled forest)
    step = 1 << 16  # the in-memory path's predict call size
    for i in range(0, flat.shape[0], step):
        if forest is not None:
            res[i : i + step] = forest_infer.predict_proba(forest, flat[i : i + step], 1)
        else:
            res[i : i + step] = clf.model_.predict_proba(flat[i : i + step])
    return res.reshape(feats.shape[:-1] + (k,))


def predict_proba_dask(clf: Any, image: Any, chunks: Any = None) -> Any:
    """Lazy class probabilities of a trained `PixelClassifier`, chunk by chunk.

    Parameters
    ----------
    clf : PixelClassifier
        Trained (``fit`` or ``load``), on images of the same dimension.
    image : ndarray or dask.array.Array, (Y, X) or (Z, Y, X)
        Any real dtype, e.g. ``dask.array.from_zarr`` of a volume on disk.
    chunks : optional
        Spatial chunks (dask notation); default a dask array's own, ``"auto"`` for
        numpy. Chunks thinner than the halo are merged with a neighbour.

    Returns
    -------
    dask.array.Array of float32, ``image.shape + (K,)``
        In ``clf.classes_`` order; equal to ``clf.predict_proba(image)``.

    Raises
    ------
    RuntimeError
        The classifier is not trained.
    ImageMismatchError
        The image's dimension is not the one it was trained on.
    """
    from dask.array.overlap import ensure_minimum_chunksize, overlap, trim_internal
    from rawsigma.analysis.outofcore.lazy import _as_dask, _dask_array
    from rawsigma.analysis.segmentation.features import max_halo
    from rawsigma.errors import ImageMismatchError

    da = _dask_array()
    if clf.model_ is None:
        raise RuntimeError("PixelClassifier is not trained: call fit() or load() first")
    arr = _as_dask(image, chunks, da)
    if arr.ndim != clf.ndim_:
        raise ImageMismatchError(
            f"image: classifier was trained on {clf.ndim_}D images, got shape {arr.shape}"
        )
    nd = arr.ndim
    halo = max_halo(clf.features, nd)
    new_chunks = [
        (n,) if n <= h or len(c) == 1 else ensure_minimum_chunksize(h, c)
        for n, c, h in zip(arr.shape, arr.chunks, halo, strict=True)
    ]
    arr = arr.rechunk(tuple(new_chunks))
    depth = {ax: (halo[ax] if len(arr.chunks[ax]) > 1 else 0) for ax in range(nd)}
    k = len(clf.classes_)
    padded = overlap(arr, depth=depth, boundary="none")
    proba = padded.map_blocks(
        _proba_block,
        clf,
        new_axis=nd,
        chunks=padded.chunks + ((k,),),
        dtype=np.float32,
        meta=np.empty((0,) * (nd + 1), np.float32),
    )
    return trim_internal(proba, {**depth, nd: 0}, boundary="none")


def foreground_dask(clf: Any, image: Any, chunks: Any = None, threshold: float = 0.5) -> Any:
    """Lazy boolean foreground: the foreground class's probability > ``threshold``.

    As ``clf.foreground_probability(image) > threshold`` (the scoring pipeline's
    rule); chunks as `predict_proba_dask`.
    """
    proba = predict_proba_dask(clf, image, chunks)
    return proba[..., clf._fg_index()] > threshold  # noqa: SLF001
