"""A simulated optical-projection-tomography (OPT) acquisition with known truth.

The sample is a 3D organ (an ellipsoid with an inner, dimmer "ventricle") holding
fluorescent plaque-like inclusions of several sizes; it has a fluorescence map
(emission per voxel) and an attenuation map (1/voxel). It turns about the row axis
(axis 0, parallel beam): at every angle the camera sees, per detector pixel, the
line integral along the beam (axis 1 after rotation) of

- ``mode="fluorescence"`` (emission OPT): ``Σ f(s)·exp(−∫_s^camera μ)`` — the
  fluorescence, attenuated on its way out of the sample;
- ``mode="transmission"`` (bright-field OPT): ``exp(−Σ μ)`` times the flat field.

The photons of each projection are recorded through the camera model
(:class:`rawsigma.acquire.sensor_model.SensorModel`): Poisson photo-electrons,
per-pixel gain, offset, read noise, ADC rounding — so every projection carries the
camera's own Poisson–Gaussian noise, and the calibrated profile of that camera is
the right model for the replicas of the scoring step.

Geometry: projections are ``(n_angles, n_rows, n_det)``; the volume is
``(n_rows, n_det, n_det)`` = (row, y, x) with the rotation axis at detector pixel
``n_det // 2 + cor_offset`` (skimage's centre). Angle θ rotates the slice by −θ in
the (y, x) plane, then sums over y: the convention of ``skimage.transform.radon``
(so ``iradon`` of ``projections[:, r, :].T`` reconstructs slice ``r``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "ORCA_FLASH4",
    "PAPER_OPT",
    "OPTAcquisition",
    "OrganPhantom",
    "orca_flash4",
    "organ_phantom3d",
    "paper_opt",
    "project_parallel",
    "simulate_opt",
]

#: The paper's OPT acquisition where it matters for quantisation (Pomarico et al. 2023,
#: Methods, "Optical projection tomography"): a Hamamatsu ORCA-Flash4.0 V2 sCMOS,
#: projections of 1024 × 1024 pixels at 1200 angles over 360° (0.3° steps; 0.9° gives
#: 400), saved as uncompressed 16-bit TIFF. The photon budget and the way the 16 → 8-bit
#: conversion set its range are not stated: ``fill`` is an assumption (exposure set to
#: use the camera's range, the brightest pixel at 80 % of the full well).
PAPER_OPT: dict[str, Any] = {
    "camera": "Hamamatsu ORCA-Flash4.0 V2 (sCMOS)",
    "n_det": 1024,
    "n_rows": 1024,
    "n_angles": 1200,
    "arc_deg": 360.0,
    "bit_depth": 16,
    "fill": 0.8,  # assumption, not in the paper
}

#: ORCA-Flash4.0 camera numbers (``hardware_profiles/cameras/
#: hamamatsu_orca_flash4_v3_standard.toml``, from the V3 data sheet: conversion factor
#: 0.46 e⁻/count, read noise 1.6 e⁻ rms standard scan, offset 100 ADU; full well
#: 30 000 e⁻, which the 16-bit ADC just covers: 30 000 / 0.46 + 100 = 65 317 ADU).
ORCA_FLASH4: dict[str, float] = {
    "conversion_e_per_adu": 0.46,
    "read_noise_e": 1.6,
    "offset_adu": 100.0,
    "full_well_e": 30000.0,
}


def orca_flash4(shape: tuple[int, int], seed: int = 0) -> Any:
    """The paper's OPT camera as a :class:`~rawsigma.acquire.sensor_model.SensorModel`.

    The simulated sCMOS preset's per-pixel maps (1 % gain and PRNU spread, DSNU, RTS and
    hot pixels) rescaled to the ORCA-Flash4.0 numbers of :data:`ORCA_FLASH4`: gain
    1/0.46 = 2.17 ADU/e⁻, median read noise 1.6 e⁻, offset 100 ADU, full well 30 000 e⁻,
    16-bit ADC.

    Parameters
    ----------
    shape : (H, W)
        Frame shape (projection rows, detector pixels).
    seed : int
        Seed of the maps.
    """
    from rawsigma.acquire.sensor_model import SensorModel

    c = ORCA_FLASH4
    base = SensorModel.preset("scmos", shape, seed=seed)
    k = np.float32(1.0 / c["conversion_e_per_adu"] / float(np.median(base.gain)))
    rn_e = base.read_noise / base.gain  # e⁻; rescaled to the camera's median
    rn_e *= np.float32(c["read_noise_e"] / float(np.median(rn_e)))
    return base.copy(
        gain=base.gain * k,
        read_noise=rn_e * base.gain * k,
        rts_amplitude=base.rts_amplitude * k,
        offset=base.offset - float(np.median(base.offset)) + c["offset_adu"],
        full_well=c["full_well_e"],
        bit_depth=16,
        name="orca-flash4",
    )


def _camera(kind: str, shape: tuple[int, int], seed: int) -> Any:
    from rawsigma.acquire.sensor_model import SensorModel

    if kind == "orca-flash4":
        return orca_flash4(shape, seed)
    if kind == "scmos":
        return SensorModel.preset("scmos", shape, seed=seed)
    raise ValueError(f"simulate_opt: unknown camera {kind!r}; use 'scmos' or 'orca-flash4'")


@dataclass
class OrganPhantom:
    """The sample: fluorescence, attenuation, plaque labels and the organ mask.

    Attributes
    ----------
    fluorescence : (Z, N, N) float32
        Relative emission per voxel (organ ≈ ``organ_level``, plaques ≈ 1).
    attenuation : (Z, N, N) float32
        Attenuation coefficient, 1/voxel.
    plaques : (Z, N, N) int32
        Instance labels of the plaques (0 elsewhere), before the PSF blur.
    organ : (Z, N, N) bool
        The organ volume (plaque load is relative to it).
    radii : (n_plaques,) float64
        Radius of each plaque, voxels (label i at index i − 1).
    debris : (Z, N, N) bool
        Bright fluorescent specks in the mounting medium (outside the organ).
    """

    fluorescence: np.ndarray
    attenuation: np.ndarray
    plaques: np.ndarray
    organ: np.ndarray
    radii: np.ndarray
    debris: np.ndarray | None = None


def _ellipsoid(shape: tuple[int, int, int], centre, semi) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((zz - centre[0]) / semi[0]) ** 2
        + ((yy - centre[1]) / semi[1]) ** 2
        + ((xx - centre[2]) / semi[2]) ** 2
    ) <= 1.0


def organ_phantom3d(
    shape: tuple[int, int] = (32, 64),
    n_plaques: int = 24,
    radius: tuple[float, float] = (1.5, 4.0),
    organ_level: float = 0.08,
    attenuation: float = 0.01,
    psf_sigma: float = 0.7,
    n_debris: int = 0,
    debris_brightness: float = 40.0,
    plaque_level: tuple[float, float] = (0.7, 1.0),
    rng: np.random.Generator | int | None = 0,
) -> OrganPhantom:
    """Build the organ phantom.

    Parameters
    ----------
    shape : (n_rows, n_det)
        Volume rows (along the rotation axis) and detector width; the volume is
        ``(n_rows, n_det, n_det)`` and the organ fits in the reconstruction circle.
    n_plaques : int
        Plaques to place (fewer if they do not fit), non-overlapping, 2 voxels apart.
    radius : (min, max)
        Plaque radii, voxels, drawn log-uniformly (several sizes).
    organ_level : float
        Fluorescence of the organ tissue relative to a plaque (1).
    attenuation : float
        Attenuation of the organ tissue, 1/voxel (plaques ×3, the ventricle ×0.5).
    psf_sigma : float
        Gaussian blur of the fluorescence (optical resolution), voxels.
    n_debris : int
        Bright 2×2×2-voxel specks (dust in the mounting medium) placed > 6 voxels
        outside the organ; like the beads of the 2D phantom they stretch the projections'
        dynamic range, which is what makes a min–max 8-bit conversion coarse on the
        dim tissue.
    debris_brightness : float
        Fluorescence of a speck relative to a plaque.
    plaque_level : (min, max)
        Fluorescence of each plaque, drawn uniformly (the organ is ``organ_level``).
    rng : Generator, int or None
        Random source of the plaque positions, radii and brightness.
    """
    rng = np.random.default_rng(rng)
    z, n = int(shape[0]), int(shape[1])
    if z < 8 or n < 16:
        raise ValueError(f"organ_phantom3d: shape must be at least (8, 16), got {shape}")
    vol = (z, n, n)
    c = ((z - 1) / 2, (n - 1) / 2, (n - 1) / 2)
    organ = _ellipsoid(vol, c, (0.45 * z, 0.40 * n, 0.33 * n))
    ventricle = _ellipsoid(vol, (c[0], c[1] - 0.08 * n, c[2]), (0.2 * z, 0.12 * n, 0.08 * n))
    fl = np.where(organ, organ_level, 0.0).astype(np.float32)
    fl[ventricle] = 0.4 * organ_level
    mu = np.where(organ, attenuation, 0.0).astype(np.float32)
    mu[ventricle] = 0.5 * attenuation
    labels = np.zeros(vol, np.int32)
    radii: list[float] = []
    inner = ndi.binary_erosion(organ & ~ventricle, iterations=2)
    cand = np.argwhere(inner)
    lo, hi = np.log(radius[0]), np.log(radius[1])
    for _ in range(50 * n_plaques):
        if len(radii) >= n_plaques:
            break
        r = float(np.exp(rng.uniform(lo, hi)))
        p = cand[rng.integers(len(cand))]
        m = int(np.ceil(r)) + 2
        sl = tuple(
            slice(max(int(q) - m, 0), min(int(q) + m + 1, s)) for q, s in zip(p, vol, strict=True)
        )
        zz, yy, xx = np.ogrid[sl]
        ball = (zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2 <= r * r
        halo = (zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2 <= (r + 2) ** 2
        if labels[sl][halo].any() or not inner[sl][ball].all():
            continue
        radii.append(r)
        labels[sl][ball] = len(radii)
        fl[sl][ball] = rng.uniform(*plaque_level)
        mu[sl][ball] = 3 * attenuation
    debris = np.zeros(vol, bool)
    outside = ndi.distance_transform_edt(~organ) > 6  # dust in the medium, clear of the organ
    yy, xx = np.ogrid[:n, :n]
    outside &= ((yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= (0.45 * n) ** 2)[None]
    outside[-2:] = False
    outside[:, -2:] = False
    outside[:, :, -2:] = False
    spots = np.argwhere(outside)
    for q in spots[rng.choice(len(spots), size=min(n_debris, len(spots)), replace=False)]:
        debris[q[0] : q[0] + 2, q[1] : q[1] + 2, q[2] : q[2] + 2] = True
    fl[debris] = debris_brightness
    if psf_sigma > 0:
        fl = ndi.gaussian_filter(fl, psf_sigma).astype(np.float32)
    return OrganPhantom(fl, mu, labels, organ, np.asarray(radii), debris)


def project_parallel(
    volume: np.ndarray,
    angles_deg: np.ndarray,
    *,
    attenuation: np.ndarray | None = None,
    mode: Literal["fluorescence", "transmission"] = "fluorescence",
    cor_offset: float = 0.0,
) -> np.ndarray:
    """Parallel-beam projections of a volume rotating about its row axis.

    Parameters
    ----------
    volume : (Z, N, N) ndarray
        Emission (``fluorescence``) or ignored (``transmission``, give ``attenuation``).
    angles_deg : (A,) array
        Projection angles, degrees.
    attenuation : (Z, N, N) ndarray, optional
        μ per voxel, 1/voxel (emission: attenuated on the way to the camera).
    mode : {"fluorescence", "transmission"}
        Line integral of the attenuated emission, or ``exp(−Σ μ)`` (flat field 1).
    cor_offset : float
        Centre of rotation, pixels right of the detector centre.

    Returns
    -------
    (A, Z, N) float32
        Projections (voxel sums; transmission in [0, 1]).
    """
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3 or vol.shape[1] != vol.shape[2]:
        raise ValueError(f"project_parallel: volume must be (Z, N, N), got {vol.shape}")
    if mode not in ("fluorescence", "transmission"):
        raise ValueError(f"project_parallel: unknown mode {mode!r}")
    mu = None if attenuation is None else np.asarray(attenuation, np.float32)
    if mode == "transmission" and mu is None:
        raise ValueError("project_parallel: transmission needs the attenuation map")
    angles = np.asarray(angles_deg, np.float64).ravel()
    out = np.empty((angles.size, vol.shape[0], vol.shape[2]), np.float32)
    n = vol.shape[2]
    c = np.array([0.0, n // 2, n // 2])  # skimage's rotation centre
    for i, a in enumerate(np.deg2rad(angles)):
        # skimage.transform.radon's warp: output (y, x) samples the slice at
        # (c + cos·(y−c) − sin·(x−c), c + sin·(y−c) + cos·(x−c)); then a sum over y
        m = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        off = c - m @ c

        def rot(v: np.ndarray, m: np.ndarray = m, off: np.ndarray = off) -> np.ndarray:
            return ndi.affine_transform(v, m, off, order=1, mode="constant", prefilter=False)

        if mode == "fluorescence":
            f = rot(vol)
            if mu is not None:
                m_rot = rot(mu)
                # light leaves towards y = N − 1: attenuated by what lies after it
                after = np.cumsum(m_rot[:, ::-1], axis=1)[:, ::-1] - 0.5 * m_rot
                f *= np.exp(-after)
            out[i] = f.sum(axis=1)
        else:
            out[i] = np.exp(-rot(mu).sum(axis=1))
    if cor_offset:
        out = ndi.shift(out, (0, 0, cor_offset), order=1, mode="nearest").astype(np.float32)
    return out


@dataclass
class OPTAcquisition:
    """A simulated OPT acquisition: raw projections and everything that made them.

    Attributes
    ----------
    projections : (A, Z, N) uint16
        Raw camera frames, ADU.
    angles_deg : (A,) float64
    profile : CameraProfile
        The camera's profile (given, or the camera's exact profile).
    model : SensorModel
        The camera (truth).
    phantom : OrganPhantom
    photons : (A, Z, N) float32
        Expected photons per pixel (before the camera).
    exposure_s, cor_offset : float
    mode : str
    calibration : str
        How the profile was measured.
    """

    projections: np.ndarray
    angles_deg: np.ndarray
    profile: Any
    model: Any
    phantom: OrganPhantom
    photons: np.ndarray
    exposure_s: float
    cor_offset: float
    mode: str
    calibration: str
    info: dict = field(default_factory=dict)


def simulate_opt(
    shape: tuple[int, int] = (32, 64),
    n_angles: int = 128,
    *,
    peak_photons: float = 4000.0,
    background_photons: float = 20.0,
    mode: Literal["fluorescence", "transmission"] = "fluorescence",
    cor_offset: float = 0.0,
    exposure_s: float = 0.05,
    rng: np.random.Generator | int | None = 0,
    phantom: OrganPhantom | None = None,
    profile: Any = None,
    model: Any = None,
    camera: str = "scmos",
    fill: float | None = None,
    **phantom_kw: Any,
) -> OPTAcquisition:
    """Image the organ phantom at ``n_angles`` angles over 360° through the camera.

    Parameters
    ----------
    shape : (n_rows, n_det)
        Projection shape (= the camera's frame shape).
    n_angles : int
        Angles evenly spread over [0°, 360°).
    peak_photons : float
        Photons at the brightest projection pixel (fluorescence) or of the flat
        field (transmission).
    background_photons : float
        Stray light / medium autofluorescence added everywhere, photons.
    mode : {"fluorescence", "transmission"}
        Emission or bright-field OPT (see :func:`project_parallel`).
    cor_offset : float
        Centre of rotation offset, detector pixels.
    exposure_s : float
        Exposure per projection (dark current), s.
    rng : Generator, int or None
        Seeds the phantom, the camera maps and the frames.
    phantom, profile, model : optional
        Reuse a phantom; the camera (:class:`SensorModel`, default the simulated sCMOS
        preset seeded from ``rng``) and its profile (default the camera's exact
        profile; for a profile measured like a real one, pass the output of
        :func:`rawsigma.analysis.demo.calibrate_simulated`, as ``benchmarks/bench_opt.py``
        does).
    camera : {"scmos", "orca-flash4"}
        The camera built when ``model`` is None: the generic simulated sCMOS
        (``SensorModel.preset("scmos")``) or the paper's camera (:func:`orca_flash4`).
    fill : float, optional
        Photon budget as the camera sees it: the brightest expected pixel (signal +
        background) at ``fill`` × the full well, in photo-electrons; replaces
        ``peak_photons``. In (0, 1].
    **phantom_kw
        Passed to :func:`organ_phantom3d`.
    """
    if n_angles < 2:
        raise ValueError(f"simulate_opt: n_angles must be >= 2, got {n_angles}")
    if fill is not None and not 0 < fill <= 1:
        raise ValueError(f"simulate_opt: fill must be in (0, 1], got {fill}")
    ss = np.random.SeedSequence(rng if isinstance(rng, int) else None)
    s_ph, s_cam, s_frames = ss.spawn(3)
    if phantom is None:
        phantom = organ_phantom3d(shape, rng=np.random.default_rng(s_ph), **phantom_kw)
    z, n = phantom.fluorescence.shape[:2]
    calibration = "given profile"
    if model is None:
        seed = int(s_cam.generate_state(1)[0] % 2**31)
        model = _camera(camera, (z, n), seed)
    if profile is None:
        profile = model.true_profile()
        calibration = "exact profile of the simulated camera (truth)"
    if tuple(model.shape) != (z, n):
        raise ValueError(f"simulate_opt: camera shape {model.shape} != projection shape {(z, n)}")
    angles = np.arange(n_angles) * (360.0 / n_angles)
    proj = project_parallel(
        phantom.fluorescence,
        angles,
        attenuation=phantom.attenuation,
        mode=mode,
        cor_offset=cor_offset,
    )
    if fill is not None:  # brightest pixel at fill × full well, in photo-electrons
        peak_photons = fill * float(model.full_well) / float(model.qe) - background_photons
    scale = peak_photons / max(float(proj.max()), 1e-12)
    photons = (proj * scale + background_photons).astype(np.float32)
    frng = np.random.default_rng(s_frames)
    raw = np.empty(photons.shape, np.uint16)
    for i in range(n_angles):
        model.expose(photons[i], exposure_s, frng, out=raw[i])
    info = {
        "peak_photons": peak_photons,
        "peak_electrons": (peak_photons + background_photons) * float(model.qe),
        "full_well_e": float(model.full_well),
        "camera": model.name,
        "background_photons": background_photons,
        "photons_per_unit": scale,
        "n_plaques": int(phantom.radii.size),
    }
    return OPTAcquisition(
        raw,
        angles,
        profile,
        model,
        phantom,
        photons,
        exposure_s,
        cor_offset,
        mode,
        calibration,
        info,
    )


def paper_opt(
    shape: tuple[int, int] = (32, 96),
    n_angles: int | None = None,
    *,
    fill: float = PAPER_OPT["fill"],
    rng: np.random.Generator | int | None = 0,
    **kw: Any,
) -> OPTAcquisition:
    """The paper's OPT acquisition (:data:`PAPER_OPT`), scaled down to ``shape``.

    The ORCA-Flash4.0 camera (:func:`orca_flash4`), 16-bit frames, angles over 360° at
    the paper's 1200 angles per 1024 detector pixels (``n_angles`` default
    ``round(n_det · 1200 / 1024)``), the brightest pixel at ``fill`` × the 30 000 e⁻
    full well; the organ phantom without specks of dust (the paper mentions none).

    Parameters
    ----------
    shape : (n_rows, n_det)
        Projection shape (the paper's is 1024 × 1024).
    n_angles : int, optional
        Angles over 360°.
    fill : float
        Brightest expected pixel / full well (the paper does not state its photon budget).
    rng : Generator, int or None
        Seeds the phantom, the camera maps and the frames.
    **kw
        Passed to :func:`simulate_opt` (``profile``, ``model``, phantom options).
    """
    if n_angles is None:
        n_angles = max(2, round(shape[1] * PAPER_OPT["n_angles"] / PAPER_OPT["n_det"]))
    kw.setdefault("camera", "orca-flash4")
    return simulate_opt(shape, n_angles, fill=fill, rng=rng, **kw)
