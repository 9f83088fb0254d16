"""Named tasks written as they complete: retries, failures by name, lost workers."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import time
from pathlib import Path

import pytest
from rawsigma.analysis.outofcore.taskrun import connect, run_tasks


def _write(tmp: Path, value: int, delay: float = 0.0) -> None:
    time.sleep(delay)
    (tmp / "result.json").write_text(json.dumps({"value": value}))


def _fail(tmp: Path, what: str) -> None:
    (tmp / "partial.txt").write_text("half")
    raise RuntimeError(what)


def _flaky(tmp: Path, marker: str) -> None:
    if not os.path.exists(marker):
        Path(marker).write_text("failed once")
        raise OSError("transient read error")
    _write(tmp, 7)


def _kill_once(tmp: Path, marker: str) -> None:
    """Kill this worker's process the first time (the nanny restarts it)."""
    if not os.path.exists(marker):
        Path(marker).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    _write(tmp, 99)


def _kill_always(tmp: Path) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _values(out: Path) -> dict[str, int]:
    return {p.parent.name: json.loads(p.read_text())["value"] for p in out.glob("*/result.json")}


def test_threads_retry_fail_by_name_and_resume(tmp_path) -> None:
    tasks = {f"f{i}": (_write, (i,)) for i in range(4)}
    tasks["flaky"] = (_flaky, (str(tmp_path / "marker"),))
    tasks["broken"] = (_fail, ("codec exploded",))
    seen = []
    res = run_tasks(tasks, tmp_path / "out", workers=2, progress=lambda n, d, t: seen.append(d))
    assert res.failed == {"broken": "RuntimeError: codec exploded"}
    assert sorted(res.written) == ["f0", "f1", "f2", "f3", "flaky"]
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert _values(tmp_path / "out") == {"f0": 0, "f1": 1, "f2": 2, "f3": 3, "flaky": 7}
    # a failed task leaves nothing: no directory, no temporary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(res.written)
    before = (tmp_path / "out" / "f1" / "result.json").stat().st_mtime_ns
    tasks["broken"] = (_write, (5,))
    again = run_tasks(tasks, tmp_path / "out")
    assert again.written == ["broken"] and len(again.reused) == 5 and again.ok
    assert (tmp_path / "out" / "f1" / "result.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="invalid task name"):
        run_tasks({"a/b": (_write, (1,))}, tmp_path / "x")


@pytest.mark.slow
def test_lost_worker_is_rescheduled_and_outputs_stay_valid(tmp_path) -> None:
    pytest.importorskip("distributed")
    import dask

    out = tmp_path / "out"
    tasks = {f"f{i}": (_write, (i, 0.3)) for i in range(6)}
    tasks["killer"] = (_kill_once, (str(tmp_path / "marker"),))
    tasks["doomed"] = (_kill_always, ())
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with connect("local", workers=2) as client:
            res = run_tasks(tasks, out, client=client, retries=0)
    # the task whose worker died once ran again on the restarted worker
    assert (tmp_path / "marker").exists()
    assert sorted(res.written) == ["f0", "f1", "f2", "f3", "f4", "f5", "killer"]
    # the task that kills every worker it touches is named, not hidden
    assert list(res.failed) == ["doomed"]
    assert "KilledWorker" in res.failed["doomed"] or "killed" in res.failed["doomed"].lower()
    want = {f"f{i}": i for i in range(6)} | {"killer": 99}
    assert _values(out) == want
    assert not list(out.glob(".*"))


@pytest.mark.slow
def test_a_cluster_without_workers_fails_by_name(tmp_path, monkeypatch) -> None:
    """All workers gone for good: the tasks are named as failed, not waited on for ever."""
    pytest.importorskip("distributed")
    from rawsigma.analysis.outofcore import taskrun

    monkeypatch.setattr(taskrun, "NO_WORKERS_TIMEOUT", "3s")
    with connect("local", workers=1) as local:
        client = local.client()
        client.cluster.scale(0)
        deadline = time.monotonic() + 30
        while client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        t0 = time.monotonic()
        res = run_tasks({"a": (_write, (1,)), "b": (_write, (2,))}, tmp_path / "out", client=local)
    assert sorted(res.failed) == ["a", "b"] and not res.written
    assert all("without any running workers" in why for why in res.failed.values())
    assert time.monotonic() - t0 < 30
    assert not any((tmp_path / "out").iterdir())


def _hold_the_gil(seconds: int) -> None:
    """Sleep in C without releasing the GIL (``PyDLL`` keeps it), as a long C call would."""
    ctypes.PyDLL(ctypes.util.find_library("c")).sleep(ctypes.c_uint(seconds))


def test_local_cluster_starts_only_when_tasks_are_ready(tmp_path) -> None:
    """No worker process runs through the driver's own phases, nor for reused results."""
    pytest.importorskip("distributed")
    (tmp_path / "out" / "a").mkdir(parents=True)
    with connect("local", workers=1) as local:
        assert not local.started
        res = run_tasks({"a": (_write, (1,))}, tmp_path / "out", client=local)
        assert res.reused == ["a"] and not local.started
    assert not local.started


@pytest.mark.slow
def test_a_driver_holding_the_gil_loses_no_local_worker(tmp_path) -> None:
    """The driver busy past dask's worker-ttl: same workers after, tasks written.

    The scheduler of a local cluster runs in the driver's process: while the driver
    holds the GIL, no heartbeat is answered. With a worker-ttl (dask's default 5 min,
    here 1 s, floored by dask to 5 s for 2 workers) every worker was restarted as
    "failed to heartbeat" as soon as the scheduler ran again.
    """
    pytest.importorskip("distributed")
    import dask

    tasks = {f"f{i}": (_write, (i,)) for i in range(4)}
    with dask.config.set({"distributed.scheduler.worker-ttl": "1s"}):
        with connect("local", workers=2) as local:
            client = local.client()
            before = set(client.scheduler_info()["workers"])
            _hold_the_gil(8)
            res = run_tasks(tasks, tmp_path / "out", client=local, retries=0)
            after = set(client.scheduler_info()["workers"])
            events = [e for _, e in client.get_events("scheduler")]
    assert res.ok and _values(tmp_path / "out") == {f"f{i}": i for i in range(4)}
    assert len(before) == 2 and after == before
    assert not [e for e in events if e.get("action") == "worker-ttl-timed-out"]
