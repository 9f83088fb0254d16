"""Issue 9: single-image noise estimate against truth, and the codec's error below the
offset.

Prints (1) the estimated profile's variance against the simulated camera's true temporal
variance at the image's 1st–99th percentiles, for scenes with and without dark regions;
(2) the estimate on the EMVA 1288 reference frames; (3) the real Usiigaci field with
default options: model variance at the 1st and 50th percentiles against the empirical
high-frequency variance there; (4) the noise codec's worst error (in units of its stated
bound) for profiles whose offset lies above part of the image, and on the Usiigaci field.

Run: ``python benchmarks/bench_noise_honest.py`` (about a minute; needs ../shared/data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisemodel.estimate import estimate_profile
from rawsigma.calib.profile import CameraProfile
from scipy import ndimage as ndi

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PCTS = (1, 5, 50, 95, 99)


def phantom(n: int, peak: float, background: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    ph = np.full((n, n), background, np.float32)
    for _ in range(40):
        cy, cx = rng.uniform(0, n, 2)
        sg = rng.uniform(8, 25)
        ph += rng.uniform(0.05, 1) * peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sg**2))
    return ph


def model_var(p, x):
    x = np.asarray(x, float)
    return p.gain_global * np.maximum(x - p.offset_global, 0) + p.read_noise_global**2


def immerkaer_var(img, level, tol=0.05):
    x = img.astype(np.float64)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)
    r = ndi.convolve(x, k, mode="reflect")
    loc = ndi.uniform_filter(x, 5)
    m = (np.abs(loc - level) < tol * level) & ~ndi.maximum_filter(img >= 65535, 5)
    return float((1.4826 * np.median(np.abs(r[m]))) ** 2 / 36)


def simulated() -> None:
    print("| camera | scene | gain est/true | offset est/true | read noise est/true "
          "| var error at p1, p5, p50, p95, p99 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for kind, peak in (("ccd", 12000), ("scmos", 3000)):
        for bg, label in ((0.0, "dark region"), (300.0, "no dark region"), (1500.0, "bright bg")):
            for seed in (1, 2):
                sensor = SensorModel.preset(kind, shape=(512, 512), seed=0)
                img = sensor.expose(phantom(512, peak, bg, seed), 0.0, rng=seed + 10)
                tp = sensor.true_profile()
                p = estimate_profile(img, tile=32)
                ps = np.percentile(img, PCTS)
                err = model_var(p, ps) / model_var(tp, ps) - 1
                print(
                    f"| {kind} | {label}, seed {seed} | {p.gain_global:.3f}/{tp.gain_global:.3f} "
                    f"| {p.offset_global:.0f}/{tp.offset_global:.0f} "
                    f"| {p.read_noise_global:.2f}/{tp.read_noise_global:.2f} "
                    f"| {', '.join(f'{v:+.0%}' for v in err)} |",
                    flush=True,
                )


def emva() -> None:
    st = tifffile.imread(DATA / "emva1288_ccd12_ptc_roi256.tif")
    for t in (32, 64):
        p = estimate_profile(st, tile=t, bit_depth=12)
        print(f"EMVA 1288 (96 frames, tile {t}): gain {p.gain_global:.4f} DN/e- (ref ≈0.28), "
              f"offset {p.offset_global:.2f} DN (ref ≈15), read noise "
              f"{p.read_noise_global:.2f} DN, "
              f"identifiable {p.provenance['estimate']['identifiable']}")  # fmt: skip


def usiigaci() -> CameraProfile:
    img = tifffile.imread(DATA / "usiigaci_phase_contrast_1fields.tif").reshape(-1, 1024)
    p = estimate_profile(img)
    e = p.provenance["estimate"]
    p1, p50 = np.percentile(img, [1, 50])
    print(f"Usiigaci, defaults: gain {p.gain_global:.3f}, offset {p.offset_global:.0f}, "
          f"read noise {p.read_noise_global:.1f}, identifiable {e['identifiable']}; "
          f"image min {img.min()}, p1 {p1:.0f}, p50 {p50:.0f}")  # fmt: skip
    for name, lev in (("p1", p1), ("p50", p50)):
        print(f"  {name}: model variance {model_var(p, lev):.4g} ADU², empirical "
              f"high-frequency variance {immerkaer_var(img, lev):.4g} ADU²")  # fmt: skip
    return p


def codec_bounds(p_usi: CameraProfile) -> None:
    sensor = SensorModel.preset("scmos", shape=(256, 256), seed=0)
    yy, xx = np.mgrid[:256, :256]
    ph = 5 + 2000 * np.exp(-((yy - 128) ** 2 + (xx - 100) ** 2) / 800.0)
    img = sensor.expose(ph.astype(np.float32), 0.0, rng=3)
    tp = sensor.true_profile()
    usi = tifffile.imread(DATA / "usiigaci_phase_contrast_1fields.tif").reshape(-1, 1024)
    old = CameraProfile.uniform(usi.shape, gain=4.096, offset=11830.0, read_noise=20.0)
    cases = [
        (f"sim sCMOS, profile offset +{d:g} ADU", img,
         CameraProfile.uniform(img.shape, gain=tp.gain_global, offset=tp.offset_global + d,
                               read_noise=tp.read_noise_global))
        for d in (0, 30, 300)
    ] + [("Usiigaci, its default estimate", usi, p_usi),
         ("Usiigaci, offset 11830 ADU (old estimate) + read noise 20", usi, old)]  # fmt: skip
    print("| case | mode | pixels below offset | max abs err / bound "
          "| max abs err / σ below offset | mean err below offset (ADU) | ratio |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, x, prof in cases:
        g, o, r = prof.gain_global, prof.offset_global, prof.read_noise_global
        sig = np.sqrt(g * np.maximum(x.astype(float) - o, 0) + r * r)
        for kw in (dict(step=2), dict(step=2, dither=True), dict(step=1)):
            c = NoiseCodec(prof, maps="global", **kw)
            d = c.encode(x)
            err = c.decode(d).astype(float) - x
            s = kw["step"]
            bound = 0.5 * s * sig + g * s * s / 24 + 1.0
            below = x < o
            zb = float(np.abs(err[below]).max() / r) if below.any() and r > 0 else float("nan")
            mb = float(err[below].mean()) if below.any() else float("nan")
            print(f"| {name} | {c.spec} | {below.mean():.1%} | {np.max(np.abs(err) / bound):.3f} "
                  f"| {zb:.2f} | {mb:+.2f} | {x.nbytes / len(d):.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    simulated()
    emva()
    codec_bounds(usiigaci())
