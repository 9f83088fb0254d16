"""Named tasks whose results are written as they complete, locally or on a cluster.

A run is a mapping ``name -> (function, args)``; each function writes its result
into a fresh directory it is given, and that directory is renamed to
``outdir/<name>`` when the function returns (one ``os.replace``: a result is
complete or absent, never half written). So:

- results are on disk as soon as their task ends; a later failure, a lost worker
  or Ctrl-C loses nothing already written;
- a task that raises is retried (``retries``; on a ``dask.distributed`` cluster
  tasks of a lost worker are rescheduled by dask too), then reported BY NAME in
  `TaskOutcome.failed` while the others go on;
- a re-run with ``resume=True`` keeps the results already there and runs only the
  missing ones.

Without a client the tasks run on a local thread pool; with one
(`connect`: ``"local"`` gives a ``LocalCluster`` started when the first task is
submitted, any other string is a scheduler address) the same tasks go to its
workers, whose file system must see ``outdir``.

A local cluster's scheduler and nannies run on an event loop thread of the driver's
own process. While the driver holds the GIL for long (a C call of its training, say)
that loop stands still and the workers' heartbeats go unanswered; with dask's
``worker-ttl`` (5 min) the scheduler then restarted every worker as "failed to
heartbeat" the moment it ran again, and a run could end with no worker at all.
So a local cluster starts only when tasks are ready (no idle workers through the
driver's own phases) and has no ``worker-ttl``: its nannies watch the worker
processes, and a worker that dies closes its connections, which the scheduler sees
at once (its tasks are then rescheduled, or named as failed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LocalClusterOnDemand", "TaskOutcome", "connect", "run_tasks"]

Progress = Callable[[str, int, int], None]


@dataclass
class TaskOutcome:
    """What a `run_tasks` call did, by task name."""

    written: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every task's result is on disk."""
        return not self.failed


def _run_one(name: str, fn: Callable[..., Any], args: tuple, outdir: str) -> str:
    """Run ``fn(tmp_dir, *args)`` and rename ``tmp_dir`` to ``outdir/name``."""
    final = Path(outdir) / name
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        fn(tmp, *args)
        if final.exists():  # an older result of the same task (no resume): replace it
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _with_retries(name: str, fn: Callable[..., Any], args: tuple, outdir: str, retries: int) -> str:
    for attempt in range(retries + 1):
        try:
            return _run_one(name, fn, args, outdir)
        except Exception:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def run_tasks(
    tasks: Mapping[str, tuple[Callable[..., Any], tuple]],
    outdir: str | os.PathLike,
    *,
    client: Any = None,
    workers: int = 1,
    retries: int = 1,
    resume: bool = True,
    progress: Progress | None = None,
) -> TaskOutcome:
    """Run named tasks, each writing ``outdir/<name>`` atomically when it ends.

    Parameters
    ----------
    tasks : mapping of str to (callable, tuple)
        ``fn(tmp_dir, *args)`` writes the task's files into ``tmp_dir``; names are
        directory names (no ``/``). Functions and arguments must pickle when
        ``client`` is given.
    outdir : path
        Where the results go (created).
    client : dask.distributed.Client or LocalClusterOnDemand, optional
        Run on this cluster (a `LocalClusterOnDemand` is started here, when there are
        tasks to run); default a local thread pool of ``workers`` threads.
    workers : int
        Threads without a client.
    retries : int
        Extra attempts of a task that raised.
    resume : bool
        Keep results already in ``outdir`` and skip their tasks.
    progress : callable(name, done, total), optional
        Called as each task ends (done or failed).

    Returns
    -------
    TaskOutcome
        Names written, reused and failed (with a one-line reason).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for bad in [n for n in tasks if not n or "/" in n or n.startswith(".")]:
        raise ValueError(f"run_tasks: invalid task name {bad!r}")
    _clean(out)
    result = TaskOutcome()
    todo = {}
    for name, (fn, args) in tasks.items():
        if resume and (out / name).is_dir():
            result.reused.append(name)
        else:
            todo[name] = (fn, tuple(args))
    total, done = len(tasks), len(result.reused)
    for name, err in _execute(todo, str(out), client, workers, retries):
        done += 1
        if err is None:
            result.written.append(name)
        else:
            result.failed[name] = err
        if progress is not None:
            progress(name, done, total)
    _clean(out)  # temporaries of attempts whose process was killed
    return result


def _clean(out: Path) -> None:
    for stale in out.glob(".*.tmp-*"):  # never a result (renamed only when complete)
        shutil.rmtree(stale, ignore_errors=True)


def _execute(
    todo: dict[str, tuple[Callable[..., Any], tuple]],
    outdir: str,
    client: Any,
    workers: int,
    retries: int,
) -> Iterator[tuple[str, str | None]]:
    """Yield ``(name, None)`` or ``(name, reason)`` as tasks end, in completion order."""
    if not todo:
        return
    if isinstance(client, LocalClusterOnDemand):
        client = client.client()  # started now that tasks are ready
    if client is None:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futs = {
                pool.submit(_with_retries, n, fn, a, outdir, retries): n
                for n, (fn, a) in todo.items()
            }
            for f in as_completed(futs):
                exc = f.exception()
                yield futs[f], None if exc is None else _one_line(exc)
        return
    yield from _execute_distributed(todo, outdir, client, retries)


def _execute_distributed(
    todo: dict[str, tuple[Callable[..., Any], tuple]], outdir: str, client: Any, retries: int
) -> Iterator[tuple[str, str | None]]:
    """As `_execute` on a cluster; a task lost with its worker(s) is resubmitted."""
    from distributed import as_completed as dist_completed

    token = uuid.uuid4().hex[:8]
    order = list(todo)

    def submit(n: str, attempt: int) -> Any:
        fn, a = todo[n]
        # one key prefix: one task group, which the scheduler queues (root-ish
        # tasks), so a dying worker takes down only the task it runs
        key = f"rawsigma_task-{token}-{order.index(n)}-{attempt}"
        return client.submit(_run_one, n, fn, a, outdir, key=key, retries=retries, pure=False)

    futs = {submit(n, 0): (n, 0) for n in order}
    stream = dist_completed(list(futs))
    for f in stream:
        name, attempt = futs.pop(f)
        if f.status == "finished":
            yield name, None
            continue
        try:
            exc = f.exception()
            reason = _one_line(exc) if exc is not None else f.status
        except Exception as err:  # cancelled, or the scheduler went away
            exc, reason = err, _one_line(err)
        if type(exc).__name__ == "KilledWorker" and attempt < max(1, retries):
            g = submit(name, attempt + 1)  # maybe an innocent bystander of a crash
            futs[g] = (name, attempt + 1)
            stream.add(g)
            continue
        yield name, reason


#: A local cluster's tasks fail, by name, when no worker has been alive for this long
#: (all workers lost and not restarted) instead of waiting for ever. A nanny restarts a
#: killed worker within seconds. Remote clusters keep their own setting (an adaptive
#: cluster may have no workers for a while on purpose).
NO_WORKERS_TIMEOUT = "120s"

#: dask settings of a local cluster (read when it starts). ``worker-ttl`` off: the
#: scheduler lives in the driver's process, so a driver holding the GIL for longer than
#: the ttl made every worker look dead (module docstring).
LOCAL_CLUSTER_SETTINGS: dict[str, Any] = {
    # one task per worker thread at a time: when a worker dies, only the task it
    # was running counts as suspicious (not the ones queued behind it)
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.scheduler.worker-ttl": None,
}


class LocalClusterOnDemand:
    """A ``LocalCluster`` and its client, started by the first `client` call.

    `connect` yields one for ``"local"``; `run_tasks` starts it when it has tasks
    to submit, so the driver's phases before (staging, training) run with no
    cluster at all. `close` shuts it down (if it was started).

    Parameters
    ----------
    workers : int
        Single-threaded worker processes.
    memory_limit : str, optional
        Per-worker memory limit (dask notation, "1GB").
    """

    def __init__(self, workers: int = 2, memory_limit: str | None = None) -> None:
        self.workers = workers
        self.memory_limit = memory_limit
        self._cluster: Any = None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """True once the cluster runs."""
        return self._client is not None

    def client(self) -> Any:
        """The ``dask.distributed.Client`` of the cluster, started on first call."""
        with self._lock:
            if self._client is None:
                self._start()
            return self._client

    def _start(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        kw: dict[str, Any] = {"memory_limit": self.memory_limit} if self.memory_limit else {}
        settings = LOCAL_CLUSTER_SETTINGS | {
            "distributed.scheduler.no-workers-timeout": NO_WORKERS_TIMEOUT
        }
        with dask.config.set(settings):
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                dashboard_address=":0",  # any free port: no clash, no warning
                silence_logs=logging.CRITICAL,  # failed tasks are named by run_tasks
                **kw,
            )
            try:
                self._client = Client(cluster)
            except BaseException:
                cluster.close()
                raise
        self._cluster = cluster

    def close(self) -> None:
        """Close the client and the cluster, if started."""
        with self._lock:
            client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def connect(
    scheduler: str | None, workers: int = 2, memory_limit: str | None = None
) -> Iterator[Any]:
    """Open a ``dask.distributed`` client for ``--scheduler``, closed on exit.

    Parameters
    ----------
    scheduler : str or None
        ``None``: no client (yields None); ``"local"``: a `LocalClusterOnDemand` of
        ``workers`` single-threaded worker processes, started when `run_tasks` first
        has tasks to submit; else a scheduler address (``tcp://host:8786``) of a
        running cluster (yields its ``Client``).
    workers : int
        Worker processes of a local cluster.
    memory_limit : str, optional
        Per-worker memory limit of a local cluster (dask notation, "1GB").

    Raises
    ------
    ImportError
        dask.distributed is not installed (the ``scale`` extra).
    """
    if scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "--scheduler needs dask.distributed (the 'scale' extra: pip install 'rawsigma[scale]')"
        ) from exc
    if scheduler == "local":
        local = LocalClusterOnDemand(workers, memory_limit)
        try:
            yield local
        finally:
            local.close()
    else:
        with Client(scheduler, timeout="20s") as client:
            yield client
