"""Terminal helpers shared by the commands: error reporting, --prop parsing, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = ["parse_props", "runner_progress", "stage_progress", "user_errors"]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print rawsigma errors as one red line and exit with status 2."""
    from rawsigma.errors import RawsigmaError

    try:
        yield
    except RawsigmaError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


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
        ``progress(stage, done, total)`` as taken by `rawsigma.analysis.runner.score_image`
        and `rawsigma.analysis.demo.run_demo`: the first call for a stage adds its bar.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"{{task.description:<{width}}}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield progress


def parse_props(props: list[str]) -> dict[str, str]:
    """``["Camera.SensorWidth=64", ...]`` → ``{"Camera.SensorWidth": "64"}``."""
    from rawsigma.errors import AcquisitionError

    out: dict[str, str] = {}
    for item in props:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AcquisitionError(f"--prop {item!r}: expected Device.Property=Value")
        out[key.strip()] = value.strip()
    return out


@contextlib.contextmanager
def runner_progress(runner: Any, total: int, quiet: bool = False) -> Iterator[Any]:
    """Rich progress bar (level, frames, fps, ETA) driven by a runner's signals."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if quiet:
        runner.warning.connect(lambda m: console.print(f"[yellow]warning:[/] {m}"))
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

    def started(i: int, info: dict) -> None:
        name = "dark" if i < 0 else f"level {i + 1}/{info.get('n_levels', '?')}"
        if info.get("retry"):
            name += f" (retry {info['retry']})"
        progress.reset(level, total=info["n_frames"], description=name, fps=0.0)
        t_start[:] = [time.perf_counter(), 0]

    def frame(i: int, j: int, _img: object) -> None:
        t_start[1] += 1
        dt = time.perf_counter() - t_start[0]
        fps = t_start[1] / dt if dt > 0 else 0.0
        progress.update(level, advance=1, fps=fps)
        progress.update(overall, advance=1, fps=fps)

    runner.levelStarted.connect(started)
    runner.frameAccumulated.connect(frame)
    runner.warning.connect(lambda m: progress.console.print(f"[yellow]warning:[/] {m}"))
    with progress:
        yield progress
