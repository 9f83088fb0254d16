"""QA session 12 (hnew): the README walked through as a new user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from rawsigma.cli.main import app
from typer.testing import CliRunner


def test_estimate_advice_after_score_index_names_the_frame(tmp_path):
    """`score STACK --index 1 --estimate-profile` advised `profile estimate STACK --out P.h5`,
    which estimates from every frame, not the one scored: the advice now has `--frame 1`."""
    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.cli.params import advise_estimate_warning

    rng = np.random.default_rng(1)
    light = np.broadcast_to(np.linspace(20, 400, 128), (128, 128))
    img = np.rint(100 + 2.0 * rng.poisson(light) + rng.normal(0, 2, light.shape))
    prof = estimate_profile(img.astype(np.uint16))
    advise_estimate_warning(prof, Path("fields.tif"), frame=1)
    w = prof.provenance["estimate"]["warning"]
    assert "`rawsigma profile estimate fields.tif --frame 1 --out P.h5`" in w
    # the command the advice gives runs, on that frame
    stack = np.stack([img, img[::-1], img[:, ::-1]]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "fields.tif", stack, photometric="minisblack")
    res = CliRunner().invoke(
        app,
        ["profile", "estimate", str(tmp_path / "fields.tif"), "--frame", "1", "--out",
         str(tmp_path / "P.h5")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
