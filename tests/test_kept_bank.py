"""The training bank kept for the raw pass, and the block buffers kept across passes."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.segmentation import features
from rawsigma.analysis.segmentation.classifier import (
    PixelClassifier,
    training_labels_from_instances,
)
from rawsigma.analysis.segmentation.scratch import ScratchPool
from scipy import ndimage as ndi


def _scene(seed: int, n: int = 160):
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, n), np.int32)
    for k, (r, c) in enumerate(rng.integers(12, n - 12, (12, 2)), 1):
        yy, xx = np.ogrid[:n, :n]
        truth[(yy - r) ** 2 + (xx - c) ** 2 < 36] = k
    photons = ndi.gaussian_filter(np.where(truth > 0, 300.0, 60.0), 1.0)
    return (rng.poisson(photons) * 2 + 100).astype(np.uint16), truth


def _trained(img, truth, keep: int, block=64) -> PixelClassifier:
    clf = PixelClassifier("ilastik", n_estimators=8, random_state=0, n_jobs=2, block=block)
    clf.keep_bank = keep
    clf.fit(img, training_labels_from_instances(truth))
    return clf


@pytest.mark.parametrize("keep", [1 << 30, 3 * 49 * 64 * 64 * 4])  # all, or 3 blocks
def test_kept_training_blocks_give_the_same_pass(monkeypatch, keep):
    img, truth = _scene(0)
    other, _ = _scene(1)
    ref = _trained(img, truth, 0)
    want = ref.foreground_probabilities([img, other])
    want_single = ref.foreground_probability(img)

    calls = []
    compute = features._compute_block

    def counted(*args, **kw):
        calls.append(1)
        return compute(*args, **kw)

    monkeypatch.setattr(features, "_compute_block", counted)
    clf = _trained(img, truth, keep)
    n_blocks = len(features._block_starts(img.shape, (64, 64)))
    trained_blocks = len(calls)
    kept = len(clf._kept[1])
    assert clf.has_kept_bank() and 0 < kept <= trained_blocks
    assert sum(b.nbytes for b in clf._kept[1].values()) <= keep
    assert (kept == trained_blocks) == (keep == 1 << 30)
    calls.clear()
    got = clf.foreground_probabilities([img, other])  # raw: kept blocks; other: computed
    assert [np.array_equal(a, b) for a, b in zip(got, want, strict=True)] == [True, True]
    assert len(calls) == 2 * n_blocks - kept  # the kept blocks were not filtered again
    assert not clf.has_kept_bank()  # used once, then released
    calls.clear()
    again = clf.foreground_probabilities([img])  # computed again, same values
    assert np.array_equal(again[0], want[0]) and len(calls) == n_blocks
    # the single-image pass (foreground_probability) uses them too
    clf = _trained(img, truth, keep)
    assert np.array_equal(clf.foreground_probability(img), want_single)
    assert not clf.has_kept_bank()


def test_kept_blocks_are_not_used_for_another_image():
    img, truth = _scene(0)
    changed = img.copy()
    changed[5, 5] += 1  # same shape and dtype, other values
    clf = _trained(img, truth, 1 << 30)
    ref = _trained(img, truth, 0)
    assert np.array_equal(clf.foreground_probability(changed), ref.foreground_probability(changed))
    assert not clf.has_kept_bank()  # released: the pass that follows training decides
    assert _trained(img, truth, 0)._kept is None  # keep_bank = 0 keeps nothing


def test_scratch_pool_reuses_by_dtype_and_size():
    pool = ScratchPool(keep=2)
    a = pool.take(100)
    assert a.dtype == np.float32 and a.size == 100
    pool.give(a)
    b = pool.take(60)  # fits in a's buffer: the same memory
    assert b.size == 60 and np.shares_memory(a, b)
    pool.give(b)
    c = pool.take(101)  # too large: a new buffer
    assert not np.shares_memory(a, c)
    d = pool.take(10, np.float64)  # 80 bytes: a's memory, as float64
    assert d.dtype == np.float64 and np.shares_memory(a, d)
    for buf in (c, d, np.empty(5, np.float32)):
        pool.give(buf)
    assert len(pool._free) == 2  # at most ``keep`` free buffers
    with pool.buffer(50) as e:
        assert e.size == 50
    pool.trim(1)
    assert [b.nbytes for b in pool._free] == [404]  # the largest kept
    pool.clear()
    assert pool._free == []


def test_scratch_pool_memory_serves_any_dtype():
    pool = ScratchPool()
    block = np.empty((3, 4, 5), np.float32)
    pool.give(block[1])  # a view: the whole block's memory is what is kept
    pool.give(block)  # the same memory again: held once
    assert len(pool._free) == 1 and pool._free[0].nbytes == block.nbytes
    acc = pool.take(30, np.float64)  # 240 bytes of the block's 240
    assert acc.dtype == np.float64 and np.shares_memory(acc, block)
    acc[:] = 1.5
    pool.give(acc)
    assert pool.take(31, np.float64).base is None  # too large: new memory


def test_passes_with_a_scratch_pool_give_the_same_values():
    img, truth = _scene(2)
    clf = _trained(img, truth, 0)
    want = clf.foreground_probabilities([img])[0]
    pool = ScratchPool()
    for _ in range(2):
        assert np.array_equal(clf.foreground_probabilities([img], scratch=pool)[0], want)
    assert len(pool._free) >= 1  # the buffers were given back for the next pass


def test_kept_blocks_feed_the_scratch_pool():
    """With a pool, each kept block's memory is given to it once classified (at most
    ``keep`` held), and the next pass runs in that memory with the same values."""
    img, truth = _scene(3)
    want = _trained(img, truth, 0).foreground_probabilities([img])[0]
    clf = _trained(img, truth, 1 << 30)
    kept_memory = {b.ctypes.data for b in clf._kept[1].values()}
    pool = ScratchPool(keep=2)
    assert np.array_equal(clf.foreground_probabilities([img], scratch=pool)[0], want)
    assert len(pool._free) == 2
    assert any(b.ctypes.data in kept_memory for b in pool._free)
    assert np.array_equal(clf.foreground_probabilities([img], scratch=pool)[0], want)


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_NOHUGEPAGE"), reason="Linux only")
def test_small_page_array_when_the_kernel_refuses_the_advice(monkeypatch):
    """A kernel without transparent huge pages refuses MADV_NOHUGEPAGE (EINVAL): the
    kept block is still made, in ordinary memory, and holds what is written."""
    import mmap

    from rawsigma.analysis.segmentation import classifier

    monkeypatch.setattr(mmap, "MADV_NOHUGEPAGE", 0x7FFF, raising=False)  # no such advice
    a = classifier._small_page_array((3, 5, 7), np.dtype(np.float32))
    a[...] = np.arange(a.size, dtype=np.float32).reshape(a.shape)
    assert a.shape == (3, 5, 7) and a.dtype == np.float32
    assert float(a.sum()) == float(np.arange(105).sum())
