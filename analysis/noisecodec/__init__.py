"""Noise-calibrated compression of raw camera frames (the open answer to Jetraw).

`NoiseCodec` compresses uint16 frames as far as the camera's own noise allows:
generalised-Anscombe VST with the profile's per-pixel gain/offset and global read
noise, step S·σ, optional subtractive dither or hard error bound, class-adaptive
least-squares prediction of the codes, context-modelled rANS, unbiased decoding.
The byte stream is self-describing (`decode_frames` needs no profile when the maps
are embedded or uniform); `containers` writes it into zarr (numcodecs), TIFF and
HDF5.
"""

from __future__ import annotations

from .codec import NoiseCodec, codec_maps
from .containers import read_compressed, write_compressed
from .stream import CodecMaps, StreamParams, decode_frames, encode_frames, read_header

__all__ = [
    "CodecMaps",
    "NoiseCodec",
    "StreamParams",
    "codec_maps",
    "decode_frames",
    "encode_frames",
    "read_compressed",
    "read_header",
    "write_compressed",
]
