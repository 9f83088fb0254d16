"""`rawsigma tomo score` run as a user runs it: simulated OPT and real OPT frames.

Parts (``--part sim,scale,real``):

- ``sim``: the simulated OPT acquisition of ``bench_opt.py`` (32 rows × 64 detector
  pixels, 128 angles over 360°, 20 000 photons at the peak, 4 specks of dust, the
  simulated sCMOS calibrated on the simulated bench) written as files
  (``proj.tif``, ``profile.h5``, the phantom's plaques ``truth.tif``), then the CLI
  with default options; the same forced chunked (``--slab 8``): same verdicts and
  per-plaque table; and ``--segmenter forest --labels truth.tif --instances``. The
  raw segmentation of each is compared with the phantom's plaques (matched within
  3 voxels; volume ratio).
- ``scale``: a larger acquisition (the exact camera profile), ``--no-operators``, in
  memory (``--chunks off``) and chunked (``--memory-budget``), at two volume heights:
  peak RSS (``/usr/bin/time``) and wall time; the verdicts must agree.
- ``real``: the 7 transmission frames of ``opt_zebrafish_transmission_frames_640.tif``
  (``--estimate-profile --offset 240``, angles even over 360° as nothing else is
  known), a centre crop of 64 rows × 256 px with default options and forced chunked;
  ``--real-full``: all 640 × 640 (the CLI then chooses the chunked path itself: 640
  slices of 640², an in-memory estimate of ~20 GB).

Prints Markdown for ``benchmarks/RESULTS.md``; load average next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cli(args: list[str], log: Path) -> dict:
    """Run ``rawsigma ARGS`` under /usr/bin/time; wall s, peak RSS MB, rc, output tail."""
    exe = [sys.executable, "-m", "rawsigma.cli.main"] if os.environ.get("RS_MODULE") else [
        str(Path(sys.executable).with_name("rawsigma"))
    ]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "RSS_KB %M", *exe, *args],
                       capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    log.write_text(p.stdout + p.stderr)
    rss = [ln for ln in p.stderr.splitlines() if ln.startswith("RSS_KB")]
    tail = (p.stdout + p.stderr).strip().splitlines()[-8:]
    mb = int(rss[-1].split()[1]) / 1024 if rss else float("nan")
    return {"wall": wall, "rss_mb": mb, "rc": p.returncode, "tail": tail}


def load() -> str:
    return "load " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def truth_match(out: Path, truth: np.ndarray) -> str:
    """Raw segmentation of a run (maps.h5) against the phantom's plaques."""
    from rawsigma.analysis.measurement.matching import match_objects
    from rawsigma.analysis.measurement.morphometry3d import measure3d
    from rawsigma.analysis.scoring.score_maps import read_score_maps

    lab = read_score_maps(out)["raw_labels"]
    t, s = measure3d(truth), measure3d(lab)
    xyz = [np.column_stack([d["z"], d["y"], d["x"]]) for d in (t, s)]
    m = match_objects(*xyz, 3.0)
    ratio = s["volume"][m.other_index] / t["volume"][m.ref_index]
    tp = len(m.ref_index)
    f1 = 2 * tp / (len(t["label"]) + len(s["label"]))
    return (f"{len(s['label'])} found, {tp}/{len(t['label'])} true plaques matched, F1 {f1:.2f}, "
            f"volume found/true median {np.median(ratio):.2f} (IQR "
            f"{np.percentile(ratio, 25):.2f}–{np.percentile(ratio, 75):.2f})")  # fmt: skip


def verdict_rows(out: Path, label: str) -> list[str]:
    res = json.loads((out / "results.json").read_text())
    rows = []
    for c in res["codecs"]:
        v = c["verdict"]
        w = v.get("worst") or ["–", float("nan")]
        g = c["globals"]
        rows.append(
            f"| {label} | {c['spec']} | {c['compression_ratio']:.2f} | "
            f"{'within noise' if v['within_noise'] else '**NOT within noise**'} | {w[0]} "
            f"{float(w[1]):.2f} | {c['match']['n_matched']}/{res['n_objects_raw']} | "
            f"{float(g['count']['epsilon']):.2f} | {float(g['total_volume']['epsilon']):.2f} |"
        )
    return rows


def part_sim(work: Path) -> None:
    import tifffile
    from rawsigma.analysis.demo import calibrate_simulated
    from rawsigma.analysis.phantoms.opt_organ import simulate_opt

    s_cam = np.random.SeedSequence(0).spawn(3)[1]
    prof, model, _ = calibrate_simulated((32, 64), seed=int(s_cam.generate_state(1)[0] % 2**31))
    acq = simulate_opt((32, 64), 128, rng=0, profile=prof, model=model, peak_photons=20000.0,
                       n_debris=4)  # fmt: skip
    tifffile.imwrite(work / "proj.tif", acq.projections)
    prof.save(work / "profile.h5")
    tifffile.imwrite(work / "truth.tif", acq.phantom.plaques.astype(np.int32))
    base = ["tomo", "score", str(work / "proj.tif"), "--profile", str(work / "profile.h5")]
    runs = {
        "default": [],
        "chunked --slab 8": ["--slab", "8"],
        "--segmenter forest": [
            "--segmenter",
            "forest",
            "--labels",
            str(work / "truth.tif"),
            "--instances",
        ],  # fmt: skip
    }
    print(f"\n## sim: simulated OPT {acq.projections.shape}, {load()}\n")
    rows, info = [], []
    for name, extra in runs.items():
        out = work / name.split()[0].strip("-")
        r = cli([*base, "-o", str(out), "--force", *extra], work / f"{out.name}.log")
        res = json.loads((out / "results.json").read_text()) if r["rc"] == 0 else {}
        info.append(
            f"- `{name}`: rc {r['rc']}, wall {r['wall']:.0f} s, peak RSS {r['rss_mb']:.0f} MB, "
            f"{res.get('processing', {}).get('path')}; segmenter: {res.get('segmenter')}; "
            f"vs truth: {truth_match(out, acq.phantom.plaques) if r['rc'] == 0 else r['tail']}"
        )
        rows += verdict_rows(out, name) if r["rc"] == 0 else []
    print("\n".join(info))
    print("\n| run | version | ratio | verdict | worst | matched | ε count | ε total volume |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    a = (work / "default" / "objects.csv").read_text().splitlines()[1:]
    b = (work / "chunked" / "objects.csv").read_text().splitlines()[1:]
    print(f"\nobjects.csv default vs chunked (without the provenance line): "
          f"{'identical' if a == b else 'DIFFERENT'} ({len(a) - 1} rows)")  # fmt: skip


def part_scale(work: Path, rows_list: tuple[int, ...], det: int, angles: int) -> None:
    import tifffile
    from rawsigma.analysis.phantoms.opt_organ import simulate_opt

    print(f"\n## scale: {angles} angles × ROWS × {det}, `--no-operators`, {load()}\n")
    print("| volume | in-memory estimate | path | wall | peak RSS | verdicts |")
    print("|---|---|---|---|---|---|")
    for rows in rows_list:
        acq = simulate_opt((rows, det), angles, rng=0, peak_photons=20000.0, n_debris=4)
        d = work / f"scale{rows}"
        d.mkdir(exist_ok=True)
        tifffile.imwrite(d / "proj.tif", acq.projections)
        acq.profile.save(d / "profile.h5")
        base = ["tomo", "score", str(d / "proj.tif"), "--profile", str(d / "profile.h5"),
                "--no-operators", "--force"]  # fmt: skip
        for name, extra in (
            ("memory", ["--chunks", "off"]),
            ("chunked", ["--memory-budget", "64"]),
        ):
            out = d / name
            r = cli([*base, "-o", str(out), *extra], d / f"{name}.log")
            if r["rc"]:
                print(f"| {rows}×{det}² | | {name} failed rc {r['rc']} | | | {r['tail']} |")
                continue
            res = json.loads((out / "results.json").read_text())
            ver = ", ".join(f"{k} {v}" for k, v in res["verdicts"].items())
            print(f"| {rows}×{det}² ({4 * rows * det * det / 2**20:.0f} MB) | "
                  f"{res['processing']['why'].split('estimate ')[1].split(',')[0]} | "
                  f"{res['processing']['path']} | {r['wall']:.0f} s | {r['rss_mb']:.0f} MB | "
                  f"{ver} |")  # fmt: skip


def part_real(work: Path, full: bool = False) -> None:
    """The 7 transmission frames, a centre crop of 64 rows × 256 px (default options, then
    forced chunked with slabs of 16: the same table), or (``full``) all 640 × 640."""
    import tifffile

    src = DATA / "opt_zebrafish_transmission_frames_640.tif"
    frames = tifffile.imread(src)[:7]
    name = "opt7.tif" if full else "opt7_crop.tif"
    tifffile.imwrite(work / name, frames if full else frames[:, 288:352, 192:448])
    print(f"\n## real: {src.name} frames 0–6 ({name}), {load()}\n")
    base = ["tomo", "score", str(work / name), "--estimate-profile", "--offset", "240", "--force",
            "--few-views"]  # 7 views: refused by default  # fmt: skip
    runs = {"default": []} if full else {"default": [], "chunked --slab 16": ["--slab", "16"]}
    for label, extra in runs.items():
        out = work / f"real_{label.split()[0]}"
        r = cli([*base, "-o", str(out), *extra], work / f"{out.name}.log")
        print(f"- `{label}`: rc {r['rc']}, wall {r['wall']:.0f} s, peak RSS {r['rss_mb']:.0f} MB")
        print("\n".join("    " + t for t in r["tail"]))
        if r["rc"] == 0:
            res = json.loads((out / "results.json").read_text())
            print(f"    processing: {res['processing']}; {res['n_objects_raw']} objects")
    if not full and all(
        (work / f"real_{k}" / "objects.csv").exists() for k in ("default", "chunked")
    ):
        a, b = ((work / f"real_{k}" / "objects.csv").read_text().splitlines()[1:]
                for k in ("default", "chunked"))  # fmt: skip
        print(f"\nobjects.csv default vs chunked: {'identical' if a == b else 'DIFFERENT'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="sim,scale,real")
    ap.add_argument("--out", default="/tmp/tomo_score_runs")
    ap.add_argument("--scale-rows", default="32,96")
    ap.add_argument("--scale-det", type=int, default=160)
    ap.add_argument("--scale-angles", type=int, default=160)
    ap.add_argument("--real-full", action="store_true", help="all 640 × 640 (slow)")
    args = ap.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    parts = args.part.split(",")
    if "sim" in parts:
        part_sim(work)
    if "scale" in parts:
        rows = tuple(int(x) for x in args.scale_rows.split(","))
        part_scale(work, rows, args.scale_det, args.scale_angles)
    if "real" in parts:
        part_real(work, args.real_full)


if __name__ == "__main__":
    main()
