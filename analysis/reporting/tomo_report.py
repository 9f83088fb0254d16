"""Write a tomography scoring run: ``report.html``, ``results.json``, ``objects.csv``,
``maps.h5``, ``operators.md``, ``figures/*.png``.

Same layout as the 2D/3D report (verdict table per codec, globals, per-object ε,
the per-plaque table ``objects.csv``, ``maps.h5`` for viewers, provenance), plus the
sinogram, reconstructed slices with the plaque outlines, and the operator ε (the
paper's Fig. 4f,g) on the projections and the reconstruction, as a table
(``operators.md``) and figures.

``maps.h5`` follows :mod:`rawsigma.analysis.scoring.score_maps` (format
``rawsigma.score_maps`` version 1, read by ``read_score_maps`` and the napari reader)
with volumes in place of images: ``/image`` is the raw reconstruction (Z, N, N)
float32, ``/raw_labels`` and ``/codecs/NN/labels`` the plaques (int32), and
``/codecs/NN/pixel_eps`` the per-voxel ε of the version's reconstruction,
``(raw − version) / σ_voxel`` with σ_voxel the standard deviation of the replica
reconstructions (float16). Each codec group also holds ``operator_eps/<domain>``: the
operator ε maps of one 2-D section (the middle projection / slice, or of the
central block on the chunked path), (H, W, F) float16, channel names in the
``channels`` attribute. Volumes are written slab by slab (the chunked path's never
come whole into memory).
"""

from __future__ import annotations

import html
import json
import math
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.analysis.reporting import tables
from rawsigma.analysis.reporting.figures import _outline, _plt, _png, _stretch
from rawsigma.analysis.reporting.report import write_objects_csv, write_results_json
from rawsigma.analysis.reporting.tables import fmt as _f
from rawsigma.fileio import atomic_write

__all__ = [
    "TOMO_RESULT_FILES",
    "operator_epsilon_figure",
    "sinogram_figure",
    "slices_figure",
    "write_tomo_maps",
    "write_tomo_report",
]

TOMO_RESULT_FILES = ("report.html", "results.json", "objects.csv", "maps.h5", "operators.md")
TOMO_EPS_MEANING = (
    "per-voxel epsilon = (raw - version) / sigma_voxel of the reconstructions, sigma_voxel "
    "the standard deviation of the replica reconstructions; |eps| < 1 is within the raw noise"
)


def sinogram_figure(result) -> bytes:
    """Raw projection at 0°, and the sinogram of the middle row."""
    plt = _plt()
    p = result.projections
    mid = p.shape[1] // 2
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    ax[0].imshow(_stretch(p[0]), cmap="gray")
    ax[0].set_title(f"projection at {result.angles_deg[0]:g}° (ADU)")
    ax[1].imshow(
        _stretch(p[:, mid, :]),
        cmap="gray",
        aspect="auto",
        extent=(0, p.shape[2], result.angles_deg[-1], result.angles_deg[0]),
    )
    ax[1].set_title(f"sinogram of row {mid}")
    ax[1].set_xlabel("detector pixel")
    ax[1].set_ylabel("angle (°)")
    return _png(fig)


def slices_figure(result, max_panels: int = 6) -> bytes:
    """Middle slice of each reconstruction with its plaque outline (raw outline in cyan)."""
    plt = _plt()
    z = result.volume.shape[0] // 2
    raw_out = _outline(result.raw_labels[z])
    panels = [("raw", result.volume[z], result.raw_labels[z])] + [
        (v.spec, v.volume_slice, v.labels[z]) for v in result.versions
    ]
    panels = panels[:max_panels]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    for a in axes.ravel():
        a.axis("off")
    for a, (name, sl, lab) in zip(axes.ravel(), panels, strict=False):
        rgb = np.repeat(_stretch(sl)[..., None], 3, axis=2)
        rgb[raw_out] = (0, 1, 1)
        rgb[_outline(lab)] = (1, 0.2, 0.2) if name != "raw" else (0, 1, 1)
        a.imshow(rgb)
        a.set_title(f"{name}: slice {z}", fontsize=9)
    return _png(fig)


def operator_epsilon_figure(op, versions: list[str] | None = None, operator: str = "LoG") -> bytes:
    """The paper's Fig. 4f,g: fraction of pixels with |ε| > 1 per operator × σ for each
    version (top row), and each version's ε maps of one operator at every σ (middle
    section of the stack or volume; ε clipped at ±3)."""
    plt = _plt()
    versions = versions or list(op.table)
    names = op.names
    first = op.table[versions[0]]
    ops = list(dict.fromkeys(first[n]["operator"] for n in names))
    sig = sorted({first[n]["sigma"] for n in names})
    ncol = max(len(versions), len(sig))
    fig, axes = plt.subplots(
        1 + len(versions), ncol, figsize=(3.6 * ncol, 3.2 * (1 + len(versions))), squeeze=False
    )
    for a in axes.ravel():
        a.axis("off")
    im = None
    for k, (a, v) in enumerate(zip(axes[0], versions, strict=False)):
        m = np.full((len(ops), len(sig)), np.nan)
        for n in names:
            t = op.table[v][n]
            m[ops.index(t["operator"]), sig.index(t["sigma"])] = t["frac_abs_gt1"]
        a.axis("on")
        im = a.imshow(m, vmin=0, vmax=1, cmap="magma")
        a.set_xticks(range(len(sig)), [f"σ{s:g}" for s in sig], fontsize=8)
        a.set_yticks(range(len(ops)), ops if k == 0 else [""] * len(ops), fontsize=8)
        for (i, j), val in np.ndenumerate(m):
            a.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7,
                   color="w" if val < 0.6 else "k")  # fmt: skip
        a.set_title(f"{v}\nfraction |ε|>1 (null 0.32)", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.6)
    show = [n for n in names if first[n]["operator"] == operator]
    for row, v in zip(axes[1:], versions, strict=False):
        e = op.maps[v]
        for a, n in zip(row, show, strict=False):
            a.imshow(e[..., names.index(n)], cmap="RdBu_r", vmin=-3, vmax=3)
            a.set_title(f"{v}: ε {operator} σ{first[n]['sigma']:g}", fontsize=8)
    fig.suptitle(f"operator ε on the {op.domain}", fontsize=10)
    return _png(fig)


def write_tomo_maps(result, path: str | os.PathLike, step: int = 16) -> Path:
    """Write ``maps.h5`` (module notes), volumes copied ``step`` slices at a time."""
    import h5py
    from rawsigma.analysis.scoring.score_maps import FORMAT, _json

    kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

    def put(grp, name: str, arr, dtype) -> Any:
        z, n = arr.shape[0], arr.shape[1:]
        ds = grp.create_dataset(name, shape=arr.shape, dtype=dtype, chunks=(1, *n), **kw)
        for z0 in range(0, z, step):
            ds[z0 : z0 + step] = np.asarray(arr[z0 : z0 + step]).astype(dtype, copy=False)
        return ds

    with atomic_write(path, force=True) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT, version=1, provenance=_json(result.provenance),
                       eps_meaning=TOMO_EPS_MEANING, eps_dtype="float16",
                       content="tomography: raw reconstruction (z, y, x)")  # fmt: skip
        put(f, "image", result.volume, np.float32).attrs["unit"] = "FBP of photo-electrons"
        put(f, "raw_labels", result.raw_labels, np.int32)
        grp = f.create_group("codecs")
        for i, c in enumerate(result.versions):
            g = grp.create_group(f"{i:02d}")
            g.attrs.update(spec=c.spec, description=c.description,
                           compression_ratio=float(c.ratio),
                           within_noise=bool(c.verdict["within_noise"]),
                           verdict=_json(c.verdict))  # fmt: skip
            put(g, "labels", c.labels, np.int32)
            if c.pixel_eps is not None:
                put(g, "pixel_eps", c.pixel_eps, np.float16).attrs["meaning"] = TOMO_EPS_MEANING
            g.create_group("feature_eps")
            og = g.create_group("operator_eps")
            for dom, op in result.operators.items():
                if c.spec in op.maps:
                    e = np.clip(op.maps[c.spec], -65504, 65504).astype(np.float16)
                    d = og.create_dataset(dom, data=e, **kw)
                    d.attrs["channels"] = json.dumps(list(op.names))
    return Path(path)


def _row_class(v) -> str:
    return "ok" if v.verdict["within_noise"] else "bad"


def _tomo_verdict(v) -> str:
    return f"<td>{'within noise' if v.verdict['within_noise'] else 'NOT within noise'}</td>"


def _tomo_worst(v) -> str:
    worst = v.verdict.get("worst") or ["–", math.nan]
    return f"<td>{html.escape(str(worst[0]))} {_f(worst[1])}</td>"


_VERSION_COLUMNS: list[tables.Column] = [
    ("version", lambda v: f"<td>{html.escape(v.spec)}</td>"),
    ("description", lambda v: f"<td>{html.escape(v.description)}</td>"),
    ("ratio", lambda v: f"<td>{v.ratio:.2f}</td>"),
    ("verdict", _tomo_verdict),
    ("worst", _tomo_worst),
    tables.global_epsilon_column("ε count", "count"),
    tables.global_epsilon_column("ε total volume", "total_volume"),
    tables.global_epsilon_column("ε mean volume", "mean_volume"),
    tables.global_epsilon_column("ε load", "load"),
]


def _version_table(result) -> str:
    columns = [
        *_VERSION_COLUMNS,
        ("matched", lambda v: f"<td>{v.match.get('n_matched', '–')}/{result.n_objects}</td>"),
    ]
    return tables.html_table(columns, result.versions, row_class=_row_class)


def _object_table(result) -> str:
    """Robust ε per plaque parameter: a row per version."""
    params = list(next(iter(result.versions)).objects) if result.versions else []
    columns: list[tables.Column] = [("version", lambda v: f"<td>{html.escape(v.spec)}</td>")]
    columns += [(f"{html.escape(p)} robust ε", partial(_robust_cell, p)) for p in params]
    return tables.html_table(columns, result.versions)


def _robust_cell(p: str, v) -> str:
    return f"<td>{_f(v.objects[p].robust)}</td>"


def write_tomo_report(result, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write the tomography report into ``out_dir``; return the ``report.html`` path.

    Raises
    ------
    OutputExistsError
        If ``out_dir`` already holds results and ``force`` is False.
    """
    from rawsigma.analysis.scoring.operators import operator_table_markdown

    out = tables.prepare_out_dir(out_dir, TOMO_RESULT_FILES, force)
    figs = [
        ("sinogram", sinogram_figure(result), "Raw projection and sinogram"),
        ("slices", slices_figure(result), "Middle slice: raw plaques (cyan) vs each version (red)"),
    ]
    for dom, op in result.operators.items():
        figs.append(
            (
                f"operators_{dom}",
                operator_epsilon_figure(op),
                f"Operator ε on the {dom} (fraction of pixels with |ε| > 1; ε maps)",
            )
        )
    tables.write_figures(out, figs, result.provenance)
    write_results_json(result, out / "results.json", force=True)
    write_objects_csv(result, out / "objects.csv", force=True)
    write_tomo_maps(result, out / "maps.h5")
    md = []
    for dom, op in result.operators.items():
        md += [f"### operator ε on the {dom}: fraction of pixels |ε| > 1 / median |ε|", ""]
        md += [operator_table_markdown({v: (op, v) for v in op.table}), ""]
    with atomic_write(out / "operators.md", force=True) as tmp:
        tmp.write_text("\n".join(md) or "operator ε not computed\n", encoding="utf-8")
    p = result.projections
    notes = tables.notes_html(result.notes)
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>rawsigma tomo score</title>
<style>{tables.CSS}</style></head><body>
<h1>rawsigma: tomography (OPT), distortion of plaque measurements against the raw noise</h1>
<p>{p.shape[0]} projections {p.shape[2]}×{p.shape[1]} {p.dtype} over
{result.angles_deg[0]:g}–{result.angles_deg[-1]:g}°; reconstruction
{html.escape(str(result.provenance.get("reconstruction")))}, volume
{"×".join(str(s) for s in result.volume.shape)}; {result.n_objects} plaques in the raw
reconstruction ({html.escape(result.segmenter)}). Profile
<code>{html.escape(str(result.provenance.get("profile_id")))}</code>;
{result.plan.n_replicas} raw-equivalent replicas of every projection (centre
{html.escape(result.plan.centre)}); codecs applied to every projection.</p>
<p>Processing: {html.escape(str(result.processing.get("path", "in memory")))}
({html.escape(str(result.processing.get("why", "")))}).
{
        html.escape(
            str(result.processing.get("operator_epsilon_on", ""))
            and "Operator ε on " + str(result.processing.get("operator_epsilon_on")) + "."
        )
    }
Per-plaque table: <code>objects.csv</code>; volumes, labels and per-voxel ε for
viewers: <code>maps.h5</code>.</p>{notes}
<h2>Verdict per version</h2>{_version_table(result)}{tables.quantisation_html(result.versions)}
<h2>Per-plaque parameters (robust ε, calibrated)</h2>{_object_table(result)}
<h2>Figures</h2>{tables.figures_html(figs)}
<h2>Operator ε table</h2><pre>{html.escape(chr(10).join(md))}</pre>
{tables.provenance_html(result.provenance)}
</body></html>"""
    with atomic_write(out / "report.html", force=True) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return out / "report.html"
