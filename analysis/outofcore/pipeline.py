"""Out-of-core 3D segmentation and measurement of one volume, streamed chunk by chunk.

`segment_measure_chunked` runs two passes of one task per chunk, and a small merge
on the client between them:

1. *segment*: read the chunk and the classifier's halo straight from the source
   (`features.max_halo`, no padding at the volume's border), classify it
   (``clf.predict_proba`` on the block, whose core equals the whole-volume
   probabilities), threshold, label it alone (26-connected) and write the local
   labels (``labels_local.zarr``) and the chunk's six faces (``faces_<axis>.zarr``);
   the task returns the object count, first voxels and sizes;
2. *merge* (`chunklabel`): pairs of ids touching across every chunk border, read
   from the face stores, then a union-find and scipy's numbering;
3. *finish*: relabel the chunk through its slice of the lookup table, write it to
   ``labels.zarr`` and return the per-object integers (voxel count, coordinate
   sums, bounding box) and the surface of every object lying in this chunk alone;
   the surfaces of the objects spanning chunks are then computed from
   ``labels.zarr``, one read per group of objects starting in the same chunk.

No mask, feature or probability array is ever stored; a task holds one chunk and
its halo, so a worker's memory is bounded by the chunk shape, which `auto_chunks`
derives from a memory budget (`task_budget` of the worker's memory limit). With a
``dask.distributed`` client active, the tasks run on its workers.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["auto_chunks", "bytes_per_voxel", "segment_measure_chunked", "task_budget"]

#: Resident memory of a worker process before its first chunk (numpy, scipy,
#: scikit-learn, numba, zarr and distributed imported: ~231 MB measured) and the
#: allocator's slack.
WORKER_FLOOR = 260 * 10**6
#: Bytes per voxel of a segment task without features: the source and its float32
#: copy, the K=2 probabilities, the mask and the int32 / uint32 labels.
SEGMENT_BYTES_PER_VOXEL = 32


def bytes_per_voxel(clf: Any) -> int:
    """Working memory of a segment task per voxel of its chunk.

    `SEGMENT_BYTES_PER_VOXEL` plus, with a classifier, 8 bytes per feature channel
    (the channel-first feature block of the chunk and the filters' temporaries).
    """
    if clf is None:
        return 16
    from rawsigma.analysis.segmentation.features import _order

    return SEGMENT_BYTES_PER_VOXEL + 8 * len(_order(clf.features.resolved(), 3))


def auto_chunks(shape: tuple[int, ...], budget: int, per_voxel: int) -> tuple[int, ...]:
    """Largest chunk shape within a memory budget: halve the longest axis until it fits.

    Parameters
    ----------
    shape : tuple of int
        Volume shape.
    budget : int
        Bytes a chunk task may use (`task_budget`).
    per_voxel : int
        The task's working memory per voxel of its chunk (`bytes_per_voxel`).

    Returns
    -------
    tuple of int
        A chunk shape (regular grid), as near cubic as halving allows.
    """
    ch = [int(n) for n in shape]
    while int(np.prod(ch)) * per_voxel > budget and max(ch) > 1:
        a = int(np.argmax(ch))
        ch[a] = -(-ch[a] // 2)
    return tuple(ch)


def task_budget(limit: int) -> int:
    """Bytes a chunk task may use on a worker of memory limit ``limit`` (bytes).

    70 % of the limit (dask pauses a worker at 80 % of it, measured on the
    process's resident memory) minus the process floor (`WORKER_FLOOR`); at least
    16 MiB.
    """
    return max(16 * 2**20, int(0.7 * limit) - WORKER_FLOOR)


def _worker_budget() -> int:
    """`task_budget` of the smallest worker memory limit of the active client.

    512 MiB without a cluster or a limit.
    """
    limit = 0
    try:
        from distributed import get_client

        info = get_client().scheduler_info(n_workers=-1)["workers"].values()
        limit = min((int(w.get("memory_limit") or 0) for w in info), default=0)
    except (ImportError, ValueError):
        limit = 0
    return task_budget(limit) if limit else 512 * 2**20


def _source(volume: Any) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """(a zarr path or a dask array, shape, own chunk shape)."""
    import dask.array as da

    if isinstance(volume, (str, Path)):
        import zarr

        z = zarr.open_array(str(volume), mode="r")
        return str(volume), tuple(z.shape), tuple(z.chunks)
    arr = volume if isinstance(volume, da.Array) else da.from_array(np.asarray(volume))
    return arr, tuple(arr.shape), tuple(max(c) for c in arr.chunks)


def _read(src: Any, outer: tuple[slice, ...]) -> np.ndarray:
    if isinstance(src, str):
        import zarr

        return np.asarray(zarr.open_array(src, mode="r")[outer])
    return np.asarray(src)


def _segment_block(
    src: Any,
    outer: tuple[slice, ...],
    where: tuple[slice, ...],
    idx: tuple[int, ...],
    clf: Any,
    threshold: float,
    stores: tuple[str, list[str]],
    shape: tuple[int, ...],
) -> tuple[int, np.ndarray, np.ndarray]:
    """Pass 1 on one chunk: read with halo, classify, threshold, label, write."""
    from rawsigma.analysis.outofcore.chunklabel import _label_write

    block = _read(src, outer)
    core = tuple(
        slice(w.start - o.start, w.stop - o.start) for w, o in zip(where, outer, strict=True)
    )
    if clf is None:
        mask = block[core] > threshold
    else:
        one = copy.copy(clf)
        one.n_jobs = 1  # one thread per task: the cluster's workers are the parallelism
        mask = one.foreground_probability(block)[core] > threshold
    del block
    return _label_write(mask, where, idx, stores[0], stores[1], shape)


def _finish_block(
    local: str,
    final: str,
    where: tuple[slice, ...],
    lut: np.ndarray,
    single: np.ndarray,
    spacing: tuple[float, float, float],
) -> tuple[np.ndarray, ...]:
    """Pass 2 on one chunk: write the final labels, measure the local objects.

    Returns, per local object kept, its final id, voxel count, coordinate sums,
    bbox and (objects lying in this chunk alone, else NaN) surface.
    """
    import zarr
    from rawsigma.analysis.measurement.morphometry3d import _surface
    from scipy import ndimage as ndi

    loc = np.asarray(zarr.open_array(local, mode="r")[where])
    zarr.open_array(final, mode="r+")[where] = lut[loc]
    n = lut.size - 1
    nz = np.nonzero(loc)
    vals = loc[nz].astype(np.intp)
    cnt = np.bincount(vals, minlength=n + 1)[1:].astype(np.int64)
    origin = [s.start for s in where]
    # float64 bincount sums of integer coordinates are exact below 2**53
    sums = np.stack(
        [np.bincount(vals, weights=c, minlength=n + 1)[1:].astype(np.int64) for c in nz]
    )
    del nz, vals
    sums += np.outer(origin, cnt)
    boxes = ndi.find_objects(loc, max_label=n)
    lo = np.array(
        [[s.start + o for s, o in zip(b, origin, strict=True)] for b in boxes], np.int64
    ).reshape(n, 3)
    hi = np.array(
        [[s.stop + o for s, o in zip(b, origin, strict=True)] for b in boxes], np.int64
    ).reshape(n, 3)
    fid = lut[1:].astype(np.int64)
    surf = np.full(n, np.nan)
    for i in np.flatnonzero(single[1:] & (fid > 0)):
        surf[i] = _surface(loc[boxes[i]] == i + 1, spacing)
    keep = fid > 0
    return fid[keep], cnt[keep], sums[:, keep], lo[keep].T, hi[keep].T, surf[keep]


def segment_measure_chunked(
    volume: Any,
    clf: Any,
    workdir: str | Path,
    *,
    spacing: tuple[float, float, float] | None = None,
    min_size: int = 0,
    threshold: float = 0.5,
    chunks: Any = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Segment a (larger than memory) volume with a trained classifier and measure it.

    Parameters
    ----------
    volume : dask.array.Array, ndarray or path of a zarr array, (Z, Y, X)
        Raw volume. A zarr path is read by the tasks themselves (each its chunk
        and halo); a dask array through its graph.
    clf : PixelClassifier or None
        Trained on 3D data; None: the foreground is ``volume > threshold``.
    workdir : path
        Scratch and output directory (``labels_local.zarr``, ``faces_*.zarr``,
        ``labels.zarr``); on a cluster, a file system every worker sees.
    spacing : (dz, dy, dx), optional
        Voxel size of the measurements.
    min_size : int
        Objects smaller than this many voxels are dropped (then renumbered).
    threshold : float
        Foreground probability threshold (raw value threshold if ``clf`` is None).
    chunks : optional
        Processing chunk shape (one int per axis); ``None``: the array's own
        (the largest per axis); ``"auto"``: `auto_chunks` within the memory limit
        of the active ``dask.distributed`` workers (512 MB per task without one).

    Returns
    -------
    labels : dask.array.Array of uint32
        Final labels, lazily read from ``workdir/labels.zarr``, equal to
        ``scipy.ndimage.label`` (26-connected) of the in-memory foreground.
    table : dict of str to ndarray
        As `rawsigma.analysis.outofcore.chunklabel.measure3d_chunked`.

    Raises
    ------
    RuntimeError
        The classifier is not trained.
    ImageMismatchError
        Not a 3D volume, or the classifier is not a 3D one.
    """
    import dask
    import dask.array as da
    import zarr
    from rawsigma.analysis.measurement.morphometry3d import _spacing
    from rawsigma.analysis.outofcore.chunklabel import _chunk_slices, _merge, _stores

    src, shape, own = _source(volume)
    _check(clf, shape)
    size = _chunk_shape(chunks, shape, own, clf)
    grid = tuple(
        tuple(min(c, n - s) for s in range(0, n, c)) for n, c in zip(shape, size, strict=True)
    )
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    stores = _stores(work, shape, grid)
    where = _chunk_slices(grid)
    idxs = list(itertools.product(*(range(len(c)) for c in grid)))
    halo = _halo(clf, len(shape))
    tasks = []
    for w, ix in zip(where, idxs, strict=True):
        outer = tuple(
            slice(max(0, s.start - h), min(n, s.stop + h))
            for s, h, n in zip(w, halo, shape, strict=True)
        )
        blk = src if isinstance(src, str) else src[outer]
        tasks.append(
            dask.delayed(_segment_block, pure=False)(
                blk, outer, w, ix, clf, threshold, stores, shape
            )
        )
    merged = _merge(dask.compute(*tasks), grid, where, stores[1], min_size)
    final = str(work / "labels.zarr")
    zarr.open_array(final, mode="w", shape=shape, chunks=size, dtype="uint32")
    sp = _spacing(spacing)
    table = _finish(merged, stores[0], final, where, sp, size)
    return da.from_zarr(final), table


def _check(clf: Any, shape: tuple[int, ...]) -> None:
    from rawsigma.errors import ImageMismatchError

    if len(shape) != 3:
        raise ImageMismatchError(f"volume: expected a 3D (Z, Y, X) volume, got shape {shape}")
    if clf is None:
        return
    if clf.model_ is None:
        raise RuntimeError("PixelClassifier is not trained: call fit() or load() first")
    if clf.ndim_ != 3:
        raise ImageMismatchError(f"volume: classifier was trained on {clf.ndim_}D images")


def _halo(clf: Any, nd: int) -> tuple[int, ...]:
    if clf is None:
        return (0,) * nd
    from rawsigma.analysis.segmentation.features import max_halo

    return tuple(int(h) for h in max_halo(clf.features, nd))


def _chunk_shape(
    chunks: Any, shape: tuple[int, ...], own: tuple[int, ...], clf: Any
) -> tuple[int, ...]:
    if chunks is None:
        return own
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks: expected None, 'auto' or one int per axis, got {chunks!r}")
        return auto_chunks(shape, _worker_budget(), bytes_per_voxel(clf))
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * len(shape)
    size = tuple(int(c) for c in chunks)
    if len(size) != len(shape) or min(size) < 1:
        raise ValueError(f"chunks: expected one positive int per axis, got {chunks!r}")
    return tuple(min(c, n) for c, n in zip(size, shape, strict=True))


def _finish(
    merged: Any,
    local: str,
    final: str,
    where: list[tuple[slice, ...]],
    sp: tuple[float, float, float],
    size: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """Pass 2 and the reduction of its per-chunk integers into the object table."""
    import dask
    from rawsigma.analysis.outofcore.chunklabel import _object_table

    tasks = []
    for w, off, n in zip(where, merged.offsets, merged.counts, strict=True):
        lut = np.concatenate([[0], merged.lut[off + 1 : off + n + 1]]).astype(np.uint32)
        single = np.concatenate([[False], merged.single[off + 1 : off + n + 1]])
        tasks.append(dask.delayed(_finish_block, pure=False)(local, final, w, lut, single, sp))
    n_obj = merged.count
    cnt = np.zeros(n_obj + 1, np.int64)
    sums = np.zeros((3, n_obj + 1), np.int64)
    lo = np.full((3, n_obj + 1), np.iinfo(np.int64).max, np.int64)
    hi = np.zeros((3, n_obj + 1), np.int64)
    surf = np.full(n_obj + 1, np.nan)
    for fid, c, s, blo, bhi, sf in dask.compute(*tasks):
        np.add.at(cnt, fid, c)
        for a in range(3):
            np.add.at(sums[a], fid, s[a])
            np.minimum.at(lo[a], fid, blo[a])
            np.maximum.at(hi[a], fid, bhi[a])
        done = ~np.isnan(sf)
        surf[fid[done]] = sf[done]
    span = np.flatnonzero(np.isnan(surf[1:])) + 1
    groups = _span_groups(span, lo, hi, size)
    got = dask.compute(*[dask.delayed(_surfaces_in_region)(final, r, g, sp) for r, g in groups])
    for (_, g), vals in zip(groups, got, strict=True):
        surf[[i for i, _ in g]] = vals
    return _object_table(cnt, sums, lo, hi, surf[1:], sp)


Box = tuple[slice, ...]


def _span_groups(
    span: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: tuple[int, ...]
) -> list[tuple[Box, list[tuple[int, Box]]]]:
    """Objects spanning chunks, grouped by the chunk of their first corner.

    Each group is read as one region (the union of its bounding boxes) when that
    is at most 4 chunks of voxels, so a chunk's neighbours are decompressed once
    per group, not once per object; larger objects are read alone.
    """
    home: dict[tuple[int, ...], list[int]] = {}
    for i in span:
        home.setdefault(tuple(int(lo[a, i]) // size[a] for a in range(3)), []).append(int(i))
    limit = 4 * int(np.prod(size))
    out: list[tuple[Box, list[tuple[int, Box]]]] = []
    for ids in home.values():
        items = [(i, tuple(slice(int(lo[a, i]), int(hi[a, i])) for a in range(3))) for i in ids]
        r0, r1 = lo[:, ids].min(axis=1), hi[:, ids].max(axis=1)
        if int(np.prod(r1 - r0)) <= limit:
            out.append((tuple(slice(int(a), int(b)) for a, b in zip(r0, r1, strict=True)), items))
        else:
            out += [(box, [(i, box)]) for i, box in items]
    return out


def _surfaces_in_region(
    final: str, region: Box, items: list[tuple[int, Box]], sp: tuple[float, float, float]
) -> np.ndarray:
    """Mesh areas of the objects ``items`` (id, global box) lying in ``region``."""
    import zarr
    from rawsigma.analysis.measurement.morphometry3d import _surface

    block = np.asarray(zarr.open_array(final, mode="r")[region])
    o = [r.start for r in region]
    out = []
    for i, box in items:
        rel = tuple(slice(b.start - s, b.stop - s) for b, s in zip(box, o, strict=True))
        out.append(_surface(block[rel] == i, sp))
    return np.array(out, np.float64)
