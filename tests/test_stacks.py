"""Offline calibration from TIFF stacks: the shared EMVA dataset and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.calib.stacks import calibrate_from_stacks
from rawsigma.errors import InputFileError

DATA = Path(__file__).parents[1].parent / "shared" / "data"
EMVA_TIF = DATA / "emva1288_ccd12_ptc_roi256.tif"
EMVA_CSV = DATA / "emva1288_ccd12_ptc_roi256.csv"


@pytest.mark.skipif(not EMVA_TIF.exists(), reason="shared EMVA dataset not available")
def test_emva_reference_dataset() -> None:
    prof = calibrate_from_stacks(EMVA_TIF, EMVA_CSV)
    e = prof.emva
    print({k: e[k] for k in ("K", "sigma_d", "DSNU1288", "PRNU1288", "mu_e_sat", "eta", "LE")})
    assert e["K"] == pytest.approx(0.28, rel=0.03)
    assert prof.offset_global == pytest.approx(15, abs=0.5)
    assert e["saturation_mode"] == "adc"
    assert 3800 < e["mu_y_sat"] < 4095
    assert e["n_levels"] == 24 and e["frames_per_level"] == 2
    assert prof.identity.bit_depth == 12
    assert len(prof.ptc["mean"]) == 24
    assert np.all(prof.ptc["clipped_fraction"][-4:] == 1)
    assert 0.2 < e["eta"] < 0.8 and e["LE"] < 1
    # per-pixel gain from 2 frames per level is noisy but centred on K
    assert np.mean(prof.gain[prof.good]) == pytest.approx(e["K"], rel=0.03)
    assert prof.provenance["total_frames"] == 96


def _write(path: Path, frames: np.ndarray, **kw) -> Path:
    kw.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, frames, **kw)
    return path


@pytest.fixture
def sim_stacks(tmp_path: Path) -> tuple[SensorModel, list[Path]]:
    cam = SensorModel.preset("ccd", (32, 40), seed=4)
    rng = np.random.default_rng(5)
    paths = [_write(tmp_path / "dark.tif", np.stack([cam.expose(0, 0, rng) for _ in range(30)]))]
    for j, f in enumerate((0.2, 0.45, 0.7)):
        ph = cam.photons_for_fraction(f)
        frames = np.stack([cam.expose(ph, 0, rng) for _ in range(30)])
        paths.append(_write(tmp_path / f"level{j}.ome.tif", frames))
    return cam, paths


def test_dark_plus_level_files(sim_stacks) -> None:
    cam, paths = sim_stacks
    seen = []
    prof = calibrate_from_stacks(paths, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (120, 120)
    assert prof.emva["K"] == pytest.approx(0.25, rel=0.03)
    assert np.median(prof.offset - cam.offset) == pytest.approx(0, abs=0.1)
    assert prof.identity.bit_depth == 12  # inferred: values fit in 12 bits
    same = calibrate_from_stacks(paths[1:], dark=paths[0], bit_depth=12)
    np.testing.assert_array_equal(same.gain, prof.gain)


def test_csv_with_several_files(sim_stacks, tmp_path: Path) -> None:
    _, paths = sim_stacks
    rows = ["file,frame,kind,level_index,exposure_ms"]
    rows += [f"dark.tif,{i},dark,0,10" for i in range(30)]
    rows += [f"level{j}.ome.tif,{i},bright,{j},10" for j in range(3) for i in range(30)]
    csv = tmp_path / "frames.csv"
    csv.write_text("\n".join(rows) + "\n")
    prof = calibrate_from_stacks(paths, csv)
    assert prof.emva["K"] == pytest.approx(0.25, rel=0.03)


def test_bad_input(sim_stacks, tmp_path: Path) -> None:
    cam, paths = sim_stacks
    one = _write(tmp_path / "one.tif", cam.expose(100, 0, 1)[None])
    with pytest.raises(InputFileError, match=r"one\.tif.*1 frame"):
        calibrate_from_stacks([paths[0], one])
    flt = _write(tmp_path / "float.tif", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputFileError, match=r"float\.tif.*float32"):
        calibrate_from_stacks([paths[0], flt])
    with pytest.raises(InputFileError, match="no such file"):
        calibrate_from_stacks([tmp_path / "missing.tif", paths[1]])
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(InputFileError, match=r"junk\.tif.*not a readable TIFF"):
        calibrate_from_stacks([junk, paths[1]])
    with pytest.raises(InputFileError, match=r"dark\.tif.*one stack without a CSV"):
        calibrate_from_stacks(paths[0])
    other = _write(tmp_path / "other.tif", np.zeros((3, 8, 8), np.uint16))
    with pytest.raises(InputFileError, match="different frame shapes"):
        calibrate_from_stacks([paths[0], other])
    csv = tmp_path / "short.csv"
    csv.write_text("frame,kind,level_index\n" + "".join(f"{i},dark,0\n" for i in range(29)))
    with pytest.raises(InputFileError, match=r"short\.csv.*29 frames.*30"):
        calibrate_from_stacks(paths[0], csv)
    csv.write_text("frame,kind,level_index\n0,dark,0\n99,bright,0\n")
    with pytest.raises(InputFileError, match=r"line 3: frame 99 does not exist"):
        calibrate_from_stacks(paths[0], csv)
    csv.write_text("frame,kind\n0,dark\n")
    with pytest.raises(InputFileError, match="missing column 'level_index'"):
        calibrate_from_stacks(paths[0], csv)
    csv.write_text("frame,kind,level_index\n0,sky,0\n")
    with pytest.raises(InputFileError, match="kind 'sky'"):
        calibrate_from_stacks(paths[0], csv)


@pytest.mark.parametrize("suffix", [".ome.tif", ".h5"])
def test_frames_saved_by_the_sweep_writer(tmp_path: Path, suffix: str) -> None:
    from rawsigma.acquire import framesave

    shape = (24, 32)
    cam = SensorModel.preset(
        "scmos", shape, seed=8, bit_depth=12, offset=np.full(shape, 100.0), gain=np.full(shape, 0.5)
    )
    rng = np.random.default_rng(9)
    path = tmp_path / f"sweep{suffix}"
    w = framesave.FrameWriter(path, cam.shape, 12)
    for _ in range(20):
        w.write(cam.expose(0, 0.01, rng), "dark", -1, 10.0, 0.0)
    for j, f in enumerate((0.2, 0.5, 0.8)):
        ph = cam.photons_for_fraction(f, 0.01)
        for _ in range(20):
            w.write(cam.expose(ph, 0.01, rng), "bright", j, 10.0, 100 * f)
    w.close()
    csv = tmp_path / "sweep.csv"
    prof = calibrate_from_stacks(path, csv)
    assert prof.identity.bit_depth == 12
    assert prof.emva["K"] == pytest.approx(0.5, rel=0.05)
    assert np.median(prof.offset) == pytest.approx(100, abs=0.3)
    assert prof.provenance["total_frames"] == 80
    if suffix == ".h5":  # roles are stored inside the HDF5 file: no CSV needed
        same = calibrate_from_stacks(path)
        np.testing.assert_array_equal(same.gain, prof.gain)
