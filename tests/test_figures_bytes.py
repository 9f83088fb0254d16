"""The report's image panels are drawn from 8-bit RGB(A): the same PNG as the float images.

`figures.overlays` and `figures.pixel_epsilon_maps` hand matplotlib 8-bit images
(3–4 bytes a pixel kept per panel instead of 12–16 and float64 RGBA while drawing;
issue 16's memory at 4096²). The PNG must not change: each test draws the figure
the float way (the former code, kept here as the definition) and compares bytes.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest


def test_every_byte_survives_matplotlibs_division_by_255() -> None:
    u = np.arange(256, dtype=np.uint8)
    back = np.divide(u, 0xFF, dtype=np.float32).astype(np.float64) * 255  # as matplotlib
    np.testing.assert_array_equal(back.astype(np.uint8), u)


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(3)
    shape = (150, 211)  # not square, rows not a multiple of anything
    img = rng.integers(100, 4000, shape).astype(np.uint16)
    img[:10, :12] = 60000  # beyond the stretch's 99.5th percentile
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = (((yy // 9) % 2) * ((xx // 7) % 2) * (yy // 9 * 100 + xx // 7)).astype(np.int32)
    pe = (rng.standard_normal(shape) * 2.5).astype(np.float32)
    pe[5:20, 30:60] = np.nan  # σ = 0: transparent
    codecs = [
        types.SimpleNamespace(
            spec=f"c{i}", labels=np.roll(lab, 2 * i, 1), pixel_eps=np.roll(pe, 3 * i, 0) * (1 + i)
        )
        for i in range(4)
    ]
    return types.SimpleNamespace(image=img, raw_labels=lab, codecs=codecs)


def _float_overlays(result) -> bytes:
    from rawsigma.analysis.reporting.figures import _outline, _plt, _png, _stretch

    plt = _plt()
    panels = [("raw", result.raw_labels)] + [(c.spec, c.labels) for c in result.codecs]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    base = _stretch(result.image)
    raw_o = _outline(result.raw_labels)
    for ax, (name, lab) in zip(axes.ravel(), panels, strict=False):
        rgb = np.repeat(base[..., None], 3, axis=2)
        if name == "raw":
            rgb[raw_o] = (1.0, 0.85, 0.0)
        else:
            o = _outline(lab)
            rgb[raw_o & ~o] = (0.2, 0.6, 1.0)
            rgb[o & ~raw_o] = (1.0, 0.2, 0.2)
            rgb[o & raw_o] = (1.0, 0.85, 0.0)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name if name == "raw" else f"{name}  (red: codec, blue: raw only)", fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    return _png(fig)


def _float_pixel_eps(result, clim: float = 3.0) -> bytes:
    from rawsigma.analysis.reporting.figures import _plt, _png

    plt = _plt()
    n = len(result.codecs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 4 * rows), squeeze=False)
    im = None
    for ax, c in zip(axes.ravel(), result.codecs, strict=False):
        im = ax.imshow(c.pixel_eps, cmap="RdBu_r", vmin=-clim, vmax=clim, interpolation="nearest")
        pe = c.pixel_eps[np.isfinite(c.pixel_eps)]
        rms = float(np.sqrt(np.mean(pe.astype(np.float64) ** 2))) if pe.size else math.nan
        ax.set_title(f"{c.spec}: Δ/σ (rms {rms:.2f})", fontsize=9)
        ax.axis("off")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="Δ/σ")
    return _png(fig)


def _resized(result, f):  # type: ignore[no-untyped-def]
    return types.SimpleNamespace(
        image=f(result.image),
        raw_labels=f(result.raw_labels),
        codecs=[
            types.SimpleNamespace(spec=c.spec, labels=f(c.labels), pixel_eps=f(c.pixel_eps))
            for c in result.codecs
        ],
    )


# matplotlib colour-maps a scalar image before resampling ("rgba" stage) unless each
# pixel covers 3 display pixels or more ("data" stage): 40×50 panels are drawn
# enlarged (data stage), 150×211 about 1.7× and 600×844 shrunk (rgba stage)
@pytest.mark.parametrize("how", ["crop", "as is", "4x"])
def test_eight_bit_panels_draw_the_same_png(result, how) -> None:
    from rawsigma.analysis.reporting import figures

    f = {
        "crop": lambda a: a[:40, :50],
        "as is": lambda a: a,
        "4x": lambda a: np.kron(a, np.ones((4, 4), a.dtype)),
    }[how]
    r = _resized(result, f)
    assert figures.overlays(r) == _float_overlays(r)
    assert figures.pixel_epsilon_maps(r) == _float_pixel_eps(r)
