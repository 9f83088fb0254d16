"""Pull frames from a running Micro-Manager sequence acquisition, one at a time.

Only the ordinary MMCore API is used (``startSequenceAcquisition``,
``getRemainingImageCount``, ``popNextImage``, ``isSequenceRunning``,
``isBufferOverflowed``, ``stopSequenceAcquisition``), so the same loop drives
the simulated rig and a real camera. `accumulate_frames` folds such a stream into a
per-pixel moments accumulator in chunks; `ControlledRunner` gives the sweep and
stack runners their common device selection and pause/resume/cancel methods.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal
from rawsigma.errors import AcquisitionError, Cancelled

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = [
    "Controls",
    "ControlledRunner",
    "accumulate_frames",
    "seed_devices",
    "stream_frames",
]


class Controls:
    """Thread-safe pause/cancel flags shared by a runner and its frame loop."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._run = threading.Event()
        self._run.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._run.set()

    def pause(self) -> None:
        self._run.clear()

    def resume(self) -> None:
        self._run.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._run.is_set()

    def reset(self) -> None:
        self._cancel.clear()
        self._run.set()

    def check(self) -> None:
        """Raise `Cancelled` if cancel was requested."""
        if self._cancel.is_set():
            raise Cancelled("acquisition cancelled")


def stream_frames(
    core: MMCore,
    camera: str,
    n: int,
    *,
    controls: Controls | None = None,
    timeout_s: float = 10.0,
) -> Iterator[np.ndarray]:
    """Yield ``n`` frames from a sequence acquisition on ``camera``.

    Pausing (``controls.pause()``) stops the sequence after draining the frames
    already buffered and restarts it for the remaining frames on resume.

    Yields
    ------
    ndarray
        Each frame as returned by ``popNextImage`` (it may be a view into the
        core's buffer: copy it to keep it).

    Raises
    ------
    Cancelled
        ``controls.cancel()`` was called (the sequence is stopped).
    AcquisitionError
        Sequence-buffer overflow, the camera stopped early, no frame within
        ``timeout_s``, or a core call failed.
    """
    controls = controls or Controls()
    got = 0
    try:
        while got < n:
            controls.check()
            _start(core, camera, n - got)
            last = time.monotonic()
            while got < n:
                controls.check()
                if controls.paused:
                    break
                if core.getRemainingImageCount() > 0:
                    img = core.popNextImage()
                    got += 1
                    last = time.monotonic()
                    yield img
                    continue
                running = core.isSequenceRunning(camera)
                if core.getRemainingImageCount() > 0:
                    continue
                if core.isBufferOverflowed():
                    raise AcquisitionError(
                        f"camera {camera}: sequence buffer overflowed after {got} of {n} "
                        "frames (frames arrive faster than they are processed)"
                    )
                if not running:
                    raise AcquisitionError(
                        f"camera {camera}: sequence stopped after {got} of {n} frames"
                    )
                if time.monotonic() - last > timeout_s:
                    raise AcquisitionError(
                        f"camera {camera}: no frame for {timeout_s:g} s after {got} of {n} frames"
                    )
                time.sleep(0.0005)
            if controls.paused and got < n:
                _stop(core, camera)
                while core.getRemainingImageCount() > 0 and got < n:
                    got += 1
                    yield core.popNextImage()
                while controls.paused and not controls.cancelled:
                    time.sleep(0.02)
    finally:
        _stop(core, camera)


def _start(core: MMCore, camera: str, n: int) -> None:
    try:
        core.startSequenceAcquisition(camera, int(n), 0.0, True)
    except Exception as exc:  # noqa: BLE001 - any camera error becomes AcquisitionError
        raise AcquisitionError(f"camera {camera}: cannot start sequence: {exc}") from exc


def _stop(core: MMCore, camera: str) -> None:
    try:
        if core.isSequenceRunning(camera):
            core.stopSequenceAcquisition(camera)
    except Exception:  # noqa: BLE001, S110 - best effort during cleanup
        pass


def accumulate_frames(
    core: MMCore,
    camera: str,
    n: int,
    moments: Any,
    *,
    chunk_frames: int,
    controls: Controls | None = None,
    timeout_s: float = 10.0,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """Stream ``n`` frames from ``camera`` into ``moments``, ``chunk_frames`` at a time.

    Parameters
    ----------
    core : CMMCorePlus-like
    camera : str
        Camera device label.
    n : int
        Number of frames.
    moments : PixelMoments
        Accumulator of shape (H, W); every frame must have that shape.
    chunk_frames : int
        Frames copied into a uint16 (k, H, W) buffer before each ``moments.add``.
    controls : Controls, optional
        Pause/cancel flags (see `stream_frames`).
    timeout_s : float
        Longest wait for one frame, seconds.
    on_frame : callable, optional
        ``on_frame(j, frame)`` for every frame, in order, before it is folded in;
        ``frame`` is a uint16 (H, W) view into the chunk buffer, valid during the
        call only.

    Raises
    ------
    Cancelled, AcquisitionError
        As `stream_frames`; also a frame whose shape is not the accumulator's.
    """
    h, w = moments.shape
    chunk = np.empty((min(chunk_frames, n), h, w), np.uint16)
    k = 0
    for j, img in enumerate(stream_frames(core, camera, n, controls=controls, timeout_s=timeout_s)):
        if img.shape != (h, w):
            raise AcquisitionError(f"camera {camera}: frame shape {img.shape} != expected {(h, w)}")
        chunk[k] = img
        if on_frame is not None:
            on_frame(j, chunk[k])
        k += 1
        if k == chunk.shape[0]:
            moments.add(chunk)
            k = 0
    if k:
        moments.add(chunk[:k])


def seed_devices(core: MMCore, labels: Iterable[str], seed: int) -> None:
    """Set the ``Seed`` property of every device in ``labels`` that has one.

    Empty labels are skipped; devices without ``Seed`` (real hardware) and failing
    calls are ignored, so seeding is best effort and only affects simulated devices.
    """
    for label in sorted({x for x in labels if x}):
        with contextlib.suppress(Exception):
            if core.hasProperty(label, "Seed"):
                core.setProperty(label, "Seed", seed)


class ControlledRunner:
    """Device selection and pause/resume/cancel shared by the sweep and stack runners.

    Parameters
    ----------
    core : CMMCorePlus-like
    camera, shutter : str, optional
        Device labels (default: the core's current camera and shutter).
    force : bool
        Allow replacing output files.

    Raises
    ------
    AcquisitionError
        No camera given and none selected in the core.
    """

    # Progress signals (psygnal), listened to by the CLI progress bar and the GUI:
    # level index (-1 = dark), frame index, the frame (valid only during the call).
    levelStarted = Signal(int, dict)
    frameAccumulated = Signal(int, int, object)
    levelFinished = Signal(int, dict)
    warning = Signal(str)
    finished = Signal(object)

    def __init__(
        self,
        core: MMCore,
        camera: str | None = None,
        shutter: str | None = None,
        force: bool = False,
    ) -> None:
        self.core = core
        self.camera = camera or core.getCameraDevice()
        if not self.camera:
            raise AcquisitionError("no camera device selected in the Micro-Manager core")
        self.shutter = shutter if shutter is not None else core.getShutterDevice()
        self.force = force
        self.controls = Controls()

    def cancel(self) -> None:
        """Stop as soon as possible (`run` raises `Cancelled`)."""
        self.controls.cancel()

    def pause(self) -> None:
        """Pause after the current frame (the sequence is stopped meanwhile)."""
        self.controls.pause()

    def resume(self) -> None:
        """Continue after `pause`."""
        self.controls.resume()
