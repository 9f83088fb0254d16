"""Calibration and power of the calibrated verdict (issue 9).

Runs ``score_image`` many times with different seeds and counts how often each version
is called "exceeds noise":

1. ``sim``: the simulated sCMOS (``SensorModel.preset("scmos")``) imaging a new random
   phantom per seed (dim nuclei + saturated beads, the demo scene), true profile.
   Versions: ``replica`` (held-out raw-equivalent replica: the null control, must pass
   ≥ 95 %), ``jpeg@100`` and ``8bit`` (power).
2. ``real``: crops of the real images in ``../shared/data`` (three BBBC039 fields,
   Usiigaci), profile estimated from the whole field as ``rawsigma score
   --estimate-profile`` does, sparse annotations derived from the shared instance
   labels (``--instances``: eroded cores + background ring); the seed changes the
   synthesis, the control replica and the classifier. Versions: ``replica``,
   ``jpeg@100``, ``8bit``; plus ``bbbc039 field 0 + bright specks``: the dim field with
   a 2×2 speck of saturated pixels (4095 DN, e.g. debris or a hot cluster), so that the
   min–max 8-bit range is set by four pixels and the 8-bit step grows to ≈ 16 DN.
3. ``imagej``: BBBC039 field 0 converted to 8 bits the way ImageJ does when its
   "16-bit range" is 16-bit (display range 0–65535: an 8-bit step of 256 DN on a
   12-bit image, far above σ); ``replica``, ``8bit`` and that conversion
   (``8bit:range=full``, a codec every user has).

Speed on 2 shared cores: crops (sim 128×128, real 192×192 or as given), random forest
with ``--trees`` trees (default 10 instead of the preset's 100; the null statistic does
not depend on the forest size), 10 replicas (the statistic's law depends on n).

4. ``table``: the user's path on the whole real images: ``rawsigma score IMG
   --estimate-profile --labels SCRIBBLES --codecs replica,8bit,jpeg@10,jpeg@100,
   noise:step=2 --out DIR`` with default options, where SCRIBBLES are written by
   :func:`scribbles` from the shared instance labels the way a user would annotate
   (a 3-px stroke through the core of every second object, a few background strokes);
   prints a Table-1-like Markdown table from each ``results.json``.

    python benchmarks/bench_verdict.py [--part sim,real,imagej,table] [--seeds-sim 50]
        [--seeds-real 20] [--trees 10] [--crop 192] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CODECS = ["replica", "jpeg@100", "8bit"]


def _run(img, prof, lab, seed: int, trees: int, codecs=CODECS) -> dict:
    from rawsigma.analysis.scoring.runner import score_image

    r = score_image(img, prof, labels=lab, codecs=codecs, n_replicas=10, seed=seed,
                    n_estimators=trees, workers=2)  # fmt: skip
    out = {"n_objects": r.n_objects, "min_size": r.plan.min_size}
    for c in r.codecs:
        v = c.verdict
        out[c.spec] = {
            "exceeds": not v["within_noise"],
            "paper_exceeds": not v["paper"]["within_noise"],
            "worst": v["worst"],
            "p_fw": v.get("worst_p_fw"),
            "step_over_sigma": (c.quantisation or {}).get("step_over_sigma"),
        }
    return out


def _rates(name: str, runs: list[dict], codecs=CODECS) -> list[str]:
    rows = []
    n = len(runs)
    objs = [r["n_objects"] for r in runs]
    for spec in codecs:
        got = [r[spec] for r in runs if spec in r]
        if not got:
            continue
        ex = sum(g["exceeds"] for g in got)
        px = sum(g["paper_exceeds"] for g in got)
        sos = [g["step_over_sigma"] for g in got if g["step_over_sigma"] is not None]
        extra = f"step/σ {np.median(sos):.2f}" if sos else ""
        kind = "within noise" if spec == "replica" else "flagged"
        rate = (len(got) - ex) / len(got) if spec == "replica" else ex / len(got)
        prate = (len(got) - px) / len(got) if spec == "replica" else px / len(got)
        rows.append(
            f"| {name} | {n} | {min(objs)}–{max(objs)} | {spec} | {kind} | "
            f"**{100 * rate:.0f} %** | {100 * prate:.0f} % | {extra} |"
        )
    return rows


def sim(n_seeds: int, trees: int, size: int = 128) -> tuple[list[dict], float]:
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.segmentation.annotations import training_labels

    runs, t0 = [], time.perf_counter()
    for s in range(n_seeds):
        model = SensorModel.preset("scmos", (size, size), seed=1000 + s)
        n_obj = int(np.random.default_rng(s).integers(8, 16))
        bright, truth = nuclei2d((size, size), n_objects=n_obj, rng=2000 + s)
        img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(3000 + s))
        runs.append(_run(img, model.true_profile(), training_labels(truth), s, trees))
        print(f"  sim seed {s}: {runs[-1]['n_objects']} objects, "
              + ", ".join(f"{k} {'X' if runs[-1][k]['exceeds'] else 'ok'}" for k in CODECS),
              flush=True)  # fmt: skip
    return runs, time.perf_counter() - t0


def _estimate(img: np.ndarray, name: str):
    from rawsigma.analysis.noisemodel.estimate import estimate_profile

    tile = 64 if min(img.shape) >= 256 else 32  # as `rawsigma score --estimate-profile`
    return estimate_profile(img, tile=tile, source=name)


def _crop_with_objects(lab: np.ndarray, crop: int) -> tuple[slice, slice]:
    """The crop window (crop×crop) holding the most labelled pixels (coarse search)."""
    h, w = lab.shape
    best, where = -1, (0, 0)
    for y in range(0, max(h - crop, 0) + 1, max(crop // 4, 1)):
        for x in range(0, max(w - crop, 0) + 1, max(crop // 4, 1)):
            n = int(np.count_nonzero(lab[y : y + crop, x : x + crop]))
            if n > best:
                best, where = n, (y, x)
    y, x = where
    return slice(y, y + crop), slice(x, x + crop)


def real_images(crop: int):
    """(name, image crop, profile crop, sparse annotations) of the shared real images."""
    import tifffile
    from rawsigma.analysis.segmentation.annotations import training_labels

    bb = DATA / "bbbc039_u2os_hoechst_3fields.tif"
    if bb.exists():
        im = tifffile.imread(bb)
        lab = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields_labels.tif")
        for i in range(im.shape[0]):
            prof = _estimate(im[i], f"bbbc039[{i}]")
            sy, sx = _crop_with_objects(lab[i], crop)
            roi = (sx.start, sy.start, sx.stop - sx.start, sy.stop - sy.start)
            yield (f"bbbc039 field {i}", im[i][sy, sx], prof.crop(roi, relative=True),
                   training_labels(lab[i][sy, sx]))  # fmt: skip
    us = DATA / "usiigaci_phase_contrast_1fields.tif"
    if us.exists():
        img = np.squeeze(tifffile.imread(us))
        lab = np.squeeze(tifffile.imread(DATA / "usiigaci_phase_contrast_1fields_labels.tif"))
        prof = _estimate(img, "usiigaci")
        c = max(crop, 256)  # whole cells are large: a bigger crop
        sy, sx = _crop_with_objects(lab, c)
        roi = (sx.start, sy.start, c, c)
        yield "usiigaci", img[sy, sx], prof.crop(roi, relative=True), training_labels(lab[sy, sx])


def specked(img: np.ndarray, lab: np.ndarray, value: int = 4095) -> np.ndarray:
    """Copy of ``img`` with a 2×2 speck at ``value`` in the background (sets the 8-bit max)."""
    out = img.copy()
    ys, xs = np.nonzero(lab == 1)
    k = len(ys) // 2
    y, x = min(ys[k], img.shape[0] - 2), min(xs[k], img.shape[1] - 2)
    out[y : y + 2, x : x + 2] = value
    return out


def imagej(n_seeds: int, trees: int, crop: int) -> list[str]:
    """BBBC039 field 0 converted the way ImageJ does with the 16-bit display range."""
    spec = "8bit:range=full"  # ImageJ's "16-bit range: 16-bit" (0-65535)
    codecs = ["replica", "8bit", spec]
    rows = []
    for name, img, prof, lab in real_images(crop):
        if name != "bbbc039 field 0":
            continue
        runs = [_run(img, prof, lab, s, trees, codecs) for s in range(n_seeds)]
        rows += _rates(f"{name}, ImageJ 16-bit range ({img.shape[0]}×{img.shape[1]})", runs,
                       codecs)  # fmt: skip
    return rows


def real(n_seeds: int, trees: int, crop: int) -> list[str]:
    rows = []
    for name, img, prof, lab in real_images(crop):
        cases = [(name, img, CODECS)]
        if name == "bbbc039 field 0":
            cases.append((f"{name} + bright speck", specked(img, lab), ["replica", "8bit"]))
        for cname, im, codecs in cases:
            runs, t0 = [], time.perf_counter()
            for s in range(n_seeds):
                runs.append(_run(im, prof, lab, s, trees, codecs))
            dt = time.perf_counter() - t0
            print(f"  {cname}: {n_seeds} seeds in {dt:.0f} s", flush=True)
            rows += _rates(f"{cname} ({im.shape[0]}×{im.shape[1]})", runs, codecs)
    return rows


def scribbles(instances: np.ndarray, every: int = 2, seed: int = 0) -> np.ndarray:
    """Sparse user-like annotations: strokes through object cores and the background.

    Foreground (2): for every ``every``-th object of ≥ 30 px, a 3-px-wide horizontal stroke
    through its centroid row, kept inside the object eroded by 2 px. Background (1):
    3-px-wide horizontal strokes every 24 rows, kept where the pixel is 3–20 px from
    any object (what a user scribbles between cells).
    """
    from scipy import ndimage as ndi

    lab = np.asarray(instances)
    out = np.zeros(lab.shape, np.uint8)
    obj = lab > 0
    dist = ndi.distance_transform_edt(~obj)
    rows = np.zeros(lab.shape, bool)
    off = int(np.random.default_rng(seed).integers(0, 24))
    for r in range(off, lab.shape[0], 24):
        rows[r : r + 3] = True
    out[rows & (dist > 3) & (dist <= 20)] = 1
    # users scribble on objects they can see: not on fragments cut by the image edge
    sizes = np.bincount(lab.ravel())
    ids = [i for i in np.unique(lab[obj]) if sizes[i] >= 30][::every]
    slices = ndi.find_objects(lab.astype(np.int64))
    for i in ids:
        sl = slices[int(i) - 1]
        if sl is None:
            continue
        m = lab[sl] == i
        core = ndi.binary_erosion(m, iterations=2)
        if not core.any():
            core = m
        cy = int(round(np.nonzero(core)[0].mean()))
        stroke = np.zeros_like(core)
        stroke[max(cy - 1, 0) : cy + 2] = True
        out[sl][core & stroke] = 2
    return out


TABLE_CODECS = "replica,8bit,jpeg@10,jpeg@100,noise:step=2"


def table(out: Path, only: str = "") -> None:
    """Run the CLI on each whole real image; print the Table-1-like rows."""
    import json
    import subprocess
    import sys

    import tifffile

    out.mkdir(parents=True, exist_ok=True)
    items = []
    bb = DATA / "bbbc039_u2os_hoechst_3fields.tif"
    if bb.exists():
        im = tifffile.imread(bb)
        lab = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields_labels.tif")
        for i in range(im.shape[0]):
            items.append((f"bbbc039 field {i}", im[i], lab[i]))
    us = DATA / "usiigaci_phase_contrast_1fields.tif"
    if us.exists():
        items.append((
            "usiigaci",
            np.squeeze(tifffile.imread(us)),
            np.squeeze(tifffile.imread(DATA / "usiigaci_phase_contrast_1fields_labels.tif")),
        ))  # fmt: skip
    rows = [
        "| image | version | ratio | ΔA µ | ΔA σ | verdict | worst (robust ε) | p_fw | "
        "null quantile (area) | paper: worst mean ε | paper rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, img, inst in items:
        if only and not name.startswith(only):
            continue
        key = name.replace(" ", "_")
        ip, lp, od = out / f"{key}.tif", out / f"{key}_scribbles.tif", out / key
        tifffile.imwrite(ip, img)
        sc = scribbles(inst)
        tifffile.imwrite(lp, sc)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "rawsigma.cli.main", "score", str(ip),
               "--estimate-profile", "--labels", str(lp), "--codecs", TABLE_CODECS,
               "--out", str(od), "--force"]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        dt = time.perf_counter() - t0
        print(f"{name}: exit {p.returncode} in {dt:.0f} s\n{p.stderr[-3000:]}", flush=True)
        if p.returncode:
            continue
        r = json.loads((od / "results.json").read_text())
        info = r.get("objects_info", {})
        rd = r["replicas"]["delta"]["area"]
        rows.append(
            f"| {name} ({r['n_objects_raw']} objects ≥ {info.get('min_size')} px, "
            f"{info.get('n_regions', '?')} scribbled objects) | replicas | 1.0 | "
            f"{rd['mu']:.2f} | {rd['sigma']:.2f} | | | | | | |"
        )
        for c in r["codecs"]:
            v = c["verdict"]
            da = c["objects"].get("area", {}).get("delta", {})
            ta = c["objects"].get("area", {}).get("test", {})
            pw = v.get("paper", {}).get("worst", ["", float("nan")])
            rows.append(
                f"| | {c['spec']} | {c['compression_ratio']:.1f} | {_num(da.get('mu'))} | "
                f"{_num(da.get('sigma'))} | {'within' if v['within_noise'] else '**EXCEEDS**'}"
                f" | {v['worst'][0]} {_num(v['worst'][1])} | {_num(v.get('worst_p_fw'), 3)} | "
                f"{_num(ta.get('null_quantile'), 3)} | {pw[0]} {_num(pw[1])} | "
                f"{'within' if v['paper']['within_noise'] else 'EXCEEDS'} |"
            )
            if c.get("quantisation"):
                print("   ", c["quantisation"]["text"])
        for n in r.get("notes", []):
            print("   note:", n)
    print("\n".join(rows))


def _num(x, nd: int = 2) -> str:
    if isinstance(x, int | float) and np.isfinite(x):
        return f"{x:.{nd}f}"
    return str(x) if x is not None else "–"


HEAD = (
    "| scene | runs | objects | version | rate of | measured | paper rule | |\n"
    "|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="sim,real")
    ap.add_argument("--seeds-sim", type=int, default=50)
    ap.add_argument("--seeds-real", type=int, default=20)
    ap.add_argument("--trees", type=int, default=10)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--out", type=Path, default=Path("bench-verdict-out"))
    ap.add_argument("--images", default="", help="table: only images whose name starts so")
    a = ap.parse_args()
    parts = {p.strip() for p in a.part.split(",")}
    rows: list[str] = []
    t0 = time.perf_counter()
    if "sim" in parts:
        runs, dt = sim(a.seeds_sim, a.trees)
        print(f"sim: {len(runs)} runs in {dt:.0f} s")
        rows += _rates("simulated sCMOS, 128×128, new phantom per seed", runs)
    if "real" in parts:
        rows += real(a.seeds_real, a.trees, a.crop)
    if "imagej" in parts:
        rows += imagej(a.seeds_real, a.trees, a.crop)
    if "table" in parts:
        table(a.out, a.images)
    if rows:
        print("\n" + HEAD)
        print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; trees {a.trees}, 10 replicas; "
          f"'measured' = calibrated verdict, 'paper rule' = every |mean ε| < 1")  # fmt: skip


if __name__ == "__main__":
    main()
