"""The napari plug-in: readers (plain functions, no napari needed) and, with napari
installed, the npe2 manifest, the reader through napari and the profile widget."""

from __future__ import annotations

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec import containers as C  # noqa: E402
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.napari import get_reader, read_layers, sniff  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("napari")
    frame, lam, cam = reference_frame((48, 64), seed=6)
    stack = np.stack([frame, frame])
    prof = cam.true_profile()
    prof.save(d / "cam.h5")
    codec = NoiseCodec(prof, step=2.0, maps="global")
    expected = codec.decode(codec.encode(stack))
    paths = {}
    exts = ["rsnc", "tif", "h5"] + (["zarr"] if _has("zarr") else [])
    for ext in exts:
        paths[ext] = C.write_compressed(d / f"x.{ext}", stack, codec)
    import tifffile

    tifffile.imwrite(d / "plain.tif", stack)
    return d, paths, expected, prof


def _has(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def test_readers_decode_every_container(files):
    d, paths, expected, prof = files
    for ext, p in paths.items():
        assert sniff(p) == "codec", ext
        ((data, kw, kind),) = get_reader(str(p))(str(p))
        assert kind == "image" and np.array_equal(data, expected), ext
        assert kw["metadata"]["rawsigma"]["lossy_derived"] is True
    assert sniff(d / "plain.tif") is None and get_reader(str(d / "plain.tif")) is None


def test_profile_reader_maps_with_units(files):
    d, _, _, prof = files
    layers = read_layers(d / "cam.h5")
    by_unit = {kw["name"].split(": ")[1]: (data, kw["metadata"]["unit"]) for data, kw, _ in layers}
    assert by_unit["gain [ADU/e-]"][1] == "ADU/e-"
    np.testing.assert_array_equal(by_unit["gain [ADU/e-]"][0], prof.gain)
    np.testing.assert_array_equal(by_unit["offset [ADU]"][0], prof.offset)
    assert by_unit["read noise [ADU]"][1] == "ADU"


def test_manifest_and_napari_viewer(files, qtbot):
    """Through napari's plug-in manager with a headless `ViewerModel` (napari's own
    viewer needs OpenGL, absent on the CI machines)."""
    pytest.importorskip("napari", reason="the napari extra is not installed")
    from importlib.resources import files as res

    import npe2
    from napari.components import ViewerModel
    from rawsigma.napari import ProfileWidget

    manifest = npe2.PluginManifest.from_file(res("rawsigma.napari") / "napari.yaml")
    assert manifest.name == "rawsigma"
    assert {c.id for c in manifest.contributions.commands} == {
        "rawsigma.get_reader",
        "rawsigma.profile_widget",
        "rawsigma.score_widget",
    }
    d, paths, expected, prof = files
    npe2.PluginManager.instance().discover()  # what napari does at start-up
    assert "rawsigma" in {m.name for m in npe2.PluginManager.instance().iter_manifests()}
    viewer = ViewerModel()
    for ext, p in paths.items():
        layers = viewer.open(str(p), plugin="rawsigma")
        assert np.array_equal(np.asarray(layers[0].data), expected), ext
    w = ProfileWidget(viewer)
    qtbot.addWidget(w)
    w.open_profile(str(d / "cam.h5"))
    names = [layer.name for layer in viewer.layers]
    assert "cam: gain [ADU/e-]" in names and w.canvas is not None
    assert viewer.layers["cam: gain [ADU/e-]"].metadata["unit"] == "ADU/e-"


# ----------------------------------------------------------------- score results
@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny scoring run (96² phantom, 3 replicas, few trees) written as a report."""
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.reporting.report import write_report
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.analysis.segmentation.annotations import training_labels

    model = SensorModel.preset("scmos", (96, 96), seed=3)
    bright, truth = nuclei2d((96, 96), n_objects=6, rng=5, n_beads=0)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(7))
    r = score_image(img, model.true_profile(), labels=training_labels(truth),
                    codecs=["replica", "8bit"], n_replicas=3, seed=1, min_size=5,
                    n_estimators=5)  # fmt: skip
    out = tmp_path_factory.mktemp("score") / "res"
    write_report(r, out)
    return r, out


def test_score_maps_file_round_trips(scored):
    from rawsigma.analysis.scoring.score_maps import read_score_maps

    r, out = scored
    m = read_score_maps(out / "maps.h5")
    assert np.array_equal(m["image"], r.image) and m["image"].dtype == r.image.dtype
    assert np.array_equal(m["raw_labels"], r.raw_labels)
    assert [c["spec"] for c in m["codecs"]] == [c.spec for c in r.codecs]
    for got, c in zip(m["codecs"], r.codecs, strict=True):
        assert np.array_equal(got["labels"], c.labels)
        assert got["within_noise"] == c.verdict["within_noise"]
        np.testing.assert_array_equal(got["pixel_eps"], c.pixel_eps.astype(np.float16))
        # float16: 3 significant digits of the runner's float32 map
        np.testing.assert_allclose(got["pixel_eps"], c.pixel_eps, rtol=1e-3, atol=1e-3)
        # the worst feature's ε map: its pixel mean |ε| is the runner's feature score
        ((name, fmap),) = got["feature_eps"].items()
        worst = max(c.features, key=lambda n: c.features[n]["mean_abs_epsilon"])
        assert name == worst and fmap.shape == r.image.shape
        np.testing.assert_array_equal(fmap, c.feature_eps[name].astype(np.float16))
        mae = np.nanmean(np.abs(c.feature_eps[name].astype(np.float64)))
        assert mae == pytest.approx(c.features[name]["mean_abs_epsilon"], rel=1e-4)
    # the stored maps give the per-pixel ε summary of results.json
    import json

    summary = json.loads((out / "results.json").read_text())["codecs"]
    for got, s in zip(m["codecs"], summary, strict=True):
        e = got["pixel_eps"].astype(np.float64)
        rms = np.sqrt(np.nanmean(e**2))
        assert rms == pytest.approx(s["pixel_epsilon"]["rms"], rel=2e-3)
    # a replica centred on the observed image differs from it by ~1 σ per pixel
    er = m["codecs"][0]["pixel_eps"].astype(np.float32)
    assert m["codecs"][0]["spec"] == "replica" and 0.8 < np.nanstd(er) < 1.25
    with pytest.raises(ValueError, match="not a rawsigma score-maps"):
        read_score_maps(_profile_file(out))


def _profile_file(out):
    from rawsigma.calib.profile import CameraProfile

    p = out.parent / "cam.h5"
    if not p.exists():
        CameraProfile.uniform((8, 8), 2.0, 100.0, 2.0).save(p)
    return p


def test_score_reader_layers(scored):
    r, out = scored
    assert sniff(out) == "score" and sniff(out / "maps.h5") == "score"
    assert sniff(out / "results.json") is None and sniff(_profile_file(out)) == "profile"
    for src in (out, out / "maps.h5"):
        layers = get_reader(str(src))(str(src))
        by_name = {kw["name"]: (data, kw, kind) for data, kw, kind in layers}
        data, kw, kind = by_name["raw image"]
        assert kind == "image" and np.array_equal(data, r.image)
        assert kw["metadata"]["unit"] == "ADU"
        assert by_name["raw labels"][2] == "labels"
        assert np.array_equal(by_name["raw labels"][0], r.raw_labels)
        for c in r.codecs:
            verdict = "within noise" if c.verdict["within_noise"] else "exceeds noise"
            ((fname, fmap),) = c.feature_eps.items()
            data, kw, kind = by_name[f"ε {c.spec} · {fname} ({verdict}, {c.ratio:.1f}:1)"]
            np.testing.assert_array_equal(data, fmap.astype(np.float16))
            assert kw["contrast_limits"] == (-3.0, 3.0) and fname in kw["metadata"]["meaning"]
            name = f"ε {c.spec} · pixel Δ/σ ({verdict}, {c.ratio:.1f}:1)"
            data, kw, kind = by_name[name]
            assert kind == "image" and data.shape == r.image.shape
            np.testing.assert_array_equal(data, c.pixel_eps.astype(np.float16))
            assert kw["contrast_limits"] == (-3.0, 3.0)
            assert kw["metadata"]["rawsigma"]["codec"] == c.spec
            assert "sigma_pixel" in kw["metadata"]["meaning"]
            lab, _, kind = by_name[f"labels {c.spec}"]
            assert kind == "labels" and np.array_equal(lab, c.labels)
        assert len(layers) == 2 + 3 * len(r.codecs)


def test_score_widget_in_viewer(scored, qtbot):
    pytest.importorskip("napari", reason="the napari extra is not installed")
    import npe2
    from napari.components import ViewerModel
    from qtpy.QtCore import Qt
    from rawsigma.napari import ScoreWidget

    r, out = scored
    npe2.PluginManager.instance().discover()  # what napari does at start-up
    viewer = ViewerModel()
    layers = viewer.open(str(out), plugin="rawsigma")
    assert "raw image" in [layer.name for layer in layers]
    eps = [layer for layer in layers if layer.name.startswith("ε 8bit · pixel")]
    assert len(eps) == 1 and tuple(eps[0].contrast_limits) == (-3.0, 3.0)
    assert eps[0].colormap.name.lower() == "piyg"

    viewer = ViewerModel()
    w = ScoreWidget(viewer)
    qtbot.addWidget(w)
    w.open_result(str(out))
    items = [w.listing.item(i) for i in range(w.listing.count())]
    res = {c.spec: c for c in r.codecs}
    assert [it.data(Qt.ItemDataRole.UserRole) for it in items] == list(res)
    for it in items:
        c = res[it.data(Qt.ItemDataRole.UserRole)]
        ok = c.verdict["within_noise"]
        assert it.text() == f"{c.spec}: {'within' if ok else 'exceeds'} noise, {c.ratio:.1f}:1"

    # the first codec shown, the others hidden; unchecking hides, checking shows
    def shown(spec):
        return {layer.visible for layer in viewer.layers
                if layer.metadata.get("rawsigma", {}).get("codec") == spec}  # fmt: skip

    assert shown("replica") == {True} and shown("8bit") == {False}
    items[0].setCheckState(Qt.CheckState.Unchecked)
    items[1].setCheckState(Qt.CheckState.Checked)
    assert shown("replica") == {False} and shown("8bit") == {True}


# ------------------------------------------------------------ 3D and tomography results
@pytest.fixture(scope="module")
def scored3d(tmp_path_factory):
    """A tiny volume scoring run (10×40×40 phantom, anisotropic voxels) as a report."""
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.analysis.reporting.report3d import write_volume_report
    from rawsigma.analysis.scoring.volume import score_volume
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.calib.profile import CameraProfile

    shape, sp = (10, 40, 40), (1.0, 0.5, 0.5)
    bright, truth = nuclei3d(shape, sp, n_objects=10, touching_pairs=1, rng=3, n_beads=0)
    rng = np.random.default_rng(0)
    vol = np.clip(np.rint(100 + 2 * rng.poisson(30 + 600 * bright) + rng.normal(0, 2, shape)),
                  0, 65535).astype(np.uint16)  # fmt: skip
    prof = CameraProfile.uniform(shape[1:], 2.0, 100.0, 2.0)
    r = score_volume(vol, prof, labels=training_labels(truth), spacing=sp,
                     codecs=["replica", "8bit", "jpeg@10"], n_replicas=3, n_estimators=10,
                     workers=1, seed=5)  # fmt: skip
    out = tmp_path_factory.mktemp("score3d") / "res"
    write_volume_report(r, out)
    return r, out


def _by_name(layers):
    return {kw["name"]: (data, kw, kind) for data, kw, kind in layers}


def test_volume_result_reader_layers(scored3d):
    """Raw volume, raw and per-version labels and the feature ε maps, with the spacing."""
    r, out = scored3d
    assert sniff(out) == "score" and sniff(out / "volumes.h5") == "score"
    assert sniff(out / "results.json") is None
    for src in (out, out / "volumes.h5"):
        layers = get_reader(str(src))(str(src))
        names = [kw["name"] for _, kw, _ in layers]
        assert names[:2] == ["raw volume", "raw labels"]
        by_name = _by_name(layers)
        data, kw, kind = by_name["raw volume"]
        assert kind == "image" and np.array_equal(data, r.image) and data.dtype == np.uint16
        assert kw["scale"] == (1.0, 0.5, 0.5) and kw["metadata"]["unit"] == "ADU"
        assert kw["metadata"]["spacing_unit"] == "µm"
        assert np.array_equal(by_name["raw labels"][0], r.raw_labels)
        for c in r.codecs:
            verdict = "within noise" if c.verdict["within_noise"] else "exceeds noise"
            lab, kw, kind = by_name[f"labels {c.spec}"]
            assert kind == "labels" and np.array_equal(lab, c.labels) and not kw["visible"]
            ((fname, fmap),) = c.feature_eps.items()
            data, kw, kind = by_name[f"ε {c.spec} · {fname} ({verdict}, {c.ratio:.1f}:1)"]
            np.testing.assert_array_equal(data, np.asarray(fmap, np.float32).astype(np.float16))
            assert kw["contrast_limits"] == (-3.0, 3.0) and kw["scale"] == (1.0, 0.5, 0.5)
            assert kw["metadata"]["rawsigma"]["codec"] == c.spec
        # results.json's order of the versions (HDF5 lists groups alphabetically)
        specs = [n.split(" ", 1)[1] for n in names if n.startswith("labels ")]
        assert specs == [c.spec for c in r.codecs] == ["replica", "8bit", "jpeg@10"]
        assert len(layers) == 2 + 2 * len(r.codecs)


def test_volume_result_without_results_json_or_format_tag(scored3d, tmp_path):
    """A bare ``volumes.h5`` (no results.json; written before the format tag) opens too,
    the ε layers then without a verdict; the isotropic default says "voxel"."""
    import shutil

    import h5py

    r, out = scored3d
    p = tmp_path / "volumes.h5"
    shutil.copy(out / "volumes.h5", p)
    with h5py.File(p, "a") as f:
        del f.attrs["format"]
    assert sniff(p) == "score"
    by_name = _by_name(read_layers(p))
    ((fname, _),) = r.codecs[1].feature_eps.items()
    assert f"ε 8bit · {fname}" in by_name
    assert by_name["raw volume"][1]["scale"] == (1.0, 0.5, 0.5)
    (tmp_path / "results.json").write_text('{"volume": {"spacing_source": "default (iso'
                                           'tropic 1: no spacing given or found)"}}')  # fmt: skip
    assert read_layers(p)[0][1]["metadata"]["spacing_unit"] == "voxel"
    # an HDF5 file of another layout is not a score result
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["raw"] = np.zeros((2, 3, 3))
    assert sniff(tmp_path / "other.h5") is None


def test_volume_result_large_volumes_stay_on_disk(scored3d, monkeypatch):
    da = pytest.importorskip("dask.array")
    from rawsigma.napari import volume_result

    r, out = scored3d
    monkeypatch.setattr(volume_result, "LAZY_BYTES", 0)
    layers = read_layers(out)
    assert all(isinstance(data, da.Array) for data, _, _ in layers)
    np.testing.assert_array_equal(np.asarray(layers[0][0]), r.image)
    np.testing.assert_array_equal(np.asarray(layers[1][0]), r.raw_labels)


def _tomo_maps(path):
    """``maps.h5`` of a tomography run written by `write_tomo_maps` (2 versions)."""
    from types import SimpleNamespace

    from rawsigma.analysis.reporting.tomo_report import write_tomo_maps

    rng = np.random.default_rng(2)
    vol = rng.normal(100, 5, (6, 16, 16)).astype(np.float32)
    lab = (vol > 108).astype(np.int32)
    versions = [
        SimpleNamespace(spec=s, description=s, ratio=q, verdict={"within_noise": ok},
                        labels=lab, pixel_eps=rng.normal(0, e, vol.shape).astype(np.float16))
        for s, q, ok, e in (("replica", 1.0, True, 1.0), ("jpeg@100", 12.0, False, 9.0))
    ]  # fmt: skip
    res = SimpleNamespace(volume=vol, raw_labels=lab, versions=versions, operators={},
                          provenance={"software": "rawsigma"})  # fmt: skip
    write_tomo_maps(res, path)
    return res


def test_tomo_result_reader_names_the_reconstruction(tmp_path):
    res = _tomo_maps(tmp_path / "maps.h5")
    assert sniff(tmp_path) == "score"
    by_name = _by_name(read_layers(tmp_path))
    data, kw, kind = by_name["raw reconstruction"]
    assert kind == "image" and np.array_equal(data, res.volume)
    assert kw["metadata"]["unit"] == "FBP of photo-electrons"
    data, kw, _ = by_name["ε jpeg@100 · voxel Δ/σ (exceeds noise, 12.0:1)"]
    np.testing.assert_array_equal(data, res.versions[1].pixel_eps)
    assert "raw image" not in by_name


def test_volume_result_in_viewer_and_widget(scored3d, qtbot):
    pytest.importorskip("napari", reason="the napari extra is not installed")
    import npe2
    from napari.components import ViewerModel
    from qtpy.QtCore import Qt
    from rawsigma.napari import ScoreWidget

    r, out = scored3d
    npe2.PluginManager.instance().discover()
    viewer = ViewerModel()
    layers = viewer.open(str(out), plugin="rawsigma")
    raw = viewer.layers["raw volume"]
    assert raw.ndim == 3 and tuple(raw.scale) == (1.0, 0.5, 0.5)
    assert len(layers) == 2 + 2 * len(r.codecs)
    viewer = ViewerModel()
    w = ScoreWidget(viewer)
    qtbot.addWidget(w)
    w.open_result(str(out))
    items = [w.listing.item(i) for i in range(w.listing.count())]
    assert [it.data(Qt.ItemDataRole.UserRole) for it in items] == [c.spec for c in r.codecs]
    c = r.codecs[2]
    ok = "within" if c.verdict["within_noise"] else "exceeds"
    assert items[2].text() == f"jpeg@10: {ok} noise, {c.ratio:.1f}:1"
    assert items[0].checkState() == Qt.CheckState.Checked
    eps = [layer for layer in viewer.layers if layer.name.startswith("ε jpeg@10 ·")]
    assert len(eps) == 1 and not eps[0].visible
    items[2].setCheckState(Qt.CheckState.Checked)
    assert eps[0].visible and viewer.layers["labels jpeg@10"].visible
