"""The compiled per-object sums, size filter and overlaps equal their numpy definitions."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.measurement import moments_kernel
from rawsigma.analysis.measurement.matching import match_objects, split_merge_counts
from rawsigma.analysis.scoring.per_image import drop_small, drop_small_numpy
from scipy import ndimage as ndi


def _labels(seed: int, shape=(120, 150), level=0.55) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random(shape), 2.0) > level
    return ndi.label(mask, np.ones((3, 3), bool))[0].astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1])
def test_label_moments_equal_bincount_sums_bit_for_bit(seed):
    lab = _labels(seed)
    lab[lab == 3] = 0  # an absent label
    nmax = int(lab.max())
    box, count, sums = moments_kernel.label_moments(lab, nmax)
    slices = ndi.find_objects(lab)
    rr, cc = np.nonzero(lab)
    ll = lab[rr, cc]
    top = np.array([0] + [s[0].start if s else 0 for s in slices])
    left = np.array([0] + [s[1].start if s else 0 for s in slices])
    xl, yl = (cc - left[ll]).astype(np.float64), (rr - top[ll]).astype(np.float64)
    want = [np.bincount(ll, w, minlength=nmax + 1) for w in (xl, yl, xl * xl, yl * yl, xl * yl)]
    assert np.array_equal(count, np.bincount(ll, minlength=nmax + 1))
    assert np.array_equal(sums, np.array(want))  # same float64 additions, same order
    for i, s in enumerate(slices, start=1):
        if s is None:
            assert count[i] == 0 and box[2, i] == 0
            continue
        assert box[:, i].tolist() == [s[0].start, s[1].start, s[0].stop - s[0].start,
                                      s[1].stop - s[1].start]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
def test_drop_small_equals_numpy_and_keeps_its_input(dtype):
    lab = _labels(2).astype(dtype)
    before = lab.copy()
    out = drop_small(lab, 12)
    want = drop_small_numpy(lab, 12)
    assert out.dtype == np.int32 and np.array_equal(out, want)
    assert np.array_equal(lab, before)
    assert 0 < out.max() < lab.max()


@pytest.mark.parametrize("seed", [3, 4])
def test_split_merge_runs_equal_numpy_path(seed):
    ref = _labels(seed, level=0.52)
    other = _labels(seed + 10, level=0.52)
    other[ref > 0] = np.where(ref[ref > 0] % 3 == 0, 0, other[ref > 0])
    fast = split_merge_counts(ref, other)  # int32: the compiled runs
    slow = split_merge_counts(ref.astype(np.int64), other.astype(np.int64))  # numpy
    assert fast == slow
    assert fast[0] + fast[1] > 0  # the case is not trivial
    keys, lengths, area_a, area_b = moments_kernel.overlap_runs(
        ref.ravel(), other.ravel(), int(ref.max()), int(other.max())
    )
    assert lengths.sum() == np.count_nonzero((ref > 0) & (other > 0))
    assert np.array_equal(area_a, np.bincount(ref.ravel()))
    assert np.array_equal(area_b, np.bincount(other.ravel(), minlength=int(other.max()) + 1))


def test_identical_centroids_with_a_duplicate_keep_first_come_rule():
    a = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    b = np.array([[1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])  # two at (1, 1)
    res = match_objects(a, b, 3.0)
    assert res.n_identical == 2
    assert res.ref_index.tolist() == [0, 2] and res.other_index.tolist() == [0, 2]
    near = b.copy()
    near[2, 0] += 1e-12  # listed twice (distance > 0 and <= atol): the first-come loop
    res = match_objects(a, near, 3.0)
    assert res.n_identical == 2 and res.ref_index.tolist() == [0, 2]
    res = match_objects(a, a[::-1].copy(), 3.0)  # no duplicate: the vectorised path
    assert res.n_identical == 3 and res.other_index.tolist() == [2, 1, 0]
