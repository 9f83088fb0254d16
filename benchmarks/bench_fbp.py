"""Filtered back-projection: `rawsigma.analysis.tomo.fbp` vs ``skimage.transform.iradon``.

A Shepp–Logan volume: the 2D phantom at ``--size``² scaled by (1 + 0.02 k) in slice k,
``--slices`` slices, projected by ``skimage.transform.radon`` at ``--angles`` angles over
180°, then reconstructed slice by slice by iradon (ramp filter) and by `fbp` (ramp,
``--threads``), in the same run. Prints wall and process CPU time of both, the ratios,
the load, and the accuracy: RMS difference to iradon and to the phantom, in % of the
phantom's range (the issue-15 criterion: < 1 % of the range, ≥ 3× faster).

    python benchmarks/bench_fbp.py [--size 256] [--angles 256] [--slices 64] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--angles", type=int, default=256)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    from rawsigma.analysis.tomo import fbp
    from rawsigma.analysis.tomo.backprojection import default_threads
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, resize

    threads = a.threads or default_threads()
    img = resize(shepp_logan_phantom(), (a.size, a.size), anti_aliasing=True)
    theta = np.linspace(0.0, 180.0, a.angles, endpoint=False)
    sino = radon(img, theta).T  # (angles, det)
    k = 1 + 0.02 * np.arange(a.slices)
    proj = (sino[:, None, :] * k[None, :, None]).astype(np.float32)  # (angles, rows, det)
    truth = img[None] * k[:, None, None]
    span = float(img.max() - img.min())
    print(
        f"Shepp–Logan {a.size}², {a.angles} angles over 180°, {a.slices} slices; "
        f"fbp threads {threads}; load before {os.getloadavg()}"
    )
    fbp(proj[:, :1], theta, threads=threads)  # compile or load the kernel once

    def ref_volume():
        return np.stack([iradon(proj[:, r, :].T, theta, filter_name="ramp") for r in
                         range(a.slices)])  # fmt: skip

    w_ref, c_ref, ref = _timed(ref_volume)
    w_ours, c_ours, ours = _timed(lambda: fbp(proj, theta, threads=threads))
    w_one, c_one, _ = _timed(lambda: fbp(proj, theta, threads=1))
    print(f"load after {os.getloadavg()}")
    print(f"iradon        {w_ref:7.2f} s wall {c_ref:7.2f} s CPU")
    print(f"fbp {threads} threads {w_ours:7.2f} s wall {c_ours:7.2f} s CPU")
    print(f"fbp 1 thread  {w_one:7.2f} s wall {c_one:7.2f} s CPU")
    print(
        f"speed-up vs iradon: wall {w_ref / w_ours:.1f}×, CPU {c_ref / c_ours:.1f}× "
        f"({threads} threads); 1 thread: wall {w_ref / w_one:.1f}×, CPU {c_ref / c_one:.1f}×"
    )
    circle = np.hypot(*np.mgrid[: a.size, : a.size] - a.size // 2) <= a.size // 2
    d_ref = np.sqrt(np.mean((ours - ref)[:, circle] ** 2)) / span
    d_true = np.sqrt(np.mean((ours - truth)[:, circle] ** 2)) / (span * k.mean())
    d_ref_true = np.sqrt(np.mean((ref - truth)[:, circle] ** 2)) / (span * k.mean())
    print(
        f"RMS |fbp - iradon| = {100 * d_ref:.2e} % of the phantom range; vs phantom: "
        f"fbp {100 * d_true:.2f} %, iradon {100 * d_ref_true:.2f} % of the range"
    )


if __name__ == "__main__":
    main()
