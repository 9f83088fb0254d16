"""QA session 7: a noise-codec step below 1 ADU at the noise floor cannot pay (BBBC039:
step 0.01 gives 1.0:1 against zstd's 2.2:1); compress and score say so in one line
and still exit 0."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec.codec import fine_step_warning
from rawsigma.calib.profile import CameraProfile
from rawsigma.calib.profile_fields import DEFECT_NOISY
from rawsigma.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _prof(rn, shape=(32, 32)):
    return CameraProfile.uniform(shape, gain=0.5, offset=100.0, read_noise=rn)


def test_threshold_and_advice():
    p = _prof(2.0)
    w = fine_step_warning(p, 0.4)  # 0.8 ADU at the floor
    assert w is not None and "0.8 ADU" in w and "100%" in w and "step >= 0.5" in w
    assert fine_step_warning(p, 0.5) is None  # exactly 1 ADU
    assert fine_step_warning(p, 2.0) is None
    # no allowed step reaches 1 ADU: only the lossless advice
    w = fine_step_warning(_prof(0.3), 2.5)
    assert w is not None and "no step up to 2.5" in w and ">=" not in w


def test_most_pixels_and_defects():
    """'Most' = more than half of the good pixels; defect pixels do not count."""
    p = _prof(5.0)
    rn = p.read_noise.copy()
    rn.flat[: int(0.4 * rn.size)] = 0.5  # 40 % quiet pixels: S = 1 is 0.5 ADU there
    p40 = CameraProfile(offset=p.offset, gain=p.gain, read_noise=rn, identity=p.identity)
    assert fine_step_warning(p40, 1.0) is None
    rn.flat[: int(0.7 * rn.size)] = 0.5
    p70 = CameraProfile(offset=p.offset, gain=p.gain, read_noise=rn, identity=p.identity)
    w = fine_step_warning(p70, 1.0)
    assert w is not None and "70%" in w and "step >= 2" in w
    defects = np.zeros(rn.shape, np.uint8)
    defects.flat[: int(0.5 * rn.size)] = DEFECT_NOISY  # most quiet pixels flagged
    pdef = CameraProfile(
        offset=p.offset, gain=p.gain, read_noise=rn, identity=p.identity, defects=defects
    )
    assert fine_step_warning(pdef, 1.0) is None  # 20 of the 50 % good pixels: 40 %


def test_bbbc039_tiny_step_loses_to_zstd_advised_step_wins(shared_data):
    """The warning's claim on the real frames (profile as `profile estimate` gives it):
    step 0.01 compresses worse than zstd-3, the advised step better."""
    import imagecodecs

    img = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[0]
    prof = CameraProfile.uniform(img.shape, gain=0.368, offset=128.0, read_noise=3.4)
    zstd = img.nbytes / len(imagecodecs.zstd_encode(img.tobytes(), 3))
    w = fine_step_warning(prof, 0.01)
    assert w is not None
    advised = float(w.rsplit(">= ", 1)[1])
    assert advised == pytest.approx(0.3)
    assert fine_step_warning(prof, advised) is None
    tiny = img.nbytes / len(NoiseCodec(prof, step=0.01, maps="global").encode(img))
    ok = img.nbytes / len(NoiseCodec(prof, step=advised, maps="global").encode(img))
    assert tiny < zstd < ok


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = 100 + rng.poisson(40.0, (2, 32, 32)) * 0.5 + rng.normal(0, 2, (2, 32, 32))
    tifffile.imwrite(tmp_path / "fr.tif", np.clip(np.rint(img), 0, None).astype(np.uint16))
    _prof(2.0).save(tmp_path / "cam.h5")
    return tmp_path


@pytest.mark.parametrize(("step", "warned"), [("0.01", True), ("2", False)])
def test_cli_compress_warns_once_and_exits_0(files, step, warned):
    out = files / "x.rsnc"
    res = runner.invoke(
        app,
        ["compress", str(files / "fr.tif"), "--profile", str(files / "cam.h5"),
         "--step", step, "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.exists()
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(lines) == (1 if warned else 0)
    if warned:  # σ at the frames' values (≈ 3.7 ADU), not the read noise (2 ADU)
        assert "lossless codec" in lines[0] and "step >= 0.27" in lines[0]
        assert "at the image's noise" in lines[0]


def test_score_codec_check_warns(capsys):
    from rawsigma.cli.params import check_codecs

    check_codecs(["8bit", "noise:step=0.01", "noise:step=2", "replica"], _prof(2.0))
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "step 0.01" in err


def test_usiigaci_far_above_offset_not_warned(shared_data):
    """QA session 11: `profile estimate` gives Usiigaci read noise 0 (offset assumed below
    every value), so S·σ_r = 0 and compress/score advised a lossless codec "no step up to
    2.5 reaches 1 ADU", while the codec at S = 2 beats zstd-3 several times over: the
    frame's noise, σ(x) ≥ 80 ADU, is far from the floor."""
    import imagecodecs

    img = tifffile.imread(shared_data / "usiigaci_phase_contrast_1fields.tif")[:512, :512]
    prof = CameraProfile.uniform(img.shape, gain=2.672, offset=3276.75, read_noise=0.0)
    assert "no step up to 2.5" in fine_step_warning(prof, 2.0)  # the profile alone
    assert fine_step_warning(prof, 2.0, img) is None
    zstd = img.nbytes / len(imagecodecs.zstd_encode(img.tobytes(), 3))
    noise = img.nbytes / len(NoiseCodec(prof, step=2.0, maps="global").encode(img))
    assert noise > 3 * zstd


def test_image_at_the_floor_still_warned(shared_data):
    """BBBC039 field 0 (max 993 DN) sits near its floor: step 0.01 is still refused
    advice-wise with the image, and the advised step pays (as in the profile-only case)."""
    img = tifffile.imread(shared_data / "bbbc039_u2os_hoechst_3fields.tif")[0]
    prof = CameraProfile.uniform(img.shape, gain=0.368, offset=128.0, read_noise=3.4)
    w = fine_step_warning(prof, 0.01, img)
    assert w is not None and "at the image's noise" in w
    advised = float(w.rsplit(">= ", 1)[1])
    assert 0.1 < advised < 0.3  # the image's pixels are noisier than the floor
    assert fine_step_warning(prof, advised, img) is None


def test_frames_of_another_shape_fall_back_to_the_profile():
    """Frames the profile does not fit (the caller's shape check refuses them later) gave
    an internal error ("operands could not be broadcast") before that check could run
    (`score` of a 64² volume with a 32² profile): σ is then the profile's alone."""
    prof = CameraProfile.uniform((32, 32), gain=2.0, offset=100.0, read_noise=0.2)
    vol = np.full((6, 64, 64), 5000, np.uint16)
    assert fine_step_warning(prof, 2.0, vol) == fine_step_warning(prof, 2.0)
    assert fine_step_warning(prof, 2.0, vol) is not None  # 0.4 ADU at the floor


def test_image_sigma_reads_about_n_pixels_of_any_frame():
    """Review of session 11: only whole frames were skipped, so one huge frame was used
    whole, as float64 with several temporaries (a 100 Mpx frame: GBs for a warning);
    now rows are skipped too."""
    from rawsigma.analysis.noisecodec.codec import _image_sigma

    prof = CameraProfile.uniform((2048, 2048), gain=2.0, offset=100.0, read_noise=2.0)
    frame = np.full((2048, 2048), 2100, np.uint16)
    sig = _image_sigma(prof, frame, n=1 << 18)
    assert sig.size == 2048 * 2048 // 16  # every 16th row: 2**18 pixels
    np.testing.assert_allclose(sig, np.sqrt(2.0 * 2000 + 4.0))
    assert _image_sigma(prof, frame[None].repeat(3, 0), n=1 << 18).size == sig.size
