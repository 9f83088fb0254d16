"""``rawsigma gui``: the bench GUI (live frames, sweep, noise maps, profile viewer)."""

from __future__ import annotations

from pathlib import Path

import typer


def _check_display() -> None:
    """Refuse, with the way out, to start Qt where it would abort (no display)."""
    import os
    import sys

    from rawsigma.errors import RawsigmaError

    if os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise RawsigmaError(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset): run it on a desktop, "
            "over ssh -X, or without a window with QT_QPA_PLATFORM=offscreen rawsigma gui"
        )


def register(app: typer.Typer) -> None:
    """Add the ``gui`` command to the ``rawsigma`` app."""

    @app.command("gui")
    def gui(
        config: str = typer.Option(
            None,
            "--config",
            help="Micro-Manager .cfg of a real rig ('sim' or omitted: the simulated rig).",
        ),
        profile: Path = typer.Option(
            None, "--profile", help="Open this HDF5 camera profile in the viewer."
        ),
        offline: bool = typer.Option(
            None,
            "--offline/--camera",
            help="Without a camera (default when only --profile is given).",
        ),
    ) -> None:
        """Open the bench GUI: live view, calibration sweep with live noise maps, profiles."""
        from .console import user_errors

        with user_errors():
            _check_display()
            if profile is not None:  # not a window's error dialog: one line, exit 1
                from rawsigma.calib.profile import CameraProfile

                CameraProfile.load(profile)
        try:
            from rawsigma.gui.app import run_gui
        except ImportError as exc:
            from rawsigma.errors import RawsigmaError

            raise RawsigmaError(
                f"the GUI needs the 'gui' extra (pip install 'rawsigma[gui]'): {exc}"
            ) from None
        raise typer.Exit(run_gui(config=config, profile=profile, offline=offline))
