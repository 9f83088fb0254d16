"""The ``rawsigma`` command registers every subcommand and prints its version."""

from __future__ import annotations

from rawsigma import __version__
from rawsigma.cli.main import app
from typer.testing import CliRunner


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"rawsigma {__version__}"


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for cmd in ["demo", "calibrate", "acquire", "profile", "score", "compress",
                "decompress", "gui"]:  # fmt: skip
        assert f" {cmd} " in result.output, cmd
