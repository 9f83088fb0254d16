"""Noise-codec TIFF: full-size pages whose only strip is a noise-codec stream.

Layout (see ``docs/containers.md``): one page per frame, ``ImageWidth``/``ImageLength``
the real frame size, uint16, one strip per page holding one self-describing noise-codec
stream (``RSNC`` …, `stream`), ``Compression`` = `COMPRESSION_RSNC` (61_500, a value in
the private range that no registered or libtiff-known scheme uses). The first page's
``ImageDescription`` is OME-XML: one image ``(T, Y, X)`` named
``"rawsigma noise-codec compressed (decode with rawsigma)"`` with a MapAnnotation that
records the codec spec, profile id, stack shape and that decoded data are lossy. Per-pixel
maps (``maps="pixel"``) are written once, in private tag `TAG_MAPS` (65_301) of the first
page, and the streams refer to them by digest.

A reader that does not know the compression refuses the pages (tifffile:
``"61500 is not a known COMPRESSION"``; Bio-Formats: unsupported compression): nothing
displays a wrong image. After `register_tifffile` (called on import of this module),
``tifffile.imread`` decodes the pages to the full uint16 frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from imagecodecs import ZstdError
from rawsigma.errors import InputFileError
from rawsigma.fileio import atomic_write
from rawsigma.metacrc import META_CRC_KEY, check_meta_crc, meta_crc

from .maps import CodecMaps
from .stream import READ_VERSIONS, VERSION, decode_frames, encode_frames, read_header

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = ["COMPRESSION_RSNC", "TAG_MAPS", "read_tiff", "register_tifffile", "write_tiff"]

COMPRESSION_RSNC = 61500
TAG_MAPS = 65301
FORMAT_NAME = "rawsigma-noisecodec"
IMAGE_NAME = "rawsigma noise-codec compressed (decode with rawsigma)"
_PLACEHOLDER = 50000  # zstd: an enum value tifffile accepts for pre-compressed strips


def frame_streams(frames: np.ndarray, codec: NoiseCodec) -> list[bytes]:
    """One stream per frame (per-pixel maps by reference; dither seed + frame index)."""
    import dataclasses

    stack = np.asarray(frames).reshape(-1, *np.shape(frames)[-2:])
    out = []
    for i, f in enumerate(stack):
        p = codec.params
        if p.dither:
            p = dataclasses.replace(p, seed=int(p.seed) + i)
        out.append(encode_frames(f, codec.maps, p, embed_maps=False))
    return out


def _ome_xml(n: int, h: int, w: int, record: dict[str, Any]) -> str:
    from xml.sax.saxutils import escape, quoteattr

    texts = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in record.items()]
    texts.append([META_CRC_KEY, str(meta_crc(texts))])  # last: `_record` checks it
    pairs = "".join(f"<M K={quoteattr(k)}>{escape(v)}</M>" for k, v in texts)
    tiffdata = "".join(f'<TiffData IFD="{i}" FirstT="{i}" PlaneCount="1"/>' for i in range(n))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 '
        'http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd" Creator="rawsigma">'
        f'<Image ID="Image:0" Name="{IMAGE_NAME}">'
        f"<Description>{escape(record['description'])}</Description>"
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SignificantBits="16" '
        f'SizeX="{w}" SizeY="{h}" SizeC="1" SizeZ="1" SizeT="{n}">'
        f'<Channel ID="Channel:0:0" SamplesPerPixel="1"/>{tiffdata}</Pixels>'
        '<AnnotationRef ID="Annotation:0"/></Image>'
        '<StructuredAnnotations><MapAnnotation ID="Annotation:0" '
        f'Namespace="rawsigma.noisecodec"><Value>{pairs}</Value></MapAnnotation>'
        "</StructuredAnnotations></OME>"
    )


def write_tiff(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: NoiseCodec,
    force: bool = False,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``(H, W)`` or ``(..., H, W)`` uint16 frames as a noise-codec TIFF.

    ``meta`` (``axes``, ``spacing_zyx``) goes into the annotation (`tiff_meta`).
    """
    import tifffile

    frames = np.asarray(frames)
    h, w = frames.shape[-2:]
    streams = frame_streams(frames, codec)
    maps = codec.maps
    record = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "compression": COMPRESSION_RSNC,
        "stack_shape": list(frames.shape),
        "profile_id": codec.profile.profile_id,
        "spec": codec.spec,
        "lossy": True,
        **(meta or {}),
        "description": (
            "Each page's single strip is a rawsigma noise-codec stream (TIFF compression "
            f"{COMPRESSION_RSNC}); decode with `rawsigma decompress` or, in Python, import "
            "rawsigma.analysis.noisecodec.containers_tiff before tifffile.imread. Decoded "
            "values are lossy (quantised within the camera noise)."
        ),
    }
    extra = []
    if not maps.is_uniform:
        mb = maps.to_bytes()
        extra.append((TAG_MAPS, 7, len(mb), mb, True))
        record["maps"] = {"offset0": maps.offset0, "gain0": maps.gain0, "jitter": maps.jitter}
    xml = _ome_xml(len(streams), h, w, record)
    with atomic_write(path, force) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=sum(map(len, streams)) > 2**31) as tw:
            for i, s in enumerate(streams):
                tw.write(
                    iter([s]),
                    shape=(h, w),
                    dtype="uint16",
                    compression=_PLACEHOLDER,
                    rowsperstrip=h,
                    description=xml if i == 0 else None,
                    extratags=extra if i == 0 else None,
                    metadata=None,
                    software="rawsigma",
                )
        with tifffile.TiffFile(tmp, mode="r+b") as tf:
            for page in tf.pages:
                page.tags[259].overwrite(COMPRESSION_RSNC)
    return Path(path)


def _record(tf: Any, path: Path) -> dict[str, Any]:
    from xml.etree import ElementTree as ET

    desc = tf.pages[0].description or ""
    try:
        root = ET.fromstring(desc)
    except ET.ParseError:
        root = None
    rec: dict[str, Any] = {}
    texts, stored = [], None
    if root is not None:
        for m in root.iter("{http://www.openmicroscopy.org/Schemas/OME/2016-06}M"):
            k, v = m.get("K"), m.text or ""
            if k == META_CRC_KEY:
                stored = v
                continue
            texts.append([k, v])
            try:
                rec[k] = json.loads(v)
            except ValueError:
                rec[k] = v
    if rec.get("format") != FORMAT_NAME:
        raise InputFileError(f"{path}: not a rawsigma noise-codec TIFF")
    if rec.get("version") not in READ_VERSIONS:
        raise InputFileError(
            f"{path}: unknown noise-codec format version {rec.get('version')} "
            f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
        )
    check_meta_crc(stored, texts, f"{path} (OME-XML annotation)")
    return rec


def tiff_meta(path: str | os.PathLike) -> dict[str, Any]:
    """``axes`` and ``spacing_zyx`` recorded in a noise-codec TIFF's annotation ({} if none)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            rec = _record(tf, Path(path))
    except (OSError, ValueError, TypeError, IndexError, InputFileError, tifffile.TiffFileError):
        return {}
    return {k: rec[k] for k in ("axes", "spacing_zyx") if k in rec}


def _strip(tf: Any, page: Any, i: int, path: Path) -> bytes:
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != 1 or page.compression != COMPRESSION_RSNC:
        raise InputFileError(f"{path}: page {i} is not a noise-codec page")
    tf.filehandle.seek(offsets[0])
    data = tf.filehandle.read(counts[0])
    if len(data) != counts[0]:
        raise InputFileError(f"{path}: page {i} is truncated")
    return data


def read_tiff_frames(path: str | os.PathLike) -> tuple[list[bytes], CodecMaps | None, tuple]:
    """The streams of every page, the per-pixel maps (or None) and the stack shape."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tf:
            from .containers_legacy import legacy_tiff

            legacy = legacy_tiff(tf, path)
            if legacy is not None:  # the layout before issue 13 (preview + tag 65000)
                return legacy
            rec = _record(tf, path)
            pages = list(tf.pages)
            streams = [_strip(tf, p, i, path) for i, p in enumerate(pages)]
            mtag = pages[0].tags.get(TAG_MAPS)
            mbytes = None if mtag is None else bytes(mtag.value)
            h, w = pages[0].shape[-2:]
    except InputFileError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, tifffile.TiffFileError) as exc:
        # TypeError: tifffile on some damaged tag counts and types (2026.3)
        raise InputFileError(f"{path}: unreadable noise-codec TIFF ({exc})") from None
    shape = rec.get("stack_shape", (len(streams), h, w))
    if not (
        isinstance(shape, list | tuple)
        and len(shape) >= 2
        and all(isinstance(v, int) and v >= 0 for v in shape)
    ) or int(np.prod(shape[:-2], dtype=np.int64)) != len(streams):
        raise InputFileError(
            f"{path}: {len(streams)} pages, but the file records a stack of shape {shape}"
        )
    maps = None
    if mbytes is not None:
        m = rec.get("maps", {})
        try:
            maps = CodecMaps.from_bytes(mbytes, (h, w), m["offset0"], m["gain0"], m["jitter"])
        except (KeyError, TypeError, ValueError, IndexError, ZstdError) as exc:
            raise InputFileError(f"{path}: corrupted per-pixel maps ({exc!r})") from None
    return streams, maps, tuple(shape)


def read_tiff(path: str | os.PathLike, allow_missing: bool = False) -> np.ndarray:
    """Read a noise-codec TIFF back to uint16 frames (no profile needed).

    A corrupt page is an `InputFileError` naming it; with ``allow_missing`` it is
    returned as a masked array (masked frame) instead, with a warning.
    """
    from .containers import decode_frame_list

    streams, maps, shape = read_tiff_frames(path)
    return decode_frame_list(streams, maps, shape, f"{path} page", allow_missing)


# ---------------------------------------------------------------- tifffile hook
def _tifffile_decode(data: Any, out: Any = None, **kwargs: Any) -> np.ndarray:
    data = bytes(data)
    hd = read_header(data, "TIFF strip")
    if hd["maps"] == "reference":
        raise InputFileError(
            "this noise-codec TIFF uses per-pixel maps stored in tag 65301; read it with "
            "rawsigma.analysis.noisecodec.containers.read_compressed"
        )
    return decode_frames(data, None, source="TIFF strip").reshape(-1)


def register_tifffile() -> bool:
    """Teach tifffile (this process) to decode `COMPRESSION_RSNC` pages.

    tifffile has no public registration API: this adds the decoder to the mapping
    ``tifffile.TIFF.DECOMPRESSORS`` (its private ``_codecs`` dict). Returns False when
    that mapping has another shape (a future tifffile), in which case only
    `read_tiff` decodes these files.
    """
    try:
        import tifffile

        codecs = tifffile.TIFF.DECOMPRESSORS._codecs
    except (ImportError, AttributeError):
        return False
    codecs[COMPRESSION_RSNC] = _tifffile_decode
    return True


register_tifffile()
