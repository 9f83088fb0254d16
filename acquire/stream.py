"""Pull frames from a running Micro-Manager sequence acquisition, one at a time.

Only the ordinary MMCore API is used (``startSequenceAcquisition``,
``getRemainingImageCount``, ``popNextImage``, ``isSequenceRunning``,
``isBufferOverflowed``, ``stopSequenceAcquisition``), so the same loop drives
the simulated rig and a real camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from rawsigma.errors import AcquisitionError, Cancelled

__all__ = ["Controls", "stream_frames"]


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
    core: Any,
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
                if controls.cancelled:
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


def _start(core: Any, camera: str, n: int) -> None:
    try:
        core.startSequenceAcquisition(camera, int(n), 0.0, True)
    except Exception as exc:  # noqa: BLE001 - any camera error becomes AcquisitionError
        raise AcquisitionError(f"camera {camera}: cannot start sequence: {exc}") from exc


def _stop(core: Any, camera: str) -> None:
    try:
        if core.isSequenceRunning(camera):
            core.stopSequenceAcquisition(camera)
    except Exception:  # noqa: BLE001, S110 - best effort during cleanup
        pass
