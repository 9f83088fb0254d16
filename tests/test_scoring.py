"""ε arithmetic on synthetic numbers: definition, σ = 0, angles, CI, verdict, features."""

import math

import numpy as np
from rawsigma.analysis.scoring import standard_score as sc
from scipy import stats


def test_epsilon_definition_and_zero_sigma():
    np.testing.assert_allclose(sc.epsilon(3.0, 1.5), 2.0)
    e = sc.epsilon(np.array([0.0, 2.0, -1.0, np.nan]), np.array([0.0, 0.0, 2.0, 1.0]))
    assert e[0] == 0 and np.isposinf(e[1]) and e[2] == -0.5 and np.isnan(e[3])


def test_angle_delta_wraps():
    np.testing.assert_allclose(sc.delta("Angle", 179.0, 1.0), -2.0)
    np.testing.assert_allclose(sc.delta("FeretAngle", 1.0, 179.0), 2.0)
    np.testing.assert_allclose(sc.delta("Area", 179.0, 1.0), 178.0)


def test_ci_factors_match_chi2_and_cover():
    lo, hi = sc.epsilon_ci_factors(10)
    assert abs(lo - math.sqrt(stats.chi2.ppf(0.025, 9) / 9)) < 1e-12
    assert 0.54 < lo < 0.56 and 1.44 < hi < 1.46
    # Monte Carlo: the interval built from s covers the true ε* = Δ/σ ~95 % of the time
    rng = np.random.default_rng(1)
    sigma, d, n = 2.0, 3.0, 10
    s = rng.normal(0, sigma, (20000, n)).std(axis=1, ddof=1)
    eps_hat = d / s
    cover = (eps_hat * lo <= d / sigma) & (d / sigma <= eps_hat * hi)
    assert abs(cover.mean() - 0.95) < 0.01
    assert sc.epsilon_ci(-2.0, 10)[0] < -2.0 < sc.epsilon_ci(-2.0, 10)[1]


def test_score_globals_and_objects():
    rng = np.random.default_rng(0)
    n_rep, n_obj = 10, 200
    true_area = rng.uniform(50, 500, n_obj)
    raw = {"Area": true_area, "Angle": np.full(n_obj, 179.5)}
    rep_area = true_area + rng.normal(0, 2.0, (n_rep, n_obj))
    rep_angle = (179.5 + rng.normal(0, 1.0, (n_rep, n_obj))) % 180
    reps = {"Area": rep_area, "Angle": rep_angle}
    shifted = {"Area": true_area - 6.0, "Angle": np.full(n_obj, 0.5)}  # angle: Δ = -1°
    shifted["Area"][:5] = np.nan  # unmatched
    res = sc.score_objects(raw, reps, shifted)
    a = res["Area"]
    # ε = 6/s with s ~ 2 → mean ≈ 3·E[σ/s] ≈ 3.3
    assert a.n == n_obj - 5 and 2.8 < a.mean < 3.8
    assert a.ci[0] < a.mean < a.ci[1]
    ang = res["Angle"]
    assert -1.6 < ang.mean < -0.8  # wrapped, σ of wrapped deviations ≈ 1
    s = a.summary()
    assert abs(s["delta"]["mu"] - 6.0) < 1e-9 and s["delta"]["n"] == n_obj - 5
    g = sc.score_globals(
        {"count": 10, "total_area": 1000.0},
        [{"count": 10 + (i % 2), "total_area": 1000.0 + i} for i in range(10)],
        {"count": 10, "total_area": 1010.0},
    )
    assert g["count"]["epsilon"] == 0.0
    assert abs(g["total_area"]["epsilon"] - (-10 / np.std(np.arange(10), ddof=1))) < 1e-12
    v = sc.verdict(g, res)
    assert not v["within_noise"] and "Area" in v["failing"]
    # ε ≈ -3.3, but raw sits at the edge of the replicas (leave-one-out bias ≈ -1.5, spread
    # floored at √2): within |bias| + 3·spread of a raw-equivalent version, not flagged
    tot = g["total_area"]
    assert tot["epsilon"] < -3 and tot["flag_limit"] > 5 and v["global_flags"] == []
    # no objects: the globals decide
    v0 = sc.verdict(g, {})
    assert not v0["within_noise"] and v0["failing"] == ["global:total_area"]
    assert sc.verdict({"count": g["count"]}, {})["within_noise"]
    assert "Angle" in v["failing"]  # mean ≈ -1.1


def test_infinite_scores_counted_not_averaged():
    raw = {"Area": np.array([10.0, 20.0, 30.0])}
    reps = {"Area": np.array([[10.0, 20.0, 31.0], [10.0, 20.0, 29.0], [10.0, 20.0, 30.0]])}
    oth = {"Area": np.array([10.0, 21.0, 30.5])}
    r = sc.score_objects(raw, reps, oth)["Area"]
    assert r.n_inf == 1 and r.n == 2
    assert abs(r.mean - (0.0 + (-0.5)) / 2) < 1e-12


def test_held_out_like_sample_within_noise():
    rng = np.random.default_rng(3)
    n_obj = 300
    raw = {"Area": rng.uniform(50, 500, n_obj)}
    draws = raw["Area"] + rng.normal(0, 1.5, (11, n_obj))
    r = sc.score_objects(raw, {"Area": draws[:10]}, {"Area": draws[10]})["Area"]
    assert abs(r.mean) < 0.3 and 0.8 < r.std < 1.6
    assert sc.verdict({}, {"Area": r})["within_noise"]


def test_feature_stats_and_epsilon():
    rng = np.random.default_rng(2)
    fs = sc.FeatureStats()
    base = rng.normal(size=(32, 32, 2))
    for _ in range(50):
        fs.add(base + rng.normal(0, [1.0, 3.0], size=(32, 32, 2)))
    sig = fs.sigma()
    assert abs(np.median(sig[..., 0]) - 1.0) < 0.05 and abs(np.median(sig[..., 1]) - 3.0) < 0.15
    fe = sc.feature_epsilon(base, sig, base - 2 * sig, ["a", "b"])
    assert abs(fe["a"]["mean_epsilon"] - 2.0) < 1e-9 and fe["b"]["n_pixels"] == 1024


def test_tolerance_best():
    pts = [
        {"spec": "jpeg@5", "ratio": 5.0, "within_noise": True},
        {"spec": "jpeg@10", "ratio": 10.0, "within_noise": False},
        {"spec": "jpeg@7", "ratio": 7.1, "within_noise": True},
    ]
    assert sc.tolerance_best(pts)["spec"] == "jpeg@7"
    assert sc.tolerance_best(pts[1:2]) is None
