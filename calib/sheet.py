"""EMVA 1288 data sheet of a camera profile: one self-contained HTML file (+ PNG, PDF).

The summary table comes from :func:`rawsigma.calib.datasheet.datasheet_rows`, the
same rows ``rawsigma profile show`` prints, so both show equal numbers. Figures
(:mod:`rawsigma.calib.report_plots`): photon transfer, SNR, linearity, horizontal and
vertical spectrograms of the DSNU/PRNU images, logarithmic defect histograms and the
per-pixel maps. Numbers that were not estimated are listed with the reason.
"""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from pathlib import Path
from typing import Any

from rawsigma.fileio import atomic_write, check_output

from . import report_plots as rp
from .compare import defect_counts
from .datasheet import datasheet_rows, format_row
from .profile import CameraProfile

__all__ = ["FIGURES", "write_datasheet"]

#: (file stem, title, figure function)
FIGURES = (
    ("ptc", "Photon transfer", rp.ptc_figure),
    ("snr", "Signal-to-noise ratio", rp.snr_figure),
    ("linearity", "Linearity", rp.linearity_figure),
    ("spectrograms", "Spatial spectrograms (horizontal / vertical)", rp.spectrogram_figure),
    ("defect_histograms", "Defect pixel histograms (logarithmic)", rp.defect_histograms),
    ("maps", "Per-pixel maps", rp.maps_figure),
)

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:14px}th{background:#f0f0f0}td.num{text-align:right;
font-family:monospace}img{max-width:100%;border:1px solid #ddd}.na{color:#a33}
"""


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _kv(title: str, items: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<h2>{html.escape(title)}</h2><table>{rows}</table>"


def _summary_table(profile: CameraProfile) -> str:
    out = [
        "<table><tr><th>quantity</th><th>symbol</th><th>value ± SE</th><th>unit</th>"
        "<th>note</th></tr>"
    ]
    for r in datasheet_rows(profile):
        cls = "num" if r.value is not None else "num na"
        out.append(
            f"<tr><td>{html.escape(r.quantity)}</td><td>{html.escape(r.symbol)}</td>"
            f'<td class="{cls}">{html.escape(format_row(r))}</td><td>{html.escape(r.unit)}</td>'
            f"<td>{html.escape(r.note)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _conditions(p: CameraProfile) -> dict[str, Any]:
    e, prov, i = p.emva, p.provenance, p.identity
    ls = prov.get("light_source") or {}
    return {
        "camera": " ".join(v for v in (i.vendor, i.model, i.serial, i.camera) if v) or "—",
        "sensor region (x, y, w, h)": i.roi,
        "bit depth": i.bit_depth,
        "binning": i.binning,
        "exposure (ms)": i.exposure_ms if i.exposure_ms is not None else "—",
        "temperature (°C)": i.temperature_c if i.temperature_c is not None else "—",
        "light levels": e.get("n_levels", "—"),
        "frames per level": prov.get("frames_per_level", e.get("frames_per_level", "—")),
        "dark frames": prov.get("dark_frames", e.get("dark_frames", "—")),
        "light source": ls.get("message", "—"),
        "standard": e.get("standard", "EMVA 1288 R4.0 Linear"),
        "software": prov.get("software_version", "—"),
        "calibrated (UTC)": prov.get("date_utc", "—"),
    }


def write_datasheet(
    profile: CameraProfile,
    out: str | os.PathLike[str],
    *,
    png_dir: str | os.PathLike[str] | None = None,
    pdf: str | os.PathLike[str] | None = None,
    force: bool = False,
    source: str = "",
) -> dict[str, Any]:
    """Write the EMVA 1288 data sheet of ``profile`` as one HTML file.

    Parameters
    ----------
    profile : CameraProfile
    out : path
        HTML file (PNG figures embedded; no other file needed to view it).
    png_dir : path, optional
        Also save each figure there as ``<name>.png``.
    pdf : path, optional
        Also write the summary figures into one PDF (matplotlib ``PdfPages``).
    force : bool
        Replace existing outputs.
    source : str
        Name of the profile file, shown in the title.

    Returns
    -------
    dict
        ``html`` (path), ``pngs`` (list of paths), ``pdf`` (path or None).

    Raises
    ------
    OutputExistsError
        An output exists and ``force`` is False (nothing is written).
    OutputError
        ``png_dir`` is a file (nothing is written).
    """
    out = Path(out)
    check_output(out, force)
    if png_dir is not None and Path(png_dir).exists() and not Path(png_dir).is_dir():
        from rawsigma.errors import OutputError

        raise OutputError(f"--png-dir {png_dir}: is a file, not a folder (nothing written)")
    pngs_planned = [Path(png_dir) / f"{stem}.png" for stem, _, _ in FIGURES] if png_dir else []
    for path in [*pngs_planned, *([Path(pdf)] if pdf else [])]:
        check_output(path, force)
    with warnings.catch_warnings():
        # uniform maps (an estimated profile) have nothing to log-scale: the panels are
        # empty, which is the truth; matplotlib's warning would only confuse the user
        warnings.simplefilter("ignore", UserWarning)
        figs = [(stem, title, fn(profile)) for stem, title, fn in FIGURES]
        blobs = {stem: _png(fig) for stem, _, fig in figs}
    title = f"EMVA 1288 data sheet — {source or profile.identity.camera or 'camera'}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>profile <code>{profile.profile_id}</code> · {p_kind(profile)}</p>",
        "<h2>Summary (EMVA 1288 R4.0 Linear)</h2>",
        _summary_table(profile),
        _kv("Measurement conditions", _conditions(profile)),
        _kv("Defect pixels", defect_counts(profile)),
    ]
    for stem, ttl, _ in figs:
        b64 = base64.b64encode(blobs[stem]).decode()
        parts.append(
            f"<h2>{html.escape(ttl)}</h2><img alt='{stem}' src='data:image/png;base64,{b64}'>"
        )
    parts.append("</body></html>")
    with atomic_write(out, force=force) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    written = []
    for path, (stem, _, _) in zip(pngs_planned, figs if png_dir else [], strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, force=force) as tmp:
            Path(tmp).write_bytes(blobs[stem])
        written.append(path)
    if pdf:
        from matplotlib.backends.backend_pdf import PdfPages

        with atomic_write(Path(pdf), force=force) as tmp, PdfPages(tmp) as pp:
            for _, _, fig in figs:
                pp.savefig(fig)
    return {"html": out, "pngs": written, "pdf": Path(pdf) if pdf else None}


def p_kind(p: CameraProfile) -> str:
    """ "calibrated" or "estimated from an image"."""
    return "estimated from an image" if p.estimated else "calibrated"
