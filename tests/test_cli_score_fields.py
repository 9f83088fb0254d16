"""``rawsigma score FOLDER`` / ``--all-fields``: one report per field and a summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from rawsigma.cli.main import app
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d

    d = tmp_path_factory.mktemp("plate")
    (d / "images").mkdir()
    (d / "labels").mkdir()
    model = SensorModel.preset("scmos", (96, 96), seed=2)
    stack, truths = [], []
    for i in range(2):
        bright, truth = nuclei2d((96, 96), n_objects=6, rng=10 + i, n_beads=0)
        img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(i))
        tifffile.imwrite(d / "images" / f"well{i}.tif", img)
        tifffile.imwrite(d / "labels" / f"well{i}_labels.tif", truth.astype(np.uint16))
        stack.append(img)
        truths.append(truth.astype(np.uint16))
    # a field whose labels do not fit: it must fail BY NAME, the others stay written
    tifffile.imwrite(d / "images" / "wellbad.tif", stack[0])
    tifffile.imwrite(d / "labels" / "wellbad.tif", truths[0][:40])
    tifffile.imwrite(d / "stack.tif", np.stack(stack))
    tifffile.imwrite(d / "stack_labels.tif", np.stack(truths))
    model.true_profile().save(d / "prof.h5")
    return d


def _run(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


COMMON = ["--instances", "--codecs", "8bit", "--replicas", "2", "--workers", "1"]


@pytest.mark.slow
def test_folder_reports_summary_and_named_failure(plate):
    out = plate / "out"
    r = _run(plate / "images", "-p", plate / "prof.h5", "--labels", plate / "labels",
             *COMMON, "-o", out)  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "wellbad: FAILED" in r.output and "label image shape" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_fields"] == 3 and summary["n_scored"] == 2
    assert list(summary["failed"]) == ["wellbad"]
    names = [f["name"] for f in summary["fields"]]
    assert names == ["well0", "well1"]
    for f in summary["fields"]:
        assert (out / f["report"]).exists()
        assert f["n_objects"] >= 4 and f["codecs"][0]["spec"] == "8bit"
        res = json.loads((out / "fields" / f["name"] / "results.json").read_text())
        assert f["codecs"][0]["within_noise"] == res["codecs"][0]["verdict"]["within_noise"]
    html = (out / "summary.html").read_text()
    assert "well0" in html and "failed:" in html
    assert not (out / "fields" / "wellbad").exists()
    # a re-run keeps the fields already written and retries only the failed one
    before = (out / "fields" / "well0" / "results.json").stat().st_mtime_ns
    r = _run(plate / "images", "-p", plate / "prof.h5", "--labels", plate / "labels",
             *COMMON, "-o", out)  # fmt: skip
    assert "well0: kept from an earlier run" in r.output
    assert (out / "fields" / "well0" / "results.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_multipage_all_fields_equals_single_field_runs(plate):
    out = plate / "multi"
    r = _run(plate / "stack.tif", "-p", plate / "prof.h5", "--labels", plate / "stack_labels.tif",
             "--all-fields", *COMMON, "-o", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [f["index"] for f in summary["fields"]] == [0, 1]
    one = plate / "one"
    r = _run(plate / "stack.tif", "-p", plate / "prof.h5", "--labels", plate / "stack_labels.tif",
             "--index", "1", *COMMON, "-o", one)  # fmt: skip
    assert r.exit_code == 0, r.output
    a = json.loads((out / "fields" / "stack_f001" / "results.json").read_text())
    b = json.loads((one / "results.json").read_text())
    assert a["codecs"][0]["globals"] == b["codecs"][0]["globals"]
    assert a["raw_globals"] == b["raw_globals"]


def test_fields_bad_inputs(plate):
    r = _run(plate / "stack.tif", "-p", plate / "prof.h5", "--labels", plate / "labels" /
             "well0_labels.tif", "--all-fields", *COMMON, "-o", plate / "x")  # fmt: skip
    assert r.exit_code == 1 and "1 label frames for the 2 fields" in r.output
    r = _run(plate / "images", "-p", plate / "prof.h5", "--labels", plate / "labels",
             "--index", "0", *COMMON, "-o", plate / "y")  # fmt: skip
    assert r.exit_code == 2 and "--index" in r.output


def test_labels_in_the_image_folder_are_not_the_images(tmp_path):
    """``score plate/ --labels plate/`` (QA session 7): f1.tif was its own label file."""
    from rawsigma.cli.score_many import list_fields
    from rawsigma.errors import InputFileError

    img = np.arange(64, dtype=np.uint16).reshape(8, 8)
    for name in ("f1.tif", "f1_labels.tif", "f2.tif", "f2_labels.tif"):
        tifffile.imwrite(tmp_path / name, img)
    fields = list_fields(tmp_path, tmp_path)
    assert [(f.name, f.image.name, f.labels.name) for f in fields] == [
        ("f1", "f1.tif", "f1_labels.tif"),
        ("f2", "f2.tif", "f2_labels.tif"),
    ]
    imgs, labs = tmp_path / "imgs", tmp_path / "labs"
    imgs.mkdir()
    labs.mkdir()
    tifffile.imwrite(imgs / "a.tif", img)
    tifffile.imwrite(labs / "a.tif", img)
    tifffile.imwrite(labs / "a_labels.tif", img)
    with pytest.raises(InputFileError, match="more than one label file fits"):
        list_fields(imgs, labs)


def test_another_run_into_the_same_out_is_refused(plate):
    """A many-field run into an OUT holding another run's results (other images, labels
    or options) replaced its summary (exit 0) and mixed their fields: now refused
    without --force, the earlier results untouched; the same command still resumes."""
    out = plate / "other_run"
    args = [plate / "stack.tif", "-p", plate / "prof.h5", "--labels", plate / "stack_labels.tif"]
    r = _run(*args, "--all-fields", *COMMON, "-o", out)
    assert r.exit_code == 0, r.output
    before = (out / "summary.json").read_bytes()
    r = _run(plate / "images", "-p", plate / "prof.h5", "--labels", plate / "labels",
             *COMMON, "-o", out)  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "another run" in r.output and "--force" in r.output
    assert (out / "summary.json").read_bytes() == before
    assert sorted(p.name for p in (out / "fields").iterdir()) == ["stack_f000", "stack_f001"]
    other = ["--instances", "--codecs", "zstd", *COMMON[3:]]
    r = _run(*args, "--all-fields", *other, "-o", out)
    assert r.exit_code == 1 and "codecs" in r.output, r.output
    r = _run(*args, "--all-fields", *COMMON, "-o", out)  # the same command: kept
    assert r.exit_code == 0 and "kept from an earlier run" in r.output, r.output
