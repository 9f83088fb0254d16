"""Issue 15: the paper's OPT acquisition (camera, photon budget), its CLI and 8-bit ranges."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.codecs.base import CodecError
from rawsigma.analysis.codecs.registry import parse_codecs
from rawsigma.analysis.phantoms.opt_organ import ORCA_FLASH4, orca_flash4, paper_opt, simulate_opt


def test_orca_flash4_has_the_data_sheet_numbers_and_its_noise():
    m = orca_flash4((16, 32), seed=2)
    assert abs(np.median(m.gain) - 1 / 0.46) < 1e-4
    assert abs(np.median(m.read_noise / m.gain) - ORCA_FLASH4["read_noise_e"]) < 1e-3
    assert np.median(m.offset) == pytest.approx(100.0)
    assert m.full_well == 30000 and m.bit_depth == 16
    # the 16-bit ADC just covers the full well (no ADC clipping before the well)
    assert np.median(m.gain) * m.full_well + 100 < m.max_adu
    # photon transfer of flat frames: variance = gain · (mean − offset) + read noise²
    rng = np.random.default_rng(0)
    frames = np.stack([m.expose(5000.0, 0.0, rng) for _ in range(64)]).astype(np.float64)
    ok = ~(m.hot | m.dead | (m.rts_amplitude > 0))
    mean, var = frames.mean(0)[ok], frames.var(0, ddof=1)[ok]
    pred = m.gain[ok] * (mean - m.offset[ok]) + m.read_noise[ok] ** 2
    assert 0.93 < np.median(var / pred) < 1.07


def test_paper_opt_sets_the_budget_and_the_angle_density():
    acq = paper_opt((16, 32), rng=1, n_plaques=4)
    assert acq.projections.shape == (38, 16, 32)  # round(32 · 1200 / 1024) angles over 360°
    assert acq.angles_deg[-1] == pytest.approx(360 * 37 / 38)
    assert acq.info["camera"] == "orca-flash4"
    assert acq.info["peak_electrons"] == pytest.approx(0.8 * 30000)
    assert acq.phantom.debris.sum() == 0
    # brightest pixel ≈ 24 000 e⁻ · 2.17 ADU/e⁻ + 100 (shot noise ≈ 155 e⁻ ≈ 340 ADU)
    assert 51000 < acq.projections.max() < 54500
    low = paper_opt((16, 32), rng=1, n_plaques=4, fill=0.05)
    assert 2900 < low.projections.max() < 3700
    with pytest.raises(ValueError, match="fill"):
        simulate_opt((16, 32), 4, fill=0.0)
    with pytest.raises(ValueError, match="unknown camera"):
        simulate_opt((16, 32), 4, camera="nope")


def test_8bit_fixed_range_clips_and_is_validated():
    (c,) = parse_codecs("8bit:range=fixed,min=100,max=1123")
    assert c.spec == "8bit:range=fixed,min=100,max=1123"
    x = np.array([[0, 100, 104, 612, 1123, 4000]], np.uint16)
    assert c.decode(c.encode(x)).tolist() == [[100, 100, 104, 612, 1120, 1120]]  # step 4
    for bad, msg in (("8bit:min=3", "range=fixed only"),
                     ("8bit:range=fixed,min=10,max=5", "must exceed")):  # fmt: skip
        with pytest.raises(CodecError, match=msg):
            parse_codecs(bad)


def test_8bit_range_first_is_imagejs_stack_conversion():
    """ImageJ converts a 16-bit stack with the first slice's display range (its min..max)."""
    rng = np.random.default_rng(0)
    st = rng.integers(100, 5000, (5, 8, 8)).astype(np.uint16)
    st[3, 0, 0] = 9000  # brighter than frame 0: clips at code 255
    (first,) = parse_codecs("8bit:range=first")
    (fixed,) = parse_codecs(f"8bit:range=fixed,min={st[0].min()},max={st[0].max()}")
    assert np.array_equal(first.decode(first.encode(st)), fixed.decode(fixed.encode(st)))
    first.fit_stack(st)  # frames coded one by one (tomography)
    for f in st:
        assert np.array_equal(first.decode(first.encode(f)), fixed.decode(fixed.encode(f)))
    assert first.decode(first.encode(st[3]))[0, 0] < st[0].max() + 20


@pytest.mark.slow
def test_cli_simulate_then_score(tmp_path):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    proj = tmp_path / "opt.tif"
    common = ["tomo", "simulate", str(proj), "--rows", "16", "--det", "40", "--plaques", "6"]
    r = CliRunner().invoke(app, common)
    assert r.exit_code == 0, r.output
    stack = tifffile.imread(proj)
    assert stack.shape == (47, 16, 40) and stack.dtype == np.uint16
    prof = tmp_path / "opt_profile.h5"
    assert prof.is_file()
    r = CliRunner().invoke(app, common)
    assert r.exit_code == 1 and "--force" in r.output
    out = tmp_path / "res"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = CliRunner().invoke(
            app,
            ["tomo", "score", str(proj), "--profile", str(prof), "--out", str(out),
             "--replicas", "5", "--no-operators", "--codecs", "replica,jpeg@100,8bit:range=first"],
        )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    verdicts = {c["spec"]: c["verdict"]["within_noise"] for c in res["codecs"]}
    assert verdicts["replica"] and not verdicts["jpeg@100"]
    eight = next(c for c in res["codecs"] if c["spec"] == "8bit:range=first")
    assert "first frame" in eight["description"] and 1.5 < eight["compression_ratio"] < 2.1


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["x.png"], "give a .tif"),
        (["x.tif", "--plaque-level", "1"], "LO,HI"),
        (["x.tif", "--plaque-level", "0.5,0.2"], "0 < LO <= HI"),
        (["x.tif", "--profile-out", "x.tif"], "the same file"),
        (["x.tif", "--camera", "nope"], "orca-flash4"),
    ],
)
def test_cli_simulate_bad_inputs(tmp_path, monkeypatch, args, msg):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["tomo", "simulate", *args])
    assert r.exit_code == 2 and msg in " ".join(r.output.split()), r.output
    assert list(tmp_path.iterdir()) == []


def test_8bit_rounding_is_extra_noise_that_fbp_carries_unchanged():
    """Min–max 8-bit at the paper's budget: rms error / rms noise ≈ step/(√12 σ) in the
    projections, the same ratio after FBP (linear), larger after smoothing (a bias)."""
    from rawsigma.analysis.noisemodel.synthesis import synthesize
    from rawsigma.analysis.scoring.fbp_adapter import fbp
    from scipy import ndimage as ndi

    acq = paper_opt((12, 48), rng=3, n_plaques=6)
    p, prof = acq.projections, acq.profile
    (c,) = parse_codecs("8bit", profile=prof)
    dec = np.stack([c.decode(c.encode(f)) for f in p]).astype(np.float64)
    rep = np.stack([synthesize(f, prof, 1, np.random.default_rng(i))[0] for i, f in enumerate(p)])
    shadow = acq.photons > 0.1 * acq.photons.max()
    e8, en = dec - p, rep.astype(np.float64) - p
    r_proj = np.sqrt(np.mean(e8[shadow] ** 2) / np.mean(en[shadow] ** 2))
    step = np.mean([(f.max() - f.min() + 1) / 256 for f in p])
    sigma = np.sqrt(np.mean(en[shadow] ** 2))
    assert abs(r_proj / (step / np.sqrt(12) / sigma) - 1) < 0.15, r_proj
    assert 0.15 < r_proj < 0.4  # the step is below σ: rounding is dithered by the noise

    def rec(x):
        return fbp((x.astype(np.float32) - prof.offset) / prof.gain, acq.angles_deg)

    v0 = rec(p)
    v8, vn = rec(dec) - v0, rec(rep) - v0
    organ = acq.phantom.organ
    r_rec = np.sqrt(np.mean(v8[organ] ** 2) / np.mean(vn[organ] ** 2))
    assert abs(r_rec / r_proj - 1) < 0.2, (r_rec, r_proj)
    s8, sn = ndi.gaussian_filter(v8, 4), ndi.gaussian_filter(vn, 4)
    assert np.sqrt(np.mean(s8[organ] ** 2) / np.mean(sn[organ] ** 2)) > 2 * r_rec
