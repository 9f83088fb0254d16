"""The frames of recorded stacks: TIFF/OME-TIFF pages or HDF5 ``frames``, one at a time.

:func:`stack_info` describes a stack (shape, dtype, frame count, declared bit depth,
stored frame roles); ``_iter_pages`` decodes the requested frames one by one, so a
stack is never held in memory. Used by :mod:`.stacks`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import InputFileError
from rawsigma.h5probe import check_hdf5

from .datasets import (
    is_recorded_dataset,
    read_dataset,
    recorded_stack_info,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

__all__ = ["stack_info"]


def _open_tiff(path: Path):
    import tifffile
    from rawsigma._tiffcheck import tiff_intact

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    tif = None
    try:
        with tiff_intact(path):
            tif = tifffile.TiffFile(path)
            len(tif.pages)  # walks the page chain: a truncated file is logged here
            tif.series  # noqa: B018 (a shaped series that no longer fits is logged here)
    except InputFileError:
        if tif is not None:
            tif.close()
        raise
    except Exception as e:  # tifffile raises several types for foreign files
        if tif is not None:
            tif.close()
        raise InputFileError(f"{path}: not a readable TIFF file ({e})") from None
    return tif


def _bits_from_description(tif: Any) -> int | None:
    page = tif.pages[0]
    desc = getattr(page, "description", "") or ""
    try:
        meta = json.loads(desc)
        for key in ("bit_depth", "bits_per_pixel", "significant_bits", "BitDepth"):
            if isinstance(meta, dict) and key in meta:
                return int(meta[key])
    except (ValueError, TypeError):
        pass
    m = re.search(r'SignificantBits="(\d+)"', desc)
    if m:
        return int(m.group(1))
    return None


def _is_hdf5(path: Path) -> bool:
    return path.suffix.lower() in (".h5", ".hdf5")


def _h5_frames(f: Any, path: Path) -> Any:
    ds = f.get("frames")
    if ds is None:
        cands = [v for v in f.values() if getattr(v, "ndim", 0) == 3]
        if len(cands) != 1:
            raise InputFileError(f"{path}: no 'frames' dataset (n, H, W) in this HDF5 file")
        ds = cands[0]
    if ds.ndim != 3:
        raise InputFileError(f"{path}: dataset {ds.name} has shape {ds.shape}; need (n, H, W)")
    return ds


def _h5_info(p: Path) -> dict[str, Any]:
    import h5py

    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    check_hdf5(p)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise InputFileError(f"{p}: not a readable HDF5 file ({e})") from None
    with f:
        ds = _h5_frames(f, p)
        dtype = np.dtype(ds.dtype)
        if dtype.kind not in "ui":
            raise InputFileError(
                f"{p}: pixel type {dtype}; raw integer camera frames (uint8/uint16) are "
                "required (calibration needs the camera's own integer values)"
            )
        bits = ds.attrs.get("bit_depth", f.attrs.get("bit_depth"))
        table = None
        if "kind" in f and "level_index" in f:
            kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in f["kind"][()]]
            table = list(zip(kinds, (int(v) for v in f["level_index"][()]), strict=True))
        return {
            "path": p,
            "n_frames": int(ds.shape[0]),
            "shape": tuple(int(v) for v in ds.shape[1:]),
            "dtype": dtype,
            "bit_depth": None if bits is None else int(bits),
            "table": table,
        }


def stack_info(path: str | os.PathLike) -> dict[str, Any]:
    """Frame count, frame shape, dtype and declared bit depth of a stack.

    TIFF/OME-TIFF (one page per frame), or HDF5 (``.h5``/``.hdf5``: a ``frames``
    dataset (n, H, W) as written by ``rawsigma.acquire.framesave``; its ``kind`` and
    ``level_index`` datasets, when present, are returned as ``table``).

    Raises
    ------
    InputFileError
        Missing or foreign file, non-integer pixels, pages of different shapes.
    """
    p = Path(path)
    if _is_hdf5(p):
        return _h5_info(p)
    if (rec := recorded_stack_info(p)) is not None:  # Micro-Manager / pymmcore-plus dataset
        return rec
    with _open_tiff(p) as tif:
        pages = tif.pages
        n = len(pages)
        if n == 0:
            raise InputFileError(f"{p}: contains no image")
        first = pages[0]
        shape, dtype = tuple(first.shape), np.dtype(first.dtype)
        if len(shape) != 2:
            raise InputFileError(
                f"{p}: pages have shape {shape}; single-channel 2-D frames are required"
            )
        if dtype.kind not in "ui":
            raise InputFileError(
                f"{p}: pixel type {dtype}; raw integer camera frames (uint8/uint16) are "
                "required (calibration needs the camera's own integer values)"
            )
        for i, pg in enumerate(pages):
            if tuple(pg.shape) != shape or np.dtype(pg.dtype) != dtype:
                raise InputFileError(
                    f"{p}: page {i} has shape {tuple(pg.shape)} / {pg.dtype}, page 0 has "
                    f"{shape} / {dtype}"
                )
        bits = _bits_from_description(tif)
    return {
        "path": p,
        "n_frames": n,
        "shape": shape,
        "dtype": dtype,
        "bit_depth": bits,
        "table": None,
    }


def _iter_pages(path: Path, indices: Sequence[int] | None = None):
    if not _is_hdf5(path) and is_recorded_dataset(path):  # recorded dataset (calib.datasets)
        yield from read_dataset(path).iter_frames(indices)
        return
    if _is_hdf5(path):
        import h5py

        check_hdf5(path)
        with h5py.File(path, "r") as f:
            ds = _h5_frames(f, path)
            for i in range(ds.shape[0]) if indices is None else indices:
                yield i, ds[i]
        return
    with _open_tiff(path) as tif:
        pages = tif.pages
        idx = range(len(pages)) if indices is None else indices
        for i in idx:
            try:
                yield i, pages[i].asarray()
            except Exception as e:
                raise InputFileError(f"{path}: cannot decode page {i} ({e})") from None
