"""Deterministic fluorescence-like scenes and the reference camera of the codec benchmark.

The reference frame of issue 4: a 2048×2048 uint16 frame from a simulated sCMOS camera
(gain ≈ 0.5 ADU/e⁻ ± 1.5 %, offset ≈ 100 ADU, lognormal read noise ≈ 2 ADU with 0.5 %
random-telegraph pixels) imaging blobs at three scales, filaments and puncta under
vignetting, peak ≈ 3000 e⁻ over ≈ 8 e⁻ background. Smaller shapes give the same
statistics for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rawsigma.acquire.sensor_model import SensorModel

__all__ = ["fluorescence_scene", "reference_camera", "reference_frame"]


def fluorescence_scene(
    shape: tuple[int, int] = (2048, 2048),
    seed: int = 0,
    peak: float = 3000.0,
    background: float = 8.0,
) -> np.ndarray:
    """Expected photo-electrons of a fluorescence-like scene.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    seed : int
        Seed of the scene layout.
    peak, background : float
        Approximate maximum and background level, e⁻.

    Returns
    -------
    ndarray, float32 (H, W)
        Mean photo-electrons per pixel (≥ 0).
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = (int(shape[0]), int(shape[1]))
    area = h * w / 2048.0**2
    signal = np.zeros((h, w), np.float64)
    # blobs at three scales: (count at 2048², sigma px, amplitude range relative)
    for count, sigma, amp in (
        (40, 40.0, (0.2, 0.5)),
        (250, 10.0, (0.2, 0.8)),
        (900, 3.0, (0.1, 0.6)),
    ):
        n = max(1, int(round(count * area)))
        imp = np.zeros((h, w), np.float64)
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        np.add.at(imp, (ys, xs), rng.uniform(*amp, n) * 2 * np.pi * sigma**2)
        signal += ndi.gaussian_filter(imp, sigma, mode="constant", truncate=3.0)
    # filaments: smooth random walks, 1.2 px wide
    imp = np.zeros((h, w), np.float64)
    for _ in range(max(1, int(round(80 * area)))):
        n_steps = int(rng.integers(150, 600))
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.08, n_steps))
        y = rng.uniform(0, h) + np.cumsum(np.sin(ang))
        x = rng.uniform(0, w) + np.cumsum(np.cos(ang))
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        np.add.at(imp, (y[ok].astype(int), x[ok].astype(int)), rng.uniform(0.1, 0.4) * 7.5)
    signal += ndi.gaussian_filter(imp, 1.2, mode="constant")
    # puncta: diffraction-limited spots
    n = max(1, int(round(3000 * area)))
    imp = np.zeros((h, w), np.float64)
    np.add.at(
        imp, (rng.integers(0, h, n), rng.integers(0, w, n)), rng.uniform(0.1, 1.0, n) * 2 * np.pi
    )
    signal += ndi.gaussian_filter(imp, 1.0, mode="constant")
    # vignetting: cos^4 falloff to ~0.6 in the corners
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (0.5 * max(h, w)) ** 2
    vignette = 1.0 / (1.0 + 0.12 * r2) ** 2
    signal *= (peak - background) / max(np.percentile(signal, 99.999), 1e-12)
    np.clip(signal, 0, peak - background, out=signal)
    return ((signal + background) * vignette).astype(np.float32)


def reference_camera(shape: tuple[int, int] = (2048, 2048), seed: int = 0) -> SensorModel:
    """The benchmark's simulated sCMOS camera (maps drawn from ``seed``).

    Gain 0.5 ADU/e⁻ (1.5 % spread), offset 100 ± 1 ADU, lognormal read noise with
    median 2 ADU, 0.5 % RTS pixels (6–12 ADU), QE 1 (photons are e⁻), no PRNU, no
    dark current, 16-bit ADC.
    """
    from rawsigma.acquire.sensor_model import SensorModel

    rng = np.random.default_rng(seed + 1000)
    h, w = (int(shape[0]), int(shape[1]))
    gain = 0.5 * (1 + 0.015 * rng.standard_normal((h, w)))
    offset = 100.0 + rng.standard_normal((h, w))
    rn = 2.0 * np.exp(0.2 * rng.standard_normal((h, w)))
    rts = np.zeros((h, w))
    m = rng.random((h, w)) < 0.005
    rts[m] = rng.uniform(6, 12, int(m.sum()))
    rn = np.sqrt(rn**2 + 0.25 * rts**2)
    return SensorModel(
        gain=gain,
        offset=offset,
        read_noise=rn,
        prnu=np.ones((h, w)),
        dark_current=np.zeros((h, w)),
        rts_amplitude=rts,
        qe=1.0,
        full_well=100000.0,
        bit_depth=16,
        name="noisecodec-reference",
        seed=seed,
    )


def reference_frame(
    shape: tuple[int, int] = (2048, 2048), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, SensorModel]:
    """Reference raw frame, its noise-free electrons and the camera.

    Returns
    -------
    frame : ndarray, uint16 (H, W)
        Raw frame, ADU.
    electrons : ndarray, float32 (H, W)
        Expected photo-electrons (the truth λ).
    camera : SensorModel
        The simulated camera (``camera.true_profile()`` is its exact profile).
    """
    cam = reference_camera(shape, seed)
    lam = fluorescence_scene(shape, seed)
    frame = cam.expose(lam, 0.0, np.random.default_rng(seed + 2000))
    return frame, lam, cam
