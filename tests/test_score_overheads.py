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
