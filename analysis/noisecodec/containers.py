"""Noise-codec data in standard containers: ``.rsnc``, TIFF, HDF5 and zarr (v2 and v3).

Every container decodes with rawsigma alone, without the camera profile, and none can be
mistaken for an image by a reader that does not know the codec (``docs/containers.md``):

* **rsnc**: the bare self-describing stream (`stream`).
* **TIFF** (`containers_tiff`): full-size pages whose single strip is a stream, TIFF
  compression 61500; tifffile decodes them once rawsigma is imported, other readers
  refuse the unknown compression. OME-XML names the image as noise-codec compressed.
* **HDF5** (`containers_h5`): one stream per frame in a variable-length uint8 dataset
  ``rsnc`` with documented attributes; the ratio is that of ``.rsnc``.
* **zarr** (`containers_zarr`): `NoiseNumcodec` (numcodecs id ``rawsigma_noise``,
  `numcodec`) / `RawsigmaNoiseZarr3` (zarr v3 name ``numcodecs.rawsigma_noise``,
  `zarr3codec`), one chunk per frame.

Decoding never invents data: a missing or corrupt frame, page or chunk is an
`InputFileError` naming it; with ``allow_missing=True`` the rest is decoded and a
`numpy.ma.MaskedArray` is returned with the lost frames masked (and a warning).
numcodecs and zarr are imported only by the zarr paths (the ``scale`` extra).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import InputFileError
from rawsigma.fileio import atomic_write

from .containers_h5 import read_hdf5, write_hdf5
from .containers_tiff import read_tiff, write_tiff
from .maps import CodecMaps
from .stream import decode_frames, encode_frames, read_header

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = [  # and, lazily, NoiseNumcodec and RawsigmaNoiseZarr3 (module __getattr__)
    "FORMATS",
    "decode_frame_list",
    "guess_format",
    "read_compressed",
    "read_hdf5",
    "read_meta",
    "read_tiff",
    "write_compressed",
    "write_hdf5",
    "write_tiff",
    "zarr3_codec",
]

FORMATS = ("rsnc", "zarr", "tiff", "h5")


def __getattr__(name: str) -> Any:
    # numcodecs/zarr only when asked for (a core install has neither)
    if name == "NoiseNumcodec":
        from .numcodec import NoiseNumcodec

        return NoiseNumcodec
    if name == "RawsigmaNoiseZarr3":
        from .zarr3codec import RawsigmaNoiseZarr3

        return RawsigmaNoiseZarr3
    raise AttributeError(name)


def _need_zarr() -> None:
    try:
        import numcodecs  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        raise ValueError(
            "the zarr container needs zarr and numcodecs: install rawsigma with its 'scale' extra"
        ) from None


def zarr3_codec(codec: Any) -> Any:
    """zarr v3 serializer of a `NoiseNumcodec` (``serializer=`` of ``zarr.create_array``)."""
    from .zarr3codec import RawsigmaNoiseZarr3

    return RawsigmaNoiseZarr3.from_numcodec(codec)


def decode_frame_list(
    streams: list[bytes],
    maps: CodecMaps | None,
    shape: tuple[int, ...],
    label: str,
    allow_missing: bool = False,
) -> np.ndarray:
    """Decode one stream per frame into ``shape``; a bad frame raises `InputFileError`
    naming ``label i`` or, with ``allow_missing``, is masked (MaskedArray + warning)."""
    h, w = shape[-2:]
    out = np.zeros((len(streams), h, w), np.uint16)
    bad: dict[int, str] = {}
    for i, s in enumerate(streams):
        try:
            f = decode_frames(s, maps, source=f"{label} {i}")
            if f.shape[-2:] != (h, w) or f.size != h * w:
                raise InputFileError(f"{label} {i}: frame of shape {f.shape}, expected {(h, w)}")
            out[i] = f.reshape(h, w)
        except InputFileError as exc:
            if not allow_missing:
                raise
            bad[i] = str(exc)
    if not bad:
        return out.reshape(shape)
    msgs = "; ".join(list(bad.values())[:5])
    warnings.warn(f"{len(bad)} frame(s) lost, masked: {msgs}", stacklevel=2)
    mask = np.zeros(out.shape, bool)
    mask[list(bad)] = True
    return np.ma.MaskedArray(out.reshape(shape), mask.reshape(shape))


def guess_format(path: str | os.PathLike) -> str:
    """Container format from a file name (``.rsnc``, ``.zarr``, ``.tif(f)``, ``.h5``)."""
    s = str(path).lower().rstrip("/")
    if s.endswith(".zarr"):
        return "zarr"
    if s.endswith((".tif", ".tiff")):
        return "tiff"
    if s.endswith((".h5", ".hdf5", ".hdf")):
        return "h5"
    return "rsnc"


def check_meta(meta: dict[str, Any] | None, shape: tuple[int, ...]) -> dict[str, Any]:
    """The image metadata a container keeps: ``axes`` (one letter per dimension of
    ``shape``, e.g. ``"ZYX"``) and ``spacing_zyx`` (three voxel sizes, µm); {} if none."""
    meta = dict(meta or {})
    axes = meta.get("axes")
    if not isinstance(axes, str) or len(axes) != len(shape):
        return {}
    out: dict[str, Any] = {"axes": axes.upper()}
    try:
        sp = [float(v) for v in meta.get("spacing_zyx") or ()]
    except (TypeError, ValueError):
        sp = []
    if len(sp) == 3 and all(np.isfinite(v) and v > 0 for v in sp):
        out["spacing_zyx"] = sp
    return out


def write_compressed(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: NoiseCodec,
    fmt: str | None = None,
    force: bool = False,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write frames compressed with ``codec`` in container ``fmt`` (default: from name).

    ``meta`` (``axes``, ``spacing_zyx``: what `read_meta` returns) is kept by the TIFF,
    HDF5 and zarr containers; the bare ``.rsnc`` stream has no place for it.
    """
    fmt = fmt or guess_format(path)
    path = Path(path)
    meta = check_meta(meta, np.shape(frames))
    if fmt == "tiff":
        return write_tiff(path, frames, codec, force, meta)
    if fmt == "h5":
        return write_hdf5(path, frames, codec, force, meta=meta)
    if fmt == "rsnc":
        data = encode_frames(frames, codec.maps, codec.params, embed_maps=True)
        with atomic_write(path, force) as tmp:
            tmp.write_bytes(data)
        return path
    if fmt == "zarr":
        _need_zarr()
        from .containers_zarr import write_zarr

        return write_zarr(path, frames, codec, force, meta)
    raise ValueError(f"unknown container format {fmt!r}; use one of {', '.join(FORMATS)}")


def read_meta(path: str | os.PathLike, fmt: str | None = None) -> dict[str, Any]:
    """The image metadata a container recorded (``axes``, ``spacing_zyx``), without
    decoding: {} for a ``.rsnc`` stream or a container written without it."""
    path = Path(path)
    fmt = fmt or guess_format(path)
    rec: dict[str, Any] = {}
    if fmt == "tiff":
        from .containers_tiff import tiff_meta

        rec = tiff_meta(path)
    elif fmt == "h5":
        from .containers_h5 import hdf5_meta

        rec = hdf5_meta(path)
    elif fmt == "zarr":
        from .containers_zarr import zarr_meta

        rec = zarr_meta(path)
    axes = rec.get("axes")
    shape = tuple(range(len(axes))) if isinstance(axes, str) else ()
    return check_meta(rec, shape)


def read_compressed(
    path: str | os.PathLike, fmt: str | None = None, allow_missing: bool = False
) -> np.ndarray:
    """Read any noise-codec container back to uint16 frames (no profile needed).

    With ``allow_missing`` a lost frame/page/chunk is masked (`numpy.ma.MaskedArray`,
    warning) instead of raising `InputFileError`; a bare ``.rsnc`` stream has no
    independent frames and always raises.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown container format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "tiff":
        return read_tiff(path, allow_missing=allow_missing)
    if fmt == "h5":
        return read_hdf5(path, allow_missing=allow_missing)
    if fmt == "zarr":
        _need_zarr()
        from .containers_zarr import read_zarr

        return read_zarr(path, allow_missing=allow_missing)
    data = path.read_bytes()
    read_header(data, str(path))
    return decode_frames(data, None, source=str(path))
