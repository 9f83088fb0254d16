"""Feature bank: channel counts, names, dtype, block-wise equality, correctness."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.segmentation.features import (
    FeatureConfig,
    feature_bank,
    feature_maps_for_scoring,
    feature_names,
    iter_feature_blocks,
)
from rawsigma.analysis.segmentation.features_math import eig_sym2, eig_sym3
from scipy import ndimage as ndi


@pytest.fixture(scope="module")
def img2d():
    rng = np.random.default_rng(1)
    base = ndi.gaussian_filter(rng.random((96, 80)), 3) * 2000
    return rng.poisson(base + 100).astype(np.uint16)


@pytest.fixture(scope="module")
def img3d():
    rng = np.random.default_rng(2)
    return rng.poisson(ndi.gaussian_filter(rng.random((20, 24, 28)), 2) * 500 + 50).astype(
        np.float32
    )


def test_channel_counts():
    assert len(feature_names(2, "ilastik")) == 49
    assert len(feature_names(3, "ilastik")) == 61
    assert len(feature_names(2, "weka")) == 70
    assert len(feature_names(3, "weka")) == 58
    names = feature_names(2)
    assert names[0] == "GaussianSmoothing_s0.3"
    assert "HessianOfGaussianEigenvalues_s10_e1" in names
    assert "LaplacianOfGaussian_s0.3" not in names  # ilastik minimum scale 0.7
    w = feature_names(2, "weka")
    assert w[0] == "original" and "Difference_of_gaussians_1_16" in w
    assert "Hessian_Eigenvalue_2_0" in w and "Sobel_filter_0" in w
    assert len(set(names)) == len(names) and len(set(w)) == len(w)


@pytest.mark.parametrize("preset", ["ilastik", "weka"])
def test_shapes_dtype_and_blockwise_equals_whole(img2d, preset):
    whole, names = feature_bank(img2d, preset, block=10**6, n_workers=1)
    assert whole.dtype == np.float32
    assert whole.shape == img2d.shape + (len(names),)
    assert names == feature_names(2, preset)
    assert np.isfinite(whole).all()
    blocked, _ = feature_bank(img2d, preset, block=(40, 33), n_workers=2)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-3)
    # streamed blocks give the same numbers
    for core, feats in iter_feature_blocks(img2d, preset, block=50):
        np.testing.assert_allclose(feats, whole[core], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("preset", ["ilastik", "weka"])
def test_3d_blockwise(img3d, preset):
    whole, names = feature_bank(img3d, preset, sigmas=(1.0, 2.0), block=10**6)
    blocked, _ = feature_bank(img3d, preset, sigmas=(1.0, 2.0), block=(8, 10, 12))
    assert whole.shape == img3d.shape + (len(names),)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-3)


def test_ilastik_values(img2d):
    x = img2d.astype(np.float32)
    f, names = feature_bank(x, sigmas=(0.3, 1.6, 3.5), n_workers=1)
    ch = dict(zip(names, np.moveaxis(f, -1, 0), strict=True))
    g = ndi.gaussian_filter(x, 3.5, truncate=3.5)
    np.testing.assert_allclose(ch["GaussianSmoothing_s3.5"], g, rtol=1e-5, atol=1e-3)
    g2 = ndi.gaussian_filter(x, 0.66 * 3.5, truncate=3.5)
    np.testing.assert_allclose(ch["DifferenceOfGaussians_s3.5"], g - g2, atol=1e-2)
    # finite differences of the smoothed image approximate Gaussian derivatives
    log = ndi.gaussian_laplace(x.astype(np.float64), 3.5, truncate=4)
    inner = (slice(15, -15), slice(15, -15))
    err = np.abs(ch["LaplacianOfGaussian_s3.5"] - log)[inner].max()
    assert err < 0.1 * np.abs(log[inner]).max()
    ggm = ndi.gaussian_gradient_magnitude(x.astype(np.float64), 3.5, truncate=4)
    err = np.abs(ch["GaussianGradientMagnitude_s3.5"] - ggm)[inner].max()
    assert err < 0.05 * ggm[inner].max()
    # eigenvalues descending, trace of the Hessian equals the Laplacian
    e0, e1 = ch["HessianOfGaussianEigenvalues_s1.6_e0"], ch["HessianOfGaussianEigenvalues_s1.6_e1"]
    assert np.all(e0 >= e1)
    np.testing.assert_allclose(e0 + e1, ch["LaplacianOfGaussian_s1.6"], atol=1e-2)
    s0, s1 = ch["StructureTensorEigenvalues_s1.6_e0"], ch["StructureTensorEigenvalues_s1.6_e1"]
    assert np.all(s0 >= s1) and np.all(s1 >= -1e-2)


def test_gaussian_derivative_mode_agrees(img2d):
    a, names = feature_bank(img2d, sigmas=(3.5,), derivatives="fd")
    b, _ = feature_bank(img2d, sigmas=(3.5,), derivatives="gaussian")
    c, _ = feature_bank(img2d, sigmas=(3.5,), derivatives="gaussian", block=(30, 45))
    np.testing.assert_allclose(c, b, rtol=1e-5, atol=1e-3)
    inner = (slice(15, -15), slice(15, -15))
    for i, n in enumerate(names):
        scale = np.abs(b[inner][..., i]).max()
        assert np.abs(a[inner][..., i] - b[inner][..., i]).max() < 0.1 * scale, n


def test_weka_values(img2d):
    x = img2d.astype(np.float32)
    f, names = feature_bank(x, "weka", sigmas=(2.0, 4.0))
    ch = dict(zip(names, np.moveaxis(f, -1, 0), strict=True))
    np.testing.assert_array_equal(ch["original"], x)
    b2 = ndi.gaussian_filter(x, 0.8, truncate=3.5, mode="nearest")
    b4 = ndi.gaussian_filter(x, 1.6, truncate=3.5, mode="nearest")
    np.testing.assert_allclose(ch["Gaussian_blur_2"], b2, rtol=1e-5)
    np.testing.assert_allclose(ch["Difference_of_gaussians_2_4"], b2 - b4, atol=1e-2)
    sob = np.hypot(ndi.sobel(b2, 0, mode="nearest"), ndi.sobel(b2, 1, mode="nearest"))
    np.testing.assert_allclose(ch["Sobel_filter_2"], sob, rtol=1e-4, atol=1e-2)
    tr = ch["Hessian_Trace_2"]
    np.testing.assert_allclose(
        ch["Hessian_Eigenvalue_1_2"] + ch["Hessian_Eigenvalue_2_2"], tr, rtol=1e-4, atol=1e-1
    )


def test_eigen_helpers():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(500, 3, 3))
    m = m + np.swapaxes(m, 1, 2)
    ref = np.linalg.eigvalsh(m)[:, ::-1]
    comps = [
        m[:, i, j].astype(np.float32) for i, j in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    ]
    got = np.stack(eig_sym3(*comps), axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    a, b, c = (rng.normal(size=100).astype(np.float32) for _ in range(3))
    ref2 = np.linalg.eigvalsh(np.stack([np.stack([a, b], 1), np.stack([b, c], 1)], 1))[:, ::-1]
    np.testing.assert_allclose(np.stack(eig_sym2(a, b, c), 1), ref2, atol=1e-5)


def test_scoring_maps(img2d):
    maps, names = feature_maps_for_scoring(img2d, sigmas=(1.0, 2.0))
    assert maps.shape == img2d.shape + (8,)
    assert {n.split("_s")[0] for n in names} == {
        "GaussianSmoothing",
        "LaplacianOfGaussian",
        "GaussianGradientMagnitude",
        "DifferenceOfGaussians",
    }
    with pytest.raises(ValueError):
        feature_maps_for_scoring(img2d, sigmas=(0.3,))


def test_config_roundtrip_and_bad_input(img2d):
    cfg = FeatureConfig("ilastik", (1.0, 2.0), ("GaussianSmoothing",), spacing=(1.0, 1.0))
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg.resolved()
    f, names = feature_bank(img2d, cfg)
    assert names == ["GaussianSmoothing_s1", "GaussianSmoothing_s2"]
    with pytest.raises(ValueError, match="preset"):
        feature_bank(img2d, "cellpose")
    with pytest.raises(ValueError, match="unknown ilastik"):
        feature_bank(img2d, features=("Sobel",))
    with pytest.raises(ValueError, match="2D"):
        feature_bank(np.zeros(10))
    with pytest.raises(ValueError, match="positive"):
        feature_bank(img2d, sigmas=(0.0,))
    with pytest.raises(ValueError, match="spacing"):
        feature_bank(img2d, spacing=(1.0,))


def test_automatic_blocks_respect_memory_budget(img2d, monkeypatch):
    import rawsigma.analysis.segmentation.features as fb

    whole, _ = feature_bank(img2d, sigmas=(1.0, 3.5), block=10**6)
    monkeypatch.setattr(fb, "BLOCK_MEMORY", 2 * 2**20)
    cfg = fb.FeatureConfig("ilastik", (1.0, 3.5)).resolved()
    b = fb._resolve_block(None, img2d.shape, cfg, 2)
    assert np.prod(b) < img2d.size
    auto, _ = feature_bank(img2d, sigmas=(1.0, 3.5), n_workers=2)
    np.testing.assert_allclose(auto, whole, rtol=1e-5, atol=1e-3)
