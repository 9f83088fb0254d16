"""Figures of the EMVA 1288 data sheet (matplotlib Agg), one function per figure.

Every function takes a :class:`CameraProfile` and returns a matplotlib ``Figure``;
figures for quantities that were not estimated state why instead of plotting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .emva import SIGMA2_Q
from .plot import _new_figure, _show_map
from .profile import DEFECT_NAMES, CameraProfile

__all__ = [
    "defect_histograms",
    "linearity_figure",
    "maps_figure",
    "ptc_figure",
    "snr_figure",
    "spectrogram_figure",
]


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _ptc_arrays(p: CameraProfile) -> dict[str, np.ndarray]:
    t = p.ptc
    if not t or "mean" not in t or "dark_mean" not in t:
        return {}  # no photon transfer (e.g. a profile estimated from one image)
    sig = np.asarray(t["mean"], float) - np.asarray(t["dark_mean"], float)
    var = np.asarray(t.get("var_corrected", t["var"]), float) - np.asarray(t["dark_var"], float)
    used = np.asarray(t.get("used_for_K", np.ones(sig.size, bool)), bool)
    clip = np.asarray(t.get("clipped_fraction", np.zeros(sig.size)), float)
    tv = np.asarray(t.get("var_corrected", t["var"]), float)
    return {"sig": sig, "var": var, "used": used, "clip": clip, "tvar": tv}


def ptc_figure(p: CameraProfile) -> Any:
    """Photon transfer: ``σ²_y − σ²_y.dark`` against ``μ_y − μ_y.dark`` with the K line."""
    fig = _new_figure((6, 4.2))
    ax = fig.add_subplot()
    a, e = _ptc_arrays(p), p.emva
    if not a or "K" not in e:
        _note(ax, "no photon-transfer table in this profile")
        return fig
    u = a["used"]
    ax.plot(a["sig"][u], a["var"][u], "o", color="tab:blue", label="levels used for K")
    if (~u).any():
        ax.plot(a["sig"][~u], a["var"][~u], "o", mfc="none", color="tab:gray", label="not used")
    xmax = float(np.max(a["sig"][u])) if u.any() else float(np.max(a["sig"]))
    x = np.linspace(0, xmax * 1.05, 50)
    ax.plot(
        x,
        e.get("K_intercept", 0.0) + e["K"] * x,
        "-",
        color="tab:red",
        label=f"K = {e['K']:.4g} DN/e-",
    )
    ax.set_xlabel("μ_y − μ_y.dark (DN)")
    ax.set_ylabel("σ²_y − σ²_y.dark (DN²)")
    ax.set_title("photon transfer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _x_axis(p: CameraProfile) -> tuple[np.ndarray | None, str]:
    t = p.ptc
    ph = np.asarray(t.get("photons", []), float)
    if ph.size and np.all(np.isfinite(ph)) and np.all(ph > 0):
        return ph, "irradiation μ_p (photons/pixel)"
    ex = np.asarray(t.get("exposure", []), float)
    if ex.size and np.all(np.isfinite(ex)) and np.ptp(ex) > 0:
        return ex, "exposure / light control"
    return None, ""


def snr_figure(p: CameraProfile) -> Any:
    """SNR against the signal in electrons (log-log): measured, model and ideal."""
    fig = _new_figure((6, 4.2))
    ax = fig.add_subplot()
    a, e = _ptc_arrays(p), p.emva
    if not a or "K" not in e or "sigma_d" not in e:
        _note(ax, "no photon-transfer table in this profile")
        return fig
    K, sd = e["K"], e["sigma_d"]
    ok = (a["sig"] > 0) & (a["clip"] < 0.01)
    mu_e = a["sig"][ok] / K
    snr = a["sig"][ok] / np.sqrt(np.maximum(a["tvar"][ok], 1e-12))
    ax.loglog(mu_e, snr, "o", color="tab:blue", label="measured")
    top = e.get("mu_e_sat", float(np.max(mu_e)) * 2 if mu_e.size else 1e4)
    x = np.geomspace(0.1, top, 200)
    model = x / np.sqrt(sd**2 + SIGMA2_Q / K**2 + x)
    ax.loglog(x, model, "-", color="tab:red", label="model (K, σ_d)")
    ax.loglog(x, np.sqrt(x), ":", color="k", label="ideal √μ_e")
    if "mu_e_min" in e:
        ax.axvline(e["mu_e_min"], color="tab:green", ls="--", lw=1, label="μ_e.min")
    if "mu_e_sat" in e:
        ax.axvline(e["mu_e_sat"], color="tab:purple", ls="--", lw=1, label="μ_e.sat")
    else:
        ax.text(
            0.02,
            0.95,
            "saturation not estimated: " + str(e.get("not_estimated", {}).get("mu_e_sat", "")),
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )
    ax.set_xlabel("signal μ_e (e-)")
    ax.set_ylabel("SNR")
    ax.set_title("signal-to-noise ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def linearity_figure(p: CameraProfile) -> Any:
    """Mean signal against irradiation with the LS line, and the deviation in %."""
    fig = _new_figure((6, 5))
    e = p.emva
    x, xlabel = _x_axis(p)
    a = _ptc_arrays(p)
    if "LE" not in e or x is None or not a:
        ax = fig.add_subplot()
        why = (e.get("not_estimated") or {}).get("LE", "no levels with known irradiation")
        _note(ax, f"linearity not estimated:\n{why}")
        ax.set_title("linearity")
        return fig
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    sig = a["sig"]
    sat = e.get("mu_y_sat", np.inf) - e.get("mu_y_dark", 0.0)
    sel = (sig >= 0.05 * sat) & (sig <= 0.95 * sat) & (a["clip"] < 0.0015)
    w = 1 / sig[sel] ** 2
    A = np.vstack([np.ones(sel.sum()), x[sel]]).T
    c = np.linalg.lstsq(A * np.sqrt(w)[:, None], sig[sel] * np.sqrt(w), rcond=None)[0]
    fit = c[0] + c[1] * x
    ax1.plot(x, sig, "o", color="tab:gray", mfc="none", label="all levels")
    ax1.plot(x[sel], sig[sel], "o", color="tab:blue", label="5–95 % of saturation")
    ax1.plot(x, fit, "-", color="tab:red", label="weighted LS line")
    ax1.set_ylabel("μ_y − μ_y.dark (DN)")
    ax1.set_title(f"linearity: LE = {e['LE']:.4g} %")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(x[sel], 100 * (sig[sel] - fit[sel]) / fit[sel], "o-", color="tab:blue")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("deviation (%)")
    ax2.set_xlabel(xlabel)
    ax2.grid(alpha=0.3)
    return fig


def _spectrum(img: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum (rms per frequency) along ``axis``, averaged over the other."""
    d = img - img.mean(axis=axis, keepdims=True)
    n = img.shape[axis]
    power = np.abs(np.fft.rfft(d, axis=axis)) ** 2 / n
    power = power.mean(axis=1 - axis)
    return np.fft.rfftfreq(n), np.sqrt(power)


def spectrogram_figure(p: CameraProfile) -> Any:
    """EMVA spatial spectrograms (horizontal and vertical) of the DSNU and PRNU images.

    DSNU image: the offset map (mean dark image, DN); PRNU image: the relative
    response map (%). Peaks reveal periodic (row/column) patterns; a flat spectrum is
    white spatial noise.
    """
    fig = _new_figure((10, 6))
    axs = fig.subplots(2, 2)
    imgs = [("DSNU (dark image)", p.offset.astype(float), "DN")]
    nd = p.provenance.get("dark_frames")
    temporal = float(np.median(p.read_noise)) / np.sqrt(nd) if nd else None
    if p.prnu is not None:
        resp = np.where(p.good, p.prnu, np.nan).astype(float)
        resp = np.where(np.isfinite(resp), resp, np.nanmedian(resp))
        imgs.append(("PRNU (response image)", 100 * (resp - 1), "%"))
    for r, (name, img, unit) in enumerate(imgs):
        for c, (axis, label) in enumerate(((1, "horizontal"), (0, "vertical"))):
            ax = axs[r, c]
            f, amp = _spectrum(img, axis)
            ax.semilogy(f[1:], amp[1:], lw=0.8, label="spectrum")
            ax.axhline(float(np.std(img)), color="tab:red", ls="--", lw=1, label="white level")
            if r == 0 and temporal:
                ax.axhline(temporal, color="tab:gray", ls=":", lw=1, label="temporal noise of mean")
            ax.legend(fontsize=7)
            ax.set_title(f"{name}: {label} spectrogram", fontsize=9)
            ax.set_xlabel("spatial frequency (cycles/pixel)")
            ax.set_ylabel(f"amplitude ({unit})")
            ax.grid(alpha=0.3)
    if len(imgs) == 1:
        for c in range(2):
            _note(axs[1, c], "no PRNU map in this profile")
    return fig


def _bins(v: np.ndarray, n: int = 128) -> np.ndarray:
    """Bin edges whose width is a multiple of the data's quantum (no comb artefacts).

    Mean images of L integer frames take values on a 1/L grid; bins narrower than a
    few grid steps alternately catch one or two of them.
    """
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    u = np.unique(v)
    width = (hi - lo) / n
    if u.size < v.size / 2:
        q = float(np.min(np.diff(u)))
        width = max(q, np.ceil(width / q) * q)
    return np.arange(lo - width / 2, hi + width, width)


def defect_histograms(p: CameraProfile) -> Any:
    """Logarithmic histograms of the DSNU and PRNU images and their accumulated form."""
    fig = _new_figure((10, 6))
    axs = fig.subplots(2, 2)
    off = p.offset.astype(float)
    items = [("DSNU image: offset − mean (DN)", (off - np.mean(off)).ravel())]
    if p.prnu is not None:
        items.append(("PRNU image: response − 1 (%)", (100 * (p.prnu.astype(float) - 1)).ravel()))
    for r, (name, v) in enumerate(items):
        v = v[np.isfinite(v)]
        ax = axs[r, 0]
        ax.hist(v, bins=_bins(v), log=True, color="tab:blue", histtype="stepfilled")
        ax.set_title(f"{name}: histogram", fontsize=9)
        ax.set_ylabel("pixels")
        ax.grid(alpha=0.3)
        ax = axs[r, 1]
        a = np.sort(np.abs(v - np.median(v)))[::-1]
        k = np.unique(np.geomspace(1, a.size, 400).astype(np.int64))  # enough for the curve
        ax.semilogy(a[k - 1], 100 * k / a.size, lw=1)
        ax.set_title(f"{name}: accumulated |deviation|", fontsize=9)
        ax.set_ylabel("pixels with larger deviation (%)")
        ax.grid(alpha=0.3)
    if len(items) == 1:
        for c in range(2):
            _note(axs[1, c], "no PRNU map in this profile")
    return fig


def maps_figure(p: CameraProfile) -> Any:
    """Per-pixel maps: offset, gain, read noise, PRNU, dark current, defects."""
    gtitle = "gain (ADU/e-)"
    if p.provenance.get("gain_map") == "global":
        gtitle = f"gain: global K = {p.gain_global:.4g} ADU/e- on every pixel"
    maps = [
        ("offset (ADU)", p.offset),
        (gtitle, p.gain),
        ("read noise (ADU rms)", p.read_noise),
    ]
    if p.prnu is not None:
        maps.append(("relative response (PRNU)", p.prnu))
    if p.dark_current is not None:
        maps.append(("dark current (ADU/s)", p.dark_current))
    d = p.defects if p.defects is not None else np.zeros(p.shape, np.uint8)
    fig = _new_figure((12, 7))
    axs = fig.subplots(2, 3).ravel()
    good = p.good
    for ax, (title, arr) in zip(axs, maps, strict=False):
        _show_map(fig, ax, arr, title, mask=good)
    ax = axs[len(maps)] if len(maps) < 6 else axs[-1]
    im = ax.imshow(d != 0, cmap="gray_r", interpolation="nearest")
    n = {name: int(np.count_nonzero(d & b)) for b, name in DEFECT_NAMES.items()}
    ax.set_title("defects: " + ", ".join(f"{k} {v}" for k, v in n.items() if v), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    del im
    for ax in axs[len(maps) + 1 :]:
        ax.axis("off")
    return fig
