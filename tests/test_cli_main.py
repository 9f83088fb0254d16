"""The ``rawsigma`` command registers every subcommand and prints its version."""

from __future__ import annotations

import subprocess
import sys

from rawsigma import __version__
from rawsigma.cli.main import app
from typer.testing import CliRunner


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    first, kernels = result.output.strip().splitlines()
    assert first == f"rawsigma {__version__}"
    # the codec kernels in use (`ckernels`), found without importing numba
    from rawsigma.analysis.noisecodec import ckernels

    name = "C extension" if ckernels.BACKEND == "c" else "numba"
    assert kernels.startswith(f"codec kernels: {name}")


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for cmd in ["demo", "calibrate", "acquire", "profile", "score", "compress",
                "decompress", "gui"]:  # fmt: skip
        assert f" {cmd} " in result.output, cmd


# Imported only inside the commands that need them: `rawsigma --help` must not pay
# for them (issue 12: the help is printed in well under 0.5 s).
HEAVY_MODULES = (
    "numpy",
    "scipy",
    "h5py",
    "pydantic",
    "pymmcore_plus",
    "pymmcore",
    "matplotlib",
    "numba",
    "skimage",
    "sklearn",
    "qtpy",
)

_HELP_PROBE = """
import sys
import rawsigma.cli.main as cli
try:
    cli.main(["--help"])
except SystemExit as exc:
    code = exc.code
print("EXIT", code)
print("HEAVY", ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_imports_no_heavy_module():
    probe = _HELP_PROBE.format(heavy=HEAVY_MODULES)
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    ).stdout
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in out.splitlines())
    assert lines.get("EXIT") == "0", out
    assert "Commands" in out and "calibrate" in out
    assert lines.get("HEAVY", "").strip() == "", f"--help imported: {lines.get('HEAVY')}"
