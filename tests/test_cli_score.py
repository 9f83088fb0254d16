"""``rawsigma score`` on small TIFF files: outputs, --force, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.cli.main import app
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d

    d = tmp_path_factory.mktemp("score")
    model = SensorModel.preset("scmos", (128, 128), seed=2)
    bright, truth = nuclei2d((128, 128), n_objects=8, rng=1, n_beads=0)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(0))
    tifffile.imwrite(d / "img.tif", img)
    tifffile.imwrite(d / "truth.tif", truth.astype(np.uint16))
    tifffile.imwrite(d / "img8.tif", (img // 256).astype(np.uint8))
    tifffile.imwrite(d / "imgf.tif", img.astype(np.float32))
    tifffile.imwrite(d / "small_labels.tif", truth[:50].astype(np.uint16))
    tifffile.imwrite(d / "empty.tif", np.zeros_like(truth, np.uint16))
    model.true_profile().save(d / "prof.h5")
    model.crop((0, 0, 64, 64)).true_profile().save(d / "prof64.h5")
    return d


def _run(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


def test_score_writes_report_and_refuses_overwrite(files):
    out = files / "out"
    args = [files / "img.tif", "--profile", files / "prof.h5", "--labels", files / "truth.tif",
            "--instances", "--codecs", "replica", "--replicas", "3", "--out", out]  # fmt: skip
    r = _run(*args)
    assert r.exit_code == 0, r.output
    assert "report:" in r.output
    read = " ".join(r.output.split())
    assert f"read {files / 'img.tif'}:" in read and f"read {files / 'truth.tif'}:" in read
    import json

    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["image_read"]["path"] == str(files / "img.tif")
    assert prov["labels_file"] == str(files / "truth.tif")
    for f in ("report.html", "results.json", "objects.csv", "maps.h5"):
        assert (out / f).exists()
    assert not (out / ".report.tmp").exists()
    from rawsigma.analysis.scoring.score_maps import read_score_maps

    m = read_score_maps(out)
    assert np.array_equal(m["image"], tifffile.imread(files / "img.tif"))
    assert [c["spec"] for c in m["codecs"]] == ["replica"]
    # the raw segmentation against the --instances labels, in results.json and printed
    from rawsigma.analysis.measurement.agreement import instance_agreement

    agree = json.loads((out / "results.json").read_text())["objects_info"]["reference_agreement"]
    truth = tifffile.imread(files / "truth.tif")
    expected = instance_agreement(m["raw_labels"], truth)
    assert agree["f1"] == pytest.approx(expected["f1"]) and agree["n_reference"] == 8
    assert agree["f1"] > 0.8 and not agree["poor"]
    assert f"F1 {agree['f1']:.2f} against the instance labels" in read
    eps = m["codecs"][0]["pixel_eps"]
    assert eps.shape == (128, 128) and eps.dtype == np.float16
    # a replica centred on the observed image differs from it by ~1 σ per pixel
    assert 0.8 < float(np.nanstd(eps.astype(np.float32))) < 1.25
    r = _run(*args)
    assert r.exit_code == 1 and "--force" in r.output
    assert _run(*args, "--force").exit_code == 0


def test_score_estimated_profile(files):
    est = files / "est"
    r = _run(files / "img.tif", "--estimate-profile", "--labels", files / "truth.tif",
             "--instances", "--codecs", "replica", "--replicas", "2", "--out", est)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "estimated" in (files / "est" / "report.html").read_text()
    assert "objects (min size" in r.output  # the minimum size and its rule are printed


@pytest.mark.parametrize(
    ("image", "extra", "message"),
    [
        ("img8.tif", [], "8-bit"),
        ("imgf.tif", [], "floating-point"),
        ("img.tif", ["--labels", "small_labels.tif"], "shape"),
        ("img.tif", ["--labels", "empty.tif"], "empty annotations"),
        ("img.tif", ["--profile", "prof64.h5"], "img.tif"),
        ("missing.tif", [], "no such file"),
    ],
)
def test_score_bad_inputs(files, image, extra, message):
    base = {"--profile": files / "prof.h5", "--labels": files / "truth.tif"}
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        base[k] = files / v
    args = [files / image]
    for k, v in base.items():
        args += [k, v]
    r = _run(*args, "--codecs", "replica", "--replicas", "2", "--out", files / "bad")
    assert r.exit_code == 1, r.output
    assert message in r.output.replace("\n", " ")
    assert not (files / "bad" / "report.html").exists()


def test_score_needs_labels_or_model_and_profile(files):
    r = _run(files / "img.tif", "--profile", files / "prof.h5", "--out", files / "x")
    assert r.exit_code == 2 and "--labels or --model" in r.output
    r = _run(files / "img.tif", "--labels", files / "truth.tif", "--out", files / "x")
    assert r.exit_code == 2 and "--estimate-profile" in r.output


def test_score_with_plug_in_model_file(files):
    plugin = files / "thresh_plugin.py"
    plugin.write_text(
        "import numpy as np\n"
        "from scipy import ndimage as ndi\n"
        "def segment(image):\n"
        "    return ndi.gaussian_filter(image.astype(float), 1) > 400\n"
    )
    out = files / "plug"
    r = _run(files / "img.tif", "--profile", files / "prof.h5", "--model", f"{plugin}:segment",
             "--codecs", "replica", "--replicas", "3", "--out", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    data = json.loads((out / "results.json").read_text())
    assert data["n_objects_raw"] >= 6 and "plug-in" in data["provenance"]["segmenter"]
    r = _run(files / "img.tif", "--profile", files / "prof.h5", "--model", "nosuchmod:f",
             "--codecs", "replica", "--out", files / "plug2")  # fmt: skip
    assert r.exit_code == 1 and "nosuchmod" in r.output
