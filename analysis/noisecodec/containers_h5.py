"""Noise-codec HDF5: one noise-codec stream per frame in a variable-length dataset.

Layout (see ``docs/containers.md``)::

    /rsnc          vlen uint8, shape (N,): stream i = frame i (flattened stack order)
      attrs: format="rawsigma-noisecodec", version, stack_shape, dtype="uint16",
             spec, profile_id, lossy=True, description (how to decode),
             [axes, element_size_um], meta_crc32 (CRC-32 of the others, `rawsigma.metacrc`)
    /rsnc_maps     uint8 (only with per-pixel maps): `CodecMaps.to_bytes`, attrs
                   offset0, gain0, jitter, digest

Every stream is the self-describing format of `stream` (magic ``RSNC``, CRC-32), so the
file holds everything needed to decode it: the ratio is that of ``.rsnc``. A reader
without rawsigma sees byte vectors and attributes that say what they are, never an
image of codes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from imagecodecs import ZstdError
from rawsigma.errors import InputFileError
from rawsigma.fileio import atomic_write
from rawsigma.h5probe import check_hdf5
from rawsigma.metacrc import HDF5_ATTRS, META_CRC_KEY, check_meta_crc, covered, meta_crc

from .containers_tiff import FORMAT_NAME, frame_streams
from .maps import CodecMaps
from .stream import READ_VERSIONS, VERSION

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = ["read_hdf5", "write_hdf5"]

DESCRIPTION = (
    "rawsigma noise-codec: element i of this dataset is one self-describing compressed "
    "frame (byte stream 'RSNC...'), frames in the order of stack_shape; decode with "
    "`rawsigma decompress` or rawsigma.analysis.noisecodec.containers.read_compressed. "
    "Decoded values are lossy (quantised within the camera noise)."
)

#: What h5py raises on a damaged file: OSError, and RuntimeError ("bad heap free list",
#: "addr overflow"…), AttributeError (a damaged object header read as a named
#: datatype), KeyError, ValueError, TypeError (attributes that do not decode).
_H5_ERRORS = (OSError, RuntimeError, AttributeError, KeyError, ValueError, TypeError)


def write_hdf5(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: NoiseCodec,
    force: bool = False,
    dataset: str = "rsnc",
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write frames as an HDF5 file of per-frame noise-codec streams.

    ``meta``: ``axes`` and ``spacing_zyx`` (stored as ``element_size_um``), `hdf5_meta`.
    """
    import h5py

    frames = np.asarray(frames)
    streams = frame_streams(frames, codec)
    maps = codec.maps
    with atomic_write(path, force) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset(dataset, (len(streams),), dtype=h5py.vlen_dtype(np.uint8))
        for i, s in enumerate(streams):
            ds[i] = np.frombuffer(s, np.uint8)
        attrs = {
            "format": FORMAT_NAME,
            "version": VERSION,
            "stack_shape": np.asarray(frames.shape, np.int64),
            "dtype": "uint16",
            "spec": codec.spec,
            "profile_id": codec.profile.profile_id,
            "lossy": True,
            "description": DESCRIPTION,
        }
        if meta and "axes" in meta:
            attrs["axes"] = meta["axes"]
        if meta and "spacing_zyx" in meta:
            attrs["element_size_um"] = np.asarray(meta["spacing_zyx"], np.float64)
        ds.attrs.update(attrs)
        # the CRC of the attributes as h5py reads them back (`hdf5_meta_crc`)
        ds.attrs[META_CRC_KEY] = np.int64(meta_crc(covered(ds.attrs, HDF5_ATTRS)))
        if not maps.is_uniform:
            m = f.create_dataset(f"{dataset}_maps", data=np.frombuffer(maps.to_bytes(), np.uint8))
            m.attrs.update(
                {
                    "offset0": maps.offset0,
                    "gain0": maps.gain0,
                    "jitter": bool(maps.jitter),
                    "digest": maps.digest(),
                    "description": "rawsigma noise-codec per-pixel maps (CodecMaps.to_bytes)",
                }
            )
    return Path(path)


def hdf5_meta(path: str | os.PathLike, dataset: str = "rsnc") -> dict[str, Any]:
    """``axes`` and ``spacing_zyx`` recorded on a noise-codec HDF5 dataset ({} if none)."""
    import h5py

    check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            a = dict(f[dataset].attrs) if dataset in f else {}
    except _H5_ERRORS:
        return {}
    out: dict[str, Any] = {}
    if isinstance(a.get("axes"), str):
        out["axes"] = a["axes"]
    if a.get("element_size_um") is not None:
        out["spacing_zyx"] = [float(v) for v in np.ravel(a["element_size_um"])]
    return out


def read_hdf5_frames(
    path: str | os.PathLike, dataset: str = "rsnc"
) -> tuple[list[bytes], CodecMaps | None, tuple]:
    """The per-frame streams, the per-pixel maps (or None) and the stack shape."""
    import h5py

    path = Path(path)
    check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise InputFileError(f"{path}: no dataset {dataset!r} (not a noise-codec HDF5)")
            ds = f[dataset]
            a = dict(ds.attrs)
            if a.get("format") != FORMAT_NAME:
                raise InputFileError(f"{path}: {dataset!r} is not a rawsigma noise-codec dataset")
            if int(a.get("version", -1)) not in READ_VERSIONS:
                raise InputFileError(
                    f"{path}: unknown noise-codec format version {a.get('version')} "
                    f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
                )
            crc = a.get(META_CRC_KEY)
            check_meta_crc(crc, covered(a, HDF5_ATTRS), f"{path} (attributes of {dataset!r})")
            streams = [bytes(np.asarray(ds[i], np.uint8)) for i in range(ds.shape[0])]
            shape = tuple(int(v) for v in a["stack_shape"])
            maps = None
            if f"{dataset}_maps" in f:
                m = f[f"{dataset}_maps"]
                maps = CodecMaps.from_bytes(
                    bytes(m[()]),
                    shape[-2:],
                    float(m.attrs["offset0"]),
                    float(m.attrs["gain0"]),
                    bool(m.attrs["jitter"]),
                )
                if maps.digest() != m.attrs["digest"]:
                    raise InputFileError(f"{path}: the stored maps do not match their digest")
    except InputFileError:
        raise
    except (*_H5_ERRORS, IndexError, ZstdError) as exc:
        raise InputFileError(f"{path}: unreadable or corrupted noise-codec HDF5 ({exc})") from None
    if int(np.prod(shape[:-2], dtype=np.int64)) != len(streams):
        raise InputFileError(
            f"{path}: {len(streams)} frames stored, but the file records a stack of {shape}"
        )
    return streams, maps, shape


def read_hdf5(
    path: str | os.PathLike, dataset: str = "rsnc", allow_missing: bool = False
) -> np.ndarray:
    """Read a noise-codec HDF5 file back to uint16 frames (no profile needed)."""
    import h5py

    from .containers import decode_frame_list
    from .containers_legacy import legacy_hdf5

    check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                old = legacy_hdf5(f, Path(path))  # the layout before issue 13 (codes)
                if old is not None:
                    return old
    except InputFileError:
        raise
    except _H5_ERRORS as exc:
        raise InputFileError(f"{path}: unreadable or corrupted noise-codec HDF5 ({exc})") from None
    streams, maps, shape = read_hdf5_frames(path, dataset)
    return decode_frame_list(streams, maps, shape, f"{path} frame", allow_missing)
