"""A given --offset that does not fit the image is warned about (one line, exit 0)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.noisemodel.estimate import estimate_profile
from rawsigma.analysis.noisemodel.offset_check import model_dark_sigma

BBBC050 = "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"
BBBC039 = "bbbc039_u2os_hoechst_3fields.tif"


@pytest.fixture(scope="module")
def cells():
    """Known camera: gain 2 ADU/e⁻, offset 100 ADU, read noise 2 ADU; a dark quarter."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:256, :256]
    light = 20 + 300 * np.exp(-(((yy % 64) - 32) ** 2 + ((xx % 64) - 32) ** 2) / 200.0)
    light[:, :64] = 0.0
    img = 100 + 2.0 * rng.poisson(light) + rng.normal(0, 2.0, light.shape)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


def _check(prof):
    return prof.provenance["estimate"]["offset_check"]


def test_model_dark_sigma_matches_the_read_noise_and_the_shot_noise():
    # no electrons at the offset: the read noise; many: √(gain · signal) and read noise
    assert model_dark_sigma(2.0, 100.0, 3.0, 100.0) == pytest.approx(3.0, rel=0.03)
    assert model_dark_sigma(2.0, 0.0, 2.0, 200.0) == pytest.approx(np.sqrt(400 + 4), rel=0.05)
    # a high gain's rare events sit on the right: the dark statistic stays the read noise
    # (the ring mean's own events add a little on the left: 2.3 for read noise 2)
    assert 2.0 < model_dark_sigma(25.0, 100.0, 2.0, 101.0) < 2.5


def test_true_offset_is_quiet_wrong_offsets_warn(cells):
    ok = _check(estimate_profile(cells, offset=100.0))
    assert ok["warning"] == "" and ok["ratio"] < 1.2 and ok["fraction_below_3sigma"] < 0.002
    assert 0.9 < ok["block_variance_ratio"] < 1.1
    # 40 ADU too low: the line refitted through (60, 0) has gain 0.12 for the true 2
    low = _check(estimate_profile(cells, offset=60.0))
    assert low["block_variance_ratio"] > 5 and "an offset too low" in low["warning"]
    # too high: the dark quarter's model noise is the line's value at 110 (5 ADU for 2)
    high = _check(estimate_profile(cells, offset=110.0))
    assert high["ratio"] > 2 and "they lie below the offset" in high["warning"]
    assert "given offset 110 ADU does not fit" in high["warning"]
    # no --offset: nothing to check
    assert _check(estimate_profile(cells)) == {}


def test_real_images_readme_example_is_quiet(shared_data):
    """BBBC050: the README's --offset 100 fits (the estimate alone gives 101.5 ADU);
    90 and 104 do not. BBBC039 field 1: 128 fits, 140 leaves pixels far below it."""
    vol = tifffile.imread(shared_data / BBBC050)
    assert _check(estimate_profile(vol, offset=100.0))["warning"] == ""
    c90 = _check(estimate_profile(vol, offset=90.0))
    assert c90["ratio"] > 4 and "too low" in c90["warning"]
    c104 = _check(estimate_profile(vol, offset=104.0))
    assert c104["ratio"] > 3 and "below the offset" in c104["warning"]
    img = tifffile.imread(shared_data / BBBC039)[1]
    assert _check(estimate_profile(img, offset=128.0))["warning"] == ""
    assert "lie more than 3σ" in _check(estimate_profile(img, offset=140.0))["warning"]
    # a preset of another camera (BBBC039 is not an ORCA-Flash4.0: gain ~0.4 ADU/e⁻)
    w = _check(estimate_profile(img, camera="hamamatsu-orca-flash4-v3-standard"))["warning"]
    assert w.startswith("the camera preset's offset 100 ADU does not fit the image (gain 2.17")
    assert "blocks' measured noise variance is 0.1" in w and "--camera list" in w


def test_cli_one_warning_line_exit_zero(cells, tmp_path):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    tifffile.imwrite(tmp_path / "img.tif", cells)
    runner = CliRunner()
    for offset, warned in ((100, False), (60, True)):
        out = tmp_path / f"p{offset}.h5"
        r = runner.invoke(app, ["profile", "estimate", str(tmp_path / "img.tif"),
                                "--offset", str(offset), "--out", str(out)])  # fmt: skip
        assert r.exit_code == 0 and out.is_file(), r.output
        lines = [ln for ln in r.stderr.splitlines() if "does not fit" in ln]
        assert len(lines) == (1 if warned else 0), r.stderr
        if warned:
            assert lines[0].startswith("warning: the given offset 60 ADU")
            shown = runner.invoke(app, ["profile", "show", str(out)])
            assert shown.exit_code == 0 and "does not fit the image" in shown.output


def test_tomo_score_prints_the_warning_on_one_line(cells, tmp_path):
    import io

    from rawsigma.cli.tomo_score_cmd import _tomo_profile
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=80)
    proj = np.stack([cells, cells[::-1]])
    prof = _tomo_profile(None, proj, 60.0, tmp_path / "proj.tif", console)
    assert prof.offset_global == 60.0
    lines = out.getvalue().splitlines()
    (warn,) = [ln for ln in lines if "does not fit" in ln]
    assert warn.startswith("warning: the given offset 60 ADU") and warn.endswith("the image)")
    out.truncate(0)
    _tomo_profile(None, proj, 100.0, tmp_path / "proj.tif", console)
    assert "does not fit" not in out.getvalue()
