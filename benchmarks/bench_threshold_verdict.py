"""Verdict with threshold plug-ins: truth and false alarms (session 13, hotsu).

The camera is known: a scene's expected image is a BBBC039 field smoothed by a Gaussian
of 1 px (``--scene bbbcI``), imaged by the Poisson-Gaussian camera of the profile
estimated from that field (one gain and offset for every pixel, as `--estimate-profile`
gives), or the simulated CCD of ``SensorModel.preset("ccd")`` with its quick per-pixel
calibration (``--scene ccd0``). Every frame is an independent draw.

``--part truth``: K frames; a global Otsu threshold and a fixed one (the Otsu threshold
of one more frame) segment each raw frame and its codec version; per reference object
(the noise-free image's Otsu objects, matched by centroid within 3 px), the mean shift
``raw − codec`` over frames against the raw spread over frames (the true σ that the
replicas estimate); per frame, the 20 % trimmed mean over objects of shift/σ (what the
verdict's robust ε estimates); the total area and the threshold likewise. ``--profile
est`` re-estimates the profile from each frame (the user's `--estimate-profile`),
``true`` uses the camera's.

``--part alarms``: K frames; ``score_image`` with the plug-in and codecs ``replica``
(held-out replica), ``fresh`` (a second independent frame of the same scene: raw-
equivalent by construction), ``noise:step=2`` and ``noise:step=2,dither=1``; the rate of
"exceeds noise", of global flags (calibrated; and the uncalibrated |ε| ≥ 3 of session
13's first measurement) and of systematic-shift notes per codec (``--codecs``, ';'-separated).

Run: ``python benchmarks/bench_threshold_verdict.py --part truth --scene bbbc2 --frames 30``
(≈ 10 s) or ``--part alarms --scene bbbc1 --model otsu`` (≈ 4–10 s per frame).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import tifffile
from rawsigma.analysis.codecs.base import Codec, register_codec
from rawsigma.analysis.codecs.registry import parse_codecs
from rawsigma.analysis.measurement.matching import match_objects
from rawsigma.analysis.measurement.morphometry import global_params, measure
from rawsigma.analysis.noisemodel.estimate import estimate_profile
from rawsigma.analysis.noisemodel.synthesis import synthesize
from rawsigma.analysis.scoring.per_image import codec_bytes
from scipy import ndimage as ndi
from scipy import stats
from skimage.filters import threshold_otsu

DATA = "/work/shared/data/bbbc039_u2os_hoechst_3fields.tif"
PARAMS = ("area", "perimeter", "major", "minor", "circularity", "solidity")
LENGTHS = ("area", "perimeter", "major", "minor")  # quantum 1 px in the verdict's floor
_FRESH: dict[str, np.ndarray] = {}


class Fresh(Codec):
    """An independent raw frame of the same scene (set in ``_FRESH`` before each run)."""

    name = "fresh"

    def encode(self, image: np.ndarray) -> bytes:  # noqa: D102
        b = io.BytesIO()
        np.save(b, _FRESH["frame"])
        return b.getvalue()

    def decode(self, data: bytes) -> np.ndarray:  # noqa: D102
        return np.load(io.BytesIO(data))


def camera(scene: str):
    """``(draw(k) -> frame, profile, expected image)`` of a scene with a known camera."""
    if scene.startswith("bbbc"):
        field = tifffile.imread(DATA)[int(scene[4:])]
        cam = estimate_profile(field)
        mean = np.rint(ndi.gaussian_filter(field.astype(np.float64), 1.0)).astype(np.uint16)
        return (lambda k: synthesize(mean, cam, 1, np.random.default_rng(k), "observed")[0],
                cam, mean)  # fmt: skip
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.demo import calibrate_simulated
    from rawsigma.analysis.phantoms.scenes2d import nuclei2d

    seed = int(scene[3:])
    model = SensorModel.preset("ccd", (256, 256), seed=seed)
    cam, model, _ = calibrate_simulated((256, 256), seed, n_frames=24, model=model)
    bright, _ = nuclei2d((256, 256), n_objects=40, rng=seed, n_beads=0)
    photons = 40.0 + 900.0 * bright
    mean = model.expose(photons, 0.01, np.random.default_rng(1))
    return lambda k: model.expose(photons, 0.01, np.random.default_rng(k)), cam, mean


def _measure_into(labels, ref, row: dict, k: int) -> None:
    """Global and matched per-object values of one segmentation into ``row[param][k]``."""
    m, g = measure(labels), global_params(labels)
    row["total_area"][k, 0], row["count"][k, 0] = g["total_area"], g["count"]
    if len(m["label"]):
        r = match_objects(ref, np.c_[m["y"], m["x"]], 3.0)
        for p in PARAMS:
            row[p][k, r.ref_index] = np.asarray(m[p], float)[r.other_index]


def _summary(raw: np.ndarray, dec: np.ndarray, param: str) -> dict:
    """Mean shift, raw spread, per-frame robust ε and the same-sign fraction."""
    d = raw - dec
    q = 1.0 if param in LENGTHS else 0.0
    sigma = np.sqrt(np.nanstd(raw, 0, ddof=1) ** 2 + q**2 / 12)
    shift = np.nanmean(d, 0)
    ok = np.isfinite(shift) & (sigma > 0)
    per_frame = np.array([_trim(d[k, ok] / sigma[ok]) for k in range(len(d))])
    return {
        "n": int(ok.sum()), "shift": float(np.median(shift[ok])),
        "spread": float(np.median(np.nanstd(raw, 0, ddof=1)[ok])),
        "true_eps": _trim(shift[ok] / sigma[ok]),
        "same_sign": float(np.mean(np.sign(shift[ok]) == np.sign(np.median(shift[ok])))),
        "frame_rms": float(np.sqrt(np.nanmean(per_frame**2))),
        "frame_ge1": float(np.nanmean(np.abs(per_frame) >= 1)),
        "frame_ge3": float(np.nanmean(np.abs(per_frame) >= 3)),
    }  # fmt: skip


def _trim(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(stats.trim_mean(a, 0.2)) if a.size else float("nan")


def truth(scene: str, frames: int, spec: str, profile_mode: str) -> dict:
    """Per segmenter and parameter: the codec's true shift against the raw spread."""
    draw, cam, mean = camera(scene)
    ref_m = measure(ndi.label(mean > threshold_otsu(mean))[0])
    ref = np.c_[ref_m["y"], ref_m["x"]]
    fixed = float(threshold_otsu(draw(99_999)))
    segs = {"otsu": lambda im: im > threshold_otsu(im), "fixed": lambda im: im > fixed}
    shape = {p: len(ref) for p in PARAMS} | {"total_area": 1, "count": 1}
    vals = {(s, v): {p: np.full((frames, n), np.nan) for p, n in shape.items()}
            for s in segs for v in ("raw", "codec")}  # fmt: skip
    for k in range(frames):
        x = draw(10_000 + k)
        prof = estimate_profile(x) if profile_mode == "est" else cam
        _, dec = codec_bytes(parse_codecs(spec, profile=prof)[0], x)
        for v, im in (("raw", x), ("codec", dec)):
            for s, seg in segs.items():
                _measure_into(ndi.label(seg(im), np.ones((3, 3)))[0], ref, vals[s, v], k)
    return {s: {p: _summary(vals[s, "raw"][p], vals[s, "codec"][p], p) for p in shape}
            for s in segs}  # fmt: skip


def alarms(scene: str, frames: int, model: str, profile_mode: str, codecs: list[str]) -> dict:
    """Per codec: runs called "exceeds", with global flags, with a systematic note."""
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.analysis.segmentation.classifier import training_labels_from_instances

    register_codec("fresh", Fresh, replace=True)
    draw, cam, _ = camera(scene)
    fixed = float(threshold_otsu(draw(99_999)))
    plug = {"otsu": lambda im: ndi.label(im > threshold_otsu(im), np.ones((3, 3)))[0],
            "fixed": lambda im: ndi.label(im > fixed, np.ones((3, 3)))[0]}  # fmt: skip
    if model == "default":
        inst = tifffile.imread(DATA.replace(".tif", "_labels.tif"))[int(scene[4:])]
        kw = {"labels": training_labels_from_instances(inst)}
    else:
        kw = {"model": plug[model]}
    counts = {c: [0, 0, 0, 0] for c in codecs}
    for k in range(frames):
        x = draw(20_000 + 2 * k)
        _FRESH["frame"] = draw(20_001 + 2 * k)
        prof = estimate_profile(x) if profile_mode == "est" else cam
        r = score_image(x, prof, codecs=codecs, n_replicas=10, seed=k, **kw)
        for c in r.codecs:
            v = c.verdict
            counts[c.spec][0] += not v["within_noise"]
            counts[c.spec][1] += bool(v.get("global_flags"))
            counts[c.spec][2] += bool(v.get("systematic_note"))
            counts[c.spec][3] += any(abs(g["epsilon"]) >= 3 for g in c.globals.values())
        print(k, {c.spec: c.verdict["worst"] for c in r.codecs}, flush=True)
    return counts


def main() -> None:
    """Print the truth table or the false-alarm counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("truth", "alarms"), default="truth")
    ap.add_argument("--scene", default="bbbc1")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--codec", default="noise:step=2")
    ap.add_argument("--profile", choices=("est", "true"), default="est")
    ap.add_argument("--model", choices=("otsu", "fixed", "default"), default="otsu")
    ap.add_argument(
        "--codecs",
        default="replica;fresh;noise:step=2;noise:step=2,dither=1",
        help="--part alarms: codec specs separated by ';'",
    )
    a = ap.parse_args()
    if a.part == "truth":
        for s, rows in truth(a.scene, a.frames, a.codec, a.profile).items():
            for p, r in rows.items():
                print(s, p, {k: round(v, 3) for k, v in r.items()})
        return
    codecs = a.codecs.split(";")
    for c, (ex, gf, sy, old) in alarms(a.scene, a.frames, a.model, a.profile, codecs).items():
        print(f"{c:22s} exceeds {ex}/{a.frames}  global flags {gf}/{a.frames} "
              f"(uncalibrated |ε| ≥ 3: {old})  systematic note {sy}/{a.frames}")  # fmt: skip


if __name__ == "__main__":
    main()
