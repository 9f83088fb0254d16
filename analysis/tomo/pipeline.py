"""``rawsigma tomo reconstruct`` as a function: files in, a volume file out, with provenance."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import ImageMismatchError, UsageError
from rawsigma.fileio import check_output, output_lock, provenance

from .backprojection import FILTERS, as_projection_stack, default_threads, fbp_chunks
from .center import auto_center
from .sources import load_input, parse_angles
from .volume_io import output_format, write_volume

#: The narrowest detector `reconstruct_files` reconstructs (pixels).
MIN_DETECTOR = 8


def _center(value: str, proj: Any, angles: np.ndarray, threads: int) -> dict[str, Any]:
    if value == "auto":
        rec = auto_center(proj, angles, threads=threads)
        rec["method"] = (
            "auto: 180° pair correlation, then sharpest slice within ±2 px"
            if rec["correlation"] is not None
            else "auto: sharpest slice (no projections 180° apart)"
        )
        return rec
    try:
        c = float(value)
    except ValueError:
        raise UsageError(f"--center {value!r}: expected auto or a number of pixels") from None
    n_det = proj.shape[-1]
    if not (np.isfinite(c) and 0 <= c <= n_det - 1):
        raise UsageError(
            f"--center {value!r}: outside the detector (pixels 0 to {n_det - 1} from 0)"
        )
    return {"center": c, "method": "given (--center)"}


def reconstruct_files(
    specs: list[str],
    out: str | os.PathLike,
    *,
    dark: str | None = None,
    flat: str | None = None,
    kind: str = "auto",
    angles: str | None = None,
    angle_range: str | None = None,
    include_end: bool = False,
    center: str = "auto",
    filter: str = "ramp",
    threads: int | None = None,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Read projections, normalise, find the centre, reconstruct, write ``out``.

    Parameters as the CLI options of ``rawsigma tomo reconstruct``. Returns the
    provenance record that was written with the volume (plus ``seconds``).
    """
    if filter not in FILTERS:
        raise UsageError(f"--filter {filter!r}: choose one of {', '.join(FILTERS)}")
    if kind not in ("auto", "counts", "transmission", "attenuation"):
        raise UsageError(f"--input {kind!r}: choose auto, counts, transmission or attenuation")
    out = Path(out)
    output_format(out)
    with output_lock(out):  # from the first check: a second writer is refused at once,
        # not after its reconstruction
        check_output(out, force, allow_dir=out.suffix.lower() == ".zarr")
        t0 = time.perf_counter()
        src = load_input(specs, dark=dark, flat=flat, kind=kind)
        proj = as_projection_stack(src.projections)
        n_ang, n_rows, n_det = proj.shape
        if n_det < MIN_DETECTOR:  # a 1-pixel "detector" gave a 1x1 slice, centre -2 px
            raise ImageMismatchError(
                f"{specs[0]}: a {n_det}-pixel detector ({n_ang} x {n_rows} x {n_det}, angles x "
                f"rows x detector): filtered back-projection needs at least {MIN_DETECTOR} "
                "detector pixels; is the file a projection stack (or a sinogram: angles x "
                "detector)?"
            )
        ang, ang_how = parse_angles(angles, angle_range, n_ang, src.angles, include_end)
        is_zarr = out.suffix.lower() == ".zarr"
        check_output(out, force, need_bytes=4 * n_rows * n_det * n_det, allow_dir=is_zarr)
        workers = threads or default_threads()
        # a given centre is checked before any progress line shows (its error is one line)
        cen = None if center == "auto" else _center(center, proj, ang, workers)
        if progress is not None:
            progress("centre of rotation", 0, 1)
        cen = cen or _center(center, proj, ang, workers)
        if progress is not None:
            progress("centre of rotation", 1, 1)
        meta = provenance(
            command="rawsigma tomo reconstruct",
            inputs=[str(s) for s in specs],
            dark=dark,
            flat=flat,
            normalisation=src.normalisation,
            angles={
                "how": ang_how,
                "n": int(n_ang),
                "first": float(ang[0]),
                "last": float(ang[-1]),
            },
            center_of_rotation=cen,
            center_convention="detector pixels from 0; iradon's default would be n_det // 2",
            geometry="parallel beam; slices (z = detector row, y, x), x along the detector",
            filter=filter,
            algorithm="filtered back-projection (rawsigma.analysis.tomo.fbp, iradon conventions)",
            threads=workers,
            shape=[n_rows, n_det, n_det],
        )
        chunks = fbp_chunks(
            proj, ang, center=cen["center"], filter=filter, threads=workers, progress=progress
        )
        write_volume(out, (n_rows, n_det, n_det), chunks, meta, force=force)
    meta["seconds"] = time.perf_counter() - t0
    return meta
