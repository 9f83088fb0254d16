"""Saved sweep frames: one OME series (T, Y, X) with per-plane metadata, re-calibratable."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.acquire.core import open_core
from rawsigma.acquire.plans import SweepPlan
from rawsigma.acquire.sweep import SweepRunner

SMALL = {"Camera.SensorWidth": 48, "Camera.SensorHeight": 32}


def test_saved_sweep_is_one_ome_series_with_its_metadata(tmp_path) -> None:
    import csv

    import tifffile
    from ome_types import from_xml
    from rawsigma.calib.stacks import calibrate_from_stacks

    plan = SweepPlan(
        dark_frames=20, n_levels=4, frames_per_level=20, seed=3, saturation_levels=0,
        save_frames="ome-tiff",
    )  # fmt: skip
    frames = tmp_path / "sweep.ome.tif"
    runner = SweepRunner(open_core(properties=SMALL), plan, frames_path=frames)
    prof = runner.run()
    with open(tmp_path / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    assert n == 100
    with tifffile.TiffFile(frames) as tf:
        assert len(tf.series) == 1 and tf.is_ome
        s = tf.series[0]
        assert s.shape == (n, 32, 48) and s.axes == "TYX"
        xml = tf.ome_metadata
        data = s.asarray()
    assert data.dtype == np.uint16 and data[:20].mean() < data[-20:].mean()  # darks first
    try:
        import xmlschema  # noqa: F401

        validate = True  # against the OME XSD (ome-types uses xmlschema or lxml)
    except ImportError:
        validate = None
    ome = from_xml(xml, validate=validate)
    px = ome.images[0].pixels
    assert (px.size_t, px.size_y, px.size_x, px.significant_bits) == (n, 32, 48, 16)
    assert px.physical_size_x == pytest.approx(6.5)  # the simulated rig's pixel size
    det = ome.instruments[0].detectors[0]
    assert det.model and det.model == prof.identity.model
    anns = {a.id: a for a in ome.structured_annotations.map_annotations}
    times = [p.delta_t for p in px.planes]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False)) and times[-1] > 0
    for row, plane in zip(rows, px.planes, strict=True):
        assert plane.exposure_time == pytest.approx(float(row["exposure_ms"]))
        kv = {m.k: m.value for m in anns[plane.annotation_refs[0].id].value.ms}
        assert kv["kind"] == row["kind"] and kv["level_index"] == row["level_index"]
        if row["control"] != "nan":
            assert float(kv["control"]) == pytest.approx(float(row["control"]))
    # the light-source settings rise with the level
    ctl = [float(r["control"]) for r in rows if r["kind"] == "bright"]
    assert ctl == sorted(ctl) and ctl[-1] > ctl[0]
    again = calibrate_from_stacks(frames, tmp_path / "sweep.csv")
    np.testing.assert_allclose(again.gain, prof.gain, rtol=1e-4)


def test_hdf5_write_failure_is_an_os_error(tmp_path) -> None:
    """h5py's RuntimeError on a failed write (e.g. a full disk) reaches the runners as
    an OSError, so they abandon the frame file instead of closing it."""
    import errno

    import numpy as np
    import pytest
    from rawsigma.acquire.framesave import FrameWriter

    class FailingDataset:
        def resize(self, *args, **kwargs) -> None:
            raise RuntimeError("Can't write data (file write failed: No space left on device)")

    writer = FrameWriter(tmp_path / "frames.h5", (4, 4), 12)
    writer._ds = FailingDataset()
    with pytest.raises(OSError) as info:
        writer.write(np.zeros((4, 4), np.uint16), "dark", -1)
    assert info.value.errno == errno.ENOSPC
    writer.abort()
    assert not (tmp_path / "frames.h5").exists()
