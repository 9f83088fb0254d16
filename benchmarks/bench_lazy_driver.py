"""``rawsigma score BIG.zarr``: the CLI's driver never holds the volume (issue 14, h14L).

Two steps, each a sub-command:

``generate DIR --shape Z,Y,X``
    Writes, chunk by chunk (never the whole volume in memory), ``DIR/big.zarr``: a
    16-bit camera volume of blobs on a warped lattice (objects crossing every chunk
    border; photo-electrons Poisson, gain 2 ADU/e⁻, offset 100 ADU, read noise
    2 ADU, the uniform profile ``DIR/prof.h5``), and ``DIR/ann.zarr``: sparse
    annotations (every 5th voxel of a 384 x 384 corner of every 80th plane, 2 = blob
    core, 1 = background between blobs; every chunk written, so none is missing).
``phases DIR --limit-mb M``
    Runs the driver's side of the lazy path alone (the steps that used to read the
    whole volume: staging into zarr, the annotated regions, the forest's training,
    the exact chunked Otsu tissue count), with the forest of ``run``'s options
    (``--sigmas 1 --trees 5``), as a child process under the same RSS watch; prints
    each phase's time and the peak resident memory after it (``ru_maxrss``), for
    volumes too large to push every version through a loaded machine in time.
``run DIR --limit-mb M``
    Runs ``rawsigma score DIR/big.zarr --profile ... --labels DIR/ann.zarr ...`` (the
    user's command, default scheduler; ``--options "--scheduler local ..."`` adds
    options) as a child process, samples the resident memory of the driver process
    (and, apart, of its worker processes) every 0.2 s with psutil and kills the
    driver if it exceeds ``M`` MB (an RSS watch in place of a cgroup); prints the
    volume size, the driver's peak (sampled; results.json has ``ru_maxrss``), the
    workers' peak, wall time, the load and the ``results.json`` record of the path.

Usage: ``python benchmarks/bench_lazy_driver.py generate /tmp/big --shape 160,1536,1536``
then ``python benchmarks/bench_lazy_driver.py run /tmp/big --limit-mb 600``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SPACING = "2,1,1"
GAIN, OFFSET, READ = 2.0, 100.0, 2.0
CHUNKS = (32, 256, 256)


def _signal(shape: tuple[int, ...], origin: tuple[int, ...]) -> np.ndarray:
    """Blob lattice in [0, 1] (separable sines, warped in z)."""
    z, y, x = (np.arange(o, o + n, dtype=np.float32) for o, n in zip(origin, shape, strict=True))
    fzy = np.sin(z / 4.1)[:, None] * np.sin(y[None, :] / 8.3 + 0.3 * np.sin(z / 9.0)[:, None])
    f = fzy[:, :, None] * np.sin(x / 9.7)[None, None, :]
    return np.clip(f, 0, 1)


def _block(shape: tuple[int, ...], origin: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, *origin])
    e = rng.poisson(20 + 200 * _signal(shape, origin))
    v = OFFSET + GAIN * e + rng.normal(0, READ, shape)
    return np.clip(np.rint(v), 0, 65535).astype(np.uint16)


def _annotations(shape: tuple[int, ...], origin: tuple[int, ...]) -> np.ndarray:
    f = _signal(shape, origin)
    lab = np.zeros(shape, np.uint8)
    z = np.arange(origin[0], origin[0] + shape[0])
    planes = np.flatnonzero(z % 80 == 7)
    sub = f[planes, :384:5, :384:5]  # a user annotates a small region
    lab[planes, :384:5, :384:5] = np.where(sub > 0.8, 2, np.where(sub < 0.02, 1, 0))
    return lab


def generate(out: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """The volume, its annotations and its profile (see module notes)."""
    import zarr
    from rawsigma.calib.profile import CameraProfile

    out.mkdir(parents=True, exist_ok=True)
    kw = dict(shape=shape, chunks=CHUNKS, compressors=None, overwrite=True,
              config={"write_empty_chunks": True})  # fmt: skip
    vol = zarr.create_array(str(out / "big.zarr"), dtype="uint16", **kw)
    ann = zarr.create_array(str(out / "ann.zarr"), dtype="uint8", **kw)
    vol.attrs["axes"] = ann.attrs["axes"] = "ZYX"

    def one(z0: int) -> None:
        s = (min(CHUNKS[0], shape[0] - z0),) + shape[1:]
        vol[z0 : z0 + s[0]] = _block(s, (z0, 0, 0), seed)
        ann[z0 : z0 + s[0]] = _annotations(s, (z0, 0, 0))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, range(0, shape[0], CHUNKS[0])))
    CameraProfile.uniform(shape[1:], GAIN, OFFSET, READ).save(out / "prof.h5")


class Watch:
    """RSS of the driver and (summed) of its descendants, sampled; kill above a limit."""

    def __init__(self, pid: int, limit: int, period: float = 0.2) -> None:
        import psutil

        self.proc, self.limit, self.period = psutil.Process(pid), limit, period
        self.driver_peak = self.children_peak = 0
        self.killed = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                kids = sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                break
            self.driver_peak = max(self.driver_peak, rss)
            self.children_peak = max(self.children_peak, kids)
            if rss > self.limit:
                self.killed = True
                self.proc.kill()
                break
            time.sleep(self.period)

    def stop(self) -> None:
        """End the sampling."""
        self._stop.set()
        self._t.join()


def run(d: Path, limit_mb: int, workers: int, extra: list[str]) -> dict:
    """The user's command under the RSS watch; the figures."""
    import zarr

    out = d / "out"
    exe = str(Path(sys.executable).parent / "rawsigma")
    cmd = [exe, "score", str(d / "big.zarr"),
           "--profile", str(d / "prof.h5"), "--labels", str(d / "ann.zarr"),
           "--spacing", SPACING, "--workers", str(workers), "--driver", "lazy",
           "--out", str(out), "--force", *extra]  # fmt: skip
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    w = Watch(p.pid, limit_mb * 2**20)
    text, _ = p.communicate()
    w.stop()
    wall = time.perf_counter() - t0
    res = json.loads((out / "results.json").read_text()) if p.returncode == 0 else {}
    vol = zarr.open_array(str(d / "big.zarr"), mode="r")
    nbytes = int(np.prod(vol.shape)) * 2
    fig = {
        "volume": f"{tuple(vol.shape)} uint16 = {nbytes / 1e9:.2f} GB",
        "limit_mb": limit_mb,
        "exit": p.returncode,
        "killed_by_watch": w.killed,
        "driver_peak_mb_sampled": round(w.driver_peak / 2**20, 1),
        "volume_over_driver_peak": round(nbytes / max(w.driver_peak, 1), 2),
        "workers_peak_mb_sampled_sum": round(w.children_peak / 2**20, 1),
        "wall_s": round(wall, 1),
        "load_start_end": [round(load0[0], 1), round(os.getloadavg()[0], 1)],
        "execution": res.get("provenance", {}).get("execution"),
        "n_objects": res.get("n_objects_raw"),
    }
    print(text[-3000:])
    return fig


def phases(d: Path) -> None:
    """The lazy driver's phases on ``d`` (run in the watched child process)."""
    import resource
    import tempfile

    from rawsigma.analysis.scoring import volume_source as vs
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig
    from rawsigma.calib.profile import CameraProfile
    from rawsigma.volread import open_volume

    def line(name: str, t0: float) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:<10} {time.perf_counter() - t0:7.1f} s  peak RSS so far {peak:6.0f} MB",
              flush=True)  # fmt: skip

    line("imports", time.perf_counter())
    vs.limit_malloc_arenas()  # as score_volume_lazy does
    src, _ = open_volume(d / "big.zarr")
    lab, _ = open_volume(d / "ann.zarr")
    prof = CameraProfile.load(d / "prof.h5")
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        w = Path(tmp)
        t0 = time.perf_counter()
        stats = vs.stage_raw(src, w / "raw.zarr", CHUNKS, prof)
        line("stage raw", t0)
        t0 = time.perf_counter()
        ann = vs.stage_annotations(lab, w / "ann.zarr", CHUNKS, src.shape, 2)
        line("stage ann", t0)
        t0 = time.perf_counter()
        sizes = vs.annotation_region_sizes(ann, w / "regions")
        line("regions", t0)
        cfg = FeatureConfig("ilastik", sigmas=(1.0,), spacing=(2.0, 1.0, 1.0))
        clf = PixelClassifier("ilastik", features=cfg, n_estimators=5, n_jobs=2, random_state=1)
        t0 = time.perf_counter()
        vs.fit_lazy(clf, stats.path, ann)
        line("training", t0)
        t0 = time.perf_counter()
        n = vs.tissue_voxels(stats.path, (2.0, 4.0, 4.0))
        line("tissue", t0)
    print(f"{len(sizes)} annotated regions, tissue {n} voxels", flush=True)


def watch_phases(d: Path, limit_mb: int) -> dict:
    """`phases` as a child process under the RSS watch."""
    import zarr

    cmd = [sys.executable, __file__, "_phases", str(d)]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    w = Watch(p.pid, limit_mb * 2**20)
    text, _ = p.communicate()
    w.stop()
    vol = zarr.open_array(str(d / "big.zarr"), mode="r")
    nbytes = int(np.prod(vol.shape)) * 2
    print("\n".join(ln for ln in text.splitlines() if "Warning" not in ln))
    return {
        "volume": f"{tuple(vol.shape)} uint16 = {nbytes / 1e9:.2f} GB",
        "limit_mb": limit_mb, "exit": p.returncode, "killed_by_watch": w.killed,
        "driver_peak_mb_sampled": round(w.driver_peak / 2**20, 1),
        "volume_over_driver_peak": round(nbytes / max(w.driver_peak, 1), 2),
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_start_end": [round(load0[0], 1), round(os.getloadavg()[0], 1)],
    }  # fmt: skip


def main() -> None:
    """Command line (see module notes)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir", type=Path)
    g.add_argument("--shape", default="160,1536,1536")
    r = sub.add_parser("run")
    r.add_argument("dir", type=Path)
    r.add_argument("--limit-mb", type=int, default=600)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--options", default="", help="more rawsigma score options, one string")
    ph = sub.add_parser("phases")
    ph.add_argument("dir", type=Path)
    ph.add_argument("--limit-mb", type=int, default=600)
    sub.add_parser("_phases").add_argument("dir", type=Path)
    a = ap.parse_args()
    if a.cmd == "_phases":
        phases(a.dir)
    elif a.cmd == "phases":
        print(json.dumps(watch_phases(a.dir, a.limit_mb), indent=1))
    elif a.cmd == "generate":
        shape = tuple(int(v) for v in a.shape.split(","))
        t0 = time.perf_counter()
        generate(a.dir, shape)  # type: ignore[arg-type]
        print(f"wrote {a.dir}: {shape} in {time.perf_counter() - t0:.0f} s")
    else:
        print(json.dumps(run(a.dir, a.limit_mb, a.workers, a.options.split()), indent=1))


if __name__ == "__main__":
    main()
