"""Whether a given offset (``--offset``, or a camera preset's) fits the image.

A given offset fixes where the model's noise starts: the read noise alone at the
offset, plus the shot noise ``gain · (x − offset)`` above it. Three measurable signs
that it does not fit the image (`check_given_offset`):

* **The darkest pixels are quieter than the model says.** `blocks.dark_floor` measures
  their noise (the left semi-deviation of ``x − ring mean``); the model's value of that
  same statistic at their level (Poisson electrons times the gain plus Gaussian read
  noise, simulated with a fixed seed, so a high gain's rare events count as they do in
  the measurement) exceeding it by more than `SIGMA_TOLERANCE` means the offset is too
  low for the dark level (or the read noise too high). Structure in the dark region
  only raises the measured noise, so a model quieter than the measurement is not
  flagged (OPT frames and phase contrast have no dark region).
* **The model's variance misses the blocks' measured variances.** A given offset below
  the image's dark level makes the fit pass through (offset, 0), which flattens the
  variance line: the median over the blocks of measured ÷ model variance leaves
  [1/`BLOCK_TOLERANCE`, `BLOCK_TOLERANCE`] (a simulated camera 40 ADU too low: 13×;
  BBBC050 at offset 0: 1.8×).
* **Pixels lie well below the offset.** More than `BELOW_FRACTION` of the pixels more
  than 3σ below it (σ the larger of the model's read noise and the measured dark noise),
  where the model puts at most 0.13 % of the dark pixels: the offset is too high.

On BBBC050 (offset estimated at 101.5 ADU, dark noise 2.21 ADU): ``--offset 100`` (the
README's) gives 1.13× at the darkest pixels and 1.01× over the blocks, no warning;
95 ADU 1.7×, 90 ADU 4.6×, 104 ADU 3.8× at the darkest pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rawsigma.analysis.noisemodel.blocks import DARK_BOX, STATIC_MAX

__all__ = [
    "BELOW_FRACTION",
    "BLOCK_TOLERANCE",
    "SIGMA_TOLERANCE",
    "check_given_offset",
    "model_dark_sigma",
]

#: The model's dark-floor noise may exceed the measured one by this factor.
SIGMA_TOLERANCE = 1.5
#: The blocks' median measured ÷ model variance may be this far from 1 (either way).
BLOCK_TOLERANCE = 1.5
#: Fraction of the pixels that may lie more than 3σ below the offset.
BELOW_FRACTION = 0.01
_N_SAMPLES = 40_000


def model_dark_sigma(gain: float, offset: float, read_noise: float, level: float) -> float:
    """The dark floor's noise statistic (ADU) for the model at the value ``level``.

    Samples ``gain · Poisson((level − offset)/gain) + N(0, read_noise²)`` for a pixel and
    its ``DARK_BOX² − 1`` ring neighbours (seed 0) and applies `blocks.dark_floor`'s
    estimator to ``x − ring mean``.
    """
    rng = np.random.default_rng(0)
    lam = max(float(level) - float(offset), 0.0) / float(gain)
    n_ring = DARK_BOX * DARK_BOX - 1
    s = gain * rng.poisson(lam, (_N_SAMPLES, n_ring + 1)).astype(np.float64)
    if read_noise > 0:
        s += rng.normal(0.0, read_noise, s.shape)
    u = s[:, 0] - s[:, 1:].mean(axis=1)
    below = u[u < np.median(u)] - np.median(u)
    if below.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(below * below)) / np.sqrt(1 + 1 / n_ring))


def check_given_offset(
    valid: np.ndarray,
    floor: tuple[float, float, int] | None,
    blocks: tuple[np.ndarray, np.ndarray],
    model: tuple[float, float, float, float],
    given: str = "the given",
    *,
    static: float | None = None,
) -> dict[str, Any]:
    """Record of the three checks above; ``warning`` is "" when the offset fits.

    Parameters
    ----------
    valid : ndarray
        The image's unsaturated pixel values (ADU).
    floor : (level, sigma, n) or None
        `blocks.dark_floor` of the image.
    blocks : (mean, var)
        The blocks' means (ADU) and noise variances (ADU²).
    model : (gain, offset, read_noise, quad)
        The estimated profile (ADU/e⁻, ADU, ADU rms) and the fit's quadratic term.
    given : str
        Whose offset, for the warning: "the given", "the camera preset's", …
    static : float, optional
        `blocks.static_fraction` of a stack: above `blocks.STATIC_MAX` the blocks'
        variances hold fixed pattern or structure, not only noise, and their check is
        skipped (recorded as ``block_check_skipped``).
    """
    gain, offset, read_noise, quad = model
    rec: dict[str, Any] = {"offset_adu": float(offset)}
    problems = []
    mean, var = blocks
    s = np.maximum(np.asarray(mean, float) - offset, 0.0)
    mvar = gain * s + quad * s * s + read_noise * read_noise
    ok = mvar > 0
    if static is not None and static > STATIC_MAX:
        rec["block_check_skipped"] = f"{static:.0%} of the blocks' variance repeats between frames"
    elif np.any(ok):
        r = float(np.median(np.asarray(var, float)[ok] / mvar[ok]))
        rec["block_variance_ratio"] = r
        if not 1 / BLOCK_TOLERANCE <= r <= BLOCK_TOLERANCE:
            problems.append(
                f"the blocks' measured noise variance is {r:.2g}× the model's (median over "
                f"{int(np.count_nonzero(ok))} blocks"
                + ("; an offset too low flattens the model's variance line)" if r > 1 else ")")
            )
    sigma = max(float(read_noise), floor[1] if floor is not None else 0.0)
    below = float(np.mean(valid < offset - 3 * sigma)) if valid.size and sigma > 0 else 0.0
    rec["fraction_below_3sigma"] = below
    if floor is not None and floor[1] > 0:
        m_d = model_dark_sigma(gain, offset, read_noise, floor[0])
        ratio = m_d / floor[1]
        rec.update(dark_level_adu=floor[0], dark_sigma_adu=floor[1],
                   model_dark_sigma_adu=m_d, ratio=ratio)  # fmt: skip
        if ratio > SIGMA_TOLERANCE:
            why = (
                "the offset is too low for the dark level, or the gain too high"
                if floor[0] > offset
                else "they lie below the offset: it is too high"
            )
            problems.append(
                f"the model's noise at the darkest pixels ({floor[0]:.6g} ADU) is "
                f"{m_d:.3g} ADU, {ratio:.1f}× their measured {floor[1]:.3g} ADU ({why})"
            )
    if below > BELOW_FRACTION:
        problems.append(
            f"{100 * below:.2g} % of the pixels lie more than 3σ ({sigma:.3g} ADU) below it "
            "(an offset too high)"
        )
    advice = (
        "check the preset (--camera list), or give --offset"
        if "preset" in given
        else "check it (without --offset it is estimated from the image)"
    )
    rec["warning"] = (
        f"{given} offset {offset:g} ADU does not fit the image (gain {gain:.3g} ADU/e-): "
        f"{'; '.join(problems)}; {advice}"
        if problems
        else ""
    )
    return rec
