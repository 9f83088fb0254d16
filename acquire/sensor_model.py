"""Pure-numpy camera physics with known per-pixel truth.

`SensorModel` turns a mean photon count per pixel into one raw frame, drawing
every noise source per pixel:

    e⁻  = min(Poisson(QE · photons · PRNU + dark_current · t), full_well)
    ADU = clip(round(gain · e⁻ + offset + Normal(0, σ_gauss) ± RTS/2), 0, 2**bits − 1)

quantised once. The temporal read noise of a pixel is Gaussian (σ_gauss) plus,
for random-telegraph-signal (RTS) pixels, a two-state offset flip of amplitude
``rts_amplitude`` taken with probability 1/2 each frame; ``read_noise`` is the
total rms ``sqrt(σ_gauss² + rts_amplitude²/4)`` so that, below saturation, each
pixel obeys the calibration model ``var = gain·(mean − offset) + read_noise²``
(plus the 1/12 ADU² of rounding).

This module never imports Micro-Manager; `analysis` and tests may use it to
simulate images with a known noise model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rawsigma.calib.profile import (
    DEFECT_BAD_GAIN,
    DEFECT_DEAD,
    DEFECT_HOT,
    DEFECT_NOISY,
    CameraIdentity,
    CameraProfile,
)
from rawsigma.errors import InputFileError
from rawsigma.fileio import provenance

__all__ = ["SensorModel"]

_MAP_FIELDS = ("gain", "offset", "read_noise", "prnu", "dark_current", "rts_amplitude")
_MASK_FIELDS = ("hot", "dead", "bad_gain")


def _f32(a: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr), dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"SensorModel.{name}: shape {arr.shape} != sensor shape {shape}")
    return np.ascontiguousarray(arr)


@dataclass(eq=False)
class SensorModel:
    """A simulated camera sensor whose per-pixel parameters are known exactly.

    All maps have the output-pixel shape ``(H, W)`` (already binned, see
    `binned`). Scalars given for a map are broadcast on construction.

    Parameters
    ----------
    gain : ndarray, float32 (H, W)
        Conversion gain, ADU per photo-electron (> 0; pixels with no useful
        response are marked in ``dead`` / ``bad_gain``).
    offset : ndarray, float32 (H, W)
        Dark offset (bias), ADU.
    read_noise : ndarray, float32 (H, W)
        Total temporal read noise, ADU rms (Gaussian part plus RTS).
    prnu : ndarray, float32 (H, W)
        Relative photo-response (photo-response non-uniformity), mean ≈ 1;
        0 for dead pixels.
    dark_current : ndarray, float32 (H, W)
        Dark current, e⁻/s (hot pixels have a large value).
    rts_amplitude : ndarray, float32 (H, W)
        Random-telegraph-signal step, ADU (0 for ordinary pixels).
    qe : float
        Quantum efficiency (photo-electrons per photon), 0–1.
    full_well : float
        Full-well capacity, e⁻.
    bit_depth : int
        ADC bit depth (12 or 16); frames are uint16 either way.
    binning : int
        Binning factor the maps describe (1 = native pixels).
    hot, dead, bad_gain : ndarray, bool (H, W)
        Truth defect masks (``bad_gain``: the source map had gain ≤ 0).
    name : str
        Free-form description (preset name, source file).
    seed : int or None
        Seed the maps were drawn with (provenance only).
    """

    gain: np.ndarray
    offset: np.ndarray
    read_noise: np.ndarray
    prnu: np.ndarray
    dark_current: np.ndarray
    rts_amplitude: np.ndarray
    qe: float = 0.8
    full_well: float = 30000.0
    bit_depth: int = 16
    binning: int = 1
    hot: np.ndarray | None = None
    dead: np.ndarray | None = None
    bad_gain: np.ndarray | None = None
    name: str = "custom"
    seed: int | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        shape = np.shape(self.gain)
        if len(shape) != 2:
            raise ValueError(f"SensorModel.gain must be 2-D (H, W), got shape {shape}")
        shape = (int(shape[0]), int(shape[1]))
        for name in _MAP_FIELDS:
            setattr(self, name, _f32(getattr(self, name), shape, name))
        for name in _MASK_FIELDS:
            m = getattr(self, name)
            m = np.zeros(shape, bool) if m is None else np.asarray(m, dtype=bool)
            if m.shape != shape:
                raise ValueError(f"SensorModel.{name}: shape {m.shape} != {shape}")
            setattr(self, name, m)
        if self.bit_depth not in (8, 10, 12, 14, 16):
            raise ValueError(f"SensorModel.bit_depth must be 8..16 (even), got {self.bit_depth}")
        if not 0 < self.qe <= 1:
            raise ValueError(f"SensorModel.qe must be in (0, 1], got {self.qe}")
        if self.full_well <= 0:
            raise ValueError(f"SensorModel.full_well must be > 0 e-, got {self.full_well}")
        if np.any(self.read_noise < 0) or np.any(self.rts_amplitude < 0):
            raise ValueError("SensorModel.read_noise and rts_amplitude must be >= 0")
        self.bit_depth = int(self.bit_depth)
        self.binning = int(self.binning)
        self._cache = {}

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, int]:
        """Output frame shape ``(H, W)``."""
        return (int(self.gain.shape[0]), int(self.gain.shape[1]))

    @property
    def max_adu(self) -> int:
        """Largest ADC value, ``2**bit_depth − 1``."""
        return (1 << self.bit_depth) - 1

    @property
    def defects(self) -> np.ndarray:
        """Truth defect bitmask, uint8 (H, W), bits as in `rawsigma.calib.profile`."""
        d = np.zeros(self.shape, np.uint8)
        d[self.hot] |= DEFECT_HOT
        d[self.dead] |= DEFECT_DEAD
        d[self.rts_amplitude > 0] |= DEFECT_NOISY  # RTS pixels
        d[self.bad_gain] |= DEFECT_BAD_GAIN
        return d

    def _derived(self) -> dict[str, Any]:
        c = self._cache
        if not c:
            c["response"] = (np.float32(self.qe) * self.prnu).astype(np.float32)
            gauss = np.sqrt(np.maximum(self.read_noise**2 - 0.25 * self.rts_amplitude**2, 0.0))
            c["sigma_gauss"] = gauss.astype(np.float32)
            rts_idx = np.flatnonzero(self.rts_amplitude > 0)
            c["rts_idx"] = rts_idx
            c["rts_half"] = 0.5 * self.rts_amplitude.ravel()[rts_idx]
        return c

    def copy(self, **changes: Any) -> SensorModel:
        """Return a copy with some fields replaced (maps are copied)."""
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for k in (*_MAP_FIELDS, *_MASK_FIELDS):
            kw[k] = np.array(kw[k], copy=True)
        kw.update(changes)
        return SensorModel(**kw)

    # ------------------------------------------------------------------ physics
    def expected_electrons(self, photons: float | np.ndarray, exposure_s: float) -> np.ndarray:
        """Mean photo-electrons per pixel before full-well clipping, float32 (H, W)."""
        c = self._derived()
        lam = c["response"] * np.asarray(photons, dtype=np.float32)
        if exposure_s:
            lam = lam + self.dark_current * np.float32(exposure_s)
        return np.broadcast_to(lam, self.shape).astype(np.float32, copy=False)

    def expected_adu(self, photons: float | np.ndarray, exposure_s: float) -> np.ndarray:
        """Mean ADU per pixel ignoring clipping, float32 (H, W): ``gain·e⁻ + offset``."""
        return self.gain * self.expected_electrons(photons, exposure_s) + self.offset

    def expose(
        self,
        photons: float | np.ndarray,
        exposure_s: float = 0.0,
        rng: np.random.Generator | int | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Simulate one raw frame.

        Parameters
        ----------
        photons : float or ndarray (H, W)
            Mean number of photons reaching each (output) pixel during the
            exposure; an array is a photon-flux image × exposure. Negative
            values are treated as 0.
        exposure_s : float
            Exposure time in seconds (for the dark current only).
        rng : numpy.random.Generator or int or None
            Random source (an int is a seed). ``None`` uses fresh entropy.
        out : ndarray, uint16 (H, W), optional
            Buffer to write into (e.g. a camera's frame buffer).

        Returns
        -------
        ndarray, uint16 (H, W)
            Raw frame in ADU, within ``[0, max_adu]``.
        """
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if exposure_s < 0:
            raise ValueError(f"exposure_s must be >= 0, got {exposure_s}")
        ph = np.asarray(photons, dtype=np.float32)
        if ph.ndim and ph.shape != self.shape:
            raise ValueError(f"photons: shape {ph.shape} != sensor shape {self.shape}")
        lam = self.expected_electrons(np.maximum(ph, 0), exposure_s)
        electrons = rng.poisson(lam).astype(np.float32)
        np.minimum(electrons, np.float32(self.full_well), out=electrons)
        c = self._derived()
        adu = rng.standard_normal(self.shape, dtype=np.float32)
        adu *= c["sigma_gauss"]
        adu += self.offset
        electrons *= self.gain
        adu += electrons
        idx = c["rts_idx"]
        if idx.size:
            flip = rng.random(idx.size) < 0.5
            adu.ravel()[idx] += np.where(flip, c["rts_half"], -c["rts_half"])
        np.rint(adu, out=adu)
        np.clip(adu, 0, self.max_adu, out=adu)
        if out is None:
            return adu.astype(np.uint16)
        if out.shape != self.shape:
            raise ValueError(f"out: shape {out.shape} != sensor shape {self.shape}")
        np.copyto(out, adu, casting="unsafe")
        return out

    def photons_for_fraction(self, fraction: float, exposure_s: float = 0.0) -> float:
        """Photons per pixel that bring the median pixel to ``fraction`` of saturation.

        Saturation is the lower of the full well and the ADC ceiling, in ADU.
        """
        g = float(np.median(self.gain))
        o = float(np.median(self.offset))
        resp = float(np.median(self._derived()["response"]))
        sat_adu = min(self.max_adu, g * self.full_well + o)
        target_e = fraction * (sat_adu - o) / g - float(np.median(self.dark_current)) * exposure_s
        return max(target_e, 0.0) / resp

    # ------------------------------------------------------------------ geometry
    def crop(self, roi: tuple[int, int, int, int]) -> SensorModel:
        """Return the model of a region ``(x, y, width, height)`` of this sensor."""
        x, y, w, h = (int(v) for v in roi)
        H, W = self.shape
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > W or y + h > H:
            raise ValueError(f"ROI {roi} outside sensor of shape {self.shape}")
        sl = (slice(y, y + h), slice(x, x + w))
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for k in (*_MAP_FIELDS, *_MASK_FIELDS):
            kw[k] = np.array(kw[k][sl], copy=True)
        return SensorModel(**kw)

    def binned(self, factor: int) -> SensorModel:
        """Return the model of ``factor × factor`` binned pixels.

        The binned pixel is modelled as one pixel (charge binning): photo-response,
        dark current and full well add up, gain and offset are the block means and
        the read noise is the block rms, so the truth maps stay exact for the
        binned frames. Rows/columns that do not fill a block are dropped.
        """
        b = int(factor)
        if b < 1:
            raise ValueError(f"binning must be >= 1, got {factor}")
        if b == 1:
            return self
        H, W = self.shape
        h, w = H // b, W // b
        if h == 0 or w == 0:
            raise ValueError(f"binning {b} too large for sensor {self.shape}")

        def blocks(a: np.ndarray) -> np.ndarray:
            return a[: h * b, : w * b].reshape(h, b, w, b)

        return SensorModel(
            gain=blocks(self.gain).mean(axis=(1, 3)),
            offset=blocks(self.offset).mean(axis=(1, 3)),
            read_noise=np.sqrt((blocks(self.read_noise) ** 2).mean(axis=(1, 3))),
            prnu=blocks(self.prnu).sum(axis=(1, 3)) / (b * b),
            dark_current=blocks(self.dark_current).sum(axis=(1, 3)),
            rts_amplitude=np.zeros((h, w), np.float32),
            qe=self.qe * 1.0,
            full_well=self.full_well * b * b,
            bit_depth=self.bit_depth,
            binning=self.binning * b,
            hot=blocks(self.hot).any(axis=(1, 3)),
            dead=blocks(self.dead).all(axis=(1, 3)),
            bad_gain=blocks(self.bad_gain).all(axis=(1, 3)),
            name=f"{self.name} bin{b}",
            seed=self.seed,
        )

    # ------------------------------------------------------------------ factories
    @classmethod
    def preset(
        cls,
        kind: Literal["scmos", "ccd"] = "scmos",
        shape: tuple[int, int] = (512, 512),
        seed: int = 0,
        **overrides: Any,
    ) -> SensorModel:
        """A camera with realistic random maps.

        ``"scmos"``: 16-bit, per-pixel gain ≈ 2.0 ADU/e⁻ (1 % spread), offset
        100 ADU (DSNU 1.5 ADU), lognormal read noise (median 2.2 ADU) with a heavy
        tail (1 % pixels ×3–10) and 0.5 % RTS pixels, PRNU 1 %, QE 0.8, dark
        current 0.3 e⁻/s with 0.1 % hot pixels, 0.02 % dead pixels, full well
        30 000 e⁻ (clips before the ADC).
        ``"ccd"``: 12-bit, single amplifier (uniform gain 0.25 ADU/e⁻), offset
        50 ADU, Gaussian read noise 2.0 ADU, PRNU 0.8 %, QE 0.6, full well
        18 000 e⁻ (the ADC clips first).

        Parameters
        ----------
        kind : {"scmos", "ccd"}
        shape : (int, int)
            Sensor shape (H, W).
        seed : int
            Seed of the maps (not of the frames).
        **overrides
            Field values replacing the preset's (e.g. ``bit_depth=12``).
        """
        rng = np.random.default_rng(seed)
        H, W = (int(shape[0]), int(shape[1]))
        n = H * W

        def frac_mask(p: float) -> np.ndarray:
            m = np.zeros(n, bool)
            k = int(round(p * n))
            if k:
                m[rng.choice(n, size=k, replace=False)] = True
            return m.reshape(H, W)

        if kind == "scmos":
            gain = 2.0 * (1 + 0.01 * rng.standard_normal((H, W)))
            offset = 100.0 + 1.5 * rng.standard_normal((H, W))
            rn = 2.2 * np.exp(0.25 * rng.standard_normal((H, W)))
            tail = frac_mask(0.01)
            rn[tail] *= rng.uniform(3, 10, tail.sum())
            rts_m = frac_mask(0.005)
            rts = np.zeros((H, W))
            rts[rts_m] = rng.uniform(4, 15, rts_m.sum())
            # total read noise of an RTS pixel includes the telegraph part
            rn = np.sqrt(rn**2 + 0.25 * rts**2)
            prnu = 1 + 0.01 * rng.standard_normal((H, W))
            dark = rng.gamma(2.0, 0.15, (H, W))
            hot = frac_mask(0.001)
            dark[hot] = rng.uniform(50, 1000, hot.sum())
            dead = frac_mask(0.0002)
            prnu[dead] = 0.0
            kw: dict[str, Any] = dict(qe=0.8, full_well=30000.0, bit_depth=16)
        elif kind == "ccd":
            gain = np.full((H, W), 0.25)
            offset = 50.0 + 0.3 * rng.standard_normal((H, W))
            rn = np.full((H, W), 2.0)
            rts = np.zeros((H, W))
            prnu = 1 + 0.008 * rng.standard_normal((H, W))
            dark = np.full((H, W), 0.05)
            hot = frac_mask(0.0005)
            dark[hot] = rng.uniform(20, 200, hot.sum())
            dead = frac_mask(0.0001)
            prnu[dead] = 0.0
            kw = dict(qe=0.6, full_well=18000.0, bit_depth=12)
        else:
            raise ValueError(f"unknown sensor preset {kind!r}; use 'scmos' or 'ccd'")
        kw.update(
            gain=gain,
            offset=offset,
            read_noise=rn,
            prnu=prnu,
            dark_current=dark,
            rts_amplitude=rts,
            hot=hot,
            dead=dead,
            name=kind,
            seed=seed,
        )
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_maps_file(
        cls,
        path: str | os.PathLike,
        *,
        offset: float | np.ndarray = 100.0,
        qe: float = 0.8,
        full_well: float = 30000.0,
        bit_depth: int = 16,
        prnu_sigma: float = 0.01,
        seed: int = 0,
    ) -> SensorModel:
        """Build a sensor from measured per-pixel maps.

        Parameters
        ----------
        path : path-like
            TIFF (or ``.npy``) holding a float array of shape ``(2, H, W)``:
            gain (ADU/e⁻) and read-noise VARIANCE (ADU²); an optional third
            plane is the offset (ADU). Pixels with gain ≤ 0 or non-finite values
            are kept as dead pixels (no photo-response, gain set to the median,
            flagged ``bad_gain``).
        offset : float or ndarray
            Offset (ADU) when the file has no offset plane.
        qe, full_well, bit_depth
            Scalar sensor parameters.
        prnu_sigma : float
            Relative spread of the random PRNU map drawn with ``seed``.
        seed : int
            Seed of the PRNU map.

        Raises
        ------
        InputFileError
            If the file is missing, unreadable or has the wrong shape.
        """
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"{p}: sensor map file not found")
        try:
            if p.suffix.lower() == ".npy":
                arr = np.load(p)
            else:
                import tifffile

                arr = tifffile.imread(p)
        except Exception as exc:  # noqa: BLE001 - reported with the file name
            raise InputFileError(f"{p}: cannot read sensor maps ({exc})") from exc
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] not in (2, 3) or min(arr.shape[1:]) < 1:
            raise InputFileError(
                f"{p}: expected maps of shape (2 or 3, H, W) [gain, read-noise variance"
                f"(, offset)], got {arr.shape}"
            )
        gain, var = arr[0].copy(), arr[1].copy()
        off = arr[2] if arr.shape[0] == 3 else offset
        bad = ~np.isfinite(gain) | (gain <= 0) | ~np.isfinite(var) | (var < 0)
        good_gain = gain[~bad]
        if good_gain.size == 0:
            raise InputFileError(f"{p}: no pixel has a positive gain")
        gain[bad] = np.median(good_gain)
        var[bad] = np.median(var[~bad])
        rng = np.random.default_rng(seed)
        prnu = 1 + prnu_sigma * rng.standard_normal(gain.shape)
        prnu[bad] = 0.0
        return cls(
            gain=gain,
            offset=off,
            read_noise=np.sqrt(var),
            prnu=prnu,
            dark_current=0.0,
            rts_amplitude=0.0,
            qe=qe,
            full_well=full_well,
            bit_depth=bit_depth,
            dead=bad,
            bad_gain=bad,
            name=p.name,
            seed=seed,
        )

    # ------------------------------------------------------------------ truth
    def true_profile(self, **identity: Any) -> CameraProfile:
        """The exact `CameraProfile` of this sensor (truth, for tests and demos).

        ``identity`` overrides fields of the `CameraIdentity` (camera, model,
        serial, roi, ...). The profile's provenance has ``"truth": True``.
        """
        H, W = self.shape
        ident: dict[str, Any] = dict(
            camera="SimCamera",
            model=f"SensorModel {self.name}",
            vendor="rawsigma",
            serial=f"sim-{self.seed}",
            bit_depth=self.bit_depth,
            binning=self.binning,
            roi=(0, 0, W, H),
            sensor_shape=(H, W),
        )
        ident.update(identity)
        return CameraProfile(
            offset=self.offset.copy(),
            gain=self.gain.copy(),
            read_noise=self.read_noise.copy(),
            identity=CameraIdentity(**ident),
            defects=self.defects,
            prnu=self.prnu.copy(),
            emva={
                "K": float(np.median(self.gain)),
                "qe": float(self.qe),
                "full_well_e": float(self.full_well),
            },
            provenance=provenance(truth=True, seed=self.seed, sensor_model=self.name),
        )
