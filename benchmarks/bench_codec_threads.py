"""Single-frame decode or encode of the noise codec: the calling thread against the pool.

Same process, interleaved, best-of-N and median: ``decode_frames(threads=1)`` (with
``--op encode``: ``encode_frames``) against ``threads=2`` (the calling thread and one
pool thread), zstd-3's decode (encode) timed beside them, on 384², 512², 1024² crops
of the reference frame and the real frames of ../shared/data. Wall and process CPU
time (all threads). On a loaded machine no core is free: ``--rt`` runs the timing loop
alone (≈ 1 s; encodes before it) at SCHED_FIFO priority (root only), what a free core
gives. Issue 16, "tiles of one frame decoded in
parallel" in RESULTS.md (encode: "single-frame encode in parallel", session 10).

    python benchmarks/bench_codec_threads.py [--reps 25] [--rt] [--op decode|encode]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import imagecodecs
import numpy as np

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def frames() -> list[tuple[str, object, np.ndarray]]:
    import tifffile
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.synthetic import reference_frame
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    frame, _, cam = reference_frame((2048, 2048), seed=0)
    out = []
    for s in (384, 512, 1024):
        codec = NoiseCodec(cam.true_profile().crop((0, 0, s, s), relative=True), step=2.0)
        out.append((f"reference {s}²", codec, np.ascontiguousarray(frame[:s, :s])))
    for name in ("bbbc039_u2os_hoechst_3fields.tif", "usiigaci_phase_contrast_1fields.tif"):
        if (DATA / name).exists():
            img = tifffile.imread(DATA / name)
            img = np.asarray(img[0] if img.ndim == 3 else img, np.uint16)
            prof = estimate_profile(img, bit_depth=16, source=name)
            out.append((f"{name.split('_')[0]} {img.shape[0]}×{img.shape[1]}",
                        NoiseCodec(prof, step=2.0), img))  # fmt: skip
    return out


def timings(fns: dict, reps: int) -> dict[str, tuple[list[float], list[float]]]:
    """(CPU s, wall s) of ``reps`` interleaved calls of each function."""
    res: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            w, c = time.perf_counter(), time.process_time()
            f()
            res[k][0].append(time.process_time() - c)
            res[k][1].append(time.perf_counter() - w)
    return res


def _decoders(codec, data: bytes, z: bytes) -> dict:
    from rawsigma.analysis.noisecodec import stream as ST

    one = ST.decode_frames(data, codec.maps, threads=1)
    assert np.array_equal(ST.decode_frames(data, codec.maps, threads=2), one)
    return {
        "1": lambda d=data, m=codec.maps: ST.decode_frames(d, m, threads=1),
        "pool": lambda d=data, m=codec.maps: ST.decode_frames(d, m, threads=2),
        "zstd": lambda z=z: imagecodecs.zstd_decode(z),
    }


def _encoders(codec, x: np.ndarray, data: bytes) -> dict:
    from dataclasses import replace

    from rawsigma.analysis.noisecodec import stream as ST

    p1, p2 = (replace(codec.params, threads=t) for t in (1, 2))
    assert ST.encode_frames(x, codec.maps, p1, codec.embed_maps) == data  # the same bytes
    assert ST.encode_frames(x, codec.maps, p2, codec.embed_maps) == data
    return {
        "1": lambda: ST.encode_frames(x, codec.maps, p1, codec.embed_maps),
        "pool": lambda: ST.encode_frames(x, codec.maps, p2, codec.embed_maps),
        "zstd": lambda: imagecodecs.zstd_encode(x, level=3),
    }


def main() -> None:
    from rawsigma.analysis.noisecodec import runtime as RT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--rt", action="store_true", help="timing loop at SCHED_FIFO (root)")
    ap.add_argument("--op", choices=("decode", "encode"), default="decode")
    a = ap.parse_args()
    cases = []
    for name, codec, x in frames():
        data, z = codec.encode(x), imagecodecs.zstd_encode(x, level=3)
        fns = _encoders(codec, x, data) if a.op == "encode" else _decoders(codec, data, z)
        cases.append((name, fns))
    print(f"{a.op}: load {os.getloadavg()}, {RT.pool_threads()} threads, {'SCHED_FIFO' * a.rt}")
    print("| frame | wall ms 1 thread / pool (min, median) | pool ÷ 1 thread wall (min, med) "
          "| pool ÷ 1 thread CPU (min, med) | zstd-3 ÷ codec wall, 1 thread / pool (med) "
          "| zstd-3 ÷ codec CPU, 1 thread / pool (med) |\n|---|---|---|---|---|---|")  # fmt: skip
    if a.rt:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        RT._POOL = None  # its threads, created by the first parallel call, inherit it
    try:
        res = [(name, timings(fns, a.reps)) for name, fns in cases]
    finally:
        if a.rt:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            RT._POOL.shutdown()
            RT._POOL = None
    for name, t in res:
        c = {k: (min(v[0]), float(np.median(v[0]))) for k, v in t.items()}
        w = {k: (min(v[1]), float(np.median(v[1]))) for k, v in t.items()}
        print(
            f"| {name} | {w['1'][0] * 1e3:.2f}, {w['1'][1] * 1e3:.2f} / "
            f"{w['pool'][0] * 1e3:.2f}, {w['pool'][1] * 1e3:.2f} | "
            f"{w['pool'][0] / w['1'][0]:.2f}, {w['pool'][1] / w['1'][1]:.2f} | "
            f"{c['pool'][0] / c['1'][0]:.2f}, {c['pool'][1] / c['1'][1]:.2f} | "
            f"{w['zstd'][1] / w['1'][1]:.2f}× / {w['zstd'][1] / w['pool'][1]:.2f}× | "
            f"{c['zstd'][1] / c['1'][1]:.2f}× / {c['zstd'][1] / c['pool'][1]:.2f}× |",
            flush=True,
        )
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
