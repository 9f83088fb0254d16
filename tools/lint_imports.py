"""Run import-linter (``lint-imports``) on rawsigma's installed package layout.

import-linter cannot walk the source folders (``common/`` → ``rawsigma``, …): this
script links the sources into ``build/layout`` (see ``tools/layout.py``) and runs
``lint-imports`` there with the contracts of pyproject.toml ``[tool.importlinter]``.
Extra arguments go to ``lint-imports``. Exit status: that of ``lint-imports``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from layout import REPO, build_layout


def main() -> int:
    """Build the layout, then run ``lint-imports`` on it."""
    layout = build_layout()
    path = os.pathsep.join(p for p in (str(layout), os.environ.get("PYTHONPATH", "")) if p)
    exe = shutil.which("lint-imports") or "lint-imports"
    cmd = [exe, str(REPO / "pyproject.toml"), "--no-cache", *sys.argv[1:]]
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.run(cmd, env=env, cwd=layout, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
