"""Filtered back-projection for the tomography scoring pipeline.

:func:`fbp` has the signature of ``rawsigma.analysis.tomo.fbp`` (the reconstruction
subpackage). Until that subpackage is installed this module reconstructs with
``skimage.transform.iradon`` slice by slice (threads over slices); once it is, the
tomography's own FBP is used. :data:`FBP_SOURCE` says which one ran (it is recorded
in every tomography score's provenance).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rawsigma.errors import ImageMismatchError

__all__ = ["FBP_SOURCE", "fbp"]


def _iradon_fbp(
    projections: np.ndarray,
    angles_deg: np.ndarray,
    *,
    center: float | None = None,
    filter: str = "ramp",  # noqa: A002 - the tomo interface's name
    threads: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """FBP of ``(n_angles, n_rows, n_det)`` projections → ``(n_rows, n_det, n_det)`` float32.

    ``center`` is the rotation axis on the detector, pixels (default ``n_det // 2``,
    skimage's centre); other centres shift the projections first.
    """
    from scipy import ndimage as ndi
    from skimage.transform import iradon

    p = np.asarray(projections, np.float32)
    a = np.asarray(angles_deg, np.float64).ravel()
    if p.ndim != 3:
        raise ImageMismatchError(
            f"fbp: projections must be (n_angles, n_rows, n_det), got {p.shape}"
        )
    if a.size != p.shape[0]:
        raise ImageMismatchError(
            f"fbp: {a.size} angles for {p.shape[0]} projections; give one angle per projection"
        )
    n_rows, n_det = p.shape[1], p.shape[2]
    if center is not None and abs(center - n_det // 2) > 1e-6:
        p = ndi.shift(p, (0, 0, n_det // 2 - center), order=1, mode="nearest")
    out = np.empty((n_rows, n_det, n_det), np.float32)
    done = [0]
    report = progress or (lambda s, d, t: None)

    def one(r: int) -> None:
        out[r] = iradon(p[:, r, :].T, theta=a, filter_name=filter, circle=True)
        done[0] += 1

    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        for _ in pool.map(one, range(n_rows)):
            report("reconstruct", done[0], n_rows)
    return out


try:  # the tomography subpackage, when installed (branch i15a)
    from rawsigma.analysis.tomo import fbp as _tomo_fbp  # type: ignore[attr-defined]

    fbp = _tomo_fbp
    FBP_SOURCE = "rawsigma.analysis.tomo.fbp"
except ImportError:
    fbp = _iradon_fbp
    FBP_SOURCE = "skimage.transform.iradon (slice by slice)"
