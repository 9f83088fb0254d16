"""Filtered back-projection (parallel beam), slice by slice, threaded, chunked over rows.

Conventions are those of ``skimage.transform.iradon`` so that it can serve as the
reference: angles in degrees; the output grid of each slice is ``n_det × n_det`` with
its centre at pixel ``n_det // 2``; the default rotation axis is detector pixel
``n_det // 2``; the detector is extended with zeros to the grid's diagonal; the ramp
filter is the band-limited one of Kak & Slaney (the spatial filter sampled, then
transformed), zero-padded to ``max(64, 2**ceil(log2(2 diagonal)))``;
windows (``shepp-logan``, ``cosine``, ``hamming``, ``hann``) multiply it; the result is
scaled by ``π / (2 n_angles)`` and, with ``circle=True``, zero outside the inscribed
circle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.fft
from rawsigma.errors import ImageMismatchError, UsageError

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
#: bytes of float32 work (filtered projections + output slices) per chunk of rows
CHUNK_BYTES = 128 * 2**20
#: detector rows filtered at once (bounds the FFT temporaries)
FILTER_ROWS = 2
#: slices back-projected together (one interpolation weight, SIMD over slices)
GROUP = 32

Progress = Callable[[str, int, int], None]


def padded_size(n: int) -> int:
    """FFT length used for a detector of ``n`` pixels (as iradon: ≥ 2 n, ≥ 64)."""
    return max(64, 1 << math.ceil(math.log2(2 * n)))


def fourier_filter(size: int, filter: str = "ramp") -> np.ndarray:
    """Real frequency response (``size // 2 + 1`` values, rfft layout) of an FBP filter.

    The ramp is the transform of the sampled spatial ramp (Kak & Slaney, eq. 61):
    ``h[0] = 1/4``, ``h[k] = -1/(π k)²`` for odd k, 0 for even k. Windows as in iradon;
    the response is symmetrised, which is exactly what taking the real part of the
    inverse transform does for real projections.
    """
    if filter not in FILTERS:
        raise UsageError(f"unknown filter {filter!r}; choose one of {', '.join(FILTERS)}")
    k = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * k) ** 2
    resp = 2.0 * np.real(scipy.fft.fft(h))
    if filter == "shepp-logan":
        omega = np.pi * scipy.fft.fftfreq(size)[1:]
        resp[1:] *= np.sin(omega) / omega
    elif filter == "cosine":
        resp *= scipy.fft.fftshift(np.sin(np.linspace(0, np.pi, size, endpoint=False)))
    elif filter == "hamming":
        resp *= scipy.fft.fftshift(np.hamming(size))
    elif filter == "hann":
        resp *= scipy.fft.fftshift(np.hanning(size))
    sym = 0.5 * (resp + np.roll(resp[::-1], 1))  # H[k] and H[-k] averaged
    return sym[: size // 2 + 1]


def as_projection_stack(projections: Any) -> Any:
    """Projections as an array-like (n_angles, n_rows, n_det); check a list's frame shapes.

    A 2D array is one sinogram (one row); a sequence of 2D frames is stacked after a
    shape check (`ImageMismatchError` naming the first frame that differs). Arrays with
    a ``shape`` and slicing (numpy, h5py, zarr, memmap) are returned as they are, so that
    chunks are read only when needed.
    """
    if isinstance(projections, Sequence) and not hasattr(projections, "shape"):
        frames = [np.asarray(p) for p in projections]
        if not frames:
            raise ImageMismatchError("no projections given")
        for i, f in enumerate(frames):
            if f.shape != frames[0].shape:
                raise ImageMismatchError(
                    f"projections of mixed shapes: projection {i} is {f.shape}, "
                    f"projection 0 is {frames[0].shape}"
                )
        projections = np.stack(frames)
    shape = tuple(projections.shape)
    if len(shape) == 2:
        return np.asarray(projections)[:, None, :]
    if len(shape) != 3:
        raise ImageMismatchError(
            f"projections must be (angles, rows, detector) or a sinogram (angles, detector), "
            f"got shape {shape}"
        )
    return projections


def check_angles(angles_deg: Any, n_angles: int) -> np.ndarray:
    """Angles as float64 degrees; `ImageMismatchError` unless one finite angle per projection."""
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    if a.size != n_angles:
        raise ImageMismatchError(f"{a.size} angles given for {n_angles} projections")
    if not np.all(np.isfinite(a)):
        raise ImageMismatchError("angles must be finite numbers (degrees)")
    return a


def default_center(n_det: int) -> float:
    """Rotation axis assumed when none is given: detector pixel ``n_det // 2`` (iradon's)."""
    return float(n_det // 2)


def default_threads() -> int:
    """Worker threads by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def chunk_rows_for(n_angles: int, n_det: int, budget: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk's arrays (projections, filtered projections,
    slices) stay within about ``budget`` bytes."""
    # projections, filtered projections (extended detector), slices; the filtering
    # temporaries are bounded separately (FILTER_ROWS rows at a time)
    per_row = 4 * (n_angles * (n_det + extension(n_det)[1]) + n_det * n_det)
    return max(1, budget // per_row)


def extension(n_det: int) -> tuple[int, int]:
    """Zeros added before the detector and its extended length (iradon, ``circle=True``).

    The detector is extended to the diagonal ``ceil(√2 n_det)`` of the output grid: the
    filtered projections are not zero beyond the object, and the back-projection reads
    them there.
    """
    diagonal = int(np.ceil(np.sqrt(2) * n_det))
    return diagonal // 2 - n_det // 2, diagonal


def filter_rows(block: np.ndarray, filter: str, threads: int) -> np.ndarray:
    """Filter projections (rows, angles, n_det) along the detector, extended (`extension`).

    Returns float32 (rows, angles, diagonal): the filtered projections on the extended
    detector, the original pixel 0 at index ``extension(n_det)[0]``.
    """
    before, diagonal = extension(block.shape[-1])
    size = padded_size(diagonal)
    padded = np.zeros(block.shape[:-1] + (size,), np.float32)
    padded[..., before : before + block.shape[-1]] = block
    spec = scipy.fft.rfft(padded, axis=-1, workers=threads)
    spec *= fourier_filter(size, filter)
    out = scipy.fft.irfft(spec, n=size, axis=-1, workers=threads)[..., :diagonal]
    return out.astype(np.float32)


def grouped_filtered(raw: np.ndarray, filter: str, threads: int) -> np.ndarray:
    """Filtered projections of rows (angles, k, n_det) in the kernel's layout
    (angles, diagonal, k), filtered `FILTER_ROWS` rows at a time."""
    n_ang, k, n_det = raw.shape
    q = np.empty((n_ang, extension(n_det)[1], k), np.float32)
    for j in range(0, k, FILTER_ROWS):
        part = np.ascontiguousarray(raw[:, j : j + FILTER_ROWS, :].transpose(1, 0, 2))
        q[:, :, j : j + FILTER_ROWS] = filter_rows(part, filter, threads).transpose(1, 2, 0)
    return q


def fbp_chunks(
    projections: Any,
    angles_deg: Any,
    *,
    center: float | None = None,
    filter: str = "ramp",
    threads: int | None = None,
    progress: Progress | None = None,
    chunk_rows: int | None = None,
    circle: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Reconstruct chunk by chunk of detector rows; yield ``(first_row, slices)``.

    ``slices`` is float32 (k, n_det, n_det). Only one chunk of projections and of slices
    is in memory at a time, so volumes beyond memory can be written as they come
    (see `fbp` with ``out=``). Parameters as `fbp`, plus ``chunk_rows`` (default: about
    `CHUNK_BYTES` of work per chunk).
    """
    from .kernels import backproject_block

    proj = as_projection_stack(projections)
    n_ang, n_rows, n_det = proj.shape
    ang = np.deg2rad(check_angles(angles_deg, n_ang))
    cos, sin = np.cos(ang), np.sin(ang)
    c = default_center(n_det) if center is None else float(center)
    if not np.isfinite(c):
        raise UsageError(f"centre of rotation must be a finite number, got {center!r}")
    workers = threads or default_threads()
    step = chunk_rows or chunk_rows_for(n_ang, n_det)
    scale = np.pi / (2 * n_ang)
    before = extension(n_det)[0]
    band = max(1, -(-n_det // (4 * workers)))  # output rows per task
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for r0 in range(0, n_rows, step):
            raw = np.asarray(proj[:, r0 : r0 + step, :], dtype=np.float32)
            k = raw.shape[1]
            out = np.empty((k, n_det, n_det), np.float32)
            tasks = []
            for g in range(0, k, GROUP):
                qg = grouped_filtered(raw[:, g : g + GROUP, :], filter, workers)
                tasks += [
                    pool.submit(backproject_block, qg, cos, sin, c + before, b,
                                min(b + band, n_det), circle, scale, out[g : g + GROUP])
                    for b in range(0, n_det, band)
                ]  # fmt: skip
            for t in tasks:
                t.result()
            done += k
            if progress is not None:
                progress("reconstruct", done, n_rows)
            yield r0, out


def fbp(
    projections: Any,
    angles_deg: Any,
    *,
    center: float | None = None,
    filter: str = "ramp",
    threads: int | None = None,
    progress: Progress | None = None,
    out: Any = None,
    chunk_rows: int | None = None,
    circle: bool = True,
) -> Any:
    """Filtered back-projection of parallel-beam projections, one slice per detector row.

    Parameters
    ----------
    projections : array-like
        (n_angles, n_rows, n_det) line integrals (camera frames: angle, y, x; use
        `normalize_transmission` first for raw transmission frames), or a sinogram
        (n_angles, n_det) = one row, or a sequence of 2D frames of one shape. h5py/zarr
        datasets are read one chunk of rows at a time.
    angles_deg : array-like
        One angle per projection, degrees (``skimage.transform.iradon``'s convention).
    center : float, optional
        Rotation axis in detector pixels; default ``n_det // 2`` (iradon's).
    filter : {"ramp", "shepp-logan", "cosine", "hamming", "hann"}
    threads : int, optional
        Worker threads (FFT and back-projection); default: the usable CPUs.
    progress : callable, optional
        ``progress("reconstruct", rows_done, n_rows)`` after each chunk.
    out : array-like, optional
        Where to write the (n_rows, n_det, n_det) result (a zarr array or h5py dataset
        for volumes beyond memory); default a new float32 array.
    chunk_rows : int, optional
        Detector rows per chunk (default: about 128 MB of arrays).
    circle : bool
        Zero outside the inscribed circle (as iradon's ``circle=True``).

    Returns
    -------
    array-like
        ``out``, or a new float32 (n_rows, n_det, n_det) array.

    Raises
    ------
    ImageMismatchError
        Angles that do not match the number of projections; frames of mixed shapes.
    UsageError
        Unknown filter, non-finite centre.
    """
    proj = as_projection_stack(projections)
    n_ang, n_rows, n_det = proj.shape
    if out is None:
        out = np.empty((n_rows, n_det, n_det), np.float32)
    elif tuple(out.shape) != (n_rows, n_det, n_det):
        raise ImageMismatchError(f"out has shape {tuple(out.shape)}, need {(n_rows, n_det, n_det)}")
    for r0, block in fbp_chunks(
        proj, angles_deg, center=center, filter=filter, threads=threads,
        progress=progress, chunk_rows=chunk_rows, circle=circle,
    ):  # fmt: skip
        out[r0 : r0 + block.shape[0]] = block
    return out
