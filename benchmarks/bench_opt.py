"""Issue 15: the paper's OPT experiment on the simulated acquisition, in one run.

1. ``main``: the organ phantom (24 plaques of radius 1.5–4 voxels, 4 bright specks of
   dust in the mounting medium) imaged at ``--angles`` angles over 360° through the
   simulated sCMOS calibrated on the simulated bench
   (:func:`rawsigma.analysis.phantoms.opt_organ.simulate_opt`), scored with
   :func:`rawsigma.analysis.scoring.tomo_runner.score_tomo`: codecs ``replica``,
   ``8bit``, ``jpeg@100``, ``noise:step=2`` on the projections, 10 replicas; the
   verdict table and the operator-ε tables (Fig. 4f,g) on the projections and the
   reconstruction; the report is written to ``--out``.
2. ``range``: the 8-bit verdicts on plaques (``8bit`` min–max and ``8bit:range=full``,
   ImageJ's 0–65535) against the dynamic range and the photon budget of the
   projections (no specks / 4 specks ×40 the plaque brightness; peak 20 000 or 5 000
   photons), operator ε off.
3. ``real``: operator ε on REAL OPT camera frames (``../shared/data/
   opt_zebrafish_transmission_frames_640.tif``: 7 transmission projections of a
   zebrafish larva, 12-bit; centre crop 256×256), profile estimated from the 7 frames
   with the offset from the file's dark frame; codecs per frame; 2-D operators per
   frame. (7 frames with undocumented angles: no reconstruction.)
4. ``null``: held-out replicas of new acquisitions (seeds 1..``--seeds``): how often the
   calibrated verdict calls a raw-equivalent set "not within noise".

Times are printed as ratios to the reconstruction of one volume in the same run.

    python benchmarks/bench_opt.py [--rows 32] [--det 64] [--angles 128] [--seeds 4]
        [--part main,range,real,null] [--out /tmp/bench_opt]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _verdict_rows(r) -> list[str]:
    out = [
        "| version | ratio | verdict | worst (robust ε) | matched | ε count | ε total volume |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in r.versions:
        w = v.verdict["worst"] or ["–", float("nan")]
        g = v.globals
        out.append(
            f"| {v.spec} | {v.ratio:.2f} | "
            f"{'within noise' if v.verdict['within_noise'] else '**NOT within noise**'} | "
            f"{w[0]} {w[1]:.2f} | {v.match['n_matched']}/{r.n_objects} | "
            f"{g['count']['epsilon']:.2f} | {g['total_volume']['epsilon']:.2f} |"
        )
    return out


def _acq(args, seed: int, profile=None, model=None, peak_photons: float = 20000.0, **kw):
    from rawsigma.analysis.phantoms.opt_organ import simulate_opt

    return simulate_opt(
        (args.rows, args.det),
        args.angles,
        rng=seed,
        profile=profile,
        model=model,
        peak_photons=peak_photons,
        **kw,
    )


def _camera(args) -> tuple:
    """The simulated sCMOS calibrated on the simulated bench, seeded as `simulate_opt`
    seeds its default camera for ``rng=0``."""
    from rawsigma.analysis.demo import calibrate_simulated

    s_cam = np.random.SeedSequence(0).spawn(3)[1]
    seed = int(s_cam.generate_state(1)[0] % 2**31)
    return calibrate_simulated((args.rows, args.det), seed=seed)


def part_main(args, camera: tuple) -> tuple:
    from rawsigma.analysis.reporting.tomo_report import write_tomo_report
    from rawsigma.analysis.scoring.fbp_adapter import FBP_SOURCE, fbp
    from rawsigma.analysis.scoring.operators import operator_table_markdown
    from rawsigma.analysis.scoring.tomo_runner import score_tomo

    profile, model, calibration = camera
    t0 = time.perf_counter()
    acq = _acq(args, 0, profile, model, n_debris=4)
    t_sim = time.perf_counter() - t0
    p = acq.projections.astype(np.float32)
    t0 = time.perf_counter()
    fbp((p - acq.profile.offset) / acq.profile.gain, acq.angles_deg)
    t_rec = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = score_tomo(acq.projections, acq.angles_deg, acq.profile, n_replicas=10)
    t_score = time.perf_counter() - t0
    write_tomo_report(r, args.out, force=True)
    truth = acq.phantom.radii.size
    print(
        f"## main: {acq.projections.shape} projections, volume {r.volume.shape}, "
        f"{r.n_objects} plaques segmented of {truth} in the phantom; FBP {FBP_SOURCE}"
    )
    print(f"profile: {calibration}")
    print(f"segmenter: {r.segmenter}\n")
    print("\n".join(_verdict_rows(r)))
    for dom, op in r.operators.items():
        print(f"\n### operator ε on the {dom}: fraction |ε| > 1 / median |ε|\n")
        print(operator_table_markdown({v: (op, v) for v in op.table}))
    print(
        f"\ntimes (ratio to one FBP of {t_rec:.2f} s): simulate {t_sim / t_rec:.1f}, "
        f"whole score {t_score / t_rec:.1f}; stages "
        + ", ".join(f"{k} {v / t_rec:.1f}" for k, v in r.timings.items() if k != "total")
    )
    return acq, t_rec


def part_range(args, acq0) -> None:
    from rawsigma.analysis.scoring.tomo_runner import score_tomo

    print("\n## range: 8-bit verdict on plaques vs the projections' dynamic range\n")
    print(
        "| specks × brightness, peak photons | plaques | codec | "
        "8-bit step / σ at median tissue pixel | "
        "verdict | worst | ε count | ε total volume | per-plaque volume ε mean ± std "
        "(null spread per plaque) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, b, peak in ((0, 40.0, 20000.0), (4, 40.0, 20000.0), (4, 40.0, 5000.0)):
        acq = _acq(args, 0, acq0.profile, acq0.model, peak, n_debris=n, debris_brightness=b)
        codecs = ("8bit", "8bit:range=full")
        r = score_tomo(
            acq.projections, acq.angles_deg, acq.profile, n_replicas=10, codecs=codecs,
            operators=False,
        )  # fmt: skip
        p = acq.projections.astype(np.float64)
        tissue = np.median(p[p > np.percentile(p, 60)])
        sig = float(np.sqrt(acq.profile.variance(np.float32(tissue)).mean()))
        steps = {"8bit": np.mean([(f.max() - f.min()) / 256 for f in p]), codecs[1]: 256.0}
        loo = f"{r.null['volume'].unit_se:.2f}" if "volume" in r.null else "–"
        for v in r.versions:
            w = v.verdict["worst"] or ["–", float("nan")]
            vol = v.objects["volume"]
            print(
                f"| {n} × {b:g}, {peak:g} | {r.n_objects} | {v.spec} | {steps[v.spec] / sig:.2f} | "
                f"{'within noise' if v.verdict['within_noise'] else 'NOT within noise'} | "
                f"{w[0]} {w[1]:.2f} | {v.globals['count']['epsilon']:.2f} | "
                f"{v.globals['total_volume']['epsilon']:.2f} | "
                f"{vol.mean:.2f} ± {vol.std:.2f} ({loo}) |"
            )


def part_real(args) -> None:
    from pathlib import Path

    import tifffile
    from rawsigma.analysis.codecs.registry import parse_codecs
    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.analysis.noisemodel.synthesis import synthesize
    from rawsigma.analysis.scoring.operators import operator_epsilon, operator_table_markdown

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = path / "opt_zebrafish_transmission_frames_640.tif"
    if not path.is_file():
        print(f"\n## real: {path} not found, skipped")
        return
    frames = tifffile.imread(path)
    crop = (slice(192, 448), slice(192, 448))
    proj = np.ascontiguousarray(frames[:7][(slice(None), *crop)])
    offset = float(np.median(frames[7][crop]))
    prof = estimate_profile(proj, offset=offset, bit_depth=12, tile=32, source=str(path))
    rng = np.random.default_rng(0)
    reps = np.stack([synthesize(f, prof, 11, rng) for f in proj], axis=1)  # (11, 7, H, W)
    versions = {"replica": reps[0].astype(np.float32)}
    for spec in ("8bit", "jpeg@100", "noise:step=2"):
        (codec,) = parse_codecs(spec, profile=prof)
        dec, nb = [], 0
        for f in proj:
            data = codec.encode(f)
            nb += len(data)
            dec.append(np.asarray(codec.decode(data), np.float32))
        versions[spec] = np.stack(dec)
        print(f"  {spec}: {proj.size * 2 / nb:.2f}:1")
    op = operator_epsilon(
        proj.astype(np.float32), [r.astype(np.float32) for r in reps[1:]], versions,
        stack=True, domain="real OPT projections",
    )  # fmt: skip
    g = float(np.median(prof.gain))
    print(f"\n## real: operator ε on 7 real OPT frames (crop 256², offset {offset:.0f} DN from "
          f"the dark frame, estimated gain {g:.3f} DN/e-, read noise "
          f"{float(np.median(prof.read_noise)):.2f} DN)")  # fmt: skip
    print(operator_table_markdown({v: (op, v) for v in versions}))


def part_null(args, acq0) -> None:
    from rawsigma.analysis.scoring.tomo_runner import score_tomo

    calls = []
    for seed in range(1, args.seeds + 1):
        acq = _acq(args, seed, acq0.profile, acq0.model, n_debris=4)
        r = score_tomo(
            acq.projections,
            acq.angles_deg,
            acq.profile,
            n_replicas=10,
            codecs=("replica",),
            operators=False,
            seed=seed,
        )
        v = r.versions[0]
        calls.append(v.verdict["within_noise"])
        w = v.verdict["worst"] or ["–", float("nan")]
        print(
            f"  seed {seed}: {r.n_objects} plaques, held-out replica "
            f"{'within noise' if v.verdict['within_noise'] else 'NOT within noise'} "
            f"(worst {w[0]} {w[1]:.2f})"
        )
    print(f"\n## null: held-out replica within noise in {sum(calls)}/{len(calls)} new acquisitions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--det", type=int, default=64)
    ap.add_argument("--angles", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--part", default="main,range,real,null")
    ap.add_argument("--out", default="/tmp/bench_opt")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average, 2 shared cores)")
    parts = set(args.part.split(","))
    t0 = time.perf_counter()
    camera = _camera(args)
    print(f"camera calibration: {time.perf_counter() - t0:.1f} s")
    acq, _ = part_main(args, camera) if "main" in parts else (_acq(args, 0, *camera[:2]), 0)
    if "range" in parts:
        part_range(args, acq)
    if "real" in parts:
        part_real(args)
    if "null" in parts:
        part_null(args, acq)


if __name__ == "__main__":
    main()
