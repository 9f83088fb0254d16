"""What every call of the noise codec shares: thread pool, load gate and caches.

The load gate decides whether a call runs in parallel; the caches keep per-camera
tables. The encoder (`stream`, `encode_pyramid`) and the decoder take their threads from here:
`_map` shares a call's items between the calling thread and the pool.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_POOL: ThreadPoolExecutor | None = None
# worker threads of the codec's pool (default: the cores this process may run on)
THREADS_ENV = "RAWSIGMA_CODEC_THREADS"


def pool_threads() -> int:
    """Threads that work on one call's tiles: ``$RAWSIGMA_CODEC_THREADS`` if set (≥ 1),
    else the number of cores this process may run on (`os.sched_getaffinity`)."""
    want = os.environ.get(THREADS_ENV, "").strip()
    if want.isdigit() and int(want) >= 1:
        return int(want)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    """The persistent pool (created once, reused by every call: no per-call threads)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=pool_threads(), thread_name_prefix="rsnc")
    return _POOL


# Below this many pixels an ENCODE runs its tiles in the calling thread (``threads=None``)
# unless a core is free (`ENCODE_PARALLEL_PIXELS`): the pool's hand-offs cost CPU and the
# tiles' data moves between the cores' caches, for a wall-time gain only when a core is
# idle (under load the helper waits in the run queue)
PARALLEL_PIXELS = 3 << 19
# A DECODE is one task per tile (no training, no model pass): from this many pixels its
# tiles run in parallel when a core is free (`_parallel_least`), the calling thread taking
# its share (one hand-off per helper); smaller streams have one tile, or gain less than
# the hand-off costs
DECODE_PARALLEL_PIXELS = 1 << 18


# An ENCODE of ``threads=None`` from this many pixels (≈ 0.33 Mpx) runs its tiles in
# parallel when a core is free (`_parallel_least`). Measured with a free core (RESULTS.md,
# session 10, henc), pool ÷ one thread: 1 Mpx frames 0.66-0.69 wall for +10-13 % CPU,
# 520×696 0.80-0.83 for +18-23 %, 512² only 0.89-0.91 for +28 % (kept in one thread)
ENCODE_PARALLEL_PIXELS = 5 << 16


_LOAD = [-1.0, False]  # (time read, a core free) of `_core_free`


def _core_free() -> bool:
    """Whether a core is likely idle: the 1-minute load average below the cores − ½
    (read at most once a second). Under load a helper thread waits in the run queue for
    milliseconds and the caller then waits for it: 2-3× the wall time of one thread."""
    now = time.monotonic()
    if now - _LOAD[0] > 1.0:
        try:
            free = os.getloadavg()[0] < pool_threads() - 0.5
        except OSError:  # no load average on this system
            free = True
        _LOAD[:] = [now, free]
    return bool(_LOAD[1])


def _parallel_least(when_free: int) -> int:
    """Pixels from which a call of ``threads=None`` is parallel: ``when_free``
    (`ENCODE_PARALLEL_PIXELS`, `DECODE_PARALLEL_PIXELS`) when a core is free, else
    `PARALLEL_PIXELS`."""
    return when_free if _core_free() else PARALLEL_PIXELS


def _auto_threads(threads: int | None, n_pixels: int, least: int = PARALLEL_PIXELS) -> int | None:
    """``threads``, or 1 for ``None`` below ``least`` pixels."""
    return 1 if threads is None and n_pixels < least else threads


def _map(fn, items, threads: int | None):
    """``[fn(it) for it in items]``, with ``threads != 1`` shared between the calling
    thread and up to `pool_threads` − 1 pool threads (items taken in turn)."""
    items = list(items)
    helpers = 0 if threads == 1 else min(len(items), pool_threads()) - 1
    if helpers <= 0:
        return [fn(it) for it in items]
    out: list = [None] * len(items)
    order = itertools.count()  # next() is atomic under the GIL

    def drain() -> None:
        for i in iter(order.__next__, None):
            if i >= len(items):
                return
            out[i] = fn(items[i])

    pool = _pool()
    futures = [pool.submit(drain) for _ in range(helpers)]
    try:
        drain()
    finally:  # a helper still queued (the pool busy with other calls) is not waited for
        for fut in futures:
            if not fut.cancel():
                fut.result()  # a started helper: done before returning (or raising)
    return out


# ---------------------------------------------------------------- caches
def _remember(cache: dict, key: Any, value: Any, limit: int) -> None:
    """Store ``value`` in a per-camera cache, emptied first when it holds ``limit``."""
    if len(cache) >= limit:
        cache.clear()  # atomic (threads)
    cache[key] = value


def _memo(cache: dict, key: Any, limit: int, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` and remembered on a miss."""
    value = cache.get(key)
    if value is None:
        value = make()
        _remember(cache, key, value, limit)
    return value
