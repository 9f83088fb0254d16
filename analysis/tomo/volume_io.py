"""Writing reconstructed volumes chunk by chunk, atomically: TIFF, zarr, HDF5.

The volume (n_slices, n, n) float32 arrives as ``(first_slice, block)`` pairs (from
`rawsigma.analysis.tomo.fbp_chunks`) and goes to a hidden temporary beside the output
(``.NAME.XXXXXXXX.tmp`` for files, ``.NAME.tmp`` for a zarr directory), renamed into
place when every slice is written; on any failure or interruption the temporary is
removed and a previous output is left as it was. The provenance record (JSON) goes in
the TIFF's ImageDescription, the zarr array's attributes or the HDF5 dataset's
``provenance`` attribute.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import OutputError, UsageError
from rawsigma.fileio import atomic_write, check_output
from rawsigma.h5probe import check_hdf5

FORMATS = (".tif", ".tiff", ".zarr", ".h5", ".hdf5")
H5_DATASET = "reconstruction"


def output_format(path: Path) -> str:
    """``tif``, ``zarr`` or ``h5`` from the suffix; `UsageError` for anything else."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: output must end in {', '.join(FORMATS)}")
    return {".tiff": "tif", ".hdf5": "h5"}.get(suffix, suffix[1:])


def _write_tif(tmp: Path, shape: tuple, chunks: Iterable, meta: dict) -> None:
    import tifffile

    def slices():
        for _, block in chunks:
            yield from block

    with tifffile.TiffWriter(tmp, bigtiff=np.prod(shape) * 4 > 2**31) as tw:
        tw.write(
            slices(),
            shape=shape,
            dtype=np.float32,
            description=json.dumps(meta),
            metadata=None,
            compression="zlib",
            predictor=True,
        )


def _write_h5(tmp: Path, shape: tuple, chunks: Iterable, meta: dict) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            H5_DATASET, shape=shape, dtype="float32", chunks=(1,) + shape[1:],
            compression="gzip", compression_opts=4,
        )  # fmt: skip
        for r0, block in chunks:
            ds[r0 : r0 + block.shape[0]] = block
        ds.attrs["axes"] = "z:y:x (z = detector row)"
        ds.attrs["provenance"] = json.dumps(meta)


def _write_zarr(path: Path, shape: tuple, chunks: Iterable, meta: dict, force: bool) -> None:
    import zarr

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        arr = zarr.create_array(
            store=str(tmp), shape=shape, dtype="float32", chunks=(1,) + shape[1:],
            zarr_format=3,
        )  # fmt: skip
        for r0, block in chunks:
            arr[r0 : r0 + block.shape[0]] = block
        arr.attrs.update({"provenance": meta, "axes": "zyx"})
        if path.exists() and force:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_volume(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    chunks: Iterable[tuple[int, np.ndarray]],
    meta: dict[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write ``(first_slice, block)`` chunks of a float32 volume of ``shape`` to ``path``.

    The format follows the suffix (`output_format`). Returns the path. `OutputError`
    (disk full, permission) or `OutputExistsError` (without ``force``); nothing is left
    behind on failure.
    """
    p = Path(path)
    fmt = output_format(p)
    need = int(np.prod(shape)) * 4
    if fmt == "zarr":
        check_output(p, force, need_bytes=need, allow_dir=True)
        try:
            _write_zarr(p, tuple(shape), chunks, meta, force)
        except OSError as exc:
            raise OutputError(f"{p}: {exc.strerror or exc}; nothing written") from None
        return p
    with atomic_write(p, force=force, need_bytes=need) as tmp:
        (_write_tif if fmt == "tif" else _write_h5)(tmp, tuple(shape), chunks, meta)
    return p


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """A volume written by `write_volume` and its provenance record."""
    p = Path(path)
    fmt = output_format(p)
    if fmt == "tif":
        import tifffile

        with tifffile.TiffFile(p) as tf:
            return tf.asarray(), json.loads(tf.pages[0].description)
    if fmt == "h5":
        import h5py

        check_hdf5(p)
        with h5py.File(p, "r") as f:
            ds = f[H5_DATASET]
            return ds[()], json.loads(ds.attrs["provenance"])
    import zarr

    arr = zarr.open_array(str(p), mode="r")
    return arr[...], dict(arr.attrs["provenance"])
