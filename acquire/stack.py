"""N-frame repeat stack at fixed settings, with streaming per-pixel moments.

`StackRunner` takes ``n_frames`` frames (1000 in the paper's Fig. 1a) by sequence
acquisition, folds them into a `PixelMoments` accumulator (never holding the stack)
and keeps every value of a few probe pixels, from which `StackResult` gives the
single-pixel relative error ``RE = (x − μ)/μ``, its histogram and its convergence
with the number of frames (the running σ/μ of each probe pixel).

Signals as `SweepRunner` (level index 0): ``levelStarted``, ``frameAccumulated``,
``levelFinished``, ``warning``, ``finished(StackResult)``.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rawsigma.errors import AcquisitionError, Cancelled, OutputError
from rawsigma.fileio import atomic_write, check_output, describe_os_error, output_lock, provenance

from .core import set_properties
from .framesave import FrameWriter, frame_context
from .identity import read_identity
from .plans import StackPlan, derived_seed
from .stream import ControlledRunner, accumulate_frames, seed_devices

if TYPE_CHECKING:
    import os

    from rawsigma.calib.moments import PixelMoments
    from rawsigma.calib.profile import CameraIdentity

    from .protocols import MMCore

__all__ = ["StackRunner", "StackResult"]


@dataclass
class StackResult:
    """Moments of a repeat stack and the full traces of its probe pixels.

    Attributes
    ----------
    moments : PixelMoments
        Per-pixel streaming moments of all frames.
    probe_pixels : list of (row, col)
    probe_values : ndarray, uint16 (P, N)
        Every value of each probe pixel, ADU.
    identity : CameraIdentity
    plan : StackPlan
    info : dict
        Frames per second, duration, exposure.
    """

    moments: Any
    probe_pixels: list[tuple[int, int]]
    probe_values: np.ndarray
    identity: Any
    plan: StackPlan
    info: dict[str, Any] = field(default_factory=dict)

    def relative_error(self) -> np.ndarray:
        """Single-pixel relative error ``(x − μ)/μ`` per probe and frame, float64 (P, N)."""
        x = self.probe_values.astype(np.float64)
        mu = x.mean(axis=1, keepdims=True)
        return (x - mu) / np.where(mu == 0, 1.0, mu)

    def convergence(self) -> dict[str, np.ndarray]:
        """Running estimate of the relative noise σ/μ of each probe pixel.

        Returns
        -------
        dict
            ``n`` (1..N frames), ``rel_sigma`` (P, N): std(ddof=1)/mean of the first
            n values (NaN for n = 1), ``rel_error`` (P, N): ``rel_sigma`` relative to
            its final value minus 1 — how far the estimate from n frames is from
            the one from all frames.
        """
        x = self.probe_values.astype(np.float64)
        n = np.arange(1, x.shape[1] + 1, dtype=np.float64)
        s1 = np.cumsum(x, axis=1)
        s2 = np.cumsum(x * x, axis=1)
        mean = s1 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (s2 - n * mean * mean) / (n - 1)
            rel = np.sqrt(np.maximum(var, 0)) / mean
            rel[:, 0] = np.nan
            err = rel / rel[:, -1:] - 1
        return {"n": n.astype(np.int64), "rel_sigma": rel, "rel_error": err}

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write an HDF5 summary: mean/variance maps, frame means, probe traces, provenance."""
        import h5py

        m = self.moments
        with atomic_write(path, force) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["kind"] = "rawsigma-stack"
            f.attrs["version"] = 1
            f.attrs["plan"] = self.plan.model_dump_json()
            f.attrs["identity"] = json.dumps(self.identity.to_dict())
            f.attrs["provenance"] = json.dumps(provenance(**self.info, seed=self.plan.seed))
            f.create_dataset("mean", data=m.mean().astype(np.float32))
            f.create_dataset("var", data=m.var().astype(np.float32))
            f.create_dataset("frame_means", data=np.asarray(m.frame_means))
            f.create_dataset("probe_pixels", data=np.asarray(self.probe_pixels, np.int64))
            f.create_dataset("probe_values", data=self.probe_values)
            conv = self.convergence()
            f.create_dataset("convergence_rel_sigma", data=conv["rel_sigma"].astype(np.float32))
        return Path(path)


class StackRunner(ControlledRunner):
    """Acquire an N-frame repeat stack (`StackPlan`) on a Micro-Manager core.

    Parameters
    ----------
    core : CMMCorePlus-like
    plan : StackPlan
    frames_path : path-like, optional
        Also save the frames (OME-TIFF, or HDF5 for ``.h5``).
    camera, shutter : str, optional
        Device labels (default: the core's current ones).
    force : bool
        Allow replacing ``frames_path``.
    """

    def __init__(
        self,
        core: MMCore,
        plan: StackPlan,
        *,
        frames_path: str | os.PathLike | None = None,
        camera: str | None = None,
        shutter: str | None = None,
        force: bool = False,
    ) -> None:
        super().__init__(core, camera, shutter, force)
        self.plan = plan
        self.frames_path = Path(frames_path) if frames_path is not None else None
        self.moments: PixelMoments | None = None

    def run(self, out: str | os.PathLike | None = None) -> StackResult:
        """Acquire the stack; save its summary to ``out`` if given.

        An interrupted or failed stack writes nothing: the frame file being saved is
        discarded (a stack is only useful whole, and a leftover would block the rerun).

        Raises
        ------
        Cancelled, AcquisitionError, OutputExistsError
        OutputLockedError
            Another process is writing ``out`` or the frame file.
        """
        with contextlib.ExitStack() as locks:
            for path in (out, self.frames_path):
                if path is not None:
                    locks.enter_context(output_lock(path))
            return self._run_locked(out)

    def _prepare_camera(self) -> tuple[CameraIdentity, tuple[int, int]]:
        """Reset the controls, apply properties and exposure; identity and frame shape."""
        p, core, cam = self.plan, self.core, self.camera
        self.controls.reset()
        if p.properties:
            set_properties(core, p.properties)
        if p.exposure_ms is not None:
            core.setExposure(cam, p.exposure_ms)
        identity = read_identity(core, cam)
        return identity, (int(core.getImageHeight()), int(core.getImageWidth()))

    def _frame_writer(self, shape: tuple[int, int], identity: CameraIdentity) -> FrameWriter | None:
        """The writer of every frame when ``frames_path`` is set."""
        if self.frames_path is None:
            return None
        return FrameWriter(
            self.frames_path,
            shape,
            identity.bit_depth,
            self.plan.save_frames,
            force=self.force,
            metadata={"plan": self.plan.model_dump_json()},
            **frame_context(self.core, identity),
        )

    def _set_shutter(self) -> None:
        """Auto-shutter off, the shutter as the plan says (a dark stack needs one); seeds."""
        p, core = self.plan, self.core
        core.setAutoShutter(False)
        if self.shutter:
            core.setShutterOpen(self.shutter, p.shutter_open)
            core.waitForDevice(self.shutter)
        elif p.shutter_open is False:
            raise AcquisitionError("no shutter device: cannot take a dark stack")
        if p.seed is not None:
            seed_devices(core, (self.camera, self.shutter), derived_seed(p.seed, 0))

    def _run_locked(self, out: str | os.PathLike | None) -> StackResult:
        # imported on use: numba compiles the accumulation kernels (start-up cost)
        from rawsigma.calib.moments import PixelMoments

        if out is not None:
            check_output(out, self.force)
        p, core, cam = self.plan, self.core, self.camera
        identity, shape = self._prepare_camera()
        probes = p.probes(shape)
        rows = np.array([r for r, _ in probes])
        cols = np.array([c for _, c in probes])
        values = np.zeros((len(probes), p.n_frames), np.uint16)
        pm = PixelMoments(shape)
        self.moments = pm
        auto = core.getAutoShutter()
        writer = self._frame_writer(shape, identity)
        info = {
            "kind": "light" if p.shutter_open else "dark",
            "n_frames": p.n_frames,
            "n_levels": 1,
        }
        exp_ms = float(core.getExposure())
        t0 = time.perf_counter()
        done = False
        try:
            self._set_shutter()
            self.levelStarted.emit(0, info)
            kind: Literal["dark", "bright"] = "bright" if p.shutter_open else "dark"

            def on_frame(j: int, frame: np.ndarray) -> None:
                values[:, j] = frame[rows, cols]
                if writer is not None:
                    writer.write(frame, kind, 0, exp_ms)
                self.frameAccumulated.emit(0, j, frame)

            accumulate_frames(
                core,
                cam,
                p.n_frames,
                pm,
                chunk_frames=p.chunk_frames,
                controls=self.controls,
                timeout_s=p.frame_timeout_s,
                on_frame=on_frame,
            )
            if writer is not None:
                writer.close()
            done = True
        except (Cancelled, AcquisitionError, KeyboardInterrupt):
            raise
        except OSError as exc:  # the frame file: disk full, permission denied
            where = self.frames_path if self.frames_path is not None else out
            raise OutputError(f"{describe_os_error(exc, where)}; nothing written") from exc
        except Exception as exc:
            raise AcquisitionError(f"stack acquisition failed: {exc}") from exc
        finally:
            if writer is not None and not done:
                writer.abort()
            with contextlib.suppress(Exception):
                if self.shutter:
                    core.setShutterOpen(self.shutter, False)
                core.setAutoShutter(auto)
        dt = time.perf_counter() - t0
        stats = {**info, "fps": p.n_frames / dt, "seconds": dt, "exposure_ms": exp_ms}
        self.levelFinished.emit(0, {**stats, "mean": float(np.mean(pm.frame_means))})
        result = StackResult(pm, probes, values, identity, p, stats)
        if out is not None:
            result.save(out, force=self.force)
        self.finished.emit(result)
        return result
