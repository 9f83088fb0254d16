"""Frame loop error paths (fake cores), pause/resume, and partial files after a failure."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rawsigma.acquire.core import open_core
from rawsigma.acquire.plans import SweepPlan
from rawsigma.acquire.stream import Controls, stream_frames
from rawsigma.acquire.sweep import SweepRunner
from rawsigma.errors import AcquisitionError, Cancelled


class FakeCore:
    """Produces ``stop_after`` frames, then stops (or overflows, or hangs)."""

    def __init__(self, stop_after: int, mode: str = "stop") -> None:
        self.left = stop_after
        self.mode = mode
        self.running = False
        self.started: list[int] = []

    def startSequenceAcquisition(self, cam, n, interval, stop):  # noqa: N802
        self.running = True
        self.started.append(n)

    def stopSequenceAcquisition(self, cam):  # noqa: N802
        self.running = False

    def isSequenceRunning(self, cam=None):  # noqa: N802
        return self.running and (self.left > 0 or self.mode == "hang")

    def getRemainingImageCount(self):  # noqa: N802
        return 1 if self.left > 0 else 0

    def popNextImage(self):  # noqa: N802
        self.left -= 1
        return np.zeros((4, 4), np.uint16)

    def isBufferOverflowed(self):  # noqa: N802
        return self.mode == "overflow" and self.left == 0


@pytest.mark.parametrize(
    ("mode", "match"),
    [("stop", "stopped after 3 of 5"), ("overflow", "overflowed"), ("hang", "no frame")],
)
def test_stream_errors(mode: str, match: str) -> None:
    core = FakeCore(3, mode)
    got = []
    with pytest.raises(AcquisitionError, match=match):
        for f in stream_frames(core, "Cam", 5, timeout_s=0.05):
            got.append(f)
    assert len(got) == 3 and not core.isSequenceRunning()


def test_stream_cancel() -> None:
    core = FakeCore(10)
    ctl = Controls()
    with pytest.raises(Cancelled):
        for i, _ in enumerate(stream_frames(core, "Cam", 10, controls=ctl)):
            if i == 2:
                ctl.cancel()
    assert not core.running


def test_pause_and_resume_complete_the_level() -> None:
    core = open_core(properties={"Camera.SensorWidth": 16, "Camera.SensorHeight": 16})
    plan = SweepPlan(
        dark_frames=40,
        n_levels=2,
        frames_per_level=40,
        auto_range=False,
        control_max=20,
        saturation_levels=0,
    )
    runner = SweepRunner(core, plan)
    paused = threading.Event()

    def on_frame(i: int, j: int, _f: object) -> None:
        if i == 0 and j == 10 and not paused.is_set():
            paused.set()
            runner.pause()
            threading.Timer(0.2, runner.resume).start()

    runner.frameAccumulated.connect(on_frame)
    runner.run()
    assert paused.is_set()
    assert [lv.n for lv in runner.levels] == [40, 40]


def test_camera_error_keeps_partial(tmp_path) -> None:
    core = open_core(properties={"Camera.SensorWidth": 16, "Camera.SensorHeight": 16})
    plan = SweepPlan(
        dark_frames=20,
        n_levels=3,
        frames_per_level=20,
        auto_range=False,
        control_max=20,
        saturation_levels=0,
        seed=1,
    )
    part = tmp_path / "p.h5"
    runner = SweepRunner(core, plan, part)
    # the camera changes geometry mid-sweep: frames no longer match the accumulators
    runner.levelStarted.connect(lambda i, d: core.setROI(0, 0, 8, 8) if i == 1 else None)
    with pytest.raises(AcquisitionError):
        runner.run()
    core.clearROI()
    resumed = SweepRunner(core, plan, part)
    started: list[int] = []
    resumed.levelStarted.connect(lambda i, d: started.append(i))
    prof = resumed.run(resume=True)
    assert started == [1, 2] and prof.shape == (16, 16)
