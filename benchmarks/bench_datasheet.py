"""Issue 11 figures: one-level calibration, dark current and the EMVA 1288 data sheet.

Builds four profiles and their data sheets (HTML + PNG) in ``OUT`` (default
``/tmp/rawsigma_datasheet``):

- ``sim_full``: simulated sCMOS (256x256), 10 levels + 3 around saturation, 100
  frames each, photons known, plus dark stacks at 10/100/1000 ms (dark current);
- ``sim_one``: the same camera, one flat level (50 % of saturation), 200 flat + 200
  dark frames;
- ``emva_full``: the shared EMVA 1288 reference frames, all 24 levels;
- ``emva_one``: the same, one level (level_index 20: a flat pair and a dark pair).

Prints the accuracy against the simulator's truth and the EMVA K, and the time of
the one-level fit relative to the full fit (same run). Run:
``python benchmarks/bench_datasheet.py [OUT]``.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.calib.build import build_profile
from rawsigma.calib.darkcurrent import attach_dark_current, fit_dark_current
from rawsigma.calib.moments import PixelMoments
from rawsigma.calib.sheet import write_datasheet
from rawsigma.calib.simsweep import accumulate_sweep
from rawsigma.calib.stacks import calibrate_from_stacks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXP = 0.01


def _darks(cam: SensorModel, exposures: tuple[float, ...], frames: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for t in exposures:
        pm = PixelMoments(cam.shape)
        for _ in range(frames // 10):
            pm.add(np.stack([cam.expose(0, t, rng) for _ in range(10)]))
        out.append(pm)
    return out


def sim_profiles(out: Path) -> None:
    cam = SensorModel.preset("scmos", (256, 256), seed=11)
    g = cam.gain.astype(np.float64)
    sat = cam.photons_for_fraction(1.0, EXP)
    photons = [*(sat * 0.9 * np.arange(1, 11) / 10), sat * 1.0, sat * 1.05, sat * 1.1]
    t0 = time.perf_counter()
    sw = accumulate_sweep(
        cam.expose, cam.shape, photons, frames=100, dark_frames=100, exposure_s=EXP, rng=1
    )
    t_acq = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = build_profile(
        sw.dark,
        sw.levels,
        {"camera": "simulated sCMOS", "exposure_ms": 1000 * EXP},
        max_adu=cam.max_adu,
        photons=sw.photons,
    )
    t_full = time.perf_counter() - t0
    exposures = (0.01, 0.1, 1.0)
    dc = fit_dark_current(_darks(cam, exposures, 100, 2), exposures)
    full = attach_dark_current(full, dc)
    truth = cam.dark_current * g
    normal = ~cam.hot & (cam.defects == 0)
    rel = dc.rate / truth - 1
    print(
        f"sim_full: K {full.emva['K']:.4g} ± {full.emva['K_se']:.2g} (true median "
        f"{np.median(g):.4g}); LE {full.emva['LE']:.3g} %; eta {full.emva['eta']:.3g} "
        f"(true {cam.qe:.3g}); mu_e_sat {full.emva['mu_e_sat']:.4g} e- (full well "
        f"{cam.full_well:g})"
    )
    print(
        f"  dark current: median signed rel. error {100 * np.median(rel[normal]):+.2f} % "
        f"(normal pixels, median |err| {100 * np.median(np.abs(rel[normal])):.1f} %), "
        f"hot pixels {100 * np.median(rel[cam.hot]):+.2f} % (|err| "
        f"{100 * np.median(np.abs(rel[cam.hot])):.2f} %); z std "
        f"{np.std(((dc.rate - truth) / dc.rate_se)[normal]):.3f}"
    )
    print(
        f"  hot pixels: truth {int(cam.hot.sum())}, found {int(dc.hot.sum())}, "
        f"both {int((dc.hot & cam.hot).sum())}"
    )
    full.save(out / "sim_full.h5", force=True)
    write_datasheet(
        full,
        out / "sim_full.html",
        png_dir=out / "sim_full",
        force=True,
        source="simulated sCMOS, full sweep",
    )

    ph = cam.photons_for_fraction(0.5, EXP)
    sw1 = accumulate_sweep(
        cam.expose, cam.shape, [ph], frames=200, dark_frames=200, exposure_s=EXP, rng=3
    )
    t0 = time.perf_counter()
    one = build_profile(
        sw1.dark,
        sw1.levels,
        {"camera": "simulated sCMOS", "exposure_ms": 1000 * EXP},
        max_adu=cam.max_adu,
        photons=[ph],
    )
    t_one = time.perf_counter() - t0
    sel = (cam.defects == 0) & one.good
    r = one.gain[sel] / g[sel] - 1
    z = (one.gain[sel] - g[sel]) / one.gain_se[sel]
    print(
        f"sim_one (200 flat + 200 dark): gain median rel. error {100 * np.median(r):+.3f} %, "
        f"median |err| {100 * np.median(np.abs(r)):.2f} %, z std {np.std(z):.3f}; "
        f"K {one.emva['K']:.4g} ± {one.emva['K_se']:.2g}; flagged "
        f"{100 * np.mean(one.defects != 0):.2f} %"
    )
    print(
        f"  fit time one level / full sweep (13 levels): {t_one / t_full:.2f} "
        f"(acquisition of the full simulated sweep {t_acq:.1f} s)"
    )
    one.save(out / "sim_one.h5", force=True)
    write_datasheet(
        one,
        out / "sim_one.html",
        png_dir=out / "sim_one",
        force=True,
        source="simulated sCMOS, one level",
    )


def emva_profiles(out: Path) -> None:
    tif, table = DATA / "emva1288_ccd12_ptc_roi256.tif", DATA / "emva1288_ccd12_ptc_roi256.csv"
    if not tif.exists():
        print("shared EMVA data not found; skipped")
        return
    full = calibrate_from_stacks(tif, table)
    full.save(out / "emva_full.h5", force=True)
    write_datasheet(
        full,
        out / "emva_full.html",
        png_dir=out / "emva_full",
        force=True,
        source="EMVA 1288 reference set 001, 24 levels",
    )
    e = full.emva
    print(
        f"emva_full: K {e['K']:.4g} ± {e['K_se']:.2g}, sigma_d {e['sigma_d']:.3g} e-, "
        f"DSNU {e['DSNU1288']:.3g} e-, PRNU {e['PRNU1288']:.3g} %, LE {e['LE']:.3g} %, "
        f"gain map {full.provenance['gain_map']}"
    )
    frames = tifffile.imread(tif)
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lv in sorted({int(r["level_index"]) for r in rows}):
            sel = [i for i, r in enumerate(rows) if int(r["level_index"]) == lv]
            t, c = Path(tmp) / f"l{lv}.tif", Path(tmp) / f"l{lv}.csv"
            tifffile.imwrite(t, frames[sel], photometric="minisblack")
            cols = ["kind", "level_index", "exposure_ns", "photons_per_pixel"]
            with open(c, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=cols)
                w.writeheader()
                for i in sel:
                    w.writerow({k: rows[i][k] for k in cols})
            try:
                p = calibrate_from_stacks(t, c)
            except Exception as exc:  # noqa: BLE001 - saturated levels are refused
                ks[lv] = type(exc).__name__
                continue
            ks[lv] = p.emva["K"]
            if lv == 20:
                p.save(out / "emva_one.h5", force=True)
                write_datasheet(
                    p,
                    out / "emva_one.html",
                    png_dir=out / "emva_one",
                    force=True,
                    source="EMVA 1288 reference set 001, level 20",
                )
                print(
                    f"emva_one (level 20, 2 flat + 2 dark frames): K {p.emva['K']:.4g} ± "
                    f"{p.emva['K_se']:.2g} ({100 * (p.emva['K'] / 0.28 - 1):+.2f} % of 0.28)"
                )
    good = {k: v for k, v in ks.items() if isinstance(v, float)}
    dev = np.array([v / 0.28 - 1 for v in good.values()])
    print(
        f"  one level at each of {len(good)} unsaturated levels: K/0.28 - 1 from "
        f"{100 * dev.min():+.1f} to {100 * dev.max():+.1f} %; within 3 %: "
        f"{int(np.sum(np.abs(dev) < 0.03))}; refused (saturated): "
        f"{[k for k, v in ks.items() if not isinstance(v, float)]}"
    )


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rawsigma_datasheet")
    out.mkdir(parents=True, exist_ok=True)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min), outputs in {out}")
    sim_profiles(out)
    emva_profiles(out)


if __name__ == "__main__":
    main()
