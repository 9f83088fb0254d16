"""Random-forest pixel classifier (Weka / ilastik presets) and plug-in models.

Conventions
-----------
Sparse annotations are an integer label image: 0 = unlabelled, 1..K = classes.  For
two classes, class ``foreground_class`` (default 2; class 1 is background) is the
foreground: a pixel is foreground when its probability is > 0.5 (ilastik's "Simple
Segmentation"), and objects are the connected components of the foreground (8-connected
in 2D, 26-connected in 3D).  :func:`training_labels_from_instances` writes annotations
in this convention.

Saved classifiers are joblib (pickle) files: load only files you trust.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.segmentation import forest_infer
from rawsigma.analysis.segmentation.features import (
    FeatureConfig,
    _block_starts,
    _resolve_block,
    feature_names,
    iter_feature_blocks,
    map_feature_blocks,
    map_feature_blocks_many,
)
from rawsigma.analysis.segmentation.label_values import distinct_values
from rawsigma.errors import ImageMismatchError, InputFileError
from rawsigma.fileio import atomic_write
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from rawsigma.analysis.segmentation.scratch import ScratchPool

__all__ = [
    "PRESETS",
    "PixelClassifier",
    "VersionMismatchWarning",
    "training_labels_from_instances",
    "load_model",
    "labels_from_output",
    "segment_with",
]


_FORMAT = "rawsigma-pixel-classifier"
_SCHEMA = 1

#: Random-forest settings of each preset (scikit-learn names).
PRESETS: dict[str, dict[str, Any]] = {
    # Trainable Weka Segmentation: FastRandomForest, 200 trees, 2 features per node,
    # information gain, unlimited depth
    "weka": {"n_estimators": 200, "max_features": 2, "criterion": "entropy"},
    # ilastik: vigra RF, 100 trees, sqrt(features) per node, Gini, grown to purity
    "ilastik": {"n_estimators": 100, "max_features": "sqrt", "criterion": "gini"},
}


class VersionMismatchWarning(UserWarning):
    """A saved classifier was written with other library versions than installed."""


def _versions() -> dict[str, str]:
    import joblib
    import scipy
    import sklearn
    from rawsigma import __version__

    return {
        "rawsigma": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def _full_structure(ndim: int) -> np.ndarray:
    return np.ones((3,) * ndim, bool)


class PixelClassifier:
    """Random-forest pixel classifier trained from sparse annotations.

    Parameters
    ----------
    preset : {"weka", "ilastik"}
        Forest settings (:data:`PRESETS`) and default feature set.
    features : FeatureConfig, dict or str, optional
        Feature bank (see :mod:`rawsigma.analysis.segmentation.features`); a string is a feature
        preset name; default the preset's own feature set.
    n_estimators, max_features, criterion : optional
        Override the preset's forest settings.
    random_state : int
        Seed of the forest and of the training-sample subsampling (results are
        reproducible for a given seed, whatever ``n_jobs``).
    n_jobs : int, optional
        Threads for training and prediction (scikit-learn semantics; None = 1).
    foreground_class : int
        Class that counts as foreground for :meth:`predict` / :meth:`segment`.
    max_samples_per_class : int or None
        Train on at most this many annotated pixels per class (random subset drawn
        with ``random_state``); None uses all.
    block : int or sequence of int, optional
        Block size for feature computation (bounded memory).
    """

    def __init__(
        self,
        preset: str = "weka",
        features: FeatureConfig | dict | str | None = None,
        n_estimators: int | None = None,
        max_features: int | float | str | None = None,
        criterion: str | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
        foreground_class: int = 2,
        max_samples_per_class: int | None = 100_000,
        block: int | Sequence[int] | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"classifier preset must be one of {sorted(PRESETS)}, got {preset!r}")
        self.preset = preset
        if features is None:
            features = FeatureConfig(preset)
        elif isinstance(features, str):
            features = FeatureConfig(features)
        elif isinstance(features, dict):
            features = FeatureConfig.from_dict(features)
        self.features: FeatureConfig = features.resolved()
        rf = dict(PRESETS[preset])
        for k, v in (
            ("n_estimators", n_estimators),
            ("max_features", max_features),
            ("criterion", criterion),
        ):
            if v is not None:
                rf[k] = v
        self.rf_params = rf
        self.random_state = int(random_state)
        self.n_jobs = n_jobs
        self.foreground_class = int(foreground_class)
        self.max_samples_per_class = max_samples_per_class
        self.block = block
        #: predict with the compiled forest (`forest_infer`, same probabilities) rather
        #: than sklearn's ``predict_proba``
        self.compiled_inference = True
        #: with the compiled forest: classify each feature block in the thread that
        #: computed it (`map_feature_blocks`), never holding more than one block of
        #: features per thread; False streams channels-last blocks (same result)
        self.fused_inference = True
        #: bytes of the training image's feature blocks `fit` may keep (copies of the
        #: blocks it computes anyway) for the next :meth:`foreground_probabilities` pass
        #: of that same image, which classifies them instead of filtering again and then
        #: releases them; 0 keeps nothing
        self.keep_bank = 0
        self._kept: tuple[np.ndarray, dict[tuple, np.ndarray]] | None = None
        self.model_: Any = None
        self.classes_: np.ndarray | None = None
        self.ndim_: int | None = None
        self.feature_names_: list[str] | None = None

    # ------------------------------------------------------------------ training
    def _check_image(self, image: np.ndarray) -> np.ndarray:
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise ImageMismatchError(f"image: expected 2D or 3D, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ImageMismatchError(f"image: expected a real numeric image, got {arr.dtype}")
        return arr

    def fit(self, image: np.ndarray, labels: np.ndarray) -> PixelClassifier:
        """Train on the annotated pixels of ``image``.

        Parameters
        ----------
        image : ndarray, (Y, X) or (Z, Y, X)
            Raw image, any real dtype.
        labels : ndarray of int, same shape
            0 = unlabelled, 1..K = class of the annotated pixel (K >= 2).

        Raises
        ------
        ImageMismatchError
            ``labels`` and ``image`` differ in shape.
        InputFileError
            Non-integer or negative labels, no annotation at all, or one class only.
        """
        from sklearn.ensemble import RandomForestClassifier

        arr = self._check_image(image)
        lab = np.asarray(labels)
        if lab.shape != arr.shape:
            raise ImageMismatchError(
                f"labels: shape {lab.shape} does not match the image shape {arr.shape}"
            )
        if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
            raise InputFileError(f"labels: expected integer class labels, got dtype {lab.dtype}")
        lab = lab.astype(np.int64, copy=False)
        if lab.min() < 0:
            raise InputFileError("labels: negative class values (use 0 for unlabelled)")
        classes = distinct_values(lab, positive=True)
        if classes.size == 0:
            raise InputFileError("labels: no annotated pixels (all 0 = unlabelled)")
        if classes.size < 2:
            raise InputFileError(
                f"labels: only class {int(classes[0])} is annotated; need at least two classes"
            )
        self._kept = None
        x, y = self._training_sample(arr, lab, classes)
        model = RandomForestClassifier(
            random_state=self.random_state, n_jobs=self.n_jobs, **self.rf_params
        )
        model.fit(x, y)
        self.model_ = model
        self.classes_ = model.classes_.astype(np.int64)
        self.ndim_ = arr.ndim
        self.feature_names_ = feature_names(
            arr.ndim, self.features.preset, self.features.sigmas, self.features.features
        )
        return self

    def _training_sample(
        self, arr: np.ndarray, lab: np.ndarray, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the training pixels.

        At most ``max_samples_per_class`` annotated pixels per class, drawn with
        ``random_state`` among the class's annotated pixels enumerated block by block
        (the blocks of `iter_feature_blocks`, raster order inside each), ordered by class
        and that enumeration. Which pixels are drawn is decided from the labels alone;
        then only their features are computed and kept (`map_feature_blocks`, blocks
        without a drawn pixel skipped), so memory is bounded by the sample and one block
        per thread, not by the annotation. Same training set as drawing from every
        annotated pixel's features at once.
        """
        cap = self.max_samples_per_class
        rng = np.random.default_rng(self.random_state)
        picked = []
        for c in classes:  # flat image indices of the drawn pixels, in enumeration order
            n = int(np.count_nonzero(lab == c))
            ranks = np.sort(rng.choice(n, cap, replace=False)) if cap and n > cap else None
            picked.append(self._drawn_pixels(lab, int(c), ranks))
        pos = np.concatenate(picked)
        y = np.concatenate(
            [np.full(p.size, c, np.int64) for p, c in zip(picked, classes, strict=True)]
        )
        cfg = self.features
        n_feat = len(feature_names(arr.ndim, cfg.preset, cfg.sigmas, cfg.features))
        # Fortran order: the tree splitter reads one feature of many samples (same trees)
        x = np.empty((n_feat, pos.size), np.float32).T
        coords = np.unravel_index(pos, arr.shape)

        def rows_in(core: tuple[slice, ...]) -> np.ndarray:
            inside = np.ones(pos.size, bool)
            for ax, c in enumerate(core):
                inside &= (coords[ax] >= c.start) & (coords[ax] < c.stop)
            return np.flatnonzero(inside)

        keep = _BankKeeper(self.keep_bank)

        def take(core: tuple[slice, ...], feats: np.ndarray) -> None:
            rows = rows_in(core)
            local = tuple(coords[ax][rows] - c.start for ax, c in enumerate(core))
            x[rows] = feats[(slice(None), *local)].T
            keep.add(core, feats)

        map_feature_blocks(
            arr,
            self.features,
            take,
            self.block,
            n_workers=self._workers(),
            skip=lambda core: rows_in(core).size == 0,
        )
        if keep.blocks:
            self._kept = (arr, keep.blocks)
        return x, y

    def _drawn_pixels(self, lab: np.ndarray, c: int, ranks: np.ndarray | None) -> np.ndarray:
        """Flat indices of the pixels of class ``c`` whose rank in the block-by-block
        enumeration is in ``ranks`` (all of them if None), in that order."""
        cfg = self.features
        blocks = _block_starts(
            lab.shape, _resolve_block(self.block, lab.shape, cfg, self._workers())
        )
        out, seen = [], 0
        for core in blocks:
            lb = lab[core]
            idx = np.flatnonzero(lb == c)
            if ranks is not None:
                lo, hi = np.searchsorted(ranks, [seen, seen + idx.size])
                sel, seen = idx[ranks[lo:hi] - seen], seen + idx.size
            else:
                sel = idx
            local = np.unravel_index(sel, lb.shape)
            glob = tuple(i + s.start for i, s in zip(local, core, strict=True))
            out.append(np.ravel_multi_index(glob, lab.shape))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _workers(self) -> int:
        if self.n_jobs is None:
            return 1
        if self.n_jobs < 0:
            return os.cpu_count() or 1
        return max(1, self.n_jobs)

    def _check_fitted(self, image: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise RuntimeError("PixelClassifier is not trained: call fit() or load() first")
        arr = self._check_image(image)
        if arr.ndim != self.ndim_:
            raise ImageMismatchError(
                f"image: classifier was trained on {self.ndim_}D images, got shape {arr.shape}"
            )
        return arr

    # ---------------------------------------------------------------- prediction
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 ``image.shape + (K,)`` in :attr:`classes_` order."""
        arr = self._check_fitted(image)
        assert self.classes_ is not None
        out = np.empty(arr.shape + (len(self.classes_),), np.float32)
        chunk = 1 << 16  # pixels per predict call: blocks beat one big call
        forest = self._flat_forest()
        if forest is not None and self.fused_inference:
            self._predict_fused(arr, forest, out)
            return out
        for core, feats in iter_feature_blocks(
            arr, self.features, block=self.block, n_workers=self._workers()
        ):
            flat = feats.reshape(-1, feats.shape[-1])
            res = np.empty((flat.shape[0], len(self.classes_)), np.float32)
            for i in range(0, flat.shape[0], chunk):
                if forest is not None:
                    p = forest_infer.predict_proba(forest, flat[i : i + chunk], self._workers())
                else:
                    p = self.model_.predict_proba(flat[i : i + chunk])
                res[i : i + chunk] = p
            out[core] = res.reshape(feats.shape[:-1] + (len(self.classes_),))
        return out

    def _predict_fused(
        self,
        arr: np.ndarray,
        forest: forest_infer.FlatForest,
        out: np.ndarray,
        channel: int | None = None,
    ) -> None:
        """``out[core]`` ← probabilities of each block, features computed and classified
        block by block in the worker threads (channel-first, no full-size bank); with
        ``channel``, only that class's probability (``out`` has the image's shape)."""
        classify = self._block_classifier(forest, [out], channel)
        map_feature_blocks_many(
            [arr], self.features, classify, self.block, n_workers=self._workers(),
            cached=self._kept_blocks([arr]),
        )  # fmt: skip

    def _block_classifier(
        self,
        forest: forest_infer.FlatForest,
        outs: list[np.ndarray],
        channel: int | None,
        threshold: float | None = None,
    ) -> Callable[[int, tuple[slice, ...], np.ndarray], None]:
        """``(i, core, feats)`` → ``outs[i][core]`` ← the block's probabilities (with
        ``threshold``: float32 probability > threshold)."""
        k = outs[0].shape[-1] if channel is None else 1
        pick = slice(None) if channel is None else slice(channel, channel + 1)

        def classify(i: int, core: tuple[slice, ...], feats: np.ndarray) -> None:
            p = forest_infer.predict_proba_channels(forest, feats.reshape(feats.shape[0], -1))
            shape = feats.shape[1:] + ((k,) if channel is None else ())
            if threshold is None:
                outs[i][core] = p[:, pick].reshape(shape)
            else:
                outs[i][core] = p[:, pick].reshape(shape).astype(np.float32) > threshold

        return classify

    def shares_blocks(self) -> bool:
        """Whether :meth:`foreground_probabilities` can hand its feature blocks out
        (the fused compiled inference is used)."""
        return self._flat_forest() is not None and self.fused_inference

    def foreground_probabilities(
        self,
        images: Sequence[np.ndarray],
        on_block: Callable[[int, tuple[slice, ...], np.ndarray], None] | None = None,
        n_workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        threshold: float | None = None,
        scratch: ScratchPool | None = None,
    ) -> list[np.ndarray]:
        """:meth:`foreground_probability` of several images of one shape, in one pass.

        Block by block (blocks on ``n_workers`` threads, default the classifier's),
        each image's features of the block are computed, classified, then handed to
        ``on_block(i, core, features)`` (channel-first, float32, in a buffer reused for
        the next image: copy what you keep) in image order: a caller can use the
        filters of the segmentation pass (e.g. for the scoring features) instead of
        filtering the image again. Same probabilities as :meth:`foreground_probability`.
        ``progress(done, total)`` counts the finished blocks. With ``threshold``, each
        image's result is the boolean mask ``probability > threshold`` (1 byte a pixel),
        thresholded block by block (the float32 probabilities, as
        `labels_from_output` does). ``scratch``: a pool for the threads' block buffers,
        kept by a caller that runs many passes (`features.map_feature_blocks_many`).

        Raises
        ------
        ValueError
            The classifier does not use the fused compiled inference
            (:meth:`shares_blocks` is False).
        """
        forest = self._flat_forest()
        if forest is None or not self.fused_inference:
            raise ValueError("foreground_probabilities needs the fused compiled inference")
        arrs = [self._check_fitted(im) for im in images]
        dtype = np.float32 if threshold is None else bool
        outs = [np.empty(a.shape, dtype) for a in arrs]
        classify = self._block_classifier(forest, outs, self._fg_index(), threshold)

        kept = {id(b) for b in self._kept[1].values()} if self._kept is not None else set()

        def fn(i: int, core: tuple[slice, ...], feats: np.ndarray) -> None:
            classify(i, core, feats)
            if on_block is not None:
                on_block(i, core, feats)
            if scratch is not None and id(feats) in kept:  # a kept block, used: its memory
                kept.discard(id(feats))  # serves the next passes' buffers (or is released)
                scratch.give(feats)

        workers = self._workers() if n_workers is None else max(1, int(n_workers))
        cached = self._kept_blocks(arrs)
        map_feature_blocks_many(
            arrs, self.features, fn, self.block, n_workers=workers, progress=progress,
            cached=cached, scratch=scratch,
        )  # fmt: skip
        return outs

    def has_kept_bank(self) -> bool:
        """Whether `fit` kept feature blocks of its image (``keep_bank``) not yet used."""
        return self._kept is not None

    def _kept_blocks(
        self, arrs: Sequence[np.ndarray]
    ) -> Callable[[int, tuple[slice, ...]], np.ndarray | None] | None:
        """The lookup of the blocks `fit` kept, for the images among ``arrs`` equal to the
        training image; the kept blocks are released (this pass is their one use: each
        block is taken out when it is handed over)."""
        if self._kept is None:
            return None
        train, blocks = self._kept
        self._kept = None
        same = {
            i for i, a in enumerate(arrs)
            if a.shape == train.shape and a.dtype == train.dtype
            and (a is train or np.array_equal(a, train))
        }  # fmt: skip
        if not same:
            return None

        def cached(i: int, core: tuple[slice, ...]) -> np.ndarray | None:
            # taken out: each block is freed once classified, not at the end of the pass
            return blocks.pop(_block_key(core), None) if i in same else None

        return cached

    def _flat_forest(self) -> forest_infer.FlatForest | None:
        """The model as flat arrays for the compiled inference (`forest_infer`: the same
        probabilities as sklearn's ``predict_proba``), flattened once per model; None
        for a model it does not reproduce or when ``compiled_inference`` is False."""
        if not self.compiled_inference or not forest_infer.supported(self.model_):
            return None
        cached = getattr(self, "_flat", None)
        if cached is None or cached[0] is not self.model_:
            self._flat = (self.model_, forest_infer.flatten(self.model_))
        return self._flat[1]

    def foreground_probability(self, image: np.ndarray) -> np.ndarray:
        """Probability of :attr:`foreground_class`, float32, same shape as ``image``."""
        forest = self._flat_forest()
        if forest is not None and self.fused_inference:  # only that channel is stored
            arr = self._check_fitted(image)
            fg = np.empty(arr.shape, np.float32)
            self._predict_fused(arr, forest, fg, self._fg_index())
            return fg
        proba = self.predict_proba(image)
        return proba[..., self._fg_index()]

    def _fg_index(self) -> int:
        assert self.classes_ is not None
        hits = np.flatnonzero(self.classes_ == self.foreground_class)
        if hits.size == 0:
            raise ValueError(
                f"foreground class {self.foreground_class} was not among the trained classes "
                f"{self.classes_.tolist()}"
            )
        return int(hits[0])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class label per pixel (uint16).

        Two classes: the foreground class where its probability > 0.5, else the other
        class.  More classes: the most probable class.
        """
        proba = self.predict_proba(image)
        assert self.classes_ is not None
        if len(self.classes_) == 2:
            fg = self._fg_index()
            other = self.classes_[1 - fg]
            return np.where(proba[..., fg] > 0.5, self.classes_[fg], other).astype(np.uint16)
        return self.classes_[np.argmax(proba, axis=-1)].astype(np.uint16)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Instance labels (int32): connected components of the foreground.

        8-connected in 2D, 26-connected in 3D; 0 = background.
        """
        fg = self.predict(image) == self.foreground_class
        lab, _ = ndi.label(fg, structure=_full_structure(fg.ndim))
        return lab.astype(np.int32, copy=False)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Foreground probability map (the plug-in model interface)."""
        return self.foreground_probability(image)

    # ------------------------------------------------------------------- storage
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (preset, forest, features, seed)."""
        return {
            "preset": self.preset,
            "rf_params": dict(self.rf_params),
            "features": self.features.to_dict(),
            "random_state": self.random_state,
            "foreground_class": self.foreground_class,
            "max_samples_per_class": self.max_samples_per_class,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "ndim": self.ndim_,
            "feature_names": self.feature_names_,
        }

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the trained classifier with its configuration and library versions.

        Written atomically; refuses to replace an existing file unless ``force``.
        """
        import joblib

        if self.model_ is None:
            raise RuntimeError("PixelClassifier is not trained: nothing to save")
        payload = {
            "format": _FORMAT,
            "schema": _SCHEMA,
            "config": self.config(),
            "versions": _versions(),
            "model": self.model_,
        }
        with atomic_write(path, force=force) as tmp:
            joblib.dump(payload, tmp, compress=3)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PixelClassifier:
        """Read a classifier written by :meth:`save`.

        Warns with :class:`VersionMismatchWarning` if scikit-learn, numpy, scipy or
        rawsigma versions differ from those that wrote it.
        """
        import joblib

        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"{p}: classifier file not found")
        try:
            payload = joblib.load(p)
        except Exception as exc:  # truncated or foreign file
            raise InputFileError(f"{p}: not a readable classifier file ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise InputFileError(f"{p}: not a rawsigma pixel-classifier file")
        if payload.get("schema") != _SCHEMA:
            raise InputFileError(
                f"{p}: unsupported classifier schema {payload.get('schema')} (expected {_SCHEMA})"
            )
        now = _versions()
        diff = {
            k: (v, now.get(k)) for k, v in payload.get("versions", {}).items() if now.get(k) != v
        }
        if diff:
            msg = ", ".join(f"{k} {a} (saved) vs {b} (installed)" for k, (a, b) in diff.items())
            warnings.warn(
                f"{p}: classifier written with other library versions: {msg}; "
                "predictions may differ",
                VersionMismatchWarning,
                stacklevel=2,
            )
        c = payload["config"]
        clf = cls(
            preset=c["preset"],
            features=c["features"],
            random_state=c["random_state"],
            foreground_class=c["foreground_class"],
            max_samples_per_class=c.get("max_samples_per_class"),
            **c["rf_params"],
        )
        clf.model_ = payload["model"]
        clf.classes_ = np.asarray(c["classes"], np.int64)
        clf.ndim_ = c["ndim"]
        clf.feature_names_ = c["feature_names"]
        return clf


# ----------------------------------------------------------------------- labels
def _block_key(core: tuple[slice, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((c.start, c.stop) for c in core)


class _BankKeeper:
    """Copies of feature blocks, up to ``budget`` bytes (thread-safe)."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.blocks: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def add(self, core: tuple[slice, ...], feats: np.ndarray) -> None:
        with self._lock:
            if feats.nbytes > self.budget:
                return
            self.budget -= feats.nbytes
        copy = _small_page_array(feats.shape, feats.dtype)
        copy[...] = feats
        self.blocks[_block_key(core)] = copy


def _small_page_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array in memory of its own, mapped in small pages.

    Kept blocks are written once and read once: numpy's transparent huge pages would make
    the kernel gather free 2 MB runs on first touch (≈ 1–2 s of system CPU per GB here,
    against ≈ 0.4 s in 4 KiB pages). The memory is returned when the array is freed.
    """
    import mmap

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advice = getattr(mmap, "MADV_NOHUGEPAGE", None)
    if nbytes == 0 or advice is None:
        return np.empty(shape, dtype)
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # EINVAL: a kernel built without huge pages
        m.madvise(advice)
    with contextlib.suppress(OSError):  # Linux >= 5.14: populated in one system call
        m.madvise(_MADV_POPULATE_WRITE)  # (not a fault per page: ≈ 25 % less system CPU)
    return np.frombuffer(m, dtype).reshape(shape)


_MADV_POPULATE_WRITE = 23  # <linux/mman.h>; not in Python's mmap module


def training_labels_from_instances(
    labels: np.ndarray,
    erode: int = 2,
    ring: tuple[float, float] = (2.0, 5.0),
) -> np.ndarray:
    """Sparse two-class annotations from ground-truth instance labels.

    Parameters
    ----------
    labels : ndarray of int or bool, 2D or 3D
        Ground-truth instances (0 = background).
    erode : int
        Foreground = object pixels farther than ``erode`` pixels inside their own
        object (edges between touching objects count as edges).  An object that would
        vanish keeps its innermost pixel.
    ring : (inner, outer)
        Background = non-object pixels at a distance in (inner, outer] pixels from
        the nearest object.

    Returns
    -------
    ndarray of uint8
        0 unlabelled, 1 background, 2 foreground (the :class:`PixelClassifier`
        convention).
    """
    from skimage.segmentation import find_boundaries

    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab, _ = ndi.label(lab, structure=_full_structure(lab.ndim))
    if not np.issubdtype(lab.dtype, np.integer):
        raise InputFileError(f"labels: expected integer instance labels, got dtype {lab.dtype}")
    inner, outer = float(ring[0]), float(ring[1])
    if not 0 <= inner < outer:
        raise ValueError(f"ring must be (inner, outer) with 0 <= inner < outer, got {ring}")
    obj = lab > 0
    out = np.zeros(lab.shape, np.uint8)
    if not obj.any():
        raise InputFileError("labels: no objects to derive training annotations from")
    edges = find_boundaries(lab, mode="inner") & obj
    depth = ndi.distance_transform_edt(obj & ~edges)
    core = obj & (depth > erode - 1) if erode > 0 else obj
    ids = np.unique(lab[obj])
    present = np.unique(lab[core]) if core.any() else np.zeros(0, lab.dtype)
    missing = np.setdiff1d(ids, present)
    if missing.size:
        dist_in = ndi.distance_transform_edt(obj)
        for pos in ndi.maximum_position(dist_in, lab, missing):
            core[pos] = True
    dist_out = ndi.distance_transform_edt(~obj)
    out[(dist_out > inner) & (dist_out <= outer)] = 1
    out[core] = 2
    return out


# ------------------------------------------------------------------ plug-ins
def load_model(spec: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """Load a segmentation model: a saved :class:`PixelClassifier` or a plug-in.

    Parameters
    ----------
    spec : str or path
        A classifier file written by :meth:`PixelClassifier.save`, or
        ``"module:function"`` / ``"path/to/file.py:function"`` naming a callable
        ``f(image) -> labels or probability map`` (e.g. a cellpose or StarDist
        wrapper).  The callable's output is interpreted by :func:`labels_from_output`.

    Returns
    -------
    callable
        ``model(image) -> ndarray``.
    """
    s = str(spec)
    p = Path(s)
    if p.is_file():
        return PixelClassifier.load(p)
    if ":" not in s:
        raise InputFileError(f"{s}: model must be a saved classifier file or 'module:function'")
    mod_name, _, func_name = s.rpartition(":")
    if not mod_name.endswith(".py") and (not mod_name or mod_name.startswith(".")):
        raise InputFileError(
            f"{s}: the model module must be a full module name (e.g. mypackage.seg:predict)"
            " or a .py file (e.g. seg.py:predict)"
        )
    try:
        if mod_name.endswith(".py"):
            mp = Path(mod_name)
            if not mp.is_file():
                raise InputFileError(f"{mp}: model module file not found")
            sp = importlib.util.spec_from_file_location(f"rawsigma_plugin_{mp.stem}", mp)
            if sp is None or sp.loader is None:
                raise InputFileError(f"{mp}: cannot import model module")
            module = importlib.util.module_from_spec(sp)
            sys.modules[sp.name] = module
            sp.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ImportError as exc:
        hint = _import_hint(exc, mod_name, func_name)
        raise InputFileError(f"{s}: cannot import model module {mod_name!r} ({exc}){hint}") from exc
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise InputFileError(f"{s}: module {mod_name!r} has no callable {func_name!r}")
    return fn


def _import_hint(exc: ImportError, mod_name: str, func_name: str) -> str:
    """How to make a plug-in module in the current folder importable, when it is there.

    The ``rawsigma`` console script, unlike ``python -m``, does not search the current
    folder, so ``--model mypackage.seg:predict`` run beside ``mypackage/`` fails.
    """
    top = mod_name.split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or exc.name != top or mod_name.endswith(".py"):
        return ""
    parts = mod_name.split(".")
    for cand in (Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")):
        if cand.is_file():
            return (
                f"; {cand} is in the current folder, which is not searched: run with "
                f"PYTHONPATH=. or give --model {cand}:{func_name}"
            )
    return "; the module must be installed or its folder on PYTHONPATH"


def labels_from_output(
    output: np.ndarray, shape: tuple[int, ...], threshold: float = 0.5, channel: int = -1
) -> np.ndarray:
    """Turn a model's output into instance labels (int32).

    * integer output of ``shape`` with values beyond 1: instance labels, kept as is;
    * boolean or 0/1 integer output of ``shape``: a mask, split into connected
      components (8 / 26-connected);
    * float output of ``shape``: a foreground probability, thresholded (> threshold);
    * float output of ``shape + (K,)``: class probabilities, channel ``channel``
      (default the last) is the foreground.
    """
    out = np.asarray(output)
    if out.shape == tuple(shape) + out.shape[len(shape) :] and out.ndim == len(shape) + 1:
        out = out[..., channel]
    if out.shape != tuple(shape):
        raise ImageMismatchError(
            f"model output: shape {out.shape} does not match the image shape {tuple(shape)}"
        )
    if out.dtype == bool:
        mask = out
    elif np.issubdtype(out.dtype, np.integer):
        if out.size and out.min() < 0:
            raise InputFileError("model output: negative labels")
        if out.size and out.max() > 1:
            return out.astype(np.int32, copy=False)
        mask = out > 0
    elif np.issubdtype(out.dtype, np.floating):
        mask = out > threshold
    else:
        raise InputFileError(f"model output: unsupported dtype {out.dtype}")
    lab, _ = ndi.label(mask, structure=_full_structure(mask.ndim))
    return lab.astype(np.int32, copy=False)


def segment_with(
    model: Callable[[np.ndarray], np.ndarray] | PixelClassifier,
    image: np.ndarray,
    threshold: float = 0.5,
) -> np.ndarray:
    """Segment ``image`` with any model into instance labels (int32)."""
    if isinstance(model, PixelClassifier):
        return model.segment(image)
    return labels_from_output(model(image), np.shape(image), threshold)
