"""Declarative, validated acquisition plans (saved into the profiles they produce).

Like useq-schema's ``MDASequence``: a plan is a frozen pydantic model, validated on
construction, JSON-serialisable (``plan.model_dump(mode="json")``) and stored next
to the data it produced.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SweepPlan", "StackPlan", "SaveFormat", "derived_seed"]

SaveFormat = Literal["ome-tiff", "hdf5"]


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepPlan(_Plan):
    """A flat-field photon-transfer sweep.

    Parameters
    ----------
    dark_frames : int
        Dark frames (shutter closed) for offset and read noise.
    n_levels : int
        Number of flat-field levels below saturation.
    frames_per_level : int
        Frames per level (100 by default; the full protocol is 1000; 2 = EMVA pairs).
    spacing : {"linear", "log"}
        Spacing of the control values between ``control_min`` and the top level.
    control : str
        What sets the light level: a light-source property ``"Device-Property"``
        (or ``"Device.Property"``), e.g. ``"LED-Intensity"``, or ``"exposure"``
        (camera exposure time in ms, light source at its current setting).
    control_min, control_max : float, optional
        Lowest / highest control value. ``control_max`` is found by auto-ranging when
        ``auto_range`` is true; otherwise it defaults to the property's upper limit
        (or the current exposure for ``"exposure"``). ``control_min`` defaults to
        ``top / n_levels`` (linear) or ``top / 100`` (log).
    auto_range : bool
        Search the control value that brings the median pixel to ``target_fraction``
        of saturation (the lower of full well and ADC ceiling) and use it as the top.
    target_fraction : float
        Fraction of the saturation signal for the top level, 0 < f ≤ 1.
    saturation_levels : int
        Extra levels around saturation (0.96–1.10 × the saturating control value) so
        the saturation capacity can be measured; clipped pixels are not fitted.
    exposure_ms : float, optional
        Camera exposure for light-controlled sweeps (None: leave unchanged).
    level_darks : int
        Dark frames per level (EMVA protocol; needed when ``control="exposure"`` and
        the dark current matters). 0: one shared dark.
    settle_s : float
        Extra wait after changing the control, seconds (after ``waitForDevice``).
    seed : int, optional
        Seed written to every device that has a ``Seed`` property, once per level
        (simulated rig), so interrupted and resumed runs draw the same frames.
    flicker_limit : float
        Relative frame-to-frame rms fluctuation of the frame means above which a
        level is flagged unstable.
    drift_limit : float
        Relative change of the frame means over one level above which the level
        drifted.
    on_drift : {"reacquire", "report"}
        What to do with a drifting level.
    max_retries : int
        Re-acquisitions of one drifting level before it is kept and reported.
    chunk_frames : int
        Frames folded into the accumulators per call (memory ≈ chunk × frame size).
    frame_timeout_s : float
        Longest wait for one frame before the acquisition fails.
    save_frames : {"ome-tiff", "hdf5"}, optional
        Also write every frame (streamed, never held) in this format.
    stability_every : int
        Check the light's flicker and drift every this many frames while a level is
        acquired, and warn as soon as it is clearly unstable (0: only at the end of
        the level; see `rawsigma.acquire.light_control.LevelMonitor`).
    """

    dark_frames: int = Field(100, ge=2)
    n_levels: int = Field(10, ge=2, le=1000)
    frames_per_level: int = Field(100, ge=2)
    spacing: Literal["linear", "log"] = "linear"
    control: str = "LED-Intensity"
    control_min: float | None = Field(None, gt=0)
    control_max: float | None = Field(None, gt=0)
    auto_range: bool = True
    target_fraction: float = Field(0.9, gt=0, le=1)
    saturation_levels: int = Field(3, ge=0, le=10)
    exposure_ms: float | None = Field(None, gt=0)
    level_darks: int = Field(0, ge=0)
    settle_s: float = Field(0.0, ge=0)
    seed: int | None = Field(None, ge=0)
    flicker_limit: float = Field(0.005, gt=0)
    drift_limit: float = Field(0.01, gt=0)
    on_drift: Literal["reacquire", "report"] = "reacquire"
    max_retries: int = Field(1, ge=0, le=10)
    chunk_frames: int = Field(4, ge=1, le=1024)
    frame_timeout_s: float = Field(10.0, gt=0)
    save_frames: SaveFormat | None = None
    stability_every: int = Field(25, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SweepPlan:
        if self.control != "exposure" and not _split_control(self.control):
            raise ValueError(
                f"control {self.control!r}: use 'exposure' or a light-source property "
                "'Device-Property' such as 'LED-Intensity'"
            )
        if (
            self.control_min is not None
            and self.control_max is not None
            and self.control_min >= self.control_max
        ):
            raise ValueError(f"control_min {self.control_min} >= control_max {self.control_max}")
        return self

    @property
    def control_device(self) -> tuple[str, str] | None:
        """``(device, property)`` of the control, or None for exposure."""
        return None if self.control == "exposure" else _split_control(self.control)

    def level_values(self, top: float) -> list[float]:
        """Control values of the ``n_levels`` flat-field levels, ascending, ending at ``top``."""
        lo = self.control_min
        if self.spacing == "linear":
            lo = top / self.n_levels if lo is None else lo
            vals = np.linspace(lo, top, self.n_levels)
        else:
            lo = top / 100.0 if lo is None else lo
            vals = np.geomspace(lo, top, self.n_levels)
        if lo >= top:
            raise ValueError(f"control_min {lo} >= top level {top}")
        return [float(v) for v in vals]

    def saturation_values(self, top: float, saturating: float | None, limit: float) -> list[float]:
        """Control values of the extra levels around saturation (may be empty).

        ``saturation_levels`` values spread over 0.96–1.10 × the saturating control
        value (estimated as ``top / target_fraction`` when not measured), so that the
        EMVA rule (0.1–0.2 % of pixels at the maximum) is bracketed; values at or
        below ``top`` or above ``limit`` are dropped.
        """
        k = self.saturation_levels
        if k == 0:
            return []
        sat = saturating if saturating else top / self.target_fraction
        fr = np.linspace(0.96, 1.10, k) if k > 1 else np.array([1.10])
        vals = sorted({round(float(min(f * sat, limit)), 9) for f in fr})
        return [v for v in vals if v > top * 1.001]


def _split_control(control: str) -> tuple[str, str] | None:
    for sep in ("-", "."):
        if sep in control:
            dev, prop = control.split(sep, 1)
            if dev and prop:
                return dev, prop
    return None


class StackPlan(_Plan):
    """An N-frame repeat stack at fixed settings.

    Parameters
    ----------
    n_frames : int
        Frames to acquire (1000 in the paper's Fig. 1a).
    shutter_open : bool
        Illuminate (True) or take darks (False).
    properties : dict of str to str
        ``{"Device-Property": value}`` set before the stack (e.g. ``{"LED-Intensity": "40"}``).
    exposure_ms : float, optional
        Camera exposure (None: unchanged).
    probe_pixels : list of (row, col), optional
        Pixels whose every value is kept for the single-pixel relative-error curve;
        default: the centre pixel and 4 pixels at quarter positions.
    seed : int, optional
        Seed for devices with a ``Seed`` property.
    chunk_frames, frame_timeout_s, save_frames
        As in `SweepPlan`.
    """

    n_frames: int = Field(1000, ge=2)
    shutter_open: bool = True
    properties: dict[str, str] = Field(default_factory=dict)
    exposure_ms: float | None = Field(None, gt=0)
    probe_pixels: tuple[tuple[int, int], ...] | None = None
    seed: int | None = Field(None, ge=0)
    chunk_frames: int = Field(4, ge=1, le=1024)
    frame_timeout_s: float = Field(10.0, gt=0)
    save_frames: SaveFormat | None = None

    def probes(self, shape: tuple[int, int]) -> list[tuple[int, int]]:
        """The probe pixels for a frame of ``shape`` (validated)."""
        h, w = shape
        if self.probe_pixels is None:
            pts = [(h // 2, w // 2), (h // 4, w // 4), (h // 4, 3 * w // 4)]
            pts += [(3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
            return list(dict.fromkeys(pts))
        for r, c in self.probe_pixels:
            if not (0 <= r < h and 0 <= c < w):
                raise ValueError(f"probe pixel {(r, c)} outside frame of shape {shape}")
        return [tuple(p) for p in self.probe_pixels]  # type: ignore[misc]


def derived_seed(seed: int, index: int) -> int:
    """Seed for level ``index`` (>= -16; -1 = dark) derived from the plan seed (31-bit)."""
    ss = np.random.SeedSequence([int(seed), int(index) + 16])
    return int(ss.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
