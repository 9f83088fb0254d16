"""Run import-linter (``lint-imports``) on rawsigma's installed package layout.

The source folders map onto subpackages (``common/`` → ``rawsigma``, ``calib/`` →
``rawsigma.calib``, … see ``[tool.setuptools.package-dir]`` in pyproject.toml), a
layout import-linter cannot walk. This script copies the ``.py`` files into a
temporary tree laid out as installed, then runs ``lint-imports`` on it with the
contracts of pyproject.toml. Exit status: that of ``lint-imports``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mirror(dest: Path) -> None:
    """Copy every package's ``.py`` files to ``dest`` in the installed layout."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir = conf["tool"]["setuptools"]["package-dir"]
    for package in conf["tool"]["setuptools"]["packages"]:
        src = REPO / package_dir[package]
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for py in src.glob("*.py"):
            shutil.copy2(py, target / py.name)


def main() -> int:
    """Mirror the packages, then run ``lint-imports`` with the repository's config."""
    with tempfile.TemporaryDirectory(prefix="rawsigma-imports-") as tmp:
        mirror(Path(tmp))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]))
        exe = shutil.which("lint-imports") or "lint-imports"
        cmd = [exe, str(REPO / "pyproject.toml"), *sys.argv[1:]]
        return subprocess.run(cmd, env=env, cwd=tmp, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
