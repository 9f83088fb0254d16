"""Dark/flat normalisation and −log of transmission frames.

``p = −log((I − dark) / (flat − dark))``: the line integral of attenuation that FBP
inverts. Dark and flat may be single frames or stacks (averaged over the first axis).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rawsigma.errors import ImageMismatchError, InputFileError


def _mean_frame(frames: Any, what: str) -> np.ndarray:
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=0)
    if a.ndim != 2:
        raise ImageMismatchError(f"{what} must be a frame (y, x) or a stack (n, y, x)")
    return a


def reference_frames(
    dark: Any, flat: Any, frame_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Averaged dark and flat-minus-dark frames, checked against the projections.

    Returns ``(dark, flat - dark)`` as float32 frames. Pixels where the flat is not
    above the dark (dead pixels, the edge of the beam) get ``flat - dark = inf``:
    their transmission is 0 and their −log is clipped, see `normalize_transmission`.

    Raises
    ------
    ImageMismatchError
        Dark or flat of another frame shape than the projections.
    InputFileError
        A flat darker than its dark (on average, or on most pixels): swapped files.
    """
    d = _mean_frame(dark, "dark")
    f = _mean_frame(flat, "flat")
    for what, a in (("dark", d), ("flat", f)):
        if a.shape != tuple(frame_shape):
            raise ImageMismatchError(
                f"{what} frame is {a.shape}, projections are {tuple(frame_shape)}"
            )
    gap = f - d
    if not np.median(gap) > 0:
        raise InputFileError(
            f"flat darker than its dark (median flat {np.median(f):.6g} ≤ median dark "
            f"{np.median(d):.6g}): swapped --dark/--flat?"
        )
    gap[~(gap > 0)] = np.inf
    return d.astype(np.float32), gap.astype(np.float32)


def normalize_transmission(frames: Any, dark: Any, flat: Any, *, floor: float = 1e-6) -> np.ndarray:
    """−log((I − dark) / (flat − dark)) of transmission frames, float32.

    Parameters
    ----------
    frames : array-like
        (n, y, x) or (y, x) raw transmission frames.
    dark, flat : array-like
        Frame or stack of frames (averaged) of the same (y, x).
    floor : float
        Transmissions below it (counts at or below the dark, dead flat pixels) are
        clipped to it, so the −log stays finite (−log 1e-6 ≈ 13.8).
    """
    a = np.asarray(frames, dtype=np.float32)
    d, gap = reference_frames(dark, flat, a.shape[-2:])
    return _neglog(a, d, gap, floor)


def _neglog(a: np.ndarray, d: np.ndarray, gap: np.ndarray, floor: float) -> np.ndarray:
    t = (a - d) / gap
    np.maximum(t, np.float32(floor), out=t)
    return -np.log(t)


class NormalizedProjections:
    """Lazy view ``−log((I − dark)/(flat − dark))`` of a projection stack (n, y, x).

    Indexing (ints, slices; one index per axis) reads only the requested part of
    ``data`` (an h5py/zarr dataset stays on disk), so `rawsigma.analysis.tomo.fbp`
    normalises chunk by chunk.
    """

    def __init__(self, data: Any, dark: Any, flat: Any, *, floor: float = 1e-6) -> None:
        if len(data.shape) != 3:
            raise ImageMismatchError(f"projections must be (angles, y, x), got {data.shape}")
        self.data = data
        self.dark, self.gap = reference_frames(dark, flat, tuple(data.shape[1:]))
        self.floor = floor
        self.shape = tuple(data.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        if any(k is Ellipsis or k is None for k in key):
            raise TypeError("NormalizedProjections takes ints, slices or index arrays")
        a = np.asarray(self.data[key], dtype=np.float32)
        return _neglog(a, self.dark[key[1:]], self.gap[key[1:]], self.floor)
