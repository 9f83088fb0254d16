"""``--tolerance-search`` on volumes: the 2D sweep on the simulated camera's 3D phantom."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from rawsigma.analysis.scoring.volume import score_volume
from rawsigma.analysis.scoring.volume_graph import score_volume_tasks

SPACING = (1.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def scene():
    from rawsigma.analysis.demo import calibrate_simulated
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.analysis.segmentation.annotations import training_labels

    shape = (10, 48, 48)
    bright, truth = nuclei3d(shape, SPACING, 12, 1, 4, brightness=(0.3, 1.0), n_beads=0)
    prof, model, _ = calibrate_simulated(shape[1:], 4, n_frames=12)
    rng = np.random.default_rng(6)
    vol = np.stack([model.expose(40 + 1500 * bright[z], 0.01, rng) for z in range(shape[0])])
    kw = dict(labels=training_labels(truth), spacing=SPACING, n_replicas=4, seed=5,
              n_estimators=10, workers=1)  # fmt: skip
    return vol, prof, kw


def _run(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def searched(scene):
    vol, prof, kw = scene
    return _run(score_volume, vol, prof, codecs=["replica"], tolerance_search=["noise"], **kw)


def test_noise_sweep_on_a_volume(scene, searched) -> None:
    vol, prof, kw = scene
    t = searched.tolerance["noise"]
    pts = {p["spec"]: p for p in t["points"]}
    assert searched.n_objects >= 6
    # step ≤ 2 stays within noise (the codec's design); the best is at least step=2
    for s in ("0.5", "1", "1.5", "2"):
        assert pts[f"noise:step={s}"]["within_noise"], pts
    best = t["best"]
    assert best is not None and float(best["spec"].split("=")[1]) >= 2
    ratios = [p["ratio"] for p in t["points"] if "ratio" in p]
    assert ratios == sorted(ratios) and ratios[0] > 1  # coarser step, higher ratio
    # consistent with an individual run of the same setting
    one = _run(score_volume, vol, prof, codecs=["noise:step=2"], **kw).codecs[0]
    assert one.ratio == pytest.approx(pts["noise:step=2"]["ratio"])
    assert one.verdict["within_noise"] == pts["noise:step=2"]["within_noise"]
    assert one.verdict["worst"] == pts["noise:step=2"]["worst"]
    d = json.loads(json.dumps(searched.to_dict(), default=str))
    assert d["tolerance_search"]["noise"]["best"]["spec"] == best["spec"]


@pytest.mark.slow
def test_graph_and_chunked_sweeps_equal_in_memory(scene, searched, tmp_path) -> None:
    vol, prof, kw = scene
    # the sweep does not depend on the plan's codecs: the in-memory one is `searched`'s
    kw = dict(kw, codecs=["replica", "noise:step=2"], tolerance_search=["noise"])
    mem = searched
    graph = _run(score_volume_tasks, vol, prof, tmp_path / "g", **kw)
    assert graph.tolerance == mem.tolerance
    chunked = _run(score_volume_tasks, vol, prof, tmp_path / "c", chunks=(4, 24, 24), **kw)
    a, b = chunked.tolerance["noise"], mem.tolerance["noise"]
    assert [(p["spec"], p["within_noise"]) for p in a["points"]] == [
        (p["spec"], p["within_noise"]) for p in b["points"]
    ]
    assert a["best"]["spec"] == b["best"]["spec"]
    names = {p.name for p in (tmp_path / "c" / "tasks").iterdir()}
    assert "tolerance_noise_step=1" in names and "codec_01_noise_step=2" in names
    assert "tolerance_noise_step=2" not in names  # the plan's own codec task is reused


@pytest.mark.slow
def test_cli_tolerance_search_on_a_volume(scene, searched, tmp_path) -> None:
    import h5py
    import tifffile
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    vol, prof, kw = scene
    tifffile.imwrite(tmp_path / "vol.tif", vol)
    tifffile.imwrite(tmp_path / "lab.tif", kw["labels"])
    prof.save(tmp_path / "prof.h5")
    out = tmp_path / "out"
    args = [tmp_path / "vol.tif", "--profile", tmp_path / "prof.h5", "--labels",
            tmp_path / "lab.tif", "--spacing", "1,0.5,0.5", "--replicas", "4", "--seed", "5",
            "--workers", "1", "--codecs", "replica", "--tolerance-search", "noise",
            "--out", out]  # fmt: skip
    r = CliRunner().invoke(app, ["score", *map(str, args)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    best = res["tolerance_search"]["noise"]["best"]
    assert float(best["spec"].split("=")[1]) >= 2 and best["within_noise"]
    assert f"tolerance noise: {best['spec']}" in r.output
    assert "Tolerance search" in (out / "report.html").read_text()
    assert (out / "figures" / "tolerance.png").exists()
    with h5py.File(out / "volumes.h5") as f:
        d = f["feature_eps/replica"]
        assert d.shape == vol.shape and d.attrs["feature"] in res["codecs"][0]["features"]
