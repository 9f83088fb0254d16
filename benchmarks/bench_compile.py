"""First-run compile cost of rawsigma's numba kernels (issue 16).

Codec mode (default) runs, in a new process with an empty numba cache
(``NUMBA_CACHE_DIR`` set to a fresh temporary folder), the announced warm-up of a
back end (`warmup.code_tiny`: encode and decode a tiny stack, which compiles every
kernel real coding uses) and prints the process CPU time it took, the CPU time of each
top-level kernel's compilation (numba ``numba:compile`` events, thread CPU time,
including the helpers compiled for it) and the machine code generated per kernel. CPU
times, not wall times: they are what reproduces on a shared machine. Several ``--runs``
give the spread.

``--demo`` runs a whole first ``rawsigma demo`` instead (`run_demo` with the CLI's
simulated-rig calibration, in a new process, empty cache) and reports every top-level
kernel it compiles, the progress stage shown meanwhile (a compile outside a
"compiling … (first run only)" stage is flagged ``SILENT``), the codec's total and the
total of the other kernels. ``--tree DIR`` (repeatable) runs the same with another
checkout of the repository (e.g. ``git archive main``) shadowing the installed one,
runs alternating between trees, so that before/after figures come from the same minutes.
``--kernels numba,c`` alternates the codec's numba kernels and its C extension
(`ckernels`; nothing to compile) run by run. ``--demo-cli`` runs the first ``rawsigma
demo`` command in a new process with an empty cache (``RAWSIGMA_CACHE_DIR`` a fresh
folder), then a second one with that cache: the difference of their CPU times is what
the first run compiles.

    python benchmarks/bench_compile.py [--runs 3] [--effort pyramid] [--kernels numba,c]
    python benchmarks/bench_compile.py --demo [--runs 2] [--tree /tmp/main --tree .]
    python benchmarks/bench_compile.py --demo-cli [--kernels numba,c]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import sys, time
from numba.core import event as ev

rows = []
stack = []


class Listener(ev.Listener):
    def on_start(self, e):
        stack.append(time.thread_time())

    def on_end(self, e):
        t = time.thread_time() - stack.pop()
        if not stack:  # top level: the kernels coding calls
            d = e.data["dispatcher"]
            rows.append((d.py_func.__module__.rsplit(".", 1)[-1] + "." + d.__name__, t, d))


ev.register("numba:compile", Listener())
from rawsigma.analysis.noisecodec import warmup
from rawsigma.analysis.noisecodec.stream import StreamParams

t0 = time.process_time()
warmup.code_tiny(StreamParams(effort=sys.argv[1]))
total = time.process_time() - t0
for name, t, d in rows:
    asm = sum(len(d.inspect_asm(s).splitlines()) for s in d.signatures)
    print(f"{name}\t{t:.2f}\t{asm}")
print(f"TOTAL\t{total:.2f}\t0")
"""


_DEMO_CHILD = r"""
import os, sys, tempfile, threading, time
from numba.core import event as ev

rows, tl, stage = [], threading.local(), ["(none)"]


class Listener(ev.Listener):
    def on_start(self, e):
        if not hasattr(tl, "s"):
            tl.s = []
        tl.s.append(time.thread_time())

    def on_end(self, e):
        t = time.thread_time() - tl.s.pop()
        if not tl.s:  # top level (helpers compiled for a kernel are included)
            d = e.data["dispatcher"]
            rows.append((d.py_func.__module__, d.__name__, t, stage[0]))


ev.register("numba:compile", Listener())
from rawsigma.analysis.demo import run_demo
from rawsigma.cli.demo_cmd import bench_calibration


def progress(name, done, total):
    stage[0] = f"{name} {done}/{total}"


t0 = time.process_time()
with tempfile.TemporaryDirectory() as out:
    run_demo(os.path.join(out, "d"), seed=0, progress=progress, calibrate=bench_calibration)
print(f"TOTAL\t{time.process_time() - t0:.2f}\t")
for m, n, t, s in rows:
    print(f"{m.removeprefix('rawsigma.')}.{n}\t{t:.2f}\t{s}")
"""


def run_demo_once(tree: str | None) -> list[tuple[str, float, str]]:
    """(kernel, compile CPU s, stage) of a first demo in a new process, empty cache;
    the first row is the process CPU time of the demo."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
        if tree:
            env["PYTHONPATH"] = _shadow(tree, tmp)
        r = subprocess.run([sys.executable, "-c", _DEMO_CHILD], env=env, capture_output=True,
                           text=True, check=True, cwd=tmp)  # fmt: skip
    return [(a, float(b), c) for a, b, c in (ln.split("\t") for ln in r.stdout.splitlines())]


def _shadow(tree: str, tmp: str) -> str:
    """A ``rawsigma`` package folder made of ``tree``'s source folders (pyproject's
    package-dir layout), to put first on PYTHONPATH."""
    import shutil
    import tomllib

    root = os.path.abspath(tree)
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    pkg = os.path.join(tmp, "path", "rawsigma")
    shutil.copytree(os.path.join(root, dirs["rawsigma"]), pkg)
    here = os.path.join(os.path.dirname(__file__), "..", dirs["rawsigma"], "_version.py")
    if os.path.exists(here) and not os.path.exists(os.path.join(pkg, "_version.py")):
        shutil.copy(here, pkg)
    for name, d in dirs.items():
        parts = name.split(".")[1:]
        if len(parts) == 1:
            os.symlink(os.path.join(root, d), os.path.join(pkg, parts[0]))
    return os.path.dirname(pkg)


def demo_main(runs: int, trees: list[str]) -> None:
    """Print, per tree, the compile CPU per kernel of a first demo and the totals."""
    res: dict[str, list] = {t: [] for t in trees}
    for i in range(runs):
        for t in trees:
            load = os.getloadavg()[0]
            rows = run_demo_once(t if t != "installed" else None)
            res[t].append(rows)
            print(f"run {i + 1} {t}: demo {rows[0][1]:.1f} s CPU, load {load:.1f}")
    for t, rr in res.items():
        print(f"\n{t}\n| kernel | compile CPU s (runs) | stage shown |\n|---|---|---|")
        names = list(dict.fromkeys(n for rows in rr for n, _, _ in rows[1:]))
        for n in names:
            ts = ", ".join(f"{sum(x for k, x, _ in rows if k == n):.2f}" for rows in rr)
            st = next(s for rows in rr for k, _, s in rows if k == n)
            flag = "" if "first run only" in st else " SILENT"
            print(f"| {n} | {ts} | {st}{flag} |")
        for label, pick in (("codec", True), ("other kernels", False)):
            ts = [sum(x for k, x, _ in rows[1:] if k.startswith("analysis.noisecodec") == pick)
                  for rows in rr]  # fmt: skip
            print(f"| **{label}** | {', '.join(f'{x:.2f}' for x in ts)} | |")
        print(f"| demo process CPU | {', '.join(f'{rows[0][1]:.1f}' for rows in rr)} | |")


def run_once(effort: str, kernels: str = "") -> dict[str, tuple[float, int]]:
    """Compile CPU s and machine-code lines per kernel, in a new process, empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, RAWSIGMA_CODEC_KERNELS=kernels)
        r = subprocess.run(
            [sys.executable, "-c", _CHILD, effort],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    out = {}
    for line in r.stdout.splitlines():
        name, t, asm = line.split("\t")
        out[name] = (float(t), int(asm))
    return out


def _child_cpu(cmd: list[str], env: dict) -> tuple[float, float]:
    """CPU s (user + system, the child and its threads) and wall s of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def demo_once(kernels: str) -> tuple[float, float, float]:
    """First and second `rawsigma demo` (empty, then warm cache): CPU s of each, wall s
    of the first."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(RAWSIGMA_CACHE_DIR=os.path.join(tmp, "cache"), RAWSIGMA_CODEC_KERNELS=kernels)
        cmd = ["rawsigma", "demo", "--seed", "0", "--out"]
        first, wall = _child_cpu([*cmd, os.path.join(tmp, "d1")], env)
        second, _ = _child_cpu([*cmd, os.path.join(tmp, "d2")], env)
    return first, second, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--effort", default="pyramid", choices=["pyramid", "best", "fast"])
    ap.add_argument("--kernels", default="", help="comma-separated: numba, c (alternated)")
    ap.add_argument("--demo", action="store_true", help="a whole first demo, every kernel")
    ap.add_argument("--tree", action="append", help="(--demo) checkout to run instead")
    ap.add_argument("--demo-cli", action="store_true", help="first rawsigma demo command")
    a = ap.parse_args()
    kinds = [k for k in a.kernels.split(",") if k] or [""]
    if a.demo:
        demo_main(a.runs, a.tree or ["installed"])
        return
    if a.demo_cli:
        print("| kernels | first demo CPU s | second demo CPU s | compiled CPU s | wall s | load |")
        print("|---|---|---|---|---|---|")
        for _ in range(a.runs):
            for k in kinds:
                first, second, wall = demo_once(k)
                print(f"| {k or 'default'} | {first:.1f} | {second:.1f} | {first - second:.1f} "
                      f"| {wall:.0f} | {os.getloadavg()[0]:.1f} |", flush=True)  # fmt: skip
        return
    runs: dict[str, list] = {k: [] for k in kinds}
    for i in range(a.runs):
        for k in kinds:
            runs[k].append(run_once(a.effort, k))
            tot = runs[k][-1]["TOTAL"][0]
            print(f"run {i + 1} {k or 'default'}: {tot:.2f} s CPU, load {os.getloadavg()[0]:.1f}")
    for k in kinds:
        print(f"\n{k or 'default'} kernels\n| kernel | compile CPU s (runs) | machine code lines |")
        print("|---|---|---|")
        for name in runs[k][0]:
            ts = ", ".join(f"{r[name][0]:.2f}" for r in runs[k] if name in r)
            print(f"| {name} | {ts} | {runs[k][0][name][1] or ''} |")


if __name__ == "__main__":
    main()
