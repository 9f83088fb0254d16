"""Write a scoring run to a directory: report, results, objects table and ε maps.

The files are ``report.html``, ``results.json``, ``objects.csv`` and ``maps.h5``
(image, labels and per-pixel ε maps for viewers, see `score_maps`).

The HTML report is self-contained (figures inlined as base64 PNG) so it can be mailed
or archived alone; the same figures are also written as PNG files under ``figures/``.
Nothing in an existing result directory is replaced unless ``force`` is given.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rawsigma.analysis.reporting import figures, tables
from rawsigma.analysis.scoring.score_maps import (
    MAPS_FILE,
    clean_nonfinite,
    json_default,
    write_score_maps,
)
from rawsigma.analysis.scoring.standard_score import NON_INDEPENDENT_NOTE
from rawsigma.fileio import atomic_write

if TYPE_CHECKING:
    import os

__all__ = ["RESULT_FILES", "write_report", "write_results_json", "write_objects_csv"]

RESULT_FILES = ("report.html", "results.json", "objects.csv", "maps.h5")

_clean = clean_nonfinite
_json_default = json_default
_f = tables.fmt


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
            w.writerows(_object_rows(result, p, rep, labels))
    return Path(path)


def _object_rows(result, p: str, rep: np.ndarray, labels: np.ndarray | None) -> list[list]:
    """The ``objects.csv`` rows of parameter ``p`` (every raw object).

    Per-parameter arrays are read once and as Python numbers (their formatting is
    numpy's scalars'); each replica mean is still numpy's ``mean`` of that object's
    finite values, as the column is defined.
    """
    raw = result.raw_objects[p]
    n = raw.size
    ok = np.isfinite(rep)
    counts = ok.sum(axis=0).tolist()
    scores = [c.objects.get(p) for c in result.codecs]
    sig = next((o.sigma_raw for o in scores if o is not None), None)
    sig_s = [""] * n if sig is None else [_g6(v) for v in np.asarray(sig).tolist()]
    cols = []
    for c, o in zip(result.codecs, scores, strict=True):
        v = c.values.get(p)
        vals = [""] * n if v is None else [_g6(x) for x in np.asarray(v)[:n].tolist()]
        eps_values = np.asarray(o.eps).tolist() if o is not None else [math.nan] * n
        eps = [f"{e:.4g}" for e in eps_values]
        cols.append((vals, eps))
    label_list = labels.tolist() if labels is not None else None
    raw_list = raw.tolist()
    rows = []
    for i in range(n):
        mean = rep[:, i][ok[:, i]].mean() if counts[i] else None
        row = [
            int(label_list[i]) if label_list is not None else i + 1,
            p,
            f"{raw_list[i]:.6g}",
            f"{mean:.6g}" if mean is not None else "",
            sig_s[i],
            int(counts[i]),
        ]
        for vals, eps in cols:
            row += [vals[i], eps[i]]
        rows.append(row)
    return rows


def _g6(x: float) -> str:
    """``f"{x:.6g}"`` of a finite number, "" otherwise (the CSV's empty cell)."""
    return f"{x:.6g}" if math.isfinite(x) else ""


def _delta_area_column(stat: str, header: str) -> tables.Column:
    """Mean or σ of the area's Δ over the matched objects."""

    def cell(c) -> str:
        da = c.objects["area"].summary()["delta"] if "area" in c.objects else {}
        return f"<td>{_f(da.get(stat))}</td>"

    return header, cell


_CODEC_COLUMNS: list[tables.Column] = [
    *tables.VERSION_COLUMNS,
    *tables.VERDICT_COLUMNS,
    tables.global_epsilon_column("ε count", "count"),
    tables.global_epsilon_column("ε total area", "total_area"),
    tables.flags_column(),
    _delta_area_column("mu", "ΔA µ"),
    _delta_area_column("sigma", "ΔA σ"),
    *tables.MATCH_COLUMNS,
]


def _codec_table(result) -> str:
    rd = result.replica_delta.get("area", {})
    replicas = (
        f"<tr class='ref'><td>replicas (n={len(result.replica_globals)})</td>"
        f"<td>raw-equivalent, centre {html.escape(result.plan.centre)}</td><td>1</td><td>–</td>"
        f"<td></td><td></td><td></td><td></td><td></td><td></td><td>{_f(rd.get('mu'))}</td>"
        f"<td>{_f(rd.get('sigma'))}</td>"
        "<td></td><td></td><td></td></tr>"
    )
    return tables.html_table(_CODEC_COLUMNS, result.codecs, lead=[replicas])


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
    out = tables.prepare_out_dir(out_dir, RESULT_FILES, force)
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
    tables.write_figures(out, figs, result.provenance)
    write_results_json(result, out / "results.json", force=True)
    write_objects_csv(result, out / "objects.csv", force=True)
    write_score_maps(result, out / MAPS_FILE, force=True)
    return figs


def _report_html(result, figs: list[tuple[str, bytes, str]]) -> str:
    """The text of ``report.html``."""
    prov = result.provenance
    eight = [c.description for c in result.codecs if c.spec.startswith("8bit")]
    lo, hi = (result.to_dict()["replicas"]["ci_factors_95"] + [math.nan, math.nan])[:2]
    notes = tables.notes_html(result.notes)
    quant = tables.quantisation_html(result.codecs)
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>rawsigma score</title>
<style>{tables.CSS}</style></head><body>
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
<h2>Per-object scores</h2>{tables.object_table(result)}
<p class="note">{html.escape(NON_INDEPENDENT_NOTE)}</p>
<p class="note">Per-object means are not robust: a parameter that takes a few discrete
values (integer area, Feret end points that can jump between hull vertices) may have a
tiny σ<sub>raw</sub> for one object, and a single change then gives that object a large
ε that dominates the mean. The median over objects is shown beside each mean;
objects with σ<sub>raw</sub> = 0 and a changed value are counted as ∞ and left out.</p>
<h2>Figures</h2>{tables.figures_html(figs)}
{tables.provenance_html(prov)}
<p>Timings (s): {tables.timings_text(result.timings)}.
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
(count, total area) are single values, reported beside the verdict: they are flagged
when |ε| ≥ |bias| + 3·spread of the same leave-one-out null (spread at least √2, a
second frame's), because with replicas centred on the observed image (noise applied
twice) a sum over all objects carries the synthesis bias, often several σ; the
<i>replica</i> row (a held-out raw-equivalent image scored like a codec) shows the size
of that effect here.
Objects smaller than {result.plan.min_size} px were discarded.</p>
"""
