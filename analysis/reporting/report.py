"""Write a scoring run to a directory: report, results, objects table and ε maps.

The files are ``report.html``, ``results.json``, ``objects.csv`` and ``maps.h5``
(image, labels and per-pixel ε maps for viewers, see `score_maps`).

The HTML report is self-contained (figures inlined as base64 PNG) so it can be mailed
or archived alone; the same figures are also written as PNG files under ``figures/``.
Nothing in an existing result directory is replaced unless ``force`` is given.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rawsigma.analysis.reporting import figures
from rawsigma.analysis.scoring.score_maps import (
    MAPS_FILE,
    clean_nonfinite,
    json_default,
    write_score_maps,
)
from rawsigma.analysis.scoring.standard_score import NON_INDEPENDENT_NOTE
from rawsigma.errors import OutputExistsError
from rawsigma.fileio import atomic_write

if TYPE_CHECKING:
    import os

__all__ = ["RESULT_FILES", "write_report", "write_results_json", "write_objects_csv"]

RESULT_FILES = ("report.html", "results.json", "objects.csv", "maps.h5")

# the names report3d and tomo_report import (the helpers live in scoring.score_maps)
_clean = clean_nonfinite
_json_default = json_default


def write_results_json(result, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``result.to_dict()`` as strict JSON (non-finite numbers as strings)."""
    data = _clean(json.loads(json.dumps(result.to_dict(), default=_json_default)))
    with atomic_write(path, force=force) as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return Path(path)


def write_objects_csv(result, path: str | os.PathLike, force: bool = False) -> Path:
    """One row per (raw object, parameter): raw value, σ_raw, and value/ε per codec."""
    specs = [c.spec for c in result.codecs]
    header = ["label", "parameter", "raw", "replica_mean", "sigma_raw", "n_replicas_matched"]
    for s in specs:
        header += [f"{s}:value", f"{s}:epsilon"]
    labels = result.raw_objects.get("label")
    prov = json.dumps(_clean(result.provenance), default=str, ensure_ascii=False)
    with atomic_write(path, force=force) as tmp, tmp.open("w", newline="") as fh:
        # provenance as one leading comment line (pandas: read_csv(..., comment="#"))
        fh.write(f"# rawsigma objects table; provenance: {prov}\n")
        w = csv.writer(fh)
        w.writerow(header)
        for p, rep in result.replica_values.items():
            raw = result.raw_objects[p]
            for i in range(raw.size):
                col = rep[:, i]
                ok = np.isfinite(col)
                row = [
                    int(labels[i]) if labels is not None else i + 1,
                    p,
                    f"{raw[i]:.6g}",
                    f"{col[ok].mean():.6g}" if ok.any() else "",
                    "",
                    int(ok.sum()),
                ]
                sig = None
                for c in result.codecs:
                    os_ = c.objects.get(p)
                    if os_ is not None and sig is None:
                        sig = os_.sigma_raw[i]
                    v = c.values.get(p, np.full(raw.size, np.nan))[i]
                    e = os_.eps[i] if os_ is not None else np.nan
                    row += [f"{v:.6g}" if np.isfinite(v) else "", f"{e:.4g}"]
                row[4] = f"{sig:.6g}" if sig is not None and np.isfinite(sig) else ""
                w.writerow(row)
    return Path(path)


def _with_text(png: bytes, text: str) -> bytes:
    """Add the provenance as a PNG tEXt chunk (key ``rawsigma:provenance``)."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("rawsigma:provenance", text)
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>' + (
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def _f(x, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return html.escape(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("+∞" if x > 0 else "−∞")
    return f"{x:.{nd}f}"


def _codec_table(result) -> str:
    rd = result.replica_delta.get("area", {})
    rows = [
        "<tr><th>version</th><th>description</th><th>ratio</th><th>verdict</th><th>worst</th>"
        "<th>p (family-wise)</th><th>paper: worst |mean ε|</th>"
        "<th>ε count</th><th>ε total area</th><th>global flags (|ε|≥3)</th>"
        "<th>ΔA µ</th><th>ΔA σ</th>"
        "<th>matched / raw</th><th>unmatched (raw/other)</th><th>split / merged</th></tr>",
        f"<tr class='ref'><td>replicas (n={len(result.replica_globals)})</td>"
        f"<td>raw-equivalent, centre {html.escape(result.plan.centre)}</td><td>1</td><td>–</td>"
        f"<td></td><td></td><td></td><td></td><td></td><td></td><td>{_f(rd.get('mu'))}</td>"
        f"<td>{_f(rd.get('sigma'))}</td>"
        "<td></td><td></td><td></td></tr>",
    ]
    for c in result.codecs:
        v = c.verdict
        ok = v["within_noise"]
        da = c.objects["area"].summary()["delta"] if "area" in c.objects else {}
        m = c.match
        g = c.globals
        pw = v.get("paper", {}).get("worst", ["", math.nan])
        rows.append(
            f"<tr><td><b>{html.escape(c.spec)}</b></td><td>{html.escape(c.description)}</td>"
            f"<td>{c.ratio:.1f}:1</td>"
            f"<td class='{'ok' if ok else 'bad'}'>{'within noise' if ok else 'exceeds noise'}</td>"
            f"<td>{html.escape(str(v['worst'][0]))} ({_f(v['worst'][1], 2)})</td>"
            f"<td>{_f(v.get('worst_p_fw'), 3)}</td>"
            f"<td>{html.escape(str(pw[0]))} ({_f(pw[1], 2)})</td>"
            f"<td>{_f(g.get('count', {}).get('epsilon'))}</td>"
            f"<td>{_f(g.get('total_area', {}).get('epsilon'))}</td>"
            f"<td>{html.escape(', '.join(v.get('global_flags', [])) or '–')}</td>"
            f"<td>{_f(da.get('mu'))}</td><td>{_f(da.get('sigma'))}</td>"
            f"<td>{m['n_matched']} / {m['n_ref']}</td>"
            f"<td>{m['n_unmatched_ref']} / {m['n_unmatched_other']}</td>"
            f"<td>{m['n_split']} / {m['n_merged']}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _object_table(result) -> str:
    codecs = [c for c in result.codecs if c.objects]
    if not codecs:
        return "<p>No objects were segmented in the raw image: no per-object scores.</p>"
    params = list(codecs[0].objects)
    head = "<tr><th>parameter</th>" + "".join(
        f"<th>{html.escape(c.spec)}<br>robust ε / limit, p<sub>fw</sub>, null quantile"
        "<br><small>paper: mean ε ± std (median)</small></th>"
        for c in codecs
    )
    rows = [head + "</tr>"]
    for p in params:
        cells = []
        for c in codecs:
            s = c.objects[p]
            t = s.test or {}
            bad = t["exceeds"] if t else abs(s.mean) >= 1
            extra = f" ({s.n_inf} ∞)" if s.n_inf else ""
            med = s.summary()["median_epsilon"]
            cal = (
                f"<b>{_f(t.get('t'))}</b> / {_f(t.get('limit'))}, p {_f(t.get('p_fw'), 3)}, "
                f"q {_f(t.get('null_quantile'), 3)}<br>"
                if t
                else ""
            )
            cells.append(
                f"<td class='{'bad' if bad else 'ok'}'>{cal}<small>{_f(s.mean)} ± "
                f"{_f(s.std)}{extra} (median {_f(med)})</small></td>"
            )
        rows.append(f"<tr><td>{html.escape(p)}</td>{''.join(cells)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _objects_info(result) -> str:
    info = getattr(result, "objects_info", None) or {}
    if not info:
        return ""
    sz = info.get("sizes", {})
    dist = (
        f"object areas (px): min {_f(sz.get('min'), 0)}, 10 % {_f(sz.get('p10'), 0)}, "
        f"median {_f(sz.get('median'), 0)}, 90 % {_f(sz.get('p90'), 0)}, "
        f"max {_f(sz.get('max'), 0)}"
        if sz.get("n")
        else "no objects"
    )
    reg = info.get("region_sizes") or {}
    ann = (
        f"; {info['n_regions']} annotated foreground regions (median {_f(reg.get('median'), 0)} px)"
        if info.get("n_regions")
        else ""
    )
    return (
        f"<p>Objects: minimum size {info.get('min_size')} px "
        f"({html.escape(str(info.get('min_size_source', '')))}); "
        f"{info.get('n_components_raw', '–')} connected components in the raw segmentation, "
        f"{info.get('n_objects_raw', '–')} kept{ann}; {dist}.</p>"
    )


def _tolerance_table(result) -> str:
    if not result.tolerance:
        return ""
    rows = ["<tr><th>family</th><th>best within noise</th><th>ratio</th><th>swept</th></tr>"]
    for fam, t in result.tolerance.items():
        b = t["best"]
        swept = ", ".join(
            f"{p['spec']} ({p['ratio']:.1f}:1, {'ok' if p['within_noise'] else 'fail'})"
            if "ratio" in p
            else f"{p['spec']} (error)"
            for p in t["points"]
        )
        ratio = f"{b['ratio']:.1f}:1" if b else "–"
        rows.append(
            f"<tr><td>{fam}</td><td>{html.escape(b['spec']) if b else 'none'}</td>"
            f"<td>{ratio}</td><td>{html.escape(swept)}</td></tr>"
        )
    return "<h2>Tolerance search</h2><table>" + "".join(rows) + "</table>"


_CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;
padding:3px 6px;text-align:left}th{background:#eee}.ok{background:#e3f6e3}.bad{background:#fbe0e0}
.ref{background:#f4f4ff}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#555}
.note{background:#fffbe6;padding:.5em;border-left:4px solid #e6c200}
.warn{background:#fde2e2;padding:.5em;border-left:6px solid #c00;font-weight:bold}
code{font-size:12px}"""


def write_report(result, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write ``report.html``, ``results.json``, ``objects.csv``, ``maps.h5``, ``figures/*.png``.

    Parameters
    ----------
    result : ScoreResult
        Output of :func:`rawsigma.analysis.scoring.runner.score_image`.
    out_dir : path-like
        Result directory (created if needed).
    force : bool
        Replace existing results in ``out_dir``.

    Returns
    -------
    Path
        The ``report.html`` path.

    Raises
    ------
    OutputExistsError
        If ``out_dir`` already holds results and ``force`` is False.
    """
    out = Path(out_dir)
    existing = [f for f in RESULT_FILES if (out / f).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force to overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    figs = _write_figures_and_data(result, out)
    body = _report_html(result, figs)
    with atomic_write(out / "report.html", force=True) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return out / "report.html"


def _write_figures_and_data(result, out: Path) -> list[tuple[str, bytes, str]]:
    """Write the figures, ``results.json``, ``objects.csv`` and ``maps.h5``.

    The figures are PNG with the provenance as text; returns them as
    (name, png, caption).
    """
    figs = [
        ("overlays", figures.overlays(result), "Raw image with mask outline; codec masks vs raw"),
        ("pixel_epsilon", figures.pixel_epsilon_maps(result), "Δ/σ per pixel for each codec"),
        ("delta_area", figures.delta_area_histograms(result), "ΔA histograms"),
        ("globals", figures.globals_normalised(result), "Global parameters normalised to raw"),
        ("epsilon_objects", figures.epsilon_objects(result), "Per-object ε, mean ± std"),
        ("feature_epsilon", figures.feature_epsilon(result), "Per-pixel ε of feature maps"),
    ]
    if result.tolerance:
        figs.append(("tolerance", figures.tolerance_curves(result), "Tolerance search"))
    prov_text = json.dumps(_clean(result.provenance), default=str, ensure_ascii=False)
    for name, png, _ in figs:
        with atomic_write(out / "figures" / f"{name}.png", force=True) as tmp:
            tmp.write_bytes(_with_text(png, prov_text))
    write_results_json(result, out / "results.json", force=True)
    write_objects_csv(result, out / "objects.csv", force=True)
    write_score_maps(result, out / MAPS_FILE, force=True)
    return figs


def _report_html(result, figs: list[tuple[str, bytes, str]]) -> str:
    """The text of ``report.html``."""
    prov = result.provenance
    eight = [c.description for c in result.codecs if c.spec.startswith("8bit")]
    lo, hi = (result.to_dict()["replicas"]["ci_factors_95"] + [math.nan, math.nan])[:2]
    notes = "".join(
        f"<p class='{'warn' if n.startswith('WARNING') else 'note'}'>{html.escape(n)}</p>"
        for n in result.notes
    )
    quant = "".join(
        f"<p class='note'>{html.escape(c.quantisation['text'])}</p>"
        for c in result.codecs
        if getattr(c, "quantisation", None)
    )
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>rawsigma score</title>
<style>{_CSS}</style></head><body>
<h1>rawsigma: distortion of segmentation by processing, against the raw noise</h1>
<p>Image {result.image.shape[1]}×{result.image.shape[0]} {result.image.dtype},
{result.n_objects} objects in the raw segmentation ({html.escape(prov.get("segmenter", ""))}).
Profile <code>{html.escape(str(prov.get("profile_id")))}</code>
{
        "(<b>estimated from the image</b>, no bench calibration)"
        if prov.get("profile_estimated")
        else "(bench calibration)"
    }.
{result.plan.n_replicas} raw-equivalent replicas, synthesis centred on the
<b>{html.escape(result.plan.centre)}</b> image, seed {result.plan.seed}; objects matched by
centroid within {result.plan.max_distance:g} px.</p>
{notes}
{_method_text(result, lo, hi)}{_objects_info(result)}
<h2>Codecs</h2>{_codec_table(result)}
<p>8-bit conversion used: {html.escape("; ".join(eight) or "not scored")}.</p>
{quant}
{_tolerance_table(result)}
<h2>Per-object scores</h2>{_object_table(result)}
<p class="note">{html.escape(NON_INDEPENDENT_NOTE)}</p>
<p class="note">Per-object means are not robust: a parameter that takes a few discrete
values (integer area, Feret end points that can jump between hull vertices) may have a
tiny σ<sub>raw</sub> for one object, and a single change then gives that object a large
ε that dominates the mean. The median over objects is shown beside each mean;
objects with σ<sub>raw</sub> = 0 and a changed value are counted as ∞ and left out.</p>
<h2>Figures</h2>{"".join(_img(png, cap) for _, png, cap in figs)}
<h2>Provenance</h2><pre>{html.escape(json.dumps(_clean(prov), indent=1, default=str))}</pre>
<p>Timings (s): {html.escape(", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))}.
Figures made with matplotlib (Agg).</p>
</body></html>"""
    return body


def _method_text(result, lo: float, hi: float) -> str:
    """How to read ε and the calibrated verdict (the report's method paragraph)."""
    return f"""\
<p>ε = (χ<sub>raw</sub> − χ<sub>c</sub>)/σ<sub>raw</sub>, σ<sub>raw</sub> the std over the
replicas. |ε| &lt; 1: within the raw noise. With {result.plan.n_replicas} replicas the 95 %
interval of a score is ε̂·[{_f(lo)}, {_f(hi)}] (χ² law of the replica variance).
<b>Verdict (calibrated).</b> Per object, σ<sub>raw</sub> gets the parameter's resolution
floor (σ<sub>eff</sub> = √(σ<sub>raw</sub>² + q²/12), q = 1 px for area and lengths), and
per parameter the <i>robust ε</i> is the 20 % trimmed mean over objects (one object cannot
decide it). Its null distribution is measured on the replicas themselves: each replica
is scored against the raw image with σ from the other replicas (leave-one-out). A
version <i>exceeds the noise</i> iff some parameter's |robust ε| reaches its limit
max(1, |bias| + z·se), z the Bonferroni quantile over the parameters, so that a
raw-equivalent image is called within noise at ≥ 95 % family-wise; p<sub>fw</sub> is
the family-wise p-value and q the quantile of the robust ε in its null. The paper's
criterion (every |mean ε over objects| &lt; 1) is shown beside it. Global parameters
(count, total area) are single values: they are flagged at |ε| ≥ 3, because a
raw-equivalent image already lands at |ε| ≥ 1 a third of the time, and with replicas
centred on the observed image (noise applied twice) a sum over all objects also
carries the synthesis bias; the <i>replica</i> row (a held-out raw-equivalent image
scored like a codec) shows the size of that effect here.
Objects smaller than {result.plan.min_size} px were discarded.</p>
"""
