"""Calibrating from recorded Micro-Manager / pymmcore-plus datasets, without a CSV.

The datasets are written here by the libraries that write them for Micro-Manager:
pymmcore-plus's MDA engine with its OME-TIFF / OME-Zarr writers (ome-writers) and
ndstorage's NDTiff writer, running on the simulated rig. Every format must give the
same profile as the same frames through the CSV path, and, with the same plan and
seed, the same maps as the MDA run that recorded them.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import useq
from rawsigma.acquire.core import open_core
from rawsigma.acquire.mda import MDASweep, MomentsHandler, sweep_sequences
from rawsigma.acquire.plans import SweepPlan
from rawsigma.calib import dataset_formats
from rawsigma.calib.datasets import FrameInfo, RecordedDataset, group_levels, read_dataset
from rawsigma.calib.stacks import calibrate_from_stacks
from rawsigma.errors import InputFileError

SMALL = {"Camera.SensorWidth": 40, "Camera.SensorHeight": 32, "Camera.BitDepth": 12}
PLAN = SweepPlan(
    dark_frames=12, n_levels=3, frames_per_level=12, saturation_levels=0,
    auto_range=False, control_max=2.0, seed=21,
)  # fmt: skip
MAPS = ("offset", "gain", "read_noise", "offset_se", "gain_se", "read_noise_se", "prnu")


def _same(a, b) -> None:
    for k in MAPS:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    assert np.array_equal(a.defects, b.defects)
    assert a.emva["K"] == b.emva["K"]


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["file", "frame", "kind", "level_index"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def mda_tiff(tmp_path_factory):
    """A sweep recorded by pymmcore-plus (ome-writers OME-TIFF), one file per level."""
    d = tmp_path_factory.mktemp("mda") / "sweep"
    sweep = MDASweep(open_core(properties=SMALL), PLAN, output_dir=d)
    return d, sweep.run()


def test_pymmcore_plus_ome_tiff_folder_calibrates_without_csv(mda_tiff, tmp_path) -> None:
    folder, run_profile = mda_tiff
    files = sorted(folder.glob("*.ome.tiff"))
    assert [f.name for f in files] == [
        "000_dark.ome.tiff", "001_level000.ome.tiff", "002_level001.ome.tiff",
        "003_level002.ome.tiff",
    ]  # fmt: skip
    ds = read_dataset(folder)
    assert ds.format == "folder" and ds.n_frames == 48 and ds.bit_depth == 12
    rows = group_levels([ds])
    assert [(r["kind"], r["level"]) for r in rows[::12]] == [
        ("dark", -1), ("light", 0), ("light", 1), ("light", 2)
    ]  # fmt: skip
    assert [r["control"] for r in rows[12::12]] == pytest.approx([2 / 3, 4 / 3, 2.0])
    prof = calibrate_from_stacks([folder])
    assert prof.plan["frame_table"] == "metadata"
    ident = prof.identity
    assert (ident.camera, ident.serial, ident.model) == ("Camera", "SIM-scmos-0", "SimCamera")
    assert ident.bit_depth == 12 and ident.exposure_ms == 10.0 and ident.roi == (0, 0, 40, 32)
    # the same frames through a hand-written CSV (one row per frame of every file)
    table = [
        {"file": f.name, "frame": j, "kind": "dark" if k == 0 else "bright",
         "level_index": max(k - 1, 0)}
        for k, f in enumerate(files) for j in range(12)
    ]  # fmt: skip
    via_csv = calibrate_from_stacks(files, _write_csv(tmp_path / "t.csv", table))
    assert via_csv.plan["frame_table"] == "csv"
    _same(prof, via_csv)
    _same(prof, run_profile)  # and the maps of the MDA run that recorded the frames


def test_ome_zarr_and_ndtiff_record_the_same_frames(mda_tiff, tmp_path) -> None:
    _, run_profile = mda_tiff
    zarr_dir = tmp_path / "zarr"
    MDASweep(open_core(properties=SMALL), PLAN, output_dir=zarr_dir, fmt="ome-zarr").run()
    assert read_dataset(zarr_dir).format == "folder"
    assert read_dataset(next(zarr_dir.iterdir())).format == "pymmcore-plus-ome-zarr"
    _same(calibrate_from_stacks([zarr_dir]), run_profile)

    nd = _record_ndtiff(tmp_path / "nd")
    ds = read_dataset(nd)
    assert ds.format == "ndtiff" and ds.n_frames == 48 and ds.bit_depth == 12
    prof = calibrate_from_stacks([nd])
    _same(prof, run_profile)
    assert prof.identity.serial == "SIM-scmos-0" and prof.identity.camera == "Camera"
    table = [
        {"file": nd.name, "frame": j, "kind": "dark" if j < 12 else "bright",
         "level_index": max(j // 12 - 1, 0)}
        for j in range(48)
    ]  # fmt: skip
    _same(calibrate_from_stacks([nd], _write_csv(tmp_path / "nd.csv", table)), prof)


class _NDTiffRecorder:
    """MDA handler storing frames as Micro-Manager does in an NDTiff dataset (ndstorage).

    Per-image tags as MMCore's tagged images carry them (the system state cache as
    ``Device-Property`` keys, Camera, BitDepth, Width, Height, PixelType, Binning) plus
    what the acquisition engine adds (Exposure, ElapsedTime-ms, PixelSize_um, axes);
    one channel per level, as an MDA with one channel per light setting.
    """

    def __init__(self, core, path: Path) -> None:
        from ndstorage import NDTiffDataset

        self.core = core
        self.ds = NDTiffDataset(str(path), name="sweep", writable=True)
        self.ds.initialize({"BitDepth": 12, "PixelType": "GRAY16", "Prefix": "sweep"})
        self.channel = ""

    def sequenceStarted(self, seq, meta=None) -> None:  # noqa: N802
        m = seq.metadata["rawsigma"]
        self.channel = "dark" if m["kind"] == "dark" else f"level{m['level']}"

    def frameReady(self, img, event, meta) -> None:  # noqa: N802
        c = self.core
        tags = {f"{d}-{p}": str(v) for d, p, v in c.getSystemStateCache()}
        # UniMMCore leaves these two cache entries empty; MMCore fills them
        tags["Core-Camera"], tags["Core-Shutter"] = c.getCameraDevice(), c.getShutterDevice()
        tags.update(
            Camera=c.getCameraDevice(), BitDepth=12, Width=img.shape[1], Height=img.shape[0],
            PixelType="GRAY16", Binning=1, Exposure=meta["exposure_ms"],
            **{"ElapsedTime-ms": meta["runner_time_ms"], "PixelSize_um": 6.5},
        )  # fmt: skip
        axes = {"channel": self.channel, "time": event.index.get("t", 0)}
        self.ds.put_image(axes, np.asarray(img), tags)


def _record_ndtiff(root: Path) -> Path:
    root.mkdir()
    core = open_core(properties=SMALL)
    rec = _NDTiffRecorder(core, root)
    for seq in sweep_sequences(core, PLAN):
        core.mda.run(seq, output=[rec])
    rec.ds.finish()
    rec.ds.close()
    return root  # the reader finds the dataset folder (sweep_1) inside


def test_single_file_ome_tiff_with_channel_presets(tmp_path) -> None:
    # one MDASequence, one OME-TIFF: levels are channels of a config group, the way
    # an operator sets light levels in Micro-Manager (no rawsigma metadata at all)
    core = open_core(properties=SMALL)
    presets = {"Dark": ("0", None), "L1": ("1", "0.5"), "L2": ("1", "1.5")}
    for name, (state, intensity) in presets.items():
        core.defineConfig("Light", name, "Core", "AutoShutter", "0")
        core.defineConfig("Light", name, "LED", "State", state)
        if intensity:
            core.defineConfig("Light", name, "LED", "Intensity", intensity)
    seq = useq.MDASequence(
        channels=[{"group": "Light", "config": c} for c in presets],
        time_plan={"interval": 0, "loops": 8},
        axis_order="ct",
    )
    out = tmp_path / "one.ome.tiff"
    h = MomentsHandler()
    core.mda.run(seq, output=[str(out), h])
    ds = read_dataset(out)
    assert ds.format == "pymmcore-plus-ome-tiff" and ds.n_frames == 24
    prof = calibrate_from_stacks([out])
    order = [e.index["c"] for e in seq]  # the frame order of the file
    table = [
        {"file": out.name, "frame": j, "kind": "dark" if c == 0 else "bright",
         "level_index": max(c - 1, 0)}
        for j, c in enumerate(order)
    ]  # fmt: skip
    _same(prof, calibrate_from_stacks([out], _write_csv(tmp_path / "c.csv", table)))
    assert prof.ptc["n_frames"].tolist() == [8, 8]
    # the handler saw the same frames (levels by sequence: one level here)
    assert h.levels[0].n == 24


def test_micromanager_tiff_page_metadata(tmp_path) -> None:
    """Parser check on MM2's per-plane tag 51123 (written here with tifffile)."""
    import tifffile

    rng = np.random.default_rng(0)
    path = tmp_path / "mm_MMStack_Pos0.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        for j in range(9):
            state, inten = ("0", "0") if j < 3 else ("1", str(10 * (1 + (j - 3) // 3)))
            lam = 0 if j < 3 else 200 * float(inten)
            img = (100 + rng.poisson(lam, (16, 16)) + rng.normal(0, 2, (16, 16))).astype(np.uint16)
            tag = {
                "Camera": "Cam", "Exposure-ms": 20.0, "BitDepth": 14, "ROI": "8-4-16-16",
                "ScopeData": {"Core-Camera": "Cam", "Core-Shutter": "Shutter",
                              "Core-AutoShutter": "0", "Shutter-State": state,
                              "Lamp-Intensity": inten, "Cam-CameraID": "SN123",
                              "Cam-Binning": "2", "Cam-CCDTemperature": "-5.0"},
            }  # fmt: skip
            tw.write(img, extratags=[(51123, "s", 0, json.dumps(tag), True)])
    ds = read_dataset(path)
    assert ds.format == "micromanager-tiff" and ds.bit_depth == 14
    rows = group_levels([ds])
    assert [r["kind"] for r in rows] == ["dark"] * 3 + ["light"] * 6
    assert [r["level"] for r in rows[3:]] == [0, 0, 0, 1, 1, 1]
    assert rows[4]["control"] == 10.0 and rows[4]["exposure_s"] == 0.02
    prof = calibrate_from_stacks([path])
    ident = prof.identity
    assert (ident.camera, ident.serial, ident.binning, ident.roi) == (
        "Cam",
        "SN123",
        2,
        (8, 4, 16, 16),
    )
    assert ident.temperature_c == -5.0 and ident.bit_depth == 14


def test_metadata_without_shutter_falls_back_or_errors(tmp_path) -> None:
    import tifffile

    rng = np.random.default_rng(1)
    stacks = []
    for name, lam in (("dark", 0), ("flat1", 300), ("flat2", 600)):
        x = 100 + rng.poisson(lam, (16, 16, 16)) + rng.normal(0, 2, (16, 16, 16))
        stacks.append(tmp_path / f"{name}.tif")
        tifffile.imwrite(stacks[-1], x.astype(np.uint16), photometric="minisblack")
    prof = calibrate_from_stacks(stacks)  # plain stacks: dark first, then levels, as before
    assert prof.plan["frame_table"] == "files"
    folder = tmp_path / "plain"
    folder.mkdir()
    tifffile.imwrite(folder / "x.tif", np.zeros((4, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputFileError, match="one stack without a CSV"):
        calibrate_from_stacks([folder])
    with pytest.raises(InputFileError, match="no such file"):
        read_dataset(tmp_path / "missing")


def test_ndtiff_without_ndstorage_is_one_clear_error(tmp_path, monkeypatch) -> None:
    d = tmp_path / "nd"
    d.mkdir()
    (d / "NDTiff.index").write_bytes(b"")
    dataset_formats._ndtiff_open.cache_clear()
    monkeypatch.setitem(sys.modules, "ndstorage", None)
    with pytest.raises(InputFileError, match=r"rawsigma\[mm\]"):
        read_dataset(d)


def test_cli_from_micromanager_dataset(mda_tiff, tmp_path) -> None:
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    folder, run_profile = mda_tiff
    out = tmp_path / "p.h5"
    r = CliRunner().invoke(app, ["calibrate", "--from-stacks", str(folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Reading index" not in r.output
    from rawsigma.calib.profile import CameraProfile

    _same(CameraProfile.load(out), run_profile)


def _fake(name: str, frames: list[tuple[float, dict]]) -> RecordedDataset:
    infos = [FrameInfo(e, {"Core-Camera": "Cam", "Cam-Seed": str(j), **p}) for j, (e, p) in
             enumerate(frames)]  # fmt: skip
    return RecordedDataset(Path(name), "folder", (4, 4), np.dtype(np.uint16), infos)


def test_group_levels_rules() -> None:
    on = {"Core-Shutter": "Shutter", "Core-AutoShutter": "1"}
    # exposure-controlled sweep, darks at every exposure, one dark by a deselected
    # shutter; per-frame camera properties (a seed) never define levels
    frames = [(10.0, {**on, "Lamp-Level": "5"})] * 2 + [(20.0, {**on, "Lamp-Level": "5"})] * 2
    frames += [(10.0, {"Core-Shutter": "", "Core-AutoShutter": "1", "Lamp-Level": "5"})] * 2
    frames += [(20.0, {"Core-Shutter": "Shutter", "Core-AutoShutter": "0",
                       "Shutter-State": "0", "Lamp-Level": "5"})] * 2  # fmt: skip
    rows = group_levels([_fake("a", frames)])
    assert [(r["kind"], r["level"]) for r in rows] == [
        ("light", 0), ("light", 0), ("light", 1), ("light", 1),
        ("dark", 0), ("dark", 0), ("dark", 1), ("dark", 1),
    ]  # fmt: skip
    # light-controlled: levels ascending by the varying property, control 0 = dark,
    # numbering spans datasets; darks pooled (one exposure for all levels)
    a = _fake("a", [(5.0, {**on, "LED-Intensity": v}) for v in ("40", "0", "40")])
    b = _fake("b", [(5.0, {**on, "LED-Intensity": v}) for v in ("10", "10", "0")])
    rows = group_levels([a, b])
    assert [(r["file"], r["kind"], r["level"]) for r in rows] == [
        ("a", "light", 1), ("a", "dark", -1), ("a", "light", 1),
        ("b", "light", 0), ("b", "light", 0), ("b", "dark", -1),
    ]  # fmt: skip
    assert rows[0]["control"] == 40.0 and rows[0]["exposure_s"] == 0.005
    # darks at three exposures, light at one: one dark group per exposure
    c = _fake("c", [(e, {**on, "LED-Intensity": "0" if e != 5.0 else "9"})
                    for e in (100.0, 10.0, 5.0, 5.0, 1000.0, 10.0)])  # fmt: skip
    assert [(r["kind"], r["level"]) for r in group_levels([c])] == [
        ("dark", -2), ("dark", -1), ("light", 0), ("light", 0), ("dark", -3), ("dark", -1)
    ]  # fmt: skip
    # no shutter recorded anywhere: the metadata cannot tell
    assert group_levels([_fake("c", [(5.0, {"LED-Intensity": "1"})] * 2)]) is None


def test_dark_current_from_a_recorded_dataset(tmp_path) -> None:
    # the sweep plus dark sequences at 1 s and 3 s, recorded by pymmcore-plus: the dark
    # groups by exposure give the per-pixel dark current (ADU/s), no CSV needed
    from rawsigma.acquire.devices import sim_device

    core = open_core(properties={"Camera.SensorWidth": 48, "Camera.SensorHeight": 32})
    plan = PLAN.model_copy(update={"dark_frames": 30, "frames_per_level": 30})
    seqs = sweep_sequences(core, plan)
    for exp in (1000.0, 3000.0):
        props = [("Core", "AutoShutter", "0"), ("LED", "State", 0)]
        seqs.append(
            useq.MDASequence(
                time_plan={"interval": 0, "loops": 30},
                setup=useq.MDAEvent(exposure=exp, properties=props),
            )
        )
    for k, s in enumerate(seqs):
        core.mda.run(s, output=str(tmp_path / f"{k:03d}.ome.tiff"))
    prof = calibrate_from_stacks([tmp_path])
    m = sim_device(core, "Camera").active_model
    truth = m.dark_current * m.gain  # e-/s -> ADU/s
    assert prof.dark_current is not None
    assert abs(np.median(prof.dark_current) / np.median(truth) - 1) < 0.1
