"""Issue 14: feature ε of a volume chunk by chunk against in memory (one run).

On the real BBBC050 embryo volume (51×120×122, voxel 1.75×0.8×0.8 µm; replicas drawn
with a uniform camera model fitted to nothing in particular: the figures are about the
computation, not the verdict) and codecs ``8bit`` and ``noise:step=2``:

- *in memory*: the scoring features of raw, every replica (folded into
  `FeatureStats`) and every codec, then `feature_epsilon` and `worst_feature_map`
  (what ``score_volume`` does);
- *chunked*: `feature_epsilon_chunked` with ``--chunks`` on one thread.

Prints wall time and the peak of numpy's traced allocations (tracemalloc) of each,
their ratios, and the largest relative difference of the per-channel numbers and
whether the worst-channel maps are equal.

    python benchmarks/bench_featurestats.py [--chunks 16,64,64] [--replicas 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile
from rawsigma.analysis.codecs.registry import parse_codecs
from rawsigma.analysis.outofcore.featurestats import feature_epsilon_chunked
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_bank
from rawsigma.calib.profile import CameraProfile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOLUME = DATA / "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"
SPACING = (1.75, 0.8, 0.8)
SIGMAS = (1.0, 2.0, 4.0)


def _in_memory(raw, reps, codecs):  # type: ignore[no-untyped-def]
    rel = tuple(s / min(SPACING) for s in SPACING)

    def feats(v):  # type: ignore[no-untyped-def]
        return feature_bank(v, "ilastik", sigmas=SIGMAS, features=SCORING_FEATURES,
                            spacing=rel, n_workers=1)  # fmt: skip

    fr, names = feats(raw)
    stats = sc.FeatureStats()
    for r in reps:
        stats.add(feats(r)[0])
    sigma = stats.sigma().astype(np.float32)
    out = {}
    for k, v in codecs.items():
        fc = feats(v)[0]
        fe = sc.feature_epsilon(fr, sigma, fc, names)
        out[k] = (fe, sc.worst_feature_map(fe, fr, sigma, fc, names))
    return out


def _measured(fn):  # type: ignore[no-untyped-def]
    tracemalloc.start()
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return res, dt, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", default="16,64,64")
    ap.add_argument("--replicas", type=int, default=10)
    a = ap.parse_args()
    chunks = tuple(int(c) for c in a.chunks.split(","))
    raw = tifffile.imread(VOLUME)
    prof = CameraProfile.uniform(raw.shape[1:], 1.0, 90.0, 2.0)
    rng = np.random.default_rng(0)
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    reps = np.stack([synthesize(raw[z], prof, a.replicas, rng) for z in range(raw.shape[0])], 1)
    codecs = {s: np.asarray(c.decode(c.encode(raw)))
              for s in ("8bit", "noise:step=2") for c in parse_codecs(s, profile=prof)}  # fmt: skip
    print(f"load {os.getloadavg()[0]:.1f}; volume {raw.shape}, {a.replicas} replicas, "
          f"chunks {chunks}")  # fmt: skip
    mem, t_mem, p_mem = _measured(lambda: _in_memory(raw, reps, codecs))
    with tempfile.TemporaryDirectory() as tmp:
        got, t_ch, p_ch = _measured(lambda: feature_epsilon_chunked(
            raw, reps, codecs, tmp, sigmas=SIGMAS, spacing=SPACING, chunks=chunks))  # fmt: skip
        rel, same = 0.0, True
        for k, (fe, worst) in mem.items():
            for n, v in fe.items():
                for m in ("mean_epsilon", "mean_abs_epsilon", "rms_epsilon"):
                    rel = max(rel, abs(got.scores[k][n][m] / v[m] - 1))
            (name,) = worst
            same &= bool(np.array_equal(np.asarray(got.worst[k][name][...]), worst[name],
                                        equal_nan=True))  # fmt: skip
    print(f"in memory: {t_mem:.1f} s, peak traced {p_mem / 2**20:.0f} MiB")
    print(
        f"chunked ({got.n_chunks} chunks): {t_ch:.1f} s ({t_ch / t_mem:.2f}× in memory), "
        f"peak traced {p_ch / 2**20:.0f} MiB ({p_ch / p_mem:.2f}× in memory)"
    )
    print(
        f"largest relative difference of the per-channel numbers {rel:.1e}; "
        f"worst-channel maps equal: {same}; load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
