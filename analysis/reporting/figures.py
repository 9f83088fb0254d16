"""Figures of a scoring report (matplotlib, Agg backend, PNG bytes).

Every function takes a :class:`~rawsigma.analysis.scoring.results.ScoreResult` and returns PNG
bytes, so the report can both inline them (base64) and write them as files.
"""

from __future__ import annotations

import io
import math

import numpy as np

__all__ = [
    "delta_area_histograms",
    "epsilon_objects",
    "feature_epsilon",
    "globals_normalised",
    "overlays",
    "pixel_epsilon_maps",
    "tolerance_curves",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _stretch(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [0.5, 99.5])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)


def _outline(labels: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    fg = labels > 0
    return fg & ~ndi.binary_erosion(fg, structure=np.ones((3, 3)), border_value=0)


def _bytes(v: np.ndarray) -> np.ndarray:
    """Float RGB values in [0, 1] as the bytes matplotlib's Agg image would write.

    Matplotlib draws float RGB as float64 and writes ``floor(255 · value)``; given
    8-bit RGB it divides by 255 in float32 and writes ``floor(255 · that)``, which
    gives each byte back (all 256 values: tests/test_figures_bytes.py). So an image drawn
    from these bytes is the same PNG, and each panel matplotlib keeps costs 3 bytes a
    pixel instead of 12 (float32), plus 4 bytes of ``v`` here, a slab at a time.
    """
    out = np.empty(v.shape, np.uint8)
    rows = max(1, (1 << 22) // max(1, int(np.prod(v.shape[1:]))))
    for i in range(0, v.shape[0], rows):
        out[i : i + rows] = np.asarray(v[i : i + rows], np.float64) * 255
    return out


def overlays(result, max_panels: int = 6) -> bytes:
    """Raw image with the raw mask outline, and each codec's outline against raw."""
    plt = _plt()
    panels = [("raw", result.raw_labels)] + [(c.spec, c.labels) for c in result.codecs]
    panels = panels[:max_panels]
    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    base = _bytes(_stretch(result.image))
    raw_o = _outline(result.raw_labels)
    gold, blue, red = (_bytes(np.array(c, np.float32)) for c in ((1.0, 0.85, 0.0),
                       (0.2, 0.6, 1.0), (1.0, 0.2, 0.2)))  # fmt: skip
    for ax, (name, lab) in zip(axes.ravel(), panels, strict=False):
        rgb = np.repeat(base[..., None], 3, axis=2)
        if name == "raw":
            rgb[raw_o] = gold
        else:
            o = _outline(lab)
            rgb[raw_o & ~o] = blue  # raw only
            rgb[o & ~raw_o] = red  # codec only
            rgb[o & raw_o] = gold
            del o
        ax.imshow(rgb, interpolation="nearest")  # matplotlib keeps its own copy
        del rgb
        ax.set_title(name if name == "raw" else f"{name}  (red: codec, blue: raw only)", fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    del base, raw_o
    return _png(fig)


def _colour_mapped(clim: float):
    """The RdBu_r ±``clim`` colour map of the Δ/σ panels, as a ScalarMappable."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(Normalize(-clim, clim), _plt().get_cmap("RdBu_r"))


def _rgba_bytes(mappable, a: np.ndarray) -> np.ndarray:
    """``a`` colour-mapped to 8-bit RGBA, a slab of rows at a time.

    The bytes are those matplotlib writes for the float image (the colour map's table
    times 255, floored; NaN transparent), and it gives them back unchanged (see
    `_bytes`): the same PNG, while the image it keeps and draws is 8-bit RGBA.
    """
    out = np.empty(a.shape + (4,), np.uint8)
    rows = max(1, (1 << 20) // max(1, int(np.prod(a.shape[1:]))))
    for i in range(0, a.shape[0], rows):
        out[i : i + rows] = mappable.to_rgba(np.ma.masked_invalid(a[i : i + rows]), bytes=True)
    return out


def pixel_epsilon_maps(result, clim: float = 3.0) -> bytes:
    """Δ/σ = (raw − decoded)/σ_pixel maps per codec, σ from the profile."""
    plt = _plt()
    n = max(len(result.codecs), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 4 * rows), squeeze=False)
    im = None
    for ax, c in zip(axes.ravel(), result.codecs, strict=False):
        if im is None:
            im = _colour_mapped(clim)  # the colour bar's mappable
        ax.imshow(_rgba_bytes(im, c.pixel_eps), interpolation="nearest")
        pe = c.pixel_eps[np.isfinite(c.pixel_eps)]
        rms = float(np.sqrt(np.mean(pe.astype(np.float64) ** 2))) if pe.size else math.nan
        ax.set_title(f"{c.spec}: Δ/σ (rms {rms:.2f})", fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[len(result.codecs) :]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="Δ/σ")
    return _png(fig)


def delta_area_histograms(result, param: str = "area") -> bytes:
    """Histograms of ΔA = A_raw − A_other for the replicas (pooled) and each codec."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series = []
    if param in result.replica_values:
        rep = result.raw_objects[param][None, :] - result.replica_values[param]
        series.append(("replicas", rep[np.isfinite(rep)]))
    for c in result.codecs:
        if param in c.values:
            d = result.raw_objects[param] - c.values[param]
            series.append((c.spec, d[np.isfinite(d)]))
    allv = np.concatenate([s for _, s in series]) if series else np.zeros(0)
    if allv.size:
        lo, hi = np.percentile(allv, [0.5, 99.5])
        lo, hi = math.floor(min(lo, -3)), math.ceil(max(hi, 3))
        bins = np.arange(lo - 0.5, hi + 1.5, max(1, (hi - lo) // 60))
        for name, s in series:
            mu = s.mean() if s.size else math.nan
            sd = s.std(ddof=1) if s.size > 1 else math.nan
            ax.hist(s, bins=bins, density=True, histtype="step", lw=1.5,
                    label=f"{name}: µ {mu:.2f}, σ {sd:.2f} (n={s.size})")  # fmt: skip
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no matched objects", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"Δ{param} = raw − other (px)")
    ax.set_ylabel("density")
    return _png(fig)


def globals_normalised(result) -> bytes:
    """Global parameters of each codec normalised to raw; σ_raw/raw error bars on raw."""
    plt = _plt()
    keys = list(result.raw_globals)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        raw = result.raw_globals[k]
        names = ["raw"] + [c.spec for c in result.codecs]
        vals = [1.0] + [c.globals[k]["value"] / raw if raw else math.nan for c in result.codecs]
        rep = np.array([g[k] for g in result.replica_globals], float)
        err = rep.std(ddof=1) / raw if raw and rep.size > 1 else 0.0
        x = np.arange(len(names))
        ax.errorbar([0], [1.0], yerr=[err], fmt="o", color="k", capsize=5, label="raw ± σ_raw")
        ax.plot(x[1:], vals[1:], "s", color="C3")
        ax.axhspan(1 - err, 1 + err, color="0.85", zorder=0)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{k} (raw = {raw:g})", fontsize=9)
        ax.set_ylabel("value / raw")
    return _png(fig)


def epsilon_objects(result) -> bytes:
    """Mean ± std over objects of per-object ε, per parameter and codec, ±1 lines."""
    plt = _plt()
    codecs = [c for c in result.codecs if c.objects]
    params = list(codecs[0].objects) if codecs else []
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(params) * max(len(codecs), 1) ** 0.5), 4.5))
    if not params:
        ax.text(0.5, 0.5, "no objects to score", ha="center", transform=ax.transAxes)
        return _png(fig)
    w = 0.8 / len(codecs)
    x = np.arange(len(params))
    top = 2.0
    for i, c in enumerate(codecs):
        m = np.array([c.objects[p].mean for p in params], float)
        s = np.array([c.objects[p].std for p in params], float)
        m_plot = np.clip(np.nan_to_num(m, nan=0.0, posinf=50, neginf=-50), -50, 50)
        top = max(top, float(np.max(np.abs(m_plot) + np.nan_to_num(s), initial=0.0)))
        ax.bar(x - 0.4 + w * (i + 0.5), m_plot, w, yerr=np.nan_to_num(s), label=c.spec,
               capsize=1.5, error_kw={"lw": 0.7})  # fmt: skip
        # σ_raw = 0 (every replica agrees, the codec does not): ε is infinite
        for j in np.flatnonzero(np.isinf(m)):
            ax.text(x[j] - 0.4 + w * (i + 0.5), m_plot[j], "∞", ha="center",
                    va="bottom" if m[j] > 0 else "top", fontsize=7)  # fmt: skip
    ax.axhline(1, ls=":", color="r")
    ax.axhline(-1, ls=":", color="r")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, params, rotation=60, ha="right", fontsize=8)
    # linear inside ±1 (the verdict band), logarithmic beyond, so 8-bit at ε≈3 and
    # 100:1 JPEG at ε≈50 are both readable on one axis
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(-1.3 * min(top, 100), 1.3 * min(top, 100))
    ax.set_ylabel("mean ε over objects (± std, symlog)")
    ax.legend(fontsize=8, ncol=min(len(codecs), 4))
    return _png(fig)


def feature_epsilon(result) -> bytes:
    """Per-pixel ε of the feature maps averaged over pixels, per codec."""
    plt = _plt()
    names = result.feature_names
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(names)), 4))
    w = 0.8 / max(len(result.codecs), 1)
    x = np.arange(len(names))
    for i, c in enumerate(result.codecs):
        m = [c.features[n]["mean_epsilon"] for n in names]
        ax.bar(x - 0.4 + w * (i + 0.5), m, w, label=c.spec)
    ax.axhline(1, ls=":", color="r")
    ax.axhline(-1, ls=":", color="r")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("pixel-averaged ε (symlog)")
    ax.legend(fontsize=8)
    return _png(fig)


def tolerance_curves(result) -> bytes:
    """Worst |ε| against compression ratio for each swept codec family."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, t in result.tolerance.items():
        pts = [p for p in t["points"] if "ratio" in p]
        r = [p["ratio"] for p in pts]
        e = [min(abs(p["worst"][1]), 1e3) or 1e-3 for p in pts]
        ax.plot(r, e, "o-", label=fam)
    ax.axhline(1, ls=":", color="r")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compression ratio (raw 16-bit / compressed)")
    ax.set_ylabel("worst |ε|")
    ax.legend(fontsize=8)
    return _png(fig)
