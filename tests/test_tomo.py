"""Tomography: FBP against iradon, centre of rotation, normalisation, bad inputs, the CLI."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
from rawsigma.analysis.tomo import (
    FILTERS,
    auto_center,
    fbp,
    find_center,
    normalize_transmission,
    sharpest_center,
)
from rawsigma.analysis.tomo.center import shifted_sinograms
from rawsigma.analysis.tomo.volume_io import read_volume
from rawsigma.cli.main import app
from rawsigma.errors import ImageMismatchError, InputFileError
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    """Shepp–Logan 48² in a 64² field: zero near the detector edges at every angle."""
    img = np.zeros((64, 64))
    img[8:56, 8:56] = resize(shepp_logan_phantom(), (48, 48), anti_aliasing=True)
    return img


def _sino(img: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return radon(img, theta).T.astype(np.float32)  # (angles, detector)


@pytest.mark.parametrize("name", FILTERS)
def test_fbp_matches_iradon(phantom, name):
    theta = np.linspace(0, 180, 60, endpoint=False)
    sino = _sino(phantom, theta)
    ours = fbp(sino, theta, filter=name)
    ref = iradon(sino.T, theta, filter_name=name)
    assert ours.shape == (1, 64, 64) and ours.dtype == np.float32
    span = phantom.max() - phantom.min()
    assert np.sqrt(np.mean((ours[0] - ref) ** 2)) / span < 1e-5
    if name == "ramp":  # and it reconstructs the phantom (not only iradon's errors)
        inside = np.hypot(*np.mgrid[:64, :64] - 32) < 30
        assert np.sqrt(np.mean((ours[0] - phantom)[inside] ** 2)) / span < 0.08


def test_fbp_volume_chunks_threads_and_out(phantom, tmp_path):
    theta = np.linspace(0, 360, 48, endpoint=False)
    sino = _sino(phantom, theta)
    k = np.array([1.0, 0.5, 2.0, -1.0, 0.25])
    proj = sino[:, None, :] * k[None, :, None]  # 5 rows, each a scaled phantom
    whole = fbp(proj, theta, threads=2)
    assert whole.shape == (5, 64, 64)
    np.testing.assert_allclose(whole, whole[0][None] * k[:, None, None], rtol=1e-5, atol=1e-6)
    steps = []
    one = fbp(proj, theta, threads=1, chunk_rows=2, progress=lambda *a: steps.append(a))
    np.testing.assert_array_equal(one, whole)
    assert steps == [("reconstruct", 2, 5), ("reconstruct", 4, 5), ("reconstruct", 5, 5)]
    with h5py.File(tmp_path / "v.h5", "w") as f:
        ds = f.create_dataset("v", (5, 64, 64), "f4")
        fbp(proj, theta, out=ds, chunk_rows=3)
        np.testing.assert_array_equal(ds[()], whole)


def test_fbp_input_errors(phantom):
    theta = np.linspace(0, 180, 30, endpoint=False)
    sino = _sino(phantom, theta)
    with pytest.raises(ImageMismatchError, match="29 angles given for 30 projections"):
        fbp(sino, theta[:-1])
    frames = [np.zeros((4, 64))] * 3 + [np.zeros((4, 63))]
    with pytest.raises(ImageMismatchError, match=r"mixed shapes: projection 3 is \(4, 63\)"):
        fbp(frames, theta[:4])


@pytest.mark.parametrize("shift", [3.4, -6.75])
def test_centre_of_shifted_sinogram(phantom, shift):
    theta = np.linspace(0, 360, 90, endpoint=False)
    sino = _sino(phantom, theta)
    n = sino.shape[1]
    # content moved by `shift` px along the detector (band-limited): axis at n//2 + shift
    f = np.fft.rfftfreq(n)
    moved = np.fft.irfft(np.fft.rfft(sino, axis=1) * np.exp(-2j * np.pi * f * shift), n, axis=1)
    truth = n // 2 + shift
    assert find_center(moved, theta) == pytest.approx(truth, abs=0.15)
    best, centers, score = sharpest_center(moved, theta, around=n // 2, half_width=10)
    assert abs(best - truth) <= 1.0
    assert score.argmax() not in (0, score.size - 1)  # a real maximum, inside the range
    rec = auto_center(moved, theta)
    assert rec["center"] == pytest.approx(truth, abs=0.75)
    assert rec["correlation"] == pytest.approx(truth, abs=0.15)


def test_centre_of_half_turn_without_exact_pairs(phantom):
    theta = np.linspace(0, 180, 120, endpoint=False)  # 0..178.5°: no pair exactly 180° apart
    sino = _sino(phantom, theta)
    shifted = shifted_sinograms(sino, [-2])[0]  # out[x] = sino[x - 2]: axis at 32 + 2
    rec = auto_center(shifted, theta)
    assert rec["pair_mismatch_deg"] == pytest.approx(1.5)
    assert rec["correlation"] == pytest.approx(34.0, abs=1.0)
    assert rec["center"] == pytest.approx(34.0, abs=0.5)


def test_centre_without_any_pair_by_sharpness(phantom):
    theta = np.linspace(0, 360, 45, endpoint=False)  # 8° steps: nearest to 180° is 4° off
    sino = _sino(phantom, theta)
    shifted = shifted_sinograms(sino, [3])[0]  # axis at 32 - 3
    rec = auto_center(shifted, theta)
    assert rec["correlation"] is None and rec["pair_mismatch_deg"] is None
    assert rec["center"] == pytest.approx(29.0, abs=1.0)


def test_normalisation_and_flat_darker_than_dark():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 2, (3, 4, 5)).astype(np.float32)
    dark = np.full((2, 4, 5), 100.0)
    flat = np.full((4, 5), 4100.0)
    counts = 100 + 4000 * np.exp(-p)
    np.testing.assert_allclose(normalize_transmission(counts, dark, flat), p, atol=1e-5)
    with pytest.raises(InputFileError, match="flat darker than its dark"):
        normalize_transmission(counts, flat, dark)
    with pytest.raises(ImageMismatchError, match=r"flat frame is \(4, 4\)"):
        normalize_transmission(counts, dark, flat[:, :4])


@pytest.fixture
def h5_scan(phantom, tmp_path):
    """Data Exchange file: 2 rows of counts with darks, flats and theta, axis at 32 + 1.5."""
    theta = np.linspace(0, 360, 72, endpoint=False)
    sino = _sino(phantom, theta) / 20  # line integrals of a few units at most
    n = sino.shape[1]
    f = np.fft.rfftfreq(n)
    line = np.fft.irfft(np.fft.rfft(sino, axis=1) * np.exp(-2j * np.pi * f * 1.5), n, axis=1)
    p = np.stack([line, 0.5 * line], axis=1).astype(np.float32)  # (72, 2, 64)
    counts = 100 + 5000 * np.exp(-p)
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as h:
        h["exchange/data"] = counts.astype(np.float32)
        h["exchange/data_dark"] = np.full((3, 2, n), 100, np.float32)
        h["exchange/data_white"] = np.full((3, 2, n), 5100, np.float32)
        h["exchange/theta"] = theta
        h["exchange/theta"].attrs["units"] = "degrees"
    return path, p, theta


@pytest.mark.parametrize("suffix", [".tif", ".h5", ".zarr"])
def test_cli_round_trip(h5_scan, tmp_path, suffix):
    path, p, theta = h5_scan
    out = tmp_path / f"rec{suffix}"
    res = runner.invoke(app, ["tomo", "reconstruct", str(path), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    vol, meta = read_volume(out)
    cen = meta["center_of_rotation"]
    assert cen["center"] == pytest.approx(33.5, abs=0.5)
    assert cen["correlation"] == pytest.approx(33.5, abs=0.2)
    np.testing.assert_allclose(vol, fbp(p, theta, center=cen["center"]), atol=2e-4)
    assert meta["angles"]["n"] == 72 and meta["filter"] == "ramp"
    assert meta["normalisation"].startswith("-log((I - dark)")
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temporaries
    again = runner.invoke(app, ["tomo", "reconstruct", str(path), "-o", str(out), "-q"])
    assert again.exit_code == 1 and "exists" in again.output


def test_cli_bad_inputs(h5_scan, tmp_path):
    path, p, theta = h5_scan
    out = tmp_path / "rec.tif"

    def run(*args: str) -> tuple[int, list[str]]:
        res = runner.invoke(app, ["tomo", "reconstruct", *args, "-o", str(out), "-q"])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        return res.exit_code, lines

    code, lines = run(str(path), "--angles", "0,1,2")
    assert code == 2 and lines == ["error: --angles gives 3 angles for 72 projections"]
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, np.ones((3, 2, 64), np.uint16), photometric="minisblack")
    tifffile.imwrite(b, np.ones((3, 2, 60), np.uint16), photometric="minisblack")
    code, lines = run(str(a), str(b), "--angle-range", "0,360")
    assert code == 1 and len(lines) == 1 and "mixed shapes" in lines[0]
    d, f = tmp_path / "d.tif", tmp_path / "f.tif"
    tifffile.imwrite(d, np.full((2, 64), 4000, np.uint16))
    tifffile.imwrite(f, np.full((2, 64), 100, np.uint16))
    code, lines = run(str(a), "--dark", str(d), "--flat", str(f), "--angle-range", "0,360")
    assert code == 1 and len(lines) == 1 and "flat darker than its dark" in lines[0]
    code, lines = run(str(a))
    assert code == 2 and "no angles" in lines[0]
    assert not out.exists()


def test_cli_frame_selection_and_given_centre(tmp_path):
    rng = np.random.default_rng(1)
    stack = np.concatenate([rng.integers(1000, 2000, (6, 2, 32)), np.full((2, 2, 32), 100),
                            np.full((1, 2, 32), 3000)]).astype(np.uint16)  # fmt: skip
    src = tmp_path / "frames.tif"
    tifffile.imwrite(src, stack)
    out = tmp_path / "r.h5"
    res = runner.invoke(app, [
        "tomo", "reconstruct", f"{src}[0:6]", "--dark", f"{src}[6:8]", "--flat", f"{src}[8]",
        "--angle-range", "0,180", "--center", "15.5", "--filter", "hann", "-o", str(out), "-q",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    vol, meta = read_volume(out)
    p = -np.log((stack[:6].astype(np.float32) - 100) / 2900)
    expect = fbp(p, np.linspace(0, 180, 6, endpoint=False), center=15.5, filter="hann")
    np.testing.assert_allclose(vol, expect, atol=1e-5)
    assert meta["center_of_rotation"]["method"] == "given (--center)"


@pytest.mark.parametrize("kind", ["transmission", "attenuation", "counts"])
def test_input_kinds(tmp_path, kind):
    from rawsigma.analysis.tomo.sources import load_input

    rng = np.random.default_rng(2)
    p = rng.uniform(0.1, 1.0, (5, 3, 40)).astype(np.float32)
    p[..., :4] = p[..., -4:] = 0  # open beam at the detector edges
    data = {"transmission": np.exp(-p), "attenuation": p, "counts": 3000 * np.exp(-p)}[kind]
    path = tmp_path / "p.npy"
    np.save(path, data.astype(np.uint16 if kind == "counts" else np.float32))
    src = load_input([str(path)], kind=kind if kind != "counts" else "auto")
    tol = 1e-3 if kind == "counts" else 1e-6  # counts: rounded to integers
    np.testing.assert_allclose(np.asarray(src.projections[:, :, :]), p, atol=tol)
    if kind == "counts":
        assert "open beam = mean of the 4 first and last columns" in src.normalisation


def test_cli_out_of_range_selection_centre_and_angles(tmp_path):
    """Seen on the real OPT frames (7 projections + dark + flat + hot-pixel frame):
    'frames.tif[0:70]' reconstructed all 10 frames (dark and flat as projections) and
    '--center 1000' on a 503-pixel detector reconstructed garbage, both with exit 0;
    '--angle-range 0,nan' was an input error (exit 1) found deep in the FBP."""
    rng = np.random.default_rng(2)
    src = tmp_path / "frames.tif"
    tifffile.imwrite(src, rng.integers(1000, 2000, (10, 2, 32)).astype(np.uint16))
    out = tmp_path / "r.tif"

    def run(*args: str) -> tuple[int, str]:
        res = runner.invoke(app, ["tomo", "reconstruct", *args, "-o", str(out), "-q"])
        return res.exit_code, " ".join(res.output.split())

    code, text = run(f"{src}[0:70]", "--angle-range", "0,360")
    assert code == 2 and "frames out of range (the file has 10, 0 to 9)" in text, text
    code, text = run(f"{src}[12:]", "--angle-range", "0,360")
    assert code == 2 and "out of range" in text, text
    for c in ("1000", "-3", "31.5"):
        code, text = run(str(src), "--angle-range", "0,360", "--center", c)
        assert code == 2 and "outside the detector (pixels 0 to 31" in text, (c, text)
    for rng_ in ("0,nan", "0,inf", "90,90"):
        code, text = run(str(src), "--angle-range", rng_)
        assert code == 2 and "must be finite and differ" in text, (rng_, text)
    code, text = run(str(src), "--angles", ",".join(["0"] * 9 + ["nan"]))
    assert code == 2 and "finite" in text, text
    assert not out.exists()
    code, text = run(f"{src}[0:7]", "--angle-range", "0,360", "--center", "30.5")
    assert code == 0, text
    assert tifffile.imread(out).shape == (2, 32, 32)


def test_second_writer_refused_before_any_work(h5_scan, tmp_path, monkeypatch):
    """Another process writing OUT: refused at once, not after a whole reconstruction
    (the lock used to be taken only to write the slices)."""
    import subprocess
    import sys
    import time

    from rawsigma.analysis.tomo import pipeline

    path, _p, _theta = h5_scan
    out = tmp_path / "rec.tif"
    code = (
        "import sys, time\nfrom rawsigma.fileio import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        loads = []
        monkeypatch.setattr(pipeline, "load_input", lambda *a, **k: loads.append(a))
        t0 = time.monotonic()
        res = runner.invoke(app, ["tomo", "reconstruct", str(path), "-o", str(out), "-q"])
        assert res.exit_code == 1 and "another rawsigma" in res.output, res.output
        assert loads == [] and time.monotonic() - t0 < 30
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
