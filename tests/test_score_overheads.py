"""Score's work outside the segmentation passes: the shortcuts give numpy's values."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from rawsigma.analysis.scoring import runchecks as rc
from rawsigma.analysis.scoring.inputs import check_labels
from rawsigma.analysis.segmentation.label_values import distinct_values


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint32])
def test_distinct_values_is_numpy_unique(dtype):
    rng = np.random.default_rng(0)
    top = 250 if dtype == np.uint8 else 3000
    lab = rng.integers(0, top, (37, 41)).astype(dtype)
    lab[lab % 7 == 3] = 0  # gaps in the values
    want = np.unique(lab[lab > 0])
    got = distinct_values(lab, positive=True)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    every = distinct_values(lab)  # with 0, as `quantisation_note`'s levels
    assert every.dtype == lab.dtype
    np.testing.assert_array_equal(every, np.unique(lab))
    if np.dtype(dtype).kind == "i":
        lab[0, 0] = -5  # signed: negative values are not positive values
        np.testing.assert_array_equal(distinct_values(lab, positive=True), np.unique(lab[lab > 0]))
    assert distinct_values(np.zeros((3, 4), dtype), positive=True).size == 0
    assert distinct_values(np.zeros((0, 4), dtype), positive=True).size == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_distinct_values_counted_in_chunks(dtype, monkeypatch):
    """8/16-bit values counted a chunk at a time (no intp copy of the image): the values
    `np.unique` gives, whatever the chunk boundaries."""
    from rawsigma.analysis.segmentation import label_values

    monkeypatch.setattr(label_values, "_COUNT_CHUNK", 97)  # many chunks, a partial last one
    rng = np.random.default_rng(4)
    top = 200 if dtype == np.uint8 else 30000
    a = rng.integers(0, top, (53, 61)).astype(dtype)
    a[a % 5 == 1] = 0
    a[-1, -1] = top - 1  # the largest value in the last, partial chunk
    np.testing.assert_array_equal(distinct_values(a), np.unique(a))
    np.testing.assert_array_equal(distinct_values(a, positive=True), np.unique(a[a > 0]))
    assert distinct_values(a).dtype == a.dtype


def test_check_labels_classes_and_errors_unchanged():
    lab = np.zeros((40, 40), np.uint16)
    lab[:10] = 1
    lab[20:30] = 2
    assert check_labels(lab, lab.shape, foreground_class=2).dtype == np.int32
    with pytest.raises(Exception, match="foreground class 3"):
        check_labels(lab, lab.shape, foreground_class=3)
    with pytest.raises(Exception, match="empty annotations"):
        check_labels(np.zeros((40, 40), np.uint8), (40, 40))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int32])
def test_quantisation_note_levels_counted_equal_the_sorted_ones(dtype, monkeypatch):
    """The note computed from counted levels equals the one from `np.unique`."""
    rng = np.random.default_rng(1)
    top = 255 if dtype == np.uint8 else 4000
    dec = (rng.integers(0, top, (64, 70)) // 17 * 17).astype(dtype)
    sigma = rng.uniform(5, 30, dec.shape)
    sigma[:3] = np.nan
    objs = (rng.random(dec.shape) > 0.6).astype(np.int32)
    got = rc.quantisation_note("8bit", dec, sigma, objs)
    monkeypatch.setattr(rc.np, "bincount", None)  # the counting path cannot run
    counted = dec.min() >= 0 and dec.max() < 1 << 16  # `distinct_values` counts them
    with pytest.raises(TypeError) if counted else contextlib.nullcontext():
        rc.quantisation_note("8bit", dec, sigma, objs)
    monkeypatch.undo()
    levels = np.unique(dec)
    step = float(np.median(np.diff(levels.astype(np.float64))))
    assert got is not None and got["step"] == step == 17.0
    assert got["sigma_objects"] == float(np.median(sigma[(objs > 0) & np.isfinite(sigma)]))


def test_classifier_fit_classes_from_counts():
    """`PixelClassifier.fit` finds the annotated classes by counting (sparse values)."""
    from rawsigma.analysis.segmentation.classifier import PixelClassifier

    rng = np.random.default_rng(2)
    img = rng.normal(100, 5, (48, 48)).astype(np.float32)
    lab = np.zeros(img.shape, np.int64)
    lab[:8] = 1
    lab[30:40] = 4  # classes 1 and 4: the gap is not a class
    img[30:40] += 40
    clf = PixelClassifier("ilastik", n_estimators=5, random_state=0, foreground_class=4)
    clf.fit(img, lab)
    assert clf.classes_.tolist() == [1, 4]


@pytest.mark.parametrize("sigma_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dec_dtype", [np.uint16, np.float32, np.float64])
def test_pixel_epsilon_equals_the_out_of_place_expression(dec_dtype, sigma_dtype):
    from rawsigma.analysis.scoring.reference import pixel_epsilon

    rng = np.random.default_rng(3)
    raw = rng.integers(0, 60000, (50, 60)).astype(np.uint16)
    dec = rng.normal(3000, 900, raw.shape).clip(0, 65535).astype(dec_dtype)
    sigma = rng.uniform(0.3, 40, raw.shape).astype(sigma_dtype)
    sigma[0, :4] = np.nan  # saturated pixels
    want = ((raw.astype(np.float32) - dec.astype(np.float32)) / sigma).astype(np.float32)
    got = pixel_epsilon(raw, dec, sigma)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def _outcome_parts(o):
    return o.labels, o.table, o.globals, o.n_components


@pytest.mark.parametrize("min_size", [0, 5, 40])
def test_outcome_of_own_labels_filtered_in_place_same_outcome(min_size):
    """``own=True``: the pass's labels renumbered in place, the outcome of a copy."""
    from rawsigma.analysis.scoring import per_image as pi
    from rawsigma.analysis.scoring.plans import ScorePlan
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    mask = ndi.gaussian_filter(rng.random((96, 128)), 1.5) > 0.52
    labels = pi.to_objects(mask, 0.5)
    assert labels.max() > 10 and np.bincount(labels.ravel())[1:].min() < 5  # small ones
    plan = ScorePlan(min_size=min_size)
    clock = pi.StageClock()
    kept = labels.copy()
    copied = pi.outcome_of(labels, plan, clock)
    np.testing.assert_array_equal(labels, kept)  # not the caller's: left as it was
    given = labels.copy()
    owned = pi.outcome_of(given, plan, clock, own=True)
    if min_size > 1:
        assert owned.labels is given  # renumbered where it was: no full-size copy
    want = pi.drop_small_numpy(kept, min_size) if min_size > 1 else kept
    for a, b in zip(_outcome_parts(copied), _outcome_parts(owned), strict=True):
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(owned.labels, want)
    assert owned.n_components == int(kept.max())


def test_drop_small_in_place_only_on_writeable_int32():
    from rawsigma.analysis.scoring import per_image as pi

    lab = np.zeros((8, 8), np.int64)
    lab[0, 0], lab[2:6, 2:6], lab[7, 7] = 1, 2, 3
    want = pi.drop_small_numpy(lab, 3)
    out = pi.drop_small(lab, 3, in_place=True)  # int64: a new int32 array, lab untouched
    assert out is not lab and lab.max() == 3
    np.testing.assert_array_equal(out, want)
    ro = lab.astype(np.int32)
    ro.flags.writeable = False
    np.testing.assert_array_equal(pi.drop_small(ro, 3, in_place=True), want)
    assert ro.max() == 3
    rw = lab.astype(np.int32)
    assert pi.drop_small(rw, 3, in_place=True) is rw
    np.testing.assert_array_equal(rw, want)
