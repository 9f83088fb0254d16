"""Versions of a raw volume made and compared chunk by chunk (the out-of-core path).

Every function reads the raw volume from its zarr store (``raw.zarr``, written by
`volume_source.stage_raw`) one z-slab at a time (`volume_source.slabs`) and writes
its output as a zarr store with the same chunks: a task's memory is bounded by a
slab, never by the volume.

- **Replicas** (:func:`write_replica`): every z plane is redrawn with the 2D profile
  (as in memory), from its own random stream: plane ``z`` of replica ``i`` uses
  ``default_rng(SeedSequence(entropy, spawn_key=(*synthesis_key, i, z)))`` and the
  held-out control replica ``default_rng(SeedSequence(entropy, spawn_key=
  (*control_key, z)))``, where ``(entropy, synthesis_key)`` / ``control_key`` are the
  run's synthesis and control seeds (``SeedSequence(plan.seed).spawn(3)``). So a
  replica is reproducible plane by plane, whatever the chunks or the order of
  work; its values differ from the in-memory path's (one stream over the planes).
- **Codecs** (:func:`write_codec`) encode one slab at a time. The 8-bit range of
  ``8bit``/``jpeg`` is the whole volume's (from the staging pass's exact value
  histogram: min/max, display percentiles, first plane), and ``jpeg@R`` searches
  its quality on the whole volume's payload size (every slab encoded per trial),
  so plane-wise and voxel-wise codecs (``8bit``, ``jpeg``, ``noise``) decode to the
  same volume, with the same payload size, as encoding the whole volume. Codecs
  coding a whole volume as one body (``zstd``, ...) report the ratio of their
  per-slab payloads (noted).
- :func:`pixel_eps_stats`: Δ/σ per voxel reduced to its mean, RMS and the RMS
  projections along z, y and x (the report's figure), slab by slab;
- :func:`overlap_counts` / :func:`split_merge`: split and merged objects from the
  label overlaps accumulated over chunks (``matching.split_merge_counts``);
- :class:`ZarrVolume`: a volume on disk with the few array operations the report
  needs (centre slices, maximum projections, block iteration).
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.scoring.volume_source import _create, slabs, tiles

if TYPE_CHECKING:
    from pathlib import Path

#: Slabs of a task hold whole planes (the profile's shape) and are this many times
#: smaller than `volume_source.SLAB_BYTES` of uint16: their float64 temporaries (8-bit
#: scaling, Δ/σ) are ~10 bytes per voxel. Not aligned to the chunk depth (a task's
#: own store is written by one writer); at least 2 planes, which tells a plane-wise
#: payload (one body per plane) from a single-body one.
TASK_SLAB_FACTOR = 4

__all__ = ["ZarrVolume", "pixel_eps_stats", "split_merge", "write_codec", "write_replica"]


def _open(path: str | Path) -> Any:
    import zarr

    return zarr.open_array(str(path), mode="r")


def plane_rng(seed: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """The random stream of one plane (see module notes)."""
    ss = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))
    return np.random.default_rng(ss)


def write_replica(
    raw: str, dest: Path, profile: Any, seed: Any, index: int | None, centre: str
) -> None:
    """Replica ``index`` (None: the held-out control replica) of ``raw`` into ``dest``."""
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    src = _open(raw)
    out = _create(dest, src.shape, src.chunks, np.uint16)
    for z in slabs(src.shape, 2, 2 * TASK_SLAB_FACTOR):
        a = np.asarray(src[z])
        rep = np.empty_like(a)
        for k in range(a.shape[0]):
            key = (z.start + k,) if index is None else (index, z.start + k)
            rep[k] = synthesize(a[k], profile, 1, plane_rng(seed, *key), centre)[0]  # type: ignore[arg-type]
        out[z] = rep


# ----------------------------------------------------------------------------- codecs
def eight_bit_range(codec: Any, stats: Any) -> tuple[int, int] | None:
    """The whole volume's 8-bit range for ``codec`` (None: not an 8-bit conversion)."""
    from rawsigma.analysis.codecs.builtin import _EightBit

    if not isinstance(codec, _EightBit):
        return None
    p = codec.params
    if p["range"] == "fixed":
        return int(p["min"]), int(p["max"])
    if p["range"] == "first":
        return stats.first_plane
    if p["range"] == "minmax":
        return stats.vmin, stats.vmax
    if p["range"] == "full":
        return 0, 65535
    half = p["saturated"] / 2
    lo, hi = stats.percentile(half), stats.percentile(100 - half)
    lo, hi = int(math.floor(lo)), int(math.ceil(hi))
    return lo, max(hi, lo)


def _payload_size(
    spec: str, codec: Any, shape: tuple[int, ...], heads: list[dict], total: int
) -> int:
    """Bytes of the whole-volume payload from the slabs' headers (see module notes)."""
    lens = [h["lens"] for h in heads]
    planes = [h["shape"][0] for h in heads]
    if all(len(n) == p for n, p in zip(lens, planes, strict=True)):
        all_lens = [v for n in lens for v in n]
    elif all(len(n) == 1 for n in lens):
        all_lens = [sum(n[0] for n in lens)]
    else:
        return total
    header = {"codec": spec, "name": codec.name, "shape": list(shape),
              "dtype": heads[0]["dtype"], "lens": all_lens, "meta": heads[-1]["meta"]}  # fmt: skip
    h = json.dumps(header, separators=(",", ":")).encode()
    return 4 + struct.calcsize("<I") + len(h) + sum(all_lens)


def _encode_slabs(spec: str, codec: Any, src: Any, out: Any | None) -> tuple[int, bool]:
    """Encode (and decode into ``out``) every slab; the whole-volume payload size."""
    from rawsigma.analysis.codecs.base import _unpack

    heads, total = [], 0
    for z in slabs(src.shape, 2, 2 * TASK_SLAB_FACTOR):
        data = codec.encode(np.asarray(src[z]))
        heads.append(_unpack(data)[0])
        total += len(data)
        if out is not None:
            out[z] = np.asarray(codec.decode(data))
    size = _payload_size(spec, codec, tuple(src.shape), heads, total)
    return size, size != total or len(heads) == 1


def write_codec(raw: str, dest: Path, spec: str, profile: Any, rng8: tuple | None) -> dict:
    """Encode and decode ``raw`` with ``spec`` slab by slab into ``dest``.

    ``rng8``: the whole volume's 8-bit range (`eight_bit_range`). Returns the codec
    record (ratio, payload bytes, description, whether the size is the whole
    volume's payload).
    """
    from rawsigma.analysis.codecs.base import search_knob
    from rawsigma.analysis.codecs.registry import parse_codecs

    codec = parse_codecs(spec, profile=profile)[0]
    getattr(codec, "prepare", lambda _p: None)(lambda *_a: None)
    description, spec0 = codec.description, codec.spec
    if rng8 is not None:
        codec.eight_bit_range = lambda _image: rng8  # type: ignore[attr-defined]
    src = _open(raw)
    nvox = int(np.prod(src.shape))
    if codec.name == "jpeg" and codec.params.get("ratio") is not None:
        target = nvox * 2 / codec.params["ratio"]
        codec.params["ratio"] = None

        def size(q: float) -> int:
            codec.params["q"] = int(q)
            return _encode_slabs(spec0, codec, src, None)[0]

        q, _ = search_knob(size, target, 1, 100, integer=True, increasing=True)
        codec.params["q"] = int(q)
    out = _create(dest, src.shape, src.chunks, np.uint16)
    n_bytes, exact = _encode_slabs(spec0, codec, src, out)
    return {"ratio": nvox * 2 / n_bytes, "n_bytes": int(n_bytes), "description": description,
            "size_of_whole_payload": bool(exact)}  # fmt: skip


# ----------------------------------------------------------------------------- Δ/σ
def pixel_eps_stats(raw: str, version: str, profile: Any) -> dict[str, Any]:
    """Δ/σ = (raw − version)/σ_raw per voxel, reduced slab by slab.

    Returns the count, sum and sum of squares of the finite values (``CodecResult``'s
    mean and RMS) and the RMS projections along z, y, x of ``nan_to_num(Δ/σ)``.
    """
    from rawsigma.analysis.scoring.per_image import raw_noise_sigma

    a_src, b_src = _open(raw), _open(version)
    nz, ny, nx = a_src.shape
    pz, py, px = np.zeros((ny, nx)), np.zeros((nz, nx)), np.zeros((nz, ny))
    n, s, s2 = 0, 0.0, 0.0
    for z in slabs(a_src.shape, 2, 2 * TASK_SLAB_FACTOR):
        a = np.asarray(a_src[z])
        eps = (a.astype(np.float32) - np.asarray(b_src[z]).astype(np.float32)) / raw_noise_sigma(
            a, profile
        )
        eps = eps.astype(np.float32)
        fin = eps[np.isfinite(eps)].astype(np.float64)
        n, s, s2 = n + fin.size, s + float(fin.sum()), s2 + float(np.square(fin).sum())
        e2 = np.square(np.nan_to_num(eps), dtype=np.float64)
        pz += e2.sum(0)
        py[z] = e2.sum(1)
        px[z] = e2.sum(2)
    rms = [np.sqrt(p / m) for p, m in ((pz, nz), (py, ny), (px, nx))]
    return {"n": n, "sum": s, "sumsq": s2, "rms_z": rms[0], "rms_y": rms[1], "rms_x": rms[2]}


class PixelEpsSummary:
    """Δ/σ of a version on the out-of-core path: its summary and RMS projections."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats

    def summary(self) -> dict[str, float]:
        """``mean`` and ``rms`` of the finite values (as ``CodecResult.to_dict``)."""
        n = int(self.stats["n"])
        return {
            "mean": self.stats["sum"] / n if n else math.nan,
            "rms": math.sqrt(self.stats["sumsq"] / n) if n else 0,
        }

    def views(self, kind: str) -> list[tuple[str, np.ndarray]]:
        """The report's RMS projections (``kind`` "rms")."""
        return [(f"RMS along {a}", self.stats[f"rms_{a}"]) for a in "zyx"]


# ----------------------------------------------------------------------------- labels
def split_merge(ref: str, other: str, min_fraction: float = 0.5) -> tuple[int, int]:
    """``split_merge_counts`` of two label stores, from overlaps accumulated per slab."""
    a_src, b_src = _open(ref), _open(other)
    keys: dict[int, int] = {}
    area_a = np.zeros(1, np.int64)
    area_b = np.zeros(1, np.int64)
    span = 1 << 32
    for t in tiles(a_src.shape, a_src.chunks, 8):
        a = np.asarray(a_src[t]).astype(np.int64)
        b = np.asarray(b_src[t]).astype(np.int64)
        ba, bb = np.bincount(a.ravel()), np.bincount(b.ravel())
        area_a = np.pad(area_a, (0, max(0, ba.size - area_a.size)))
        area_b = np.pad(area_b, (0, max(0, bb.size - area_b.size)))
        area_a[: ba.size] += ba
        area_b[: bb.size] += bb
        both = (a > 0) & (b > 0)
        k, c = np.unique(a[both] * span + b[both], return_counts=True)
        for kk, cc in zip(k.tolist(), c.tolist(), strict=True):
            keys[kk] = keys.get(kk, 0) + cc
    if not keys:
        return 0, 0
    kk = np.fromiter(keys.keys(), np.int64, len(keys))
    inter = np.fromiter(keys.values(), np.int64, len(keys))
    pairs = np.stack([kk // span, kk % span])
    oth_in_ref = inter >= min_fraction * area_b[pairs[1]]
    ref_in_oth = inter >= min_fraction * area_a[pairs[0]]
    _, n_children = np.unique(pairs[0][oth_in_ref], return_counts=True)
    _, n_parents = np.unique(pairs[1][ref_in_oth], return_counts=True)
    return int(np.sum(n_children >= 2)), int(np.sum(n_parents >= 2))


class ZarrVolume:
    """A (Z, Y, X) volume in a zarr store, for the report: slices, MIPs, blocks."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        arr = _open(self.path)
        self.shape = tuple(int(n) for n in arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.ndim = 3
        self._cache: dict[str, list[tuple[str, np.ndarray]]] = {}

    def blocks(self) -> Any:
        """((z, y, x) slices, ndarray) tile by tile (`volume_source.tiles`)."""
        arr = _open(self.path)
        for t in tiles(self.shape, arr.chunks, self.dtype.itemsize):
            yield t, np.asarray(arr[t])

    def views(self, kind: str) -> list[tuple[str, np.ndarray]]:
        """As ``report3d._views``: centre slices (``slice``) or MIPs (``mip``)."""
        if kind not in self._cache:
            arr = _open(self.path)
            z, y, x = (n // 2 for n in self.shape)
            if kind == "slice":
                v = [(f"XY (z={z})", np.asarray(arr[z])), (f"XZ (y={y})", np.asarray(arr[:, y])),
                     (f"YZ (x={x})", np.asarray(arr[:, :, x]))]  # fmt: skip
            else:
                mz = np.zeros(self.shape[1:], self.dtype)
                my = np.zeros((self.shape[0], self.shape[2]), self.dtype)
                mx = np.zeros(self.shape[:2], self.dtype)
                for (zs, ys, xs), b in self.blocks():
                    np.maximum(mz[ys, xs], b.max(0), out=mz[ys, xs])
                    np.maximum(my[zs, xs], b.max(1), out=my[zs, xs])
                    np.maximum(mx[zs, ys], b.max(2), out=mx[zs, ys])
                v = [("MIP along z", mz), ("MIP along y", my), ("MIP along x", mx)]
            self._cache[kind] = v
        return self._cache[kind]

    def stretch_range(self, step: int = 7) -> tuple[float, float]:
        """0.5 and 99.5 percentiles of every ``step``-th voxel along y and x."""
        if "stretch" not in self._cache:
            vals = np.concatenate([b[:, ::step, ::step].ravel() for _, b in self.blocks()])
            lo, hi = np.percentile(vals, [0.5, 99.5])
            self._cache["stretch"] = [("range", np.array([lo, hi]))]
        lo, hi = self._cache["stretch"][0][1]
        return float(lo), float(hi)

    def stretched(self) -> _Stretched:
        """The report's contrast stretch of the views (range: `stretch_range`)."""
        return _Stretched(self, *self.stretch_range())

    def split_merge(self, other: ZarrVolume) -> tuple[int, int]:
        """Split and merged objects of ``other`` against these labels (`split_merge`)."""
        return split_merge(self.path, other.path)


class _Stretched:
    """Views of a `ZarrVolume` stretched as ``figures._stretch`` (0.5–99.5 %)."""

    def __init__(self, vol: ZarrVolume, lo: float, hi: float) -> None:
        self.vol, self.lo, self.hi = vol, lo, hi

    def views(self, kind: str) -> list[tuple[str, np.ndarray]]:
        """The volume's views, each clipped to [0, 1] between the percentiles."""
        scale = max(self.hi - self.lo, 1e-6)
        return [
            (t, np.clip((v.astype(np.float32) - self.lo) / scale, 0, 1))
            for t, v in self.vol.views(kind)
        ]
