"""Scoring features from the segmentation pass's blocks = computed on their own (issue 16).

`shared_filters.scoring_block` copies the scales the classifier's bank holds and
computes the others; `per_image.SharedPass` gives, in the segmentation pass, the
scoring features of an image and the replicas' σ. Every value must equal the separate
computations (`feature_maps_for_scoring`, `replica_feature_sigma`), bit for bit, and a
whole `score_image` must give the same result either way.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from rawsigma.analysis.segmentation.features import (
    ILASTIK_SIGMAS,
    SCORING_SIGMAS,
    FeatureConfig,
    feature_maps_for_scoring,
    map_feature_blocks,
)
from rawsigma.analysis.segmentation.shared_filters import plan_scoring_channels, scoring_block

SIGMAS = (1.0, 2.0, 4.0)  # the scales before the bank's own (1.0 shared, 2 and 4 computed)


def test_default_scoring_scales_are_the_ilastik_banks_in_1_to_4():
    from rawsigma.analysis.scoring.plans import ScorePlan

    assert SCORING_SIGMAS == (1.0, 1.6, 3.5)
    assert SCORING_SIGMAS == tuple(s for s in ILASTIK_SIGMAS if 1 <= s <= 4)
    assert tuple(ScorePlan().score_sigmas) == SCORING_SIGMAS
    channels = plan_scoring_channels(FeatureConfig("ilastik"), SCORING_SIGMAS)
    assert channels.computed == () and len(channels.from_bank) == 12


def _image(shape=(90, 70), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 300 + 150 * np.sin(y / 7.0) * np.cos(x / 5.0)
    return rng.poisson(base).astype(np.uint16)


@pytest.mark.parametrize(
    ("bank", "shared"),
    [
        (FeatureConfig("ilastik"), (1.0,)),  # the classifier's default bank, scales 1, 2, 4
        (FeatureConfig("ilastik", sigmas=(0.7, 1.6)), ()),  # no common scale
        (FeatureConfig("ilastik", features=("GaussianSmoothing",)), ()),  # channels missing
        (FeatureConfig("weka"), ()),
    ],
)
def test_scoring_block_from_the_bank_equals_feature_maps(bank, shared):
    img = _image()
    channels = plan_scoring_channels(bank, SIGMAS)
    assert channels.computed == tuple(s for s in SIGMAS if s not in shared)
    assert len(channels.from_bank) == 4 * len(shared)
    want, names = feature_maps_for_scoring(img, sigmas=SIGMAS, n_workers=1)
    assert channels.names == names
    got = np.full(want.shape, np.nan, np.float32)

    def put(core, feats):
        buf = np.empty((len(names),) + feats.shape[1:], np.float32)
        got[core] = np.moveaxis(scoring_block(img, core, channels, feats, buf), 0, -1)

    map_feature_blocks(img, bank, put, block=(24, 31), n_workers=2)
    np.testing.assert_array_equal(got, want)


def test_scoring_channels_reject_small_scales():
    with pytest.raises(ValueError, match="0.7"):
        plan_scoring_channels(FeatureConfig("ilastik"), (0.5, 1.0))


@pytest.fixture(scope="module")
def trained():
    from rawsigma.analysis.scoring.per_image import classifier_segmenter
    from rawsigma.analysis.scoring.plans import ScorePlan

    img = _image((80, 96), seed=1)
    lab = np.zeros(img.shape, np.int64)
    lab[img > 380] = 2
    lab[img < 220] = 1
    plan = ScorePlan(codecs=["8bit"], n_replicas=3, min_size=2, n_estimators=8)
    segment, clf = classifier_segmenter(img, lab, plan, 4)
    return img, plan, segment, clf


@pytest.mark.parametrize(
    ("workers", "sigmas", "computed"),
    [(1, None, ()), (2, None, ()), (1, SIGMAS, (2.0, 4.0)), (2, SIGMAS, (2.0, 4.0))],
)
def test_shared_pass_equals_the_separate_computations(
    trained, workers, sigmas, computed, monkeypatch
):
    from rawsigma.analysis.scoring import standard_score as sc
    from rawsigma.analysis.scoring.per_image import scoring_features_provenance, shared_pass
    from rawsigma.analysis.segmentation import features as fb

    img, plan, segment, clf = trained
    if sigmas is not None:
        plan = plan.model_copy(update={"score_sigmas": list(sigmas)})
    shared = shared_pass(clf, plan)
    assert shared is not None and shared.channels.computed == computed
    prov = scoring_features_provenance(shared, plan)
    assert prov["computed"] == list(computed)
    assert prov["from_model_bank"] == [s for s in plan.score_sigmas if s not in computed]
    want, _ = feature_maps_for_scoring(img, sigmas=plan.score_sigmas, n_workers=1)
    reps = np.stack([_image(img.shape, seed=10 + i) for i in range(4)])
    want_sigma = sc.replica_feature_sigma(list(reps), plan.score_sigmas, 1)
    monkeypatch.setattr(fb, "MAP_BLOCK_MEMORY", 1_600_000)  # two blocks of the bank
    for last in (True, False):
        out, feats = shared.with_features(img, channels_last=last)
        np.testing.assert_array_equal(out, segment(img))
        np.testing.assert_array_equal(feats if last else np.moveaxis(feats, 0, -1), want)
    bufs = shared.bank_channel_buffers(img.shape)  # reused: stale values overwritten
    for b in bufs.values():
        b[...] = np.nan
    for given in (None, bufs, bufs):
        out, chans = shared.with_bank_channels(img, workers, given)
        np.testing.assert_array_equal(out, segment(img))
        assert list(chans) == [shared.channels.names[i] for i, _ in shared.channels.from_bank]
        for name, chan in chans.items():
            np.testing.assert_array_equal(chan, want[..., shared.channels.names.index(name)])
            assert given is None or chan is given[name]
    masks, sigma = shared.replicas(reps, workers)
    np.testing.assert_array_equal(np.moveaxis(sigma, 0, -1), want_sigma)
    assert len(masks) == len(reps)
    for mask, r in zip(masks, reps, strict=True):
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, clf.foreground_probability(r) > plan.threshold)
        np.testing.assert_array_equal(shared.segment_output(mask), segment(r))
    with pytest.raises(ValueError, match="two replicas"):
        shared.replicas(reps[:1], workers)


def test_no_shared_pass_without_the_fused_inference(trained):
    from rawsigma.analysis.scoring.per_image import shared_pass

    img, plan, _, clf = trained
    clf.fused_inference = False
    try:
        assert shared_pass(clf, plan) is None
        with pytest.raises(ValueError, match="fused"):
            clf.foreground_probabilities([img])
    finally:
        clf.fused_inference = True


def test_score_image_is_the_same_with_and_without_the_shared_pass(monkeypatch):
    """The whole run: results, objects and every map equal (only the timings differ)."""
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.analysis.segmentation.classifier import PixelClassifier

    model = SensorModel.preset("scmos", (112, 112), seed=3)
    bright, truth = nuclei2d((112, 112), n_objects=9, rng=5)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(7))
    args = {"labels": training_labels(truth), "codecs": ["replica", "8bit", "jpeg@10"],
            "n_replicas": 4, "seed": 2, "min_size": 5, "n_estimators": 10}  # fmt: skip
    calls = []
    shared = score_image(img, model.true_profile(), progress=lambda *c: calls.append(c), **args)
    blocks = [c for c in calls if c[0] == "segment replicas"]
    assert blocks and blocks[-1][1] == blocks[-1][2]  # the replicas' pass, block by block
    assert ("synthesis", 1, 1) in calls and ("replicas", 4, 4) in calls
    monkeypatch.setattr(PixelClassifier, "shares_blocks", lambda self: False)
    alone = score_image(img, model.true_profile(), **args)

    def plain(r):
        d = r.to_dict()
        d.pop("timings_s")
        skip = ("date_utc", "scoring_features")
        d["provenance"] = {k: v for k, v in d["provenance"].items() if k not in skip}
        return d

    scales = list(SCORING_SIGMAS)
    assert shared.provenance["scoring_features"]["from_model_bank"] == scales
    assert alone.provenance["scoring_features"]["computed"] == scales
    assert shared.feature_names == alone.feature_names
    assert shared.feature_names[:3] == [f"GaussianSmoothing_s{s:g}" for s in scales]

    # as JSON: NaN (a global's leave-one-out ε where σ is 0) equals NaN there
    assert json.dumps(plain(shared), sort_keys=True) == json.dumps(plain(alone), sort_keys=True)
    assert "segment (sum over images)" in shared.timings
    np.testing.assert_array_equal(shared.raw_labels, alone.raw_labels)
    for a, b in zip(shared.codecs, alone.codecs, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.pixel_eps, b.pixel_eps)
        assert list(a.feature_eps) == list(b.feature_eps) and a.features == b.features
        for name in a.feature_eps:
            np.testing.assert_array_equal(a.feature_eps[name], b.feature_eps[name])


@pytest.mark.parametrize("kind", ["gaps", "mask", "empty", "uint16"])
def test_measure_objects_globals_equal_global_params(kind):
    """The globals read from the table = `global_params` (issue 16: one pass less)."""
    from rawsigma.analysis.measurement.morphometry import global_params
    from rawsigma.analysis.scoring.per_image import measure_objects

    rng = np.random.default_rng(3)
    lab = np.zeros((60, 70), np.int32)
    if kind != "empty":
        for k, (y, x) in enumerate(rng.integers(0, 55, (12, 2)), 1):
            lab[y : y + 5, x : x + 4] = 3 * k  # label gaps, overlaps overwrite
    lab = {"mask": lab > 0, "uint16": lab.astype(np.uint16)}.get(kind, lab)
    table, glob = measure_objects(lab)
    assert glob == {k: float(v) for k, v in global_params(lab).items()}
    assert all(type(v) is float for v in glob.values())
    assert (glob["count"] > 0) == (kind != "empty")
