"""Read-only support for the container layouts of rawsigma before issue 13.

* TIFF: pages holding a 16×-binned preview, the stream in tag 65000, the maps in tag
  65001 of page 0, a JSON ImageDescription ``{"format": "rawsigma-noisecodec", ...}``.
* HDF5: dataset ``codes`` (quantiser codes) with decoding parameters as attributes and
  ``codes_maps/offset_q``, ``codes_maps/gain_q``.

Files in these layouts keep decoding; new files are never written in them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError

from .kernels import NO_KNEE
from .maps import CodecMaps
from .stream import READ_VERSIONS, dequantise_frames

FORMAT_NAME = "rawsigma-noisecodec"
_TAG_STREAM, _TAG_MAPS = 65000, 65001


def legacy_tiff(tf: Any, path: Path) -> tuple[list[bytes], CodecMaps | None, tuple] | None:
    """Streams, maps and shape of a pre-issue-13 TIFF, or None if ``tf`` is not one."""
    try:
        desc = json.loads(tf.pages[0].description or "{}")
    except ValueError:
        return None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT_NAME:
        return None
    if _TAG_STREAM not in tf.pages[0].tags:
        return None
    if desc.get("version") not in READ_VERSIONS:
        raise InputFileError(
            f"{path}: unknown noise-codec format version {desc.get('version')} "
            f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
        )
    shape = tuple(desc["shape"])
    streams = []
    for i, p in enumerate(tf.pages):
        tag = p.tags.get(_TAG_STREAM)
        if tag is None:
            raise InputFileError(f"{path}: page {i} has no noise-codec stream")
        streams.append(bytes(tag.value))
    mtag = tf.pages[0].tags.get(_TAG_MAPS)
    maps = None
    if mtag is not None:
        maps = CodecMaps.from_bytes(
            bytes(mtag.value), shape[-2:], desc["offset0"], desc["gain0"], desc.get("jitter")
        )
    return streams, maps, shape


def legacy_hdf5(f: Any, path: Path) -> np.ndarray | None:
    """Decoded frames of a pre-issue-13 HDF5 file (dataset ``codes``), or None."""
    if "codes" not in f or "codes_maps" not in f:
        return None
    ds = f["codes"]
    a = dict(ds.attrs)
    if a.get("format") != FORMAT_NAME:
        return None
    if int(a.get("version", -1)) not in READ_VERSIONS:
        raise InputFileError(
            f"{path}: unknown noise-codec format version {a.get('version')} "
            f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
        )
    g = f["codes_maps"]
    maps = CodecMaps(
        float(a["offset0"]),
        float(a["gain0"]),
        g["offset_q"][()],
        g["gain_q"][()],
        bool(a.get("jitter", False)),
    )
    if maps.digest() != a["maps_digest"]:
        raise InputFileError(f"{path}: the stored maps do not match their digest (altered)")
    return dequantise_frames(
        ds[()].astype(np.int32),
        maps,
        np.asarray(a["recon"], np.float64),
        str(a["mode"]),
        float(a["step"]),
        float(a["sigma_e"]),
        int(a["seed"]),
        int(a["max_adu"]),
        kp=np.asarray(a.get("knee", NO_KNEE), np.float64),
    )
