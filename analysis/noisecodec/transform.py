"""Variance-stabilising transform, quantiser design and reconstruction of the noise codec.

Noise model (per pixel ``i``): ``e = (x − o_i) / g_i`` photo-electrons with variance
``e + σ_e²``, where ``σ_e`` is ONE global read noise in e⁻ (global read noise in ADU over
the global gain: a per-pixel read noise inside the transform turns the σ map into a fixed
pattern in the code domain and costs ~17 % of the ratio). The generalised Anscombe
transform ``t = 2·sqrt(e + σ_e²)`` (without Anscombe's second-order 3/8, so that a step of
S in ``t`` is exactly S·σ of the noise model) has unit variance; codes are ``round(t / S)``
(step ``S·σ``), ``floor(t / S + u)`` with subtractive dither ``u``, or, with a hard bound
``k``, the index of a bin designed in e⁻ so that every value of the bin lies within
``k·σ(e) − 0.5 ADU`` of the bin's reconstruction (``σ(e) = g·sqrt(max(e, 0) + σ_e²)``
ADU), which keeps ``|decoded − raw| ≤ k·σ`` after rounding to integer ADU.

Decoding is unbiased: without dither each code is reconstructed at the conditional mean
of e⁻ over the pixels that had that code (a table sent with the data); with dither the
analytic inverse minus the ``S²/48`` convexity term is exactly unbiased.
"""

from __future__ import annotations

import numpy as np

ANSCOMBE = 0.0


def vst_constant(sigma_e: float) -> float:
    """Constant ``c0`` of ``t = 2·sqrt(e + c0)``: ``σ_e²`` (σ_e in e⁻; `ANSCOMBE` = 0:
    the 3/8 second-order term would widen the dark bins by 3/8 e⁻² for no benefit at
    these step sizes)."""
    return ANSCOMBE + float(sigma_e) ** 2


def analytic_recon(n_codes: int, step: float, sigma_e: float) -> np.ndarray:
    """Algebraic inverse of the bin centres, e⁻ (float64, length ``n_codes``)."""
    t = step * np.arange(n_codes, dtype=np.float64)
    return 0.25 * t * t - vst_constant(sigma_e)


def design_bounded_bins(
    e_min: float,
    e_max: float,
    k: float,
    step: float,
    sigma_e: float,
    gain_min: float,
    gain_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins in e⁻ that honour ``|decoded − raw| ≤ k·σ`` per pixel.

    Every bin ``[lo_j, lo_{j+1})`` has a feasible reconstruction interval
    ``[rmin_j, rmax_j]``: any value there is within ``k·s(e) − m`` of every ``e`` in the bin,
    with ``s(e) = sqrt(max(e, 0) + σ_e²)`` (e⁻ rms) and ``m = 0.5 / gain_min`` (room for the
    final rounding to integer ADU). Bins are designed with a half-width of
    ``0.9·min(k, S/2)`` so the conditional mean can move inside the interval.

    Returns
    -------
    lower_edges, rmin, rmax : ndarray, float64
        Lower edge of each bin (the first is ``-inf`` in effect) and the feasible
        reconstruction interval, e⁻.
    """
    if k * sigma_e * gain_min <= 0.5:
        raise ValueError(
            f"max_error={k} sigma is below the ADU rounding of the output "
            f"(read noise {sigma_e * gain_min:.2f} ADU); use a larger bound"
        )
    m = 0.5 / gain_min
    kd = 0.9 * min(k, step / 2.0)

    def s(e: float) -> float:
        return float(np.sqrt(max(e, 0.0) + sigma_e**2))

    def upper(r: float, kk: float) -> float:
        # largest h with h - kk*s(h) <= r - m (h - kk s(h) increases for kk < 2 sigma_e)
        rhs = r - m
        h_neg = rhs + kk * sigma_e
        if h_neg <= 0.0:
            return h_neg
        u = 0.5 * (kk + np.sqrt(kk * kk + 4.0 * (rhs + sigma_e**2)))
        return float(u * u - sigma_e**2)

    edges = [e_min - 1.0]
    rmins, rmaxs = [], []
    lo = edges[0]
    while True:
        r = lo + kd * s(lo) - m
        if r <= lo:
            raise ValueError("max_error too small for the ADU rounding margin")
        hi = upper(r, kd)
        rmax = lo + k * s(lo) - m
        rmin = hi - k * s(hi) + m
        rmins.append(rmin)
        rmaxs.append(rmax)
        if hi > e_max:
            break
        edges.append(hi)
        lo = hi
    return np.array(edges), np.array(rmins), np.array(rmaxs)


def unbiased_recon(n_codes: int, step: float, sigma_e: float) -> np.ndarray:
    """Per-code reconstruction in e⁻ that is unbiased given the true signal.

    The noise (unit variance in the transform domain) dithers the quantiser, so the
    quantisation error is uniform over the bin and, by Sheppard's correction,
    ``E[(S·k)²] = E[t²] + S²/12``: the algebraic inverse of the bin centre minus ``S²/48``
    has the raw mean. This is the conditional mean of e⁻ over a bin whose transform-domain
    density is flat.
    """
    return analytic_recon(n_codes, step, sigma_e) - step * step / 48.0


def bin_recon(lower_edges: np.ndarray, c0: float) -> np.ndarray:
    """Unbiased reconstruction (e⁻) of bins given by their lower edges in e⁻.

    Same argument as `unbiased_recon` for a bin of width ``Δ`` in the transform domain:
    ``t_c²/4 − Δ²/48 − c0`` with ``t_c`` the bin centre.
    """
    t = 2.0 * np.sqrt(np.maximum(np.append(lower_edges, np.inf) + c0, 0.0))
    t[-1] = t[-2] + (t[-2] - t[-3] if t.size > 2 else 1.0)
    tc = 0.5 * (t[1:] + t[:-1])
    d = t[1:] - t[:-1]
    return 0.25 * tc * tc - d * d / 48.0 - c0


def lattice_recon(
    upper_edges: np.ndarray, offset: float, gain: float, c0: float, fallback: np.ndarray
) -> np.ndarray:
    """Unbiased reconstruction (e⁻) when every pixel has the same offset and gain.

    Raw values are integers, so with one global offset and gain all pixels share the same
    ADU lattice and a bin really holds the integers ``x_min..x_max``; noise dithers those
    as the continuous interval ``[x_min − ½, x_max + ½]`` (the raw rounding), whose
    transform-domain centre and width give the reconstruction as in `bin_recon`.
    (Per-pixel offsets shift the lattice from pixel to pixel and average this out.)

    Parameters
    ----------
    upper_edges : ndarray
        Upper edge of each code's bin, e⁻ (``inf`` for the last).
    offset, gain : float
        ADU and ADU/e⁻.
    c0 : float
        Transform constant (`vst_constant`).
    fallback : ndarray
        Reconstruction for bins that hold no integer.
    """
    hi_x = np.ceil(offset + gain * np.asarray(upper_edges, np.float64)) - 1.0
    lo_x = np.concatenate([[-np.inf], hi_x[:-1] + 1.0])
    rec = np.asarray(fallback, np.float64).copy()
    ok = np.isfinite(hi_x) & (hi_x >= lo_x)
    ok &= np.isfinite(lo_x)
    a = 2.0 * np.sqrt(np.maximum((lo_x[ok] - 0.5 - offset) / gain + c0, 0.0))
    b = 2.0 * np.sqrt(np.maximum((hi_x[ok] + 0.5 - offset) / gain + c0, 0.0))
    tc, d = 0.5 * (a + b), b - a
    rec[ok] = 0.25 * tc * tc - d * d / 48.0 - c0
    return rec
