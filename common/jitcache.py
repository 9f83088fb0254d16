"""Where rawsigma's numba kernels are cached: once per machine, not once per clone.

numba's default cache (``cache=True``) lives in ``__pycache__`` beside the source file
and is keyed by the file's modification time, so every fresh clone, install or CI
checkout compiles the kernels again (≈ 20 s CPU for the noise codec). `install` adds a
cache locator for rawsigma's kernel modules (`KERNEL_MODULES`) that puts the compiled
kernels in the user's cache directory (``platformdirs.user_cache_dir("rawsigma")/numba``,
or ``$RAWSIGMA_CACHE_DIR/numba``), in a folder named by a hash of the kernel modules'
*contents* and the numba version: any copy of the same kernels on the machine reuses
them, a changed kernel module gets a fresh folder (numba's own index adds the CPU, the
signature and the function's bytecode to the key). A user-set ``NUMBA_CACHE_DIR`` is
respected (numba's own locator then applies), and so is an unwritable cache directory
(numba falls back to its other locators).

`pending` tells whether calling a set of kernels would compile them (neither compiled in
this process nor cached for this CPU), so that callers can announce the wait.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

# the modules whose @njit(cache=True) kernels go to the per-user cache; their contents
# together make the cache key (a kernel may call helpers of another of them)
KERNEL_MODULES = (
    "rawsigma.analysis.noisecodec.kernels",
    "rawsigma.analysis.noisecodec.pyramid",
    "rawsigma.analysis.noisecodec.pyramid5",
    "rawsigma.analysis.noisecodec.fastpath",
    "rawsigma.analysis.segmentation.forest_infer",
    "rawsigma.analysis.measurement.outline_kernel",
    "rawsigma.analysis.measurement.moments_kernel",
    "rawsigma.analysis.noisemodel.replica_kernel",
    "rawsigma.analysis.scoring.welford_kernel",
    "rawsigma.calib.moments_kernel",
    "rawsigma.analysis.tomo.kernels",
)
ENV = "RAWSIGMA_CACHE_DIR"
# numba options of a helper kernel, called only from other kernels: no Python or C
# wrapper to generate and no cache entry of its own (its code is linked into, and cached
# with, the kernels that call it); about a fifth less compiling on a first run
HELPER: dict[str, Any] = dict(nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)


def cache_root() -> Path:
    """Folder holding rawsigma's compiled kernels (``<user cache>/rawsigma/numba``)."""
    base = os.environ.get(ENV)
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("rawsigma", appauthor=False)
    return Path(base) / "numba"


@cache
def kernels_digest() -> str:
    """Hash of the kernel modules' contents and the numba version (the cache's key)."""
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for name in KERNEL_MODULES:
        p = _module_file(name)
        h.update(name.encode() + b"\0" + (p.read_bytes() if p else b"") + b"\0")
    return h.hexdigest()[:20]


def _module_file(name: str) -> Path | None:
    """Source file of a module, found without importing it (its package is imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        return None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    return Path(spec.origin)


def _is_kernel_module(module: str | None) -> bool:
    return module in KERNEL_MODULES


def _locator_class():
    from numba.core import caching, config

    class RawsigmaCacheLocator(caching._CacheLocator):
        """numba cache locator: per-user folder keyed by the kernel modules' contents."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = str(cache_root() / f"kernels-{kernels_digest()}")

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return kernels_digest()

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if config.CACHE_DIR or not _is_kernel_module(getattr(py_func, "__module__", None)):
                return None  # NUMBA_CACHE_DIR set by the user, or not one of ours
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None  # unwritable: numba's own locators decide
            return self

    return RawsigmaCacheLocator


@cache
def install() -> bool:
    """Put the rawsigma locator first in numba's list (idempotent). Call it before the
    kernels are decorated. Returns False if this numba has no locator list (numba's
    default cache then applies).
    """
    try:
        from numba.core import caching

        impl = caching.CacheImpl
        locators = impl._locator_classes
    except (ImportError, AttributeError):
        return False
    locators.insert(0, _locator_class())
    return True


def pending(dispatchers: Iterable) -> list[str]:
    """Names of the numba dispatchers that would compile on their first call: none of
    their signatures compiled in this process, none cached for this CPU.
    """
    out = []
    for d in dispatchers:
        if d.overloads:
            continue
        try:
            magic = d.targetctx.codegen().magic_tuple()
            index = d._cache._cache_file._load_index()
            if any(key[1] == magic for key in index):
                continue
        except Exception:  # noqa: BLE001 - private numba API changed: assume compiling
            pass
        out.append(d.py_func.__qualname__)
    return out
