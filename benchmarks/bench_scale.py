"""Out of core and distributed: a volume 3x the worker memory limit, 2 workers vs 1.

One run (``python benchmarks/bench_scale.py``) gives the three figures of issue 14:

1. *big*: a 16-bit phantom volume of ``--factor`` x ``--limit-mb`` bytes (blobs on
   a warped lattice, objects crossing every chunk border, noise) is written to zarr
   chunk by chunk, then `segment_measure_chunked` (``chunks="auto"``: the chunk
   shape derived from the worker memory limit) runs on a ``LocalCluster`` of
   ``--big-workers`` single-threaded workers, each with that memory limit. Every
   worker's resident memory is sampled every 0.1 s (and its kernel high-water mark
   read at the end); restarts (new worker processes) are counted;
2. *speedup*: the same on a volume that fits (``--mid``) with 1 worker, then 2;
   wall and worker CPU time of each (the machine's 2 cores are shared: the load
   average is printed at start and end, and each worker's share of a core);
3. *per voxel*: the in-memory path (``clf.foreground_probability`` -> ``ndi.label``
   -> ``measure3d``, one thread) on the same volume, ns/voxel against the chunked
   1-worker run, and whether labels and every per-object parameter are equal.

Each cluster's workers are warmed up (imports, the forest's JIT) before the timed
part, which starts with the memory and CPU monitor.

The forest is small (ilastik smoothing + gradient magnitude at sigma 1, 5 trees):
the figures are about the chunked machinery, not the feature bank.
``--threshold`` replaces the forest by ``volume > 400`` (labels, merge and
measurements only). Prints a compact table and a markdown section.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SPACING = (2.0, 1.0, 1.0)
_POOL: dict[int, np.ndarray] = {}


def _noise_pool(seed: int, size: int) -> np.ndarray:
    """A pool of Gaussian noise (sigma 20) that chunks take windows of."""
    pool = _POOL.get(seed)
    if pool is None or pool.size < 2 * size:
        n = max(2 * size, 1 << 22)
        pool = 20 * np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
        _POOL[seed] = pool
    return pool


def _phantom_block(shape: tuple[int, ...], origin: tuple[int, ...], seed: int) -> np.ndarray:
    """One block of the phantom: separable sines (lattice of blobs, warped), noise."""
    z, y, x = (np.arange(o, o + n, dtype=np.float32) for o, n in zip(origin, shape, strict=True))
    fzy = np.sin(z / 4.1)[:, None] * np.sin(y[None, :] / 8.3 + 0.3 * np.sin(z / 9.0)[:, None])
    f = fzy[:, :, None] * np.sin(x / 9.7)[None, None, :]
    np.clip(f, 0, 1, out=f)
    f *= 400
    f += 200
    size = int(np.prod(shape))
    pool = _noise_pool(seed, size)
    rng = np.random.default_rng([seed, *origin])
    start = int(rng.integers(pool.size - size))
    f += pool[start : start + size].reshape(shape)
    return f.astype(np.uint16)


def write_phantom(
    path: Path, shape: tuple[int, int, int], chunks: tuple[int, ...], seed: int = 0
) -> None:
    """The phantom as a zarr array (storage chunks ``chunks``), block by block on 2 threads."""
    import zarr

    z = zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype="uint16", compressors=None, overwrite=True
    )
    # blocks of whole storage chunks, ~ 32 MB each
    per = max(1, int(16e6 // int(np.prod(chunks[1:]))) // chunks[0]) * chunks[0]
    step = (min(per, shape[0]),) + tuple(chunks[1:])
    _noise_pool(seed, int(np.prod(step)))

    def one(idx: tuple[int, ...]) -> None:
        o = tuple(i * c for i, c in zip(idx, step, strict=True))
        s = tuple(min(c, n - oo) for c, n, oo in zip(step, shape, o, strict=True))
        z[tuple(slice(oo, oo + ss) for oo, ss in zip(o, s, strict=True))] = _phantom_block(
            s, o, seed
        )

    grid = [-(-n // c) for n, c in zip(shape, step, strict=True)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, np.ndindex(*grid)))


def train(seed: int = 0) -> Any:
    """A small forest on sparse annotations of a phantom sub-volume (truth known)."""
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig

    shape = (32, 128, 128)
    vol = _phantom_block(shape, (0, 0, 0), seed + 1)
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)
    fzy = np.sin(z / 4.1)[:, None] * np.sin(y[None, :] / 8.3 + 0.3 * np.sin(z / 9.0)[:, None])
    truth = fzy[:, :, None] * np.sin(x / 9.7)[None, None, :] > 0.5
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


def _hwm(pid: int) -> int:
    """The kernel's high-water mark of a process's resident memory (VmHWM), bytes."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Monitor:
    """Resident memory (sampled, and the kernel's high-water mark) and CPU time of
    every worker process; restarts = worker processes seen beyond the first ones."""

    def __init__(self, client: Any, period: float = 0.1) -> None:
        self.client, self.period = client, period
        self.n0 = len(client.scheduler_info(n_workers=-1)["workers"])
        self.pids: set[int] = set()
        self.peak: dict[int, int] = {}
        self.hwm: dict[int, int] = {}
        self.cpu0: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _refresh(self) -> None:
        try:
            self.pids |= set(self.client.run(os.getpid).values())
        except Exception:  # noqa: BLE001 (a worker restarting: ask again later)
            pass

    def _sample(self) -> None:
        import psutil

        for pid in list(self.pids):
            try:
                p = psutil.Process(pid)
                rss, t = p.memory_info().rss, sum(p.cpu_times()[:2])
            except psutil.Error:
                continue
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            self.hwm[pid] = max(self.hwm.get(pid, 0), _hwm(pid))
            self.cpu0.setdefault(pid, t)
            self.cpu[pid] = t

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            if k % 10 == 0:
                self._refresh()
            self._sample()
            k += 1
            self._stop.wait(self.period)

    def __enter__(self) -> Monitor:
        self._refresh()
        self._sample()
        self.c0 = time.process_time()
        self.t0 = time.perf_counter()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.client_cpu = time.process_time() - self.c0
        self._stop.set()
        self._t.join()
        self._sample()

    @property
    def restarts(self) -> int:
        return max(0, len(self.pids) - self.n0)

    @property
    def worker_cpu(self) -> float:
        return sum(self.cpu[p] - self.cpu0[p] for p in self.cpu)

    @property
    def max_peak(self) -> int:
        return max([*self.peak.values(), *self.hwm.values()], default=0)


def _warm(clf: Any) -> None:
    """Import what the tasks use and compile the forest's inference on a worker."""
    import skimage.measure  # noqa: F401
    import zarr  # noqa: F401

    if clf is not None:
        clf.foreground_probability(_phantom_block((8, 32, 32), (0, 0, 0), 0))


def run_cluster(
    vol: Path, clf: Any, workers: int, limit_mb: int, work: Path, threshold: bool
) -> tuple[Monitor, dict[str, np.ndarray]]:
    """`segment_measure_chunked` on a fresh LocalCluster, monitored."""
    from rawsigma.analysis.outofcore.pipeline import segment_measure_chunked
    from rawsigma.analysis.outofcore.taskrun import connect

    shutil.rmtree(work, ignore_errors=True)
    with connect("local", workers=workers, memory_limit=f"{limit_mb}MB") as local:
        client = local.client()  # started here; dask's default client from now on
        client.run(_warm, None if threshold else clf)  # imports and JIT, not timed
        with Monitor(client) as mon:
            _, table = segment_measure_chunked(
                vol,
                None if threshold else clf,
                work,
                spacing=SPACING,
                threshold=400 if threshold else 0.5,
                chunks="auto",
            )
    return mon, table


def in_memory(vol: np.ndarray, clf: Any, threshold: bool) -> tuple[float, float, Any, Any]:
    """The in-memory path, one thread: (wall s, CPU s, labels, table)."""
    from rawsigma.analysis.measurement.morphometry3d import measure3d
    from scipy import ndimage as ndi

    t, c = time.perf_counter(), time.process_time()
    fg = vol > 400 if threshold else clf.foreground_probability(vol) > 0.5
    lab, _ = ndi.label(fg, np.ones((3, 3, 3), bool))
    table = measure3d(lab, SPACING)
    return time.perf_counter() - t, time.process_time() - c, lab, table


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-mb", type=int, default=800, help="memory limit per worker, MB")
    ap.add_argument("--factor", type=float, default=3.0, help="big volume bytes / limit")
    ap.add_argument("--big-workers", type=int, default=2, help="workers of the big run")
    ap.add_argument("--yx", type=int, default=2048, help="Y = X of the big volume")
    ap.add_argument("--mid", default="48,512,512", help="shape of the volume that fits")
    ap.add_argument("--threshold", action="store_true", help="threshold, not the forest")
    ap.add_argument("--skip-big", action="store_true", help="only parts 2 and 3")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--workdir", default=None, help="kept when given")
    return ap.parse_args()


def _big_rows(a: argparse.Namespace, root: Path, clf: Any) -> list[tuple[str, str]]:
    """Part 1: the volume ``--factor`` x the limit, on ``--big-workers`` workers."""
    from rawsigma.analysis.outofcore.pipeline import auto_chunks, bytes_per_voxel, task_budget

    limit = a.limit_mb * 10**6
    yx = a.yx
    big = (int(a.factor * limit / (2 * yx * yx)) + 1, yx, yx)
    if a.quick:
        big = (64, 512, 512)
    ch = auto_chunks(big, task_budget(limit), bytes_per_voxel(None if a.threshold else clf))
    t = time.perf_counter()
    write_phantom(root / "big.zarr", big, tuple(max(1, -(-c // 2)) for c in ch))
    t_write = time.perf_counter() - t
    print(f"big phantom {big} written in {t_write:.0f} s, chunks {ch}", flush=True)
    mon, tab = run_cluster(
        root / "big.zarr", clf, a.big_workers, a.limit_mb, root / "wb", a.threshold
    )
    nb = int(np.prod(big))
    n_ch = int(np.prod([-(-n // c) for n, c in zip(big, ch, strict=True)]))
    per = ", ".join(
        f"{max(mon.peak.get(p, 0), mon.hwm.get(p, 0)) / 1e6:.0f}" for p in sorted(mon.pids)
    )
    return [
        ("big volume", f"{big} uint16 = {2 * nb / 1e9:.2f} GB = {2 * nb / limit:.2f}x the limit"),
        ("big phantom written", f"{t_write:.0f} s (zarr, uncompressed, 2 threads)"),
        ("big chunks (auto from the limit)", f"{ch}: {n_ch} chunks"),
        (
            f"big run, {a.big_workers} workers: wall / worker CPU / client CPU",
            f"{mon.wall:.0f} / {mon.worker_cpu:.0f} / {mon.client_cpu:.0f} s "
            f"({mon.wall / nb * 1e9:.0f} ns/voxel wall)",
        ),
        ("big objects", str(len(tab["label"]))),
        (
            "big peak RSS per worker (MB)",
            f"{per}: max {mon.max_peak / limit:.0%} of the limit "
            f"(sampled every 0.1 s and VmHWM); restarts {mon.restarts}",
        ),
    ]


def _mid_rows(a: argparse.Namespace, root: Path, clf: Any) -> list[tuple[str, str]]:
    """Parts 2 and 3: 1 vs 2 workers and the in-memory path on a volume that fits."""
    import zarr
    from rawsigma.analysis.outofcore.pipeline import auto_chunks, bytes_per_voxel, task_budget

    mid = (32, 256, 256) if a.quick else tuple(int(v) for v in a.mid.split(","))
    ch = auto_chunks(mid, task_budget(a.limit_mb * 10**6), bytes_per_voxel(clf))
    write_phantom(root / "mid.zarr", mid, ch, seed=1)
    runs, tabs = {}, {}
    for w in (1, 2):
        runs[w], tabs[w] = run_cluster(
            root / "mid.zarr", clf, w, a.limit_mb, root / f"m{w}", a.threshold
        )
        print(f"mid, {w} worker(s): {runs[w].wall:.1f} s", flush=True)
    vol = np.asarray(zarr.open_array(str(root / "mid.zarr"), mode="r")[:])
    t_mem, c_mem, lab_mem, tab_mem = in_memory(vol, clf, a.threshold)
    lab_chk = np.asarray(zarr.open_array(str(root / "m1" / "labels.zarr"), mode="r")[:])
    same = np.array_equal(lab_chk, lab_mem) and all(
        np.array_equal(t[k], tab_mem[k], equal_nan=True) for t in tabs.values() for k in tab_mem
    )
    nv = int(np.prod(mid))
    r1, r2 = runs[1], runs[2]
    c1 = r1.worker_cpu + r1.client_cpu
    c2 = r2.worker_cpu + r2.client_cpu
    return [
        ("mid volume (fits)", f"{mid}, chunks {ch}, {len(tab_mem['label'])} objects"),
        (
            "mid wall, 1 / 2 workers",
            f"{r1.wall:.1f} / {r2.wall:.1f} s: speedup {r1.wall / r2.wall:.2f}x",
        ),
        (
            "mid CPU (workers + client), 1 / 2 workers",
            f"{c1:.1f} / {c2:.1f} s: ratio {c2 / c1:.2f}; a worker got "
            f"{r1.worker_cpu / r1.wall:.0%} / {r2.worker_cpu / r2.wall / 2:.0%} of a core",
        ),
        (
            "mid peak worker RSS, 1 / 2 workers",
            f"{r1.max_peak / 1e6:.0f} / {r2.max_peak / 1e6:.0f} MB; "
            f"restarts {r1.restarts} / {r2.restarts}",
        ),
        (
            "ns/voxel chunked (1 worker) / in memory (1 thread), wall",
            f"{r1.wall / nv * 1e9:.0f} / {t_mem / nv * 1e9:.0f}: {r1.wall / t_mem:.2f}x",
        ),
        (
            "ns/voxel chunked / in memory, CPU",
            f"{c1 / nv * 1e9:.0f} / {c_mem / nv * 1e9:.0f}: {c1 / c_mem:.2f}x",
        ),
        ("chunked labels and tables equal in memory (1 and 2 workers)", str(same)),
    ]


def main() -> None:
    a = _args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    clf = train()
    rows = [] if a.skip_big else _big_rows(a, root, clf)
    if rows:
        print("\n".join(f"{k}: {v}" for k, v in rows), flush=True)
    rows += _mid_rows(a, root, clf)
    load1 = os.getloadavg()
    rows.append(
        (
            "load average (1 min) at start / end",
            f"{load0[0]:.1f} / {load1[0]:.1f} on {os.cpu_count()} cores "
            f"(whole run {time.perf_counter() - t0:.0f} s)",
        )
    )
    mode = "threshold > 400" if a.threshold else "forest of 5 trees, smoothing + gradient at σ 1"
    print(f"\n### bench_scale: {mode}; LocalCluster, 1 thread/worker, limit {a.limit_mb} MB\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if a.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
