"""The tomography scoring pipeline for volumes beyond memory: slab by slab, on disk.

FBP is slice by slice, so every reconstruction (raw, each replica, each codec) is
written slab by slab into a zarr array in a work directory (chunks = one slab of
detector rows), and never held whole. The segmentation reads it back slab by slab:

- the plaque rule's response (a DoG) and the organ mask's smoothing are computed on
  each slab with a halo of the filter's radius along z (the whole y, x extent is in
  the slab), so they equal the whole-volume filters; the rule's statistics (a
  quantile of the raw volume, Otsu's threshold, a median, the response quantile in
  the organ) are exact (:mod:`rawsigma.analysis.scoring.tomo_stats`);
- the forest's foreground is `rawsigma.analysis.outofcore.foreground_dask` (feature
  halos, equal to the in-memory probabilities);
- the foreground mask goes to ``mask.zarr``, its 26-connected components are merged
  across slab borders by `rawsigma.analysis.outofcore.label_chunked` (the small ones
  dropped and the rest renumbered as in memory) and measured by
  `rawsigma.analysis.outofcore.measure3d_chunked`; plaques crossing a slab border
  are one object, measured as in memory.

Splits and merges of the matching, the per-voxel ε of the reconstruction and the
report's maps are computed slab by slab too. `ChunkedVolumes` is the store the
runner (:func:`rawsigma.analysis.scoring.tomo_runner.score_tomo`) uses when the
in-memory volumes would exceed the memory budget (`choose_path`).
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from .tomo_stats import chunked_median, chunked_otsu, chunked_quantile

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator

__all__ = ["ChunkedVolumes", "available_memory", "choose_path", "in_memory_bytes"]

#: Filter radius of scipy's Gaussian (truncate 4): the halo a slab needs.
_TRUNCATE = 4.0


def _radius(sigma: float) -> int:
    return int(_TRUNCATE * float(sigma) + 0.5)


def available_memory() -> int:
    """Bytes of memory available to this process now (``MemAvailable``; 4 GB if unknown)."""
    from rawsigma._sysmem import meminfo_available

    available = meminfo_available()
    return 4 * 2**30 if available is None else available


def in_memory_bytes(
    proj_shape: tuple[int, int, int], n_replicas: int, n_versions: int, operators: bool
) -> int:
    """Peak memory of the in-memory path, estimated (bytes).

    Projections (raw, replicas, versions, uint16), reconstructions (float32: raw,
    replicas, versions, plus the filter temporaries of the segmentation) and, with
    ``operators``, the operator ε of projections and reconstruction: 16 channels per
    pixel held as raw maps (float32), running mean and variance (float64), one
    version's maps, its ε and temporaries, ~640 bytes per pixel (measured: 3.4 GB peak
    for 7 × 64 × 256 projections and a 64 × 256² reconstruction).
    """
    a, z, n = proj_shape
    proj = 2 * a * z * n * (2 + n_replicas + n_versions)
    vol = 4 * z * n * n
    total = proj + vol * (1 + n_replicas + n_versions + 4)
    if operators:
        total += 640 * max(z * n * n, a * z * n)  # projections, then reconstruction
    return int(total)


def choose_path(
    proj_shape: tuple[int, int, int],
    n_replicas: int,
    n_versions: int,
    operators: bool,
    chunks: str = "auto",
    budget: int | None = None,
) -> tuple[bool, str]:
    """Choose the path: ``(chunked?, why)``.

    ``chunks`` ``"on"``/``"off"`` force it; ``"auto"`` goes chunked when the in-memory
    estimate exceeds ``budget`` (default half the available memory).
    """
    if chunks not in ("auto", "on", "off"):
        raise ValueError(f"chunks must be auto, on or off, got {chunks!r}")
    need = in_memory_bytes(proj_shape, n_replicas, n_versions, operators)
    cap = int(budget) if budget is not None else available_memory() // 2
    est = f"in-memory estimate {need / 2**20:.0f} MB, budget {cap / 2**20:.0f} MB"
    if chunks == "on":
        return True, f"chunked (forced); {est}"
    if chunks == "off":
        return False, f"in memory (forced); {est}"
    return (need > cap), ("chunked" if need > cap else "in memory") + f" (auto: {est})"


def default_slab(n_det: int, n_angles: int, budget: int | None = None) -> int:
    """Rows per slab of the chunked path.

    About a quarter of the memory budget for one slab of volume (six float32 copies:
    the slab, its halo and the filter temporaries) and of projections (at least 4 rows).
    """
    cap = int(budget) if budget is not None else available_memory() // 2
    per_row = 4 * n_det * n_det * 6 + 4 * n_angles * n_det * 2
    return max(4, cap // 4 // per_row)


class _Normalised:
    """``(ADU − offset) / gain`` of a projection store, computed on read (rows sliced)."""

    def __init__(self, proj: Any, offset: np.ndarray, gain: np.ndarray) -> None:
        self.proj, self.offset, self.gain = proj, offset, gain
        self.shape = tuple(proj.shape)

    def __getitem__(self, idx: tuple) -> np.ndarray:
        rows = idx[1:]
        return (np.asarray(self.proj[idx]).astype(np.float32) - self.offset[rows]) / self.gain[rows]


def _split_merge(ref: Any, other: Any, slab: int, min_fraction: float = 0.5) -> tuple[int, int]:
    """`split_merge_counts` of two label volumes read slab by slab."""
    pairs, areas = [], [np.zeros(1, np.int64), np.zeros(1, np.int64)]
    for z0 in range(0, ref.shape[0], slab):
        r = np.asarray(ref[z0 : z0 + slab]).astype(np.int64)
        o = np.asarray(other[z0 : z0 + slab]).astype(np.int64)
        for k, lab in enumerate((r, o)):
            b = np.bincount(lab.ravel())
            if b.size > areas[k].size:
                b[: areas[k].size] += areas[k]
                areas[k] = b
            else:
                areas[k][: b.size] += b
        both = (r > 0) & (o > 0)
        if both.any():
            p, c = np.unique(np.stack([r[both], o[both]]), axis=1, return_counts=True)
            pairs.append(np.vstack([p, c]))
    if not pairs:
        return 0, 0
    allp = np.concatenate(pairs, axis=1)
    keys, inv = np.unique(allp[:2], axis=1, return_inverse=True)
    inter = np.bincount(inv.ravel(), weights=allp[2]).astype(np.int64)
    oth_in_ref = inter >= min_fraction * areas[1][keys[1]]
    ref_in_oth = inter >= min_fraction * areas[0][keys[0]]
    _, n_children = np.unique(keys[0][oth_in_ref], return_counts=True)
    _, n_parents = np.unique(keys[1][ref_in_oth], return_counts=True)
    return int(np.sum(n_children >= 2)), int(np.sum(n_parents >= 2))


class ChunkedVolumes:
    """Reconstructions, masks and labels as zarr arrays in a work directory.

    Parameters
    ----------
    workdir : path
        Created if needed; `close` removes it (unless ``keep``), as does garbage
        collection of the store or the interpreter's exit.
    slab : int
        Detector rows (= slices) per slab.
    """

    chunked = True

    def __init__(self, workdir: str | os.PathLike, slab: int, keep: bool = False) -> None:
        self.root = Path(workdir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.slab = int(slab)
        self.keep = keep
        # the directory goes when the store is garbage-collected or at exit, if not closed
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        if keep:
            self._cleanup.detach()
        self._n = 0
        self._paths: dict[int, str] = {}

    # ------------------------------------------------------------------ stores
    def _path(self, kind: str, key: str) -> str:
        self._n += 1
        safe = "".join(c if c.isalnum() else "_" for c in key)
        return str(self.root / f"{kind}_{self._n:03d}_{safe}.zarr")

    def array(self, key: str, shape: tuple, dtype: Any, chunks: tuple | None = None) -> Any:
        """Make a new zarr array in the work directory.

        Chunks default to one slab along axis 0.
        """
        import zarr

        path = self._path("a", key)
        # floats uncompressed (they hardly compress; 3-4× faster to write), masks and
        # labels with zarr's default compressor (mostly zeros)
        arr = zarr.create_array(
            store=path, shape=shape, dtype=dtype,
            chunks=chunks or (min(self.slab, shape[0]),) + tuple(shape[1:]),
            compressors=None if np.dtype(dtype).kind == "f" else "auto", overwrite=True,
        )  # fmt: skip
        self._paths[id(arr)] = path
        return arr

    def projections(self, key: str, shape: tuple, dtype: Any) -> Any:
        """A projection stack (A, Z, N) on disk, chunks of one frame × one slab of rows."""
        return self.array(key, shape, dtype, chunks=(1, min(self.slab, shape[1]), shape[2]))

    def replica_stacks(self, n: int, shape: tuple, dtype: Any) -> list:
        """``n`` projection stacks for the replicas."""
        return [self.projections(f"replica{k}", shape, dtype) for k in range(n)]

    def slabs(self, n: int) -> Iterator[tuple[int, int]]:
        """``(z0, z1)`` of every slab of ``n`` slices."""
        for z0 in range(0, n, self.slab):
            yield z0, min(n, z0 + self.slab)

    def close(self) -> None:
        """Remove the work directory (unless ``keep``)."""
        if not self.keep:
            self._cleanup()

    # ------------------------------------------------------------------ steps
    def reconstruct(self, proj: Any, offset: np.ndarray, gain: np.ndarray, key: str,
                    fbp: Callable, **kw: Any) -> Any:  # fmt: skip
        """FBP of ``proj`` (ADU) slab by slab into a zarr array (Z, N, N) float32."""
        a, z, n = proj.shape
        out = self.array(f"vol_{key}", (z, n, n), "float32")
        fbp(_Normalised(proj, offset, gain), out=out, chunk_rows=self.slab, **kw)
        return out

    def filtered(self, vol: Any, fn: Callable[[np.ndarray], np.ndarray], radius: int,
                 key: str, dtype: Any = None) -> Any:  # fmt: skip
        """``fn`` (a filter of support ``radius`` along z) of ``vol``, slab by slab."""
        out = None
        for z0, z1 in self.slabs(vol.shape[0]):
            a, b = max(0, z0 - radius), min(vol.shape[0], z1 + radius)
            res = fn(np.asarray(vol[a:b]))[z0 - a : z1 - a]
            if out is None:
                out = self.array(key, tuple(vol.shape), dtype or res.dtype)
            out[z0:z1] = res
        return out

    def values(self, arr: Any, where: Callable[[np.ndarray, int, int], np.ndarray] | None = None):
        """A callable returning the slabs' values (of ``arr[where]``) as 1-D arrays."""

        def gen() -> Iterator[np.ndarray]:
            for z0, z1 in self.slabs(arr.shape[0]):
                v = np.asarray(arr[z0:z1])
                yield v[where(v, z0, z1)] if where is not None else v.ravel()

        return gen

    def organ_mask(self, vol: Any) -> tuple[Any, int]:
        """`plaques3d.organ_mask` of a zarr volume, slab by slab (same mask); its voxels."""
        q = chunked_quantile(self.values(vol), 0.95)
        g = self.filtered(vol, lambda v: ndi.gaussian_filter(np.minimum(v, q), 2.0),
                          _radius(2.0), "organ_g")  # fmt: skip
        t = chunked_otsu(self.values(g))
        med = chunked_median(self.values(g, lambda v, a, b: v > t))
        level = 0.5 * float(med) if med is not None else None
        m = self.array("organ_m", tuple(vol.shape), bool)
        for z0, z1 in self.slabs(vol.shape[0]):
            gz = np.asarray(g[z0:z1])
            m[z0:z1] = gz > level if level is not None else gz > t
        return self._largest(m)

    def _largest(self, m: Any) -> tuple[Any, int]:
        import dask.array as da
        from rawsigma.analysis.outofcore import label_chunked

        work = Path(self._path("lab", "organ").replace(".zarr", ""))
        work.mkdir()
        res = label_chunked(da.from_zarr(m), work)
        if res.count <= 1:
            return m, int(sum(int(np.count_nonzero(m[a:b])) for a, b in self.slabs(m.shape[0])))
        sizes = np.zeros(res.count + 1, np.int64)
        lab = res.labels
        for z0, z1 in self.slabs(m.shape[0]):
            b = np.bincount(np.asarray(lab[z0:z1]).ravel(), minlength=res.count + 1)
            sizes += b
        keep = 1 + int(np.argmax(sizes[1:]))
        organ = self.array("organ", tuple(m.shape), bool)
        for z0, z1 in self.slabs(m.shape[0]):
            organ[z0:z1] = np.asarray(lab[z0:z1]) == keep
        return organ, int(sizes[keep])

    def fit_rule(self, vol: Any, organ: Any, n_organ: int, **rule_kw: Any) -> Any:
        """`fit_plaque_rule` on a zarr volume: the same threshold; the mask left as a store."""
        from rawsigma.analysis.segmentation.plaques3d import PlaqueRule, _response

        base = PlaqueRule(0.0, **rule_kw)
        r = self.filtered(vol, lambda v: _response(v, base.sigma, base.background),
                          _radius(base.background), "response")  # fmt: skip
        where = (lambda v, a, b: np.asarray(organ[a:b])) if n_organ else None
        t = base.level * float(chunked_quantile(self.values(r, where), base.quantile))
        return PlaqueRule(t, base.sigma, base.background, base.min_size, base.level, base.quantile)

    def foreground_rule(self, vol: Any, rule: Any, organ: Any, key: str) -> Any:
        """The rule's foreground (response > threshold, inside the organ) as a zarr mask."""
        from rawsigma.analysis.segmentation.plaques3d import _response

        def fg(v: np.ndarray) -> np.ndarray:
            return _response(v, rule.sigma, rule.background) > rule.threshold

        mask = self.filtered(vol, fg, _radius(rule.background), f"mask_{key}", bool)
        for z0, z1 in self.slabs(vol.shape[0]):
            mask[z0:z1] = np.asarray(mask[z0:z1]) & np.asarray(organ[z0:z1])
        return mask

    def foreground_forest(self, vol: Any, clf: Any, organ: Any, key: str) -> Any:
        """The forest's foreground (probability > 0.5, inside the organ) as a zarr mask."""
        import dask.array as da
        from rawsigma.analysis.outofcore import foreground_dask

        fg = foreground_dask(clf, da.from_zarr(vol)) & da.from_zarr(organ)
        mask = self.array(f"mask_{key}", tuple(vol.shape), bool)
        da.store(fg.rechunk(da.from_zarr(mask).chunks), mask)
        return mask

    def label_measure(self, mask: Any, min_size: int, key: str) -> tuple[Any, dict]:
        """Label a zarr mask across slabs and measure the objects.

        26-connected labels merged across slabs (`label_chunked`), objects smaller than
        ``min_size`` dropped; the per-object table (`measure3d_chunked`).
        """
        import dask.array as da
        from rawsigma.analysis.outofcore import label_chunked, measure3d_chunked
        from rawsigma.analysis.outofcore.chunklabel import ChunkedLabels

        work = Path(self._path("lab", key).replace(".zarr", ""))
        work.mkdir()
        res = label_chunked(da.from_zarr(mask), work, min_size=min_size)
        labels = self.array(f"labels_{key}", tuple(mask.shape), "int32")
        da.store(res.labels.astype(np.int32), labels)
        shutil.rmtree(work, ignore_errors=True)
        final = ChunkedLabels(da.from_zarr(labels), res.count, res.first, self._paths[id(labels)])
        table = measure3d_chunked(final)
        table.pop("bbox", None)
        return labels, table

    def split_merge(self, ref: Any, other: Any) -> tuple[int, int]:
        """Split and merged objects of two label stores (as `split_merge_counts`)."""
        return _split_merge(ref, other, self.slab)

    def voxel_eps(self, raw: Any, sigma: Any, version: Any, key: str) -> Any:
        """Per-voxel ε of a version's reconstruction (`voxel_eps`) as a zarr array."""
        return voxel_eps(self, raw, sigma, version, key)

    def remove(self, arr: Any) -> None:
        """Delete a store that is no longer needed (a replica's mask, …)."""
        path = self._paths.pop(id(arr), None)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def voxel_sigma(vs: Any, replicas: list) -> Any:
    """Per-voxel standard deviation (ddof 1) of the replica reconstructions.

    float32, slab by slab (``vs``: `ChunkedVolumes` or `MemoryVolumes`).
    """
    ref = replicas[0]
    out = vs.array("sigma", tuple(ref.shape), "float32")
    for z0, z1 in vs.slabs(ref.shape[0]):
        st = np.stack([np.asarray(r[z0:z1]) for r in replicas])
        out[z0:z1] = np.std(st, axis=0, ddof=1, dtype=np.float64)
    return out


def voxel_eps(vs: Any, raw: Any, sigma: Any, version: Any, key: str = "") -> Any:
    """Per-voxel ε of a reconstruction: (raw − version) / σ.

    σ from `voxel_sigma`; NaN where σ = 0; float16 with |ε| clipped at 65504 (the maps.h5
    convention).
    """
    out = vs.array(f"eps_{key}", tuple(raw.shape), "float16")
    for z0, z1 in vs.slabs(raw.shape[0]):
        sd = np.asarray(sigma[z0:z1], np.float64)
        d = np.asarray(raw[z0:z1], np.float64) - np.asarray(version[z0:z1], np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(sd > 0, d / sd, np.nan)
        out[z0:z1] = np.clip(e, -65504, 65504).astype(np.float16)
    return out
