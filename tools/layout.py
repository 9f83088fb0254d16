"""The installed package layout of rawsigma, as symlinks, for tools that need it.

The source folders map onto subpackages (``common/`` → ``rawsigma``, ``calib/`` →
``rawsigma.calib``, … see ``[tool.setuptools.package-dir]`` in pyproject.toml), a
layout that import-linter and mypy cannot walk. ``python tools/layout.py`` (re)builds
``build/layout/rawsigma/…`` with one symlink per source file and prints the folder.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "build" / "layout"


def build_layout(dest: Path = LAYOUT) -> Path:
    """Link every package's ``.py``/``.pyi``/``py.typed`` files into ``dest``; return it."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setup = conf["tool"]["setuptools"]
    if dest.exists():
        shutil.rmtree(dest)
    for package in setup["packages"]:
        src = REPO / setup["package-dir"][package]
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.suffix in (".py", ".pyi") or f.name == "py.typed":
                (target / f.name).symlink_to(f)
    return dest


if __name__ == "__main__":
    print(build_layout(Path(sys.argv[1]) if len(sys.argv) > 1 else LAYOUT))
