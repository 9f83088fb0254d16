"""The light of a photon-transfer sweep: shutter, control value, auto-range, stability.

A sweep varies one *control* (the camera exposure, or a light-source property such
as ``LED-Intensity``) and needs dark frames (shutter closed, or the control at its
lower limit when there is no shutter). `LightControl` drives those devices through
the ordinary MMCore API and finds the top level by auto-ranging; `level_stability`
measures how steady the light was during one level from its frame means;
`save_device_state` / `restore_device_state` put the devices back after a run.
`rawsigma.acquire.sweep.SweepRunner` is the user.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import AcquisitionError, UsageError

from .stream import Controls, stream_frames

if TYPE_CHECKING:
    from collections.abc import Callable

    from .plans import SweepPlan
    from .protocols import MMCore

__all__ = [
    "LevelMonitor",
    "LightControl",
    "judge_level",
    "level_stability",
    "restore_device_state",
    "save_device_state",
]


def level_stability(frame_means: np.ndarray, dark_mean: float, pixel_var: float, npix: int):
    """Flicker and drift of one level from its frame means.

    Parameters
    ----------
    frame_means : ndarray of float64
        Mean of every frame of the level (ADU).
    dark_mean : float
        Mean dark level (ADU).
    pixel_var : float
        Mean per-pixel temporal variance of the level (ADU²).
    npix : int
        Pixels per frame.

    Returns
    -------
    dict
        ``signal`` (ADU above dark), ``flicker`` (relative rms frame-to-frame
        fluctuation not explained by pixel noise), ``drift`` (relative change of a
        straight-line fit over the level) and ``drift_t`` (its t statistic).
    """
    fm = np.asarray(frame_means, dtype=np.float64)
    n = fm.size
    sig = float(fm.mean() - dark_mean) if n else 0.0
    out = {"signal": sig, "flicker": 0.0, "drift": 0.0, "drift_t": 0.0}
    if n < 3 or sig <= 0:
        return out
    excess = float(np.var(fm, ddof=1)) - pixel_var / npix
    out["flicker"] = math.sqrt(max(excess, 0.0)) / sig
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    slope = float(np.dot(t, fm - fm.mean()) / np.dot(t, t))
    resid = fm - fm.mean() - slope * t
    se = math.sqrt(max(float(np.dot(resid, resid)) / (n - 2), 1e-300) / float(np.dot(t, t)))
    out["drift"] = slope * (n - 1) / sig
    out["drift_t"] = slope / se
    return out


def judge_level(
    lv: Any, dark: Any, plan: SweepPlan, level: int, value: float, retry: int
) -> tuple[dict[str, Any], list[str], bool]:
    """End-of-level verdict on the light of one level (shared by the sweep engines).

    Parameters
    ----------
    lv, dark : PixelMoments
        The level and the dark.
    plan : SweepPlan
        ``flicker_limit``, ``drift_limit``, ``on_drift``, ``max_retries``.
    level, value, retry : int, float, int
        Level index, control value and how many times it was re-acquired already.

    Returns
    -------
    (dict, list of str, bool)
        The `level_stability` summary with ``level``, ``control``, ``retry``,
        ``flickering`` and ``drifting`` added; the warnings to emit; whether to
        re-acquire the level.
    """
    st = level_stability(
        lv.frame_means,
        float(np.mean(dark.frame_means)),
        float(np.mean(lv.var())),
        lv.shape[0] * lv.shape[1],
    )
    drifting = abs(st["drift"]) > plan.drift_limit and abs(st["drift_t"]) > 4.0
    st.update(
        level=level,
        control=value,
        retry=retry,
        flickering=st["flicker"] > plan.flicker_limit,
        drifting=bool(drifting),
    )
    msgs: list[str] = []
    if st["flickering"]:
        msgs.append(
            f"level {level}: light flicker {100 * st['flicker']:.2f} % rms (limit "
            f"{100 * plan.flicker_limit:.2f} %); corrected from the frame means, and the "
            "profile records the source as unstable"
        )
    again = bool(drifting and plan.on_drift == "reacquire" and retry < plan.max_retries)
    if drifting:
        what = "re-acquiring" if again else "kept and reported"
        msgs.append(
            f"level {level}: light drifted {100 * st['drift']:+.2f} % over the level "
            f"(limit {100 * plan.drift_limit:.2f} %); {what}"
        )
    return st, msgs, again


class LevelMonitor:
    """Light stability checked while a level is being acquired, not only at its end.

    Every ``every`` frames, the frame means received so far give a running flicker
    and drift test (`level_stability`); the first time either is clearly beyond
    the plan's limit, ``warn`` is called once (per kind and level), so the operator
    learns of a flickering or drifting source early. The end-of-level verdict
    (`judge_level`) is unchanged and stays the one that decides.

    Early tests are stricter than the final one, since they are repeated: flicker
    must exceed the limit by three standard errors of a variance from ``n`` frame
    means (``1 − 3·sqrt(2/(n−1))``), and drift, projected over the whole level,
    must exceed the limit with a t statistic above 6.

    Parameters
    ----------
    level : int
        Level index (for the messages).
    n_frames : int
        Frames the level will have (to project the drift).
    dark_mean : float
        Mean dark level, ADU.
    plan : SweepPlan
        ``flicker_limit``, ``drift_limit``, ``stability_every``.
    warn : callable
        ``warn(message)``.
    """

    def __init__(
        self,
        level: int,
        n_frames: int,
        dark_mean: float,
        plan: SweepPlan,
        warn: Callable[[str], None],
    ) -> None:
        self.level = level
        self.n_frames = int(n_frames)
        self.dark_mean = float(dark_mean)
        self.plan = plan
        self.warn = warn
        self.every = int(getattr(plan, "stability_every", 0) or 0)
        self._next = max(self.every, 8)
        self.warned: dict[str, int] = {}  # kind -> frames seen when warned
        self.checks = 0

    def update(self, moments: Any) -> None:
        """Call after frames were folded into ``moments`` (cheap unless a check is due)."""
        n = int(moments.n)
        if self.every <= 0 or n < self._next or n >= self.n_frames:
            return
        while self._next <= n:
            self._next += self.every
        self.checks += 1
        fm = moments.frame_means
        npix = moments.shape[0] * moments.shape[1]
        st = level_stability(fm, self.dark_mean, float(np.mean(moments.var())), npix)
        p = self.plan
        if st["signal"] <= 0:
            return
        factor = 1.0 - 3.0 * math.sqrt(2.0 / (n - 1))
        if (
            "flicker" not in self.warned
            and factor > 0
            and st["flicker"] ** 2 * factor > (p.flicker_limit**2)
        ):
            self.warned["flicker"] = n
            self.warn(
                f"level {self.level}: light flickering {100 * st['flicker']:.2f} % rms after "
                f"{n} of {self.n_frames} frames (limit {100 * p.flicker_limit:.2f} %)"
            )
        projected = st["drift"] * (self.n_frames - 1) / max(n - 1, 1)
        if (
            "drift" not in self.warned
            and abs(projected) > p.drift_limit
            and abs(st["drift_t"]) > 6.0
        ):
            self.warned["drift"] = n
            self.warn(
                f"level {self.level}: light drifting, {100 * projected:+.2f} % projected over "
                f"the level after {n} of {self.n_frames} frames (limit "
                f"{100 * p.drift_limit:.2f} %)"
            )


class LightControl:
    """Shutter and control value of a sweep, and the auto-range of its top level.

    Parameters
    ----------
    core : CMMCorePlus-like
    camera, shutter : str
        Device labels (``shutter`` may be empty: darks then use the control's
        lower limit, which needs a control device).
    plan : SweepPlan
        ``control_device``, ``control_max``, ``settle_s``, ``target_fraction``,
        ``frame_timeout_s`` are used.
    controls : Controls
        Pause/cancel flags of the runner (the auto-range frames honour them).
    warn : callable
        ``warn(message)`` for conditions the user should know about.
    """

    def __init__(
        self,
        core: MMCore,
        camera: str,
        shutter: str,
        plan: SweepPlan,
        controls: Controls,
        warn: Callable[[str], None],
    ) -> None:
        self.core = core
        self.camera = camera
        self.shutter = shutter
        self.plan = plan
        self.controls = controls
        self.warn = warn

    def switch(self, on: bool) -> None:
        """Light on (shutter open) or off (shutter closed, else control at its minimum)."""
        core = self.core
        if self.shutter:
            core.setShutterOpen(self.shutter, bool(on))
            core.waitForDevice(self.shutter)
            return
        if on:
            return
        dev = self.plan.control_device
        if dev is None:
            raise AcquisitionError(
                "no shutter device: cannot take dark frames (set Core-Shutter in the config)"
            )
        low = core.getPropertyLowerLimit(*dev) if core.hasPropertyLimits(*dev) else 0.0
        self.warn(f"no shutter device: dark frames taken with {dev[0]}-{dev[1]} = {low}")
        self.set_control(low)

    def set_control(self, value: float) -> None:
        """Set the exposure (ms) or the control property, wait, then settle ``settle_s``."""
        core = self.core
        dev = self.plan.control_device
        if dev is None:
            core.setExposure(self.camera, float(value))
            core.waitForDevice(self.camera)
        else:
            core.setProperty(dev[0], dev[1], float(value))
            core.waitForDevice(dev[0])
        if self.plan.settle_s:
            time.sleep(self.plan.settle_s)

    def check_control(self) -> None:
        """Refuse, before any frame, a control the core cannot drive.

        A device or property the core does not have, or a property without an upper
        limit and no ``control_max``, stopped the sweep after its dark frames, leaving
        a partial file that no corrected command could resume.
        """
        dev = self.plan.control_device
        if dev is None:
            return
        flag = f"--control {dev[0]}-{dev[1]}"
        try:
            has = bool(self.core.hasProperty(*dev))
        except Exception:  # noqa: BLE001 - MMCore raises for an unknown device
            has = False
        if not has:
            raise UsageError(f"{flag}: {self._missing(*dev)}")
        try:
            self.control_limit()
        except AcquisitionError as exc:
            raise UsageError(f"{flag}: {exc}") from None

    def _missing(self, device: str, prop: str) -> str:
        """What the core lacks of ``device-prop``, with what it has (best effort)."""
        try:
            devices = [str(d) for d in self.core.getLoadedDevices()]
            if device not in devices:
                return f"no device {device!r} (devices: {', '.join(devices)})"
            props = [str(p) for p in self.core.getDevicePropertyNames(device)]
        except Exception:  # noqa: BLE001 - a bridge may lack the calls: say less
            return f"the rig has no property {prop!r} of device {device!r}"
        return f"device {device} has no property {prop!r} (its properties: {', '.join(props)})"

    def control_limit(self) -> float:
        """Highest control value allowed (device limit and/or ``control_max``)."""
        p, core = self.plan, self.core
        dev = p.control_device
        if dev is None:
            return float(p.control_max or 10000.0)
        if core.hasPropertyLimits(*dev):
            hi = float(core.getPropertyUpperLimit(*dev))
            return min(hi, p.control_max) if p.control_max else hi
        if p.control_max:
            return float(p.control_max)
        raise AcquisitionError(
            f"{dev[0]}-{dev[1]} has no upper limit: give control_max (--control-max)"
        )

    def signal(self, value: float, dark_median: float, n: int = 4) -> float:
        """Median signal above dark (ADU) of the mean of ``n`` frames at ``value``."""
        self.set_control(value)
        acc: np.ndarray | None = None
        for img in stream_frames(
            self.core, self.camera, n, controls=self.controls, timeout_s=self.plan.frame_timeout_s
        ):
            a = img.astype(np.float32)
            acc = a if acc is None else acc + a
        if acc is None:
            raise AcquisitionError(f"no frame arrived at {self.plan.control}={value}")
        return float(np.median(acc / n)) - dark_median

    def auto_range(self, dark: Any, bit_depth: int, limit: float) -> tuple[float, float | None]:
        """Top control value and the saturating value (None if not reached).

        Doubles the exposure until the signal fills 30 % of the ADC (control =
        exposure), halves the value until the response is linear, then puts the top
        at ``target_fraction`` of saturation (ADC or full well), at most ``limit``.
        The light must be on; ``dark`` is the dark `PixelMoments`.
        """
        p = self.plan
        dark_med = float(np.median(dark.mean()))
        max_adu = (1 << int(bit_depth)) - 1
        adc_room = max_adu - dark_med
        c = limit if p.control_device is not None else float(self.core.getExposure(self.camera))
        s = self.signal(c, dark_med)
        while p.control_device is None and s < 0.3 * adc_room and c < limit:
            c = min(2 * c, limit)
            s = self.signal(c, dark_med)
        c_hi, s_hi = c, s
        lo, s_lo = c / 2, self.signal(c / 2, dark_med)
        for _ in range(30):
            if s_lo <= 0 or abs(s / (2 * s_lo) - 1) < 0.05:
                break
            c, s = lo, s_lo
            lo, s_lo = c / 2, self.signal(c / 2, dark_med)
        if s_lo <= 3 * max(float(np.median(np.sqrt(dark.var()))), 1.0) / math.sqrt(4):
            raise AcquisitionError(
                f"auto-range: no light signal (median {s_lo:.2f} ADU above dark at "
                f"{p.control} = {lo:g}); is the light source on and the shutter working?"
            )
        slope = s_lo / lo
        if s_hi < 0.95 * slope * c_hi:  # response bends: saturated at c_hi
            sat = min(s_hi, adc_room)
            saturating: float | None = sat / slope
        elif p.control_device is None:  # exposure: linear up to 30 % of the ADC only
            sat, saturating = self._full_well(slope, adc_room, limit, dark_med)
        else:
            sat = adc_room
            saturating = sat / slope if sat / slope <= limit else None
        top = min(p.target_fraction * sat / slope, limit)
        return float(top), saturating

    def _full_well(
        self, slope: float, adc_room: float, limit: float, dark_med: float
    ) -> tuple[float, float | None]:
        """Saturation signal (ADU) and control value when the exposure is the control.

        The doubling stops at 30 % of the ADC, so a full well below the ADC maximum (most
        sCMOS cameras) is found by one probe where the ADC would fill: a response
        flattened there by > 5 % is the full well's plateau if a probe 10 % further does
        not rise (`_plateau`). Without the probe the top level was put at 90 % of the ADC,
        beyond the full well (a quarter of the pixels clipped, mu_e.sat interpolated
        17 % low).
        """
        c = min(adc_room / slope, limit)
        s = self.signal(c, dark_med)
        if s < 0.95 * slope * c:
            return self._plateau(c, s, slope, limit, dark_med)
        return adc_room, (adc_room / slope if adc_room / slope <= limit else None)

    def _plateau(
        self, c: float, s: float, slope: float, limit: float, dark_med: float
    ) -> tuple[float, float | None]:
        """Saturation signal and control value from a probe ``(c, s)`` below the line.

        The 5 % shortfall that flags a plateau is also the linearity check's tolerance, so
        a slope a few % high, a slightly compressive response or a drooping light looked
        like a full well at 0.94 of the ADC range, and the saturation levels, put 6 % low,
        missed saturation. Steps of 10 % in the control climb until the signal stops
        rising (< 2 %): the last point is on the plateau; its control value is where the
        rise met the plateau (from the last rising step's slope).
        """
        pts = [(c, s)]  # probes, the signal rising (> 2 %) from each to the next
        for _ in range(12):
            c2 = min(1.1 * c, limit)
            if c2 <= c * 1.001:  # at the limit: saturation not reached
                return s, None
            s2 = self.signal(c2, dark_med)
            if s2 < 1.02 * s:
                break
            c, s = c2, s2
            pts.append((c, s))
        else:  # still rising after 12 steps (3.1x): no plateau seen, none claimed
            return s, None
        sat = max(s, s2)
        if len(pts) == 1:  # the first probe was already on the plateau: linear up to it
            return sat, sat / slope
        (c0, s0), (c1, s1) = pts[-3] if len(pts) > 2 else (0.0, 0.0), pts[-2]
        local = (s1 - s0) / (c1 - c0)
        return sat, float(min(c, c1 + max(sat - s1, 0.0) / local)) if local > 0 else c


def save_device_state(core: MMCore, camera: str, shutter: str, plan: SweepPlan) -> dict[str, Any]:
    """Auto-shutter, exposure, shutter state and control value before a sweep."""
    st: dict[str, Any] = {"auto": core.getAutoShutter(), "exposure": core.getExposure(camera)}
    with contextlib.suppress(Exception):
        st["open"] = core.getShutterOpen(shutter) if shutter else None
    dev = plan.control_device
    if dev is not None:
        with contextlib.suppress(Exception):
            st["control"] = core.getProperty(*dev)
            st["control_dev"] = dev
    return st


def restore_device_state(core: MMCore, camera: str, shutter: str, st: dict[str, Any]) -> None:
    """Put back what `save_device_state` recorded (best effort)."""
    with contextlib.suppress(Exception):
        if shutter and st.get("open") is not None:
            core.setShutterOpen(shutter, st["open"])
    with contextlib.suppress(Exception):
        core.setExposure(camera, st["exposure"])
    with contextlib.suppress(Exception):
        core.setAutoShutter(st["auto"])
    if st.get("control_dev") and st.get("control") is not None:
        with contextlib.suppress(Exception):
            dev, prop = st["control_dev"]
            core.setProperty(dev, prop, st["control"])
