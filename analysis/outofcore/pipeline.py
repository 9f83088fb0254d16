"""Out-of-core 3D segmentation and measurement of one volume, chunk by chunk.

`segment_measure_chunked` = chunked voxel classification (`classify`), the
foreground written to ``workdir/mask.zarr``, 26-connected labels merged across
chunks (`chunklabel`, the small objects dropped as the scoring pipeline does),
the final labels written to ``workdir/labels.zarr`` and the per-object 3D table
reduced across chunks. Every step reads and writes zarr, one chunk per task, so the
memory of a worker is a few chunks whatever the volume; with a
``dask.distributed`` client active, the steps run on its workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["segment_measure_chunked"]


def segment_measure_chunked(
    volume: Any,
    clf: Any,
    workdir: str | Path,
    *,
    spacing: tuple[float, float, float] | None = None,
    min_size: int = 0,
    threshold: float = 0.5,
    chunks: Any = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Segment a (larger than memory) volume with a trained classifier and measure it.

    Parameters
    ----------
    volume : dask.array.Array, ndarray or path of a zarr array, (Z, Y, X)
        Raw volume.
    clf : PixelClassifier
        Trained on 3D data.
    workdir : path
        Scratch and output directory (``mask.zarr``, ``labels_local.zarr``,
        ``labels.zarr``); on a cluster, a file system every worker sees.
    spacing : (dz, dy, dx), optional
        Voxel size of the measurements.
    min_size : int
        Objects smaller than this many voxels are dropped (then renumbered).
    threshold : float
        Foreground probability threshold.
    chunks : optional
        Spatial chunks (default: the array's own).

    Returns
    -------
    labels : dask.array.Array of uint32
        Final labels, lazily read from ``workdir/labels.zarr``.
    table : dict of str to ndarray
        As `rawsigma.analysis.outofcore.chunklabel.measure3d_chunked`.
    """
    import dask.array as da
    from rawsigma.analysis.outofcore.chunklabel import (
        ChunkedLabels,
        label_chunked,
        measure3d_chunked,
    )
    from rawsigma.analysis.outofcore.classify import foreground_dask

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    if isinstance(volume, (str, Path)):
        volume = da.from_zarr(str(volume))
    vol = volume if isinstance(volume, da.Array) else da.from_array(np.asarray(volume))
    if chunks is not None:
        vol = vol.rechunk(chunks)
    fg = foreground_dask(clf, vol, threshold=threshold)
    fg = fg.rechunk(vol.chunks)  # the classifier may merge thin chunks
    da.to_zarr(fg, str(work / "mask.zarr"), overwrite=True)
    res = label_chunked(da.from_zarr(str(work / "mask.zarr")), work, min_size=min_size)
    da.to_zarr(res.labels, str(work / "labels.zarr"), overwrite=True)
    store = str(work / "labels.zarr")
    final = ChunkedLabels(da.from_zarr(store), res.count, res.first, store)
    return final.labels, measure3d_chunked(final, spacing)
