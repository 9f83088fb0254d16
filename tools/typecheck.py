"""Run mypy on rawsigma's installed layout with the settings of pyproject.toml.

mypy names modules after folders, and the source folders map onto subpackages
(``common/`` → ``rawsigma``, ``calib/`` → ``rawsigma.calib``, …); this script
links the sources into ``build/layout`` (see ``tools/layout.py``) and checks
``rawsigma`` there. Extra arguments go to mypy. Exit status: mypy's.
"""

from __future__ import annotations

import subprocess
import sys

from layout import REPO, build_layout


def main() -> int:
    """Build the layout and run mypy on it."""
    layout = build_layout()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")]
    cmd += ["--cache-dir", str(REPO / "build" / "mypy_cache"), "-p", "rawsigma", *sys.argv[1:]]
    return subprocess.run(cmd, cwd=layout, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
