"""Lazy public namespaces (PEP 562), in the manner of scikit-image's ``lazy_loader``.

Each subpackage lists its public names and the private module that defines them;
a name is imported on first access, so ``import rawsigma.acquire`` stays cheap and
never imports pymmcore-plus until an acquisition object is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for a lazy package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Public name -> module (relative to `package`) that defines it.

    Returns
    -------
    getattr, dir, all
        Assign them to the package's ``__getattr__``, ``__dir__`` and ``__all__``.
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
