"""Terminal helpers shared by the commands: error reporting, --prop parsing, progress bars.

Exit statuses: 0 success, 1 runtime or input error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = [
    "debug_enabled",
    "error_line",
    "parse_props",
    "print_error",
    "outputs_complete",
    "snapshot",
    "kept_after_interrupt",
    "print_interrupted",
    "interrupt_shown",
    "reset_interrupt_note",
    "quiet_after_interrupt",
    "runner_progress",
    "set_debug",
    "stage_progress",
    "user_errors",
]

_DEBUG = [False]


def set_debug(on: bool) -> None:
    """Show tracebacks (global ``--debug``; also ``RAWSIGMA_DEBUG=1``)."""
    _DEBUG[0] = bool(on)


def debug_enabled() -> bool:
    """True with ``--debug`` or ``RAWSIGMA_DEBUG=1``: errors keep their traceback."""
    import os

    return _DEBUG[0] or os.environ.get("RAWSIGMA_DEBUG", "") not in ("", "0")


def error_line(exc: BaseException) -> str:
    """The one line shown for an error (no traceback)."""
    from rawsigma.errors import RawsigmaError
    from rawsigma.fileio import describe_os_error

    if isinstance(exc, RawsigmaError):  # one line even when it quotes a library's message
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller image, fewer replicas or fewer workers)"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return (
        f"internal error: {type(exc).__name__}: {first} "
        "(rerun with --debug for the traceback, and please report it)"
    )


def print_error(exc: BaseException) -> int:
    """Print ``error: <one line>`` on stderr; return the exit status for ``exc``."""
    from rawsigma.errors import exit_code_for
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(  # escaped: 'f.tif[x]' is no markup tag to drop
        f"[bold red]error:[/] {escape(error_line(exc))}", highlight=False, soft_wrap=True
    )
    return exit_code_for(exc)


def quiet_after_interrupt() -> None:
    """Silence the noise background threads make when the main thread stops early.

    zarr's event-loop thread reports its cancelled tasks through the ``asyncio``
    logger, ``threading.excepthook`` and unraisable-exception hooks; none of it
    has anything to tell the user after Ctrl-C.
    """
    import logging
    import sys
    import threading
    import warnings

    warnings.simplefilter("ignore")  # "coroutine ... was never awaited" at exit
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None


_INTERRUPT_SHOWN = [False]


def print_interrupted(what: str) -> int:
    """Print ``interrupted: <what was kept>`` once; return 130 (the exit status)."""
    from rich.console import Console
    from rich.markup import escape

    quiet_after_interrupt()
    if not _INTERRUPT_SHOWN[0]:
        _INTERRUPT_SHOWN[0] = True
        msg = f"[yellow]interrupted:[/] {escape(what)}"  # paths: 'run[/x]' is no tag
        Console(stderr=True).print(msg, highlight=False, soft_wrap=True)
    return 130


def snapshot(*paths: Any) -> dict[Any, Any]:
    """Identity (inode, size, mtime) of each output before the work, None if absent."""
    import os

    out: dict[Any, Any] = {}
    for p in paths:
        if p is None:
            continue
        try:
            st = os.stat(p)
            out[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            out[p] = None
    return out


def kept_after_interrupt(before: dict[Any, Any], nothing: str = "nothing written") -> str:
    """What an interruption left, judged from the disk: outputs completed meanwhile, or
    ``nothing`` (every output as it was).
    """
    now = snapshot(*before)
    done = [str(p) for p, sig in before.items() if now[p] is not None and now[p] != sig]
    if done:
        return f"{', '.join(done)} had been written completely before the interruption"
    return nothing


_CONSOLE_SCRIPT = [False]
_SIGINT_SEEN = [False]


def on_sigint(signum: int, frame: object) -> None:
    """SIGINT handler of the console script: remember it, then raise KeyboardInterrupt.

    Some libraries (matplotlib) turn a KeyboardInterrupt raised inside them into
    another error; `user_errors` reports any error after a Ctrl-C as the interruption.
    """
    _SIGINT_SEEN[0] = True
    raise KeyboardInterrupt


def raise_swallowed_interrupt(*_args: object) -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that a library swallowed (console script).

    A Ctrl-C landing in a compiled module's initialisation (numpy.random imported by a
    simulated device while Micro-Manager loads the configuration) was lost there: the
    command then ran on to exit 0. Connected to every acquired frame, called at every
    stage-progress step and around `compress` / `decompress`'s writing, so the command
    stops at the next such point instead. Only the main thread raises (a worker's
    KeyboardInterrupt would surface as another thread's error).
    """
    import threading

    if (
        _CONSOLE_SCRIPT[0]
        and _SIGINT_SEEN[0]
        and threading.current_thread() is threading.main_thread()
    ):
        raise KeyboardInterrupt


def interrupted_meanwhile(exc: BaseException) -> bool:
    """True for a KeyboardInterrupt, or any error raised after a Ctrl-C."""
    return isinstance(exc, KeyboardInterrupt) or _SIGINT_SEEN[0]


def outputs_complete() -> None:
    """Every output is on disk: from now on Ctrl-C is ignored (console script only).

    A Ctrl-C while the summary is printed would otherwise report an interruption
    after a complete run.
    """
    import signal
    import threading

    if _CONSOLE_SCRIPT[0] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def reset_interrupt_note() -> None:
    """Forget an earlier interruption message (one process, several invocations)."""
    _INTERRUPT_SHOWN[0] = False


def interrupt_shown() -> bool:
    """True once a command has said what its interruption kept."""
    return _INTERRUPT_SHOWN[0]


@contextlib.contextmanager
def user_errors(interrupted: str = "nothing written") -> Iterator[None]:
    """Turn rawsigma and OS errors into one red line and an exit status.

    `rawsigma.errors.UsageError` → 2, other `RawsigmaError`, ``OSError`` (disk full,
    permission denied) and ``MemoryError`` → 1, ``KeyboardInterrupt`` → 130
    ("interrupted: " + ``interrupted``, what is on disk: commands that write only
    through `rawsigma.fileio.atomic_write` write nothing when interrupted). Other
    exceptions (bugs) propagate to `rawsigma.cli.main.main`, which prints them as one
    line too. With `debug_enabled` everything propagates.
    """
    from rawsigma.errors import RawsigmaError

    try:
        yield
    except (RawsigmaError, OSError, MemoryError) as exc:
        if debug_enabled():
            raise
        if interrupted_meanwhile(exc):
            raise typer.Exit(print_interrupted(interrupted)) from None
        raise typer.Exit(print_error(exc)) from None
    except Exception as exc:
        if debug_enabled() or not interrupted_meanwhile(exc):
            raise
        raise typer.Exit(print_interrupted(interrupted)) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        raise typer.Exit(print_interrupted(interrupted)) from None


@contextlib.contextmanager
def stage_progress(console: Any, width: int) -> Iterator[Callable[[str, int, int], None]]:
    """Rich progress bars, one per stage, fed by a ``progress(stage, done, total)`` callback.

    Parameters
    ----------
    console : rich.console.Console
    width : int
        Width of the stage-name column, characters.

    Yields
    ------
    callable
        ``progress(stage, done, total)`` as taken by `rawsigma.analysis.scoring.runner.score_image`
        and `rawsigma.analysis.demo.run_demo`: the first call for a stage adds its bar.
    """
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # started at the first stage: a run that stops before any (bad input) prints no
    # empty bar line before its error
    bars: list[Progress] = []
    tasks: dict[str, int] = {}
    with contextlib.ExitStack() as stack:

        def progress(stage: str, done: int, total: int) -> None:
            raise_swallowed_interrupt()
            if not bars:
                bars.append(stack.enter_context(Progress(
                    TextColumn(f"{{task.description:<{width}}}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console,
                )))  # fmt: skip
            bar = bars[0]
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield progress


def parse_props(props: list[str]) -> dict[str, str]:
    """``["Camera.SensorWidth=64", ...]`` → ``{"Camera.SensorWidth": "64"}``."""
    from rawsigma.errors import UsageError

    out: dict[str, str] = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--prop {item!r}: expected Device.Property=Value")
        out[key.strip()] = value.strip()
    return out


def frames_before(runner: Any, index: int) -> int:
    """Frames a sweep takes before its light level ``index`` starts (0 for a dark).

    The dark frames and, per earlier level, its frames and level darks: what a resumed
    sweep has in its partial file when it starts at ``index``. 0 for runners without a
    sweep plan (a stack).
    """
    plan = getattr(runner, "plan", None)
    if index < 0 or not hasattr(plan, "frames_per_level"):
        return 0
    per_level = int(plan.frames_per_level) + int(getattr(plan, "level_darks", 0) or 0)
    return int(plan.dark_frames) + index * per_level


@contextlib.contextmanager
def runner_progress(runner: Any, total: int, quiet: bool = False) -> Iterator[Any]:
    """Rich progress bar (level, frames, fps, ETA) driven by a runner's signals."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    runner.frameAccumulated.connect(raise_swallowed_interrupt)
    if quiet:
        runner.warning.connect(
            lambda m: console.print(f"[yellow]warning:[/] {escape(m)}", soft_wrap=True)
        )
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:>7.1f} fps"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    overall = progress.add_task("all frames", total=total, fps=0.0)
    level = progress.add_task("", total=1, fps=0.0)
    import time

    t_start = [time.perf_counter(), 0]
    done = [0]  # frames counted on the overall bar

    def started(i: int, info: dict) -> None:
        name = "dark" if i < 0 else f"level {i + 1}/{info.get('n_levels', '?')}"
        if info.get("retry"):
            name += f" (retry {info['retry']})"
        progress.reset(level, total=info["n_frames"], description=name, fps=0.0)
        t_start[:] = [time.perf_counter(), 0]
        before = frames_before(runner, i)  # a resumed sweep starts past its saved levels
        if before > done[0]:
            progress.update(overall, advance=before - done[0])
            done[0] = before

    def frame(i: int, j: int, _img: object) -> None:
        t_start[1] += 1
        dt = time.perf_counter() - t_start[0]
        fps = t_start[1] / dt if dt > 0 else 0.0
        progress.update(level, advance=1, fps=fps)
        progress.update(overall, advance=1, fps=fps)
        done[0] += 1

    runner.levelStarted.connect(started)
    runner.frameAccumulated.connect(frame)
    runner.warning.connect(
        lambda m: progress.console.print(f"[yellow]warning:[/] {escape(m)}", soft_wrap=True)
    )
    with progress:
        yield progress
