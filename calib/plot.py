"""PNG figures of camera profiles (matplotlib, Agg canvas; no GUI toolkit).

matplotlib is imported lazily, so importing :mod:`rawsigma.calib` never needs it;
the functions raise :class:`~rawsigma.errors.RawsigmaError` when it is missing.
Figures are written atomically and never replace a file unless ``force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.calib.compare import difference_maps
from rawsigma.calib.profile import DEFECT_NAMES, CameraProfile
from rawsigma.errors import RawsigmaError
from rawsigma.fileio import atomic_write

if TYPE_CHECKING:
    import os

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _new_figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise RawsigmaError(
            "plotting needs matplotlib: pip install matplotlib (or rawsigma[all])"
        ) from None
    return Figure(figsize=figsize, dpi=100, layout="constrained")


def _save(fig: Figure, path: str | os.PathLike[str], force: bool) -> Path:
    path = Path(path)
    with atomic_write(path, force=force) as tmp:
        # the temp name ends in .tmp, so say the format explicitly
        fig.savefig(tmp, format="png")
    return path


def _robust_limits(arr: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    v = arr[mask] if mask is not None and mask.any() else arr.ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _show_map(
    fig: Figure,
    ax: Axes,
    arr: np.ndarray,
    title: str,
    mask: np.ndarray | None = None,
    cmap: str = "viridis",
    symmetric: bool = False,
) -> None:
    lo, hi = _robust_limits(arr, mask)
    if symmetric:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
    im = ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8)


def plot_ptc(ax: Axes, profile: CameraProfile) -> None:
    """Photon-transfer curve: variance against mean (ADU) with the profile's model.

    Uses the PTC table columns ``mean`` and ``var`` (and ``var_corrected`` when
    present); the line is ``K * (mean - offset) + read_noise**2`` from the global
    (median) numbers.
    """
    ptc = profile.ptc
    o, g, r = profile.offset_global, profile.gain_global, profile.read_noise_global
    if "mean" in ptc and "var" in ptc and len(ptc["mean"]):
        mean = np.asarray(ptc["mean"], dtype=float)
        ax.plot(mean, ptc["var"], "o", ms=4, label="measured var")
        if "var_corrected" in ptc:
            ax.plot(mean, ptc["var_corrected"], "s", ms=3, mfc="none", label="flicker-corrected")
        xmax = float(np.nanmax(mean))
    else:
        xmax = o + 0.8 * (profile.max_adu - o)
        ax.text(0.03, 0.9, "no PTC table in profile", transform=ax.transAxes, fontsize=8)
    x = np.linspace(o, max(xmax, o + 1), 100)
    ax.plot(x, g * (x - o) + r * r, "-", lw=1, label=f"K={g:.3g} ADU/e-, r={r:.3g} ADU")
    ax.set_xlabel("mean (ADU)")
    ax.set_ylabel("variance (ADU²)")
    ax.set_title("photon transfer", fontsize=9)
    ax.legend(fontsize=7)


def profile_figure(profile: CameraProfile) -> Figure:
    """Figure with the PTC, offset/gain/read-noise maps, a defect map and histograms."""
    fig = _new_figure((13, 7.5))
    axes = fig.subplots(2, 3)
    good = profile.good
    i = profile.identity
    kind = "estimated" if profile.estimated else "calibrated"
    fig.suptitle(
        f"{i.vendor} {i.model} {i.serial}  ·  profile {profile.profile_id} ({kind})  ·  "
        f"{profile.shape[1]}x{profile.shape[0]} px, bin {i.binning}, {i.bit_depth}-bit",
        fontsize=10,
    )
    plot_ptc(axes[0, 0], profile)
    _show_map(fig, axes[0, 1], profile.offset, "offset (ADU)", good, cmap="gray")
    _show_map(fig, axes[0, 2], profile.gain, "gain (ADU/e-)", good)
    _show_map(fig, axes[1, 0], profile.read_noise, "read noise (ADU rms)", good, cmap="magma")
    ax = axes[1, 1]
    if profile.defects is not None and profile.defects.any():
        ax.imshow(profile.defects != 0, cmap="gray_r", interpolation="nearest")
        counts = {n: int(np.count_nonzero(profile.defects & b)) for b, n in DEFECT_NAMES.items()}
        text = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
        ax.set_title(f"defects: {text}", fontsize=8)
    else:
        ax.imshow(np.zeros(profile.shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title("defects: none", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = axes[1, 2]
    for name, color in (("gain", "C0"), ("read_noise", "C3")):
        arr = getattr(profile, name)[good] if good.any() else getattr(profile, name).ravel()
        rel = arr / np.median(arr) if np.median(arr) else arr
        ax.hist(rel, bins=80, histtype="step", color=color, label=f"{name} / median")
    ax.set_yscale("log")
    ax.set_xlabel("relative to median")
    ax.set_title("map distributions (good pixels)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def save_profile_plot(
    profile: CameraProfile, path: str | os.PathLike[str], force: bool = False
) -> Path:
    """Write :func:`profile_figure` as PNG to ``path`` (atomic; ``force`` to replace)."""
    return _save(profile_figure(profile), path, force)


def comparison_figure(a: CameraProfile, b: CameraProfile, comparison: dict[str, Any]) -> Figure:
    """Difference maps ``b - a`` and their histograms (see :func:`compare_profiles`)."""
    diffs = difference_maps(a, b)
    fig = _new_figure((13, 7.5))
    fig.suptitle(f"profile {b.profile_id} − {a.profile_id}", fontsize=10)
    axes = fig.subplots(2, 3)
    if not diffs:
        for ax in axes.ravel():
            ax.axis("off")
        axes[0, 0].text(0, 0.5, comparison.get("reason", "maps not comparable"), fontsize=10)
        return fig
    roi = comparison.get("roi")
    good = None
    if roi is not None:
        good = a.crop(roi).good & b.crop(roi).good
    units = {"offset": "ADU", "gain": "ADU/e-", "read_noise": "ADU rms"}
    for j, (name, diff) in enumerate(diffs.items()):
        _show_map(fig, axes[0, j], diff, f"Δ {name} ({units[name]})", good, "RdBu_r", True)
        ax = axes[1, j]
        v = diff[good] if good is not None and good.any() else diff.ravel()
        ax.hist(v[np.isfinite(v)], bins=100, histtype="stepfilled", alpha=0.7)
        st = comparison.get("maps", {}).get(name, {})
        label = f"median {st.get('median', np.nan):.3g}, MAD {st.get('mad', np.nan):.3g}"
        if "n_significant" in st:
            label += f"\n{st['n_significant']} px > {comparison.get('k', 3):g}×SE"
        ax.set_title(label, fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel(f"Δ {name} ({units[name]})")
    return fig


def save_comparison_plot(
    a: CameraProfile,
    b: CameraProfile,
    comparison: dict[str, Any],
    path: str | os.PathLike[str],
    force: bool = False,
) -> Path:
    """Write :func:`comparison_figure` as PNG to ``path`` (atomic; ``force`` to replace)."""
    return _save(comparison_figure(a, b, comparison), path, force)
