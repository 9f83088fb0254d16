"""Issue 15: the paper's OPT experiment on the simulated acquisition, in one run.

Default parts (``paper,operators,budget,real``), at the paper's acquisition scaled down
(:func:`rawsigma.analysis.phantoms.opt_organ.paper_opt`: ORCA-Flash4.0 calibrated on the
simulated bench, 16-bit, ``--rows 32 --det 96``, 1200 angles per 1024 detector pixels over
360°, brightest pixel at ``--fill 0.8`` of the full well, no specks of dust), scored with
:func:`rawsigma.analysis.scoring.tomo_runner.score_tomo` (10 replicas):

1. ``paper``: ``--paper-seeds`` (10) acquisitions: held-out replica (false alarms),
   ``8bit`` (min–max per projection), ``8bit:range=fixed`` with frame 0's min–max for
   every frame (ImageJ's 8-bit conversion of a 16-bit stack), ``8bit:range=full``,
   ``jpeg@100``, ``noise:step=2`` (power): rates of the plaque verdict and of the global
   flags, total-volume change; 8-bit step and error against the noise in the projections
   and the reconstruction.
2. ``operators``: seed 0 with the operator ε (Fig. 4f,g); the report goes to ``--out``.
3. ``budget``: the 8-bit versions against the photon budget (fill 0.8, 0.2, 0.05) and the
   plaque brightness (bright, dim), ``--budget-seeds`` (5) acquisitions each.
4. ``real``: operator ε on REAL OPT camera frames (``../shared/data/
   opt_zebrafish_transmission_frames_640.tif``: 7 transmission projections of a
   zebrafish larva, 12-bit; centre crop 256×256), profile estimated from the 7 frames
   with the offset from the file's dark frame; codecs per frame; 2-D operators per
   frame. (7 frames with undocumented angles: no reconstruction.)

The first configuration (generic sCMOS, 4 bright specks of dust) stays available:
``main`` (verdict and operator tables, report), ``range`` (8-bit against specks and
budget), ``null`` (held-out replicas of ``--seeds`` new acquisitions); its RESULTS tables
come from ``--part main,range,null --det 64 --angles 128 --seeds 10``.

    python benchmarks/bench_opt.py [--rows 32] [--det 96] [--angles N] [--fill 0.8]
        [--paper-seeds 10] [--budget-seeds 5] [--part paper,operators,budget,real]
        [--out /tmp/bench_opt]
"""

from __future__ import annotations

import argparse
import os
import sys
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


# ----------------------------------------------------------------------------- the paper
FIRST = "8bit:range=fixed (frame 0)"  # ImageJ: a 16-bit stack takes its first slice's range
PAPER_CODECS = ("replica", "8bit", FIRST, "8bit:range=full", "jpeg@100", "noise:step=2")
EIGHT = ("8bit", FIRST, "8bit:range=full")
_GLOBALS = ("count", "total_volume", "load")


def _spec(spec: str, proj: np.ndarray) -> str:
    """The codec spec of ``FIRST``: frame 0's min..max, applied to every frame."""
    if spec != FIRST:
        return spec
    return f"8bit:range=fixed,min={int(proj[0].min())},max={int(proj[0].max())}"


def _paper_camera(args) -> tuple:
    """The ORCA-Flash4.0 model seeded as ``paper_opt(rng=0)`` seeds it, calibrated on the
    simulated bench (24 darks + 5 flat levels, per-pixel photon-transfer fit)."""
    from rawsigma.analysis.demo import calibrate_simulated
    from rawsigma.analysis.phantoms.opt_organ import orca_flash4

    s_cam = np.random.SeedSequence(0).spawn(3)[1]
    model = orca_flash4((args.rows, args.det), int(s_cam.generate_state(1)[0] % 2**31))
    return calibrate_simulated(model=model, seed=0)


def _paper_acq(args, seed: int, camera: tuple, **kw):
    from rawsigma.analysis.phantoms.opt_organ import paper_opt

    return paper_opt((args.rows, args.det), args.angles, rng=seed, profile=camera[0],
                     model=camera[1], **kw)  # fmt: skip


def _error_ratios(acq, seed: int) -> dict[str, tuple[float, float, float]]:
    """rms(codec − raw) / rms(replica − raw): projections (organ shadow), reconstruction
    (organ), reconstruction after a Gaussian σ 4 (what survives smoothing)."""
    from rawsigma.analysis.codecs.registry import parse_codecs
    from rawsigma.analysis.noisemodel.synthesis import synthesize
    from rawsigma.analysis.scoring.fbp_adapter import fbp
    from scipy import ndimage as ndi

    p, prof = acq.projections, acq.profile
    rep = np.stack([synthesize(f, prof, 1, np.random.default_rng([seed, i]))[0]
                    for i, f in enumerate(p)])  # fmt: skip
    shadow = acq.photons > 0.1 * acq.photons.max()
    organ = acq.phantom.organ

    def rec(x):
        return fbp((x.astype(np.float32) - prof.offset) / prof.gain, acq.angles_deg)

    v_raw, v_rep = rec(p), rec(rep)
    d_rep = (rep.astype(np.float64) - p, v_rep - v_raw, ndi.gaussian_filter(v_rep - v_raw, 4))
    out = {}
    for spec in EIGHT:
        (c,) = parse_codecs(_spec(spec, p), profile=prof)
        dec = np.stack([c.decode(c.encode(f)) for f in p])
        v = rec(dec) - v_raw
        d = (dec.astype(np.float64) - p, v, ndi.gaussian_filter(v, 4))
        masks = (shadow, organ, organ)
        out[spec] = tuple(
            float(np.sqrt(np.mean(a[m] ** 2) / np.mean(b[m] ** 2)))
            for a, b, m in zip(d, d_rep, masks, strict=True)
        )
    return out


def _steps(acq) -> dict[str, float]:
    """8-bit step / σ at the median pixel of the organ's shadow (projections)."""
    p = acq.projections.astype(np.float64)
    shadow = acq.photons > 0.1 * acq.photons.max()
    tissue = float(np.median(p[shadow]))
    sig = float(np.sqrt(acq.profile.variance(np.float32(tissue)).mean()))
    first = (p[0].max() - p[0].min() + 1) / 256
    clip = p > p[0].max() + first / 2  # beyond code 255 of frame 0's range
    return {"clip_frames": 100 * float(clip.any(axis=(1, 2)).mean()),
            "clip_px": 100 * float(clip.mean()),
            "8bit": float(np.mean([(f.max() - f.min() + 1) / 256 for f in p])) / sig,
            FIRST: float(first) / sig, "8bit:range=full": 256.0 / sig}  # fmt: skip


def _pct(g: dict, key: str) -> float:
    """Change (``value``) or replica σ (``sigma_raw``) of a global, % of the raw value."""
    if not g["raw"]:
        return float("nan")
    x = g["value"] - g["raw"] if key == "value" else g[key]
    return 100.0 * x / g["raw"]


def _score_seed(args, seed: int, camera: tuple, codecs, **kw) -> dict:
    from rawsigma.analysis.scoring.tomo_runner import score_tomo

    acq = _paper_acq(args, seed, camera, **kw)
    specs = [_spec(c, acq.projections) for c in codecs]
    r = score_tomo(acq.projections, acq.angles_deg, acq.profile, n_replicas=10, codecs=specs,
                   operators=False, seed=seed)  # fmt: skip
    rows = {}
    for name, v in zip(codecs, r.versions, strict=True):
        flags = [f for f in v.verdict.get("global_flags", []) if f.split(":")[-1] in _GLOBALS]
        rows[name] = {
            "within": bool(v.verdict["within_noise"]),
            "flags": flags,
            "worst": v.verdict["worst"] or ["–", float("nan")],
            "eps": {g: v.globals[g]["epsilon"] for g in _GLOBALS},
            "ratio": v.ratio,
            "dtv": _pct(v.globals["total_volume"], "value"),
            "sig_tv": _pct(v.globals["total_volume"], "sigma_raw"),
        }
    return {"n": r.n_objects, "truth": int(acq.phantom.radii.size), "rows": rows, "acq": acq,
            "peak_e": acq.info["peak_electrons"]}  # fmt: skip


def _rate_rows(results: list[dict], codecs) -> list[str]:
    out = []
    n = len(results)
    for spec in codecs:
        rs = [r["rows"][spec] for r in results]
        flagged = sum(not x["within"] for x in rs)
        gflag = sum(bool(x["flags"]) for x in rs)
        either = sum((not x["within"]) or bool(x["flags"]) for x in rs)
        med = {g: np.median([abs(x["eps"][g]) for x in rs]) for g in _GLOBALS[:2]}
        dtv = [x["dtv"] for x in rs]
        out.append(
            f"| {spec} | {np.mean([x['ratio'] for x in rs]):.2f} | {flagged}/{n} | {gflag}/{n} | "
            f"{either}/{n} | "
            + " | ".join(f"{med[g]:.2f}" for g in _GLOBALS[:2])
            + f" | {np.mean(dtv):+.2f} ({min(dtv):+.1f} … {max(dtv):+.1f}) | "
            f"{np.median([x['sig_tv'] for x in rs]):.2f} |"
        )
    return out


RATE_HEAD = [
    "| version | ratio | plaque verdict NOT within noise | global flag (|ε| ≥ 3: count, "
    "total volume, load) | either | median |ε| count | median |ε| total volume (= load) | "
    "total volume change, % of raw: mean (min … max) | replica σ of total volume, % |",
    "|---|---|---|---|---|---|---|---|---|",
]


def part_paper(args, camera: tuple) -> None:
    """≥ 10 seeds at the paper's conditions: false alarms and power, error ratios."""
    print(f"\n## paper: {args.paper_seeds} acquisitions at the paper's conditions "
          f"({args.rows}×{args.det}, {args.angles} angles, fill {args.fill})\n")  # fmt: skip
    results, ratios, steps = [], [], []
    for seed in range(args.paper_seeds):
        t0 = time.perf_counter()
        res = _score_seed(args, seed, camera, PAPER_CODECS, fill=args.fill)
        results.append(res)
        ratios.append(_error_ratios(res["acq"], seed))
        steps.append(_steps(res["acq"]))
        line = ", ".join(
            f"{k} {'ok' if v['within'] else 'EXCEEDS'}"
            + (f" [{' '.join(v['flags'])}]" if v["flags"] else "")
            for k, v in res["rows"].items()
        )
        print(f"  seed {seed}: {res['n']}/{res['truth']} plaques, peak {res['peak_e']:.0f} e-: "
              f"{line} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    print()
    print("\n".join(RATE_HEAD + _rate_rows(results, PAPER_CODECS)))
    print("\n8-bit step and error against the noise (median over seeds):\n")
    print("| version | step / σ, median pixel of the organ's shadow | rms error / rms noise, "
          "projections | reconstruction | reconstruction after Gaussian σ 4 |")  # fmt: skip
    print("|---|---|---|---|---|")
    for spec in EIGHT:
        e = np.median([r[spec] for r in ratios], axis=0)
        st = np.median([s[spec] for s in steps])
        print(f"| {spec} | {st:.2f} | {e[0]:.2f} | {e[1]:.2f} | {e[2]:.2f} |")
    cf, cp = (np.median([s[k] for s in steps]) for k in ("clip_frames", "clip_px"))
    print(f"\n{FIRST}: frames brighter than frame 0 clip at code 255: {cf:.0f} % of the "
          f"frames, {cp:.3f} % of all pixels (median over seeds)")  # fmt: skip


def part_budget(args, camera: tuple) -> None:
    """The 8-bit verdict against the photon budget and the plaque contrast."""
    codecs = ("replica", *EIGHT)
    print(f"\n## budget: 8-bit against the photon budget and plaque brightness "
          f"({args.budget_seeds} seeds each)\n")  # fmt: skip
    print("| fill (peak e-) | plaques (fluorescence) | version | step / σ | plaque verdict NOT "
          "within | global flag | either | median |ε| count | median |ε| total volume | "
          "total volume change % | replica σ % |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for fill in (0.8, 0.2, 0.05):
        for name, lev in (("bright 0.7–1.0", (0.7, 1.0)), ("dim 0.16–0.24", (0.16, 0.24))):
            res = [_score_seed(args, s, camera, codecs, fill=fill, plaque_level=lev)
                   for s in range(args.budget_seeds)]  # fmt: skip
            st = {k: np.median([_steps(r["acq"])[k] for r in res]) for k in codecs[1:]}
            for spec, row in zip(codecs, _rate_rows(res, codecs), strict=True):
                cells = row.split(" | ")
                s = f"{st[spec]:.2f}" if spec in st else "–"
                print(
                    f"| {fill:g} ({res[0]['peak_e']:.0f}) | {name} | {spec} | {s} | "
                    + " | ".join(cells[2:])
                )
            sys.stdout.flush()


def part_operators(args, camera: tuple) -> None:
    """Operator ε (Fig. 4f,g) of one acquisition at the paper's conditions; report."""
    from rawsigma.analysis.reporting.tomo_report import write_tomo_report
    from rawsigma.analysis.scoring.operators import operator_table_markdown
    from rawsigma.analysis.scoring.tomo_runner import score_tomo

    acq = _paper_acq(args, 0, camera, fill=args.fill)
    t0 = time.perf_counter()
    r = score_tomo(acq.projections, acq.angles_deg, acq.profile, n_replicas=10,
                   codecs=[_spec(c, acq.projections) for c in PAPER_CODECS])  # fmt: skip
    write_tomo_report(r, args.out, force=True)
    print(f"\n## operators: seed 0 at the paper's conditions, {r.n_objects} plaques "
          f"({time.perf_counter() - t0:.0f} s; report in {args.out})\n")  # fmt: skip
    print("\n".join(_verdict_rows(r)))
    for dom, op in r.operators.items():
        print(f"\n### operator ε on the {dom}: fraction |ε| > 1 / median |ε|\n")
        print(operator_table_markdown({v: (op, v) for v in op.table}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--det", type=int, default=96)
    ap.add_argument("--angles", type=int, default=None, help="default: det·1200/1024")
    ap.add_argument("--fill", type=float, default=0.8)
    ap.add_argument("--paper-seeds", type=int, default=10)
    ap.add_argument("--budget-seeds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=4, help="null part")
    ap.add_argument("--part", default="paper,operators,budget,real")
    ap.add_argument("--out", default="/tmp/bench_opt")
    args = ap.parse_args()
    if args.angles is None:
        args.angles = max(2, round(args.det * 1200 / 1024))
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average, 2 shared cores)")
    parts = set(args.part.split(","))
    t0 = time.perf_counter()
    if parts & {"paper", "operators", "budget"}:
        camera = _paper_camera(args)
        print(f"camera: {camera[2]} ({time.perf_counter() - t0:.1f} s)")
        for name, fn in (("paper", part_paper), ("operators", part_operators),
                         ("budget", part_budget)):  # fmt: skip
            if name in parts:
                fn(args, camera)
    if parts & {"main", "range", "null"}:  # the first, sCMOS + specks configuration
        camera = _camera(args)
        acq, _ = part_main(args, camera) if "main" in parts else (_acq(args, 0, *camera[:2]), 0)
        if "range" in parts:
            part_range(args, acq)
        if "null" in parts:
            part_null(args, acq)
    if "real" in parts:
        part_real(args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
