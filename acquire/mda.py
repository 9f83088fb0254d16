"""Calibration sweeps as useq-schema MDA sequences, with rawsigma's statistics as a handler.

A `SweepPlan` becomes one `useq.MDASequence` per level (`sweep_sequences`): a time
axis of N frames, and a ``setup`` event that puts the rig in the level's state
(``Core-AutoShutter`` off, the shutter's ``State`` property 0 for darks and 1 for
light, the light-source property or the exposure, and the ``Seed`` of the simulated
devices); the repeat stack is one such sequence (`stack_sequence`). Any pymmcore-plus
MDA engine runs them: ``rawsigma calibrate --engine mda`` (`MDASweep`), or an
operator in pymmcore-gui / napari-micromanager, who can load the sequences (saved
with `write_sequences`) and either connect a `MomentsHandler` to
``core.mda.events`` or save the frames (OME-TIFF / OME-Zarr) and run
``rawsigma calibrate --from-stacks`` on the recording.

`MomentsHandler` is an MDA frame handler (``frameReady(img, event, meta)``,
``sequenceStarted``, ``sequenceFinished``): it folds every frame into
`rawsigma.calib.moments.PixelMoments` as it arrives (the stack is never held),
chunk by chunk as `SweepRunner` does, so the same frames give bit-identical
accumulators; acquire never fits (`sweep.sweep_profile` hands them to calib).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal
from rawsigma.errors import AcquisitionError, Cancelled, OutputExistsError
from rawsigma.fileio import check_output

from .plans import StackPlan, SweepPlan, derived_seed

if TYPE_CHECKING:
    from .protocols import CorePlus

__all__ = [
    "KEY",
    "MDASweep",
    "MomentsHandler",
    "plan_level_values",
    "stack_sequence",
    "sweep_sequences",
    "write_sequences",
]

#: Key of rawsigma's entry in ``MDASequence.metadata``.
KEY = "rawsigma"

# The seed indices of `SweepRunner` (same plan seed -> same device seeds -> same frames).
_LEVEL_DARK_SEED = 10000
_RETRY_SEED = 1000
_AUTORANGE_SEED = -2


def _seed_props(core: CorePlus, labels: Sequence[str], seed: int | None, index: int) -> list[tuple]:
    if seed is None:
        return []
    s = derived_seed(seed, index)
    out = []
    for label in sorted({x for x in labels if x}):
        with contextlib.suppress(Exception):
            if core.hasProperty(label, "Seed"):
                out.append((label, "Seed", s))
    return out


def _level_sequence(
    core: CorePlus,
    plan: SweepPlan,
    *,
    kind: str,
    level: int,
    n: int,
    seed_index: int,
    value: float | None = None,
    level_dark_of: int | None = None,
    retry: int = 0,
    n_levels: int | None = None,
    camera: str,
    shutter: str,
) -> Any:
    import useq

    props: list[tuple] = [("Core", "AutoShutter", "0")]
    light = kind == "light"
    if shutter:
        props.append((shutter, "State", 1 if light else 0))
    exposure = None
    dev = plan.control_device
    if plan.exposure_ms is not None and plan.control != "exposure":
        exposure = plan.exposure_ms
    if value is not None:
        if dev is None:
            exposure = float(value)
        else:
            props.append((dev[0], dev[1], float(value)))
    labels = [camera, shutter] + ([dev[0]] if dev else [])
    props += _seed_props(core, labels, plan.seed, seed_index)
    meta = {
        "kind": kind,
        "level": level,
        "control": plan.control,
        "value": value,
        "retry": retry,
        "level_dark_of": level_dark_of,
        "seed_index": seed_index if plan.seed is not None else None,
        "n_levels": n_levels,
    }
    return useq.MDASequence(
        time_plan={"interval": 0, "loops": int(n)},
        setup=useq.MDAEvent(exposure=exposure, properties=props),
        metadata={KEY: meta},
    )


def plan_level_values(core: CorePlus, plan: SweepPlan, camera: str | None = None) -> list[float]:
    """Control values of a plan without auto-range (levels + saturation levels).

    The same values `SweepRunner` uses when ``plan.auto_range`` is false: the top is
    ``control_max``, else the property's upper limit (the current exposure for
    ``control="exposure"``).
    """
    from .light_control import LightControl
    from .stream import Controls

    if plan.auto_range:
        raise ValueError("plan_level_values needs a plan with auto_range=False")
    camera = camera or core.getCameraDevice()
    lc = LightControl(core, camera, core.getShutterDevice(), plan, Controls(), lambda m: None)
    limit = lc.control_limit()
    if plan.control_max is not None:
        top = float(plan.control_max)
    elif plan.control_device is None:
        top = float(core.getExposure(camera))
    else:
        top = limit
    return plan.level_values(top) + plan.saturation_values(top, None, limit)


def sweep_sequences(
    core: CorePlus,
    plan: SweepPlan,
    level_values: Sequence[float] | None = None,
    *,
    dark: bool = True,
    camera: str | None = None,
    shutter: str | None = None,
) -> list[Any]:
    """The sweep as useq-schema `MDASequence` objects, one per level.

    Parameters
    ----------
    core : CMMCorePlus-like
        Used for the device labels and which devices have a ``Seed`` property.
    plan : SweepPlan
    level_values : sequence of float, optional
        Control values of the light levels; default `plan_level_values` (a plan
        with ``auto_range=False``).
    dark : bool
        Start with the dark sequence.
    camera, shutter : str, optional
        Device labels (default: the core's current ones). The shutter needs a
        ``State`` property (most Micro-Manager shutter adapters have one).

    Returns
    -------
    list of useq.MDASequence
        Dark (``metadata["rawsigma"]["kind"] == "dark"``, level -1), then each light
        level, each followed by its ``plan.level_darks`` dark frames.
    """
    camera = camera or core.getCameraDevice()
    shutter = core.getShutterDevice() if shutter is None else shutter
    if level_values is None:
        level_values = plan_level_values(core, plan, camera)
    kw = {"camera": camera, "shutter": shutter, "n_levels": len(level_values)}
    seqs = []
    if dark:
        seqs.append(
            _level_sequence(
                core, plan, kind="dark", level=-1, n=plan.dark_frames, seed_index=-1, **kw
            )
        )
    for i, v in enumerate(level_values):
        seqs.append(
            _level_sequence(
                core,
                plan,
                kind="light",
                level=i,
                n=plan.frames_per_level,
                seed_index=i,
                value=float(v),
                **kw,
            )
        )
        if plan.level_darks:
            seqs.append(
                _level_sequence(
                    core,
                    plan,
                    kind="dark",
                    level=-1,
                    n=plan.level_darks,
                    seed_index=_LEVEL_DARK_SEED + i,
                    value=float(v) if plan.control_device is None else None,
                    level_dark_of=i,
                    **kw,
                )
            )
    return seqs


def stack_sequence(core: CorePlus, plan: StackPlan, *, shutter: str | None = None) -> Any:
    """The N-frame repeat stack of a `StackPlan` as one `MDASequence`."""
    import useq

    shutter = core.getShutterDevice() if shutter is None else shutter
    props: list[tuple] = [("Core", "AutoShutter", "0")]
    if shutter:
        props.append((shutter, "State", 1 if plan.shutter_open else 0))
    for key, value in plan.properties.items():
        dev, prop = key.split("-", 1) if "-" in key else key.split(".", 1)
        props.append((dev, prop, value))
    props += _seed_props(core, [core.getCameraDevice(), shutter], plan.seed, 0)
    return useq.MDASequence(
        time_plan={"interval": 0, "loops": plan.n_frames},
        setup=useq.MDAEvent(exposure=plan.exposure_ms, properties=props),
        metadata={KEY: {"kind": "light" if plan.shutter_open else "dark", "level": 0}},
    )


def write_sequences(seqs: Sequence[Any], directory: str | os.PathLike, force: bool = False):
    """Save sequences as ``NNN_<kind>.json`` (useq-schema) for pymmcore-gui / napari-mm.

    JSON with every field: useq-schema 0.9's YAML (``seq.yaml()``) drops the type tag
    of the setup event's action and does not load back. ``useq.MDASequence.from_file``
    reads them. Returns the list of paths written.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for j, s in enumerate(seqs):
        meta = s.metadata.get(KEY, {})
        lv = meta.get("level", j)
        name = "dark" if meta.get("kind") == "dark" else f"level{lv:03d}"
        if meta.get("level_dark_of") is not None:
            name = f"level{meta['level_dark_of']:03d}-dark"
        p = d / f"{j:03d}_{name}.json"
        check_output(p, force)
        p.write_text(s.model_dump_json(indent=2))
        out.append(p)
    return out


class MomentsHandler:
    """MDA frame handler folding frames into per-pixel moments, one accumulator per level.

    Connect it to any pymmcore-plus MDA run (``core.mda.run(seq, output=[handler])``
    or ``core.mda.events.frameReady.connect(handler.frameReady)`` and the
    ``sequenceStarted`` / ``sequenceFinished`` signals likewise). The level of a
    sequence is read from ``seq.metadata["rawsigma"]`` (`sweep_sequences`); a
    sequence without it is one light level.

    Parameters
    ----------
    chunk_frames : int
        Frames copied into a (k, H, W) buffer per `PixelMoments.add` (as
        `SweepRunner`: same chunks -> bit-identical sums).
    plan : SweepPlan, optional
        Enables the in-level stability check (`LevelMonitor`).

    Attributes
    ----------
    dark : PixelMoments or None
        The (merged) dark frames not assigned to a level.
    levels : dict of int to PixelMoments
        Light levels by level index (re-acquired levels: the last one).
    level_darks : dict of int to PixelMoments
    results : list of (dict, PixelMoments)
        Every finished sequence: its metadata and accumulator, in order.
    """

    levelStarted = Signal(int, dict)
    frameAccumulated = Signal(int, int, object)
    levelFinished = Signal(int, dict)
    warning = Signal(str)

    def __init__(self, chunk_frames: int = 4, plan: SweepPlan | None = None) -> None:
        self.chunk_frames = int(chunk_frames)
        self.plan = plan
        self.dark = None
        self.levels: dict[int, Any] = {}
        self.level_darks: dict[int, Any] = {}
        self.results: list[tuple[dict[str, Any], Any]] = []
        self.error: BaseException | None = None
        self._meta: dict[str, Any] | None = None
        self._pm = None
        self._buf: np.ndarray | None = None
        self._k = 0
        self._j = 0
        self._t0 = 0.0
        self._monitor = None

    # ---------------------------------------------------------------- MDA API
    def sequenceStarted(self, seq: Any, meta: Any = None) -> None:  # noqa: N802 - MDA API
        """Start a new accumulator for the sequence's level."""
        self._meta = dict(getattr(seq, "metadata", {}).get(KEY, {"kind": "light", "level": 0}))
        self._meta.setdefault("n_frames", _n_frames(seq))
        self._pm = None
        self._k = self._j = 0
        self._monitor = None
        self._t0 = time.perf_counter()
        self.levelStarted.emit(self._index(), dict(self._meta))

    def frameReady(self, img: np.ndarray, event: Any = None, meta: Any = None) -> None:  # noqa: N802
        """Fold one frame in (copied into the chunk buffer)."""
        try:
            self._frame(np.asarray(img))
        except Exception as exc:  # noqa: BLE001 - the MDA runner would only log it
            self.error = self.error or exc

    def sequenceFinished(self, seq: Any = None) -> None:  # noqa: N802
        """Flush the last chunk and file the accumulator under its level."""
        if self._meta is None:
            return
        self._flush()
        pm, meta = self._pm, self._meta
        self._meta, self._pm, self._buf = None, None, None
        if pm is None:
            return
        dt = time.perf_counter() - self._t0
        meta["fps"] = pm.n / dt if dt > 0 else float("inf")
        meta["frames"] = pm.n
        self.results.append((meta, pm))
        lv, of = int(meta.get("level", 0)), meta.get("level_dark_of")
        if meta.get("kind") == "dark":
            if of is not None:
                self.level_darks[int(of)] = pm
            elif self.dark is None:
                self.dark = pm
            else:
                self.dark.merge(pm)
        else:
            self.levels[lv] = pm
        self.levelFinished.emit(self._index(meta), {**meta, "mean": float(np.mean(pm.frame_means))})

    # ---------------------------------------------------------------- internals
    def _index(self, meta: dict[str, Any] | None = None) -> int:
        meta = meta or self._meta or {}
        return -1 if meta.get("kind") == "dark" else int(meta.get("level", 0))

    def _frame(self, img: np.ndarray) -> None:
        from rawsigma.calib.moments import PixelMoments

        if self._meta is None:  # frames without sequenceStarted: one light level
            self.sequenceStarted(None)
        if self._pm is None:
            dark = self._meta.get("kind") == "dark"
            self._pm = PixelMoments(img.shape, higher=dark, flicker=not dark)
            n = int(self._meta.get("n_frames") or self.chunk_frames)
            self._buf = np.empty((min(self.chunk_frames, n), *img.shape), np.uint16)
            if not dark and self.plan is not None and self.dark is not None:
                from .light_control import LevelMonitor

                dm = float(np.mean(self.dark.frame_means))
                self._monitor = LevelMonitor(self._index(), n, dm, self.plan, self.warning.emit)
        if img.shape != self._pm.shape:
            raise AcquisitionError(f"frame shape {img.shape} != expected {self._pm.shape}")
        self._buf[self._k] = img
        self.frameAccumulated.emit(self._index(), self._j, self._buf[self._k])
        self._k += 1
        self._j += 1
        if self._k == self._buf.shape[0]:
            self._flush()
            if self._monitor is not None:
                self._monitor.update(self._pm)

    def _flush(self) -> None:
        if self._pm is not None and self._k:
            self._pm.add(self._buf[: self._k])
        self._k = 0


def _n_frames(seq: Any) -> int | None:
    try:
        return int(np.prod([v for v in seq.sizes.values() if v])) if seq is not None else None
    except Exception:  # noqa: BLE001
        return None


class MDASweep:
    """Run a `SweepPlan` through the pymmcore-plus MDA engine (``--engine mda``).

    Same plan and seed as `SweepRunner` give the same levels and, on the simulated
    rig, the same frames (the ``Seed`` properties are set by each sequence's setup
    event), hence the same profile. Auto-range (when the plan asks for it) uses the
    same `LightControl` search between the dark and the first level. A drifting
    level is re-acquired like `SweepRunner` does (``on_drift="reacquire"``).

    Parameters
    ----------
    core : CMMCorePlus
        A core with an MDA runner (``core.mda``).
    plan : SweepPlan
    output_dir : path-like, optional
        Also save every sequence's frames there through pymmcore-plus's writers
        (``NNN_<name>.ome.tiff``, or ``.ome.zarr`` with ``fmt="ome-zarr"``); such a
        folder calibrates again with ``rawsigma calibrate --from-stacks``.
    force : bool
        Replace existing outputs.
    gain_map : {"auto", "per-pixel", "global"}
        Which gain map the profile stores (as `SweepRunner`).
    """

    def __init__(
        self,
        core: CorePlus,
        plan: SweepPlan,
        *,
        output_dir: str | os.PathLike | None = None,
        fmt: str = "ome-tiff",
        force: bool = False,
        gain_map: str = "auto",
    ) -> None:
        from pymmcore_plus import CMMCorePlus

        if not isinstance(core, CMMCorePlus):
            raise AcquisitionError(
                "the MDA engine needs a pymmcore-plus core (a .cfg or the simulated rig), "
                "not the pycromanager bridge; use --engine runner"
            )
        self.core = core
        self.plan = plan
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.ext = {"ome-tiff": ".ome.tiff", "ome-zarr": ".ome.zarr"}[fmt]
        self.force = force
        self.gain_map = gain_map
        self.camera = core.getCameraDevice()
        self.shutter = core.getShutterDevice()
        self.handler = MomentsHandler(plan.chunk_frames, plan)
        self.level_values: list[float] = []
        self.stability: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.handler.warning.connect(self.warnings.append)
        # the runner signals (CLI progress bar, GUI) are the handler's
        self.levelStarted = self.handler.levelStarted
        self.frameAccumulated = self.handler.frameAccumulated
        self.levelFinished = self.handler.levelFinished
        self.warning = self.handler.warning
        self._count = 0
        self._cancelled = False
        self.identity = None

    @property
    def total_frames(self) -> int:
        """Frames of the whole sweep (without auto-range and re-acquisitions)."""
        p = self.plan
        return p.dark_frames + (p.n_levels + p.saturation_levels) * (
            p.frames_per_level + p.level_darks
        )

    def cancel(self) -> None:
        """Cancel the running MDA (`run` raises `Cancelled`)."""
        self._cancelled = True
        self.core.mda.cancel()

    def _run_seq(self, seq: Any) -> None:
        out: list[Any] = [self.handler]
        if self.output_dir is not None:
            meta = seq.metadata[KEY]
            name = "dark" if meta["kind"] == "dark" else f"level{meta['level']:03d}"
            if meta.get("level_dark_of") is not None:
                name = f"level{meta['level_dark_of']:03d}-dark"
            if meta.get("retry"):
                name += f"-retry{meta['retry']}"
            out.append(str(self.output_dir / f"{self._count:03d}_{name}{self.ext}"))
        self._count += 1
        self.core.mda.run(seq, output=out, overwrite=self.force)
        if self.handler.error is not None:
            raise AcquisitionError(f"MDA frame handler failed: {self.handler.error}")
        if self._cancelled:
            raise Cancelled("MDA sweep cancelled")

    def run(self, out: str | os.PathLike | None = None) -> Any:
        """Acquire every level through ``core.mda.run`` and return the `CameraProfile`."""
        from .light_control import LightControl, restore_device_state, save_device_state
        from .stream import Controls
        from .sweep import sweep_identity, sweep_profile

        if out is not None:
            check_output(out, self.force)
        if self.output_dir is not None:
            if self.output_dir.exists() and any(self.output_dir.iterdir()) and not self.force:
                raise OutputExistsError(f"{self.output_dir}: exists and is not empty (--force)")
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if not self.core.getPixelSizeUm():
                raise AcquisitionError(
                    "saving MDA frames (OME) needs a pixel size: define a pixel size "
                    "configuration in the Micro-Manager config"
                )
        core, p = self.core, self.plan
        LightControl(
            core, self.camera, self.shutter, p, Controls(), self.warnings.append
        ).check_control()
        self.identity = sweep_identity(core, self.camera, p)
        saved = save_device_state(core, self.camera, self.shutter, p)
        try:
            self._run_seq(sweep_sequences(core, p, [], camera=self.camera)[0])
            self.level_values = self._levels()
            for i, value in enumerate(self.level_values):
                self._run_level(i, value)
        except (Cancelled, AcquisitionError, OutputExistsError):
            raise
        except Exception as exc:
            raise AcquisitionError(f"MDA acquisition failed: {exc}") from exc
        finally:
            restore_device_state(core, self.camera, self.shutter, saved)
        h = self.handler
        n = len(self.level_values)
        profile = sweep_profile(
            p,
            h.dark,
            [h.levels[i] for i in range(n)],
            self.identity,
            self.level_values,
            level_darks=[h.level_darks[i] for i in range(n)] if p.level_darks else None,
            stability=self.stability,
            warnings=self.warnings,
            source=f"pymmcore-plus MDA engine, camera {self.camera}",
            gain_map=self.gain_map,
        )
        if out is not None:
            profile.save(out, force=self.force)
        return profile

    def _levels(self) -> list[float]:
        p = self.plan
        if not p.auto_range:
            return plan_level_values(self.core, p, self.camera)
        from .light_control import LightControl
        from .stream import Controls, seed_devices

        lc = LightControl(self.core, self.camera, self.shutter, p, Controls(), self.warnings.append)
        limit = lc.control_limit()
        self.core.setAutoShutter(False)
        lc.switch(True)
        if p.seed is not None:
            labels = {self.camera, self.shutter} | (
                {p.control_device[0]} if p.control_device else set()
            )
            seed_devices(self.core, labels, derived_seed(p.seed, _AUTORANGE_SEED))
        top, saturating = lc.auto_range(self.handler.dark, int(self.identity.bit_depth), limit)
        lc.switch(False)
        return p.level_values(top) + p.saturation_values(top, saturating, limit)

    def _run_level(self, i: int, value: float) -> None:
        from .light_control import judge_level

        p = self.plan
        kw = {"camera": self.camera, "shutter": self.shutter, "n_levels": len(self.level_values)}
        retry = 0
        while True:
            seq = _level_sequence(
                self.core,
                p,
                kind="light",
                level=i,
                n=p.frames_per_level,
                seed_index=i + _RETRY_SEED * retry,
                value=value,
                retry=retry,
                **kw,
            )
            self._run_seq(seq)
            st, msgs, again = judge_level(
                self.handler.levels[i], self.handler.dark, p, i, value, retry
            )
            for m in msgs:
                self.handler.warning.emit(m)  # connected to self.warnings.append
            if not again:
                break
            retry += 1
        self.stability.append(st)
        if p.level_darks:
            seq = _level_sequence(
                self.core,
                p,
                kind="dark",
                level=-1,
                n=p.level_darks,
                seed_index=_LEVEL_DARK_SEED + i,
                value=value if p.control_device is None else None,
                level_dark_of=i,
                **kw,
            )
            self._run_seq(seq)
