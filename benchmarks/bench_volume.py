"""Issue 14: 3D volumes scored in memory on the simulated camera (one run, several seeds).

The simulated sCMOS camera (calibrated through the `rawsigma.calib` estimators, as in the
demo) images the 3D nuclei phantom (`rawsigma.analysis.phantoms.nuclei3d`: anisotropic
voxels 1 × 0.5 × 0.5 µm, nuclei of radius 1.6–2.4 µm whose brightness spans 225–1500
photons (log-uniform) in a tissue of 45 photons, touching pairs, and a few bright
single-voxel beads that set the range of a min–max 8-bit conversion). Each z plane is
one camera frame. `score_volume` scores the held-out replica, ``8bit`` and
``noise:step=2`` against 10 replicas; the classifier is trained on eroded cores /
background rings of the phantom's truth, and the raw segmentation's agreement with the
truth (F1 at IoU 0.5) is printed.

    python benchmarks/bench_volume.py [--seeds 0,1,2] [--shape 40,128,128] [--objects 250]
        [--bead 100]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from rawsigma.analysis.demo import calibrate_simulated
from rawsigma.analysis.phantoms import nuclei3d
from rawsigma.analysis.scoring.volume import score_volume
from rawsigma.analysis.segmentation.annotations import training_labels

CODECS = ["replica", "8bit", "noise:step=2"]
SPACING = (1.0, 0.5, 0.5)
PEAK = 1500.0  # photons per voxel of the brightest nuclei; nuclei span 0.15-1 of it


def one_seed(
    seed: int, shape: tuple[int, int, int], n_objects: int, trees: int, bead: float
) -> dict:
    bright, truth = nuclei3d(shape, SPACING, n_objects, n_objects // 10, seed,
                             brightness=(0.15, 1.0), tissue=0.03, n_beads=4,
                             bead_brightness=bead)  # fmt: skip
    n_nuclei = int(truth.max()) - 4
    prof, model, _ = calibrate_simulated(shape[1:], seed, n_frames=12)
    rng = np.random.default_rng(seed + 2)
    vol = np.stack([model.expose(40 + PEAK * bright[z], 0.01, rng) for z in range(shape[0])])
    reference = np.where(truth <= n_nuclei, truth, 0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = score_volume(vol, prof, labels=training_labels(truth), spacing=SPACING,
                         codecs=CODECS, n_replicas=10, seed=seed, n_estimators=trees,
                         reference=reference)  # fmt: skip
    dt = time.perf_counter() - t0
    print(f"seed {seed}: {n_nuclei} nuclei placed, {r.n_objects} objects segmented, "
          f"F1 vs truth {r.reference['f1']:.3f} (IoU 0.5), {dt:.0f} s")  # fmt: skip
    out = {}
    for c in r.codecs:
        g = c.globals
        cnt, tv = g["count"], g["total_volume"]
        dv = 100 * (tv["value"] / tv["raw"] - 1)
        dn = 100 * (cnt["value"] / cnt["raw"] - 1)
        w = c.verdict["worst"]
        q = f", 8-bit step {c.quantisation['step_over_sigma']:.2f} σ" if c.quantisation else ""
        print(f"  {c.spec:<13} {c.ratio:5.1f}:1 "
              f"{'within noise ' if c.verdict['within_noise'] else 'EXCEEDS noise'} "
              f"worst {w[0]} {w[1]:+.2f} p_fw {c.verdict['worst_p_fw']:.2g}; count "
              f"{cnt['raw']:.0f}→{cnt['value']:.0f} ({dn:+.1f} %, ε {cnt['epsilon']:+.2f}), "
              f"total volume {dv:+.1f} % (ε {tv['epsilon']:+.2f}); matched "
              f"{c.match['n_matched']}/{c.match['n_ref']}{q}")  # fmt: skip
        out[c.spec] = {"within": bool(c.verdict["within_noise"]), "dn": dn, "dv": dv}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--shape", default="40,128,128")
    ap.add_argument("--objects", type=int, default=250)
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--bead", type=float, default=100.0, help="bead / brightest nucleus")
    a = ap.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    print(f"load {os.getloadavg()}; shape {shape}, spacing {SPACING}, {a.objects} nuclei, "
          f"beads {a.bead:g}x")  # fmt: skip
    runs = [one_seed(int(s), shape, a.objects, a.trees, a.bead) for s in a.seeds.split(",")]  # type: ignore[arg-type]
    print("summary over seeds (within-noise rate; mean count / total volume change):")
    for spec in CODECS:
        rate = np.mean([r[spec]["within"] for r in runs])
        dn = np.mean([r[spec]["dn"] for r in runs])
        dv = np.mean([r[spec]["dv"] for r in runs])
        print(f"  {spec:<13} within noise {rate * len(runs):.0f}/{len(runs)}; "
              f"count {dn:+.1f} %, total volume {dv:+.1f} %")  # fmt: skip
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
