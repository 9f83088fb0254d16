"""The wheel built from the repo holds every module of every subsystem folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _package_dirs() -> dict[str, str]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    return cfg["tool"]["setuptools"]["package-dir"]


def test_every_package_folder_is_declared():
    declared = set(_package_dirs().values())
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO).as_posix()
        if rel.startswith(("tests", "benchmarks", ".ci", "build")) or "/." in f"/{rel}":
            continue
        assert rel in declared, f"{rel}/ is a package but not in pyproject package-dir"


def test_wheel_contains_every_module(tmp_path):
    # Build from a copy so no build/ or egg-info leftovers can hide a missing module.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".ci", "build", "*.egg-info", "__pycache__", ".venv", "rawsigma-demo", "*.so"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("rawsigma-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for pkg, folder in _package_dirs().items():
        for path in (REPO / folder).glob("*"):
            if path.suffix in {".py", ".cfg"} or (folder.endswith("data") and path.is_file()):
                target = "/".join(pkg.split(".")) + "/" + path.name
                if target not in names:
                    missing.append(target)
    assert not missing, f"missing from the wheel: {missing}"
    assert "rawsigma/cli/main.py" in names
    # the codec's C kernels, built with the wheel wherever there is a compiler (setup.py)
    if shutil.which("cc") or shutil.which("gcc"):
        assert any(n.startswith("rawsigma/analysis/noisecodec/_ckernels.") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
