"""Noise codec (S = 2) against zstd-3 on ordinary frame sizes, by CPU time and wall time.

Frames: 512² and 1024² crops of the 2048² reference frame (the crop of its true
profile), the real frames in ../shared/data (BBBC039 520×696, Usiigaci 1022×1024;
profiles estimated from the images), optionally the 2048² frame itself. Each as a
single frame and as a 10-frame stack (the frame and 9 copies with ±2 ADU of fresh
noise: the same statistics, different data). Per frame: process CPU time (all threads;
what reproduces on a busy machine) and wall time, median of ``--reps``, zstd-3 timed
in the same rep; ratios > 1 mean the codec is faster, each the median of the per-rep
ratios with its quartiles in brackets. Targets (issue 16): encode
≥ 1×, decode ≥ 0.5× zstd-3 on a single frame, better on a stack. ``--kernels
numba,c`` times each frame with the numba kernels and with the C extension
(`ckernels`) in turn, zstd-3 beside each (the streams are identical: checked).

    python benchmarks/bench_codec_frames.py [--reps 5] [--sizes 512,1024,2048] [--no-real]
        [--kernels numba,c] [--fixed]
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


def timed(fn, reps: int) -> tuple[float, float]:
    """Median (CPU s, wall s) of ``reps`` calls."""
    cpu, wall = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


def stack_of(frame: np.ndarray, n: int = 10) -> np.ndarray:
    rng = np.random.default_rng(1)
    extra = [
        np.clip(frame.astype(np.int32) + rng.integers(-2, 3, frame.shape), 0, 65535)
        for _ in range(n - 1)
    ]
    return np.stack([frame, *extra]).astype(np.uint16)


KINDS: list[str] = [""]  # kernel namespaces to time (`--kernels`), "" = the default


def compare(name: str, codec, x: np.ndarray, reps: int) -> None:
    from rawsigma.analysis.noisecodec import ckernels as CK

    saved, first = CK.KERNELS, None
    for kind in KINDS:
        CK.KERNELS = {"numba": CK.numba_namespace(), "c": CK.c_namespace()}.get(kind, saved)
        data = _compare1(f"{name} [{CK.KERNELS.name}]" if kind else name, codec, x, reps)
        assert first is None or data == first, "streams differ between kernels"
        first = data
    CK.KERNELS = saved


def _compare1(name: str, codec, x: np.ndarray, reps: int) -> bytes:
    n = 1 if x.ndim == 2 else x.shape[0]
    data = codec.encode(x)
    codec.decode(data)
    z = imagecodecs.zstd_encode(x, level=3)
    # the four timed in turn, rep by rep: a burst of load on a shared machine then falls
    # on the codec and on zstd-3 alike instead of on one batch of calls
    calls = [
        lambda: codec.encode(x),
        lambda: codec.decode(data),
        lambda: imagecodecs.zstd_encode(x, level=3),
        lambda: imagecodecs.zstd_decode(z),
    ]
    runs = np.array([[timed(fn, 1) for fn in calls] for _ in range(reps)])  # (rep, call, k)
    (ec, _), (dc, _), (zec, _), (zdc, _) = np.median(runs, 0)
    # ratios rep by rep (zstd-3 / codec, the two timed in the same rep): their median and
    # quartiles, so that a drift of the machine's speed between reps cancels
    enc, dec = runs[:, 2] / runs[:, 0], runs[:, 3] / runs[:, 1]  # (rep, k: CPU, wall)
    ms = 1e3 / n
    print(
        f"| {name} | {x.nbytes / len(data):.2f} | {ec * ms:.1f} / {dc * ms:.1f} | "
        f"{zec * ms:.1f} / {zdc * ms:.1f} | **{_ratio(enc[:, 0])} / {_ratio(dec[:, 0])}** | "
        f"{_ratio(enc[:, 1])} / {_ratio(dec[:, 1])} | {os.getloadavg()[0]:.1f} |",
        flush=True,
    )
    return bytes(data)


def _ratio(r: np.ndarray) -> str:
    """Median ratio and its quartiles over the reps, e.g. ``1.43× (1.38–1.47)``."""
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return f"{med:.2f}× ({q1:.2f}–{q3:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--kernels", default="", help="comma-separated: numba, c")
    ap.add_argument(
        "--fixed", action="store_true", help="also a 64² crop: ≈ the fixed cost per frame"
    )
    a = ap.parse_args()
    KINDS[:] = [k for k in a.kernels.split(",") if k] or [""]
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.synthetic import reference_frame

    print(f"load {os.getloadavg()}, {os.cpu_count()} CPUs")
    print(
        "| frame | ratio | codec CPU ms/frame enc / dec | zstd-3 CPU ms/frame enc / dec "
        "| CPU ratio enc / dec | wall ratio enc / dec | load |\n|---|---|---|---|---|---|---|"
    )
    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.fixed:  # 4096 pixels: the per-pixel work is ~0.1 ms, the rest is per frame
        frame, _, cam = reference_frame((2048, 2048), seed=0)
        codec = NoiseCodec(cam.true_profile().crop((0, 0, 64, 64), relative=True), step=2.0)
        compare("reference 64², 1 frame (fixed cost)", codec, frame[:64, :64].copy(), 4 * a.reps)
    if sizes:
        frame, _, cam = reference_frame((2048, 2048), seed=0)
        prof = cam.true_profile()
        for s in sizes:
            codec = NoiseCodec(prof.crop((0, 0, s, s), relative=True), step=2.0)
            crop = np.ascontiguousarray(frame[:s, :s])
            compare(f"reference {s}², 1 frame", codec, crop, a.reps)
            compare(f"reference {s}², 10-frame stack", codec, stack_of(crop), max(2, a.reps // 2))
    if not a.no_real:
        import tifffile
        from rawsigma.analysis.noisemodel.estimate import estimate_profile

        for fname in ("bbbc039_u2os_hoechst_3fields.tif", "usiigaci_phase_contrast_1fields.tif"):
            p = DATA / fname
            if not p.exists():
                print(f"(skipping {fname}: not found)")
                continue
            img = tifffile.imread(p)
            img = np.asarray(img[0] if img.ndim == 3 else img, np.uint16)
            codec = NoiseCodec(estimate_profile(img, bit_depth=16, source=str(p)), step=2.0)
            tag = f"{fname.split('_')[0]} {img.shape[0]}×{img.shape[1]}"
            compare(f"{tag}, 1 frame", codec, img, a.reps)
            compare(f"{tag}, 10-frame stack", codec, stack_of(img), max(2, a.reps // 2))
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
