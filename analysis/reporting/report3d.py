"""Report of a volume scoring run (:class:`~rawsigma.analysis.scoring.volume.VolumeResult`).

Writes ``report.html`` (self-contained), ``results.json``, ``objects.csv``,
``volumes.h5`` (raw volume, raw labels and each version's labels, with the voxel size)
and ``figures/*.png``: orthogonal slices through the volume centre (XY, XZ, YZ, drawn
with the physical aspect of the voxels) with object outlines, maximum-intensity
projections along z, y and x of the raw volume, RMS projections of each version's Δ/σ,
then the 2D report's global and per-object ε figures.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.analysis.reporting import figures, tables
from rawsigma.analysis.reporting.report import (
    _tolerance_table,
    write_objects_csv,
    write_results_json,
)
from rawsigma.analysis.reporting.tables import fmt as _f
from rawsigma.fileio import atomic_write

__all__ = ["VOLUME_RESULT_FILES", "write_volume_report"]

VOLUME_RESULT_FILES = ("report.html", "results.json", "objects.csv", "volumes.h5")


def _outline3(labels2d: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    fg = labels2d > 0
    return fg & ~ndi.binary_erosion(fg, structure=np.ones((3, 3)), border_value=0)


def _views(vol: np.ndarray, kind: str) -> list[tuple[str, np.ndarray]]:
    """(name, 2D image): the three orthogonal centre slices, MIPs or RMS projections.

    A volume on disk (the out-of-core path) computes its own views (``vol.views``).
    """
    if hasattr(vol, "views"):
        return vol.views(kind)
    z, y, x = (n // 2 for n in vol.shape)
    if kind == "slice":
        return [(f"XY (z={z})", vol[z]), (f"XZ (y={y})", vol[:, y]), (f"YZ (x={x})", vol[:, :, x])]
    if kind == "rms":
        v2 = np.square(vol, dtype=np.float64)
        return [(f"RMS along {a}", np.sqrt(v2.mean(i))) for i, a in enumerate("zyx")]
    return [("MIP along z", vol.max(0)), ("MIP along y", vol.max(1)), ("MIP along x", vol.max(2))]


def _stretched(vol: Any) -> Any:
    """``figures._stretch`` of the volume (one on disk stretches its views)."""
    return vol.stretched() if hasattr(vol, "stretched") else figures._stretch(vol)


def _aspects(spacing: tuple[float, float, float]) -> list[float]:
    dz, dy, dx = spacing
    return [dy / dx, dz / dx, dz / dy]


def orthogonal_slices(result, max_rows: int = 5) -> bytes:
    """Centre slices XY/XZ/YZ of the raw volume with the raw and each version's outlines."""
    plt = figures._plt()
    rows = [("raw", result.raw_labels)] + [(c.spec, c.labels) for c in result.codecs]
    rows = rows[:max_rows]
    img = _stretched(result.image)
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.2 * len(rows)), squeeze=False)
    asp = _aspects(result.spacing)
    for r, (name, lab) in enumerate(rows):
        for c, ((title, im), (_, lb)) in enumerate(
            zip(_views(img, "slice"), _views(lab, "slice"), strict=True)
        ):
            ax = axes[r, c]
            rgb = np.dstack([im] * 3)
            rgb[_outline3(lb)] = (1.0, 0.2, 0.2) if name != "raw" else (0.1, 1.0, 0.1)
            ax.imshow(rgb, aspect=asp[c], interpolation="nearest")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.axis("off")
    return figures._png(fig)


def mips(result, clim: float = 2.0) -> bytes:
    """MIPs of the raw volume (outlines: the raw objects' MIP) and RMS projections of Δ/σ.

    The RMS of Δ/σ along a line of voxels is ≈ 1 for a raw-equivalent version
    (√2 for a held-out replica: its noise and the raw's add); a max projection would
    only show the largest of many noise draws.
    """
    plt = figures._plt()
    rows = [("raw", None)] + [(c.spec, c.pixel_eps) for c in result.codecs]
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 3.2 * len(rows)), squeeze=False)
    asp = _aspects(result.spacing)
    img = _stretched(result.image)
    for r, (name, eps) in enumerate(rows):
        if eps is None or hasattr(eps, "views"):
            views = _views(img if eps is None else eps, "mip" if eps is None else "rms")
        else:
            views = _views(np.nan_to_num(eps), "rms")
        labs = _views(result.raw_labels, "mip")
        for c, ((title, im), (_, lb)) in enumerate(zip(views, labs, strict=True)):
            ax = axes[r, c]
            if eps is None:
                rgb = np.dstack([im] * 3)
                rgb[_outline3(lb)] = (0.1, 1.0, 0.1)
                ax.imshow(rgb, aspect=asp[c], interpolation="nearest")
                ax.set_title(f"raw: {title}", fontsize=8)
            else:
                h = ax.imshow(im, aspect=asp[c], vmin=0, vmax=clim, cmap="magma")
                ax.set_title(f"{name}: Δ/σ, {title}", fontsize=8)
                if c == 2:
                    fig.colorbar(h, ax=ax, fraction=0.046)
            ax.axis("off")
    return figures._png(fig)


def _count_cell(c) -> str:
    cnt = c.globals.get("count", {})
    return (
        f"<td>{_f(cnt.get('raw'), 0)} → {_f(cnt.get('value'), 0)} ({_f(cnt.get('epsilon'))})</td>"
    )


def _total_volume_cell(c) -> str:
    tv = c.globals.get("total_volume", {})
    rel = 100 * (tv.get("value", math.nan) / tv["raw"] - 1) if tv.get("raw") else math.nan
    return f"<td>{_f(rel, 1)} % ({_f(tv.get('epsilon'))})</td>"


_CODEC_COLUMNS: list[tables.Column] = [
    *tables.VERSION_COLUMNS,
    *tables.VERDICT_COLUMNS,
    ("count raw → value (ε)", _count_cell),
    ("total volume Δ % (ε)", _total_volume_cell),
    tables.flags_column(),
    *tables.MATCH_COLUMNS,
]


def _reference(result) -> str:
    ref = getattr(result, "reference", None) or {}
    if not ref:
        return ""
    if "n_points" in ref:
        return (
            "<h2>Agreement with the reference points</h2><p>"
            f"{ref['n_objects']} objects for {ref['n_points']} reference points "
            f"(ratio {_f(ref['count_ratio'])}); {ref['points_in_object']} points lie inside "
            f"an object; {ref['objects_with_point']} objects hold a point, "
            f"{ref['objects_with_several_points']} hold several.</p>"
        )
    return (
        "<h2>Agreement with the reference labels</h2><p>Raw segmentation against the "
        f"reference instance labels, objects matched at IoU ≥ {_f(ref['iou_threshold'])}: "
        f"{ref['tp']} matched of {ref['n_objects']} objects and {ref['n_reference']} "
        f"reference objects; precision {_f(ref['precision'], 3)}, recall "
        f"{_f(ref['recall'], 3)}, <b>F1 {_f(ref['f1'], 3)}</b>, mean IoU of matched pairs "
        f"{_f(ref['mean_iou_matched'], 3)}, foreground Jaccard "
        f"{_f(ref['jaccard_foreground'], 3)}."
        + (f" {html.escape(ref['note'])}" if ref.get("note") else "")
        + "</p>"
    )


def _write_feature_maps(f: Any, result: Any) -> None:
    """``feature_eps/<spec>``: float16 ε map of each version's worst feature.

    Copied a z slab at a time: a map on disk (a zarr array on the chunked path) is
    never read whole.
    """
    top = float(np.finfo(np.float16).max)
    for c in result.codecs:
        for name, fmap in getattr(c, "feature_eps", {}).items():
            shape = tuple(fmap.shape)
            step = max(1, (16 << 20) // max(1, 4 * int(np.prod(shape[1:]))))
            d = f.create_dataset(f"feature_eps/{c.spec}", shape=shape, dtype=np.float16,
                                 chunks=(min(step, shape[0]),) + shape[1:],
                                 compression="gzip", compression_opts=4)  # fmt: skip
            for z in range(0, shape[0], step):
                d[z : z + step] = np.clip(np.asarray(fmap[z : z + step], np.float32), -top, top)
            mean_abs = float(c.features[name]["mean_abs_epsilon"])
            d.attrs.update(feature=name, mean_abs_epsilon=mean_abs,
                           spacing_zyx=np.asarray(result.spacing, float))  # fmt: skip


def write_volumes_h5(result, path: str | os.PathLike) -> Path:
    """Raw volume, raw labels, each version's labels and feature ε map (``spacing_zyx``).

    ``feature_eps/<spec>`` (float16, NaN where σ = 0, attributes ``feature`` and
    ``mean_abs_epsilon``) is the per-voxel ε of the scoring feature with the largest
    mean |ε| for that version, as ``maps.h5``'s ``feature_eps/<name>`` in 2D.
    """
    import h5py

    with atomic_write(path, force=True) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = "rawsigma.score_volumes"  # the napari reader's tag
        f.attrs["spacing_zyx"] = np.asarray(result.spacing, float)
        f.attrs["axes"] = "ZYX"
        _put(f, "raw", result.image, None)
        _put(f, "labels/raw", result.raw_labels, np.int32)
        for c in result.codecs:
            _put(f, f"labels/{c.spec}", c.labels, np.int32)
        for ds in f.values():
            if hasattr(ds, "attrs"):
                ds.attrs["spacing_zyx"] = np.asarray(result.spacing, float)
        _write_feature_maps(f, result)
    return Path(path)


def _put(f: Any, name: str, vol: Any, dtype: Any) -> None:
    """One gzip dataset; a volume on disk is copied slab by slab (``vol.blocks()``)."""
    kw = {"compression": "gzip", "compression_opts": 4}
    if not hasattr(vol, "blocks"):
        f.create_dataset(name, data=vol if dtype is None else vol.astype(dtype), **kw)
        return
    chunks = (1,) + tuple(min(n, 256) for n in vol.shape[1:])
    ds = f.create_dataset(name, shape=vol.shape, dtype=dtype or vol.dtype, chunks=chunks, **kw)
    for index, block in vol.blocks():
        ds[index] = block


def write_volume_report(result, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write the volume report files into ``out_dir``; return the ``report.html`` path."""
    out = tables.prepare_out_dir(out_dir, VOLUME_RESULT_FILES, force)
    figs = [
        ("slices", orthogonal_slices(result), "Orthogonal centre slices (physical aspect); "
         "green: raw objects, red: each version's objects"),
        ("mips", mips(result), "Maximum-intensity projections of the raw volume with the raw "
         "objects; RMS projections of Δ/σ per voxel of each version (≈1 within noise, "
         "√2 for the held-out replica)"),
        ("globals", figures.globals_normalised(result), "Global parameters normalised to raw"),
        ("epsilon_objects", figures.epsilon_objects(result), "Per-object ε, mean ± std"),
        ("feature_epsilon", figures.feature_epsilon(result), "Per-voxel ε of feature maps"),
    ]  # fmt: skip
    if result.tolerance:
        figs.append(("tolerance", figures.tolerance_curves(result), "Tolerance search"))
    tables.write_figures(out, figs, result.provenance)
    write_results_json(result, out / "results.json", force=True)
    write_objects_csv(result, out / "objects.csv", force=True)
    write_volumes_h5(result, out / "volumes.h5")
    with atomic_write(out / "report.html", force=True) as tmp:
        tmp.write_text(_html(result, figs), encoding="utf-8")
    return out / "report.html"


def _html(result, figs) -> str:
    prov = result.provenance
    z, y, x = result.image.shape
    sp = result.spacing
    info = result.objects_info
    sz = info.get("sizes", {})
    notes = tables.notes_html(result.notes, ignore_case=True)
    quant = tables.quantisation_html(result.codecs)
    t = result.tissue
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>rawsigma score (3D)</title>
<style>{tables.CSS}</style></head><body>
<h1>rawsigma: distortion of a 3D segmentation by processing, against the raw noise</h1>
<p>Volume {x}×{y}×{z} (X×Y×Z) {result.image.dtype}, voxel
<b>{sp[0]:g} × {sp[1]:g} × {sp[2]:g}</b> (Z × Y × X; {html.escape(result.spacing_source)}).
{result.n_objects} objects (26-connected) in the raw segmentation
({html.escape(prov.get("segmenter", ""))}), minimum size {info.get("min_size")} voxels
({html.escape(str(info.get("min_size_source", "")))}); object volumes (voxels): median
{_f(sz.get("median"), 0)}, 10–90 % {_f(sz.get("p10"), 0)}–{_f(sz.get("p90"), 0)}.
Profile <code>{html.escape(str(prov.get("profile_id")))}</code>
{"(<b>estimated from the volume</b>)" if prov.get("profile_estimated") else "(bench calibration)"},
applied to every z plane (each plane is one camera frame). {result.plan.n_replicas}
raw-equivalent replicas, centre <b>{html.escape(result.plan.centre)}</b>, seed
{result.plan.seed}; objects matched by centroid within {result.plan.max_distance:g}
(physical units of the voxel size).</p>
{notes}
<p>Measurements in physical units: volume = voxel count × voxel volume; surface area =
area of the marching-cubes mesh (iso-level 0.5 of each object's mask, voxel spacing
applied, no smoothing; reads ~8 % above the true area of a ball); centroid z, y, x;
equivalent diameter (6V/π)<sup>1/3</sup>; sphericity π<sup>1/3</sup>(6V)<sup>2/3</sup>/A.
Load = total object volume / tissue volume; tissue: {html.escape(str(t.get("source", "")))}
({_f(t.get("volume"), 1)} units³, {t.get("n_voxels", "–")} voxels), the same for every
version. ε, the calibrated verdict (leave-one-out null, family-wise 95 %) and the
paper's rule are computed exactly as for 2D images (see a 2D report for the full text).</p>
{_reference(result)}
<h2>Versions</h2>{tables.html_table(_CODEC_COLUMNS, result.codecs)}
{quant}
{_tolerance_table(result)}
<h2>Per-object scores</h2>{tables.object_table(result)}
<h2>Figures</h2>{tables.figures_html(figs)}
{tables.provenance_html(prov)}
<p>Timings (s): {tables.timings_text(result.timings)}.</p>
</body></html>"""
