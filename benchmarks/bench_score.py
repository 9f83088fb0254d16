"""End-to-end ``score`` time by stage, and the paper's figures on real images.

1. ``synthetic``: a ``--size``² (default 1024²) simulated sCMOS acquisition of a nuclei
   phantom, 10 replicas, 4 codecs (8bit, jpeg@10, jpeg@100, noise:step=2); the ratio is
   the score's CPU (and wall) time / 15 × one raw segmentation pass with the score's
   own classifier (median of ``--passes``, half before and half after the score), then
   the score's CPU by stage (``score_stages.py``; ``--no-stages`` skips it) and the CPU
   of writing its report.
2. ``features``: runs ``bench_features.py`` (feature bank vs skimage) if present.
3. ``real``: the Usiigaci phase-contrast field and the three BBBC039 fields from the
   shared data folder, with a profile estimated from each image (Usiigaci: gain
   estimated, offset and read noise from the ORCA-Flash4.0 data sheet; see
   ``datasheet_profile``), the same codecs plus
   the held-out replica control; prints ΔA µ/σ and ε per codec as a Markdown table next
   to the paper's Table 1, and writes the reports under ``--out``.

    python benchmarks/bench_score.py [--part synthetic,features,real] [--out DIR]
        [--size 2048] [--passes 8] [--no-stages]
        [--images usiigaci,bbbc039] [--replicas 10] [--tolerance-search jpeg,noise]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CODECS = ["8bit", "jpeg@10", "jpeg@100", "noise:step=2"]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAPER = {  # Table 1 of Pomarico et al. 2023 (microspheres, PC): ΔA µ, σ in px
    "replicas": (0.1, 1.1),
    "8bit": (3.0, 3.4),
    "jpeg@10": (3.1, 3.4),
    "jpeg@100": (2.9, 10.3),
    "noise:step=2": (-0.1, 1.0),  # the paper's DP codec row
}


def _cpu() -> float:
    """Process CPU seconds (user + system, every thread)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load() -> str:
    import os

    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def synthetic(size: int = 1024, n_passes: int = 8, stages: bool = True) -> None:
    """``score`` on the synthetic scene, in a new process (its peak RSS is the run's)."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    code += f"import bench_score; bench_score._synthetic({size}, {n_passes}, {stages})"
    subprocess.run([sys.executable, "-c", code], check=False)


def _pass_times(clf, img: np.ndarray, n: int = 3) -> list[tuple[float, float, float]]:
    """``n`` (wall, CPU, system CPU) times of one raw segmentation pass of ``clf``."""
    import resource

    out = []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t1, c1 = time.perf_counter(), _cpu()
        clf.foreground_probability(img)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out.append((time.perf_counter() - t1, _cpu() - c1, r1.ru_stime - r0.ru_stime))
    return out


def _scene(n: int):
    """The bench's simulated sCMOS nuclei scene: (image, profile, training labels)."""
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.segmentation.annotations import training_labels

    model = SensorModel.preset("scmos", (n, n), seed=0)
    bright, truth = nuclei2d((n, n), n_objects=int(40 * (n / 256) ** 2), rng=0)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(1))
    return img, model.true_profile(), training_labels(truth)


def _score_classifier(img: np.ndarray, lab: np.ndarray, **plan_fields):
    """The classifier ``score_image`` trains (same plan, seed and sample), on 2 threads."""
    from rawsigma.analysis.scoring.per_image import classifier_segmenter
    from rawsigma.analysis.scoring.plans import ScorePlan

    plan = ScorePlan(**plan_fields)
    seed = np.random.SeedSequence(plan.seed).spawn(3)[2]
    _, clf = classifier_segmenter(img, lab, plan, int(seed.generate_state(1)[0]))
    clf.n_jobs = 2  # one pass on the run's 2 threads (score's passes: 1 or 2 threads each)
    return clf


def _synthetic(size: int, n_passes: int = 8, stages: bool = True) -> None:
    """Score ÷ 15 passes, and score's CPU by stage.

    After a 256² warm-up score (kernels loaded) in the same process, one raw
    segmentation pass with score's own classifier (2 threads) is timed ``n_passes``
    times, half before and half after the score; the ratios use the **median** pass
    (the score's 15 passes run under the same load as these, so their typical cost,
    not the least disturbed one, is what the score holds; the minimum is printed too).
    With ``stages``, `score_stages` then runs the score's steps one at a time.
    """
    import resource

    from rawsigma.analysis.scoring.runner import score_image

    fields = dict(codecs=CODECS, n_replicas=10, min_size=5)
    img, prof, lab = _scene(256)
    score_image(img, prof, labels=lab, **fields)  # warm-up
    img, prof, lab = _scene(size)
    clf = _score_classifier(img, lab, **fields)
    clf.foreground_probability(img)  # kernels loaded
    passes = _pass_times(clf, img, n_passes // 2)
    load0 = _load()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t, c = time.perf_counter(), _cpu()
    r = score_image(img, prof, labels=lab, **fields)
    total, cpu = time.perf_counter() - t, _cpu() - c
    sys_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_stime - r0.ru_stime
    load1 = _load()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    passes += _pass_times(clf, img, n_passes - n_passes // 2)
    pw = float(np.median([p[0] for p in passes]))
    pc = float(np.median([p[1] for p in passes]))
    pmin = min(p[1] for p in passes)
    print(f"\n## score, {size}×{size}, 10 replicas, 4 codecs: {total:.1f} s wall, "
          f"{cpu:.1f} s CPU ({sys_cpu:.1f} s system), peak RSS {peak:.2f} GiB "
          f"(load {load0} → {load1})")  # fmt: skip
    print(
        f"{r.n_objects} objects; codecs {', '.join(c.spec for c in r.codecs)}; verdicts "
        + ", ".join(f"{c.spec}: {c.verdict['within_noise']}" for c in r.codecs)
    )
    print("| stage (wall; per-image stages summed over threads) | s |\n|---|---|")
    for k, v in r.timings.items():
        print(f"| {k} | {v:.1f} |")
    print("passes (wall, CPU, of which system): "
          + ", ".join(f"({w:.2f}, {c:.2f}, {s:.2f})" for w, c, s in passes))  # fmt: skip
    print(f"one raw segmentation pass (features + forest, 2 threads), median of "
          f"{len(passes)}: {pw:.2f} s wall, {pc:.2f} s CPU (min {pmin:.2f}); "
          f"score / (15 passes): CPU {cpu / (15 * pc):.3f} (on the min pass "
          f"{cpu / (15 * pmin):.3f}), wall {total / (15 * pw):.2f} "
          f"(target <= 1.2; load {_load()})", flush=True)  # fmt: skip
    if stages:
        import score_stages

        led = score_stages.score_stages(img, prof, lab, **fields)
        print(f"\n### score's CPU by stage (each step on its own; load {_load()})\n")
        print(led.table(pc, cpu))
        w = score_stages.write_cpu(r)
        print(f"\nwriting the results and report (the CLI's next step, not in the score): "
              f"{w:.2f} s CPU; score + writing / (15 passes): CPU {(cpu + w) / (15 * pc):.3f} "
              f"(load {_load()})")  # fmt: skip


def features() -> None:
    bf = Path(__file__).with_name("bench_features.py")
    if not bf.exists():
        print("bench_features.py not found: skipped")
        return
    print("\n## feature bank vs skimage (bench_features.py)")
    subprocess.run([sys.executable, str(bf), "--repeat", "1"], check=False)


# ORCA-Flash4.0 (V2/V3) data sheet: offset 100 ADU, read noise 1.6 e- rms per pixel.
# On-camera 2×2 binning sums four pixels: read noise ×2 (= √4) in e-, and the camera
# reports the offset of a binned pixel as 100 ADU (image minimum 5664 ADU, so no
# pixel contradicts it). The gain is estimated from the image.
ORCA_OFFSET_ADU = 100.0
ORCA_READ_NOISE_E = 1.6 * 2.0


def datasheet_profile(img: np.ndarray, name: str, offset: float, read_noise_e: float):
    """Profile with a known offset (ADU) and read noise (e-), gain estimated.

    The read noise in ADU depends on the gain, so ``estimate_profile`` is iterated
    (read noise = ``read_noise_e`` × estimated gain) until the gain stops changing.
    """
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    gain = 2.0
    for _ in range(20):
        prof = estimate_profile(img, read_noise=read_noise_e * gain, offset=offset, source=name)
        new = prof.gain_global
        if abs(new - gain) < 1e-6 * gain:
            break
        gain = new
    prof.provenance["estimate"]["datasheet"] = (
        f"offset {offset:g} ADU and read noise {read_noise_e:g} e- (x estimated gain) given"
    )
    return prof


def _frames():
    """(name, image, instance labels, profile settings, min_size) of the real images."""
    import tifffile

    us = DATA / "usiigaci_phase_contrast_1fields.tif"
    if us.exists():
        # Whole cells (smallest annotated cell 211 px): components < 50 px are
        # background speckle of the classifier, not cells.
        yield (
            "usiigaci",
            np.squeeze(tifffile.imread(us)),
            np.squeeze(tifffile.imread(DATA / "usiigaci_phase_contrast_1fields_labels.tif")),
            {"offset": ORCA_OFFSET_ADU, "read_noise_e": ORCA_READ_NOISE_E},
            50,
        )
    bb = DATA / "bbbc039_u2os_hoechst_3fields.tif"
    if bb.exists():
        im = tifffile.imread(bb)
        lab = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields_labels.tif")
        for i in range(im.shape[0]):
            yield f"bbbc039 field {i}", im[i], lab[i], None, 5


def real(
    out: Path,
    only: str = "",
    n_replicas: int = 10,
    tolerance: list[str] | None = None,
    estimated_only: bool = False,
    min_size_override: int | None = None,
    centre: str = "observed",
    codecs: list[str] | None = None,
) -> None:
    """Score the shared real images; print the ΔA/ε table and the profiles used.

    ``only``: comma-separated substrings of the image names to run (default all);
    ``estimated_only``: ignore data-sheet values (profile wholly from the image);
    ``min_size_override``: override the per-image minimum object size (px); ``centre``: the
    synthesis centre (``observed`` or ``denoised``); ``codecs``: instead of
    :data:`CODECS` (the held-out replica control is always added).
    """
    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.analysis.reporting.report import write_report
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.analysis.segmentation.annotations import training_labels

    wanted = [w.strip() for w in only.split(",") if w.strip()]
    rows = []
    for name, img, inst, sheet, own_min in _frames():
        min_size = own_min if min_size_override is None else min_size_override
        if wanted and not any(w in name for w in wanted):
            continue
        lab = np.asarray(inst)
        if lab.ndim == 3:
            lab = lab[0]
        if sheet and not estimated_only:
            prof = datasheet_profile(img, name, sheet["offset"], sheet["read_noise_e"])
        else:
            prof = estimate_profile(img, source=name)
        t = time.perf_counter()
        r = score_image(
            img,
            prof,
            labels=training_labels(lab),
            codecs=["replica", *(codecs or CODECS)],
            n_replicas=n_replicas,
            min_size=min_size,
            tolerance_search=tolerance or [],
            centre=centre,
        )
        dt = time.perf_counter() - t
        write_report(r, out / name.replace(" ", "_"), force=True)
        rd = r.replica_delta["area"]
        rows.append((name, "replicas", 1.0, rd["mu"], rd["sigma"], None, None, None, "", dt))
        for c in r.codecs:
            d = c.objects["area"].summary()["delta"] if c.objects else {"mu": np.nan}
            rows.append(
                (
                    name,
                    c.spec,
                    c.ratio,
                    d["mu"],
                    d.get("sigma", np.nan),
                    c.objects["area"].mean if c.objects else np.nan,
                    c.verdict["worst"],
                    c.globals["total_area"]["epsilon"],
                    "within" if c.verdict["within_noise"] else "EXCEEDS",
                    dt,
                )
            )
        e = prof.provenance["estimate"]
        print(
            f"{name}: {r.n_objects} objects (min size {min_size} px, "
            f"{len(np.unique(lab)) - 1} annotated); profile gain {e['gain']:.4g} "
            f"± {e['gain_se']:.2g} ADU/e-, offset {e['offset']:.6g} ADU "
            f"({e['offset_source']}), read noise {e['read_noise']:.3g} ADU "
            f"({e['read_noise_source']}); {dt:.0f} s",
            flush=True,
        )
        for fam, tol in r.tolerance.items():
            pts = ", ".join(
                f"{p['spec']} {p['ratio']:.1f}:1 "
                + ("ok" if p["within_noise"] else f"fail ({p['worst'][0]} {p['worst'][1]:.2f})")
                for p in tol["points"]
                if "ratio" in p
            )
            b = tol["best"]
            best = f"{b['spec']} {b['ratio']:.1f}:1" if b else "none"
            print(f"  tolerance {fam}: best {best}; swept {pts}", flush=True)
    print("\n| image | version | ratio | ΔA µ | ΔA σ | paper ΔA µ/σ | mean ε area | worst "
          "per-object ε | ε total area | verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, spec, ratio, mu, sd, ea, worst, eta, v, _ in rows:
        p = PAPER.get(spec)
        ps = f"{p[0]} / {p[1]}" if p else ""
        w = f"{worst[0]} {worst[1]:.2f}" if worst else ""
        ea_s = f"{ea:.2f}" if ea is not None else ""
        eta_s = f"{eta:.1f}" if eta is not None else ""
        print(f"| {name} | {spec} | {ratio:.1f} | {mu:.2f} | {sd:.2f} | {ps} | {ea_s} | {w} | "
              f"{eta_s} | {v} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", default="synthetic,features,real")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path("bench-score-reports"))
    ap.add_argument("--images", default="", help="real: comma-separated name substrings")
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--tolerance-search", default="", help="real: families, e.g. jpeg,noise")
    ap.add_argument(
        "--estimated-only", action="store_true", help="real: no data-sheet offset/read noise"
    )
    ap.add_argument("--min-size", type=int, default=None, help="real: override min object px")
    ap.add_argument("--centre", default="observed", help="real: synthesis centre")
    ap.add_argument("--codecs", default="", help="real: codec specs instead of the default 4")
    ap.add_argument("--passes", type=int, default=8, help="synthetic: passes timed (median)")
    ap.add_argument(
        "--no-stages", action="store_true", help="synthetic: skip the CPU breakdown by stage"
    )
    a = ap.parse_args()
    parts = a.part.split(",")
    if "synthetic" in parts:
        synthetic(a.size, a.passes, not a.no_stages)
    if "features" in parts:
        features()
    if "real" in parts:
        tol = [t for t in a.tolerance_search.split(",") if t.strip()]
        codecs = [c for c in a.codecs.split(",") if c.strip()] or None
        real(a.out, a.images, a.replicas, tol, a.estimated_only, a.min_size, a.centre, codecs)


if __name__ == "__main__":
    main()
