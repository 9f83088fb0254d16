"""rawsigma: per-pixel camera noise calibration and noise-referenced image scoring.

Subpackages
-----------
acquire
    Micro-Manager cores (real ``.cfg``, simulated rig, pycromanager bridge), the
    simulated camera and light source, flat-field sweeps and repeat stacks.
calib
    Streaming per-pixel statistics, photon-transfer estimators, ``CameraProfile``.
analysis
    Synthesis of raw-equivalent replicas, codecs, features, pixel classifier,
    morphometry, matching, the standard score ε, reports.
gui
    The Qt bench application (``gui`` extra).
cli
    The ``rawsigma`` command.

Shared modules: ``rawsigma.errors`` (exception types), ``rawsigma.fileio`` (atomic
writes, provenance), ``rawsigma.imread`` (the one reader of raw images and stacks:
TIFF/OME-TIFF, HDF5, zarr, ``.npy``).
"""

import os as _os
import signal as _signal
import sys as _sys


def _early_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while the ``rawsigma`` command is still loading: nothing was done yet."""
    _os.write(2, b"interrupted: nothing done\n")
    _os._exit(130)


# The ``rawsigma`` command (console script or ``python -m rawsigma.cli.main``): a Ctrl-C
# during the imports would print a traceback; `rawsigma.cli.main.main` restores Python's
# handler once it runs. Library users are not affected, nor the command's worker
# processes (multiprocessing children get the command's sys.argv: a Ctrl-C at the
# terminal reaches them too, and they must not print their own "nothing done").
if (
    (
        _os.path.basename(_sys.argv[0]) == "rawsigma"
        or (_sys.argv[:1] == ["-m"] and "rawsigma.cli.main" in getattr(_sys, "orig_argv", []))
    )
    and not any("multiprocessing" in a for a in getattr(_sys, "orig_argv", []))
    and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
):
    _signal.signal(_signal.SIGINT, _early_interrupt)

try:  # written by setuptools-scm at install time from the git tag (see pyproject.toml)
    from ._version import __version__
except ImportError:  # pragma: no cover - running from an unbuilt tree
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("rawsigma")
    except PackageNotFoundError:
        __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
