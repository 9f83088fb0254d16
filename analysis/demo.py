"""``rawsigma demo``: the whole method end to end, with bundled data only.

1. **Calibrate** the simulated sCMOS camera: dark frames and a few flat-field levels
   through the simulated bench rig when it is available (``rawsigma.acquire``), else
   straight from the camera model with the same estimators (``rawsigma.calib``).
2. **Simulated acquisition**: the calibrated camera images a phantom of nuclei whose
   instance labels are known; the classifier is trained on eroded cores / background
   rings of the truth; the measured profile is used for scoring.
3. **Real image**: the bundled BBBC039 crop (CC0) with a profile estimated from the image
   itself (no calibration exists for that camera) and its expert labels.

Both are scored with ``8bit,jpeg@10,jpeg@100,noise:step=2`` plus the held-out replica
control and written as two reports under one directory with an ``index.html``.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.analysis.phantoms.scenes2d import nuclei2d
from rawsigma.analysis.segmentation.annotations import training_labels
from rawsigma.errors import OutputExistsError

__all__ = ["DEMO_CODECS", "DemoResult", "calibrate_simulated", "run_demo"]

DEMO_CODECS = ["replica", "8bit", "jpeg@10", "jpeg@100", "noise:step=2"]
Progress = Callable[[str, int, int], None]
Calibrator = Callable[[tuple[int, int], int, bool], tuple[Any, Any, str]]


@dataclass
class DemoResult:
    """Where the demo wrote its reports, and the headline verdicts."""

    out_dir: Path
    index: Path
    reports: dict[str, Path]
    verdicts: dict[str, dict[str, bool]]
    calibration: str
    seconds: float
    results: dict[str, Any] = field(default_factory=dict, repr=False)


def _moments_calibration(model: Any, n_frames: int, fractions, rng) -> Any:
    """Dark + flat levels from the camera model, folded by the calib estimators."""
    from rawsigma.calib.moments import PixelMoments

    exposure = 0.01
    dark = PixelMoments(model.shape)
    for _ in range(n_frames):
        dark.add(model.expose(0.0, exposure, rng))
    levels = []
    for f in fractions:
        lv = PixelMoments(model.shape)
        ph = model.photons_for_fraction(f, exposure)
        for _ in range(n_frames):
            lv.add(model.expose(ph, exposure, rng))
        levels.append(lv)
    identity = {
        "camera": "SimCamera",
        "model": model.name,
        "serial": f"sim-{model.seed}",
        "bit_depth": model.bit_depth,
    }
    plan = {"source": "demo", "n_frames": n_frames, "fractions": list(fractions)}
    try:
        from rawsigma.calib.build import build_profile

        return build_profile(dark, levels, identity, plan, source="rawsigma demo")
    except ImportError:
        pass
    from rawsigma import fileio
    from rawsigma.calib.fit import fit_pixel_maps
    from rawsigma.calib.profile import CameraIdentity, CameraProfile

    maps = fit_pixel_maps(dark, levels, max_adu=model.max_adu)
    gain = np.where(np.isfinite(maps.gain) & (maps.gain > 0), maps.gain, np.nanmedian(maps.gain))
    return CameraProfile(
        offset=maps.offset.astype(np.float32),
        gain=gain.astype(np.float32),
        read_noise=maps.read_noise.astype(np.float32),
        identity=CameraIdentity(bit_depth=model.bit_depth, **identity),
        defects=maps.defects,
        plan=plan,
        provenance=fileio.provenance(estimated=False, source="demo calibration"),
    )


def calibrate_simulated(
    shape: tuple[int, int] = (192, 192),
    seed: int = 0,
    n_frames: int = 24,
    fractions: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4),
    model: Any = None,
) -> tuple[Any, Any, str]:
    """Calibrate the simulated sCMOS camera (or ``model``, a ``SensorModel``) quickly.

    Returns
    -------
    profile : CameraProfile
    model : SensorModel
        The simulated camera, to image phantoms with.
    method : str
        How the profile was measured (for the report).
    """
    from rawsigma.acquire.sensor_model import SensorModel

    if model is None:
        model = SensorModel.preset("scmos", shape, seed=seed)
    shape = model.shape
    rng = np.random.default_rng(seed + 1)
    prof = _moments_calibration(model, n_frames, fractions, rng)
    cam = "sCMOS" if model.name == "scmos" else model.name
    method = (
        f"simulated {cam} {shape[1]}×{shape[0]}: {n_frames} dark frames and {n_frames} frames at "
        f"each of {len(fractions)} flat levels, per-pixel photon-transfer fit (rawsigma.calib)"
    )
    return prof, model, method


def _available(specs: list[str]) -> tuple[list[str], list[str]]:
    """Split codec specs into those that can be built here and those that cannot."""
    from rawsigma.analysis.codecs.registry import parse_codecs
    from rawsigma.calib.profile import CameraProfile

    dummy = CameraProfile.uniform((8, 8), 2.0, 100.0, 2.0)
    ok, missing = [], []
    for s in specs:
        try:
            if s != "replica":
                parse_codecs(s, profile=dummy)
            ok.append(s)
        except Exception:  # noqa: BLE001 - optional codec not installed / not landed
            missing.append(s)
    return ok, missing


#: Background annotation ring (px from the nearest object) used with ground-truth
#: instances: wide enough to show the classifier the far background, not only the


def _index_html(res: DemoResult, summaries: dict[str, str]) -> str:
    rows = []
    for name, path in res.reports.items():
        v = res.verdicts[name]
        cells = ", ".join(
            f"{html.escape(k)}: {'within noise' if ok else 'EXCEEDS noise'}" for k, ok in v.items()
        )
        rows.append(
            f"<li><a href='{html.escape(path.parent.name)}/report.html'>{html.escape(name)}</a>"
            f" — {html.escape(summaries[name])}<br><small>{cells}</small></li>"
        )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rawsigma demo</title></head>"
        "<body style='font-family:sans-serif;max-width:900px;margin:auto'>"
        "<h1>rawsigma demo</h1><ul>" + "".join(rows) + "</ul>"
        f"<p>Calibration: {html.escape(res.calibration)}. Total {res.seconds:.0f} s.</p>"
        "<p>Real image: BBBC039v1 crop (CC0). We used image set BBBC039v1 (Caicedo et al., "
        "Cytometry Part A, 2019), available from the Broad Bioimage Benchmark Collection "
        "(Ljosa et al., Nature Methods, 2012).</p></body></html>"
    )


def run_demo(
    out: str | os.PathLike = "rawsigma-demo",
    *,
    force: bool = False,
    fast: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    calibrate: Calibrator | None = None,
) -> DemoResult:
    """Run the demo and write ``out/index.html``, ``out/simulated/``, ``out/real/``.

    Parameters
    ----------
    out : path-like
        Output directory.
    force : bool
        Replace an earlier demo's results in ``out``.
    fast : bool
        Smaller images, fewer replicas and trees (for tests), same steps.
    seed : int
        Root seed of the phantom, the camera and the scoring.
    progress : callable(stage, done, total), optional
    calibrate : callable(shape, seed, fast) -> (profile, SensorModel, description), optional
        How to calibrate the simulated camera. The CLI passes the bench path (the
        simulated Micro-Manager rig and the sweep runner of ``rawsigma.acquire``, which
        ``analysis`` may not import); default :func:`calibrate_simulated` (the same
        camera model folded straight into the ``rawsigma.calib`` estimators).
    """
    from rawsigma.analysis.data import demo_image, demo_labels
    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.analysis.reporting.report import RESULT_FILES, write_report
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.fileio import atomic_write

    t0 = time.perf_counter()
    outp = Path(out)
    subdirs = {"simulated": outp / "simulated", "real": outp / "real"}
    taken = [str(d / f) for d in subdirs.values() for f in RESULT_FILES if (d / f).exists()]
    if (taken or (outp / "index.html").exists()) and not force:
        raise OutputExistsError(
            f"{outp}: holds an earlier demo's results; use --force or choose --out"
        )
    say: Progress = progress or (lambda s, d, t: None)
    shape = (128, 128) if fast else (256, 256)
    n_rep = 4 if fast else 10
    codecs, missing = _available(DEMO_CODECS)
    plan = ScorePlan(codecs=codecs, n_replicas=n_rep, seed=seed, min_size=5)

    from rawsigma.calib.moments_kernel import warm_up

    warm_up(say)  # first run on this machine: compile the accumulators, announced
    say("calibrating camera", 0, 1)
    if calibrate is None:
        prof, model, method = calibrate_simulated(shape, seed, n_frames=12 if fast else 24)
    else:
        prof, model, method = calibrate(shape, seed, fast)
    say("calibrating camera", 1, 1)

    bright, truth = nuclei2d(shape, n_objects=10 if fast else 40, rng=seed)
    bg, peak = 40.0, 900.0  # photons per pixel: dim nuclei on a dim background
    img = model.expose(bg + peak * bright, 0.01, np.random.default_rng(seed + 2))
    real = demo_image()
    real_prof = estimate_profile(real)

    results, reports, verdicts, summaries = {}, {}, {}, {}
    jobs = [
        ("simulated", img, prof, truth, "simulated sCMOS acquisition of a nuclei phantom"),
        ("real", real, real_prof, demo_labels().astype(np.int32), "BBBC039 U2OS nuclei crop"),
    ]
    for name, image, p, inst, desc in jobs:

        def stage(s: str, d: int, t: int, _n: str = name) -> None:
            say(f"{_n}: {s}", d, t)

        r = score_image(image, p, labels=training_labels(inst), plan=plan, progress=stage)
        r.provenance["demo"] = {"dataset": desc, "calibration": method if name == "simulated"
                                else "profile estimated from the image"}  # fmt: skip
        if name == "real":
            r.notes.append(
                "Real image: BBBC039v1 (CC0). We used image set BBBC039v1 (Caicedo et al., "
                "Cytometry Part A, 2019), available from the Broad Bioimage Benchmark "
                "Collection (Ljosa et al., Nature Methods, 2012). Its profile is estimated "
                "from the image alone (no calibration exists for that camera)."
            )
        else:
            r.notes.append(f"Simulated camera calibrated in the demo: {method}.")
        if missing:
            r.notes.append(f"Codecs not available in this installation: {', '.join(missing)}.")
        reports[name] = write_report(r, subdirs[name], force=force)
        verdicts[name] = {c.spec: bool(c.verdict["within_noise"]) for c in r.codecs}
        summaries[name] = f"{desc}, {r.n_objects} objects"
        results[name] = r
    res = DemoResult(
        outp, outp / "index.html", reports, verdicts, method, time.perf_counter() - t0, results
    )
    with atomic_write(res.index, force=True) as tmp:
        tmp.write_text(_index_html(res, summaries), encoding="utf-8")
    return res
