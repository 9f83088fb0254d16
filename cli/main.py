"""The ``rawsigma`` command: a thin typer shell over acquire, calib and analysis."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="rawsigma",
    help=(
        "Camera noise calibration through Micro-Manager, and scoring of image "
        "processing (compression, bit-depth reduction) against the raw noise."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Each module defines ``register(app)``; the order is the order in ``--help``.
_COMMAND_MODULES = [
    "demo_cmd",
    "calibrate_cmd",
    "acquire_cmd",
    "profile_cmd",
    "score_cmd",
    "codec_cmd",
    "gui_cmd",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}").register(app)


def _print_version(value: bool) -> None:
    if value:
        from rawsigma import __version__

        typer.echo(f"rawsigma {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """Camera noise calibration and noise-referenced scoring."""


def main() -> None:
    """Entry point of the ``rawsigma`` console script."""
    from rawsigma.errors import RawsigmaError

    try:
        app()
    except RawsigmaError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
