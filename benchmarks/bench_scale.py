"""Out of core and distributed: a volume 3x the worker memory limit, 2 workers vs 1.

One run (``python benchmarks/bench_scale.py [--quick]``):

1. writes a 16-bit phantom volume to zarr chunk by chunk (blobs on a warped
   lattice, objects crossing every chunk grid, Gaussian noise), ``--size`` bytes;
2. trains a small forest (ilastik features at scale 1: smoothing and gradient
   magnitude, 5 trees) on sparse annotations of a sub-volume;
3. runs `segment_measure_chunked` (chunked classification -> mask.zarr -> labels
   merged across chunks -> per-object table) on a ``LocalCluster`` of 1 worker
   with ``--limit`` memory, sampling every worker's resident memory every 0.2 s:
   the run must complete with the peak under the limit (dask's nanny kills a worker
   above 95 % of it);
4. the same on a smaller volume with 2 workers vs 1 (speedup; the machine has 2
   cores shared with others: see the load printed);
5. time per voxel of the chunked path (1 worker) vs the in-memory path
   (``clf.foreground_probability`` + ``ndi.label`` + ``measure3d``) on a volume
   that fits, and whether their labels and tables are equal.

Prints a markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SPACING = (2.0, 1.0, 1.0)
CHUNKS = (32, 128, 128)


def _field(z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.sin(z / 4.1) * np.sin(y / 8.3 + 0.3 * np.sin(z / 9.0)) * np.sin(x / 9.7)


def _phantom_block(shape: tuple[int, ...], origin: tuple[int, ...], seed: int) -> np.ndarray:
    z, y, x = (np.arange(o, o + n, dtype=np.float32) for o, n in zip(origin, shape, strict=True))
    f = _field(z[:, None, None], y[None, :, None], x[None, None, :])
    rng = np.random.default_rng([seed, *origin])
    noise = 20 * rng.standard_normal(shape, dtype=np.float32)
    return (200 + 400 * np.clip(f, 0, 1) + noise).astype(np.uint16)


def write_phantom(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """The phantom as a zarr array, one chunk in memory at a time."""
    import zarr

    z = zarr.open_array(str(path), mode="w", shape=shape, chunks=CHUNKS, dtype="uint16")
    for idx in np.ndindex(*[-(-n // c) for n, c in zip(shape, CHUNKS, strict=True)]):
        o = tuple(i * c for i, c in zip(idx, CHUNKS, strict=True))
        s = tuple(min(c, n - oo) for c, n, oo in zip(CHUNKS, shape, o, strict=True))
        z[tuple(slice(oo, oo + ss) for oo, ss in zip(o, s, strict=True))] = _phantom_block(
            s, o, seed
        )


def train(seed: int = 0):  # type: ignore[no-untyped-def]
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig

    shape = (32, 128, 128)
    vol = _phantom_block(shape, (0, 0, 0), seed + 1)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    truth = _field(zz, yy, xx) > 0.5
    lab = np.zeros(shape, np.uint8)
    lab[::3, ::7, ::7] = np.where(truth[::3, ::7, ::7], 2, 1)
    cfg = FeatureConfig(
        "ilastik",
        sigmas=(1.0,),
        features=("GaussianSmoothing", "GaussianGradientMagnitude"),
        spacing=SPACING,
    )
    clf = PixelClassifier("ilastik", features=cfg, n_estimators=5, n_jobs=1)
    return clf.fit(vol, lab)


class PeakMemory:
    """Max resident memory of every worker, polled in a thread."""

    def __init__(self, client, period: float = 0.2) -> None:  # type: ignore[no-untyped-def]
        self.client, self.period = client, period
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        def rss() -> int:
            import psutil

            return int(psutil.Process().memory_info().rss)

        while not self._stop.is_set():
            try:
                for w, m in self.client.run(rss).items():
                    self.peak[w] = max(self.peak.get(w, 0), m)
            except Exception:  # a worker restarting: sample again
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def threshold_measure(vol_path: Path, work: Path, level: int = 400):  # type: ignore[no-untyped-def]
    """The chunked path with a threshold instead of the forest (labels + table only)."""
    import dask.array as da
    from rawsigma.analysis.outofcore.chunklabel import (
        ChunkedLabels,
        label_chunked,
        measure3d_chunked,
    )

    work.mkdir(parents=True, exist_ok=True)
    da.to_zarr(da.from_zarr(str(vol_path)) > level, str(work / "mask.zarr"), overwrite=True)
    res = label_chunked(da.from_zarr(str(work / "mask.zarr")), work)
    da.to_zarr(res.labels, str(work / "labels.zarr"), overwrite=True)
    store = str(work / "labels.zarr")
    final = ChunkedLabels(da.from_zarr(store), res.count, res.first, store)
    return None, measure3d_chunked(final, SPACING)


def run_cluster(vol_path: Path, clf, workers: int, limit: str, work: Path):  # type: ignore[no-untyped-def]
    from rawsigma.analysis.outofcore.pipeline import segment_measure_chunked
    from rawsigma.analysis.outofcore.taskrun import connect

    shutil.rmtree(work, ignore_errors=True)
    with connect("local", workers=workers, memory_limit=limit) as client:
        with PeakMemory(client) as mem:
            t = time.perf_counter()
            if clf is None:
                _, table = threshold_measure(vol_path, work)
            else:
                _, table = segment_measure_chunked(vol_path, clf, work, spacing=SPACING)
            dt = time.perf_counter() - t
        restarts = 0  # a worker killed for memory would show as a failure above
    return dt, table, mem.peak, restarts


def in_memory(vol: np.ndarray, clf):  # type: ignore[no-untyped-def]
    from rawsigma.analysis.measurement.morphometry3d import measure3d
    from scipy import ndimage as ndi

    t = time.perf_counter()
    fg = clf.foreground_probability(vol) > 0.5
    lab, _ = ndi.label(fg, np.ones((3, 3, 3), bool))
    table = measure3d(lab, SPACING)
    return time.perf_counter() - t, lab, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-mb", type=int, default=400, help="memory limit per worker, MB")
    ap.add_argument("--factor", type=float, default=3.0, help="volume bytes / limit")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--big-workers", type=int, default=2, help="workers of the big run")
    ap.add_argument("--skip-big", action="store_true", help="only the 1 vs 2 workers part")
    ap.add_argument("--big-only", action="store_true", help="only the big volume")
    ap.add_argument(
        "--big-threshold",
        action="store_true",
        help="big volume: threshold instead of the forest (labels, merge, measures only)",
    )
    ap.add_argument("--mid", default="64,512,512", help="shape of the volume that fits")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    import dask.array as da
    import zarr

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    shutil.rmtree(root / "big.zarr", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    limit = f"{args.limit_mb}MB"
    yx = 2048 if not args.quick else 512
    nz = int(args.factor * args.limit_mb * 1e6 / (2 * yx * yx)) if not args.quick else 64
    big = (nz, yx, yx)
    load0 = os.getloadavg()
    clf = train()
    nbytes = int(np.prod(big)) * 2
    dt_big, table_big, peak_big, nbw = float("nan"), {"label": []}, {}, args.big_workers
    if not args.skip_big:
        t = time.perf_counter()
        write_phantom(root / "big.zarr", big)
        t_write = time.perf_counter() - t
        print(
            f"phantom {big} uint16 = {nbytes / 1e9:.2f} GB written in {t_write:.0f} s", flush=True
        )

        dt_big, table_big, peak_big, _ = run_cluster(
            root / "big.zarr", clf, nbw, limit, root / "w1"
        )
        print(
            f"big: {dt_big:.0f} s, {len(table_big['label'])} objects, peak {peak_big}", flush=True
        )
    if args.big_only:
        return

    mid = tuple(int(v) for v in args.mid.split(",")) if not args.quick else (32, 256, 256)
    # the chunked path with 1 and 2 workers, then the in-memory path on the same volume
    write_phantom(root / "mid.zarr", mid, seed=1)
    times = {}
    for w in (1, 2):
        times[w], tab, _, _ = run_cluster(root / "mid.zarr", clf, w, limit, root / f"m{w}")
        print(f"mid, {w} worker(s): {times[w]:.1f} s", flush=True)
    vol = np.asarray(zarr.open_array(str(root / "mid.zarr"), mode="r")[:])
    t_mem, lab_mem, tab_mem = in_memory(vol, clf)
    lab_chk = np.asarray(da.from_zarr(str(root / "m1" / "labels.zarr")).compute())
    same = np.array_equal(lab_chk, lab_mem) and all(
        np.array_equal(tab[k], tab_mem[k], equal_nan=True) for k in tab_mem
    )
    load1 = os.getloadavg()
    nv = int(np.prod(mid))
    print()
    print("## Issue 14: out of core and distributed")
    print()
    print(
        f"`python benchmarks/bench_scale.py` (load before {load0[0]:.1f}, after {load1[0]:.1f}"
        f" on 2 shared cores; LocalCluster, 1 thread per worker, worker memory limit {limit})."
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    if not args.skip_big:
        pk = max(peak_big.values()) if peak_big else 0
        print(
            f"| volume > memory | {big} uint16 = {nbytes / 1e9:.2f} GB on disk (zarr), "
            f"{nbytes / (args.limit_mb * 1e6):.1f}x the worker limit |"
        )
        print(
            f"| completed, {nbw} worker(s) | {dt_big:.0f} s, {len(table_big['label'])} "
            f"objects, {dt_big / np.prod(big) * 1e9:.0f} ns/voxel (wall) |"
        )
        print(
            f"| peak memory of the busiest worker | {pk / 1e6:.0f} MB = "
            f"{pk / (args.limit_mb * 1e6):.0%} of the limit |"
        )
    print(
        f"| {mid} : 1 worker / 2 workers | {times[1]:.1f} s / {times[2]:.1f} s = speedup "
        f"{times[1] / times[2]:.2f}x |"
    )
    print(
        f"| time per voxel, chunked (1 worker) / in memory | {times[1] / nv * 1e9:.0f} / "
        f"{t_mem / nv * 1e9:.0f} ns = {times[1] / t_mem:.2f}x |"
    )
    print(f"| chunked labels and tables equal in-memory | {same} |")
    shutil.rmtree(root, ignore_errors=True) if args.workdir is None else None


if __name__ == "__main__":
    main()
