"""Chunked, lazy versions of the feature bank and of synthesis on dask arrays.

For images and volumes beyond memory (the ``scale`` extra).

The public names below are imported lazily on first use.
"""

from rawsigma._lazy import attach

_EXPORTS = {
    "feature_bank_dask": "lazy",
    "synthesize_dask": "lazy",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
