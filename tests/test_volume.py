"""3D volumes: measurements against analytic truth, the volume reader, agreement, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.measurement.agreement import instance_agreement, point_agreement
from rawsigma.analysis.measurement.morphometry3d import measure3d
from rawsigma.errors import InputFileError, UsageError
from rawsigma.volread import parse_spacing, read_volume

SPACING = (2.0, 0.5, 0.5)


def _ellipsoid_ball(radius: float, spacing, centre=None, shape=None) -> np.ndarray:
    """Voxelised ball of physical ``radius`` on anisotropic voxels (voxel centres inside)."""
    shape = shape or tuple(int(2 * radius / s) + 6 for s in spacing)
    centre = (
        centre if centre is not None else [n * s / 2 for n, s in zip(shape, spacing, strict=True)]
    )
    g = np.ogrid[tuple(slice(0, n) for n in shape)]
    rr = sum(((gi + 0.5) * s - c) ** 2 for gi, s, c in zip(g, spacing, centre, strict=True))
    return rr <= radius**2


# measured marching-cubes area / 4πr² on voxelised balls (documented in morphometry3d)
@pytest.mark.parametrize(
    ("spacing", "radius", "area_bias"),
    [((1.0, 1.0, 1.0), 6.0, (1.05, 1.11)), ((1.0, 1.0, 1.0), 10.0, (1.05, 1.11)),
     ((1.0, 0.5, 0.5), 6.0, (1.10, 1.16)), (SPACING, 6.0, (1.16, 1.23)),
     (SPACING, 10.0, (1.16, 1.23))],
)  # fmt: skip
def test_anisotropic_ball_against_analytic_truth(spacing, radius, area_bias):
    ball = _ellipsoid_ball(radius, spacing)
    m = measure3d(ball, spacing=spacing)
    v_true, a_true = 4 / 3 * math.pi * radius**3, 4 * math.pi * radius**2
    # voxel count x voxel volume: within 2 % of the ball (r >= 3 voxels along z)
    assert m["volume"][0] == pytest.approx(v_true, rel=0.02)
    # marching-cubes area: the staircase reads above the sphere, more on coarse z
    assert area_bias[0] < m["surface_area"][0] / a_true < area_bias[1]
    assert m["equiv_diameter"][0] == pytest.approx(2 * radius, rel=0.01)
    psi = m["sphericity"][0]
    assert psi == pytest.approx(
        (m["volume"][0] / v_true) ** (2 / 3) * a_true / m["surface_area"][0]
    )
    assert 0.8 < psi < 0.96
    c = [n * s / 2 for n, s in zip(ball.shape, spacing, strict=True)]
    assert (m["z"][0], m["y"][0], m["x"][0]) == pytest.approx(c, abs=1e-9)


def test_sphericity_of_a_flat_box_is_low():
    box = np.zeros((6, 40, 40), bool)
    box[2:4, 5:35, 5:35] = True
    m = measure3d(box, spacing=(1.0, 1.0, 1.0))
    v, a = 2 * 30 * 30, 2 * (30 * 30) + 4 * (2 * 30)
    assert m["volume"][0] == v
    assert m["sphericity"][0] < 0.5
    assert m["sphericity"][0] == pytest.approx(
        math.pi ** (1 / 3) * (6 * v) ** (2 / 3) / m["surface_area"][0]
    )
    assert m["surface_area"][0] == pytest.approx(a, rel=0.1)


def test_instance_agreement_counts():
    ref = np.zeros((4, 20, 20), np.int32)
    ref[:, 2:8, 2:8], ref[:, 12:18, 12:18], ref[:, 2:6, 14:18] = 1, 2, 3
    seg = np.zeros_like(ref)
    seg[:, 2:8, 2:7] = 5  # IoU 5/6 with object 1
    seg[:, 12:18, 12:14] = 6  # IoU 1/3 with object 2: not a match
    seg[:, 0:1, 0:1] = 7  # a false positive
    a = instance_agreement(seg, ref)
    assert (a["tp"], a["fp"], a["fn"]) == (1, 2, 2)
    assert a["f1"] == pytest.approx(2 / 6)
    assert a["mean_iou_matched"] == pytest.approx(5 / 6)
    p = point_agreement(seg, np.array([[1, 3, 3], [1, 13, 13], [1, 10, 10], [9, 0, 0]]))
    assert (p["points_in_object"], p["objects_with_point"], p["n_points"]) == (2, 2, 4)


# ----------------------------------------------------------------------------- reader
def test_parse_spacing_refuses_zero_nan_negative():
    assert parse_spacing("2,0.5,0.5") == (2.0, 0.5, 0.5)
    for bad in ("1,0,1", "1,nan,1", "-1,1,1", "1,1", "a,b,c"):
        with pytest.raises(UsageError):
            parse_spacing(bad)
    # sizes whose voxel volume overflows (seen: 1e308 ran) or that are metres, not µm
    for bad in ("1e308,1e308,1e308", "2e-6,6.5e-7,6.5e-7", "1,1,1e7"):
        with pytest.raises(UsageError, match="must lie in"):
            parse_spacing(bad)
    assert parse_spacing("0.001,1e6,1") == (0.001, 1e6, 1.0)


def test_read_volume_formats_and_metadata(tmp_path):
    vol = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8)
    tifffile.imwrite(tmp_path / "v.ome.tif", vol, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 0.5,
                               "PhysicalSizeX": 0.25})  # fmt: skip
    v, info = read_volume(tmp_path / "v.ome.tif")
    assert np.array_equal(v, vol) and info.spacing == (2.0, 0.5, 0.25)
    assert info.spacing_source == "OME PhysicalSize"
    v, info = read_volume(tmp_path / "v.ome.tif", spacing="3,1,1")
    assert info.spacing == (3.0, 1.0, 1.0) and info.spacing_source == "--spacing"
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["data"] = vol[None]
        f["data"].attrs["axes"] = "CZYX"
        f["data"].attrs["element_size_um"] = [1.0, 2.0, 0.5, 0.5]
    v, info = read_volume(tmp_path / "v.h5")
    assert v.shape == vol.shape and info.spacing == (2.0, 0.5, 0.5)
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(tmp_path / "v.zarr"), mode="w")
    g.create_array("0", data=vol, chunks=(2, 6, 8))
    g.attrs["multiscales"] = [{
        "axes": [{"name": a, "type": "space"} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.5, 0.4, 0.4]}]}],
    }]  # fmt: skip
    v, info = read_volume(tmp_path / "v.zarr")
    assert np.array_equal(v, vol) and info.spacing == (1.5, 0.4, 0.4)
    assert info.format == "ome-zarr"
    np.save(tmp_path / "v.npy", vol)
    v, info = read_volume(tmp_path / "v.npy")
    assert info.spacing is None and info.spacing_source == "none"


def test_read_volume_refuses_wrong_axes(tmp_path):
    vol = np.zeros((6, 8, 4), np.uint16)
    # axes declared in a JSON description (as the shared data) and in an HDF5 attribute
    tifffile.imwrite(tmp_path / "yxz.tif", vol, photometric="minisblack",
                     description=json.dumps({"axes": "YXZ"}))  # fmt: skip
    import h5py

    with h5py.File(tmp_path / "yxz.h5", "w") as f:
        f["v"] = vol
        f["v"].attrs["axes"] = "YXZ"
    for name in ("yxz.tif", "yxz.h5"):
        with pytest.raises(InputFileError, match="must be ordered Z, Y, X"):
            read_volume(tmp_path / name)
    with pytest.raises(UsageError, match="2 letters but the array has 3"):
        read_volume(tmp_path / "yxz.tif", axes="YX")
    with pytest.raises(InputFileError, match="besides Z, Y, X"):
        np.save(tmp_path / "t.npy", np.zeros((2, 3, 4, 5), np.uint16))
        read_volume(tmp_path / "t.npy", axes="TZYX")


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def vfiles(tmp_path_factory):
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.calib.profile import CameraProfile

    d = tmp_path_factory.mktemp("volume")
    shape, sp = (10, 40, 40), (1.0, 0.5, 0.5)
    bright, truth = nuclei3d(shape, sp, n_objects=10, touching_pairs=1, rng=3, n_beads=0)
    rng = np.random.default_rng(0)
    gain, offset, read = 2.0, 100.0, 2.0
    e = rng.poisson(30 + 600 * bright)
    vol = np.clip(np.rint(offset + gain * e + rng.normal(0, read, shape)), 0, 65535)
    tifffile.imwrite(d / "vol.tif", vol.astype(np.uint16))
    tifffile.imwrite(d / "truth.tif", truth.astype(np.uint16))
    tifffile.imwrite(d / "truth_small.tif", truth[:, :30].astype(np.uint16))
    tifffile.imwrite(d / "yxz.tif", np.moveaxis(vol, 0, -1).astype(np.uint16),
                     photometric="minisblack", description=json.dumps({"axes": "YXZ"}))  # fmt: skip
    CameraProfile.uniform((40, 40), gain, offset, read).save(d / "prof.h5")
    return d


def _run(*args):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, ["score", *map(str, args)])


def _base(d, out, *extra):
    return [d / "vol.tif", "--profile", d / "prof.h5", "--labels", d / "truth.tif",
            "--instances", "--replicas", "3", "--workers", "1", "--out", out, *extra]  # fmt: skip


@pytest.mark.slow
def test_cli_scores_a_volume_with_spacing(vfiles):
    out = vfiles / "out"
    r = _run(*_base(vfiles, out, "--spacing", "1,0.5,0.5", "--codecs", "replica,8bit"))
    assert r.exit_code == 0, r.output
    for f in ("report.html", "results.json", "objects.csv", "volumes.h5",
              "figures/slices.png", "figures/mips.png"):  # fmt: skip
        assert (out / f).exists(), f
    res = json.loads((out / "results.json").read_text())
    assert res["volume"]["spacing_zyx"] == [1.0, 0.5, 0.5]
    assert res["volume"]["spacing_source"] == "--spacing"
    assert res["n_objects_raw"] >= 5
    assert [c["spec"] for c in res["codecs"]] == ["replica", "8bit"]
    assert 0 <= res["reference"]["f1"] <= 1 and res["reference"]["n_reference"] == 10
    assert "sphericity" in res["codecs"][0]["objects"]
    import h5py

    with h5py.File(out / "volumes.h5") as f:
        assert f["labels/raw"].shape == (10, 40, 40)
        assert list(f.attrs["spacing_zyx"]) == [1.0, 0.5, 0.5]


@pytest.mark.slow
def test_cli_volume_without_spacing_states_the_default(vfiles):
    out = vfiles / "out_nosp"
    ref = ["--reference", vfiles / "truth.tif"]
    r = _run(*_base(vfiles, out, "--axes", "ZYX", "--codecs", "replica", *ref))
    assert r.exit_code == 0, r.output
    assert "isotropic 1 assumed" in " ".join(r.output.split())
    res = json.loads((out / "results.json").read_text())
    assert res["reference"]["n_reference"] == 10 and "note" not in res["reference"]
    assert res["volume"]["spacing_zyx"] == [1.0, 1.0, 1.0]
    assert "default" in res["volume"]["spacing_source"]
    assert "isotropic 1 assumed" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        (["--spacing", "1,0,0.5"], 2, "positive finite"),
        (["--spacing", "1,nan,0.5"], 2, "positive finite"),
        (["--spacing", "-1,0.5,0.5"], 2, "positive finite"),
        (["--axes", "ZY"], 2, "2 letters but the array has 3"),
    ],
)
def test_cli_volume_bad_options(vfiles, extra, code, text):
    r = _run(*_base(vfiles, vfiles / "bad", *extra))
    assert r.exit_code == code, r.output
    assert text in " ".join(r.output.split())
    assert not (vfiles / "bad").exists()


def test_cli_volume_bad_files(vfiles):
    r = _run(vfiles / "yxz.tif", "--profile", vfiles / "prof.h5", "--labels",
             vfiles / "truth.tif", "--instances", "--out", vfiles / "bad")  # fmt: skip
    assert r.exit_code == 1 and "must be ordered Z, Y, X" in " ".join(r.output.split())
    args = _base(vfiles, vfiles / "bad", "--spacing", "1,1,1")
    args[args.index(vfiles / "truth.tif")] = vfiles / "truth_small.tif"
    r = _run(*args)
    assert r.exit_code == 1, r.output
    assert "differs from the volume's (10, 40, 40)" in " ".join(r.output.split())
    assert not (vfiles / "bad").exists()


def test_blob_objects_finds_blobs_on_a_sloped_background():
    from rawsigma.analysis.segmentation.blobs import blob_objects
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:16, :64, :64]
    bg = 200 + 1.5 * x  # tissue brighter on one side
    img = rng.poisson(bg).astype(np.float64)
    for c in [(8, 16, 16), (8, 40, 50), (5, 50, 12)]:
        img += 400 * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / 8)
    mask = blob_objects(img.astype(np.uint16))
    lab, _ = ndi.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel())
    hits = [lab[c] for c in [(8, 16, 16), (8, 40, 50), (5, 50, 12)]]
    assert all(h > 0 for h in hits) and len(set(hits)) == 3
    assert all(sizes[h] > 50 for h in hits)
    others = np.delete(sizes, [0, *hits])
    assert others.size == 0 or others.max() < 10  # noise speckle only (--min-size drops it)


def test_points_csv_and_volume_detection(vfiles, tmp_path):
    from rawsigma.cli.score_volume_cmd import is_volume, read_points

    (tmp_path / "p.csv").write_text("type,x,y,z\n2,5,6,1\n2,7,8,3\n")
    assert read_points(tmp_path / "p.csv").tolist() == [[1, 6, 5], [3, 8, 7]]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError, match="columns z, y, x"):
        read_points(tmp_path / "bad.csv")
    assert is_volume(vfiles / "yxz.tif", None, None, None)  # declares a Z axis
    assert not is_volume(vfiles / "vol.tif", None, None, None)  # plain stack: 2-D path
    assert is_volume(vfiles / "vol.tif", None, "1,1,1", None)
    assert not is_volume(vfiles / "yxz.tif", 0, None, None)  # --index: one frame
