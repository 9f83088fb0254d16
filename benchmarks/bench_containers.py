"""Compression ratio of each noise-codec container against the bare ``.rsnc`` stream.

    python benchmarks/bench_containers.py [--size 2048] [--frames 4]

Ratios are raw 16-bit bytes / bytes on disk (a zarr store: the sum of its files).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import containers as C
from rawsigma.analysis.noisecodec.synthetic import reference_frame


def _size(p: Path) -> int:
    return (
        sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        if p.is_dir()
        else (p.stat().st_size)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=4)
    a = ap.parse_args()
    frame, lam, cam = reference_frame((a.size, a.size), seed=1)
    rng = np.random.default_rng(2)
    stack = np.stack([frame] + [cam.expose(lam, 0.0, rng) for _ in range(a.frames - 1)])
    prof = cam.true_profile()
    print(f"{a.frames} frames of {a.size}x{a.size}, reference frame (synthetic sCMOS)")
    for maps in ("global", "pixel"):
        codec = NoiseCodec(prof, step=2.0, maps=maps)
        with tempfile.TemporaryDirectory() as d:
            for ext in ("rsnc", "tif", "h5", "zarr"):
                t = time.perf_counter()
                p = C.write_compressed(Path(d) / f"x.{ext}", stack, codec)
                tw = time.perf_counter() - t
                t = time.perf_counter()
                back = C.read_compressed(p)
                tr = time.perf_counter() - t
                assert back.shape == stack.shape
                print(
                    f"maps={maps:6s} {ext:5s} ratio {stack.nbytes / _size(p):6.2f}:1 "
                    f"write {tw:5.2f} s read {tr:5.2f} s"
                )


if __name__ == "__main__":
    main()
