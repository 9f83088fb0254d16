"""Named tasks written as they complete: retries, failures by name, lost workers."""

from __future__ import annotations

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
    with connect("local", workers=1) as client:
        client.cluster.scale(0)
        deadline = time.monotonic() + 30
        while client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        t0 = time.monotonic()
        res = run_tasks({"a": (_write, (1,)), "b": (_write, (2,))}, tmp_path / "out", client=client)
    assert sorted(res.failed) == ["a", "b"] and not res.written
    assert all("without any running workers" in why for why in res.failed.values())
    assert time.monotonic() - t0 < 30
    assert not any((tmp_path / "out").iterdir())
