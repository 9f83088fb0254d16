"""Feature ε chunk by chunk equals the in-memory feature ε (anisotropic spacing)."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.outofcore.featurestats import feature_epsilon_chunked

SPACING = (2.0, 0.5, 0.5)  # z four times coarser: per-axis halos differ
SIGMAS = (1.0, 2.0)


@pytest.fixture(scope="module")
def volumes():
    rng = np.random.default_rng(1)
    shape = (12, 30, 26)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    blob = 800 * np.exp(-(((zz - 6) / 3) ** 2 + ((yy - 14) / 6) ** 2 + ((xx - 12) / 5) ** 2))
    mean = 100 + blob
    raw = rng.poisson(mean).astype(np.uint16)
    reps = rng.poisson(mean, (4,) + shape).astype(np.uint16)
    codecs = {
        "shifted": raw + np.uint16(20),  # offset error: far beyond the noise
        "noisy": rng.poisson(mean).astype(np.uint16),  # raw-equivalent
    }
    return raw, reps, codecs


@pytest.mark.parametrize("chunks", [(12, 30, 26), (5, 7, 9), (3, 16, 13), (1, 30, 4)])
def test_chunked_feature_epsilon_equals_in_memory(
    volumes, chunks, tmp_path, volume_feature_epsilon
) -> None:
    raw, reps, codecs = volumes
    names, want = volume_feature_epsilon(raw, reps, codecs, SIGMAS, SPACING)
    got = feature_epsilon_chunked(raw, reps, codecs, tmp_path, sigmas=SIGMAS, spacing=SPACING,
                                  chunks=chunks, workers=2)  # fmt: skip
    assert got.names == names
    for k, (fe, worst) in want.items():
        assert got.scores[k].keys() == fe.keys()
        for n in names:
            a, b = got.scores[k][n], fe[n]
            assert a["n_pixels"] == b["n_pixels"] > 0
            for m in ("mean_epsilon", "mean_abs_epsilon", "rms_epsilon"):
                assert a[m] == pytest.approx(b[m], rel=1e-5, abs=1e-6)
        assert got.worst[k].keys() == worst.keys()
        (name,) = worst
        np.testing.assert_array_equal(np.asarray(got.worst[k][name][...]), worst[name])
    assert got.scores["shifted"]["GaussianSmoothing_s1"]["mean_epsilon"] < -3
    assert 0.3 < got.scores["noisy"]["GaussianSmoothing_s1"]["mean_abs_epsilon"] < 2


def test_replicas_from_a_stacked_file_and_resume(volumes, tmp_path) -> None:
    raw, reps, codecs = volumes
    np.save(tmp_path / "reps.npy", reps)
    np.save(tmp_path / "raw.npy", raw)
    srcs = {k: str(tmp_path / f"{k}.npy") for k in codecs}
    for k, v in codecs.items():
        np.save(srcs[k], v)
    files = (str(tmp_path / "raw.npy"), str(tmp_path / "reps.npy"), srcs, tmp_path / "w")
    kw = dict(sigmas=SIGMAS, spacing=SPACING, chunks=(6, 15, 13))
    a = feature_epsilon_chunked(*files, **kw)
    b = feature_epsilon_chunked(raw, list(reps), codecs, tmp_path / "w2", sigmas=SIGMAS,
                                spacing=SPACING, chunks=(4, 30, 26), maps=False)  # fmt: skip
    for k in codecs:
        for n in a.names:
            assert a.scores[k][n]["mean_epsilon"] == pytest.approx(b.scores[k][n]["mean_epsilon"])
    assert b.worst == {k: {} for k in codecs}
    stamp = (tmp_path / "w" / "stats_tasks" / "c_0_0_0" / "stats.npy").stat().st_mtime_ns
    again = feature_epsilon_chunked(*files, **kw)
    assert (tmp_path / "w" / "stats_tasks" / "c_0_0_0" / "stats.npy").stat().st_mtime_ns == stamp
    assert again.scores == a.scores


def test_bad_inputs(volumes, tmp_path) -> None:
    raw, reps, codecs = volumes
    with pytest.raises(ValueError, match="two replicas"):
        feature_epsilon_chunked(raw, reps[:1], codecs, tmp_path, sigmas=SIGMAS,
                                spacing=SPACING, chunks=(4, 8, 8))  # fmt: skip
    with pytest.raises(ValueError, match="shape"):
        feature_epsilon_chunked(raw, reps, {"x": raw[:5]}, tmp_path, sigmas=SIGMAS,
                                spacing=SPACING, chunks=(4, 8, 8))  # fmt: skip


@pytest.mark.slow
def test_on_a_local_cluster_from_files(volumes, tmp_path) -> None:
    from rawsigma.analysis.outofcore.taskrun import connect

    raw, reps, codecs = volumes
    np.save(tmp_path / "raw.npy", raw)
    np.save(tmp_path / "reps.npy", reps)
    srcs = {k: str(tmp_path / f"{k}.npy") for k in codecs}
    for k, v in codecs.items():
        np.save(srcs[k], v)
    kw = dict(sigmas=SIGMAS, spacing=SPACING, chunks=(6, 15, 13))
    local = feature_epsilon_chunked(raw, reps, codecs, tmp_path / "t", **kw)
    with connect("local", workers=2) as client:
        dist = feature_epsilon_chunked(str(tmp_path / "raw.npy"), str(tmp_path / "reps.npy"),
                                       srcs, tmp_path / "d", client=client, **kw)  # fmt: skip
    assert dist.scores == local.scores
    for k in codecs:
        ((n, a),) = local.worst[k].items()
        np.testing.assert_array_equal(np.asarray(dist.worst[k][n][...]), np.asarray(a[...]))
