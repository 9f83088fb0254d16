"""Per-pixel dark current and hot pixels against the simulated camera's truth."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.calib.build import build_profile
from rawsigma.calib.darkcurrent import attach_dark_current, fit_dark_current
from rawsigma.calib.moments import PixelMoments
from rawsigma.calib.profile import DEFECT_HOT, CameraProfile
from rawsigma.calib.simsweep import accumulate_sweep
from rawsigma.calib.validate import CalibrationError
from rawsigma.cli.main import app
from typer.testing import CliRunner

EXPOSURES = (0.01, 0.1, 1.0)


def _darks(cam: SensorModel, frames: int, seed: int) -> list[PixelMoments]:
    rng = np.random.default_rng(seed)
    out = []
    for t in EXPOSURES:
        pm = PixelMoments(cam.shape)
        for _ in range(frames // 10):
            pm.add(np.stack([cam.expose(0, t, rng) for _ in range(10)]))
        out.append(pm)
    return out


def _one_level_profile(cam: SensorModel, fraction: float, frames: int, seed: int) -> CameraProfile:
    """A profile from one light level and a dark stack at the shortest exposure."""
    t0 = EXPOSURES[0]
    ph = cam.photons_for_fraction(fraction, t0)
    sw = accumulate_sweep(
        cam.expose, cam.shape, [ph], frames=frames, dark_frames=frames, exposure_s=t0, rng=seed
    )
    return build_profile(sw.dark, sw.levels, {"exposure_ms": 1000 * t0}, max_adu=cam.max_adu)


@pytest.fixture(scope="module")
def scmos() -> tuple[SensorModel, list[PixelMoments]]:
    cam = SensorModel.preset("scmos", (128, 128), seed=3)
    return cam, _darks(cam, 100, 5)


def test_dark_current_against_truth(scmos) -> None:
    cam, darks = scmos
    dc = fit_dark_current(darks, EXPOSURES)
    truth = cam.dark_current.astype(np.float64) * cam.gain  # ADU/s
    normal = ~cam.hot & (cam.defects == 0)
    rel = dc.rate / truth - 1
    assert abs(np.median(rel[normal])) < 0.05  # unbiased per pixel
    assert abs(np.median(rel[cam.hot])) < 0.05 and np.median(np.abs(rel[cam.hot])) < 0.05
    z = (dc.rate - truth) / dc.rate_se
    assert 0.8 <= np.std(z[normal]) <= 1.25  # the SE is right
    # the simulator's hot pixels, and only them
    np.testing.assert_array_equal(dc.hot, cam.hot)
    # intercept: offset at zero exposure
    zb = (dc.bias - cam.offset) / dc.bias_se
    assert abs(np.median(zb[normal])) < 0.2


def test_profile_at_exposure_and_file(scmos, tmp_path) -> None:
    cam, darks = scmos
    prof = _one_level_profile(cam, 0.5, frames=60, seed=7)
    assert prof.at_exposure(1.0) is prof  # no dark current: unchanged
    full = attach_dark_current(prof, fit_dark_current(darks, EXPOSURES))
    assert np.array_equal(
        full.defects & DEFECT_HOT != 0, cam.hot | (prof.defects & DEFECT_HOT != 0)
    )
    at1 = full.at_exposure(1.0)
    assert at1.identity.exposure_ms == 1000.0
    assert at1.provenance["at_exposure"]["from_profile_id"] == full.profile_id
    g = at1.good
    true_o = cam.offset + cam.gain * cam.dark_current * 1.0
    true_r = np.sqrt(cam.read_noise**2 + 1 / 12 + cam.gain**2 * cam.dark_current * 1.0)
    assert abs(np.median((at1.offset - true_o)[g])) < 0.05
    assert abs(np.median((prof.offset - true_o)[g])) > 0.4  # what is corrected
    assert abs(np.median(at1.read_noise[g] / true_r[g] - 1)) < 0.02
    # hot pixels: the offset follows their dark current
    h = cam.hot
    assert np.median(np.abs(at1.offset[h] - true_o[h]) / (true_o[h] - cam.offset[h])) < 0.05
    # file round trip; old profiles still load and keep their id
    path = tmp_path / "p.h5"
    full.save(path)
    back = CameraProfile.load(path)
    assert back.profile_id == full.profile_id
    np.testing.assert_array_equal(back.dark_current, full.dark_current)
    assert back.dark_info["reference_exposure_s"] == EXPOSURES[0]
    prof.save(tmp_path / "old.h5")
    assert CameraProfile.load(tmp_path / "old.h5").dark_current is None
    crop = back.crop((10, 20, 30, 40))
    assert crop.dark_current.shape == (40, 30)
    np.testing.assert_array_equal(crop.dark_current, back.dark_current[20:60, 10:40])


def test_bad_dark_series(scmos) -> None:
    cam, darks = scmos
    with pytest.raises(CalibrationError, match="2 different exposure"):
        fit_dark_current(darks[:2], [0.1, 0.1])
    with pytest.raises(CalibrationError, match="3 dark stacks for 2"):
        fit_dark_current(darks, [0.1, 0.2])


def test_cli_dark_exposures_on_sim_rig(tmp_path) -> None:
    out = tmp_path / "p.h5"
    args = ["calibrate", "--out", str(out), "--levels", "3", "--frames", "30", "--dark", "30"]
    args += ["--dark-exposures", "10,100,1000", "--dark-exposure-frames", "60", "--seed", "2"]
    args += ["-p", "Camera.SensorWidth=64", "-p", "Camera.SensorHeight=64", "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "dark current" in r.output and "hot pixels" in r.output
    prof = CameraProfile.load(out)
    truth = SensorModel.preset("scmos", (64, 64), seed=0)
    np.testing.assert_array_equal(prof.defects & DEFECT_HOT != 0, truth.hot)
    normal = ~truth.hot & (truth.defects == 0)
    rate = truth.dark_current * truth.gain
    assert abs(np.median(prof.dark_current[normal] / rate[normal] - 1)) < 0.1
    assert prof.dark_info["exposures_s"] == [0.01, 0.1, 1.0]
    assert prof.dark_info["temperature_c"] is not None  # the simulated camera reports one
    r = CliRunner().invoke(
        app, ["calibrate", "--out", str(tmp_path / "x.h5"), "--dark-exposures", "10"]
    )
    assert r.exit_code == 2 and "2 different exposure" in r.output


def test_synthesis_uses_the_exposure(scmos) -> None:
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    cam, darks = scmos
    prof = _one_level_profile(cam, 0.5, frames=40, seed=9)  # at 10 ms
    full = attach_dark_current(prof, fit_dark_current(darks, EXPOSURES))
    image = cam.expose(0, 1.0, 11)  # a dark frame at 1 s
    _, info = synthesize(image, full, n=2, rng=0, return_info=True, exposure_s=1.0)
    assert info.profile_id == full.at_exposure(1.0).profile_id != full.profile_id
    _, info0 = synthesize(image, full, n=2, rng=0, return_info=True)
    assert info0.profile_id == full.profile_id


def test_dark_current_from_stacks_csv(tmp_path) -> None:
    """Dark rows of a frame CSV at several exposures give the dark current offline."""
    import csv

    import tifffile
    from rawsigma.calib.stacks import calibrate_from_stacks

    cam = SensorModel.preset("scmos", (48, 48), seed=6)
    rng = np.random.default_rng(1)
    frames, rows = [], []
    for lv, t in enumerate(EXPOSURES):
        frames += [cam.expose(0, t, rng) for _ in range(30)]
        rows += [("dark", lv, 1000 * t)] * 30
    ph = cam.photons_for_fraction(0.5, 0.01)
    frames += [cam.expose(ph, 0.01, rng) for _ in range(30)]
    rows += [("bright", 0, 10.0)] * 30
    tif, table = tmp_path / "s.tif", tmp_path / "s.csv"
    tifffile.imwrite(tif, np.stack(frames), photometric="minisblack")
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "level_index", "exposure_ms"])
        w.writerows(rows)
    prof = calibrate_from_stacks(tif, table)
    assert prof.dark_info["exposures_s"] == list(EXPOSURES)
    t_ref = prof.dark_info["reference_exposure_s"]
    assert t_ref == pytest.approx(np.mean(EXPOSURES))
    np.testing.assert_array_equal(prof.defects & DEFECT_HOT != 0, cam.hot)
    # the merged dark's offset sits at t_ref; at 10 ms it matches the truth again
    at = prof.at_exposure(0.01)
    g = at.good & (cam.defects == 0)
    true_o = cam.offset + cam.gain * cam.dark_current * 0.01
    assert abs(np.median((at.offset - true_o)[g])) < 0.1
    assert abs(np.median((prof.offset - true_o)[g])) > 0.15  # what at_exposure corrects


def test_dark_current_of_the_emva_ccd(shared_data) -> None:
    from rawsigma.calib.stacks import calibrate_from_stacks

    prof = calibrate_from_stacks(
        shared_data / "emva1288_ccd12_ptc_roi256.tif",
        shared_data / "emva1288_ccd12_ptc_roi256.csv",
    )
    info = prof.dark_info
    assert len(info["exposures_s"]) == 24 and info["frames"] == [2] * 24
    z = (prof.dark_current - np.median(prof.dark_current)) / prof.dark_current_se
    assert 0.8 < np.std(z) < 1.25  # pair-pooled SE describes the scatter
    assert info["hot_pixels"] == 0


def test_profiles_without_dark_current_keep_their_id(tmp_path) -> None:
    # value computed with the profile code before issue 11 (schema 1, no dark current)
    p = CameraProfile.uniform((8, 8), 2.0, 100.0, 1.5, bit_depth=12, camera="cam")
    assert p.profile_id == "a4ee9e62e5d5"
    p.save(tmp_path / "u.h5")
    import h5py

    with h5py.File(tmp_path / "u.h5") as f:
        assert "dark_current" not in f  # nothing new in files without a dark current
    assert CameraProfile.load(tmp_path / "u.h5").profile_id == "a4ee9e62e5d5"


def test_cli_exposure_without_dark_current_says_so(scmos, tmp_path) -> None:
    """QA session 8: ``compress``/``score --exposure`` with a profile that has no dark
    current changed nothing and said nothing; now one warning line (exit 0). With a dark
    current there is no warning (the profile follows the exposure)."""
    cam, darks = scmos
    t0 = EXPOSURES[0]
    ph = cam.photons_for_fraction(0.3, t0)
    prof = _one_level_profile(cam, 0.3, frames=30, seed=7)
    prof.save(tmp_path / "plain.h5")
    attach_dark_current(prof, fit_dark_current(darks, EXPOSURES)).save(tmp_path / "dc.h5")
    np.save(tmp_path / "img.npy", cam.expose(ph, t0, np.random.default_rng(1)))
    cli = CliRunner()
    for name, warned in (("plain", True), ("dc", False)):
        args = ["compress", str(tmp_path / "img.npy"), "-p", str(tmp_path / f"{name}.h5"),
                "-o", str(tmp_path / f"{name}.rsnc"), "--exposure", "500"]  # fmt: skip
        r = cli.invoke(app, args)
        assert r.exit_code == 0, r.output
        said = "--exposure 500 ms has no effect" in " ".join(r.output.split())
        assert said is warned, r.output
