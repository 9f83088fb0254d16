"""A threshold plug-in and the noise codec: the verdict against the camera's truth.

A global threshold on a codec's output sees only the codec's reconstruction levels: every
pixel near the threshold is decided by the codec's decision boundary between two levels
instead of by the threshold, so every object boundary moves the same way (by up to one
raw σ at step 2). These tests measure that on a simulated camera (many independent raw
frames of one known scene: the true raw spread and the true mean shift of each object's
area), then check that ``score_image`` calls it, says it is systematic, and that
subtractive dither removes it (benchmarks/RESULTS.md, "Verdict with threshold plug-ins
(session 13, hotsu)").
"""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.codecs.registry import parse_codecs
from rawsigma.analysis.measurement.matching import match_objects
from rawsigma.analysis.measurement.morphometry import measure
from rawsigma.analysis.noisemodel.synthesis import synthesize
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.per_image import codec_bytes
from rawsigma.analysis.scoring.runner import score_image
from rawsigma.calib.profile import CameraProfile
from scipy import ndimage as ndi

SHAPE = (128, 128)
N_FRAMES = 30


def _scene() -> np.ndarray:
    """Noise-free expected image (ADU): 16 blurred discs on a dim background."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    disc = np.zeros(SHAPE)
    for i in range(4):
        for j in range(4):
            cy, cx = 16 + 32 * i, 16 + 32 * j
            disc[(yy - cy) ** 2 + (xx - cx) ** 2 <= (6 + (i + j) % 4) ** 2] = 1.0
    return np.rint(130 + 400 * ndi.gaussian_filter(disc, 1.5)).astype(np.uint16)


@pytest.fixture(scope="module")
def camera():
    """A global-gain camera (as ``--estimate-profile`` gives), its scene, its frames."""
    profile = CameraProfile.uniform(SHAPE, 0.4, 128.0, 3.4)
    mean = _scene()
    frames = synthesize(mean, profile, N_FRAMES + 1, np.random.default_rng(7), "observed")
    # a threshold just above one of the codec's reconstruction levels near mid-edge: the
    # codec's decision boundary then lies about one raw σ above it (the worst case of
    # what a fixed or Otsu threshold meets; where it lands depends on the image)
    _, dec = codec_bytes(parse_codecs("noise:step=2", profile=profile)[0], frames[-1])
    levels = np.unique(dec)
    threshold = float(levels[np.searchsorted(levels, 330)] + 1)
    return profile, mean, frames[:-1], threshold


def _areas(labels: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Object areas matched to the reference centroids (NaN where unmatched)."""
    m = measure(labels)
    out = np.full(len(ref), np.nan)
    if len(m["label"]):
        r = match_objects(ref, np.c_[m["y"], m["x"]], 3.0)
        out[r.ref_index] = np.asarray(m["area"], float)[r.other_index]
    return out


def _truth(camera, spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Per object: mean shift of the area (raw − codec) over frames, and the raw spread."""
    profile, mean, frames, threshold = camera
    codec = parse_codecs(spec, profile=profile)[0]
    ref_m = measure(ndi.label(mean > threshold)[0])
    ref = np.c_[ref_m["y"], ref_m["x"]]
    raw, dec = [], []
    for x in frames:
        _, d = codec_bytes(codec, x)
        raw.append(_areas(ndi.label(x > threshold)[0], ref))
        dec.append(_areas(ndi.label(d > threshold)[0], ref))
    raw_a, dec_a = np.array(raw), np.array(dec)
    return np.nanmean(raw_a - dec_a, axis=0), np.nanstd(raw_a, axis=0, ddof=1)


def test_truth_step2_shifts_every_object_beyond_the_raw_spread(camera):
    shift, spread = _truth(camera, "noise:step=2")
    true_eps = shift / np.sqrt(spread**2 + 1 / 12)  # the verdict's floored σ (q = 1 px)
    assert np.mean(np.sign(shift) == np.sign(np.median(shift))) >= 0.9  # systematic
    assert abs(np.median(true_eps)) >= 1.0  # and beyond one raw σ: a true "exceeds"


def test_truth_dither_removes_the_shift(camera):
    shift, spread = _truth(camera, "noise:step=2,dither=1")
    true_eps = shift / np.sqrt(spread**2 + 1 / 12)
    assert abs(np.median(true_eps)) < 0.5


def test_score_image_calls_it_and_says_it_is_systematic(camera):
    profile, _, frames, threshold = camera
    shift, _ = _truth(camera, "noise:step=2")

    def plug_in(image: np.ndarray) -> np.ndarray:
        return ndi.label(image > threshold)[0]

    r = score_image(frames[0], profile, model=plug_in, n_replicas=10, seed=3,
                    codecs=["replica", "noise:step=2", "noise:step=2,dither=1"])  # fmt: skip
    by = {c.spec: c for c in r.codecs}
    v = by["noise:step=2"].verdict
    assert not v["within_noise"] and "area" in v["failing"]
    area = by["noise:step=2"].objects["area"]
    assert np.sign(area.robust) == np.sign(np.median(shift))  # the truth's direction
    assert any(s["param"] == "area" for s in v["systematic"])
    note = v["systematic_note"]
    assert "systematic" in note and "area" in note and "dither=1" in note
    for spec in ("replica", "noise:step=2,dither=1"):
        assert not any(s["param"] == "area" for s in by[spec].verdict["systematic"]), spec
        assert "systematic_note" not in by[spec].verdict, spec


def _object_score(eps: np.ndarray) -> sc.ObjectScore:
    fin = eps[np.isfinite(eps)]
    robust = float(np.median(fin))
    return sc.ObjectScore("area", eps, eps, np.ones_like(eps), float(fin.mean()), 1.0,
                          fin.size, 0, (0.0, 0.0), eps_eff=eps, robust=robust)  # fmt: skip


def test_systematic_shifts_needs_most_objects_one_way():
    rng = np.random.default_rng(0)
    scatter = rng.normal(1.5, 3.0, 40)  # a location beyond 1, objects both ways
    together = rng.normal(1.5, 0.3, 40)
    assert sc.systematic_shifts({"area": _object_score(scatter)}, ["area"]) == []
    (s,) = sc.systematic_shifts({"area": _object_score(together)}, ["area"])
    assert s["param"] == "area" and s["same_sign"] >= 0.9 and s["n"] == 40
    few = together[:3]
    assert sc.systematic_shifts({"area": _object_score(few)}, ["area"]) == []


def test_verdict_lists_a_borderline_shift_but_not_a_scattered_one():
    rng = np.random.default_rng(1)
    together = _object_score(rng.normal(0.9, 0.2, 40))  # beyond the null, below 1
    scattered = _object_score(rng.normal(0.0, 1.0, 40))
    borderline = {"t": 0.9, "crit": 0.3, "limit": 1.0, "exceeds": False, "calibrated": True,
                  "p_fw": 1e-9}  # fmt: skip
    together.test = dict(borderline)
    scattered.test = {**borderline, "t": 0.0, "p_fw": 1.0}
    v = sc.verdict({}, {"area": together, "perimeter": scattered})
    assert v["within_noise"] and v["borderline"] == ["area"]
    assert [s["param"] for s in v["systematic"]] == ["area"]
