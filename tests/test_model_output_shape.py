"""A plug-in model must return a segmentation of the image's shape: one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.scoring.inputs import load_model
from rawsigma.cli.main import main
from rawsigma.errors import ImageMismatchError


def test_a_threshold_function_is_not_a_model():
    model = load_model("skimage.filters:threshold_otsu")  # returns a number
    img = np.random.default_rng(0).integers(100, 200, (32, 40), dtype=np.uint16)
    with pytest.raises(ImageMismatchError, match=r"returned shape \(\) for an image of shape"):
        model(img)
    ok = load_model("numpy:zeros_like")  # a mask of the image's shape is accepted
    assert ok(img).shape == img.shape


def test_score_names_the_model_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(1)
    img = rng.poisson(200, (64, 64)).astype(np.uint16) + 100
    tifffile.imwrite(tmp_path / "img.tif", img)
    with pytest.raises(SystemExit) as ex:
        main(["score", str(tmp_path / "img.tif"), "--estimate-profile", "--model",
              "skimage.filters:threshold_otsu", "--codecs", "replica", "--replicas", "2",
              "--out", str(tmp_path / "r")])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert ex.value.code == 1
    assert len(err) == 1 and "model skimage.filters:threshold_otsu: returned shape ()" in err[0]
    assert not (tmp_path / "r").exists()
