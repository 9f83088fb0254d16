"""``rawsigma demo`` runs end to end from bundled data (fast mode) and writes reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rawsigma.cli.main import app
from typer.testing import CliRunner


def test_bundled_data_and_license():
    from rawsigma.analysis.data import CITATION, demo_image, demo_labels

    img, lab = demo_image(), demo_labels()
    assert img.dtype == np.uint16 and img.shape == (256, 256) and lab.shape == img.shape
    assert lab.max() == 36 and "BBBC039" in CITATION


def test_phantom_truth():
    from rawsigma.analysis.phantoms import nuclei2d

    bright, truth = nuclei2d((96, 96), n_objects=5, n_beads=2, rng=0)
    assert truth.max() == 7 and bright.max() > 10  # beads are much brighter
    assert np.all(bright[truth == 0] < bright.max())


def test_demo_fast_writes_reports(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "report:" in r.output
    assert (out / "index.html").exists()
    for sub in ("simulated", "real"):
        html = (out / sub / "report.html").read_text()
        assert "data:image/png;base64," in html
        data = json.loads((out / sub / "results.json").read_text())
        specs = [c["spec"] for c in data["codecs"]]
        assert "replica" in specs and "8bit" in specs
    sim = json.loads((out / "simulated" / "results.json").read_text())
    assert sim["n_objects_raw"] >= 8
    assert "calibration" in sim["provenance"]["demo"]
    # a second run refuses to overwrite
    r = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out)])
    assert r.exit_code == 1 and "--force" in r.output


@pytest.mark.slow
def test_demo_full_verdicts(tmp_path):
    from rawsigma.analysis.demo import run_demo

    res = run_demo(tmp_path / "d")
    v = res.verdicts["simulated"]
    assert v["replica"] and not v["8bit"] and not v["jpeg@100"]
    if "noise:step=2" in v:
        assert v["noise:step=2"]
