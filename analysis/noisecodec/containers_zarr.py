"""Noise-codec zarr stores, zarr ≥ 3 public API only (reads formats 2 and 3, writes 3).

Writing: one chunk per frame (with per-pixel maps, which every chunk embeds: chunks of
up to 64 MiB of frames), every chunk written (``write_empty_chunks``), into a
hidden ``.NAME.tmp`` directory renamed into place at the end; the temporary directory is
removed on any failure (Ctrl-C included). Reading checks the stored chunk keys against
the chunk grid (the key layout is the one the store's own metadata declares) and decodes
chunk by chunk, so a missing or corrupt chunk is an `InputFileError` naming it, or,
with ``allow_missing``, a masked frame and a warning; never zeros.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.errors import InputFileError, OutputExistsError
from rawsigma.metacrc import META_CRC_KEY, check_zarr_json, zarr_json_crc

from .containers_tiff import FORMAT_NAME

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = ["expected_chunk_keys", "read_zarr", "write_zarr"]

CHUNK_BYTES = 64 << 20  # raw bytes per chunk with per-pixel maps (maps embedded per chunk)


def _zarr_major() -> int:
    import zarr

    return int(str(zarr.__version__).split(".")[0])


def write_zarr(
    path: Path,
    frames: np.ndarray,
    codec: NoiseCodec,
    force: bool,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write frames as a zarr format-3 store (one chunk per frame).

    ``meta``: array attributes ``axes`` and ``element_size_um`` (from ``spacing_zyx``),
    which `rawsigma.volread` reads, so the store opens as a volume with its voxel size.
    """
    import zarr

    from .numcodec import NoiseNumcodec

    frames = np.asarray(frames)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: exists; use --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    nc = NoiseNumcodec.from_codec(codec, maps="pixel" if codec.maps_mode == "pixel" else "global")
    chunks = (1,) * (frames.ndim - 2) + tuple(frames.shape[-2:])
    if nc.maps == "pixel" and frames.ndim >= 3:
        # every chunk embeds the per-pixel maps: chunks of many frames (≤ 64 MiB raw)
        h, w = frames.shape[-2:]
        k = min(frames.shape[-3], max(1, CHUNK_BYTES // (h * w * 2)))
        chunks = (1,) * (frames.ndim - 3) + (k, h, w)
    attrs = {
        "format": FORMAT_NAME,
        "profile_id": codec.profile.profile_id,
        "spec": codec.spec,
        "lossy": True,
    }
    if meta and "axes" in meta:
        attrs["axes"] = meta["axes"]
    if meta and "spacing_zyx" in meta:
        attrs["element_size_um"] = list(meta["spacing_zyx"])
    try:
        if _zarr_major() < 3:
            raise ImportError(f"rawsigma needs zarr >= 3.0.8 (found {zarr.__version__})")
        from .zarr3codec import RawsigmaNoiseZarr3

        arr = zarr.create_array(
            store=str(tmp),
            shape=frames.shape,
            dtype="uint16",
            chunks=chunks,
            serializer=RawsigmaNoiseZarr3.from_numcodec(nc),
            compressors=None,
            zarr_format=3,
            config={"write_empty_chunks": True},
        )
        arr[...] = frames
        arr.attrs.update(attrs)
        doc = json.loads((tmp / "zarr.json").read_text())
        arr.attrs.update({META_CRC_KEY: zarr_json_crc(doc)})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _stop_zarr_writes()
        _remove_settled(tmp)
        raise
    return path


def _stop_zarr_writes(timeout: float = 30.0) -> None:
    """Cancel zarr's in-flight chunk writes after an interrupt.

    zarr 3 runs its writes on an event loop in a thread of its own; Ctrl-C stops the
    call that waits for them, not the writes, which then recreate chunk files in a
    store already removed.
    """
    import asyncio

    try:
        from zarr.core.sync import _get_loop

        loop = _get_loop()
    except Exception:  # another zarr layout: nothing to cancel here
        return

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
    except Exception:
        pass


def _remove_settled(tmp: Path, quiet: float = 0.5, limit: float = 10.0) -> None:
    """Remove ``tmp`` until it has stayed absent for ``quiet`` s.

    A file write already in a worker thread when the writes were cancelled may still land.
    """
    import time

    end = time.monotonic() + limit
    gone_since = None
    while time.monotonic() < end:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= quiet:
            return
        time.sleep(0.05)


def _metadata(path: Path) -> dict[str, Any]:
    """The array metadata document (format 3 ``zarr.json`` or format 2 ``.zarray``).

    The checksum of a ``zarr.json`` is checked (`rawsigma.metacrc.check_zarr_json`).
    """
    for name in ("zarr.json", ".zarray"):
        f = path / name
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise InputFileError(f"{f}: unreadable zarr metadata ({exc})") from None
            if not isinstance(meta, dict):
                raise InputFileError(f"{f}: unreadable zarr metadata (not a JSON object)")
            if name == "zarr.json":
                check_zarr_json(meta, str(f))
            meta["_format"] = 3 if name == "zarr.json" else 2
            return meta
    raise InputFileError(f"{path}: not a zarr array (no zarr.json or .zarray)")


def expected_chunk_keys(path: str | os.PathLike) -> dict[tuple[int, ...], str]:
    """Chunk grid index → store key (relative path), from the array's own metadata."""
    path = Path(path)
    meta = _metadata(path)
    try:
        return _chunk_keys(meta)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        raise InputFileError(f"{path}: damaged zarr metadata ({exc!r})") from None


def _chunk_keys(meta: dict[str, Any]) -> dict[tuple[int, ...], str]:
    shape = meta["shape"]
    if meta["_format"] == 3:
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        enc = meta.get("chunk_key_encoding", {"name": "default"})
        sep = (enc.get("configuration") or {}).get(
            "separator", "/" if enc["name"] == "default" else "."
        )
        prefix = "c" + sep if enc["name"] == "default" else ""
    else:
        chunks = meta["chunks"]
        sep, prefix = meta.get("dimension_separator") or ".", ""
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks, strict=True)]
    return {
        idx: prefix + sep.join(map(str, idx)) if idx else prefix + "0"
        for idx in itertools.product(*grid)
    }


def zarr_meta(path: str | os.PathLike) -> dict[str, Any]:
    """``axes`` and ``spacing_zyx`` recorded on a noise-codec zarr array ({} if none)."""
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = dict(zarr.open_array(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - metadata only; read_zarr reports a bad store
        return {}
    out: dict[str, Any] = {}
    if isinstance(a.get("axes"), str):
        out["axes"] = a["axes"]
    if isinstance(a.get("element_size_um"), list):
        out["spacing_zyx"] = a["element_size_um"]
    return out


def _check_no_extra_chunks(path: Path, keys: dict[tuple[int, ...], str]) -> None:
    """Refuse chunk files beyond the grid (`InputFileError`).

    The shape in ``zarr.json`` was then damaged (one bit turns 51 frames into 11) and
    the frames beyond it would be left out, with exit 0.
    """
    from rawsigma._imread_stores import chunk_files

    extra = sorted(set(chunk_files(path)) - set(keys.values()))
    if extra:
        raise InputFileError(
            f"{path}: {len(extra)} chunk file(s) outside the array's grid (e.g. {extra[0]}): "
            "its metadata (zarr.json) was damaged or edited; decoding would silently leave "
            "those frames out"
        )


def read_zarr(path: str | os.PathLike, allow_missing: bool = False) -> np.ndarray:
    """Read a noise-codec zarr store, chunk by chunk (missing/corrupt chunks named)."""
    import zarr

    path = Path(path)
    keys = expected_chunk_keys(path)
    missing = {idx for idx, key in keys.items() if not (path / key).is_file()}
    _check_no_extra_chunks(path, keys)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "numcodecs codecs are not in the v3 spec"
            arr = zarr.open_array(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad stores
        raise InputFileError(f"{path}: unreadable zarr store ({exc})") from None
    if missing and not allow_missing:
        names = ", ".join(keys[i] for i in sorted(missing)[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputFileError(
            f"{path}: {len(missing)} of {len(keys)} chunks missing ({names}{more}); "
            "use --allow-missing to decode the rest with those regions masked"
        )
    out = np.zeros(arr.shape, np.uint16)
    mask = np.zeros(arr.shape, bool)
    chunks = arr.chunks
    bad = []
    for idx in keys:
        sl = tuple(
            slice(i * c, min((i + 1) * c, s))
            for i, c, s in zip(idx, chunks, arr.shape, strict=True)
        )
        if idx in missing:
            mask[sl] = True
            bad.append(f"{keys[idx]} (missing)")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[sl] = arr[sl]
        except Exception as exc:  # noqa: BLE001 - a chunk that does not decode
            if not allow_missing:
                raise InputFileError(f"{path}: chunk {keys[idx]} does not decode ({exc})") from None
            mask[sl] = True
            bad.append(f"{keys[idx]} ({exc})")
    if bad:
        warnings.warn(
            f"{path}: {len(bad)} chunk(s) missing or corrupt, masked: {'; '.join(bad[:5])}",
            stacklevel=2,
        )
        return np.ma.MaskedArray(out, mask)
    return out
