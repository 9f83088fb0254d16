"""EMVA 1288 data sheet: ``profile report`` equals ``profile show``; one-level profiles."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
from rawsigma.acquire.sensor_model import SensorModel
from rawsigma.calib.build import build_profile
from rawsigma.calib.darkcurrent import attach_dark_current, fit_dark_current
from rawsigma.calib.datasheet import datasheet_rows, format_row
from rawsigma.calib.moments import PixelMoments
from rawsigma.calib.simsweep import accumulate_sweep
from rawsigma.cli.main import app
from typer.testing import CliRunner

EXP = 0.01


def _profile(levels: int, tmp: Path) -> Path:
    cam = SensorModel.preset("scmos", (64, 64), seed=5)
    sat = cam.photons_for_fraction(1.0, EXP)
    if levels == 1:
        ph = [0.5 * sat]
    else:
        ph = [*(0.9 * sat * np.arange(1, levels + 1) / levels), 1.0 * sat, 1.1 * sat]
    sw = accumulate_sweep(
        cam.expose, cam.shape, ph, frames=40, dark_frames=40, exposure_s=EXP, rng=2
    )
    prof = build_profile(sw.dark, sw.levels, {"exposure_ms": 10.0}, max_adu=cam.max_adu, photons=ph)
    if levels > 1:
        rng = np.random.default_rng(3)
        darks = []
        for t in (0.01, 0.1, 1.0):
            pm = PixelMoments(cam.shape)
            pm.add(np.stack([cam.expose(0, t, rng) for _ in range(20)]))
            darks.append(pm)
        prof = attach_dark_current(prof, fit_dark_current(darks, (0.01, 0.1, 1.0)))
    path = tmp / f"p{levels}.h5"
    prof.save(path)
    return path


@pytest.mark.parametrize("levels", [1, 6])
def test_report_equals_show(tmp_path: Path, levels: int) -> None:
    from rawsigma.calib.profile import CameraProfile

    path = _profile(levels, tmp_path)
    cli = CliRunner()
    out = tmp_path / "sheet.html"
    pngs = tmp_path / "png"
    r = cli.invoke(
        app,
        [
            "profile",
            "report",
            str(path),
            "--out",
            str(out),
            "--png-dir",
            str(pngs),
            "--pdf",
            str(tmp_path / "sheet.pdf"),
        ],
    )
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert len(re.findall(r"data:image/png;base64,", text)) == 6
    assert sorted(p.name for p in pngs.iterdir()) == sorted(
        f"{s}.png" for s in ("ptc", "snr", "linearity", "spectrograms", "defect_histograms", "maps")
    )
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs.iterdir())
    assert (tmp_path / "sheet.pdf").read_bytes()[:4] == b"%PDF"
    show = cli.invoke(app, ["profile", "show", str(path)], env={"COLUMNS": "300"})
    assert show.exit_code == 0, show.output
    prof = CameraProfile.load(path)
    rows = datasheet_rows(prof)
    for row in rows:
        value = format_row(row)
        assert html.escape(value) in text, row
        if row.value is not None:
            assert value in show.output, row
    e = prof.emva
    k_row = next(r for r in rows if r.symbol == "K")
    assert k_row.value == e["K"] and k_row.se == e["K_se"]
    le = next(r for r in rows if r.symbol == "LE")
    if levels == 1:
        assert le.value is None and "2 light levels" in le.note
        assert "linearity not estimated" not in text  # said in the table, figure is a PNG
        assert "not estimated" in show.output and "needs a light level at saturation" in show.output
        sat = next(r for r in rows if r.symbol == "μ_e.sat")
        assert sat.value is None
    else:
        assert le.value == e["LE"] and le.se is not None
        assert next(r for r in rows if r.symbol == "μ_e.sat").value == e["mu_e_sat"]
        dc = next(r for r in rows if r.symbol == "μ_I")
        assert dc.value == prof.dark_info["median_e_s"] and "hot pixels" in dc.note
    # existing outputs are never replaced without --force
    before = out.read_bytes()
    r = cli.invoke(app, ["profile", "report", str(path), "--out", str(out)])
    assert r.exit_code == 1 and out.read_bytes() == before


def test_report_html_only_and_estimated_profile(tmp_path: Path) -> None:
    """Without --png-dir the sheet is the one HTML file (exit 0); an estimated profile
    (no photon transfer) gets a sheet with its panels marked unavailable, no warning."""
    from rawsigma.calib.profile import CameraProfile

    cli = CliRunner()
    path = _profile(1, tmp_path)
    r = cli.invoke(app, ["profile", "report", str(path), "--out", str(tmp_path / "a.html")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.html").read_text().count("data:image/png;base64,") == 6
    est = CameraProfile.uniform((48, 48), gain=2.0, offset=100.0, read_noise=1.5)
    est.provenance["estimated"] = True
    est.ptc = {"mean": np.linspace(200, 900, 8), "var": np.linspace(200, 1600, 8)}
    est.save(tmp_path / "est.h5")
    r = cli.invoke(
        app, ["profile", "report", str(tmp_path / "est.h5"), "--out", str(tmp_path / "e.html")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e.html").read_text().count("data:image/png;base64,") == 6


def test_report_png_dir_in_the_way_writes_nothing(tmp_path: Path) -> None:
    """QA session 8: ``--png-dir`` naming the --out file, or an existing file, wrote the
    HTML sheet and then failed with "File exists" (exit 1). Now: --out and --png-dir the
    same path is a usage error (exit 2), a file as --png-dir one line (exit 1); nothing
    is written either way."""
    est = tmp_path / "est.h5"
    from rawsigma.calib.profile import CameraProfile

    CameraProfile.uniform((32, 32), gain=2.0, offset=100.0, read_noise=1.5).save(est)
    cli = CliRunner()
    sheet = tmp_path / "sheet.html"
    r = cli.invoke(
        app, ["profile", "report", str(est), "--out", str(sheet), "--png-dir", str(sheet)]
    )
    assert r.exit_code == 2 and "--out and --png-dir are the same file" in r.output
    assert not sheet.exists()
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    r = cli.invoke(
        app, ["profile", "report", str(est), "--out", str(sheet), "--png-dir", str(other)]
    )
    assert r.exit_code == 1 and "is a file, not a folder" in r.output, r.output
    assert not sheet.exists() and other.read_text() == "keep"
