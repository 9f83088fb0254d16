"""Global flags (count, total area) against a known camera's truth.

The camera is known: a BBBC039 field smoothed by 1 px is the expected image, imaged by
the Poisson–Gaussian camera of the profile estimated from it (as the benchmark
``bench_threshold_verdict.py`` does); every frame is an independent draw, segmented by a
global Otsu threshold. A held-out replica and a second frame of the scene are
raw-equivalent by construction and must not be flagged in ≥ 95 % of seeds; the noise
codec without dither, whose true total-area shift over the frames is many raw σ, must
still be (benchmarks/RESULTS.md, "Global flags calibrated (session 13, hglob)").
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.codecs.registry import parse_codecs
from rawsigma.analysis.measurement.morphometry import global_params
from rawsigma.analysis.noisemodel.estimate import estimate_profile
from rawsigma.analysis.noisemodel.synthesis import synthesize
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.scoring.per_image import codec_bytes
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

N_SEEDS = 30
N_REPLICAS = 10
VERSIONS = ("replica", "fresh", "noise:step=2")


def _globals(image: np.ndarray) -> dict[str, float]:
    return global_params(ndi.label(image > threshold_otsu(image), np.ones((3, 3)))[0])


@pytest.fixture(scope="module")
def runs(shared_data):
    """Per seed and version: the raw, replica and version globals."""
    field = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[2]
    cam = estimate_profile(field)
    mean = np.rint(ndi.gaussian_filter(field.astype(np.float64), 1.0)).astype(np.uint16)
    codec = parse_codecs("noise:step=2", profile=cam)[0]
    out = []
    for k in range(N_SEEDS):
        x, y = synthesize(mean, cam, 2, np.random.default_rng(20_000 + k), "observed")
        reps = synthesize(x, cam, N_REPLICAS + 1, np.random.default_rng(k), "observed")
        _, dec = codec_bytes(codec, x)
        raw = _globals(x)
        rep = [_globals(r) for r in reps[:N_REPLICAS]]
        vers = {"replica": _globals(reps[-1]), "fresh": _globals(y), "noise:step=2": _globals(dec)}
        out.append((raw, rep, vers))
    return out


def _flag_rate(runs, version: str, calibrated: bool) -> int:
    n = 0
    for raw, rep, vers in runs:
        g = sc.score_globals(raw, rep, vers[version])
        if calibrated:
            n += any(v["flag"] for v in g.values())  # the report's flags (with objects)
        else:
            n += any(abs(v["epsilon"]) >= sc.GLOBAL_LIMIT for v in g.values())
    return n


def test_raw_equivalent_versions_are_not_flagged(runs):
    # the truth: a replica or a second frame does not move the globals beyond raw's own
    # spread; the observed-centred replicas' globals are biased against raw (noise applied
    # twice), by more than a raw σ for the count on this field
    raw_count = np.array([r[0]["count"] for r in runs])
    rep_count = np.array([np.mean([x["count"] for x in r[1]]) for r in runs])
    assert (rep_count - raw_count).mean() > raw_count.std(ddof=1)
    for version in ("replica", "fresh"):
        assert _flag_rate(runs, version, True) <= 0.05 * N_SEEDS, version
    # the uncalibrated |ε| ≥ 3 fired on the held-out replica (the bug)
    assert _flag_rate(runs, "replica", False) > 0.05 * N_SEEDS


def test_strong_distortion_is_still_flagged(runs):
    # the truth: the codec's total-area shift over the seeds against the raw spread
    raw = np.array([r[0]["total_area"] for r in runs])
    dec = np.array([r[2]["noise:step=2"]["total_area"] for r in runs])
    fresh = np.array([r[2]["fresh"]["total_area"] for r in runs])
    true_sd = np.std(np.r_[raw, fresh], ddof=1)
    assert abs(np.mean(raw - dec)) / true_sd >= 10
    assert _flag_rate(runs, "noise:step=2", True) >= 0.9 * N_SEEDS


def test_flag_limit_is_the_null_bias_plus_spread():
    raw = {"count": 100.0}
    reps = [{"count": 110.0 + d} for d in (-2, -1, 0, 1, 2, -2, -1, 0, 1, 2)]
    g = sc.score_globals(raw, reps, {"count": 100.0 + 0.0})
    null = g["count"]["null"]
    assert null["bias"] < -5 and null["spread"] >= np.sqrt(2)
    assert g["count"]["flag_limit"] == pytest.approx(abs(null["bias"]) + 3 * null["spread"])
    # a version at the replicas' mean is not flagged although its ε is beyond 3
    g = sc.score_globals(raw, reps, {"count": 110.0})
    assert abs(g["count"]["epsilon"]) >= 3 and not g["count"]["flag"]
    # without objects the globals decide by |ε| ≥ 3, and the flags show what decided
    v0 = sc.verdict(g, {})
    assert not v0["within_noise"] and v0["global_flags"] == v0["failing"] == ["global:count"]
