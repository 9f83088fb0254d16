"""Object matching: identical centroids, nearest within the radius, one-to-one, splits."""

import numpy as np
import pytest
from rawsigma.analysis.measurement.matching import match_objects, split_merge_counts


def test_identical_centroids_match_all():
    c = np.array([[10.0, 10.0], [20.0, 30.0], [50.5, 7.25]])
    r = match_objects(c, c[::-1])
    assert r.n_matched == 3 and r.n_identical == 3
    np.testing.assert_array_equal(r.ref_index, [0, 1, 2])
    np.testing.assert_array_equal(r.other_index, [2, 1, 0])
    assert r.distance.max() == 0
    assert r.unmatched_ref.size == 0 and r.unmatched_other.size == 0


def test_shifted_within_radius_and_rejected_beyond():
    ref = np.array([[10.0, 10.0], [40.0, 40.0], [80.0, 80.0]])
    oth = np.array([[11.0, 12.0], [40.0, 43.5], [80.0, 80.0]])  # 2.24, 3.5, 0
    r = match_objects(ref, oth, max_distance=3)
    assert r.n_matched == 2
    assert set(r.ref_index.tolist()) == {0, 2}
    np.testing.assert_allclose(sorted(r.distance), [0.0, np.sqrt(5)])
    np.testing.assert_array_equal(r.unmatched_ref, [1])
    np.testing.assert_array_equal(r.unmatched_other, [1])
    r4 = match_objects(ref, oth, max_distance=4)  # configurable radius
    assert r4.n_matched == 3


def test_one_to_one_is_optimal_not_greedy():
    # ref 0 and ref 1 both have other 0 as nearest; greedy by ref order would give
    # (0,0) and leave ref 1 without partner; the assignment finds 2 pairs.
    ref = np.array([[0.0, 0.0], [0.0, 2.0]])
    oth = np.array([[0.0, 1.2], [0.0, -1.5]])
    r = match_objects(ref, oth, max_distance=3)
    assert r.n_matched == 2
    assert dict(zip(r.ref_index.tolist(), r.other_index.tolist(), strict=True)) == {0: 1, 1: 0}


def test_identical_pair_taken_first():
    ref = np.array([[5.0, 5.0], [5.0, 7.0]])
    oth = np.array([[5.0, 5.0]])
    r = match_objects(ref, oth)
    assert r.n_identical == 1 and r.ref_index.tolist() == [0]


def test_empty_inputs():
    r = match_objects(np.zeros((0, 2)), np.array([[1.0, 1.0]]))
    assert r.n_matched == 0 and r.unmatched_other.tolist() == [0]
    r = match_objects(np.zeros((0, 2)), np.zeros((0, 2)))
    assert r.n_matched == 0
    with pytest.raises(ValueError):
        match_objects(np.zeros((2, 2)), np.zeros((2, 2)), max_distance=-1)


def test_split_and_merge_counts():
    ref = np.zeros((20, 40), int)
    ref[2:10, 2:18] = 1  # will be split in two
    ref[12:18, 2:8] = 2  # two objects that get merged
    ref[12:18, 10:16] = 3
    ref[2:8, 25:30] = 4  # unchanged
    oth = np.zeros_like(ref)
    oth[2:10, 2:9] = 1
    oth[2:10, 11:18] = 2
    oth[12:18, 2:16] = 3
    oth[2:8, 25:30] = 4
    assert split_merge_counts(ref, oth) == (1, 1)
    r = match_objects(
        np.array([[5.5, 9.5], [14.5, 4.5], [14.5, 12.5], [4.5, 27]]),
        np.array([[5.5, 5.5], [5.5, 14.5], [14.5, 8.5], [4.5, 27]]),
        ref_labels=ref,
        other_labels=oth,
    )
    assert (r.n_split, r.n_merged) == (1, 1)
    assert r.summary()["n_unmatched_ref"] == 3
