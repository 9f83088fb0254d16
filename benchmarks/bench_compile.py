"""First-run compile cost of the noise codec's numba kernels (issue 16).

Runs, in a new process with an empty numba cache (``NUMBA_CACHE_DIR`` set to a fresh
temporary folder), the announced warm-up of a back end (`warmup.code_tiny`: encode and
decode a tiny stack, which compiles every kernel real coding uses) and prints the
process CPU time it took, the CPU time of each top-level kernel's compilation
(numba ``numba:compile`` events, thread CPU time, including the helpers compiled for
it) and the machine code generated per kernel. CPU times, not wall times: they are what
reproduces on a shared machine. Several ``--runs`` give the spread.

    python benchmarks/bench_compile.py [--runs 3] [--effort pyramid]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

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


def run_once(effort: str) -> dict[str, tuple[float, int]]:
    """Compile CPU s and machine-code lines per kernel, in a new process, empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--effort", default="pyramid", choices=["pyramid", "best", "fast"])
    a = ap.parse_args()
    runs = []
    for i in range(a.runs):
        runs.append(run_once(a.effort))
        print(f"run {i + 1}: {runs[-1]['TOTAL'][0]:.1f} s CPU, load {os.getloadavg()[0]:.1f}")
    print("\n| kernel | compile CPU s (runs) | machine code lines |\n|---|---|---|")
    for name in runs[0]:
        ts = ", ".join(f"{r[name][0]:.2f}" for r in runs if name in r)
        print(f"| {name} | {ts} | {runs[0][name][1] or ''} |")


if __name__ == "__main__":
    main()
