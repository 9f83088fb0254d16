"""Flat-field photon-transfer sweep driven through the ordinary MMCore API.

`SweepRunner` takes dark frames (shutter closed), auto-ranges the top light level,
then acquires ``n_levels`` flat-field levels by sequence acquisition, folding every
frame into `rawsigma.calib.moments.PixelMoments` accumulators as it arrives (the
stack is never held). Each level's frame means are checked for flicker and drift;
a drifting level is re-acquired or reported. After every level a resumable partial
file is written atomically; ``run(resume=True)`` continues from it and, with a
plan seed on the simulated rig, yields the same profile as an uninterrupted run.

Signals (psygnal), for the CLI progress bar and the GUI:

- ``levelStarted(int, dict)``: level index (-1 = dark), info (``kind``, ``control``,
  ``n_frames``, ``n_levels``, ``retry``)
- ``frameAccumulated(int, int, object)``: level index, frame index, frame (uint16
  ndarray; valid during the call only — copy it to keep it)
- ``levelFinished(int, dict)``: level index, summary (``mean``, ``flicker``, ``drift``,
  ``fps``, ``unstable``, ...)
- ``warning(str)``
- ``finished(object)``: the `CameraProfile`

The shutter, the control value, the auto-range and the light-stability measure are
in `rawsigma.acquire.light_control`; the frame loop is `stream.accumulate_frames`.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import (
    AcquisitionError,
    InputFileError,
    OutputError,
    OutputExistsError,
    RawsigmaError,
)
from rawsigma.fileio import check_output, describe_os_error, output_lock

from .framesave import FrameWriter, frame_context
from .identity import read_identity
from .light_control import (
    LevelMonitor,
    LightControl,
    judge_level,
    level_stability,
    restore_device_state,
    save_device_state,
)
from .partial import read_partial, write_partial
from .plans import SweepPlan, derived_seed
from .stream import ControlledRunner, accumulate_frames, seed_devices

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = [
    "RESUME_IDENTITY_KEYS",
    "SweepRunner",
    "level_stability",
    "partial_path_for",
    "sweep_identity",
    "sweep_profile",
]


def sweep_identity(core: MMCore, camera: str, plan: SweepPlan) -> Any:
    """The camera identity of a sweep's frames (`read_identity` before the sweep starts).

    With ``plan.exposure_ms`` (and the light as the control) every frame is taken at
    that exposure, which the sweep sets after reading the camera: the identity records
    it, not the exposure the camera had before (the offset's, and the dark current's
    reference exposure).
    """
    import dataclasses

    ident = read_identity(core, camera)
    if plan.exposure_ms is None or plan.control == "exposure":
        return ident
    extra = dict(ident.extra)
    if "Exposure" in extra:
        extra["Exposure"] = str(float(plan.exposure_ms))
    return dataclasses.replace(ident, exposure_ms=float(plan.exposure_ms), extra=extra)


#: Identity fields a resumed sweep must share with the partial file (the camera mode and
#: the dark's exposure: levels of another mode or exposure would be mixed silently).
RESUME_IDENTITY_KEYS = (
    "camera",
    "serial",
    "bit_depth",
    "binning",
    "roi",
    "sensor_shape",
    "readout_mode",
    "gain_mode",
    "exposure_ms",
)


#: ``rawsigma calibrate`` options of the plan fields (for the resume messages).
_PLAN_FLAGS = {
    "dark_frames": "--dark",
    "n_levels": "--levels",
    "frames_per_level": "--frames",
    "spacing": "--spacing",
    "control": "--control",
    "control_min": "--control-min",
    "control_max": "--control-max",
    "target_fraction": "--target",
    "saturation_levels": "--saturation-levels",
    "exposure_ms": "--exposure",
    "level_darks": "--level-darks",
    "settle_s": "--settle",
    "seed": "--seed",
}


def _plan_options(plan: dict[str, Any], keys: list[str]) -> str:
    """The options that give ``plan``'s values of ``keys`` ("--exposure 20, no --seed")."""
    out = []
    for k in keys:
        v, flag = plan.get(k), _PLAN_FLAGS.get(k)
        if k == "auto_range":
            out.append("--auto-range" if v else "--no-auto-range")
        elif flag is None:
            out.append(f"the same {k} ({v!r})")
        elif v is None:
            out.append(f"no {flag}")
        else:
            out.append(f"{flag} {v:g}" if isinstance(v, float) else f"{flag} {v}")
    return ", ".join(out)


def partial_path_for(output: str | os.PathLike) -> Path:
    """The resumable partial file kept next to the output profile (``<out>.partial.h5``).

    The CLI and the GUI both use this name, so a sweep stopped in one can be
    resumed from the other.
    """
    output = Path(output)
    return output.with_name(output.name + ".partial.h5")


#: Frame writers abandoned after a disk error (kept referenced so they are never closed).
_LEAKED: list[Any] = []

_AUTORANGE_SEED = -2
_LEVEL_DARK_SEED = 10000
_RETRY_SEED = 1000


class SweepRunner(ControlledRunner):
    """Run a `SweepPlan` on a Micro-Manager core.

    `cancel` stops as soon as possible (completed levels stay in the partial file);
    `pause` / `resume` stop and restart the sequence between frames.

    Parameters
    ----------
    core : CMMCorePlus-like
        A loaded core (`rawsigma.acquire.core.open_core`).
    plan : SweepPlan
    partial_path : path-like, optional
        Resumable checkpoint file (HDF5), written after the dark, the auto-range and
        every level; removed by `discard_partial` (``run(out=...)`` does it).
    frames_path : path-like, optional
        Also save every frame here (OME-TIFF, or HDF5 for ``.h5``) with a CSV frame
        table; on resume the frames go to ``<stem>-resumed.<ext>``.
    camera, shutter : str, optional
        Device labels (default: the core's current camera and shutter).
    force : bool
        Allow replacing ``frames_path`` and the output profile.
    gain_map : {"auto", "per-pixel", "global"}
        Which gain map the profile stores (`rawsigma.calib.build.build_profile`):
        ``auto`` stores the global K on every pixel when the per-pixel gains would
        be noise (too few frames per level).

    Attributes
    ----------
    dark : PixelMoments or None
    levels : list of PixelMoments
        Completed levels (the live accumulator is ``current``).
    level_values : list of float
        Control value of every level.
    """

    def __init__(
        self,
        core: MMCore,
        plan: SweepPlan,
        partial_path: str | os.PathLike | None = None,
        *,
        frames_path: str | os.PathLike | None = None,
        camera: str | None = None,
        shutter: str | None = None,
        force: bool = False,
        gain_map: str = "auto",
    ) -> None:
        super().__init__(core, camera, shutter, force)
        self.plan = plan
        self.gain_map = gain_map
        self.partial_path = Path(partial_path) if partial_path is not None else None
        self.frames_path = Path(frames_path) if frames_path is not None else None
        self.dark = None
        self.levels: list[Any] = []
        self.level_darks: list[Any] = []
        self.level_values: list[float] = []
        self.stability: list[dict[str, Any]] = []
        self.top: float | None = None
        self.saturating: float | None = None
        self.current = None
        self.identity = None
        self._saved: set[str] = set()
        self._writer: FrameWriter | None = None
        #: (path, frames) of the frame file closed by the last run, if any.
        self.frames_written: tuple[Path, int] | None = None
        self._warnings: list[str] = []
        self.light = LightControl(
            self.core, self.camera, self.shutter, plan, self.controls, self._warn
        )

    @property
    def total_frames(self) -> int:
        """Frames the whole sweep takes (without auto-range and re-acquisitions)."""
        p = self.plan
        n_lv = p.n_levels + p.saturation_levels
        return p.dark_frames + n_lv * (p.frames_per_level + p.level_darks)

    def discard_partial(self) -> None:
        """Remove the partial file (after the profile was saved)."""
        if self.partial_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.partial_path.unlink()

    def _warn(self, msg: str) -> None:
        self._warnings.append(msg)
        self.warning.emit(msg)

    # ------------------------------------------------------------ run
    def run(
        self,
        resume: bool = False,
        out: str | os.PathLike | None = None,
    ) -> Any:
        """Acquire the sweep and return the `CameraProfile`.

        Parameters
        ----------
        resume : bool
            Continue from ``partial_path`` if it exists (its plan and camera must
            match). Without it an existing partial file is an error.
        out : path-like, optional
            Save the profile there (refusing to overwrite unless ``force``) and
            then remove the partial file.

        Raises
        ------
        Cancelled
            After `cancel`; the partial file holds every completed level.
        AcquisitionError
            Camera/light-source failure, buffer overflow, timeout (partial kept).
        OutputExistsError
            ``out`` or ``frames_path`` exists without ``force``, or a partial file
            exists without ``resume``.
        """
        from rawsigma.calib.moments import PixelMoments  # noqa: F401 - fail early

        with contextlib.ExitStack() as locks:
            for path in (out, self.partial_path, self.frames_path):
                if path is not None:
                    locks.enter_context(output_lock(path))
            return self._run_locked(resume, out)

    def _run_locked(self, resume: bool, out: str | os.PathLike | None) -> Any:
        if out is not None:
            check_output(out, self.force)
        self.controls.reset()
        self.identity = sweep_identity(self.core, self.camera, self.plan)
        if self.partial_path is not None and self.partial_path.exists():
            if not resume:
                raise OutputExistsError(
                    f"{self.partial_path}: partial sweep exists; resume it (--resume) or delete it"
                )
            self._load_partial()
        core = self.core
        saved = save_device_state(core, self.camera, self.shutter, self.plan)
        failure: BaseException | None = None
        try:
            self._acquire_all(resume)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            restore_device_state(core, self.camera, self.shutter, saved)  # never raises
            self._close_writer(failure)
        profile = self._build()
        if out is not None:
            profile.save(out, force=self.force)
            self.discard_partial()
        self.finished.emit(profile)
        return profile

    def _acquire_all(self, resume: bool) -> None:
        """Dark, auto-range and every level, with errors mapped to rawsigma errors."""
        core = self.core
        self.light.check_control()
        try:
            core.setAutoShutter(False)
            if self.plan.exposure_ms is not None and self.plan.control != "exposure":
                core.setExposure(self.camera, self.plan.exposure_ms)
            self._open_writer(resume)
            if self.dark is None:
                self.dark = self._acquire(-1, self.plan.dark_frames, light=False, seed_index=-1)
                self._checkpoint({"dark": self.dark})
            if self.top is None:
                self.top, self.saturating = self._auto_range()
                limit = self.light.control_limit()
                self.level_values = self.plan.level_values(self.top)
                self.level_values += self.plan.saturation_values(self.top, self.saturating, limit)
                self._checkpoint({})
            for i in range(len(self.levels), len(self.level_values)):
                self._run_level(i)
        except (RawsigmaError, KeyboardInterrupt):
            raise
        except OSError as exc:  # the frame file: disk full, permission denied
            kept = "; completed levels are kept in the partial file" if self._saved else ""
            raise OutputError(f"{describe_os_error(exc, self.frames_path)}{kept}") from exc
        except Exception as exc:
            raise AcquisitionError(f"acquisition failed: {exc}") from exc

    # ------------------------------------------------------------ levels
    def _run_level(self, i: int) -> None:
        p = self.plan
        value = self.level_values[i]
        retry = 0
        while True:
            self.light.set_control(value)
            seed_index = i + _RETRY_SEED * retry
            lv = self._acquire(
                i, p.frames_per_level, light=True, seed_index=seed_index, control=value, retry=retry
            )
            st, messages, again = judge_level(lv, self.dark, p, i, value, retry)
            for msg in messages:
                self._warn(msg)
            if again:
                retry += 1
                continue
            break
        groups: dict[str, Any] = {f"levels/{i:03d}": lv}
        ld = None
        if p.level_darks:
            ld = self._acquire(
                -1,
                p.level_darks,
                light=False,
                seed_index=_LEVEL_DARK_SEED + i,
                level_dark_of=i,
            )
            groups[f"level_darks/{i:03d}"] = ld
        self.levels.append(lv)
        if ld is not None:
            self.level_darks.append(ld)
        self.stability.append(st)
        self._checkpoint(groups)

    def _acquire(
        self,
        index: int,
        n: int,
        *,
        light: bool,
        seed_index: int,
        control: float | None = None,
        retry: int = 0,
        level_dark_of: int | None = None,
    ) -> Any:
        # imported on use: numba compiles the accumulation kernels (start-up cost)
        from rawsigma.calib.moments import PixelMoments

        core, cam = self.core, self.camera
        self.light.switch(light)
        self._seed(seed_index)
        h, w = int(core.getImageHeight()), int(core.getImageWidth())
        dark_kind = index < 0
        pm = PixelMoments((h, w)) if dark_kind else PixelMoments((h, w), higher=False)
        self.current = pm
        info = {
            "kind": "dark" if dark_kind else "light",
            "control": control,
            "n_frames": n,
            "n_levels": len(self.level_values) or self.plan.n_levels,
            "retry": retry,
            "level_dark_of": level_dark_of,
        }
        self.levelStarted.emit(index, info)
        t0 = time.perf_counter()
        exp_ms = float(core.getExposure())
        kind = "dark" if dark_kind else "bright"
        lvl = level_dark_of if level_dark_of is not None else index
        ctl = np.nan if control is None else control

        monitor = None
        if not dark_kind and self.dark is not None:
            dark_mean = float(np.mean(self.dark.frame_means))
            monitor = LevelMonitor(index, n, dark_mean, self.plan, self._warn)

        def on_frame(j: int, frame: np.ndarray) -> None:
            if self._writer is not None:
                self._writer.write(frame, kind, lvl, exp_ms, ctl)
            self.frameAccumulated.emit(index, j, frame)
            if monitor is not None:
                monitor.update(pm)  # frames folded so far (up to one chunk behind)

        accumulate_frames(
            core,
            cam,
            n,
            pm,
            chunk_frames=self.plan.chunk_frames,
            controls=self.controls,
            timeout_s=self.plan.frame_timeout_s,
            on_frame=on_frame,
        )
        dt = time.perf_counter() - t0
        self.levelFinished.emit(
            index,
            {
                **info,
                "mean": float(np.mean(pm.frame_means)),
                "fps": n / dt if dt > 0 else float("inf"),
                "seconds": dt,
            },
        )
        self.current = None
        return pm

    # ------------------------------------------------------------ devices
    def _seed(self, index: int) -> None:
        if self.plan.seed is None:
            return
        labels = {self.camera, self.shutter}
        if self.plan.control_device:
            labels.add(self.plan.control_device[0])
        seed_devices(self.core, labels, derived_seed(self.plan.seed, index))

    def _auto_range(self) -> tuple[float, float | None]:
        """Top control value (and the saturating value, if reached)."""
        p, lc = self.plan, self.light
        limit = lc.control_limit()
        if not p.auto_range:
            if p.control_max is not None:
                return float(p.control_max), None
            if p.control_device is None:
                return float(self.core.getExposure(self.camera)), None
            return limit, None
        lc.switch(True)
        self._seed(_AUTORANGE_SEED)
        top = lc.auto_range(self.dark, int(self.identity.bit_depth), limit)
        lc.switch(False)
        return top

    # ------------------------------------------------------------ files
    def _open_writer(self, resume: bool) -> None:
        if self.frames_path is None:
            return
        path = self.frames_path
        if resume and (self.dark is not None):
            path = path.with_name(path.name.replace(".", "-resumed.", 1))
        self._writer = FrameWriter(
            path,
            (int(self.core.getImageHeight()), int(self.core.getImageWidth())),
            int(self.identity.bit_depth),
            self.plan.save_frames,
            force=self.force,
            metadata={"plan": self.plan.model_dump_json()},
            **frame_context(self.core, self.identity),
        )

    def _close_writer(self, failure: BaseException | None = None) -> None:
        """Finish the frame file (also after Ctrl-C: the frames taken are kept).

        After a disk error (``failure`` an `OutputError` or ``OSError``) the file is
        discarded without closing it: HDF5 cannot flush its metadata to a full disk, and
        closing (or garbage-collecting) the handle then prints errors or crashes. A
        failure to finish never masks ``failure``; without one it is an `OutputError`.
        """
        if self._writer is None:
            return
        w, self._writer = self._writer, None
        if isinstance(failure, (OutputError, OSError)):
            _LEAKED.append(w)  # never closed nor collected: see above
            with contextlib.suppress(OSError):
                w._tmp.unlink()
            return
        try:
            w.close()
        except Exception as exc:  # noqa: BLE001 - h5py/tifffile raise several types
            _LEAKED.append(w)
            with contextlib.suppress(OSError):
                w._tmp.unlink()
            why = describe_os_error(exc, w.path) if isinstance(exc, OSError) else f"{exc}"
            msg = f"{why}; the frames file was discarded"
            if failure is None:
                raise OutputError(msg) from exc
            self._warn(msg)
            return
        self.frames_written = (w.path, w.n_frames)

    def _state(self) -> dict[str, Any]:
        return {
            "top": self.top,
            "saturating": self.saturating,
            "level_values": self.level_values,
            "stability": self.stability,
            "warnings": self._warnings,
        }

    def _checkpoint(self, new: dict[str, Any]) -> None:
        if self.partial_path is None:
            return
        groups: dict[str, Any] = {name: None for name in self._saved}
        groups.update({k: v.state_dict() for k, v in new.items()})
        write_partial(
            self.partial_path,
            plan=self.plan.model_dump(mode="json"),
            identity=self.identity.to_dict(),
            state=self._state(),
            groups=groups,
        )
        self._saved.update(new)

    def _load_partial(self) -> None:
        # imported on use: numba compiles the accumulation kernels (start-up cost)
        from rawsigma.calib.moments import PixelMoments

        path = self.partial_path
        data = read_partial(path)
        self._check_resume(path, data["plan"], data["identity"])
        groups = data["groups"]
        st = data["state"]
        try:
            if "dark" in groups:
                self.dark = PixelMoments.from_state(groups["dark"])
            self.top, self.saturating = st["top"], st["saturating"]
            self.level_values = list(st["level_values"])
            self.stability = list(st["stability"])
            self._warnings = list(st.get("warnings", []))
            i = 0
            while f"levels/{i:03d}" in groups:
                self.levels.append(PixelMoments.from_state(groups[f"levels/{i:03d}"]))
                if f"level_darks/{i:03d}" in groups:
                    self.level_darks.append(PixelMoments.from_state(groups[f"level_darks/{i:03d}"]))
                i += 1
        except (KeyError, ValueError, TypeError) as exc:
            raise InputFileError(f"{path}: inconsistent partial file ({exc})") from exc
        self._saved = set(groups)
        self.stability = self.stability[: len(self.levels)]

    def _check_resume(self, path: Path, plan: dict[str, Any], ident: dict[str, Any]) -> None:
        """Refuse a partial file whose frames the resumed sweep would not match.

        The exposure: a plan's ``exposure_ms`` (light control) is set before the dark, so
        an equal plan means equal exposures (partial files written before session 11
        recorded the camera's previous exposure in the identity); with the exposure as
        the control every level sets its own, and the dark's (the identity's) is taken
        from the file. Otherwise the camera's exposure must be the recorded one, and a
        plan naming that exposure (``--exposure``) resumes it.
        """
        p, cur_plan = self.plan, self.plan.model_dump(mode="json")
        rec_ms, frames_at = ident.get("exposure_ms"), plan
        if plan.get("exposure_ms") is None and p.control != "exposure" and rec_ms is not None:
            frames_at = {**plan, "exposure_ms": float(rec_ms)}  # --exposure <its frames'>
            if p.exposure_ms is not None and float(p.exposure_ms) == float(rec_ms):
                plan = {**plan, "exposure_ms": cur_plan["exposure_ms"]}
        diff = [k for k in sorted(set(plan) | set(cur_plan)) if plan.get(k) != cur_plan.get(k)]
        if diff:
            was = ", ".join(f"{k} {plan.get(k)!r} (now {cur_plan.get(k)!r})" for k in diff)
            raise InputFileError(
                f"{path}: the partial sweep was started with a different plan: {was}; "
                f"resume it with {_plan_options(frames_at, diff)} or delete it"
            )
        cur = self.identity.to_dict()
        fixed = p.control == "exposure" or p.exposure_ms is not None
        for key in RESUME_IDENTITY_KEYS:
            if ident.get(key) == cur.get(key) or (key == "exposure_ms" and fixed):
                continue
            known = key == "exposure_ms" and isinstance(rec_ms, int | float)
            hint = f"; resume with --exposure {rec_ms:g}" if known else ""
            raise InputFileError(
                f"{path}: recorded with {key} = {ident.get(key)!r}, but the camera now "
                f"has {cur.get(key)!r}{hint}"
            )
        if p.control == "exposure" and rec_ms is not None:  # the dark's, not the camera's now
            import dataclasses

            extra = dict(self.identity.extra)
            if "Exposure" in extra:
                extra["Exposure"] = str(ident.get("extra", {}).get("Exposure", rec_ms))
            self.identity = dataclasses.replace(
                self.identity, exposure_ms=float(rec_ms), extra=extra
            )

    # ------------------------------------------------------------ profile
    def _build(self) -> Any:
        return sweep_profile(
            self.plan,
            self.dark,
            self.levels,
            self.identity,
            self.level_values,
            level_darks=self.level_darks,
            stability=self.stability,
            warnings=self._warnings,
            source=f"Micro-Manager core, camera {self.camera}",
            gain_map=self.gain_map,
        )


def sweep_profile(
    plan: SweepPlan,
    dark: Any,
    levels: list[Any],
    identity: Any,
    level_values: list[float],
    *,
    level_darks: list[Any] | None = None,
    stability: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
    source: str = "",
    gain_map: str = "auto",
) -> Any:
    """Build the `CameraProfile` of a finished sweep (`SweepRunner` and `MDASweep`).

    Both engines call this with their accumulators, so the same frames give the
    same maps whichever engine acquired them. ``gain_map`` is `build_profile`'s
    (``auto``: the global K on every pixel when too few frames per level make the
    per-pixel gains noise).
    """
    # imported on use: the profile fit pulls in scipy (start-up cost)
    from rawsigma.calib.build import build_profile

    exposure = None
    if plan.control == "exposure":
        exposure = [v / 1000.0 for v in level_values]
    return build_profile(
        dark,
        levels,
        identity,
        plan,
        level_darks=level_darks or None,
        exposure=exposure,
        seed=plan.seed,
        source=source,
        flicker_limit=plan.flicker_limit,
        drift_limit=plan.drift_limit,
        control=plan.control,
        control_values=list(level_values),
        level_stability=list(stability or []),
        acquisition_warnings=list(warnings or []),
        gain_map=gain_map,
    )
