"""``rawsigma profile show / compare / estimate`` through typer's CliRunner."""

from __future__ import annotations

import json
import struct
import sys
import types

import numpy as np
import pytest
from rawsigma.calib.profile import DEFECT_HOT, CameraProfile
from rawsigma.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def flat(text: str) -> str:
    """Output without whitespace, so rich's line wrapping cannot split a match."""
    return "".join(text.split())


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def profiles(tmp_path):
    rng = np.random.default_rng(5)
    a = CameraProfile.uniform((48, 64), 2.0, 100.0, 1.6, bit_depth=12, camera="Camera")
    a.gain *= rng.normal(1, 0.01, a.shape).astype(np.float32)
    a.read_noise *= rng.lognormal(0, 0.3, a.shape).astype(np.float32)
    a.gain_se = np.full(a.shape, 0.005, np.float32)
    a.defects[3, 3] = DEFECT_HOT
    a.emva = {"K": 2.0, "sigma_d": 1.6}
    a.ptc = {"mean": np.linspace(100, 3000, 8), "var": 2.0 * np.linspace(0, 2900, 8) + 2.56}
    b = CameraProfile.uniform((48, 64), 2.0, 100.0, 1.6, bit_depth=12, camera="Camera")
    b.gain = a.gain.copy()
    b.gain[10, :7] += 0.2
    b.gain_se = a.gain_se.copy()
    b.read_noise = a.read_noise * 1.1
    b.identity.temperature_c = 20.0
    pa, pb = tmp_path / "a.h5", tmp_path / "b.h5"
    a.save(pa)
    b.save(pb)
    return a, b, pa, pb


def test_show_prints_summary_and_writes_png(profiles, tmp_path):
    a, _, pa, _ = profiles
    png = tmp_path / "show.png"
    res = runner.invoke(app, ["profile", "show", str(pa), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert a.profile_id in out
    assert "maps" in out and "hot" in out and "EMVA" in out
    assert f"{a.gain_global:.4g}" in out
    w, h = png_size(png)
    assert w >= 800 and h >= 500
    assert png.stat().st_size > 20_000
    # refuses to replace the figure without --force, and leaves it as it was
    before = png.read_bytes()
    res = runner.invoke(app, ["profile", "show", str(pa), "--plot", str(png)])
    assert res.exit_code == 1 and png.read_bytes() == before
    assert "--force" in res.output
    res = runner.invoke(app, ["profile", "show", str(pa), "--plot", str(png), "--force"])
    assert res.exit_code == 0


def test_show_json(profiles):
    a, _, pa, _ = profiles
    res = runner.invoke(app, ["profile", "show", str(pa), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["profile_id"] == a.profile_id and s["defects"]["hot"] == 1
    assert s["maps"]["gain"]["median"] == pytest.approx(a.gain_global)


def test_show_bad_file(tmp_path):
    bad = tmp_path / "foreign.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    res = runner.invoke(app, ["profile", "show", str(bad)])
    assert res.exit_code == 1
    assert "foreign.h5" in flat(res.output) and "error" in res.output


def test_compare_table_json_and_png(profiles, tmp_path):
    a, b, pa, pb = profiles
    png = tmp_path / "cmp.png"
    res = runner.invoke(app, ["profile", "compare", str(pa), str(pb), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    out = flat(res.output)
    assert a.profile_id in out and b.profile_id in out
    assert "temperature_c" in out
    assert "7(" in out  # 7 gain pixels beyond 3 SE
    w, h = png_size(png)
    assert w >= 800 and png.stat().st_size > 20_000
    res = runner.invoke(app, ["profile", "compare", str(pa), str(pb), "--json", "--k", "5"])
    c = json.loads(res.output)
    assert c["maps"]["gain"]["n_significant"] == 7
    assert c["maps"]["read_noise"]["median"] > 0
    assert c["identity"]["temperature_c"] == [None, 20.0]


def test_compare_relative_column_of_zero_values(tmp_path):
    """EMVA flags and counts of 0 in A printed "+nan%" in the relative column."""
    a = CameraProfile.uniform((16, 16), 2.0, 100.0, 1.6, bit_depth=12)
    b = CameraProfile.uniform((16, 16), 2.0, 100.0, 1.6, bit_depth=12)
    a.emva = {"K": 2.0, "highpass_DSNU": False, "n_hot": 0}
    b.emva = {"K": 2.0, "highpass_DSNU": False, "n_hot": 3}
    a.save(tmp_path / "a.h5")
    b.save(tmp_path / "b.h5")
    res = runner.invoke(app, ["profile", "compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5")])
    assert res.exit_code == 0, res.output
    assert "nan" not in res.output
    rows = {line.split("│")[1].strip(): line for line in res.output.splitlines() if "│" in line}
    assert "+0.00%" in rows["EMVA highpass_DSNU"]  # 0 and 0: no change
    assert rows["EMVA n_hot"].rstrip("│ ").endswith("—")  # 0 to 3: no relative change


def test_estimate_uses_noise_estimate(profiles, tmp_path, monkeypatch):
    calls = {}

    def fake_estimate(image, read_noise=None, **kw):
        calls["shape"], calls["read_noise"] = image.shape, read_noise
        calls["source"] = kw.get("source")
        p = CameraProfile.uniform(image.shape, 1.7, float(image.min()), read_noise or 2.0)
        p.provenance["estimated"] = True
        return p

    mod = types.ModuleType("rawsigma.analysis.noisemodel.estimate")
    mod.estimate_profile = fake_estimate
    monkeypatch.setitem(sys.modules, "rawsigma.analysis.noisemodel.estimate", mod)
    img = np.random.default_rng(0).integers(100, 200, (2, 16, 24)).astype(np.uint16)
    src = tmp_path / "img.npy"
    np.save(src, img)
    out = tmp_path / "est.h5"
    args = ["profile", "estimate", str(src), "--out", str(out), "--read-noise", "1.25"]
    res = runner.invoke(app, [*args, "--frame", "1"])
    assert res.exit_code == 0, res.output
    assert calls == {"shape": (16, 24), "read_noise": 1.25, "source": str(src)}
    p = CameraProfile.load(out)
    assert p.estimated and p.read_noise_global == 1.25 and p.offset_global == img[1].min()
    before = out.read_bytes()
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "--force" in res.output and out.read_bytes() == before
    res = runner.invoke(
        app, ["profile", "estimate", str(tmp_path / "no.tif"), "-o", str(tmp_path / "x.h5")]
    )
    assert res.exit_code == 1 and "no.tif" in flat(res.output)


def test_estimate_real_estimator_on_simulated_image(tmp_path):
    import rawsigma.acquire.sensor_model as sm

    model = sm.SensorModel.preset("ccd", shape=(128, 128), seed=0)
    yy, xx = np.mgrid[:128, :128]
    photons = 200 + 2000 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 30**2))
    img = model.expose(photons, 0.01, np.random.default_rng(1))
    src = tmp_path / "sim.npy"
    np.save(src, img)
    out = tmp_path / "est.h5"
    args = ["profile", "estimate", str(src), "-o", str(out), "--tile", "32"]
    res = runner.invoke(app, [*args, "--bit-depth", str(model.bit_depth)])
    assert res.exit_code == 0, res.output
    p = CameraProfile.load(out)
    assert p.estimated and p.identity.bit_depth == model.bit_depth
    true_gain = float(np.median(model.gain))
    assert p.gain_global == pytest.approx(true_gain, rel=0.1)
    p.check_image(img)  # the estimated profile accepts the image it came from


def test_estimate_with_known_offset(tmp_path):
    """--offset pins the offset (data sheet / dark frame); the gain is still estimated."""
    from rawsigma.acquire.sensor_model import SensorModel

    model = SensorModel.preset("ccd", shape=(128, 128), seed=0)
    yy, xx = np.mgrid[:128, :128]
    photons = 200 + 2000 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 30**2))
    img = model.expose(photons, 0.01, np.random.default_rng(1))
    src = tmp_path / "sim.npy"
    np.save(src, img)
    out = tmp_path / "est.h5"
    true_offset = float(np.median(model.offset))
    res = runner.invoke(
        app,
        ["profile", "estimate", str(src), "-o", str(out), "--tile", "32",
         "--bit-depth", str(model.bit_depth), "--offset", str(true_offset)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    p = CameraProfile.load(out)
    assert p.offset_global == pytest.approx(true_offset, abs=0.5)
    assert p.gain_global == pytest.approx(float(np.median(model.gain)), rel=0.1)


@pytest.mark.parametrize("container", ["zarr", "tif"])
def test_estimate_warns_on_frames_decoded_from_the_codec(tmp_path, container):
    """QA session 8: a noise-codec .zarr decodes transparently (and `decompress` writes
    a TIFF marked lossy-derived); `profile estimate` took either as raw frames, silently,
    and its profile held the codec's quantisation noise. Now one warning line (exit 0)
    and ``provenance["source_lossy_derived"]``; raw frames get neither."""
    pytest.importorskip("zarr")
    from rawsigma.acquire.sensor_model import SensorModel

    model = SensorModel.preset("ccd", shape=(128, 128), seed=0)
    yy, xx = np.mgrid[:128, :128]
    photons = 200 + 2000 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 30**2))
    img = model.expose(photons, 0.01, np.random.default_rng(1))
    raw, prof = tmp_path / "raw.npy", tmp_path / "cam.h5"
    np.save(raw, img)
    model.true_profile().save(prof)
    coded = tmp_path / "c.zarr"
    res = runner.invoke(app, ["compress", str(raw), "-p", str(prof), "-o", str(coded)])
    assert res.exit_code == 0, res.output
    src = coded
    if container == "tif":
        src = tmp_path / "decoded.tif"
        res = runner.invoke(app, ["decompress", str(coded), "-o", str(src)])
        assert res.exit_code == 0, res.output
    for image, lossy in ((raw, False), (src, True)):
        out = tmp_path / f"est_{image.stem}.h5"
        args = ["profile", "estimate", str(image), "-o", str(out), "--tile", "32"]
        res = runner.invoke(app, [*args, "--bit-depth", str(model.bit_depth)])
        assert res.exit_code == 0, res.output
        assert ("decodedfromthenoisecodec(lossy-derived)" in flat(res.output)) is lossy
        assert ("codec'squantisationnoiseisintheestimate" in flat(res.output)) is lossy
        p = CameraProfile.load(out)
        assert bool(p.provenance.get("source_lossy_derived")) is lossy
