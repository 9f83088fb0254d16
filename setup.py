"""Build of the optional C extension (the noise codec's kernels); the rest is pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and rawsigma uses the
numba kernels (`rawsigma.analysis.noisecodec.ckernels`). No contraction of a·b + c into
FMA: the C kernels must give the numba kernels' bits.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

_ARGS = (
    []
    if sys.platform == "win32"
    else ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
)

setup(
    ext_modules=[
        Extension(
            "rawsigma.analysis.noisecodec._ckernels",
            sources=["analysis/noisecodec/_ckernels.c"],
            # the parts _ckernels.c includes: a change rebuilds, and the sdist ships them
            depends=sorted(str(p) for p in Path("analysis/noisecodec/csrc").glob("*.h")),
            extra_compile_args=_ARGS,
            optional=True,
        )
    ]
)
