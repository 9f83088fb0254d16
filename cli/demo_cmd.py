"""``rawsigma demo``: calibrate the simulated camera, score two images, write reports."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the root ``rawsigma`` app."""
    app.command("demo")(demo)


def demo(
    out: Path = typer.Option(Path("rawsigma-demo"), "--out", "-o", help="Output directory."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo's results."),
    fast: bool = typer.Option(False, "--fast", help="Smaller, quicker run (same steps)."),
    seed: int = typer.Option(0, "--seed", help="Root random seed."),
) -> None:
    """End-to-end demo with bundled data only (about a minute): no arguments needed."""
    from rawsigma.analysis.demo import run_demo
    from rawsigma.errors import RawsigmaError
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    try:
        with Progress(
            TextColumn("{task.description:<32}"),
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

            res = run_demo(out, force=force, fast=fast, seed=seed, progress=progress)
    except RawsigmaError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    for name, v in res.verdicts.items():
        line = ", ".join(f"{k} {'ok' if ok else 'EXCEEDS'}" for k, ok in v.items())
        console.print(f"  {name:<10} {line}")
    console.print(f"done in {res.seconds:.0f} s")
    typer.echo(f"report: {res.index.resolve()}")
