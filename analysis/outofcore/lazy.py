"""Chunked, lazy versions of the feature bank and of synthesis, on dask arrays.

Images and volumes beyond memory, and work spread over a cluster
(``dask.distributed``), go through dask (the ``scale`` extra:
``pip install 'rawsigma[scale]'``). dask is imported inside the functions, so the
rest of the package never needs it.

- `feature_bank_dask`: the feature bank of `rawsigma.analysis.segmentation.features.feature_bank`
  computed chunk by chunk with ``map_overlap``-style halos. Every chunk is read
  with the largest filter support over all scales (`features.max_halo`, the halo
  rule of the block-wise numpy path) and no padding at the image border, so the
  result equals the numpy feature bank (to float rounding) whatever the chunks.
- `synthesize_dask`: replicas as `rawsigma.analysis.noisemodel.synthesis.synthesize` does them
  (observed centre), chunk by chunk. Each chunk draws from its own generator,
  seeded by ``SeedSequence(seed, spawn_key=block index)``, so a result depends on
  the seed and the chunking only, never on the scheduler or the order in which
  chunks run. (It is not the same stream of numbers as `synthesize` on the whole
  image; its distribution is.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.noisemodel.synthesis import _safe_gain, redraw
from rawsigma.analysis.segmentation.features import (
    FeatureConfig,
    _bank_config,
    _order,
    check_image,
    feature_bank,
    max_halo,
)
from rawsigma.errors import ImageMismatchError

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

__all__ = ["feature_bank_dask", "synthesize_dask"]


def _dask_array() -> Any:
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError(
            "this needs dask, which comes with the 'scale' extra: pip install 'rawsigma[scale]'"
        ) from exc
    return da


def _as_dask(image: Any, chunks: Any, da: Any) -> Any:
    if isinstance(image, da.Array):
        return image if chunks is None else image.rechunk(chunks)
    return da.from_array(np.asarray(image), chunks="auto" if chunks is None else chunks)


def feature_bank_dask(
    image: Any,
    preset: str | FeatureConfig = "ilastik",
    sigmas: Sequence[float] | None = None,
    *,
    chunks: int | Sequence[int] | str | None = None,
    features: Sequence[str] | None = None,
    derivatives: str = "fd",
    spacing: Sequence[float] | None = None,
    truncate: float = 3.5,
) -> tuple[Any, list[str]]:
    """Lazy pixel feature bank of a (possibly larger than memory) image or volume.

    Parameters
    ----------
    image : ndarray or dask.array.Array, (Y, X) or (Z, Y, X)
        Any numeric dtype; computed in float32 in the image's own units.
    preset, sigmas, features, derivatives, spacing, truncate
        As `rawsigma.analysis.segmentation.features.feature_bank`.
    chunks : int, sequence of int or "auto", optional
        Spatial chunks (dask notation). Default: a dask array keeps its chunks, a
        numpy array gets ``"auto"``. Chunks smaller than the halo are merged with
        their neighbours (``map_overlap`` does the same).

    Returns
    -------
    features : dask.array.Array of float32, ``image.shape + (F,)``
        One chunk along the feature axis; nothing is computed until asked.
    names : list of str
        One name per channel, as `feature_names`.

    Raises
    ------
    ImportError
        dask is not installed (the ``scale`` extra).
    ValueError
        As `feature_bank` (image not 2D/3D or not numeric, bad options).
    """
    da = _dask_array()
    from dask.array.overlap import ensure_minimum_chunksize, overlap, trim_internal

    arr = _as_dask(image, chunks, da)
    check_image(tuple(arr.shape), arr.dtype)
    nd = arr.ndim
    cfg, _ = _bank_config(
        preset,
        sigmas,
        nd,
        features=features,
        derivatives=derivatives,
        spacing=spacing,
        truncate=truncate,
    )
    names = _order(cfg, nd)
    halo = max_halo(cfg, nd)
    new_chunks = []
    for n, c, h in zip(arr.shape, arr.chunks, halo, strict=True):
        new_chunks.append((n,) if n <= h or len(c) == 1 else ensure_minimum_chunksize(h, c))
    arr = arr.rechunk(tuple(new_chunks))
    depth = {ax: (halo[ax] if len(arr.chunks[ax]) > 1 else 0) for ax in range(nd)}
    nf = len(names)

    def block_features(block: np.ndarray) -> np.ndarray:
        return feature_bank(block, cfg, block=block.shape, n_workers=1)[0]

    padded = overlap(arr, depth=depth, boundary="none")
    feats = padded.map_blocks(
        block_features,
        new_axis=nd,
        chunks=padded.chunks + ((nf,),),
        dtype=np.float32,
        meta=np.empty((0,) * (nd + 1), np.float32),
    )
    return trim_internal(feats, {**depth, nd: 0}, boundary="none"), names


def synthesize_dask(
    image: Any,
    profile: CameraProfile,
    n: int = 10,
    seed: int | None = None,
    *,
    chunks: int | Sequence[int] | str | None = None,
) -> Any:
    """Lazy raw-equivalent replicas of a large raw image, drawn chunk by chunk.

    The same Poisson–Gaussian redraw around the observed values as
    `rawsigma.analysis.noisemodel.synthesis.synthesize` (``centre="observed"``): saturated
    pixels stay at ``max_adu``, unusable gains use the global gain.

    Parameters
    ----------
    image : (H, W) ndarray or dask.array.Array, unsigned integer
        One raw frame in ADU with the profile's shape. Values are not scanned (that
        would read the whole image); values at or above the bit depth's maximum are
        treated as saturated.
    profile : CameraProfile
    n : int
        Number of replicas (>= 1).
    seed : int, optional
        Root seed; the chunk at block index ``(i, j)`` draws from
        ``default_rng(SeedSequence(seed, spawn_key=(i, j)))``. ``None``: fresh
        entropy (not reproducible; pass a seed and record it).
    chunks : int, sequence of int or "auto", optional
        Spatial chunks; default as `feature_bank_dask`. The numbers drawn depend
        on the chunking (not on scheduling).

    Returns
    -------
    dask.array.Array, (n, H, W), dtype of ``image``
        One chunk along the replica axis.

    Raises
    ------
    ImportError
        dask is not installed (the ``scale`` extra).
    ImageMismatchError
        Not an integer 2-D frame of the profile's shape.
    ValueError
        ``n < 1``.
    """
    da = _dask_array()
    if int(n) < 1:
        raise ValueError(f"synthesize_dask: n must be >= 1, got {n}")
    n = int(n)
    arr = _as_dask(image, chunks, da)
    if arr.dtype.kind not in "ui":
        raise ImageMismatchError(
            f"synthesize_dask: raw image must have an integer dtype (ADU), got {arr.dtype}"
        )
    if arr.ndim != 2 or tuple(arr.shape) != tuple(profile.shape):
        raise ImageMismatchError(
            f"synthesize_dask: image shape {arr.shape} does not match the profile's "
            f"{tuple(profile.shape)}"
        )
    root = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
    max_adu = int(min(profile.max_adu, np.iinfo(arr.dtype).max))
    maps = [
        da.from_array(np.asarray(m, np.float32), chunks=arr.chunks)
        for m in (_safe_gain(profile), profile.offset, profile.read_noise)
    ]
    dtype = arr.dtype

    def block_replicas(
        img: np.ndarray,
        gain: np.ndarray,
        offset: np.ndarray,
        read_noise: np.ndarray,
        block_id: tuple[int, ...] = (0, 0, 0),
    ) -> np.ndarray:
        # block_id is the output chunk's (replica axis, row, column) index
        key = tuple(int(b) for b in block_id[1:])
        rng = np.random.default_rng(np.random.SeedSequence(root, spawn_key=key))
        centre = img.astype(np.float32)
        return redraw(centre, gain, offset, read_noise, img >= max_adu, max_adu, n, rng, dtype)

    return da.map_blocks(
        block_replicas,
        arr,
        *maps,
        new_axis=0,
        chunks=((n,),) + arr.chunks,
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )
