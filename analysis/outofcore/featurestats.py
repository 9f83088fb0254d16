"""Feature ε of processed volumes, chunk by chunk: :func:`feature_epsilon_chunked`.

The in-memory volume path (``scoring.volume_steps``) computes, per voxel and per
scoring-feature channel (Gaussian smoothing, Laplacian of Gaussian, gradient
magnitude, difference of Gaussians at each scale of ``plan.score_sigmas``), the raw
volume's feature, the replicas' feature σ (Welford, float64, ``ddof=1``) and each
codec's ε = (raw − codec) / σ, reduced to mean ε, mean |ε|, RMS ε per channel, plus
the per-voxel ε map of the channel with the largest mean |ε|. This module computes
the same numbers without holding any whole-volume feature stack:

1. *stats* (one task per chunk, run by :func:`~rawsigma.analysis.outofcore.taskrun.run_tasks`
   locally or on a ``dask.distributed`` cluster): for each scale in turn (its four
   channels do not depend on the other scales), the raw chunk's features, then the
   replicas' features folded one replica at a time into a running mean and M2
   (never two replicas of a chunk at once), σ, then each codec's features and the
   sums n, Σε, Σ|ε|, Σε² per channel over the voxels with σ > 0. Every read takes
   the chunk plus that scale's filter support (``features._halo``: the truncated
   Gaussian plus the finite-difference taps, per axis in voxels of that axis, i.e.
   the physical spacing respected), so the chunk's features equal the whole
   volume's, bit for bit (the feature bank's block contract);
2. the driver adds the chunks' sums: mean ε = Σε/n, mean |ε| = Σ|ε|/n,
   RMS ε = √(Σε²/n) — the in-memory numbers up to float rounding (float64 sums of
   the same float32 ε instead of numpy's float32 mean);
3. *maps* (one task per chunk): for each codec the ε map of its worst channel (the
   first of the largest mean |ε|, as ``standard_score.worst_feature_map``), its
   scale's features recomputed (raw, replicas' σ, codec), written into that codec's
   zarr array ``maps/NN.zarr`` (float32, NaN where σ = 0; zarr chunks = the
   processing chunks, so concurrent tasks never share a zarr chunk). Recomputing
   one scale costs about 1/len(sigmas) of step 1 per distinct worst scale, and no
   disk beyond the maps.

A task's memory is the chunk with its halo for one scale: the source block in
float32, four float32 feature channels, the float64 mean/M2 and temporaries
(~100 bytes per voxel of the padded chunk), whatever the number of replicas.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ChunkedFeatureEpsilon", "feature_epsilon_chunked"]

STATS_FILE = "stats.npy"
#: Columns of a chunk's per-channel sums: voxels with σ > 0, Σε, Σ|ε|, Σε².
_N, _SUM, _ABS, _SQ = range(4)


@dataclass
class ChunkedFeatureEpsilon:
    """What :func:`feature_epsilon_chunked` computed.

    Attributes
    ----------
    names : list of str
        Scoring-feature channels (``feature_names(3, "ilastik", sigmas, SCORING_FEATURES)``).
    scores : dict
        Codec key → ``{name: {"mean_epsilon", "mean_abs_epsilon", "rms_epsilon",
        "n_pixels"}}``, as ``standard_score.feature_epsilon``.
    worst : dict
        Codec key → ``{name: ε map}`` of its worst channel (a zarr array read
        lazily, float32, NaN where σ = 0), as ``standard_score.worst_feature_map``;
        empty for a codec without a finite score or with ``maps=False``.
    n_chunks : int
        Chunk tasks of each pass.
    """

    names: list[str]
    scores: dict[str, dict[str, dict]]
    worst: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_chunks: int = 0


@dataclass(frozen=True)
class _Job:
    """What every chunk task reads (paths travel to the workers, arrays pickle)."""

    raw: Any
    replicas: Any  # a stacked (n, Z, Y, X) source, or a sequence of sources
    codecs: tuple[Any, ...]
    sigmas: tuple[float, ...]
    spacing: tuple[float, ...]  # relative: finest voxel = 1


class _Plane:
    """Item ``i`` of a stacked source, sliced lazily (a zarr ``a[i]`` reads it whole)."""

    def __init__(self, stack: Any, i: int) -> None:
        self.stack, self.i = stack, i
        self.shape = tuple(stack.shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.stack[(self.i, *key)])


def _open(src: Any) -> Any:
    """A path (``.npy`` memory-mapped, else a zarr array) opened read-only; else ``src``."""
    if isinstance(src, str | Path):
        if str(src).endswith(".npy"):
            return np.load(src, mmap_mode="r")
        import zarr

        return zarr.open_array(str(src), mode="r")
    return src


def _replicas(src: Any) -> list[Any]:
    if isinstance(src, Sequence) and not isinstance(src, str):
        return [_open(s) for s in src]
    stack = _open(src)
    return [_Plane(stack, i) for i in range(stack.shape[0])]


def _scale(sigma: float, spacing: tuple[float, ...]) -> tuple[Any, dict[str, int]]:
    """The feature config of one scoring scale and its channels' positions."""
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, FeatureConfig, _order

    cfg = FeatureConfig("ilastik", (sigma,), SCORING_FEATURES, spacing=spacing).resolved()
    return cfg, {n: i for i, n in enumerate(_order(cfg, 3))}


def _features(src: Any, core: tuple[slice, ...], cfg: Any, sp: tuple, index: dict) -> np.ndarray:
    """Channel-first (F, *core) float32 features of ``src`` in ``core`` (read with halo)."""
    from rawsigma.analysis.segmentation.features import _compute_block

    return _compute_block(src, core, cfg, sp, index)


def _sigma(reps: list[Any], core: tuple[slice, ...], cfg: Any, sp: tuple, index: dict) -> Any:
    """The replicas' feature σ in ``core``: `FeatureStats`' float64 Welford, one at a time."""
    mean = m2 = np.zeros(0)
    for n, rep in enumerate(reps, 1):
        f = _features(rep, core, cfg, sp, index).astype(np.float64)
        if n == 1:
            mean, m2 = np.zeros_like(f), np.zeros_like(f)
        d = f - mean
        mean += d / n
        f -= mean
        d *= f
        m2 += d
    return np.sqrt(m2 / (len(reps) - 1)).astype(np.float32)


def _eps(raw: np.ndarray, sig: np.ndarray, other: np.ndarray) -> np.ndarray:
    """ε of one channel at the voxels with σ > 0 (`feature_epsilon`'s float32 operations)."""
    ok = sig > 0
    return (raw[ok] - other[ok]) / sig[ok]


def _stats_task(tmp: Path, job: _Job, core: tuple[slice, ...]) -> None:
    """Pass 1 for one chunk: per codec and channel n, Σε, Σ|ε|, Σε² → ``stats.npy``."""
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_names

    names = feature_names(3, "ilastik", job.sigmas, SCORING_FEATURES)
    out = np.zeros((len(job.codecs), len(names), 4))
    raw, reps, codecs = _open(job.raw), _replicas(job.replicas), [_open(c) for c in job.codecs]
    for s in job.sigmas:
        cfg, index = _scale(s, job.spacing)
        fr = _features(raw, core, cfg, job.spacing, index)
        sig = _sigma(reps, core, cfg, job.spacing, index)
        for k, codec in enumerate(codecs):
            fc = _features(codec, core, cfg, job.spacing, index)
            for name, j in index.items():
                e = _eps(fr[j], sig[j], fc[j]).astype(np.float64)
                out[k, names.index(name)] = (e.size, e.sum(), np.abs(e).sum(), (e * e).sum())
    np.save(tmp / STATS_FILE, out)


def _map_task(tmp: Path, job: _Job, core: tuple[slice, ...], wanted: dict, stores: dict) -> None:
    """Pass 2 for one chunk: each codec's worst-channel ε map into its zarr array."""
    import zarr

    raw, reps = _open(job.raw), _replicas(job.replicas)
    by_scale: dict[float, list[int]] = {}
    for k, (sigma, _name) in wanted.items():
        by_scale.setdefault(sigma, []).append(k)
    for s, keys in sorted(by_scale.items()):
        cfg, index = _scale(s, job.spacing)
        fr = _features(raw, core, cfg, job.spacing, index)
        sig = _sigma(reps, core, cfg, job.spacing, index)
        for k in keys:
            j = index[wanted[k][1]]
            fc = _features(_open(job.codecs[k]), core, cfg, job.spacing, index)
            with np.errstate(divide="ignore", invalid="ignore"):
                e = np.where(sig[j] > 0, (fr[j] - fc[j]) / sig[j], np.nan)
            zarr.open_array(stores[k], mode="r+")[core] = e.astype(np.float32)
    (tmp / "done").write_text("")


def _reduce(stats: np.ndarray, names: list[str]) -> dict[str, dict]:
    """`feature_epsilon`'s dict of one codec from its summed (channels, 4) sums."""
    out = {}
    for name, (n, s, a, q) in zip(names, stats, strict=True):
        nan = math.nan
        out[name] = {
            "mean_epsilon": float(s / n) if n else nan,
            "mean_abs_epsilon": float(a / n) if n else nan,
            "rms_epsilon": float(math.sqrt(q / n)) if n else nan,
            "n_pixels": int(n),
        }
    return out


def _worst(scores: dict[str, dict]) -> str | None:
    """The channel of the largest finite mean |ε| (the first one: `worst_feature_map`)."""
    finite = {n: v["mean_abs_epsilon"] for n, v in scores.items()}
    finite = {n: v for n, v in finite.items() if math.isfinite(v)}
    return max(finite, key=finite.__getitem__) if finite else None


def _grid(shape: tuple[int, ...], chunks: Sequence[int]) -> list[tuple[str, tuple[slice, ...]]]:
    """(task suffix, core slices) of the regular chunk grid, in raster order."""
    from rawsigma.analysis.segmentation.features import _block_starts

    size = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True))
    cores = _block_starts(shape, size)
    return [("_".join(f"{c.start // b}" for c, b in zip(core, size, strict=True)), core)
            for core in cores]  # fmt: skip


def _run(tasks: dict, out: Path, opts: dict, stage: str) -> None:
    from rawsigma.analysis.outofcore.taskrun import run_tasks
    from rawsigma.errors import RawsigmaError

    report = opts["progress"]
    res = run_tasks(tasks, out, client=opts["client"], workers=opts["workers"],
                    retries=opts["retries"], resume=opts["resume"],
                    progress=lambda _n, d, t: report(stage, d, t))  # fmt: skip
    if res.failed:
        why = "; ".join(f"{n}: {r}" for n, r in res.failed.items())
        raise RawsigmaError(f"feature ε: {len(res.failed)} chunk tasks failed ({why}); "
                            f"the others are kept in {out}")  # fmt: skip


def _stores(work: Path, keys: list[int], wanted: dict, shape: tuple, size: tuple) -> dict:
    """Create (or keep, when made for the same channel) each codec's map zarr array."""
    import zarr

    stores = {}
    for k in keys:
        path = work / "maps" / f"{k:02d}.zarr"
        meta = work / "maps" / f"{k:02d}.json"
        tag = json.dumps(list(wanted[k]))
        if not (path.exists() and meta.exists() and meta.read_text() == tag):
            shutil.rmtree(work / "map_tasks", ignore_errors=True)  # their writes are gone
            shutil.rmtree(path, ignore_errors=True)
            zarr.open_array(str(path), mode="w", shape=shape, chunks=size, dtype="float32",
                            fill_value=np.nan)  # fmt: skip
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(tag)
        stores[k] = str(path)
    return stores


def feature_epsilon_chunked(
    raw: Any,
    replicas: Any,
    codecs: Mapping[str, Any],
    workdir: str | Path,
    *,
    sigmas: Sequence[float],
    spacing: tuple[float, float, float],
    chunks: Sequence[int],
    maps: bool = True,
    client: Any = None,
    workers: int = 1,
    retries: int = 1,
    resume: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> ChunkedFeatureEpsilon:
    """Feature ε of every codec's volume against the raw one, chunk by chunk.

    Parameters
    ----------
    raw : ndarray, zarr array or path (``.npy``, zarr), (Z, Y, X)
        The raw volume.
    replicas : path or array of shape (n, Z, Y, X), or a sequence of n volumes
        The raw-equivalent replicas (n ≥ 2); read one chunk of one replica at a time.
    codecs : mapping of str to volume (as ``raw``)
        Codec key → its decoded volume.
    workdir : path
        Task results (``stats_tasks/``, ``map_tasks/``) and the maps (``maps/NN.zarr``,
        NN the codec's position in ``codecs``); a re-run with ``resume`` reuses them.
    sigmas : sequence of float
        Scoring feature scales (finest-voxel units, as ``plan.score_sigmas``).
    spacing : (dz, dy, dx)
        Physical voxel size; the filters use it relative to the finest voxel, as
        the in-memory path.
    chunks : (cz, cy, cx)
        Processing chunk shape (clipped to the volume).
    maps : bool
        Also write each codec's worst-channel ε map (pass 2).
    client, workers, retries, resume :
        As :func:`~rawsigma.analysis.outofcore.taskrun.run_tasks`.
    progress : callable(stage, done, total), optional
        ``("feature ε", d, t)`` then ``("feature ε maps", d, t)`` as chunk tasks end.

    Returns
    -------
    ChunkedFeatureEpsilon

    Raises
    ------
    ValueError
        Fewer than two replicas, or a volume of another shape than ``raw``.
    rawsigma.errors.RawsigmaError
        Chunk tasks failed after their retries (named; the written ones are kept).
    """
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_names

    shape = tuple(int(n) for n in _open(raw).shape)
    reps = _replicas(replicas)
    if len(reps) < 2:
        raise ValueError("need at least two replicas for a feature sigma")
    for what, v in [("replica", r) for r in reps] + [(k, _open(c)) for k, c in codecs.items()]:
        if tuple(v.shape) != shape:
            raise ValueError(f"feature ε: {what} shape {tuple(v.shape)} != raw {shape}")
    m = min(spacing)
    sig = tuple(sorted({float(s) for s in sigmas}))
    job = _Job(raw, replicas, tuple(codecs.values()), sig, tuple(s / m for s in spacing))
    names = feature_names(3, "ilastik", sig, SCORING_FEATURES)
    keys = list(codecs)
    work = Path(workdir)
    opts = {"client": client, "workers": workers, "retries": retries, "resume": resume,
            "progress": progress or (lambda stage, done, total: None)}  # fmt: skip
    grid = _grid(shape, chunks)
    _run({f"c_{t}": (_stats_task, (job, core)) for t, core in grid}, work / "stats_tasks", opts,
         "feature ε")  # fmt: skip
    total = np.zeros((len(keys), len(names), 4))
    for t, _core in grid:
        total += np.load(work / "stats_tasks" / f"c_{t}" / STATS_FILE)
    scores = {key: _reduce(total[k], names) for k, key in enumerate(keys)}
    result = ChunkedFeatureEpsilon(names, scores, {key: {} for key in keys}, len(grid))
    worst = {k: _worst(scores[key]) for k, key in enumerate(keys)}
    scale_of = {n: s for s in sig for n in _scale(s, job.spacing)[1]}
    wanted = {k: (scale_of[n], n) for k, n in worst.items() if n is not None}
    if not maps or not wanted:
        return result
    size = tuple(min(int(c), n) for c, n in zip(chunks, shape, strict=True))
    stores = _stores(work, list(wanted), wanted, shape, size)
    _run({f"c_{t}": (_map_task, (job, core, wanted, stores)) for t, core in grid},
         work / "map_tasks", opts, "feature ε maps")  # fmt: skip
    import zarr

    for k, (_s, name) in wanted.items():
        result.worst[keys[k]] = {name: zarr.open_array(stores[k], mode="r")}
    return result
