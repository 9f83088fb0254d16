"""Connected components of a chunked mask, merged across chunk borders.

`label_chunked` gives the labels `scipy.ndimage.label` gives on the whole array
(full connectivity: 8 in 2D, 26 in 3D) and the same numbering (scipy numbers
objects by their first voxel in C order), with one chunk in memory per task:

1. each chunk is labelled alone (``ndi.label``), its local labels written to a
   zarr store in a work directory and its faces (first and last plane along
   every axis) to one small store per axis; the task returns the chunk's object
   count and the global C-order position of each local object's first voxel
   (inside a chunk the local C order is the global one, and ``ndi.label`` numbers
   by first voxel);
2. the count gives every chunk an offset (global provisional id = offset + local);
3. for every chunk border along every axis, the two planes on either side are
   read from the face store (two planes, not two slabs of chunks) and every pair
   of touching foreground voxels across the border (the 3 x 3 in-plane
   neighbourhood: faces, edges and corners) gives a pair of provisional ids to
   merge;
4. the pairs are merged on the client (a union-find: `connected_components` of
   the sparse pair graph), each merged object is numbered by the smallest first
   voxel of its parts, which is scipy's order;
5. the final labels are the local labels through a lookup table, lazily.

dask is imported inside; with a ``dask.distributed`` client active the tasks run
on its workers (the work directory must then be on a file system they share).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ChunkedLabels", "label_chunked"]


@dataclass
class ChunkedLabels:
    """Result of `label_chunked`.

    Attributes
    ----------
    labels : dask.array.Array of uint32
        Final labels, the chunks of the mask; 0 = background.
    count : int
        Number of objects.
    first : ndarray of int64, (count,)
        Global C-order index of each object's first voxel (object ``i + 1``).
    store : str or None
        A zarr array holding ``labels`` (then the crops of objects spanning chunks
        are read from it in batches rather than one dask slice each).
    """

    labels: Any
    count: int
    first: np.ndarray
    store: str | None = None


def _structure(nd: int) -> np.ndarray:
    return np.ones((3,) * nd, bool)


def _chunk_slices(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[slice, ...]]:
    bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    out = []
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        out.append(tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, idx, strict=True)))
    return out


def _label_write(
    mask: np.ndarray,
    where: tuple[slice, ...],
    idx: tuple[int, ...],
    store: str,
    faces: list[str],
    shape: tuple[int, ...],
) -> tuple[int, np.ndarray, np.ndarray]:
    """Label one chunk, write its local labels and its faces.

    Returns the count, the first voxel (global C-order index) and the size of each
    local label.
    """
    import zarr

    lab, n = ndi.label(np.asarray(mask, bool), structure=_structure(mask.ndim))
    lab = lab.astype(np.uint32, copy=False)
    zarr.open_array(store, mode="r+")[where] = lab
    for a, path in enumerate(faces):
        z = zarr.open_array(path, mode="r+")
        for side, pos in ((0, 0), (1, lab.shape[a] - 1)):
            sl = list(where)
            sl[a] = slice(2 * idx[a] + side, 2 * idx[a] + side + 1)
            z[tuple(sl)] = lab.take([pos], axis=a)
    if n == 0:
        return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = lab.ravel()
    nz = np.flatnonzero(flat)
    vals = flat[nz]
    # labels appear in increasing order 1, 2, ...: a new one where the running max rises
    rises = np.flatnonzero(np.diff(np.maximum.accumulate(vals), prepend=0) > 0)
    local = np.unravel_index(nz[rises], lab.shape)
    glob = tuple(i + s.start for i, s in zip(local, where, strict=True))
    sizes = np.bincount(vals, minlength=n + 1)[1:].astype(np.int64)
    return int(n), np.ravel_multi_index(glob, shape).astype(np.int64), sizes


def _label_block(
    block: np.ndarray,
    where: tuple[slice, ...],
    idx: tuple[int, ...],
    store: str,
    faces: list[str],
    shape: tuple[int, ...],
) -> tuple[int, np.ndarray, np.ndarray]:
    return _label_write(np.asarray(block, bool), where, idx, store, faces, shape)


def _stores(
    workdir: str | Path, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...]
) -> tuple[str, list[str]]:
    """Create the local-label store and the face stores.

    Per axis, one store holds both faces of every chunk along that axis (index 2k:
    chunk k's first plane, 2k + 1: its last), so that the merge reads two planes,
    not two slabs of chunks. Every chunk task writes whole storage chunks of its
    own (no two tasks share one).
    """
    import zarr

    size = tuple(c[0] for c in chunks)
    store = str(Path(workdir) / "labels_local.zarr")
    zarr.open_array(store, mode="w", shape=shape, chunks=size, dtype="uint32")
    faces = []
    for a in range(len(shape)):
        fshape, fchunks = list(shape), list(size)
        fshape[a], fchunks[a] = 2 * len(chunks[a]), 1
        path = str(Path(workdir) / f"faces_{a}.zarr")
        zarr.open_array(path, mode="w", shape=tuple(fshape), chunks=tuple(fchunks), dtype="uint32")
        faces.append(path)
    return store, faces


def _border_pairs(
    faces: str,
    axis: int,
    k: int,
    plane_offsets: tuple[list[tuple[tuple[slice, ...], int]], ...],
) -> np.ndarray:
    """Pairs of provisional ids touching across the border after chunk ``k``."""
    import zarr

    z = zarr.open_array(faces, mode="r")
    take: list[Any] = [slice(None)] * z.ndim
    planes = []
    for pos, offs in zip((2 * k + 1, 2 * k + 2), plane_offsets, strict=True):
        take[axis] = pos
        p = np.asarray(z[tuple(take)]).astype(np.int64)
        for sl, off in offs:
            sub = p[sl]
            sub[sub > 0] += off
        planes.append(p)
    a, c = planes
    cp = np.pad(c, 1)
    found = []
    for shift in itertools.product((-1, 0, 1), repeat=a.ndim):
        cs = cp[tuple(slice(1 + s, 1 + s + n) for s, n in zip(shift, c.shape, strict=True))]
        m = (a > 0) & (cs > 0)
        if m.any():
            found.append(np.stack([a[m], cs[m]], axis=1))
    if not found:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(found), axis=0)


@dataclass
class _Merged:
    """The merge of the chunks' local labels (client side, small)."""

    offsets: np.ndarray  # provisional id offset of every chunk (C order of the grid)
    counts: np.ndarray  # local objects per chunk
    lut: np.ndarray  # uint32, provisional id -> final label (0: dropped)
    single: np.ndarray  # bool, provisional id -> its object has no other part
    first: np.ndarray  # first voxel of every final object
    count: int


def _pair_tasks(
    chunks: tuple[tuple[int, ...], ...],
    where: list[tuple[slice, ...]],
    offsets: np.ndarray,
    faces: list[str],
) -> list[Any]:
    import dask

    idxs = list(itertools.product(*(range(len(c)) for c in chunks)))
    tasks = []
    for axis in range(len(chunks)):
        for k in range(len(chunks[axis]) - 1):
            sides = tuple(
                [
                    (tuple(s for i, s in enumerate(w) if i != axis), int(off))
                    for w, off, ix in zip(where, offsets, idxs, strict=True)
                    if ix[axis] == kk
                ]
                for kk in (k, k + 1)
            )
            tasks.append(dask.delayed(_border_pairs)(faces[axis], axis, k, sides))
    return tasks


def _merge(
    results: Any,
    chunks: tuple[tuple[int, ...], ...],
    where: list[tuple[slice, ...]],
    faces: list[str],
    min_size: int,
) -> _Merged:
    """Union-find of the provisional ids touching across chunk borders.

    Numbering in scipy's order (smallest first voxel), small objects dropped.
    """
    import dask
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.array([r[0] for r in results], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    if total >= 2**32 - 1:
        raise ValueError(f"label_chunked: {total} provisional objects exceed uint32")
    first_prov = np.concatenate([np.zeros(0, np.int64)] + [r[1] for r in results])
    size_prov = np.concatenate([np.zeros(0, np.int64)] + [r[2] for r in results])
    pairs = dask.compute(*_pair_tasks(chunks, where, offsets, faces)) if total else ()
    edges = np.concatenate(list(pairs) + [np.zeros((0, 2), np.int64)])
    graph = coo_matrix(
        (np.ones(len(edges), np.int8), (edges[:, 0] - 1, edges[:, 1] - 1)), shape=(total, total)
    )
    n_comp, comp = connected_components(graph, directed=False) if total else (0, np.zeros(0, int))
    comp_first = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(comp_first, comp, first_prov)
    order = np.argsort(comp_first, kind="stable")
    keep = np.ones(n_comp, bool)
    if min_size > 1 and n_comp:
        keep = np.bincount(comp, weights=size_prov, minlength=n_comp) >= min_size
    order = order[keep[order]]
    rank = np.zeros(n_comp, np.int64)
    rank[order] = np.arange(1, order.size + 1)
    lut = np.zeros(total + 1, np.uint32)
    single = np.zeros(total + 1, bool)
    if total:
        lut[1:] = rank[comp]
        single[1:] = np.bincount(comp, minlength=n_comp)[comp] == 1
    return _Merged(offsets, counts, lut, single, comp_first[order], int(order.size))


def _relabel_block(block: np.ndarray, lut: np.ndarray, offset: int) -> np.ndarray:
    out = np.zeros(block.shape, np.uint32)
    m = block > 0
    out[m] = lut[block[m].astype(np.int64) + offset]
    return out


def regular_chunks(chunks: tuple[tuple[int, ...], ...]) -> bool:
    """True if every axis has equal chunks but a last one no larger (zarr's grid)."""
    return all(len(c) == 1 or (len(set(c[:-1])) == 1 and c[-1] <= c[0]) for c in chunks)


def label_chunked(mask: Any, workdir: str | Path, min_size: int = 0) -> ChunkedLabels:
    """Label the connected components of a chunked boolean mask.

    Parameters
    ----------
    mask : dask.array.Array or ndarray of bool, (Y, X) or (Z, Y, X)
        Foreground; chunks must be regular (all equal but the last per axis), a
        numpy array is taken as one chunk.
    workdir : path
        Directory for the local-label store (``labels_local.zarr``, the size of
        the mask in uint32) and the chunk faces (``faces_<axis>.zarr``); it must
        outlive the returned lazy labels.
    min_size : int
        Drop objects of fewer voxels and renumber the others 1..n in the same order
        (as the scoring pipeline's size filter); 0 or 1 keeps all.

    Returns
    -------
    ChunkedLabels
        Labels equal to ``scipy.ndimage.label(mask, np.ones((3,)*ndim))[0]``.

    Raises
    ------
    ValueError
        Irregular chunks, not 2D/3D, or more than 2**32 - 1 provisional objects.
    """
    import dask
    import dask.array as da

    arr = mask if isinstance(mask, da.Array) else da.from_array(np.asarray(mask))
    if arr.ndim not in (2, 3):
        raise ValueError(f"label_chunked: expected a 2D or 3D mask, got shape {arr.shape}")
    chunks = arr.chunks
    if not regular_chunks(chunks):
        raise ValueError(f"label_chunked: chunks must be regular, got {chunks}")
    shape = tuple(int(n) for n in arr.shape)
    store, faces = _stores(workdir, shape, chunks)
    where = _chunk_slices(chunks)
    idxs = list(itertools.product(*(range(len(c)) for c in chunks)))
    tasks = [
        dask.delayed(_label_block, pure=False)(blk, w, ix, store, faces, shape)
        for blk, w, ix in zip(arr.to_delayed().ravel(), where, idxs, strict=True)
    ]
    merged = _merge(dask.compute(*tasks), chunks, where, faces, min_size)
    lut = merged.lut
    local = da.from_zarr(store, chunks=chunks)
    offs_grid = merged.offsets.reshape(tuple(len(c) for c in chunks))

    def relabel(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        loc = block_info[0]["chunk-location"] if block_info else (0,) * block.ndim
        return _relabel_block(block, lut, int(offs_grid[tuple(loc)]))

    labels = local.map_blocks(relabel, dtype=np.uint32)
    return ChunkedLabels(labels=labels, count=merged.count, first=merged.first)


def _block_stats(block: np.ndarray, origin: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Per label in one chunk: ids, voxel count, coordinate sums, bbox low / high."""
    lab = np.asarray(block)
    nz = np.nonzero(lab)
    vals = lab[nz].astype(np.int64)
    if vals.size == 0:
        e = np.zeros(0, np.int64)
        return (
            e,
            e,
            np.zeros((lab.ndim, 0), np.int64),
            e.reshape(lab.ndim, 0),
            e.reshape(lab.ndim, 0),
        )
    ids, inv = np.unique(vals, return_inverse=True)
    count = np.bincount(inv).astype(np.int64)
    coords = [c.astype(np.int64) + o for c, o in zip(nz, origin, strict=True)]
    # exact: a chunk's coordinate sums stay far below 2**53
    sums = np.stack([np.bincount(inv, weights=c).astype(np.int64) for c in coords])
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    lo = np.stack([np.minimum.reduceat(c[order], starts) for c in coords])
    hi = np.stack([np.maximum.reduceat(c[order], starts) for c in coords]) + 1
    return ids, count, sums, lo, hi


def _surfaces_in(
    block: np.ndarray, items: list[tuple[int, tuple[slice, ...]]], spacing: tuple[float, ...]
) -> np.ndarray:
    from rawsigma.analysis.measurement.morphometry3d import _surface

    return np.array([_surface(block[sl] == i, spacing) for i, sl in items], np.float64)


def _surface_of(crop: np.ndarray, label: int, spacing: tuple[float, ...]) -> float:
    from rawsigma.analysis.measurement.morphometry3d import _surface

    return _surface(np.asarray(crop) == label, spacing)


def _surfaces_from_store(
    store: str, items: list[tuple[int, tuple[slice, ...]]], spacing: tuple[float, ...]
) -> np.ndarray:
    import zarr
    from rawsigma.analysis.measurement.morphometry3d import _surface

    z = zarr.open_array(store, mode="r")
    return np.array([_surface(np.asarray(z[sl]) == i, spacing) for i, sl in items], np.float64)


def measure3d_chunked(
    result: ChunkedLabels, spacing: tuple[float, float, float] | float | None = None
) -> dict[str, np.ndarray]:
    """Per-object 3D measurements of chunked labels, reduced across chunks.

    Each chunk task returns, per label it holds, the voxel count, the integer
    coordinate sums and the bounding box; the client adds them up (integers:
    exact, whatever the chunking). The surface area of an object is the mesh of
    its bounding-box crop, as in `measure3d`: computed in the chunk task when the
    box lies in one chunk, else on the crop read across chunks (one task each).

    Parameters
    ----------
    result : ChunkedLabels
        From `label_chunked` on a 3D mask.
    spacing : (dz, dy, dx) or float, optional
        Voxel size (default 1).

    Returns
    -------
    dict of str to ndarray
        The keys and values of
        `rawsigma.analysis.measurement.morphometry3d.measure3d` on the whole label
        volume, plus ``bbox`` (int64, (count, 6): z0, y0, x0, z1, y1, x1, stops
        exclusive).
    """
    import dask
    from rawsigma.analysis.measurement.morphometry3d import PARAMETERS_3D, _spacing

    labels = result.labels
    if labels.ndim != 3:
        raise ValueError(f"measure3d_chunked: expected 3D labels, got shape {labels.shape}")
    sp = _spacing(spacing)
    n_obj = result.count
    out: dict[str, np.ndarray] = {"label": np.zeros(0, np.int64)}
    out.update({k: np.zeros(0) for k in PARAMETERS_3D})
    out["bbox"] = np.zeros((0, 6), np.int64)
    if n_obj == 0:
        return out
    where = _chunk_slices(labels.chunks)
    blocks = labels.to_delayed().ravel()
    stats = dask.compute(
        *[
            dask.delayed(_block_stats)(b, tuple(s.start for s in w))
            for b, w in zip(blocks, where, strict=True)
        ]
    )
    cnt = np.zeros(n_obj + 1, np.int64)
    sums = np.zeros((3, n_obj + 1), np.int64)
    lo = np.full((3, n_obj + 1), np.iinfo(np.int64).max, np.int64)
    hi = np.zeros((3, n_obj + 1), np.int64)
    for ids, c, s, blo, bhi in stats:
        cnt[ids] += c
        sums[:, ids] += s
        lo[:, ids] = np.minimum(lo[:, ids], blo)
        hi[:, ids] = np.maximum(hi[:, ids], bhi)
    surf = _surfaces(result, where, blocks, lo, hi, sp)
    return _object_table(cnt, sums, lo, hi, surf, sp)


def _object_table(
    cnt: np.ndarray,
    sums: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    surf: np.ndarray,
    sp: tuple[float, float, float],
) -> dict[str, np.ndarray]:
    """The `measure3d` table (plus ``bbox``) from the reduced per-object integers.

    ``cnt`` (n + 1,), ``sums``, ``lo``, ``hi`` (3, n + 1): index 0 is the
    background (ignored); ``surf`` (n,).
    """
    from rawsigma.analysis.measurement.morphometry3d import PARAMETERS_3D

    ids = np.arange(1, cnt.size, dtype=np.int64)
    n = cnt[1:].astype(np.float64)
    cents = [(sums[a, 1:].astype(np.float64) / n + 0.5) * sp[a] for a in range(3)]
    vol = n * sp[0] * sp[1] * sp[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        spher = np.where(surf > 0, np.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / surf, np.nan)
    table = {
        "label": ids,
        "volume": vol,
        "surface_area": surf,
        "z": cents[0],
        "y": cents[1],
        "x": cents[2],
        "equiv_diameter": (6 * vol / np.pi) ** (1 / 3),
        "sphericity": spher,
    }
    out = {k: table[k] for k in ("label", *PARAMETERS_3D)}
    out["bbox"] = np.concatenate([lo[:, 1:], hi[:, 1:]]).T.copy()
    return out


def _surfaces(
    result: ChunkedLabels,
    where: list[tuple[slice, ...]],
    blocks: Any,
    lo: np.ndarray,
    hi: np.ndarray,
    sp: tuple[float, float, float],
    batch: int = 256,
) -> np.ndarray:
    """Mesh area of every object's bbox crop.

    Computed per chunk when the box lies in one, else read across chunks (in batches
    from the zarr store when there is one).
    """
    import dask

    labels, n_obj = result.labels, result.count

    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in labels.chunks]
    grid = tuple(len(c) for c in labels.chunks)
    home = []
    for a in range(3):
        first = np.searchsorted(bounds[a], lo[a, 1:], side="right") - 1
        last = np.searchsorted(bounds[a], hi[a, 1:] - 1, side="right") - 1
        home.append((first, last))
    inside = np.all([f == g for f, g in home], axis=0)
    flat = np.ravel_multi_index(tuple(h[0] for h in home), grid)
    per_block: dict[int, list[tuple[int, tuple[slice, ...]]]] = {}
    for i in np.flatnonzero(inside):
        b = int(flat[i])
        org = [s.start for s in where[b]]
        sl = tuple(slice(int(lo[a, i + 1] - org[a]), int(hi[a, i + 1] - org[a])) for a in range(3))
        per_block.setdefault(b, []).append((int(i) + 1, sl))
    keys = sorted(per_block)
    tasks = [dask.delayed(_surfaces_in)(blocks[b], per_block[b], sp) for b in keys]
    spanning = np.flatnonzero(~inside)
    span_items = [
        (int(i + 1), tuple(slice(int(lo[a, i + 1]), int(hi[a, i + 1])) for a in range(3)))
        for i in spanning
    ]
    if result.store is not None:
        groups = [span_items[k : k + batch] for k in range(0, len(span_items), batch)]
        tasks += [dask.delayed(_surfaces_from_store)(result.store, g, sp) for g in groups]
    else:
        groups = [[it] for it in span_items]
        tasks += [dask.delayed(_surface_of)(labels[sl], i, sp) for i, sl in span_items]
    done = dask.compute(*tasks)
    surf = np.zeros(n_obj, np.float64)
    for b, vals in zip(keys, done[: len(keys)], strict=True):
        surf[[i - 1 for i, _ in per_block[b]]] = vals
    for g, vals in zip(groups, done[len(keys) :], strict=True):
        surf[[i - 1 for i, _ in g]] = np.atleast_1d(vals)
    return surf
