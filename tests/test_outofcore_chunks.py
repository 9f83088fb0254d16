"""Chunked classification, labelling and 3D measurement equal the in-memory path."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

da = pytest.importorskip("dask.array")
pytest.importorskip("zarr")

from rawsigma.analysis.measurement.morphometry3d import measure3d  # noqa: E402
from rawsigma.analysis.outofcore.chunklabel import label_chunked, measure3d_chunked  # noqa: E402
from rawsigma.analysis.outofcore.classify import foreground_dask, predict_proba_dask  # noqa: E402
from rawsigma.analysis.scoring.per_image import drop_small  # noqa: E402
from rawsigma.analysis.segmentation.classifier import PixelClassifier  # noqa: E402
from rawsigma.analysis.segmentation.features import FeatureConfig  # noqa: E402

FULL3 = np.ones((3, 3, 3), bool)
SPACING = (2.0, 0.5, 0.6)
CHUNKS_3D = [(7, 9, 11), (1, 30, 25), (20, 1, 5), (20, 30, 25), (4, 30, 3)]


def _mask(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Many blobs of all sizes, many crossing any chunk grid, touching diagonally."""
    rng = np.random.default_rng(seed)
    m = ndi.gaussian_filter(rng.random(shape), 1.2) > 0.56
    m.flat[rng.choice(m.size, 40, replace=False)] = True  # single voxels, corner contacts
    return m


@pytest.mark.parametrize("chunks", CHUNKS_3D)
def test_labels_and_measurements_equal_in_memory(tmp_path, chunks) -> None:
    m = _mask((20, 30, 25))
    ref, n = ndi.label(m, FULL3)
    assert n > 30
    res = label_chunked(da.from_array(m, chunks=chunks), tmp_path)
    assert res.count == n
    got = res.labels.compute()
    np.testing.assert_array_equal(got, ref)
    # objects crossing chunk borders are present (and merged)
    crossing = sum(
        1
        for o in ndi.find_objects(ref)
        if any(s.start // c != (s.stop - 1) // c for s, c in zip(o, chunks, strict=True))
    )
    assert crossing > 3 or chunks == (20, 30, 25)
    mem = measure3d(ref, SPACING)
    chk = measure3d_chunked(res, SPACING)
    for key, val in mem.items():
        np.testing.assert_array_equal(chk[key], val, err_msg=key)
    bbox = np.array([[s.start for s in o] + [s.stop for s in o] for o in ndi.find_objects(ref)])
    np.testing.assert_array_equal(chk["bbox"], bbox)


@pytest.mark.parametrize("chunks", [(3, 7), (1, 50), (40, 1)])
def test_labels_2d_8_connected(tmp_path, chunks) -> None:
    m = _mask((40, 50), 3)
    ref, n = ndi.label(m, np.ones((3, 3), bool))
    res = label_chunked(da.from_array(m, chunks=chunks), tmp_path)
    assert res.count == n
    np.testing.assert_array_equal(res.labels.compute(), ref)


def test_min_size_equals_pipeline_filter(tmp_path) -> None:
    m = _mask((20, 30, 25), 2)
    ref, _ = ndi.label(m, FULL3)
    want = drop_small(ref, 6)
    res = label_chunked(da.from_array(m, chunks=(6, 8, 9)), tmp_path, min_size=6)
    assert res.count == int(want.max()) < int(ref.max())
    np.testing.assert_array_equal(res.labels.compute(), want)


def test_empty_and_irregular(tmp_path) -> None:
    res = label_chunked(da.zeros((6, 7, 8), bool, chunks=3), tmp_path)
    assert res.count == 0 and not res.labels.compute().any()
    assert measure3d_chunked(res)["volume"].size == 0
    with pytest.raises(ValueError, match="regular"):
        label_chunked(da.ones((9, 4, 4), bool, chunks=((2, 5, 2), 4, 4)), tmp_path)


def test_chunked_classification_equals_in_memory() -> None:
    rng = np.random.default_rng(0)
    shape = (16, 30, 28)
    truth = ndi.gaussian_filter(rng.random(shape), 2) > 0.53
    smooth = ndi.gaussian_filter(truth.astype(float), 1)
    vol = (100 + 200 * smooth + rng.normal(0, 20, shape)).astype(np.uint16)
    lab = np.zeros(shape, np.uint8)
    lab[::3, ::4, ::4] = np.where(truth[::3, ::4, ::4], 2, 1)
    cfg = FeatureConfig("ilastik", sigmas=(0.7, 1.6), spacing=(2.0, 1.0, 1.0))
    clf = PixelClassifier("ilastik", features=cfg, n_estimators=10).fit(vol, lab)
    ref = clf.predict_proba(vol)
    for chunks in [(5, 7, 11), (1, 30, 28)]:
        got = predict_proba_dask(clf, da.from_array(vol, chunks=chunks)).compute()
        np.testing.assert_array_equal(got, ref)
    fg = foreground_dask(clf, da.from_array(vol, chunks=(8, 15, 14))).compute()
    np.testing.assert_array_equal(fg, clf.foreground_probability(vol) > 0.5)
    assert 0.01 < fg.mean() < 0.9


@pytest.fixture(scope="module")
def pipeline_case():  # type: ignore[no-untyped-def]
    """A volume, a forest trained on it and the in-memory foreground."""
    rng = np.random.default_rng(4)
    shape = (18, 40, 36)
    truth = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.55
    smooth = ndi.gaussian_filter(truth.astype(float), 0.7)
    vol = (100 + 300 * smooth + rng.normal(0, 15, shape)).astype(np.uint16)
    lab = np.zeros(shape, np.uint8)
    lab[::2, ::3, ::3] = np.where(truth[::2, ::3, ::3], 2, 1)
    cfg = FeatureConfig("ilastik", sigmas=(0.7, 1.0), spacing=(2.0, 1.0, 1.0))
    clf = PixelClassifier("ilastik", features=cfg, n_estimators=10).fit(vol, lab)
    return vol, clf, clf.foreground_probability(vol) > 0.5


def _assert_same(got_lab, table, ref) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(np.asarray(got_lab), ref)
    mem = measure3d(ref, SPACING)
    for key, val in mem.items():
        np.testing.assert_array_equal(table[key], val, err_msg=key)
    bbox = np.array([[s.start for s in o] + [s.stop for s in o] for o in ndi.find_objects(ref)])
    np.testing.assert_array_equal(table["bbox"], bbox.reshape(-1, 6))


def test_pipeline_on_zarr_equals_in_memory(tmp_path, pipeline_case) -> None:
    """Classify -> local labels + faces -> merged labels -> table, vs the in-memory path,
    for the store's own chunks and processing chunks thinner than the halo."""
    zarr = pytest.importorskip("zarr")
    from rawsigma.analysis.outofcore.pipeline import segment_measure_chunked

    vol, clf, fg = pipeline_case
    z = zarr.open_array(str(tmp_path / "vol.zarr"), mode="w", shape=vol.shape,
                        chunks=(5, 11, 13), dtype="uint16")  # fmt: skip
    z[:] = vol
    ref = drop_small(ndi.label(fg, FULL3)[0], 3)
    assert ref.max() > 10
    for i, chunks in enumerate([None, (1, 40, 18), (18, 3, 36)]):
        got_lab, table = segment_measure_chunked(
            tmp_path / "vol.zarr", clf, tmp_path / f"w{i}", spacing=SPACING, min_size=3,
            chunks=chunks,
        )  # fmt: skip
        _assert_same(got_lab.compute(), table, ref)


def test_pipeline_dask_input_threshold_and_auto(tmp_path, pipeline_case) -> None:
    """A dask array (read through its graph), the threshold path and chunks="auto"."""
    from rawsigma.analysis.outofcore.pipeline import (
        auto_chunks,
        bytes_per_voxel,
        segment_measure_chunked,
    )

    vol, clf, fg = pipeline_case
    ref = ndi.label(fg, FULL3)[0]
    lab, table = segment_measure_chunked(
        da.from_array(vol, chunks=(7, 13, 36)), clf, tmp_path / "a", spacing=SPACING
    )
    _assert_same(lab.compute(), table, ref)
    ref = ndi.label(vol > 200, FULL3)[0]
    assert ref.max() > 10
    lab, table = segment_measure_chunked(
        vol, None, tmp_path / "b", spacing=SPACING, threshold=200, chunks=(6, 14, 12)
    )
    _assert_same(lab.compute(), table, ref)
    assert auto_chunks((100, 64, 64), 64 * 64 * 25 * 16, 16) == (50, 32, 64)
    assert bytes_per_voxel(clf) > bytes_per_voxel(None)
    lab, table = segment_measure_chunked(vol, None, tmp_path / "c", threshold=200, chunks="auto")
    np.testing.assert_array_equal(lab.compute(), ref)
    with pytest.raises(ValueError, match="chunks"):
        segment_measure_chunked(vol, None, tmp_path / "d", chunks="big")
