"""Per-pixel camera noise profile: maps, identity, provenance.

A :class:`CameraProfile` holds, for every pixel of a (binned) sensor region, the
offset ``o`` (ADU), the gain ``g`` (ADU per photo-electron) and the read noise ``r``
(ADU rms) of the Poisson-Gaussian model ``var = g * (mean - o) + r**2``, their
standard errors, a defect bitmask, and the camera identity it was measured on.
It is written to and read from HDF5 by :mod:`rawsigma.calib.profile_io`
(``docs/profile_format.md`` describes the file).

ROI convention (used by :attr:`CameraIdentity.roi`, :meth:`CameraProfile.crop` and
image metadata): ``(x, y, width, height)`` in binned sensor pixels, 0-based, origin at
the top-left pixel of the full binned sensor, exclusive end, i.e. the region is
``sensor[y:y + height, x:x + width]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rawsigma.errors import ImageMismatchError, ProfileError
from rawsigma.fileio import provenance

from .compare import profile_summary
from .darkcurrent import profile_at_exposure
from .profile_check import check_image_against
from .profile_fields import (
    DARK_MAPS,
    DEFECT_BAD_GAIN,
    DEFECT_DEAD,
    DEFECT_HOT,
    DEFECT_NAMES,
    DEFECT_NOISY,
    DEFECT_NONLINEAR,
    DEFECT_SATURATED,
    MAP_NAMES,
    OPTIONAL_MAPS,
    REQUIRED_MAPS,
    CameraIdentity,
    Roi,
    _as_map,
    to_json,
)
from .profile_io import read_profile, save_profile

__all__ = [
    "DARK_MAPS",
    "DEFECT_BAD_GAIN",
    "DEFECT_DEAD",
    "DEFECT_HOT",
    "DEFECT_NAMES",
    "DEFECT_NOISY",
    "DEFECT_NONLINEAR",
    "DEFECT_SATURATED",
    "MAP_NAMES",
    "OPTIONAL_MAPS",
    "REQUIRED_MAPS",
    "CameraIdentity",
    "CameraProfile",
    "Roi",
    "load_profile",
    "to_json",
]


@dataclass(eq=False)
class CameraProfile:
    """Per-pixel Poisson-Gaussian noise model of one camera in one mode.

    Parameters
    ----------
    offset : (H, W) float32 ndarray
        Dark offset, ADU.
    gain : (H, W) float32 ndarray
        Gain, ADU per photo-electron.
    read_noise : (H, W) float32 ndarray
        Read noise, ADU rms (square root of the read-noise variance).
    identity : CameraIdentity
        Camera, mode, bit depth, binning and ROI.
    offset_se, gain_se, read_noise_se : (H, W) float32 ndarray, optional
        Standard errors of the three maps, same units. NaN = not estimated.
    defects : (H, W) uint8 ndarray, optional
        Bitmask of ``DEFECT_*`` flags; 0 = good pixel.
    prnu : (H, W) float32 ndarray, optional
        Relative photo-response, mean 1.
    emva : dict
        Global EMVA 1288 R4 numbers (``K``, ``sigma_d``, ``DSNU``, ``PRNU``, ...).
    ptc : dict of str to 1-D ndarray
        Photon-transfer table, one entry per level (``level``, ``mean``, ``var``, ...).
    plan : dict
        The acquisition plan (``model_dump()`` of the plan object).
    provenance : dict
        How the profile was made (:func:`rawsigma.fileio.provenance` plus
        ``estimated``, ``seed``, frame counts, ...).
    dark_current, dark_current_se : (H, W) float32 ndarray, optional
        Dark current and its SE, ADU/s (:mod:`rawsigma.calib.darkcurrent`).
    dark_info : dict
        ``reference_exposure_s`` (exposure of ``offset``/``read_noise``),
        ``exposures_s``, ``frames``, ``temperature_c``, medians, hot-pixel count.

    Notes
    -----
    Maps are converted to float32 (``defects`` to uint8) on construction. Offset,
    gain and read noise must be finite on good pixels; NaN/inf on pixels flagged in
    ``defects`` are replaced by the median over good pixels (counted in
    ``provenance["substituted_nonfinite"]``), so every stored map is finite. Read
    noise must be >= 0 and gain > 0 on good pixels. Violations raise
    :class:`~rawsigma.errors.ProfileError`.
    """

    offset: np.ndarray
    gain: np.ndarray
    read_noise: np.ndarray
    identity: CameraIdentity = field(default_factory=CameraIdentity)
    offset_se: np.ndarray | None = None
    gain_se: np.ndarray | None = None
    read_noise_se: np.ndarray | None = None
    defects: np.ndarray | None = None
    prnu: np.ndarray | None = None
    emva: dict[str, Any] = field(default_factory=dict)
    ptc: dict[str, np.ndarray] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    dark_current: np.ndarray | None = None
    dark_current_se: np.ndarray | None = None
    dark_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in MAP_NAMES + DARK_MAPS:
            value = getattr(self, name)
            if value is None:
                continue
            dtype = np.uint8 if name == "defects" else np.float32
            setattr(self, name, _as_map(name, value, dtype))
        shape = self.offset.shape
        if (self.dark_current is None) != (self.dark_info == {}) or (
            self.dark_current_se is not None and self.dark_current is None
        ):
            raise ProfileError("profile: dark_current and dark_info go together")
        if self.dark_current is not None and not np.all(np.isfinite(self.dark_current)):
            raise ProfileError("profile: map 'dark_current' has non-finite values")
        self.dark_info = dict(self.dark_info)
        for name in MAP_NAMES + DARK_MAPS:
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ProfileError(
                    f"profile: map {name!r} has shape {value.shape}, offset has {shape}"
                )
        for name in REQUIRED_MAPS:
            self._substitute_nonfinite(name)
        if np.any(self.read_noise < 0):
            raise ProfileError("profile: map 'read_noise' has negative values")
        if np.any(self.gain[self.good] <= 0):
            raise ProfileError("profile: map 'gain' is <= 0 on pixels not flagged DEFECT_BAD_GAIN")
        self.ptc = {str(k): np.asarray(v) for k, v in (self.ptc or {}).items()}
        lengths = {k: v.shape for k, v in self.ptc.items()}
        if len({s for s in lengths.values()}) > 1 or any(len(s) != 1 for s in lengths.values()):
            raise ProfileError(f"profile: PTC columns must be 1-D of equal length, got {lengths}")
        self._check_identity()

    def _substitute_nonfinite(self, name: str) -> None:
        """Replace NaN/inf of a required map on flagged pixels by the good-pixel median."""
        arr = getattr(self, name)
        bad = ~np.isfinite(arr)
        if not bad.any():
            return
        n_unflagged = int(np.count_nonzero(bad & self.good))
        if n_unflagged:
            raise ProfileError(
                f"profile: map {name!r} has {n_unflagged} non-finite pixel(s) not flagged "
                "in 'defects'; flag them (e.g. DEFECT_BAD_GAIN) or replace them"
            )
        ok = np.isfinite(arr) & self.good
        if not ok.any():
            ok = np.isfinite(arr)
        if not ok.any():
            raise ProfileError(f"profile: map {name!r} has no finite value")
        arr = arr.copy()  # never modify the caller's array
        arr[bad] = np.median(arr[ok])
        setattr(self, name, arr)
        subst = dict(self.provenance.get("substituted_nonfinite", {}))
        subst[name] = int(np.count_nonzero(bad))
        self.provenance = {**self.provenance, "substituted_nonfinite": subst}

    def _check_identity(self) -> None:
        ident = self.identity
        h, w = self.shape
        if ident.roi is None:
            ident.roi = (0, 0, w, h)
        roi = tuple(int(v) for v in ident.roi)
        if len(roi) != 4:
            raise ProfileError(f"profile: identity ROI must be (x, y, w, h), got {roi}")
        x, y, rw, rh = roi
        ident.roi = (x, y, rw, rh)
        if (rh, rw) != (h, w):
            raise ProfileError(
                f"profile: identity ROI {ident.roi} (x, y, width, height) is {rw}x{rh} "
                f"but the maps are {w}x{h} (width x height)"
            )
        if x < 0 or y < 0:
            raise ProfileError(f"profile: identity ROI {ident.roi} has a negative origin")
        if ident.sensor_shape is None:
            ident.sensor_shape = (y + h, x + w)
        sh, sw = (int(v) for v in ident.sensor_shape)
        ident.sensor_shape = (sh, sw)
        if y + h > sh or x + w > sw:
            raise ProfileError(
                f"profile: identity ROI {ident.roi} extends beyond the sensor "
                f"{sw}x{sh} (width x height)"
            )
        if int(ident.bit_depth) < 1 or int(ident.bit_depth) > 32:
            raise ProfileError(f"profile: bit depth {ident.bit_depth} out of range 1..32")
        if int(ident.binning) < 1:
            raise ProfileError(f"profile: binning {ident.binning} must be >= 1")
        # Normalise types so that the identity (and so profile_id) survives a round trip.
        ident.bit_depth = int(ident.bit_depth)
        ident.binning = int(ident.binning)
        for name in ("camera", "model", "serial", "vendor", "readout_mode", "gain_mode"):
            setattr(ident, name, str(getattr(ident, name)))
        for name in ("exposure_ms", "temperature_c"):
            v = getattr(ident, name)
            setattr(ident, name, None if v is None or np.isnan(float(v)) else float(v))
        ident.extra = {str(k): str(v) for k, v in (ident.extra or {}).items()}

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, int]:
        """Map shape ``(H, W)`` in binned pixels."""
        return self.offset.shape

    @property
    def max_adu(self) -> int:
        """Largest raw value, ``2**bit_depth - 1`` (ADU)."""
        return (1 << self.identity.bit_depth) - 1

    @property
    def good(self) -> np.ndarray:
        """(H, W) bool mask of pixels with no defect flag."""
        if self.defects is None:
            return np.ones(self.shape, dtype=bool)
        good: np.ndarray = self.defects == 0
        return good

    @property
    def estimated(self) -> bool:
        """True if the profile was estimated from images rather than calibrated."""
        return bool(self.provenance.get("estimated", False))

    def _good_median(self, arr: np.ndarray) -> float:
        good = self.good
        vals = arr[good] if good.any() else arr.ravel()
        return float(np.median(vals))

    @property
    def gain_global(self) -> float:
        """Global gain, ADU per photo-electron.

        A photon-transfer calibration's (`build_profile`, which records
        ``provenance["gain_map"]``) is its EMVA ``K`` (``emva["K_se"]`` its SE): from
        moments pooled over pixels, it is unbiased at any number of frames per level,
        where the median of the per-pixel gains runs low (each pixel's var/mean ratio is
        right-skewed: simulator, 5 levels, -6.6 % at 4 frames per level, -1.8 % at 10,
        -0.5 % at 30). Any other profile (true, estimated, uniform): the median gain
        over good pixels.
        """
        k = self.emva.get("K") if self.provenance.get("gain_map") else None
        if isinstance(k, (int, float)) and math.isfinite(k) and k > 0:
            return float(k)
        return self.gain_median

    @property
    def gain_median(self) -> float:
        """Median gain over good pixels, ADU per photo-electron.

        `gain_global` before session 12, and still for profiles without a
        photon-transfer K.
        """
        return self._good_median(self.gain)

    @property
    def offset_global(self) -> float:
        """Median offset over good pixels, ADU."""
        return self._good_median(self.offset)

    @property
    def read_noise_global(self) -> float:
        """Median read noise over good pixels, ADU rms."""
        return self._good_median(self.read_noise)

    @property
    def profile_id(self) -> str:
        """Stable 12-hex-digit SHA-1 of all maps and the identity.

        Independent of emva, PTC, plan and provenance, so re-saving a profile or
        adding notes keeps its id; any change of a map value or identity field
        changes it.
        """
        h = hashlib.sha1()
        h.update(b"rawsigma-profile-v1\0")
        for name in MAP_NAMES:
            arr = getattr(self, name)
            h.update(name.encode() + b"\0")
            if arr is None:
                h.update(b"none\0")
                continue
            le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            h.update(f"{le.dtype.str}{le.shape}\0".encode())
            h.update(np.ascontiguousarray(le).tobytes())
        h.update(to_json(self.identity.to_dict()).encode())
        for name in DARK_MAPS:  # only when present: older profiles keep their id
            arr = getattr(self, name)
            if arr is not None:
                le = arr.astype("<f4", copy=False)
                h.update(name.encode() + b"\0" + np.ascontiguousarray(le).tobytes())
        return h.hexdigest()[:12]

    # ------------------------------------------------------------------ model
    def variance(self, mean: np.ndarray | float) -> np.ndarray:
        """Expected pixel variance (ADU^2) at expected value ``mean`` (ADU).

        ``g * (mean - o) + r**2``, with ``mean - o`` clipped at 0, so the result is
        never below the read-noise variance. ``mean`` broadcasts against (H, W).
        Returns float32.
        """
        m = np.asarray(mean, dtype=np.float32)
        signal = np.maximum(m - self.offset, np.float32(0))
        variance: np.ndarray = self.gain * signal + self.read_noise * self.read_noise
        return variance.astype(np.float32)

    def to_electrons(self, image: np.ndarray) -> np.ndarray:
        """Convert ``image`` (ADU, (..., H, W)) to photo-electrons, float32.

        ``(image - o) / g``; not clipped, so dark pixels may be negative. Pixels
        flagged ``DEFECT_BAD_GAIN`` with gain <= 0 give inf/NaN (no warning).
        """
        img = np.asarray(image)
        if img.shape[-2:] != self.shape:
            raise ImageMismatchError(
                f"image shape {img.shape} does not match profile shape {self.shape}"
            )
        with np.errstate(divide="ignore", invalid="ignore"):  # flagged gain <= 0 pixels
            electrons: np.ndarray = (img.astype(np.float32) - self.offset) / self.gain
        return electrons.astype(np.float32)

    # ------------------------------------------------------------------ geometry
    def crop(self, roi: Roi, *, relative: bool = False) -> CameraProfile:
        """Return the sub-profile covering ``roi``.

        Parameters
        ----------
        roi : (x, y, width, height)
            Region in binned pixels, exclusive end. By default absolute sensor
            coordinates (the same frame as ``identity.roi`` and Micro-Manager's
            ``ROI`` metadata); with ``relative=True`` relative to this profile's own
            top-left pixel (i.e. map indices ``[y:y+h, x:x+w]``).

        Raises
        ------
        ImageMismatchError
            If the region is empty or not inside this profile.
        """
        x, y, w, h = (int(v) for v in roi)
        ox, oy, pw, ph = self.identity.roi  # type: ignore[misc]
        rx, ry = (x, y) if relative else (x - ox, y - oy)
        if w <= 0 or h <= 0:
            raise ImageMismatchError(f"crop: empty ROI {tuple(roi)}")
        if rx < 0 or ry < 0 or rx + w > pw or ry + h > ph:
            frame = "relative" if relative else "absolute"
            raise ImageMismatchError(
                f"crop: {frame} ROI {tuple(roi)} (x, y, w, h) is not inside the profile "
                f"region {self.identity.roi} (absolute sensor coordinates)"
            )
        sl = (slice(ry, ry + h), slice(rx, rx + w))
        maps: dict[str, Any] = {
            n: (None if getattr(self, n) is None else getattr(self, n)[sl].copy())
            for n in MAP_NAMES + DARK_MAPS
        }
        ident = dataclasses.replace(
            self.identity, roi=(ox + rx, oy + ry, w, h), extra=dict(self.identity.extra)
        )
        prov = dict(self.provenance)
        prov["cropped_from"] = {"profile_id": self.profile_id, "roi": [ox, oy, pw, ph]}
        return CameraProfile(
            identity=ident,
            emva=dict(self.emva),
            ptc={k: v.copy() for k, v in self.ptc.items()},
            plan=dict(self.plan),
            provenance=prov,
            dark_info=dict(self.dark_info),
            **maps,
        )

    def check_image(
        self,
        image: np.ndarray,
        metadata: Mapping[str, Any] | None = None,
        *,
        name: str = "",
    ) -> None:
        """Check that a raw image (and its metadata) belongs to this profile.

        Parameters
        ----------
        image : (H, W) or (N, H, W) integer ndarray
            Raw frame(s) in ADU.
        metadata : mapping, optional
            Image metadata; recognised keys (case-insensitive, Micro-Manager names
            too): ``binning`` (int or ``"2x2"``), ``bit_depth``/``BitDepth``, ``roi``/
            ``ROI`` ((x, y, w, h) or ``"x-y-w-h"``), ``camera``/``Camera``,
            ``serial``, ``model``.
        name : str, optional
            Name of the image (file) to prefix error messages with.

        Raises
        ------
        ImageMismatchError
            Naming the first problem found: dtype, shape (with a hint when it looks
            like binning or an ROI), values above the bit depth, or metadata that
            disagree with the profile.
        """
        try:
            check_image_against(self, image, metadata)
        except ImageMismatchError as exc:
            if not name:
                raise
            raise ImageMismatchError(f"{name}: {exc}") from None

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(
        cls,
        shape: tuple[int, int],
        gain: float,
        offset: float,
        read_noise: float,
        bit_depth: int = 16,
        **identity: Any,
    ) -> CameraProfile:
        """Profile with the same gain, offset and read noise at every pixel.

        Parameters
        ----------
        shape : (H, W)
            Map shape in binned pixels.
        gain : float
            ADU per photo-electron.
        offset : float
            ADU.
        read_noise : float
            ADU rms.
        bit_depth : int
            ADC bit depth.
        **identity
            Further :class:`CameraIdentity` fields (``camera``, ``binning``,
            ``roi``, ...). The keys ``provenance``, ``emva`` and ``plan`` are passed
            to the profile instead.
        """
        prov = identity.pop("provenance", None)
        emva = identity.pop("emva", {})
        plan = identity.pop("plan", {})
        if prov is None:
            prov = provenance(source="uniform", estimated=False)
        h, w = (int(v) for v in shape)
        ident = CameraIdentity(bit_depth=bit_depth, **identity)
        return cls(
            offset=np.full((h, w), offset, np.float32),
            gain=np.full((h, w), gain, np.float32),
            read_noise=np.full((h, w), read_noise, np.float32),
            identity=ident,
            defects=np.zeros((h, w), np.uint8),
            emva=dict(emva),
            plan=dict(plan),
            provenance=dict(prov),
        )

    # ------------------------------------------------------------------ io
    def save(
        self, path: str | os.PathLike[str], force: bool = False, compression: str | None = "gzip"
    ) -> None:
        """Write the profile to HDF5 (schema 1) atomically.

        Raises :class:`~rawsigma.errors.OutputExistsError` if ``path`` exists and
        ``force`` is False. ``compression`` is ``"gzip"``, ``"lzf"`` or None.
        """
        save_profile(self, path, force=force, compression=compression)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CameraProfile:
        """Read and validate a profile written by :meth:`save`.

        Raises :class:`~rawsigma.errors.ProfileError` naming the file for anything
        that is not a valid schema-1 rawsigma profile.
        """
        return read_profile(path, cls)

    def at_exposure(self, exposure_s: float) -> CameraProfile:
        """The profile for images taken at ``exposure_s`` (seconds).

        With a dark current (``dark_current``, ADU/s, measured relative to
        ``dark_info["reference_exposure_s"]``): offset ``o + D (t - t_ref)`` and
        read-noise variance ``r^2 + g D (t - t_ref)`` (the dark electrons' shot
        noise), floored at the 1/12 ADU^2 of rounding. Without one, the profile
        itself (unchanged). See :func:`rawsigma.calib.darkcurrent.profile_at_exposure`.
        """
        return profile_at_exposure(self, exposure_s)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary for the CLI and GUI (see :func:`profile_summary`)."""
        return profile_summary(self)

    def __repr__(self) -> str:
        i = self.identity
        kind = "estimated" if self.estimated else "calibrated"
        return (
            f"CameraProfile(id={self.profile_id}, {kind}, camera={i.camera!r}, "
            f"model={i.model!r}, serial={i.serial!r}, shape={self.shape}, "
            f"bit_depth={i.bit_depth}, binning={i.binning}, roi={i.roi}, "
            f"gain={self.gain_global:.4g} ADU/e-, offset={self.offset_global:.4g} ADU, "
            f"read_noise={self.read_noise_global:.4g} ADU)"
        )


def load_profile(path: str | os.PathLike[str]) -> CameraProfile:
    """Read and validate a schema-1 profile (:meth:`CameraProfile.load`).

    Raises
    ------
    ProfileError
        Naming ``path`` and the problem: missing file, not HDF5 or truncated,
        foreign HDF5 (no rawsigma format attribute), unknown schema version,
        missing or mis-typed datasets, shapes disagreeing with each other or with
        the identity ROI, non-finite values where not allowed, or maps whose hash
        disagrees with the stored ``profile_id`` (modified or corrupted file).
    """
    return CameraProfile.load(path)
