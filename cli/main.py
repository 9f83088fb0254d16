"""The ``rawsigma`` command: a thin typer shell over acquire, calib and analysis.

Exit statuses: 0 success, 1 runtime or input error (`rawsigma.errors.RawsigmaError`,
disk full, permission denied, internal errors), 2 usage error (click's own and
`rawsigma.errors.UsageError`), 130 interrupted (Ctrl-C or SIGTERM). Every error is
one line on stderr; ``--debug`` (or ``RAWSIGMA_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
import traceback

import typer

from .console import (
    debug_enabled,
    print_error,
    print_interrupted,
    reset_interrupt_note,
    set_debug,
)

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
    "tomo_cmd",
    "tomo_score_cmd",
    "tomo_sim_cmd",
    "gui_cmd",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}").register(app)


def _print_version(value: bool) -> None:
    if value:
        from rawsigma import __version__

        typer.echo(f"rawsigma {__version__}")
        typer.echo(f"codec kernels: {_codec_kernels()}")
        raise typer.Exit()


def _codec_kernels() -> str:
    """Name the noise-codec kernels that coding will use.

    The C extension built at install, or the numba fallback (`ckernels`); found without
    importing the codec (numba).
    """
    from importlib.machinery import EXTENSION_SUFFIXES
    from pathlib import Path

    if os.environ.get("RAWSIGMA_CODEC_KERNELS", "").strip().lower() == "numba":
        return "numba (RAWSIGMA_CODEC_KERNELS=numba)"
    spec = importlib.util.find_spec("rawsigma.analysis")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if any((Path(folder, "noisecodec", "_ckernels" + x)).exists() for x in EXTENSION_SUFFIXES):
            return "C extension"
    return "numba (the C extension was not built: no C compiler at install?)"


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show the Python traceback of errors (also RAWSIGMA_DEBUG=1).",
    ),
) -> None:
    """Camera noise calibration and noise-referenced scoring."""
    set_debug(debug)
    reset_interrupt_note()


def _sigterm_as_interrupt() -> None:
    """SIGTERM takes the same clean path as Ctrl-C (partial results kept, exit 130)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use)
        pass


def _is_click_error(exc: BaseException) -> bool:
    """Click's (or typer's vendored click's) own errors: bad usage, bad parameters."""
    return hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def _print_usage_error(exc: Exception) -> int:
    """One line on stderr for click's usage errors (bad option value, unknown option).

    Only a bare ``rawsigma`` (or a group without its command) prints the help, as
    click does.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        try:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - older typer: plain click output
            exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    msg = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    kinds = {c.__name__ for c in type(exc).__mro__}  # typer vendors its own click
    bad_value = "BadParameter" in kinds and "MissingParameter" not in kinds
    if ctx is not None and not bad_value:
        msg += f" (see '{ctx.command_path} --help')"
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(
        f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True
    )
    return int(exc.exit_code)  # type: ignore[attr-defined]


def _run(argv: list[str] | None) -> int:
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="rawsigma", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort) as exc:  # typer turns Ctrl-C into Exit(130)
        if debug_enabled():
            raise
        if type(exc).__name__ == "Abort" and not isinstance(exc.__context__, KeyboardInterrupt):
            return 1  # EOF at a prompt
        return 130
    except BrokenPipeError:  # `rawsigma profile show x.h5 | head`
        return 0
    except Exception as exc:  # noqa: BLE001 - one line per error unless --debug
        if _is_click_error(exc):  # usage errors: 2
            return _print_usage_error(exc)
        if type(exc).__name__ == "Abort":  # plain click's Abort wraps Ctrl-C
            return 130
        if debug_enabled():
            raise
        return print_error(exc)
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rawsigma`` console script."""
    import rawsigma

    if argv is None and signal.getsignal(signal.SIGINT) in (
        rawsigma._early_interrupt,
        signal.default_int_handler,
    ):
        from .console import on_sigint

        signal.signal(signal.SIGINT, on_sigint)
    if os.environ.get("RAWSIGMA_DEBUG", "") not in ("", "0"):
        set_debug(True)
    _sigterm_as_interrupt()
    if argv is None:
        from . import console

        console._CONSOLE_SCRIPT[0] = True
    if argv is None and not debug_enabled():
        # Errors in destructors (h5py objects of a file on a full disk) are printed
        # through these hooks; every error the user must see is already one line.
        sys.unraisablehook = _quiet_unraisable
        sys.excepthook = lambda *exc_info: None
    try:
        rc = _run(argv)
    except (Exception, KeyboardInterrupt) as exc:  # only re-raised with --debug
        if argv is not None:
            raise
        # the quiet excepthook above was installed before --debug was parsed
        traceback.print_exc()
        rc = 130 if isinstance(exc, KeyboardInterrupt) else 1
    if argv is None:  # the work is over: a late Ctrl-C must not kill the exit (status -2)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if rc == 130:
        print_interrupted("nothing written")  # unless the command already said what it kept
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would print a "broken pipe" error while closing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if rc != 0 and argv is None and not debug_enabled():  # the console script only
        _exit_now(rc)
    raise SystemExit(rc)


def _quiet_unraisable(unraisable: object) -> None:
    """Errors in destructors (h5py objects of a file on a full disk) say nothing new."""


def _exit_now(rc: int) -> None:
    """Exit after an error or an interruption without interpreter finalisation.

    Every output is complete or already removed at this point (atomic writes, partial
    checkpoints). Finalisation would only close what the failure left half-open: an
    HDF5 handle on a full disk can crash there (SIGSEGV/SIGBUS), and a camera thread
    still calling into Python aborts the process ("FATAL: exception not rethrown").
    """
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - nothing left to report to
            pass
    os._exit(rc)


if __name__ == "__main__":
    main()
