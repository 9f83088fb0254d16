"""Peak memory of ``rawsigma score`` run the user's way, at several frame sizes (issue 16).

For each size, ``bench_score.py``'s synthetic scene (simulated sCMOS camera imaging the
2D nuclei phantom, 40 nuclei per 256² field) is written to files (``img.tif``, the
camera's true profile ``prof.h5``, ``training_labels`` of the truth ``lab.tif``), then

    /usr/bin/time -v rawsigma score img.tif -p prof.h5 -l lab.tif -o out

runs with the default options in a new process. The command runs through a small
wrapper that calls the console script's entry point unchanged and samples, once per
``--every`` seconds, the process's resident memory and the rawsigma functions on the main
thread's stack, so that the peak is attributed to a stage. Printed: wall, CPU, peak RSS
(``time -v``'s maximum resident set), the stage at the peak, the highest RSS seen in each
stage, and the ratio of each size's peak to the first size's.

    python benchmarks/bench_score_memory.py [--sizes 2048,4096] [--work DIR] [--every 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_WRAPPER = r"""
import json, os, sys, threading, time

out_json, every = sys.argv[1], float(sys.argv[2])
sys.argv = ["rawsigma", *sys.argv[3:]]
main_id = threading.get_ident()
samples = []


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stack():
    f = sys._current_frames().get(main_id)
    names = []
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.startswith("rawsigma"):
            names.append(mod.rsplit(".", 1)[-1] + "." + f.f_code.co_name)
        f = f.f_back
    return names[::-1]


def sample():
    t0 = time.perf_counter()
    while True:
        samples.append((time.perf_counter() - t0, rss_mb(), stack()))
        time.sleep(every)


def dump():
    with open(out_json, "w") as f:
        json.dump(samples, f)


import atexit

atexit.register(dump)
threading.Thread(target=sample, daemon=True).start()
from rawsigma.cli.main import main

main()
"""


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def write_scene(size: int, d: Path) -> int:
    """Write ``img.tif``, ``prof.h5``, ``lab.tif`` of bench_score's scene; objects drawn."""
    import tifffile
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.segmentation.annotations import training_labels

    model = SensorModel.preset("scmos", (size, size), seed=0)
    n = int(40 * (size / 256) ** 2)
    bright, truth = nuclei2d((size, size), n_objects=n, rng=0)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(1))
    d.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(d / "img.tif", img)
    tifffile.imwrite(d / "lab.tif", training_labels(truth))
    model.true_profile().save(d / "prof.h5")
    return int(truth.max())


def _stage(names: list[str]) -> str:
    """The step a stack is in: the frame below ``runner.score_image`` or the CLI's."""
    for outer in (".score_image", "._score_locked"):
        for i, n in enumerate(names):
            if n.endswith(outer):
                return names[i + 1] if i + 1 < len(names) else n
    return names[-1] if names else "(start-up)"


def run_score(d: Path, every: float) -> dict:
    """Run ``rawsigma score`` on the files in ``d``; peak, times, stage at the peak."""
    out_json = d / "rss_samples.json"
    args = ["score", str(d / "img.tif"), "-p", str(d / "prof.h5"), "-l", str(d / "lab.tif")]
    args += ["-o", str(d / "out"), "--force"]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", _WRAPPER, str(out_json), str(every)]
    load0, t = _load(), time.perf_counter()
    p = subprocess.run(cmd + args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([0-9.]+)", p.stderr)
        return float(m.group(1)) if m else float("nan")

    samples = json.loads(out_json.read_text()) if out_json.exists() else []
    per_stage: dict[str, float] = {}
    for _, rss, names in samples:
        s = _stage(names)
        per_stage[s] = max(per_stage.get(s, 0.0), rss)
    top = max(samples, key=lambda s: s[1]) if samples else (0.0, 0.0, [])
    return {
        "exit": p.returncode,
        "wall": wall,
        "cpu": field("User time (seconds)") + field("System time (seconds)"),
        "peak_gb": field("Maximum resident set size (kbytes)") * 1024 / 1e9,
        "peak_t": top[0],
        "peak_stack": top[2],
        "per_stage": per_stage,
        "load": f"{load0} → {_load()}",
        "tail": p.stderr.strip().splitlines()[-30:] if p.returncode else [],
        "stdout": p.stdout.strip().splitlines()[-8:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="2048,4096")
    ap.add_argument("--work", type=Path, default=None, help="folder for the files (kept)")
    ap.add_argument("--every", type=float, default=0.5, help="RSS sampling period, s")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_score_memory_"))
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    for size in sizes:
        d = work / f"s{size}"
        n = write_scene(size, d)
        r = run_score(d, a.every)
        rows.append((size, r))
        print(f"\n## rawsigma score {size}² ({n} nuclei drawn), default options: exit "
              f"{r['exit']}, {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, peak RSS "
              f"{r['peak_gb']:.2f} GB (load {r['load']})", flush=True)  # fmt: skip
        for line in r["stdout"] + r["tail"]:
            print("  " + line)
        print(f"peak sampled at {r['peak_t']:.0f} s in: {' > '.join(r['peak_stack'][-6:])}")
        print("| stage (below score_image) | highest RSS sampled, GB |\n|---|---|")
        for s, v in sorted(r["per_stage"].items(), key=lambda kv: -kv[1]):
            print(f"| {s} | {v / 1e3 * 1.048576:.2f} |")
    base = rows[0]
    for size, r in rows[1:]:
        print(f"peak {size}² ÷ {base[0]}²: {r['peak_gb'] / base[1]['peak_gb']:.2f} "
              f"(pixels ×{(size / base[0]) ** 2:.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
