"""The announced first-run compile of the scoring and accumulation kernels (issue 16).

The warm-ups compile the kernels on tiny inputs; they are only useful if real use then
compiles nothing more (same argument types), and if they say so while compiling.
"""

from __future__ import annotations

import numpy as np
from rawsigma import jitcache
from rawsigma.analysis.measurement import moments_kernel as mk
from rawsigma.analysis.measurement import outline_kernel
from rawsigma.analysis.measurement.matching import split_merge_counts
from rawsigma.analysis.measurement.morphometry import measure
from rawsigma.analysis.noisemodel import replica_kernel
from rawsigma.analysis.noisemodel.synthesis import synthesize
from rawsigma.analysis.scoring import first_run, welford_kernel
from rawsigma.analysis.scoring.per_image import drop_small, to_objects
from rawsigma.analysis.scoring.standard_score import replica_feature_sigma
from rawsigma.analysis.segmentation import forest_infer
from rawsigma.calib import moments_kernel
from rawsigma.calib.moments import PixelMoments
from rawsigma.calib.profile import CameraProfile


def _signatures(dispatchers) -> list[int]:
    return [len(d.signatures) for d in dispatchers]


def _forest(rng: np.random.Generator) -> forest_infer.FlatForest:
    from sklearn.ensemble import RandomForestClassifier

    x = rng.random((300, 4)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0.6).astype(int)
    model = RandomForestClassifier(5, max_leaf_nodes=16, random_state=0).fit(x, y)
    forest = forest_infer.flatten(model)
    assert forest.masks is not None  # the mask kernel, as with the presets
    return forest


def test_scoring_warm_up_compiles_what_scoring_uses() -> None:
    """After `first_run.warm_up`, measuring objects, the compiled forest inference and
    the replicas' feature σ compile no further signature."""
    first_run.warm_up()
    assert first_run.pending() == []
    for step in first_run.STEPS:  # loaded from the cache or compiled: registered
        step()
    kernels = [forest_infer.KERNELS["mask"], outline_kernel.shape_params, welford_kernel.fold]
    kernels += [mk.label_moments, mk.size_relabel, mk.overlap_runs, replica_kernel.redraw_rows]
    before = _signatures(kernels)
    rng = np.random.default_rng(3)
    lab = np.zeros((40, 50), np.uint16)  # measure casts labels to one type (int32)
    lab[5:15, 4:20], lab[22:35, 30:41], lab[30, 5] = 1, 2, 3
    assert measure(lab)["label"].tolist() == [1, 2, 3]
    comps = to_objects(lab > 0, 0.5)  # the scoring's path: label, size filter, overlaps
    assert drop_small(comps, 5).max() == 2
    assert split_merge_counts(drop_small(comps, 5), comps) == (0, 0)
    prof = CameraProfile.uniform((6, 7), gain=2.0, offset=100.0, read_noise=3.0, bit_depth=12)
    img = np.full((6, 7), 400, np.uint16)
    img[0, :3] = (0, 4095, 105)  # below the offset, saturated, a small mean
    assert synthesize(img, prof, 2, 0)[:, 0, 1].tolist() == [4095, 4095]
    forest = _forest(rng)
    feats = rng.random((4, 500)).astype(np.float32)
    p = forest_infer.predict_proba_channels(forest, feats)
    forest_infer.predict_proba(forest, feats.T.copy(), threads=2)
    assert p.shape == (500, 2)
    reps = [rng.poisson(50.0, (24, 24)).astype(np.float32) for _ in range(3)]
    assert np.all(np.isfinite(replica_feature_sigma(reps, [1.0])))
    assert _signatures(kernels) == before
    assert first_run.warm_up() == 0.0


def test_accumulator_warm_up_compiles_what_pixel_moments_uses() -> None:
    """Every kind of accumulator (dark/level, flicker or not, minimum) uses the
    signature `moments_kernel.warm_up` compiles for its frame type."""
    kernels = [moments_kernel.frame_sums, moments_kernel.accumulate]
    for dtype in (np.uint16, np.uint8):
        moments_kernel.warm_up(dtype=dtype)
        moments_kernel.call_tiny(dtype)  # loaded from the cache or compiled: registered
        before = _signatures(kernels)
        frames = np.random.default_rng(1).poisson(40, (3, 9, 7)).astype(dtype)
        for kw in ({}, {"higher": False}, {"flicker": False}, {"track_min": True}):
            pm = PixelMoments((9, 7), **kw)
            pm.add(frames)
            assert pm.n == 3
        assert _signatures(kernels) == before
    assert moments_kernel.warm_up() == 0.0


def test_warm_ups_announce_their_stage(monkeypatch) -> None:
    seen: list[tuple] = []
    monkeypatch.setattr(first_run, "pending", lambda: ["shape_params"])
    assert first_run.warm_up(lambda *a: seen.append(a)) > 0
    assert seen == [(first_run.STAGE, i, 4) for i in range(5)]
    seen.clear()
    monkeypatch.setattr(jitcache, "pending", lambda dispatchers: ["accumulate"])
    assert moments_kernel.warm_up(lambda *a: seen.append(a)) > 0
    assert seen == [(moments_kernel.STAGE, 0, 1), (moments_kernel.STAGE, 1, 1)]
    assert "first run only" in first_run.STAGE and "first run only" in moments_kernel.STAGE
