"""Compiled forest inference (`forest_infer`) and block-wise training sampling."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.segmentation import forest_infer as FI  # noqa: E402
from rawsigma.analysis.segmentation.classifier import PixelClassifier  # noqa: E402
from rawsigma.analysis.segmentation.features import iter_feature_blocks  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402


def _scene(size: int = 96, seed: int = 0):
    """Noisy blobs and sparse, partly wrong annotations (deep trees)."""
    rng = np.random.default_rng(seed)
    blobs = ndi.gaussian_filter(rng.random((size, size)), 3) > 0.52
    img = rng.poisson(ndi.gaussian_filter(np.where(blobs, 160.0, 100.0), 1.0)) * 2 + 100
    lab = np.where(rng.random(img.shape) < 0.3, np.where(blobs, 2, 1), 0)
    flip = rng.random(img.shape) < 0.1
    lab[flip & (lab > 0)] = 3 - lab[flip & (lab > 0)]
    return img.astype(np.uint16), lab


@pytest.fixture(scope="module")
def trained():
    img, lab = _scene()
    clf = PixelClassifier("ilastik", n_estimators=30, n_jobs=1, block=48).fit(img, lab)
    return img, lab, clf


def test_same_probabilities_and_labels_as_sklearn(trained):
    img, _, clf = trained
    forest = FI.flatten(clf.model_)
    assert FI.supported(clf.model_) and forest.depth.max() > 5  # not a trivial forest
    x = np.concatenate(
        [f.reshape(-1, f.shape[-1]) for _, f in iter_feature_blocks(img, clf.features)]
    )
    ref = clf.model_.predict_proba(x)
    for threads in (1, 2):
        got = FI.predict_proba(forest, x, threads=threads)
        np.testing.assert_array_equal(got, ref)  # same sums in the same order
    # through the classifier, both ways: the same class everywhere
    fast = clf.predict_proba(img)
    clf.compiled_inference = False
    try:
        slow = clf.predict_proba(img)
    finally:
        clf.compiled_inference = True
    np.testing.assert_array_equal(fast, slow)
    assert 0 < (fast.argmax(-1) == 1).mean() < 1


def test_rejects_wrong_feature_count(trained):
    _, _, clf = trained
    with pytest.raises(ValueError, match="features"):
        FI.predict_proba(FI.flatten(clf.model_), np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("cap", [None, 200, 10**9])
def test_blockwise_training_sample_is_the_full_draw(cap):
    """Block-wise sampling keeps exactly the pixels (and order) that drawing from every
    annotated pixel's features at once kept."""
    img, lab = _scene(80, seed=2)
    clf = PixelClassifier("ilastik", n_estimators=5, block=32, max_samples_per_class=cap)
    classes = np.unique(lab[lab > 0])
    x, y = clf._training_sample(img, lab, classes)
    xs, ys = [], []
    for core, feats in iter_feature_blocks(img, clf.features, block=32):
        sel = lab[core] > 0
        xs.append(feats[sel])
        ys.append(lab[core][sel])
    xa, ya = np.concatenate(xs), np.concatenate(ys)
    if cap:
        rng = np.random.default_rng(clf.random_state)
        keep = []
        for c in classes:
            idx = np.flatnonzero(ya == c)
            if idx.size > cap:
                idx = np.sort(rng.choice(idx, cap, replace=False))
            keep.append(idx)
        k = np.concatenate(keep)
        xa, ya = xa[k], ya[k]
    else:
        order = np.argsort(ya, kind="stable")
        xa, ya = xa[order], ya[order]
    np.testing.assert_array_equal(y, ya)
    np.testing.assert_array_equal(x, xa)
    if cap == 200:
        assert (np.bincount(y)[1:] == 200).all()


@pytest.mark.parametrize("n_classes", [2, 3])
def test_bit_mask_kernel_same_as_sklearn_and_traversal(n_classes):
    """Forests of ≤ 64-leaf trees use the bit-mask kernel: same probabilities as
    sklearn and as the traversal kernel, rows or channel-first, 1 or 2 threads."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(n_classes)
    x = rng.normal(size=(3000, 7)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] ** 2 + rng.normal(0, 0.7, x.shape[0]) > 0.5).astype(int)
    if n_classes == 3:
        y[x[:, 1] > 0.8] = 2
    model = RandomForestClassifier(20, max_leaf_nodes=64, random_state=0).fit(x[:2000], y[:2000])
    forest = FI.flatten(model)
    assert forest.masks is not None and forest.depth.max() >= 6  # not a trivial forest
    walk = FI.flatten(model, masks=False)
    assert walk.masks is None
    xt = x[2000:]
    # features exactly on (float32-rounded) thresholds and one float32 step above
    mf = forest.masks
    for r in range(200):
        j = r % mf.feature.size
        up = np.nextafter(mf.threshold[j], np.float32(np.inf))
        xt[r, mf.feature[j]] = mf.threshold[j] if r % 2 else up
    ref = model.predict_proba(xt)
    for threads in (1, 2):
        np.testing.assert_array_equal(FI.predict_proba(forest, xt, threads), ref)
        np.testing.assert_array_equal(FI.predict_proba(walk, xt, threads), ref)
    np.testing.assert_array_equal(FI.predict_proba_channels(forest, xt.T.copy()), ref)
    np.testing.assert_array_equal(FI.predict_proba_channels(walk, xt.T.copy()), ref)


def test_bit_mask_threshold_equivalence():
    """float32 x <= t (float64) iff x <= floor32(t), on and around every threshold."""
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(size=500), rng.normal(size=500).astype(np.float32)])
    f = FI._float32_floor(t)
    assert f.dtype == np.float32 and (f.astype(np.float64) <= t).all()
    for x in (f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))):
        np.testing.assert_array_equal(x <= t, x <= f)


def test_fused_inference_equals_unfused_and_sklearn(trained):
    """Features classified block by block in the worker threads (channel-first) give
    the probabilities of the channels-last stream and of sklearn, for any block."""
    img, _, clf = trained
    ref = _proba(clf, compiled=False)
    for block, jobs in ((None, 1), (40, 2), ((32, 56), 2)):
        clf.block, clf.n_jobs = block, jobs
        try:
            np.testing.assert_array_equal(_proba(clf, fused=True), ref)
            np.testing.assert_array_equal(_proba(clf, fused=False), ref)
        finally:
            clf.block, clf.n_jobs = 48, 1


def _proba(clf, compiled=True, fused=True):
    img = _scene()[0]
    clf.compiled_inference, clf.fused_inference = compiled, fused
    try:
        return clf.predict_proba(img)
    finally:
        clf.compiled_inference = clf.fused_inference = True


def test_map_feature_blocks_cover_the_bank_once():
    from rawsigma.analysis.segmentation.features import feature_bank, map_feature_blocks

    img = _scene(70, seed=4)[0]
    ref, _ = feature_bank(img, "ilastik", sigmas=(0.7, 2.0), n_workers=1)
    got = np.full(ref.shape, np.nan, np.float32)
    hits = np.zeros(img.shape, int)

    def put(core, feats):
        assert feats.flags.c_contiguous and feats.shape[1:] == img[core].shape
        got[core] = np.moveaxis(feats, 0, -1)
        hits[core] += 1

    cfg = {"preset": "ilastik", "sigmas": (0.7, 2.0)}
    from rawsigma.analysis.segmentation.features import FeatureConfig

    map_feature_blocks(img, FeatureConfig(**cfg), put, block=(24, 31), n_workers=2)
    assert (hits == 1).all()
    np.testing.assert_array_equal(got, ref)


def test_drawn_training_pixels_lie_in_their_class_annotation():
    """The block-by-block draw picks distinct annotated pixels of the right class only,
    at most the cap per class (all of a class below the cap)."""
    img, lab = _scene(80, seed=5)
    clf = PixelClassifier("ilastik", n_estimators=5, block=24, max_samples_per_class=150)
    rng = np.random.default_rng(0)
    for c in (1, 2):
        n = int((lab == c).sum())
        ranks = np.sort(rng.choice(n, 150, replace=False))
        pos = clf._drawn_pixels(lab, c, ranks)
        assert pos.size == 150 == np.unique(pos).size
        assert (lab.ravel()[pos] == c).all()
        every = clf._drawn_pixels(lab, c, None)
        assert every.size == n and (lab.ravel()[every] == c).all()
        np.testing.assert_array_equal(pos, every[ranks])  # rank r = r-th in block order
