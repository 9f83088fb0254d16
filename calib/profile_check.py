"""Checks that a raw image (and its metadata) belongs to a camera profile."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.calib.profile_fields import DEFECT_NAMES
from rawsigma.errors import ImageMismatchError, ProfileError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rawsigma.calib.profile import CameraProfile

_BIN_FACTORS = (2, 3, 4, 8)


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


def _find(meta: Mapping[str, Any], *names: str) -> Any:
    norm = {_norm_key(k): v for k, v in meta.items()}
    for n in names:
        if n in norm and norm[n] not in (None, ""):
            return norm[n]
    return None


def parse_binning(value: Any) -> int:
    """Parse a binning value: ``2``, ``"2"``, ``"2x2"`` -> 2.

    Raises
    ------
    ImageMismatchError
        For asymmetric or unparseable values.
    """
    if isinstance(value, (int, np.integer)):
        return int(value)
    parts = re.split(r"\s*[xX*]\s*", str(value).strip())
    try:
        nums = {int(float(p)) for p in parts if p}
    except ValueError:
        raise ImageMismatchError(f"image metadata: cannot parse binning {value!r}") from None
    if len(nums) != 1:
        raise ImageMismatchError(f"image metadata: asymmetric binning {value!r} is not supported")
    return nums.pop()


def parse_roi(value: Any) -> tuple[int, int, int, int]:
    """Parse an ROI: ``(x, y, w, h)``, ``[x, y, w, h]`` or Micro-Manager's ``"x-y-w-h"``."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[-,;\s]+", value.strip("()[] ")) if p]
    else:
        parts = list(value)
    try:
        roi = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ImageMismatchError(f"image metadata: cannot parse ROI {value!r}") from None
    if len(roi) != 4:
        raise ImageMismatchError(f"image metadata: ROI {value!r} is not (x, y, width, height)")
    return roi


def _shape_hint(profile: CameraProfile, shape: tuple[int, int]) -> str:
    ph, pw = profile.shape
    h, w = shape
    binning = profile.identity.binning
    for b in _BIN_FACTORS:
        if (ph // b, pw // b) == (h, w):
            return (
                f"; it looks binned {b}x{b} relative to the profile (profile binning "
                f"{binning}): use a profile calibrated at binning {binning * b}"
            )
        if (h // b, w // b) == (ph, pw):
            return (
                f"; the profile looks binned {b}x{b} relative to the image (profile "
                f"binning {binning}): use a profile calibrated at the image's binning"
            )
    if (h, w) == (pw, ph) and h != w:
        return "; it looks transposed (rows and columns swapped)"
    sh, sw = profile.identity.sensor_shape  # type: ignore[misc]
    if h <= sh and w <= sw and (h < ph or w < pw):
        return (
            "; it looks like a sub-region (ROI): crop the profile to the image's ROI "
            "with profile.crop((x, y, width, height)) in sensor coordinates"
        )
    if (h > sh or w > sw) and (h >= ph and w >= pw):
        return (
            f"; the image is larger than the profile's whole {sw}x{sh} sensor: it comes "
            "from another camera or mode: use that camera's profile"
        )
    if h > ph or w > pw:
        return (
            f"; the profile covers only ROI {profile.identity.roi} (x, y, w, h) of a "
            f"{sw}x{sh} sensor: calibrate the full region the image uses"
        )
    return ""


def check_image_against(
    profile: CameraProfile, image: Any, metadata: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`ImageMismatchError` if ``image``/``metadata`` do not fit ``profile``.

    See :meth:`rawsigma.calib.profile.CameraProfile.check_image`.
    """
    ident = profile.identity
    if metadata:
        _check_metadata(profile, metadata)
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ImageMismatchError(
            f"image has {image.ndim} dimension(s) {image.shape}; expected (H, W) or (N, H, W)"
        )
    shape = image.shape[-2:]
    if shape != profile.shape:
        raise ImageMismatchError(
            f"image shape {shape} (rows, cols) does not match profile shape "
            f"{profile.shape}{_shape_hint(profile, shape)}"
        )
    dt = image.dtype
    if np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.complexfloating):
        raise ImageMismatchError(
            f"image dtype is {dt}, but raw integer ADU (uint{16 if ident.bit_depth <= 16 else 32}) "
            "is expected: the image was processed, normalised or rescaled"
        )
    if dt == np.bool_ or not np.issubdtype(dt, np.integer):
        raise ImageMismatchError(f"image dtype {dt} is not a raw integer image")
    if dt.itemsize == 1 and ident.bit_depth > 8:
        raise ImageMismatchError(
            f"image is 8-bit ({dt}) but the profile's camera is {ident.bit_depth}-bit: "
            "the image was probably converted to 8 bits for display and is not raw"
        )
    if image.size == 0:
        return
    lo, hi = image.min(), image.max()
    if lo < 0:
        raise ImageMismatchError(f"image has negative values (min {int(lo)}); raw ADU are >= 0")
    if int(hi) > profile.max_adu:
        n = int(np.count_nonzero(image > profile.max_adu))
        raise ImageMismatchError(
            f"image has {n} value(s) above the profile's {ident.bit_depth}-bit maximum "
            f"{profile.max_adu} ADU (max {int(hi)}): wrong bit depth or not a raw image"
        )


def _check_metadata(profile: CameraProfile, meta: Mapping[str, Any]) -> None:
    ident = profile.identity
    problems: list[str] = []
    b = _find(meta, "binning", "camerabinning")
    if b is not None:
        b = parse_binning(b)
        if b != ident.binning:
            problems.append(f"binning {b} (profile: {ident.binning})")
    bd = _find(meta, "bitdepth", "camerabitdepth", "pixeltypebitdepth")
    if bd is not None:
        try:
            bd = int(bd)
        except (TypeError, ValueError):
            raise ImageMismatchError(f"image metadata: cannot parse bit depth {bd!r}") from None
        if bd != ident.bit_depth:
            problems.append(f"bit depth {bd} (profile: {ident.bit_depth})")
    for key, names in (
        ("camera", ("camera", "cameralabel", "cameradevice")),
        ("model", ("model", "cameramodel")),
        ("serial", ("serial", "serialnumber", "cameraserialnumber")),
    ):
        v = _find(meta, *names)
        mine = getattr(ident, key)
        accepted = {mine}
        if key == "camera":
            # Micro-Manager reports the device label; profiles may hold the label, the
            # adapter/model name, or record the label among the extra properties.
            accepted |= {ident.model, *ident.extra.values()}
        if v is not None and mine and str(v) not in accepted:
            problems.append(f"{key} {str(v)!r} (profile: {mine!r})")
    roi = _find(meta, "roi", "cameraroi")
    if roi is not None:
        roi = parse_roi(roi)
        if roi != tuple(ident.roi):  # type: ignore[arg-type]
            x, y, w, h = roi
            px, py, pw, ph = ident.roi  # type: ignore[misc]
            inside = x >= px and y >= py and x + w <= px + pw and y + h <= py + ph
            hint = f"; crop the profile with profile.crop({roi})" if inside and not problems else ""
            problems.append(f"ROI {roi} (x, y, w, h; profile: {tuple(ident.roi)}){hint}")  # type: ignore[arg-type]
    if problems:
        raise ImageMismatchError(
            f"image metadata disagree with the profile {profile.profile_id}: " + "; ".join(problems)
        )


#: A profile with more defect pixels than this is refused for compression and scoring.
DEFECT_ERROR_FRACTION = 0.5
#: Above this fraction of defect pixels, compression and scoring warn loudly.
DEFECT_WARN_FRACTION = 0.05


def check_defect_fraction(
    profile: CameraProfile,
    name: str = "profile",
    *,
    error_above: float = DEFECT_ERROR_FRACTION,
    warn_above: float = DEFECT_WARN_FRACTION,
) -> str | None:
    """Refuse a profile whose maps are mostly defect pixels; describe a suspicious one.

    A calibration from swapped stacks (dark brighter than flats) or a failed sweep
    flags most pixels as defective; compressing or scoring with it would use the
    good-pixel substitutes everywhere and give a confident, meaningless result.

    Parameters
    ----------
    profile : CameraProfile
    name : str
        Prefix of the messages (usually the profile file).
    error_above, warn_above : float
        Fractions of defect pixels (0–1).

    Returns
    -------
    str or None
        A warning (defect fraction above ``warn_above``), else None.

    Raises
    ------
    ProfileError
        More than ``error_above`` of the pixels carry a defect flag.
    """
    if profile.defects is None:
        return None
    bad = np.asarray(profile.defects) != 0
    frac = float(bad.mean()) if bad.size else 0.0
    if frac <= warn_above:
        return None
    counts = {
        label: int((np.asarray(profile.defects) & bit != 0).sum())
        for bit, label in DEFECT_NAMES.items()
    }
    kinds = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "unknown"
    msg = (
        f"{name}: {frac:.1%} of the pixels are flagged defective ({kinds}); "
        "the calibration is probably wrong (stacks swapped or mislabelled, saturated "
        "or unlit levels)"
    )
    if frac > error_above:
        raise ProfileError(
            msg + f"; refusing to use it (limit {error_above:.0%}). Recalibrate, or check "
            "it with `rawsigma profile show`"
        )
    return msg + f" (more than {warn_above:.0%}); results may not be meaningful"
