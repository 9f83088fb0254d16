"""The curated public namespaces: every listed name resolves, lazily."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

DOMAINS = [
    "codecs", "segmentation", "measurement", "noisemodel", "scoring", "reporting", "phantoms",
    "tomo",
]  # fmt: skip
PACKAGES = ["rawsigma.acquire", "rawsigma.calib", "rawsigma.analysis"] + [
    f"rawsigma.analysis.{domain}" for domain in DOMAINS
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__, name
    assert sorted(dir(package)) == sorted(package.__all__)
    for attr in package.__all__:
        assert getattr(package, attr) is not None, f"{name}.{attr}"


@pytest.mark.parametrize("name", PACKAGES)
def test_unknown_name_raises_attribute_error(name: str) -> None:
    package = importlib.import_module(name)
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018


def test_importing_acquire_does_not_import_micro_manager() -> None:
    code = (
        "import sys, rawsigma.acquire, rawsigma.calib, rawsigma.analysis;"
        "from rawsigma.acquire import SensorModel;"
        "print('pymmcore_plus' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["rawsigma.acquire", "rawsigma.calib"])
def test_package_docstring_examples_run(name: str) -> None:
    package = importlib.import_module(name)
    failures, tried = doctest.testmod(package, verbose=False)
    assert tried > 0 and failures == 0


@pytest.mark.parametrize("name", PACKAGES)
def test_no_public_name_shadows_a_submodule(name: str) -> None:
    # `from pkg import x` returns the submodule x once it is imported: a public name
    # equal to a module name would change meaning with import order.
    package = importlib.import_module(name)
    folder = Path(package.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")}
    modules |= {p.name for p in folder.iterdir() if p.is_dir()}
    assert not modules & set(package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_resolve_in_a_fresh_process(name: str) -> None:
    code = f"import {name} as p; [getattr(p, n) for n in p.__all__]"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
