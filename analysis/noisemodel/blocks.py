"""Per-block noise measurement of the single-image noise estimate (`noise_estimate`).

Each block's noise variance is the average of ``|F(k)|²/G(k)`` over the frequencies
beyond ``K_CUT`` of Nyquist of its periodic component (Moisan's periodic-plus-smooth
decomposition), ``G`` the exact gain of that decomposition for white noise; see the
notes of `rawsigma.analysis.noisemodel.estimate`.
"""

from __future__ import annotations

import functools

import numpy as np

K_CUT = 0.9  # fraction of the Nyquist frequency beyond which a block is pure noise


def _saturation_mask(img: np.ndarray, max_adu: int) -> np.ndarray:
    bad = (img >= max_adu) | (img <= 0)
    top = int(img.max())
    if (top + 1) & top == 0 and top >= 255:  # full-scale code 2**b - 1
        bad |= img == top
    return bad


def _periodic_spectrum(blocks: np.ndarray) -> np.ndarray:
    """``rfft2`` of the periodic component of each block (Moisan 2011).

    Removing the smooth component that carries the jump across the block's
    periodic boundary leaves a spectrum free of the ``1/k`` boundary leakage while
    every pixel keeps equal weight (a window would discard most of the data).
    """
    n, th, tw = blocks.shape
    v = np.zeros_like(blocks)
    dy = blocks[:, -1, :] - blocks[:, 0, :]
    dx = blocks[:, :, -1] - blocks[:, :, 0]
    v[:, 0, :] += dy
    v[:, -1, :] -= dy
    v[:, :, 0] += dx
    v[:, :, -1] -= dx
    cy = 2 * np.cos(2 * np.pi * np.fft.fftfreq(th))[:, None]
    cx = 2 * np.cos(2 * np.pi * np.fft.rfftfreq(tw))[None, :]
    den = cy + cx - 4
    den[0, 0] = 1.0
    s_hat = np.fft.rfft2(v) / den
    s_hat[:, 0, 0] = 0
    return np.fft.rfft2(blocks) - s_hat


@functools.lru_cache(maxsize=8)
def _noise_gain(tile: int) -> np.ndarray:
    """``Σ_i |a_k[i]|²`` for ``p_hat(k) = Σ_i a_k[i] u_i`` (the periodic spectrum).

    White noise of variance σ² gives ``E|p_hat(k)|² = σ² · _noise_gain(tile)[k]``.
    Interior pixels contribute 1 each; the border pixels, whose noise is partly
    absorbed by the smooth component, are evaluated exactly with delta images.
    """
    border = np.zeros((tile, tile), bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    idx = np.flatnonzero(border)
    deltas = np.zeros((idx.size, tile * tile))
    deltas[np.arange(idx.size), idx] = 1.0
    spec = _periodic_spectrum(deltas.reshape(-1, tile, tile))
    power = spec.real**2 + spec.imag**2
    return tile * tile - idx.size + power.sum(axis=0)


def _frequency_mask(tile: int) -> np.ndarray:
    fy = np.fft.fftfreq(tile)[:, None]
    fx = np.fft.rfftfreq(tile)[None, :]
    k = np.hypot(fx, fy)
    step = 1.0 / tile
    mask = k > K_CUT * 0.5
    mask &= np.abs(fx) > 0.5 * step  # skip the kx = 0 and ky = 0 axes
    mask &= np.abs(fy) > 0.5 * step
    return mask


def _plane_blocks(plane: np.ndarray, tile: int, max_adu: int) -> tuple[np.ndarray, np.ndarray]:
    """One plane's whole ``tile``² blocks ``(n, tile, tile)``, row by row, and a mask.

    The mask marks the blocks without a saturated pixel.
    """
    ny, nx = plane.shape[0] // tile, plane.shape[1] // tile
    p = plane[: ny * tile, : nx * tile]
    blocks = p.reshape(ny, tile, nx, tile).swapaxes(1, 2).reshape(-1, tile, tile)
    return blocks, np.asarray(~_saturation_mask(blocks, max_adu).any(axis=(1, 2)))


def tile_statistics(
    image: np.ndarray, tile: int = 64, max_adu: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-block weighted mean and high-frequency noise variance.

    Parameters
    ----------
    image : (H, W) or (N, H, W) integer ndarray
        Raw image(s), ADU.
    tile : int
        Block edge, pixels (>= 16).
    max_adu : int, optional
        ADC full scale; default the dtype maximum.

    Returns
    -------
    mean, var : 1-D float64 ndarray
        Block means (ADU) and high-frequency noise variances (ADU²) of the usable
        blocks.
    n_blocks : int
        Number of blocks before rejecting saturated ones.
    """
    img = np.asarray(image)
    planes = img.reshape(-1, *img.shape[-2:])
    if max_adu is None:
        max_adu = int(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 2**16 - 1
    fmask = _frequency_mask(tile)
    ngain = _noise_gain(tile)[fmask]
    means: list[np.ndarray] = []
    vars_: list[np.ndarray] = []
    n_blocks = 0
    for plane in planes:
        blocks, ok = _plane_blocks(plane, tile, max_adu)
        n_blocks += blocks.shape[0]
        b = blocks[ok].astype(np.float64)
        if not b.size:
            continue
        means.append(b.mean(axis=(1, 2)))
        spec = _periodic_spectrum(b)
        power = (spec.real**2 + spec.imag**2)[:, fmask]
        vars_.append((power / ngain).mean(axis=1))
    if not means:
        return np.empty(0), np.empty(0), n_blocks
    return np.concatenate(means), np.concatenate(vars_), n_blocks


DARK_FRACTION = 5.0  # percent of the pixels, by local mean, that make the dark floor
DARK_BOX = 5  # edge of the local-mean window, pixels
DARK_MIN_PIXELS = 200
_DARK_MAX_PIXELS = 4_000_000  # planes sampled evenly beyond this many pixels


def dark_floor(image: np.ndarray, max_adu: int | None = None) -> tuple[float, float, int] | None:
    """Noise of the darkest pixels, measured pixel by pixel (no blocks).

    The pixels whose ``DARK_BOX²`` local mean is among the darkest `DARK_FRACTION` %
    (none within the window saturated or zero) give the residual ``u = x − ring mean``
    (the ring: the window without its centre; for white noise ``var(u) = σ²(1 + 1/24)``
    and ``u`` is independent of the local mean that selected the pixel). The noise is
    the LEFT semi-deviation of ``u`` (rms of ``u − median`` below the median; less
    sensitive to the integer steps of the data than a percentile): photo-electron events
    and signal edges only add to the right side, so a dark background with a
    high-gain camera's sparse events (EMCCD, spinning-disk confocal) is measured at its
    read-noise core. Structure in the dark region can only raise it.

    Parameters
    ----------
    image : (H, W) or (N, H, W) integer ndarray
        Raw image(s), ADU.
    max_adu : int, optional
        ADC full scale; default the dtype maximum.

    Returns
    -------
    (level, sigma, n) or None
        Median value (ADU) and noise (ADU rms) of the darkest pixels and their
        number; None when fewer than `DARK_MIN_PIXELS` pixels are usable.
    """
    from scipy import ndimage

    img = np.asarray(image)
    planes = img.reshape(-1, *img.shape[-2:])
    if max_adu is None:
        max_adu = int(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else 2**16 - 1
    step = max(1, int(np.ceil(planes.shape[0] * planes[0].size / _DARK_MAX_PIXELS)))
    h = DARK_BOX // 2
    levels: list[np.ndarray] = []
    resid: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for plane in planes[::step]:
        f = plane.astype(np.float32)
        box = ndimage.uniform_filter(f, DARK_BOX, mode="nearest")
        ok = ~ndimage.maximum_filter(_saturation_mask(plane, max_adu), DARK_BOX)
        ok[:h], ok[-h:], ok[:, :h], ok[:, -h:] = False, False, False, False
        n_ring = DARK_BOX * DARK_BOX - 1
        ring = (box * (n_ring + 1) - f) / n_ring
        levels.append(box[ok])
        resid.append((f - ring)[ok])
        values.append(plane[ok])
    lev = np.concatenate(levels) if levels else np.empty(0)
    if lev.size * DARK_FRACTION / 100 < DARK_MIN_PIXELS:
        return None
    sel = lev <= np.percentile(lev, DARK_FRACTION)
    u = np.concatenate(resid)[sel].astype(np.float64)
    below = u[u < np.median(u)] - np.median(u)
    sigma = float(np.sqrt(np.mean(below * below))) / np.sqrt(1 + 1 / (DARK_BOX**2 - 1))
    level = float(np.median(np.concatenate(values)[sel]))
    return level, float(sigma), int(np.count_nonzero(sel))


STATIC_PAIRS = 16  # frame pairs sampled by `static_fraction`
# Largest share of the blocks' high-frequency variance that may repeat between frames
# before it is not taken for camera noise (a gain fitted to it: about 1.4x too high).
STATIC_MAX = 0.3


def _plane_spectra(plane: np.ndarray, tile: int, max_adu: int, fmask: np.ndarray) -> tuple:
    """High-frequency periodic spectra of one plane's blocks and their usable mask."""
    blocks, ok = _plane_blocks(plane, tile, max_adu)
    return _periodic_spectrum(blocks.astype(np.float64))[:, fmask], ok


def static_fraction(image: np.ndarray, tile: int, max_adu: int) -> tuple[float, int] | None:
    """Share of the blocks' high-frequency variance that repeats from frame to frame.

    Temporal noise is independent between exposures; what the same block of two
    frames shares at high frequency is the camera's fixed pattern (pixel gain and
    PRNU spread, which grow with the signal) or structure present in both frames.
    Frame ``i`` is paired with frame ``i + N // 2`` (the farthest apart, at most
    `STATIC_PAIRS` pairs, evenly spread); per block pair the correlation of their
    high-frequency spectra ``Re Σ F_i F_j* / sqrt(Σ|F_i|² Σ|F_j|²)``; the median
    over the usable block pairs. About 0 for temporal noise (± ``1/sqrt(n_freq)``
    per block); a fraction ``ρ`` of the variance that is not temporal noise biases a
    gain fitted to it by about ``1/(1 − ρ)``.

    Returns
    -------
    (rho, n_pairs) or None
        None for a single frame or when no block pair is usable.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] < 2:
        return None
    half = img.shape[0] // 2
    firsts = np.unique(np.linspace(0, half - 1, min(half, STATIC_PAIRS)).round().astype(int))
    fmask = _frequency_mask(tile)
    rho: list[np.ndarray] = []
    for i in firsts:
        a, ok_a = _plane_spectra(img[i], tile, max_adu, fmask)
        b, ok_b = _plane_spectra(img[i + half], tile, max_adu, fmask)
        ok = ok_a & ok_b
        if not ok.any():
            continue
        a, b = a[ok], b[ok]
        cross = (a * np.conj(b)).real.sum(axis=1)
        den = np.sqrt((np.abs(a) ** 2).sum(axis=1) * (np.abs(b) ** 2).sum(axis=1))
        rho.append(cross / np.maximum(den, 1e-300))
    if not rho:
        return None
    r = np.concatenate(rho)
    return float(np.median(r)), int(r.size)
