"""Bias of the noise codec against its quantisation step (issue 9/10: the step limit).

For each step S, frames of a simulated camera with known expected signal are encoded and
decoded (default options: round mode, pyramid back end, global maps); the decoding
error ``decoded − raw`` is averaged per bin of the true signal and divided by the noise
σ there. The table gives the largest |mean error|/σ over the bins (with ≥ 2000
pixels) and the largest decoded value against the input maximum. Scenes: the codec's
reference fluorescence frame (512², peak ≈ 3000 e⁻) and a dim version (peak 40 e⁻ over
2 e⁻ background), several noise replicas each.

Run: ``python benchmarks/bench_step_bias.py [--size 512] [--reps 4]``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec.codec import transform_sigma_e
from rawsigma.analysis.noisecodec.stream import decode_frames, encode_frames
from rawsigma.analysis.noisecodec.synthetic import fluorescence_scene, reference_camera

STEPS = (0.5, 1, 2, 2.25, 2.5, 2.75, 3, 4, 6, 8, 16, 32, 64)


def bias_table(lam: np.ndarray, cam, reps: int, steps=STEPS) -> list[dict]:
    """Rows ``{step, bias_sigma, max_out, max_in, ratio}`` for one scene."""
    prof = cam.true_profile()
    frames = np.stack([cam.expose(lam.astype(np.float32), 0.0, rng=100 + r) for r in range(reps)])
    g = float(prof.gain_global)
    sig_e = float(prof.read_noise_global) / g
    sigma = g * np.sqrt(lam + sig_e**2)
    edges = np.quantile(lam, np.linspace(0, 1, 21))
    idx = np.clip(np.searchsorted(edges, lam, side="right") - 1, 0, 19)
    base = NoiseCodec(prof, step=2, maps="global")
    rows = []
    for s in steps:
        p = dataclasses.replace(base.params, step=float(s), sigma_e=transform_sigma_e(prof, s))
        data = encode_frames(frames, base.maps, p, embed_maps=False)
        dec = decode_frames(data, base.maps)
        err = (dec.astype(np.float64) - frames).mean(axis=0) / sigma
        worst = 0.0
        for b in range(20):
            m = idx == b
            if m.sum() >= 2000:
                worst = max(worst, abs(float(err[m].mean())))
        rows.append(
            {
                "step": s,
                "bias_sigma": worst,
                "max_out": int(dec.max()),
                "max_in": int(frames.max()),
                "ratio": frames.nbytes / len(data),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=4)
    a = ap.parse_args()
    shape = (a.size, a.size)
    cam = reference_camera(shape, seed=0)
    scenes = {
        "reference (peak 3000 e-)": fluorescence_scene(shape, seed=0),
        "dim (peak 40 e-, bg 2 e-)": fluorescence_scene(shape, seed=0, peak=40.0, background=2.0),
    }
    for name, lam in scenes.items():
        print(f"\n{name}: max |mean error|/sigma over 20 signal bins, {a.reps} replicas")
        print("| step S | max abs(bias)/σ | decoded max / input max (ADU) | ratio |")
        print("|---:|---:|---:|---:|")
        for r in bias_table(lam.astype(np.float64), cam, a.reps):
            print(
                f"| {r['step']:g} | {r['bias_sigma']:.3f} | {r['max_out']} / {r['max_in']} "
                f"| {r['ratio']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
