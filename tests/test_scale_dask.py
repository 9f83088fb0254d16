"""dask paths of the ``scale`` extra: chunked feature bank and chunked synthesis."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from rawsigma.acquire.sensor_model import SensorModel  # noqa: E402
from rawsigma.analysis.outofcore.lazy import feature_bank_dask, synthesize_dask  # noqa: E402
from rawsigma.analysis.segmentation.features import feature_bank  # noqa: E402
from rawsigma.errors import ImageMismatchError  # noqa: E402


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth structure plus noise, uint16 (features see edges, not only noise)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3 * np.pi, n) for n in shape], indexing="ij")
    signal = 400 + 300 * np.prod([np.sin(g + i) for i, g in enumerate(grids)], axis=0)
    return (signal + rng.normal(0, 20, shape)).clip(0, 65535).astype(np.uint16)


@pytest.mark.parametrize(
    ("preset", "sigmas"), [("ilastik", (0.3, 0.7, 1.6, 3.5)), ("weka", (1.0, 2.0, 4.0))]
)
def test_feature_bank_dask_equals_numpy_2d(preset: str, sigmas: tuple[float, ...]) -> None:
    img = _blobs((100, 90), 1)
    feats, names = feature_bank_dask(img, preset, sigmas, chunks=(40, 32))
    assert isinstance(feats, da.Array)
    assert len(feats.chunks[0]) > 1 and len(feats.chunks[1]) > 1  # really chunked
    ref, ref_names = feature_bank(img, preset, sigmas, n_workers=1)
    assert names == ref_names
    assert feats.shape == ref.shape and feats.dtype == np.float32
    got = feats.compute(scheduler="threads")
    scale = np.abs(ref).max(axis=(0, 1))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale.max())


def test_feature_bank_dask_equals_numpy_3d_from_dask_input() -> None:
    vol = _blobs((20, 40, 36), 2)
    arr = da.from_array(vol, chunks=(10, 16, 18))  # chunks below the halo get merged
    feats, names = feature_bank_dask(arr, "ilastik", (0.7, 1.6), spacing=(2.0, 1.0, 1.0))
    ref, ref_names = feature_bank(vol, "ilastik", (0.7, 1.6), spacing=(2.0, 1.0, 1.0))
    assert names == ref_names
    assert feats.shape == ref.shape
    assert sum(len(c) > 1 for c in feats.chunks[:3]) >= 2
    np.testing.assert_allclose(feats.compute(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_feature_bank_dask_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2D"):
        feature_bank_dask(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="spacing"):
        feature_bank_dask(np.zeros((16, 16), np.float32), spacing=(1.0,))


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, object]:
    cam = SensorModel.preset("scmos", shape=(96, 80), seed=3)
    # a ramp from read-noise-limited to shot-noise-limited pixels
    photons = cam.photons_for_fraction(0.1) * np.linspace(0.0, 1.0, 80)[None, :] ** 2
    img = cam.expose(np.broadcast_to(photons, (96, 80)), 0.01, np.random.default_rng(4))
    img[5, 7] = cam.max_adu  # one saturated pixel
    return img, cam.true_profile()


def test_synthesize_dask_reproducible_and_scheduler_independent(raw) -> None:
    img, prof = raw
    a = synthesize_dask(img, prof, n=4, seed=11, chunks=(32, 40))
    assert a.shape == (4, 96, 80) and a.dtype == img.dtype
    assert len(a.chunks[1]) == 3 and len(a.chunks[2]) == 2
    first = a.compute(scheduler="sync")
    again = synthesize_dask(img, prof, n=4, seed=11, chunks=(32, 40))
    np.testing.assert_array_equal(again.compute(scheduler="threads"), first)
    # one chunk computed alone is the same as in the full result
    np.testing.assert_array_equal(a[:, 32:64, 40:].compute(), first[:, 32:64, 40:])
    other = synthesize_dask(img, prof, n=4, seed=12, chunks=(32, 40)).compute()
    assert not np.array_equal(other, first)
    assert not np.array_equal(first[0], first[1])
    assert (first[:, 5, 7] == prof.max_adu).all()


def test_synthesize_dask_moments_match_profile(raw) -> None:
    img, prof = raw
    n = 120
    reps = synthesize_dask(img, prof, n=n, seed=5, chunks=(48, 40)).compute().astype(np.float64)
    good = img < prof.max_adu
    mean = reps.mean(axis=0)
    var = reps.var(axis=0, ddof=1)
    model_var = prof.variance(img.astype(np.float32)).astype(np.float64) + 1.0 / 12.0
    # per-pixel mean centred on the observed value: z-scores ~ N(0, 1)
    z = ((mean - img) / np.sqrt(model_var / n))[good]
    assert abs(z.mean()) < 0.1
    assert 0.9 < z.std() < 1.1
    # per-pixel variance follows the profile (ratio averages to 1 within ~1 %)
    ratio = (var / model_var)[good]
    assert abs(ratio.mean() - 1) < 0.03
    # and pixel by pixel: dark (read noise) and bright (shot noise) halves alike
    dark = model_var[good] < np.median(model_var[good])
    assert abs(ratio[dark].mean() - 1) < 0.03 and abs(ratio[~dark].mean() - 1) < 0.03
    assert np.corrcoef(var[good], model_var[good])[0, 1] > 0.9


def test_synthesize_dask_rejects_mismatch(raw) -> None:
    img, prof = raw
    with pytest.raises(ImageMismatchError, match="shape"):
        synthesize_dask(img[:50], prof)
    with pytest.raises(ImageMismatchError, match="integer"):
        synthesize_dask(img.astype(np.float32), prof)
    with pytest.raises(ValueError, match="n must be"):
        synthesize_dask(img, prof, n=0)


def test_missing_dask_names_the_extra(monkeypatch, raw) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"rawsigma\[scale\]"):
        feature_bank_dask(np.zeros((16, 16), np.float32))
    with pytest.raises(ImportError, match="scale"):
        synthesize_dask(*raw)
