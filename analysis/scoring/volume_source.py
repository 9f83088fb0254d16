"""Inputs of an out-of-core volume run, read block by block: never the whole volume.

Used by :func:`rawsigma.analysis.scoring.volume_lazy.score_volume_lazy` (the CLI's
chunked path) in place of the in-memory steps of ``score_volume``:

- :func:`stage_raw` copies the source (a :class:`~rawsigma.volread.VolumeSource`:
  zarr, HDF5, TIFF) into ``raw.zarr`` with the run's chunks, one z-slab at a time
  (:data:`SLAB_BYTES`), checking each slab as ``check_raw_volume`` and the profile
  would, and keeping what later steps need: the value histogram (exact 8-bit ranges,
  percentiles), the first plane's range and a fingerprint;
- :func:`stage_annotations` does the same for the sparse annotations (classes and
  per-class counts; the annotated foreground as a 0/1 zarr);
- :func:`annotation_region_sizes` labels that foreground chunk-wise (26-connected,
  `outofcore.chunklabel.label_chunked`) for the default minimum object size;
- :func:`fit_lazy` trains the forest exactly as ``PixelClassifier.fit`` does (same
  drawn voxels, same features, same forest) reading only the blocks that hold drawn
  voxels, with their feature halo, from the zarr stores;
- :func:`tissue_voxels` counts the Otsu tissue of the smoothed raw volume exactly as
  ``volume.tissue_mask`` (Gaussian per chunk with a halo of the filter's radius, no
  padding inside the volume; Otsu on the 256-bin histogram of the smoothed values
  accumulated over chunks between their global min and max: the same bins and
  threshold as ``skimage.filters.threshold_otsu``), or the voxels of a given mask.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import ImageMismatchError, InputFileError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "RawStats",
    "annotation_region_sizes",
    "fit_lazy",
    "stage_annotations",
    "stage_raw",
    "tissue_voxels",
]

#: Bytes of one z-slab the driver reads at a time (whole planes, a multiple of the
#: chunk depth); the driver's working memory is a few of these.
SLAB_BYTES = 16 * 2**20
#: Working memory of one feature block in `fit_lazy` (blocks without drawn voxels skipped).
TRAIN_BLOCK_MEMORY = 32 * 2**20


@dataclass
class RawStats:
    """What the staging pass of the raw volume found."""

    path: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    hist: np.ndarray  # int64 counts of each value 0..65535
    first_plane: tuple[int, int]
    fingerprint: str

    @property
    def vmin(self) -> int:
        """Smallest value."""
        return int(np.flatnonzero(self.hist)[0])

    @property
    def vmax(self) -> int:
        """Largest value."""
        return int(np.flatnonzero(self.hist)[-1])

    def percentile(self, q: float) -> float:
        """``numpy.percentile(volume, q)`` (linear) from the exact value histogram."""
        cum = np.cumsum(self.hist)
        pos = (cum[-1] - 1) * q / 100.0
        lo = math.floor(pos)
        a = int(np.searchsorted(cum, lo, side="right"))
        b = int(np.searchsorted(cum, min(lo + 1, cum[-1] - 1), side="right"))
        return float(a + (b - a) * (pos - lo))


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` (``mallopt(M_ARENA_MAX)``); False elsewhere.

    Every thread that allocates gets its own arena, and freed blocks stay in it: with
    the driver's filter threads on 1.26 GB this held ~170 MB beyond the data (RESULTS,
    h14L). Same effect as ``MALLOC_ARENA_MAX=n`` set before the process starts.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(-8, int(n)))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def slabs(shape: tuple[int, ...], chunk_z: int, itemsize: int) -> list[slice]:
    """Z ranges of whole-plane slabs, a multiple of ``chunk_z`` deep, ~`SLAB_BYTES`."""
    plane = int(np.prod(shape[1:])) * itemsize
    k = max(1, SLAB_BYTES // max(1, plane * chunk_z))
    d = chunk_z * k
    return [slice(z, min(z + d, shape[0])) for z in range(0, shape[0], d)]


def tiles(
    shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int
) -> list[tuple[slice, ...]]:
    """(z, y, x) ranges of chunk-aligned tiles of ~`SLAB_BYTES` (at least one chunk).

    A tile is one chunk deep in z and a multiple of the chunk shape in y and x, so
    that writing it fills whole chunks; the driver's working memory is a few tiles.
    """
    cz, cy, cx = chunks[:3]
    row = cz * cy * cx * itemsize
    nx = max(1, min(-(-shape[2] // cx), SLAB_BYTES // max(1, row)))
    ny = max(1, SLAB_BYTES // max(1, row * nx))
    by, bx = cy * ny, cx * nx
    return [
        (slice(z, min(z + cz, shape[0])), slice(y, min(y + by, shape[1])),
         slice(x, min(x + bx, shape[2])))
        for z in range(0, shape[0], cz)
        for y in range(0, shape[1], by)
        for x in range(0, shape[2], bx)
    ]  # fmt: skip


def _create(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any) -> Any:
    import zarr

    return zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype=dtype, compressors=None, overwrite=True
    )


def _check_slab(a: np.ndarray, src: Any, z: slice, profile: Any) -> np.ndarray:
    """One tile as ``check_raw_volume`` and the profile check a whole volume; uint16 out."""
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ImageMismatchError(
            f"{src.path}: negative voxel values (planes {z.start}-{z.stop - 1}); not a raw volume"
        )
    if a.dtype.itemsize > 2 and a.size and a.max() > 65535:
        raise ImageMismatchError(
            f"{src.path}: values above 65535 (planes {z.start}-{z.stop - 1}); the out-of-core "
            "path scores 16-bit camera counts"
        )
    a = a.astype(np.uint16, copy=False)
    if profile is not None and a.size and int(a.max()) > profile.max_adu:
        n = int(np.count_nonzero(a > profile.max_adu))
        raise ImageMismatchError(
            f"{src.path}: image has {n} value(s) above the profile's maximum {profile.max_adu} "
            f"ADU (planes {z.start}-{z.stop - 1}, max {int(a.max())}): wrong bit depth or not "
            "a raw image"
        )
    return a


def _bincount(a: np.ndarray, piece: int = 1 << 20) -> np.ndarray:
    """``bincount`` of a uint16 array in pieces (its int64 copy stays small)."""
    flat = a.reshape(-1)
    out = np.zeros(65536, np.int64)
    for i in range(0, flat.size, piece):
        out += np.bincount(flat[i : i + piece], minlength=65536)
    return out


def stage_raw(src: Any, dest: Path, chunks: tuple[int, int, int], profile: Any) -> RawStats:
    """Copy the raw source into ``dest`` (zarr, uint16, ``chunks``) slab by slab.

    Raises the errors of ``check_raw_volume`` (dtype, negative values, the profile's
    shape and bit depth) naming the file; ``dest`` is written under a temporary name
    and renamed when complete.
    """
    dt = np.dtype(src.dtype)
    if dt.kind == "f" or dt.kind not in "ui" or dt.itemsize < 2:
        raise ImageMismatchError(
            f"{src.path}: {dt} volume; scoring needs the raw integer camera counts "
            "(uint16) as recorded, before any conversion"
        )
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    out = _create(tmp, src.shape, chunks, np.uint16)
    hist = np.zeros(65536, np.int64)
    h = hashlib.sha256(repr((src.shape, src.dtype)).encode())
    plane = _check_slab(src[0:1], src, slice(0, 1), None)
    if profile is not None:
        profile.check_image(plane, name=src.path)  # shape, dtype, bit depth
    first = (int(plane.min()), int(plane.max()))
    del plane
    for t in tiles(src.shape, chunks, dt.itemsize):
        a = _check_slab(src[t], src, t[0], profile)
        hist += _bincount(a)
        h.update(a[:, ::61, ::59].tobytes())
        out[t] = a
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return RawStats(str(dest), tuple(src.shape), chunks, hist, first, h.hexdigest()[:16])


@dataclass
class Annotations:
    """What the staging pass of the annotations found."""

    path: str  # the annotations, zarr (uint8 or uint16)
    foreground: str  # the annotated foreground, zarr uint8 0/1
    classes: np.ndarray
    counts: dict[int, int]


def stage_annotations(
    src: Any, dest: Path, chunks: tuple[int, int, int], shape: tuple[int, ...], fg_class: int
) -> Annotations:
    """Copy sparse annotations into ``dest`` (and their foreground), checking each slab.

    The checks of ``check_labels`` / ``PixelClassifier.fit``: same shape as the
    volume, integer classes, none negative, at least two classes, the foreground
    class annotated.
    """
    name = src.path
    if tuple(src.shape) != tuple(shape):
        raise ImageMismatchError(
            f"{name}: label volume shape {tuple(src.shape)} (Z, Y, X) differs from the volume's "
            f"{tuple(shape)}"
        )
    dt = np.dtype(src.dtype)
    if dt.kind not in "uib":
        raise InputFileError(f"{name}: annotations must be integer classes, got {dt}")
    lab_store = _create(dest, shape, chunks, np.uint16)
    fg_path = dest.with_name(dest.stem + "_foreground.zarr")
    fg_store = _create(fg_path, shape, chunks, np.uint8)
    counts = np.zeros(0, np.int64)
    for t in tiles(shape, chunks, max(2, dt.itemsize)):
        a = np.asarray(src[t])
        if a.size and a.min() < 0:
            raise InputFileError(f"{name}: negative class values (use 0 for unlabelled)")
        if a.size and int(a.max()) > 65535:
            raise InputFileError(f"{name}: class values above 65535; not sparse annotations")
        a = a.astype(np.uint16)
        c = np.trim_zeros(_bincount(a), "b")
        counts = np.pad(counts, (0, max(0, c.size - counts.size)))
        counts[: c.size] += c
        lab_store[t] = a
        fg_store[t] = (a == fg_class).astype(np.uint8)
    classes = np.flatnonzero(counts[1:]) + 1
    if classes.size == 0:
        raise InputFileError(f"{name}: empty annotations (no labelled voxel)")
    if fg_class not in classes:
        raise InputFileError(
            f"{name}: no voxel of the foreground class {fg_class} is annotated "
            f"(classes present: {classes.tolist()})"
        )
    if classes.size < 2:
        raise InputFileError(
            f"{name}: only class {int(classes[0])} is annotated; need at least two classes"
        )
    return Annotations(str(dest), str(fg_path), classes, {int(k): int(counts[k]) for k in classes})


def annotation_region_sizes(ann: Annotations, workdir: Path) -> np.ndarray:
    """Voxel counts of the 26-connected regions of the annotated foreground, chunk-wise."""
    import dask
    import dask.array as da
    from rawsigma.analysis.outofcore.chunklabel import label_chunked

    mask = da.from_zarr(ann.foreground) > 0
    with dask.config.set(scheduler="synchronous"):
        cl = label_chunked(mask, workdir)
        sizes = np.zeros(cl.count + 1, np.int64)
        for blk in cl.labels.to_delayed().ravel():
            b = np.asarray(blk.compute())
            sizes += np.bincount(b.ravel(), minlength=cl.count + 1)[: cl.count + 1]
    shutil.rmtree(workdir, ignore_errors=True)
    return sizes[1:]


# ----------------------------------------------------------------------------- training
def fit_lazy(clf: Any, raw: str, ann: Annotations) -> Any:
    """Train ``clf`` as ``clf.fit(volume, labels)`` would, from the zarr stores.

    The drawn voxels are those of ``PixelClassifier._training_sample`` (ranks drawn
    with ``random_state`` per class from the class counts, enumerated block by
    block); the features of a block are computed only if it holds drawn voxels,
    from the block and its halo read from ``raw``. Memory: the sample's features
    plus one feature block.
    """
    import zarr
    from rawsigma.analysis.segmentation import features as fb
    from sklearn.ensemble import RandomForestClassifier

    vol, lab = zarr.open_array(raw, mode="r"), zarr.open_array(ann.path, mode="r")
    cap = clf.max_samples_per_class
    rng = np.random.default_rng(clf.random_state)
    picked = []
    for c in ann.classes:
        n = ann.counts[int(c)]
        ranks = np.sort(rng.choice(n, cap, replace=False)) if cap and n > cap else None
        picked.append(clf._drawn_pixels(lab, int(c), ranks))  # noqa: SLF001
    pos = np.concatenate(picked)
    y = np.concatenate(
        [np.full(p.size, c, np.int64) for p, c in zip(picked, ann.classes, strict=True)]
    )
    cfg = fb._config(clf.features, None, {})  # noqa: SLF001
    names = fb._order(cfg, 3)  # noqa: SLF001
    index = {n: i for i, n in enumerate(names)}
    spacing = cfg.spacing or (1.0, 1.0, 1.0)
    n_feat = len(
        fb.feature_names(3, clf.features.preset, clf.features.sigmas, clf.features.features)
    )
    x = np.empty((pos.size, n_feat), np.float32)
    coords = np.unravel_index(pos, vol.shape)
    block = fb._resolve_block(clf.block, vol.shape, cfg, 1, TRAIN_BLOCK_MEMORY)  # noqa: SLF001
    for core in fb._block_starts(vol.shape, block):  # noqa: SLF001
        inside = np.ones(pos.size, bool)
        for ax, s in enumerate(core):
            inside &= (coords[ax] >= s.start) & (coords[ax] < s.stop)
        rows = np.flatnonzero(inside)
        if rows.size:
            feats = fb._compute_block(vol, core, cfg, spacing, index)  # type: ignore[arg-type]  # noqa: SLF001
            local = tuple(coords[ax][rows] - s.start for ax, s in enumerate(core))
            x[rows] = feats[(slice(None), *local)].T
    model = RandomForestClassifier(
        random_state=clf.random_state, n_jobs=clf.n_jobs, **clf.rf_params
    )
    model.fit(x, y)
    clf.model_ = model
    clf.classes_ = model.classes_.astype(np.int64)
    clf.ndim_ = 3
    clf.feature_names_ = fb.feature_names(
        3, clf.features.preset, clf.features.sigmas, clf.features.features
    )
    return clf


# ----------------------------------------------------------------------------- tissue
def _smoothed_blocks(raw: str, sigma: tuple[float, ...]) -> Any:
    """The raw volume smoothed by ``gaussian_filter(., sigma)``, chunk by chunk.

    Each chunk is read with a halo of the filter's radius (scipy's, truncate 4),
    clipped at the volume's border, where scipy's own ``reflect`` mode applies: the
    trimmed block equals the same block of the whole volume smoothed at once.
    """
    import itertools

    import zarr
    from scipy import ndimage as ndi

    arr = zarr.open_array(raw, mode="r")
    depth = [int(4.0 * s + 0.5) for s in sigma]
    grid = [range(0, n, c) for n, c in zip(arr.shape, arr.chunks, strict=True)]
    for start in itertools.product(*grid):
        core = [
            slice(o, min(o + c, n)) for o, c, n in zip(start, arr.chunks, arr.shape, strict=True)
        ]
        outer = tuple(
            slice(max(0, c.start - d), min(n, c.stop + d))
            for c, d, n in zip(core, depth, arr.shape, strict=True)
        )
        sm = ndi.gaussian_filter(np.asarray(arr[outer]).astype(np.float32), sigma)
        yield sm[
            tuple(
                slice(c.start - o.start, c.stop - o.start) for c, o in zip(core, outer, strict=True)
            )
        ]


def tissue_voxels(raw: str, sigma: tuple[float, ...], mask: Any = None) -> int:
    """Voxels of the tissue: ``mask`` (a VolumeSource) != 0, or Otsu of the smoothed raw.

    Exactly ``count_nonzero(volume.tissue_mask(raw, spacing))`` (see module notes):
    three passes over the smoothed chunks (min/max, histogram, count).
    """
    import zarr
    from skimage.filters import threshold_otsu

    if mask is not None:
        n = 0
        for t in tiles(mask.shape, (1, 1, 1), np.dtype(mask.dtype).itemsize):
            n += int(np.count_nonzero(mask[t]))
        if n == 0:
            raise ImageMismatchError(f"{mask.path}: the mask volume holds no tissue voxel")
        return n
    ext = [(b.min(), b.max()) for b in _smoothed_blocks(raw, sigma)]
    lo, hi = min(e[0] for e in ext), max(e[1] for e in ext)
    if float(hi) <= float(lo):
        return int(np.prod(zarr.open_array(raw, mode="r").shape))
    rng: Any = (np.float32(lo), np.float32(hi))  # as numpy's own range: float32 edges
    counts = sum(np.histogram(b, bins=256, range=rng)[0] for b in _smoothed_blocks(raw, sigma))
    _, edges = np.histogram(np.array([lo, hi], np.float32), bins=256, range=rng)
    t = threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2.0))
    return sum(int(np.count_nonzero(b > t)) for b in _smoothed_blocks(raw, sigma))
