"""Issue 15: OPT scoring chunk-wise (slabs on disk) equals in memory; report outputs; forest."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.phantoms.opt_organ import organ_phantom3d, simulate_opt
from rawsigma.analysis.scoring import tomo_stats
from rawsigma.analysis.scoring.tomo_runner import score_tomo

SHAPE = (20, 40)  # rows, detector


@pytest.fixture(scope="module")
def acq():
    model = SensorModel.preset("scmos", SHAPE, seed=5)
    prof = model.true_profile()
    ph = organ_phantom3d(SHAPE, n_plaques=8, radius=(2.0, 3.5), rng=2)
    return simulate_opt(SHAPE, 40, rng=1, phantom=ph, profile=prof, model=model,
                        peak_photons=3000.0)  # fmt: skip


def _score(a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return score_tomo(a.projections, a.angles_deg, a.profile, n_replicas=3,
                          codecs=("replica", "jpeg@100"), operators=False, **kw)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_statistics_are_exact(monkeypatch, dtype):
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    v = rng.normal(size=(23, 9, 11)).astype(dtype)
    v[:4] = 0  # many equal values (the zeros outside the reconstruction circle)
    v[9] = 2.5

    def values():
        return (v[i : i + 4].ravel() for i in range(0, v.shape[0], 4))

    # tiny bins and gather limit: the narrowing and the equal-values paths are taken
    monkeypatch.setattr(tomo_stats, "_BINS", 8)
    monkeypatch.setattr(tomo_stats, "_GATHER", 16)
    for q in (0.0, 0.3, 0.95, 0.999, 1.0):
        got, ref = tomo_stats.chunked_quantile(values, q), np.quantile(v, q)
        assert got == ref and np.asarray(got).dtype == np.asarray(ref).dtype, q
    assert tomo_stats.chunked_median(values) == np.median(v)
    assert tomo_stats.chunked_otsu(values) == threshold_otsu(v)
    assert tomo_stats.chunked_median(lambda: iter([np.zeros(0, dtype)])) is None
    # the order statistic k is the last of many equal values: k + 1 lies above them
    w = np.concatenate([np.zeros(40, dtype), np.arange(1, 6, dtype=dtype)])
    for q in (39 / 44, 0.5, 40 / 44):
        assert tomo_stats.chunked_quantile(lambda: iter([w[:20], w[20:]]), q) == np.quantile(w, q)


@pytest.mark.slow
def test_chunked_scoring_equals_in_memory(acq):
    """Several slab heights: same volume, organ, labels, tables and verdicts."""
    mem = _score(acq)
    assert mem.processing["path"] == "in memory"
    assert mem.n_objects >= 5
    for slab in (3, 7):
        ch = _score(acq, slab=slab)
        try:
            assert ch.processing["path"].startswith("chunked") and ch.processing["slab"] == slab
            assert np.array_equal(ch.volume[:], mem.volume)
            assert np.array_equal(ch.organ[:], mem.organ)
            lab = np.asarray(ch.raw_labels[:])
            assert np.array_equal(lab, mem.raw_labels)
            # plaques cross slab borders (labelled and measured as one object)
            zs = [np.flatnonzero(np.any(lab == i, axis=(1, 2))) for i in range(1, lab.max() + 1)]
            assert sum(z[0] // slab != z[-1] // slab for z in zs) >= 3
            for k, col in mem.raw_objects.items():
                np.testing.assert_allclose(ch.raw_objects[k], col, rtol=1e-12, atol=1e-12)
            for vm, vc in zip(mem.versions, ch.versions, strict=True):
                assert np.array_equal(vc.labels[:], vm.labels)
                assert vm.verdict == vc.verdict and vm.match == vc.match
                assert np.array_equal(vc.pixel_eps[:], vm.pixel_eps, equal_nan=True)
            assert mem.versions[0].verdict["within_noise"]
            assert not mem.versions[1].verdict["within_noise"]
        finally:
            root = ch.processing["workdir"]
            ch.close()
        assert not __import__("os").path.exists(root)


def test_memory_budget_chooses_the_path():
    from rawsigma.analysis.scoring.tomo_chunked import choose_path, in_memory_bytes

    shape = (128, 32, 64)
    need = in_memory_bytes(shape, 10, 4, True)
    assert need > 4 * 32 * 64 * 64 * 15  # 15 volumes at least
    assert choose_path(shape, 10, 4, True, "auto", budget=need + 1)[0] is False
    chunked, why = choose_path(shape, 10, 4, True, "auto", budget=need - 1)
    assert chunked and why.startswith("chunked (auto")
    assert choose_path(shape, 10, 4, True, "on", budget=10 * need)[0] is True
    assert choose_path(shape, 10, 4, True, "off", budget=1)[0] is False


@pytest.mark.slow
def test_cli_chunked_outputs(acq, tmp_path):
    """The CLI as a user runs it: budget too small → chunked; complete outputs."""
    from rawsigma.analysis.scoring.score_maps import read_score_maps
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    tifffile.imwrite(tmp_path / "proj.tif", acq.projections)
    acq.profile.save(tmp_path / "prof.h5")
    out = tmp_path / "out"
    base = ["tomo", "score", str(tmp_path / "proj.tif"), "--profile", str(tmp_path / "prof.h5")]
    args = ["--codecs", "replica,jpeg@100", "--replicas", "3", "--no-operators"]
    r = CliRunner().invoke(app, [*base, "--out", str(out), *args, "--memory-budget", "1"])
    assert r.exit_code == 0, r.output
    assert "processing: chunked" in " ".join(r.output.split())
    res = json.loads((out / "results.json").read_text())
    assert res["processing"]["path"].startswith("chunked")
    assert res["verdicts"] == {"replica": "within noise", "jpeg@100": "NOT within noise"}
    maps = read_score_maps(out)
    n = SHAPE[1]
    assert maps["image"].shape == (SHAPE[0], n, n) and maps["raw_labels"].max() >= 5
    rep, jpg = maps["codecs"]
    assert rep["spec"] == "replica" and not jpg["within_noise"]
    e_rep = np.abs(rep["pixel_eps"][maps["raw_labels"] > 0].astype(float))
    e_jpg = np.abs(jpg["pixel_eps"][maps["raw_labels"] > 0].astype(float))
    assert 0.6 < np.nanmedian(e_rep) < 1.6 < np.nanmedian(e_jpg)  # √2·0.67 for a replica
    rows = [ln for ln in (out / "objects.csv").read_text().splitlines() if ln[0] != "#"]
    assert rows[0].startswith("label,parameter,raw") and "jpeg@100:epsilon" in rows[0]
    assert len(rows) - 1 == 4 * res["n_objects_raw"]  # volume, z, y, x per plaque
    assert (out / "figures" / "sinogram.png").is_file() and (
        out / "figures" / "slices.png"
    ).is_file()
    assert not list(tmp_path.glob("rawsigma-tomo-*"))  # the work directory is gone


def test_cli_segmenter_bad_inputs(acq, tmp_path):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    tifffile.imwrite(tmp_path / "proj.tif", acq.projections)
    acq.profile.save(tmp_path / "prof.h5")
    tifffile.imwrite(tmp_path / "lab.tif", np.zeros((SHAPE[0], 8, 8), np.uint8))
    base = ["tomo", "score", str(tmp_path / "proj.tif"), "--profile", str(tmp_path / "prof.h5"),
            "--out", str(tmp_path / "o")]  # fmt: skip
    cases = [
        (["--segmenter", "forest"], 2, "needs --labels"),
        (["--labels", str(tmp_path / "lab.tif")], 2, "add --segmenter forest"),
        (["--segmenter", "forest", "--labels", str(tmp_path / "lab.tif")], 1, "differs from"),
        (["--chunks", "off", "--slab", "4"], 2, "needs the chunked path"),
        (["--chunks", "sometimes"], 2, "sometimes"),
    ]
    for extra, code, msg in cases:
        r = CliRunner().invoke(app, [*base, *extra])
        assert r.exit_code == code, (extra, r.output)
        assert msg in " ".join(r.output.split()), (extra, r.output)
        assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.slow
def test_forest_segmenter_chunked_equals_in_memory(acq):
    """The 3D forest trained on the phantom's plaques: finds them; same on slabs."""
    from rawsigma.analysis.measurement.matching import match_objects
    from rawsigma.analysis.measurement.morphometry3d import measure3d
    from rawsigma.analysis.segmentation.annotations import training_labels

    ann = training_labels(acq.phantom.plaques)
    mem = _score(acq, segmenter="forest", annotations=ann)
    assert mem.segmenter.startswith("random forest")
    truth = measure3d(acq.phantom.plaques)
    xyz = [np.column_stack([t["z"], t["y"], t["x"]]) for t in (truth, mem.raw_objects)]
    m = match_objects(*xyz, 3.0)
    assert m.summary()["n_matched"] >= 0.8 * len(truth["label"])
    ch = _score(acq, segmenter="forest", annotations=ann, slab=6)
    try:
        assert np.array_equal(np.asarray(ch.raw_labels[:]), mem.raw_labels)
        assert [v.verdict for v in ch.versions] == [v.verdict for v in mem.versions]
    finally:
        ch.close()
    with pytest.raises(ValueError, match="needs annotations"):
        _score(acq, segmenter="forest")
