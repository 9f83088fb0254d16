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
