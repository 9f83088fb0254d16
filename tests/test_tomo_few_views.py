"""``tomo score`` refuses, up front and in one line, too few views to reconstruct.

The real OPT frames (7 projections of 640 px) used to run for hours to score the
streaks of a 7-view reconstruction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from rawsigma.cli.main import main
from rawsigma.cli.params import MIN_VIEWS_FRACTION
from rawsigma.cli.tomo_score_cmd import _check_views, _distinct_views
from rawsigma.errors import InputFileError


def test_few_views_refused_in_one_line(tmp_path, capsys):
    proj = tmp_path / "proj.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(proj, rng.integers(1000, 2000, (7, 8, 64), dtype=np.uint16))
    with pytest.raises(SystemExit) as ex:
        main(["tomo", "score", str(proj), "--estimate-profile", "--out", str(tmp_path / "r")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert ex.value.code == 1
    assert err[0].startswith("read ") and len(err) == 2, err  # what was read, then the error
    err = err[1:]
    assert err[0].startswith("error: "), err
    assert "7 projections for a 64-pixel detector" in err[0] and "--few-views" in err[0]
    assert not (tmp_path / "r").exists()


def test_view_floor_follows_the_detector():
    floor = math.ceil(MIN_VIEWS_FRACTION * math.pi / 2 * 640)
    assert floor == 101
    with pytest.raises(InputFileError, match="7 projections for a 640-pixel detector"):
        _check_views(7, 640, "opt.tif", few_views=False)
    assert _check_views(floor, 640, "opt.tif", few_views=False) is None  # enough views
    assert _check_views(floor, 640, "opt.tif", few_views=True) is None
    note = _check_views(7, 640, "opt.tif", few_views=True)  # the user insists: a report note
    assert note.startswith("WARNING: 7 projections for a 640-pixel detector")
    assert _check_views(48, 48, "sim.tif", few_views=False) is None  # the tests' acquisitions


def test_processing_line_says_the_path_once():
    from rawsigma.cli.tomo_score_cmd import _processing_line

    mem = {"path": "in memory", "why": "in memory (auto: in-memory estimate 242 MB, budget 9 MB)"}
    assert _processing_line(mem) == "in memory (auto: in-memory estimate 242 MB, budget 9 MB)"
    chunked = {"path": "chunked, slabs of 68 slices on disk", "why": "chunked (forced); estimate"}
    assert _processing_line(chunked) == "chunked, slabs of 68 slices on disk (forced); estimate"
    assert _processing_line({"path": "in memory", "why": "other"}) == "in memory (other)"


def test_reconstruct_warns_about_few_views(tmp_path):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    src = tmp_path / "p.tif"
    rng = np.random.default_rng(2)
    tifffile.imwrite(
        src, rng.integers(1000, 2000, (3, 2, 64), dtype=np.uint16), photometric="minisblack"
    )
    res = CliRunner().invoke(
        app,
        [
            "tomo",
            "reconstruct",
            str(src),
            "--angle-range",
            "0,180",
            "-o",
            str(tmp_path / "r.tif"),
            "-q",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output  # the user asked for it: written, with a warning
    flat = " ".join(res.output.split())
    assert "warning: 3 projections for a 64-pixel detector (FBP needs about 101)" in flat
    assert (tmp_path / "r.tif").is_file()


def test_forced_few_views_run_says_so_in_the_report(tmp_path):
    import json

    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms.opt_organ import organ_phantom3d, simulate_opt
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    shape = (8, 40)  # 5 views for 40 px: the floor is 7
    model = SensorModel.preset("scmos", shape, seed=5)
    ph = organ_phantom3d(shape, n_plaques=3, radius=(2.0, 3.5), rng=2)
    acq = simulate_opt(shape, 5, rng=1, phantom=ph, profile=model.true_profile(), model=model,
                       peak_photons=3000.0)  # fmt: skip
    tifffile.imwrite(tmp_path / "proj.tif", acq.projections)
    acq.profile.save(tmp_path / "prof.h5")
    base = ["tomo", "score", str(tmp_path / "proj.tif"), "--profile", str(tmp_path / "prof.h5"),
            "--codecs", "replica", "--replicas", "3", "--no-operators"]  # fmt: skip
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 1 and "5 projections for a 40-pixel detector" in r.output
    r = CliRunner().invoke(app, [*base, "--few-views", "--out", str(tmp_path / "b")],
                           terminal_width=80)  # fmt: skip
    assert r.exit_code == 0, r.output
    # said in the terminal too (QA session 9: only the report said it), on one line
    (warn,) = [ln for ln in r.stderr.splitlines() if "for a 40-pixel detector" in ln]
    assert warn.startswith("WARNING: 5 projections") and warn.endswith("mean little.")
    notes = json.loads((tmp_path / "b" / "results.json").read_text())["notes"]
    assert notes[0].startswith("WARNING: 5 projections for a 40-pixel detector")
    assert "run anyway, as --few-views asked" in (tmp_path / "b" / "report.html").read_text()


def test_repeated_angles_are_not_views(tmp_path, capsys):
    """QA session 7: an angles file of 112 zeros (112 projections of one direction)
    passed the view floor and gave plaques and verdicts, exit 0."""
    proj = tmp_path / "proj.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(proj, rng.integers(1000, 2000, (112, 8, 96), dtype=np.uint16))
    np.savetxt(tmp_path / "zeros.txt", np.zeros(112))
    with pytest.raises(SystemExit) as ex:
        main(["tomo", "score", str(proj), "--estimate-profile", "--angles",
              str(tmp_path / "zeros.txt"), "--out", str(tmp_path / "r")])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert ex.value.code == 1 and err[-1].startswith("error: "), err
    assert "112 projections at 1 distinct angles for a 96-pixel detector" in err[-1]
    assert not (tmp_path / "r").exists()
    # 0 and 360 are one direction; evenly spread angles pass
    with pytest.raises(InputFileError, match="at 15 distinct angles"):
        _check_views(16, 96, "p.tif", False, _distinct_views([*range(0, 360, 24), 360]))
    assert _distinct_views(np.linspace(0, 360, 112, endpoint=False)) == 112
