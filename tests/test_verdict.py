"""Calibrated verdict (analysis.nullstats) and run checks (analysis.runchecks).

Known truth on synthetic parameter tables: Gaussian and integer-valued replicas drawn
around the raw value, a held-out draw (null: must pass ≥ 95 % family-wise), a shifted
codec (must fail), and tiny objects whose parameters are exactly discrete.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring import standard_score as sc


def _score(raw, reps, other, quanta=None):
    """score_objects + verdict with the leave-one-out null, like the runner does."""
    q = quanta or {k: np.zeros(v.size) for k, v in raw.items()}
    null = {k: ns.loo_null(k, raw[k], reps[k], q[k]) for k in raw}
    obj = sc.score_objects(raw, reps, other, quanta=q, null=null)
    return obj, sc.verdict({}, obj)


def _draw(rng, truth, sd, n, discrete=False):
    v = truth + rng.normal(0, sd, (n,) + truth.shape)
    return np.rint(v) if discrete else v


def test_robust_location_and_se():
    e = np.array([0.0, 0.1, -0.1, 0.2, -0.2, 100.0])
    assert abs(ns.robust_location(e)) < 0.2  # one outlier does not move it
    assert ns.robust_location(np.array([1.0, 5.0, math.inf])) == 3.0  # median, inf dropped
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 400)
    # Tukey–McLaughlin unit se of a 20 % trimmed mean of N(0,1): ≈ 1.19
    assert 1.05 < ns.trimmed_se_unit(x) < 1.35
    assert math.isnan(ns.trimmed_se_unit(np.array([1.0])))


def test_parameter_quantum_and_floor():
    t = {"area": np.array([9.0, 400.0]), "major": np.array([3.0, 25.0]),
         "feret": np.array([4.0, 26.0]), "circularity": np.array([0.9, 0.8])}  # fmt: skip
    assert np.all(ns.parameter_quantum("area", t) == 1)
    assert np.all(ns.parameter_quantum("perimeter", t) == 1)
    assert np.allclose(ns.parameter_quantum("x", t), 1 / np.sqrt(np.pi * t["area"]))
    assert np.allclose(ns.parameter_quantum("angle", t), 180 / np.pi / t["major"])
    assert np.allclose(ns.parameter_quantum("circularity", t), [0.3, 0.04])
    assert np.all(ns.parameter_quantum("unknown", t) == 0)
    assert np.allclose(
        ns.floored_sigma(np.array([0.0, 3.0]), 1.0), [np.sqrt(1 / 12), np.sqrt(9 + 1 / 12)]
    )


@pytest.mark.parametrize("discrete", [False, True])
def test_null_false_alarm_rate_at_most_5_percent(discrete):
    """A held-out raw-equivalent draw passes in ≥ 95 % of 120 trials (3 parameters).

    Six objects: the paper's rule flags about 30 % of these null draws.
    """
    rng = np.random.default_rng(11 + discrete)
    n_obj, n_rep, fails, paper_fails, trials = 6, 10, 0, 0, 120
    for _ in range(trials):
        truth = {"area": rng.uniform(5, 40, n_obj), "perimeter": rng.uniform(8, 30, n_obj),
                 "major": rng.uniform(3, 9, n_obj)}  # fmt: skip
        sd = {"area": 0.6, "perimeter": 0.8, "major": 0.3}
        raw = {k: _draw(rng, v, sd[k], 1, discrete)[0] for k, v in truth.items()}
        reps = {k: _draw(rng, v, sd[k], n_rep, discrete) for k, v in truth.items()}
        held = {k: _draw(rng, v, sd[k], 1, discrete)[0] for k, v in truth.items()}
        q = {k: ns.parameter_quantum(k, raw) for k in raw}
        obj, v = _score(raw, reps, held, q)
        fails += not v["within_noise"]
        paper_fails += not v["paper"]["within_noise"]
        assert v["rule"] == "calibrated"
    assert fails / trials <= 0.05, (fails, paper_fails)
    assert paper_fails / trials > 0.15  # the uncalibrated rule, for contrast


def test_shifted_codec_flagged_and_p_value_small():
    rng = np.random.default_rng(4)
    truth = rng.uniform(50, 300, 40)
    raw = {"area": truth + rng.normal(0, 2, 40)}
    reps = {"area": truth + rng.normal(0, 2, (10, 40))}
    codec = {"area": raw["area"] - 5.0}  # every object 2.5 σ larger
    obj, v = _score(raw, reps, codec, {"area": np.ones(40)})
    t = obj["area"].test
    assert not v["within_noise"] and v["failing"] == ["area"]
    assert t["calibrated"] and t["p_fw"] < 1e-6 and t["null_quantile"] > 1 - 1e-6
    assert 2.0 < t["t"] < 3.5 and t["exceeds"]  # Δ = +5
    # a sub-σ shift that is detectable but below the margin is not a failure
    small = {"area": raw["area"] - 1.4}
    obj2, v2 = _score(raw, reps, small, {"area": np.ones(40)})
    assert v2["within_noise"] and "area" in v2["borderline"]


def test_unchanged_parameter_with_a_degenerate_null_is_not_borderline():
    """Feret start points on BBBC039 (QA session 7): every replica gives the raw value,
    so the null has bias 0, se 0, crit 0; a lossless codec (Δ = 0) was "borderline"."""
    rng = np.random.default_rng(7)
    truth = np.rint(rng.uniform(20, 600, 30))
    raw = {"area": truth + rng.normal(0, 2, 30), "feret_x": truth.copy()}
    reps = {"area": truth + rng.normal(0, 2, (6, 30)), "feret_x": np.tile(truth, (6, 1))}
    quanta = {"area": np.ones(30), "feret_x": np.ones(30)}
    obj, v = _score(raw, reps, {k: a.copy() for k, a in raw.items()}, quanta)
    assert obj["feret_x"].test["crit"] == 0 and obj["feret_x"].test["t"] == 0
    assert v["within_noise"] and v["borderline"] == [] and v["failing"] == []
    moved = {"area": raw["area"].copy(), "feret_x": truth + 0.2}  # 0.69 σ (floor q/√12)
    obj, v = _score(raw, reps, moved, quanta)
    assert v["within_noise"] and v["borderline"] == ["feret_x"]


def test_discrete_tiny_objects_no_verdict_decided_by_one_object():
    """Exactly discrete areas of tiny objects: σ_raw is 0 for most, tiny for one."""
    n_obj = 20
    raw = {"area": np.full(n_obj, 6.0)}
    reps = np.full((10, n_obj), 6.0)
    reps[0, 0] = 7.0  # one object changed once in ten replicas: σ_raw = 0.32
    other = raw["area"].copy()
    other[0] = 16.0  # that object moved by 10 px in the codec: ε = -31
    other[1] = 7.0  # another object (σ_raw = 0) moved by one pixel: ε = -inf
    q = {"area": np.ones(n_obj)}
    obj, v = _score(raw, {"area": reps}, {"area": other}, q)
    s = obj["area"]
    assert s.n_inf == 1 and s.mean < -1  # the paper's mean is decided by that object
    assert not v["paper"]["within_noise"]
    assert np.all(np.isfinite(s.eps_eff))  # the floor keeps every score finite
    assert v["within_noise"] and s.robust == 0.0
    # whatever that one object does, the verdict does not change
    for big in (100.0, 1e6):
        other[0] = big
        assert _score(raw, {"area": reps}, {"area": other}, q)[1]["within_noise"]
    # but when most objects move, it fails
    other[:] = 9.0
    assert not _score(raw, {"area": reps}, {"area": other}, q)[1]["within_noise"]


def test_no_null_falls_back_to_paper_rule():
    raw = {"area": np.arange(10.0, 20.0)}
    reps = {"area": raw["area"] + np.random.default_rng(1).normal(0, 1, (5, 10))}
    obj = sc.score_objects(raw, reps, {"area": raw["area"] - 3})
    v = sc.verdict({}, obj)
    assert v["rule"] == "paper" and not v["within_noise"]


def test_default_min_size_and_count_warnings():
    ann = np.zeros((60, 60), np.uint8)
    ann[:, 50:] = 1
    for i, s in enumerate((4, 6, 8, 10, 12)):  # squares of 16..144 px
        ann[2 + 11 * i : 2 + 11 * i + (s if s < 10 else 10), 2 : 2 + s] = 2
    ms, info = rc.default_min_size(ann, 2)
    sizes = np.sort([16, 36, 64, 100, 120])
    assert ms == int(0.2 * np.median(sizes)) and info["n_regions"] == 5
    assert "annotated foreground regions" in info["rule"]
    assert rc.default_min_size(np.ones((5, 5), np.uint8), 2)[0] == 1
    strokes = np.zeros((60, 60), np.uint8)
    for r in range(5, 60, 12):  # 3×21 px strokes across 21-px objects
        strokes[r : r + 3, 10:31] = 2
    ms, info = rc.default_min_size(strokes, 2)
    assert ms == int(0.2 * np.pi / 4 * 21**2) and info["region_sizes"]["median"] == 63
    w = rc.count_warnings(1304, 1500, 4, {"n_regions": 85})
    assert len(w) == 1 and "1304 objects" in w[0] and w[0].startswith("WARNING")
    w = rc.count_warnings(60, 1300, 50, {"n_regions": 85})
    assert len(w) == 1 and "1300 connected components" in w[0]
    assert rc.count_warnings(80, 90, 5, {"n_regions": 85}) == []
    assert "smaller than 50 px:" in w[0]


def test_volume_speckle_warning_in_voxels():
    """QA session 8: a 3D run's speckle warning gave its size filter in px."""
    from types import SimpleNamespace

    from rawsigma.analysis.scoring.volume_steps import _complete_objects_info

    run = SimpleNamespace(
        spacing=(2.0, 0.5, 0.5), objects_info={"n_regions": 16}, notes=[],
        plan=SimpleNamespace(min_size=217),
    )  # fmt: skip
    raw = SimpleNamespace(table={"volume": np.full(17, 300 * 0.5)}, n_components=624)
    _complete_objects_info(run, raw, 17)
    assert "607 of them (97 %) were smaller than 217 voxels:" in run.notes[0]
    assert run.objects_info["sizes"]["median"] == 300


def test_quantisation_note_step_over_sigma():
    dec = np.repeat(np.arange(0, 16 * 100, 16, dtype=np.float64), 10).reshape(50, 20)
    sigma = np.full(dec.shape, 4.0)
    objs = np.zeros(dec.shape, np.int32)
    objs[10:20] = 1
    n = rc.quantisation_note("8bit", dec, sigma, objs)
    assert n["step"] == 16 and n["step_over_sigma"] == 4.0
    assert "far above the raw noise" in n["text"]
    n = rc.quantisation_note("8bit", dec, np.full(dec.shape, 14.0), objs)  # 1.14 σ
    assert "comparable to the raw noise" in n["text"] and "verdict" in n["text"]
    n = rc.quantisation_note("8bit", dec, np.full(dec.shape, 32.0), objs)
    assert n["step_over_sigma"] == 0.5 and "below the raw noise" in n["text"]
    assert rc.quantisation_note("jpeg@10", dec, sigma, objs) is None


def test_matching_test_flags_lost_objects():
    null = [0, 1, 0, 0, 2, 0, 1, 0, 0, 0]
    lost = ns.matching_test(11, null, 20)
    assert lost["exceeds"] and lost["p_fw"] < 1e-3 and lost["null_sd"] == 1.0
    assert not ns.matching_test(2, null, 20)["exceeds"]  # like a replica
    # a version that lost every object has no per-object score: matching decides
    raw = {"area": np.arange(10.0, 21.0)}
    reps = {"area": raw["area"] + np.random.default_rng(0).normal(0, 1, (10, 11))}
    none = {"area": np.full(11, np.nan)}
    obj, v = _score(raw, reps, none)
    assert v["within_noise"]  # without the matching test nothing fails...
    v = sc.verdict({}, obj, matching=lost)
    assert not v["within_noise"] and v["failing"] == ["matching"] and v["worst"][0] == "matching"
