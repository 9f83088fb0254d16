"""`RawsigmaNoiseZarr3`: the noise codec as a zarr v3 array→bytes codec.

Built on zarr's public extension API only (`zarr.abc.codec.ArrayBytesCodec`,
`zarr.registry.register_codec`, the buffer prototypes of the chunk spec), so it works
with every zarr 3 release; a module-level class, so arrays that use it can be pickled.
Registered under ``numcodecs.rawsigma_noise`` (the name earlier rawsigma versions wrote)
on import and through the ``zarr.codecs`` entry point. Its configuration is the one of
`NoiseNumcodec` (without ``id``); each chunk is one self-describing stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from zarr.abc.codec import ArrayBytesCodec
from zarr.registry import register_codec

from .numcodec import NoiseNumcodec

__all__ = ["ZARR3_NAME", "RawsigmaNoiseZarr3"]

ZARR3_NAME = "numcodecs.rawsigma_noise"


@dataclass(frozen=True)
class RawsigmaNoiseZarr3(ArrayBytesCodec):
    """zarr v3 serializer wrapping `NoiseNumcodec` (keyword arguments as there)."""

    is_fixed_size = False
    codec_config: dict[str, Any]

    def __init__(self, **config: Any) -> None:
        config = {k: v for k, v in config.items() if k != "id"}
        codec = NoiseNumcodec(**config)
        cfg = codec.get_config()
        cfg.pop("id")
        object.__setattr__(self, "codec_config", cfg)
        object.__setattr__(self, "_codec", codec)

    @classmethod
    def from_numcodec(cls, codec: NoiseNumcodec) -> RawsigmaNoiseZarr3:
        """The v3 codec of a numcodecs codec (keeps its per-pixel maps)."""
        obj = cls(**codec.get_config())
        obj._codec._pixel_maps = codec._pixel_maps
        return obj

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RawsigmaNoiseZarr3:
        if data.get("name") != ZARR3_NAME:
            raise ValueError(f"expected codec name {ZARR3_NAME!r}, got {data.get('name')!r}")
        return cls(**(data.get("configuration") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": ZARR3_NAME, "configuration": dict(self.codec_config)}

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        raise NotImplementedError("the noise codec's output size depends on the data")

    async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        arr = await asyncio.to_thread(self._codec.decode, chunk_bytes.to_bytes())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(arr.reshape(chunk_spec.shape))

    async def _encode_single(self, chunk_array: Any, chunk_spec: Any) -> Any:
        data = await asyncio.to_thread(self._codec.encode, chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(data)


register_codec(ZARR3_NAME, RawsigmaNoiseZarr3)
