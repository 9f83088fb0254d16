"""CRC-32 of a container's own metadata (what the streams' CRC does not cover).

Every noise-codec stream carries a CRC-32 of its header and sections, but the
containers keep metadata outside the streams: the stack shape, the axes and voxel size,
the format record (TIFF annotation, HDF5 attributes, zarr ``zarr.json``). One flipped
byte there gave a decoded file with another voxel size, other axes or (zarr) cropped
frames, with exit 0. Containers written since session 12 store ``meta_crc32``: the
CRC-32 of a canonical JSON of that metadata (the checksum key itself left out). A
container without it (written before) is read as before. Here, in the base layer, so
that `rawsigma.imread` checks the zarr stores it decodes too.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError

__all__ = [
    "HDF5_ATTRS",
    "META_CRC_KEY",
    "ZARR_ATTRS",
    "check_meta_crc",
    "check_zarr_json",
    "covered",
    "meta_crc",
    "plain",
    "zarr_json_crc",
]

#: Name of the checksum (TIFF annotation key, HDF5 attribute, zarr attribute).
META_CRC_KEY = "meta_crc32"

#: The attributes the checksum covers (those ``rawsigma compress`` writes): attributes
#: another tool adds to the dataset or array (an annotation) are not rawsigma's to
#: check, and a file carrying them is read as before.
HDF5_ATTRS = (
    "format", "version", "stack_shape", "dtype", "spec", "profile_id", "lossy",
    "description", "axes", "element_size_um",
)  # fmt: skip
ZARR_ATTRS = ("format", "profile_id", "spec", "lossy", "axes", "element_size_um")


def covered(attrs: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The items of ``attrs`` (a mapping) the checksum covers: those of ``names``."""
    return {k: attrs[k] for k in names if k in attrs}


def plain(value: Any) -> Any:
    """``value`` as JSON-able Python (numpy scalars and arrays, bytes, nested containers)."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def meta_crc(meta: Any) -> int:
    """CRC-32 of ``meta`` as sorted, compact JSON.

    Values as `plain` makes them; the key `META_CRC_KEY` of a dict is left out.
    """
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k != META_CRC_KEY}
    text = json.dumps(plain(meta), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return zlib.crc32(text.encode())


def check_meta_crc(stored: Any, meta: Any, source: str) -> None:
    """Refuse metadata whose checksum is not ``stored``.

    ``stored`` None: a container written before the checksum existed (accepted).

    Raises
    ------
    InputFileError
        The checksum does not match (or is not a number), naming ``source``.
    """
    if stored is None:
        return
    stored = plain(stored)
    if isinstance(stored, str) and stored.isdigit():
        stored = int(stored)
    if not isinstance(stored, int) or isinstance(stored, bool) or stored != meta_crc(meta):
        raise InputFileError(
            f"{source}: metadata checksum mismatch: the container's shape, axes, voxel "
            "size or format record were altered"
        )


def _covered_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A ``zarr.json`` document with only the attributes of `ZARR_ATTRS`.

    The checksum itself is not one of them, nor is a user's own annotation.
    """
    attrs = doc.get("attributes")
    if isinstance(attrs, dict):
        doc = {**doc, "attributes": covered(attrs, ZARR_ATTRS)}
    return doc


def zarr_json_crc(doc: dict[str, Any]) -> int:
    """The `META_CRC_KEY` attribute of a zarr format-3 ``zarr.json`` document.

    The CRC of all of it (shape, chunk grid, data type, codecs) and of the attributes of
    `ZARR_ATTRS`.
    """
    return meta_crc(_covered_doc(doc))


def check_zarr_json(doc: Any, source: str) -> None:
    """Refuse a ``zarr.json`` whose `META_CRC_KEY` attribute does not match the rest.

    Documents without it (written before session 12, or by other writers) pass.

    Raises
    ------
    InputFileError
        The checksum does not match, naming ``source``.
    """
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    if isinstance(attrs, dict) and META_CRC_KEY in attrs:
        check_meta_crc(attrs[META_CRC_KEY], _covered_doc(doc), source)
