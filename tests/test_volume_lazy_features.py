"""Feature ε of the lazy volume driver equals the in-memory feature ε of its versions.

The lazy driver draws its replicas from per-plane random streams, so its feature σ
(hence every feature ε) differs from the in-memory driver's, whose replicas come from
one stream: comparing the two drivers' numbers would test nothing. The honest check
is on the same versions: the raw volume, replicas, held-out control and codec volumes
the lazy driver used, remade here from the same seeds (`write_replica`,
`write_codec`; their equality with the whole-volume synthesis and codecs is tested in
``test_volume_lazy.py``), pushed through the in-memory feature code
(`feature_bank` on whole volumes, `FeatureStats`, `feature_epsilon`,
`worst_feature_map`) must give the driver's per-channel feature ε and worst-channel ε
map.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

SPACING = (1.0, 0.5, 0.5)
CODECS = ["replica", "8bit", "noise:step=2"]


@pytest.fixture(scope="module")
def phantom():
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.calib.profile import CameraProfile

    shape = (10, 40, 40)
    bright, truth = nuclei3d(shape, SPACING, n_objects=10, touching_pairs=1, rng=3, n_beads=0)
    rng = np.random.default_rng(0)
    e = rng.poisson(30 + 600 * bright)
    vol = np.clip(np.rint(100.0 + 2.0 * e + rng.normal(0, 2.0, shape)), 0, 65535)
    prof = CameraProfile.uniform(shape[1:], 2.0, 100.0, 2.0)
    return vol.astype(np.uint16), prof, training_labels(truth).astype(np.uint8)


def _zarr(path, a, chunks=(4, 16, 16)):
    import zarr

    z = zarr.create_array(str(path), shape=a.shape, chunks=chunks, dtype=a.dtype,
                          overwrite=True, config={"write_empty_chunks": True})  # fmt: skip
    z[...] = a
    return path


def _read(path) -> np.ndarray:
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


def _versions(tmp, raw_zarr, prof, plan):
    """The lazy driver's replicas and codec volumes, remade from its seeds."""
    from rawsigma.analysis.scoring.volume_versions import write_codec, write_replica

    synthesis, control, _ = np.random.SeedSequence(plan.seed).spawn(3)
    reps = []
    for i in range(plan.n_replicas):
        write_replica(raw_zarr, tmp / f"r{i}.zarr", prof, synthesis, i, plan.centre)
        reps.append(_read(tmp / f"r{i}.zarr"))
    write_replica(raw_zarr, tmp / "control.zarr", prof, control, None, plan.centre)
    codecs = {"replica": _read(tmp / "control.zarr")}
    write_codec(raw_zarr, tmp / "noise.zarr", "noise:step=2", prof, None)
    codecs["noise:step=2"] = _read(tmp / "noise.zarr")
    return reps, codecs


def _in_memory(raw, reps, codecs, sigmas):
    from rawsigma.analysis.scoring import standard_score as sc
    from rawsigma.analysis.segmentation.features import SCORING_FEATURES, feature_bank

    rel = tuple(s / min(SPACING) for s in SPACING)

    def feats(v):
        return feature_bank(v, "ilastik", sigmas=sigmas, features=SCORING_FEATURES,
                            spacing=rel, n_workers=1)  # fmt: skip

    fr, names = feats(raw)
    stats = sc.FeatureStats()
    for r in reps:
        stats.add(feats(r)[0])
    sigma = stats.sigma().astype(np.float32)
    out = {}
    for k, v in codecs.items():
        fc = feats(v)[0]
        fe = sc.feature_epsilon(fr, sigma, fc, names)
        out[k] = (fe, sc.worst_feature_map(fe, fr, sigma, fc, names))
    return names, out


@pytest.mark.slow
def test_lazy_feature_epsilon_equals_in_memory_on_its_versions(tmp_path, phantom) -> None:
    from rawsigma.analysis.scoring.volume_lazy import LazyInputs, score_volume_lazy
    from rawsigma.volread import open_volume

    vol, prof, ann = phantom
    src, _ = open_volume(_zarr(tmp_path / "v.zarr", vol))
    lab, _ = open_volume(_zarr(tmp_path / "a.zarr", ann), integer=True)
    work = tmp_path / "work"
    res = score_volume_lazy(LazyInputs(src, lab, None, SPACING, "given"), prof, work,
                            chunks=(4, 16, 20), n_replicas=3, codecs=CODECS, n_estimators=10,
                            workers=1)  # fmt: skip
    raw_zarr = str(work / "inputs" / "raw.zarr")
    np.testing.assert_array_equal(_read(raw_zarr), vol)
    reps, codecs = _versions(tmp_path, raw_zarr, prof, res.plan)
    codecs["8bit"] = _read(work / "tasks" / "codec_01_8bit" / "version.zarr")  # kept
    names, want = _in_memory(vol, reps, codecs, res.plan.score_sigmas)
    assert res.feature_names == names
    got = {c.spec: c for c in res.codecs}
    assert set(got) == set(CODECS)
    for spec, (fe, worst) in want.items():
        c = got[spec]
        assert c.features.keys() == fe.keys()
        for n in names:
            for k in ("mean_epsilon", "mean_abs_epsilon", "rms_epsilon"):
                assert c.features[n][k] == pytest.approx(fe[n][k], rel=1e-5, abs=1e-7), (spec, n)
            assert c.features[n]["n_pixels"] == fe[n]["n_pixels"]
        assert c.feature_eps.keys() == worst.keys() and len(worst) == 1, spec
        (n,) = worst
        np.testing.assert_array_equal(np.asarray(c.feature_eps[n][...]), worst[n])
    # the held-out control is a whole independent noise draw (|ε| about √2 × the
    # spread, inflated by σ from 3 replicas); noise:step=2 moves values by less than
    # the noise, and this volume's 8-bit step (≈ 5 ADU) is far below its noise
    worst_abs = {s: max(v["mean_abs_epsilon"] for v in got[s].features.values()) for s in got}
    assert 1.0 < worst_abs["replica"] < 2.5
    assert worst_abs["8bit"] < worst_abs["noise:step=2"] < worst_abs["replica"]
    # only the 8-bit store is kept (the quantisation note reads it); the result is reused
    kept = sorted(p.parent.name for p in (work / "tasks").glob("*/version.zarr"))
    assert kept == ["codec_01_8bit"]
    assert json.loads((work / "features" / "codecs" / "result.json").read_text())["names"] == names
    again = score_volume_lazy(LazyInputs(src, lab, None, SPACING, "given"), prof, work,
                              chunks=(4, 16, 20), n_replicas=3, codecs=CODECS, n_estimators=10,
                              workers=1)  # fmt: skip
    for c in again.codecs:
        assert c.features == got[c.spec].features
        (n,) = c.feature_eps
        np.testing.assert_array_equal(np.asarray(c.feature_eps[n][...]),
                                      np.asarray(got[c.spec].feature_eps[n][...]))  # fmt: skip
