"""Real data through ``rawsigma tomo reconstruct`` (issue 15): figures and numbers.

Runs the CLI, as a user would, on the files of ``../shared/data`` (MANIFEST.md):

- the tomopy tooth X-ray projections (HDF5 with darks, flats, theta): no options;
- the sarepy 360° neutron sinogram (a TIFF holds no angles: ``--angle-range 0,360
  --include-end``, the angles sarepy's own example uses);
- the OPT zebrafish frames: with no options (no angles: the expected one-line error),
  then frames 0–6 with frame 7 as dark and 8 as flat at assumed angles.

Then checks the centre each run found against an independent search for the sharpest
slice (±``--half-width`` px by 0.25 px, histogram entropy), and writes PNG figures.

    python benchmarks/tomo_real_data.py [--out /tmp/tomo_real] [--figures benchmarks/figures]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(args: list[str]) -> tuple[int, str, float]:
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "rawsigma.cli.main", "tomo", "reconstruct", *args, "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    text = " ".join((res.stdout + res.stderr).split())
    print(f"$ rawsigma tomo reconstruct {' '.join(args)}\n  exit {res.returncode}, "
          f"{wall:.1f} s: {text}")  # fmt: skip
    return res.returncode, text, wall


def sharpness_check(proj, theta, around: float, half_width: float, rows=None):
    from rawsigma.analysis.tomo import sharpest_center

    t = time.perf_counter()
    around = float(np.round(around))  # a grid of its own, not anchored on the found value
    best, centers, score = sharpest_center(
        proj, theta, around=around, half_width=half_width, step=0.25, rows=rows
    )
    print(f"  sharpest slice over {centers[0]:.2f}..{centers[-1]:.2f} (0.25 px): {best:.2f} "
          f"({time.perf_counter() - t:.1f} s)")  # fmt: skip
    return best, centers, score


def figure_slices(path: Path, vol: np.ndarray, titles: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(vol), figsize=(4.2 * len(vol), 4.4), squeeze=False)
    for ax, img, title in zip(axes[0], vol, titles, strict=True):
        lo, hi = np.percentile(img[img != 0], [0.5, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)
    print(f"  figure {path}")


def figure_curves(path: Path, curves: list[tuple[str, np.ndarray, np.ndarray, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (name, c, s, marks) in zip(axes[0], curves, strict=True):
        ax.plot(c, s, "k.-", ms=3)
        for (label, x), col in zip(marks.items(), ["tab:red", "tab:blue", "tab:green"],
                                   strict=False):  # fmt: skip
            ax.axvline(x, color=col, lw=1, label=f"{label} {x:.2f}")
        ax.set_xlabel("centre of rotation (detector px)")
        ax.set_ylabel("sharpness (−entropy)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"  figure {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/tomo_real"))
    ap.add_argument("--figures", type=Path, default=Path(__file__).parent / "figures")
    ap.add_argument("--half-width", type=float, default=12.0)
    a = ap.parse_args()
    from rawsigma.analysis.tomo import fbp
    from rawsigma.analysis.tomo.sources import load_input
    from rawsigma.analysis.tomo.volume_io import read_volume

    a.out.mkdir(parents=True, exist_ok=True)
    a.figures.mkdir(parents=True, exist_ok=True)
    print(f"load {os.getloadavg()}")
    curves = []

    # ---- tooth: HDF5 with darks, flats and theta; no options at all
    tooth = DATA / "tomopy_tooth_xray_projections.h5"
    out = a.out / "tooth.tif"
    out.unlink(missing_ok=True)
    run_cli([str(tooth), "-o", str(out)])
    vol, meta = read_volume(out)
    cen = meta["center_of_rotation"]
    src = load_input([str(tooth)])
    theta = src.angles
    best, c, s = sharpness_check(src.projections, theta, cen["center"], a.half_width)
    curves.append(("tooth (X-ray, 181 angles over 0–179°)", c, s,
                   {"180° correlation": cen["correlation"], "--center auto": cen["center"],
                    "sharpest": best}))  # fmt: skip
    off = fbp(src.projections[:, :1], theta, center=cen["center"] + 10)[0]
    figure_slices(a.figures / "tomo_tooth.png", [vol[0], vol[1], off],
                  [f"tooth row 0, auto centre {cen['center']:.2f}", "tooth row 1",
                   f"row 0 at centre {cen['center'] + 10:.2f} (+10 px)"])  # fmt: skip

    # ---- sarepy: 360° sinogram, angles as sarepy's example (0..360 inclusive)
    sino = DATA / "sarepy_sinogram_360deg_neutron_uint16.tif"
    out = a.out / "sarepy.tif"
    out.unlink(missing_ok=True)
    run_cli([str(sino), "-o", str(out)])  # no angles in a TIFF: the one-line error
    run_cli([str(sino), "--angle-range", "0,360", "--include-end", "-o", str(out)])
    vol, meta = read_volume(out)
    cen = meta["center_of_rotation"]
    src = load_input([str(sino)])
    theta = np.linspace(0, 360, src.projections.shape[0])
    best, c, s = sharpness_check(src.projections, theta, cen["center"], a.half_width)
    curves.append(("sarepy (neutron, 459 angles over 0–360°)", c, s,
                   {"180° correlation": cen["correlation"], "--center auto": cen["center"],
                    "sharpest": best}))  # fmt: skip
    off = fbp(src.projections, theta, center=cen["center"] + 10)[0]
    figure_slices(a.figures / "tomo_sarepy.png", [vol[0], off],
                  [f"sarepy, auto centre {cen['center']:.2f}",
                   f"at centre {cen['center'] + 10:.2f} (+10 px)"])  # fmt: skip
    figure_curves(a.figures / "tomo_centre_sharpness.png", curves)

    # ---- OPT frames: no angles stored
    opt = DATA / "opt_zebrafish_transmission_frames_640.tif"
    out = a.out / "opt.tif"
    out.unlink(missing_ok=True)
    run_cli([str(opt), "-o", str(out)])
    run_cli([f"{opt}[0:7]", "--dark", f"{opt}[7]", "--flat", f"{opt}[8]", "--angle-range",
             "0,360", "-o", str(out)])  # fmt: skip
    if out.exists():
        vol, meta = read_volume(out)
        src = load_input([f"{opt}[0:7]"], dark=f"{opt}[7]", flat=f"{opt}[8]")
        p = src.projections[0:1, :, :][0]
        figure_slices(a.figures / "tomo_opt.png", [p, vol[320]],
                      ["OPT frame 0: −log((I − dark)/(flat − dark))",
                       "slice 320 from 7 views at assumed angles (not meaningful)"])  # fmt: skip
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
