"""Scoring statistics computed in slices / blocks give the whole-array values (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.scoring import standard_score as sc
from rawsigma.analysis.segmentation.features import feature_maps_for_scoring
from rawsigma.analysis.segmentation.scratch import ScratchPool


def _welford(stacks):
    """The former whole-array fold (float64 temporaries of the full stack)."""
    mean = np.zeros(stacks[0].shape)
    m2 = np.zeros(stacks[0].shape)
    for n, f in enumerate(stacks, 1):
        f = f.astype(np.float64)
        d = f - mean
        mean += d / n
        m2 += d * (f - mean)
    return np.sqrt(m2 / (len(stacks) - 1))


def test_feature_stats_in_slices_equal_the_whole_fold(monkeypatch):
    rng = np.random.default_rng(0)
    stacks = [rng.normal(5, 2, (37, 11, 3)).astype(np.float32) for _ in range(6)]
    real = sc._slices
    monkeypatch.setattr(sc, "_slices", lambda a: real(a, elements=50))  # many slices
    fs = sc.FeatureStats()
    for f in stacks:
        fs.add(f)
    assert len(sc._slices(stacks[0])) > 5
    np.testing.assert_array_equal(fs.sigma(), _welford(stacks))
    np.testing.assert_array_equal(fs.sigma(np.float32), _welford(stacks).astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        fs.add(stacks[0][:5])


@pytest.mark.parametrize("workers", [1, 2])
def test_replica_feature_sigma_equals_folding_full_maps(workers, monkeypatch):
    from rawsigma.analysis.segmentation import features as fb

    rng = np.random.default_rng(1)
    base = 200 + 80 * np.sin(np.arange(90)[:, None] / 7.0) * np.cos(np.arange(70) / 5.0)
    reps = [rng.poisson(base).astype(np.uint16) for _ in range(4)]
    sig = (1.0, 2.0)
    ref = _welford([feature_maps_for_scoring(r, sigmas=sig, n_workers=1)[0] for r in reps])
    monkeypatch.setattr(fb, "MAP_BLOCK_MEMORY", 200_000)  # several blocks
    got = sc.replica_feature_sigma(reps, sig, n_workers=workers)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert (got > 0).all()


@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("sat", [False, True])
def test_codec_feature_epsilon_equals_the_full_stack_scores(sat, given, monkeypatch):
    """One scale at a time (`feature_scores`) = `feature_epsilon` + `worst_feature_map`
    on the decoded image's full stack: same numbers, same worst map (NaN where σ = 0).
    ``given``: the decoded image's channels handed in (as its segmentation pass does),
    raw and σ channel-first; the worst map is then the ε computed for the statistics."""
    from rawsigma.analysis.scoring.feature_scores import codec_feature_epsilon
    from rawsigma.analysis.segmentation import features as fb

    rng = np.random.default_rng(2)
    base = 300 + 120 * np.sin(np.arange(80)[:, None] / 6.0) * np.cos(np.arange(96) / 9.0)
    raw = rng.poisson(base).astype(np.uint16)
    dec = (raw // 4 * 4).astype(np.uint16)  # a lossy codec
    sig = (1.0, 2.0, 4.0)
    reps = [rng.poisson(base).astype(np.uint16) for _ in range(3)]
    if sat:  # a flat patch: σ = 0 there for every replica
        for a in (raw, dec, *reps):
            a[:30, :30] = 500
    feats, names = feature_maps_for_scoring(raw, sigmas=sig, n_workers=1)
    sigma = sc.replica_feature_sigma(reps, sig)
    full = feature_maps_for_scoring(dec, sigmas=sig, n_workers=1)[0]
    want = sc.feature_epsilon(feats, sigma, full, names)
    want_map = sc.worst_feature_map(want, feats, sigma, full, names)
    monkeypatch.setattr(fb, "MAP_BLOCK_MEMORY", 150_000)  # other blocks than the reference
    if given:
        chans = {n: np.ascontiguousarray(full[..., i]) for i, n in enumerate(names)}
        first = [np.ascontiguousarray(np.moveaxis(a, -1, 0)) for a in (feats, sigma)]
        got, got_map = codec_feature_epsilon(*first, dec, names, sig, chans, True)
        assert chans == {}  # every channel used, and freed
    else:
        got, got_map = codec_feature_epsilon(feats, sigma, dec, names, sig)
    assert list(got) == names and got == want
    assert list(got_map) == list(want_map) and len(got_map) == 1
    (name,) = got_map
    np.testing.assert_array_equal(got_map[name], want_map[name])
    assert got_map[name].dtype == np.float32
    assert np.isnan(got_map[name]).any() == sat


@pytest.mark.parametrize("sat", [False, True])
def test_codec_feature_epsilon_spare_buffers_same_scores(sat):
    """``scratch``: scratch reused call to call (stale values in it) gives the same
    statistics and worst maps; a returned map is never written by a later call."""
    from rawsigma.analysis.scoring.feature_scores import codec_feature_epsilon

    rng = np.random.default_rng(5)
    base = 300 + 120 * np.sin(np.arange(64)[:, None] / 6.0) * np.cos(np.arange(72) / 9.0)
    raw = rng.poisson(base).astype(np.uint16)
    sig = (1.0, 2.0)
    reps = [rng.poisson(base).astype(np.uint16) for _ in range(3)]
    if sat:
        for a in (raw, *reps):
            a[:20, :20] = 500
    feats, names = feature_maps_for_scoring(raw, sigmas=sig, n_workers=1)
    sigma = sc.replica_feature_sigma(reps, sig)
    decs = [(raw // q * q).astype(np.uint16) for q in (2, 8, 4)]
    want = [codec_feature_epsilon(feats, sigma, d, names, sig) for d in decs]
    pool = ScratchPool(keep=4)
    for _ in range(2):
        pool.give(np.full(raw.size, np.nan, np.float32))  # stale contents
    pool.give(np.zeros(7, np.float32))  # a buffer too small is not used
    got = []
    for d in decs:
        got.append(codec_feature_epsilon(feats, sigma, d, names, sig, scratch=pool))
        assert 1 <= len(pool._free) <= 4
    spare = pool._free
    n_new = len({b.ctypes.data for b in spare})
    assert n_new == len(spare)  # no buffer twice in the spares
    for (ws, wm), (gs, gm) in zip(want, got, strict=True):
        assert gs == ws and list(gm) == list(wm)
        (name,) = wm
        np.testing.assert_array_equal(gm[name], wm[name])  # unchanged by later calls
        assert not any(np.shares_memory(gm[name], b) for b in spare)
