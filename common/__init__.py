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

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rawsigma")
except PackageNotFoundError:  # pragma: no cover - running from an unbuilt tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
