"""HDF5 and zarr layouts of `rawsigma.imread` (kept apart to keep each module small)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError
from .imread import ImageInfo, _frames_from, _info

__all__ = ["read_hdf5", "read_zarr"]


# ----------------------------------------------------------------------------- HDF5
def _h5_candidates(f: Any) -> list[Any]:
    import h5py

    found: list[Any] = []

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "uifb":
            found.append(obj)

    f.visititems(visit)
    return found


def _is_noise_codec(ds: Any) -> bool:
    return str(ds.attrs.get("format", "")).startswith("rawsigma")


def _h5_noise_codec(f: Any) -> list[str]:
    """Datasets of any shape marked as rawsigma noise-codec data (codes or streams)."""
    import h5py

    found: list[str] = []
    f.visititems(
        lambda name, obj: (
            found.append(obj.name)
            if isinstance(obj, h5py.Dataset) and _is_noise_codec(obj)
            else None
        )
    )
    return found


def read_hdf5(p: Path, ds_name: str | None) -> tuple[np.ndarray, ImageInfo]:
    import h5py

    from .h5probe import check_hdf5

    check_hdf5(p)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise InputFileError(f"{p}: not a readable HDF5 file ({exc})") from None
    with f:
        coded = _h5_noise_codec(f)
        if coded and (ds_name is None or f.get(ds_name) is not None and ds_name in coded):
            raise InputFileError(
                f"{p}: {coded[0]} holds rawsigma noise-codec codes, not raw frames; "
                "run `rawsigma decompress` first"
            )
        if ds_name is not None:
            obj = f.get(ds_name)
            if not isinstance(obj, h5py.Dataset):
                names = ", ".join(d.name for d in _h5_candidates(f)[:8]) or "none"
                raise InputFileError(f"{p}: no dataset {ds_name!r} (image datasets found: {names})")
            ds = obj
        elif isinstance(f.get("frames"), h5py.Dataset):
            ds = f["frames"]
        else:
            cands = _h5_candidates(f)
            if len(cands) != 1:
                listing = ", ".join(f"{d.name} {d.shape} {d.dtype}" for d in cands[:8])
                raise InputFileError(
                    f"{p}: "
                    + (
                        f"{len(cands)} image datasets ({listing}); choose one with {p}:NAME"
                        if cands
                        else "no image dataset (2-D or more) in this HDF5 file"
                    )
                )
            ds = cands[0]
        if _is_noise_codec(ds):
            raise InputFileError(
                f"{p}: {ds.name} holds rawsigma noise-codec codes, not raw frames; "
                "run `rawsigma decompress` first"
            )
        bits = ds.attrs.get("bit_depth", f.attrs.get("bit_depth"))
        layout = f"HDF5 dataset {ds.name} {ds.shape} {ds.dtype}"
        a = ds[()]
    arr, axes = _frames_from(np.asarray(a), "", p, layout)
    return arr, _info(p, "hdf5", layout, arr, axes, bits, ds.name)


# ----------------------------------------------------------------------------- zarr
def _zarr_pick(p: Path, node: Any, name: str | None) -> tuple[Any, str]:
    import zarr

    if isinstance(node, zarr.Array):
        return node, node.path or "/"
    if name is not None:
        try:
            arr = node[name.strip("/")]
        except KeyError:
            arr = None
        if not isinstance(arr, zarr.Array):
            keys = ", ".join(k for k, _ in node.arrays()) or "none"
            raise InputFileError(f"{p}: no array {name!r} in this zarr group (arrays: {keys})")
        return arr, name
    arrays = dict(node.arrays())
    if "frames" in arrays:
        return arrays["frames"], "frames"
    ms = node.attrs.get("multiscales")
    if isinstance(ms, list) and ms and ms[0].get("datasets"):
        level0 = ms[0]["datasets"][0]["path"]
        if level0 in arrays:
            return arrays[level0], level0
    if len(arrays) == 1:
        ((key, arr),) = arrays.items()
        return arr, key
    listing = ", ".join(f"{k} {a.shape} {a.dtype}" for k, a in list(arrays.items())[:8])
    raise InputFileError(
        f"{p}: zarr group with {len(arrays)} arrays ({listing or 'none'}); choose one with {p}:NAME"
    )


def read_zarr(p: Path, name: str | None) -> tuple[np.ndarray, ImageInfo]:
    import warnings

    try:
        import zarr
    except ImportError:
        raise InputFileError(
            f"{p}: reading zarr needs the 'scale' extra (rawsigma[scale])"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "numcodecs codecs are not in the v3 spec"
        node = zarr.open(str(p), mode="r")
        arr, key = _zarr_pick(p, node, name)
        missing = arr.nchunks - arr.nchunks_initialized
        if missing:
            raise InputFileError(
                f"{p}: {missing} of {arr.nchunks} chunks of array {key!r} are missing"
                f"{_missing_chunks(arr)} (chunk shape {tuple(arr.chunks)}, array "
                f"{tuple(arr.shape)}); they would read as the fill value, not as data"
            )
        check_no_outside_chunks(arr, p, key)
        a = np.asarray(arr[...])
    bits = arr.attrs.get("bit_depth")
    layout = f"zarr array {key!r} {tuple(arr.shape)} {arr.dtype}"
    out, axes = _frames_from(a, "", p, layout)
    return out, _info(p, "zarr", layout, out, axes, bits, key)


_ZARR_META = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def chunk_files(base: Path) -> list[str]:
    """Store keys (relative, ``/``-separated paths) of the chunk files under ``base``.

    Files whose key reads as a chunk key (`looks_like_chunk_key`): not the zarr
    metadata, hidden files, nor a stray file such as ``Thumbs.db`` or ``desktop.ini``,
    which would otherwise make a valid store look damaged.
    """
    import os

    out = []
    for d, dirs, files in os.walk(base):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        rel = Path(d).relative_to(base)
        keys = ((rel / f).as_posix() for f in files if f not in _ZARR_META and f[:1] != ".")
        out += [k for k in keys if looks_like_chunk_key(k)]
    return out


def looks_like_chunk_key(key: str) -> bool:
    """Whether a store key is a chunk's.

    Integers joined by ``/`` or ``.``, after a ``c`` in zarr 3's default encoding
    (``c/0/1/2``, ``c.0.1.2``, ``0.1.2``, ``0/1/2``).
    """
    parts = key.replace(".", "/").split("/")
    if parts[0] == "c":
        parts = parts[1:]
    return bool(parts) and all(part.isdigit() for part in parts)


def check_no_outside_chunks(arr: Any, p: Path, key: str) -> None:
    """Refuse an array whose store holds chunk files beyond its shape.

    Such chunks mean the shape in the metadata was damaged or edited (one bit turns
    ``"shape": [51, …]`` into ``[11, …]``): zarr reads the smaller array without a word
    and the rest of the data is lost. Local stores only (best effort elsewhere).

    A ``zarr.json`` that records a ``meta_crc32`` (noise-codec stores written by
    ``rawsigma compress``) must match it (`rawsigma.metacrc.check_zarr_json`): its shape,
    chunk grid, axes or voxel size were otherwise altered.

    Raises
    ------
    InputFileError
        Naming the count and one of the chunk files, or the metadata checksum mismatch.
    """
    root = getattr(arr.store, "root", None)
    if root is None:
        return
    base = Path(root) / (arr.path or "")
    _check_zarr_json_crc(base / "zarr.json")
    found = chunk_files(base)
    if len(found) <= arr.nchunks_initialized:
        return
    import itertools

    grid = [range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks, strict=True)]
    expected = {arr.metadata.encode_chunk_key(idx) for idx in itertools.product(*grid)}
    extra = sorted(set(found) - expected)
    if extra:
        raise InputFileError(
            f"{p}: {len(extra)} chunk file(s) outside array {key!r} of shape "
            f"{tuple(arr.shape)} (e.g. {extra[0]}): its metadata was damaged or edited; "
            "reading it would silently leave that data out"
        )


def _check_zarr_json_crc(meta: Path) -> None:
    """`rawsigma.metacrc.check_zarr_json` on a local ``zarr.json`` (if any)."""
    import json

    from .metacrc import check_zarr_json

    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return  # none, or zarr already refused it
    check_zarr_json(doc, str(meta))


def _missing_chunks(arr: Any, limit: int = 4) -> str:
    """``": c/2/0/0, ..."`` for a local store (best effort; empty text otherwise)."""
    import itertools

    root = getattr(arr.store, "root", None)
    if root is None or not hasattr(arr.metadata, "encode_chunk_key"):
        return ""
    base = Path(root) / (arr.path or "")
    grid = [range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks, strict=True)]
    gone: list[str] = []
    for idx in itertools.product(*grid):
        key = arr.metadata.encode_chunk_key(idx)
        if not (base / key).exists():
            gone.append(f"{key} (index {idx})" if len(gone) < limit else "...")
            if len(gone) > limit:
                break
    return ": " + ", ".join(gone) if gone else ""
