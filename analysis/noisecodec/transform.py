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

Below the offset the argument ``e + σ_e²`` can vanish; formats 1–3 clipped it at 0 (all
such pixels decoded near the offset). Format 4 continues the transform along its tangent
below the knee ``v_k = σ_e²`` (see `knee_params`): bins of ``S·σ_e`` e⁻ there, invertible,
so every pixel stays within ``S/2·σ + g·S²/24 + 1`` ADU of its raw value (½ ADU output
rounding, ½ ADU offset jitter of the maps).

Decoding is unbiased: without dither each code is reconstructed at the conditional mean
of e⁻ over the pixels that had that code (a table sent with the data); with dither the
analytic inverse minus the ``S²/48`` convexity term is exactly unbiased.
"""

from __future__ import annotations

import math

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
    edges = np.append(lower_edges, np.inf)
    t = 2.0 * np.sqrt(np.maximum(edges + c0, 0.0))
    t[-1] = t[-2] + (t[-2] - t[-3] if t.size > 2 else 1.0)
    tc = 0.5 * (t[1:] + t[:-1])
    d = t[1:] - t[:-1]
    rec = 0.25 * tc * tc - d * d / 48.0 - c0
    # bins wholly below the transform's zero (values below the offset by more than the
    # read noise allows): the transform is flat there, the bin's centre in e⁻ is unbiased
    below = edges[1:] + c0 <= 0.0
    rec[below] = 0.5 * (edges[:-1] + edges[1:])[below]
    return rec


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


# ---------------------------------------------------------------- format 4: the knee
# Below ``v = e + c0 = v_k`` the transform continues along its tangent at ``v_k``
# (``t = t_k + (v − v_k)/sqrt(v_k)``, ``t_k = 2 sqrt(v_k)``): defined and invertible for
# any value below the offset, with a constant step ``S·sqrt(v_k)`` e⁻ there. Formats 1–3
# clip ``v`` at 0, so every pixel more than ``σ_e²`` e⁻ below the offset got code 0.
KNEE_FRACTION = 1.0  # v_k = KNEE_FRACTION · σ_e²: the knee at the offset, bins of S·σ_e below


def knee_params(v_min: float, v_knee: float, step: float, dither: bool) -> np.ndarray:
    """Knee parameters ``[v_k, t_k, 1/sqrt(v_k), code shift]`` of a stream (see `kernels.vst`).

    Parameters
    ----------
    v_min : float
        Smallest ``e + c0`` of the frames (e⁻²).
    v_knee : float
        Knee ``v_k`` (e⁻², > 0), usually ``KNEE_FRACTION · σ_e²``.
    step : float
        Quantisation step S.
    dither : bool
        Subtractive dither (codes ``floor(t/S + u)`` can be one lower).

    Returns
    -------
    ndarray (4,)
        All zeros (no knee: the frames stay above it and the stream keeps formats 1–3)
        or the knee with a code shift that keeps every code >= 0.
    """
    out = np.zeros(4, np.float64)
    if not (v_knee > 0) or v_min >= v_knee:
        return out
    tk = 2.0 * np.sqrt(v_knee)
    ivk = 1.0 / np.sqrt(v_knee)
    t_min = tk + (v_min - v_knee) * ivk
    shift = max(0, int(np.ceil(-t_min / step)) + 1 + int(dither))
    out[:] = (v_knee, tk, ivk, shift)
    return out


def knee_inverse(t: np.ndarray, c0: float, kp: np.ndarray) -> np.ndarray:
    """e⁻ of transform values ``t`` (numpy twin of `kernels.vst_inverse`)."""
    t = np.asarray(t, np.float64)
    return np.where(t >= kp[1], 0.25 * t * t - c0, kp[0] - c0 + (t - kp[1]) / kp[2])


def knee_convexity(t: np.ndarray, step: float, kp: np.ndarray) -> np.ndarray:
    """Numpy twin of `kernels.convexity`: ``E[inv(t + w)] − inv(t)``, ``w`` uniform."""
    t = np.asarray(t, np.float64)
    a = t - kp[1] - 0.5 * step
    b = a + step
    d = np.maximum(t - kp[1], 0.0)
    return (_cube(np.maximum(b, 0.0)) - _cube(np.maximum(a, 0.0))) / (12.0 * step) - 0.25 * d * d


def _cube(x: np.ndarray) -> np.ndarray:
    """``x ** 3`` by libm's ``pow``, element by element. numpy's power has SIMD versions
    (AVX-512) that round differently, so the "recon" section of a stream depended on the
    CPU that wrote it (RESULTS.md, session 11); with libm's the table is the one numpy
    gave without AVX-512 (the same libm, e.g. glibc's, gives the same bytes on any CPU).
    Tables of ``n_codes`` entries, made once per camera: the loop costs nothing that
    counts. Beyond ``pow``'s range (|x| > 5e102), ±inf as numpy gives."""

    def cube(v: float) -> float:
        return math.pow(v, 3.0) if abs(v) < 1e100 else math.copysign(math.inf, v) * abs(v)

    return np.array([cube(v) for v in np.asarray(x, np.float64).ravel().tolist()],
                    np.float64).reshape(np.shape(x))  # fmt: skip


def knee_recon(n_codes: int, step: float, c0: float, kp: np.ndarray) -> np.ndarray:
    """Unbiased per-code reconstruction (e⁻) of a stream with a knee (`unbiased_recon`
    with the convexity term of the piecewise inverse: ``S²/48`` above the knee, 0 on
    the linear part)."""
    t = step * (np.arange(n_codes, dtype=np.float64) - kp[3])
    return knee_inverse(t, c0, kp) - knee_convexity(t, step, kp)
