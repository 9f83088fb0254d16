"""PixelClassifier: training, accuracy, save/load, plug-in models, bad input."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from rawsigma.analysis.segmentation.classifier import (
    PixelClassifier,
    VersionMismatchWarning,
    labels_from_output,
    load_model,
    segment_with,
    training_labels_from_instances,
)
from rawsigma.errors import ImageMismatchError, InputFileError, OutputExistsError
from scipy import ndimage as ndi
from skimage.draw import disk


def _phantom(seed=0, shape=(128, 128), n=14):
    """Blobs of known instance labels imaged with Poisson noise (uint16 ADU)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    k = 0
    while k < n:
        r = rng.integers(5, 9)
        c = rng.integers(r + 2, np.array(shape) - r - 2)
        rr, cc = disk(tuple(c), r, shape=shape)
        if (
            truth[rr, cc].any()
            or truth[max(rr.min() - 2, 0) : rr.max() + 3, max(cc.min() - 2, 0) : cc.max() + 3].any()
        ):
            continue
        k += 1
        truth[rr, cc] = k
    photons = np.where(truth > 0, 400.0, 100.0)
    photons = ndi.gaussian_filter(photons, 1.0)
    img = (rng.poisson(photons) * 2 + 100).astype(np.uint16)
    return img, truth


@pytest.fixture(scope="module")
def data():
    return _phantom(0), _phantom(1)


@pytest.fixture(scope="module")
def trained(data):
    (img, truth), _ = data
    clf = PixelClassifier("ilastik", n_estimators=30, random_state=0)
    clf.fit(img, training_labels_from_instances(truth))
    return clf


def test_training_labels_convention():
    truth = np.zeros((40, 40), np.int32)
    truth[5:15, 5:15] = 1
    truth[15:25, 5:15] = 2  # touching the first
    truth[30, 30] = 3  # vanishes under erosion: keeps its pixel
    ann = training_labels_from_instances(truth, erode=2, ring=(2, 4))
    assert set(np.unique(ann)) == {0, 1, 2}
    assert np.all(truth[ann == 2] > 0)
    assert np.all(truth[ann == 1] == 0)
    assert ann[30, 30] == 2
    assert ann[14, 10] == 0 and ann[15, 10] == 0  # the shared edge is not a core
    assert ann[8, 8] == 2
    d = ndi.distance_transform_edt(truth == 0)
    assert np.all((d[ann == 1] > 2) & (d[ann == 1] <= 4))
    with pytest.raises(InputFileError):
        training_labels_from_instances(np.zeros((5, 5), np.int32))


def test_accuracy_on_held_out_image(data, trained):
    _, (img2, truth2) = data
    pred = trained.predict(img2)
    acc = np.mean((pred == 2) == (truth2 > 0))
    assert acc > 0.97
    proba = trained.predict_proba(img2)
    assert proba.shape == img2.shape + (2,) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-5)
    lab = trained.segment(img2)
    assert lab.dtype == np.int32
    assert abs(lab.max() - truth2.max()) <= 2


def test_weka_preset_and_determinism(data):
    (img, truth), (img2, _) = data
    ann = training_labels_from_instances(truth)
    a = PixelClassifier("weka", n_estimators=10, random_state=3).fit(img, ann)
    b = PixelClassifier("weka", n_estimators=10, random_state=3, n_jobs=2).fit(img, ann)
    assert a.model_.max_features == 2 and a.model_.criterion == "entropy"
    assert len(a.feature_names_) == 70
    np.testing.assert_array_equal(a.predict_proba(img2), b.predict_proba(img2))
    assert PixelClassifier("weka").rf_params["n_estimators"] == 200
    assert PixelClassifier("ilastik").rf_params == {
        "n_estimators": 100,
        "max_features": "sqrt",
        "criterion": "gini",
    }


def test_save_load_roundtrip(tmp_path, data, trained):
    _, (img2, _) = data
    path = tmp_path / "clf.joblib"
    trained.save(path)
    with pytest.raises(OutputExistsError):
        trained.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = PixelClassifier.load(path)
    np.testing.assert_array_equal(clf.predict_proba(img2), trained.predict_proba(img2))
    assert clf.config()["features"] == trained.config()["features"]
    assert callable(load_model(path))


def test_version_mismatch_warns(tmp_path, trained):
    import joblib

    path = tmp_path / "clf.joblib"
    trained.save(path)
    payload = joblib.load(path)
    payload["versions"]["scikit-learn"] = "0.0.1"
    joblib.dump(payload, path)
    with pytest.warns(VersionMismatchWarning, match="scikit-learn 0.0.1"):
        PixelClassifier.load(path)


def test_bad_inputs(tmp_path, data):
    (img, truth), _ = data
    clf = PixelClassifier("ilastik", n_estimators=5)
    with pytest.raises(InputFileError, match="no annotated"):
        clf.fit(img, np.zeros(img.shape, np.uint8))
    one = np.zeros(img.shape, np.uint8)
    one[5:10, 5:10] = 2
    with pytest.raises(InputFileError, match="only class 2"):
        clf.fit(img, one)
    with pytest.raises(ImageMismatchError, match="shape"):
        clf.fit(img, np.zeros((10, 10), np.uint8))
    with pytest.raises(InputFileError, match="integer"):
        clf.fit(img, np.zeros(img.shape, np.float32))
    with pytest.raises(RuntimeError, match="not trained"):
        clf.predict(img)
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a classifier")
    with pytest.raises(InputFileError, match="bad.joblib"):
        PixelClassifier.load(bad)
    with pytest.raises(InputFileError, match="not found"):
        PixelClassifier.load(tmp_path / "missing.joblib")
    with pytest.raises(ValueError, match="preset"):
        PixelClassifier("cellpose")


def test_plugin_models(tmp_path):
    mod = tmp_path / "mymodel.py"
    mod.write_text(
        "import numpy as np\n"
        "def prob(image):\n    return (image > 10).astype(np.float32)\n"
        "def labels(image):\n    return (image > 10).astype(np.int32) * 5\n"
    )
    img = np.zeros((20, 20), np.uint16)
    img[2:5, 2:5] = 50
    img[10:15, 10:15] = 50
    for fn in ("prob", "labels"):
        model = load_model(f"{mod}:{fn}")
        lab = segment_with(model, img)
        assert lab.max() == (2 if fn == "prob" else 5)
    # class-probability stacks, masks and instance labels
    p = np.zeros((20, 20, 2), np.float32)
    p[2:5, 2:5, 1] = 0.9
    assert labels_from_output(p, (20, 20)).max() == 1
    assert labels_from_output(img > 10, (20, 20)).max() == 2
    with pytest.raises(ImageMismatchError):
        labels_from_output(np.zeros((5, 5)), (20, 20))
    with pytest.raises(InputFileError, match="no callable"):
        load_model(f"{mod}:missing")
    with pytest.raises(InputFileError, match="cannot import"):
        load_model("no_such_module_xyz:f")
    with pytest.raises(InputFileError):
        load_model("nonsense")


def test_plugin_module_in_the_current_folder_gets_a_hint(tmp_path, monkeypatch):
    """`--model mypackage.seg:predict` run beside mypackage/: the console script does not
    search the current folder; the error says how to make the module importable."""
    pkg = tmp_path / "mypkg_hint_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "seg.py").write_text("def predict(image):\n    return image > 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    with pytest.raises(InputFileError) as exc:
        load_model("mypkg_hint_xyz.seg:predict")
    msg = str(exc.value)
    assert "PYTHONPATH" in msg and f"{Path('mypkg_hint_xyz', 'seg.py')}:predict" in msg
    # the file form the hint gives works
    assert load_model(f"{Path('mypkg_hint_xyz', 'seg.py')}:predict")(np.ones(3)).all()


DATA = __import__("pathlib").Path(__file__).parents[1].parent / "shared" / "data"


@pytest.mark.skipif(
    not (DATA / "bbbc039_u2os_hoechst_3fields.tif").exists(), reason="shared data absent"
)
def test_real_nuclei_bbbc039():
    import tifffile

    img = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields.tif")
    truth = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields_labels.tif")
    tr = (1, slice(0, 260), slice(0, 348))
    te = (2, slice(260, 520), slice(348, 696))
    clf = PixelClassifier("weka", n_estimators=25, n_jobs=2, max_samples_per_class=10_000)
    clf.fit(img[tr], training_labels_from_instances(truth[tr]))
    pred = clf.predict(img[te])
    assert np.mean((pred == 2) == (truth[te] > 0)) > 0.97


def test_3d_volume_segmentation():
    rng = np.random.default_rng(5)
    z, y, x = np.ogrid[:24, :32, :32]
    truth = np.zeros((24, 32, 32), np.int32)
    for k, (cz, cy, cx) in enumerate([(8, 8, 8), (15, 22, 20), (6, 24, 6)], start=1):
        truth[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 16] = k
    img = rng.poisson(np.where(truth > 0, 300.0, 80.0)).astype(np.uint16)
    clf = PixelClassifier("ilastik", features={"preset": "ilastik", "sigmas": [1.0, 2.0]})
    clf.n_jobs = 2
    clf.rf_params["n_estimators"] = 20
    clf.fit(img, training_labels_from_instances(truth))
    assert len(clf.feature_names_) == 1 * 2 + 2 * (1 + 1 + 1 + 3 + 3)
    lab = clf.segment(img)
    assert lab.max() == 3
    assert np.mean((lab > 0) == (truth > 0)) > 0.97
