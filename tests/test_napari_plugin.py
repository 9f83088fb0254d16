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
