"""Terminal helpers shared by the commands: error reporting and stage progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = ["stage_progress", "user_errors"]


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
