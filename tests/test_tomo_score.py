"""Issue 15 (OPT): the simulated acquisition, operator ε, the tomography scoring pipeline."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.analysis.phantoms.opt_organ import organ_phantom3d, project_parallel, simulate_opt
from rawsigma.analysis.scoring.operators import NULL_FRACTION, operator_epsilon, operator_maps
from rawsigma.analysis.scoring.tomo_runner import check_projections, score_tomo
from rawsigma.errors import ImageMismatchError

SHAPE = (24, 48)  # rows, detector


@pytest.fixture(scope="module")
def camera():
    model = SensorModel.preset("scmos", SHAPE, seed=3)
    return model, model.true_profile()


@pytest.fixture(scope="module")
def phantom():
    return organ_phantom3d(SHAPE, n_plaques=10, radius=(2.0, 3.5), rng=1)


def test_projector_is_skimage_radon(phantom):
    from skimage.transform import radon

    angles = np.arange(12) * 30.0
    p = project_parallel(phantom.fluorescence, angles)
    z = SHAPE[0] // 2
    ref = radon(phantom.fluorescence[z], theta=angles, circle=True)
    assert np.abs(p[:, z, :].T - ref).max() < 1e-4 * ref.max()
    # attenuation only removes light; the centre-of-rotation offset shifts the detector
    pa = project_parallel(phantom.fluorescence, angles, attenuation=phantom.attenuation)
    assert np.all(pa <= p + 1e-6) and pa.sum() < 0.97 * p.sum()
    ps = project_parallel(phantom.fluorescence, angles, cor_offset=3.0)
    assert np.allclose(ps[:, z, 10:40], p[:, z, 7:37], atol=1e-4 * p.max())


def test_projections_carry_the_camera_noise(camera, phantom):
    """Per-pixel variance over repeated acquisitions = gain·(mean − offset) + read noise²."""
    model, prof = camera
    runs = np.stack(
        [
            simulate_opt(
                SHAPE, 4, rng=k, phantom=phantom, profile=prof, model=model, peak_photons=3000.0
            ).projections
            for k in range(48)
        ]
    ).astype(np.float64)
    mean, var = runs.mean(0), runs.var(0, ddof=1)
    ok = ~(model.hot | model.dead | (model.rts_amplitude > 0))
    sig = (mean - model.offset)[:, ok]
    pred = model.gain * (mean - model.offset) + model.read_noise**2 + 1 / 12
    ratio = np.median(var[:, ok] / pred[:, ok])
    assert 0.95 < ratio < 1.05, ratio
    slope = np.polyfit(sig.ravel(), (var - model.read_noise**2)[:, ok].ravel(), 1)[0]
    assert abs(slope / np.median(model.gain) - 1) < 0.04, slope
    assert sig.max() > 2000  # a real signal range, not just read noise


def test_operator_epsilon_replica_is_standard_normal_and_8bit_is_not():
    from rawsigma.analysis.codecs.registry import parse_codecs
    from rawsigma.analysis.noisemodel.synthesis import synthesize
    from rawsigma.analysis.phantoms import nuclei2d

    model = SensorModel.preset("scmos", (96, 96), seed=4)
    prof = model.true_profile()
    bright, _ = nuclei2d((96, 96), n_objects=6, rng=2, n_beads=2)
    img = model.expose(30 + 400 * bright, 0.01, np.random.default_rng(0))
    reps = synthesize(img, prof, 11, np.random.default_rng(1))
    (eight,) = parse_codecs("8bit", profile=prof)
    dec8 = eight.decode(eight.encode(img))
    res = operator_epsilon(img, list(reps[1:]), {"replica": reps[0], "8bit": dec8})
    frac_rep = [v["frac_abs_gt1"] for v in res.table["replica"].values()]
    frac_8 = [v["frac_abs_gt1"] for v in res.table["8bit"].values()]
    assert len(frac_rep) == 16 and res.n_replicas == 10
    # σ from 10 replicas: |t_9| > 1 with probability 0.343; the null of N(0, 1) is 0.317
    assert all(0.26 < f < 0.42 for f in frac_rep), frac_rep
    assert abs(np.mean(frac_rep) - 0.34) < 0.04 and abs(NULL_FRACTION - 0.3173) < 1e-3
    med = [v["median_abs"] for v in res.table["replica"].values()]
    assert all(0.55 < m < 0.8 for m in med), med
    assert min(frac_8) > 0.6, frac_8  # beads stretch the 8-bit range: far beyond the noise


def test_operator_maps_of_a_stack_are_per_frame():
    from rawsigma.analysis.segmentation.features import feature_maps_for_scoring

    st = np.random.default_rng(1).normal(100, 10, (4, 20, 30)).astype(np.float32)
    got, names = operator_maps(st, stack=True)
    ref = np.stack([feature_maps_for_scoring(f, sigmas=[1, 2, 4, 8])[0] for f in st])
    assert np.array_equal(got, ref) and len(names) == 16
    vol, _ = operator_maps(st)  # 3-D operators differ: they smooth across frames
    assert not np.allclose(vol, ref)


def test_bad_projection_inputs(camera):
    _, prof = camera
    p = np.zeros((6, *SHAPE), np.uint16)
    with pytest.raises(ImageMismatchError, match="5 values for 6 projections"):
        check_projections(p, np.arange(5), prof)
    with pytest.raises(ImageMismatchError, match="mixed shapes; projection 2"):
        check_projections([p[0], p[0], p[0][:, :10]], np.arange(3))
    with pytest.raises(ImageMismatchError, match="raw 16-bit"):
        check_projections(p.astype(np.float32), np.arange(6))
    with pytest.raises(ImageMismatchError, match="shape"):
        check_projections(p[:, :, :20], np.arange(6), prof)


def test_signed_projections_above_16_bits_are_not_wrapped():
    p = np.full((3, 4, 5), 70000, np.int32)
    got, _ = check_projections(p, np.arange(3))
    assert got.dtype == np.uint32 and int(got.max()) == 70000
    small, _ = check_projections(p // 10, np.arange(3))
    assert small.dtype == np.uint16 and int(small.max()) == 7000


@pytest.fixture(scope="module")
def acquisition(camera, phantom):
    model, prof = camera
    return simulate_opt(
        SHAPE, 48, rng=0, phantom=phantom, profile=prof, model=model, peak_photons=3000.0
    )


def test_score_tomo_tiny(acquisition, tmp_path):
    from rawsigma.analysis.reporting.tomo_report import write_tomo_report

    a = acquisition
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = score_tomo(
            a.projections,
            a.angles_deg,
            a.profile,
            n_replicas=5,
            codecs=("replica", "jpeg@100"),
            sigmas=(1.0, 2.0),
        )
    assert r.volume.shape == (SHAPE[0], SHAPE[1], SHAPE[1])
    assert r.n_objects >= 5  # most of the 10 plaques are found
    rep, jpg = r.versions
    assert rep.verdict["within_noise"], rep.verdict
    assert not jpg.verdict["within_noise"], jpg.verdict
    assert jpg.ratio > 3
    g = r.raw_globals
    assert g["mean_volume"] == pytest.approx(g["total_volume"] / g["count"])
    assert set(rep.globals) == {"count", "total_volume", "load", "mean_volume"}
    frac = [v["frac_abs_gt1"] for v in r.operators["reconstruction"].table["replica"].values()]
    assert all(0.2 < f < 0.5 for f in frac), frac
    d = json.loads(json.dumps(r.to_dict(), default=float))
    assert d["codecs"][0]["spec"] == "replica" and "operator_epsilon" in d
    jpg.verdict["systematic_note"] = "jpeg@100: a systematic shift <test>"
    write_tomo_report(r, tmp_path)
    # the note of a failing parameter whose objects all moved one way (as 2D/3D reports)
    assert "jpeg@100: a systematic shift &lt;test&gt;" in (tmp_path / "report.html").read_text()
    for f in (
        "report.html",
        "results.json",
        "operators.md",
        "figures/slices.png",
        "figures/operators_reconstruction.png",
        "figures/operators_projections.png",
    ):
        assert (tmp_path / f).is_file(), f
    assert "| LoG | 2 |" in (tmp_path / "operators.md").read_text()


def test_cli_tomo_score(acquisition, tmp_path):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    a = acquisition
    tifffile.imwrite(tmp_path / "proj.tif", a.projections[::2])
    a.profile.save(tmp_path / "prof.h5")
    np.savetxt(tmp_path / "bad_angles.txt", a.angles_deg[:5])
    base = ["tomo", "score", str(tmp_path / "proj.tif"), "--profile", str(tmp_path / "prof.h5")]
    r = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "bad"), "--angles", str(tmp_path / "bad_angles.txt")]
    )
    assert r.exit_code == 1 and "5 angles for the 24 projections" in " ".join(r.output.split())
    assert not (tmp_path / "bad" / "report.html").exists()
    n_det = SHAPE[-1]
    for opt, value, words in (
        ("--center", str(n_det + 5), "outside the detector"),
        ("--center", "-1", "outside the detector"),
        ("--arc", "nan", "expected an angle"),
        ("--arc", "0", "expected an angle"),
    ):
        r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "bad"), opt, value])
        assert r.exit_code == 2 and words in " ".join(r.output.split()), (opt, value, r.output)
        assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app, [*base, "--out", str(out), "--codecs", "replica", "--replicas", "3", "--no-operators"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["projections_shape"] == [24, *SHAPE]
    assert (out / "report.html").exists() and (out / "figures" / "sinogram.png").exists()
    r = CliRunner().invoke(app, [*base, "--out", str(out)])
    assert r.exit_code == 1 and "--force" in r.output
    r = CliRunner().invoke(app, ["tomo", "score", str(tmp_path / "proj.tif"), "--out", str(out)])
    assert r.exit_code == 2 and "--estimate-profile" in r.output
    est = tmp_path / "est"
    r = CliRunner().invoke(
        app,
        [
            "tomo",
            "score",
            str(tmp_path / "proj.tif"),
            "--estimate-profile",
            "--out",
            str(est),
            "--codecs",
            "replica",
            "--replicas",
            "3",
            "--no-operators",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        "estimated" in json.loads((est / "results.json").read_text())["provenance"]["profile_file"]
    )


def test_centre_of_rotation_offset_is_found(camera, phantom):
    """A shifted rotation axis: find_center recovers it and the plaques come back."""
    model, prof = camera
    kw = dict(phantom=phantom, profile=prof, model=model, peak_photons=3000.0)
    off = simulate_opt(SHAPE, 48, rng=0, cor_offset=2.5, **kw)
    common = dict(n_replicas=3, codecs=("replica",), operators=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = score_tomo(off.projections, off.angles_deg, prof, find_center=True, **common)
        centred = score_tomo(
            simulate_opt(SHAPE, 48, rng=0, **kw).projections, off.angles_deg, prof, **common
        )
    assert abs(found.provenance["center"] - (SHAPE[1] // 2 + 2.5)) < 0.5
    assert found.provenance["center_source"].startswith("find_center")
    assert abs(found.n_objects - centred.n_objects) <= 1


def test_fbp_adapter_fallback_matches_tomo_fbp(phantom):
    """The iradon fallback and rawsigma.analysis.tomo.fbp agree (geometry, centre)."""
    from rawsigma.analysis.scoring import fbp_adapter

    angles = np.arange(60) * 3.0
    p = project_parallel(phantom.fluorescence, angles, cor_offset=1.5)
    ref = fbp_adapter._iradon_fbp(p, angles, center=SHAPE[1] // 2 + 1.5)
    rng = float(phantom.fluorescence.max() - phantom.fluorescence.min())
    if fbp_adapter.FBP_SOURCE.startswith("rawsigma.analysis.tomo"):
        got = fbp_adapter.fbp(p, angles, center=SHAPE[1] // 2 + 1.5)
        assert np.sqrt(np.mean((got - ref) ** 2)) < 0.01 * rng
    truth = phantom.fluorescence
    inside = phantom.organ
    assert np.sqrt(np.mean((ref[inside] - truth[inside]) ** 2)) < 0.1 * rng
    with pytest.raises(ImageMismatchError, match="59 angles for 60 projections"):
        fbp_adapter._iradon_fbp(p, angles[:-1])


def test_simulate_opt_default_camera_is_the_exact_profile():
    acq = simulate_opt((16, 32), 4, rng=5, n_plaques=3)
    assert acq.projections.shape == (4, 16, 32) and acq.projections.dtype == np.uint16
    assert np.array_equal(acq.profile.gain, acq.model.gain)
    assert "truth" in acq.calibration
    with pytest.raises(ValueError, match="n_angles"):
        simulate_opt((16, 32), 1)


def test_summary_names_a_global_change_when_replicas_all_agree():
    from rawsigma.cli.tomo_score_cmd import _global_eps

    assert _global_eps({"epsilon": 1.234}) == "+1.23"
    text = _global_eps({"epsilon": float("inf"), "sigma_raw": 0.0, "delta": -2.0})
    assert text.startswith("Δ -2") and "inf" not in text
